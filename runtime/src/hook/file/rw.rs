//! Reads and writes of files: `pread`, `pwrite`, `preadv`, `pwritev` (and their `*64`
//! names), and the file half of `read`, `write`, `readv`, `writev` (`hook::rw` sends files
//! here with the offset -1, "the current position", which io_uring reads and advances as
//! `read(2)` does).
//!
//! What the page cache can take is done inline: reads it holds ([`read`]) and buffered
//! writes to local filesystems ([`write`]); the rest goes to the ring or a helper.

use io_uring::{opcode, types::Fd};
use libc::{c_int, c_void, iovec, off_t, size_t, ssize_t};

use super::{call, inline, inline_call, kind, Cache, Kind};
use crate::coroutine::{self, Context};
use crate::hook::real;
use crate::hook::rw::{iov_after, iov_total, RWF_NOWAIT};
use crate::sys;

/// The most bytes one read or write moves (the kernel's `MAX_RW_COUNT`): larger counts are
/// cut to it, by the kernel and here alike.
const MAX_RW_COUNT: usize = 0x7fff_f000;

/// The most iovecs a vectored call takes (`UIO_MAXIOV`).
const IOV_MAX: c_int = 1024;

/// Reads `count` bytes at `offset` (-1: the current position) of a file, the page cache
/// serving what it can inline if `cache` allows (see [`transfer`]).
///
/// # Safety
/// As libc's `read`/`pread`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn read_at(
    ctx: &Context,
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: i64,
    cache: Cache,
    plain: impl FnOnce() -> isize,
) -> isize {
    if count == 0 {
        return plain(); // nothing to wait for
    }
    let iov = iovec { iov_base: buf, iov_len: count.min(MAX_RW_COUNT) };
    // SAFETY: the caller's buffer, described by one iovec on this stack.
    unsafe { read(ctx, fd, &iov, 1, offset, cache.reads, plain) }
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
    cache: Cache,
    plain: impl FnOnce() -> isize,
) -> isize {
    if count == 0 {
        return plain();
    }
    let iov = iovec { iov_base: buf.cast_mut(), iov_len: count.min(MAX_RW_COUNT) };
    let inline = cache.writes && cache.local && count <= MAX_INLINE_WRITE;
    // SAFETY: the caller's buffer, described by one iovec on this stack.
    unsafe { write(ctx, fd, &iov, 1, offset, inline, plain) }
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
    cache: Cache,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !(1..=IOV_MAX).contains(&iovcnt) {
        return plain(); // EINVAL, or 0 bytes: nothing to wait for
    }
    // SAFETY: the caller's arguments.
    unsafe { read(ctx, fd, iov, iovcnt, offset, cache.reads, plain) }
}

/// `writev` at `offset`, as [`write_at`] (of any size: the total is not known before the
/// kernel has checked the iovecs).
///
/// # Safety
/// As libc's `writev`/`pwritev`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn writev_at(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    cache: Cache,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !(1..=IOV_MAX).contains(&iovcnt) {
        return plain();
    }
    // SAFETY: the caller's arguments.
    unsafe { write(ctx, fd, iov, iovcnt, offset, cache.writes && cache.local, plain) }
}

/// One read of a file. It first takes what the page cache holds, inline
/// (`preadv2(RWF_NOWAIT)`, which fails with `EAGAIN` rather than wait for the disk): a warm
/// read costs no suspension. What the cache does not hold goes to the ring or a helper; a
/// read the cache served in part continues there for the rest, so the count is what a
/// blocking read gives (a short count only at the end of the file or on an error after
/// some bytes). `cached` false (`O_DIRECT`), or `OPENCO_INLINE_FILE_CALLS=0`: all of it
/// goes to the backend.
///
/// # Safety
/// `iov` is the caller's, valid for `iovcnt` (1..=IOV_MAX) entries; `plain` is the libc
/// call of the same arguments.
unsafe fn read(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    cached: bool,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !cached || !inline(ctx) {
        // SAFETY: guaranteed by the caller.
        return unsafe { on_backend(ctx, fd, iov, iovcnt, offset, false, plain) };
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

/// The largest `write` made inline: copying it into the page cache takes tens of
/// microseconds; a larger one goes to the backend.
const MAX_INLINE_WRITE: usize = 256 * 1024;

/// One write of a file. A buffered write to a local filesystem ends in the page cache, a
/// copy of microseconds, where io_uring would run it on a kernel worker (ext4 has no
/// non-blocking buffered writes: `RWF_NOWAIT` fails) at ten to twenty times the cost: so it
/// is made inline when `inline_ok` (a local filesystem, not `O_DIRECT`, `O_SYNC` or
/// `O_DSYNC`, and not large).
/// Like a thread's, such a write can still sleep when the kernel throttles writers (dirty
/// pages, a journal commit); a worker held past the time slice hands its queued jobs to
/// another thread (`scheduler::monitor`). Sending writes to the ring once one was slow was
/// tried and measured worse: under a journal-bound load the ring's kernel workers are
/// slower still (the `log` scenario of `benches/files.rs`). Everything else goes to the
/// ring or a helper.
///
/// # Safety
/// As for [`read`].
unsafe fn write(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    inline_ok: bool,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !inline_ok || !inline(ctx) {
        // SAFETY: guaranteed by the caller.
        return unsafe { on_backend(ctx, fd, iov, iovcnt, offset, true, plain) };
    }
    let ret = rw2(fd, iov, iovcnt, offset, true, 0);
    inline_call(ctx, || ret)
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

/// The coroutine and what the page cache may serve, if the positioned call on `fd` at
/// `offset` should go to the file path: a file, and an offset io_uring reads as libc does
/// (it takes -1 as "the current position" where `pread` fails with `EINVAL`). Sockets and
/// pipes go to libc, which answers `ESPIPE`.
fn positioned(fd: c_int, offset: off_t) -> Option<(&'static Context, Cache)> {
    let ctx = coroutine::current()?;
    match kind(fd) {
        Kind::File(cache) if offset >= 0 => Some((ctx, cache)),
        _ => None,
    }
}

macro_rules! positioned_hooks {
    ($($name:ident($buf:ty, $len:ty) => $at:ident),* $(,)?) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: $buf, len: $len, offset: off_t) -> ssize_t {
            let real = real!($name: fn(c_int, $buf, $len, off_t) -> ssize_t);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, buf, len, offset) };
            match positioned(fd, offset) {
                // SAFETY: the caller's arguments.
                Some((ctx, cache)) => unsafe { $at(ctx, fd, buf, len, offset, cache, plain) },
                None => plain(),
            }
        }
    )*};
}

positioned_hooks!(
    pread(*mut c_void, size_t) => read_at,
    pread64(*mut c_void, size_t) => read_at,
    pwrite(*const c_void, size_t) => write_at,
    pwrite64(*const c_void, size_t) => write_at,
    preadv(*const iovec, c_int) => readv_at,
    preadv64(*const iovec, c_int) => readv_at,
    pwritev(*const iovec, c_int) => writev_at,
    pwritev64(*const iovec, c_int) => writev_at,
);
