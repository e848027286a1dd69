//! The single-thread [`Scheduler`]: coroutines run by the thread that created it, when that
//! thread asks.
//!
//! A `Scheduler` is a runtime of one worker with no worker thread: a [`Shared`] with
//! `workers = 1`, no monitor (`time_slice: None`, there is no thread to hand work to), and the
//! one [`Worker`] kept inside the `Scheduler` and driven by its owner. Jobs are queued on the
//! runtime's inject queue and start only inside [`try_schedule`](Scheduler::try_schedule) or
//! [`try_timeout_schedule`](Scheduler::try_timeout_schedule), which run the worker's loop
//! (`take_wakeups` / `run_next`, and for the latter `epoll_wait` until the next timer, IO
//! event or wake-up) on the calling thread. The coroutines are ordinary openco coroutines
//! with a `Context`: the hooks suspend them exactly as on a `Runtime`.
//!
//! Invariants:
//! 1. The worker is driven only on the thread that created it (`Scheduler` is `!Send`), and
//!    never inside a coroutine: coroutines do not nest (`coroutine` invariant 1).
//! 2. Between two drives nothing runs: a wake-up from another thread waits in the worker's
//!    mailbox (and its eventfd stays readable) until the next drive takes it.
//! 3. Dropping the `Scheduler` never resumes or unwinds a coroutine (`coroutine` invariant 3):
//!    queued jobs are cancelled, started ones abandoned (their stacks leaked, their handles
//!    cancelled), as a `Runtime` does when its shutdown timeout passes.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::Worker;
use super::{Config, Shared, ABANDON};
use crate::coroutine::{overflow, stack::StackPool};
use crate::io::registry;
use crate::runtime::{DEFAULT_STACK_SIZE, MIN_STACK_SIZE};
use crate::task::{self, JoinHandle, Priority, Runnable};

/// A single-thread coroutine scheduler, driven by the thread that created it.
///
/// [`submit`](Scheduler::submit) queues a closure to run on a coroutine; nothing runs until
/// the owner calls [`try_schedule`](Scheduler::try_schedule) (run what is ready, never wait)
/// or [`try_timeout_schedule`](Scheduler::try_timeout_schedule) (run and wait, up to a
/// duration, for sleeping and waiting coroutines). Inside the coroutines blocking calls
/// (`thread::sleep`, sockets, locks, channels...) suspend the coroutine as on a
/// [`Runtime`](crate::Runtime); the thread runs the others meanwhile. Results come back
/// through the same [`JoinHandle`] as the runtime's.
///
/// ```
/// use std::time::Duration;
/// let scheduler = openco_runtime::Scheduler::new()?;
/// let a = scheduler.submit(|| { std::thread::sleep(Duration::from_millis(20)); "slept" }, None);
/// let b = scheduler.submit(|| 1 + 1, None);
/// assert_eq!(scheduler.try_schedule()?, 1); // `b` ran; `a` sleeps
/// assert_eq!(scheduler.try_timeout_schedule(Duration::from_secs(10))?, 0);
/// assert_eq!(a.join().unwrap(), "slept");
/// assert_eq!(b.join().unwrap(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Its coroutines live on the thread that created it, so it is neither `Send` nor `Sync`:
///
/// ```compile_fail
/// let scheduler = openco_runtime::Scheduler::new().unwrap();
/// std::thread::spawn(move || scheduler.try_schedule());
/// ```
///
/// Dropping it with work left runs nothing more: queued jobs are cancelled, and coroutines
/// that started and have not ended are abandoned, not unwound (they are suspended inside
/// blocking calls, which cannot be unwound): their handles report
/// [`JoinError::is_cancelled`](crate::JoinError::is_cancelled), their stacks are leaked and
/// their destructors do not run, as with a [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout)
/// that passes.
///
/// The thread's own `thread::park` token is shared with coroutines waiting in
/// `thread::park` (std's channels, for one): if the thread parks itself between two drives,
/// it may take a token meant for one of them, which then sees it at most 100 ms later.
/// Waiting on one of its own jobs between two drives (`join()`) never returns: nothing runs
/// them meanwhile.
pub struct Scheduler {
    worker: RefCell<Worker>,
    shared: Arc<Shared>,
    /// The worker's process-wide id in the fd-close registry.
    id: usize,
    /// Jobs submitted and not yet seen finished, for [`pending`](Scheduler::pending).
    submitted: RefCell<Vec<Arc<dyn Runnable>>>,
    /// Not `Send`, not `Sync` (the worker's coroutines make it so already; this says it).
    _thread_bound: PhantomData<*const ()>,
}

impl Scheduler {
    /// A scheduler for the calling thread, with coroutine stacks of
    /// [`DEFAULT_STACK_SIZE`] unless a job asks for another size.
    ///
    /// Fails if the kernel refuses the scheduler's epoll instance or eventfd.
    ///
    /// ```
    /// let scheduler = openco_runtime::Scheduler::new()?;
    /// assert_eq!(scheduler.pending(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Scheduler> {
        overflow::install();
        // The overflow handler needs an alternate signal stack on this thread. std gives one
        // to the threads it starts; one made here lives as long as the thread (leaked: a later
        // scheduler on this thread may rely on it).
        std::mem::forget(overflow::ensure_altstack()?);
        let env = crate::env::read()?;
        let config = Config {
            workers: 1,
            thread_name: "openco-scheduler".into(),
            time_slice: None,
            max_threads: 1,
            keep_alive: Duration::ZERO,
            io_uring: env.io_uring.unwrap_or(true),
            inline_file_calls: env.inline_file_calls.unwrap_or(true),
        };
        let shared = Arc::new(Shared::new(config, StackPool::new(DEFAULT_STACK_SIZE, None))?);
        let (worker, id) = Worker::new_local(shared.clone())?;
        Ok(Scheduler {
            worker: RefCell::new(worker),
            shared,
            id,
            submitted: RefCell::new(Vec::new()),
            _thread_bound: PhantomData,
        })
    }

    /// Queues `f` to run on a coroutine of this scheduler; nothing runs until the next
    /// [`try_schedule`](Scheduler::try_schedule) or
    /// [`try_timeout_schedule`](Scheduler::try_timeout_schedule).
    ///
    /// `stack_size`: `None` takes a pooled stack of
    /// [`DEFAULT_STACK_SIZE`]; `Some(n)` gives the job a stack of
    /// its own of at least `n` usable bytes: `n` is rounded up to
    /// [`MIN_STACK_SIZE`] and to whole pages. Such a stack is mapped
    /// when the job starts and unmapped when it ends (if it cannot be mapped, the job is
    /// cancelled). `f` is `Send` as for [`Runtime::blocking`](crate::Runtime::blocking),
    /// so that the handle can be awaited anywhere.
    ///
    /// # Panics
    /// If `n` rounded up to whole pages overflows `usize`.
    ///
    /// ```
    /// let scheduler = openco_runtime::Scheduler::new()?;
    /// let deep = scheduler.submit(
    ///     || {
    ///         fn depth(n: u32) -> u32 {
    ///             let pad = std::hint::black_box([0u8; 1024]);
    ///             if n == 0 { pad[0] as u32 } else { 1 + depth(n - 1) }
    ///         }
    ///         depth(500) // ~500 KiB of stack
    ///     },
    ///     Some(4 * 1024 * 1024),
    /// );
    /// scheduler.try_schedule()?;
    /// assert_eq!(deep.join().unwrap(), 500);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn submit<F, T>(&self, f: F, stack_size: Option<usize>) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let page = crate::sys::page_size();
        let stack_size = stack_size.map(|n| {
            n.max(MIN_STACK_SIZE)
                .checked_next_multiple_of(page)
                .unwrap_or_else(|| panic!("openco: Scheduler::submit: stack_size({n}) is too large"))
        });
        let (job, handle) = task::new_sized(f, Priority::DEFAULT, stack_size);
        self.submitted.borrow_mut().push(job.runnable().clone());
        self.shared.submit(job);
        handle
    }

    /// Runs, on the calling thread, every coroutine and job that is ready, again and again,
    /// until none is ready right now. It does not wait for coroutines that sleep or wait for
    /// IO, a lock or a wake-up: they run at a later call, once ready. (A coroutine that
    /// yields in a loop is always ready, so the call returns once it ends.)
    ///
    /// Returns [`pending`](Scheduler::pending): the submitted jobs not finished yet.
    ///
    /// # Errors
    /// `WouldBlock` when called inside a coroutine (openco's or this scheduler's own: the
    /// coroutines of a thread do not nest).
    ///
    /// ```
    /// use std::time::Duration;
    /// let scheduler = openco_runtime::Scheduler::new()?;
    /// let here = std::thread::current().id();
    /// let job = scheduler.submit(move || std::thread::current().id() == here, None);
    /// let sleeper = scheduler.submit(|| std::thread::sleep(Duration::from_millis(50)), None);
    /// assert_eq!(scheduler.try_schedule()?, 1); // returns at once: only the sleeper is left
    /// assert!(job.join().unwrap());
    /// assert!(!sleeper.is_finished());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_schedule(&self) -> io::Result<usize> {
        self.worker()?.run_ready();
        Ok(self.pending())
    }

    /// Runs the coroutines and jobs that are ready, and waits for the others (sleeping,
    /// waiting for IO or for a wake-up from another thread) in the worker's `epoll_wait`, not
    /// a busy loop, until every coroutine and job has ended (those they submitted themselves
    /// included) or `timeout` has passed.
    ///
    /// Returns [`pending`](Scheduler::pending): 0 when every submitted job has finished.
    ///
    /// # Errors
    /// As [`try_schedule`](Scheduler::try_schedule).
    ///
    /// ```
    /// use std::time::Duration;
    /// let scheduler = openco_runtime::Scheduler::new()?;
    /// let naps: Vec<_> = [30, 10, 20]
    ///     .into_iter()
    ///     .map(|ms| scheduler.submit(move || std::thread::sleep(Duration::from_millis(ms)), None))
    ///     .collect();
    /// let started = std::time::Instant::now();
    /// assert_eq!(scheduler.try_timeout_schedule(Duration::from_secs(10))?, 0);
    /// assert!(naps.iter().all(|h| h.is_finished()));
    /// assert!(started.elapsed() < Duration::from_secs(5)); // the naps overlapped
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_timeout_schedule(&self, timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now().checked_add(timeout);
        self.worker()?.run_until(deadline);
        Ok(self.pending())
    }

    /// How many jobs submitted through [`submit`](Scheduler::submit) have not finished
    /// (completed, panicked or been cancelled) yet.
    ///
    /// ```
    /// let scheduler = openco_runtime::Scheduler::new()?;
    /// let job = scheduler.submit(|| (), None);
    /// assert_eq!(scheduler.pending(), 1);
    /// scheduler.try_schedule()?;
    /// assert_eq!(scheduler.pending(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pending(&self) -> usize {
        let mut submitted = self.submitted.borrow_mut();
        submitted.retain(|job| !job.header().is_finished());
        submitted.len()
    }

    fn worker(&self) -> io::Result<std::cell::RefMut<'_, Worker>> {
        let nested = || io::Error::new(io::ErrorKind::WouldBlock, "openco: a Scheduler cannot run inside a coroutine");
        if crate::coroutine::current().is_some() || super::current_worker_shared().is_some() {
            return Err(nested());
        }
        self.worker.try_borrow_mut().map_err(|_| nested())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // No drive is running (it would borrow `self`), so no coroutine runs: give them up.
        self.shared.set_state(ABANDON);
        self.worker.get_mut().abandon_local();
        registry::unregister_worker(self.id);
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler").field("pending", &self.pending()).finish_non_exhaustive()
    }
}
