//! The work-stealing scheduler.
//!
//! Each worker thread owns a set of coroutines and runs them one at a time. Jobs (closures
//! that have not started) are queued by priority in the worker's [`queue::Local`] queues or in
//! the runtime-wide [`queue::Inject`] queue; an idle worker steals not-yet-started jobs from
//! the others. When a job starts it gets a stack and a coroutine, and **from then on it stays
//! on that worker for life**: resuming a suspended coroutine on another thread would break
//! every thread-local the compiler or a library cached across the suspension
//! (`rand::thread_rng()` holds an `Rc` into one, stdout's re-entrant lock is keyed by thread
//! id, and the compiler may keep a TLS address in a register: rust-lang/rust#33368). Only the
//! boxed, `Send` closure of a job crosses threads.
//!
//! A worker picks, each turn, the most urgent of: its ready coroutines, its local jobs, the
//! injected jobs (a ready coroutine wins ties, so started work finishes and frees its stack
//! first). When nothing is runnable and nothing can be stolen, it parks in `epoll_wait` with
//! the next timer as timeout; other threads wake it through its eventfd.
//!
//! A monitor thread (`monitor`) hands the queued and new jobs of a worker whose coroutine
//! runs past the time slice to another thread; started coroutines never move.
//!
//! The single-thread [`Scheduler`] (`local`) is a runtime of one worker without a thread: the
//! thread that made it drives that worker when it asks to.
//!
//! Parking protocol (no lost wake-ups): the worker sets `parked` and bumps `idle` (SeqCst),
//! re-checks every queue it could take work from, then waits. A submitter pushes, then
//! (SeqCst) looks for a worker whose `parked` it can swap to false, and signals its eventfd.
//! Either the worker's re-check sees the job, or the submitter sees the flag; the eventfd
//! stays readable until drained, so a signal sent before the wait is not lost.

mod local;
mod monitor;
mod queue;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::Wake;
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crossbeam_deque::Injector;

use crate::coroutine::stack::StackPool;
use crate::sys;
use crate::task::Job;

pub use local::Scheduler;
pub(crate) use monitor::start;
pub(crate) use worker::current_worker_shared;

/// Runtime-wide configuration, fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    /// `None`: no monitor, a stuck worker stays stuck.
    pub(crate) time_slice: Option<Duration>,
    /// Worker threads alive at once, stuck and retired ones included.
    pub(crate) max_threads: usize,
    /// How long a spare thread waits to be reused before it exits.
    pub(crate) keep_alive: Duration,
    /// File calls inside coroutines may use io_uring (else they go to helper threads).
    pub(crate) io_uring: bool,
    /// File calls the kernel can answer from its caches are made inline (`hook::file`).
    pub(crate) inline_file_calls: bool,
}

/// What a worker thread does (`Remote::mode`); see `monitor`.
pub(crate) const ACTIVE: u8 = 0;
/// Replaced while stuck: runs its own coroutines to their end, starts no job.
pub(crate) const RETIRED: u8 = 1;
/// No coroutine left: waits to be made active again, or exits after the keep-alive.
pub(crate) const SPARE: u8 = 2;
/// No thread behind this index; the monitor may start a new one there.
pub(crate) const EXITED: u8 = 3;

pub(crate) const RUNNING: u8 = 0;
pub(crate) const SHUTDOWN: u8 = 1;
pub(crate) const ABANDON: u8 = 2;

/// What all workers of a runtime share.
pub(crate) struct Shared {
    pub(crate) inject: queue::Inject,
    /// One per worker thread index, `config.max_threads` of them; the first `spawned` are set.
    remotes: Box<[OnceLock<Arc<Remote>>]>,
    spawned: AtomicUsize,
    pub(crate) stacks: StackPool,
    pub(crate) config: Config,
    /// Workers currently parked (an upper bound: a hint to skip the search).
    idle: AtomicUsize,
    /// `RUNNING`, `SHUTDOWN` (finish started coroutines, cancel the rest), `ABANDON`.
    state: AtomicU8,
    /// Worker threads still running, with a condvar signalled as each exits.
    alive: Mutex<usize>,
    exited: Condvar,
    next_notify: AtomicUsize,
    /// Set while a worker polls for work before parking (at most one does).
    pub(crate) spinning: AtomicBool,
    /// Every worker thread ever started (the runtime joins them), and the monitor.
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    monitor: OnceLock<Thread>,
    /// Set by the monitor before it sleeps until a worker wakes up.
    monitor_idle: AtomicBool,
}

/// What other threads may touch of one worker.
pub(crate) struct Remote {
    pub(crate) steal: queue::StealSide,
    /// Wake-ups of this worker's coroutines, sent from any thread.
    pub(crate) mailbox: Injector<WakeTarget>,
    /// fds closed by any thread while this worker had coroutines waiting on them.
    pub(crate) closed: Injector<i32>,
    parked: AtomicBool,
    eventfd: sys::Fd,
    /// `ACTIVE`, `RETIRED`, `SPARE` or `EXITED`.
    pub(crate) mode: AtomicU8,
    /// Bumped by the worker before and after each resume: odd while a coroutine runs. The
    /// monitor reads it to find coroutines that run too long.
    pub(crate) ticks: AtomicU64,
    /// What an exited thread leaves to the next one started at this index: its queue (the
    /// thieves' side of it lives here) and the first slot generation it never used.
    pub(crate) leftover: Mutex<Option<(queue::Local, u32)>>,
}

impl Remote {
    fn new() -> std::io::Result<Remote> {
        Ok(Remote {
            steal: queue::StealSide::new(),
            mailbox: Injector::new(),
            closed: Injector::new(),
            parked: AtomicBool::new(false),
            eventfd: sys::eventfd()?,
            mode: AtomicU8::new(ACTIVE),
            ticks: AtomicU64::new(0),
            leftover: Mutex::new(None),
        })
    }

    pub(crate) fn mode(&self) -> u8 {
        self.mode.load(Acquire)
    }

    pub(crate) fn signal(&self) {
        sys::eventfd_signal(self.eventfd.0);
    }
}

/// Names one coroutine of one worker. `gen` tells reuses of a slot apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WakeTarget {
    pub(crate) worker: usize,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

impl Shared {
    pub(crate) fn new(config: Config, stacks: StackPool) -> std::io::Result<Shared> {
        let remotes: Box<[OnceLock<Arc<Remote>>]> = (0..config.max_threads).map(|_| OnceLock::new()).collect();
        for remote in &remotes[..config.workers] {
            let _ = remote.set(Arc::new(Remote::new()?));
        }
        Ok(Shared {
            inject: queue::Inject::new(),
            remotes,
            spawned: AtomicUsize::new(config.workers),
            stacks,
            alive: Mutex::new(0),
            config,
            idle: AtomicUsize::new(0),
            state: AtomicU8::new(RUNNING),
            exited: Condvar::new(),
            next_notify: AtomicUsize::new(0),
            spinning: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            monitor: OnceLock::new(),
            monitor_idle: AtomicBool::new(false),
        })
    }

    /// The worker at `index`, which has been created.
    pub(crate) fn remote(&self, index: usize) -> &Arc<Remote> {
        self.remotes[index].get().expect("a worker index in use")
    }

    /// How many worker indices are in use (threads exited or not).
    pub(crate) fn spawned(&self) -> usize {
        self.spawned.load(Acquire)
    }

    /// Every worker index in use, with its `Remote`.
    pub(crate) fn remotes(&self) -> impl Iterator<Item = &Arc<Remote>> {
        self.remotes[..self.spawned()].iter().map(|r| r.get().expect("spawned workers are set"))
    }

    /// Creates the next worker index; `None` at `max_threads` indices.
    fn add_remote(&self) -> std::io::Result<Option<usize>> {
        let index = self.spawned();
        if index >= self.remotes.len() {
            return Ok(None);
        }
        let _ = self.remotes[index].set(Arc::new(Remote::new()?));
        self.spawned.store(index + 1, Release);
        Ok(Some(index))
    }

    /// Worker threads alive now.
    pub(crate) fn alive(&self) -> usize {
        *self.alive.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker_started(&self) {
        *self.alive.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    /// Called by a worker that found the monitor asleep flag set after a park: wakes it.
    pub(crate) fn wake_monitor(&self) {
        if self.monitor_idle.load(SeqCst) && self.monitor_idle.swap(false, SeqCst) {
            if let Some(monitor) = self.monitor.get() {
                monitor.unpark();
            }
        }
    }

    pub(crate) fn state(&self) -> u8 {
        self.state.load(Acquire)
    }

    /// Queues a job: on the current worker if it belongs to this runtime, else globally.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) {
        if self.state() != RUNNING {
            job.cancel();
            return;
        }
        if let Err(job) = worker::push_local(self, job) {
            self.inject.push(job);
        }
        self.notify_one();
        // A shutdown that started meanwhile may have drained the queues already.
        if self.state() != RUNNING {
            self.drain_inject();
        }
    }

    pub(crate) fn drain_inject(&self) {
        while let Some(job) = self.inject.pop_any() {
            job.cancel();
        }
    }

    /// Wakes one parked worker, if any.
    pub(crate) fn notify_one(&self) {
        std::sync::atomic::fence(SeqCst);
        // A spinning worker will see the job (it re-checks after it stops spinning).
        if self.spinning.load(SeqCst) || self.idle.load(SeqCst) == 0 {
            return;
        }
        let n = self.spawned();
        let start = self.next_notify.fetch_add(1, Relaxed);
        for i in 0..n {
            let remote = self.remote((start + i) % n);
            // Only an active worker starts jobs.
            if remote.mode() == ACTIVE && self.unpark(remote) {
                return;
            }
        }
    }

    /// Wakes every parked worker (rare: when a job could not get a stack, or stacks came
    /// back to a starved pool).
    pub(crate) fn notify_all(&self) {
        std::sync::atomic::fence(SeqCst);
        for remote in self.remotes() {
            self.unpark(remote);
        }
    }

    fn unpark(&self, remote: &Remote) -> bool {
        if remote.parked.swap(false, SeqCst) {
            self.idle.fetch_sub(1, SeqCst);
            sys::eventfd_signal(remote.eventfd.0);
            true
        } else {
            false
        }
    }

    /// Makes a suspended coroutine ready. Callable from any thread.
    pub(crate) fn wake(&self, target: WakeTarget) {
        let remote = self.remote(target.worker);
        remote.mailbox.push(target);
        std::sync::atomic::fence(SeqCst);
        self.unpark(remote);
    }

    /// Tells worker `index` that `fd` was closed: its coroutines waiting on it must retry.
    pub(crate) fn fd_closed(&self, index: usize, fd: i32) {
        let remote = self.remote(index);
        remote.closed.push(fd);
        std::sync::atomic::fence(SeqCst);
        // A worker that is not parked looks at `closed` at its next turn.
        self.unpark(remote);
    }

    /// Moves to `state` (never backwards) and wakes every worker to see it.
    pub(crate) fn set_state(&self, state: u8) {
        self.state.fetch_max(state, AcqRel);
        for remote in self.remotes() {
            self.unpark(remote);
            remote.signal();
        }
        if let Some(monitor) = self.monitor.get() {
            monitor.unpark();
        }
    }

    pub(crate) fn worker_exited(&self) {
        let mut alive = self.alive.lock().unwrap_or_else(|e| e.into_inner());
        *alive -= 1;
        self.exited.notify_all();
    }

    /// Waits until every worker thread has exited, or `deadline`. True if all did.
    pub(crate) fn wait_exited(&self, deadline: Option<std::time::Instant>) -> bool {
        let mut alive = self.alive.lock().unwrap_or_else(|e| e.into_inner());
        while *alive > 0 {
            match deadline {
                None => alive = self.exited.wait(alive).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    alive = self.exited.wait_timeout(alive, left).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A leftover queue holds an `Arc` of its own `Remote`: break the cycle.
        for remote in self.remotes() {
            remote.leftover.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// The waker of a suspended coroutine: queues a wake-up in its worker's mailbox.
pub(crate) struct CoroutineWaker {
    shared: Arc<Shared>,
    target: WakeTarget,
}

impl CoroutineWaker {
    pub(crate) fn new(shared: &Arc<Shared>, target: WakeTarget) -> CoroutineWaker {
        CoroutineWaker { shared: shared.clone(), target }
    }
}

impl Wake for CoroutineWaker {
    fn wake(self: Arc<Self>) {
        self.shared.wake(self.target)
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.wake(self.target)
    }
}
