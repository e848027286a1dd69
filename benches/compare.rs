//! openco against `tokio::task::spawn_blocking` and `blocking::unblock` (smol's pool),
//! measured in the same run.
//!
//! ```text
//! cargo bench --bench compare                       # every scenario, 3 runs each
//! cargo bench --bench compare -- sleep              # one scenario: sleep|memory|roundtrip|burst
//! cargo bench --bench compare -- memory --full      # also 100k sleeps through the thread pools (~20 s each)
//! cargo bench --bench compare -- --runs 5
//! ```
//!
//! Scenarios (each job is awaited from a task of a fresh tokio multi-thread runtime):
//! - `sleep`: 10,000 jobs of `std::thread::sleep(100 ms)`, all submitted then awaited: wall
//!   time, peak OS threads added, peak RSS growth.
//! - `memory`: 100,000 such jobs through openco (and the pools with `--full`): wall time and
//!   peak RSS per job = (`VmHWM` after - `VmRSS` before) / 100,000.
//! - `roundtrip`: 20,000 empty closures one after another (submit, await, repeat): mean
//!   round trip per job.
//! - `burst`: 100,000 empty closures submitted at once, then all awaited: throughput.
//!
//! Every measurement runs in a fresh child process (this binary re-executed with `--child`),
//! so thread counts, `VmHWM` and pools left warm by one measurement do not leak into the
//! next. The runs of the three implementations are interleaved. Thread counts come from
//! `/proc/self/status` sampled every millisecond by a sampler thread; "added" is the peak
//! minus the count just before the batch (the sampler is counted in both). Linux only.

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{reset_peak_rss as reset_hwm, status, Sampler};

const SLEEP: Duration = Duration::from_millis(100);
const SLEEP_JOBS: u64 = 10_000;
const MEMORY_JOBS: u64 = 100_000;
const ROUNDTRIPS: u64 = 20_000;
const BURST_JOBS: u64 = 100_000;
/// A child taking longer than this is killed and reported as hung.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

const IMPLS: [&str; 3] = ["openco", "spawn_blocking", "unblock"];
const SCENARIOS: [&str; 4] = ["sleep", "memory", "roundtrip", "burst"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let mut runs = 3;
    let mut full = false;
    let mut selected = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--full" => full = true,
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).filter(|&r| r > 0).expect("--runs N, N > 0"),
            s if SCENARIOS.contains(&s) => selected.push(s.to_string()),
            "all" => selected.extend(SCENARIOS.iter().map(|s| s.to_string())),
            other => {
                eprintln!("unknown argument {other:?}; usage: compare [sleep|memory|roundtrip|burst|all]... [--full] [--runs N]");
                std::process::exit(2);
            }
        }
    }
    if selected.is_empty() {
        selected.extend(SCENARIOS.iter().map(|s| s.to_string()));
    }
    println!(
        "openco vs tokio spawn_blocking vs blocking::unblock -- {} CPUs, {runs} runs per figure (median [min-max])",
        thread::available_parallelism().map_or(1, |c| c.get())
    );
    let started = Instant::now();
    for s in &selected {
        match s.as_str() {
            "sleep" => sleep_scenario(runs),
            "memory" => memory_scenario(runs, full),
            "roundtrip" => roundtrip_scenario(runs),
            "burst" => burst_scenario(runs),
            _ => unreachable!(),
        }
    }
    println!("\ntotal bench time {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// Parent: runs children, prints tables.

/// One child's key=value results.
type Sample = BTreeMap<String, f64>;

/// Runs `--child scenario impl jobs` in a fresh process and parses its `RESULT` line.
fn run_child(scenario: &str, imp: &str, jobs: u64) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--child", scenario, imp, &jobs.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("hung (killed after {} s)", CHILD_TIMEOUT.as_secs()));
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("child failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or("no RESULT line")?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect())
}

/// `runs` interleaved rounds of every implementation in `impls`.
fn collect(scenario: &str, impls: &[&str], jobs: u64, runs: usize) -> BTreeMap<String, Vec<Sample>> {
    let mut all: BTreeMap<String, Vec<Sample>> = impls.iter().map(|i| (i.to_string(), Vec::new())).collect();
    for _ in 0..runs {
        for imp in impls {
            match run_child(scenario, imp, jobs) {
                Ok(s) => all.get_mut(*imp).unwrap().push(s),
                Err(e) => println!("  !! {scenario}/{imp}: {e}"),
            }
        }
    }
    all
}

/// Median, min and max of `key` over the samples.
fn stats(samples: &[Sample], key: &str) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = samples.iter().filter_map(|s| s.get(key).copied()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    Some((median, v[0], v[v.len() - 1]))
}

/// `f(sample)` over the samples, formatted as "median [min-max]".
fn fmt_stat(samples: &[Sample], f: impl Fn(&Sample) -> f64, prec: usize) -> String {
    let derived: Vec<Sample> = samples.iter().map(|s| Sample::from([("x".to_string(), f(s))])).collect();
    match stats(&derived, "x") {
        Some((m, lo, hi)) if samples.len() > 1 => format!("{m:.prec$} [{lo:.prec$}-{hi:.prec$}]"),
        Some((m, _, _)) => format!("{m:.prec$}"),
        None => "-".into(),
    }
}

/// Ratio of medians `num / den` of `key`, as "0.95x" or "12.3x".
fn ratio(num: &[Sample], den: &[Sample], key: &str) -> String {
    match (stats(num, key), stats(den, key)) {
        (Some((n, _, _)), Some((d, _, _))) if d > 0.0 && n / d < 10.0 => format!("{:.2}x", n / d),
        (Some((n, _, _)), Some((d, _, _))) if d > 0.0 => format!("{:.1}x", n / d),
        _ => "-".into(),
    }
}

fn wall_ms(s: &Sample) -> f64 {
    s["wall_ns"] / 1e6
}
fn threads_added(s: &Sample) -> f64 {
    s["peak_threads"] - s["threads_before"]
}
fn rss_growth_mib(s: &Sample) -> f64 {
    (s["hwm_kib"] - s["rss_before_kib"]) / 1024.0
}

fn sleep_scenario(runs: usize) {
    println!("\n(a) sleep: {SLEEP_JOBS} x std::thread::sleep(100 ms), submit all, await all");
    let r = collect("sleep", &IMPLS, SLEEP_JOBS, runs);
    println!(
        "  {:<15} {:>20} {:>14} {:>20} {:>18} {:>14}",
        "", "wall ms", "threads added", "max asleep at once", "peak RSS +MiB", "openco faster"
    );
    for imp in IMPLS {
        let s = &r[imp];
        let speedup = if imp == "openco" { "-".into() } else { ratio(s, &r["openco"], "wall_ns") };
        println!(
            "  {:<15} {:>20} {:>14} {:>20} {:>18} {:>14}",
            imp,
            fmt_stat(s, wall_ms, 0),
            fmt_stat(s, threads_added, 0),
            fmt_stat(s, |s| s["max_asleep"], 0),
            fmt_stat(s, rss_growth_mib, 1),
            speedup
        );
    }
}

fn memory_scenario(runs: usize, full: bool) {
    println!("\n(b) memory: {MEMORY_JOBS} x std::thread::sleep(100 ms), submit all, await all");
    let impls: &[&str] = if full { &IMPLS } else { &IMPLS[..1] };
    let r = collect("sleep", impls, MEMORY_JOBS, runs);
    println!(
        "  {:<15} {:>20} {:>14} {:>20} {:>18} {:>24}",
        "", "wall ms", "threads added", "max asleep at once", "peak RSS KiB/job", "KiB/job asleep"
    );
    for imp in impls {
        let s = &r[*imp];
        let growth_kib = |s: &Sample| s["hwm_kib"] - s["rss_before_kib"];
        println!(
            "  {:<15} {:>20} {:>14} {:>20} {:>18} {:>24}",
            imp,
            fmt_stat(s, wall_ms, 0),
            fmt_stat(s, threads_added, 0),
            fmt_stat(s, |s| s["max_asleep"], 0),
            fmt_stat(s, |s| growth_kib(s) / MEMORY_JOBS as f64, 2),
            fmt_stat(s, |s| growth_kib(s) / s["max_asleep"], 2),
        );
    }
    println!("  (peak RSS KiB/job = (VmHWM after - VmRSS before) / {MEMORY_JOBS}; KiB/job asleep divides by the peak");
    println!("   number of jobs asleep at once instead, the memory a live coroutine costs)");
    if !full {
        println!("  (add --full for spawn_blocking and unblock: about 20 s each per run)");
    }
}

fn roundtrip_scenario(runs: usize) {
    println!("\n(c) roundtrip: {ROUNDTRIPS} empty closures one after another (submit, await) from a tokio task");
    let r = collect("roundtrip", &IMPLS, ROUNDTRIPS, runs);
    println!("  {:<15} {:>28} {:>14}", "", "mean round trip us", "openco faster");
    for imp in IMPLS {
        let s = &r[imp];
        let speedup = if imp == "openco" { "-".into() } else { ratio(s, &r["openco"], "wall_ns") };
        let mean_us = |s: &Sample| s["wall_ns"] / ROUNDTRIPS as f64 / 1e3;
        println!("  {:<15} {:>28} {:>14}", imp, fmt_stat(s, mean_us, 2), speedup);
    }
}

fn burst_scenario(runs: usize) {
    println!("\n(d) burst: {BURST_JOBS} empty closures submitted at once, then all awaited");
    let r = collect("burst", &IMPLS, BURST_JOBS, runs);
    println!("  {:<15} {:>20} {:>24} {:>16} {:>14}", "", "wall ms", "k jobs/s", "threads added", "openco faster");
    for imp in IMPLS {
        let s = &r[imp];
        let speedup = if imp == "openco" { "-".into() } else { ratio(s, &r["openco"], "wall_ns") };
        let kjobs = |s: &Sample| BURST_JOBS as f64 / (s["wall_ns"] / 1e9) / 1e3;
        println!(
            "  {:<15} {:>20} {:>24} {:>16} {:>14}",
            imp,
            fmt_stat(s, wall_ms, 0),
            fmt_stat(s, kjobs, 0),
            fmt_stat(s, threads_added, 0),
            speedup
        );
    }
}

// ---------------------------------------------------------------------------------------
// Child: one measurement, printed as `RESULT key=value ...`.

/// A way to run a blocking closure and await its result.
trait Pool {
    /// Submits `f` now; the returned future resolves to its result.
    fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send;
}

struct Openco;
impl Pool for Openco {
    fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send {
        let handle = openco::blocking(f);
        async move { handle.await.expect("openco job failed") }
    }
}

struct SpawnBlocking;
impl Pool for SpawnBlocking {
    fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send {
        let handle = tokio::task::spawn_blocking(f);
        async move { handle.await.expect("spawn_blocking job failed") }
    }
}

struct Unblock;
impl Pool for Unblock {
    fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send {
        blocking::unblock(f)
    }
}

fn child(args: &[String]) {
    let [scenario, imp, jobs] = args else { panic!("--child scenario impl jobs") };
    let jobs: u64 = jobs.parse().expect("jobs");
    match imp.as_str() {
        "openco" => child_run::<Openco>(scenario, jobs),
        "spawn_blocking" => child_run::<SpawnBlocking>(scenario, jobs),
        "unblock" => child_run::<Unblock>(scenario, jobs),
        other => panic!("unknown implementation {other}"),
    }
}

fn child_run<P: Pool>(scenario: &str, jobs: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match scenario {
        "sleep" => {
            // Cold: the pools start inside the measurement (their thread count is the point).
            // Also counts the jobs asleep at once and times the submission.
            static LIVE: AtomicUsize = AtomicUsize::new(0);
            static MAX_LIVE: AtomicUsize = AtomicUsize::new(0);
            static SUBMIT_NS: AtomicUsize = AtomicUsize::new(0);
            let m = measure(&rt, true, async move {
                let start = Instant::now();
                let handles: Vec<_> = (0..jobs)
                    .map(|i| {
                        P::spawn(move || {
                            MAX_LIVE.fetch_max(LIVE.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
                            thread::sleep(SLEEP);
                            LIVE.fetch_sub(1, Ordering::Relaxed);
                            i
                        })
                    })
                    .collect();
                SUBMIT_NS.store(start.elapsed().as_nanos() as usize, Ordering::Relaxed);
                let mut sum = 0;
                for h in handles {
                    sum += h.await;
                }
                sum
            });
            assert_eq!(m.sum, jobs * (jobs - 1) / 2, "wrong sum of results");
            m.print_with(&format!(
                " max_asleep={} submit_ns={}",
                MAX_LIVE.load(Ordering::Relaxed),
                SUBMIT_NS.load(Ordering::Relaxed)
            ));
        }
        "roundtrip" => {
            rt.block_on(rt.spawn(async { P::spawn(|| ()).await })).unwrap(); // warm up
            let m = measure(&rt, false, async move {
                let mut sum = 0;
                for i in 0..jobs {
                    sum += P::spawn(move || black_box(i)).await;
                }
                sum
            });
            assert_eq!(m.sum, jobs * (jobs - 1) / 2, "wrong sum of results");
            m.print();
        }
        "burst" => {
            rt.block_on(rt.spawn(async { P::spawn(|| ()).await })).unwrap(); // warm up
            let m = measure(&rt, true, async move {
                let handles: Vec<_> = (0..jobs).map(|i| P::spawn(move || black_box(i))).collect();
                let mut sum = 0;
                for h in handles {
                    sum += h.await;
                }
                sum
            });
            assert_eq!(m.sum, jobs * (jobs - 1) / 2, "wrong sum of results");
            m.print();
        }
        other => panic!("unknown scenario {other}"),
    }
}

struct Measurement {
    wall: Duration,
    threads_before: usize,
    peak_threads: usize,
    rss_before_kib: usize,
    hwm_kib: usize,
    sum: u64,
}

impl Measurement {
    fn print(&self) {
        self.print_with("");
    }

    fn print_with(&self, extra: &str) {
        println!(
            "RESULT wall_ns={} threads_before={} peak_threads={} rss_before_kib={} hwm_kib={}{extra}",
            self.wall.as_nanos(),
            self.threads_before,
            self.peak_threads,
            self.rss_before_kib,
            self.hwm_kib,
        );
    }
}

/// Runs `batch` as a task of `rt` and measures it; samples threads if `sample_threads`.
fn measure(
    rt: &tokio::runtime::Runtime,
    sample_threads: bool,
    batch: impl Future<Output = u64> + Send + 'static,
) -> Measurement {
    let sampler = sample_threads.then(Sampler::start);
    let threads_before = status("Threads");
    reset_hwm(); // VmHWM back to the current RSS
    let rss_before_kib = status("VmRSS");
    let start = Instant::now();
    let sum = rt.block_on(rt.spawn(batch)).expect("batch task failed");
    let wall = start.elapsed();
    let hwm_kib = status("VmHWM");
    let peak_threads = sampler.map_or(threads_before, Sampler::stop).max(threads_before);
    Measurement { wall, threads_before, peak_threads, rss_before_kib, hwm_kib, sum }
}
