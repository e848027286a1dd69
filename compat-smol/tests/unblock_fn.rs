//! `openco_smol::unblock` as a drop-in for `blocking::unblock` on smol, smol's `Executor` and
//! async-std: values, panics resumed in the awaiting task, many jobs at once, `detach` and
//! `cancel`.

mod support;

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use openco_smol::unblock;

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap()
}

#[test]
fn value_on_smol() {
    assert_eq!(smol::block_on(unblock(|| 6 * 7)), 42);
    let s = smol::block_on(unblock(|| std::fs::read_dir(".").map(|d| d.count())));
    assert!(s.unwrap() > 0);
}

#[test]
fn value_on_async_std() {
    assert_eq!(async_std::task::block_on(unblock(|| "owned".to_string())), "owned");
}

#[test]
fn many_on_a_smol_executor() {
    // 2,000 jobs sleeping at once, spawned as tasks of an executor run by two threads.
    let ex = smol::Executor::new();
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| smol::block_on(ex.run(stopped.recv())));
        }
        let tasks: Vec<_> = (0..2000u64)
            .map(|i| {
                ex.spawn(unblock(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    i
                }))
            })
            .collect();
        let sum: u64 = smol::block_on(async {
            let mut sum = 0;
            for t in tasks {
                sum += t.await;
            }
            sum
        });
        assert_eq!(sum, 1999 * 2000 / 2);
        stop.close();
    });
}

#[test]
fn panic_is_resumed_in_the_awaiting_task() {
    let _serial = support::serial();
    for run in [(|| smol::block_on(unblock(|| -> u8 { panic!("expected panic: in unblock") }))) as fn() -> u8, || {
        async_std::task::block_on(unblock(|| -> u8 { panic!("expected panic: in unblock") }))
    }] {
        let payload = panic::catch_unwind(AssertUnwindSafe(run)).unwrap_err();
        assert_eq!(panic_text(payload), "expected panic: in unblock");
    }
    // The worker survived.
    assert_eq!(smol::block_on(unblock(|| 1)), 1);
}

#[test]
fn a_panic_in_an_executor_task_reaches_its_awaiter() {
    let _serial = support::serial();
    let ex = smol::Executor::new();
    let task = ex.spawn(async { unblock(|| -> u8 { panic!("expected panic: in a task") }).await });
    let caught = panic::catch_unwind(AssertUnwindSafe(|| smol::block_on(ex.run(task))));
    assert_eq!(panic_text(caught.unwrap_err()), "expected panic: in a task");
}

#[test]
fn detach_lets_the_job_run() {
    let (tx, rx) = mpsc::channel();
    unblock(move || {
        std::thread::sleep(Duration::from_millis(5));
        tx.send(7).unwrap();
    })
    .detach();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
}

#[test]
fn cancel_waits_for_a_started_job() {
    let (started_tx, started) = mpsc::channel();
    let (open, gate) = mpsc::channel::<()>();
    let task = unblock(move || {
        started_tx.send(()).unwrap();
        gate.recv().unwrap();
        5
    });
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!task.is_finished());
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        open.send(()).unwrap();
    });
    // It had started, so it cannot be stopped: cancel gives its value.
    assert_eq!(smol::block_on(task.cancel()), Some(5));
    opener.join().unwrap();
}

#[test]
fn task_is_send_unpin_and_debug() {
    fn check<T: Send + Unpin + std::fmt::Debug>(_: &T) {}
    let task = unblock(|| 1);
    check(&task);
    assert!(format!("{task:?}").starts_with("Task"));
    assert_eq!(smol::block_on(task), 1);
}
