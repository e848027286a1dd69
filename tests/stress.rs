//! A short run of the issue-5 stress program (`tests/support/stress.rs`; the long runs are
//! `cargo run --release --example stress`): coroutines allocating, printing, locking std and
//! parking_lot mutexes, sleeping and spinning 15-30 ms, next to a plain thread and a stream
//! of short jobs, on one and on two workers. Every loop must keep making progress, and
//! everything must stop cleanly: no deadlock, no panic, no crash.

#[macro_use]
#[path = "support/watched.rs"]
mod watched;

#[path = "support/stress.rs"]
mod stress;

use std::time::Duration;

fn short_run(workers: usize, pingpong: bool) {
    let mut cfg = stress::Config::new(workers, Duration::from_millis(1500));
    cfg.print_every = 20;
    cfg.pingpong = pingpong;
    let report = stress::run(&cfg);
    println!("{report}");
    assert!(report.ok(), "{report}");
}

watched_test! {
    /// The mix without the `Condvar` ping-pong pair.
    fn short_stress_run(workers) {
        short_run(workers, false)
    }
}

watched_test! {
    /// The full mix, with a `Condvar` ping-pong pair. Two coroutines that keep waking each
    /// other keep their worker busy without either running past the time slice, and a ready
    /// coroutine wins over a queued job: jobs queued on that worker (the spinners, the child
    /// jobs, the short jobs) do not start for seconds, until some coroutine happens to run
    /// past the slice and the queue is handed off (see
    /// `rt_handoff::queued_job_behind_a_condvar_ping_pong`).
    fn short_stress_run_with_condvar_pingpong(workers) {
        short_run(workers, true)
    }
}
