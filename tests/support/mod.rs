//! Shared helpers for the integration tests: runtimes of one and two workers, a macro that
//! runs one test body on both (like tokio's `rt_common.rs`), gates that hold a job until the
//! test lets it go, and a panic hook that keeps intentional panics out of the test output.
//!
//! Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_macros)]

pub mod conform;
pub mod fd;

use std::any::Any;
use std::ops::Deref;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::Duration;

use futures::channel::oneshot;
use openco::{Builder, JoinError, JoinHandle, Runtime};

/// How long a test waits for something that should happen "soon" before calling it a hang.
/// Only a safety net that turns a hang into a failure, never a timing assertion: on a correct
/// runtime nothing comes close to it.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// A builder for a runtime of `workers` threads named `openco-test-<workers>w-<index>`.
pub fn builder(workers: usize) -> Builder {
    let mut b = Builder::new();
    b.workers(workers).thread_name(format!("openco-test-{workers}w"));
    b
}

/// A runtime of `workers` threads.
pub fn rt(workers: usize) -> Runtime {
    builder(workers).build().expect("a test runtime starts")
}

/// A runtime that is leaked instead of dropped when the test panics. Dropping a runtime waits
/// for its workers, so a worker stuck in a blocking call (a missing or broken hook: the very
/// failures the hook tests look for) would turn the watchdog's failure into a hang.
pub struct LeakOnPanic(Option<Runtime>);

/// A runtime of `workers` threads that is leaked if the test panics; see [`LeakOnPanic`].
pub fn rt_leak_on_panic(workers: usize) -> LeakOnPanic {
    LeakOnPanic::new(rt(workers))
}

impl LeakOnPanic {
    /// Wraps a runtime built elsewhere.
    pub fn new(rt: Runtime) -> LeakOnPanic {
        LeakOnPanic(Some(rt))
    }
}

impl Deref for LeakOnPanic {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for LeakOnPanic {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if thread::panicking() {
                std::mem::forget(rt);
            }
        }
    }
}

/// Runs `f` on a new plain thread (outside any coroutine) and returns its result, failing the
/// test if it takes longer than [`WATCHDOG`] (the thread is left behind).
pub fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().expect_err("the thread ended without a result"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("a plain thread did not finish within {WATCHDOG:?}"),
    }
}

/// Runs `waiter` as a job and, once it has started, `waker` as a second job; returns both
/// results. On a one-worker runtime `waker` can only run while `waiter` is suspended: if
/// `waiter` blocks its thread waiting for something `waker` does, nothing ever wakes it and
/// the watchdog fails the test (use [`rt_leak_on_panic`] so the failure does not hang).
pub fn wait_then_wake<T, W>(
    rt: &Runtime,
    waiter: impl FnOnce() -> T + Send + 'static,
    waker: impl FnOnce() -> W + Send + 'static,
) -> (T, W)
where
    T: Send + 'static,
    W: Send + 'static,
{
    let (started_tx, started_rx) = mpsc::channel();
    let a = rt.blocking(move || {
        let _ = started_tx.send(());
        waiter()
    });
    started_rx.recv_timeout(WATCHDOG).expect("the waiting job started");
    let b = rt.blocking(waker);
    let w = join(b).unwrap();
    (join(a).unwrap(), w)
}

/// Runs the same test body on a 1-worker and on a 2-worker runtime, as two tests
/// `<name>::one_worker` and `<name>::two_workers`.
///
/// ```ignore
/// rt_test! {
///     fn adds(rt) { assert_eq!(rt.blocking(|| 1 + 1).join().unwrap(), 2); }
/// }
/// rt_test! {
///     // the worker count itself, for tests that configure their own builder
///     fn custom(workers: usize) { let rt = support::builder(workers).max_coroutines(1).build().unwrap(); }
/// }
/// ```
macro_rules! rt_test {
    ($(#[$attr:meta])* fn $name:ident($workers:ident : usize) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($workers: usize) $body

            $(#[$attr])*
            #[test]
            fn one_worker() {
                body(1)
            }

            $(#[$attr])*
            #[test]
            fn two_workers() {
                body(2)
            }
        }
    };
    ($(#[$attr:meta])* fn $name:ident($rt:ident) $body:block) => {
        rt_test! {
            $(#[$attr])*
            fn $name(workers: usize) {
                let $rt = $crate::support::rt(workers);
                $body
            }
        }
    };
}

/// One `#[test]` per scenario, in a module `table`: each runs the scenario (a `fn() ->
/// conform::Record` of the test file) through [`conform::conform`].
///
/// ```ignore
/// conformance_table! { tcp_eof, unix_eof }
/// ```
macro_rules! conformance_table {
    ($($name:ident),* $(,)?) => {
        mod table {
            $(#[test] fn $name() { $crate::support::conform::conform(super::$name) })*
        }
    };
}

/// Joins `handle`, failing the test instead of hanging if it takes longer than [`WATCHDOG`].
/// Inside a coroutine it suspends, like `join`.
pub fn join<T>(mut handle: JoinHandle<T>) -> Result<T, JoinError> {
    match handle.timeout_join(WATCHDOG) {
        Err(e) if e.is_timeout() => panic!("a job did not end within {WATCHDOG:?}: the runtime hangs"),
        r => r,
    }
}

/// A gate: [`Gate::wait`] (in a job) returns the value passed to [`Opener::open`].
/// Waiting uses `openco::block_on`, so it suspends the coroutine and keeps its worker free.
/// If the opener is dropped unopened (a failing test unwinding), `wait` returns `None` so the
/// job ends and the runtime's drop does not hang.
pub struct Gate<T>(oneshot::Receiver<T>);
pub struct Opener<T>(oneshot::Sender<T>);

pub fn gate<T>() -> (Opener<T>, Gate<T>) {
    let (tx, rx) = oneshot::channel();
    (Opener(tx), Gate(rx))
}

impl<T> Gate<T> {
    pub fn wait(self) -> Option<T> {
        openco::block_on(self.0).ok()
    }
}

impl<T> Opener<T> {
    pub fn open(self, value: T) {
        // The job may be gone already only if the test is failing elsewhere.
        let _ = self.0.send(value);
    }
}

/// Holds worker *threads*, not only coroutines: [`Hold::wait`] spins until the hold is
/// released. Spinning is used because no hook can ever turn it into a suspension (a std
/// channel `recv` blocks the thread today only because futexes are not hooked yet). The hold
/// releases itself when dropped, so a failing test unwinds instead of hanging in the
/// runtime's drop.
pub struct Hold(Arc<AtomicBool>);

#[derive(Clone)]
pub struct HoldWaiter(Arc<AtomicBool>);

pub fn hold() -> (Hold, HoldWaiter) {
    let flag = Arc::new(AtomicBool::new(false));
    (Hold(flag.clone()), HoldWaiter(flag))
}

impl Hold {
    pub fn release(self) {}
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl HoldWaiter {
    pub fn wait(&self) {
        while !self.0.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    }
}

/// The payload of an intentional panic that [`quiet_panics`] keeps out of the output.
#[derive(Debug, PartialEq, Eq)]
pub struct ExpectedPanic(pub u32);

/// The prefix of intentional panic messages that [`quiet_panics`] keeps out of the output.
pub const EXPECTED: &str = "expected panic";

/// Installs (once per process) a panic hook that stays silent for intentional panics: those
/// whose message starts with [`EXPECTED`] or whose payload is an [`ExpectedPanic`]. Any other
/// panic is reported by the previous hook as usual.
pub fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !is_expected(info.payload()) {
                previous(info);
            }
        }));
    });
}

fn is_expected(payload: &(dyn Any + Send)) -> bool {
    payload.is::<ExpectedPanic>()
        || payload.downcast_ref::<&str>().is_some_and(|s| s.starts_with(EXPECTED))
        || payload.downcast_ref::<String>().is_some_and(|s| s.starts_with(EXPECTED))
}

/// The name of the current thread, or `""`.
pub fn thread_name() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}
