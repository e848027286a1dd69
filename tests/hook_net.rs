//! Conformance of the socket, pipe and eventfd IO hooks (`socket`, `connect`, `accept`,
//! `read`, `readv`, `recv`, `recvfrom`, `recvmsg`, `write`, `writev`, `send`, `sendto`,
//! `sendmsg`, `shutdown`, `close`): results and errno inside a coroutine are libc's.
//!
//! A table of scenarios (`conformance_table!`): each makes libc calls and records every
//! result and errno (`support::conform`); it runs on a plain thread and inside a coroutine on
//! 1 and 2 workers, and the three records must be equal. Any peer a scenario needs is a plain
//! thread, so it behaves the same wherever the scenario runs. Covered: EOF, zero-length IO,
//! partial writes on non-blocking fds and complete ones on blocking fds, refused, timed-out,
//! reset and broken connections, EBADF/EFAULT/EINVAL/ENOTCONN/ENOTSOCK, recv flags, UDP and
//! fd passing, over TCP, unix sockets, pipes and eventfds.
//!
//! See also `hook_net_flags.rs` (non-blocking fds, timeouts, `F_GETFL`) and
//! `hook_net_wait.rs` (each call suspends; errno across a suspension).

#[macro_use]
mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use libc::{c_int, EAGAIN, EBADF, EFAULT, EINVAL, EPIPE, O_NONBLOCK, O_RDWR};
use support::conform::{errno, set_errno, Record, Want::*};
use support::fd::*;

const MIB: usize = 1 << 20;
const LATER: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_millis(50);

conformance_table! {
    tcp_eof, unix_eof, pipe_eof, tcp_zero_length, unix_zero_length, pipe_zero_length, eventfd_rules,
    tcp_partial_writes, unix_partial_writes, pipe_partial_writes, tcp_full_writes, unix_full_writes,
    pipe_full_writes, connect_refused, connect_ok, connect_timeouts, connection_reset, broken_pipe,
    not_connected, bad_fds, not_sockets, bad_pointers, bad_arguments, recv_flags, udp, fd_passing,
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn tcp_eof() -> Record {
    eof(tcp_pair(), true)
}
fn unix_eof() -> Record {
    eof(unix_pair(), true)
}
fn pipe_eof() -> Record {
    let (r, w) = pipe();
    eof((w, r), false)
}

/// The writer sends 3 bytes and closes: the reader gets them, then every read call gives 0.
fn eof((w, rd): (OwnedFd, OwnedFd), socket: bool) -> Record {
    let mut r = Record::default();
    let (fd, mut buf) = (rd.as_raw_fd(), [0u8; 16]);
    r.call("write 3", Ret(3), || write(w.as_raw_fd(), b"abc"));
    drop(w);
    r.call("read", Ret(3), || read(fd, &mut buf));
    r.call("read at EOF", Ret(0), || read(fd, &mut buf));
    r.call("readv at EOF", Ret(0), || {
        let (x, y) = buf.split_at_mut(4);
        readv(fd, &mut [x, y])
    });
    if socket {
        r.call("recv at EOF", Ret(0), || recv(fd, &mut buf, 0));
        r.call("recvfrom at EOF", Ret(0), || recvfrom(fd, &mut buf, 0).0);
        r.call("recvmsg at EOF", Ret(0), || recvmsg(fd, &mut buf, 0).0);
    }
    r
}

fn tcp_zero_length() -> Record {
    zero_length(tcp_pair(), true)
}
fn unix_zero_length() -> Record {
    zero_length(unix_pair(), true)
}
fn pipe_zero_length() -> Record {
    let (r, w) = pipe();
    zero_length((w, r), false)
}

/// Zero-length reads and writes return 0 at once, with or without data waiting (`recv` of 0
/// bytes is only asked with data waiting: on an empty TCP socket libc's blocks).
fn zero_length((w, rd): (OwnedFd, OwnedFd), socket: bool) -> Record {
    let mut r = Record::default();
    let (w, fd) = (w.as_raw_fd(), rd.as_raw_fd());
    r.call("read 0, nothing waiting", Ret(0), || read(fd, &mut []));
    r.call("readv of no iovec, nothing waiting", Ret(0), || readv(fd, &mut []));
    r.call("readv of an empty iovec, nothing waiting", Ret(0), || readv(fd, &mut [&mut []]));
    r.call("write 0", Ret(0), || write(w, &[]));
    r.call("writev of no iovec", Ret(0), || writev(w, &[]));
    if socket {
        r.call("send 0", Ret(0), || send(w, &[], 0));
        r.call("sendto 0", Ret(0), || sendto(w, &[], 0, None));
        r.call("sendmsg 0", Ret(0), || sendmsg(w, &[], 0));
    }
    r.call("write 1", Ret(1), || write(w, b"x"));
    r.call("read 0, data waiting", Ret(0), || read(fd, &mut []));
    if socket {
        r.call("recv 0, data waiting", Ret(0), || recv(fd, &mut [], 0));
        r.call("recvmsg 0, data waiting", Ret(0), || recvmsg(fd, &mut [], 0).0);
    }
    r.call("read 1", Ret(1), || read(fd, &mut [0; 4]));
    r
}

/// eventfd: 8-byte reads and writes only, EINVAL otherwise; a read returns the counter and
/// resets it; a blocking read waits for a write from a plain thread.
fn eventfd_rules() -> Record {
    let mut r = Record::default();
    let ev = eventfd(0, 0);
    let fd = ev.as_raw_fd();
    let mut buf = [0u8; 8];
    r.call("read 0", Err(EINVAL), || read(fd, &mut []));
    r.call("read 4", Err(EINVAL), || read(fd, &mut buf[..4]));
    r.call("write 0", Err(EINVAL), || write(fd, &[]));
    r.call("write u64::MAX", Err(EINVAL), || write(fd, &u64::MAX.to_ne_bytes()));
    r.call("write 3", Ret(8), || write(fd, &3u64.to_ne_bytes()));
    r.call("write 4", Ret(8), || write(fd, &4u64.to_ne_bytes()));
    r.call("read", Ret(8), || read(fd, &mut buf));
    r.fact("counter", u64::from_ne_bytes(buf));
    let writer = write_later(fd, 9u64.to_ne_bytes(), LATER);
    r.call("blocking read, written later", Ret(8), || read(fd, &mut buf));
    r.fact("counter", u64::from_ne_bytes(buf));
    r.fact("writer", writer.join().unwrap());
    r
}

fn tcp_partial_writes() -> Record {
    partial_writes(tcp_pair(), true)
}
fn unix_partial_writes() -> Record {
    partial_writes(unix_pair(), true)
}
fn pipe_partial_writes() -> Record {
    let (r, w) = pipe();
    partial_writes((w, r), false)
}

/// On a non-blocking fd a big write stores what fits and returns that count; once full,
/// writes give EAGAIN, except zero-length ones (0, also on a blocking fd); `MSG_DONTWAIT`
/// gives EAGAIN on a full blocking socket instead of waiting.
fn partial_writes((w, _rd): (OwnedFd, OwnedFd), socket: bool) -> Record {
    let mut r = Record::default();
    let w = w.as_raw_fd();
    let big = vec![1u8; 64 * MIB];
    r.call("set O_NONBLOCK", Ret(0), || set_nonblocking_fcntl(w, true));
    r.call("write 64 MiB", Between(1, 64 * MIB as i64 - 1), || write(w, &big));
    let (mut last, mut last_errno) = (0, 0);
    for _ in 0..10_000 {
        last = write(w, &big[..MIB]);
        if last < 0 {
            last_errno = errno();
            break;
        }
    }
    r.call("write until full", Err(EAGAIN), || {
        set_errno(last_errno);
        last
    });
    r.call("write 1 when full", Err(EAGAIN), || write(w, b"x"));
    r.call("writev when full", Err(EAGAIN), || writev(w, &[b"x", b"y"]));
    r.call("write 0 when full", Ret(0), || write(w, &[]));
    if socket {
        r.call("send when full", Err(EAGAIN), || send(w, b"x", 0));
    }
    r.call("clear O_NONBLOCK", Ret(0), || set_nonblocking_fcntl(w, false));
    r.fact("O_NONBLOCK", nonblocking(w));
    r.call("write 0 when full, blocking fd", Ret(0), || write(w, &[]));
    if socket {
        r.call("send MSG_DONTWAIT when full, blocking fd", Err(EAGAIN), || send(w, b"x", libc::MSG_DONTWAIT));
        r.call("sendto 0 when full, blocking fd", Ret(0), || sendto(w, &[], 0, None));
    }
    r
}

fn tcp_full_writes() -> Record {
    full_writes(tcp_pair(), true)
}
fn unix_full_writes() -> Record {
    full_writes(unix_pair(), true)
}
fn pipe_full_writes() -> Record {
    let (r, w) = pipe();
    full_writes((w, r), false)
}

/// On a blocking fd a write far bigger than the buffer completes in full once a plain-thread
/// reader drains the other end.
fn full_writes((w, rd): (OwnedFd, OwnedFd), socket: bool) -> Record {
    let mut r = Record::default();
    let reader = drain_thread(rd);
    let fd = w.as_raw_fd();
    let big = vec![2u8; 8 * MIB];
    let n = 8 * MIB as i64;
    r.call("write 8 MiB", Ret(n), || write(fd, &big));
    r.call("writev 2 x 4 MiB", Ret(n), || writev(fd, &[&big[..4 * MIB], &big[4 * MIB..]]));
    let mut total = 2 * n;
    if socket {
        r.call("send 8 MiB", Ret(n), || send(fd, &big, libc::MSG_NOSIGNAL));
        r.call("sendto 8 MiB", Ret(n), || sendto(fd, &big, libc::MSG_NOSIGNAL, None));
        r.call("sendmsg 8 MiB", Ret(n), || sendmsg(fd, &big, libc::MSG_NOSIGNAL));
        total += 3 * n;
    }
    drop(w);
    r.check("the reader got every byte", reader.join().unwrap() as i64 == total);
    r
}

/// Connecting to a port where nothing listens: ECONNREFUSED from `connect`, from a
/// non-blocking connect's `SO_ERROR`, and from `std`'s `connect`/`connect_timeout`.
fn connect_refused() -> Record {
    let mut r = Record::default();
    let (_bound, addr) = refusing_addr();
    let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    r.call("connect", Err(libc::ECONNREFUSED), || connect(fd.as_raw_fd(), &addr));
    r.call("SO_ERROR after", Ret(0), || so_error(fd.as_raw_fd()));
    let nb = own(socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK));
    r.call("non-blocking connect", Err(libc::EINPROGRESS), || connect(nb.as_raw_fd(), &addr));
    r.call("poll POLLOUT", Ret(1), || poll_one(nb.as_raw_fd(), libc::POLLOUT, 10_000).0);
    r.call("SO_ERROR", Ret(libc::ECONNREFUSED.into()), || so_error(nb.as_raw_fd()));
    r.fact("std connect", TcpStream::connect(addr).map(drop).map_err(|e| (e.kind(), e.raw_os_error())));
    let e = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map(drop);
    r.fact("std connect_timeout", e.map_err(|e| (e.kind(), e.raw_os_error())));
    r
}

/// Connecting to a listener: blocking (then EISCONN), non-blocking (EINPROGRESS, POLLOUT,
/// SO_ERROR 0, a second `connect` gives 0), and through `connect_timeout`.
fn connect_ok() -> Record {
    let mut r = Record::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    r.call("connect", Ret(0), || connect(fd.as_raw_fd(), &addr));
    r.call("connect again", Err(libc::EISCONN), || connect(fd.as_raw_fd(), &addr));
    let nb = own(socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK));
    r.call("non-blocking connect", Err(libc::EINPROGRESS), || connect(nb.as_raw_fd(), &addr));
    let (n, revents) = poll_one(nb.as_raw_fd(), libc::POLLOUT, 10_000);
    r.fact("poll POLLOUT", (n, revents));
    r.call("SO_ERROR", Ret(0), || so_error(nb.as_raw_fd()));
    r.call("connect after completion", Ret(0), || connect(nb.as_raw_fd(), &addr));
    r.fact("O_NONBLOCK", nonblocking(nb.as_raw_fd()));
    r.fact("std connect_timeout", TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map(drop).is_ok());
    r
}

/// A listener whose accept queue is full never answers: `connect_timeout` gives TimedOut and
/// a blocking `connect` with `SO_SNDTIMEO` gives EINPROGRESS, both after the timeout.
fn connect_timeouts() -> Record {
    let mut r = Record::default();
    let (_listener, _filler, addr) = full_backlog();
    let start = Instant::now();
    let e = TcpStream::connect_timeout(&addr, TIMEOUT).map(drop).map_err(|e| (e.kind(), e.raw_os_error()));
    r.fact("connect_timeout", e);
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    r.call("SO_SNDTIMEO", Ret(0), || set_timeout(fd.as_raw_fd(), libc::SO_SNDTIMEO, tv(0, 50_000)));
    let start = Instant::now();
    r.call("connect", Err(libc::EINPROGRESS), || connect(fd.as_raw_fd(), &addr));
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    r
}

/// The peer closes with `SO_LINGER` 0 and unread data: ECONNRESET once, then EOF; sends EPIPE.
fn connection_reset() -> Record {
    let mut r = Record::default();
    let (c, s) = tcp_pair();
    let (c, mut buf) = (c.as_raw_fd(), [0u8; 16]);
    r.call("client writes", Ret(5), || write(c, b"hello"));
    r.call("server peeks (waits for the bytes)", Ret(5), || recv(s.as_raw_fd(), &mut buf, libc::MSG_PEEK));
    set_linger0(s.as_raw_fd());
    drop(s);
    r.call("recv", Err(libc::ECONNRESET), || recv(c, &mut buf, 0));
    r.call("recv again", Ret(0), || recv(c, &mut buf, 0));
    r.call("read", Ret(0), || read(c, &mut buf));
    r.call("send", Err(EPIPE), || send(c, b"x", libc::MSG_NOSIGNAL));
    r.call("write", Err(EPIPE), || write(c, b"x"));
    r
}

/// Writing where the peer cannot read: EPIPE (SIGPIPE is ignored by the test harness, and
/// `MSG_NOSIGNAL` asks for no signal anyway). Shutting down writing leaves reading working.
fn broken_pipe() -> Record {
    let mut r = Record::default();
    let (c, s) = tcp_pair();
    let (c, s) = (c.as_raw_fd(), s.as_raw_fd());
    r.call("shutdown(SHUT_WR)", Ret(0), || shutdown(c, libc::SHUT_WR));
    r.call("send", Err(EPIPE), || send(c, b"x", libc::MSG_NOSIGNAL));
    r.call("sendto", Err(EPIPE), || sendto(c, b"x", libc::MSG_NOSIGNAL, None));
    r.call("sendmsg", Err(EPIPE), || sendmsg(c, b"x", libc::MSG_NOSIGNAL));
    r.call("write", Err(EPIPE), || write(c, b"x"));
    r.call("writev", Err(EPIPE), || writev(c, &[b"x"]));
    r.call("peer reads EOF", Ret(0), || read(s, &mut [0; 4]));
    r.call("peer writes", Ret(2), || write(s, b"ok"));
    r.call("read still works", Ret(2), || read(c, &mut [0; 4]));
    r.call("shutdown(SHUT_RD)", Ret(0), || shutdown(c, libc::SHUT_RD));
    r.call("read after SHUT_RD", Ret(0), || read(c, &mut [0; 4]));
    let (a, b) = unix_pair();
    drop(b);
    r.call("unix send, peer closed", Err(EPIPE), || send(a.as_raw_fd(), b"x", libc::MSG_NOSIGNAL));
    r.call("unix write, peer closed", Err(EPIPE), || write(a.as_raw_fd(), b"x"));
    let (rd, w) = pipe();
    drop(rd);
    r.call("pipe write, reader closed", Err(EPIPE), || write(w.as_raw_fd(), b"x"));
    r
}

/// An unconnected TCP socket.
fn not_connected() -> Record {
    let mut r = Record::default();
    let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    let (fd, mut buf) = (fd.as_raw_fd(), [0u8; 8]);
    r.call("recv", Err(libc::ENOTCONN), || recv(fd, &mut buf, 0));
    r.call("read", Err(libc::ENOTCONN), || read(fd, &mut buf));
    r.call("readv", Err(libc::ENOTCONN), || readv(fd, &mut [&mut buf]));
    r.call("recvmsg", Err(libc::ENOTCONN), || recvmsg(fd, &mut buf, 0).0);
    r.call("send", Err(EPIPE), || send(fd, b"x", libc::MSG_NOSIGNAL));
    r.call("write", Err(EPIPE), || write(fd, b"x"));
    r.call("accept (not listening)", Err(EINVAL), || accept(fd));
    r.call("shutdown", Err(libc::ENOTCONN), || shutdown(fd, libc::SHUT_RDWR));
    r
}

/// Every hooked call on an fd number that is not open (a closed one, and -1): EBADF. The
/// closed one was a socket that waited in a read before it was closed.
fn bad_fds() -> Record {
    let mut r = Record::default();
    let (a, b) = unix_pair();
    let slot = move_to(b, fd_slot(0));
    let writer = write_later(a.as_raw_fd(), b"x", LATER);
    r.call("read that waits", Ret(1), || read(slot, &mut [0; 4]));
    writer.join().unwrap();
    r.call("close", Ret(0), || close(slot));
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    for fd in [slot, -1] {
        let mut buf = [0u8; 8];
        r.fact("fd", if fd < 0 { "-1" } else { "closed" });
        r.call("read", Err(EBADF), || read(fd, &mut buf));
        r.call("write", Err(EBADF), || write(fd, b"x"));
        r.call("readv", Err(EBADF), || readv(fd, &mut [&mut buf]));
        r.call("writev", Err(EBADF), || writev(fd, &[b"x"]));
        r.call("recv", Err(EBADF), || recv(fd, &mut buf, 0));
        r.call("send", Err(EBADF), || send(fd, b"x", 0));
        r.call("recvfrom", Err(EBADF), || recvfrom(fd, &mut buf, 0).0);
        r.call("sendto", Err(EBADF), || sendto(fd, b"x", 0, None));
        r.call("recvmsg", Err(EBADF), || recvmsg(fd, &mut buf, 0).0);
        r.call("sendmsg", Err(EBADF), || sendmsg(fd, b"x", 0));
        r.call("accept", Err(EBADF), || accept(fd));
        r.call("accept4", Err(EBADF), || accept4(fd, libc::SOCK_NONBLOCK));
        r.call("connect", Err(EBADF), || connect(fd, &addr));
        r.call("shutdown", Err(EBADF), || shutdown(fd, libc::SHUT_RDWR));
        r.call("F_GETFL", Err(EBADF), || getfl(fd));
        r.call("F_SETFL", Err(EBADF), || setfl(fd, O_NONBLOCK));
        r.call("FIONBIO", Err(EBADF), || fionbio(fd, true));
        r.call("SO_RCVTIMEO", Err(EBADF), || set_timeout(fd, libc::SO_RCVTIMEO, tv(1, 0)));
        r.call("close", Err(EBADF), || close(fd));
    }
    r
}

/// Socket calls on a pipe: ENOTSOCK.
fn not_sockets() -> Record {
    let mut r = Record::default();
    let (rd, w) = pipe();
    let (rd, w) = (rd.as_raw_fd(), w.as_raw_fd());
    r.call("write", Ret(1), || write(w, b"x"));
    r.call("recv", Err(libc::ENOTSOCK), || recv(rd, &mut [0; 4], 0));
    r.call("recvmsg", Err(libc::ENOTSOCK), || recvmsg(rd, &mut [0; 4], 0).0);
    r.call("send", Err(libc::ENOTSOCK), || send(w, b"x", 0));
    r.call("sendto", Err(libc::ENOTSOCK), || sendto(w, b"x", 0, None));
    r.call("accept", Err(libc::ENOTSOCK), || accept(rd));
    r.call("connect", Err(libc::ENOTSOCK), || connect(w, &SocketAddr::from(([127, 0, 0, 1], 9))));
    r.call("shutdown", Err(libc::ENOTSOCK), || shutdown(w, libc::SHUT_WR));
    r.call("SO_RCVTIMEO", Err(libc::ENOTSOCK), || set_timeout(rd, libc::SO_RCVTIMEO, tv(1, 0)));
    r.call("read still works", Ret(1), || read(rd, &mut [0; 4]));
    r
}

/// Reads into and writes from an invalid address, with data waiting: EFAULT, and the data
/// is still there for a valid read.
fn bad_pointers() -> Record {
    let mut r = Record::default();
    let (c, s) = tcp_pair();
    let (c, s) = (c.as_raw_fd(), s.as_raw_fd());
    let bad_iov = [libc::iovec { iov_base: bad(), iov_len: 8 }];
    r.call("peer writes", Ret(5), || write(s, b"hello"));
    r.call("peek (waits for the bytes)", Ret(5), || recv(c, &mut [0; 8], libc::MSG_PEEK));
    // SAFETY: `bad()` is never mapped: the kernel fails with EFAULT, nothing dereferences it.
    r.call("recv into 1", Err(EFAULT), || unsafe { libc::recv(c, bad(), 8, 0) });
    // SAFETY: as above.
    r.call("read into 1", Err(EFAULT), || unsafe { libc::read(c, bad(), 8) });
    // SAFETY: as above, for the buffer the iovec names.
    r.call("readv, iov_base 1", Err(EFAULT), || unsafe { libc::readv(c, bad_iov.as_ptr(), 1) });
    // SAFETY: as above, for the iovec array itself.
    r.call("readv, iov at 8", Err(EFAULT), || unsafe { libc::readv(c, bad(), 1) });
    // SAFETY: as above, for the msghdr.
    r.call("recvmsg, msghdr at 8", Err(EFAULT), || unsafe { libc::recvmsg(c, bad(), 0) });
    r.call("recv still gets the bytes", Ret(5), || recv(c, &mut [0; 8], 0));
    // SAFETY: as above.
    r.call("write from 1", Err(EFAULT), || unsafe { libc::write(c, bad(), 8) });
    // SAFETY: as above.
    r.call("send from 1", Err(EFAULT), || unsafe { libc::send(c, bad(), 8, 0) });
    // SAFETY: as above, for the iovec array.
    r.call("writev, iov at 8", Err(EFAULT), || unsafe { libc::writev(c, bad(), 1) });
    let (rd, w) = pipe();
    r.call("pipe write", Ret(5), || write(w.as_raw_fd(), b"hello"));
    // SAFETY: as above.
    r.call("pipe read into 1", Err(EFAULT), || unsafe { libc::read(rd.as_raw_fd(), bad(), 8) });
    r.call("pipe read", Any, || read(rd.as_raw_fd(), &mut [0; 8]));
    r
}

/// A dangling pointer (the type's alignment as address: 1 or 8), in the never-mapped first page.
fn bad<T>() -> *mut T {
    std::ptr::dangling_mut()
}

/// Invalid arguments: EINVAL (and EDOM for an out-of-range timeout).
fn bad_arguments() -> Record {
    let mut r = Record::default();
    let (c, _s) = tcp_pair();
    let c = c.as_raw_fd();
    let iov = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 1025];
    // SAFETY: the count is rejected before the kernel reads any iovec.
    r.call("readv iovcnt -1", Err(EINVAL), || unsafe { libc::readv(c, iov.as_ptr(), -1) });
    // SAFETY: as above.
    r.call("writev iovcnt -1", Err(EINVAL), || unsafe { libc::writev(c, iov.as_ptr(), -1) });
    // SAFETY: `iov` holds 1025 iovecs; the count is rejected anyway (more than IOV_MAX).
    r.call("readv iovcnt 1025", Err(EINVAL), || unsafe { libc::readv(c, iov.as_ptr(), 1025) });
    // SAFETY: an unknown command takes no argument.
    r.call("fcntl cmd 9999", Err(EINVAL), || unsafe { libc::fcntl(c, 9999) });
    r.call("shutdown how 99", Err(EINVAL), || shutdown(c, 99));
    r.call("SO_RCVTIMEO usec 1e6", Err(libc::EDOM), || set_timeout(c, libc::SO_RCVTIMEO, tv(0, 1_000_000)));
    r.call("SO_RCVTIMEO optlen 4", Err(EINVAL), || set_timeout_len(c, libc::SO_RCVTIMEO, tv(1, 0), 4));
    r.call("SO_SNDTIMEO usec -1", Err(libc::EDOM), || set_timeout(c, libc::SO_SNDTIMEO, tv(0, -1)));
    r.fact("SO_RCVTIMEO unchanged", get_timeout(c, libc::SO_RCVTIMEO));
    r
}

/// `MSG_PEEK`, `MSG_WAITALL` (data arriving in two parts, the second later), `MSG_DONTWAIT`.
fn recv_flags() -> Record {
    let mut r = Record::default();
    let (c, s) = tcp_pair();
    let (c, s, mut buf) = (c.as_raw_fd(), s.as_raw_fd(), [0u8; 16]);
    r.call("recv MSG_DONTWAIT, nothing waiting", Err(EAGAIN), || recv(c, &mut buf, libc::MSG_DONTWAIT));
    r.call("O_NONBLOCK untouched", Ret(O_RDWR.into()), || getfl(c));
    r.call("peer writes 3", Ret(3), || write(s, b"abc"));
    r.call("recv MSG_PEEK", Ret(3), || recv(c, &mut buf, libc::MSG_PEEK));
    r.call("recv MSG_PEEK again", Ret(3), || recv(c, &mut buf, libc::MSG_PEEK));
    let writer = write_later(s, b"def", LATER);
    r.call("recv MSG_WAITALL 6", Ret(6), || recv(c, &mut buf[..6], libc::MSG_WAITALL));
    r.fact("data", String::from_utf8_lossy(&buf[..6]).into_owned());
    writer.join().unwrap();
    r
}

/// UDP: datagrams keep their boundaries and senders; a zero-length datagram reads as 0; a
/// truncated one sets MSG_TRUNC; a connected socket sees ECONNREFUSED from a dead port.
fn udp() -> Record {
    let mut r = Record::default();
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (afd, bfd) = (a.as_raw_fd(), b.as_raw_fd());
    let baddr = b.local_addr().unwrap();
    let mut buf = [0u8; 16];
    r.call("recv MSG_DONTWAIT, nothing waiting", Err(EAGAIN), || recv(bfd, &mut buf, libc::MSG_DONTWAIT));
    r.call("sendto 5", Ret(5), || sendto(afd, b"hello", 0, Some(&baddr)));
    r.call("sendto 0", Ret(0), || sendto(afd, b"", 0, Some(&baddr)));
    r.call("sendto 10", Ret(10), || sendto(afd, b"0123456789", 0, Some(&baddr)));
    let (n, from) = recvfrom(bfd, &mut buf, 0);
    r.fact("recvfrom", (n, from == Some(a.local_addr().unwrap())));
    r.call("recv the empty datagram", Ret(0), || recv(bfd, &mut buf, 0));
    let (n, flags) = recvmsg(bfd, &mut buf[..4], 0);
    r.fact("recvmsg into 4 bytes", (n, flags & libc::MSG_TRUNC != 0));
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    a.connect(dead_addr).unwrap();
    r.call("send to a dead port", Ret(1), || send(afd, b"x", 0));
    r.call("recv gets the ICMP error", Err(libc::ECONNREFUSED), || recv(afd, &mut buf, 0));
    r
}

/// `sendmsg`/`recvmsg` with `SCM_RIGHTS` control data: a pipe's write end crosses a unix
/// socket and works on the other side.
fn fd_passing() -> Record {
    let mut r = Record::default();
    let (a, b) = unix_pair();
    let (rd, w) = pipe();
    let space = cmsg_space();
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut byte = *b"x";
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: an all-zero msghdr is valid; it then points at live buffers of the lengths set,
    // and CMSG_FIRSTHDR/CMSG_DATA stay inside `control`, which has room for one fd.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<c_int>().write_unaligned(w.as_raw_fd());
        libc::sendmsg(a.as_raw_fd(), &msg, 0)
    };
    r.call("sendmsg SCM_RIGHTS", Ret(1), || sent);
    drop(w);
    control.fill(0);
    // SAFETY: as above, for receiving; the fd is read only if the kernel filled the header.
    let (got, passed) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let n = libc::recvmsg(b.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        let ok = n == 1 && !cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS;
        (n, ok.then(|| own(libc::CMSG_DATA(cmsg).cast::<c_int>().read_unaligned())))
    };
    r.call("recvmsg SCM_RIGHTS", Ret(1), || got);
    r.check("an fd came", passed.is_some());
    if let Some(passed) = passed {
        r.call("write through the passed fd", Ret(2), || write(passed.as_raw_fd(), b"hi"));
        r.call("read the pipe", Ret(2), || read(rd.as_raw_fd(), &mut [0; 4]));
    }
    r
}

fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as usize }
}
