//! Thin, safe wrappers over the libc calls the hook tests make, and the fds they make them on.
//!
//! Every wrapper calls libc directly (so it goes through openco's hook inside a coroutine and
//! is libc's own call outside one) and returns libc's raw result; errno is left for the caller
//! to read. Buffers are slices, so each wrapper's pointers are valid for the lengths passed.
//!
//! fd numbers: a test that must name an fd number that nothing else in the process will reuse
//! (a closed fd, a number re-used on purpose) takes one from [`fd_slot`], a range above
//! anything the lowest-free allocation reaches in a test binary.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr;
use std::sync::Once;
use std::thread;
use std::time::Duration;

use libc::{c_int, c_void, iovec, msghdr, sockaddr, sockaddr_in, socklen_t, timeval};

/// Takes ownership of an fd a syscall just returned, panicking on -1.
pub fn own(fd: c_int) -> OwnedFd {
    assert!(fd >= 0, "the syscall failed: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by a syscall of the caller and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A pipe, `(read end, write end)`, with `flags` (`O_NONBLOCK`...) besides `O_CLOEXEC`.
pub fn pipe_with(flags: c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), flags | libc::O_CLOEXEC) }, 0);
    (own(fds[0]), own(fds[1]))
}

/// A blocking pipe, `(read end, write end)`.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    pipe_with(0)
}

/// A connected pair of blocking unix stream sockets.
pub fn unix_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    (a.into(), b.into())
}

/// A connected pair of unix sockets of type `ty` (`SOCK_DGRAM`, `SOCK_STREAM | SOCK_NONBLOCK`...).
pub fn unix_pair_of(ty: c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }, 0);
    (own(fds[0]), own(fds[1]))
}

/// A connected pair of blocking TCP sockets on loopback, `(client, server)`.
pub fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client.into(), server.into())
}

/// A loopback address where nothing listens (a socket is bound there but not listening, so the
/// port cannot be taken by anyone else while the returned fd lives): connecting is refused.
pub fn refusing_addr() -> (OwnedFd, SocketAddr) {
    let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    assert_eq!(bind(fd.as_raw_fd(), &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))), 0);
    let addr = local_addr(fd.as_raw_fd());
    (fd, addr)
}

/// A loopback listener with a backlog of 0 whose accept queue is full: a connection attempt
/// gets no answer (the kernel drops its SYN) until the queue drains. Returns the listener and
/// the connection that fills the queue.
pub fn full_backlog() -> (OwnedFd, TcpStream, SocketAddr) {
    let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
    assert_eq!(bind(fd.as_raw_fd(), &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))), 0);
    // SAFETY: plain syscall on an fd we own.
    assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 0) }, 0);
    let addr = local_addr(fd.as_raw_fd());
    let filler = TcpStream::connect(addr).expect("the first connection fits the backlog");
    (fd, filler, addr)
}

/// An eventfd with `flags` (`EFD_NONBLOCK`, `EFD_SEMAPHORE`).
pub fn eventfd(initial: u32, flags: c_int) -> OwnedFd {
    // SAFETY: no pointer arguments.
    own(unsafe { libc::eventfd(initial, flags | libc::EFD_CLOEXEC) })
}

pub fn socket(domain: c_int, ty: c_int) -> c_int {
    // SAFETY: no pointer arguments.
    unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) }
}

fn sockaddr_v4(addr: &SocketAddr) -> sockaddr_in {
    let SocketAddr::V4(v4) = addr else { panic!("IPv4 only: {addr}") };
    sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
        sin_zero: [0; 8],
    }
}

const SIN_LEN: socklen_t = mem::size_of::<sockaddr_in>() as socklen_t;

pub fn bind(fd: RawFd, addr: &SocketAddr) -> c_int {
    let sin = sockaddr_v4(addr);
    // SAFETY: `sin` is a valid sockaddr_in of the length passed.
    unsafe { libc::bind(fd, ptr::from_ref(&sin).cast(), SIN_LEN) }
}

pub fn connect(fd: RawFd, addr: &SocketAddr) -> c_int {
    let sin = sockaddr_v4(addr);
    // SAFETY: `sin` is a valid sockaddr_in of the length passed.
    unsafe { libc::connect(fd, ptr::from_ref(&sin).cast(), SIN_LEN) }
}

/// The IPv4 address an fd is bound to.
pub fn local_addr(fd: RawFd) -> SocketAddr {
    // SAFETY: an all-zero sockaddr_in is a valid value.
    let mut sin: sockaddr_in = unsafe { mem::zeroed() };
    let mut len = SIN_LEN;
    // SAFETY: `sin` and `len` are valid out-parameters of the length passed.
    assert_eq!(unsafe { libc::getsockname(fd, ptr::from_mut(&mut sin).cast(), &mut len) }, 0);
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)), u16::from_be(sin.sin_port)))
}

pub fn accept(fd: RawFd) -> c_int {
    // SAFETY: null address and length are allowed.
    unsafe { libc::accept(fd, ptr::null_mut(), ptr::null_mut()) }
}

pub fn accept4(fd: RawFd, flags: c_int) -> c_int {
    // SAFETY: null address and length are allowed.
    unsafe { libc::accept4(fd, ptr::null_mut(), ptr::null_mut(), flags) }
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

pub fn write(fd: RawFd, buf: &[u8]) -> isize {
    // SAFETY: `buf` is valid for reads of its length.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
}

pub fn recv(fd: RawFd, buf: &mut [u8], flags: c_int) -> isize {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }
}

pub fn send(fd: RawFd, buf: &[u8], flags: c_int) -> isize {
    // SAFETY: `buf` is valid for reads of its length.
    unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) }
}

/// `recvfrom`, with the sender's address when it is IPv4.
pub fn recvfrom(fd: RawFd, buf: &mut [u8], flags: c_int) -> (isize, Option<SocketAddr>) {
    // SAFETY: an all-zero sockaddr_in is a valid value.
    let mut sin: sockaddr_in = unsafe { mem::zeroed() };
    let mut len = SIN_LEN;
    // SAFETY: `buf` is valid for writes of its length; `sin`/`len` are valid out-parameters.
    let n = unsafe {
        libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), flags, ptr::from_mut(&mut sin).cast(), &mut len)
    };
    let from = (n >= 0 && c_int::from(sin.sin_family) == libc::AF_INET)
        .then(|| SocketAddr::from((Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)), u16::from_be(sin.sin_port))));
    (n, from)
}

/// `sendto` an IPv4 address, or with a null address (connected sockets).
pub fn sendto(fd: RawFd, buf: &[u8], flags: c_int, to: Option<&SocketAddr>) -> isize {
    let sin = to.map(sockaddr_v4);
    let (addr, len): (*const sockaddr, socklen_t) = match &sin {
        Some(sin) => (ptr::from_ref(sin).cast(), SIN_LEN),
        None => (ptr::null(), 0),
    };
    // SAFETY: `buf` is valid for reads of its length; `addr` is null or a valid sockaddr_in.
    unsafe { libc::sendto(fd, buf.as_ptr().cast(), buf.len(), flags, addr, len) }
}

pub fn readv(fd: RawFd, bufs: &mut [&mut [u8]]) -> isize {
    let iov: Vec<iovec> =
        bufs.iter_mut().map(|b| iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    // SAFETY: each iovec points into a live buffer of its length.
    unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as c_int) }
}

pub fn writev(fd: RawFd, bufs: &[&[u8]]) -> isize {
    let iov: Vec<iovec> =
        bufs.iter().map(|b| iovec { iov_base: b.as_ptr() as *mut c_void, iov_len: b.len() }).collect();
    // SAFETY: each iovec points into a live buffer of its length, only read by writev.
    unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as c_int) }
}

/// `recvmsg` into one buffer, without control data: `(result, msg_flags)`.
pub fn recvmsg(fd: RawFd, buf: &mut [u8], flags: c_int) -> (isize, c_int) {
    let mut iov = iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr (no name, no control data) is valid.
    let mut msg: msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points at one iovec over a live buffer.
    let n = unsafe { libc::recvmsg(fd, &mut msg, flags) };
    (n, msg.msg_flags)
}

/// `sendmsg` of one buffer, without control data.
pub fn sendmsg(fd: RawFd, buf: &[u8], flags: c_int) -> isize {
    let mut iov = iovec { iov_base: buf.as_ptr() as *mut c_void, iov_len: buf.len() };
    // SAFETY: an all-zero msghdr (no name, no control data) is valid.
    let mut msg: msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points at one iovec over a live buffer, only read by sendmsg.
    unsafe { libc::sendmsg(fd, &msg, flags) }
}

/// `recv` with no flags, `readv` of one buffer, `send` with no flags, `writev` of one
/// buffer: in the shapes of `read` and `write`, for tables of calls.
pub fn recv_plain(fd: RawFd, buf: &mut [u8]) -> isize {
    recv(fd, buf, 0)
}
pub fn readv1(fd: RawFd, buf: &mut [u8]) -> isize {
    readv(fd, &mut [buf])
}
pub fn send_plain(fd: RawFd, buf: &[u8]) -> isize {
    send(fd, buf, 0)
}
pub fn writev1(fd: RawFd, buf: &[u8]) -> isize {
    writev(fd, &[buf])
}

/// `poll` of one fd: `(result, revents)`.
pub fn poll_one(fd: RawFd, events: i16, timeout_ms: c_int) -> (c_int, i16) {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    (n, p.revents)
}

/// A duplicate of `fd` (another number for the same open file description).
pub fn own_dup(fd: RawFd) -> OwnedFd {
    // SAFETY: F_DUPFD takes an int.
    own(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })
}

pub fn shutdown(fd: RawFd, how: c_int) -> c_int {
    // SAFETY: no pointer arguments.
    unsafe { libc::shutdown(fd, how) }
}

/// `close` of a raw number (for fds the test does not own through an `OwnedFd`).
pub fn close(fd: RawFd) -> c_int {
    // SAFETY: closing a number the caller owns, or one that is not open (EBADF).
    unsafe { libc::close(fd) }
}

pub fn dup2(old: RawFd, new: RawFd) -> c_int {
    // SAFETY: no pointer arguments; the caller owns `new` (or it is free).
    unsafe { libc::dup2(old, new) }
}

pub fn getfl(fd: RawFd) -> c_int {
    // SAFETY: F_GETFL takes no argument.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

pub fn setfl(fd: RawFd, flags: c_int) -> c_int {
    // SAFETY: F_SETFL takes an int.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }
}

/// Sets or clears `O_NONBLOCK` with `fcntl`, keeping the other flags.
pub fn set_nonblocking_fcntl(fd: RawFd, on: bool) -> c_int {
    let flags = getfl(fd);
    assert!(flags >= 0);
    setfl(fd, if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK })
}

pub fn fionbio(fd: RawFd, on: bool) -> c_int {
    let mut value = c_int::from(on);
    // SAFETY: FIONBIO reads an int through the pointer.
    unsafe { libc::ioctl(fd, libc::FIONBIO, &mut value) }
}

/// Whether the fd's status flags (as `F_GETFL` reports them) include `O_NONBLOCK`; `None` on error.
pub fn nonblocking(fd: RawFd) -> Option<bool> {
    let flags = getfl(fd);
    (flags >= 0).then_some(flags & libc::O_NONBLOCK != 0)
}

pub fn tv(sec: i64, usec: i64) -> timeval {
    timeval { tv_sec: sec, tv_usec: usec }
}

/// `setsockopt(SOL_SOCKET, opt, tv)` with `len` bytes of the timeval.
pub fn set_timeout_len(fd: RawFd, opt: c_int, tv: timeval, len: usize) -> c_int {
    // SAFETY: `tv` is a valid timeval; `len` is at most its size (callers pass shorter
    // lengths only to get EINVAL).
    unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, ptr::from_ref(&tv).cast(), len as socklen_t) }
}

pub fn set_timeout(fd: RawFd, opt: c_int, tv: timeval) -> c_int {
    set_timeout_len(fd, opt, tv, mem::size_of::<timeval>())
}

/// `getsockopt(SOL_SOCKET, opt)` of a timeval option, as `(sec, usec)`; `None` on error.
pub fn get_timeout(fd: RawFd, opt: c_int) -> Option<(i64, i64)> {
    let mut tv = tv(-1, -1);
    let mut len = mem::size_of::<timeval>() as socklen_t;
    // SAFETY: `tv` and `len` are valid out-parameters of the length passed.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, ptr::from_mut(&mut tv).cast(), &mut len) };
    (r == 0).then_some((tv.tv_sec, tv.tv_usec))
}

/// `getsockopt(SOL_SOCKET, SO_ERROR)`: the pending socket error, or -1 if the call failed.
pub fn so_error(fd: RawFd) -> c_int {
    let mut err: c_int = 0;
    let mut len = mem::size_of::<c_int>() as socklen_t;
    // SAFETY: `err` and `len` are valid out-parameters of the length passed.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, ptr::from_mut(&mut err).cast(), &mut len) };
    if r == 0 {
        err
    } else {
        -1
    }
}

/// `SO_LINGER` on with a zero timeout: `close` then resets the connection.
pub fn set_linger0(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    let len = mem::size_of::<libc::linger>() as socklen_t;
    // SAFETY: `linger` is a valid struct of the length passed.
    let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, ptr::from_ref(&linger).cast(), len) };
    assert_eq!(r, 0);
}

/// Writes to `fd` until its buffer is full, so that not even one more byte fits (`EAGAIN`),
/// with `O_NONBLOCK` set for the while; returns how many bytes went in. The fd's flags are
/// restored.
pub fn fill(fd: RawFd) -> usize {
    let flags = getfl(fd);
    assert_eq!(setfl(fd, flags | libc::O_NONBLOCK), 0);
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut total = 0;
    for len in [chunk.len(), 1] {
        loop {
            let n = write(fd, &chunk[..len]);
            if n < 0 {
                assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN), "filling fd {fd}");
                break;
            }
            total += n as usize;
        }
    }
    assert_eq!(setfl(fd, flags), 0);
    total
}

/// Reads `fd` until `want` bytes have come (or EOF, or an error); returns how many did.
pub fn drain(fd: RawFd, want: usize) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    while total < want {
        let n = read(fd, &mut buf[..(want - total).min(256 * 1024)]);
        if n <= 0 {
            break;
        }
        total += n as usize;
    }
    total
}

/// A plain thread that reads `fd` until EOF and returns how many bytes came.
pub fn drain_thread(fd: OwnedFd) -> thread::JoinHandle<usize> {
    thread::spawn(move || drain(fd.as_raw_fd(), usize::MAX))
}

/// A plain thread that writes `data` to `fd` after `delay`: a "later" event for a blocking
/// call to wait for (only ordering is relied on, never the delay's length).
pub fn write_later(fd: RawFd, data: impl AsRef<[u8]> + Send + 'static, delay: Duration) -> thread::JoinHandle<isize> {
    thread::spawn(move || {
        thread::sleep(delay);
        write(fd, data.as_ref())
    })
}

/// The first fd number of `slot`'s private range: `fd_slot(k)` is `k` numbers past a base
/// that no fd opened lowest-first in a test binary reaches (the binaries open a few hundred
/// fds at most). Raises the soft `RLIMIT_NOFILE` if it is too low for the range.
pub fn fd_slot(k: c_int) -> c_int {
    const BASE: c_int = 3000;
    const TOP: u64 = 4096;
    static RAISE: Once = Once::new();
    RAISE.call_once(|| {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid out-parameter.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_cur < TOP {
            assert!(lim.rlim_max >= TOP, "RLIMIT_NOFILE hard limit {} is below {TOP}", lim.rlim_max);
            lim.rlim_cur = TOP;
            // SAFETY: `lim` is a valid rlimit.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        }
    });
    assert!((0..1000).contains(&k));
    BASE + k
}

/// Like [`closed_fd`] but below `FD_SETSIZE` (1024), for `select`: slot `k` of a small range
/// (1000..1024) that the test binaries' lowest-first allocations stay below.
pub fn closed_fd_below_1024(k: c_int) -> c_int {
    assert!((0..24).contains(&k));
    fd_slot(0); // the rlimit check
    let at = move_to(eventfd(0, 0), 1000 + k);
    assert_eq!(close(at), 0);
    at
}

/// Moves `fd` to number `at` (which must be free: a slot number), closing the original.
pub fn move_to(fd: OwnedFd, at: c_int) -> c_int {
    // SAFETY: F_DUPFD takes an int; it returns the lowest free number >= `at`.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at) };
    assert_eq!(new, at, "fd slot {at} is taken");
    new
}

/// Slot `k`'s number, made part of the fd table and closed again: an fd number that is not
/// open and that nothing else opens (lowest-free allocation never reaches it). `select`
/// reports `EBADF` for it (numbers past the table's size are silently ignored).
pub fn closed_fd(k: c_int) -> c_int {
    let at = move_to(eventfd(0, 0), fd_slot(k));
    assert_eq!(close(at), 0);
    at
}
