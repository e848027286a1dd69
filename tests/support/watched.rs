//! Watchdogs and busy loops for the tests of issue 5 ("No coroutine can stall the others":
//! worker handoff and the futex hook), shared by `rt_handoff.rs` and `sync_locks.rs`.
//!
//! These tests provoke exactly the situations that hang a runtime without the mechanisms
//! (a worker busy or blocked, a coroutine blocked in a lock its own worker must release), so:
//! - every test body runs on its own thread under a watchdog of [`LIMIT`]: a hang fails the
//!   test after a few seconds instead of hanging `cargo test` (the stuck thread is left
//!   behind; the harness exits when the tests are done);
//! - every busy loop stops by itself ([`spin_until`] gives up after [`SPIN_LIMIT`]), so a
//!   missing handoff shows as a failed assertion, not as a CPU burnt forever;
//! - runtimes are [`Rt`]s, leaked instead of dropped when the body panics (dropping a runtime
//!   waits for its started coroutines, which may be the very ones that hang);
//! - the tests of one binary run one at a time ([`serial`]): their busy loops would otherwise
//!   compete for the 2 CPUs and disturb each other.
//!
//! Each test binary includes this file as a module of its own and uses only part of it.
#![allow(dead_code, unused_macros)]

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use openco::{Builder, JoinHandle, Runtime};

/// How long a test body may take before the watchdog calls it a hang. Far above what any of
/// these tests needs on a working runtime (well under a second each), so not a timing
/// assertion.
pub const LIMIT: Duration = Duration::from_secs(10);

/// How long [`join`] waits: below [`LIMIT`], so that its message, which names the job, is the
/// one reported.
pub const JOIN_LIMIT: Duration = Duration::from_secs(8);

/// How long a busy loop waits for its flag before giving up (see [`spin_until`]): below
/// [`LIMIT`], so a job that never ran is reported by an assertion naming it.
pub const SPIN_LIMIT: Duration = Duration::from_secs(5);

/// Takes the lock that makes the tests of one binary run one at a time. Poison is ignored:
/// a failed test must not fail the next ones.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a new plain thread and returns its result; panics (failing the test) if it
/// takes longer than `limit`, and re-raises its panic if it panicked.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let body = thread::Builder::new()
        .name("watched-body".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn the test body's thread");
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(body.join().expect_err("the body ended without a result"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {limit:?}: the runtime hangs (watchdog)")
        }
    }
}

/// Runs `body(arg)` serially (see [`serial`]) under the [`LIMIT`] watchdog.
pub fn run_watched<A: Send + 'static>(arg: A, body: fn(A)) {
    let _serial = serial();
    within(LIMIT, move || body(arg));
}

/// One runtime configuration of the sync tests: a worker count and whether the handoff to
/// spare threads is on (`time_slice(None)` turns it off). With one worker and no handoff, a
/// wait that blocks the thread instead of suspending the coroutine can never be rescued by
/// another thread, so those tests check the futex hook alone.
#[derive(Clone, Copy, Debug)]
pub struct Cfg {
    pub workers: usize,
    pub handoff: bool,
}

impl Cfg {
    /// A builder of this configuration (thread names `issue5-<workers>w`).
    pub fn builder(self) -> Builder {
        let mut b = Builder::new();
        b.workers(self.workers).thread_name(format!("issue5-{}w", self.workers));
        if !self.handoff {
            b.time_slice(None);
        }
        b
    }

    /// A runtime of this configuration, leaked if the test fails.
    pub fn rt(self) -> Rt {
        Rt::build(&self.builder())
    }
}

/// Two tests `<name>::one_worker` and `<name>::two_workers` running the same body with the
/// worker count, serially and under the watchdog.
///
/// ```ignore
/// watched_test! {
///     fn spins(workers) { let rt = watched::Rt::build(openco::Builder::new().workers(workers)); }
/// }
/// ```
macro_rules! watched_test {
    ($(#[$attr:meta])* fn $name:ident($workers:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($workers: usize) $body

            $(#[$attr])*
            #[test]
            fn one_worker() {
                $crate::watched::run_watched(1, body)
            }

            $(#[$attr])*
            #[test]
            fn two_workers() {
                $crate::watched::run_watched(2, body)
            }
        }
    };
}

/// Three tests per body: `one_worker` and `two_workers` (default settings: handoff on), and
/// `one_worker_no_handoff` (`time_slice(None)`: only the futex hook can keep the test from
/// hanging). The body gets a [`Cfg`].
macro_rules! sync_test {
    ($(#[$attr:meta])* fn $name:ident($cfg:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($cfg: $crate::watched::Cfg) $body

            $(#[$attr])*
            #[test]
            fn one_worker() {
                $crate::watched::run_watched($crate::watched::Cfg { workers: 1, handoff: true }, body)
            }

            $(#[$attr])*
            #[test]
            fn two_workers() {
                $crate::watched::run_watched($crate::watched::Cfg { workers: 2, handoff: true }, body)
            }

            $(#[$attr])*
            #[test]
            fn one_worker_no_handoff() {
                $crate::watched::run_watched($crate::watched::Cfg { workers: 1, handoff: false }, body)
            }
        }
    };
}

/// A runtime that is leaked instead of dropped when the test panics (see the module docs).
pub struct Rt(Option<Runtime>);

impl Rt {
    pub fn build(builder: &Builder) -> Rt {
        Rt(Some(builder.build().expect("a test runtime starts")))
    }
}

impl Deref for Rt {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if thread::panicking() {
                std::mem::forget(rt);
            }
        }
    }
}

/// Joins `handle` and returns the job's result; panics naming `what` if the job panicked,
/// was cancelled, or did not end within [`JOIN_LIMIT`].
pub fn join<T>(what: &str, mut handle: JoinHandle<T>) -> T {
    match handle.timeout_join(JOIN_LIMIT) {
        Ok(v) => v,
        Err(e) if e.is_timeout() => panic!("{what}: did not end within {JOIN_LIMIT:?}: the runtime hangs"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Busy-waits (no system call, nothing openco hooks, so the coroutine never suspends) until
/// `flag` is set; false if it was not set within [`SPIN_LIMIT`].
pub fn spin_until(flag: &AtomicBool) -> bool {
    let start = Instant::now();
    loop {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        if start.elapsed() > SPIN_LIMIT {
            return false;
        }
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
}

/// Busy-waits for `d` (no system call: `Instant::now` reads the vDSO clock).
pub fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Sleeps (hooked: the coroutine suspends) in 1 ms steps until `flag` is set; false if it was
/// not set within [`SPIN_LIMIT`].
pub fn sleep_until(flag: &AtomicBool) -> bool {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        if start.elapsed() > SPIN_LIMIT {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Waits (on the test's own thread) for `n` messages on `rx`, each within [`LIMIT`]; panics
/// naming `what` otherwise.
pub fn recv_n<T>(what: &str, rx: &mpsc::Receiver<T>, n: usize) -> Vec<T> {
    (0..n).map(|i| rx.recv_timeout(LIMIT).unwrap_or_else(|e| panic!("{what}: message {i} of {n}: {e}"))).collect()
}

/// The calling thread's id.
pub fn tid() -> ThreadId {
    thread::current().id()
}

/// How many distinct threads are in `ids`.
pub fn distinct(ids: impl IntoIterator<Item = ThreadId>) -> usize {
    ids.into_iter().collect::<HashSet<_>>().len()
}

/// The calling thread's name and id, for messages.
pub fn thread_label() -> String {
    let t = thread::current();
    format!("{}/{:?}", t.name().unwrap_or("?"), t.id())
}

/// A count of jobs that have started, that jobs bump without a system call (a hooked call,
/// even an `mpsc` send that wakes the receiver, may let the runtime switch coroutines, so a
/// job about to spin must not signal through one) and that the test's thread polls.
#[derive(Clone, Default)]
pub struct Started(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Started {
    pub fn new() -> Started {
        Started::default()
    }

    /// Called by a job: one more has started.
    pub fn arrive(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// Called by the test's thread: waits until `n` jobs have started; panics naming `what`
    /// after [`LIMIT`].
    pub fn wait(&self, what: &str, n: usize) {
        let start = Instant::now();
        while self.0.load(Ordering::SeqCst) < n {
            assert!(
                start.elapsed() < LIMIT,
                "{what}: {} of {n} started within {LIMIT:?}",
                self.0.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_micros(200));
        }
    }
}
