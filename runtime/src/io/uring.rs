//! io_uring: one ring per worker, for the file calls epoll cannot wait for.
//!
//! Regular files are always "ready" to epoll, so a blocking `read` of a file would stop the
//! whole worker. Inside a coroutine the file hooks (`hook::file`) instead build an io_uring
//! entry and suspend with [`Suspend::Uring`]; the worker copies the entry into its ring and
//! resumes the coroutine when the completion arrives. Completions are reaped by the worker's
//! own loop: the ring signals the worker's wake-up eventfd (`register_eventfd`), which sits
//! in the same epoll instance as the sockets, so a parked worker wakes for file completions,
//! socket readiness, timers and other threads alike. Reaping itself reads shared memory and
//! costs no system call.
//!
//! A ring is created on a worker's first file call, not before: most runtimes never touch a
//! file. The first ring of the process probes the kernel: the ring must be creatable (not
//! refused by seccomp or `kernel.io_uring_disabled`), honour "offset -1 is the current file
//! position" and never drop completions, and each opcode the hooks use is looked up with
//! `IORING_REGISTER_PROBE`. A refused ring turns io_uring off for the process; an opcode the
//! kernel lacks sends that call alone to the fallback. The fallback is the `offload` helper
//! pool (the same one `getaddrinfo` uses): the libc call runs there while the coroutine
//! parks, so no file call waits for a device on the worker (what the page cache answers
//! inline aside: see `hook::file`). `OPENCO_IO_URING=0` or
//! [`Builder::io_uring(false)`](crate::Builder::io_uring) forces the fallback.
//!
//! Invariants:
//! 1. An entry's memory (buffers, paths, iovecs, the `statx` buffer) and its [`Op`] stay
//!    valid until its completion is reaped: they belong to the suspended coroutine, which
//!    does not leave [`run`] before `Op::done` (it re-parks on spurious wake-ups) and is never
//!    unwound (invariant 3 of `coroutine`); an abandoned coroutine's stack is leaked, never
//!    unmapped, so a completion that lands after shutdown writes to memory nobody reuses.
//! 2. At most `cq_entries` operations are in flight; further entries wait in `backlog`, so
//!    the completion queue never overflows.
//! 3. Only the worker thread touches its ring (it is created, used and dropped there).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::*};

use io_uring::{opcode, squeue::Entry, IoUring, Probe};

use crate::coroutine::{self, Context, Suspend};

/// Submission queue size; the completion queue is twice as large.
const ENTRIES: u32 = 256;

/// `STATE`: no ring created yet, so nothing is known of the kernel.
const UNKNOWN: u8 = 0;
/// A ring was created and probed: `SUPPORTED` holds its opcodes.
const ON: u8 = 1;
/// The kernel refused a ring: every file call takes the fallback.
const OFF: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// One bit per opcode the kernel supports, filled in before `STATE` becomes `ON`.
static SUPPORTED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Operations done on a ring, and file calls sent to the helper pool instead.
static RING_OPS: AtomicU64 = AtomicU64::new(0);
static OFFLOADED_OPS: AtomicU64 = AtomicU64::new(0);

/// The value `Op::res` holds when the worker had no ring for the entry.
pub(crate) const NO_RING: i32 = i32::MIN;

/// Whether a coroutine of a runtime built with io_uring on should try the ring for
/// `opcode`: until the first ring has probed the kernel, yes (the worker answers
/// [`NO_RING`] if it cannot).
pub(crate) fn may_use(opcode: u8) -> bool {
    match STATE.load(Acquire) {
        UNKNOWN => true,
        ON => SUPPORTED[opcode as usize / 64].load(Relaxed) & (1 << (opcode % 64)) != 0,
        _ => false,
    }
}

/// Counts a file call sent to the helper pool (for [`file_io_counts`]).
pub(crate) fn count_offloaded() {
    OFFLOADED_OPS.fetch_add(1, Relaxed);
}

/// How many file calls made inside coroutines went to an io_uring ring and how many to the
/// helper threads, since the process started. For tests and diagnostics.
#[doc(hidden)]
pub fn file_io_counts() -> (u64, u64) {
    (RING_OPS.load(Relaxed), OFFLOADED_OPS.load(Relaxed))
}

/// Whether this process can use io_uring for file calls: `Some(false)` once a ring was
/// refused (or the kernel lacks what openco needs), `Some(true)` once one was set up, `None`
/// before any runtime's worker made a file call.
pub fn io_uring_available() -> Option<bool> {
    match STATE.load(Acquire) {
        ON => Some(true),
        OFF => Some(false),
        _ => None,
    }
}

/// One operation of a suspended coroutine, on its stack. The worker writes `slot`/`gen` when
/// it queues the entry, and `res`/`done` when the completion arrives.
pub(crate) struct Op {
    pub(crate) slot: Cell<u32>,
    pub(crate) gen: Cell<u32>,
    res: Cell<i32>,
    done: Cell<bool>,
}

impl Op {
    /// Records the completion `res`. Returns the coroutine to wake (slot, generation).
    pub(crate) fn complete(&self, res: i32) -> (u32, u32) {
        self.res.set(res);
        self.done.set(true);
        (self.slot.get(), self.gen.get())
    }
}

/// Runs `entry` on this worker's ring, suspending the coroutine until its completion.
/// Returns the completion's result (a count, or `-errno`), or `None` when the worker has no
/// ring: the caller then takes the fallback.
///
/// # Safety
/// Every pointer in `entry` stays valid, and the memory it names unused by anyone else,
/// until this call returns (true of the hooked call's own arguments).
pub(crate) unsafe fn run(ctx: &Context, entry: Entry) -> Option<i32> {
    let op = Op { slot: Cell::new(0), gen: Cell::new(0), res: Cell::new(0), done: Cell::new(false) };
    let guard = crate::offload::AbortOnUnwind;
    coroutine::suspend(ctx, Suspend::Uring { entry: &entry, op: &op });
    // Invariant 1: a wake-up meant for something else must not end the wait.
    while !op.done.get() {
        coroutine::suspend(ctx, Suspend::Park(None));
    }
    std::mem::forget(guard);
    let res = op.res.get();
    if res == NO_RING {
        return None;
    }
    RING_OPS.fetch_add(1, Relaxed);
    Some(res)
}

/// A worker's ring.
pub(crate) struct Ring {
    ring: IoUring,
    /// Entries pushed to the submission queue and not yet submitted.
    unsubmitted: u32,
    /// Submitted operations whose completion has not been reaped.
    in_flight: u32,
    /// Entries waiting for room (invariant 2).
    backlog: VecDeque<Entry>,
    cap: u32,
}

/// The opcodes the file hooks use (probed one by one).
const OPCODES: [u8; 10] = [
    opcode::Readv::CODE,
    opcode::Writev::CODE,
    opcode::Fsync::CODE,
    opcode::Close::CODE,
    opcode::Statx::CODE,
    opcode::UnlinkAt::CODE,
    opcode::RenameAt::CODE,
    opcode::MkDirAt::CODE,
    opcode::Ftruncate::CODE,
    opcode::Fallocate::CODE,
];

impl Ring {
    /// Creates a ring that signals `eventfd` on each completion; `None` (and io_uring off for
    /// the process, if the kernel refused it) when it cannot be had.
    pub(crate) fn new(eventfd: i32) -> Option<Ring> {
        match Ring::try_new(eventfd) {
            Ok(ring) => Some(ring),
            Err(err) => {
                // ENOMEM (locked-memory limits of old kernels) may pass: try again on the
                // next worker. Anything else is the kernel's answer for good.
                if err.raw_os_error() != Some(libc::ENOMEM) {
                    STATE.store(OFF, Release);
                }
                tracing::debug!("openco: no io_uring ({err}); file calls run on helper threads");
                None
            }
        }
    }

    fn try_new(eventfd: i32) -> io::Result<Ring> {
        let ring = IoUring::builder().dontfork().build(ENTRIES)?;
        let params = ring.params();
        if !params.is_feature_rw_cur_pos() || !params.is_feature_nodrop() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        if STATE.load(Acquire) != ON {
            let mut probe = Probe::new();
            ring.submitter().register_probe(&mut probe)?;
            for code in OPCODES.into_iter().filter(|&c| probe.is_supported(c)) {
                SUPPORTED[code as usize / 64].fetch_or(1 << (code % 64), Relaxed);
            }
        }
        ring.submitter().register_eventfd(eventfd)?;
        STATE.store(ON, Release);
        let cap = ring.params().cq_entries();
        Ok(Ring { ring, unsubmitted: 0, in_flight: 0, backlog: VecDeque::new(), cap })
    }

    /// Queues `entry` for the next [`submit`](Ring::submit).
    ///
    /// # Safety
    /// The memory `entry` names stays valid until its completion is reaped (invariant 1).
    pub(crate) unsafe fn push(&mut self, entry: Entry) {
        if !self.backlog.is_empty() || self.in_flight + self.unsubmitted >= self.cap {
            self.backlog.push_back(entry);
            return;
        }
        // SAFETY: guaranteed by the caller.
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.backlog.push_back(entry);
            return;
        }
        self.unsubmitted += 1;
    }

    /// Moves backlogged entries into the submission queue while there is room.
    fn refill(&mut self) {
        while self.in_flight + self.unsubmitted < self.cap {
            let Some(entry) = self.backlog.pop_front() else { break };
            // SAFETY: the entry came through `push`, whose caller vouched for its memory.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                self.backlog.push_front(entry);
                break;
            }
            self.unsubmitted += 1;
        }
    }

    /// Whether entries wait to be submitted.
    pub(crate) fn has_unsubmitted(&self) -> bool {
        self.unsubmitted > 0
    }

    /// Hands the queued entries to the kernel. A refusal (`EBUSY`, `EAGAIN`, `EINTR`) leaves
    /// them queued for the next turn.
    pub(crate) fn submit(&mut self) {
        self.refill();
        if self.unsubmitted == 0 {
            return;
        }
        match self.ring.submit() {
            Ok(n) => {
                let n = (n as u32).min(self.unsubmitted);
                self.unsubmitted -= n;
                self.in_flight += n;
            }
            Err(err) => tracing::trace!("openco: io_uring submit deferred ({err})"),
        }
    }

    /// Whether completions are waiting to be reaped.
    pub(crate) fn has_completions(&self) -> bool {
        // SAFETY: only this worker's thread reads the completion queue (invariant 3), and not
        // while this view exists.
        self.in_flight > 0 && !unsafe { self.ring.completion_shared() }.is_empty()
    }

    /// Reaps every completion: `complete(user_data, result)` for each.
    pub(crate) fn reap(&mut self, mut complete: impl FnMut(u64, i32)) {
        if self.in_flight == 0 {
            return;
        }
        let mut n = 0;
        for cqe in self.ring.completion() {
            complete(cqe.user_data(), cqe.result());
            n += 1;
        }
        self.in_flight -= n.min(self.in_flight);
        if n > 0 && !self.backlog.is_empty() {
            self.refill();
        }
    }
}
