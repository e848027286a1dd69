//! Network: blocking `std::net` code on openco against tokio and the blocking thread pools,
//! measured in the same run.
//!
//! ```text
//! cargo bench --bench net                           # every scenario, 3 runs each (~45 s)
//! cargo bench --bench net -- echo                   # one scenario: echo|reqresp|hookcost
//! cargo bench --bench net -- echo --conns 1000 --secs 3
//! cargo bench --bench net -- reqresp --jobs 10000 --delay-ms 100
//! cargo bench --bench net -- --runs 5
//! ```
//!
//! Scenarios:
//! - `echo`: an echo server of blocking `std::net` code, one `openco::blocking` job per
//!   connection, against a tokio async echo server; the same tokio load client (1,000
//!   connections, each sending 64 bytes and awaiting the echo in a loop, 3 s). Requests/s and
//!   their ratio, p50/p99/p999 latency, the server's threads added, CPU time per request and
//!   RSS growth.
//! - `reqresp`: 10,000 blocking request/response jobs at once (each: `TcpStream::connect` to
//!   a local tokio server, write a request, read the reply, drop) through `openco::blocking`,
//!   `tokio::task::spawn_blocking` and `blocking::unblock`: wall time, jobs/s, ratio, threads
//!   added, most connections open at once. Twice: the server replying at once, then after
//!   `--delay-ms` (default 100 ms, a slow backend).
//! - `hookcost`: ns per call of hooked `read`/`write`, `send`/`recv` and `poll` (timeout 0)
//!   outside any coroutine, against libc's own functions and raw system calls.
//!
//! Every measurement runs in fresh child processes (this binary re-executed with `--child`):
//! the servers, the load client and the jobs each in their own, so thread counts and memory
//! are the process's own and nothing stays warm from one measurement to the next. The
//! implementations' runs are interleaved. Children raise `RLIMIT_NOFILE` to the hard limit.
//! Thread counts come from `/proc/self/status` sampled every millisecond by a sampler thread;
//! "added" is the peak minus the count just before the measured part (the sampler is in
//! both). Client and server share the machine's CPUs, so on a small machine the client's
//! load is part of what limits the figures. Linux only.

// A bench target's root is a crate root: its modules are found next to it unless told.
#[path = "net/echo.rs"]
mod echo;
#[path = "net/harness.rs"]
mod harness;
#[path = "net/hookcost.rs"]
mod hookcost;
#[path = "net/reqresp.rs"]
mod reqresp;

use std::thread;
use std::time::Instant;

const SCENARIOS: [&str; 3] = ["echo", "reqresp", "hookcost"];
const USAGE: &str =
    "usage: net [echo|reqresp|hookcost|all]... [--runs N] [--conns N] [--secs S] [--jobs N] [--delay-ms D]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let (mut runs, mut conns, mut secs, mut jobs, mut delay_ms) = (3, 1000, 3.0, 10_000, 100);
    let mut selected = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value =
            || it.next().and_then(|v| v.parse::<f64>().ok()).filter(|&v| v > 0.0).unwrap_or_else(|| usage());
        match a.as_str() {
            "--runs" => runs = value() as usize,
            "--conns" => conns = value() as usize,
            "--secs" => secs = value(),
            "--jobs" => jobs = value() as usize,
            "--delay-ms" => delay_ms = value() as u64,
            s if SCENARIOS.contains(&s) => selected.push(s.to_string()),
            "all" => selected.extend(SCENARIOS.iter().map(|s| s.to_string())),
            _ => usage(),
        }
    }
    if selected.is_empty() {
        selected.extend(SCENARIOS.iter().map(|s| s.to_string()));
    }
    println!(
        "network: openco vs tokio (and the blocking pools) -- {} CPUs, {runs} runs per figure (median [min-max])",
        thread::available_parallelism().map_or(1, |c| c.get())
    );
    let started = Instant::now();
    for s in &selected {
        match s.as_str() {
            "echo" => echo::scenario(runs, conns, secs),
            "reqresp" => reqresp::scenario(runs, jobs, delay_ms),
            "hookcost" => hookcost::scenario(runs),
            _ => unreachable!(),
        }
    }
    println!("\ntotal bench time {:.1} s", started.elapsed().as_secs_f64());
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

/// `--child role args...`: one part of one measurement.
fn child(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("echo-server") => echo::server_child(&args[1]),
        Some("echo-client") => echo::client_child(&args[1..]),
        Some("rr-server") => reqresp::server_child(&args[1]),
        Some("reqresp") => reqresp::jobs_child(&args[1..]),
        Some("hookcost") => hookcost::child(),
        other => panic!("unknown child role {other:?}"),
    }
}
