//! The idle lot: where a plain-http keep-alive connection waits once it has been
//! idle for the listener's `idle_park_ms` (100 ms by default). Its task ends and its socket leaves tokio's reactor for
//! the lot's own epoll set, so a long-idle connection costs its socket and one
//! slot: its file descriptor, a deadline and its `Conn` by value (about 130
//! bytes, in chunks of slots, so a thousand parked connections are a few dense
//! allocations rather than many small ones scattered among short-lived ones). When the client sends
//! again, the socket goes back to tokio and a new task serves it; when the
//! client closes, the keep-alive timeout passes or the listener stops, the lot
//! closes it.
//!
//! One lot per listener, with one task (`run`) and one epoll descriptor.

use std::io;
use std::net::TcpStream as StdTcpStream;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Conn;
use crate::clock;

/// Events taken per `epoll_wait`.
const BATCH: usize = 256;
/// How often parked connections are checked against their deadline.
const SWEEP: Duration = Duration::from_millis(250);
/// Slots per chunk: chunks never move or grow, so memory follows the number of
/// parked connections in steps of one chunk (about 34 KiB), not by doubling.
const CHUNK: usize = 256;

struct Parked {
    stream: StdTcpStream,
    /// `clock::now_ms` after which the connection is closed.
    deadline_ms: u64,
    conn: Conn,
}

#[derive(Default)]
struct Slots {
    chunks: Vec<Vec<Option<Parked>>>,
    free: Vec<u32>,
    used: usize,
}

impl Slots {
    /// A free key (its slot empty), or None past `u32` keys.
    fn reserve(&mut self) -> Option<u32> {
        if let Some(k) = self.free.pop() {
            return Some(k);
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let last = &mut self.chunks[n];
        last.push(None);
        u32::try_from(n * CHUNK + last.len() - 1).ok()
    }

    fn slot(&mut self, key: u32) -> Option<&mut Option<Parked>> {
        let k = key as usize;
        self.chunks.get_mut(k / CHUNK)?.get_mut(k % CHUNK)
    }

    /// Keys of parked connections whose deadline is at or before `now_ms`.
    fn expired(&self, now_ms: u64) -> Vec<u32> {
        let all = self.chunks.iter().flatten().enumerate();
        all.filter(|(_, p)| p.as_ref().is_some_and(|p| p.deadline_ms <= now_ms)).map(|(k, _)| k as u32).collect()
    }
}

struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.0.as_raw_fd()
    }
}

pub struct IdleLot {
    epoll: AsyncFd<EpollFd>,
    slots: Mutex<Slots>,
    /// The listener's: cancelled, every parked connection closes at once.
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// Whether a woken socket has bytes to serve: a close alone (`EPOLLRDHUP` and a
/// zero-byte peek) or an error does not.
fn has_data(stream: &StdTcpStream, ev: EpollFlags) -> bool {
    if !ev.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
        return true;
    }
    let mut one = [0u8; 1];
    matches!(stream.peek(&mut one), Ok(n) if n > 0)
}

impl IdleLot {
    /// A lot for one listener; its task runs until `cancel` fires.
    pub fn start(cancel: CancellationToken, tasks: &TaskTracker) -> io::Result<Arc<IdleLot>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: `EpollFd` owns its descriptor (the `OwnedFd` in nix's `Epoll`)
        // and is dropped only with the `AsyncFd`, after it deregisters: the
        // descriptor stays open for as long as it is registered.
        let epoll = unsafe { AsyncFd::register_with_interest(EpollFd(epoll), tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let lot = Arc::new(IdleLot { epoll, slots: Mutex::new(Slots::default()), cancel, tasks: tasks.clone() });
        tasks.spawn(Arc::clone(&lot).run());
        Ok(lot)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.slots().used
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parks an idle connection until `idle_left` has passed. A connection whose
    /// `Conn` is still shared elsewhere is given back (`Err`) to wait in its
    /// task. On any other failure the connection is closed, as an idle timeout
    /// would.
    pub(super) fn park(
        &self,
        stream: TcpStream,
        conn: Arc<Conn>,
        idle_left: Duration,
    ) -> Result<(), (TcpStream, Arc<Conn>)> {
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        let conn = match Arc::try_unwrap(conn) {
            Ok(c) => c,
            Err(c) => return Err((stream, c)),
        };
        let Ok(stream) = stream.into_std() else { return Ok(()) };
        let deadline_ms = clock::now_ms() + idle_left.as_millis() as u64;
        let mut s = self.slots();
        let Some(key) = s.reserve() else { return Ok(()) };
        let event = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, u64::from(key));
        if let Err(e) = self.epoll.get_ref().0.add(stream.as_fd(), event) {
            tracing::debug!(error = %e, "could not park an idle connection; closed");
            s.free.push(key);
            return Ok(());
        }
        if let Some(slot) = s.slot(key) {
            *slot = Some(Parked { stream, deadline_ms, conn });
            s.used += 1;
        }
        Ok(())
    }

    /// Takes a connection out of the lot (and the epoll set).
    fn take(&self, s: &mut Slots, key: u32) -> Option<Parked> {
        let p = s.slot(key)?.take()?;
        let _ = self.epoll.get_ref().0.delete(p.stream.as_fd());
        s.free.push(key);
        s.used -= 1;
        Some(p)
    }

    /// A parked connection has something to say: back to tokio and a task.
    fn wake(&self, p: Parked) {
        let Parked { stream, conn, .. } = p;
        match TcpStream::from_std(stream) {
            Ok(stream) => {
                let cancel = self.cancel.clone();
                self.tasks.spawn(super::h1::serve(stream, Arc::new(conn), cancel));
            }
            Err(e) => tracing::debug!(error = %e, "could not resume a parked connection; closed"),
        }
    }

    /// Closes parked connections past their deadline.
    fn sweep(&self) {
        let now = clock::now_ms();
        let mut s = self.slots();
        for k in s.expired(now) {
            drop(self.take(&mut s, k));
        }
        // Give memory back after a burst of parked connections went away.
        if s.used == 0 && s.chunks.len() > 1 {
            *s = Slots::default();
        }
    }

    async fn run(self: Arc<Self>) {
        let mut events = vec![EpollEvent::empty(); BATCH];
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tick.tick() => self.sweep(),
                ready = self.epoll.readable() => {
                    let Ok(mut guard) = ready else { break };
                    let n = match guard.get_inner().0.wait(&mut events, EpollTimeout::ZERO) {
                        Ok(n) => n,
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "idle lot: epoll_wait failed; parked connections closed");
                            break;
                        }
                    };
                    if n < events.len() {
                        guard.clear_ready();
                    }
                    let mut woken = Vec::with_capacity(n);
                    {
                        let mut s = self.slots();
                        for ev in &events[..n] {
                            let Ok(key) = u32::try_from(ev.data()) else { continue };
                            if let Some(p) = self.take(&mut s, key) {
                                // Data (perhaps with a close behind it) is served;
                                // a bare close or an error just closes.
                                if has_data(&p.stream, ev.events()) {
                                    woken.push(p);
                                }
                            }
                        }
                    }
                    for p in woken {
                        self.wake(p);
                    }
                }
            }
        }
        // Stopping: every parked connection closes now.
        *self.slots() = Slots::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fill_chunks_in_order_and_freed_keys_come_back_first() {
        let mut s = Slots::default();
        let keys: Vec<u32> = (0..CHUNK + 5).map(|_| s.reserve().unwrap()).collect();
        assert_eq!(keys, (0..(CHUNK + 5) as u32).collect::<Vec<_>>());
        assert_eq!(s.chunks.len(), 2);
        assert!(s.chunks.iter().all(|c| c.capacity() == CHUNK), "chunks never grow");
        assert!(s.slot(CHUNK as u32 + 4).is_some_and(|p| p.is_none()));
        assert!(s.slot(CHUNK as u32 + 5).is_none(), "a key never reserved has no slot");
        s.free.push(7);
        assert_eq!(s.reserve(), Some(7));
        assert_eq!(s.reserve(), Some(CHUNK as u32 + 5));
        assert!(s.expired(u64::MAX).is_empty(), "empty slots never expire");
    }
}
