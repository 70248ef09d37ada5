//! Relaying bytes between two TCP sockets until both directions are done: on Linux
//! with splice(2) through one pipe per direction, so payload never enters user
//! space, and with a buffered copy where the kernel refuses splice for a socket
//! (EINVAL/ENOSYS). A direction that reaches end of stream shuts down the write
//! side of the other socket and the other direction goes on (half-close). A
//! connection with no byte moved either way for the idle timeout is ended.
//! Choosing backends, counting per listener and logging are the caller's.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// splice(2) through a pipe, falling back to `Buffered` per direction when the
    /// kernel refuses it before any byte moved.
    Splice,
    /// read(2)/write(2) through a 64 KiB buffer.
    Buffered,
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached end of stream.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// A socket failed (reset, broken pipe...); the other direction was abandoned.
    Error(io::Error),
}

#[derive(Debug)]
pub struct Outcome {
    pub end: End,
    /// Bytes delivered from `a` to `b`.
    pub a_to_b: u64,
    /// Bytes delivered from `b` to `a`.
    pub b_to_a: u64,
}

/// Relays between `a` and `b` until both directions are closed, one fails, or
/// nothing moves for `idle`.
pub async fn relay(a: &TcpStream, b: &TcpStream, idle: Duration, mode: Mode) -> Outcome {
    let a_to_b = AtomicU64::new(0);
    let b_to_a = AtomicU64::new(0);
    let both = async { tokio::try_join!(one_way(a, b, mode, &a_to_b), one_way(b, a, mode, &b_to_a)) };
    let end = tokio::select! {
        r = both => match r {
            Ok(_) => End::Closed,
            Err(e) => End::Error(e),
        },
        _ = idle_watch(&a_to_b, &b_to_a, idle) => End::Idle,
    };
    Outcome { end, a_to_b: a_to_b.load(Ordering::Relaxed), b_to_a: b_to_a.load(Ordering::Relaxed) }
}

/// Returns once neither counter moved for `idle`. The data path only bumps its
/// byte counter; the cost of idle tracking is this one timer per connection, which
/// ticks a few times per timeout (so a connection ends between `idle` and
/// `idle` + one tick).
async fn idle_watch(x: &AtomicU64, y: &AtomicU64, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = u64::MAX;
    let mut since = tokio::time::Instant::now();
    loop {
        timer.tick().await;
        let now = x.load(Ordering::Relaxed).wrapping_add(y.load(Ordering::Relaxed));
        if now != seen {
            seen = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= idle {
            return;
        }
    }
}

/// Moves `from` -> `to` until end of stream, then shuts down `to`'s write side.
async fn one_way(from: &TcpStream, to: &TcpStream, mode: Mode, moved: &AtomicU64) -> io::Result<()> {
    if mode == Mode::Splice {
        match Pipe::new() {
            Ok(pipe) => match splice_loop(from, to, &pipe, moved).await {
                Ok(()) => return Ok(()),
                Err(SpliceError::Io(e)) => return Err(e),
                Err(SpliceError::Unsupported(e)) => {
                    tracing::debug!(error = %e, "splice refused for this socket pair; copying through a buffer");
                }
            },
            // Out of pipes (EMFILE/ENFILE): the buffer path still works.
            Err(e) => tracing::debug!(error = %e, "no pipe for splice; copying through a buffer"),
        }
    }
    copy_loop(from, to, moved).await
}

/// A pipe whose both ends are non-blocking.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Bytes asked of one splice call; the kernel moves at most what the pipe holds.
const SPLICE_CHUNK: usize = 1 << 20;
/// Pipe capacity asked for (the default is 64 KiB); larger pipes mean fewer
/// syscalls per byte on fast links. Refused sizes leave the default.
const PIPE_SIZE: i32 = 256 * 1024;

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let _ = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { read, write })
    }
}

enum SpliceError {
    /// The kernel cannot splice these descriptors; nothing was lost.
    Unsupported(io::Error),
    Io(io::Error),
}

impl From<io::Error> for SpliceError {
    fn from(e: io::Error) -> Self {
        SpliceError::Io(e)
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP))
}

/// Socket -> pipe -> socket. The pipe is filled only when empty, so a splice into
/// it that reports EAGAIN always means "the socket has nothing", and one out of it
/// always means "the socket cannot take more": readiness is never cleared for the
/// wrong reason.
async fn splice_loop(from: &TcpStream, to: &TcpStream, pipe: &Pipe, moved: &AtomicU64) -> Result<(), SpliceError> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut in_pipe = 0usize;
    let mut started = false;
    loop {
        if in_pipe == 0 {
            from.readable().await?;
            let r = from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, &pipe.write, None, SPLICE_CHUNK, flags).map_err(io::Error::from)
            });
            match r {
                Ok(0) => {
                    shutdown_write(to)?;
                    return Ok(());
                }
                Ok(n) => in_pipe = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if !started && unsupported(&e) => return Err(SpliceError::Unsupported(e)),
                Err(e) => return Err(e.into()),
            }
        } else {
            to.writable().await?;
            let r = to.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, to.as_fd(), None, in_pipe, flags).map_err(io::Error::from)
            });
            match r {
                Ok(n) => {
                    in_pipe -= n;
                    started = true;
                    moved.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if !started && unsupported(&e) => {
                    // Bytes already in the pipe must not be lost: hand them over by
                    // read/write before the caller switches to the buffer path.
                    drain_pipe(pipe, in_pipe, to, moved).await?;
                    return Err(SpliceError::Unsupported(e));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

async fn drain_pipe(pipe: &Pipe, mut left: usize, to: &TcpStream, moved: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; left.min(SPLICE_CHUNK)];
    while left > 0 {
        let want = left.min(buf.len());
        let n = nix::unistd::read(&pipe.read, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        write_all(to, &buf[..n]).await?;
        moved.fetch_add(n as u64, Ordering::Relaxed);
        left -= n;
    }
    Ok(())
}

/// The buffered path, on shared references so both directions run at once.
async fn copy_loop(from: &TcpStream, to: &TcpStream, moved: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => {
                shutdown_write(to)?;
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        write_all(to, &buf[..n]).await?;
        moved.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Writes all of `bytes` to a socket shared with a concurrent reader.
pub async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Passes end of stream on: the peer of `to` reads EOF, and can still send.
fn shutdown_write(to: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write) {
        // The peer is gone already; the other direction will notice on its own.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected loopback pairs: (client, proxy side A) and (proxy side B, server).
    async fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
        async fn pair() -> (TcpStream, TcpStream) {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            (c, s)
        }
        (pair().await, pair().await)
    }

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Each end writes its pattern, half-closes, and reads the other's to EOF.
    async fn exchange(mode: Mode) {
        let ((mut client, pa), (pb, mut server)) = pairs().await;
        let relay = tokio::spawn(async move { relay(&pa, &pb, Duration::from_secs(10), mode).await });
        let up = pattern(1, 3 << 20);
        let down = pattern(2, 5 << 20);
        let (up2, down2) = (up.clone(), down.clone());
        let c = tokio::spawn(async move {
            let (mut r, mut w) = client.split();
            let write = async {
                w.write_all(&up2).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let read = r.read_to_end(&mut got);
            let ((), n) = tokio::join!(write, read);
            n.unwrap();
            got
        });
        let s = tokio::spawn(async move {
            let (mut r, mut w) = server.split();
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            // The client has half-closed; it must still receive all of this.
            w.write_all(&down2).await.unwrap();
            w.shutdown().await.unwrap();
            got
        });
        let (got_down, got_up) = (c.await.unwrap(), s.await.unwrap());
        assert!(got_up == up, "client->server bytes differ ({} vs {})", got_up.len(), up.len());
        assert!(got_down == down, "server->client bytes differ ({} vs {})", got_down.len(), down.len());
        let out = tokio::time::timeout(Duration::from_secs(5), relay).await.unwrap().unwrap();
        assert!(matches!(out.end, End::Closed), "{:?}", out.end);
        assert_eq!((out.a_to_b, out.b_to_a), (up.len() as u64, down.len() as u64));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn splice_relays_both_ways_with_half_close() {
        exchange(Mode::Splice).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_relays_both_ways_with_half_close() {
        exchange(Mode::Buffered).await;
    }

    #[tokio::test]
    async fn silence_ends_the_relay_after_the_idle_timeout() {
        for mode in [Mode::Splice, Mode::Buffered] {
            let ((mut client, pa), (pb, _server)) = pairs().await;
            let started = std::time::Instant::now();
            let relay = tokio::spawn(async move { relay(&pa, &pb, Duration::from_millis(200), mode).await });
            // Traffic for 400 ms keeps it open...
            for _ in 0..8 {
                client.write_all(b"x").await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(!relay.is_finished(), "{mode:?}: closed while active");
            // ...then silence closes it.
            let out = tokio::time::timeout(Duration::from_secs(3), relay).await.unwrap().unwrap();
            assert!(matches!(out.end, End::Idle), "{mode:?}: {:?}", out.end);
            assert_eq!(out.a_to_b, 8);
            assert!(started.elapsed() < Duration::from_millis(1500), "{mode:?}: {:?}", started.elapsed());
        }
    }

    #[tokio::test]
    async fn a_reset_ends_both_directions() {
        let ((client, pa), (pb, _server)) = pairs().await;
        let relay = tokio::spawn(async move { relay(&pa, &pb, Duration::from_secs(10), Mode::Splice).await });
        // SO_LINGER 0 makes close send RST.
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
        drop(client);
        let out = tokio::time::timeout(Duration::from_secs(3), relay).await.unwrap().unwrap();
        assert!(matches!(out.end, End::Error(_)), "{:?}", out.end);
    }
}
