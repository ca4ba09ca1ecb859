//! Which address a call comes from, for the per-address limits (sign-in and sign-out rates,
//! the failed sign-in ladders): the TCP peer, or, when the peer is a reverse proxy that the
//! operator trusts (`--trusted-proxies`), the client that the proxies name in
//! `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the call from, so only the entries that
//! trusted proxies added can be believed: the header is read from its right end, past every
//! trusted proxy, and the first address that is not one is the client. Whatever the client
//! wrote into the header itself is further left and never read. An entry that is not an
//! address stops the walk at the proxy that added it, which then counts as the client: a
//! budget shared with others rather than one a client can choose.

use std::fmt;
use std::net::IpAddr;

/// The proxies whose word on a client's address is believed, single addresses and networks:
/// those of `--trusted-proxies` (their `X-Forwarded-For`) and of `--proxy-protocol-from`
/// (their PROXY protocol header, read by the transport).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

/// An address with a prefix length: `10.0.0.0/8`, or `10.0.0.5` (all 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    base: IpAddr,
    prefix: u32,
}

/// Why `--trusted-proxies` could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadProxy(String);

impl fmt::Display for BadProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an address or a network (write 10.0.0.5, 10.0.0.0/8 or fd00::/8)",
            self.0
        )
    }
}

impl std::error::Error for BadProxy {}

impl TrustedProxies {
    /// Reads a comma-separated list of addresses and networks (`10.0.0.5, fd00::/8`).
    pub fn parse(list: &str) -> Result<Self, BadProxy> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(Network::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trust(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// Whether a connection's peer is one of these proxies (an IPv4-mapped IPv6 peer read as
    /// its IPv4 address).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trust(peer.to_canonical())
    }

    /// The address of the client that made `request`; `None` when it did not come over TCP.
    pub fn client_of<T>(&self, request: &tonic::Request<T>) -> Option<IpAddr> {
        let peer = request.remote_addr()?.ip();
        let lines = request.metadata().get_all("x-forwarded-for");
        // A line that is not text is not an address either: it stops the walk.
        Some(self.client(peer, lines.iter().map(|line| line.to_str().unwrap_or("?"))))
    }

    /// The client behind `peer`, given the `X-Forwarded-For` lines in the order they came.
    fn client<'a>(&self, peer: IpAddr, lines: impl Iterator<Item = &'a str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trust(client) {
            return client;
        }
        let lines: Vec<&str> = lines.collect();
        for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
            let Ok(address) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = address.to_canonical();
            if !self.trust(client) {
                break;
            }
        }
        client
    }
}

impl Network {
    fn parse(text: &str) -> Result<Self, BadProxy> {
        let bad = || BadProxy(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base = address.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let bits = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u32>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
            None => bits,
        };
        Ok(Self { base, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let (base, address, bits) = match (self.base, address) {
            (IpAddr::V4(base), IpAddr::V4(address)) => (
                u128::from(base.to_bits()),
                u128::from(address.to_bits()),
                32,
            ),
            (IpAddr::V6(base), IpAddr::V6(address)) => (base.to_bits(), address.to_bits(), 128),
            _ => return false,
        };
        // A shift by all the bits (a prefix of 0) leaves nothing to compare: any address.
        let shift = bits - self.prefix;
        base.checked_shr(shift).unwrap_or(0) == address.checked_shr(shift).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(proxies: &str, peer: &str, lines: &[&str]) -> IpAddr {
        TrustedProxies::parse(proxies)
            .unwrap()
            .client(ip(peer), lines.iter().copied())
    }

    #[test]
    fn a_proxy_s_connection_is_known_as_one_also_as_an_ipv4_mapped_peer() {
        let proxies = TrustedProxies::parse("10.0.0.5, fd00::/8").unwrap();
        assert!(proxies.trusts(ip("10.0.0.5")));
        assert!(
            proxies.trusts(ip("::ffff:10.0.0.5")),
            "a dual-stack listener's peer"
        );
        assert!(proxies.trusts(ip("fd00::1")));
        assert!(!proxies.trusts(ip("10.0.0.6")));
        assert!(!TrustedProxies::default().trusts(ip("10.0.0.5")));
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(
            client("", "203.0.113.7", &["198.51.100.1"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("10.0.0.5", "203.0.113.7", &["198.51.100.1"]),
            ip("203.0.113.7"),
            "a peer that is not a trusted proxy"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_address() {
        // (trusted proxies, peer, X-Forwarded-For lines, the client, why)
        let cases: [(&str, &str, &[&str], &str, &str); 5] = [
            (
                "10.0.0.5",
                "10.0.0.5",
                &["203.0.113.7"],
                "203.0.113.7",
                "one proxy",
            ),
            (
                "10.0.0.5",
                "10.0.0.5",
                &["198.51.100.1, 203.0.113.7"],
                "203.0.113.7",
                "the client wrote 198.51.100.1 itself; the proxy appended what it saw",
            ),
            (
                "10.0.0.0/8",
                "10.0.0.5",
                &["198.51.100.1, 203.0.113.7", "10.1.2.3"],
                "203.0.113.7",
                "two proxies of one network, the header over two lines",
            ),
            (
                "fd00::/8, 10.0.0.5",
                "fd00::1",
                &["2001:db8::7 , fd12::3"],
                "2001:db8::7",
                "IPv6",
            ),
            (
                "10.0.0.5",
                "::ffff:10.0.0.5",
                &["::ffff:203.0.113.7"],
                "203.0.113.7",
                "an IPv4 peer on a dual-stack listener comes as an IPv4-mapped IPv6 address",
            ),
        ];
        for (proxies, peer, lines, expected, why) in cases {
            assert_eq!(client(proxies, peer, lines), ip(expected), "{why}");
        }
    }

    #[test]
    fn a_header_that_names_no_client_leaves_the_last_trusted_proxy() {
        assert_eq!(client("10.0.0.5", "10.0.0.5", &[]), ip("10.0.0.5"));
        for garbage in ["unknown", "203.0.113.7:4431", "", "?"] {
            assert_eq!(
                client(
                    "10.0.0.5",
                    "10.0.0.5",
                    &[&format!("198.51.100.1, {garbage}")]
                ),
                ip("10.0.0.5"),
                "{garbage:?}"
            );
        }
        // Only trusted addresses: the leftmost is the client.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["10.9.9.9, 10.0.0.6"]),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn networks_match_by_their_prefix() {
        let proxies = TrustedProxies::parse("192.168.0.0/16, ::1, 0.0.0.0/0").unwrap();
        assert!(proxies.trust(ip("192.168.200.1")));
        assert!(proxies.trust(ip("8.8.8.8")), "/0 is every IPv4 address");
        assert!(proxies.trust(ip("::1")));
        assert!(!proxies.trust(ip("::2")));
        let proxies = TrustedProxies::parse("192.168.0.0/16").unwrap();
        assert!(!proxies.trust(ip("192.169.0.1")));
    }

    #[test]
    fn a_bad_entry_is_refused_with_its_text() {
        for bad in [
            "10.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/x",
            "proxy.example.org",
        ] {
            let error = TrustedProxies::parse(&format!("10.0.0.5, {bad}")).unwrap_err();
            assert!(error.to_string().contains(bad), "{error}");
        }
        assert_eq!(
            TrustedProxies::parse(" , ").unwrap(),
            TrustedProxies::default()
        );
    }
}
