//! Fan-out of blocking jobs: `tokio::task::spawn_blocking` versus `openco::blocking`.
//!
//! From a tokio multi-thread runtime, `N` jobs (default 10,000) each call
//! `std::thread::sleep(100 ms)` -- a stand-in for legacy blocking code -- and return their
//! index. The batch runs once through `openco::blocking` and once through
//! `tokio::task::spawn_blocking`; all handles are awaited and the returned values summed to
//! check that every job ran exactly once.
//!
//! tokio gives each blocking job a thread of its own (at most 512 at a time), so the batch
//! takes about `N / 512 * 100 ms`. openco runs the same closures on coroutines of a few
//! worker threads; the sleep suspends the coroutine, not the thread, so the whole batch
//! sleeps concurrently.
//!
//! ```text
//! cargo run --release --example fanout          # 10,000 jobs
//! cargo run --release --example fanout -- 50000 # another N
//! ```
//!
//! For each run it prints the wall time, the peak number of OS threads of the process
//! (sampled from `/proc/self/status` every millisecond by a sampler thread, which is itself
//! one of the threads counted) and how many threads that is above the count just before the
//! run, and the peak RSS growth (`VmHWM` at the end minus `VmRSS` at the start; the peak is
//! reset through `/proc/self/clear_refs` before each run so the runs do not pollute each
//! other). Linux only.

use std::future::Future;
use std::thread;
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{reset_peak_rss as reset_hwm, status, Sampler};

const SLEEP: Duration = Duration::from_millis(100);

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("usage: fanout [N], N a positive integer"),
        None => 10_000,
    };
    assert!(n > 0, "usage: fanout [N], N a positive integer");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "{n} jobs of std::thread::sleep({} ms), awaited from a tokio multi-thread runtime ({} CPUs)\n",
        SLEEP.as_millis(),
        thread::available_parallelism().map_or(1, |c| c.get())
    );

    // openco first: its worker threads then live on (idle) during the tokio run, which only
    // adds to tokio's count, never to openco's.
    let openco = measure(&rt, async move {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                openco::blocking(move || {
                    thread::sleep(SLEEP);
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.expect("openco job failed");
        }
        sum
    });
    let tokio = measure(&rt, async move {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                tokio::task::spawn_blocking(move || {
                    thread::sleep(SLEEP);
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.expect("spawn_blocking job failed");
        }
        sum
    });

    println!("{:<29} {:>10} {:>12} {:>13} {:>15}", "", "wall", "peak threads", "threads added", "peak RSS growth");
    for (name, r) in [("openco::blocking", &openco), ("tokio::task::spawn_blocking", &tokio)] {
        println!(
            "{:<29} {:>7.0} ms {:>12} {:>13} {:>11.1} MiB",
            name,
            r.wall.as_secs_f64() * 1e3,
            r.peak_threads,
            r.peak_threads - r.threads_before,
            r.rss_growth_kib as f64 / 1024.0
        );
    }
    println!(
        "\nopenco was {:.1}x faster than spawn_blocking, with {} threads added instead of {}.",
        tokio.wall.as_secs_f64() / openco.wall.as_secs_f64(),
        openco.peak_threads - openco.threads_before,
        tokio.peak_threads - tokio.threads_before,
    );
    println!("Threads are counted for the whole process, this example's sampler thread included;");
    println!("\"added\" is the peak minus the count just before the run (openco's workers start inside its run).");
    let expected = n * (n - 1) / 2;
    assert_eq!(openco.sum, expected, "openco: wrong sum of results");
    assert_eq!(tokio.sum, expected, "spawn_blocking: wrong sum of results");
    println!("Results verified: both sums = {expected}.");
}

struct Run {
    wall: Duration,
    threads_before: usize,
    peak_threads: usize,
    rss_growth_kib: u64,
    sum: u64,
}

/// Runs `batch` (which submits the jobs, awaits them and sums their results) as a task of
/// `rt`, and measures it.
fn measure(rt: &tokio::runtime::Runtime, batch: impl Future<Output = u64> + Send + 'static) -> Run {
    let sampler = Sampler::start();
    let threads_before = status("Threads");
    reset_peak_rss();
    let rss_before = status("VmRSS");
    let start = Instant::now();
    let sum = rt.block_on(rt.spawn(batch)).expect("batch task failed");
    let wall = start.elapsed();
    let rss_growth_kib = (status("VmHWM") as u64).saturating_sub(rss_before as u64);
    let peak_threads = sampler.stop().max(threads_before);
    Run { wall, threads_before, peak_threads, rss_growth_kib, sum }
}

/// Resets `VmHWM` to the current RSS (Linux >= 4.0); if that fails, the RSS growth of the
/// second run is understated, so say so.
fn reset_peak_rss() {
    if !reset_hwm() {
        eprintln!("warning: cannot reset VmHWM; the peak RSS growth of later runs is a lower bound");
    }
}
