//! A coroutine that yields in a loop (`yield_now`, `sleep(0)`, a zero `nanosleep`) lets the
//! jobs queued behind it start, even on a one-worker runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// Yields until a job submitted after it has run; returns how many yields it took. Bounded,
/// so that a regression fails instead of hanging.
fn yields_until_next_job_runs(yield_once: fn()) -> u64 {
    let rt = openco::Builder::new().workers(1).build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let flag = Arc::new(AtomicBool::new(false));
    let seen = flag.clone();
    let spinner = rt.blocking(move || {
        started_tx.send(()).unwrap();
        let mut n = 0u64;
        while !seen.load(Ordering::SeqCst) && n < 1_000_000 {
            yield_once();
            n += 1;
        }
        n
    });
    started_rx.recv().unwrap();
    let setter = rt.blocking(move || flag.store(true, Ordering::SeqCst));
    let n = spinner.join().unwrap();
    setter.join().unwrap();
    n
}

#[test]
fn yield_now_lets_queued_jobs_start() {
    assert!(yields_until_next_job_runs(openco::yield_now) < 1_000_000);
}

#[test]
fn zero_sleeps_let_queued_jobs_start() {
    fn sleep_zero() {
        // SAFETY: sleep has no memory-safety preconditions.
        unsafe { libc::sleep(0) };
    }
    fn nanosleep_zero() {
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `zero` is a valid timespec; `rem` may be null.
        unsafe { libc::nanosleep(&zero, std::ptr::null_mut()) };
    }
    assert!(yields_until_next_job_runs(sleep_zero) < 1_000_000);
    assert!(yields_until_next_job_runs(nanosleep_zero) < 1_000_000);
}
