//! Jobs on a `Runtime`: results at volume, panics, abort, detaching, `timeout_join`, joins and
//! `block_on` inside coroutines, priorities and `yield_now`, `Handle::current`, `in_coroutine`,
//! and shutdown.

#[macro_use]
mod support;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use futures::channel::oneshot;
use openco::{Handle, JoinError, JoinHandle, Priority};
use support::{gate, hold, join, thread_name, ExpectedPanic, EXPECTED, WATCHDOG};

// ---------------------------------------------------------------------------------------------
// Volume

#[test]
fn hundred_thousand_jobs_all_complete_with_their_results() {
    const N: u64 = 100_000;
    let rt = support::rt(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let handles: Vec<JoinHandle<u64>> = (0..N)
        .map(|i| {
            let ran = ran.clone();
            rt.blocking(move || {
                ran.fetch_add(1, SeqCst);
                i * 3
            })
        })
        .collect();
    let sum: u64 = handles.into_iter().map(|h| join(h).unwrap()).sum();
    assert_eq!(sum, 3 * N * (N - 1) / 2);
    assert_eq!(ran.load(SeqCst), N as usize);
}

rt_test! {
    fn runtime_shared_across_submitting_threads(rt) {
        let rt = Arc::new(rt);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let rt = rt.clone();
                thread::spawn(move || {
                    let handles: Vec<_> = (0..250u64).map(|i| rt.blocking(move || t * 1000 + i)).collect();
                    handles.into_iter().map(|h| join(h).unwrap()).sum::<u64>()
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let expected: u64 = (0..4u64).map(|t| 250 * t * 1000 + 249 * 250 / 2).sum();
        assert_eq!(total, expected);
    }
}

rt_test! {
    /// A started coroutine never moves to another worker thread, across sleeps and yields.
    fn coroutine_stays_on_its_thread(rt) {
        let handles: Vec<_> = (0..64u64)
            .map(|i| {
                rt.blocking(move || {
                    let before = thread::current().id();
                    thread::sleep(Duration::from_millis(1 + i % 3));
                    let middle = thread::current().id();
                    openco::yield_now();
                    (before, middle, thread::current().id())
                })
            })
            .collect();
        for h in handles {
            let (a, b, c) = join(h).unwrap();
            assert_eq!(a, b);
            assert_eq!(b, c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Panics

fn expect_panic<T: std::fmt::Debug>(result: Result<T, JoinError>) -> JoinError {
    let err = result.expect_err("the job panicked");
    assert!(err.is_panic(), "{err:?}");
    assert!(!err.is_cancelled() && !err.is_timeout());
    err
}

rt_test! {
    fn panics_become_join_errors_and_the_runtime_keeps_running(rt) {
        support::quiet_panics();

        // A formatted message: a `String` payload, shown by Display and Debug.
        let err = expect_panic(join(rt.blocking(|| -> u32 { panic!("{EXPECTED}: boom {}", 7) })));
        assert!(err.to_string().contains("boom 7"), "{err}");
        assert!(format!("{err:?}").contains("boom 7"), "{err:?}");
        let payload = err.into_panic();
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("expected panic: boom 7"));

        // A literal message: a `&'static str` payload.
        let err = expect_panic(join(rt.blocking(|| panic!("expected panic: literal"))));
        assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"expected panic: literal"));

        // Any payload, resumed on the joining thread.
        let err = expect_panic(join(rt.blocking(|| panic::panic_any(ExpectedPanic(42)))));
        let resumed = panic::catch_unwind(AssertUnwindSafe(|| panic::resume_unwind(err.into_panic())));
        assert_eq!(resumed.unwrap_err().downcast_ref::<ExpectedPanic>(), Some(&ExpectedPanic(42)));

        // A panic after the coroutine has suspended.
        expect_panic(join(rt.blocking(|| {
            thread::sleep(Duration::from_millis(1));
            openco::yield_now();
            panic!("expected panic: after a suspension");
        })));

        // The runtime still runs jobs, panicking or not, in any mix.
        assert_eq!(join(rt.blocking(|| 5)).unwrap(), 5);
        let handles: Vec<_> = (0..200u32)
            .map(|i| {
                rt.blocking(move || {
                    if i % 2 == 0 {
                        panic::panic_any(ExpectedPanic(i));
                    }
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for (i, h) in handles.into_iter().enumerate() {
            match join(h) {
                Ok(v) => sum += v,
                Err(e) => assert_eq!(e.into_panic().downcast_ref::<ExpectedPanic>(), Some(&ExpectedPanic(i as u32))),
            }
        }
        assert_eq!(sum, (0..200).filter(|i| i % 2 == 1).sum::<u32>());
        assert_eq!(join(rt.blocking(|| "still alive")).unwrap(), "still alive");
    }
}

rt_test! {
    fn try_into_panic_gives_back_a_non_panic_error(workers: usize) {
        let rt = support::builder(workers).max_coroutines(1).build().unwrap();
        let err = join(rt.blocking(|| {
            let h = Handle::current().blocking(|| ());
            assert!(h.abort());
            h.join()
        }))
        .unwrap()
        .unwrap_err();
        let err = err.try_into_panic().expect_err("a cancelled job has no panic payload");
        assert!(err.is_cancelled());
    }
}

// ---------------------------------------------------------------------------------------------
// Abort

// The two-worker cases below also check that a job submitted after the stack contention
// runs: a worker without a stack used to strand it (fixed; see tests/rt_stacks.rs).

/// Sets its flag when dropped: tells whether a job's closure was dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

rt_test! {
    /// A job submitted from a running coroutine cannot start while that coroutine holds the
    /// only stack (`max_coroutines(1)`), so `abort` always finds it not started.
    fn abort_a_job_not_started_from_inside_a_coroutine(workers: usize) {
        let rt = support::builder(workers).max_coroutines(1).build().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let (aborted, again, finished, result) = join(rt.blocking(move || {
            let h = Handle::current().blocking(move || ran2.store(true, SeqCst));
            let aborted = h.abort();
            let again = h.abort();
            let finished = h.is_finished();
            (aborted, again, finished, h.join())
        }))
        .unwrap();
        assert!(aborted, "the job had not started");
        assert!(!again, "a second abort has nothing to cancel");
        assert!(finished, "a cancelled job is finished");
        assert!(result.unwrap_err().is_cancelled());
        // The runtime goes on, and the cancelled closure never runs.
        assert_eq!(join(rt.blocking(|| 9)).unwrap(), 9);
        drop(rt);
        assert!(!ran.load(SeqCst));
    }
}

rt_test! {
    /// From outside: the first job holds the only stack while it waits, so the second stays
    /// queued until aborted. Its closure never runs, and is dropped.
    fn abort_a_queued_job_from_outside(workers: usize) {
        let rt = support::builder(workers).max_coroutines(1).build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (open, gate) = gate::<u32>();
        let first = rt.blocking(move || {
            started_tx.send(()).unwrap();
            gate.wait().unwrap() + 1
        });
        started_rx.recv_timeout(WATCHDOG).unwrap();

        let ran = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (ran2, guard) = (ran.clone(), SetOnDrop(dropped.clone()));
        let second = rt.blocking(move || {
            let _guard = guard;
            ran2.store(true, SeqCst);
        });
        assert!(!second.is_finished());
        assert!(second.abort(), "the only stack is taken: the job cannot have started");
        assert!(second.is_finished());
        assert!(join(second).unwrap_err().is_cancelled());

        open.open(41);
        assert_eq!(join(first).unwrap(), 42);
        assert_eq!(join(rt.blocking(|| 7)).unwrap(), 7);
        drop(rt);
        assert!(!ran.load(SeqCst), "an aborted job never runs");
        assert!(dropped.load(SeqCst), "an aborted job's closure is dropped");
    }
}

rt_test! {
    fn abort_of_a_running_job_returns_false_and_the_job_completes(rt) {
        let (started_tx, started_rx) = mpsc::channel();
        let (open, gate) = gate::<u32>();
        let h = rt.blocking(move || {
            started_tx.send(()).unwrap();
            gate.wait().unwrap() * 2
        });
        started_rx.recv_timeout(WATCHDOG).unwrap();
        assert!(!h.abort(), "a running job cannot be aborted");
        assert!(!h.is_finished());
        open.open(21);
        assert_eq!(join(h).unwrap(), 42);
    }
}

rt_test! {
    fn abort_after_completion_returns_false_and_keeps_the_result(rt) {
        let h = rt.blocking(|| 5);
        while !h.is_finished() {
            thread::yield_now();
        }
        assert!(!h.abort());
        assert_eq!(join(h).unwrap(), 5);
    }
}

// ---------------------------------------------------------------------------------------------
// Detaching, timeout_join

rt_test! {
    fn dropping_a_handle_detaches_the_job(rt) {
        support::quiet_panics();
        // A job that is waiting when its handle goes.
        let (done_tx, done_rx) = mpsc::channel();
        let (open, gate) = gate::<u32>();
        let tx = done_tx.clone();
        drop(rt.blocking(move || tx.send(gate.wait().unwrap() * 2).unwrap()));
        open.open(21);
        assert_eq!(done_rx.recv_timeout(WATCHDOG).unwrap(), 42);

        // Jobs whose handles go at once, some of them panicking: all the others still run.
        for i in 0..100u32 {
            let tx = done_tx.clone();
            drop(rt.blocking(move || {
                if i % 10 == 0 {
                    panic!("expected panic: detached job {i}");
                }
                tx.send(i).unwrap();
            }));
        }
        let mut got: Vec<u32> = (0..90).map(|_| done_rx.recv_timeout(WATCHDOG).unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).filter(|i| i % 10 != 0).collect::<Vec<_>>());
        assert_eq!(join(rt.blocking(|| 1)).unwrap(), 1);
    }
}

rt_test! {
    fn timeout_join_times_out_then_join_gets_the_value(rt) {
        let (open, gate) = gate::<u32>();
        let mut h = rt.blocking(move || gate.wait().unwrap() + 2);
        let err = h.timeout_join(Duration::from_millis(10)).unwrap_err();
        assert!(err.is_timeout() && !err.is_cancelled() && !err.is_panic(), "{err:?}");
        assert!(!h.is_finished(), "the job keeps running");
        // Zero: one look, no wait.
        assert!(h.timeout_join(Duration::ZERO).unwrap_err().is_timeout());
        open.open(40);
        assert_eq!(join(h).unwrap(), 42);

        // On a finished job, timeout_join returns the value.
        let mut h = rt.blocking(|| 8);
        assert_eq!(h.timeout_join(WATCHDOG).unwrap(), 8);
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting inside coroutines

rt_test! {
    /// The inner join suspends the outer coroutine, so on one worker the inner job can run.
    fn join_inside_a_job_does_not_deadlock(rt) {
        let v = join(rt.blocking(|| {
            let inner = Handle::current().blocking(|| 21);
            inner.join().unwrap() * 2
        }));
        assert_eq!(v.unwrap(), 42);

        // A handle made outside, joined inside.
        let (open, gate) = gate::<u32>();
        let inner = rt.blocking(move || gate.wait().unwrap());
        let outer = rt.blocking(move || inner.join().unwrap() + 1);
        open.open(41);
        assert_eq!(join(outer).unwrap(), 42);

        // A job of another runtime (the global one), joined inside.
        let v = join(rt.blocking(|| {
            let other = openco::blocking(|| {
                thread::sleep(Duration::from_millis(2));
                thread_name()
            });
            (other.join().unwrap(), thread_name())
        }));
        let (other, own) = v.unwrap();
        assert!(other.starts_with("openco-worker-"), "{other}");
        assert!(own.starts_with("openco-test-"), "{own}");
    }
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let rt = Handle::current();
    let a = rt.blocking(move || fib(n - 1));
    let b = rt.blocking(move || fib(n - 2));
    a.join().unwrap() + b.join().unwrap()
}

rt_test! {
    /// Hundreds of coroutines each waiting on two others.
    fn recursive_joins(rt) {
        assert_eq!(join(rt.blocking(|| fib(12))).unwrap(), 144);
    }
}

rt_test! {
    fn timeout_join_inside_a_coroutine(rt) {
        let v = join(rt.blocking(|| {
            let (open, gate) = gate::<u32>();
            let mut inner = Handle::current().blocking(move || gate.wait().unwrap() * 2);
            let err = inner.timeout_join(Duration::from_millis(20)).unwrap_err();
            assert!(err.is_timeout(), "{err:?}");
            assert!(!inner.is_finished());
            open.open(21);
            inner.join().unwrap()
        }));
        assert_eq!(v.unwrap(), 42);

        // Many short timeouts in a row, each one a timer the job's end races with.
        let v = join(rt.blocking(|| {
            let mut inner = Handle::current().blocking(|| {
                thread::sleep(Duration::from_millis(20));
                5
            });
            loop {
                match inner.timeout_join(Duration::from_micros(300)) {
                    Ok(v) => return v,
                    Err(e) => assert!(e.is_timeout(), "{e:?}"),
                }
            }
        }));
        assert_eq!(v.unwrap(), 5);
    }
}

rt_test! {
    fn block_on_a_future_completed_from_another_thread(rt) {
        let (tx, rx) = oneshot::channel::<u32>();
        let h = rt.blocking(move || openco::block_on(rx).unwrap() + 1);
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            tx.send(41).unwrap();
        });
        assert_eq!(join(h).unwrap(), 42);
        sender.join().unwrap();

        // Ready futures complete without suspending.
        assert_eq!(join(rt.blocking(|| openco::block_on(async { 6 * 7 }))).unwrap(), 42);
    }
}

rt_test! {
    /// While one job waits in `block_on`, another runs: on one worker that proves the wait
    /// suspends the coroutine, not the thread. The future completes only after the second job
    /// has run, from a plain thread.
    fn block_on_lets_other_jobs_run_meanwhile(rt) {
        let (started_tx, started_rx) = mpsc::channel();
        let (tx, rx) = oneshot::channel::<u32>();
        let waiter = rt.blocking(move || {
            started_tx.send(()).unwrap();
            let v = openco::block_on(rx).unwrap();
            (v + 1, openco::in_coroutine())
        });
        started_rx.recv_timeout(WATCHDOG).unwrap();

        let (ran_tx, ran_rx) = mpsc::channel();
        let other = rt.blocking(move || {
            ran_tx.send(()).unwrap();
            7
        });
        assert_eq!(join(other).unwrap(), 7);
        assert!(!waiter.is_finished());

        let sender = thread::spawn(move || {
            ran_rx.recv().unwrap();
            thread::sleep(Duration::from_millis(5));
            tx.send(41).unwrap();
        });
        assert_eq!(join(waiter).unwrap(), (42, true));
        sender.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Priorities

const PRIORITIES: [(usize, u8); 8] = [(0, 200), (1, 5), (2, 128), (3, 0), (4, 5), (5, 255), (6, 0), (7, 128)];
/// `PRIORITIES`' ids by priority, FIFO within a priority.
const EXPECTED_ORDER: [usize; 8] = [3, 6, 1, 4, 2, 7, 0, 5];

fn push_id(order: &Arc<Mutex<Vec<usize>>>, id: usize) -> impl FnOnce() + Send + 'static {
    let order = order.clone();
    move || order.lock().unwrap().push(id)
}

/// Jobs submitted from a running coroutine of a one-worker runtime wait until it ends, then
/// run by priority.
#[test]
fn priorities_order_jobs_queued_from_a_coroutine() {
    let rt = support::rt(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let handles = join(rt.blocking(move || {
        let rt = Handle::current();
        PRIORITIES.map(|(id, p)| rt.blocking_with_priority(Priority::new(p), push_id(&o, id)))
    }))
    .unwrap();
    for h in handles {
        join(h).unwrap();
    }
    assert_eq!(*order.lock().unwrap(), EXPECTED_ORDER);
}

/// Jobs submitted from outside while the only worker thread is held run by priority once it
/// is free.
#[test]
fn priorities_order_jobs_queued_from_outside() {
    let rt = support::rt(1);
    let (started_tx, started_rx) = mpsc::channel();
    let (hold, waiter) = hold();
    let blocker = rt.blocking(move || {
        started_tx.send(()).unwrap();
        waiter.wait();
    });
    started_rx.recv_timeout(WATCHDOG).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let handles = PRIORITIES.map(|(id, p)| rt.blocking_with_priority(Priority::new(p), push_id(&order, id)));
    hold.release();
    join(blocker).unwrap();
    for h in handles {
        join(h).unwrap();
    }
    assert_eq!(*order.lock().unwrap(), EXPECTED_ORDER);
}

/// Priorities hold for started coroutines too: a high-priority coroutine that yields resumes
/// before a low-priority job starts.
#[test]
fn priorities_order_ready_coroutines() {
    let rt = support::rt(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let step = |name: &'static str| {
        let log = log.clone();
        move || {
            log.lock().unwrap().push(format!("{name} start"));
            openco::yield_now();
            log.lock().unwrap().push(format!("{name} end"));
        }
    };
    let (low, high) = (step("low"), step("high"));
    let handles = join(rt.blocking(move || {
        let rt = Handle::current();
        [rt.blocking_with_priority(Priority::LOWEST, low), rt.blocking_with_priority(Priority::new(10), high)]
    }))
    .unwrap();
    for h in handles {
        join(h).unwrap();
    }
    assert_eq!(*log.lock().unwrap(), ["high start", "high end", "low start", "low end"]);
}

rt_test! {
    /// A coroutine that spins on `yield_now` until a job it submitted has run: the job must get
    /// to start although it has the spinner's priority. The spin is bounded so that a
    /// regression fails instead of hanging.
    fn yield_now_lets_a_queued_job_of_the_same_priority_start(rt) {
        let spins = join(rt.blocking(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            let setter = Handle::current().blocking(move || f.store(true, SeqCst));
            let mut spins = 0u32;
            while !flag.load(SeqCst) && spins < 100_000 {
                spins += 1;
                openco::yield_now();
            }
            setter.join().unwrap();
            spins
        }));
        assert!(spins.unwrap() < 100_000, "the queued job never started while the coroutine yielded");
    }
}

/// On one worker, two coroutines of equal priority that yield take turns: a yield lets the
/// queued job of the same priority start, then the ready coroutines resume in FIFO order.
#[test]
fn yield_now_takes_turns_with_equal_priority() {
    let rt = support::rt(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let step = |name: &'static str| {
        let log = log.clone();
        move || {
            log.lock().unwrap().push(format!("{name} start"));
            openco::yield_now();
            log.lock().unwrap().push(format!("{name} end"));
        }
    };
    let (a, b) = (step("a"), step("b"));
    let handles = join(rt.blocking(move || {
        let rt = Handle::current();
        [rt.blocking(a), rt.blocking(b)]
    }))
    .unwrap();
    for h in handles {
        join(h).unwrap();
    }
    assert_eq!(*log.lock().unwrap(), ["a start", "b start", "a end", "b end"]);
}

// ---------------------------------------------------------------------------------------------
// Handle::current, in_coroutine

rt_test! {
    fn handle_current_inside_and_outside(workers: usize) {
        let rt = support::rt(workers);
        assert!(Handle::try_current().is_none());
        assert!(panic::catch_unwind(Handle::current).is_err());

        let prefix = format!("openco-test-{workers}w-");
        let (outer, inner) = join(rt.blocking(|| {
            assert!(Handle::try_current().is_some());
            let inner = Handle::current().blocking(thread_name);
            (thread_name(), inner.join().unwrap())
        }))
        .unwrap();
        assert!(outer.starts_with(&prefix), "{outer}");
        assert!(inner.starts_with(&prefix), "Handle::current submits to the caller's runtime: {inner}");

        // A plain thread started by a job is not in a coroutine.
        let in_thread = join(rt.blocking(|| thread::spawn(Handle::try_current).join().unwrap().is_none()));
        assert!(in_thread.unwrap());
    }
}

rt_test! {
    fn in_coroutine_inside_and_outside(rt) {
        assert!(!openco::in_coroutine());
        let (inside, in_future, after_sleep, in_thread) = join(rt.blocking(|| {
            let inside = openco::in_coroutine();
            let in_future = openco::block_on(async { openco::in_coroutine() });
            thread::sleep(Duration::from_millis(1));
            let after_sleep = openco::in_coroutine();
            let in_thread = thread::spawn(openco::in_coroutine).join().unwrap();
            (inside, in_future, after_sleep, in_thread)
        }))
        .unwrap();
        assert!(inside && in_future && after_sleep);
        assert!(!in_thread);
        assert!(!openco::in_coroutine());
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

rt_test! {
    fn dropping_the_runtime_waits_for_started_jobs(rt) {
        let (started_tx, started_rx) = mpsc::channel();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let h = rt.blocking(move || {
            started_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(20));
            d.store(true, SeqCst);
        });
        started_rx.recv_timeout(WATCHDOG).unwrap();
        drop(rt);
        assert!(done.load(SeqCst));
        assert!(join(h).is_ok());
    }
}

rt_test! {
    /// Running jobs hold every worker thread until the shutdown has begun, so the jobs queued
    /// behind them cannot start; then they sleep (suspending) and finish within the timeout.
    /// Queued jobs are cancelled without running, and jobs submitted during or after the
    /// shutdown resolve as cancelled.
    fn shutdown_timeout_cancels_queued_jobs_and_finishes_running_ones(workers: usize) {
        let rt = support::rt(workers);
        let handle = rt.handle().clone();
        let (hold, waiter) = hold();
        let (started_tx, started_rx) = mpsc::channel();
        let running: Vec<_> = (0..workers as u32)
            .map(|i| {
                let (started_tx, waiter) = (started_tx.clone(), waiter.clone());
                rt.blocking(move || {
                    started_tx.send(()).unwrap();
                    waiter.wait();
                    thread::sleep(Duration::from_millis(20));
                    i
                })
            })
            .collect();
        for _ in 0..workers {
            started_rx.recv_timeout(WATCHDOG).unwrap();
        }

        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..10)
            .map(|_| {
                let ran = ran.clone();
                rt.blocking(move || ran.fetch_add(1, SeqCst))
            })
            .collect();

        let observer = {
            let handle = handle.clone();
            thread::spawn(move || {
                // These resolve only through the shutdown: every worker thread is held.
                for h in queued {
                    assert!(join(h).unwrap_err().is_cancelled());
                }
                assert!(join(handle.blocking(|| 1)).unwrap_err().is_cancelled());
                hold.release();
            })
        };
        rt.shutdown_timeout(WATCHDOG);
        observer.join().unwrap();

        let results: Vec<u32> = running.into_iter().map(|h| join(h).unwrap()).collect();
        assert_eq!(results, (0..workers as u32).collect::<Vec<_>>());
        assert_eq!(ran.load(SeqCst), 0);
        assert!(join(handle.blocking(|| 1)).unwrap_err().is_cancelled());
    }
}

rt_test! {
    /// A coroutine sleeping far past the timeout is abandoned: `shutdown_timeout` returns and
    /// its handle resolves as cancelled.
    fn shutdown_timeout_abandons_a_coroutine_that_outlives_it(rt) {
        let handle = rt.handle().clone();
        let (started_tx, started_rx) = mpsc::channel();
        let sleeper = rt.blocking(move || {
            started_tx.send(()).unwrap();
            thread::sleep(Duration::from_secs(3600));
            "woke up"
        });
        started_rx.recv_timeout(WATCHDOG).unwrap();
        assert_eq!(join(rt.blocking(|| 3)).unwrap(), 3);

        rt.shutdown_timeout(Duration::from_millis(50));
        let err = join(sleeper).unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert!(join(handle.blocking(|| 1)).unwrap_err().is_cancelled());
    }
}
