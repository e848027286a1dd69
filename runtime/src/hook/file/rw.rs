//! Reads and writes of files: `pread`, `pwrite`, `preadv`, `pwritev` (and their `*64`
//! names), and the file half of `read`, `write`, `readv`, `writev` (`hook::rw` sends files
//! here with the offset -1, "the current position", which io_uring reads and advances as
//! `read(2)` does).

use io_uring::{opcode, types::Fd};
use libc::{c_int, c_void, iovec, off_t, size_t, ssize_t};

use super::{call, kind, Kind};
use crate::coroutine::{self, Context};
use crate::hook::real;

/// The most bytes one read or write moves (the kernel's `MAX_RW_COUNT`): larger counts are
/// cut to it, by the kernel and here alike.
const MAX_RW_COUNT: usize = 0x7fff_f000;

/// The most iovecs a vectored call takes (`UIO_MAXIOV`).
const IOV_MAX: c_int = 1024;

/// Reads `count` bytes at `offset` (-1: the current position) of a file.
///
/// # Safety
/// As libc's `read`/`pread`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn read_at(
    ctx: &Context,
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: i64,
    plain: impl FnOnce() -> isize,
) -> isize {
    let len = count.min(MAX_RW_COUNT) as u32;
    let entry = || opcode::Read::new(Fd(fd), buf.cast(), len).offset(offset as u64).build();
    // SAFETY: the caller's arguments.
    unsafe { call(ctx, opcode::Read::CODE, entry, plain) }
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
    let len = count.min(MAX_RW_COUNT) as u32;
    let entry = || opcode::Write::new(Fd(fd), buf.cast(), len).offset(offset as u64).build();
    // SAFETY: the caller's arguments.
    unsafe { call(ctx, opcode::Write::CODE, entry, plain) }
}

/// `readv` at `offset`; counts io_uring and libc would judge differently go to libc.
///
/// # Safety
/// As libc's `readv`/`preadv`, with `plain` the libc call of the same arguments.
pub(crate) unsafe fn readv_at(
    ctx: &Context,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    plain: impl FnOnce() -> isize,
) -> isize {
    if !(1..=IOV_MAX).contains(&iovcnt) {
        return plain(); // EINVAL, or 0 bytes: nothing to wait for
    }
    let entry = || opcode::Readv::new(Fd(fd), iov, iovcnt as u32).offset(offset as u64).build();
    // SAFETY: the caller's arguments.
    unsafe { call(ctx, opcode::Readv::CODE, entry, plain) }
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
    let entry = || opcode::Writev::new(Fd(fd), iov, iovcnt as u32).offset(offset as u64).build();
    // SAFETY: the caller's arguments.
    unsafe { call(ctx, opcode::Writev::CODE, entry, plain) }
}

/// The coroutine, if the positioned call on `fd` at `offset` should go to the file path: a
/// file, and an offset io_uring reads as libc does (it takes -1 as "the current position"
/// where `pread` fails with `EINVAL`). Sockets and pipes go to libc, which answers `ESPIPE`.
fn positioned(fd: c_int, offset: off_t) -> Option<&'static Context> {
    let ctx = coroutine::current()?;
    (offset >= 0 && kind(fd) == Kind::File).then_some(ctx)
}

macro_rules! pread_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t {
            let real = real!($name: fn(c_int, *mut c_void, size_t, off_t) -> ssize_t);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, buf, count, offset) };
            match positioned(fd, offset) {
                // SAFETY: the caller's arguments.
                Some(ctx) if count > 0 => unsafe { read_at(ctx, fd, buf, count, offset, plain) },
                _ => plain(),
            }
        }
    )*};
}

macro_rules! pwrite_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t {
            let real = real!($name: fn(c_int, *const c_void, size_t, off_t) -> ssize_t);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, buf, count, offset) };
            match positioned(fd, offset) {
                // SAFETY: the caller's arguments.
                Some(ctx) if count > 0 => unsafe { write_at(ctx, fd, buf, count, offset, plain) },
                _ => plain(),
            }
        }
    )*};
}

macro_rules! preadv_hooks {
    ($($name:ident => $at:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
            let real = real!($name: fn(c_int, *const iovec, c_int, off_t) -> ssize_t);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, iov, iovcnt, offset) };
            match positioned(fd, offset) {
                // SAFETY: the caller's arguments.
                Some(ctx) => unsafe { $at(ctx, fd, iov, iovcnt, offset, plain) },
                None => plain(),
            }
        }
    )*};
}

pread_hooks!(pread, pread64);
pwrite_hooks!(pwrite, pwrite64);
preadv_hooks!(preadv => readv_at, preadv64 => readv_at, pwritev => writev_at, pwritev64 => writev_at);
