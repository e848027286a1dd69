//! fd lifetime and flags: `close`, `dup2`, `dup3`, `fcntl`, `ioctl`.
//!
//! These run the same on every thread, in a coroutine or not:
//! - `close` (and `dup2`/`dup3`, which close their target) makes the real call (on
//!   io_uring for a regular file in a coroutine: see `hook::file`), then wakes
//!   the coroutines of any worker waiting on that fd (epoll never reports a close; see
//!   `io::registry`). They retry their call and get libc's answer for a closed fd, `EBADF`.
//!   The check costs one load when nobody waits.
//! - `fcntl(F_GETFL/F_SETFL)` and `ioctl(FIONBIO)` wait for the end of any `O_NONBLOCK`
//!   window openco holds on the fd for an `accept` or `connect` (see `io::flags`), so the
//!   user only ever sees and changes their own flags.
//!
//! `fcntl` and `ioctl` are variadic in C. On x86_64 and aarch64 Linux a variadic integer
//! or pointer argument travels in the same register as a named one, so a definition with
//! one extra `c_ulong` argument receives it (and passes an unused one on harmlessly).

use libc::{c_int, c_ulong};

use super::real;
use crate::io::{flags, registry};
use crate::sys;

fn after_close(fd: c_int) {
    let errno = sys::errno();
    registry::fd_closed(fd);
    sys::set_errno(errno);
}

/// # Safety
/// As libc's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let real = real!(close: fn(c_int) -> c_int);
    // SAFETY: the caller's argument, passed on as it is.
    let plain = move || unsafe { real(fd) };
    let ret = super::file::close_file(fd, plain).unwrap_or_else(|plain| plain());
    after_close(fd);
    ret
}

/// # Safety
/// As libc's `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let real = real!(dup2: fn(c_int, c_int) -> c_int);
    // SAFETY: the caller's arguments, passed on as they are.
    let ret = unsafe { real(old, new) };
    if ret >= 0 && old != new {
        after_close(new);
    }
    ret
}

/// # Safety
/// As libc's `dup3`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let real = real!(dup3: fn(c_int, c_int, c_int) -> c_int);
    // SAFETY: the caller's arguments, passed on as they are.
    let ret = unsafe { real(old, new, flags) };
    if ret >= 0 {
        after_close(new);
    }
    ret
}

/// `fcntl` or `fcntl64` through `real`: flag reads and changes wait for any `O_NONBLOCK`
/// window on the fd, and a change ends the epoch of what the reactor remembers of fds.
///
/// # Safety
/// `real` is libc's `fcntl` or `fcntl64`; the arguments are valid for it.
unsafe fn fcntl_via(
    real: unsafe extern "C" fn(c_int, c_int, c_ulong) -> c_int,
    fd: c_int,
    cmd: c_int,
    arg: c_ulong,
) -> c_int {
    if cmd == libc::F_GETFL || cmd == libc::F_SETFL {
        // SAFETY: guaranteed by the caller.
        return flags::outside_window(fd, cmd == libc::F_SETFL, || unsafe { real(fd, cmd, arg) });
    }
    // SAFETY: guaranteed by the caller.
    unsafe { real(fd, cmd, arg) }
}

/// # Safety
/// As libc's `fcntl`.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let real = real!(fcntl: fn(c_int, c_int, c_ulong) -> c_int);
    // SAFETY: libc's function of the same name and signature, and the caller's arguments.
    unsafe { fcntl_via(real, fd, cmd, arg) }
}

/// # Safety
/// As glibc's `fcntl64` (what C code built with `_FILE_OFFSET_BITS=64` calls).
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let real = real!(fcntl64: fn(c_int, c_int, c_ulong) -> c_int);
    // SAFETY: libc's function of the same name and signature, and the caller's arguments.
    unsafe { fcntl_via(real, fd, cmd, arg) }
}

/// # Safety
/// As libc's `ioctl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int {
    let real = real!(ioctl: fn(c_int, c_ulong, c_ulong) -> c_int);
    if request == libc::FIONBIO as c_ulong {
        // SAFETY: the caller's arguments, passed on as they are.
        return flags::outside_window(fd, true, || unsafe { real(fd, request, arg) });
    }
    // SAFETY: the caller's arguments, passed on as they are.
    unsafe { real(fd, request, arg) }
}
