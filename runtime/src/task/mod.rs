//! Jobs and their handles.
//!
//! A job is one allocation, `Task<F, T>`: a [`Header`] (state, priority, the join waker), the
//! closure, and the slot its result goes to. The scheduler sees it as a [`Job`]
//! (`Arc<dyn Runnable>`), the user as a [`JoinHandle<T>`] (`Arc<dyn Joinable<T>>`).
//!
//! # States (`Header::state`)
//! ```text
//!   SCHEDULED --start()--> RUNNING --complete()--> COMPLETE
//!       |                     |
//!       +--abort()/shutdown---+--abandon() (shutdown timeout)--> CANCELLED
//! ```
//! Who may touch what:
//! 1. `func` is taken by the worker that won `SCHEDULED -> RUNNING` (and runs it), or by the
//!    worker that pops a job already `CANCELLED` (and drops it). Nobody else touches it.
//! 2. `output` is written once by the running coroutine while the state is `RUNNING`, before
//!    `complete()` publishes it with a `Release` store; it is read once by the `JoinHandle`,
//!    the only one left, after it has seen `COMPLETE` with an `Acquire` load.
//! 3. A `JoinHandle` that sees `CANCELLED` never reads `output`.

mod error;
mod join;

pub use error::JoinError;
pub use join::JoinHandle;

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering::*};
use std::sync::Arc;

use atomic_waker::AtomicWaker;

const SCHEDULED: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETE: u8 = 2;
const CANCELLED: u8 = 3;

/// A job's priority: smaller runs first. Ready coroutines and queued jobs are picked in
/// priority order on each worker; jobs of equal priority run in submission order.
///
/// ```
/// use openco_runtime::Priority;
/// assert!(Priority::HIGHEST < Priority::DEFAULT && Priority::DEFAULT < Priority::LOWEST);
/// assert_eq!(Priority::new(7).get(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// Runs before every other priority.
    pub const HIGHEST: Priority = Priority(0);
    /// The middle of the range, given to jobs that name no priority.
    pub const DEFAULT: Priority = Priority(128);
    /// Runs after every other priority.
    pub const LOWEST: Priority = Priority(255);

    /// A priority level; `0` is the highest.
    pub const fn new(level: u8) -> Priority {
        Priority(level)
    }

    /// The level, `0` being the highest.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl From<u8> for Priority {
    fn from(level: u8) -> Priority {
        Priority(level)
    }
}

impl Default for Priority {
    fn default() -> Priority {
        Priority::DEFAULT
    }
}

/// The part of a task every owner can see.
pub(crate) struct Header {
    state: AtomicU8,
    priority: Priority,
    waker: AtomicWaker,
    scope: Option<Arc<dyn Scope>>,
    /// Usable bytes of the stack this job wants, if not the runtime's pooled size (only the
    /// single-thread `Scheduler` sets it; page-rounded, at least `MIN_STACK_SIZE`).
    stack_size: Option<usize>,
}

impl Header {
    fn new(priority: Priority, scope: Option<Arc<dyn Scope>>) -> Header {
        Header { state: AtomicU8::new(SCHEDULED), priority, waker: AtomicWaker::new(), scope, stack_size: None }
    }

    pub(crate) fn stack_size(&self) -> Option<usize> {
        self.stack_size
    }

    pub(crate) fn priority(&self) -> Priority {
        self.priority
    }

    pub(crate) fn scope(&self) -> Option<&Arc<dyn Scope>> {
        self.scope.as_ref()
    }

    /// `SCHEDULED -> RUNNING`; false if the job was cancelled first.
    pub(crate) fn start(&self) -> bool {
        self.state.compare_exchange(SCHEDULED, RUNNING, AcqRel, Acquire).is_ok()
    }

    /// `SCHEDULED -> CANCELLED`; false if the job had started or ended.
    pub(crate) fn cancel(&self) -> bool {
        let cancelled = self.state.compare_exchange(SCHEDULED, CANCELLED, AcqRel, Acquire).is_ok();
        if cancelled {
            self.waker.wake();
        }
        cancelled
    }

    /// `RUNNING -> COMPLETE`, after the coroutine has written the output.
    pub(crate) fn complete(&self) {
        self.state.store(COMPLETE, Release);
        self.waker.wake();
    }

    /// `RUNNING -> CANCELLED`, for a coroutine the runtime gives up on at shutdown.
    pub(crate) fn abandon(&self) {
        if self.state.compare_exchange(RUNNING, CANCELLED, AcqRel, Acquire).is_ok() {
            self.waker.wake();
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state.load(Acquire), COMPLETE | CANCELLED)
    }
}

/// The scheduler's view of a job.
pub(crate) trait Runnable: Send + Sync {
    fn header(&self) -> &Header;
    /// Runs the closure and stores its result. Called inside the job's coroutine, once, by the
    /// worker that won `start()`.
    fn run(&self);
    /// Drops the closure of a job that was cancelled before it started.
    fn discard(&self);
}

/// A job that has not started, as queued by the scheduler.
pub(crate) struct Job(Arc<dyn Runnable>);

impl Job {
    pub(crate) fn header(&self) -> &Header {
        self.0.header()
    }
    pub(crate) fn runnable(&self) -> &Arc<dyn Runnable> {
        &self.0
    }
    /// Cancels a queued job (shutdown) and drops its closure.
    pub(crate) fn cancel(self) {
        if self.header().cancel() {
            self.0.discard();
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").field("priority", &self.header().priority).finish()
    }
}

/// The user's view of a job: its result.
pub(crate) trait Joinable<T>: Send + Sync {
    fn header(&self) -> &Header;
    /// # Safety
    /// Only after `Header::state` was seen `COMPLETE` with `Acquire`, by the one `JoinHandle`.
    unsafe fn take_output(&self) -> Option<Result<T, JoinError>>;
}

struct Task<F, T> {
    header: Header,
    func: UnsafeCell<Option<F>>,
    output: UnsafeCell<Option<Result<T, JoinError>>>,
}

// SAFETY: `func` and `output` are accessed under the protocol of the module docs (rules 1-3),
// which gives each access exclusive use; `F` and `T` move between threads, hence `Send`.
unsafe impl<F: Send, T: Send> Sync for Task<F, T> {}

impl<F, T> Runnable for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn header(&self) -> &Header {
        &self.header
    }

    fn run(&self) {
        // SAFETY: rule 1, this worker won `start()`.
        let func = unsafe { (*self.func.get()).take() };
        let Some(func) = func else { return };
        let result = panic::catch_unwind(AssertUnwindSafe(func)).map_err(JoinError::panic);
        // SAFETY: rule 2, written once while RUNNING; published by `complete()`.
        unsafe { *self.output.get() = Some(result) };
    }

    fn discard(&self) {
        // SAFETY: rule 1, the job was cancelled and this worker popped it.
        let func = unsafe { (*self.func.get()).take() };
        drop(func);
    }
}

impl<F, T> Joinable<T> for Task<F, T>
where
    F: Send,
    T: Send,
{
    fn header(&self) -> &Header {
        &self.header
    }

    unsafe fn take_output(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: rule 2, guaranteed by the caller.
        unsafe { (*self.output.get()).take() }
    }
}

/// Thread-local context a job needs while it runs, set around each of its runs on the worker
/// thread: the executor's runtime handle, a tracing span, anything a library keys by thread.
///
/// The coroutines of a worker share its thread-locals, so a context set from inside the job
/// (`tokio::runtime::Handle::enter`) would leak to the other coroutines at the job's first
/// suspension, and guards dropped out of order would panic. A `Scope` is entered by the
/// worker each time the job's coroutine is resumed and left each time it suspends, so each
/// job sees only its own context.
///
/// ```
/// use std::cell::Cell;
/// use std::sync::Arc;
/// thread_local!(static TENANT: Cell<u32> = const { Cell::new(0) });
///
/// struct Tenant(u32);
/// impl openco_runtime::Scope for Tenant {
///     fn scoped(&self, resume: &mut dyn FnMut()) {
///         let old = TENANT.replace(self.0);
///         resume();
///         TENANT.set(old);
///     }
/// }
///
/// let rt = openco_runtime::Builder::new().workers(1).build()?;
/// let job = rt.handle().blocking_scoped(Arc::new(Tenant(7)), openco_runtime::Priority::DEFAULT, || {
///     std::thread::sleep(std::time::Duration::from_millis(1)); // suspends: the scope is left
///     TENANT.get()
/// });
/// assert_eq!(job.join().unwrap(), 7);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Scope: Send + Sync + 'static {
    /// Sets the context, calls `resume` exactly once (it runs the job until its next
    /// suspension or its end), then restores the context. `resume` does not panic: a
    /// panicking job is caught inside it.
    fn scoped(&self, resume: &mut dyn FnMut());
}

/// Makes a job and the handle to its result.
pub(crate) fn new<F, T>(func: F, priority: Priority, scope: Option<Arc<dyn Scope>>) -> (Job, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let task = Arc::new(Task {
        header: Header::new(priority, scope),
        func: UnsafeCell::new(Some(func)),
        output: UnsafeCell::new(None),
    });
    (Job(task.clone()), JoinHandle::new(task))
}

/// Like [`new`], for a job that runs on a stack of its own of `stack_size` usable bytes
/// (already validated and page-rounded by the caller).
pub(crate) fn new_sized<F, T>(func: F, priority: Priority, stack_size: Option<usize>) -> (Job, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let task = Arc::new(Task {
        header: Header { stack_size, ..Header::new(priority, None) },
        func: UnsafeCell::new(Some(func)),
        output: UnsafeCell::new(None),
    });
    (Job(task.clone()), JoinHandle::new(task))
}

pub(crate) type Payload = Box<dyn Any + Send + 'static>;
