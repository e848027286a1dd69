//! The issue-5 stress program ("No coroutine can stall the others"), shared by
//! `examples/stress.rs` (long runs) and `tests/stress.rs` (short runs); include it with
//! `#[path = "..."] mod stress;`.
//!
//! For the given time, on a runtime of the given worker count, it runs:
//! - `alloc` coroutines: each turn builds a `Vec<String>`, locks a shared std `Mutex` and a
//!   shared `parking_lot::Mutex` for a short critical section, sleeps (hooked) 1-3 ms, prints
//!   a line every `print_every` turns, and every 20 turns runs a child job on the same
//!   runtime and joins it (the join suspends);
//! - `holder` coroutines: hold the std `Mutex` across a 1 ms sleep (so that the others wait
//!   for it through the futex hook);
//! - a `Condvar` ping-pong pair;
//! - `spinner` coroutines: spin 15-30 ms without suspending (so their worker gets stuck and
//!   hands off), then sleep 5 ms;
//! - a plain std thread locking both mutexes too (wake-ups between threads and coroutines);
//! - from the driver (the calling thread), a stream of short jobs (20 every 10 ms), the ones
//!   that spare threads take over when workers are stuck.
//!
//! Each loop has its own progress counter. The driver samples them every 10 ms and fails the
//! run if one did not advance for `stall_limit`, or if a short job is not finished that long
//! after its submission. At the end it sets a stop flag, joins everything (with a timeout),
//! shuts the runtime down, and checks that every counter advanced. The process's thread count
//! is sampled every millisecond (`/proc/self/status`), its peak reported.
//!
//! `parking_lot` caveat: its parker is per thread (shared by the coroutines of a worker), so
//! at most one coroutine of a thread may be parked in a `parking_lot` wait at a time.
//! [`pl_lock`] keeps to that: a coroutine whose thread already has one parked polls with
//! `try_lock` and `yield_now` instead.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{status, Sampler};

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub workers: usize,
    pub duration: Duration,
    /// An `alloc` coroutine prints a line every this many turns; 0: never.
    pub print_every: u64,
    /// The longest a counter may stay still (or a short job stay unfinished) before the run
    /// fails.
    pub stall_limit: Duration,
    pub alloc: usize,
    pub holders: usize,
    pub spinners: usize,
    /// Whether to run the `Condvar` ping-pong pair.
    pub pingpong: bool,
}

impl Config {
    /// The default mix for `workers` workers and `duration`.
    pub fn new(workers: usize, duration: Duration) -> Config {
        Config {
            workers,
            duration,
            print_every: 100,
            stall_limit: Duration::from_secs(3),
            alloc: 16,
            holders: 4,
            spinners: 2,
            pingpong: true,
        }
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub workers: usize,
    pub wall: Duration,
    /// Threads of the process just before the runtime was built, and the peak during the run.
    pub threads_before: usize,
    pub peak_threads: usize,
    pub alloc_turns: u64,
    pub holder_turns: u64,
    pub ping_pongs: u64,
    pub spinner_turns: u64,
    pub spin_ms: u64,
    pub outsider_turns: u64,
    pub child_jobs: u64,
    pub short_jobs: u64,
    pub lines_printed: u64,
    /// The longest any counter stayed still while the loops ran.
    pub max_stall: Duration,
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "stress, {} worker(s), {:.1} s:", self.workers, self.wall.as_secs_f64())?;
        writeln!(
            f,
            "  threads: {} before the runtime, peak {} during the run (+{})",
            self.threads_before,
            self.peak_threads,
            self.peak_threads.saturating_sub(self.threads_before)
        )?;
        writeln!(
            f,
            "  turns: alloc {} | holder {} | condvar ping-pongs {} | spinner {} ({} ms spun) | plain thread {}",
            self.alloc_turns, self.holder_turns, self.ping_pongs, self.spinner_turns, self.spin_ms, self.outsider_turns
        )?;
        writeln!(
            f,
            "  jobs: {} child jobs joined from coroutines, {} short jobs from the driver; {} lines printed",
            self.child_jobs, self.short_jobs, self.lines_printed
        )?;
        writeln!(f, "  longest time a loop made no progress: {} ms", self.max_stall.as_millis())?;
        if self.failures.is_empty() {
            write!(f, "  OK")
        } else {
            write!(f, "  FAILED:\n    {}", self.failures.join("\n    "))
        }
    }
}

/// State shared by every loop.
struct Shared {
    stop: AtomicBool,
    /// Guarded by a std mutex, held across sleeps by the holders.
    std_state: Mutex<StdState>,
    /// Never held across a suspension.
    pl_state: parking_lot::Mutex<u64>,
    lines: AtomicU64,
    child_jobs: AtomicU64,
    spin_ms: AtomicU64,
}

#[derive(Default)]
struct StdState {
    total: u64,
    recent: Vec<u64>,
}

/// Whether `turn` is a multiple of `every` (`u64::is_multiple_of` needs Rust 1.87; the
/// workspace supports 1.85).
fn every(turn: u64, every: u64) -> bool {
    every != 0 && turn - turn / every * every == 0
}

/// Locks `m`, never parking a second coroutine of this thread in a `parking_lot` wait (see
/// the module docs).
pub fn pl_lock<T>(m: &parking_lot::Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    thread_local! {
        static PARKED: Cell<bool> = const { Cell::new(false) };
    }
    if let Some(g) = m.try_lock() {
        return g;
    }
    if PARKED.with(Cell::get) {
        loop {
            openco::yield_now();
            if let Some(g) = m.try_lock() {
                return g;
            }
        }
    }
    PARKED.with(|p| p.set(true));
    let g = m.lock();
    PARKED.with(|p| p.set(false));
    g
}

/// A small xorshift generator: each loop its own, seeded by its index.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One loop's progress counter.
struct Counter {
    name: String,
    turns: Arc<AtomicU64>,
    last: u64,
    last_change: Instant,
}

/// Runs the stress program; returns what it saw (check [`Report::ok`]).
pub fn run(cfg: &Config) -> Report {
    let mut report = Report { workers: cfg.workers, ..Report::default() };
    let threads_before = status("Threads");
    let sampler = Sampler::start();
    let rt = match openco::Builder::new().workers(cfg.workers).thread_name("stress").build() {
        Ok(rt) => rt,
        Err(e) => {
            report.failures.push(format!("the runtime did not start: {e}"));
            return report;
        }
    };
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        std_state: Mutex::new(StdState::default()),
        pl_state: parking_lot::Mutex::new(0),
        lines: AtomicU64::new(0),
        child_jobs: AtomicU64::new(0),
        spin_ms: AtomicU64::new(0),
    });
    let start = Instant::now();
    let mut counters = Vec::new();
    let mut loops = Vec::new();
    let mut counter = |name: String| {
        let turns = Arc::new(AtomicU64::new(0));
        counters.push(Counter { name, turns: turns.clone(), last: 0, last_change: Instant::now() });
        turns
    };

    for id in 0..cfg.alloc {
        let (turns, shared, every) = (counter(format!("alloc #{id}")), shared.clone(), cfg.print_every);
        loops.push(("alloc", rt.blocking(move || alloc_loop(id, &shared, &turns, every))));
    }
    for id in 0..cfg.holders {
        let (turns, shared) = (counter(format!("holder #{id}")), shared.clone());
        loops.push(("holder", rt.blocking(move || holder_loop(id, &shared, &turns))));
    }
    let pair = Arc::new((Mutex::new(0u8), Condvar::new()));
    for side in (0..2u8).filter(|_| cfg.pingpong) {
        let (turns, shared, pair) = (counter(format!("condvar side {side}")), shared.clone(), pair.clone());
        loops.push(("condvar", rt.blocking(move || ping_pong(side, &pair, &shared, &turns))));
    }
    for id in 0..cfg.spinners {
        let (turns, shared) = (counter(format!("spinner #{id}")), shared.clone());
        loops.push(("spinner", rt.blocking(move || spinner_loop(id, &shared, &turns))));
    }
    let outsider = {
        let (turns, shared) = (counter("plain thread".into()), shared.clone());
        thread::spawn(move || outsider_loop(&shared, &turns))
    };

    // Drive: short jobs, progress sampling.
    let mut pending: VecDeque<(Instant, openco::JoinHandle<u64>)> = VecDeque::new();
    let mut next_job = 0u64;
    while start.elapsed() < cfg.duration && report.failures.is_empty() {
        for _ in 0..20 {
            let (shared, i) = (shared.clone(), next_job);
            next_job += 1;
            pending.push_back((Instant::now(), rt.blocking(move || short_job(i, &shared))));
        }
        while pending.front().is_some_and(|(_, h)| h.is_finished()) {
            let (_, h) = pending.pop_front().expect("checked");
            match h.join() {
                Ok(_) => report.short_jobs += 1,
                Err(e) => report.failures.push(format!("a short job failed: {e}")),
            }
        }
        if let Some((submitted, _)) = pending.front() {
            if submitted.elapsed() > cfg.stall_limit {
                report.failures.push(format!(
                    "a short job submitted {} ms ago has not finished ({} pending)",
                    submitted.elapsed().as_millis(),
                    pending.len()
                ));
            }
        }
        let now = Instant::now();
        for c in &mut counters {
            let v = c.turns.load(Relaxed);
            if v != c.last {
                c.last = v;
                c.last_change = now;
            }
            let still = now - c.last_change;
            report.max_stall = report.max_stall.max(still);
            if still > cfg.stall_limit {
                report.failures.push(format!("{} made no progress for {} ms", c.name, still.as_millis()));
            }
        }
        thread::sleep(Duration::from_millis(10));
    }

    // Stop and check.
    shared.stop.store(true, Relaxed);
    let stop_limit = Duration::from_secs(10);
    for (kind, mut h) in loops {
        match h.timeout_join(stop_limit) {
            Ok(()) => {}
            Err(e) if e.is_timeout() => {
                report.failures.push(format!("a {kind} loop did not stop within {stop_limit:?}"))
            }
            Err(e) => report.failures.push(format!("a {kind} loop failed: {e}")),
        }
    }
    for (_, mut h) in pending {
        match h.timeout_join(stop_limit) {
            Ok(_) => report.short_jobs += 1,
            Err(e) => report.failures.push(format!("a short job failed at the end: {e}")),
        }
    }
    match outsider.join() {
        Ok(()) => {}
        Err(_) => report.failures.push("the plain thread panicked".into()),
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    report.wall = start.elapsed();
    report.threads_before = threads_before;
    report.peak_threads = sampler.stop();

    let turns = |prefix: &str| -> u64 {
        counters.iter().filter(|c| c.name.starts_with(prefix)).map(|c| c.turns.load(Relaxed)).sum()
    };
    report.alloc_turns = turns("alloc");
    report.holder_turns = turns("holder");
    report.ping_pongs = turns("condvar side 0");
    report.spinner_turns = turns("spinner");
    report.outsider_turns = turns("plain thread");
    report.child_jobs = shared.child_jobs.load(Relaxed);
    report.spin_ms = shared.spin_ms.load(Relaxed);
    report.lines_printed = shared.lines.load(Relaxed);
    for c in &counters {
        if c.turns.load(Relaxed) == 0 {
            report.failures.push(format!("{} never completed a turn", c.name));
        }
    }
    if report.short_jobs == 0 {
        report.failures.push("no short job completed".into());
    }
    let state = shared.std_state.lock().unwrap_or_else(|e| e.into_inner());
    if state.total == 0 || *pl_lock(&shared.pl_state) == 0 {
        report.failures.push("the shared state was never updated".into());
    }
    report
}

fn alloc_loop(id: usize, shared: &Shared, turns: &AtomicU64, print_every: u64) {
    let mut rng = Rng::new(id as u64 + 1);
    let mut turn = 0u64;
    while !shared.stop.load(Relaxed) {
        turn += 1;
        let words: Vec<String> = (0..16).map(|i| format!("{id}-{turn}-{i}")).collect();
        let len: usize = words.iter().map(String::len).sum();
        {
            let mut s = shared.std_state.lock().unwrap();
            s.total += len as u64;
            s.recent.push(len as u64);
            if s.recent.len() > 64 {
                s.recent.drain(..32);
            }
        }
        *pl_lock(&shared.pl_state) += 1;
        if every(turn, print_every) {
            println!("stress: alloc #{id} turn {turn} ({len} bytes of strings)");
            shared.lines.fetch_add(1, Relaxed);
        }
        if every(turn, 20) {
            let child = openco::Handle::current().blocking(move || (0..100u64).collect::<Vec<_>>().iter().sum::<u64>());
            assert_eq!(child.join().expect("child job"), 4950);
            shared.child_jobs.fetch_add(1, Relaxed);
        }
        thread::sleep(Duration::from_millis(1 + rng.below(3)));
        turns.fetch_add(1, Relaxed);
    }
}

fn holder_loop(id: usize, shared: &Shared, turns: &AtomicU64) {
    while !shared.stop.load(Relaxed) {
        {
            let mut s = shared.std_state.lock().unwrap();
            let before = s.total;
            thread::sleep(Duration::from_millis(1)); // held across a suspension
            assert_eq!(s.total, before, "the std mutex let someone in while holder #{id} held it");
            s.total += 1;
        }
        thread::sleep(Duration::from_millis(2));
        turns.fetch_add(1, Relaxed);
    }
}

fn ping_pong(side: u8, pair: &(Mutex<u8>, Condvar), shared: &Shared, turns: &AtomicU64) {
    let (m, cv) = pair;
    let mut turn = m.lock().unwrap();
    loop {
        // Timeouts only so that the stop flag is seen when the other side has already left.
        let (t, _) = cv
            .wait_timeout_while(turn, Duration::from_millis(50), |t| *t != side && !shared.stop.load(Relaxed))
            .unwrap();
        turn = t;
        if shared.stop.load(Relaxed) {
            return;
        }
        *turn = 1 - side;
        cv.notify_one();
        turns.fetch_add(1, Relaxed);
    }
}

fn spinner_loop(id: usize, shared: &Shared, turns: &AtomicU64) {
    let mut rng = Rng::new(1000 + id as u64);
    while !shared.stop.load(Relaxed) {
        let ms = 15 + rng.below(16);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(ms) {
            std::hint::spin_loop();
        }
        shared.spin_ms.fetch_add(ms, Relaxed);
        thread::sleep(Duration::from_millis(5));
        turns.fetch_add(1, Relaxed);
    }
}

fn outsider_loop(shared: &Shared, turns: &AtomicU64) {
    while !shared.stop.load(Relaxed) {
        shared.std_state.lock().unwrap().total += 1;
        *shared.pl_state.lock() += 1;
        thread::sleep(Duration::from_millis(1));
        turns.fetch_add(1, Relaxed);
    }
}

fn short_job(i: u64, shared: &Shared) -> u64 {
    let s = format!("short job {i}");
    shared.std_state.lock().unwrap().total += s.len() as u64;
    if every(i, 4) {
        thread::sleep(Duration::from_millis(1));
    }
    s.len() as u64
}
