//! pthread mutexes and rwlocks: counted, so that a coroutine holding one never suspends.
//!
//! C libraries (SQLite, OpenSSL, libcurl...) guard shared state with pthread mutexes and
//! make file or socket calls while holding them: SQLite holds its VFS mutex across the
//! `close` and `fstat` of a database file. If such a call suspended the coroutine, another
//! coroutine of the same worker could then ask for the same mutex; glibc waits for it with
//! its own futex system call, which no hook sees, so the worker thread would block, and the
//! holder, suspended on that very thread, could never run to release it.
//!
//! So these hooks call libc's function and then count, in the coroutine's context, the
//! locks it holds (`Context::locks_held`; each successful lock adds one, each unlock takes
//! one away). While the count is above zero, `coroutine::current` answers `None`: every
//! hook then behaves as libc's function and blocks the thread for the time the lock is
//! held, exactly what code written for threads expects of a lock held across a call
//! (invariant 5 of `coroutine`). Outside coroutines the hooks cost one thread-local load.
//!
//! Not counted: locks glibc takes inside its own functions (stdio, `malloc`, the loader:
//! they never reach a hook), spin locks, and locks taken with `pthread_cond_wait`'s
//! re-acquire (the count already covers the mutex from before the wait).

use libc::{c_int, pthread_mutex_t, pthread_rwlock_t, timespec};

use super::real;
use crate::coroutine;

/// Counts one lock taken (`ret` 0, or `EOWNERDEAD` for a robust mutex whose owner died) by
/// the running coroutine, if any.
fn acquired(ret: c_int) -> c_int {
    if ret == 0 || ret == libc::EOWNERDEAD {
        if let Some(ctx) = coroutine::running() {
            ctx.locks_held.set(ctx.locks_held.get().saturating_add(1));
        }
    }
    ret
}

/// Counts one lock released (`ret == 0`) by the running coroutine, if any.
fn released(ret: c_int) -> c_int {
    if ret == 0 {
        if let Some(ctx) = coroutine::running() {
            ctx.locks_held.set(ctx.locks_held.get().saturating_sub(1));
        }
    }
    ret
}

macro_rules! lock_hooks {
    ($count:ident: $($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            let real = real!($name: fn($($ty),*) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            $count(unsafe { real($($arg),*) })
        }
    )*};
}

lock_hooks!(acquired:
    pthread_mutex_lock(m: *mut pthread_mutex_t),
    pthread_mutex_trylock(m: *mut pthread_mutex_t),
    pthread_mutex_timedlock(m: *mut pthread_mutex_t, at: *const timespec),
    pthread_mutex_clocklock(m: *mut pthread_mutex_t, clock: libc::clockid_t, at: *const timespec),
    pthread_rwlock_rdlock(l: *mut pthread_rwlock_t),
    pthread_rwlock_tryrdlock(l: *mut pthread_rwlock_t),
    pthread_rwlock_timedrdlock(l: *mut pthread_rwlock_t, at: *const timespec),
    pthread_rwlock_wrlock(l: *mut pthread_rwlock_t),
    pthread_rwlock_trywrlock(l: *mut pthread_rwlock_t),
    pthread_rwlock_timedwrlock(l: *mut pthread_rwlock_t, at: *const timespec),
);

lock_hooks!(released:
    pthread_mutex_unlock(m: *mut pthread_mutex_t),
    pthread_rwlock_unlock(l: *mut pthread_rwlock_t),
);
