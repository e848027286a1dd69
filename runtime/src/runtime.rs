//! `Builder`, `Runtime` and `Handle`: configuring, owning and reaching a runtime.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coroutine::{self, overflow, stack::StackPool};
use crate::scheduler::{self, Config, Shared, ABANDON, SHUTDOWN};
use crate::task::{self, JoinHandle, Priority, Scope};

/// The smallest coroutine stack [`Builder::stack_size`] accepts: signal handlers and
/// backtraces run on the coroutine stack and need room.
pub const MIN_STACK_SIZE: usize = 64 * 1024;

/// The default coroutine stack size, 2 MiB as for a Rust or tokio thread: code moved from
/// `spawn_blocking` was written for it. Only the pages a job touches cost memory.
pub const DEFAULT_STACK_SIZE: usize = 2 * 1024 * 1024;

/// The default of [`Builder::max_threads`].
pub const DEFAULT_MAX_THREADS: usize = 512;

/// How long a spare thread (one that took over from a stuck worker, then ran out of work)
/// waits to be reused before it exits; tokio's blocking pool keeps idle threads as long.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The default of [`Builder::time_slice`].
pub const DEFAULT_TIME_SLICE: Duration = Duration::from_millis(10);

/// Configures and builds a [`Runtime`].
///
/// Defaults can come from the environment (explicit calls win): `OPENCO_WORKERS` (a
/// positive integer) and `OPENCO_STACK_SIZE` (bytes, at least [`MIN_STACK_SIZE`]). A value
/// that does not parse makes [`build`](Builder::build) fail with an error naming the variable.
///
/// ```
/// use openco_runtime::Builder;
/// let rt = Builder::new().workers(2).stack_size(256 * 1024).thread_name("my-pool").build()?;
/// assert_eq!(rt.blocking(|| 1 + 1).join().unwrap(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: Option<usize>,
    thread_name: Option<String>,
    max_coroutines: Option<usize>,
    time_slice: Option<Option<Duration>>,
    max_threads: Option<usize>,
    io_uring: Option<bool>,
}

impl Builder {
    /// A builder with every setting at its default.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Worker threads; default `std::thread::available_parallelism()`.
    pub fn workers(&mut self, n: usize) -> &mut Builder {
        self.workers = Some(n);
        self
    }

    /// Usable bytes of each coroutine stack (a guard page is added below); default
    /// [`DEFAULT_STACK_SIZE`]. Rounded up to whole pages.
    pub fn stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Prefix of worker thread names; default `"openco-worker"`.
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        self.thread_name = Some(name.into());
        self
    }

    /// The most coroutines (hence stacks) alive at once; further jobs wait in the queue until
    /// one ends. Default: no limit but the kernel's.
    pub fn max_coroutines(&mut self, n: usize) -> &mut Builder {
        self.max_coroutines = Some(n);
        self
    }

    /// How long a coroutine may run without suspending before its worker is considered stuck
    /// and its queued work is handed to another thread (see the `scheduler` docs); `None`
    /// disables the check. Default 10 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = openco_runtime::Builder::new().time_slice(Duration::from_millis(5)).build()?;
    /// let no_monitor = openco_runtime::Builder::new().time_slice(None).build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn time_slice(&mut self, slice: impl Into<Option<Duration>>) -> &mut Builder {
        self.time_slice = Some(slice.into());
        self
    }

    /// The most OS threads the runtime runs at once: its workers plus the threads started to
    /// take over from stuck ones. Default [`DEFAULT_MAX_THREADS`] (tokio's blocking-pool cap),
    /// at least `workers`.
    pub fn max_threads(&mut self, n: usize) -> &mut Builder {
        self.max_threads = Some(n);
        self
    }

    /// Whether file calls made inside coroutines (`read` of a regular file, `open`, `fsync`,
    /// `stat`...) go to an io_uring ring of the worker; default true (`OPENCO_IO_URING`).
    /// Where the kernel refuses io_uring, and with `false`, they run on a few helper threads
    /// while the coroutine is suspended. Either way no file call blocks a worker.
    ///
    /// ```
    /// let rt = openco_runtime::Builder::new().workers(1).io_uring(false).build()?;
    /// let text = rt.blocking(|| std::fs::read_to_string("Cargo.toml")).join().unwrap()?;
    /// assert!(text.contains("[package]"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn io_uring(&mut self, enabled: bool) -> &mut Builder {
        self.io_uring = Some(enabled);
        self
    }

    /// Starts the runtime's worker threads.
    pub fn build(&self) -> io::Result<Runtime> {
        let env = crate::env::read()?;
        let workers =
            self.workers.or(env.workers).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 {
            return Err(invalid("openco: a runtime needs at least one worker thread (workers(0) given)"));
        }
        let stack_size = self.stack_size.or(env.stack_size).unwrap_or(DEFAULT_STACK_SIZE);
        if stack_size < MIN_STACK_SIZE {
            return Err(invalid(&format!(
                "openco: stack_size({stack_size}) is below the minimum of {MIN_STACK_SIZE} bytes"
            )));
        }
        let page = crate::sys::page_size();
        let stack_size =
            stack_size.checked_next_multiple_of(page).ok_or_else(|| invalid("openco: stack_size is too large"))?;
        if self.max_coroutines == Some(0) {
            return Err(invalid("openco: max_coroutines(0) would never run a job"));
        }
        let time_slice = self.time_slice.unwrap_or(Some(DEFAULT_TIME_SLICE));
        if time_slice == Some(Duration::ZERO) {
            return Err(invalid("openco: time_slice(0) would hand off every worker; use time_slice(None) to disable"));
        }
        let max_threads = self.max_threads.unwrap_or(DEFAULT_MAX_THREADS.max(workers));
        if max_threads < workers {
            return Err(invalid(&format!("openco: max_threads({max_threads}) is below workers({workers})")));
        }
        overflow::install();
        let config = Config {
            workers,
            thread_name: self.thread_name.clone().unwrap_or_else(|| "openco-worker".into()),
            time_slice,
            max_threads,
            keep_alive: KEEP_ALIVE,
            io_uring: self.io_uring.or(env.io_uring).unwrap_or(true),
            inline_file_calls: env.inline_file_calls.unwrap_or(true),
        };
        let shared = Arc::new(Shared::new(config, StackPool::new(stack_size, self.max_coroutines))?);
        scheduler::start(&shared)?;
        Ok(Runtime { handle: Handle { shared } })
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A pool of worker threads running jobs on coroutines.
///
/// `Send + Sync`: share it in an `Arc`, or through [`Handle`]s. Dropping it shuts it down:
/// jobs that have not started are cancelled, started ones run to their end (the drop waits
/// for them, as tokio's runtime waits for its blocking tasks). Use
/// [`shutdown_timeout`](Runtime::shutdown_timeout) to bound the wait.
pub struct Runtime {
    handle: Handle,
}

impl Runtime {
    /// Runs `f` on a coroutine of this runtime, at [`Priority::DEFAULT`].
    pub fn blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.blocking(f)
    }

    /// Runs `f` on a coroutine of this runtime at `priority` (smaller runs first).
    pub fn blocking_with_priority<F, T>(&self, priority: Priority, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.blocking_with_priority(priority, f)
    }

    /// A handle to submit jobs from elsewhere.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Shuts down: cancels jobs that have not started, waits up to `timeout` for started
    /// ones to end, then abandons the rest (their handles resolve as cancelled; their stacks
    /// are leaked and their destructors do not run, as with a thread left running by
    /// `tokio`'s `shutdown_timeout`).
    pub fn shutdown_timeout(self, timeout: Duration) {
        self.shutdown(Instant::now().checked_add(timeout));
    }

    fn shutdown(&self, deadline: Option<Instant>) {
        let shared = &self.handle.shared;
        if shared.state() == ABANDON {
            return; // `shutdown_timeout` gave up already; `Drop` must not wait again
        }
        shared.set_state(SHUTDOWN);
        shared.drain_inject();
        let on_own_worker = scheduler::current_worker_shared() == Some(Arc::as_ptr(shared));
        let deadline = if on_own_worker { Some(Instant::now()) } else { deadline };
        if shared.wait_exited(deadline) {
            let threads = std::mem::take(&mut *shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
            for t in threads {
                let _ = t.join();
            }
        } else {
            shared.set_state(ABANDON);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("workers", &self.handle.shared.config.workers).finish()
    }
}

/// A cheap, clonable reference to a runtime, to submit jobs to it.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// The runtime of the coroutine calling this.
    ///
    /// # Panics
    /// Outside an openco coroutine; see [`try_current`](Handle::try_current).
    pub fn current() -> Handle {
        Handle::try_current().expect("openco::Handle::current() called outside an openco coroutine")
    }

    /// The runtime of the coroutine calling this, if any.
    pub fn try_current() -> Option<Handle> {
        coroutine::current().map(|ctx| Handle { shared: ctx.shared.clone() })
    }

    /// See [`Runtime::blocking`]. After shutdown the handle resolves as cancelled.
    pub fn blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.blocking_with_priority(Priority::DEFAULT, f)
    }

    /// See [`Runtime::blocking_with_priority`].
    pub fn blocking_with_priority<F, T>(&self, priority: Priority, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = task::new(f, priority, None);
        self.shared.submit(job);
        handle
    }

    /// Like [`blocking_with_priority`](Handle::blocking_with_priority), with `scope` entered
    /// around every run of the job on its worker thread (see [`Scope`]).
    pub fn blocking_scoped<F, T>(&self, scope: Arc<dyn Scope>, priority: Priority, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = task::new(f, priority, Some(scope));
        self.shared.submit(job);
        handle
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}
