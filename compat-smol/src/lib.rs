//! smol and async-std glue for openco: drop-ins for the `blocking` crate's [`unblock`] and
//! [`Unblock`] that run the blocking code on openco coroutines instead of a thread pool.
//!
//! [`unblock`] runs a closure on a coroutine of openco's global runtime and returns a
//! [`Task`] that resolves to the closure's value, as `blocking::unblock` does: a panic in the
//! closure is resumed in the task that awaits it, dropping the task before the closure has
//! started cancels it, and [`Task::detach`] lets it run unobserved. Blocking calls the closure
//! makes that openco hooks (sleeps, socket IO, `poll`, std locks) suspend the coroutine
//! instead of a thread, so ten thousand of them need a few threads, not ten thousand.
//!
//! [`Unblock`] wraps a blocking `Read`/`Write`/`Seek` value (a `File`, a `TcpStream`, a pipe)
//! into `futures_io::AsyncRead`, `AsyncBufRead`, `AsyncWrite` and `AsyncSeek`. Each read is one
//! job: it takes the value and a buffer of at most the capacity, makes one `read` call on a
//! coroutine, and gives both back; the bytes it read wait in the buffer for the next
//! `poll_read`s. Nothing is read before someone asks, so a request/response protocol over one
//! `Unblock<TcpStream>` works. Writes are copied into a bounded buffer and return at once; a
//! writer job drains that buffer into the value in batches while the async side keeps filling
//! it, flushes the value when the buffer runs empty, and ends; `poll_write` waits only when
//! the buffer is full. No job ever waits for work, so no coroutine or thread idles in a loop.
//!
//! ```
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use openco_smol::{unblock, Unblock};
//!
//! # let dir = std::env::temp_dir().join(format!("openco-smol-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("hello.txt");
//! smol::block_on(async {
//!     let file = unblock({ let path = path.clone(); move || std::fs::File::create(path) }).await?;
//!     let mut file = Unblock::new(file);
//!     file.write_all(b"hello from a coroutine").await?;
//!     file.flush().await?;
//!
//!     let mut file = Unblock::new(std::fs::File::open(&path)?);
//!     let mut text = String::new();
//!     file.read_to_string(&mut text).await?;
//!     assert_eq!(text, "hello from a coroutine");
//!     std::io::Result::Ok(())
//! })?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Differences from `blocking` worth knowing:
//! - Regular-file IO is not hooked by openco yet: a read or write of a `File` blocks its
//!   worker thread for the duration of the system call (openco's monitor moves the worker's
//!   other queued jobs to another thread if that lasts longer than its time slice).
//! - `blocking::Unblock` keeps reading in the background until its pipe is full; this one
//!   reads only when asked (one `read` call of up to the capacity), so a file's cursor moves
//!   at most one read ahead of what was consumed, and `SeekFrom::Current` accounts for it.
//! - The `Stream` implementation for iterators is not provided.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod unblock;

pub use unblock::Unblock;

use std::fmt;
use std::future::Future;
use std::panic;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use openco::JoinHandle;

/// Runs blocking code on a coroutine of openco's global runtime; a drop-in for
/// `blocking::unblock`.
///
/// The returned [`Task`] resolves to the closure's value. If the closure panics, awaiting the
/// task resumes the panic. Dropping the task cancels the job if it has not started yet (a
/// started one runs to its end, its value dropped); [`Task::detach`] keeps it.
///
/// ```
/// let n = smol::block_on(openco_smol::unblock(|| {
///     std::thread::sleep(std::time::Duration::from_millis(5)); // suspends the coroutine
///     6 * 7
/// }));
/// assert_eq!(n, 42);
/// ```
pub fn unblock<T, F>(f: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Task { handle: Some(openco::blocking(f)) }
}

/// A job started by [`unblock`]: a future resolving to the closure's value.
///
/// Like the `Task` of `blocking` (an `async_task::Task`): dropping it cancels the job if it
/// has not started yet, [`detach`](Task::detach) lets it run with nobody awaiting it, and a
/// panic of the closure is resumed by the task's `poll`.
#[must_use = "a Task is cancelled when dropped; use `.detach()` to run it in the background"]
pub struct Task<T> {
    /// `None` once the value has been handed out, or the task detached.
    handle: Option<JoinHandle<T>>,
}

impl<T> Task<T> {
    /// Lets the job run to its end with nobody awaiting it; its value is dropped.
    ///
    /// ```
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// openco_smol::unblock(move || tx.send(1).unwrap()).detach();
    /// assert_eq!(rx.recv().unwrap(), 1);
    /// ```
    pub fn detach(mut self) {
        self.handle.take();
    }

    /// Cancels the job and waits for it to stop: `None` if it had not started (it never will),
    /// else the value of the run it could not stop (a job that started runs to its end).
    ///
    /// ```
    /// let task = openco_smol::unblock(|| 1);
    /// let out = smol::block_on(task.cancel());
    /// assert!(out == None || out == Some(1)); // depends on whether it had started
    /// ```
    pub async fn cancel(mut self) -> Option<T> {
        let handle = self.handle.take()?;
        handle.abort();
        match handle.await {
            Ok(value) => Some(value),
            Err(err) if err.is_panic() => panic::resume_unwind(err.into_panic()),
            Err(_) => None,
        }
    }

    /// Whether the job has ended (or the value was already taken).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let handle = this.handle.as_mut().expect("openco_smol::Task polled after completion");
        let result = ready!(Pin::new(handle).poll(cx));
        this.handle = None;
        match result {
            Ok(value) => Poll::Ready(value),
            Err(err) if err.is_panic() => panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("openco_smol: the job did not run to its end: {err} (its runtime shut down)"),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("finished", &self.is_finished()).finish()
    }
}
