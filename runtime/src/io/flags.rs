//! File status flags as the user set them, and the few moments openco changes them.
//!
//! openco keeps no per-fd state: whether an fd is non-blocking, and its socket timeouts, are
//! read from the kernel when a call is about to wait, so nothing can go stale when an fd is
//! closed behind openco's back and its number reused. Reads and writes are made
//! non-blocking per call (`MSG_DONTWAIT`, `RWF_NOWAIT`) without touching the fd.
//!
//! Two calls have no per-call flag: `accept` and `connect`. For them openco sets `O_NONBLOCK`
//! for the duration of the one system call and restores the user's flags right after. That
//! window is held under a lock striped by fd, which the `fcntl(F_GETFL/F_SETFL)` and
//! `ioctl(FIONBIO)` hooks take too (on every thread), so nobody reading the flags through
//! libc ever sees openco's `O_NONBLOCK`, and a user's `F_SETFL` is never undone by the
//! restore. The lock is a spin lock held only across non-blocking system calls; it is
//! re-entrant per thread, so a signal handler that calls `fcntl` cannot deadlock on a
//! window its own thread holds.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use libc::c_int;

use crate::sys;

const STRIPES: usize = 64;

static WINDOWS: [AtomicUsize; STRIPES] = [const { AtomicUsize::new(0) }; STRIPES];

/// Set once any socket got a receive or send timeout through `setsockopt`: until then no
/// call needs to ask the kernel for one.
static TIMEOUTS_SET: AtomicBool = AtomicBool::new(false);

/// Bumped after every change of flags or timeouts made through the hooks: what the reactor
/// remembers of an fd is valid only within one epoch.
static EPOCH: AtomicU64 = AtomicU64::new(0);

pub(crate) fn epoch() -> u64 {
    EPOCH.load(SeqCst)
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A value unique to the calling thread while it lives.
fn thread_token() -> usize {
    TOKEN.try_with(|t| t as *const u8 as usize).unwrap_or(usize::MAX)
}

struct Window {
    stripe: Option<&'static AtomicUsize>,
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Some(stripe) = self.stripe {
            stripe.store(0, Release);
        }
    }
}

fn lock(fd: c_int) -> Window {
    let stripe = &WINDOWS[fd as usize % STRIPES];
    let me = thread_token();
    let mut spins = 0u32;
    loop {
        match stripe.compare_exchange_weak(0, me, Acquire, Relaxed) {
            Ok(_) => return Window { stripe: Some(stripe) },
            Err(owner) if owner == me => return Window { stripe: None },
            Err(_) => {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    // SAFETY: sched_yield has no preconditions; it is not hooked.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }
}

fn getfl(fd: c_int) -> c_int {
    // SAFETY: F_GETFL takes no argument.
    unsafe { crate::sys::syscall!(libc::SYS_fcntl, fd, libc::F_GETFL) as c_int }
}

fn setfl(fd: c_int, flags: c_int) -> c_int {
    // SAFETY: F_SETFL takes an integer argument.
    unsafe { crate::sys::syscall!(libc::SYS_fcntl, fd, libc::F_SETFL, flags) as c_int }
}

/// The fd's status flags as the user set them (`F_GETFL`), or the errno.
pub(crate) fn user_flags(fd: c_int) -> Result<c_int, c_int> {
    let _window = lock(fd);
    match getfl(fd) {
        -1 => Err(sys::errno()),
        flags => Ok(flags),
    }
}

/// Runs `f` (one non-blocking system call on `fd`) with `O_NONBLOCK` set, then restores the
/// user's flags; errno is `f`'s. Also returns whether the user had made the fd non-blocking
/// (or its flags cannot be read): then `f` runs as it is.
pub(crate) fn with_nonblocking<R>(fd: c_int, f: impl FnOnce() -> R) -> (R, bool) {
    let _window = lock(fd);
    let flags = getfl(fd);
    if flags == -1 || flags & libc::O_NONBLOCK != 0 {
        return (f(), true);
    }
    setfl(fd, flags | libc::O_NONBLOCK);
    let out = f();
    let errno = sys::errno();
    setfl(fd, flags);
    sys::set_errno(errno);
    (out, false)
}

/// Runs a user's flag query or change (`fcntl`, `ioctl(FIONBIO)`) outside any window on `fd`.
/// `changes`: the call may change the flags, which ends the current epoch once it is done.
pub(crate) fn outside_window<R>(fd: c_int, changes: bool, f: impl FnOnce() -> R) -> R {
    let _window = lock(fd);
    let out = f();
    if changes {
        EPOCH.fetch_add(1, SeqCst);
    }
    out
}

pub(crate) fn note_timeout_set() {
    TIMEOUTS_SET.store(true, Relaxed);
    EPOCH.fetch_add(1, SeqCst);
}

/// The socket's `SO_RCVTIMEO` or `SO_SNDTIMEO`, if it has one.
pub(crate) fn socket_timeout(fd: c_int, option: c_int) -> Option<std::time::Duration> {
    if !TIMEOUTS_SET.load(Relaxed) {
        return None;
    }
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid out-parameters of the right size.
    let ret = unsafe {
        crate::sys::syscall!(
            libc::SYS_getsockopt,
            fd,
            libc::SOL_SOCKET,
            option,
            &mut tv as *mut libc::timeval,
            &mut len as *mut libc::socklen_t,
        )
    };
    if ret != 0 || (tv.tv_sec <= 0 && tv.tv_usec <= 0) {
        return None;
    }
    Some(std::time::Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000))
}
