//! `read`, `readv`, `write`, `writev`: the calls that work on any kind of fd.
//!
//! Inside a coroutine, a blocking fd that can wait for readiness (socket, pipe, FIFO,
//! eventfd, tty...) is read and written with `preadv2`/`pwritev2(RWF_NOWAIT)` at the current
//! position, which goes through the same kernel read/write path as `read`/`write` (same
//! results, same errors) but returns `EAGAIN` instead of blocking; then the coroutine waits
//! for readiness. Files whose driver does not support `RWF_NOWAIT` (ttys, some character
//! devices) are polled first and then read or written with the plain call.
//!
//! Regular files, directories and block devices never wait for readiness: they go to
//! `hook::file` (io_uring, or a helper thread). Passed to libc unchanged: zero-length
//! `read`/`write` (they never block, and the kernel's `read`/`write` check the count where
//! `preadv2` returns 0 first: an eventfd gives `EINVAL`), fds the user made non-blocking,
//! and fds 0, 1 and 2: `println!` holds stdout's thread-keyed re-entrant lock around its write, and a
//! second coroutine of the same worker printing while the first is suspended there would
//! re-enter the lock's `RefCell`; stdin's reads hold a `Mutex` the same way.
//!
//! Telling the kinds apart ([`file::kind`]) costs one `fcntl(F_GETFL)`, and an `fstat` for
//! fds opened by path.

use libc::{c_int, c_void, iovec, size_t, ssize_t};

use super::file::{self, kind, Kind};
use super::real;
use super::wait::{ready_now, Call};
use crate::coroutine::{self, Context};
use crate::sys;

/// `preadv2`/`pwritev2`'s "fail with `EAGAIN` rather than wait" flag.
pub(crate) const RWF_NOWAIT: c_int = 0x8;

/// One attempt at a non-blocking read or write, falling back to "poll, then the plain call"
/// for files without `RWF_NOWAIT` support.
struct Attempt {
    fd: c_int,
    poll_events: libc::c_short,
    no_nowait: bool,
}

impl Attempt {
    fn new(fd: c_int, poll_events: libc::c_short) -> Attempt {
        Attempt { fd, poll_events, no_nowait: false }
    }

    fn run(&mut self, blocking: bool, nowait: impl FnOnce() -> isize, plain: impl FnOnce() -> isize) -> isize {
        if blocking {
            return plain();
        }
        if !self.no_nowait {
            let ret = nowait();
            if ret >= 0 || sys::errno() != libc::EOPNOTSUPP {
                return ret;
            }
            self.no_nowait = true;
        }
        if ready_now(self.fd, self.poll_events) {
            plain()
        } else {
            sys::set_errno(libc::EAGAIN);
            -1
        }
    }
}

fn preadv2_nowait(fd: c_int, iov: *const iovec, iovcnt: c_int) -> isize {
    // SAFETY: the caller's buffers, as the kernel validates them; offset -1 is "the current
    // position", as for `readv`.
    unsafe { crate::sys::syscall!(libc::SYS_preadv2, fd, iov, iovcnt, -1i64, 0i64, RWF_NOWAIT) as isize }
}

fn pwritev2_nowait(fd: c_int, iov: *const iovec, iovcnt: c_int) -> isize {
    // SAFETY: as in `preadv2_nowait`.
    unsafe { crate::sys::syscall!(libc::SYS_pwritev2, fd, iov, iovcnt, -1i64, 0i64, RWF_NOWAIT) as isize }
}

fn read_in(ctx: &Context, fd: c_int, iov: *const iovec, iovcnt: c_int, plain: impl Fn() -> isize) -> isize {
    let mut attempt = Attempt::new(fd, libc::POLLIN);
    Call::read(fd).run(ctx, |blocking| attempt.run(blocking, || preadv2_nowait(fd, iov, iovcnt), &plain))
}

/// # Safety
/// As libc's `read`.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    let real = real!(read: fn(c_int, *mut c_void, size_t) -> ssize_t);
    // SAFETY: the caller's arguments, passed on as they are.
    let plain = move || unsafe { real(fd, buf, count) };
    match coroutine::current() {
        Some(ctx) if count > 0 && fd > 2 => match kind(fd) {
            Kind::Waitable => {
                let iov = iovec { iov_base: buf, iov_len: count };
                read_in(ctx, fd, &iov, 1, plain)
            }
            // SAFETY: the caller's arguments.
            Kind::File(cache) => unsafe { file::read_at(ctx, fd, buf, count, -1, cache, plain) },
            Kind::Plain => plain(),
        },
        _ => plain(),
    }
}

/// # Safety
/// As libc's `readv`.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let real = real!(readv: fn(c_int, *const iovec, c_int) -> ssize_t);
    // SAFETY: the caller's arguments, passed on as they are.
    let plain = move || unsafe { real(fd, iov, iovcnt) };
    match coroutine::current() {
        Some(ctx) if fd > 2 => match kind(fd) {
            Kind::Waitable => read_in(ctx, fd, iov, iovcnt, plain),
            // SAFETY: the caller's arguments.
            Kind::File(cache) => unsafe { file::readv_at(ctx, fd, iov, iovcnt, -1, cache, plain) },
            Kind::Plain => plain(),
        },
        _ => plain(),
    }
}

/// # Safety
/// As libc's `write`.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let real = real!(write: fn(c_int, *const c_void, size_t) -> ssize_t);
    // SAFETY: the caller's arguments, passed on as they are.
    let plain = move || unsafe { real(fd, buf, count) };
    let ctx = match coroutine::current() {
        Some(ctx) if count > 0 && fd > 2 => match kind(fd) {
            Kind::Waitable => ctx,
            // SAFETY: the caller's arguments.
            Kind::File(cache) => return unsafe { file::write_at(ctx, fd, buf, count, -1, cache, plain) },
            Kind::Plain => return plain(),
        },
        _ => return plain(),
    };
    let mut attempt = Attempt::new(fd, libc::POLLOUT);
    Call::write(fd).run_write_all(
        ctx,
        || count,
        |blocking, done| {
            let rest = buf.wrapping_byte_add(done);
            let iov = iovec { iov_base: rest.cast_mut(), iov_len: count - done };
            // SAFETY: the unwritten part of the caller's buffer.
            attempt.run(blocking, || pwritev2_nowait(fd, &iov, 1), || unsafe { real(fd, rest, count - done) })
        },
    )
}

/// # Safety
/// As libc's `writev`.
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    let real = real!(writev: fn(c_int, *const iovec, c_int) -> ssize_t);
    // SAFETY: the caller's arguments, passed on as they are.
    let plain = move || unsafe { real(fd, iov, iovcnt) };
    let ctx = match coroutine::current() {
        Some(ctx) if fd > 2 => match kind(fd) {
            Kind::Waitable => ctx,
            // SAFETY: the caller's arguments.
            Kind::File(cache) => return unsafe { file::writev_at(ctx, fd, iov, iovcnt, -1, cache, plain) },
            Kind::Plain => return plain(),
        },
        _ => return plain(),
    };
    let mut attempt = Attempt::new(fd, libc::POLLOUT);
    let mut rest = Vec::new();
    Call::write(fd).run_write_all(
        ctx,
        // SAFETY: called only after the kernel accepted `iov` for a write.
        || unsafe { iov_total(iov, iovcnt) },
        |blocking, done| {
            // SAFETY: as for `total`: `done > 0` only after a successful write of `iov`.
            let (ptr, cnt) = unsafe { iov_after(iov, iovcnt, done, &mut rest) };
            // SAFETY: the unwritten part of the caller's buffers.
            attempt.run(blocking, || pwritev2_nowait(fd, ptr, cnt), || unsafe { real(fd, ptr, cnt) })
        },
    )
}

/// The byte count of an iovec array.
///
/// # Safety
/// `iov` is valid for `iovcnt` entries.
pub(crate) unsafe fn iov_total(iov: *const iovec, iovcnt: c_int) -> usize {
    // SAFETY: guaranteed by the caller.
    let iov = unsafe { std::slice::from_raw_parts(iov, iovcnt.max(0) as usize) };
    iov.iter().fold(0usize, |acc, v| acc.saturating_add(v.iov_len))
}

/// The part of an iovec array after its first `done` bytes: the array itself when `done` is
/// 0, else a trimmed copy in `scratch`.
///
/// # Safety
/// When `done > 0`, `iov` is valid for `iovcnt` entries.
pub(crate) unsafe fn iov_after(
    iov: *const iovec,
    iovcnt: c_int,
    done: usize,
    scratch: &mut Vec<iovec>,
) -> (*const iovec, c_int) {
    if done == 0 {
        return (iov, iovcnt);
    }
    // SAFETY: guaranteed by the caller.
    let all = unsafe { std::slice::from_raw_parts(iov, iovcnt.max(0) as usize) };
    scratch.clear();
    let mut skip = done;
    for v in all {
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        scratch.push(iovec { iov_base: v.iov_base.wrapping_byte_add(skip), iov_len: v.iov_len - skip });
        skip = 0;
    }
    (scratch.as_ptr(), scratch.len() as c_int)
}
