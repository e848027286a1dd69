//! The sleep family: `nanosleep`, `clock_nanosleep`, `usleep`, `sleep`.
//!
//! Inside a coroutine the call parks the coroutine on its worker's timer until the deadline.
//! Results follow libc: `nanosleep`/`usleep` return -1 and set errno, `clock_nanosleep`
//! returns the error number and leaves errno alone. `rem` is written only on `EINTR` by
//! libc; a coroutine sleep is never interrupted by a signal (the signal runs on the worker
//! thread, not "in" the coroutine), so it is never written.
//!
//! CPU-time clocks and the `*_ALARM` clocks go to libc as they are (they block the thread, as
//! they would anyway); so do invalid clock ids, which get libc's own `EINVAL`.

use std::time::{Duration, Instant};

use libc::{c_int, c_uint, clockid_t, timespec, useconds_t};

use super::real;
use crate::coroutine::{self, Context, Suspend};
use crate::sys;

/// Parks the coroutine until `duration` has passed; a zero duration yields.
fn sleep_in(ctx: &Context, duration: Duration) {
    if duration.is_zero() {
        coroutine::suspend(ctx, Suspend::Yield);
        return;
    }
    let deadline = Instant::now().checked_add(duration);
    // Wake-ups before the deadline are spurious (a stale waker): sleep on.
    while deadline.is_none_or(|d| Instant::now() < d) {
        coroutine::suspend(ctx, Suspend::Park(deadline));
    }
}

/// Reads a `timespec` argument as the kernel does: null is `EFAULT`, a negative or
/// out-of-range field is `EINVAL`.
///
/// # Safety
/// `ts` is null or valid for reads.
unsafe fn read_timespec(ts: *const timespec) -> Result<timespec, c_int> {
    // SAFETY: guaranteed by the caller.
    let ts = unsafe { ts.as_ref() }.ok_or(libc::EFAULT)?;
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return Err(libc::EINVAL);
    }
    Ok(*ts)
}

fn duration(ts: timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// # Safety
/// As libc's `nanosleep`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    let Some(ctx) = coroutine::current() else {
        let real = real!(nanosleep: fn(*const timespec, *mut timespec) -> c_int);
        // SAFETY: the caller's arguments, passed on as they are.
        return unsafe { real(req, rem) };
    };
    // SAFETY: the caller passes a valid or null `req`, as libc requires.
    match unsafe { read_timespec(req) } {
        Ok(ts) => {
            sleep_in(ctx, duration(ts));
            0
        }
        Err(errno) => {
            sys::set_errno(errno);
            -1
        }
    }
}

/// # Safety
/// As libc's `clock_nanosleep`.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let ctx = match coroutine::current() {
        Some(ctx)
            if matches!(
                clock,
                libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME | libc::CLOCK_TAI
            ) =>
        {
            ctx
        }
        _ => {
            let real = real!(clock_nanosleep: fn(clockid_t, c_int, *const timespec, *mut timespec) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            return unsafe { real(clock, flags, req, rem) };
        }
    };
    // SAFETY: the caller passes a valid or null `req`, as libc requires.
    let ts = match unsafe { read_timespec(req) } {
        Ok(ts) => ts,
        Err(errno) => return errno,
    };
    let wait = if flags & libc::TIMER_ABSTIME != 0 {
        let mut now = timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid out-parameter; the clock id was checked above.
        unsafe { libc::clock_gettime(clock, &mut now) };
        duration(ts).saturating_sub(duration(now))
    } else {
        duration(ts)
    };
    // An absolute deadline already past still returns at once, as libc does.
    if flags & libc::TIMER_ABSTIME != 0 && wait.is_zero() {
        return 0;
    }
    sleep_in(ctx, wait);
    0
}

/// # Safety
/// As libc's `usleep`.
#[no_mangle]
pub unsafe extern "C" fn usleep(usec: useconds_t) -> c_int {
    let Some(ctx) = coroutine::current() else {
        let real = real!(usleep: fn(useconds_t) -> c_int);
        // SAFETY: passed on as it is.
        return unsafe { real(usec) };
    };
    sleep_in(ctx, Duration::from_micros(usec.into()));
    0
}

/// # Safety
/// As libc's `sleep`.
#[no_mangle]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    let Some(ctx) = coroutine::current() else {
        let real = real!(sleep: fn(c_uint) -> c_uint);
        // SAFETY: passed on as it is.
        return unsafe { real(seconds) };
    };
    sleep_in(ctx, Duration::from_secs(seconds.into()));
    0
}
