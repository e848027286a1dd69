//! Issue 5 benchmarks: waits on std sync primitives inside coroutines (the futex hook), and a
//! fan-out whose jobs burn CPU before they sleep (the time slice and handoff), measured in the
//! same run against plain OS threads / tokio `spawn_blocking` / `blocking::unblock`.
//!
//! ```text
//! cargo bench --bench sync                    # every scenario, 3 runs each (~1 min)
//! cargo bench --bench sync -- condvar         # one or more of: condvar | mpsc | fanout
//! cargo bench --bench sync -- mpsc --same-worker   # also mpsc between two coroutines of one worker (hangs: see below)
//! cargo bench --bench sync -- fanout --jobs 2000   # another fan-out size
//! cargo bench --bench sync -- --runs 5
//! ```
//!
//! Scenarios:
//! - `condvar`: 20,000 round trips of a `Mutex` + `Condvar` ping-pong between two coroutines
//!   of a one-worker openco runtime, and between two `std::thread`s. Mean round trip.
//! - `mpsc`: 20,000 round trips over two std `mpsc` channels: between two coroutines of a
//!   two-worker runtime that are made to run on different threads (each spins until both have
//!   started), between a coroutine and a plain thread, and between two plain threads. Two
//!   coroutines sharing one worker cannot do this at all: std's channel never wakes a waiter
//!   of the thread that sends (`Waker::try_select` skips entries of the current thread), so
//!   the first `recv` waits forever; `--same-worker` runs that case anyway (its child is
//!   killed after 5 s and reported as hung).
//! - `fanout`: 10,000 jobs, each busy-waits 1 ms (on `Instant::elapsed`) then calls
//!   `std::thread::sleep(100 ms)`, submitted at once from a tokio task and awaited: through
//!   `openco::blocking` (global runtime, defaults), `tokio::task::spawn_blocking` and
//!   `blocking::unblock`. Wall time and OS threads added (peak minus the count before). The
//!   spins bound every implementation: jobs x 1 ms of CPU over the CPUs (printed with the
//!   table, with the best speedup that bound leaves openco over each pool).
//!
//! Every measurement runs in a fresh child process (this binary with `--child`) with a time
//! limit, so a hang is reported instead of stalling the bench, and runs of the implementations
//! are interleaved. Tables show "median [min-max]". Linux only.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{status, Sampler};

const ROUNDTRIPS: u64 = 20_000;
const FANOUT_JOBS: u64 = 10_000;
const SPIN: Duration = Duration::from_millis(1);
const SLEEP: Duration = Duration::from_millis(100);
const SCENARIOS: [&str; 3] = ["condvar", "mpsc", "fanout"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let usage = "usage: sync [condvar|mpsc|fanout]... [--runs N] [--jobs N] [--same-worker]";
    let (mut runs, mut jobs, mut same_worker, mut selected) = (3, FANOUT_JOBS, false, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).filter(|&r| r > 0).expect(usage),
            "--jobs" => jobs = it.next().and_then(|v| v.parse().ok()).filter(|&r| r > 0).expect(usage),
            "--same-worker" => same_worker = true,
            s if SCENARIOS.contains(&s) => selected.push(s.to_string()),
            other => {
                eprintln!("unknown argument {other:?}; {usage}");
                std::process::exit(2);
            }
        }
    }
    if selected.is_empty() {
        selected.extend(SCENARIOS.iter().map(|s| s.to_string()));
    }
    let cpus = thread::available_parallelism().map_or(1, |c| c.get());
    println!("issue 5 sync benchmarks -- {cpus} CPUs, {runs} runs per figure (median [min-max])");
    let started = Instant::now();
    for s in &selected {
        match s.as_str() {
            "condvar" => condvar_scenario(runs),
            "mpsc" => mpsc_scenario(runs, same_worker),
            "fanout" => fanout_scenario(runs, jobs, cpus),
            _ => unreachable!(),
        }
    }
    println!("\ntotal bench time {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// Parent: runs children, prints tables.

type Sample = BTreeMap<String, f64>;

/// Runs `--child scenario imp n` in a fresh process, killed after `limit`; parses `RESULT`.
fn run_child(scenario: &str, imp: &str, n: u64, limit: Duration) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--child", scenario, imp, &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("hung (killed after {} s)", limit.as_secs()));
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

/// `runs` interleaved rounds of every implementation; failures are printed and left out.
fn collect(scenario: &str, impls: &[&str], n: u64, runs: usize, limit: Duration) -> BTreeMap<String, Vec<Sample>> {
    let mut all: BTreeMap<String, Vec<Sample>> = impls.iter().map(|i| (i.to_string(), Vec::new())).collect();
    for _ in 0..runs {
        for imp in impls {
            match run_child(scenario, imp, n, limit) {
                Ok(s) => all.get_mut(*imp).expect("listed").push(s),
                Err(e) => println!("  !! {scenario}/{imp}: {e}"),
            }
        }
    }
    all
}

fn median_min_max(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = samples.iter().map(f).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    Some((m, v[0], v[v.len() - 1]))
}

fn fmt_stat(samples: &[Sample], f: impl Fn(&Sample) -> f64, prec: usize) -> String {
    match median_min_max(samples, f) {
        Some((m, lo, hi)) if samples.len() > 1 => format!("{m:.prec$} [{lo:.prec$}-{hi:.prec$}]"),
        Some((m, _, _)) => format!("{m:.prec$}"),
        None => "-".into(),
    }
}

/// Ratio of the medians of `key`: `num / den`.
fn ratio(num: &[Sample], den: &[Sample], key: &str) -> String {
    match (median_min_max(num, |s| s[key]), median_min_max(den, |s| s[key])) {
        (Some((n, _, _)), Some((d, _, _))) if d > 0.0 => format!("{:.2}x", n / d),
        _ => "-".into(),
    }
}

fn roundtrip_table(r: &BTreeMap<String, Vec<Sample>>, impls: &[&str], baseline: &str) {
    println!("  {:<30} {:>26} {:>16} {:>22}", "", "round trip us", "same thread", format!("time vs {baseline}"));
    for imp in impls {
        let s = &r[*imp];
        let same = match median_min_max(s, |s| s["same_thread"]) {
            Some((m, _, _)) if m >= 1.0 => "yes",
            Some(_) => "no",
            None => "-",
        };
        println!(
            "  {:<30} {:>26} {:>16} {:>22}",
            imp,
            fmt_stat(s, |s| s["wall_ns"] / s["n"] / 1e3, 2),
            same,
            ratio(s, &r[baseline], "wall_ns")
        );
    }
}

fn condvar_scenario(runs: usize) {
    println!("\n(1) condvar: {ROUNDTRIPS} round trips of a Mutex + Condvar ping-pong");
    let impls = ["openco, 1 worker", "std threads"];
    let r = collect("condvar", &impls, ROUNDTRIPS, runs, Duration::from_secs(60));
    roundtrip_table(&r, &impls, "std threads");
}

fn mpsc_scenario(runs: usize, same_worker: bool) {
    println!("\n(2) mpsc: {ROUNDTRIPS} round trips over two std mpsc channels");
    let mut impls = vec!["openco, 2 workers, 2 threads", "openco coroutine + thread", "std threads"];
    if same_worker {
        impls.push("openco, 1 worker");
    }
    let limit = if same_worker { Duration::from_secs(5) } else { Duration::from_secs(60) };
    let r = collect("mpsc", &impls, ROUNDTRIPS, runs, limit);
    roundtrip_table(&r, &impls, "std threads");
    println!("  (two coroutines of one worker cannot ping-pong over std mpsc: std never wakes a waiter of the");
    println!("   sending thread; {})", if same_worker { "the 1-worker row shows it" } else { "--same-worker runs it" });
}

fn fanout_scenario(runs: usize, jobs: u64, cpus: usize) {
    println!(
        "\n(3) fanout: {jobs} jobs of (busy-wait {} ms, then std::thread::sleep({} ms)), submit all, await all",
        SPIN.as_millis(),
        SLEEP.as_millis()
    );
    let impls = ["openco", "spawn_blocking", "unblock"];
    let r = collect("fanout", &impls, jobs, runs, Duration::from_secs(300));
    println!("  {:<16} {:>24} {:>16} {:>16} {:>16}", "", "wall ms", "threads added", "peak threads", "openco faster");
    for imp in impls {
        let s = &r[imp];
        let speedup = if imp == "openco" { "-".into() } else { ratio(s, &r["openco"], "wall_ns") };
        println!(
            "  {:<16} {:>24} {:>16} {:>16} {:>16}",
            imp,
            fmt_stat(s, |s| s["wall_ns"] / 1e6, 0),
            fmt_stat(s, |s| s["peak_threads"] - s["threads_before"], 0),
            fmt_stat(s, |s| s["peak_threads"], 0),
            speedup
        );
    }
    // What bounds every implementation here: the CPU the spins burn.
    let cpu_bound = jobs as f64 * SPIN.as_secs_f64() / cpus as f64;
    let pool_cap_bound = (jobs as f64 / 512.0).ceil() * (SPIN + SLEEP).as_secs_f64();
    println!(
        "  bound: every implementation burns {jobs} x {} ms of CPU: openco runs the spins one at a time per worker (a\n  \
         1 ms spin never trips the 10 ms time slice); a pool's threads, once scheduled, finish a 1 ms wall-clock spin\n  \
         within one kernel time slice, so time-slicing hundreds of them saves no CPU. On {cpus} CPUs: >= {cpu_bound:.2} s for\n  \
         all three (tokio's 512-thread cap alone would allow {pool_cap_bound:.2} s). So openco's speedup over a pool is at\n  \
         most pool wall / {cpu_bound:.2} s: {}",
        SPIN.as_millis(),
        ["spawn_blocking", "unblock"]
            .iter()
            .map(|imp| match median_min_max(&r[*imp], |s| s["wall_ns"] / 1e9) {
                Some((m, _, _)) => format!("{imp} {:.2}x", m / cpu_bound),
                None => format!("{imp} -"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
}

// ---------------------------------------------------------------------------------------
// Child: one measurement, printed as `RESULT key=value ...`.

fn child(args: &[String]) {
    let [scenario, imp, n] = args else { panic!("--child scenario impl n") };
    let n: u64 = n.parse().expect("n");
    match (scenario.as_str(), imp.as_str()) {
        ("condvar", "openco, 1 worker") => {
            let rt = openco::Builder::new().workers(1).build().expect("runtime");
            let (a, b) = condvar_sides(n);
            two_sides(n, rt.blocking(a), rt.blocking(b));
        }
        ("condvar", "std threads") => {
            let (a, b) = condvar_sides(n);
            two_threads(n, a, b);
        }
        ("mpsc", "openco, 2 workers, 2 threads") => {
            let rt = openco::Builder::new().workers(2).build().expect("runtime");
            let (a, b) = mpsc_sides(n);
            // Each side spins (never suspending) until both have started: so they run on two
            // different threads, where std's channel can wake them.
            let arrived = Arc::new(AtomicUsize::new(0));
            let meet = move |f: Side| {
                let arrived = arrived.clone();
                move || {
                    arrived.fetch_add(1, SeqCst);
                    let start = Instant::now();
                    while arrived.load(SeqCst) < 2 && start.elapsed() < Duration::from_secs(5) {
                        std::hint::spin_loop();
                    }
                    f()
                }
            };
            two_sides(n, rt.blocking(meet(a)), rt.blocking(meet(b)));
        }
        ("mpsc", "openco coroutine + thread") => {
            let rt = openco::Builder::new().workers(1).build().expect("runtime");
            let (a, b) = mpsc_sides(n);
            let h = rt.blocking(a);
            let t = thread::spawn(b);
            let (ta, wall) = h.join().expect("coroutine side");
            let (tb, _) = t.join().expect("thread side");
            print_roundtrips(n, wall, ta == tb);
        }
        ("mpsc", "std threads") => {
            let (a, b) = mpsc_sides(n);
            two_threads(n, a, b);
        }
        ("mpsc", "openco, 1 worker") => {
            let rt = openco::Builder::new().workers(1).time_slice(None).build().expect("runtime");
            let (a, b) = mpsc_sides(n);
            two_sides(n, rt.blocking(a), rt.blocking(b));
        }
        ("fanout", imp) => fanout(imp, n),
        (s, i) => panic!("unknown scenario/implementation {s}/{i}"),
    }
}

type Side = Box<dyn FnOnce() -> (thread::ThreadId, Duration) + Send>;

/// The two sides of a `Condvar` ping-pong of `n` round trips. Each returns its thread and,
/// for side 0, the time from its first wait to its last.
fn condvar_sides(n: u64) -> (Side, Side) {
    let pair = Arc::new((Mutex::new(0u8), Condvar::new()));
    let side = |me: u8| -> Side {
        let pair = pair.clone();
        Box::new(move || {
            let (m, cv) = &*pair;
            let start = Instant::now();
            for _ in 0..n {
                let mut turn = cv.wait_while(m.lock().unwrap(), |t| *t != me).unwrap();
                *turn = 1 - me;
                cv.notify_one();
            }
            (thread::current().id(), start.elapsed())
        })
    };
    (side(0), side(1))
}

/// The two sides of an `mpsc` ping-pong of `n` round trips over two channels.
fn mpsc_sides(n: u64) -> (Side, Side) {
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let a: Side = Box::new(move || {
        let start = Instant::now();
        for i in 0..n {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        (thread::current().id(), start.elapsed())
    });
    let b: Side = Box::new(move || {
        let start = Instant::now();
        for _ in 0..n {
            let v = ping_rx.recv().unwrap();
            pong_tx.send(v).unwrap();
        }
        (thread::current().id(), start.elapsed())
    });
    (a, b)
}

fn two_sides(
    n: u64,
    a: openco::JoinHandle<(thread::ThreadId, Duration)>,
    b: openco::JoinHandle<(thread::ThreadId, Duration)>,
) {
    let (ta, wall) = a.join().expect("side a");
    let (tb, _) = b.join().expect("side b");
    print_roundtrips(n, wall, ta == tb);
}

fn two_threads(n: u64, a: Side, b: Side) {
    let (ta, tb) = (thread::spawn(a), thread::spawn(b));
    let (ida, wall) = ta.join().expect("thread a");
    let (idb, _) = tb.join().expect("thread b");
    print_roundtrips(n, wall, ida == idb);
}

fn print_roundtrips(n: u64, wall: Duration, same_thread: bool) {
    println!("RESULT wall_ns={} n={n} same_thread={}", wall.as_nanos(), u8::from(same_thread));
}

/// The fan-out job: busy-wait `SPIN` (no system call), then sleep `SLEEP`.
fn fanout_job(i: u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < SPIN {
        std::hint::spin_loop();
    }
    thread::sleep(SLEEP);
    i
}

fn fanout(imp: &str, jobs: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let imp = imp.to_string();
    let sampler = Sampler::start();
    let threads_before = status("Threads");
    let start = Instant::now();
    let sum = rt
        .block_on(rt.spawn(async move {
            let mut sum = 0;
            match imp.as_str() {
                "openco" => {
                    let hs: Vec<_> = (0..jobs).map(|i| openco::blocking(move || fanout_job(i))).collect();
                    for h in hs {
                        sum += h.await.expect("openco job");
                    }
                }
                "spawn_blocking" => {
                    let hs: Vec<_> = (0..jobs).map(|i| tokio::task::spawn_blocking(move || fanout_job(i))).collect();
                    for h in hs {
                        sum += h.await.expect("spawn_blocking job");
                    }
                }
                "unblock" => {
                    let hs: Vec<_> = (0..jobs).map(|i| blocking::unblock(move || fanout_job(i))).collect();
                    for h in hs {
                        sum += h.await;
                    }
                }
                other => panic!("unknown implementation {other}"),
            }
            sum
        }))
        .expect("batch task");
    let wall = start.elapsed();
    let peak = sampler.stop().max(threads_before);
    assert_eq!(sum, jobs * (jobs - 1) / 2, "wrong sum of results");
    println!("RESULT wall_ns={} threads_before={threads_before} peak_threads={peak}", wall.as_nanos());
}
