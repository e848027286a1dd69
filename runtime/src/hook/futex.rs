//! `syscall(SYS_futex, ...)`: std's and parking_lot's locks wait by suspending the coroutine.
//!
//! Every std lock, `Condvar`, `Once`, `Barrier`, `thread::park` and parking_lot waits with
//! `futex(FUTEX_WAIT*)` through libc's `syscall()` function, which this hook interposes.
//! Outside a coroutine a wait goes to the kernel as it is. Inside one, the coroutine joins a
//! waiter table keyed by the futex address and suspends; its worker runs the other
//! coroutines meanwhile, including the one that holds the lock.
//!
//! Wakes (`FUTEX_WAKE*`), from any thread, first wake the kernel's waiters, then, if the
//! table holds anyone, up to the rest of the count from the table, oldest first. Wakes that
//! never pass through this hook (another process on a shared futex, glibc-internal calls,
//! raw `syscall` instructions) are caught by a re-check: a suspended waiter looks at the
//! futex word after 10 ms, then at doubling intervals up to 1 s, and returns once it changed.
//! A lost wake-up thus costs latency, never a hang; a spurious return is allowed by the
//! futex contract (every caller re-checks).
//!
//! No lost wake-ups: the value check and the insertion happen under the table bucket's lock,
//! and a waker takes the same lock after changing the value, as the kernel's hash buckets do.
//!
//! Requeue and wake-op commands (not used by std or parking_lot) go to the kernel and wake
//! every table waiter on the addresses they name (spuriously, which is allowed); PI futexes
//! and `futex_waitv` go to the kernel as they are, blocking the thread.
//!
//! `thread::park` needs more. std parks a thread on a futex word kept per *thread*
//! (`EMPTY` 0, `PARKED` -1, `NOTIFIED` 1), and the coroutines of a worker share their
//! thread's word: two of them parked at once would drive it to -2, after which `unpark`
//! no longer calls `FUTEX_WAKE` and a token can be taken by the wrong coroutine (std's
//! `mpsc`, crossbeam-channel and many pools block this way). Each worker finds its word's
//! address at start-up (`probe_parker`: a `park_timeout` whose futex call the hook records).
//! Waits on that word get thread-park semantics with spurious returns, which std allows:
//! - the word is kept at `PARKED` while any coroutine of the worker waits on it (normalised
//!   by each waiter, and by the worker between two coroutines: `tend_parker`), so every
//!   `unpark` wakes through this hook; such a wake reaches *all* the worker's parked
//!   coroutines, and each re-checks its own condition (std's callers loop);
//! - a coroutine woken whose token another took returns from `park` at once (spuriously);
//! - a token set while nobody could see it is found by `tend_parker`, and a token lost in
//!   the remaining races by the re-check, which returns from `park` spuriously.
//!
//! parking_lot keeps its per-thread wait state in a thread-local `ThreadData` that its
//! queues link *before* the futex call: two coroutines of one worker waiting at once would
//! share it and corrupt the queue (tokio's internal locks hit this under load). So waits on
//! a futex word in the thread's TLS block the thread, as without openco (`in_thread_tls`).
//!
//! The runtime's own code enters the kernel through `sys::raw`, so none of its
//! synchronisation passes here. Bucket locks spin (with `sched_yield`), never futex.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::{c_long, timespec};

use crate::coroutine::{self, Context, Suspend};
use crate::scheduler::{Shared, WakeTarget};
use crate::sys::{self, raw};

const WAIT: i32 = libc::FUTEX_WAIT;
const WAKE: i32 = libc::FUTEX_WAKE;
const REQUEUE: i32 = libc::FUTEX_REQUEUE;
const CMP_REQUEUE: i32 = libc::FUTEX_CMP_REQUEUE;
const WAKE_OP: i32 = libc::FUTEX_WAKE_OP;
const WAIT_BITSET: i32 = libc::FUTEX_WAIT_BITSET;
const WAKE_BITSET: i32 = libc::FUTEX_WAKE_BITSET;
const PRIVATE: i32 = libc::FUTEX_PRIVATE_FLAG;
const CLOCK_REALTIME: i32 = libc::FUTEX_CLOCK_REALTIME;
const CMD_MASK: i32 = !(PRIVATE | CLOCK_REALTIME);

/// The first re-check of a suspended waiter, and the longest interval between two.
const RECHECK_FIRST: Duration = Duration::from_millis(10);
const RECHECK_MAX: Duration = Duration::from_secs(1);

/// std's thread-parker states (library/std/src/sys/sync/thread_parking/futex.rs).
const PARKED: i32 = -1;
const NOTIFIED: i32 = 1;
/// The longest re-check interval of a `thread::park` wait: a token lost in a race costs at
/// most this long.
const PARK_RECHECK_MAX_MS: u32 = 100;

thread_local! {
    /// This thread's std parker word, once `probe_parker` found it; 0 otherwise.
    static PARKER: Cell<usize> = const { Cell::new(0) };
    static PROBING: Cell<bool> = const { Cell::new(false) };
    /// Coroutines of this thread waiting on `PARKER`.
    static PARKER_WAITERS: Cell<usize> = const { Cell::new(0) };
}

/// Finds the address of the calling thread's std parker word: parks with a tiny timeout and
/// records the address of the futex wait that std makes. Called by each worker at start.
pub(crate) fn probe_parker() {
    PROBING.with(|p| p.set(true));
    for _ in 0..2 {
        // The first may return at once on a pending token, without a futex call.
        std::thread::park_timeout(Duration::from_nanos(1));
        if PARKER.with(Cell::get) != 0 {
            break;
        }
    }
    PROBING.with(|p| p.set(false));
}

/// `probe_parker` for a thread that also runs code of its own (the single-thread
/// `Scheduler`'s): probes once per thread. The probe may take an `unpark` token that was
/// pending, so one is given back: a spurious return from a later `park`, which std allows,
/// instead of a lost wake-up.
pub(crate) fn probe_parker_once() {
    if PARKER.with(Cell::get) == 0 {
        probe_parker();
        std::thread::current().unpark();
    }
}

/// Called when a `Scheduler` stops driving its coroutines and its thread goes back to code
/// of its own: the word goes from `PARKED` (kept there by `tend_parker`) back to `EMPTY`, so
/// that the thread's own `thread::park` waits as std expects (at -2 it would spin). A token
/// set meanwhile is found by `tend_parker` at the next drive, or by the coroutines' re-check.
pub(crate) fn release_parker() {
    let addr = PARKER.with(Cell::get);
    if addr == 0 {
        return;
    }
    // The thread runs (it is calling this), so `PARKED` is the coroutines' doing, not its own.
    // SAFETY: as in `tend_parker`.
    let word = unsafe { &*(addr as *const AtomicI32) };
    let _ = word.compare_exchange(PARKED, 0, SeqCst, SeqCst);
}

/// Called by the worker between two coroutines: while some of them wait in `thread::park`,
/// keeps the parker word at `PARKED` (so the next `unpark` calls `FUTEX_WAKE`), and wakes
/// them all if an `unpark` left a token that no wake announced.
pub(crate) fn tend_parker() {
    if PARKER_WAITERS.with(Cell::get) == 0 {
        return;
    }
    let addr = PARKER.with(Cell::get);
    // SAFETY: `addr` is this thread's parker word, found by `probe_parker`; it lives as long
    // as the thread's `Thread` handle, that is, as long as the thread.
    let word = unsafe { &*(addr as *const AtomicI32) };
    let mut w = word.load(SeqCst);
    while w != PARKED && w != NOTIFIED {
        match word.compare_exchange(w, PARKED, SeqCst, SeqCst) {
            Ok(_) => return,
            Err(now) => w = now,
        }
    }
    if w == NOTIFIED {
        TABLE.wake(addr, u32::MAX, usize::MAX);
    }
}

/// # Safety
/// As libc's `syscall`: the arguments are those the kernel documents for `number`.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let args = [a1 as usize, a2 as usize, a3 as usize, a4 as usize, a5 as usize, a6 as usize];
    if number != libc::SYS_futex {
        // SAFETY: the caller's system call, passed on as it is.
        return unsafe { raw::syscall(number, args) };
    }
    let op = a2 as i32;
    // A futex word in this thread's static TLS (parking_lot's per-thread `ThreadData`) is
    // shared by the worker's coroutines, and parking_lot links it into its queues before
    // waiting: a second coroutine waiting there at once would corrupt them. Such waits
    // block the thread, so at most one coroutine of a worker is ever inside one.
    let ctx = coroutine::current().filter(|_| !in_thread_tls(a1 as usize));
    match (op & CMD_MASK, ctx) {
        (WAIT | WAIT_BITSET, Some(ctx)) => {
            let bitset = if op & CMD_MASK == WAIT { u32::MAX } else { a6 as u32 };
            // SAFETY: the caller's futex arguments: `a4` is null or a valid `timespec`.
            match unsafe { wait(ctx, a1 as usize, op, a3 as u32, a4 as *const timespec, bitset) } {
                Ok(()) => 0,
                Err(errno) => {
                    sys::set_errno(errno);
                    -1
                }
            }
        }
        (WAKE | WAKE_BITSET, _) => {
            // SAFETY: the caller's futex wake, passed on as it is.
            let woken = unsafe { raw::syscall(number, args) };
            if woken < 0 {
                return woken;
            }
            let bitset = if op & CMD_MASK == WAKE { u32::MAX } else { a6 as u32 };
            let count = (a3 as i32).max(1) as usize;
            woken + TABLE.wake(a1 as usize, bitset, count.saturating_sub(woken as usize)) as c_long
        }
        (REQUEUE | CMP_REQUEUE | WAKE_OP, _) => {
            // SAFETY: as above.
            let ret = unsafe { raw::syscall(number, args) };
            TABLE.wake(a1 as usize, u32::MAX, usize::MAX);
            TABLE.wake(a5 as usize, u32::MAX, usize::MAX);
            ret
        }
        (WAIT | WAIT_BITSET, None) if PROBING.with(Cell::get) => {
            PARKER.with(|p| p.set(a1 as usize));
            // SAFETY: as above.
            unsafe { raw::syscall(number, args) }
        }
        // SAFETY: as above (waits outside coroutines, PI futexes, unknown commands).
        _ => unsafe { raw::syscall(number, args) },
    }
}

/// A coroutine's `FUTEX_WAIT`/`FUTEX_WAIT_BITSET`.
///
/// # Safety
/// `timeout` is null or valid for reads.
unsafe fn wait(
    ctx: &Context,
    addr: usize,
    op: i32,
    expected: u32,
    timeout: *const timespec,
    bitset: u32,
) -> Result<(), i32> {
    if bitset == 0 {
        return Err(libc::EINVAL);
    }
    // SAFETY: guaranteed by the caller.
    let deadline = match unsafe { timeout.as_ref() } {
        None => None,
        Some(ts) if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) => return Err(libc::EINVAL),
        Some(ts) => {
            let ts = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            if op & CMD_MASK == WAIT {
                Some(Instant::now().checked_add(ts))
            } else {
                // Absolute, on CLOCK_MONOTONIC (Instant's clock) or CLOCK_REALTIME.
                let clock = if op & CLOCK_REALTIME != 0 { libc::CLOCK_REALTIME } else { libc::CLOCK_MONOTONIC };
                let left = ts.saturating_sub(now(clock));
                Some(Instant::now().checked_add(left))
            }
        }
    };
    // A deadline too far to represent is no deadline.
    let deadline = deadline.flatten();
    if expected as i32 == PARKED && addr == PARKER.with(Cell::get) {
        return park(ctx, addr, deadline);
    }
    let waiter = Waiter::new(ctx, addr, bitset, false);
    let bucket = TABLE.bucket(addr);
    let mut recheck = RECHECK_FIRST;
    let mut first = true;
    loop {
        {
            let guard = bucket.lock();
            // Counted before the value check, so that a waker that changes the value after
            // the check sees the count (see `Table::wake`).
            TABLE.count.fetch_add(1, SeqCst);
            fence(SeqCst);
            // The kernel compares the word (and validates the address) under our bucket lock.
            let matches = value_matches(addr, expected);
            if matches != Ok(true) {
                TABLE.count.fetch_sub(1, SeqCst);
            }
            match matches {
                Ok(true) => guard.push(&waiter),
                Ok(false) if first => {
                    drop(guard);
                    coroutine::consume_budget(ctx);
                    return Err(libc::EAGAIN);
                }
                Ok(false) => return Ok(()), // it changed while we slept: a missed wake
                Err(errno) => return if first { Err(errno) } else { Ok(()) },
            }
        }
        first = false;
        let tick = Instant::now().checked_add(recheck);
        coroutine::suspend(ctx, Suspend::Park(earliest(deadline, tick)));
        {
            let guard = bucket.lock();
            if waiter.woken.get() {
                return Ok(());
            }
            guard.remove(&waiter);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(libc::ETIMEDOUT);
        }
        recheck = (recheck * 2).min(RECHECK_MAX);
    }
}

/// Whether `addr` lies in the calling thread's static TLS block (or right beside it), found
/// from the thread pointer: glibc puts the static TLS below it on x86_64 and above it on
/// aarch64. The window is generous: next to it lies only the worker thread's own stack,
/// where the scheduler keeps no futex word.
fn in_thread_tls(addr: usize) -> bool {
    const WINDOW: usize = 512 * 1024;
    let tp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the TCB's self pointer at fs:0, which glibc sets for every thread.
    unsafe {
        core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads the thread pointer register; no memory is touched.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags));
    }
    if cfg!(target_arch = "x86_64") {
        addr < tp.saturating_add(4096) && addr >= tp.saturating_sub(WINDOW)
    } else {
        addr >= tp.saturating_sub(4096) && addr < tp.saturating_add(WINDOW)
    }
}

/// A coroutine's wait in `thread::park` / `park_timeout` (see the module docs). std calls it
/// with the word at `PARKED` or below (another coroutine parked too) or at `EMPTY` (after a
/// wake whose token another coroutine took), and takes `NOTIFIED` back to `EMPTY` after it.
fn park(ctx: &Context, addr: usize, deadline: Option<Instant>) -> Result<(), i32> {
    // SAFETY: `addr` is this thread's parker word (see `tend_parker`).
    let word = unsafe { &*(addr as *const AtomicI32) };
    if ctx.parker_woken.replace(false) {
        // Woken last time, and std's loop is back: the token was another coroutine's take.
        // Return from `park` now (spuriously) so that the caller re-checks its condition.
        // Reported as a wake (0), not as the kernel's EAGAIN: errno stays the caller's.
        word.store(NOTIFIED, SeqCst);
        return Ok(());
    }
    let waiter = Waiter::new(ctx, addr, u32::MAX, true);
    let bucket = TABLE.bucket(addr);
    {
        let guard = bucket.lock();
        TABLE.count.fetch_add(1, SeqCst);
        fence(SeqCst);
        let mut w = word.load(SeqCst);
        while w != PARKED {
            if w == NOTIFIED {
                TABLE.count.fetch_sub(1, SeqCst);
                drop(guard);
                coroutine::consume_budget(ctx);
                return Err(libc::EAGAIN);
            }
            match word.compare_exchange(w, PARKED, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        guard.push(&waiter);
    }
    PARKER_WAITERS.with(|n| n.set(n.get() + 1));
    let recheck_ms = ctx.parker_recheck.get().max(RECHECK_FIRST.as_millis() as u32);
    let tick = Instant::now().checked_add(Duration::from_millis(recheck_ms.into()));
    let wake_at = earliest(deadline, tick);
    coroutine::suspend(ctx, Suspend::Park(wake_at));
    PARKER_WAITERS.with(|n| n.set(n.get() - 1));
    {
        let guard = bucket.lock();
        if waiter.woken.get() {
            ctx.parker_woken.set(true);
            ctx.parker_recheck.set(0);
            return Ok(());
        }
        guard.remove(&waiter);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(libc::ETIMEDOUT);
    }
    // A re-check: return from `park` spuriously (next time the wait lasts longer).
    ctx.parker_woken.set(true);
    ctx.parker_recheck.set((recheck_ms * 2).min(PARK_RECHECK_MAX_MS));
    Ok(())
}

/// Whether the futex word still holds `expected`. Misaligned and null addresses get the
/// kernel's `EINVAL`/`EFAULT`; any other address is read as the kernel would read it (an
/// unmapped one faults, where the kernel would return `EFAULT`: only a caller that already
/// broke the futex contract can tell). A plain load, not a zero-timeout `FUTEX_WAIT`: that
/// one sleeps for the timer slack (~50 us) and can swallow a concurrent wake.
fn value_matches(addr: usize, expected: u32) -> Result<bool, i32> {
    if addr % 4 != 0 {
        return Err(libc::EINVAL);
    }
    if addr == 0 {
        return Err(libc::EFAULT);
    }
    // SAFETY: a futex word is an aligned `u32` the caller shares with its wakers; reading it
    // atomically is what the kernel does.
    let word = unsafe { &*(addr as *const std::sync::atomic::AtomicU32) };
    Ok(word.load(SeqCst) == expected)
}

fn now(clock: libc::clockid_t) -> Duration {
    let mut ts = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; clock_gettime is not hooked (vDSO).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The earlier of two optional instants (`None`: never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A suspended coroutine in the table. Lives on the coroutine's stack; linked only while the
/// coroutine is suspended in `wait`, and only touched under its bucket's lock.
struct Waiter {
    addr: usize,
    bitset: u32,
    /// A `thread::park` wait: any wake of its address wakes all such waiters.
    broadcast: bool,
    next: Cell<*const Waiter>,
    prev: Cell<*const Waiter>,
    /// Set by the waker that unlinked it.
    woken: Cell<bool>,
    shared: *const Arc<Shared>,
    target: WakeTarget,
}

impl Waiter {
    fn new(ctx: &Context, addr: usize, bitset: u32, broadcast: bool) -> Waiter {
        Waiter {
            addr,
            bitset,
            broadcast,
            next: Cell::new(ptr::null()),
            prev: Cell::new(ptr::null()),
            woken: Cell::new(false),
            shared: &ctx.shared,
            target: ctx.target,
        }
    }
}

const BUCKETS: usize = 256;

struct Table {
    buckets: [Bucket; BUCKETS],
    /// Waiters in all buckets: lets a wake with nobody in the table skip the locks.
    count: AtomicUsize,
}

static TABLE: Table = Table { buckets: [const { Bucket::new() }; BUCKETS], count: AtomicUsize::new(0) };

impl Table {
    fn bucket(&self, addr: usize) -> &Bucket {
        // Fibonacci hashing of the word index.
        let h = ((addr >> 2) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
        &self.buckets[h as usize % BUCKETS]
    }

    /// Wakes up to `count` table waiters on `addr` whose bitset meets `bitset`. Returns how
    /// many.
    fn wake(&self, addr: usize, bitset: u32, count: usize) -> usize {
        // Pairs with the waiter's increment (SeqCst on both sides): either we see the waiter,
        // or it sees the new futex value (the caller changed it before calling wake).
        fence(SeqCst);
        if count == 0 || self.count.load(SeqCst) == 0 {
            return 0;
        }
        let mut woken = 0;
        let mut count = count;
        // Wake-ups are sent after the lock is released; a small batch keeps that allocation-free.
        let mut batch: [Option<(Arc<Shared>, WakeTarget)>; 16] = [const { None }; 16];
        loop {
            let mut n = 0;
            {
                let guard = self.bucket(addr).lock();
                let mut cur = guard.head();
                while !cur.is_null() && woken < count && n < batch.len() {
                    // SAFETY: linked waiters are alive (their coroutines are suspended in
                    // `wait`, which unlinks before returning) and we hold the bucket lock.
                    let w = unsafe { &*cur };
                    cur = w.next.get();
                    if w.addr != addr || w.bitset & bitset == 0 {
                        continue;
                    }
                    if w.broadcast {
                        count = usize::MAX;
                    }
                    guard.remove(w);
                    w.woken.set(true);
                    // SAFETY: `shared` points at the waiting coroutine's `Context::shared`,
                    // alive while it is linked.
                    batch[n] = Some((unsafe { (*w.shared).clone() }, w.target));
                    n += 1;
                    woken += 1;
                }
            }
            for (shared, target) in batch.iter_mut().take(n).filter_map(Option::take) {
                shared.wake(target);
            }
            if n < batch.len() || woken >= count {
                return woken;
            }
        }
    }
}

struct Bucket {
    locked: AtomicBool,
    head: Cell<*const Waiter>,
    tail: Cell<*const Waiter>,
}

// SAFETY: `head`/`tail` and the waiters they reach are only touched under `locked`.
unsafe impl Sync for Bucket {}

impl Bucket {
    const fn new() -> Bucket {
        Bucket { locked: AtomicBool::new(false), head: Cell::new(ptr::null()), tail: Cell::new(ptr::null()) }
    }

    fn lock(&self) -> BucketGuard<'_> {
        let mut spins = 0u32;
        while self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no arguments and cannot fail in a harmful way.
                unsafe { raw::syscall6(libc::SYS_sched_yield, [0; 6]) };
            }
        }
        BucketGuard(self)
    }
}

struct BucketGuard<'a>(&'a Bucket);

impl BucketGuard<'_> {
    fn head(&self) -> *const Waiter {
        self.0.head.get()
    }

    /// Appends `w` (FIFO: the oldest waiter is woken first). The caller counted it in
    /// `Table::count` already.
    fn push(&self, w: &Waiter) {
        let b = self.0;
        w.next.set(ptr::null());
        w.prev.set(b.tail.get());
        if b.tail.get().is_null() {
            b.head.set(w);
        } else {
            // SAFETY: the tail is a linked, live waiter (see `Table::wake`); we hold the lock.
            unsafe { (*b.tail.get()).next.set(w) };
        }
        b.tail.set(w);
    }

    /// Unlinks `w`, which is linked in this bucket, and uncounts it.
    fn remove(&self, w: &Waiter) {
        let b = self.0;
        let (prev, next) = (w.prev.get(), w.next.get());
        if prev.is_null() {
            b.head.set(next);
        } else {
            // SAFETY: neighbours of a linked waiter are linked and alive; we hold the lock.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            b.tail.set(prev);
        } else {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
        TABLE.count.fetch_sub(1, SeqCst);
    }
}

impl Drop for BucketGuard<'_> {
    fn drop(&mut self) {
        self.0.locked.store(false, Release);
    }
}
