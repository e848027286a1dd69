//! Stack limits: `max_coroutines` bounds the coroutines alive at once (queued jobs wait for a
//! free stack), the default 2 MiB stack takes a 1 MiB-deep recursion, and the minimum 64 KiB
//! stack runs ordinary shallow code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts the jobs running at once and the most ever seen.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) -> usize {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        n
    }
    fn exit(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn max_coroutines_bounds_live_coroutines() {
    let rt = openco::Builder::new().workers(1).max_coroutines(2).build().unwrap();
    let count = Arc::new(Concurrency::default());
    let jobs: Vec<_> = (0..50)
        .map(|i| {
            let count = count.clone();
            rt.blocking(move || {
                count.enter();
                std::thread::sleep(Duration::from_millis(5)); // suspends: the slot stays taken
                count.exit();
                i
            })
        })
        .collect();
    let done: Vec<i32> = jobs.into_iter().map(|j| j.join().unwrap()).collect();
    assert_eq!(done, (0..50).collect::<Vec<_>>());
    let max = count.max.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "{max} jobs ran at once with max_coroutines(2)");
    assert_eq!(count.now.load(Ordering::SeqCst), 0);
}

/// The limit is reached, not only respected: two jobs that each wait (suspended) until both
/// have started can only finish if two coroutines live at once; a third starts only after
/// one of them has ended.
#[test]
fn max_coroutines_allows_exactly_that_many() {
    let rt = openco::Builder::new().workers(1).max_coroutines(2).build().unwrap();
    let count = Arc::new(Concurrency::default());
    let pair: Vec<_> = (0..2)
        .map(|_| {
            let count = count.clone();
            rt.blocking(move || {
                count.enter();
                // Bounded: if only one coroutine could live, fail instead of hanging.
                let met = (0..2000).any(|_| {
                    std::thread::sleep(Duration::from_millis(1));
                    count.max.load(Ordering::SeqCst) >= 2
                });
                count.exit();
                met
            })
        })
        .collect();
    let third = {
        let count = count.clone();
        rt.blocking(move || {
            let running = count.enter();
            count.exit();
            running
        })
    };
    for job in pair {
        assert!(job.join().unwrap(), "two coroutines never lived at once with max_coroutines(2)");
    }
    assert!(third.join().unwrap() <= 2, "a third coroutine started while two were alive");
    assert_eq!(count.max.load(Ordering::SeqCst), 2);
}

/// Recurses until the stack in use reaches `target` bytes below `top`, with ~1 KiB frames.
/// Returns the depth reached.
#[inline(never)]
fn use_stack(top: usize, target: usize, depth: usize) -> usize {
    let mut frame = [depth as u8; 1024];
    std::hint::black_box(&mut frame);
    let here = frame.as_ptr() as usize;
    let deepest = if top - here >= target { depth } else { use_stack(top, target, depth + 1) };
    std::hint::black_box(&frame); // live across the call: no tail call, no frame reuse
    deepest
}

/// Uses at least `bytes` of the calling stack.
fn use_stack_bytes(bytes: usize) -> usize {
    let marker = 0u8;
    let top = std::hint::black_box(&marker) as *const u8 as usize;
    use_stack(top, bytes, 0)
}

#[test]
fn default_stack_takes_a_one_mib_recursion() {
    let rt = openco::Builder::new().workers(1).build().unwrap();
    // Twice: on a fresh stack, then on the same stack back from the pool (trimmed).
    for _ in 0..2 {
        let depth = rt.blocking(|| use_stack_bytes(1024 * 1024)).join().unwrap();
        // Frames are 1 KiB and some; only a recursion that did not happen could be this shallow.
        assert!(depth >= 256, "1 MiB of stack used after only {depth} frames");
    }
}

#[test]
fn min_stack_runs_shallow_code() {
    let rt = openco::Builder::new().workers(2).stack_size(64 * 1024).build().unwrap();
    let jobs: Vec<_> = (0..200u64)
        .map(|i| {
            rt.blocking(move || {
                let mut map = HashMap::new();
                for k in 0..100 {
                    map.insert(format!("key-{i}-{k}"), vec![k; 8]);
                }
                std::thread::sleep(Duration::from_millis(1));
                let sum: u64 = map.values().map(|v| v.iter().sum::<u64>()).sum();
                // A modest recursion too: 16 KiB of the 64.
                use_stack_bytes(16 * 1024);
                (i, sum, format!("{:?}", map.len()))
            })
        })
        .collect();
    for (i, job) in jobs.into_iter().enumerate() {
        let (id, sum, len) = job.join().unwrap();
        assert_eq!((id, sum, len.as_str()), (i as u64, 8 * 4950, "100"));
    }
}

/// Regression: with a stack limit, a worker that could not get a stack re-queued its job
/// without waking the parked worker whose cache held the free stack, and the job hung.
#[test]
fn starved_worker_hands_job_to_worker_with_free_stack() {
    let rt = openco::Builder::new().workers(2).max_coroutines(1).build().unwrap();
    for i in 0..2000u32 {
        let mut handle = rt.blocking(move || i);
        match handle.timeout_join(std::time::Duration::from_secs(10)) {
            Ok(v) => assert_eq!(v, i),
            Err(e) => panic!("job {i} did not finish: {e}"),
        }
    }
}

/// Regression: two workers mapping stacks at once saw a false "limit reached" and stopped
/// starting jobs. Two jobs that wait for each other must both start under `max_coroutines(2)`.
#[test]
fn concurrent_stack_mapping_does_not_starve() {
    for iteration in 0..200 {
        let rt = openco::Builder::new().workers(2).max_coroutines(2).build().unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let mut gates = Vec::new();
        let handles: Vec<_> = (0..2u32)
            .map(|i| {
                let (open, gate) = futures::channel::oneshot::channel::<()>();
                gates.push(open);
                let started_tx = started_tx.clone();
                rt.blocking(move || {
                    started_tx.send(()).unwrap();
                    let _ = openco::block_on(gate);
                    i
                })
            })
            .collect();
        for _ in 0..2 {
            let started = started_rx.recv_timeout(std::time::Duration::from_secs(10));
            assert!(started.is_ok(), "iteration {iteration}: a job never started");
        }
        for gate in gates {
            let _ = gate.send(());
        }
        for h in handles {
            h.join().unwrap();
        }
    }
}
