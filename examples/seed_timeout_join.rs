//! The seeds' "wait for a task, or time out" example: `timeout_join(Duration)`.
//!
//! A timeout leaves the task running and the handle usable: wait again, or drop it to detach.
//!
//! ```text
//! $ cargo run --example seed_timeout_join
//! the task finished within 1 s
//! after 50 ms: timed out waiting for the job (the task keeps running)
//! then it finished: it slept 300 ms
//! ```

use std::time::Duration;

#[openco::main]
fn main() {
    let mut task = openco::task!(
        |param| {
            assert_eq!(param, "param");
        },
        "param",
        1
    );
    task.timeout_join(Duration::from_secs(1)).expect("timeout");
    println!("the task finished within 1 s");

    let mut slow = openco::task!(
        |ms| {
            std::thread::sleep(Duration::from_millis(ms));
            ms
        },
        300
    );
    match slow.timeout_join(Duration::from_millis(50)) {
        Err(err) if err.is_timeout() => println!("after 50 ms: {err} (the task keeps running)"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let ms = slow.timeout_join(Duration::from_secs(5)).expect("timeout");
    println!("then it finished: it slept {ms} ms");
}
