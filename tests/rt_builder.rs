//! `Builder` settings and errors, worker thread names, and the auto traits and conversions of
//! `Runtime`, `Handle`, `JoinHandle` and `JoinError`.

#[macro_use]
mod support;

use std::future::Future;
use std::io;
use std::sync::Arc;

use openco::{Builder, Handle, JoinError, JoinHandle, Priority, Runtime, DEFAULT_STACK_SIZE, MIN_STACK_SIZE};
use support::{gate, join, thread_name, EXPECTED};

// ---------------------------------------------------------------------------------------------
// Errors

/// `build` fails with `InvalidInput` and a message that contains every one of `words`.
fn assert_invalid(builder: &Builder, words: &[&str]) {
    let err = builder.build().expect_err("the builder is invalid");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    for word in words {
        assert!(msg.contains(word), "{msg:?} does not mention {word:?}");
    }
}

#[test]
fn zero_workers_is_invalid() {
    assert_invalid(Builder::new().workers(0), &["workers", "0"]);
}

#[test]
fn stack_below_the_minimum_is_invalid() {
    let below = MIN_STACK_SIZE - 1;
    assert_invalid(
        Builder::new().workers(1).stack_size(below),
        &["stack_size", &below.to_string(), &MIN_STACK_SIZE.to_string()],
    );
    assert_invalid(Builder::new().workers(1).stack_size(0), &["stack_size"]);
}

#[test]
fn stack_too_large_to_round_up_is_invalid() {
    assert_invalid(Builder::new().workers(1).stack_size(usize::MAX), &["stack_size"]);
}

#[test]
fn zero_max_coroutines_is_invalid() {
    assert_invalid(Builder::new().workers(1).max_coroutines(0), &["max_coroutines"]);
}

#[test]
fn every_error_is_reported_even_with_other_valid_settings() {
    // The invalid setting is named whatever else is set.
    assert_invalid(Builder::new().workers(0).stack_size(DEFAULT_STACK_SIZE).thread_name("x"), &["workers"]);
    assert_invalid(Builder::new().workers(2).stack_size(1024).max_coroutines(4), &["stack_size"]);
    assert_invalid(Builder::new().workers(2).stack_size(MIN_STACK_SIZE).max_coroutines(0), &["max_coroutines"]);
}

// ---------------------------------------------------------------------------------------------
// Valid settings

#[test]
fn smallest_valid_settings_run_jobs() {
    // The minimum stack, a size that is not a whole number of pages, one coroutine at a time.
    for stack in [MIN_STACK_SIZE, MIN_STACK_SIZE + 1, MIN_STACK_SIZE + 4095] {
        let rt = Builder::new().workers(1).stack_size(stack).max_coroutines(1).build().unwrap();
        let handles: Vec<_> = (0..50u32)
            .map(|i| {
                rt.blocking(move || {
                    // Use part of the stack, and suspend with it.
                    let buf = std::hint::black_box([i as u8; 16 * 1024]);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    buf.iter().map(|&b| b as u32).sum::<u32>() / (16 * 1024)
                })
            })
            .collect();
        let sum: u32 = handles.into_iter().map(|h| join(h).unwrap()).sum();
        assert_eq!(sum, (0..50).sum::<u32>());
    }
}

#[test]
fn builder_is_reusable() {
    let mut b = support::builder(1);
    b.max_coroutines(8);
    let first = b.build().unwrap();
    let second = b.clone().build().unwrap();
    assert_eq!(join(first.blocking(|| 1)).unwrap() + join(second.blocking(|| 2)).unwrap(), 3);
    assert!(format!("{b:?}").contains("max_coroutines"));
}

#[test]
fn runtime_debug_shows_the_worker_count() {
    let rt = support::rt(3);
    assert!(format!("{rt:?}").contains('3'), "{rt:?}");
}

// ---------------------------------------------------------------------------------------------
// Thread names

rt_test! {
    fn worker_threads_use_the_name_prefix(workers: usize) {
        let rt = Builder::new().workers(workers).thread_name("rt-builder-pool").build().unwrap();
        let names: Vec<String> = (0..100)
            .map(|_| rt.blocking(thread_name))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| join(h).unwrap())
            .collect();
        let allowed: Vec<String> = (0..workers).map(|i| format!("rt-builder-pool-{i}")).collect();
        for name in &names {
            assert!(allowed.contains(name), "{name:?} is not one of {allowed:?}");
        }
    }
}

#[test]
fn default_thread_name() {
    let rt = Builder::new().workers(1).build().unwrap();
    assert_eq!(join(rt.blocking(thread_name)).unwrap(), "openco-worker-0");
}

// ---------------------------------------------------------------------------------------------
// Auto traits (checked at compile time)

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send_unpin<T: Send + Unpin>() {}
fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
fn assert_future<F: Future<Output = Result<T, JoinError>> + Send + Unpin + 'static, T>() {}

#[test]
fn auto_traits() {
    assert_send_sync::<Runtime>();
    assert_send_sync::<Arc<Runtime>>();
    assert_send_sync::<Handle>();
    assert_send_sync::<Builder>();
    assert_send_sync::<Priority>();
    assert_send_sync::<JoinError>();
    assert_send_unpin::<JoinHandle<u32>>();
    assert_send_unpin::<JoinHandle<String>>();
    // A result that is Send but not Sync.
    assert_send_unpin::<JoinHandle<std::cell::Cell<u32>>>();
    assert_future::<JoinHandle<Vec<u8>>, Vec<u8>>();
    // JoinError fits the usual boxed error.
    assert_error::<JoinError>();
    let _: Box<dyn std::error::Error + Send + Sync + 'static> = Box::new(cancelled_error());
}

/// A cancelled `JoinError`: a job aborted before it started (a one-worker runtime is busy
/// running the job that submits it).
fn cancelled_error() -> JoinError {
    let rt = support::rt(1);
    join(rt.blocking(|| {
        let h = Handle::current().blocking(|| ());
        assert!(h.abort());
        h.join().unwrap_err()
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// JoinError conversions

#[test]
fn join_error_converts_to_io_error() {
    support::quiet_panics();
    let rt = support::rt(1);

    let panic = join(rt.blocking(|| -> u8 { panic!("{EXPECTED}: disk on fire") })).unwrap_err();
    let io_err = io::Error::from(panic);
    assert_eq!(io_err.kind(), io::ErrorKind::Other);
    assert!(io_err.to_string().contains("disk on fire"), "{io_err}");

    let cancelled = io::Error::from(cancelled_error());
    assert_eq!(cancelled.kind(), io::ErrorKind::Interrupted);
    assert!(cancelled.to_string().contains("cancelled"), "{cancelled}");

    let (open, g) = gate::<()>();
    let mut h = rt.blocking(move || g.wait());
    let timeout = io::Error::from(h.timeout_join(std::time::Duration::from_millis(1)).unwrap_err());
    assert_eq!(timeout.kind(), io::ErrorKind::TimedOut);
    open.open(());
    join(h).unwrap();

    // With `?` in a function returning io::Result.
    fn run(rt: &Runtime) -> io::Result<u32> {
        let v = rt.blocking(|| 20).join()?;
        let w = rt.blocking(|| -> u32 { panic!("expected panic: through ?") }).join()?;
        Ok(v + w)
    }
    assert_eq!(run(&rt).unwrap_err().kind(), io::ErrorKind::Other);
}
