//! tokio glue for openco: [`spawn_blocking`], a drop-in for `tokio::task::spawn_blocking` that
//! runs the closure on an openco coroutine.
//!
//! Switching is one `use` line: `use openco_tokio::spawn_blocking;`. The handle is an
//! [`openco::JoinHandle`], a `Future<Output = Result<T, JoinError>> + Send + Unpin` like
//! tokio's; its [`JoinError`] has `is_panic`, `into_panic` and `is_cancelled`, and converts into
//! `io::Error`, so `spawn_blocking(f).await?` keeps working in functions returning
//! `io::Result` (or `anyhow::Result`).
//!
//! # The tokio context inside a job
//!
//! Several coroutines take turns on one openco worker thread, and tokio keeps its context in
//! thread-locals. Entering a runtime from inside a job (`handle.enter()`) would leak that
//! context to the other coroutines of the worker at the job's first suspension, and their
//! guards would be dropped out of order (tokio panics). So [`spawn_blocking`] captures
//! `tokio::runtime::Handle::try_current()` when it is called and gives the job a
//! [`TokioScope`] (an [`openco::Scope`]): the worker enters that runtime each time it resumes
//! the job's coroutine and leaves it each time the coroutine suspends. Inside the job,
//! `Handle::current()`, `tokio::spawn`, `tokio::task::spawn_blocking` and the creation of
//! tokio timers and sockets work as in a `spawn_blocking` closure, and each job sees its own
//! runtime even when jobs of several runtimes share a worker. Called outside any tokio
//! runtime, [`spawn_blocking`] runs the job with no tokio context, where tokio's would panic.
//!
//! # Awaiting tokio futures from a job
//!
//! Use [`block_on`] (the same as [`openco::block_on`]): it suspends the coroutine, not the
//! worker thread, while the future is pending, so a hundred jobs on one worker can each wait
//! on a `tokio::time::sleep`, a `tokio::net::TcpStream`, or a `tokio::sync` channel at once.
//! Timers and sockets are driven by the tokio runtime's own threads (or, on a current-thread
//! runtime, by the thread inside `Runtime::block_on`, typically the one awaiting the job).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use openco_tokio::{block_on, spawn_blocking};
//! use std::time::Duration;
//!
//! let n = spawn_blocking(|| {
//!     std::thread::sleep(Duration::from_millis(5)); // legacy blocking code: suspends
//!     let (tx, rx) = tokio::sync::oneshot::channel();
//!     tokio::spawn(async move { tx.send(40).unwrap() }); // tokio's context is there
//!     block_on(async {
//!         tokio::time::sleep(Duration::from_millis(5)).await;
//!         rx.await.unwrap() + 2
//!     })
//! })
//! .await?;
//! assert_eq!(n, 42);
//! # Ok(())
//! # }
//! ```
//!
//! # Blocking on tokio inside a job: use [`block_on`]
//!
//! Legacy code often wraps an async client in a synchronous function with
//! `Handle::current().block_on(async { client.get().await })`, or waits on a channel with
//! `rx.blocking_recv()`. Inside a job started by [`spawn_blocking`] these **panic at once**
//! with tokio's own message ("Cannot start a runtime from within a runtime", "Cannot block
//! the current thread from within a runtime"): awaiting the handle gives a [`JoinError`] for
//! which `is_panic()` holds. Replace them with [`block_on`]`(fut)` /
//! `block_on(rx.recv())`, which suspend only the coroutine. The same goes for
//! `Runtime::block_on` of a runtime made inside the job, and for dropping a tokio `Runtime`
//! there.
//!
//! Why: tokio's `block_on` and `blocking_*` calls wait on a per-thread parker (a `Condvar`)
//! and mark the thread "inside a runtime", both in thread-locals shared by every coroutine
//! of the worker. openco turns the `Condvar` wait into a suspension of the coroutine, and
//! then, measured with tokio 1.54:
//! - a `Handle::block_on` that suspends leaves its runtime context pushed on top of the job's
//!   scope; the worker cannot leave the scope in order, tokio panics ("`EnterGuard` values
//!   dropped out of order") on the worker thread, and the process aborts;
//! - two `blocking_recv` calls waiting at once on one worker share the parker: the second
//!   panics with "inconsistent park state".
//!
//! A job that worked while alone would fail under load. So [`TokioScope`] marks the thread
//! "inside a runtime" while the job runs (it runs the coroutine from inside
//! `Handle::block_on` of an immediately ready future, as a tokio worker thread runs tasks),
//! and tokio refuses these calls up front, deterministically. Two ways around the mark remain
//! and must be avoided inside jobs: `tokio::task::block_in_place(|| handle.block_on(..))`
//! (`block_in_place` lifts the mark; the abort above follows) and calling
//! `Handle::block_on` from a job submitted without a scope (`openco::blocking`). The latter
//! works for one such job at a time per worker; a second one waiting at once panics with
//! "Cannot start a runtime from within a runtime", and meanwhile scoped jobs of that worker
//! fall back to entering their runtime without the mark (the fallback panic's message is
//! printed once per resume). The tests of this crate (`tests/legacy.rs`) pin these
//! behaviours down.
//!
//! # Your own openco runtime
//!
//! [`spawn_blocking`] uses openco's global runtime; [`spawn_blocking_on`] takes the
//! [`openco::Handle`] of a runtime you built (fewer workers, other stack sizes...).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Poll;

pub use openco::{JoinError, JoinHandle};

/// Runs `f` on a coroutine of openco's global runtime; a drop-in for
/// `tokio::task::spawn_blocking`.
///
/// If called inside a tokio runtime, the job runs with that runtime's context (see
/// [`TokioScope`]). Awaiting the handle gives the closure's value, or a [`JoinError`] if it
/// panicked. Dropping the handle detaches the job, as with tokio.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use openco_tokio::spawn_blocking;
///
/// let same = spawn_blocking(|| tokio::runtime::Handle::current().id()).await.unwrap();
/// assert_eq!(same, tokio::runtime::Handle::current().id());
///
/// let err = spawn_blocking(|| panic!("boom")).await.unwrap_err();
/// assert!(err.is_panic());
/// # }
/// ```
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    spawn_blocking_on(openco::runtime().handle(), f)
}

/// Like [`spawn_blocking`], on the openco runtime `rt` instead of the global one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let rt = openco::Builder::new().workers(1).build()?;
/// let v = openco_tokio::spawn_blocking_on(rt.handle(), || {
///     openco_tokio::block_on(async { tokio::task::yield_now().await; 7 })
/// })
/// .await?;
/// assert_eq!(v, 7);
/// # Ok(())
/// # }
/// ```
pub fn spawn_blocking_on<F, R>(rt: &openco::Handle, f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => rt.blocking_scoped(Arc::new(TokioScope::new(handle)), openco::Priority::DEFAULT, f),
        Err(_) => rt.blocking(f),
    }
}

/// Runs `fut` to completion from synchronous code: inside an openco job it suspends the
/// coroutine (not its worker thread) while the future is pending. The same as
/// [`openco::block_on`], re-exported here as the replacement for
/// `tokio::runtime::Handle::block_on` inside jobs (see the crate docs for why).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let v = openco_tokio::spawn_blocking(|| {
///     openco_tokio::block_on(async {
///         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
///         1
///     })
/// });
/// assert_eq!(v.await.unwrap(), 1);
/// # }
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    openco::block_on(fut)
}

/// An [`openco::Scope`] that enters a tokio runtime around each run of a job's coroutine, so
/// that `tokio::runtime::Handle::current()` inside the job returns that runtime, and only in
/// that job. While the job runs, the thread is marked "inside a runtime", as a tokio worker
/// thread is: tokio's blocking calls (`Handle::block_on`, `blocking_recv`) then panic at once
/// instead of misbehaving (see the crate docs).
///
/// [`spawn_blocking`] makes one for you; build one yourself to give a job a runtime other than
/// the caller's, with [`openco::Handle::blocking_scoped`]:
///
/// ```
/// use std::sync::Arc;
/// let tokio_rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let scope = Arc::new(openco_tokio::TokioScope::new(tokio_rt.handle().clone()));
/// let job = openco::runtime().handle().blocking_scoped(scope, openco::Priority::DEFAULT, || {
///     tokio::runtime::Handle::current().id()
/// });
/// assert_eq!(job.join().unwrap(), tokio_rt.handle().id());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TokioScope {
    handle: tokio::runtime::Handle,
}

impl TokioScope {
    /// A scope entering `handle`'s runtime.
    pub fn new(handle: tokio::runtime::Handle) -> TokioScope {
        TokioScope { handle }
    }

    /// The runtime this scope enters.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl openco::Scope for TokioScope {
    fn scoped(&self, resume: &mut dyn FnMut()) {
        // `Handle::block_on` of a future that is ready at its first poll: it enters the
        // runtime as a tokio worker thread is entered (the current handle and the "inside a
        // runtime" mark), runs the coroutine until it suspends, and leaves both, in order,
        // when it returns. It never parks. See "Blocking on tokio inside a job".
        let mut resumed = false;
        let entered = panic::catch_unwind(AssertUnwindSafe(|| {
            self.handle.block_on(std::future::poll_fn(|_| {
                resumed = true;
                resume();
                Poll::Ready(())
            }))
        }));
        if let Err(payload) = entered {
            if resumed {
                // Not from tokio's entry check: `resume` does not panic, so this came from
                // leaving the runtime; nothing sensible is left to do here.
                panic::resume_unwind(payload);
            }
            // tokio refused to enter: the thread is already marked "inside a runtime", by an
            // unscoped job of this worker suspended inside its own `Handle::block_on`. Enter
            // the handle alone; it nests above that job's context and is left in order.
            let _guard = self.handle.enter();
            resume();
        }
    }
}

impl fmt::Debug for TokioScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioScope").field("runtime", &self.handle.id()).finish()
    }
}
