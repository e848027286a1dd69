//! `poll`, `ppoll`, `select`, `epoll_wait`, `epoll_pwait`: waiting on several fds.
//!
//! Inside a coroutine with a non-zero timeout, each call first runs as libc's with a zero
//! timeout (so results, `revents`, `POLLNVAL`, `EBADF`, `EFAULT` are the kernel's own). If
//! nothing is ready, the coroutine waits on all the fds in its worker's reactor until one is
//! ready, one is closed, or the timeout passes, and the zero-timeout call is made again. A
//! zero timeout never suspends. An epoll fd is itself pollable, which serves legacy code
//! running its own `epoll_wait` loop.
//!
//! The signal mask of `ppoll`/`epoll_pwait` applies to the zero-timeout calls only: a
//! signal is delivered to the worker thread, never "to" a suspended coroutine, so the calls
//! never fail with `EINTR` inside a coroutine.

use std::time::{Duration, Instant};

use libc::{c_int, epoll_event, fd_set, nfds_t, pollfd, sigset_t, timespec, timeval};

use super::real;
use super::wait;
use crate::coroutine::{self, Context, Interest};

/// The poll bits that are also epoll bits (the values are the same on Linux).
const POLL_EVENTS: u32 = (libc::POLLIN
    | libc::POLLPRI
    | libc::POLLOUT
    | libc::POLLRDNORM
    | libc::POLLRDBAND
    | libc::POLLWRNORM
    | libc::POLLWRBAND
    | libc::POLLRDHUP) as u32;

/// Repeats `check` (a zero-timeout call) until it reports something or `deadline` passes,
/// waiting in between on the interests `collect` lists. `block(remaining)` is the plain call
/// with a timeout, used if the fds cannot be waited on.
fn wait_loop(
    ctx: &Context,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> c_int,
    mut collect: impl FnMut(&mut Vec<Interest>),
    block: impl FnOnce(Option<Duration>) -> c_int,
) -> c_int {
    let mut interests = Vec::new();
    let mut failed = 0;
    loop {
        let ret = check();
        if ret != 0 {
            return ret;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        interests.clear();
        collect(&mut interests);
        match wait::wait(ctx, &interests, deadline) {
            Ok(()) => failed = 0,
            // An fd closed meanwhile: the next check reports it. An fd epoll refuses is
            // ready to poll by definition; if one is not, wait in the kernel as libc does.
            Err(_) if failed == 0 => failed += 1,
            Err(_) => return block(deadline.map(|d| d.saturating_duration_since(Instant::now()))),
        }
    }
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

fn poll_interests(fds: *mut pollfd, nfds: nfds_t, out: &mut Vec<Interest>) {
    // SAFETY: called after a zero-timeout poll accepted `fds` for `nfds` entries.
    let fds = unsafe { std::slice::from_raw_parts(fds, nfds as usize) };
    out.extend(fds.iter().filter(|p| p.fd >= 0).map(|p| Interest { fd: p.fd, events: p.events as u32 & POLL_EVENTS }));
}

/// # Safety
/// As libc's `poll`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    let real = real!(poll: fn(*mut pollfd, nfds_t, c_int) -> c_int);
    let ctx = match coroutine::current() {
        Some(ctx) if timeout != 0 => ctx,
        // SAFETY: the caller's arguments, passed on as they are.
        _ => return unsafe { real(fds, nfds, timeout) },
    };
    let limit = (timeout > 0).then(|| Duration::from_millis(timeout as u64));
    wait_loop(
        ctx,
        deadline_after(limit),
        // SAFETY: the caller's arguments with a zero timeout.
        || unsafe { real(fds, nfds, 0) },
        |out| poll_interests(fds, nfds, out),
        // SAFETY: the caller's arguments with the remaining timeout.
        |left| unsafe { real(fds, nfds, left.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as c_int)) },
    )
}

/// # Safety
/// As libc's `ppoll`.
#[no_mangle]
pub unsafe extern "C" fn ppoll(fds: *mut pollfd, nfds: nfds_t, tmo: *const timespec, mask: *const sigset_t) -> c_int {
    let real = real!(ppoll: fn(*mut pollfd, nfds_t, *const timespec, *const sigset_t) -> c_int);
    // SAFETY: the caller passes a valid or null `tmo`.
    let limit = match unsafe { tmo.as_ref() } {
        None => None,
        Some(t) if t.tv_sec < 0 || !(0..1_000_000_000).contains(&t.tv_nsec) => Some(Duration::ZERO),
        Some(t) => Some(Duration::new(t.tv_sec as u64, t.tv_nsec as u32)),
    };
    let ctx = match coroutine::current() {
        Some(ctx) if limit != Some(Duration::ZERO) => ctx,
        // SAFETY: the caller's arguments, passed on as they are (an invalid timeout gets
        // libc's EINVAL).
        _ => return unsafe { real(fds, nfds, tmo, mask) },
    };
    let zero = timespec { tv_sec: 0, tv_nsec: 0 };
    wait_loop(
        ctx,
        deadline_after(limit),
        // SAFETY: the caller's arguments with a zero timeout.
        || unsafe { real(fds, nfds, &zero, mask) },
        |out| poll_interests(fds, nfds, out),
        |left| {
            let ts = left.map(|d| timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as _ });
            let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const timespec);
            // SAFETY: the caller's arguments with the remaining timeout.
            unsafe { real(fds, nfds, tsp, mask) }
        },
    )
}

/// # Safety
/// As libc's `select`.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    let real = real!(select: fn(c_int, *mut fd_set, *mut fd_set, *mut fd_set, *mut timeval) -> c_int);
    // SAFETY: the caller passes a valid or null `timeout`.
    let limit = match unsafe { timeout.as_ref() } {
        None => None,
        Some(t) if t.tv_sec < 0 || t.tv_usec < 0 => Some(Duration::ZERO),
        Some(t) => Some(Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)),
    };
    let ctx = match coroutine::current() {
        Some(ctx) if limit != Some(Duration::ZERO) && (0..=libc::FD_SETSIZE as c_int).contains(&nfds) => ctx,
        // SAFETY: the caller's arguments, passed on as they are.
        _ => return unsafe { real(nfds, readfds, writefds, exceptfds, timeout) },
    };
    let deadline = deadline_after(limit);
    // The sets are in-out: each zero-timeout try works on copies of what the caller asked.
    // SAFETY: the caller passes valid or null sets.
    let asked = unsafe { [readfds.as_ref().copied(), writefds.as_ref().copied(), exceptfds.as_ref().copied()] };
    let targets = [readfds, writefds, exceptfds];
    let ret = wait_loop(
        ctx,
        deadline,
        || {
            let mut sets = asked;
            let mut zero = timeval { tv_sec: 0, tv_usec: 0 };
            let ptr = |s: &mut Option<fd_set>| s.as_mut().map_or(std::ptr::null_mut(), |s| s as *mut fd_set);
            let [r, w, e] = &mut sets;
            // SAFETY: copies of the caller's sets and a zero timeout.
            let ret = unsafe { real(nfds, ptr(r), ptr(w), ptr(e), &mut zero) };
            if ret > 0 {
                for (target, set) in targets.iter().zip(sets) {
                    if let (Some(set), false) = (set, target.is_null()) {
                        // SAFETY: `target` is the caller's non-null set.
                        unsafe { **target = set };
                    }
                }
            }
            ret
        },
        |out| {
            let events = [libc::EPOLLIN, libc::EPOLLOUT, libc::EPOLLPRI];
            for (set, events) in asked.iter().zip(events) {
                let Some(set) = set else { continue };
                for fd in 0..nfds {
                    // SAFETY: `fd` is below `nfds`, within FD_SETSIZE.
                    if unsafe { libc::FD_ISSET(fd, set) } {
                        out.push(Interest { fd, events: events as u32 });
                    }
                }
            }
        },
        |left| {
            let mut tv = left.map(|d| timeval { tv_sec: d.as_secs() as libc::time_t, tv_usec: d.subsec_micros() as _ });
            let tvp = tv.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut timeval);
            // SAFETY: the caller's sets with the remaining timeout.
            unsafe { real(nfds, readfds, writefds, exceptfds, tvp) }
        },
    );
    if ret == 0 {
        for target in targets.into_iter().filter(|t| !t.is_null()) {
            // SAFETY: the caller's non-null set.
            unsafe { libc::FD_ZERO(target) };
        }
    }
    // Linux writes the time left back into the timeout.
    // SAFETY: the caller's valid or null timeout.
    if let (Some(t), Some(d)) = (unsafe { timeout.as_mut() }, deadline) {
        let left = d.saturating_duration_since(Instant::now());
        t.tv_sec = left.as_secs() as libc::time_t;
        t.tv_usec = left.subsec_micros() as _;
    }
    ret
}

fn epoll_in(
    ctx: &Context,
    epfd: c_int,
    timeout: c_int,
    mut check: impl FnMut() -> c_int,
    block: impl FnOnce(c_int) -> c_int,
) -> c_int {
    let limit = (timeout > 0).then(|| Duration::from_millis(timeout as u64));
    wait_loop(
        ctx,
        deadline_after(limit),
        &mut check,
        |out| out.push(Interest { fd: epfd, events: libc::EPOLLIN as u32 }),
        |left| block(left.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as c_int)),
    )
}

/// # Safety
/// As libc's `epoll_wait`.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(epfd: c_int, events: *mut epoll_event, max: c_int, timeout: c_int) -> c_int {
    let real = real!(epoll_wait: fn(c_int, *mut epoll_event, c_int, c_int) -> c_int);
    match coroutine::current() {
        // SAFETY (both closures): the caller's arguments, with a zero or the remaining timeout.
        Some(ctx) if timeout != 0 => epoll_in(
            ctx,
            epfd,
            timeout,
            || unsafe { real(epfd, events, max, 0) },
            |t| unsafe { real(epfd, events, max, t) },
        ),
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(epfd, events, max, timeout) },
    }
}

/// # Safety
/// As libc's `epoll_pwait`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    let real = real!(epoll_pwait: fn(c_int, *mut epoll_event, c_int, c_int, *const sigset_t) -> c_int);
    match coroutine::current() {
        // SAFETY (both closures): the caller's arguments, with a zero or the remaining timeout.
        Some(ctx) if timeout != 0 => epoll_in(
            ctx,
            epfd,
            timeout,
            || unsafe { real(epfd, events, max, 0, mask) },
            |t| unsafe { real(epfd, events, max, t, mask) },
        ),
        // SAFETY: the caller's arguments, passed on as they are.
        _ => unsafe { real(epfd, events, max, timeout, mask) },
    }
}
