//! `openco::blocking`'s `JoinHandle` as a `Future` on other executors (tokio multi-thread and
//! current-thread, a handle moved into `tokio::spawn`, smol, async-std, `futures::executor`)
//! and joined from plain threads.
//!
//! Each executor first sees the handle pending (its job waits on a gate the test opens only
//! afterwards, checked with `futures::poll!`), so the tests go through waker registration and
//! a wake-up from an openco worker thread, not only through a result ready at the first poll.

#[macro_use]
mod support;

use std::thread;
use std::time::Duration;

use futures::future::join_all;
use openco::JoinHandle;
use support::{gate, Opener, EXPECTED, WATCHDOG};

/// A job on the global runtime that waits for the returned opener, then returns its value + 1.
fn gated_job() -> (Opener<u64>, JoinHandle<u64>) {
    let (open, gate) = gate::<u64>();
    (open, openco::blocking(move || gate.wait().expect("the test opens the gate") + 1))
}

/// Awaits a job that is still waiting at the first poll, then many short sleeping jobs.
async fn pending_then_ready() {
    let (open, mut h) = gated_job();
    assert!(futures::poll!(&mut h).is_pending(), "the job waits for the gate");
    assert!(!h.is_finished());
    open.open(41);
    assert_eq!(h.await.unwrap(), 42);

    let jobs: Vec<_> = (0..100u64)
        .map(|i| {
            openco::blocking(move || {
                thread::sleep(Duration::from_millis(1 + i % 5));
                i
            })
        })
        .collect();
    let sum: u64 = join_all(jobs).await.into_iter().map(Result::unwrap).sum();
    assert_eq!(sum, 99 * 100 / 2);
}

/// A panic in the job is an error of the awaited handle.
async fn panic_is_an_error() {
    support::quiet_panics();
    let err = openco::blocking(|| -> u8 { panic!("{EXPECTED}: across executors") }).await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.into_panic().downcast_ref::<String>().unwrap(), "expected panic: across executors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_multi_thread() {
    pending_then_ready().await;
    panic_is_an_error().await;
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_current_thread() {
    pending_then_ready().await;
    panic_is_an_error().await;

    // Awaiting the handle leaves the only tokio thread free: the task that opens the gate
    // runs while the handle is awaited.
    let (open, h) = gated_job();
    let opener = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        open.open(1);
    });
    assert_eq!(h.await.unwrap(), 2);
    opener.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_spawn_of_a_handle() {
    // The handle itself is the spawned future: it is Send + 'static. The gate opens from
    // another thread, most likely after the task has polled the handle (either order is fine).
    let (open, h) = gated_job();
    let task = tokio::spawn(h);
    tokio::task::spawn_blocking(move || {
        thread::sleep(Duration::from_millis(5));
        open.open(9);
    });
    assert_eq!(task.await.unwrap().unwrap(), 10);

    // Many of them, and panics come through as the inner error.
    support::quiet_panics();
    let tasks: Vec<_> = (0..100u64).map(|i| tokio::spawn(openco::blocking(move || i * 2))).collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap().unwrap();
    }
    assert_eq!(sum, 99 * 100);
    let err =
        tokio::spawn(openco::blocking(|| panic!("expected panic: in a spawned handle"))).await.unwrap().unwrap_err();
    assert!(err.is_panic());
}

#[tokio::test(flavor = "current_thread")]
async fn tokio_timeout_then_await_again() {
    // Polled with one waker, given up on, then awaited again: the handle stays usable.
    let (open, mut h) = gated_job();
    assert!(tokio::time::timeout(Duration::from_millis(10), &mut h).await.is_err());
    assert!(!h.is_finished());
    open.open(2);
    assert_eq!(h.await.unwrap(), 3);
}

#[test]
fn smol_block_on() {
    smol::block_on(pending_then_ready());
    smol::block_on(panic_is_an_error());
}

#[test]
fn async_std_block_on() {
    async_std::task::block_on(pending_then_ready());
    async_std::task::block_on(panic_is_an_error());
}

#[test]
fn futures_executor_block_on() {
    futures::executor::block_on(pending_then_ready());
    futures::executor::block_on(panic_is_an_error());
}

#[test]
fn handle_moves_between_executors() {
    // First polled (pending) by futures' executor, then awaited to the end on smol: the waker
    // registered first must be replaced by the second one.
    let (open, mut h) = gated_job();
    futures::executor::block_on(async { assert!(futures::poll!(&mut h).is_pending()) });
    let opener = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        open.open(6);
    });
    assert_eq!(smol::block_on(h).unwrap(), 7);
    opener.join().unwrap();
}

#[test]
fn join_from_plain_threads() {
    let mut opens = Vec::new();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let (open, h) = gated_job();
            opens.push((i, open));
            thread::spawn(move || support::join(h).unwrap())
        })
        .collect();
    for (i, open) in opens {
        open.open(i * 10);
    }
    let results: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results, (0..8u64).map(|i| i * 10 + 1).collect::<Vec<_>>());

    // A thread blocked in join() is woken by the job's end.
    let (open, h) = gated_job();
    let joiner = thread::spawn(move || h.join().unwrap());
    open.open(99);
    assert_eq!(joiner.join().unwrap(), 100);

    // timeout_join from a plain thread.
    let (open, mut h) = gated_job();
    assert!(h.timeout_join(Duration::from_millis(5)).unwrap_err().is_timeout());
    open.open(0);
    assert_eq!(h.timeout_join(WATCHDOG).unwrap(), 1);
}
