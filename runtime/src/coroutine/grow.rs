//! Growing the stack on demand: [`maybe_grow`] runs a closure on another stack segment when
//! the current stack is nearly full, so that a deep recursion spreads over several segments
//! instead of overflowing (stacker's idea, on corosensei's `on_stack`). Nothing is copied: the
//! old frames stay where they are, and the segment goes back to a per-thread cache when the
//! closure returns or panics.
//!
//! How much stack is left is `sp - limit`, `limit` being the lowest usable address of the
//! stack that `sp` is on. That stack is found from `sp` itself, looked up in turn in:
//! 1. the stack published by `overflow::set_running_guard`: the coroutine's (the worker sets
//!    it before each resume) or, while a closure runs on a segment, the segment's (set here);
//! 2. the segments lent out on this thread: a coroutine that suspended on a segment (in a
//!    hooked call) is resumed by its worker with its own stack published, not the segment's.
//!    The segment found is published again, so that an overflow there is still reported;
//! 3. the thread's own stack (`pthread_getattr_np`, cached per thread).
//!
//! On none of them (a stack openco does not know, such as a user's own coroutine), it
//! grows, as stacker does when it cannot tell. The lookup goes by `sp` rather than by a
//! per-thread "current segment" because the coroutines of a worker take turns on its thread:
//! when one suspends on a segment, the next one runs on its own stack.
//!
//! ```text
//!   the current stack                       a segment (mapped here, cached per thread)
//!  +----------------------+                +-------------------------------+ <- top
//!  | caller's frames      |                | on_stack's trampoline         |
//!  | maybe_grow's frame   | -- on_stack -> | f's frames ...                |
//!  |  (< red_zone left)   |                |     (pages touched on demand) |
//!  +----------------------+ <- limit       +-------------------------------+ <- bottom + page
//!  | guard page           |                | guard page (PROT_NONE)        |
//!  +----------------------+                +-------------------------------+ <- bottom
//! ```
//!
//! Invariants:
//! 1. A segment is owned by the `maybe_grow` call running a closure on it, or else by its
//!    thread's cache. It never changes thread (a coroutine never does: see `coroutine`).
//! 2. `Segments::active` lists the guards of exactly the segments of this thread that are lent
//!    out. When the closure returns or unwinds, its entry is removed and the guard that was
//!    published before is published again.
//! 3. A cached segment is trimmed: its pages below the top `KEEP` bytes go back to the kernel,
//!    so a cache that once held a deep recursion costs no memory.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;

use corosensei::stack::StackPointer;

use super::overflow;
use crate::sys;

/// The smallest segment: hooked calls and signal delivery need room on it too.
const MIN_SEGMENT: usize = crate::MIN_STACK_SIZE;
/// Bytes below the top of a cached segment that stay resident when it is trimmed.
const KEEP: usize = 32 * 1024;
/// Free segments kept per thread.
const CACHED: usize = 4;

/// `(guard_low, guard_high, usable_bytes)`, as `overflow` publishes it: the usable stack is
/// `guard_high..guard_high + usable_bytes`.
type Guard = (usize, usize, usize);

/// Runs `f` and returns its result; on a fresh stack segment of at least `stack_size` bytes
/// if less than `red_zone` bytes are left on the current stack, in place otherwise.
///
/// Call it at each level of a deep recursion (or before any stack-hungry step): when the
/// stack runs low, the rest of the recursion continues on a new segment, and on another one
/// when that one runs low, so the depth is bounded by memory, not by the stack size. Nothing
/// is copied and the old frames stay valid: `f` may borrow from them. A panic in `f`
/// propagates to the caller as if `f` had run in place.
///
/// It works inside openco coroutines (where it knows the coroutine's stack), on plain
/// threads, and on the main thread. `red_zone` must cover what the code between two calls
/// uses; `stack_size` should be well above `red_zone`, or every nested call on a new
/// segment grows again. Segments are at least 64 KiB, have a guard page, and are reused:
/// each thread keeps a few free ones, so a recursion that goes back and forth over a segment
/// boundary does not map a stack per call. An overflow of a segment inside a coroutine is
/// reported as a coroutine stack overflow.
///
/// The `openco::maybe_grow!` macro calls it with defaults (a 100 KiB red zone, 1 MiB segments).
///
/// # Panics
/// If a segment is needed and cannot be mapped (out of memory or address space); and when
/// `f` panics.
///
/// ```
/// use openco_runtime::maybe_grow;
///
/// // Each level has a 4 KiB frame: `sum(n)` needs `n * 4 KiB` of stack, or more.
/// fn sum(depth: u64) -> u64 {
///     maybe_grow(64 * 1024, 1024 * 1024, || {
///         let mut frame = [0u8; 4096];
///         std::hint::black_box(&mut frame); // the frame really is on the stack
///         if depth == 0 { 0 } else { depth + sum(depth - 1) + u64::from(frame[0]) }
///     })
/// }
///
/// // 2 MiB deep on a coroutine with a 256 KiB stack.
/// let rt = openco_runtime::Builder::new().workers(1).stack_size(256 * 1024).build()?;
/// assert_eq!(rt.blocking(|| sum(512)).join().unwrap(), 512 * 513 / 2);
/// // 16 MiB deep on the main thread (this example's): its stack is 8 MiB by default.
/// assert_eq!(sum(4096), 4096 * 4097 / 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn maybe_grow<R>(red_zone: usize, stack_size: usize, f: impl FnOnce() -> R) -> R {
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    match stack_limit(sp) {
        Some(limit) if sp.saturating_sub(limit) >= red_zone => f(),
        _ => grow(stack_size, f),
    }
}

/// Runs `f` on a segment of at least `stack_size` bytes.
#[inline(never)]
fn grow<R>(stack_size: usize, f: impl FnOnce() -> R) -> R {
    let page = sys::page_size();
    let usable = stack_size
        .max(MIN_SEGMENT)
        .checked_next_multiple_of(page)
        .unwrap_or_else(|| panic!("openco: maybe_grow: a stack segment of {stack_size} bytes is too large"));
    let mut lent = Lent::take(usable);
    // Panics in `f` are caught at the root of the segment and resumed here, on the caller's
    // stack, after the switch back: `lent` is then dropped as any other local.
    corosensei::on_stack(lent.segment.as_mut().expect("a lent segment"), f)
}

/// The lowest usable address of the stack `sp` is on, if openco knows that stack.
fn stack_limit(sp: usize) -> Option<usize> {
    let contains = |(_, high, usable): Guard| high != 0 && sp >= high && sp - high < usable;
    let running = overflow::running_guard();
    if contains(running) {
        return Some(running.1);
    }
    let lent = SEGMENTS.try_with(|s| s.borrow().active.iter().rev().copied().find(|&g| contains(g))).ok().flatten();
    if let Some(guard) = lent {
        overflow::set_running_guard(guard);
        return Some(guard.1);
    }
    let (low, high) = thread_stack()?;
    (sp >= low && sp < high).then_some(low)
}

/// The bounds of the calling thread's own stack, `(lowest usable address, top)`.
fn thread_stack() -> Option<(usize, usize)> {
    thread_local! {
        /// `(0, 0)`: not asked yet; an empty range: unknown.
        static THREAD_STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }
    THREAD_STACK
        .try_with(|cached| {
            if cached.get() == (0, 0) {
                cached.set(query_thread_stack().unwrap_or((1, 1)));
            }
            cached.get()
        })
        .ok()
}

fn query_thread_stack() -> Option<(usize, usize)> {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `attr` is an out-parameter, initialised by a successful `pthread_getattr_np`
    // and destroyed exactly once after that.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        let rc = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (rc == 0 && size > 0).then(|| (addr as usize, addr as usize + size))
    }
}

/// A stack segment: an anonymous mapping whose lowest page is the guard.
struct Segment {
    bottom: usize,
    len: usize,
}

// SAFETY: `base` and `limit` bound a mapping owned by this value, with a guard page at the
// bottom and at least `MIN_SEGMENT` usable bytes; `base` is page-aligned, hence aligned to
// `STACK_ALIGNMENT`.
unsafe impl corosensei::stack::Stack for Segment {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.bottom + self.len).expect("segment top is not null")
    }
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.bottom).expect("segment bottom is not null")
    }
}

impl Segment {
    /// Maps a segment of `usable` bytes (a multiple of the page size) plus its guard page.
    fn map(usable: usize) -> io::Result<Segment> {
        let page = sys::page_size();
        let len = usable.checked_add(page).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Unmapped on drop from here on.
        let segment = Segment { bottom: ptr as usize, len };
        // SAFETY: the first page of the mapping just made, which this segment owns.
        if unsafe { libc::mprotect(ptr, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(segment)
    }

    fn guard(&self) -> Guard {
        let page = sys::page_size();
        (self.bottom, self.bottom + page, self.len - page)
    }

    fn usable(&self) -> usize {
        self.len - sys::page_size()
    }

    /// Returns the pages below the top `KEEP` bytes to the kernel (invariant 3).
    fn trim(&self) {
        let low = self.bottom + sys::page_size();
        let high = (self.bottom + self.len).saturating_sub(KEEP);
        if high > low {
            // SAFETY: a range inside a private anonymous mapping this segment owns, on which
            // nothing runs (it is being cached); MADV_DONTNEED refills it with zero pages.
            unsafe { libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED) };
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the whole mapping is owned by this value and nothing runs on it any more.
        unsafe { libc::munmap(self.bottom as *mut libc::c_void, self.len) };
    }
}

/// This thread's segments: the free ones and the guards of those lent out.
struct Segments {
    free: Vec<Segment>,
    active: Vec<Guard>,
}

thread_local! {
    static SEGMENTS: RefCell<Segments> = const { RefCell::new(Segments { free: Vec::new(), active: Vec::new() }) };
}

/// A segment lent out to one `maybe_grow` call; dropping it gives the segment back.
struct Lent {
    /// `None` only once given back, in `drop`.
    segment: Option<Segment>,
    /// The guard published before the segment's.
    saved: Guard,
}

impl Lent {
    fn take(usable: usize) -> Lent {
        let cached = SEGMENTS
            .try_with(|s| {
                let free = &mut s.borrow_mut().free;
                let fit = free.iter().position(|seg| seg.usable() >= usable)?;
                Some(free.swap_remove(fit))
            })
            .ok()
            .flatten();
        let segment = match cached {
            Some(segment) => segment,
            None => Segment::map(usable).unwrap_or_else(|e| {
                panic!("openco: maybe_grow cannot map a stack segment of {} KiB: {e}", usable / 1024)
            }),
        };
        let guard = segment.guard();
        let _ = SEGMENTS.try_with(|s| s.borrow_mut().active.push(guard));
        let saved = overflow::running_guard();
        overflow::set_running_guard(guard);
        Lent { segment: Some(segment), saved }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        overflow::set_running_guard(self.saved);
        let Some(segment) = self.segment.take() else { return };
        let guard = segment.guard();
        let mut segment = Some(segment);
        let _ = SEGMENTS.try_with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.active.iter().rposition(|&g| g == guard) {
                s.active.swap_remove(i);
            }
            if s.free.len() < CACHED {
                let segment = segment.take().expect("not yet given back");
                segment.trim();
                s.free.push(segment);
            }
        });
        drop(segment); // not cached: unmapped here, outside the borrow
    }
}
