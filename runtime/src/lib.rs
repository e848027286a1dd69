//! The stackful runtime behind [openco](https://docs.rs/openco): coroutines on pooled,
//! guard-paged stacks, a work-stealing scheduler with priorities, per-worker timers, and libc
//! hooks that turn blocking calls made inside a coroutine into suspensions.
//!
//! Most users want the `openco` crate, which re-exports what is public here and adds a global
//! runtime. The pieces, one module each:
//! - `coroutine`: the running coroutine's context, suspension, stacks, overflow reporting;
//! - `scheduler`: workers, priority run queues, stealing, parking, and the single-thread
//!   [`Scheduler`] driven by the thread that created it;
//! - `time`: per-worker timers;
//! - `task`: jobs, [`JoinHandle`] and [`JoinError`];
//! - `io`: the per-worker reactor (epoll) and io_uring ring;
//! - `hook`: the interposed libc functions, one file per family;
//! - `runtime`: [`Builder`], [`Runtime`], [`Handle`].
//!
//! ```
//! let rt = openco_runtime::Builder::new().workers(2).build()?;
//! let jobs: Vec<_> = (0..100)
//!     .map(|i| rt.blocking(move || {
//!         std::thread::sleep(std::time::Duration::from_millis(10)); // suspends, not blocks
//!         i * 2
//!     }))
//!     .collect();
//! let sum: u64 = jobs.into_iter().map(|h| h.join().unwrap()).sum();
//! assert_eq!(sum, 9900);
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
compile_error!("openco supports Linux on x86_64 and aarch64 only for now");

mod coroutine;
mod env;
mod hook;
mod io;
mod offload;
mod runtime;
mod scheduler;
mod sys;
mod task;
mod time;

pub use coroutine::grow::maybe_grow;
pub use coroutine::{block_on_until, in_coroutine, park, waker, yield_now};
#[doc(hidden)]
pub use io::uring::file_io_counts;
pub use io::uring::io_uring_available;
pub use runtime::{
    Builder, Handle, Runtime, DEFAULT_MAX_THREADS, DEFAULT_STACK_SIZE, DEFAULT_TIME_SLICE, MIN_STACK_SIZE,
};
pub use scheduler::Scheduler;
pub use task::{JoinError, JoinHandle, Priority, Scope};
