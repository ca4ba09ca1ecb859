//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that passes TCP through
//! (layer 4: TLS ends here, or HTTP/2 it does not read) cannot add `X-Forwarded-For`, so it
//! starts each connection with a header naming the client instead. Read only from the load
//! balancers the operator names (`Options::proxy_protocol_from`), and required from them:
//! anyone else could name any address.
//!
//! Exactly the header is read, never a byte past it: what follows is the client's TLS
//! handshake or HTTP, for the server as if the connection had just begun.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Version 2 headers begin with these 12 bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most this long, its CRLF included.
const V1_MAX: usize = 107;
/// The most a version 2 header may carry after its first 16 bytes: the addresses (216 bytes
/// at most, for UNIX sockets) and the extensions a load balancer adds (TLS details, a
/// connection id), far below this; a longer one is refused rather than buffered.
const V2_MAX_BODY: usize = 4096;

/// What a header says of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's connection, from this address and port.
    Proxied(SocketAddr),
    /// The load balancer's own connection (a health check), or a client with no address
    /// to give (`UNKNOWN`, a UNIX socket): the TCP peer stands.
    Local,
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("the connection did not begin with a PROXY protocol header")]
    Missing,
    #[error("a malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("the connection ended within its PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header `io` begins with, and nothing after it.
pub async fn read_header(io: &mut (impl AsyncRead + Unpin)) -> Result<Header, HeaderError> {
    // Both versions are longer than this (15 bytes at least), so it never reads past one.
    let mut start = [0u8; 8];
    io.read_exact(&mut start).await?;
    if start == V2_SIGNATURE[..8] {
        version_2(io).await
    } else if start.starts_with(b"PROXY ") {
        version_1(io, &start).await
    } else {
        Err(HeaderError::Missing)
    }
}

/// `PROXY TCP4 <source> <destination> <source port> <destination port>\r\n` (or `TCP6`),
/// or `PROXY UNKNOWN…\r\n`; `start` is what was read of it already.
async fn version_1(io: &mut (impl AsyncRead + Unpin), start: &[u8]) -> Result<Header, HeaderError> {
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(HeaderError::Malformed(
                "a version 1 line longer than 107 bytes",
            ));
        }
        line.push(io.read_u8().await?);
    }
    let text = std::str::from_utf8(&line[..line.len() - 2])
        .map_err(|_| HeaderError::Malformed("a version 1 line that is not text"))?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Header::Local),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            source,
            destination,
            source_port,
            destination_port,
        ] => {
            let bad = || HeaderError::Malformed("a version 1 address or port");
            let source: IpAddr = source.parse().map_err(|_| bad())?;
            let destination: IpAddr = destination.parse().map_err(|_| bad())?;
            let source_port: u16 = source_port.parse().map_err(|_| bad())?;
            destination_port.parse::<u16>().map_err(|_| bad())?;
            let v4 = *family == "TCP4";
            if source.is_ipv4() != v4 || destination.is_ipv4() != v4 {
                return Err(HeaderError::Malformed(
                    "a version 1 address of the other family",
                ));
            }
            Ok(Header::Proxied(SocketAddr::new(source, source_port)))
        }
        _ => Err(HeaderError::Malformed("a version 1 line of unknown form")),
    }
}

/// The binary header: the signature, a version and command byte, a family byte, the length
/// of the rest, then the addresses (and extensions, skipped).
async fn version_2(io: &mut (impl AsyncRead + Unpin)) -> Result<Header, HeaderError> {
    let mut fixed = [0u8; 8];
    io.read_exact(&mut fixed).await?;
    if fixed[..4] != V2_SIGNATURE[8..] {
        return Err(HeaderError::Missing);
    }
    let (version, command, family) = (fixed[4] >> 4, fixed[4] & 0x0f, fixed[5] >> 4);
    let length = usize::from(u16::from_be_bytes([fixed[6], fixed[7]]));
    if version != 2 {
        return Err(HeaderError::Malformed("a version other than 2"));
    }
    if length > V2_MAX_BODY {
        return Err(HeaderError::Malformed("longer than 4096 bytes"));
    }
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await?;
    let short = || HeaderError::Malformed("addresses shorter than their family's");
    match (command, family) {
        (0, _) => Ok(Header::Local),
        // Unspecified, or a UNIX socket: no address to count by.
        (1, 0 | 3) => Ok(Header::Local),
        (1, 1) => {
            let block: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(short)?;
            let source = Ipv4Addr::from([block[0], block[1], block[2], block[3]]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Ok(Header::Proxied(SocketAddr::new(source.into(), port)))
        }
        (1, 2) => {
            let block: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(short)?;
            let mut source = [0u8; 16];
            source.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Ok(Header::Proxied(SocketAddr::new(
                Ipv6Addr::from(source).into(),
                port,
            )))
        }
        (1, _) => Err(HeaderError::Malformed("an unknown address family")),
        _ => Err(HeaderError::Malformed("an unknown command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a header from `bytes`; returns it and what is left unread.
    async fn read(bytes: &[u8]) -> (Result<Header, HeaderError>, Vec<u8>) {
        let mut rest = bytes;
        let header = read_header(&mut rest).await;
        (header, rest.to_vec())
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn version_1_names_the_client_and_leaves_what_follows_unread() {
        let (header, rest) =
            read(b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\nPRI * HTTP/2.0").await;
        assert_eq!(
            header.unwrap(),
            Header::Proxied("198.51.100.7:40000".parse().unwrap())
        );
        assert_eq!(rest, b"PRI * HTTP/2.0");
        let (header, rest) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n\x16").await;
        assert_eq!(
            header.unwrap(),
            Header::Proxied("[2001:db8::7]:40000".parse().unwrap())
        );
        assert_eq!(rest, b"\x16");
        let (header, rest) = read(b"PROXY UNKNOWN\r\nGET").await;
        assert_eq!(header.unwrap(), Header::Local);
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn version_2_names_the_client_and_skips_its_extensions() {
        let mut body = vec![198, 51, 100, 7, 192, 0, 2, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&[0x05, 0x00, 0x02, 0xab, 0xcd]); // an extension (a unique id)
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend_from_slice(b"PRI");
        let (header, rest) = read(&bytes).await;
        assert_eq!(
            header.unwrap(),
            Header::Proxied("198.51.100.7:40000".parse().unwrap())
        );
        assert_eq!(rest, b"PRI");

        let mut body = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        let (header, rest) = read(&v2(1, 0x21, &body)).await;
        assert_eq!(
            header.unwrap(),
            Header::Proxied("[2001:db8::7]:40000".parse().unwrap())
        );
        assert!(rest.is_empty());

        // A health check of the load balancer's own, and a UNIX socket's client.
        assert_eq!(read(&v2(0, 0x00, &[])).await.0.unwrap(), Header::Local);
        assert_eq!(
            read(&v2(1, 0x31, &[0; 216])).await.0.unwrap(),
            Header::Local
        );
    }

    #[tokio::test]
    async fn anything_else_is_refused_with_the_reason() {
        let mut too_long = b"PROXY TCP4 ".to_vec();
        too_long.extend_from_slice(&[b'1'; 120]);
        let short_v4 = v2(1, 0x11, &[198, 51, 100, 7]);
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        for (bytes, expected) in [
            (b"PRI * HTTP/2.0\r\n\r\nSM".to_vec(), "did not begin"),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01".to_vec(),
                "did not begin",
            ),
            (b"GET / HTTP/1.1\r\n".to_vec(), "did not begin"),
            (too_long, "longer than 107"),
            (
                b"PROXY TCP4 198.51.100.7 192.0.2.1 40000\r\n".to_vec(),
                "unknown form",
            ),
            (
                b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n".to_vec(),
                "other family",
            ),
            (
                b"PROXY TCP4 198.51.100.7 192.0.2.1 70000 443\r\n".to_vec(),
                "address or port",
            ),
            (b"PROXY TCP4 198.51.100.7".to_vec(), "ended within"),
            (short_v4, "shorter than"),
            (wrong_version, "version other than 2"),
            (huge, "longer than 4096"),
            (v2(1, 0x41, &[0; 12]), "unknown address family"),
            (v2(2, 0x11, &[0; 12]), "unknown command"),
        ] {
            let error = read(&bytes).await.0.expect_err(expected);
            assert!(
                error.to_string().contains(expected),
                "{:?}: {error}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}
