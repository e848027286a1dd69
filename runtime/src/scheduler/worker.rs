//! The worker loop: one OS thread running its coroutines.
//!
//! Each turn:
//! 1. take the wake-ups other threads left in the mailbox, the expired timers, the fds
//!    closed under waiting coroutines, and (every few turns, if some coroutine waits for IO)
//!    the reactor's ready events;
//! 2. run the most urgent of: a ready coroutine, a local job, an injected job (a ready
//!    coroutine wins a tie, except right after a yield, when a queued job goes first);
//! 3. else steal a batch of not-yet-started jobs from another worker;
//! 4. else poll for new work a little, trim the pooled stacks (in batches) and park in the
//!    reactor's `epoll_wait` until a timer, an IO event or a wake-up.
//!
//! Shutdown steps: in `SHUTDOWN` a worker cancels the jobs it can reach and keeps resuming
//! its started coroutines until none is left, then exits. In `ABANDON` (the shutdown timeout
//! passed) it marks its remaining coroutines' tasks cancelled and exits without resuming
//! them; their stacks are leaked, since a suspended coroutine cannot be unwound (invariant 3
//! of `coroutine`).
//!
//! The single-thread `Scheduler` (`local`) drives a worker of its own from the thread that
//! made it, through the functions at the end of this file: the same turn, without stealing
//! (it is alone), the spin, the stack trimming or the monitor.

use std::cell::Cell;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Instant;

use super::queue::{Local, Ready};
use super::{Remote, Shared, WakeTarget, ACTIVE, EXITED, RETIRED, RUNNING, SHUTDOWN, SPARE};
use crate::coroutine::stack::Stack;
use crate::coroutine::{self, overflow, Co, Context, Interest, Suspend};
use crate::io::uring::{Op, Ring};
use crate::io::{registry, Reactor, Waiter, WAKE_TOKEN};
use crate::sys;
use crate::task::{Job, Runnable, Scope};
use crate::time::Timers;

/// Stacks a worker keeps for itself before handing them to the shared pool.
const LOCAL_STACKS: usize = 256;
/// Worker threads run the scheduler only (coroutines have stacks of their own).
const WORKER_STACK: usize = 256 * 1024;
/// How long a worker that ran something polls for more before it parks.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);
/// Pooled stacks are trimmed (their deep pages given back) when this many are dirty, or
/// this long after the last trim: a `madvise` per job would cost more than the job.
const TRIM_BATCH: usize = 64;
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A busy worker looks at its reactor every this many turns (tokio uses 61 too), so that IO
/// readiness is not starved by a long run queue.
const IO_EVERY: u32 = 61;
/// A queued job of the most urgent level starts after at most this many resumes in a row.
const JOB_EVERY: u32 = 61;
/// io_uring entries are submitted in one system call once nothing is ready to run, or after
/// this many turns at most.
const RING_BATCH_TURNS: u32 = 4;

struct Tls {
    shared: *const Shared,
    local: *const Local,
    remote: *const Remote,
}

thread_local! {
    /// The worker running on this thread, for `push_local` and `Handle::current`.
    static WORKER: Cell<Option<&'static Tls>> = const { Cell::new(None) };
}

/// Pushes `job` on the current thread's worker queue if it is a worker of `shared`.
pub(crate) fn push_local(shared: &Arc<Shared>, job: Job) -> Result<(), Job> {
    match WORKER.try_with(|w| w.get()).ok().flatten() {
        // SAFETY: `local` and `remote` live on this worker thread's stack (or in its `Arc`)
        // for as long as `WORKER` is set, and are only used through shared references.
        Some(tls) if std::ptr::eq(tls.shared, Arc::as_ptr(shared)) && unsafe { (*tls.remote).mode() } == ACTIVE => {
            // SAFETY: as above.
            unsafe { (*tls.local).push(job) };
            Ok(())
        }
        _ => Err(job),
    }
}

/// The runtime whose worker is the current thread.
pub(crate) fn current_worker_shared() -> Option<*const Shared> {
    WORKER.try_with(|w| w.get().map(|t| t.shared)).ok().flatten()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Running,
    Parked,
    Ready,
}

struct Slot {
    gen: u32,
    /// Bumped at every wake-up, so that older timer entries turn stale.
    park: u32,
    state: SlotState,
    priority: u8,
    co: Option<Co>,
    task: Option<Arc<dyn Runnable>>,
    /// Guard page bounds and usable size of the stack, for the overflow handler.
    guard: (usize, usize, usize),
    /// What the coroutine is resumed with next (see `coroutine::Resume`).
    input: i32,
    /// Entered around each resume (see `task::Scope`).
    scope: Option<Arc<dyn Scope>>,
}

fn is_parked(slots: &[Slot], w: Waiter) -> bool {
    slots.get(w.slot as usize).is_some_and(|s| s.gen == w.gen && s.park == w.park && s.state == SlotState::Parked)
}

/// Makes a parked coroutine ready, unless the wake-up is stale: the coroutine ended, or was
/// woken already (`park` is the park count the waker saw, if it knows it).
fn make_ready(slots: &mut [Slot], ready: &mut Ready, slot: u32, gen: u32, park: Option<u32>) {
    let Some(s) = slots.get_mut(slot as usize) else { return };
    if s.gen != gen || s.state != SlotState::Parked || park.is_some_and(|p| p != s.park) {
        return;
    }
    s.state = SlotState::Ready;
    s.park = s.park.wrapping_add(1);
    ready.push(s.priority, slot);
}

pub(super) struct Worker {
    index: usize,
    shared: Arc<Shared>,
    remote: Arc<Remote>,
    local: Local,
    ready: Ready,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    live: usize,
    timers: Timers,
    stacks: Vec<Stack>,
    /// Stacks returned to `stacks` since the last trim, and when that was.
    dirty_stacks: usize,
    last_trim: Instant,
    ran_since_park: bool,
    /// The last coroutine to run yielded: the next tie goes to a queued job.
    yielded: bool,
    reactor: Reactor,
    /// Turns since the reactor was last polled.
    turns: u32,
    /// Reused buffer of the waiters an event woke.
    woken: Vec<Waiter>,
    /// The generation new slots start at: above any a previous thread at this index used,
    /// so that its stale wake-ups match nothing here.
    gen_base: u32,
    /// This worker's copy of `Remote::ticks`.
    ticks: u64,
    /// Seen `RETIRED` (and gave its queued jobs away) since it was last active.
    retired: bool,
    /// Coroutines resumed since a job was last started.
    resumes_in_row: u32,
    /// The io_uring ring for file calls, made on the first one (see `io::uring`).
    ring: Option<Ring>,
    /// A ring was asked for (and `ring` is what came of it).
    ring_tried: bool,
    /// Turns since the ring got an entry that is not yet submitted.
    unsubmitted_turns: u32,
}

/// Starts the worker thread for index `index` of `shared`, in mode `ACTIVE`.
pub(crate) fn spawn(shared: &Arc<Shared>, index: usize) -> std::io::Result<()> {
    let epoll = sys::epoll_create()?;
    let remote = shared.remote(index).clone();
    sys::epoll_add(epoll.0, remote.eventfd.0, libc::EPOLLIN as u32, WAKE_TOKEN)?;
    remote.mode.store(ACTIVE, std::sync::atomic::Ordering::Release);
    let name = format!("{}-{index}", shared.config.thread_name);
    let worker_shared = shared.clone();
    shared.worker_started();
    let thread = std::thread::Builder::new().name(name).stack_size(WORKER_STACK).spawn(move || {
        let shared = worker_shared;
        let _altstack = overflow::ensure_altstack();
        crate::hook::probe_parker();
        let leftover = remote.leftover.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (local, gen_base) = leftover.unwrap_or_else(|| (Local::new(remote.clone()), 0));
        let id = registry::register_worker(&shared, index);
        let worker = Worker::new(index, shared, remote, local, gen_base, Reactor::new(epoll, id));
        worker.run();
        registry::unregister_worker(id);
    });
    match thread {
        Ok(t) => {
            shared.threads.lock().unwrap_or_else(|e| e.into_inner()).push(t);
            Ok(())
        }
        Err(e) => {
            shared.worker_exited();
            Err(e)
        }
    }
}

impl Worker {
    fn run(mut self) {
        let tls = Tls { shared: Arc::as_ptr(&self.shared), local: &self.local, remote: Arc::as_ptr(&self.remote) };
        // SAFETY: `tls` outlives every use: `WORKER` is reset before this frame ends.
        let tls_ref: &'static Tls = unsafe { &*(&tls as *const Tls) };
        WORKER.with(|w| w.set(Some(tls_ref)));
        loop {
            self.take_wakeups();
            match self.shared.state() {
                RUNNING => {}
                SHUTDOWN => {
                    self.cancel_queued();
                    if self.live == 0 {
                        break;
                    }
                }
                _ => {
                    self.abandon();
                    break;
                }
            }
            if self.remote.mode() == RETIRED && !self.retire() {
                break;
            }
            crate::hook::tend_parker();
            if self.run_next() {
                continue;
            }
            if self.steal() {
                continue;
            }
            self.park();
        }
        WORKER.with(|w| w.set(None));
        let stacks = std::mem::take(&mut self.stacks);
        if self.shared.stacks.put_all(stacks) {
            self.shared.notify_all();
        }
        let gen_base = self.slots.iter().map(|s| s.gen).max().map_or(self.gen_base, |g| g.wrapping_add(1));
        let remote = self.remote.clone();
        *remote.leftover.lock().unwrap_or_else(|e| e.into_inner()) = Some((self.local, gen_base));
        remote.mode.store(EXITED, std::sync::atomic::Ordering::Release);
        self.shared.worker_exited();
    }

    /// A turn of a retired worker (see `monitor`): the first time, gives its queued jobs to
    /// the others; once its last coroutine has ended, becomes a spare. False when the thread
    /// should exit.
    fn retire(&mut self) -> bool {
        if !std::mem::replace(&mut self.retired, true) {
            let mut gave = false;
            while let Some(job) = self.local.pop_any() {
                self.shared.inject.push(job);
                gave = true;
            }
            if gave {
                self.shared.notify_one();
            }
        }
        if self.live > 0 {
            return true;
        }
        self.remote.mode.store(SPARE, std::sync::atomic::Ordering::Release);
        let until = Instant::now() + self.shared.config.keep_alive;
        loop {
            if self.shared.state() != RUNNING {
                return false;
            }
            if self.remote.mode() == ACTIVE {
                self.retired = false;
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                use std::sync::atomic::Ordering::{AcqRel, Acquire};
                if self.remote.mode.compare_exchange(SPARE, EXITED, AcqRel, Acquire).is_ok() {
                    return false;
                }
                continue; // made active at the last moment
            }
            self.poll_io(Some(left));
            sys::eventfd_drain(self.remote.eventfd.0);
        }
    }

    /// Mailbox, closed fds, timers and (now and then) IO: makes woken coroutines ready.
    fn take_wakeups(&mut self) {
        while let crossbeam_deque::Steal::Success(target) = self.remote.mailbox.steal() {
            make_ready(&mut self.slots, &mut self.ready, target.slot, target.gen, None);
        }
        while let crossbeam_deque::Steal::Success(fd) = self.remote.closed.steal() {
            let mut woken = std::mem::take(&mut self.woken);
            let slots = &self.slots;
            self.reactor.closed(fd, &|w| is_parked(slots, w), &mut |w| woken.push(w));
            self.wake_all(&mut woken);
        }
        self.tend_ring(false);
        self.turns += 1;
        if self.turns >= IO_EVERY && self.reactor.has_waiters() {
            self.poll_io(Some(std::time::Duration::ZERO));
        }
        if self.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(entry) = self.timers.pop_expired(now) {
            make_ready(&mut self.slots, &mut self.ready, entry.slot, entry.gen, Some(entry.park));
        }
        let slots = &self.slots;
        self.timers.compact(self.live, |e| {
            let s = &slots[e.slot as usize];
            s.gen == e.gen && s.park == e.park && s.state == SlotState::Parked
        });
    }

    /// Submits the ring's queued entries (batched: when many wait, after a few turns, or
    /// `now`) and makes the coroutines whose operations completed ready.
    fn tend_ring(&mut self, now: bool) {
        let Some(ring) = &mut self.ring else { return };
        if ring.has_unsubmitted() {
            self.unsubmitted_turns += 1;
            if now || self.unsubmitted_turns >= RING_BATCH_TURNS || self.ready.first().is_none() {
                ring.submit();
                self.unsubmitted_turns = 0;
            }
        }
        let (slots, ready) = (&mut self.slots, &mut self.ready);
        ring.reap(|user_data, res| {
            // SAFETY: `user_data` is the `Op` of a coroutine suspended in `uring::run`, which
            // stays there, its stack alive, until this completion is recorded (invariant 1 of
            // `io::uring`).
            let op = unsafe { &*(user_data as *const Op) };
            let (slot, gen) = op.complete(res);
            make_ready(slots, ready, slot, gen, None);
        });
    }

    /// The ring, made on first use; `None` if this runtime or the kernel has none.
    fn ring(&mut self) -> Option<&mut Ring> {
        if !self.ring_tried {
            self.ring_tried = true;
            if self.shared.config.io_uring {
                self.ring = Ring::new(self.remote.eventfd.0);
            }
        }
        self.ring.as_mut()
    }

    fn wake_all(&mut self, woken: &mut Vec<Waiter>) {
        for w in woken.drain(..) {
            make_ready(&mut self.slots, &mut self.ready, w.slot, w.gen, Some(w.park));
        }
        self.woken = std::mem::take(woken);
    }

    /// Waits for IO events (or the eventfd) up to `timeout` and makes the coroutines they
    /// concern ready. Returns whether anything happened.
    fn poll_io(&mut self, timeout: Option<std::time::Duration>) -> bool {
        self.turns = 0;
        let mut woken = std::mem::take(&mut self.woken);
        let slots = &self.slots;
        let any = self.reactor.poll(timeout, |w| is_parked(slots, w), |w| woken.push(w));
        self.wake_all(&mut woken);
        if self.reactor.waiting_count() > 2 * self.live + 1024 {
            let slots = &self.slots;
            self.reactor.prune(|w| is_parked(slots, w));
        }
        any
    }

    /// Whether new jobs may start: a stack can be had.
    fn can_start(&self) -> bool {
        self.shared.state() == RUNNING
            && self.remote.mode() == ACTIVE
            && (!self.stacks.is_empty() || !self.shared.stacks.is_starved())
    }

    /// Runs one step of the most urgent work. False if there was none.
    fn run_next(&mut self) -> bool {
        let ready = self.ready.first();
        let (local, inject) =
            if self.can_start() { (self.local.first(), self.shared.inject.first()) } else { (None, None) };
        let best = [ready, local, inject].into_iter().flatten().min();
        let Some(best) = best else { return false };
        // After a yield, or after a long run of resumes, a queued job of the same priority
        // goes first: coroutines yielding in a loop, or waking each other (a Condvar
        // ping-pong), must not keep new jobs from ever starting.
        let yielded = std::mem::take(&mut self.yielded);
        let job_waiting = local == Some(best) || inject == Some(best);
        let job_first = job_waiting && (yielded || self.resumes_in_row >= JOB_EVERY);
        if ready == Some(best) && !job_first {
            self.resumes_in_row = self.resumes_in_row.saturating_add(1);
            let slot = self.ready.pop(best).expect("ready level is not empty");
            self.resume(slot);
            return true;
        }
        self.resumes_in_row = 0;
        if local == Some(best) {
            if let Some(job) = self.local.pop(best) {
                self.start(job);
            }
        } else if let Some(job) = self.shared.inject.pop_into(best, &self.local) {
            if self.local.first().is_some() || self.shared.inject.first().is_some() {
                self.shared.notify_one(); // more work than this worker: share it
            }
            self.start(job);
        }
        true
    }

    fn steal(&mut self) -> bool {
        if !self.can_start() {
            return false;
        }
        let n = self.shared.spawned();
        for i in 1..n {
            let victim = self.shared.remote((self.index + i) % n);
            if let Some(job) = victim.steal.steal_into(&self.local) {
                self.start(job);
                return true;
            }
        }
        false
    }

    fn take_stack(&mut self) -> Option<Stack> {
        self.stacks.pop().or_else(|| self.shared.stacks.get().ok())
    }

    fn release_stack(&mut self, mut stack: Stack) {
        if stack.usable() != self.shared.stacks.usable() {
            return; // a job's own stack (see `start_sized`): unmapped here
        }
        stack.mark_dirty();
        if self.shared.stacks.is_starved() || self.stacks.len() >= LOCAL_STACKS {
            if self.shared.stacks.put_all([stack]) {
                self.shared.notify_all();
            }
        } else {
            self.dirty_stacks += 1;
            self.stacks.push(stack);
        }
    }

    fn start(&mut self, job: Job) {
        if let Some(size) = job.header().stack_size().filter(|&n| n != self.shared.stacks.usable()) {
            return self.start_sized(job, size);
        }
        let Some(stack) = self.take_stack() else {
            // No stack here: the job waits in the queue until one is freed (`can_start`).
            // A parked worker may hold free stacks in its own cache: wake them all to look.
            self.shared.inject.push(job);
            self.shared.notify_all();
            return;
        };
        self.start_on(job, stack);
    }

    fn start_on(&mut self, job: Job, stack: Stack) {
        if !job.header().start() {
            job.runnable().discard();
            if stack.usable() == self.shared.stacks.usable() {
                self.stacks.push(stack);
            }
            return;
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    gen: self.gen_base,
                    park: 0,
                    state: SlotState::Free,
                    priority: 0,
                    co: None,
                    task: None,
                    guard: (0, 0, 0),
                    input: 0,
                    scope: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let (guard_low, guard_high) = stack.guard();
        let guard = (guard_low, guard_high, stack.usable());
        let s = &mut self.slots[slot as usize];
        s.gen = s.gen.wrapping_add(1);
        let target = WakeTarget { worker: self.index, slot, gen: s.gen };
        let shared = self.shared.clone();
        let runnable = job.runnable().clone();
        let co = Co::with_stack(stack, move |yielder, _: i32| {
            let ctx = Context {
                yielder,
                shared,
                target,
                budget: std::cell::Cell::new(coroutine::BUDGET),
                parker_woken: std::cell::Cell::new(false),
                parker_recheck: std::cell::Cell::new(0),
                locks_held: std::cell::Cell::new(0),
            };
            coroutine::enter(&ctx, || runnable.run());
        });
        s.state = SlotState::Running;
        s.priority = job.header().priority().get();
        s.co = Some(co);
        s.task = Some(job.runnable().clone());
        s.guard = guard;
        s.scope = job.header().scope().cloned();
        self.live += 1;
        self.resume(slot);
    }

    fn resume(&mut self, slot: u32) {
        self.ran_since_park = true;
        let s = &mut self.slots[slot as usize];
        let mut co = s.co.take().expect("a live slot holds its coroutine");
        s.state = SlotState::Running;
        let input = std::mem::take(&mut s.input);
        overflow::set_running_guard(s.guard);
        self.ticks += 1; // odd: a coroutine runs (see `monitor`)
        self.remote.ticks.store(self.ticks, std::sync::atomic::Ordering::Release);
        let result = match &s.scope {
            None => co.resume(input),
            Some(scope) => {
                let mut result = None;
                scope.scoped(&mut || {
                    if result.is_none() {
                        result = Some(co.resume(input));
                    }
                });
                result.expect("openco: a Scope must call `resume` (see `Scope::scoped`)")
            }
        };
        self.ticks += 1;
        self.remote.ticks.store(self.ticks, std::sync::atomic::Ordering::Release);
        overflow::set_running_guard((0, 0, 0));
        let s = &mut self.slots[slot as usize];
        match result {
            corosensei::CoroutineResult::Yield(Suspend::Park(deadline)) => {
                s.co = Some(co);
                s.state = SlotState::Parked;
                if let Some(deadline) = deadline {
                    self.timers.insert(deadline, slot, s.gen, s.park);
                }
            }
            corosensei::CoroutineResult::Yield(Suspend::Io { interests, len, deadline, call }) => {
                s.co = Some(co);
                s.state = SlotState::Parked;
                let who = Waiter { slot, gen: s.gen, park: s.park };
                // SAFETY: the list and the call state live on the stack of the coroutine,
                // which stays suspended (and its stack alive) until this worker resumes it,
                // after this call; nothing else refers to them meanwhile.
                let (interests, call): (&[Interest], _) =
                    unsafe { (std::slice::from_raw_parts(interests, len), call.as_mut()) };
                let slots = &self.slots;
                match self.reactor.register(interests, who, |w| is_parked(slots, w), call) {
                    Ok(call_deadline) => {
                        let deadline = match (deadline, call_deadline) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        if let Some(deadline) = deadline {
                            self.timers.insert(deadline, slot, who.gen, who.park);
                        }
                    }
                    Err(errno) => {
                        self.slots[slot as usize].input = errno;
                        make_ready(&mut self.slots, &mut self.ready, slot, who.gen, Some(who.park));
                    }
                }
            }
            corosensei::CoroutineResult::Yield(Suspend::Uring { entry, op }) => {
                s.co = Some(co);
                s.state = SlotState::Parked;
                let gen = s.gen;
                // SAFETY: both live on the stack of the coroutine, suspended in `uring::run`
                // until the operation completes (invariant 1 of `io::uring`).
                let (entry, op) = unsafe { ((*entry).clone(), &*op) };
                op.slot.set(slot);
                op.gen.set(gen);
                match self.ring() {
                    // SAFETY: as above: the entry's memory outlives its completion.
                    Some(ring) => unsafe { ring.push(entry.user_data(op as *const Op as u64)) },
                    None => {
                        op.complete(crate::io::uring::NO_RING);
                        make_ready(&mut self.slots, &mut self.ready, slot, gen, None);
                    }
                }
            }
            corosensei::CoroutineResult::Yield(Suspend::Yield) => {
                s.co = Some(co);
                s.state = SlotState::Ready;
                self.ready.push(s.priority, slot);
                self.yielded = true;
            }
            corosensei::CoroutineResult::Return(()) => {
                let task = s.task.take().expect("a live slot holds its task");
                s.scope = None;
                s.state = SlotState::Free;
                self.free_slots.push(slot);
                self.live -= 1;
                self.release_stack(co.into_stack());
                task.header().complete();
            }
        }
    }

    fn cancel_queued(&mut self) {
        while let Some(job) = self.local.pop_any() {
            job.cancel();
        }
        self.shared.drain_inject();
    }

    fn abandon(&mut self) {
        self.cancel_queued();
        for s in &mut self.slots {
            if let Some(co) = s.co.take() {
                std::mem::forget(co); // invariant 3: never unwind a suspended coroutine
            }
            if let Some(task) = s.task.take() {
                task.header().abandon();
            }
        }
        self.live = 0;
    }

    fn has_work(&self) -> bool {
        if !self.remote.mailbox.is_empty() || !self.remote.closed.is_empty() || self.shared.state() != RUNNING {
            return true;
        }
        if self.ring.as_ref().is_some_and(|r| r.has_unsubmitted() || r.has_completions()) {
            return true;
        }
        self.can_start() && (self.shared.inject.first().is_some() || self.shared.remotes().any(|r| r.steal.has_work()))
    }

    /// Polls for new work for a short while before parking: a job often follows the one
    /// that just ended, and a kernel wake-up costs tens of microseconds on a VM. At most one
    /// worker spins at a time, and only after it ran something, so an idle runtime uses no
    /// CPU.
    fn spin(&mut self) -> bool {
        if !std::mem::take(&mut self.ran_since_park) || self.shared.spinning.swap(true, SeqCst) {
            return false;
        }
        let until = Instant::now() + SPIN;
        let mut found = false;
        while !found && Instant::now() < until {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            found = self.has_work();
            if !found && self.reactor.has_waiters() {
                found = self.poll_io(Some(std::time::Duration::ZERO));
            }
        }
        // A submitter that saw `spinning` set did not wake anyone: look once more after
        // clearing it (SeqCst on both sides, as in the parking protocol).
        self.shared.spinning.store(false, SeqCst);
        found || self.has_work()
    }

    fn park(&mut self) {
        self.tend_ring(true);
        if self.spin() {
            return;
        }
        let mut trim_at = None;
        if self.dirty_stacks > 0 {
            let due = self.last_trim + TRIM_EVERY;
            if self.dirty_stacks >= TRIM_BATCH || Instant::now() >= due {
                self.stacks.iter_mut().for_each(Stack::trim);
                self.dirty_stacks = 0;
                self.last_trim = Instant::now();
            } else {
                trim_at = Some(due); // wake up to trim if nothing else does
            }
        }
        self.park_until(trim_at);
        self.shared.wake_monitor();
    }

    /// The parking protocol (see `scheduler`): waits in the reactor for the next timer, an
    /// IO event, a ring completion or a wake-up, and at the latest until `until`.
    fn park_until(&mut self, until: Option<Instant>) {
        self.tend_ring(true);
        self.remote.parked.store(true, SeqCst);
        self.shared.idle.fetch_add(1, SeqCst);
        if !self.has_work() {
            let wake_at = match (self.timers.next_deadline(), until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = wake_at.map(|d| d.saturating_duration_since(Instant::now()));
            self.poll_io(timeout);
        } else if self.reactor.has_waiters() {
            self.poll_io(Some(std::time::Duration::ZERO));
        }
        if self.remote.parked.swap(false, SeqCst) {
            self.shared.idle.fetch_sub(1, SeqCst);
        }
        sys::eventfd_drain(self.remote.eventfd.0);
    }
}

/// Publishes a worker driven by the calling thread in `WORKER` while it runs, like `run`.
struct Entered;

impl Entered {
    fn new(worker: &Worker) -> Entered {
        let tls = Box::new(Tls {
            shared: Arc::as_ptr(&worker.shared),
            local: &worker.local,
            remote: Arc::as_ptr(&worker.remote),
        });
        // Leaked for the drive, freed by `drop`: the worker (and its `local`) is borrowed
        // for at least as long by the caller, as `run`'s frame is for its `Tls`.
        let tls: &'static Tls = Box::leak(tls);
        WORKER.with(|w| w.set(Some(tls)));
        Entered
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(tls) = WORKER.with(|w| w.take()) {
            // SAFETY: the `Box` leaked by `new`; `WORKER` no longer refers to it.
            drop(unsafe { Box::from_raw(tls as *const Tls as *mut Tls) });
        }
        crate::hook::release_parker();
    }
}

/// The single-thread `Scheduler` (see `local`): a worker created on the calling thread and
/// driven by it, between whose drives the thread runs code of its own.
impl Worker {
    fn new(
        index: usize,
        shared: Arc<Shared>,
        remote: Arc<Remote>,
        local: Local,
        gen_base: u32,
        reactor: Reactor,
    ) -> Worker {
        Worker {
            index,
            shared,
            remote,
            local,
            ready: Ready::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            timers: Timers::default(),
            stacks: Vec::new(),
            dirty_stacks: 0,
            last_trim: Instant::now(),
            ran_since_park: false,
            yielded: false,
            reactor,
            turns: 0,
            woken: Vec::new(),
            gen_base,
            ticks: 0,
            retired: false,
            resumes_in_row: 0,
            ring: None,
            ring_tried: false,
            unsubmitted_turns: 0,
        }
    }

    /// The one worker of `shared` (index 0), for the calling thread. Returns it with its
    /// process-wide id, to give back with `registry::unregister_worker`.
    pub(super) fn new_local(shared: Arc<Shared>) -> std::io::Result<(Worker, usize)> {
        let epoll = sys::epoll_create()?;
        let remote = shared.remote(0).clone();
        sys::epoll_add(epoll.0, remote.eventfd.0, libc::EPOLLIN as u32, WAKE_TOKEN)?;
        crate::hook::probe_parker_once();
        let id = registry::register_worker(&shared, 0);
        let local = Local::new(remote.clone());
        Ok((Worker::new(0, shared, remote, local, 0, Reactor::new(epoll, id)), id))
    }

    /// Runs, on the calling thread, every coroutine and job that is ready, until none is
    /// ready right now; never waits for a timer or IO.
    pub(super) fn run_ready(&mut self) {
        let _entered = Entered::new(self);
        self.run_ready_entered();
    }

    fn run_ready_entered(&mut self) {
        let mut polled = false;
        loop {
            self.take_wakeups();
            crate::hook::tend_parker();
            if self.run_next() {
                polled = false;
                continue;
            }
            if polled {
                return;
            }
            // Nothing ready: look once at IO and the eventfd without waiting, then again.
            if self.reactor.has_waiters() {
                self.poll_io(Some(std::time::Duration::ZERO));
            }
            sys::eventfd_drain(self.remote.eventfd.0);
            polled = true;
        }
    }

    /// Runs ready work and parks (in `epoll_wait`) for the rest until no coroutine or job is
    /// left, or `deadline` passes. True if none is left.
    pub(super) fn run_until(&mut self, deadline: Option<Instant>) -> bool {
        let _entered = Entered::new(self);
        loop {
            self.run_ready_entered();
            if self.is_done() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            self.park_until(deadline);
        }
    }

    /// No started coroutine and no queued job.
    pub(super) fn is_done(&self) -> bool {
        self.live == 0 && self.local.first().is_none() && self.shared.inject.first().is_none()
    }

    /// Cancels the queued jobs and gives up the started coroutines without resuming them
    /// (see `abandon`), for a `Scheduler` dropped with work left.
    pub(super) fn abandon_local(&mut self) {
        self.abandon();
        crate::hook::release_parker();
    }

    /// Starts `job` on a stack of its own of `size` usable bytes; a job whose stack cannot be
    /// mapped is cancelled (its handle reports it), with a warning.
    fn start_sized(&mut self, job: Job, size: usize) {
        match Stack::new(size) {
            Ok(stack) => self.start_on(job, stack),
            Err(err) => {
                tracing::warn!("openco: a job's stack of {size} bytes could not be mapped ({err}); job cancelled");
                job.cancel();
            }
        }
    }
}
