//! The parent/child plumbing of the bench: children re-execute this binary with `--child`,
//! report `RESULT key=value ...` on stdout; server children also print `LISTEN addr` first
//! and run until their stdin closes. Plus the statistics and the small process helpers the
//! scenarios share.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{reset_peak_rss, status, Sampler};

/// A child taking longer than this is killed and reported as hung.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// One child's key=value results.
pub type Sample = BTreeMap<String, f64>;

fn child_command(args: &[String]) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child").args(args);
    Ok(cmd)
}

/// Waits for `child` to exit, killing it after `timeout`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("child failed: {status}")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("hung (killed after {} s)", timeout.as_secs()));
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The `RESULT` line of a child's output, parsed.
fn parse_result(text: &str) -> Result<Sample, String> {
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).ok_or("no RESULT line")?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect())
}

/// Runs `--child args...` in a fresh process and parses its `RESULT` line.
pub fn run_child(args: &[String]) -> Result<Sample, String> {
    let mut child = child_command(args)?.stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    // Drain stdout while waiting, so a chatty child cannot block on a full pipe.
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let waited = wait_or_kill(&mut child, CHILD_TIMEOUT);
    let text = reader.join().unwrap_or_default();
    waited?;
    parse_result(&text)
}

/// A server child: started, it prints `LISTEN addr`; its stdin closed, it prints its
/// `RESULT` and exits.
pub struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub addr: String,
}

impl Server {
    pub fn start(args: &[String]) -> Result<Server, String> {
        let mut child =
            child_command(args)?.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(|e| e.to_string())?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let Some(addr) = line.trim().strip_prefix("LISTEN ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("server did not start (said {line:?})"));
        };
        let addr = addr.to_string();
        Ok(Server { child, stdout, addr })
    }

    /// Closes the server's stdin and returns its `RESULT`.
    pub fn stop(mut self) -> Result<Sample, String> {
        drop(self.child.stdin.take());
        wait_or_kill(&mut self.child, Duration::from_secs(10))?;
        let mut text = String::new();
        self.stdout.read_to_string(&mut text).map_err(|e| e.to_string())?;
        parse_result(&text)
    }
}

/// In a server child, once its listener is bound and before its runtime starts: takes the
/// baseline (threads, RSS, CPU time), prints `LISTEN addr`, and starts a thread that, when
/// stdin closes (the parent is done, or gone), prints the server's `RESULT` and exits the
/// process. That thread and the thread sampler are both in the baseline.
pub fn serve_until_stdin_closes(addr: SocketAddr) {
    let (baseline_tx, baseline_rx) = mpsc::channel::<(Sampler, usize, usize, f64)>();
    thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        if let Ok((sampler, threads_before, rss_before_kib, cpu_before_us)) = baseline_rx.recv() {
            let (cpu_us, hwm_kib) = (cpu_time_us() - cpu_before_us, status("VmHWM"));
            let peak_threads = sampler.stop().max(threads_before);
            println!(
                "RESULT threads_before={threads_before} peak_threads={peak_threads} \
                 rss_before_kib={rss_before_kib} hwm_kib={hwm_kib} cpu_us={cpu_us:.0}"
            );
        }
        std::process::exit(0);
    });
    let sampler = Sampler::start();
    let threads_before = status("Threads");
    reset_peak_rss();
    let rss_before_kib = status("VmRSS");
    let _ = baseline_tx.send((sampler, threads_before, rss_before_kib, cpu_time_us()));
    println!("LISTEN {addr}");
}

/// Median, min and max of `f` over the samples.
pub fn stats(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = samples.iter().map(f).filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some((median, v[0], v[n - 1]))
}

/// `f(sample)` over the samples, as "median [min-max]" (just the value for one sample).
pub fn fmt_stat(samples: &[Sample], f: impl Fn(&Sample) -> f64, prec: usize) -> String {
    match stats(samples, f) {
        Some((m, lo, hi)) if samples.len() > 1 => format!("{m:.prec$} [{lo:.prec$}-{hi:.prec$}]"),
        Some((m, _, _)) => format!("{m:.prec$}"),
        None => "-".into(),
    }
}

/// Ratio of the medians of `f` over `num` and over `den`, as "0.95x".
pub fn ratio(num: &[Sample], den: &[Sample], f: impl Fn(&Sample) -> f64 + Copy) -> String {
    match (stats(num, f), stats(den, f)) {
        (Some((n, _, _)), Some((d, _, _))) if d > 0.0 => format!("{:.2}x", n / d),
        _ => "-".into(),
    }
}

pub fn threads_added(s: &Sample) -> f64 {
    s["peak_threads"] - s["threads_before"]
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    limit.rlim_cur
}

/// User plus system CPU time this process has used, in microseconds.
pub fn cpu_time_us() -> f64 {
    // SAFETY: `rusage` is plain data; all-zero is a valid value for an out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for getrusage to fill in.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// The value of a `sysctl` under `/proc/sys` (e.g. `net/core/somaxconn`), or "?".
pub fn sysctl(path: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{path}")).map_or("?".into(), |s| s.trim().replace('\t', " "))
}
