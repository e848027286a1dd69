//! Run queues ordered by priority.
//!
//! Each of the 256 priority levels has its own FIFO: a global [`Inject`] queue per level for
//! jobs submitted from outside the runtime, and per worker a [`Local`] `crossbeam-deque` per
//! level whose [`StealSide`] other workers steal from. A [`Bitmap`] per queue set says which
//! levels may hold jobs, so finding the most urgent one is a few `trailing_zeros`.
//!
//! Only jobs that have not started are queued here; started coroutines never move (see the
//! `scheduler` docs) and wait in the worker's own [`Ready`] queue.
//!
//! Bitmap protocol: a pusher pushes, then sets the bit; whoever finds a level empty clears the
//! bit, then re-checks the queue and sets the bit again if it is not empty. So a set bit may
//! be stale, but a non-empty level always has its bit set once its push has returned.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::task::Job;

pub(crate) const LEVELS: usize = 256;
const WORDS: usize = LEVELS / 64;

/// Which levels may hold work.
#[derive(Default)]
pub(crate) struct Bitmap([AtomicU64; WORDS]);

impl Bitmap {
    pub(crate) fn set(&self, level: u8) {
        self.0[level as usize / 64].fetch_or(1 << (level % 64), SeqCst);
    }
    fn clear(&self, level: u8) {
        self.0[level as usize / 64].fetch_and(!(1 << (level % 64)), SeqCst);
    }
    /// The most urgent level at or after `from`.
    pub(crate) fn first_from(&self, from: usize) -> Option<u8> {
        let mut word = from / 64;
        let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
        while word < WORDS {
            let bits = self.0[word].load(SeqCst) & mask;
            if bits != 0 {
                return Some((word * 64 + bits.trailing_zeros() as usize) as u8);
            }
            word += 1;
            mask = u64::MAX;
        }
        None
    }
    pub(crate) fn first(&self) -> Option<u8> {
        self.first_from(0)
    }
}

fn levels<T>() -> Box<[T]>
where
    T: Default,
{
    (0..LEVELS).map(|_| T::default()).collect()
}

/// The runtime-wide queue for jobs submitted from outside its workers.
pub(crate) struct Inject {
    levels: Box<[OnceLock<Injector<Job>>]>,
    bits: Bitmap,
}

impl Inject {
    pub(crate) fn new() -> Inject {
        Inject { levels: levels(), bits: Bitmap::default() }
    }

    pub(crate) fn push(&self, job: Job) {
        let level = job.header().priority().get();
        self.levels[level as usize].get_or_init(Injector::new).push(job);
        self.bits.set(level);
    }

    pub(crate) fn first(&self) -> Option<u8> {
        self.bits.first()
    }

    /// Takes the first job of `level`, moving a batch of the level's next jobs into `local`.
    pub(crate) fn pop_into(&self, level: u8, local: &Local) -> Option<Job> {
        let injector = self.levels[level as usize].get()?;
        loop {
            match injector.steal_batch_and_pop(local.level(level)) {
                Steal::Success(job) => {
                    local.mark(level);
                    if injector.is_empty() {
                        // Keep the bit exact, so that nobody wakes a worker for nothing.
                        self.bits.clear(level);
                        if !injector.is_empty() {
                            self.bits.set(level);
                        }
                    }
                    return Some(job);
                }
                Steal::Empty => {
                    self.bits.clear(level);
                    if injector.is_empty() {
                        return None;
                    }
                    self.bits.set(level);
                }
                Steal::Retry => {}
            }
        }
    }

    /// Takes any job, most urgent first (shutdown drains with it).
    pub(crate) fn pop_any(&self) -> Option<Job> {
        let mut from = 0;
        while let Some(level) = self.bits.first_from(from) {
            let injector = self.levels[level as usize].get()?;
            loop {
                match injector.steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
            self.bits.clear(level);
            if !injector.is_empty() {
                self.bits.set(level);
                continue;
            }
            from = level as usize + 1;
        }
        None
    }
}

/// The half of a worker's queues that other workers see.
pub(crate) struct StealSide {
    stealers: Box<[OnceLock<Stealer<Job>>]>,
    bits: Bitmap,
}

impl StealSide {
    pub(crate) fn new() -> StealSide {
        StealSide { stealers: levels(), bits: Bitmap::default() }
    }

    pub(crate) fn has_work(&self) -> bool {
        self.bits.first().is_some()
    }

    /// Steals the most urgent job, moving a batch of its level into `thief`'s queue.
    pub(crate) fn steal_into(&self, thief: &Local) -> Option<Job> {
        let mut from = 0;
        while let Some(level) = self.bits.first_from(from) {
            if let Some(stealer) = self.stealers[level as usize].get() {
                loop {
                    match stealer.steal_batch_and_pop(thief.level(level)) {
                        Steal::Success(job) => {
                            thief.mark(level);
                            return Some(job);
                        }
                        Steal::Empty => break,
                        Steal::Retry => {}
                    }
                }
            }
            from = level as usize + 1;
        }
        None
    }
}

/// A worker's own queues; lives on the worker thread, used through `&self` by the worker loop
/// and by coroutines of that worker that submit jobs.
pub(crate) struct Local {
    levels: Box<[OnceCell<Worker<Job>>]>,
    side: std::sync::Arc<crate::scheduler::Remote>,
}

impl Local {
    pub(crate) fn new(side: std::sync::Arc<crate::scheduler::Remote>) -> Local {
        Local { levels: levels(), side }
    }

    fn steal_side(&self) -> &StealSide {
        &self.side.steal
    }

    fn level(&self, level: u8) -> &Worker<Job> {
        self.levels[level as usize].get_or_init(|| {
            let worker = Worker::new_fifo();
            let _ = self.steal_side().stealers[level as usize].set(worker.stealer());
            worker
        })
    }

    fn mark(&self, level: u8) {
        if !self.level(level).is_empty() {
            self.steal_side().bits.set(level);
        }
    }

    pub(crate) fn push(&self, job: Job) {
        let level = job.header().priority().get();
        self.level(level).push(job);
        self.steal_side().bits.set(level);
    }

    pub(crate) fn first(&self) -> Option<u8> {
        self.steal_side().bits.first()
    }

    pub(crate) fn pop(&self, level: u8) -> Option<Job> {
        let queue = self.level(level);
        let job = queue.pop();
        if queue.is_empty() {
            // Only this worker pushes to its queues, so nothing can refill it meanwhile.
            self.steal_side().bits.clear(level);
        }
        job
    }

    pub(crate) fn pop_any(&self) -> Option<Job> {
        let level = self.first()?;
        self.pop(level).or_else(|| self.pop_any())
    }
}

/// Started coroutines that are ready to resume, by priority; worker-local.
pub(crate) struct Ready {
    levels: Box<[VecDeque<u32>]>,
    bits: [u64; WORDS],
}

impl Ready {
    pub(crate) fn new() -> Ready {
        Ready { levels: levels(), bits: [0; WORDS] }
    }

    pub(crate) fn push(&mut self, level: u8, slot: u32) {
        self.levels[level as usize].push_back(slot);
        self.bits[level as usize / 64] |= 1 << (level % 64);
    }

    pub(crate) fn first(&self) -> Option<u8> {
        let word = self.bits.iter().position(|&w| w != 0)?;
        Some((word * 64 + self.bits[word].trailing_zeros() as usize) as u8)
    }

    pub(crate) fn pop(&mut self, level: u8) -> Option<u32> {
        let queue = &mut self.levels[level as usize];
        let slot = queue.pop_front();
        if queue.is_empty() {
            self.bits[level as usize / 64] &= !(1 << (level % 64));
        }
        slot
    }
}
