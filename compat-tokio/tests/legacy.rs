//! Legacy blocking-on-tokio code inside jobs (see the crate docs, "Blocking on tokio inside a
//! job"). In jobs started by `spawn_blocking`, tokio's `Handle::block_on`, `blocking_recv`, and
//! a runtime's `block_on` or drop fail at once with tokio's message, instead of aborting the
//! process or failing only under load. In jobs submitted without a scope, one
//! `Handle::block_on` at a time per worker works, a second one waiting at once panics, and
//! scoped jobs of that worker still see their own runtime meanwhile.

mod support;

use std::time::Duration;

use openco_tokio::{block_on, spawn_blocking, spawn_blocking_on};
use support::within;
use tokio::runtime::Handle;

fn panic_message(err: openco::JoinError) -> String {
    assert!(err.is_panic(), "{err:?}");
    let payload = err.into_panic();
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap()
}

async fn handle_block_on() {
    let _serial = support::serial().await;
    // The legacy sync wrapper around an async client.
    let err = within(spawn_blocking(|| {
        Handle::current().block_on(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            1
        })
    }))
    .await
    .unwrap_err();
    assert!(panic_message(err).contains("Cannot start a runtime from within a runtime"));

    // The replacement.
    let v = within(spawn_blocking(|| {
        block_on(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            1
        })
    }))
    .await
    .unwrap();
    assert_eq!(v, 1);
}
flavors!(handle_block_on_panics_at_once, handle_block_on);

async fn blocking_recv() {
    let _serial = support::serial().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
    tx.send(7).await.unwrap();
    let err = within(spawn_blocking(move || rx.blocking_recv())).await.unwrap_err();
    assert!(panic_message(err).contains("Cannot block the current thread from within a runtime"));

    let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
    tx.send(7).await.unwrap();
    assert_eq!(within(spawn_blocking(move || block_on(rx.recv()))).await.unwrap(), Some(7));
}
flavors!(blocking_recv_panics_at_once, blocking_recv);

/// Jobs submitted without a scope (`openco::Handle::blocking`) using a captured handle.
#[test]
fn unscoped_handle_block_on_one_at_a_time() {
    let _serial = support::serial_blocking();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let worker = support::openco_runtime(1);

    // Alone on its worker: works.
    let handle = tokio_rt.handle().clone();
    let mut alone = worker.handle().blocking(move || {
        handle.block_on(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        })
    });
    assert_eq!(alone.timeout_join(support::LIMIT).unwrap(), 1);

    // A first job waits inside `Handle::block_on`...
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started) = std::sync::mpsc::channel();
    let handle = tokio_rt.handle().clone();
    let mut first = worker.handle().blocking(move || {
        started_tx.send(()).unwrap();
        handle.block_on(wait).unwrap();
        2
    });
    started.recv_timeout(support::LIMIT).unwrap();
    // ... a second one either lands on a new worker (tokio's parker waits on a futex word in
    // the thread's TLS, which blocks the worker thread, and the monitor hands the queue off)
    // and works, or shares the first one's thread and cannot enter the runtime.
    let handle = tokio_rt.handle().clone();
    let mut second = worker.handle().blocking(move || handle.block_on(async { 3 }));
    match second.timeout_join(support::LIMIT) {
        Ok(v) => assert_eq!(v, 3),
        Err(err) => assert!(panic_message(err).contains("Cannot start a runtime from within a runtime")),
    }
    // ... while a job with a scope still sees its own runtime (and the mark: its own
    // `Handle::block_on` panics too).
    let other = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut scoped = {
        let _enter = other.enter();
        spawn_blocking_on(worker.handle(), || {
            let id = Handle::current().id();
            std::thread::sleep(Duration::from_millis(1));
            let again = Handle::current().id();
            let refused = std::panic::catch_unwind(|| Handle::current().block_on(async {})).is_err();
            (id, again, refused)
        })
    };
    let (id, again, refused) = scoped.timeout_join(support::LIMIT).unwrap();
    assert_eq!((id, again, refused), (other.handle().id(), other.handle().id(), true));

    release.send(()).unwrap();
    assert_eq!(first.timeout_join(support::LIMIT).unwrap(), 2);
}

async fn own_runtime() {
    let _serial = support::serial().await;
    // A runtime made inside the job: its `block_on` is refused like `Handle::block_on`...
    let err = within(spawn_blocking(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let v = rt.block_on(async { 1 });
        std::mem::forget(rt); // not reached; keeps the drop out of this case
        v
    }))
    .await
    .unwrap_err();
    assert!(panic_message(err).contains("Cannot start a runtime from within a runtime"));
    // ... and so is dropping it.
    let err = within(spawn_blocking(|| drop(tokio::runtime::Builder::new_current_thread().build().unwrap())))
        .await
        .unwrap_err();
    assert!(panic_message(err).contains("Cannot drop a runtime"));
}
flavors!(a_runtime_made_inside_a_job, own_runtime);
