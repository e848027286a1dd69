//! Which workers have coroutines waiting on which fd, so that `close` can wake them.
//!
//! epoll never reports a close: the kernel silently drops a closed file's registrations. A
//! coroutine suspended on an fd that another thread or coroutine closes would sleep forever.
//! So each worker sets its bit in a process-wide table indexed by fd before it registers a
//! waiter, and the `close` hook (on any thread) swaps the fd's mask to zero after the real
//! `close` and posts the fd to each worker whose bit was set. Ordering: the bit is set
//! (SeqCst) before the worker's `epoll_ctl`, the closer reads it (SeqCst) after its `close`;
//! a registration that ran before the close is seen by the closer, one that ran after it
//! fails with `EBADF` (or lands on a new file that reused the number, which is that file's
//! business).
//!
//! The table is two-level and grows on demand (a page of 1024 masks per 1024 fds); a lookup
//! for an fd whose page was never allocated costs one load, which is what `close` pays on
//! every thread. Worker ids are process-wide (runtimes come and go); ids from 63 up share
//! the last bit, which is then only cleared by a close.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use std::sync::{Arc, RwLock, Weak};

use crate::scheduler::Shared;

const PAGE: usize = 1024;
const PAGES: usize = 1024;
/// The bit shared by worker ids >= 63.
const SHARED_BIT: usize = 63;

type Page = [AtomicU64; PAGE];

static TABLE: [AtomicPtr<Page>; PAGES] = [const { AtomicPtr::new(std::ptr::null_mut()) }; PAGES];
/// Masks of fds beyond the table: every worker that waits on one sets its bit here.
static BEYOND: AtomicU64 = AtomicU64::new(0);

/// A live worker: its runtime and its index in it.
type WorkerRef = (Weak<Shared>, usize);

/// Live workers by id.
static WORKERS: RwLock<Vec<Option<WorkerRef>>> = RwLock::new(Vec::new());

fn bit(id: usize) -> u64 {
    1 << id.min(SHARED_BIT)
}

fn mask(fd: i32, allocate: bool) -> Option<&'static AtomicU64> {
    let fd = usize::try_from(fd).ok()?;
    let (page, index) = (fd / PAGE, fd % PAGE);
    let Some(slot) = TABLE.get(page) else { return Some(&BEYOND) };
    let mut ptr = slot.load(Acquire);
    if ptr.is_null() {
        if !allocate {
            return None;
        }
        let fresh = Box::into_raw(Box::new([const { AtomicU64::new(0) }; PAGE]));
        ptr = match slot.compare_exchange(std::ptr::null_mut(), fresh, AcqRel, Acquire) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` was never shared; another thread installed its page first.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: installed pages are never freed, and `index < PAGE`.
    Some(unsafe { &(*ptr)[index] })
}

/// Records that worker `id` has a waiter on `fd`. Call before registering it with epoll.
pub(crate) fn mark(fd: i32, id: usize) {
    if let Some(m) = mask(fd, true) {
        m.fetch_or(bit(id), SeqCst);
    }
}

/// Records that worker `id` has no waiter left on `fd`.
pub(crate) fn unmark(fd: i32, id: usize) {
    if id < SHARED_BIT {
        if let Some(m) = mask(fd, false) {
            m.fetch_and(!bit(id), SeqCst);
        }
    }
}

/// After `fd` was closed (or shut down): wakes the coroutines of every worker waiting on it.
/// They retry their call and get what libc gives for the fd now (`EBADF` once closed).
pub(crate) fn fd_closed(fd: i32) {
    let Some(m) = mask(fd, false) else { return };
    let bits = if std::ptr::eq(m, &BEYOND) { m.load(SeqCst) } else { m.swap(0, SeqCst) };
    if bits == 0 {
        return;
    }
    let workers = WORKERS.read().unwrap_or_else(|e| e.into_inner());
    for (id, worker) in workers.iter().enumerate() {
        if bits & bit(id) == 0 {
            continue;
        }
        if let Some((shared, index)) = worker.as_ref().and_then(|(s, i)| Some((s.upgrade()?, *i))) {
            shared.fd_closed(index, fd);
        }
    }
}

/// Gives a starting worker its process-wide id.
pub(crate) fn register_worker(shared: &Arc<Shared>, index: usize) -> usize {
    let mut workers = WORKERS.write().unwrap_or_else(|e| e.into_inner());
    let entry = Some((Arc::downgrade(shared), index));
    match workers.iter().position(Option::is_none) {
        Some(id) => {
            workers[id] = entry;
            id
        }
        None => {
            workers.push(entry);
            workers.len() - 1
        }
    }
}

/// Frees the id of an exiting worker.
pub(crate) fn unregister_worker(id: usize) {
    let mut workers = WORKERS.write().unwrap_or_else(|e| e.into_inner());
    workers[id] = None;
}
