//! `JoinError`: why a job produced no value.

use std::fmt;
use std::io;
use std::sync::Mutex;

use super::Payload;

/// A job that did not produce its value: it panicked, was cancelled, or (for
/// [`JoinHandle::timeout_join`](super::JoinHandle::timeout_join)) is not done yet.
pub struct JoinError {
    repr: Repr,
}

enum Repr {
    Cancelled,
    /// Behind a `Mutex` only so that `JoinError` is `Sync`, as tokio's is.
    Panic(Mutex<Payload>),
    TimedOut,
}

impl JoinError {
    pub(crate) fn cancelled() -> JoinError {
        JoinError { repr: Repr::Cancelled }
    }
    pub(crate) fn panic(payload: Payload) -> JoinError {
        JoinError { repr: Repr::Panic(Mutex::new(payload)) }
    }
    pub(crate) fn timed_out() -> JoinError {
        JoinError { repr: Repr::TimedOut }
    }

    /// The job was aborted before it started, or the runtime shut down first.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The job panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// `timeout_join` gave up waiting; the job is still running and the handle still valid.
    pub fn is_timeout(&self) -> bool {
        matches!(self.repr, Repr::TimedOut)
    }

    /// The panic payload, to resume the panic with `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// If the error is not a panic; see [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Payload {
        self.try_into_panic().expect("`JoinError` reason is not a panic")
    }

    /// The panic payload, or the error itself if it is not a panic.
    pub fn try_into_panic(self) -> Result<Payload, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p.into_inner().unwrap_or_else(|e| e.into_inner())),
            repr => Err(JoinError { repr }),
        }
    }

    fn panic_message(&self) -> Option<String> {
        let Repr::Panic(p) = &self.repr else { return None };
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned())
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("job was cancelled"),
            Repr::TimedOut => f.write_str("timed out waiting for the job"),
            Repr::Panic(_) => match self.panic_message() {
                Some(msg) => write!(f, "job panicked with message {msg:?}"),
                None => f.write_str("job panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("JoinError::Cancelled"),
            Repr::TimedOut => f.write_str("JoinError::TimedOut"),
            Repr::Panic(_) => match self.panic_message() {
                Some(msg) => write!(f, "JoinError::Panic({msg:?}, ..)"),
                None => f.write_str("JoinError::Panic(..)"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(err: JoinError) -> io::Error {
        let kind = match err.repr {
            Repr::Cancelled => io::ErrorKind::Interrupted,
            Repr::TimedOut => io::ErrorKind::TimedOut,
            Repr::Panic(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, err.to_string())
    }
}
