//! The seeds' API in macro form: `task!`, `maybe_grow!`, and the helpers that the macros and
//! `#[openco::main]` expand to (in [`__private`], not part of the public API).

use std::process::{ExitCode, Termination};

use crate::{Builder, Handle, JoinHandle, Priority};

/// The red zone of [`maybe_grow!`](crate::maybe_grow!): a new segment is used when less than
/// this is left on the current stack (100 KiB, as rustc uses for its own recursions through
/// stacker).
///
/// ```
/// assert_eq!(openco::DEFAULT_RED_ZONE, 100 * 1024);
/// ```
pub const DEFAULT_RED_ZONE: usize = 100 * 1024;

/// The size of the stack segments [`maybe_grow!`](crate::maybe_grow!) adds (1 MiB, as rustc's).
///
/// ```
/// assert_eq!(openco::DEFAULT_SEGMENT_SIZE, 1024 * 1024);
/// ```
pub const DEFAULT_SEGMENT_SIZE: usize = 1024 * 1024;

/// Submits a job that runs `f(param)`: `task!(f, param)` or `task!(f, param, priority)`.
/// Returns its [`JoinHandle`]: await it, [`join`](crate::JoinHandle::join)
/// it, or [`timeout_join`](crate::JoinHandle::timeout_join) it.
///
/// The priority is a `u8` or a [`Priority`]; smaller runs first, and the
/// default is [`Priority::DEFAULT`](crate::Priority::DEFAULT) (128). Called inside a
/// coroutine (in a `#[openco::main]` body, in a job), the job goes to that coroutine's
/// runtime; elsewhere to the global one, as with [`blocking`](crate::blocking). `f` and
/// `param` must be `Send + 'static`, as for [`blocking`](crate::blocking).
///
/// ```
/// let task = openco::task!(|param| {
///     assert_eq!(param, "param");
///     param.len()
/// }, "param");
/// assert_eq!(task.join().unwrap(), 5);
///
/// // A priority, as a number (smaller runs first) or as a `Priority`.
/// let mut urgent = openco::task!(|n: u64| n * 2, 21, 1);
/// let later = openco::task!(|n: u64| n + 1, 41, openco::Priority::LOWEST);
/// assert_eq!(urgent.timeout_join(std::time::Duration::from_secs(5)).unwrap(), 42);
/// assert_eq!(futures::executor::block_on(later).unwrap(), 42);
/// ```
#[macro_export]
macro_rules! task {
    ($f:expr, $param:expr $(,)?) => {
        $crate::__private::task($f, $param, $crate::Priority::DEFAULT)
    };
    ($f:expr, $param:expr, $priority:expr $(,)?) => {
        $crate::__private::task($f, $param, $priority)
    };
}

/// Runs a closure on a fresh stack segment if the current stack is running low:
/// [`maybe_grow`](fn@crate::maybe_grow) with defaults.
///
/// - `maybe_grow!(f)`: red zone [`DEFAULT_RED_ZONE`], segments of [`DEFAULT_SEGMENT_SIZE`];
/// - `maybe_grow!(stack_size, f)`: segments of `stack_size` bytes;
/// - `maybe_grow!(red_zone, stack_size, f)`: both.
///
/// Evaluates to `f`'s result. Call it at each level of a deep recursion: the recursion then
/// spreads over as many segments as it needs, without copying the stack, inside coroutines
/// and on plain threads alike.
///
/// ```
/// // 50 levels of 10 KiB frames (the seeds' example) on a 128 KiB coroutine stack.
/// fn recurse(i: u32, p: &mut [u8; 10240]) {
///     openco::maybe_grow!(|| {
///         std::hint::black_box(&mut *p); // keeps the frame from being optimised away
///         if i > 0 {
///             recurse(i - 1, &mut [0; 10240]);
///         }
///     })
/// }
/// let rt = openco::Builder::new().workers(1).stack_size(128 * 1024).build()?;
/// rt.blocking(|| recurse(50, &mut [0; 10240])).join().unwrap();
///
/// // The other forms.
/// assert_eq!(openco::maybe_grow!(2 * 1024 * 1024, || 1), 1);
/// assert_eq!(openco::maybe_grow!(32 * 1024, 256 * 1024, || 2), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[macro_export]
macro_rules! maybe_grow {
    ($red_zone:expr, $stack_size:expr, $f:expr $(,)?) => {
        $crate::maybe_grow($red_zone, $stack_size, $f)
    };
    ($stack_size:expr, $f:expr $(,)?) => {
        $crate::maybe_grow($crate::DEFAULT_RED_ZONE, $stack_size, $f)
    };
    ($f:expr $(,)?) => {
        $crate::maybe_grow($crate::DEFAULT_RED_ZONE, $crate::DEFAULT_SEGMENT_SIZE, $f)
    };
}

/// What `task!` and `#[openco::main]` expand to. Not a public API: it may change at any time.
pub mod __private {
    use super::*;

    /// `task!(f, param, priority)`: `f(param)` on the caller's runtime (inside a coroutine) or
    /// the global one.
    pub fn task<P, F, T>(f: F, param: P, priority: impl Into<Priority>) -> JoinHandle<T>
    where
        F: FnOnce(P) -> T + Send + 'static,
        P: Send + 'static,
        T: Send + 'static,
    {
        let job = move || f(param);
        match Handle::try_current() {
            Some(handle) => handle.blocking_with_priority(priority.into(), job),
            None => crate::runtime().blocking_with_priority(priority.into(), job),
        }
    }

    /// `#[openco::main]`: builds a runtime from `builder`, runs `body` on one of its
    /// coroutines and reports its result there (so that it need not be `Send`), shuts the
    /// runtime down, and then returns the exit code, or resumes the body's panic.
    pub fn main<T: Termination>(builder: &Builder, body: impl FnOnce() -> T + Send + 'static) -> ExitCode {
        let rt = builder.build().unwrap_or_else(|e| panic!("#[openco::main]: cannot start the runtime: {e}"));
        let result = rt.blocking(move || body().report()).join();
        drop(rt); // waits for the jobs that have started; cancels the others
        match result {
            Ok(code) => code,
            Err(err) => match err.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(err) => panic!("#[openco::main]: the body did not run: {err}"),
            },
        }
    }
}
