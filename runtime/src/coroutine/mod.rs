//! Coroutines: the context a running coroutine publishes, and how it suspends.
//!
//! Each job runs on a `corosensei` coroutine with a pooled [`stack`]. While a coroutine runs,
//! the thread-local `CURRENT` points at its [`Context`] (on the coroutine's own stack); the
//! hooks read it to decide between "suspend this coroutine" and "call libc". Outside a
//! coroutine it is null, so a hooked call costs one thread-local load before the real call.
//!
//! Invariants:
//! 1. `CURRENT` is non-null exactly while user code of a coroutine runs: it is cleared before
//!    the coroutine suspends or returns, so scheduler code never sees it set.
//! 2. A coroutine that has started never leaves the OS thread it started on (see
//!    `scheduler`): thread-locals cached across a suspension stay valid.
//! 3. A suspended coroutine is never unwound: unwinding would cross the `extern "C"` hook
//!    frames it is suspended in. At shutdown, coroutines that do not finish are abandoned.
//! 4. `errno` belongs to the coroutine: it is saved before a suspension and restored after.

pub(crate) mod grow;
pub(crate) mod overflow;
pub(crate) mod stack;

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use corosensei::Yielder;

use crate::scheduler::{Shared, WakeTarget};
use crate::sys;

/// What a coroutine asks of its worker when it suspends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Suspend {
    /// Resume when woken through the coroutine's waker, or at the deadline.
    Park(Option<Instant>),
    /// Resume after the other ready coroutines and jobs of the same priority.
    Yield,
    /// Resume when one of the fds is ready, when the deadline passes, or when one of them is
    /// closed (see `io`). The list (and `call`, null for multi-fd waits) lives on the
    /// suspended coroutine's stack.
    Io { interests: *const Interest, len: usize, deadline: Option<Instant>, call: *mut crate::io::CallState },
    /// Queue the entry on the worker's io_uring ring and resume when `op` completes (see
    /// `io::uring`). Both live on the suspended coroutine's stack.
    Uring { entry: *const io_uring::squeue::Entry, op: *const crate::io::uring::Op },
}

/// One fd and the `EPOLL*` events a suspended coroutine waits for on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Interest {
    pub(crate) fd: i32,
    pub(crate) events: u32,
}

/// The value a coroutine is resumed with: 0, or the errno of a failed `Suspend::Io`
/// registration (the coroutine is then resumed at once).
pub(crate) type Resume = i32;

pub(crate) type Co = corosensei::Coroutine<Resume, Suspend, (), stack::Stack>;
pub(crate) type CoYielder = Yielder<Resume, Suspend>;

/// What the running coroutine publishes about itself.
pub(crate) struct Context {
    pub(crate) yielder: *const CoYielder,
    pub(crate) shared: Arc<Shared>,
    pub(crate) target: WakeTarget,
    /// Hooked calls left before the coroutine yields even though none had to wait.
    pub(crate) budget: Cell<u32>,
    /// Returned from a wait in `thread::park` (see `hook::futex`): its next one returns at once.
    pub(crate) parker_woken: Cell<bool>,
    /// The re-check interval of its next `thread::park` wait, in ms (0: the first).
    pub(crate) parker_recheck: Cell<u32>,
    /// pthread mutexes and rwlocks it holds (see `hook::lock`): while any is held it never
    /// suspends.
    pub(crate) locks_held: Cell<u32>,
}

/// How many hooked calls that completed without waiting a coroutine makes before it yields
/// to the other coroutines of its worker (tokio's cooperative budget is 128 too): a
/// coroutine reading a socket that is always ready must not starve them.
pub(crate) const BUDGET: u32 = 128;

/// Counts one hooked call that completed without suspending; yields when the budget is spent.
pub(crate) fn consume_budget(ctx: &Context) {
    let left = ctx.budget.get();
    if left > 1 {
        ctx.budget.set(left - 1);
    } else {
        suspend(ctx, Suspend::Yield);
    }
}

thread_local! {
    static CURRENT: Cell<*const Context> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` as the body of a coroutine: publishes `ctx` while `f` runs (invariant 1).
pub(crate) fn enter<R>(ctx: &Context, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(std::ptr::null()));
        }
    }
    CURRENT.with(|c| c.set(ctx));
    let _reset = Reset;
    f()
}

/// The context of the coroutine running on this thread, if it may suspend: `None` outside
/// a coroutine, in a panicking one, and in one that holds a pthread lock (`hook::lock`).
/// Every hook asks this first, and behaves as libc's function when it says `None`.
#[inline]
pub(crate) fn current() -> Option<&'static Context> {
    // A panicking coroutine is treated as plain code: it must not suspend, because the panic
    // count is per thread and a second coroutine panicking meanwhile would abort the process.
    running().filter(|ctx| ctx.locks_held.get() == 0 && !std::thread::panicking())
}

/// The context of the coroutine running on this thread, if any, whether or not it may
/// suspend (it holds locks, or it is panicking: a lock taken before a panic is released by
/// the unwinding and must be counted off).
#[inline]
pub(crate) fn running() -> Option<&'static Context> {
    let ptr = CURRENT.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    // SAFETY: a non-null `CURRENT` points at the `Context` on the stack of the coroutine that
    // is running right now (invariant 1); the reference is used before it suspends.
    unsafe { ptr.as_ref() }
}

/// Whether the calling code runs inside an openco coroutine (one that may suspend: while a
/// coroutine holds a pthread mutex or rwlock it runs as plain thread code, and this is false).
///
/// ```
/// assert!(!openco_runtime::in_coroutine());
/// let rt = openco_runtime::Builder::new().workers(1).build().unwrap();
/// assert!(rt.blocking(openco_runtime::in_coroutine).join().unwrap());
/// ```
#[inline]
pub fn in_coroutine() -> bool {
    current().is_some()
}

/// Suspends the current coroutine with `request`. Returns the value the worker resumes it
/// with.
pub(crate) fn suspend(ctx: &Context, request: Suspend) -> Resume {
    let saved_errno = sys::errno();
    let ptr: *const Context = ctx;
    // The worker publishes the coroutine's own stack guard when it resumes it; a coroutine
    // suspended on a `maybe_grow` segment must get the segment's back.
    let guard = overflow::running_guard();
    CURRENT.with(|c| c.set(std::ptr::null()));
    // SAFETY: `yielder` belongs to the coroutine running on this thread (we are in it).
    let resumed = unsafe { (*ctx.yielder).suspend(request) };
    overflow::set_running_guard(guard);
    ctx.budget.set(BUDGET);
    CURRENT.with(|c| c.set(ptr));
    sys::set_errno(saved_errno);
    resumed
}

/// Suspends the current coroutine until its [`waker`] is woken or `deadline` passes.
/// Like `thread::park`, it may return spuriously: callers re-check their condition.
///
/// Outside a coroutine it parks the thread (`thread::park` / `park_timeout`).
pub fn park(deadline: Option<Instant>) {
    match current() {
        Some(ctx) => {
            suspend(ctx, Suspend::Park(deadline));
        }
        None => match deadline {
            None => thread::park(),
            Some(d) => thread::park_timeout(d.saturating_duration_since(Instant::now())),
        },
    }
}

/// Lets the other ready coroutines of this worker run; outside a coroutine,
/// `std::thread::yield_now`.
pub fn yield_now() {
    match current() {
        Some(ctx) => {
            suspend(ctx, Suspend::Yield);
        }
        None => thread::yield_now(),
    }
}

/// A waker that resumes the current coroutine (or unparks the current thread outside one).
pub fn waker() -> Waker {
    match current() {
        Some(ctx) => Waker::from(Arc::new(crate::scheduler::CoroutineWaker::new(&ctx.shared, ctx.target))),
        None => Waker::from(Arc::new(ThreadWaker { thread: thread::current() })),
    }
}

struct ThreadWaker {
    thread: Thread,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.thread.unpark();
    }
}

/// Polls `fut` to completion, suspending the coroutine (or parking the thread) while it is
/// pending. Returns `None` if `deadline` passes first.
pub fn block_on_until<F: Future>(fut: F, deadline: Option<Instant>) -> Option<F::Output> {
    let waker = waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        park(deadline);
    }
}
