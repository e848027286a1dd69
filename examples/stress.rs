//! Stress program for issue 5 ("No coroutine can stall the others"): coroutines that
//! allocate, print, lock a shared std `Mutex` (also across sleeps) and a `parking_lot::Mutex`,
//! ping-pong on a `Condvar`, sleep, and spin 15-30 ms without suspending (so that workers get
//! stuck and hand off), next to a plain thread taking the same locks and a stream of short
//! jobs. Checks that every loop keeps making progress and that everything stops cleanly;
//! exits non-zero on any failure. See `tests/support/stress.rs` for what runs.
//!
//! ```text
//! cargo run --release --example stress                          # 30 s on 1 worker, then 30 s on 2
//! cargo run --release --example stress -- --secs 30 --workers 1
//! cargo run --release --example stress -- --secs 10 --workers 2 --print-every 0
//! ```

#[path = "../tests/support/stress.rs"]
mod stress;

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let usage = "usage: stress [--secs N] [--workers N] [--print-every N] [--stall-limit-ms N] [--no-pingpong]";
    let mut secs = 30.0;
    let mut workers: Vec<usize> = vec![1, 2];
    let mut print_every = None;
    let mut stall_limit = None;
    let mut pingpong = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(usage));
        match a.as_str() {
            "--secs" => secs = value().parse().ok().filter(|&s: &f64| s > 0.0).unwrap_or_else(|| fail(usage)),
            "--workers" => workers = vec![value().parse().ok().filter(|&w| w > 0).unwrap_or_else(|| fail(usage))],
            "--print-every" => print_every = Some(value().parse().unwrap_or_else(|_| fail(usage))),
            "--no-pingpong" => pingpong = false,
            "--stall-limit-ms" => stall_limit = Some(value().parse().unwrap_or_else(|_| fail(usage))),
            _ => fail(usage),
        }
    }
    let mut ok = true;
    for w in workers {
        let mut cfg = stress::Config::new(w, Duration::from_secs_f64(secs));
        if let Some(p) = print_every {
            cfg.print_every = p;
        }
        cfg.pingpong = pingpong;
        if let Some(ms) = stall_limit {
            cfg.stall_limit = Duration::from_millis(ms);
        }
        println!("stress: {w} worker(s) for {secs} s ...");
        let report = stress::run(&cfg);
        println!("{report}");
        ok &= report.ok();
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fail(usage: &str) -> ! {
    eprintln!("{usage}");
    std::process::exit(2)
}
