//! The offload pool: a few plain helper threads for calls that would block a worker thread and
//! that no hook can turn into a suspension (glibc's `getaddrinfo` today; file IO where
//! io_uring is missing, later).
//!
//! [`run`] called inside a coroutine queues its closure for a helper thread and parks the
//! coroutine, not the thread, until the result is back: the worker runs other coroutines
//! meanwhile. Called outside a coroutine it just calls the closure. Helper threads are
//! started on demand, at most [`Pool::max_threads`] of them (twice the CPUs this process may
//! run on, at least 4, at most 16: enough to overlap slow lookups, few enough to stay
//! "small"); when all are busy, jobs wait in a FIFO queue. When the queue has not moved for
//! [`STARVED_AFTER`] (no helper took a job meanwhile), a waiting call starts one more helper
//! (up to [`GROWTH_CAP`]): blocking calls may wait for one another (opening the two ends of
//! a FIFO), and a fixed pool full of first halves would never run the second ones. A queue
//! that merely moves slowly (a slow disk) does not grow the pool. A helper left idle for
//! [`KEEP_ALIVE`] exits, so a process that stops offloading keeps no threads. Helpers are
//! plain std threads named `openco-offload`, never coroutines: every hook passes straight
//! through to libc on them, which is what makes it right to hand them a libc call (glibc's
//! NSS modules reach `connect`, `poll`, `read`... through the PLT, hence through the hooks).
//!
//! Why the closure may borrow from the caller (it need not be `'static`): the coroutine that
//! called [`run`] stays parked inside it until the helper has finished with the closure, and
//! a parked coroutine is never resumed elsewhere (invariant 2 of `coroutine`) nor unwound
//! (invariant 3; a coroutine abandoned at shutdown keeps its stack mapped forever). So its
//! stack, and everything the closure borrows from it, outlives the helper's use, exactly as a
//! `std::thread::scope` outlives its threads. Should an unwind ever reach a waiting [`run`]
//! anyway, it aborts the process rather than free memory a helper still uses.
//!
//! Invariants (the pool's `State`, all under its mutex):
//! 1. Whenever `queue` is not empty, `threads > idle`: some helper that is running a job, or
//!    was just started or claimed, will pop the queue before it next waits. A helper only
//!    becomes idle after seeing the queue empty; a submitter that finds an idle helper claims
//!    it (`idle -= 1`, `notified += 1`), otherwise starts one unless `max_threads` are alive
//!    (they are then all busy, and will pop the job when done). So no job is ever stranded.
//! 2. `idle` counts waiting helpers that nobody claimed; `notified` counts claims not yet
//!    taken. A waking helper takes a claim if there is one (whichever helper the condvar
//!    woke), else waits on; only a helper that finds no claim after `KEEP_ALIVE` exits.
//! 3. A call completes in this order on the helper: result stored, `done` set (Release),
//!    coroutine woken. The coroutine reads the result only after seeing `done` (Acquire), and
//!    re-checks `done` after every return from `park`, which may be spurious or be the wake-up
//!    of a call that already completed; a wake-up sent before the coroutine parked stays in
//!    its worker's mailbox and resumes it right after it parks. So the coroutine is never
//!    woken for good before its result is written, and never misses the wake-up.
//!
//! One call from a coroutine, step by step:
//! 1. `run` makes a `Call` (the `done` flag, a result slot and the coroutine's waker) in an
//!    `Arc` shared with the helper, boxes the closure with it as a job and erases the job's
//!    lifetime (see above);
//! 2. `submit` queues the job and claims an idle helper or starts one (invariant 1);
//! 3. the coroutine parks until `done` (invariant 3);
//! 4. a helper pops the job, runs the closure under `catch_unwind`, completes the `Call`;
//! 5. the coroutine takes the result, or resumes the closure's panic.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread;
use std::time::{Duration, Instant};

use crate::coroutine;
use crate::sys;

/// How long an idle helper thread waits for work before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The name of every helper thread.
const THREAD_NAME: &str = "openco-offload";

/// A call still queued after this long, every helper busy, starts one more helper beyond
/// [`Pool::max_threads`] (up to [`GROWTH_CAP`]): the busy helpers may all be waiting for
/// calls queued behind them (the two ends of a FIFO being opened, with io_uring off).
const STARVED_AFTER: Duration = Duration::from_millis(50);

/// The most helpers growth may start, tokio's blocking-pool cap.
const GROWTH_CAP: usize = 512;

/// A queued call, its lifetime erased (see the module docs).
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The process-wide pool behind [`run`].
static POOL: Pool = Pool::new(0, KEEP_ALIVE);

/// Runs `f` on a helper thread while the calling coroutine is parked, and returns its result;
/// outside a coroutine, calls `f` on the calling thread. A panic in `f` resumes in the caller.
///
/// `f` may borrow from the caller: the coroutine cannot leave this call before the helper is
/// done with `f` (module docs). `f` must not wait for something only the calling coroutine's
/// worker can do while the pool is full of such waits: that would deadlock, as with any
/// bounded pool.
pub(crate) fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    POOL.run(f)
}

/// [`run`] for a libc call that reports errors through `errno`: `f` starts with the caller's
/// `errno` on the helper thread, and the caller ends with the `errno` `f` left there, so
/// `errno` after the call is exactly what the call would have left on the caller's thread.
pub(crate) fn run_with_errno<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if !coroutine::in_coroutine() {
        return f();
    }
    let errno = sys::errno();
    let (value, errno) = run(move || {
        sys::set_errno(errno);
        let value = f();
        (value, sys::errno())
    });
    // After the suspension: `coroutine::suspend` restored the errno of before it.
    sys::set_errno(errno);
    value
}

/// A bounded, on-demand pool of helper threads. See the module docs.
pub(crate) struct Pool {
    state: Mutex<State>,
    /// Idle helpers wait on it; a submitter that claims one signals it.
    wake: Condvar,
    /// The most helper threads alive at once; 0 until first computed (see `max_threads`).
    max_threads: AtomicUsize,
    keep_alive: Duration,
    /// Makes every thread start fail, to test `start_failed`.
    #[cfg(test)]
    fail_starts: AtomicBool,
}

struct State {
    queue: VecDeque<Job>,
    /// When a helper last took a job from the queue: the pool is stuck (and may grow) only
    /// if none did for [`STARVED_AFTER`].
    last_pop: Option<Instant>,
    /// Helper threads alive, or being started.
    threads: usize,
    /// Helpers waiting for work that no submitter has claimed.
    idle: usize,
    /// Claims on idle helpers that no helper has taken yet.
    notified: usize,
}

/// The meeting point of one call: written by the helper, read by the parked coroutine.
struct Call<T> {
    /// A helper took the job (it is no longer queued).
    started: AtomicBool,
    done: AtomicBool,
    result: Mutex<Option<thread::Result<T>>>,
    waker: Waker,
}

impl<T> Call<T> {
    /// Publishes the result and wakes the caller (invariant 3).
    fn complete(&self, result: thread::Result<T>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.store(true, Release);
        self.waker.wake_by_ref();
    }
}

/// Armed while a helper (or an io_uring operation) may still use the caller's memory: unwinding past it would free
/// memory the helper borrows, so it aborts instead (it cannot happen, by invariant 3 of
/// `coroutine`; this makes sure).
pub(crate) struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        let msg = b"openco: a coroutine was unwound while a helper thread or the kernel used its stack\n";
        // SAFETY: write(2) of a valid buffer, then abort(3); raw, so no hook runs.
        unsafe {
            crate::sys::syscall!(libc::SYS_write, 2, msg.as_ptr(), msg.len());
            libc::abort();
        }
    }
}

impl Pool {
    /// A pool of at most `max_threads` helpers (0: the default, see the module docs) that
    /// exit after `keep_alive` without work. Starts no thread.
    pub(crate) const fn new(max_threads: usize, keep_alive: Duration) -> Pool {
        Pool {
            state: Mutex::new(State { queue: VecDeque::new(), last_pop: None, threads: 0, idle: 0, notified: 0 }),
            wake: Condvar::new(),
            max_threads: AtomicUsize::new(max_threads),
            keep_alive,
            #[cfg(test)]
            fail_starts: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and catch their panics: a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Twice the CPUs of this process's affinity mask, clamped to 4..=16. Read with
    /// `sched_getaffinity` rather than `available_parallelism`, which reads cgroup files: a
    /// file hook that offloads would call back in here.
    fn max_threads(&self) -> usize {
        let max = self.max_threads.load(Relaxed);
        if max != 0 {
            return max;
        }
        // SAFETY: `cpu_set_t` is a plain bit array; all zeros is a valid (empty) set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
        let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
        // SAFETY: `set` is initialised.
        let cpus = if ok { unsafe { libc::CPU_COUNT(&set) }.max(1) as usize } else { 1 };
        let max = (2 * cpus).clamp(4, 16);
        self.max_threads.store(max, Relaxed);
        max
    }

    /// See [`run`].
    pub(crate) fn run<T: Send>(&'static self, f: impl FnOnce() -> T + Send) -> T {
        if !coroutine::in_coroutine() {
            return f();
        }
        let call = Arc::new(Call {
            started: AtomicBool::new(false),
            done: AtomicBool::new(false),
            result: Mutex::new(None),
            waker: coroutine::waker(),
        });
        let job: Box<dyn FnOnce() + Send + '_> = {
            let call = call.clone();
            Box::new(move || {
                call.started.store(true, Relaxed);
                call.complete(panic::catch_unwind(AssertUnwindSafe(f)))
            })
        };
        // SAFETY: only the lifetime changes. The job borrows at most what `f` and `T` borrow,
        // which lives at least as long as this call; this call does not return (or unwind:
        // `guard`) before `done`, which the helper sets after its last use of `f` and the
        // result. What the helper still holds afterwards is its `Arc<Call>`, whose result slot
        // this call emptied, and the waker, which is `'static`.
        let job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        let guard = AbortOnUnwind;
        self.submit(job);
        // Suspensions inside `submit` (a hooked lock or thread start) may have consumed our
        // wake-up: that is why `done` is checked before each park, not only after.
        let mut check_at = Instant::now() + STARVED_AFTER;
        while !call.done.load(Acquire) {
            if call.started.load(Relaxed) {
                coroutine::park(None);
                continue;
            }
            coroutine::park(Some(check_at));
            if !call.started.load(Relaxed) && Instant::now() >= check_at {
                self.grow();
                check_at = Instant::now() + STARVED_AFTER;
            }
        }
        std::mem::forget(guard);
        let result = call.result.lock().unwrap_or_else(PoisonError::into_inner).take();
        match result.expect("a completed call holds its result") {
            Ok(value) => value,
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// Queues `job` and makes sure a helper will run it (invariant 1).
    fn submit(&'static self, job: Job) {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle > 0 {
            state.idle -= 1;
            state.notified += 1;
            drop(state);
            self.wake.notify_one();
            return;
        }
        if state.threads >= self.max_threads() {
            return; // all busy: one pops the job when it is done
        }
        state.threads += 1;
        drop(state);
        // Started outside the lock: a thread start takes tens of microseconds.
        if let Err(err) = self.start_helper() {
            self.start_failed(err);
        }
    }

    /// A call has waited [`STARVED_AFTER`] in the queue: starts one more helper, beyond
    /// `max_threads` if need be, while jobs are queued, every helper is busy and none has
    /// taken a job for as long (they may all wait for calls behind them in the queue).
    #[cold]
    fn grow(&'static self) {
        let mut state = self.lock();
        let moving = state.last_pop.is_some_and(|t| t.elapsed() < STARVED_AFTER);
        if moving || state.queue.is_empty() || state.idle > 0 || state.threads >= GROWTH_CAP {
            return; // the helpers are getting through the queue: it is slow, not stuck
        }
        state.threads += 1;
        drop(state);
        tracing::debug!("openco: every offload helper has been busy for {STARVED_AFTER:?}; starting one more");
        if let Err(err) = self.start_helper() {
            self.start_failed(err);
        }
    }

    fn start_helper(&'static self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_starts.load(Relaxed) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        thread::Builder::new().name(THREAD_NAME.into()).spawn(move || self.helper()).map(drop)
    }

    /// A helper could not be started. If no other helper will look at the queue, run it here,
    /// blocking this thread, rather than strand a job (invariant 1).
    #[cold]
    fn start_failed(&self, err: std::io::Error) {
        let mut state = self.lock();
        state.threads -= 1;
        if state.threads > state.idle || state.queue.is_empty() {
            return;
        }
        while let Some(job) = state.queue.pop_front() {
            drop(state);
            job();
            state = self.lock();
        }
        drop(state); // not held while logging
        tracing::warn!("openco: cannot start an offload helper thread ({err}); ran the call on the caller's thread");
    }

    /// The body of a helper thread: run jobs until idle for `keep_alive`.
    fn helper(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                state.last_pop = Some(Instant::now());
                drop(state);
                job(); // catches its own panics (`run`)
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let deadline = Instant::now() + self.keep_alive;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Unclaimed for `keep_alive` (invariant 2), and the queue is empty (1).
                    state.idle -= 1;
                    state.threads -= 1;
                    return;
                }
                state = self.wake.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
                if state.notified > 0 {
                    state.notified -= 1;
                    break;
                }
            }
        }
    }

    #[cfg(test)]
    fn threads(&self) -> usize {
        self.lock().threads
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::runtime::{Builder, Runtime};

    const WATCHDOG: Duration = Duration::from_secs(30);

    fn rt(workers: usize) -> Runtime {
        Builder::new().workers(workers).thread_name("offload-test").build().unwrap()
    }

    /// A pool of its own, so that tests can count its threads and shorten its keep-alive.
    fn pool(max_threads: usize, keep_alive: Duration) -> &'static Pool {
        Box::leak(Box::new(Pool::new(max_threads, keep_alive)))
    }

    fn thread_name() -> String {
        thread::current().name().unwrap_or_default().to_owned()
    }

    #[test]
    fn outside_a_coroutine_runs_on_the_calling_thread() {
        let me = thread::current().id();
        let data = [1, 2, 3];
        let (id, sum) = run(|| (thread::current().id(), data.iter().sum::<i32>()));
        assert_eq!((id, sum), (me, 6));
        let pool = pool(2, KEEP_ALIVE);
        assert_eq!(pool.run(|| thread::current().id()), me);
        assert_eq!(pool.threads(), 0, "no helper is started outside a coroutine");
    }

    #[test]
    fn inside_a_coroutine_runs_on_a_helper_and_borrows() {
        let rt = rt(1);
        let (worker, helper, sum) = rt
            .blocking(|| {
                let data: Vec<u64> = (1..=100).collect(); // on the coroutine's stack and heap
                let (helper, sum) = run(|| (thread_name(), data.iter().sum::<u64>()));
                (thread_name(), helper, sum)
            })
            .join()
            .unwrap();
        assert_eq!(sum, 5050);
        assert_eq!(helper, THREAD_NAME);
        assert!(worker.starts_with("offload-test"), "{worker}");
    }

    /// Many coroutines on two workers offload at once through a pool of 3: every result is
    /// right, and no more than 3 calls ever run at once, on no more than 3 threads.
    #[test]
    fn many_concurrent_runs_are_bounded_and_correct() {
        let pool = pool(3, KEEP_ALIVE);
        let rt = rt(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..200u64)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                rt.blocking(move || {
                    (0..5u64)
                        .map(|j| {
                            let input = [i, j]; // borrowed by the helper
                            pool.run(|| {
                                let now = running.fetch_add(1, SeqCst) + 1;
                                most.fetch_max(now, SeqCst);
                                assert_eq!(thread_name(), THREAD_NAME);
                                let out = input[0] * 1000 + input[1];
                                running.fetch_sub(1, SeqCst);
                                out
                            })
                        })
                        .sum::<u64>()
                })
            })
            .collect();
        for (i, job) in jobs.into_iter().enumerate() {
            let i = i as u64;
            assert_eq!(job.join().unwrap(), 5 * i * 1000 + 10);
        }
        let most = most.load(SeqCst);
        assert!((1..=3).contains(&most), "{most} calls ran at once in a pool of 3");
        assert!(pool.threads() <= 3, "{} helper threads", pool.threads());
    }

    /// On one worker, a coroutine whose offloaded call waits for a second coroutine of the
    /// same worker finishes: the worker ran the second one while the first was parked. If
    /// `run` blocked the worker thread, this would deadlock (the watchdog fails it).
    #[test]
    fn the_worker_runs_other_coroutines_meanwhile() {
        let rt = rt(1);
        let (tx, rx) = mpsc::channel::<u32>();
        let waiting = rt.blocking(move || run(move || rx.recv_timeout(WATCHDOG).ok()));
        let sender = rt.blocking(move || tx.send(42).unwrap());
        assert_eq!(waiting.join().unwrap(), Some(42), "the worker was blocked by the offloaded call");
        sender.join().unwrap();
    }

    /// With a single helper busy, a second call waits in the queue, and runs once the
    /// helper is free.
    #[test]
    fn calls_queue_when_every_helper_is_busy() {
        let pool = pool(1, KEEP_ALIVE);
        let rt = rt(2);
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let first = rt.blocking(move || {
            pool.run(move || {
                started_tx.send(()).unwrap();
                wait.recv_timeout(WATCHDOG).is_ok()
            })
        });
        started.recv_timeout(WATCHDOG).unwrap(); // the only helper is now held
        let second = rt.blocking(move || pool.run(|| 7));
        let start = Instant::now();
        while pool.lock().queue.len() != 1 {
            assert!(start.elapsed() < WATCHDOG, "the second call was not queued");
            thread::sleep(Duration::from_millis(1));
        }
        assert!(!second.is_finished());
        release.send(()).unwrap();
        assert!(first.join().unwrap());
        assert_eq!(second.join().unwrap(), 7);
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn a_panic_in_the_call_resumes_in_the_caller_and_the_pool_survives() {
        let pool = pool(1, KEEP_ALIVE);
        let rt = rt(1);
        let err = rt.blocking(move || pool.run(|| panic::panic_any(31u32))).join().unwrap_err();
        assert!(err.is_panic());
        assert_eq!(*err.into_panic().downcast::<u32>().unwrap(), 31);
        assert_eq!(rt.blocking(move || pool.run(|| 5)).join().unwrap(), 5);
    }

    #[test]
    fn errno_goes_to_the_helper_and_comes_back() {
        let rt = rt(1);
        let (seen, after) = rt
            .blocking(|| {
                sys::set_errno(1234);
                let seen = run_with_errno(|| {
                    let seen = sys::errno();
                    sys::set_errno(libc::ETIMEDOUT);
                    seen
                });
                (seen, sys::errno())
            })
            .join()
            .unwrap();
        assert_eq!((seen, after), (1234, libc::ETIMEDOUT));
        sys::set_errno(99);
        assert_eq!(run_with_errno(sys::errno), 99);
    }

    /// When no helper thread can be started, the call runs on the caller's thread instead of
    /// waiting forever.
    #[test]
    fn a_call_runs_inline_when_no_helper_can_start() {
        let pool = pool(2, KEEP_ALIVE);
        pool.fail_starts.store(true, Relaxed);
        let rt = rt(1);
        let jobs: Vec<_> = (0..10).map(|i| rt.blocking(move || (pool.run(thread_name), pool.run(move || i)))).collect();
        for (i, job) in jobs.into_iter().enumerate() {
            let (name, value) = job.join().unwrap();
            assert!(name.starts_with("offload-test"), "{name}");
            assert_eq!(value, i);
        }
        assert_eq!(pool.threads(), 0);
    }

    /// Idle helpers exit after the keep-alive, and the pool starts new ones when needed.
    #[test]
    fn idle_helpers_exit_and_come_back() {
        let pool = pool(4, Duration::from_millis(20));
        let rt = rt(1);
        let jobs: Vec<_> = (0..8).map(|i| rt.blocking(move || pool.run(move || i))).collect();
        for (i, job) in jobs.into_iter().enumerate() {
            assert_eq!(job.join().unwrap(), i);
        }
        let start = Instant::now();
        while pool.threads() > 0 {
            assert!(start.elapsed() < WATCHDOG, "idle helpers did not exit");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rt.blocking(move || pool.run(thread_name)).join().unwrap(), THREAD_NAME);
    }
}
