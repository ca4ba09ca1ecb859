//! A TCP relay that holds every chunk for a fixed time each way: the cluster scenario puts it
//! between the servers and PostgreSQL (`--database-delay-us`) to see how the deployment
//! behaves with a network between them. This machine's loopback answers in microseconds and
//! its kernel has no `netem` to add a delay, so the relay adds it in user space.
//!
//! Plain threads, not tokio: tokio's timers count whole milliseconds, and the delays that
//! matter (a datacenter's round trip is 0.1–1 ms) are fractions of one. `thread::sleep`
//! overshoots by the kernel's timer slack (about 50 µs), so the delay is a floor. Each
//! connection costs four threads (a reader and a writer each way), and the relay's copying
//! costs CPU on the machine it measures: its figures are for comparing designs under the
//! same delay, not a network's own.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Starts relaying connections from a new port on 127.0.0.1 to `target`, each chunk held
/// `delay` in each direction; returns the port's address. The relay lives as long as the
/// process.
pub fn start(target: SocketAddr, delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name("relay-accept".into())
        .spawn(move || {
            for client in listener.incoming() {
                // A connection that fails here fails for its server, which reconnects.
                let _ = client.and_then(|client| relay(client, target, delay));
            }
        })?;
    Ok(addr)
}

fn relay(client: TcpStream, target: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(target)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    pump(client.try_clone()?, server.try_clone()?, delay)?;
    pump(server, client, delay)
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in order.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> std::io::Result<()> {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::Builder::new()
        .name("relay-read".into())
        .spawn(move || {
            let mut buffer = vec![0; 64 * 1024];
            // Ends at the end of the stream or an error; dropping `chunks` ends the writer.
            while let Ok(read @ 1..) = from.read(&mut buffer) {
                if chunks
                    .send((Instant::now() + delay, buffer[..read].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        })?;
    thread::Builder::new()
        .name("relay-write".into())
        .spawn(move || {
            for (at, chunk) in due {
                let now = Instant::now();
                if at > now {
                    thread::sleep(at - now);
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    Ok(())
}
