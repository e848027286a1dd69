//! Reads and writes of files: `pread`, `pwrite`, `preadv`, `pwritev` (and their `*64`
//! names), and the file half of `read`, `write`, `readv`, `writev` (`hook::rw` sends files
//! here with the offset -1, "the current position", which io_uring reads and advances as
//! `read(2)` does).

use io_uring::{opcode, types::Fd};
use libc::{c_int, c_void, iovec, off_t, size_t, ssize_t};

use super::{call, inline, inline_call, kind, Kind};
use crate::coroutine::{self, Context};
use crate::hook::real;
use crate::hook::rw::{iov_after, iov_total, RWF_NOWAIT};
use crate::sys;

/// The most bytes one read or write moves (the kernel's `MAX_RW_COUNT`): larger counts are
/// cut to it, by the kernel and here alike.
const MAX_RW_COUNT: usize = 0x7fff_f000;

/// The most iovecs a vectored call takes (`UIO_MAXIOV`).
const IOV_MAX: c_int = 1024;

/// Reads `count` bytes at `offset` (-1: the current position) of a file; `cached`: what
/// the page cache holds may be taken inline (see [`transfer`]).
///
/// # Safety
/// As libc's `read`/`pread`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn read_at(
    ctx: &Context,
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: i64,
    cached: bool,
    plain: impl FnOnce() -> isize,
) -> isize {
    if count == 0 {
        return plain(); // nothing to wait for
    }
    let iov = iovec { iov_base: buf, iov_len: count.min(MAX_RW_COUNT) };
    // SAFETY: the caller's buffer, described by one iovec on this stack.
    unsafe { transfer(ctx, fd, &iov, 1, offset, Dir::Read { cached }, plain) }
}

/// Writes `count` bytes at `offset` (-1: the current position, or the end with `O_APPEND`).
///
/// # Safety
/// As libc's `write`/`pwrite`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn write_at(
    ctx: &Context,
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: i64,
    plain: impl FnOnce() -> isize,
) -> isize {
    if count == 0 {
        return plain();
    }
    let iov = iovec { iov_base: buf.cast_mut(), iov_len: count.min(MAX_RW_COUNT) };
    // SAFETY: the caller's buffer, described by one iovec on this stack.
    unsafe { transfer(ctx, fd, &iov, 1, offset, Dir::Write, plain) }
}

/// `readv` at `offset`, as [`read_at`]; counts io_uring and libc would judge differently go
/// to libc.
///
/// # Safety
/// As libc's `readv`/`preadv`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn readv_at(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    cached: bool,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !(1..=IOV_MAX).contains(&iovcnt) {
        return plain(); // EINVAL, or 0 bytes: nothing to wait for
    }
    // SAFETY: the caller's arguments.
    unsafe { transfer(ctx, fd, iov, iovcnt, offset, Dir::Read { cached }, plain) }
}

/// `writev` at `offset`, as [`readv_at`].
///
/// # Safety
/// As libc's `writev`/`pwritev`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn writev_at(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !(1..=IOV_MAX).contains(&iovcnt) {
        return plain();
    }
    // SAFETY: the caller's arguments.
    unsafe { transfer(ctx, fd, iov, iovcnt, offset, Dir::Write, plain) }
}

/// Which way a [`transfer`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// `cached`: the page cache may serve it (not `O_DIRECT`).
    Read {
        cached: bool,
    },
    Write,
}

/// One read or write of a file. A read first takes what the page cache holds, inline
/// (`preadv2(RWF_NOWAIT)`, which fails with `EAGAIN` rather than wait for the disk): a warm
/// read costs no suspension. What the cache does not hold, and every write, goes to the
/// ring or a helper. A read the cache served in part continues there for the rest, so the
/// count is what a blocking read gives (a short count only at the end of the file or on an
/// error after some bytes).
///
/// # Safety
/// `iov` is the caller's, valid for `iovcnt` (1..=IOV_MAX) entries; `plain` is the libc
/// call of the same arguments.
unsafe fn transfer(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    dir: Dir,
    plain: impl FnOnce() -> isize,
) -> isize {
    let write = dir == Dir::Write;
    if dir != (Dir::Read { cached: true }) || !inline(ctx) {
        // SAFETY: guaranteed by the caller.
        return unsafe { on_backend(ctx, fd, iov, iovcnt, offset, write, plain) };
    }
    let caller_errno = sys::errno();
    let got = rw2(fd, iov, iovcnt, offset, false, RWF_NOWAIT);
    if got < 0 {
        if !matches!(sys::errno(), libc::EAGAIN | libc::EOPNOTSUPP) {
            return got; // the call's own error (EBADF, EISDIR, EFAULT...), as libc gives it
        }
        sys::set_errno(caller_errno);
        // SAFETY: guaranteed by the caller.
        return unsafe { on_backend(ctx, fd, iov, iovcnt, offset, false, plain) };
    }
    // SAFETY: the kernel accepted `iov`, which the caller vouches for.
    if got == 0 || got as usize >= unsafe { iov_total(iov, iovcnt) } {
        // Served without a wait: counts against the budget, so that a loop of warm reads
        // lets the worker's other coroutines run (as `hook::wait` does for sockets).
        sys::set_errno(caller_errno);
        return inline_call(ctx, || got);
    }
    let mut scratch = Vec::new();
    // SAFETY: as above; `got` bytes of it were read.
    let (rest, count) = unsafe { iov_after(iov, iovcnt, got as usize, &mut scratch) };
    let next = if offset < 0 { -1 } else { offset + got as i64 };
    // The rest is read by the raw call, on a helper if need be: equal to libc's for it.
    let plain_rest = move || rw2(fd, rest, count, next, false, 0);
    // SAFETY: `rest` is a view of the caller's buffers, in `scratch` on this stack.
    let more = unsafe { on_backend(ctx, fd, rest, count, next, false, plain_rest) };
    sys::set_errno(caller_errno); // an error after some bytes is no error
    got + more.max(0)
}

/// `iov` at `offset` on the ring (`READV`/`WRITEV`), else `plain` on a helper.
///
/// # Safety
/// As for [`transfer`].
unsafe fn on_backend(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    write: bool,
    plain: impl FnOnce() -> isize,
) -> isize {
    let (code, entry) = if write {
        (opcode::Writev::CODE, opcode::Writev::new(Fd(fd), iov, iovcnt as u32).offset(offset as u64).build())
    } else {
        (opcode::Readv::CODE, opcode::Readv::new(Fd(fd), iov, iovcnt as u32).offset(offset as u64).build())
    };
    // SAFETY: guaranteed by the caller.
    unsafe { call(ctx, code, || entry, plain) }
}

/// `preadv2`/`pwritev2` with `flags`, by a raw system call (-1 with errno on failure);
/// offset -1 is the current position.
fn rw2(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: i64, write: bool, flags: c_int) -> isize {
    let nr = if write { libc::SYS_pwritev2 } else { libc::SYS_preadv2 };
    // SAFETY: the kernel validates the buffers (`EFAULT`); the callers pass their callers'.
    unsafe { sys::syscall!(nr, fd, iov, iovcnt, offset, 0i64, flags) as isize }
}

/// The coroutine, if the positioned call on `fd` at `offset` should go to the file path: a
/// file, and an offset io_uring reads as libc does (it takes -1 as "the current position"
/// where `pread` fails with `EINVAL`). Sockets and pipes go to libc, which answers `ESPIPE`.
fn positioned(fd: c_int, offset: off_t) -> Option<(&'static Context, bool)> {
    let ctx = coroutine::current()?;
    match kind(fd) {
        Kind::File { direct } if offset >= 0 => Some((ctx, !direct)),
        _ => None,
    }
}

macro_rules! positioned_hooks {
    // `$c` names the "page cache may serve it" flag, passed on to the reads (`$at($c)`).
    ($c:ident; $($name:ident($buf:ty, $len:ty) => $at:ident $(($cached:ident))?),* $(,)?) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: $buf, len: $len, offset: off_t) -> ssize_t {
            let real = real!($name: fn(c_int, $buf, $len, off_t) -> ssize_t);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, buf, len, offset) };
            match positioned(fd, offset) {
                // SAFETY: the caller's arguments.
                #[allow(unused_variables)]
                Some((ctx, $c)) => unsafe { $at(ctx, fd, buf, len, offset, $($cached,)? plain) },
                None => plain(),
            }
        }
    )*};
}

positioned_hooks!(cached;
    pread(*mut c_void, size_t) => read_at(cached),
    pread64(*mut c_void, size_t) => read_at(cached),
    pwrite(*const c_void, size_t) => write_at,
    pwrite64(*const c_void, size_t) => write_at,
    preadv(*const iovec, c_int) => readv_at(cached),
    preadv64(*const iovec, c_int) => readv_at(cached),
    pwritev(*const iovec, c_int) => writev_at,
    pwritev64(*const iovec, c_int) => writev_at,
);
