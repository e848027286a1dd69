//! Coroutine stacks: `mmap`'d, guard-paged and pooled.
//!
//! A fresh stack costs a `mmap`, a guard and, above all, its first page faults (about 12 us
//! each on this kind of VM); a pooled one costs a `Vec::pop`. Stacks are never unmapped while
//! the runtime lives: they go back to a per-worker cache, then to the runtime-wide free list.
//!
//! ```text
//!  high addresses
//!  +---------------------------+ <- top (`Stack::base`, 16-byte aligned)
//!  | corosensei's initial frame|    the job closure, its locals, hook frames...
//!  |            ...            |    pages are touched (and cost memory) only as used
//!  |   (kept resident: KEEP)   |
//!  +- - - - - - - - - - - - - -+ <- top - KEEP: below here, `trim` returns pages to the OS
//!  |            ...            |
//!  +---------------------------+ <- bottom + guard
//!  |   guard page (no access)  |    a fault here is a stack overflow (see `overflow`)
//!  +---------------------------+ <- bottom (`Stack::limit`)
//!  low addresses
//! ```
//!
//! The guard is installed with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13) where the kernel has
//! it: the mapping is not split, neighbouring stacks merge into one VMA and `vm.max_map_count`
//! stops bounding the number of live stacks. Elsewhere `mprotect(PROT_NONE)` splits each stack
//! into two VMAs, so the pool caps itself below half of `vm.max_map_count`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Mutex;

use corosensei::stack::StackPointer;

use crate::sys;

/// Bytes below the top that stay resident when a pooled stack is trimmed.
const KEEP: usize = 32 * 1024;
/// Stacks mapped by one `mmap` when the pool runs dry.
const MAP_BATCH: usize = 16;
/// `MADV_GUARD_INSTALL`, not yet in the `libc` crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// One guarded stack. Owned by exactly one coroutine or pool at a time.
#[derive(Debug)]
pub(crate) struct Stack {
    bottom: usize,
    len: usize,
    /// Set when a coroutine has run on it since the last `trim`.
    dirty: bool,
}

// SAFETY: `base` and `limit` bound a mapping owned by this value, with a guard page at the
// bottom and at least `MIN_STACK_SIZE` usable bytes (checked by `Builder`); `base` is
// page-aligned, hence aligned to `STACK_ALIGNMENT`.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.bottom + self.len).expect("stack top is not null")
    }
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.bottom).expect("stack bottom is not null")
    }
}

impl Stack {
    /// Maps `count` stacks with one `mmap` (fewer calls that take the address-space lock for
    /// writing, which stalls the page faults of every other worker), then guards each.
    fn map(usable: usize, count: usize) -> io::Result<Vec<Stack>> {
        let page = sys::page_size();
        let len = usable + page;
        let total = len.checked_mul(count).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), total, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Each `Stack` owns (and unmaps) its own part of the mapping from here on.
        let stacks: Vec<Stack> =
            (0..count).map(|i| Stack { bottom: ptr as usize + i * len, len, dirty: false }).collect();
        for stack in &stacks {
            stack.install_guard()?; // on error, `stacks` unmaps everything on drop
        }
        Ok(stacks)
    }

    /// One stack of `usable` bytes (page-rounded by the caller), outside any pool: for a job
    /// that asked for a stack size other than its runtime's. Unmapped when dropped.
    pub(crate) fn new(usable: usize) -> io::Result<Stack> {
        Ok(Stack::map(usable, 1)?.pop().expect("one stack was mapped"))
    }

    fn install_guard(&self) -> io::Result<()> {
        let page = sys::page_size();
        let ptr = self.bottom as *mut libc::c_void;
        if guard_kind() == GUARD_MADVISE {
            // SAFETY: the first page of a mapping this stack owns.
            if unsafe { libc::madvise(ptr, page, MADV_GUARD_INSTALL) } == 0 {
                return Ok(());
            }
            GUARD.store(GUARD_MPROTECT, Relaxed);
        }
        // SAFETY: the first page of a mapping this stack owns.
        if unsafe { libc::mprotect(ptr, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The lowest address of the guard page and the address just above it.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.bottom, self.bottom + sys::page_size())
    }

    /// Usable bytes, guard excluded.
    pub(crate) fn usable(&self) -> usize {
        self.len - sys::page_size()
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Hands the deep part of a used stack back to the kernel, so a pool of stacks that once
    /// ran deep recursions does not stay resident.
    pub(crate) fn trim(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let low = self.bottom + sys::page_size();
        let high = (self.bottom + self.len).saturating_sub(KEEP);
        if high > low {
            // SAFETY: a range inside a private anonymous mapping we own and nobody runs on;
            // MADV_DONTNEED refills it with zero pages on the next touch.
            unsafe { libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED) };
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the whole mapping is owned by this value and nothing runs on it any more.
        unsafe { libc::munmap(self.bottom as *mut libc::c_void, self.len) };
    }
}

const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;
static GUARD: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);

fn guard_kind() -> u8 {
    match GUARD.load(Relaxed) {
        GUARD_UNKNOWN => {
            GUARD.store(GUARD_MADVISE, Relaxed); // tried on the first mapping, then settled
            GUARD_MADVISE
        }
        kind => kind,
    }
}

/// Why no stack could be had.
#[derive(Debug)]
pub(crate) struct Exhausted;

/// The runtime-wide stack pool. Used from scheduler context only (never inside a coroutine),
/// so its lock never goes through openco's own hooks.
#[derive(Debug)]
pub(crate) struct StackPool {
    usable: usize,
    free: Mutex<Vec<Stack>>,
    /// Stacks mapped and not yet unmapped.
    mapped: AtomicUsize,
    limit: usize,
    /// Set after a failed `mmap` or at the limit; cleared when a stack comes back.
    starved: AtomicBool,
    warned: AtomicBool,
}

impl StackPool {
    pub(crate) fn new(usable: usize, limit: Option<usize>) -> StackPool {
        StackPool {
            usable,
            free: Mutex::new(Vec::new()),
            mapped: AtomicUsize::new(0),
            limit: limit.unwrap_or(usize::MAX),
            starved: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// Usable bytes of each pooled stack.
    pub(crate) fn usable(&self) -> usize {
        self.usable
    }

    pub(crate) fn is_starved(&self) -> bool {
        self.starved.load(SeqCst)
    }

    /// A stack from the free list, or a fresh one.
    pub(crate) fn get(&self) -> Result<Stack, Exhausted> {
        if let Some(stack) = self.pop_free() {
            return Ok(stack);
        }
        let limit = self.limit.min(map_count_limit());
        // Reserve exactly what will be mapped: an over-count, even a passing one, would make
        // a concurrent `get` see a false "limit reached".
        let reserved = self.mapped.fetch_update(Relaxed, Relaxed, |mapped| {
            let count = limit.saturating_sub(mapped).min(MAP_BATCH);
            (count > 0).then_some(mapped + count)
        });
        let why = match reserved {
            Ok(mapped) => {
                let count = limit.saturating_sub(mapped).min(MAP_BATCH);
                match Stack::map(self.usable, count) {
                    Ok(mut stacks) => {
                        let stack = stacks.pop().expect("count > 0");
                        if !stacks.is_empty() {
                            self.put_all(stacks);
                        }
                        return Ok(stack);
                    }
                    Err(err) => {
                        self.mapped.fetch_sub(count, Relaxed);
                        format!("mmap failed: {err}")
                    }
                }
            }
            Err(_) => format!("{limit} stacks are mapped, the most this runtime allows"),
        };
        // Starved. A stack returned between our first look and this store did not see the
        // flag, so look once more (the free list's lock orders both sides).
        self.starved.store(true, SeqCst);
        if let Some(stack) = self.pop_free() {
            self.starved.store(false, SeqCst);
            return Ok(stack);
        }
        self.warn_once(&why);
        Err(Exhausted)
    }

    fn pop_free(&self) -> Option<Stack> {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn warn_once(&self, why: &str) {
        if !self.warned.swap(true, Relaxed) {
            let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default();
            tracing::warn!(
                "openco: no coroutine stack can be had ({why}; {} stacks live, vm.max_map_count = {}); \
                 new jobs wait in the queue until a running one finishes",
                self.mapped.load(Relaxed),
                max_map_count.trim(),
            );
        }
    }

    /// Returns stacks to the shared free list, trimmed. True if the pool was starved: the
    /// caller then wakes a worker to use them.
    pub(crate) fn put_all(&self, stacks: impl IntoIterator<Item = Stack>) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let before = free.len();
        for mut stack in stacks {
            stack.trim();
            free.push(stack);
        }
        let added = free.len() > before;
        drop(free);
        added && self.starved.swap(false, SeqCst)
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        let free = self.free.get_mut().unwrap_or_else(|e| e.into_inner());
        self.mapped.fetch_sub(free.len(), Relaxed);
    }
}

/// With `mprotect` guards every stack is two VMAs: stay well below `vm.max_map_count` so the
/// rest of the process (the allocator, file mappings) keeps room.
fn map_count_limit() -> usize {
    static LIMIT: AtomicUsize = AtomicUsize::new(0);
    if GUARD.load(Relaxed) != GUARD_MPROTECT {
        return usize::MAX;
    }
    match LIMIT.load(Relaxed) {
        0 => {
            let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(65530);
            let limit = (max.saturating_sub(4096) / 2).max(64);
            LIMIT.store(limit, Relaxed);
            limit
        }
        limit => limit,
    }
}
