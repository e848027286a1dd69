//! Run blocking code on stackful coroutines instead of a thread pool.
//!
//! [`blocking`] has the signature of `tokio::task::spawn_blocking`: it runs a closure and
//! returns a [`JoinHandle`] that is a `Future` (await it from tokio, smol, async-std or
//! `futures`) and can also be joined synchronously. The closure runs on a coroutine of a
//! small pool of worker threads; the blocking calls it makes that openco hooks (the sleep
//! family so far) suspend the coroutine instead of the thread. Ten thousand sleeping jobs
//! need a handful of threads, not ten thousand.
//!
//! Outside openco's coroutines the hooked functions behave exactly as libc's.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! let jobs: Vec<_> = (0..1000)
//!     .map(|i| openco::blocking(move || {
//!         std::thread::sleep(Duration::from_millis(20)); // legacy blocking code
//!         i
//!     }))
//!     .collect();
//! let mut sum = 0;
//! for job in jobs {
//!     sum += job.await.unwrap();
//! }
//! assert_eq!(sum, 999 * 1000 / 2);
//! # }
//! ```
//!
//! The first call to [`blocking`] starts a global runtime with one worker per CPU; build your
//! own with [`Builder`] for other settings.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::sync::OnceLock;

pub use openco_runtime::{
    in_coroutine, io_uring_available, maybe_grow, yield_now, Builder, Handle, JoinError, JoinHandle, Priority, Runtime,
    Scheduler, Scope, DEFAULT_MAX_THREADS, DEFAULT_STACK_SIZE, DEFAULT_TIME_SLICE, MIN_STACK_SIZE,
};

mod macros;
#[doc(hidden)]
pub use macros::__private;
pub use macros::{DEFAULT_RED_ZONE, DEFAULT_SEGMENT_SIZE};

/// Each bad option is a compile error that points at it:
///
/// ```compile_fail
/// #[openco::main(threads = 2)] // unknown option
/// fn main() {}
/// ```
///
/// ```compile_fail
/// #[openco::main(workers = "2")] // not an integer literal
/// fn main() {}
/// ```
///
/// ```compile_fail
/// #[openco::main(workers = 2.5)] // not an integer literal
/// fn main() {}
/// ```
///
/// ```compile_fail
/// #[openco::main(workers = 0)] // no worker
/// fn main() {}
/// ```
///
/// ```compile_fail
/// #[openco::main(workers = 2, workers = 3)] // given twice
/// fn main() {}
/// ```
///
/// ```compile_fail,E0080
/// #[openco::main(stack_size = 4096)] // below openco::MIN_STACK_SIZE
/// fn main() {}
/// ```
///
/// The function checks apply to any function the attribute is put on (rustc has its own
/// for `main`, so these use another name):
///
/// ```compile_fail
/// #[openco::main]
/// async fn run() {} // the body already runs in a coroutine
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// #[openco::main]
/// fn run(_args: Vec<String>) {} // arguments
/// # fn main() {}
/// ```
///
/// The same item without a bad option compiles and runs:
///
/// ```
/// #[openco::main(workers = 2, stack_size = 65536)]
/// fn main() {}
/// ```
pub use openco_macros::main;

/// The global runtime, started on first use with [`Builder::new`]'s defaults (which read
/// `OPENCO_WORKERS` and `OPENCO_STACK_SIZE`).
///
/// # Panics
/// If it cannot start (an invalid `OPENCO_*` variable, no threads to be had); the message
/// says why.
pub fn runtime() -> &'static Runtime {
    static DEFAULT: OnceLock<Runtime> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        Builder::new().build().unwrap_or_else(|e| panic!("openco: cannot start the default runtime: {e}"))
    })
}

/// Runs `f` on a coroutine of the global runtime, at [`Priority::DEFAULT`]; a drop-in for
/// `tokio::task::spawn_blocking`.
///
/// Called inside a coroutine of another runtime, the job still goes to the global one; use
/// [`Handle::current`] to stay on the caller's runtime.
///
/// ```
/// let handle = openco::blocking(|| "done");
/// assert_eq!(futures::executor::block_on(handle).unwrap(), "done");
/// ```
pub fn blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    runtime().blocking(f)
}

/// Like [`blocking`], at `priority` (smaller runs first).
///
/// ```
/// use openco::Priority;
/// let urgent = openco::blocking_with_priority(Priority::HIGHEST, || 1);
/// assert_eq!(urgent.join().unwrap(), 1);
/// ```
pub fn blocking_with_priority<F, T>(priority: Priority, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    runtime().blocking_with_priority(priority, f)
}

/// Runs a future to completion from synchronous code. Inside an openco coroutine it
/// suspends the coroutine (not its worker thread) while the future is pending; outside one
/// it parks the thread, like `futures::executor::block_on`.
///
/// ```
/// let v = openco::blocking(|| openco::block_on(async { 40 + 2 })).join().unwrap();
/// assert_eq!(v, 42);
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    openco_runtime::block_on_until(fut, None).expect("no deadline was given")
}
