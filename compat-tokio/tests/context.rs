//! The tokio context inside jobs: `Handle::current()`, `tokio::spawn` and
//! `tokio::task::spawn_blocking` from a job, and jobs of different runtimes (or none) sharing
//! one openco worker, each seeing only its own context across suspensions.

mod support;

use std::sync::Arc;
use std::time::Duration;

use openco_tokio::{block_on, spawn_blocking, spawn_blocking_on};
use support::within;
use tokio::runtime::Handle;

async fn current() {
    let id = Handle::current().id();
    let seen = within(spawn_blocking(|| {
        let before = Handle::current().id();
        std::thread::sleep(Duration::from_millis(2)); // suspends: the scope is left and re-entered
        (before, Handle::current().id(), Handle::current().runtime_flavor())
    }))
    .await
    .unwrap();
    assert_eq!(seen, (id, id, Handle::current().runtime_flavor()));
}
flavors!(handle_current_inside_a_job, current);

async fn spawn_from_job() {
    let v = within(spawn_blocking(|| {
        let task = tokio::spawn(async { 20 });
        let blocking = tokio::task::spawn_blocking(|| 22);
        block_on(async { task.await.unwrap() + blocking.await.unwrap() })
    }))
    .await
    .unwrap();
    assert_eq!(v, 42);
}
flavors!(tokio_spawn_from_a_job, spawn_from_job);

async fn nested() {
    // A job started from a job inherits the context the first one runs in.
    let id = Handle::current().id();
    let inner = within(spawn_blocking(|| spawn_blocking(|| Handle::current().id()).join())).await.unwrap();
    assert_eq!(inner.unwrap(), id);
}
flavors!(job_from_a_job_inherits_the_context, nested);

/// Jobs of two tokio runtimes and jobs with no tokio context, all on one openco worker,
/// all suspended at once at a barrier between two looks at their context: each sees its
/// own runtime (or none) every time.
fn shared_worker(make: fn() -> tokio::runtime::Runtime) {
    const PER_KIND: usize = 10;
    let worker = support::openco_runtime(1);
    let (a, b) = (make(), make());
    assert_ne!(a.handle().id(), b.handle().id());
    let barrier = Arc::new(tokio::sync::Barrier::new(3 * PER_KIND));

    let look = |barrier: Arc<tokio::sync::Barrier>| {
        move || {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(Handle::try_current().ok().map(|h| h.id()));
                // Every job of the worker is suspended here before any goes on.
                block_on(barrier.wait());
                seen.push(Handle::try_current().ok().map(|h| h.id()));
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        }
    };
    let mut jobs = Vec::new();
    for _ in 0..PER_KIND {
        for rt in [Some(&a), Some(&b), None] {
            let job = match rt {
                Some(rt) => {
                    let _enter = rt.enter(); // the caller's context, captured by spawn_blocking_on
                    spawn_blocking_on(worker.handle(), look(barrier.clone()))
                }
                None => spawn_blocking_on(worker.handle(), look(barrier.clone())),
            };
            jobs.push((rt.map(|rt| rt.handle().id()), job));
        }
    }
    for (expected, mut job) in jobs {
        let seen = job.timeout_join(support::LIMIT).expect("job failed or timed out");
        assert_eq!(seen, vec![expected; 6]);
    }
}

#[test]
fn jobs_of_two_multi_thread_runtimes_share_a_worker() {
    shared_worker(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap());
}

#[test]
fn jobs_of_two_current_thread_runtimes_share_a_worker() {
    shared_worker(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
}

#[test]
fn a_scope_built_by_hand() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let scope = Arc::new(openco_tokio::TokioScope::new(rt.handle().clone()));
    assert_eq!(scope.handle().id(), rt.handle().id());
    assert!(format!("{scope:?}").contains("TokioScope"));
    let job = openco::runtime().handle().blocking_scoped(scope, openco::Priority::DEFAULT, || Handle::current().id());
    assert_eq!(job.join().unwrap(), rt.handle().id());
}

#[test]
fn the_context_outlives_a_dropped_runtime() {
    // tokio's own blocking threads keep their handle after the runtime is dropped; so do jobs.
    let worker = support::openco_runtime(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let id = rt.handle().id();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let job = {
        let _enter = rt.enter();
        spawn_blocking_on(worker.handle(), move || {
            let _ = block_on(wait);
            Handle::current().id()
        })
    };
    drop(rt);
    drop(go);
    assert_eq!(job.join().unwrap(), id);
}
