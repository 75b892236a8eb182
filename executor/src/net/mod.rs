//! TCP and UDP on the runtime's own mio driver, with tokio's method names.
//!
//! Sockets here are registered with the urgent runtime that is current when
//! they are created (inside a task, a CPU task or `block_on`) and are driven
//! by that runtime's workers: no tokio in the path. Streams implement
//! `futures::io::{AsyncRead, AsyncWrite}` and, with the default `tokio`
//! feature, `tokio::io::{AsyncRead, AsyncWrite}`, so both families of
//! extension traits (`read_exact`, `write_all`, `copy`, ...) apply.
//!
//! Addresses are anything [`std::net::ToSocketAddrs`] accepts
//! (`"127.0.0.1:8080"`, `("localhost", 80)`, a `SocketAddr`). A host name
//! is resolved on the calling thread (the system resolver blocks); pass IP
//! addresses where that matters. Every failure (refused, reset, address in
//! use, an unparsable address) comes back as an [`io::Error`].
//!
//! Several tasks may wait on one socket at once (an `Arc<UdpSocket>` shared
//! by a sender and a receiver, or the halves of a split stream).
//!
//! # Examples
//!
//! ```
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use urgent_executor::net::{TcpListener, TcpStream};
//!
//! let rt = urgent_executor::Runtime::new().unwrap();
//! rt.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     urgent_executor::spawn(async move {
//!         let (mut sock, _) = listener.accept().await.unwrap();
//!         let mut buf = [0u8; 5];
//!         sock.read_exact(&mut buf).await.unwrap();
//!         sock.write_all(&buf).await.unwrap();
//!     });
//!     let mut c = TcpStream::connect(addr).await.unwrap();
//!     c.write_all(b"hello").await.unwrap();
//!     let mut back = [0u8; 5];
//!     c.read_exact(&mut back).await.unwrap();
//!     assert_eq!(&back, b"hello");
//! });
//! ```

mod split;
mod tcp;
mod udp;

pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Resolves `addr` on the calling thread.
fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

/// Tries `f` on each address, returning the first success or the last error.
async fn each_addr<T, F, Fut>(addr: impl ToSocketAddrs, mut f: F) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for a in resolve(addr)? {
        match f(a).await {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}
