//! Socket calls: `recv*`, `send*`, `accept`, `accept4`, `connect`, `shutdown`, `setsockopt`.
//!
//! Inside a coroutine, receives and sends are attempted with `MSG_DONTWAIT` added (the fd
//! itself is left alone); on `EAGAIN` the coroutine waits for readiness (see `wait`).
//! `accept` and `connect` have no such flag: they run with `O_NONBLOCK` set for that one
//! system call (see `io::flags`). A call the user made non-blocking (`MSG_DONTWAIT`, or an
//! `O_NONBLOCK` fd) goes to libc unchanged.
//!
//! Kernel behaviours kept: a blocking send completes in full unless an error or
//! `SO_SNDTIMEO` stops it (then the bytes sent so far are returned); `MSG_WAITALL` receives
//! on stream sockets fill the buffer unless EOF, an error or `SO_RCVTIMEO` stops them; a
//! blocking `connect` that times out (`SO_SNDTIMEO`) fails with `EINPROGRESS`.
//!
//! `socket`, `getsockopt`, `fcntl(F_SETFL)` need nothing: openco keeps no per-fd state.
//! `setsockopt` is hooked only to learn that some socket has a timeout (see `io::flags`).

use libc::{c_int, c_void, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::real;
use super::wait::{Call, Next};
use crate::coroutine::{self, Context};
use crate::io::{flags, registry};
use crate::sys;

/// Runs a receive: one attempt with `MSG_DONTWAIT`, waits on `EAGAIN`; with `MSG_WAITALL`
/// on a stream socket, keeps receiving until `len` bytes, EOF or an error.
fn recv_in(ctx: &Context, fd: c_int, len: usize, flags: c_int, mut op: impl FnMut(c_int, usize) -> isize) -> isize {
    let mut call = Call::read(fd);
    let dontwait = (flags | libc::MSG_DONTWAIT) & !libc::MSG_WAITALL;
    let first = call.run(ctx, |blocking| op(if blocking { flags } else { dontwait }, 0));
    if flags & libc::MSG_WAITALL == 0 || first <= 0 || first as usize >= len || !is_stream(fd) {
        return first;
    }
    let mut done = first as usize;
    while done < len {
        let ret = call.run(ctx, |blocking| op(if blocking { flags } else { dontwait }, done));
        if ret <= 0 {
            break;
        }
        done += ret as usize;
    }
    done as isize
}

fn is_stream(fd: c_int) -> bool {
    let mut ty: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: valid out-parameters of the right size.
    let ret = unsafe {
        crate::sys::syscall!(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            &mut ty as *mut c_int,
            &mut len as *mut libc::socklen_t
        )
    };
    ret == 0 && ty == libc::SOCK_STREAM
}

/// # Safety
/// As libc's `recv`.
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    let real = real!(recv: fn(c_int, *mut c_void, size_t, c_int) -> ssize_t);
    match coroutine::current() {
        Some(ctx) if flags & libc::MSG_DONTWAIT == 0 => recv_in(ctx, fd, len, flags, |f, done| {
            // SAFETY: the unfilled part of the caller's buffer.
            unsafe { real(fd, buf.wrapping_byte_add(done), len - done, f) }
        }),
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(fd, buf, len, flags) },
    }
}

/// # Safety
/// As libc's `recvfrom`.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    let real = real!(recvfrom: fn(c_int, *mut c_void, size_t, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t);
    match coroutine::current() {
        Some(ctx) if flags & libc::MSG_DONTWAIT == 0 => recv_in(ctx, fd, len, flags, |f, done| {
            // SAFETY: the unfilled part of the caller's buffer, and its address buffer.
            unsafe { real(fd, buf.wrapping_byte_add(done), len - done, f, addr, addrlen) }
        }),
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(fd, buf, len, flags, addr, addrlen) },
    }
}

/// # Safety
/// As libc's `recvmsg`.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let real = real!(recvmsg: fn(c_int, *mut msghdr, c_int) -> ssize_t);
    match coroutine::current() {
        // `MSG_WAITALL` is left to one kernel call here: filling a scatter list across
        // calls would also split the ancillary data.
        Some(ctx) if flags & (libc::MSG_DONTWAIT | libc::MSG_WAITALL) == 0 => {
            // SAFETY: the caller's arguments.
            Call::read(fd).run(ctx, |blocking| unsafe {
                real(fd, msg, if blocking { flags } else { flags | libc::MSG_DONTWAIT })
            })
        }
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(fd, msg, flags) },
    }
}

/// Runs a send of `len` bytes on a blocking socket: attempts with `MSG_DONTWAIT` from
/// offset `done`, waiting in between, until all is sent (see `Call::run_write_all`).
fn send_in(ctx: &Context, fd: c_int, len: usize, flags: c_int, mut op: impl FnMut(c_int, usize) -> isize) -> isize {
    let dontwait = flags | libc::MSG_DONTWAIT;
    Call::write(fd).run_write_all(ctx, || len, |blocking, done| op(if blocking { flags } else { dontwait }, done))
}

/// # Safety
/// As libc's `send`.
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    let real = real!(send: fn(c_int, *const c_void, size_t, c_int) -> ssize_t);
    match coroutine::current() {
        Some(ctx) if flags & libc::MSG_DONTWAIT == 0 => send_in(ctx, fd, len, flags, |f, done| {
            // SAFETY: the unsent part of the caller's buffer.
            unsafe { real(fd, buf.wrapping_byte_add(done), len - done, f) }
        }),
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(fd, buf, len, flags) },
    }
}

/// # Safety
/// As libc's `sendto`.
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    let real = real!(sendto: fn(c_int, *const c_void, size_t, c_int, *const sockaddr, socklen_t) -> ssize_t);
    match coroutine::current() {
        Some(ctx) if flags & libc::MSG_DONTWAIT == 0 => send_in(ctx, fd, len, flags, |f, done| {
            // SAFETY: the unsent part of the caller's buffer.
            unsafe { real(fd, buf.wrapping_byte_add(done), len - done, f, addr, addrlen) }
        }),
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(fd, buf, len, flags, addr, addrlen) },
    }
}

/// # Safety
/// As libc's `sendmsg`.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let real = real!(sendmsg: fn(c_int, *const msghdr, c_int) -> ssize_t);
    let ctx = match coroutine::current() {
        Some(ctx) if flags & libc::MSG_DONTWAIT == 0 => ctx,
        // SAFETY: the caller's arguments, passed on as they are.
        _ => return unsafe { real(fd, msg, flags) },
    };
    let mut rest = Vec::new();
    Call::write(fd).run_write_all(
        ctx,
        // SAFETY: asked only after the kernel accepted `msg` for a send.
        || unsafe { super::rw::iov_total((*msg).msg_iov, (*msg).msg_iovlen as c_int) },
        |blocking, done| {
            let f = if blocking { flags } else { flags | libc::MSG_DONTWAIT };
            if done == 0 {
                // SAFETY: the caller's message.
                return unsafe { real(fd, msg, f) };
            }
            // The rest of a partial stream send: same buffers from `done` on; the ancillary
            // data went with the first part, as the kernel sends it.
            // SAFETY: `msg` was accepted by the kernel already.
            let mut part: msghdr = unsafe { *msg };
            // SAFETY: as above.
            let (iov, cnt) = unsafe { super::rw::iov_after(part.msg_iov, part.msg_iovlen as c_int, done, &mut rest) };
            part.msg_iov = iov.cast_mut();
            part.msg_iovlen = cnt as _;
            part.msg_control = std::ptr::null_mut();
            part.msg_controllen = 0;
            // SAFETY: `part` points at the caller's buffers.
            unsafe { real(fd, &part, f) }
        },
    )
}

/// Accepts on a blocking listener: tries with `O_NONBLOCK` set for the one call, waits on
/// `EAGAIN` (unless the user made the listener non-blocking: the reactor knows).
fn accept_in(ctx: &Context, fd: c_int, mut op: impl FnMut() -> c_int) -> c_int {
    Call::read(fd)
        .run(ctx, |blocking| if blocking { op() as isize } else { flags::with_nonblocking(fd, &mut op).0 as isize })
        as c_int
}

/// # Safety
/// As libc's `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real = real!(accept: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int);
    match coroutine::current() {
        // SAFETY: the caller's arguments.
        Some(ctx) => accept_in(ctx, fd, || unsafe { real(fd, addr, len) }),
        // SAFETY: the caller's arguments, passed on as they are.
        None => unsafe { real(fd, addr, len) },
    }
}

/// # Safety
/// As libc's `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    let real = real!(accept4: fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int);
    match coroutine::current() {
        // SAFETY: the caller's arguments.
        Some(ctx) => accept_in(ctx, fd, || unsafe { real(fd, addr, len, flags) }),
        // SAFETY: the caller's arguments, passed on as they are.
        None => unsafe { real(fd, addr, len, flags) },
    }
}

/// # Safety
/// As libc's `connect`.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real = real!(connect: fn(c_int, *const sockaddr, socklen_t) -> c_int);
    let Some(ctx) = coroutine::current() else {
        // SAFETY: the caller's arguments, passed on as they are.
        return unsafe { real(fd, addr, len) };
    };
    let caller_errno = sys::errno();
    // SAFETY: the caller's arguments.
    let (ret, user_nonblocking) = flags::with_nonblocking(fd, || unsafe { real(fd, addr, len) });
    if ret == 0 || user_nonblocking {
        return ret;
    }
    match sys::errno() {
        libc::EINPROGRESS => connect_wait(ctx, fd, caller_errno, || {
            // SAFETY: the caller's arguments.
            flags::with_nonblocking(fd, || unsafe { real(fd, addr, len) }).0
        }),
        // A Unix socket whose listener's backlog is full: there is no readiness to wait
        // for, so make the blocking call as without openco.
        // SAFETY: the caller's arguments.
        libc::EAGAIN => unsafe { real(fd, addr, len) },
        _ => -1,
    }
}

/// Waits for a connection in progress, as a blocking `connect` does: until the socket is
/// writable, then asks `connect` again (non-blocking), which reports the outcome and, on
/// success, moves the socket to "connected" so that a later `connect` fails with `EISCONN`
/// as it would after a blocking one.
fn connect_wait(ctx: &Context, fd: c_int, caller_errno: c_int, mut again: impl FnMut() -> c_int) -> c_int {
    let mut call = Call::write(fd);
    call.timeout_errno = libc::EINPROGRESS;
    loop {
        if super::wait::ready_now(fd, libc::POLLOUT) {
            if again() == 0 || sys::errno() == libc::EISCONN {
                sys::set_errno(caller_errno);
                return 0;
            }
            if !matches!(sys::errno(), libc::EALREADY | libc::EINPROGRESS) {
                return -1;
            }
        }
        match call.on_eagain(ctx) {
            Next::Retry => {}
            Next::Fail => return -1,
            Next::Block => {
                sys::set_errno(libc::EINPROGRESS);
                return -1;
            }
        }
    }
}

/// # Safety
/// As libc's `shutdown`.
#[no_mangle]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    let real = real!(shutdown: fn(c_int, c_int) -> c_int);
    // SAFETY: the caller's arguments, passed on as they are.
    let ret = unsafe { real(fd, how) };
    if ret == 0 {
        // Most sockets report a shutdown to epoll; waking the waiters makes sure all do.
        let errno = sys::errno();
        registry::fd_closed(fd);
        sys::set_errno(errno);
    }
    ret
}

/// # Safety
/// As libc's `setsockopt`.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    let real = real!(setsockopt: fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int);
    // SAFETY: the caller's arguments, passed on as they are.
    let ret = unsafe { real(fd, level, name, value, len) };
    if ret == 0 && level == libc::SOL_SOCKET && is_timeout_option(name) {
        flags::note_timeout_set();
    }
    ret
}

fn is_timeout_option(name: c_int) -> bool {
    // The 64-bit-time variants have their own numbers on some architectures.
    const SO_RCVTIMEO_NEW: c_int = 66;
    const SO_SNDTIMEO_NEW: c_int = 67;
    matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW)
}
