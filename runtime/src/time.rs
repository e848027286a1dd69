//! Per-worker timers: a binary heap of deadlines.
//!
//! Entries are never removed early: a coroutine woken before its deadline bumps its park
//! sequence number, which turns the entry stale, and stale entries are skipped when they
//! expire. When stale entries outnumber live ones the heap is rebuilt, so that a stream of
//! long timeouts that end early cannot grow it without bound.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) deadline: Instant,
    seq: u64,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
    pub(crate) park: u32,
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    inserted_since_rebuild: usize,
}

impl Timers {
    pub(crate) fn insert(&mut self, deadline: Instant, slot: u32, gen: u32, park: u32) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { deadline, seq: self.seq, slot, gen, park }));
        self.inserted_since_rebuild += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.deadline)
    }

    /// Pops the next entry whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Entry> {
        if self.heap.peek()?.0.deadline <= now {
            self.heap.pop().map(|e| e.0)
        } else {
            None
        }
    }

    /// Drops stale entries once the heap has doubled since the last rebuild and holds more
    /// than `live` entries by a margin.
    pub(crate) fn compact(&mut self, live: usize, is_live: impl Fn(&Entry) -> bool) {
        if self.inserted_since_rebuild < 1024 || self.heap.len() <= 2 * live + 1024 {
            return;
        }
        self.inserted_since_rebuild = 0;
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries.into_iter().filter(|e| is_live(&e.0)).collect();
    }
}
