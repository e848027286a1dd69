//! pthread mutexes and rwlocks (what C libraries lock with) held across a blocking call by
//! one coroutine while another coroutine of the same worker waits for them: the holder
//! must not suspend (glibc's wait would block the worker under it), so the call blocks the
//! thread as in libc, and both coroutines finish. (Without that rule these tests deadlock a
//! worker: the runtimes are leaked on failure so the watchdog's panic ends the test.)

#[macro_use]
mod support;

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::Duration;

use support::join;

/// A pthread mutex shared between jobs.
struct PMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: pthread mutexes are made to be shared between threads.
unsafe impl Sync for PMutex {}
// SAFETY: as above; it is not moved while in use (it lives in an `Arc`).
unsafe impl Send for PMutex {}

impl PMutex {
    fn new() -> Arc<PMutex> {
        Arc::new(PMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)))
    }
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: an initialised mutex, locked and unlocked by the same thread.
        assert_eq!(unsafe { libc::pthread_mutex_lock(self.0.get()) }, 0);
        let out = f();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(self.0.get()) }, 0);
        out
    }
}

/// A pthread rwlock shared between jobs.
struct PRwLock(UnsafeCell<libc::pthread_rwlock_t>);

// SAFETY: as for `PMutex`.
unsafe impl Sync for PRwLock {}
// SAFETY: as for `PMutex`.
unsafe impl Send for PRwLock {}

rt_test! {
    /// The first job sleeps while holding the mutex; the second waits for it on the same
    /// worker. Without the lock count the sleep suspends, the second job blocks the worker
    /// in glibc, and neither ends.
    fn a_mutex_held_across_a_sleep(workers: usize) {
        let rt = support::rt_leak_on_panic(workers);
        let m = PMutex::new();
        let (m1, m2) = (m.clone(), m.clone());
        let (started_tx, started) = std::sync::mpsc::channel();
        let holder = rt.blocking(move || {
            m1.with(|| {
                started_tx.send(()).unwrap();
                let inside = openco::in_coroutine();
                std::thread::sleep(Duration::from_millis(30));
                inside
            })
        });
        started.recv_timeout(support::WATCHDOG).unwrap();
        let waiter = rt.blocking(move || {
            m2.with(|| ());
            openco::in_coroutine()
        });
        assert!(!join(holder).unwrap(), "a coroutine holding a pthread mutex runs as plain thread code");
        assert!(join(waiter).unwrap(), "after the unlock the coroutine may suspend again");
    }
}

rt_test! {
    /// The same with a file call (`fsync` goes to io_uring or a helper when nothing is held).
    fn a_mutex_held_across_file_calls(workers: usize) {
        let rt = support::rt_leak_on_panic(workers);
        let m = PMutex::new();
        let dir = std::env::temp_dir().join(format!("openco-pthread-{}-{workers}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jobs: Vec<_> = (0..20)
            .map(|i| {
                let (m, path) = (m.clone(), dir.join(format!("f{i}")));
                rt.blocking(move || {
                    m.with(|| {
                        let f = std::fs::File::create(&path).unwrap();
                        std::io::Write::write_all(&mut &f, b"locked").unwrap();
                        f.sync_all().unwrap();
                    });
                    std::fs::read(&path).unwrap()
                })
            })
            .collect();
        for job in jobs {
            assert_eq!(join(job).unwrap(), b"locked");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

rt_test! {
    /// A writer holds an rwlock across a sleep while readers of the same worker queue up.
    fn an_rwlock_held_across_a_sleep(workers: usize) {
        let rt = support::rt_leak_on_panic(workers);
        let l = Arc::new(PRwLock(UnsafeCell::new(libc::PTHREAD_RWLOCK_INITIALIZER)));
        let (started_tx, started) = std::sync::mpsc::channel();
        let l1 = l.clone();
        let writer = rt.blocking(move || {
            // SAFETY: an initialised rwlock, locked and unlocked by this thread.
            assert_eq!(unsafe { libc::pthread_rwlock_wrlock(l1.0.get()) }, 0);
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            // SAFETY: as above.
            assert_eq!(unsafe { libc::pthread_rwlock_unlock(l1.0.get()) }, 0);
        });
        started.recv_timeout(support::WATCHDOG).unwrap();
        let readers: Vec<_> = (0..5)
            .map(|_| {
                let l = l.clone();
                rt.blocking(move || {
                    // SAFETY: as above.
                    assert_eq!(unsafe { libc::pthread_rwlock_rdlock(l.0.get()) }, 0);
                    std::thread::sleep(Duration::from_millis(5));
                    // SAFETY: as above.
                    assert_eq!(unsafe { libc::pthread_rwlock_unlock(l.0.get()) }, 0);
                })
            })
            .collect();
        join(writer).unwrap();
        for r in readers {
            join(r).unwrap();
        }
    }
}

rt_test! {
    /// A lock held when a panic starts and released by the unwinding is counted off: once
    /// the panic is caught, the coroutine suspends again.
    fn a_lock_released_while_unwinding_is_counted_off(workers: usize) {
        support::quiet_panics();
        let rt = support::rt_leak_on_panic(workers);
        let m = PMutex::new();
        let job = rt.blocking(move || {
            struct Unlock<'a>(&'a PMutex);
            impl Drop for Unlock<'_> {
                fn drop(&mut self) {
                    // SAFETY: locked below by this thread.
                    assert_eq!(unsafe { libc::pthread_mutex_unlock(self.0 .0.get()) }, 0);
                }
            }
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: an initialised mutex.
                assert_eq!(unsafe { libc::pthread_mutex_lock(m.0.get()) }, 0);
                let _unlock = Unlock(&m);
                std::panic::panic_any(support::EXPECTED);
            }));
            assert!(caught.is_err());
            openco::in_coroutine()
        });
        assert!(join(job).unwrap(), "the lock released by the unwinding was still counted");
    }
}
