//! `JoinHandle`: a job's result, as a `Future` or by blocking.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{JoinError, Joinable, CANCELLED, COMPLETE};
use crate::coroutine;

/// An owned permission to get a job's result.
///
/// Await it from any executor, or call [`join`](Self::join) /
/// [`timeout_join`](Self::timeout_join) from synchronous code. Inside an openco coroutine these
/// suspend the coroutine, never its worker thread.
///
/// Dropping the handle detaches the job: it still runs, and its result is dropped.
///
/// ```
/// let rt = openco_runtime::Builder::new().workers(1).build().unwrap();
/// let handle = rt.blocking(|| 6 * 7);
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
pub struct JoinHandle<T> {
    /// `None` once the result has been handed out.
    task: Option<Arc<dyn Joinable<T>>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: Arc<dyn Joinable<T>>) -> JoinHandle<T> {
        JoinHandle { task: Some(task) }
    }

    /// Cancels the job if it has not started yet; the handle then yields a cancelled
    /// [`JoinError`]. A job already running is not interrupted: it runs to its end.
    /// Returns whether the job was cancelled.
    pub fn abort(&self) -> bool {
        self.task.as_ref().is_some_and(|t| t.header().cancel())
    }

    /// Whether the job has ended (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.header().is_finished())
    }

    /// Waits for the result, blocking the thread, or suspending the coroutine when called
    /// inside one.
    pub fn join(mut self) -> Result<T, JoinError> {
        coroutine::block_on_until(&mut self, None).expect("no deadline")
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with an error for which
    /// [`JoinError::is_timeout`] holds. The job keeps running and the handle stays usable.
    pub fn timeout_join(&mut self, timeout: Duration) -> Result<T, JoinError> {
        let deadline = Instant::now().checked_add(timeout);
        coroutine::block_on_until(&mut *self, deadline).unwrap_or_else(|| Err(JoinError::timed_out()))
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = self.task.as_ref().expect("JoinHandle polled after completion");
        let header = task.header();
        let mut state = header.state.load(std::sync::atomic::Ordering::Acquire);
        if state != COMPLETE && state != CANCELLED {
            header.waker.register(cx.waker());
            state = header.state.load(std::sync::atomic::Ordering::Acquire);
            if state != COMPLETE && state != CANCELLED {
                return Poll::Pending;
            }
        }
        let task = self.task.take().expect("checked above");
        if state == CANCELLED {
            return Poll::Ready(Err(JoinError::cancelled()));
        }
        // SAFETY: `COMPLETE` was seen with Acquire and this handle is the only reader.
        let output = unsafe { task.take_output() };
        Poll::Ready(output.expect("a completed job stores its output"))
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("finished", &self.is_finished()).finish()
    }
}
