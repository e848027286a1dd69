//! `openco_tokio::spawn_blocking` as a drop-in for `tokio::task::spawn_blocking`: values,
//! `?` into `io::Error`, panics, many concurrent jobs, and calls from outside tokio.

mod support;

use std::io;
use std::time::Duration;

use openco_tokio::spawn_blocking;
use support::within;

async fn value() {
    assert_eq!(within(spawn_blocking(|| 6 * 7)).await.unwrap(), 42);
    let s = within(spawn_blocking(|| String::from("owned"))).await.unwrap();
    assert_eq!(s, "owned");
}
flavors!(value_is_returned, value);

async fn question_mark() {
    let _serial = support::serial().await;
    async fn caller() -> io::Result<u32> {
        let v = spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(1));
            3
        })
        .await?;
        Ok(v)
    }
    assert_eq!(within(caller()).await.unwrap(), 3);

    async fn failing() -> io::Result<u32> {
        Ok(spawn_blocking(|| -> u32 { panic!("expected panic: into io::Error") }).await?)
    }
    let err = within(failing()).await.unwrap_err();
    assert!(err.to_string().contains("expected panic: into io::Error"), "{err}");
}
flavors!(join_error_converts_into_io_error, question_mark);

async fn panics() {
    let _serial = support::serial().await;
    let err = within(spawn_blocking(|| -> u8 { panic!("expected panic: job") })).await.unwrap_err();
    assert!(err.is_panic());
    assert!(!err.is_cancelled());
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"expected panic: job"));
    // The worker survives: the next job runs.
    assert_eq!(within(spawn_blocking(|| 1)).await.unwrap(), 1);
}
flavors!(panic_is_a_join_error, panics);

async fn many() {
    // More jobs sleeping at once than tokio's 512 blocking threads: all overlap.
    let jobs: Vec<_> = (0..2000u64)
        .map(|i| {
            spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(20));
                i
            })
        })
        .collect();
    let mut sum = 0;
    for job in jobs {
        sum += within(job).await.unwrap();
    }
    assert_eq!(sum, 1999 * 2000 / 2);
}
flavors!(many_concurrent_jobs, many);

async fn handle_api() {
    let handle = spawn_blocking(|| ());
    within(async {
        while !handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    within(handle).await.unwrap();

    // A handle moved into a tokio task, as `tokio::spawn(spawn_blocking(..))` is written.
    let task = tokio::spawn(spawn_blocking(|| 5));
    assert_eq!(within(task).await.unwrap().unwrap(), 5);
}
flavors!(handle_is_a_send_future, handle_api);

#[test]
fn outside_tokio_runs_without_a_context() {
    let job = spawn_blocking(|| tokio::runtime::Handle::try_current().is_ok());
    assert!(!job.join().unwrap(), "no tokio context was captured, none must be seen");
}
