//! TCP listener and stream.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::task::{Context, Poll};

use mio::Interest;

use super::split::{self, OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use crate::io::{Direction, PollEvented};

/// A TCP socket server, listening for connections.
///
/// # Examples
///
/// ```
/// use urgent_executor::net::{TcpListener, TcpStream};
///
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     let client = urgent_executor::spawn(async move { TcpStream::connect(addr).await });
///     let (server_side, peer) = listener.accept().await.unwrap();
///     let client = client.await.unwrap().unwrap();
///     assert_eq!(peer, client.local_addr().unwrap());
///     assert_eq!(server_side.peer_addr().unwrap(), peer);
/// });
/// ```
pub struct TcpListener {
    io: PollEvented<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds a listener to `addr` (`SO_REUSEADDR` is set, as tokio does);
    /// port 0 picks a free port, see [`local_addr`](Self::local_addr). With
    /// several resolved addresses, the first that binds wins.
    ///
    /// # Errors
    ///
    /// An unparsable address (`InvalidInput`), an address in use
    /// (`AddrInUse`), or any other `bind`/`listen` failure.
    ///
    /// # Panics
    ///
    /// Outside an urgent runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use urgent_executor::net::TcpListener;
    ///
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let taken = a.local_addr().unwrap();
    ///     let err = TcpListener::bind(taken).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    ///     assert!(TcpListener::bind("not an address").await.is_err());
    /// });
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        super::bind_each(addr, mio::net::TcpListener::bind, TcpListener::from_mio).await
    }

    std_conversions!(
        TcpListener(listener),
        Interest::READABLE,
        "TcpListener::bind",
        "bound std listener",
        "listener",
        ///
        /// # Examples
        ///
        /// ```
        /// let rt = urgent_executor::Runtime::new().unwrap();
        /// rt.block_on(async {
        ///     let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ///     let l = urgent_executor::net::TcpListener::from_std(std_l).unwrap();
        ///     assert!(l.local_addr().unwrap().port() != 0);
        /// });
        /// ```
    );

    /// Accepts a new connection: the stream (non-blocking, registered with
    /// the current runtime) and the peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection: the poll form of [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (sock, addr) = std::task::ready!(self.io.poll_io(cx, Direction::Read, |l| l.accept()))?;
        Poll::Ready(TcpStream::from_mio(sock).map(|s| (s, addr)))
    }

    forward_to_mio! {
        /// The address the listener is bound to.
        pub fn local_addr(&self) -> io::Result<SocketAddr>;

        /// The IP time-to-live of accepted sockets.
        pub fn ttl(&self) -> io::Result<u32>;

        /// Sets the IP time-to-live of accepted sockets.
        pub fn set_ttl(&self, ttl: u32) -> io::Result<()>;
    }
}

socket_traits!(TcpListener);

/// A TCP connection.
///
/// Read and write it through `futures::io::{AsyncReadExt, AsyncWriteExt}`
/// or (with the `tokio` feature) `tokio::io::{AsyncReadExt,
/// AsyncWriteExt}`. Closing (`close` / `shutdown`) shuts down the write
/// side; dropping the stream closes the socket.
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// use urgent_executor::net::{TcpListener, TcpStream};
///
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     urgent_executor::spawn(async move {
///         let (mut s, _) = listener.accept().await.unwrap();
///         s.write_all(b"hi").await.unwrap();
///     });
///     let mut s = TcpStream::connect(addr).await.unwrap();
///     s.set_nodelay(true).unwrap();
///     let mut got = String::new();
///     s.read_to_string(&mut got).await.unwrap();
///     assert_eq!(got, "hi");
/// });
/// ```
pub struct TcpStream {
    io: PollEvented<mio::net::TcpStream>,
}

impl TcpStream {
    /// Opens a connection to `addr`: a non-blocking `connect`, then waits
    /// until the socket is writable and checks the outcome. With several
    /// resolved addresses, each is tried in turn.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens there, `InvalidInput` for an
    /// unparsable address, or any other connect failure.
    ///
    /// # Panics
    ///
    /// Outside an urgent runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use urgent_executor::net::{TcpListener, TcpStream};
    ///
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     // A port that was just free: nothing listens on it any more.
    ///     let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    ///     let err = TcpStream::connect(addr).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    /// });
    /// ```
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        super::each_addr(addr, TcpStream::connect_addr).await
    }

    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        loop {
            let ev = stream.io.ready(Direction::Write).await?;
            if let Some(e) = stream.io.get_ref().take_error()? {
                return Err(e);
            }
            match stream.io.get_ref().peer_addr() {
                Ok(_) => return Ok(stream),
                // Still connecting (the first check runs before any event:
                // a fresh socket starts out optimistically writable).
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    stream.io.registration().clear_readiness(ev)
                }
                Err(e) => return Err(e),
            }
        }
    }

    std_conversions!(
        TcpStream(stream),
        Interest::READABLE | Interest::WRITABLE,
        "TcpStream::connect",
        "connected std stream",
        "stream",
    );

    forward_to_mio! {
        /// The local address of this end.
        pub fn local_addr(&self) -> io::Result<SocketAddr>;

        /// The address of the peer.
        pub fn peer_addr(&self) -> io::Result<SocketAddr>;

        /// Whether `TCP_NODELAY` (no Nagle delay for small writes) is set.
        pub fn nodelay(&self) -> io::Result<bool>;

        /// Sets `TCP_NODELAY`.
        pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()>;

        /// The IP time-to-live.
        pub fn ttl(&self) -> io::Result<u32>;

        /// Sets the IP time-to-live.
        pub fn set_ttl(&self, ttl: u32) -> io::Result<()>;

        /// Takes the pending socket error (`SO_ERROR`), if any.
        pub fn take_error(&self) -> io::Result<Option<io::Error>>;
    }

    /// Waits until the stream may be readable (a following
    /// [`try_read`](Self::try_read) can still return `WouldBlock`).
    pub async fn readable(&self) -> io::Result<()> {
        self.io.ready(Direction::Read).await.map(drop)
    }

    /// Waits until the stream may be writable.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.ready(Direction::Write).await.map(drop)
    }

    /// Reads what is available without waiting: `WouldBlock` if nothing is,
    /// `Ok(0)` at end of stream.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.try_io(Direction::Read, |s| (&*s).read(buf))
    }

    /// Writes what fits without waiting: `WouldBlock` if nothing does.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.try_io(Direction::Write, |s| (&*s).write(buf))
    }

    /// Reads into `buf` without removing the data from the queue.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.async_io(Direction::Read, |s| s.peek(buf)).await
    }

    /// Splits into a read half and a write half that borrow the stream, for
    /// reading and writing concurrently in one task (`join!`/`select!`).
    ///
    /// With `futures::io::AsyncReadExt` in scope, `stream.split()` resolves
    /// to that trait's `split(self)` (method lookup tries by-value receivers
    /// first); write `TcpStream::split(&mut stream)` to get these halves.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    /// use urgent_executor::net::{TcpListener, TcpStream};
    ///
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let mut a = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    ///     let (mut b, _) = listener.accept().await.unwrap();
    ///     let (mut r, mut w) = TcpStream::split(&mut a);
    ///     let mut got = [0u8; 3];
    ///     let (sent, read) = futures::join!(
    ///         async {
    ///             w.write_all(b"abc").await?;
    ///             b.read_exact(&mut got).await?;
    ///             b.write_all(&got).await
    ///         },
    ///         async {
    ///             let mut back = [0u8; 3];
    ///             r.read_exact(&mut back).await.map(|()| back)
    ///         },
    ///     );
    ///     sent.unwrap();
    ///     assert_eq!(&read.unwrap(), b"abc");
    /// });
    /// ```
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        split::split(self)
    }

    /// Splits into owned halves that may move to different tasks. Dropping
    /// the write half shuts the write side down (see
    /// [`OwnedWriteHalf`]); [`OwnedReadHalf::reunite`] puts them back
    /// together.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::io::{AsyncReadExt, AsyncWriteExt};
    /// use urgent_executor::net::{TcpListener, TcpStream};
    ///
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let addr = listener.local_addr().unwrap();
    ///     urgent_executor::spawn(async move {
    ///         let (s, _) = listener.accept().await.unwrap();
    ///         let (mut r, mut w) = s.into_split();
    ///         futures::io::copy(&mut r, &mut w).await.unwrap();
    ///     });
    ///     let mut c = TcpStream::connect(addr).await.unwrap();
    ///     c.write_all(b"ping").await.unwrap();
    ///     let mut b = [0u8; 4];
    ///     c.read_exact(&mut b).await.unwrap();
    ///     assert_eq!(&b, b"ping");
    /// });
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split::into_split(self)
    }

    pub(crate) fn poll_read_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        self.io
            .poll_io_len(cx, Direction::Read, len, |s| (&*s).read(buf))
    }

    pub(crate) fn poll_write_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io
            .poll_io_len(cx, Direction::Write, buf.len(), |s| (&*s).write(buf))
    }

    pub(crate) fn poll_write_vectored_priv(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.io
            .poll_io_len(cx, Direction::Write, len, |s| (&*s).write_vectored(bufs))
    }

    /// The `tokio::io::AsyncRead` form of
    /// [`poll_read_priv`](Self::poll_read_priv).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_read_tokio(
        &self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // No unsafe here: uninitialised capacity is zeroed once, then reused.
        let dst = buf.initialize_unfilled();
        let n = std::task::ready!(self.poll_read_priv(cx, dst))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    pub(crate) fn shutdown_std(&self, how: Shutdown) -> io::Result<()> {
        match self.io.get_ref().shutdown(how) {
            // The peer already went away: nothing left to shut down.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        }
    }
}

socket_traits!(TcpStream);
tcp_read_impls!(TcpStream, |s| s);
tcp_write_impls!(TcpStream, |s| s);
