//! File IO: many blocking `std::fs` jobs at once through `openco::blocking` (on both of its
//! file backends) against tokio `spawn_blocking` and `blocking::unblock`, in the same run.
//!
//! ```text
//! cargo bench --bench files                       # both scenarios, 1 run each
//! cargo bench --bench files -- read               # one scenario: read | append | log
//! cargo bench --bench files -- --jobs 1000 --runs 3
//! cargo bench --bench files -- read --drop-caches # cold page cache (needs root)
//! ```
//!
//! Scenarios (10,000 jobs by default, `--jobs N`), all submitted at once then all joined:
//! - `read`: each job reads a different 64 KiB file with `std::fs::read` and checks its length
//!   and content. The files (distinct content) are written once per run, before any child,
//!   under `std::env::temp_dir()`, so the page cache is warm unless `--drop-caches` (which
//!   writes 3 to `/proc/sys/vm/drop_caches` before each child, after a `sync`).
//! - `append`: each job opens its own file with `OpenOptions::append(true).create(true)`,
//!   writes 100 bytes, `sync_all()` (fsync) and closes it. Every child appends to new files in
//!   a directory of its own, so each contender creates the same 10,000 files. fsync's cost is
//!   the disk's and the filesystem journal's: the per-job figures are printed.
//! - `log`: each job creates its own file and writes 100 lines of 100 bytes to it, one
//!   `write` each and no fsync (unbuffered logging): 1,000,000 small page-cache writes in
//!   all. Shows the cost of a small file call.
//!
//! Contenders: `openco-uring` (an openco runtime with io_uring, the default: file calls go to
//! a ring per worker), `openco-helpers` (`Builder::io_uring(false)`: file calls run on the
//! small helper pool while the coroutine is parked), both with one worker per CPU and joined
//! from the main thread; `spawn_blocking` (tokio multi-thread runtime, its default 512
//! blocking threads) and `unblock` (smol's `blocking` pool), awaited. The openco rows show
//! which backend really served the calls (`openco_runtime::file_io_counts` deltas).
//!
//! Every measurement runs in a fresh child process (this binary with `--child`), and the
//! contenders' runs are interleaved. Thread counts come from `/proc/self/status` sampled every
//! millisecond ("added" is the peak minus the count just before the batch); io_uring's
//! kernel workers (`iou-wrk-*`) are threads of the process, so they are in that count, and
//! the io_uring row also counts them apart. CPU time is the child's user + system time over
//! the batch. Linux only.

// The child-process plumbing and statistics are the `net` bench's.
#[allow(dead_code)]
#[path = "net/harness.rs"]
mod harness;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{reset_peak_rss, status, Sampler};

use harness::{cpu_time_us, fmt_stat, raise_fd_limit, ratio, run_child, threads_added, Sample};

const JOBS: u64 = 10_000;
const FILE_LEN: usize = 64 * 1024;
const APPEND_LEN: usize = 100;
const SCENARIOS: [&str; 3] = ["read", "append", "log"];
/// Lines each `log` job writes.
const LOG_LINES: usize = 100;
const IMPLS: [&str; 4] = ["openco-uring", "openco-helpers", "spawn_blocking", "unblock"];
const BASELINE: &str = "spawn_blocking";
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";
const USAGE: &str = "usage: files [read|append|log|all]... [--runs N] [--jobs N] [--drop-caches]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let (mut runs, mut jobs, mut drop_caches, mut selected) = (1, JOBS, false, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok()).filter(|&v| v > 0).unwrap_or_else(|| usage());
        match a.as_str() {
            "--runs" => runs = value() as usize,
            "--jobs" => jobs = value(),
            "--drop-caches" => drop_caches = true,
            s if SCENARIOS.contains(&s) => selected.push(s),
            "all" => selected.extend(SCENARIOS),
            _ => usage(),
        }
    }
    if selected.is_empty() {
        selected.extend(SCENARIOS);
    }
    if drop_caches && fs::OpenOptions::new().write(true).open(DROP_CACHES).is_err() {
        println!("!! --drop-caches: {DROP_CACHES} is not writable (needs root); the page cache stays warm");
        drop_caches = false;
    }
    let cpus = thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "file IO: openco (io_uring / helper threads) vs tokio spawn_blocking vs blocking::unblock -- {cpus} CPUs, \
         openco workers = {cpus}, {runs} runs per figure (median [min-max])"
    );
    let started = Instant::now();
    let root = TempRoot::new();
    println!("  files under {}", root.0.display());
    for s in &selected {
        match *s {
            "read" => read_scenario(&root.0, runs, jobs, drop_caches),
            "append" => append_scenario(&root.0, runs, jobs, drop_caches),
            "log" => log_scenario(&root.0, runs, jobs, drop_caches),
            _ => unreachable!(),
        }
    }
    drop(root);
    println!("\ntotal bench time {:.1} s", started.elapsed().as_secs_f64());
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

// ---------------------------------------------------------------------------------------
// Parent: sets up the files, runs children, prints tables.

/// The bench's directory under the temp dir, removed (with everything in it) when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> TempRoot {
        let dir = std::env::temp_dir().join(format!("openco-files-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the bench's temp dir");
        TempRoot(dir)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            println!("!! could not remove {}: {e}", self.0.display());
        }
    }
}

/// The path of job `i`'s file in `dir`.
fn job_path(dir: &Path, i: u64) -> PathBuf {
    dir.join(format!("{i:06}"))
}

/// The content of read file `i`: its number, then bytes that depend on it.
fn read_content(i: u64) -> Vec<u8> {
    let mut data: Vec<u8> = (0..FILE_LEN as u64).map(|k| pattern(i, k)).collect();
    data[..8].copy_from_slice(&i.to_le_bytes());
    data
}

fn pattern(i: u64, k: u64) -> u8 {
    ((i * 7 + k) % 251) as u8
}

/// Flushes dirty pages, so writeback of the setup does not land in a measurement.
fn sync_all_disks() {
    if !std::process::Command::new("sync").status().is_ok_and(|s| s.success()) {
        println!("!! `sync` failed; writeback of the setup may overlap the first measurement");
    }
}

/// `runs` interleaved rounds of every contender; failures are printed and left out.
fn collect(scenario: &str, dir: &Path, jobs: u64, runs: usize, drop_caches: bool) -> Vec<(&'static str, Vec<Sample>)> {
    let mut all: Vec<(&str, Vec<Sample>)> = IMPLS.iter().map(|&i| (i, Vec::new())).collect();
    for run in 0..runs {
        for (imp, samples) in &mut all {
            if drop_caches {
                sync_all_disks();
                if let Err(e) = fs::write(DROP_CACHES, "3") {
                    println!("  !! writing {DROP_CACHES}: {e}");
                }
            }
            // `read` children share the setup's files; the writers get a new directory each.
            let writes = scenario != "read";
            let dir = if writes { dir.join(format!("{imp}-{run}")) } else { dir.to_path_buf() };
            let args = [scenario, imp, &jobs.to_string(), &dir.to_string_lossy()].map(String::from);
            match run_child(&args) {
                Ok(s) => samples.push(s),
                Err(e) => println!("  !! {scenario}/{imp}: {e}"),
            }
            if writes {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
    all
}

fn read_scenario(root: &Path, runs: usize, jobs: u64, drop_caches: bool) {
    println!("\n(1) read: {jobs} jobs at once, each std::fs::read of its own {} KiB file", FILE_LEN / 1024);
    let dir = root.join("read");
    fs::create_dir_all(&dir).expect("create the read dir");
    let setup = Instant::now();
    for i in 0..jobs {
        fs::write(job_path(&dir, i), read_content(i)).expect("write a read file");
    }
    sync_all_disks();
    println!(
        "  setup: {jobs} files, {} MiB, written and synced in {:.1} s; page cache {}",
        (jobs as usize * FILE_LEN) >> 20,
        setup.elapsed().as_secs_f64(),
        if drop_caches {
            "COLD: dropped before each child (--drop-caches)"
        } else {
            "WARM: the files were just written (--drop-caches for cold reads)"
        }
    );
    let r = collect("read", &dir, jobs, runs, drop_caches);
    table(&r, jobs);
    let _ = fs::remove_dir_all(&dir);
}

fn append_scenario(root: &Path, runs: usize, jobs: u64, drop_caches: bool) {
    println!(
        "\n(2) append: {jobs} jobs at once, each opens its own new file (append + create), writes {APPEND_LEN} B, \
         sync_all (fsync), closes"
    );
    let dir = root.join("append");
    fs::create_dir_all(&dir).expect("create the append dir");
    let r = collect("append", &dir, jobs, runs, drop_caches);
    table(&r, jobs);
    println!("  (fsync cost is the disk's and the journal's: see wall us/job)");
}

fn log_scenario(root: &Path, runs: usize, jobs: u64, drop_caches: bool) {
    println!(
        "\n(3) log: {jobs} jobs at once, each creates its own file and writes {LOG_LINES} lines of {APPEND_LEN} B, \
         one write(2) each, no fsync"
    );
    let dir = root.join("log");
    fs::create_dir_all(&dir).expect("create the log dir");
    let r = collect("log", &dir, jobs, runs, drop_caches);
    table(&r, jobs);
}

fn table(r: &[(&str, Vec<Sample>)], jobs: u64) {
    println!(
        "  {:<15} {:>10} {:>12} {:>10} {:>10} {:>9} {:>8} {:>11} {:>10} {:>18} {:>12}",
        "",
        "wall ms",
        "wall us/job",
        "job us",
        "in flight",
        "threads+",
        "CPU ms",
        "RSS +MiB",
        "backend",
        "ring/helper ops",
        format!("vs {BASELINE}")
    );
    let baseline = &r.iter().find(|(i, _)| *i == BASELINE).expect("baseline listed").1;
    let wall_ms = |s: &Sample| s["wall_ns"] / 1e6;
    for (imp, s) in r {
        let openco = imp.starts_with("openco");
        let backend = match stats_median(s, |s| s["ring_ops"]).zip(stats_median(s, |s| s["helper_ops"])) {
            _ if !openco => "-",
            Some((ring, helper)) if ring > 0.0 && helper == 0.0 => "io_uring",
            Some((ring, helper)) if ring == 0.0 && helper > 0.0 => "helpers",
            Some((ring, helper)) if ring > 0.0 && helper > 0.0 => "mixed",
            _ => "inline", // every call answered from the kernel's caches (`hook::file`)
        };
        let ops = if openco {
            format!("{}/{}", fmt_stat(s, |s| s["ring_ops"], 0), fmt_stat(s, |s| s["helper_ops"], 0))
        } else {
            "-".into()
        };
        let vs = if *imp == BASELINE { "1.00x".into() } else { ratio(s, baseline, wall_ms) };
        println!(
            "  {:<15} {:>10} {:>12} {:>10} {:>10} {:>9} {:>8} {:>11} {:>10} {:>18} {:>12}",
            imp,
            fmt_stat(s, wall_ms, 0),
            fmt_stat(s, |s| s["wall_ns"] / jobs as f64 / 1e3, 1),
            fmt_stat(s, |s| s["job_ns"] / jobs as f64 / 1e3, 0),
            fmt_stat(s, |s| s["max_in_flight"], 0),
            fmt_stat(s, threads_added, 0),
            fmt_stat(s, |s| s["cpu_us"] / 1e3, 0),
            fmt_stat(s, |s| (s["hwm_kib"] - s["rss_before_kib"]) / 1024.0, 1),
            backend,
            ops,
            vs
        );
    }
    if let Some((_, s)) = r.iter().find(|(i, _)| *i == "openco-uring") {
        let available = match stats_median(s, |s| s["uring_available"]) {
            Some(a) if a > 0.5 => "yes",
            Some(a) if a < -0.5 => "not probed (no file call reached a worker)",
            Some(_) => "NO (the kernel refused it: the openco-uring row ran on helper threads)",
            None => "-",
        };
        println!(
            "  openco-uring: io_uring_available() = {available}; peak io_uring kernel workers (iou-wrk) {}",
            fmt_stat(s, |s| s["peak_iou_wrk"], 0)
        );
    }
    println!(
        "  (wall us/job = wall / {jobs}; job us = mean time inside a job's closure: for openco it includes the time the\n   \
         coroutine waits suspended on its calls, for the pools not the time a job queues before a thread takes it;\n   \
         in flight = most jobs inside their closure at once; vs {BASELINE} = wall over {BASELINE}'s, below 1.00x is faster)"
    );
}

fn stats_median(s: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<f64> {
    harness::stats(s, f).map(|(m, _, _)| m)
}

// ---------------------------------------------------------------------------------------
// Child: one measurement, printed as `RESULT key=value ...`.

/// Jobs inside their closure now, the most at once, and their summed time inside it.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static JOB_NS: AtomicU64 = AtomicU64::new(0);

/// Runs `job(i)` with the in-flight and time accounting.
fn tracked(job: fn(&Path, u64) -> u64, dir: &Path, i: u64) -> u64 {
    MAX_IN_FLIGHT.fetch_max(IN_FLIGHT.fetch_add(1, Relaxed) + 1, Relaxed);
    let start = Instant::now();
    let n = job(dir, i);
    JOB_NS.fetch_add(start.elapsed().as_nanos() as u64, Relaxed);
    IN_FLIGHT.fetch_sub(1, Relaxed);
    n
}

fn read_job(dir: &Path, i: u64) -> u64 {
    let data = fs::read(job_path(dir, i)).expect("read a file");
    assert_eq!(data.len(), FILE_LEN, "file {i}: wrong length");
    assert_eq!(data[..8], i.to_le_bytes(), "file {i}: wrong number");
    assert_eq!(data[FILE_LEN - 1], pattern(i, FILE_LEN as u64 - 1), "file {i}: wrong last byte");
    data.len() as u64
}

fn append_job(dir: &Path, i: u64) -> u64 {
    let mut line = format!("job {i:06} appends one line and fsyncs it ");
    line.extend(std::iter::repeat_n('.', APPEND_LEN - 1 - line.len()));
    line.push('\n');
    let mut file = OpenOptions::new().append(true).create(true).open(job_path(dir, i)).expect("open for append");
    file.write_all(line.as_bytes()).expect("append");
    file.sync_all().expect("fsync");
    line.len() as u64
}

fn log_job(dir: &Path, i: u64) -> u64 {
    let mut line = format!("job {i:06} logs a line ");
    line.extend(std::iter::repeat_n('.', APPEND_LEN - 1 - line.len()));
    line.push('\n');
    let mut file = fs::File::create(job_path(dir, i)).expect("create a log");
    for _ in 0..LOG_LINES {
        file.write_all(line.as_bytes()).expect("log a line");
    }
    (LOG_LINES * line.len()) as u64
}

fn child(args: &[String]) {
    let [scenario, imp, jobs, dir] = args else { panic!("--child scenario impl jobs dir") };
    let jobs: u64 = jobs.parse().expect("jobs");
    raise_fd_limit(); // openco holds every job's file open at once
    let (job, dir): (fn(&Path, u64) -> u64, PathBuf) = match scenario.as_str() {
        "read" => (read_job, PathBuf::from(dir)),
        "append" | "log" => {
            fs::create_dir_all(dir).expect("create the job dir");
            (if scenario == "append" { append_job } else { log_job }, PathBuf::from(dir))
        }
        other => panic!("unknown scenario {other}"),
    };
    let dir: Arc<Path> = dir.into();
    let cpus = thread::available_parallelism().map_or(1, |c| c.get());

    // Each contender's runtime is up before the baseline; its pool threads start inside.
    enum Rt {
        Openco(openco::Runtime),
        Tokio(tokio::runtime::Runtime),
        Smol,
    }
    let rt = match imp.as_str() {
        "openco-uring" | "openco-helpers" => Rt::Openco(
            openco::Builder::new().workers(cpus).io_uring(imp == "openco-uring").build().expect("openco runtime"),
        ),
        "spawn_blocking" => Rt::Tokio(tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio")),
        "unblock" => Rt::Smol,
        other => panic!("unknown implementation {other}"),
    };
    let iou = matches!(imp.as_str(), "openco-uring").then(IouWrkSampler::start);
    let sampler = Sampler::start();
    let threads_before = status("Threads");
    reset_peak_rss();
    let rss_before_kib = status("VmRSS");
    let (ring_before, helper_before) = openco_runtime::file_io_counts();
    let cpu_before = cpu_time_us();
    let start = Instant::now();
    let total: u64 = match &rt {
        Rt::Openco(rt) => {
            let hs: Vec<_> = (0..jobs)
                .map(|i| {
                    let dir = dir.clone();
                    rt.blocking(move || tracked(job, &dir, i))
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("openco job")).sum()
        }
        Rt::Tokio(rt) => rt.block_on(async {
            let hs: Vec<_> = (0..jobs)
                .map(|i| {
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || tracked(job, &dir, i))
                })
                .collect();
            let mut total = 0;
            for h in hs {
                total += h.await.expect("spawn_blocking job");
            }
            total
        }),
        Rt::Smol => futures::executor::block_on(async {
            let hs: Vec<_> = (0..jobs)
                .map(|i| {
                    let dir = dir.clone();
                    blocking::unblock(move || tracked(job, &dir, i))
                })
                .collect();
            let mut total = 0;
            for h in hs {
                total += h.await;
            }
            total
        }),
    };
    let wall = start.elapsed();
    let cpu_us = cpu_time_us() - cpu_before;
    let (ring_after, helper_after) = openco_runtime::file_io_counts();
    let hwm_kib = status("VmHWM");
    let peak_threads = sampler.stop().max(threads_before);
    let peak_iou_wrk = iou.map_or(0, IouWrkSampler::stop);
    let expected = match scenario.as_str() {
        "read" => FILE_LEN,
        "append" => APPEND_LEN,
        _ => APPEND_LEN * LOG_LINES,
    } as u64;
    assert_eq!(total, jobs * expected, "wrong byte total");
    if scenario != "read" {
        for i in 0..jobs {
            let len = fs::metadata(job_path(&dir, i)).expect("written file").len();
            assert_eq!(len, expected, "file {i}: wrong length after the writes");
        }
    }
    let uring_available = match openco_runtime::io_uring_available() {
        Some(true) => 1,
        Some(false) => 0,
        None => -1,
    };
    drop(rt);
    println!(
        "RESULT wall_ns={} job_ns={} max_in_flight={} threads_before={threads_before} peak_threads={peak_threads} \
         rss_before_kib={rss_before_kib} hwm_kib={hwm_kib} cpu_us={cpu_us:.0} ring_ops={} helper_ops={} \
         uring_available={uring_available} peak_iou_wrk={peak_iou_wrk}",
        wall.as_nanos(),
        JOB_NS.load(Relaxed),
        MAX_IN_FLIGHT.load(Relaxed),
        ring_after - ring_before,
        helper_after - helper_before,
    );
}

/// Samples, every 2 ms, how many of this process's threads are io_uring kernel workers
/// (`iou-wrk-*`), keeping the peak.
struct IouWrkSampler {
    stop: Arc<AtomicUsize>,
    thread: thread::JoinHandle<usize>,
}

impl IouWrkSampler {
    fn start() -> IouWrkSampler {
        let stop = Arc::new(AtomicUsize::new(0));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut peak = 0;
            while s.load(Relaxed) == 0 {
                peak = peak.max(iou_wrk_threads());
                thread::sleep(Duration::from_millis(2));
            }
            peak
        });
        IouWrkSampler { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(1, Relaxed);
        self.thread.join().expect("iou-wrk sampler")
    }
}

fn iou_wrk_threads() -> usize {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter(|t| fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("iou-wrk")))
        .count()
}
