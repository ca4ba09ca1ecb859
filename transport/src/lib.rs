//! The transport of the chat server, defined once: how native gRPC (HTTP/2), gRPC-web
//! (HTTP/1.1 or HTTP/2) and the built web UI share one port, over TCP or TLS. The server and
//! the benchmark's ceiling server both serve through it, so the ceiling measures exactly the
//! server's transport; neither builds its own.
//!
//! - [`router`]: gRPC routes with the gRPC-web translation, the static UI with its security
//!   headers (`csp`) and the server's settings on its page (`page`), UNIMPLEMENTED for
//!   unknown gRPC paths, CORS for browsers.
//! - [`serve`]: tonic's HTTP server with the project's settings and limits ([`Options`]), on
//!   a listener, plain or TLS (`tls`), until a shutdown future ends; `connections` accepts,
//!   reads the client's address from a load balancer's PROXY protocol header
//!   (`proxy_protocol`), caps connections per address and in all, and closes those that ask
//!   nothing in time and HTTP/1.1 ones idle too long between calls; `deadline` ends a call whose response has not
//!   started in time with DEADLINE_EXCEEDED.
//! - [`shutdown_signal`]: Ctrl-C or SIGTERM; [`unix_now`]: the clock of every wire timestamp.
//! - [`client`]: a gRPC-web client over hyper, as a browser speaks it, for the tests and the
//!   benchmark (the browser build has its own, in `web`).

mod calls;
pub mod client;
mod clock;
mod connections;
mod csp;
mod deadline;
mod files;
mod listen;
mod page;
mod proxy_protocol;
mod router;
mod serve;
mod shutdown;
mod tls;

pub use clock::unix_now;
pub use listen::{ACCEPT_QUEUE, listen};
pub use router::{GrpcServices, PortService, WebUi, router};
pub use serve::{Options, Peers, serve};
pub use shutdown::shutdown_signal;
pub use tls::{Tls, TlsError};
