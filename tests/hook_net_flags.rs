//! Non-blocking fds and socket timeouts inside coroutines: whatever the user set is what
//! the hooks honour and what `fcntl(F_GETFL)` shows.
//!
//! Conformance table (`support::conform`, run on a plain thread and in coroutines on 1 and 2
//! workers, records equal): an fd made non-blocking by `fcntl(F_SETFL)`, `ioctl(FIONBIO)`,
//! `set_nonblocking`, `SOCK_NONBLOCK` or `accept4(SOCK_NONBLOCK)` gets EAGAIN at once from
//! reads, writes and accepts, and `F_GETFL` shows exactly the user's O_NONBLOCK before and
//! after calls that waited; `SO_RCVTIMEO`/`SO_SNDTIMEO` (std's read/write timeouts) end a
//! wait with EAGAIN after at least the timeout; settings changed behind the hooks' back (by a
//! plain thread, through a dup, on a reused fd number) take effect at once.
//!
//! And `F_GETFL` seen from a sibling coroutine or a plain thread during a wait, or while
//! `accept` runs, never shows an O_NONBLOCK of openco's; a flag the user sets meanwhile stays.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::{c_int, EAGAIN, O_NONBLOCK, O_RDWR};
use support::conform::{errno, Record, Want::*};
use support::fd::*;
use support::{on_thread, rt_leak_on_panic, wait_then_wake};

const MIB: usize = 1 << 20;
const LATER: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_millis(50);

// Not in the table: a negative `SO_RCVTIMEO`, which Linux stores as "do not wait" but
// reports through `getsockopt` as 0, like "no timeout"; openco reads timeouts back from the
// kernel and waits (a known deviation, listed in the README's caveats).
conformance_table! {
    nonblocking_by_fcntl, nonblocking_by_ioctl, nonblocking_by_std, nonblocking_by_sock_flag,
    nonblocking_by_accept4, nonblocking_pipes_and_eventfds, read_timeouts,
    write_timeouts, flags_changed_by_a_plain_thread, flags_changed_through_a_dup,
    fd_number_reused_behind_the_hooks,
}

#[derive(Clone, Copy)]
enum How {
    Fcntl,
    Ioctl,
    Std,
    SockFlag,
    Accept4,
}

fn nonblocking_by_fcntl() -> Record {
    nonblocking_by(How::Fcntl)
}
fn nonblocking_by_ioctl() -> Record {
    nonblocking_by(How::Ioctl)
}
fn nonblocking_by_std() -> Record {
    nonblocking_by(How::Std)
}
fn nonblocking_by_sock_flag() -> Record {
    nonblocking_by(How::SockFlag)
}
fn nonblocking_by_accept4() -> Record {
    nonblocking_by(How::Accept4)
}

/// Sets or clears O_NONBLOCK the way `how` does it (for the flags it can change later).
fn set_nb(how: How, fd: RawFd, on: bool) -> c_int {
    match how {
        How::Fcntl | How::SockFlag | How::Accept4 => set_nonblocking_fcntl(fd, on),
        How::Ioctl => fionbio(fd, on),
        // A duplicate shares the open file description, so its status flags too.
        How::Std => TcpStream::from(own_dup(fd)).set_nonblocking(on).map_or(-1, |()| 0),
    }
}

/// A socket (and a listener) the user made non-blocking in one of five ways: reads and
/// accepts give EAGAIN at once, `F_GETFL` shows O_NONBLOCK before and after the calls; once
/// cleared, `F_GETFL` no longer shows it and a read waits for data written later.
fn nonblocking_by(how: How) -> Record {
    let mut r = Record::default();
    let listener = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    let lfd = listener.as_raw_fd();
    assert_eq!(bind(lfd, &SocketAddr::from(([127, 0, 0, 1], 0))), 0);
    // SAFETY: plain syscall on an fd we own.
    assert_eq!(unsafe { libc::listen(lfd, 16) }, 0);
    let addr = local_addr(lfd);
    let (ours, peer) = match how {
        How::SockFlag => {
            let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK));
            r.call("non-blocking connect", Err(libc::EINPROGRESS), || connect(fd.as_raw_fd(), &addr));
            r.fact("poll POLLOUT", poll_one(fd.as_raw_fd(), libc::POLLOUT, 10_000));
            (fd, own(accept(lfd)))
        }
        How::Accept4 => {
            let client: OwnedFd = TcpStream::connect(addr).unwrap().into();
            let fd = accept4(lfd, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            r.check("accept4(SOCK_NONBLOCK) gave an fd", fd >= 0);
            (own(fd), client)
        }
        _ => {
            let client: OwnedFd = TcpStream::connect(addr).unwrap().into();
            let peer = own(accept(lfd));
            r.call("set non-blocking", Ret(0), || set_nb(how, client.as_raw_fd(), true));
            (client, peer)
        }
    };
    let (fd, mut buf) = (ours.as_raw_fd(), [0u8; 16]);
    r.call("F_GETFL", Ret((O_RDWR | O_NONBLOCK).into()), || getfl(fd));
    r.call("read", Err(EAGAIN), || read(fd, &mut buf));
    r.call("readv", Err(EAGAIN), || readv(fd, &mut [&mut buf]));
    r.call("recv", Err(EAGAIN), || recv(fd, &mut buf, 0));
    r.call("recvfrom", Err(EAGAIN), || recvfrom(fd, &mut buf, 0).0);
    r.call("recvmsg", Err(EAGAIN), || recvmsg(fd, &mut buf, 0).0);
    r.fact("filled", fill(fd) > 0);
    r.call("write when full", Err(EAGAIN), || write(fd, &buf));
    r.call("send when full", Err(EAGAIN), || send(fd, &buf, 0));
    r.call("F_GETFL after the calls", Ret((O_RDWR | O_NONBLOCK).into()), || getfl(fd));
    r.call("peer writes", Ret(3), || write(peer.as_raw_fd(), b"abc"));
    r.call("read (data waiting)", Ret(3), || read(fd, &mut buf));
    let how_listener = if matches!(how, How::SockFlag | How::Accept4) { How::Fcntl } else { how };
    r.call("listener set non-blocking", Ret(0), || set_nb(how_listener, lfd, true));
    r.call("accept", Err(EAGAIN), || accept(lfd));
    r.call("accept4", Err(EAGAIN), || accept4(lfd, libc::SOCK_CLOEXEC));
    let _pending = TcpStream::connect(addr).unwrap();
    r.call("poll the listener", Ret(1), || poll_one(lfd, libc::POLLIN, 10_000).0);
    let accepted = accept(lfd);
    r.check("accept (pending) gave an fd", accepted >= 0);
    let accepted = own(accepted);
    r.call("F_GETFL of the accepted fd (not inherited)", Ret(O_RDWR.into()), || getfl(accepted.as_raw_fd()));
    r.call("listener F_GETFL", Ret((O_RDWR | O_NONBLOCK).into()), || getfl(lfd));
    r.call("clear non-blocking", Ret(0), || set_nb(how, fd, false));
    r.call("F_GETFL cleared", Ret(O_RDWR.into()), || getfl(fd));
    let writer = write_later(peer.as_raw_fd(), b"later", LATER);
    r.call("blocking read waits for data", Ret(5), || read(fd, &mut buf));
    writer.join().unwrap();
    r.call("F_GETFL after the wait", Ret(O_RDWR.into()), || getfl(fd));
    r
}

/// Pipes made non-blocking by `pipe2` and by `fcntl`, and an `EFD_NONBLOCK` eventfd.
fn nonblocking_pipes_and_eventfds() -> Record {
    let mut r = Record::default();
    let (rd, w) = pipe_with(O_NONBLOCK);
    r.call("pipe2(O_NONBLOCK) read", Err(EAGAIN), || read(rd.as_raw_fd(), &mut [0; 8]));
    r.call("F_GETFL read end", Ret((libc::O_RDONLY | O_NONBLOCK).into()), || getfl(rd.as_raw_fd()));
    r.fact("filled", fill(w.as_raw_fd()));
    r.call("write when full", Err(EAGAIN), || write(w.as_raw_fd(), b"x"));
    let (rd, _w) = pipe();
    r.call("fcntl O_NONBLOCK", Ret(0), || set_nonblocking_fcntl(rd.as_raw_fd(), true));
    r.call("read", Err(EAGAIN), || read(rd.as_raw_fd(), &mut [0; 8]));
    r.call("F_GETFL", Ret((libc::O_RDONLY | O_NONBLOCK).into()), || getfl(rd.as_raw_fd()));
    let ev = eventfd(0, libc::EFD_NONBLOCK);
    r.call("eventfd read", Err(EAGAIN), || read(ev.as_raw_fd(), &mut [0; 8]));
    r.call("eventfd write", Ret(8), || write(ev.as_raw_fd(), &(u64::MAX - 1).to_ne_bytes()));
    r.call("eventfd write past the max", Err(EAGAIN), || write(ev.as_raw_fd(), &1u64.to_ne_bytes()));
    r
}

/// `SO_RCVTIMEO` (std's `set_read_timeout`): a read with nothing coming fails with EAGAIN
/// (std: WouldBlock) after at least the timeout; data arriving in time is returned; `accept`
/// honours it too; zero means "no timeout".
fn read_timeouts() -> Record {
    let mut r = Record::default();
    let (c, s) = tcp_pair();
    let mut stream = TcpStream::from(c);
    let mut buf = [0u8; 16];
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    r.fact("read_timeout()", stream.read_timeout().unwrap());
    r.fact("getsockopt", get_timeout(stream.as_raw_fd(), libc::SO_RCVTIMEO));
    let start = Instant::now();
    r.fact("std read", stream.read(&mut buf).map_err(|e| (e.kind(), e.raw_os_error())));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    for (name, call) in [("recv", recv_plain as fn(RawFd, &mut [u8]) -> isize), ("read", read), ("readv", readv1)] {
        let start = Instant::now();
        r.call(name, Err(EAGAIN), || call(stream.as_raw_fd(), &mut buf));
        r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    }
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let writer = write_later(s.as_raw_fd(), b"abc", LATER);
    r.fact("data in time", stream.read(&mut buf).map_err(|e| e.kind()));
    writer.join().unwrap();
    stream.set_read_timeout(None).unwrap();
    r.fact("cleared", get_timeout(stream.as_raw_fd(), libc::SO_RCVTIMEO));
    let writer = write_later(s.as_raw_fd(), b"xy", LATER);
    r.fact("no timeout: waits for data", stream.read(&mut buf).map_err(|e| e.kind()));
    writer.join().unwrap();
    let (u, _peer) = UnixStream::pair().unwrap();
    u.set_read_timeout(Some(TIMEOUT)).unwrap();
    let start = Instant::now();
    r.fact("unix read", (&u).read(&mut buf).map_err(|e| (e.kind(), e.raw_os_error())));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    r.call("listener SO_RCVTIMEO", Ret(0), || set_timeout(listener.as_raw_fd(), libc::SO_RCVTIMEO, tv(0, 50_000)));
    let start = Instant::now();
    r.call("accept", Err(EAGAIN), || accept(listener.as_raw_fd()));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    r
}

/// `SO_SNDTIMEO` (std's `set_write_timeout`) on a full send buffer: EAGAIN (std: WouldBlock)
/// after at least the timeout when nothing could be sent; a TCP write may send part.
fn write_timeouts() -> Record {
    let mut r = Record::default();
    let (a, _b) = UnixStream::pair().unwrap();
    r.fact("filled", fill(a.as_raw_fd()) > 0);
    a.set_write_timeout(Some(TIMEOUT)).unwrap();
    r.fact("getsockopt", get_timeout(a.as_raw_fd(), libc::SO_SNDTIMEO));
    for (name, call) in [("write", write as fn(RawFd, &[u8]) -> isize), ("send", send_plain), ("writev", writev1)] {
        let start = Instant::now();
        r.call(name, Err(EAGAIN), || call(a.as_raw_fd(), b"x"));
        r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    }
    let start = Instant::now();
    r.fact("std write_all", (&a).write_all(b"x").map_err(|e| (e.kind(), e.raw_os_error())));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    let (c, _s) = tcp_pair();
    let c = TcpStream::from(c);
    r.fact("filled", fill(c.as_raw_fd()) > 0);
    c.set_write_timeout(Some(TIMEOUT)).unwrap();
    let start = Instant::now();
    let n = write(c.as_raw_fd(), &vec![3u8; 16 * MIB]);
    let err = errno();
    r.check("TCP: part sent or EAGAIN", (n > 0 && n < 16 * MIB as isize) || (n == -1 && err == EAGAIN));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    r
}

fn flags_changed_by_a_plain_thread() -> Record {
    flags_changed(false)
}
fn flags_changed_through_a_dup() -> Record {
    flags_changed(true)
}

/// O_NONBLOCK and SO_RCVTIMEO changed on a socket's open file description from elsewhere (a
/// plain thread, or a duplicate fd number) after the socket has waited once: its next calls
/// follow the new settings (anything remembered about the fd must not go stale).
fn flags_changed(through_dup: bool) -> Record {
    let mut r = Record::default();
    let (c, s) = tcp_pair();
    let (fd, peer, mut buf) = (c.as_raw_fd(), s.as_raw_fd(), [0u8; 8]);
    let dup = own_dup(fd);
    let dup_fd = dup.as_raw_fd();
    let change = |f: fn(RawFd) -> c_int| if through_dup { f(dup_fd) } else { on_thread(move || f(fd)) };
    let writer = write_later(peer, b"abc", LATER);
    r.call("read waits", Ret(3), || read(fd, &mut buf));
    writer.join().unwrap();
    r.call("set O_NONBLOCK elsewhere", Ret(0), || change(|fd| set_nonblocking_fcntl(fd, true)));
    r.call("F_GETFL", Ret((O_RDWR | O_NONBLOCK).into()), || getfl(fd));
    r.call("read", Err(EAGAIN), || read(fd, &mut buf));
    r.call("FIONBIO off elsewhere", Ret(0), || change(|fd| fionbio(fd, false)));
    let writer = write_later(peer, b"def", LATER);
    r.call("read waits again", Ret(3), || read(fd, &mut buf));
    writer.join().unwrap();
    r.call("SO_RCVTIMEO 50 ms elsewhere", Ret(0), || change(|fd| set_timeout(fd, libc::SO_RCVTIMEO, tv(0, 50_000))));
    let start = Instant::now();
    r.call("read times out", Err(EAGAIN), || read(fd, &mut buf));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    r.call("SO_RCVTIMEO cleared elsewhere", Ret(0), || change(|fd| set_timeout(fd, libc::SO_RCVTIMEO, tv(0, 0))));
    let writer = write_later(peer, b"ghi", 3 * TIMEOUT);
    r.call("read waits past the old timeout", Ret(3), || read(fd, &mut buf));
    writer.join().unwrap();
    r
}

/// A plain thread closes an fd number (libc's `close`, no hook involved) and puts a new
/// socket there with `dup2`: the number's old settings (O_NONBLOCK, SO_RCVTIMEO) do not
/// follow it to the new socket.
fn fd_number_reused_behind_the_hooks() -> Record {
    let mut r = Record::default();
    let mut buf = [0u8; 8];
    let (_p1, s1) = unix_pair();
    let n = move_to(s1, fd_slot(1));
    let replace = |r: &mut Record| -> OwnedFd {
        let (peer, new) = unix_pair();
        r.call("closed and replaced by a plain thread", Ret(n.into()), || {
            on_thread(move || {
                close(n);
                dup2(new.as_raw_fd(), n)
            })
        });
        peer
    };
    r.call("O_NONBLOCK", Ret(0), || set_nonblocking_fcntl(n, true));
    r.call("read", Err(EAGAIN), || read(n, &mut buf));
    let p2 = replace(&mut r);
    r.call("F_GETFL", Ret(O_RDWR.into()), || getfl(n));
    let writer = write_later(p2.as_raw_fd(), b"abc", LATER);
    r.call("read waits", Ret(3), || read(n, &mut buf));
    writer.join().unwrap();
    r.call("SO_RCVTIMEO 50 ms", Ret(0), || set_timeout(n, libc::SO_RCVTIMEO, tv(0, 50_000)));
    let start = Instant::now();
    r.call("read times out", Err(EAGAIN), || read(n, &mut buf));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    let p3 = replace(&mut r);
    let writer = write_later(p3.as_raw_fd(), b"def", 3 * TIMEOUT);
    r.call("read waits past the old timeout", Ret(3), || read(n, &mut buf));
    writer.join().unwrap();
    r.call("close", Ret(0), || close(n));
    r
}

rt_test! {
    /// While a coroutine waits in `read` on a blocking fd, `F_GETFL` (from a sibling coroutine,
    /// from a plain thread, and after the wait) shows the user's flags: no O_NONBLOCK.
    fn flags_during_a_wait_are_the_users(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        let (a, b) = unix_pair();
        let b = Arc::new(b);
        let b2 = b.clone();
        let (read_n, seen) = wait_then_wake(
            &rt,
            move || read(b.as_raw_fd(), &mut [0; 8]),
            move || {
                let fd = b2.as_raw_fd();
                let in_sibling = getfl(fd);
                let on_thread = std::thread::spawn(move || getfl(fd)).join().unwrap();
                write(a.as_raw_fd(), b"abc");
                (in_sibling, on_thread, b2)
            },
        );
        assert_eq!(read_n, 3);
        assert_eq!(seen.0, O_RDWR, "F_GETFL in a sibling coroutine during the wait");
        assert_eq!(seen.1, O_RDWR, "F_GETFL on a plain thread during the wait");
        assert_eq!(getfl(seen.2.as_raw_fd()), O_RDWR, "F_GETFL after the wait");
    }
}

/// `accept` has no per-call non-blocking flag, so the hook sets O_NONBLOCK on the listener
/// for the one system call. A plain thread reading `F_GETFL` in a loop while coroutines
/// accept 200 connections must never see it. (A race detector: it can only fail if the
/// window shows, but then it fails most runs.)
#[test]
fn accepts_never_show_their_o_nonblock() {
    const CONNECTIONS: usize = 200;
    let rt = rt_leak_on_panic(2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lfd = listener.as_raw_fd();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        let (mut reads, mut seen) = (0u64, Vec::new());
        while !stop2.load(SeqCst) || reads == 0 {
            let flags = getfl(lfd);
            if flags != O_RDWR {
                seen.push(flags);
            }
            reads += 1;
        }
        (reads, seen)
    });
    let acceptor = rt.blocking(move || {
        for _ in 0..CONNECTIONS {
            listener.accept().unwrap();
        }
        listener
    });
    let connectors: Vec<_> = (0..CONNECTIONS).map(|_| rt.blocking(move || TcpStream::connect(addr).is_ok())).collect();
    for c in connectors {
        assert!(support::join(c).unwrap());
    }
    let _listener = support::join(acceptor).unwrap();
    stop.store(true, SeqCst);
    let (reads, seen) = watcher.join().unwrap();
    assert!(seen.is_empty(), "F_GETFL on a plain thread saw {:?} in {reads} reads", &seen[..seen.len().min(5)]);
}

rt_test! {
    /// A flag the user sets while a coroutine waits in `accept` (from a plain thread and
    /// from a sibling coroutine) is still set after the accept: the hook's own O_NONBLOCK
    /// window never restores over it.
    fn a_flag_set_during_an_accept_stays(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        for from_thread in [true, false] {
            let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
            let addr = listener.local_addr().unwrap();
            let (l1, l2) = (listener.clone(), listener.clone());
            let (accepted, set) = wait_then_wake(
                &rt,
                move || loop {
                    // On two workers the flag may be set before this accept starts: then it
                    // must not wait, and polls instead.
                    match l1.accept() {
                        Ok(_) => return true,
                        Result::Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            poll_one(l1.as_raw_fd(), libc::POLLIN, 20_000);
                        }
                        Result::Err(_) => return false,
                    }
                },
                move || {
                    let fd = l2.as_raw_fd();
                    let set = if from_thread { on_thread(move || set_nonblocking_fcntl(fd, true)) } else { set_nonblocking_fcntl(fd, true) };
                    TcpStream::connect(addr).unwrap();
                    set
                },
            );
            assert_eq!(set, 0);
            assert!(accepted, "the waiting accept got its connection");
            assert_eq!(getfl(listener.as_raw_fd()), O_RDWR | O_NONBLOCK, "set from a plain thread: {from_thread}");
        }
    }
}
