//! The monitor: no coroutine can keep its worker's other work from running.
//!
//! A coroutine runs on its worker thread until it suspends. One that loops without a hooked
//! call, or blocks where no hook reaches (a C library's internal syscall, `pthread_join`, a
//! long CPU phase), holds that thread. The monitor thread looks at every active worker about
//! every millisecond: a worker whose `ticks` (bumped before and after each resume) stayed odd
//! and unchanged for longer than the time slice is stuck. The monitor then *hands off*: the
//! stuck worker becomes `RETIRED` and a spare thread (reused, or started while fewer than
//! `max_threads` run) becomes `ACTIVE` in its place, so the runtime keeps its number of
//! workers that start jobs. The jobs queued on the stuck worker are stolen by the others,
//! and new jobs never go to it. This is what Go's runtime does for a thread blocked in a
//! syscall, with one difference, below.
//!
//! **Coroutines never change threads.** A coroutine that has started resumes only on the
//! thread it started on: moving it is unsound in general (the compiler may keep a
//! thread-local's address across a call, rust-lang/rust#33368; `rand::thread_rng()` holds an
//! `Rc` into thread-local state; stdout's lock is re-entrant by thread id). So what moves
//! on a hand-off is what has not started: queued jobs and every new job. The coroutines
//! already suspended on the stuck thread (their timers and IO waits included) wait for it:
//! they resume when the stuck coroutine suspends or ends. A retired worker runs its own
//! coroutines to their end, then becomes a spare: it waits up to the keep-alive to be made
//! active again, and exits otherwise.
//!
//! Preemption by signals (suspending a coroutine from a signal handler) is not done: a
//! coroutine interrupted at an arbitrary instruction may hold the allocator's lock or a
//! `RefCell` borrow that the next coroutine on the thread then meets.
//!
//! The monitor sleeps while every worker is parked (`monitor_idle`); the first worker to wake
//! up wakes it. An idle runtime costs no CPU.

use std::io;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{worker, Shared, ACTIVE, EXITED, RETIRED, RUNNING, SPARE};

/// How often the monitor looks at the workers while some of them run.
const TICK: Duration = Duration::from_millis(1);
/// Checks in a row that found nothing running before the monitor sleeps until woken.
const IDLE_CHECKS: u32 = 100;

/// Starts the workers of a new runtime and, if it has a time slice, its monitor.
pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<()> {
    for index in 0..shared.config.workers {
        if let Err(e) = worker::spawn(shared, index) {
            shared.set_state(super::ABANDON);
            return Err(e);
        }
    }
    let Some(slice) = shared.config.time_slice else { return Ok(()) };
    let monitor_shared = shared.clone();
    let name = format!("{}-monitor", shared.config.thread_name);
    let spawned = std::thread::Builder::new().name(name).stack_size(128 * 1024).spawn(move || {
        run(&monitor_shared, slice);
    });
    match spawned {
        Ok(thread) => {
            let _ = shared.monitor.set(thread.thread().clone());
            shared.threads.lock().unwrap_or_else(|e| e.into_inner()).push(thread);
            Ok(())
        }
        Err(e) => {
            shared.set_state(super::ABANDON);
            Err(e)
        }
    }
}

fn run(shared: &Arc<Shared>, slice: Duration) {
    // Per worker index: the last `ticks` seen and since when.
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let mut idle_checks = 0;
    let mut warned = false;
    while shared.state() == RUNNING {
        let now = Instant::now();
        seen.resize(shared.spawned(), (0, now));
        let mut running = false;
        for (index, remote) in shared.remotes().enumerate() {
            let ticks = remote.ticks.load(Acquire);
            if ticks % 2 == 0 || seen[index].0 != ticks {
                seen[index] = (ticks, now);
                running |= ticks % 2 == 1;
                continue;
            }
            running = true;
            if now.duration_since(seen[index].1) >= slice && remote.mode() == ACTIVE {
                match hand_off(shared, index) {
                    Ok(true) => {}
                    Ok(false) if !warned => {
                        warned = true;
                        tracing::warn!(
                            max_threads = shared.config.max_threads,
                            "openco: a worker is stuck (a coroutine ran past the time slice without suspending) and \
                             max_threads are running: its queued jobs wait for the other workers"
                        );
                    }
                    Ok(false) => {}
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!("openco: cannot start a thread to take over from a stuck worker: {e}");
                    }
                    Err(_) => {}
                }
                seen[index].1 = now; // look again one slice later, not every tick
            }
        }
        if running {
            idle_checks = 0;
        } else {
            idle_checks += 1;
        }
        if idle_checks >= IDLE_CHECKS && all_parked(shared) {
            std::thread::park();
            idle_checks = 0;
        } else {
            std::thread::sleep(TICK);
        }
    }
}

/// Whether every worker with work of its own is parked. Sets `monitor_idle` first (SeqCst,
/// as the parking protocol): a worker that leaves its park after our look sees the flag
/// and wakes the monitor.
fn all_parked(shared: &Shared) -> bool {
    shared.monitor_idle.store(true, SeqCst);
    let parked = shared.remotes().all(|r| matches!(r.mode(), SPARE | EXITED) || r.parked.load(SeqCst));
    if !parked {
        shared.monitor_idle.store(false, SeqCst);
    }
    parked
}

/// Retires the stuck worker `index` and makes another thread active in its place. False if
/// no thread could be had (`max_threads` are running).
fn hand_off(shared: &Arc<Shared>, index: usize) -> io::Result<bool> {
    let stuck = shared.remote(index);
    if stuck.mode.compare_exchange(ACTIVE, RETIRED, AcqRel, Acquire).is_err() {
        return Ok(true);
    }
    let replaced = activate_spare(shared) || start_thread(shared)?;
    if replaced {
        // Parked workers may steal the jobs queued on the stuck one.
        shared.notify_one();
    } else {
        stuck.mode.store(ACTIVE, Release);
    }
    Ok(replaced)
}

fn activate_spare(shared: &Shared) -> bool {
    for remote in shared.remotes() {
        if remote.mode.compare_exchange(SPARE, ACTIVE, AcqRel, Acquire).is_ok() {
            remote.signal();
            return true;
        }
    }
    false
}

/// Starts a worker thread at an index whose thread exited, or at a new one.
fn start_thread(shared: &Arc<Shared>) -> io::Result<bool> {
    if shared.alive() >= shared.config.max_threads {
        return Ok(false);
    }
    let reused = shared.remotes().position(|r| r.mode.compare_exchange(EXITED, ACTIVE, AcqRel, Acquire).is_ok());
    let index = match reused {
        Some(index) => index,
        None => match shared.add_remote()? {
            Some(index) => index,
            None => return Ok(false),
        },
    };
    match worker::spawn(shared, index) {
        Ok(()) => Ok(true),
        Err(e) => {
            shared.remote(index).mode.store(EXITED, Release);
            Err(e)
        }
    }
}
