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

/// Inside `impl $sock`, for a socket type named like its mio and std
/// counterparts and holding the mio socket in `io: PollEvented<..>`: the
/// private `from_mio` (registers with the current runtime, for `$interest`;
/// `$caller` names the API in the outside-a-runtime panic) and the public
/// `from_std($param)`/`into_std`. `$wrapped` and `$noun` fill in their
/// docs; `$extra` doc attributes (examples) end `from_std`'s.
macro_rules! std_conversions {
    (
        $sock:ident($param:ident), $interest:expr, $caller:literal, $wrapped:literal, $noun:literal
        $(, $(#[$extra:meta])+)? $(,)?
    ) => {
        fn from_mio(s: mio::net::$sock) -> ::std::io::Result<$sock> {
            Ok($sock {
                io: $crate::io::PollEvented::new(s, $interest, $caller)?,
            })
        }

        #[doc = concat!("Wraps a ", $wrapped, ", switching it to non-blocking mode.")]
        ///
        /// # Panics
        ///
        /// Outside an urgent runtime.
        $($(#[$extra])+)?
        #[track_caller]
        pub fn from_std($param: ::std::net::$sock) -> ::std::io::Result<$sock> {
            $param.set_nonblocking(true)?;
            $sock::from_mio(mio::net::$sock::from_std($param))
        }

        #[doc = concat!(
            "Deregisters the ", $noun, " and returns it as a std ", $noun,
            ", still in\nnon-blocking mode."
        )]
        pub fn into_std(self) -> ::std::io::Result<::std::net::$sock> {
            Ok(self.io.into_inner().into())
        }
    };
}

/// Inside an `impl` of a socket type: public methods that call the mio
/// socket's method of the same name.
macro_rules! forward_to_mio {
    ($(
        $(#[$doc:meta])*
        pub fn $name:ident(&self $(, $arg:ident: $arg_ty:ty)?) -> $ret:ty;
    )*) => {$(
        $(#[$doc])*
        pub fn $name(&self $(, $arg: $arg_ty)?) -> $ret {
            self.io.get_ref().$name($($arg)?)
        }
    )*};
}

/// `Debug`, `AsRawFd` and `AsFd` for a socket type, from its mio socket.
macro_rules! socket_traits {
    ($ty:ty) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.io, f)
            }
        }

        impl ::std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                ::std::os::fd::AsRawFd::as_raw_fd(self.io.get_ref())
            }
        }

        impl ::std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                ::std::os::fd::AsFd::as_fd(self.io.get_ref())
            }
        }
    };
}

/// `futures::io::AsyncRead` and (with the `tokio` feature)
/// `tokio::io::AsyncRead` for `$ty`, reading from the `TcpStream` that
/// `$stream` gives for `$this: &$ty`.
macro_rules! tcp_read_impls {
    ($ty:ty, |$this:ident| $stream:expr) => {
        impl futures::io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let $this = &*self;
                $stream.poll_read_priv(cx, buf)
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let $this = &*self;
                $stream.poll_read_tokio(cx, buf)
            }
        }
    };
}

/// `futures::io::AsyncWrite` and (with the `tokio` feature)
/// `tokio::io::AsyncWrite` for `$ty`, writing to the `TcpStream` that
/// `$stream` gives for `$this: &$ty`. Flushing is a no-op (nothing is
/// buffered); closing shuts the write side down.
macro_rules! tcp_write_impls {
    ($ty:ty, |$this:ident| $stream:expr) => {
        impl futures::io::AsyncWrite for $ty {
            tcp_write_impls!(@common |$this| $stream);

            fn poll_close(
                self: ::std::pin::Pin<&mut Self>,
                _cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let $this = &*self;
                ::std::task::Poll::Ready($stream.shutdown_std(::std::net::Shutdown::Write))
            }
        }

        #[cfg(feature = "tokio")]
        impl tokio::io::AsyncWrite for $ty {
            tcp_write_impls!(@common |$this| $stream);

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                _cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let $this = &*self;
                ::std::task::Poll::Ready($stream.shutdown_std(::std::net::Shutdown::Write))
            }
        }
    };
    // The methods both traits share, signature for signature.
    (@common |$this:ident| $stream:expr) => {
        fn poll_write(
            self: ::std::pin::Pin<&mut Self>,
            cx: &mut ::std::task::Context<'_>,
            buf: &[u8],
        ) -> ::std::task::Poll<::std::io::Result<usize>> {
            let $this = &*self;
            $stream.poll_write_priv(cx, buf)
        }

        fn poll_write_vectored(
            self: ::std::pin::Pin<&mut Self>,
            cx: &mut ::std::task::Context<'_>,
            bufs: &[::std::io::IoSlice<'_>],
        ) -> ::std::task::Poll<::std::io::Result<usize>> {
            let $this = &*self;
            $stream.poll_write_vectored_priv(cx, bufs)
        }

        fn poll_flush(
            self: ::std::pin::Pin<&mut Self>,
            _cx: &mut ::std::task::Context<'_>,
        ) -> ::std::task::Poll<::std::io::Result<()>> {
            ::std::task::Poll::Ready(Ok(()))
        }
    };
}

mod split;
mod tcp;
mod udp;

pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

fn no_address() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any address",
    )
}

/// Resolves `addr` on the calling thread.
fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(no_address());
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
    Err(last.unwrap_or_else(no_address))
}

/// Binds a new mio socket (`bind`) to the first resolved address that
/// works and registers it with the current runtime (`register`).
async fn bind_each<S, T>(
    addr: impl ToSocketAddrs,
    bind: impl Fn(SocketAddr) -> io::Result<S>,
    register: impl Fn(S) -> io::Result<T>,
) -> io::Result<T> {
    each_addr(addr, |a| std::future::ready(bind(a).and_then(&register))).await
}
