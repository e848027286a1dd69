//! `task!` and `#[openco::main]`: parameters, priorities, where jobs go, and what `main`'s
//! options, return value and panics become. (The compile errors of bad options are the
//! `compile_fail` doc tests on `openco::main`.)

#[macro_use]
mod support;

use std::error::Error;
use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use openco::Priority;
use support::{ExpectedPanic, WATCHDOG};

#[test]
fn task_passes_its_parameter() {
    let task = openco::task!(|param| param.len(), "param");
    assert_eq!(task.join().unwrap(), 5);
    let owned = String::from("owned");
    let task = openco::task!(|s: String| s + "!", owned,);
    assert_eq!(futures::executor::block_on(task).unwrap(), "owned!");
}

#[test]
fn task_outside_a_coroutine_goes_to_the_global_runtime() {
    let name = openco::task!(|()| support::thread_name(), ()).join().unwrap();
    assert!(name.starts_with("openco-worker"), "{name}");
}

#[test]
fn task_inside_a_coroutine_goes_to_its_runtime() {
    let rt = support::rt(1);
    let name = rt.blocking(|| openco::task!(|()| support::thread_name(), ()).join().unwrap()).join().unwrap();
    assert!(name.starts_with("openco-test-1w"), "{name}");
}

/// On one worker busy with the submitting job, the queued tasks run by priority (smaller
/// first; equal priorities in submission order), whatever form the priority takes.
#[test]
fn task_priorities_order_queued_jobs() {
    let rt = support::builder(1).time_slice(None).build().unwrap();
    let order = rt
        .blocking(|| {
            let order = Arc::new(Mutex::new(Vec::new()));
            let log = |tag: &'static str| {
                let order = order.clone();
                move |()| order.lock().unwrap().push(tag)
            };
            let level: u8 = 7;
            let jobs = vec![
                openco::task!(log("default"), ()),
                openco::task!(log("3"), (), 3),
                openco::task!(log("lowest"), (), Priority::LOWEST),
                openco::task!(log("7"), (), level),
                openco::task!(log("1"), (), 1),
                openco::task!(log("highest"), (), Priority::HIGHEST),
                openco::task!(log("3 again"), (), Priority::new(3)),
            ];
            for job in jobs {
                job.join().unwrap(); // suspends: the worker runs the queued tasks
            }
            let order = order.lock().unwrap().clone();
            order
        })
        .join()
        .unwrap();
    assert_eq!(order, ["highest", "1", "3", "3 again", "7", "default", "lowest"]);
}

#[test]
fn task_timeout_join() {
    let (opener, gate) = support::gate::<u32>();
    let mut task = openco::task!(move |add: u32| gate.wait().unwrap() + add, 1, 1);
    let err = task.timeout_join(Duration::from_millis(20)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    opener.open(41);
    assert_eq!(task.timeout_join(WATCHDOG).unwrap(), 42);
}

#[openco::main]
fn unit_main() -> () {}

#[openco::main(workers = 1)]
fn main_runs_in_a_coroutine() {
    assert!(openco::in_coroutine());
    std::thread::sleep(Duration::from_millis(1)); // a hooked call: suspends the coroutine
    assert!(openco::in_coroutine());
}

#[test]
fn main_body_runs_in_a_coroutine() {
    main_runs_in_a_coroutine();
    assert_eq!(unit_main(), ExitCode::SUCCESS);
}

/// With one worker, main and every task it submits share one thread.
#[test]
fn main_workers_option() {
    #[openco::main(workers = 1)]
    fn one_worker() {
        let main = thread::current().id();
        for _ in 0..8 {
            assert_eq!(openco::task!(|()| thread::current().id(), ()).join().unwrap(), main);
        }
    }
    one_worker();
}

/// Where `f` ran relative to the caller: far away if `maybe_grow` moved it to a segment.
fn grew(red_zone: usize) -> bool {
    let outer = 0u8;
    let outer = black_box(&outer) as *const u8 as usize;
    let inner = openco::maybe_grow(red_zone, 1 << 20, || {
        let inner = 0u8;
        black_box(&inner) as *const u8 as usize
    });
    outer.abs_diff(inner) > 1 << 20
}

#[test]
fn main_stack_size_option() {
    #[openco::main(stack_size = 131_072)]
    fn small() {
        assert!(grew(192 * 1024), "less than 192 KiB are left on a 128 KiB stack");
    }
    #[openco::main(stack_size = 0x10_0000usize, workers = 2)]
    fn large() {
        assert!(!grew(192 * 1024), "more than 192 KiB are left on a 1 MiB stack");
    }
    small();
    large();
}

#[test]
fn main_return_value_is_reported() {
    #[openco::main(workers = 1)]
    fn ok() -> Result<(), Box<dyn Error>> {
        let n: u32 = "42".parse()?;
        assert_eq!(n, 42);
        Ok(())
    }
    #[openco::main(workers = 1)]
    fn err() -> Result<(), Box<dyn Error>> {
        let _: u32 = "forty-two".parse()?; // `?` converts into the declared error type
        unreachable!()
    }
    #[openco::main(workers = 1)]
    fn early_return() -> Result<(), std::io::Error> {
        if openco::in_coroutine() {
            return Err(std::io::Error::other("expected error (printed by the report)"));
        }
        Ok(())
    }
    #[openco::main(workers = 1)]
    fn code() -> ExitCode {
        ExitCode::from(3)
    }
    assert_eq!(ok(), ExitCode::SUCCESS);
    assert_eq!(err(), ExitCode::FAILURE);
    assert_eq!(early_return(), ExitCode::FAILURE);
    assert_eq!(code(), ExitCode::from(3));
}

#[test]
fn main_panic_keeps_its_payload() {
    #[openco::main(workers = 1)]
    fn panics() {
        panic::panic_any(ExpectedPanic(11));
    }
    support::quiet_panics();
    let payload = panic::catch_unwind(AssertUnwindSafe(panics)).unwrap_err();
    assert_eq!(*payload.downcast::<ExpectedPanic>().unwrap(), ExpectedPanic(11));
}

/// Jobs that have started when main's body returns are waited for.
#[test]
fn main_waits_for_started_jobs() {
    static DONE: Mutex<bool> = Mutex::new(false);
    #[openco::main(workers = 2)]
    fn detach() {
        let (started_tx, started_rx) = futures::channel::oneshot::channel();
        drop(openco::task!(
            move |()| {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                *DONE.lock().unwrap() = true;
            },
            ()
        ));
        openco::block_on(started_rx).unwrap();
    }
    detach();
    assert!(*DONE.lock().unwrap());
}
