//! Thin wrappers over the raw system calls the runtime makes for itself.
//!
//! The runtime never calls its own hooks: every call here goes through [`syscall!`] (the
//! kernel, entered by [`raw`] without libc), or through a real libc symbol that openco does
//! not interpose.

pub(crate) mod raw;

/// `libc::syscall` without libc (whose `syscall` openco interposes): `syscall!(SYS_x, a, b)`
/// returns a `c_long`, -1 with `errno` set on failure. Arguments are cast with `as usize`.
/// Must be used inside `unsafe`, with the contract of [`raw`].
macro_rules! syscall {
    ($number:expr $(, $arg:expr)* $(,)?) => {
        $crate::sys::raw::syscall($number as libc::c_long, $crate::sys::raw::args([$($arg as usize),*]))
    };
}
pub(crate) use syscall;

use std::io;
use std::time::Duration;

/// Reads the calling thread's `errno`.
#[inline]
pub(crate) fn errno() -> i32 {
    // SAFETY: `__errno_location` always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub(crate) fn set_errno(value: i32) {
    // SAFETY: as in `errno`; the location is writable by its own thread.
    unsafe { *libc::__errno_location() = value }
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An owned file descriptor closed with a raw `close` system call.
#[derive(Debug)]
pub(crate) struct Fd(pub(crate) libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed exactly once.
        unsafe { syscall!(libc::SYS_close, self.0) };
    }
}

pub(crate) fn eventfd() -> io::Result<Fd> {
    let flags = libc::EFD_CLOEXEC | libc::EFD_NONBLOCK;
    // SAFETY: plain system call with integer arguments.
    let fd = check(unsafe { syscall!(libc::SYS_eventfd2, 0, flags) })?;
    Ok(Fd(fd as libc::c_int))
}

/// Adds one to an eventfd counter. Never blocks: the fd is non-blocking and the counter can
/// only overflow after 2^64 - 2 unread increments.
pub(crate) fn eventfd_signal(fd: libc::c_int) {
    let one: u64 = 1;
    // SAFETY: `one` is a valid 8-byte buffer for the duration of the call.
    unsafe { syscall!(libc::SYS_write, fd, &one as *const u64, 8usize) };
}

/// Resets an eventfd counter to zero.
pub(crate) fn eventfd_drain(fd: libc::c_int) {
    let mut value: u64 = 0;
    // SAFETY: `value` is a valid, writable 8-byte buffer for the duration of the call.
    unsafe { syscall!(libc::SYS_read, fd, &mut value as *mut u64, 8usize) };
}

pub(crate) fn epoll_create() -> io::Result<Fd> {
    // SAFETY: plain system call with an integer argument.
    let fd = check(unsafe { syscall!(libc::SYS_epoll_create1, libc::EPOLL_CLOEXEC) })?;
    Ok(Fd(fd as libc::c_int))
}

pub(crate) fn epoll_add(epfd: libc::c_int, fd: libc::c_int, events: u32, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: `event` is valid for the duration of the call.
    check(unsafe { syscall!(libc::SYS_epoll_ctl, epfd, libc::EPOLL_CTL_ADD, fd, &mut event as *mut _) })?;
    Ok(())
}

/// `epoll_ctl` with one event; the error is the errno.
pub(crate) fn epoll_ctl(
    epfd: libc::c_int,
    op: libc::c_int,
    fd: libc::c_int,
    events: u32,
    token: u64,
) -> Result<(), i32> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: `event` is valid for the duration of the call.
    match unsafe { syscall!(libc::SYS_epoll_ctl, epfd, op, fd, &mut event as *mut _) } {
        0 => Ok(()),
        _ => Err(errno()),
    }
}

/// Waits on an epoll instance. `None` waits forever. Interrupted waits return 0 events.
///
/// Uses `epoll_pwait2` (nanosecond timeouts, Linux 5.11) and falls back to `epoll_pwait`,
/// rounding the timeout up to whole milliseconds so that a timer never fires early.
pub(crate) fn epoll_wait(epfd: libc::c_int, events: &mut [libc::epoll_event], timeout: Option<Duration>) -> usize {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static NO_PWAIT2: AtomicBool = AtomicBool::new(false);
    let max = events.len().min(i32::MAX as usize) as libc::c_int;
    let ptr = events.as_mut_ptr();
    if !NO_PWAIT2.load(Relaxed) {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `ptr` is valid for `max` events; `tsp` is null or points to `ts`.
        let n = unsafe { syscall!(libc::SYS_epoll_pwait2, epfd, ptr, max, tsp, 0usize, 8usize) };
        if n >= 0 {
            return n as usize;
        }
        if errno() != libc::ENOSYS {
            return 0;
        }
        NO_PWAIT2.store(true, Relaxed);
    }
    let ms = match timeout {
        None => -1,
        Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `ptr` is valid for `max` events; a null sigmask leaves the mask alone.
    let n = unsafe { syscall!(libc::SYS_epoll_pwait, epfd, ptr, max, ms, 0usize, 8usize) };
    n.max(0) as usize
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            PAGE.store(page, Relaxed);
            page
        }
        page => page,
    }
}
