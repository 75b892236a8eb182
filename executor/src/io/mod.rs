//! Readiness-based I/O on the runtime's mio driver.
//!
//! # Protocol
//!
//! Every socket of `urgent::net` is registered with the runtime's mio `Poll`
//! (edge-triggered) under a [`Token`] that names a *slot*: an index into a
//! page table of [`ScheduledIo`]s plus the slot's generation. A slot holds
//!
//! - `readiness`: the readiness bits the driver has reported (low byte) and a
//!   tick (the rest), bumped by every event;
//! - `waiters`: the wakers of the tasks waiting to read and to write.
//!
//! Who touches what:
//!
//! | who                          | does                                                       |
//! |------------------------------|------------------------------------------------------------|
//! | the thread turning the driver (`IoState::dispatch`) | ORs the event's bits in, bumps the tick, takes and wakes the matching wakers |
//! | a task doing I/O             | reads the bits; if its direction is ready, tries the syscall; on `WouldBlock` clears the bits *only if the tick is unchanged* (an event that raced in keeps them) and polls again; otherwise stores its waker and re-checks under the waiter lock |
//! | registration / drop          | takes a free slot (or releases it: deregister from mio, bump the generation so stale events are ignored, drop the wakers) |
//!
//! A fresh slot starts *optimistically ready* for reading and writing: the
//! first `read`/`write`/`accept` goes straight to the syscall instead of
//! waiting for the driver's first report. That is sound for the same reason
//! clearing is: a `WouldBlock` clears only what the tick says is stale.
//!
//! Slots never move (pages of doubling size, allocated once), so the driver
//! looks a token up without a lock. Registration goes through a clone of
//! mio's `Registry`, never through the driver lock. `DriverHandle`
//! counts live registrations; busy workers poll epoll at their maintenance
//! tick only while it is non-zero.
//!
//! When the runtime shuts down every waiter is woken, and I/O on its sockets
//! fails with an error instead of hanging.

#[cfg(feature = "tokio")]
pub(crate) mod tokio_compat;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::runtime::scheduler::Shared;

/// Readiness bits.
const READABLE: usize = 1;
const WRITABLE: usize = 2;
const READ_CLOSED: usize = 4;
const WRITE_CLOSED: usize = 8;
const ERROR: usize = 16;
const READY_MASK: usize = 0xff;
const TICK_SHIFT: u32 = 8;
/// Bits a `WouldBlock` clears; the closed bits stay once seen.
const CLEARABLE: usize = READABLE | WRITABLE | ERROR;
const INITIAL: usize = READABLE | WRITABLE;

const INDEX_BITS: u32 = 24;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// The generation uses the bits above the index, minus the top one, so no
/// token ever equals the driver's wake token (`usize::MAX`).
const GEN_MASK: usize = usize::MAX >> (INDEX_BITS + 1);
const FIRST_PAGE: usize = 32;
const PAGES: usize = 20; // 32 * (2^20 - 1) > 2^24 slots

/// The direction a task waits in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// A readiness snapshot: what was ready, at which tick.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    tick: usize,
    ready: usize,
}

#[derive(Default)]
struct Waiters {
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// Further tasks waiting on the same socket (an `Arc<UdpSocket>` shared
    /// by several tasks); woken by any event.
    more: Vec<Waker>,
}

impl Waiters {
    fn register(&mut self, dir: Direction, waker: &Waker) {
        let slot = match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        };
        match slot {
            None => *slot = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }
}

/// The readiness state of one registered source.
pub(crate) struct ScheduledIo {
    generation: AtomicUsize,
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    fn new() -> ScheduledIo {
        ScheduledIo {
            generation: AtomicUsize::new(0),
            readiness: AtomicUsize::new(INITIAL),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    fn lock(&self) -> crate::sync::Locked<'_, Waiters> {
        crate::sync::lock(&self.waiters)
    }

    /// Records an event and wakes the tasks it concerns.
    fn set_ready(&self, bits: usize) {
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            let tick = (cur >> TICK_SHIFT).wrapping_add(1);
            Some((tick << TICK_SHIFT) | (cur & READY_MASK) | bits)
        });
        self.wake(bits);
    }

    fn wake(&self, bits: usize) {
        let (reader, writer, more) = {
            let mut w = self.lock();
            let reader = if bits & Direction::Read.mask() != 0 {
                w.reader.take()
            } else {
                None
            };
            let writer = if bits & Direction::Write.mask() != 0 {
                w.writer.take()
            } else {
                None
            };
            let more = if w.more.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut w.more)
            };
            (reader, writer, more)
        };
        // Wake outside the lock: a waker may do anything, including
        // registering this very socket's next interest.
        if let Some(w) = reader {
            w.wake();
        }
        if let Some(w) = writer {
            w.wake();
        }
        for w in more {
            w.wake();
        }
    }

    /// What of `dir` looks ready now, and at which tick; `None` if nothing.
    fn snapshot(&self, dir: Direction) -> Option<ReadyEvent> {
        let cur = self.readiness.load(Acquire);
        let ready = cur & dir.mask();
        (ready != 0).then_some(ReadyEvent {
            tick: cur >> TICK_SHIFT,
            ready,
        })
    }

    fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Option<ReadyEvent> {
        if let Some(ev) = self.snapshot(dir) {
            return Some(ev);
        }
        let mut w = self.lock();
        w.register(dir, cx.waker());
        // The driver sets the bits before it takes the waiter lock: either
        // we see them now, or it sees our waker.
        self.snapshot(dir)
    }

    fn clear_readiness(&self, ev: ReadyEvent) {
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            if cur >> TICK_SHIFT != ev.tick {
                // An event arrived after the snapshot: keep its bits.
                return None;
            }
            Some(cur & !(ev.ready & CLEARABLE))
        });
    }
}

/// The slots of one runtime, and its mio registry.
pub(crate) struct IoState {
    registry: Registry,
    pages: [OnceLock<Box<[ScheduledIo]>>; PAGES],
    free: Mutex<FreeList>,
}

#[derive(Default)]
struct FreeList {
    free: Vec<usize>,
    next: usize,
}

/// (page, offset) of slot `index`: page `k` holds `FIRST_PAGE << k` slots.
fn locate(index: usize) -> (usize, usize) {
    let j = index + FIRST_PAGE;
    let k = (usize::BITS - 1 - j.leading_zeros()) as usize - FIRST_PAGE.trailing_zeros() as usize;
    (k, j - (FIRST_PAGE << k))
}

impl IoState {
    pub(crate) fn new(registry: &Registry) -> io::Result<IoState> {
        Ok(IoState {
            registry: registry.try_clone()?,
            pages: std::array::from_fn(|_| OnceLock::new()),
            free: Mutex::new(FreeList::default()),
        })
    }

    fn slot(&self, index: usize) -> Option<&ScheduledIo> {
        let (page, offset) = locate(index);
        self.pages.get(page)?.get()?.get(offset)
    }

    fn alloc(&self) -> io::Result<usize> {
        let index = {
            let mut f = crate::sync::lock(&self.free);
            match f.free.pop() {
                Some(i) => i,
                None => {
                    if f.next > INDEX_MASK {
                        return Err(io::Error::new(
                            io::ErrorKind::OutOfMemory,
                            "urgent: too many sockets registered with one runtime",
                        ));
                    }
                    f.next += 1;
                    f.next - 1
                }
            }
        };
        let (page, _) = locate(index);
        self.pages[page].get_or_init(|| {
            (0..FIRST_PAGE << page)
                .map(|_| ScheduledIo::new())
                .collect()
        });
        Ok(index)
    }

    fn release(&self, index: usize) {
        if let Some(slot) = self.slot(index) {
            slot.generation.fetch_add(1, AcqRel);
            slot.readiness.store(INITIAL, Release);
            let old = std::mem::take(&mut *slot.lock());
            drop(old);
        }
        crate::sync::lock(&self.free).free.push(index);
    }

    /// Called by the worker turning the driver, for each event.
    pub(crate) fn dispatch(&self, event: &mio::event::Event) {
        let token = event.token().0;
        let Some(slot) = self.slot(token & INDEX_MASK) else {
            return;
        };
        if slot.generation.load(Acquire) & GEN_MASK != token >> INDEX_BITS {
            // The source was deregistered (and maybe the slot reused) after
            // this event was queued.
            return;
        }
        let mut bits = 0;
        if event.is_readable() {
            bits |= READABLE;
        }
        if event.is_writable() {
            bits |= WRITABLE;
        }
        if event.is_read_closed() {
            bits |= READ_CLOSED;
        }
        if event.is_write_closed() {
            bits |= WRITE_CLOSED;
        }
        if event.is_error() {
            bits |= ERROR;
        }
        if bits != 0 {
            slot.set_ready(bits);
        }
    }

    /// At runtime shutdown: wake every task waiting on a socket (it then
    /// sees the shutdown).
    pub(crate) fn shutdown(&self) {
        for page in self.pages.iter() {
            if let Some(page) = page.get() {
                for slot in page.iter() {
                    slot.wake(READY_MASK);
                }
            }
        }
    }
}

fn shutdown_error() -> io::Error {
    io::Error::other("urgent: the runtime this socket belongs to has shut down")
}

/// One source's registration with a runtime's driver.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    index: usize,
}

impl Registration {
    fn new(shared: Arc<Shared>, source: &mut impl Source, interest: Interest) -> io::Result<Self> {
        if shared.is_shutdown() {
            return Err(shutdown_error());
        }
        let io = shared.driver().io();
        let index = io.alloc()?;
        let slot = io
            .slot(index)
            .expect("urgent internal error: slot not allocated");
        let gen = slot.generation.load(Acquire) & GEN_MASK;
        let token = Token(index | (gen << INDEX_BITS));
        if let Err(e) = io.registry.register(source, token, interest) {
            io.release(index);
            return Err(e);
        }
        shared.driver().source_added();
        Ok(Registration { shared, index })
    }

    fn slot(&self) -> &ScheduledIo {
        self.shared
            .driver()
            .io()
            .slot(self.index)
            .expect("urgent internal error: slot not allocated")
    }

    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        match self.slot().poll_ready(cx, dir) {
            Some(ev) => Poll::Ready(Ok(ev)),
            None if self.shared.is_shutdown() => Poll::Ready(Err(shutdown_error())),
            None => Poll::Pending,
        }
    }

    pub(crate) fn clear_readiness(&self, ev: ReadyEvent) {
        self.slot().clear_readiness(ev);
    }

    fn deregister(&mut self, source: &mut impl Source) {
        let _ = self.shared.driver().io().registry.deregister(source);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.driver().io().release(self.index);
        self.shared.driver().source_removed();
    }
}

/// A mio source registered with the current runtime, with the
/// poll-try-clear loop of edge-triggered readiness.
pub(crate) struct PollEvented<E: Source> {
    io: Option<E>,
    reg: Registration,
}

impl<E: Source> PollEvented<E> {
    /// Registers `io` with the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub(crate) fn new(mut io: E, interest: Interest, what: &str) -> io::Result<Self> {
        let handle = crate::runtime::context::current_or_panic(what);
        let reg = Registration::new(handle.shared, &mut io, interest)?;
        Ok(PollEvented { io: Some(io), reg })
    }

    pub(crate) fn get_ref(&self) -> &E {
        self.io
            .as_ref()
            .expect("urgent internal error: I/O source already taken")
    }

    pub(crate) fn registration(&self) -> &Registration {
        &self.reg
    }

    /// Polls `f` until it does not return `WouldBlock`, waiting for `dir`
    /// readiness in between.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        f: impl FnMut(&E) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io_until(cx, dir, f, |_| false)
    }

    /// [`poll_io`](Self::poll_io) for reads and writes of `len` bytes: a
    /// short transfer (`0 < n < len`) means the socket buffer was drained
    /// (or filled), so readiness is cleared at once, saving the `WouldBlock`
    /// syscall the next call would make (tokio does the same). An event that
    /// raced in keeps its bits, as with any clear.
    pub(crate) fn poll_io_len(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        len: usize,
        f: impl FnMut(&E) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.poll_io_until(cx, dir, f, |&n| n > 0 && n < len)
    }

    /// The poll-try-clear loop behind [`poll_io`](Self::poll_io) and
    /// [`poll_io_len`](Self::poll_io_len): readiness is cleared on
    /// `WouldBlock` (then `f` is polled again) and on a success for which
    /// `drained` says the socket has nothing more to give.
    fn poll_io_until<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut f: impl FnMut(&E) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        loop {
            let ev = std::task::ready!(self.reg.poll_ready(cx, dir))?;
            match f(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.reg.clear_readiness(ev),
                r => {
                    if matches!(&r, Ok(v) if drained(v)) {
                        self.reg.clear_readiness(ev);
                    }
                    return Poll::Ready(r);
                }
            }
        }
    }

    /// Tries `f` once if `dir` looks ready; `WouldBlock` otherwise (and
    /// then readiness is cleared).
    pub(crate) fn try_io<R>(
        &self,
        dir: Direction,
        f: impl FnOnce(&E) -> io::Result<R>,
    ) -> io::Result<R> {
        let Some(ev) = self.reg.slot().snapshot(dir) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let r = f(self.get_ref());
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.reg.clear_readiness(ev);
        }
        r
    }

    /// Waits until `dir` looks ready.
    pub(crate) async fn ready(&self, dir: Direction) -> io::Result<ReadyEvent> {
        std::future::poll_fn(|cx| self.reg.poll_ready(cx, dir)).await
    }

    /// `poll_io` as a future.
    pub(crate) async fn async_io<R>(
        &self,
        dir: Direction,
        mut f: impl FnMut(&E) -> io::Result<R>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_io(cx, dir, &mut f)).await
    }

    /// Deregisters and returns the source.
    pub(crate) fn into_inner(mut self) -> E {
        let mut io = self
            .io
            .take()
            .expect("urgent internal error: I/O source already taken");
        self.reg.deregister(&mut io);
        io
    }
}

impl<E: Source> Drop for PollEvented<E> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            self.reg.deregister(&mut io);
        }
    }
}

impl<E: Source + std::fmt::Debug> std::fmt::Debug for PollEvented<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.io {
            Some(io) => io.fmt(f),
            None => f.write_str("(taken)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_pages_without_gaps() {
        let mut expect = (0, 0);
        for i in 0..10_000 {
            let (p, o) = locate(i);
            assert_eq!((p, o), expect, "index {i}");
            assert!(o < FIRST_PAGE << p);
            expect = if o + 1 == FIRST_PAGE << p {
                (p + 1, 0)
            } else {
                (p, o + 1)
            };
        }
        assert!(locate(INDEX_MASK).0 < PAGES);
    }

    #[test]
    fn clear_keeps_bits_of_a_newer_event() {
        let s = ScheduledIo::new();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let ev = s.poll_ready(&mut cx, Direction::Read).unwrap();
        s.set_ready(READABLE); // raced in after the snapshot
        s.clear_readiness(ev);
        assert!(s.poll_ready(&mut cx, Direction::Read).is_some());
        let ev = s.poll_ready(&mut cx, Direction::Read).unwrap();
        s.clear_readiness(ev);
        assert!(s.poll_ready(&mut cx, Direction::Read).is_none());
        // Writable was never cleared.
        assert!(s.poll_ready(&mut cx, Direction::Write).is_some());
    }

    #[test]
    fn closed_bits_stay() {
        let s = ScheduledIo::new();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        s.set_ready(READ_CLOSED);
        let ev = s.poll_ready(&mut cx, Direction::Read).unwrap();
        s.clear_readiness(ev);
        assert!(s.poll_ready(&mut cx, Direction::Read).is_some());
    }
}
