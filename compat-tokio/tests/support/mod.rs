//! Helpers shared by the test files: one macro runs an async case on tokio's multi-thread and
//! current-thread runtimes, and a bound on every wait so that a deadlock fails the test.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// Longest a test waits for anything before failing.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(LIMIT, fut).await.expect("timed out: a deadlock?")
}

/// `flavors!(name, async_fn)` defines a module `name` with two tests running `async_fn()` on a
/// two-thread multi-thread runtime and on a current-thread runtime.
#[macro_export]
macro_rules! flavors {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multi_thread() {
                super::$case().await
            }
            #[tokio::test(flavor = "current_thread")]
            async fn current_thread() {
                super::$case().await
            }
        }
    };
}

/// An openco runtime of `workers` threads that is leaked, not shut down, when dropped during
/// a panic: a test that fails with jobs stuck on a worker thread then fails instead of
/// hanging in the runtime's drop (which waits for started jobs).
pub fn openco_runtime(workers: usize) -> Bounded {
    Bounded(Some(openco::Builder::new().workers(workers).build().expect("openco runtime")))
}

/// See [`openco_runtime`].
pub struct Bounded(Option<openco::Runtime>);

impl std::ops::Deref for Bounded {
    type Target = openco::Runtime;
    fn deref(&self) -> &openco::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if std::thread::panicking() {
                std::mem::forget(rt);
            }
        }
    }
}

/// Held by the tests whose jobs panic, so that no two of them run at once. Two jobs of one
/// openco worker panicking at about the same time can abort the process ("thread panicked
/// while processing panic") since the monitor's hand-off (openco commit ab94364; not with
/// `time_slice(None)`); that is the runtime's to fix and test, not these tests'.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// [`serial`] for synchronous tests.
pub fn serial_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
