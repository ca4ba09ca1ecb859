//! The listening socket, with an accept queue deep enough for a crowd arriving at once.
//!
//! `tokio::net::TcpListener::bind` asks for a queue of 128 connections (the standard
//! library's number). When a server dies or restarts, every client it had reconnects within
//! a few milliseconds, to it or to the servers left: 333 clients moving to one server in
//! `chat-bench cluster` overflowed the queue (`TcpExtListenOverflows` in `nstat`), the kernel
//! dropped their SYNs, and each dropped client waited for its SYN's retransmission, one
//! second later: a third to a half of them caught up after 1.1–1.5 s instead of 0.1–0.4.
//! The kernel caps the queue at `net.core.somaxconn` (4,096 by default since Linux 5.4).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may hold for the server before it accepts them.
pub const ACCEPT_QUEUE: u32 = 4096;

/// Binds `address` as `TcpListener::bind` does (reusing an address in `TIME_WAIT`), with an
/// accept queue of [`ACCEPT_QUEUE`].
pub fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_QUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listens_where_asked_and_accepts() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
        assert_eq!(accepted.unwrap().1.ip(), address.ip());
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = listen(first.local_addr().unwrap());
        assert_eq!(taken.unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}
