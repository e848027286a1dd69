//! The futex hook (issue 5): inside a coroutine, std's `Mutex`, `Condvar`, `RwLock`, `Once`,
//! `Barrier`, `mpsc` and `parking_lot` wait by suspending the coroutine, not the thread, so a
//! lock held across a suspension by one coroutine can be waited for by another coroutine of
//! the same worker without deadlock, and waits involving plain threads still wake.
//!
//! Each test runs on three runtimes (see `sync_test!` in `support/watched.rs`): one worker and
//! two workers with the default settings, and one worker with the handoff off
//! (`time_slice(None)`), where a wait that blocked the thread could never be rescued by a
//! spare thread: only the hook keeps those from hanging. Most tests also run a "marker" job
//! while a coroutine waits and make the lock holder wait for it, so the waiter provably
//! waited while its worker ran other jobs.
//!
//! Known limitation, respected here: `thread::park`-based waits (std `mpsc` blocking
//! operations, `parking_lot`) use a per-thread parker shared by the coroutines of a worker, so
//! at most one coroutine per worker may be blocked in such a wait at a time. In these tests
//! only one side of a `parking_lot` lock or an `mpsc` channel ever blocks; the other holds,
//! sleeps, polls or sends on an unbounded channel.

#[macro_use]
#[path = "support/watched.rs"]
mod watched;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{self, TryRecvError, TrySendError};
use std::sync::{Arc, Barrier, Condvar, Mutex, Once, OnceLock, RwLock};
use std::thread;
use std::time::Duration;

use watched::{join, recv_n, sleep_until, LIMIT};

/// A flag set by a marker job, and the marker job itself, to be submitted after the waiter(s).
fn marker(rt: &openco::Runtime) -> (Arc<AtomicBool>, impl FnOnce() -> openco::JoinHandle<()> + '_) {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    (flag, move || rt.blocking(move || set.store(true, SeqCst)))
}

// ---------------------------------------------------------------------------------------------
// Two coroutines

sync_test! {
    /// A holds a `Mutex` across hooked sleeps (until a marker job has run); B locks it
    /// meanwhile and must see A's write.
    fn std_mutex_held_across_a_sleep(cfg) {
        let rt = cfg.rt();
        let m = Arc::new(Mutex::new(0u32));
        let (marker_ran, submit_marker) = marker(&rt);
        let (started_tx, started_rx) = mpsc::channel();
        let a = {
            let m = m.clone();
            rt.blocking(move || {
                let mut g = m.lock().unwrap();
                started_tx.send(()).unwrap();
                let ok = sleep_until(&marker_ran);
                *g = 1;
                ok
            })
        };
        recv_n("A holds the lock", &started_rx, 1);
        let b = rt.blocking(move || *m.lock().unwrap());
        let c = submit_marker();
        join("marker", c);
        assert!(join("A", a), "the marker job never ran while B waited for the lock");
        assert_eq!(join("B", b), 1);
    }
}

sync_test! {
    /// 1000 round trips between two coroutines through one `Mutex` and one `Condvar`.
    fn condvar_ping_pong(cfg) {
        const ROUNDS: u32 = 1000;
        let rt = cfg.rt();
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        // Side `me` waits for turn == me, then passes the turn to the other side.
        let side = |me: u32| {
            let pair = pair.clone();
            move || {
                let (m, cv) = &*pair;
                for _ in 0..ROUNDS {
                    let mut turn = cv.wait_while(m.lock().unwrap(), |t| *t != me).unwrap();
                    *turn = 1 - me;
                    cv.notify_one();
                }
                ROUNDS
            }
        };
        let pong = rt.blocking(side(1));
        let ping = rt.blocking(side(0));
        assert_eq!(join("ping", ping), ROUNDS);
        assert_eq!(join("pong", pong), ROUNDS);
    }
}

sync_test! {
    /// An unbounded `mpsc` channel: a coroutine blocks in `recv` (then in `recv_timeout`); a
    /// plain thread produces, sleeping now and then so that the consumer does wait. The
    /// producer keeps its sender until the consumer is done, so the consumer is woken by the
    /// sends, not by the disconnection.
    fn mpsc_coroutine_consumer_plain_producer(cfg) {
        const N: u64 = 2000;
        let rt = cfg.rt();
        for timeout in [false, true] {
            let (tx, rx) = mpsc::channel::<u64>();
            let consumer = rt.blocking(move || {
                let mut sum = 0;
                for _ in 0..N {
                    sum += if timeout { rx.recv_timeout(LIMIT).unwrap() } else { rx.recv().unwrap() };
                }
                sum
            });
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let producer = thread::spawn(move || {
                for i in 0..N {
                    tx.send(i).unwrap();
                    if i % 100 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                let _ = done_rx.recv_timeout(LIMIT); // keep `tx` alive until the consumer is done
            });
            assert_eq!(join("consumer", consumer), N * (N - 1) / 2, "recv_timeout: {timeout}");
            done_tx.send(()).unwrap();
            producer.join().unwrap();
        }
    }
}

sync_test! {
    /// `sync_channel(1)` between a coroutine and a plain thread: the coroutine blocks in
    /// `send` on the full channel while the plain thread receives slowly; then the coroutine
    /// blocks in `recv` while the plain thread sends (and keeps its sender until the end).
    fn sync_channel_coroutine_and_plain_thread(cfg) {
        const N: u64 = 300;
        let rt = cfg.rt();

        let (tx, rx) = mpsc::sync_channel::<u64>(1);
        let producer = rt.blocking(move || (0..N).for_each(|i| tx.send(i).unwrap()));
        let consumer = thread::spawn(move || {
            (0..N)
                .map(|i| {
                    if i % 10 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                    rx.recv_timeout(LIMIT).unwrap()
                })
                .sum::<u64>()
        });
        join("blocking producer", producer);
        assert_eq!(watched::within(LIMIT, move || consumer.join().unwrap()), N * (N - 1) / 2);

        let (tx, rx) = mpsc::sync_channel::<u64>(1);
        let consumer = rt.blocking(move || (0..N).map(|_| rx.recv().unwrap()).sum::<u64>());
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let producer = thread::spawn(move || {
            for i in 0..N {
                if i % 10 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
                tx.send(i).unwrap();
            }
            let _ = done_rx.recv_timeout(LIMIT);
        });
        assert_eq!(join("blocking consumer", consumer), N * (N - 1) / 2);
        done_tx.send(()).unwrap();
        producer.join().unwrap();
    }
}

sync_test! {
    /// `mpsc` between two coroutines (only one side ever blocks): an unbounded channel whose
    /// consumer blocks in `recv` while the producer waits (sleeping) for each batch of 100 to
    /// be received before sending the next; `sync_channel(1)` with a producer blocked in
    /// `send` and a consumer polling `try_recv`; and with a consumer blocked in `recv` and a
    /// producer polling `try_send`. The polling sides give up after a while and drop their end,
    /// which wakes the blocked side, so a failure is reported instead of hanging.
    ///
    /// Fails when both coroutines share a worker thread (always on one worker): std's channel
    /// wakes a blocked party only if it belongs to *another thread* than the sender's or
    /// receiver's (`Waker::try_select` in `std/src/sync/mpmc/waker.rs` skips entries whose
    /// `cx.thread_id()` is the current thread's, by design for `select` within one thread), so
    /// a coroutine blocked in a channel operation is never woken by a coroutine of its own
    /// worker: it waits until its timeout or the channel's disconnection. crossbeam-channel
    /// has the same check.
    #[ignore = "std mpsc never wakes a waiter of the current thread: hangs when both coroutines share a worker"]
    fn mpsc_between_two_coroutines(cfg) {
        let rt = cfg.rt();
        let pause = || thread::sleep(Duration::from_micros(100));

        // Unbounded, consumer blocks, producer waits for acknowledgements (never blocking).
        const BATCHES: u64 = 10;
        let (tx, rx) = mpsc::channel::<u64>();
        let received = Arc::new(AtomicUsize::new(0));
        let consumer = {
            let received = received.clone();
            rt.blocking(move || {
                let mut sum = 0;
                while let Ok(v) = rx.recv() {
                    sum += v;
                    received.fetch_add(1, SeqCst);
                }
                sum
            })
        };
        let producer = rt.blocking(move || {
            for b in 0..BATCHES {
                (b * 100..(b + 1) * 100).for_each(|i| tx.send(i).unwrap());
                let start = std::time::Instant::now();
                while received.load(SeqCst) < (b as usize + 1) * 100 {
                    if start.elapsed() > watched::SPIN_LIMIT {
                        return false; // dropping `tx` wakes the consumer
                    }
                    pause();
                }
            }
            true
        });
        assert!(
            join("unbounded producer", producer),
            "the consumer, blocked in recv, was not woken by sends from another coroutine"
        );
        assert_eq!(join("unbounded consumer", consumer), 1000 * 999 / 2);

        // sync_channel(1), producer blocks in send, consumer polls.
        const N: u64 = 300;
        let (tx, rx) = mpsc::sync_channel::<u64>(1);
        let producer = rt.blocking(move || (0..N).all(|i| tx.send(i).is_ok()));
        let consumer = rt.blocking(move || {
            let (mut sum, mut last) = (0, std::time::Instant::now());
            loop {
                match rx.try_recv() {
                    Ok(v) => (sum, last) = (sum + v, std::time::Instant::now()),
                    Err(TryRecvError::Empty) if last.elapsed() > watched::SPIN_LIMIT => return None,
                    Err(TryRecvError::Empty) => pause(),
                    Err(TryRecvError::Disconnected) => return Some(sum),
                }
            }
        });
        assert_eq!(
            join("polling consumer", consumer),
            Some(N * (N - 1) / 2),
            "the producer, blocked in send, was not woken by try_recv from another coroutine"
        );
        assert!(join("blocking producer", producer));

        // sync_channel(1), consumer blocks in recv, producer polls.
        let (tx, rx) = mpsc::sync_channel::<u64>(1);
        let consumer = rt.blocking(move || rx.iter().sum::<u64>());
        let producer = rt.blocking(move || {
            for i in 0..N {
                let (mut v, start) = (i, std::time::Instant::now());
                loop {
                    match tx.try_send(v) {
                        Ok(()) => break,
                        Err(TrySendError::Full(_)) if start.elapsed() > watched::SPIN_LIMIT => return false,
                        Err(TrySendError::Full(back)) => {
                            v = back;
                            pause();
                        }
                        Err(TrySendError::Disconnected(_)) => return false,
                    }
                }
            }
            true
        });
        assert!(
            join("polling producer", producer),
            "the consumer, blocked in recv, was not woken by try_send from another coroutine"
        );
        assert_eq!(join("blocking consumer", consumer), N * (N - 1) / 2);
    }
}

sync_test! {
    /// A `Barrier` of 100 coroutines: none passes before all arrive, exactly one leads.
    fn barrier_of_100(cfg) {
        const N: usize = 100;
        let rt = cfg.rt();
        let barrier = Arc::new(Barrier::new(N));
        let arrived = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..N)
            .map(|_| {
                let (barrier, arrived) = (barrier.clone(), arrived.clone());
                rt.blocking(move || {
                    arrived.fetch_add(1, SeqCst);
                    let leader = barrier.wait().is_leader();
                    (leader, arrived.load(SeqCst))
                })
            })
            .collect();
        let results: Vec<_> = jobs.into_iter().map(|h| join("barrier member", h)).collect();
        assert_eq!(results.iter().filter(|r| r.0).count(), 1, "one leader");
        assert!(results.iter().all(|r| r.1 == N), "a coroutine passed the barrier before all arrived");
    }
}

sync_test! {
    /// Same as `std_mutex_held_across_a_sleep` with a `parking_lot::Mutex` (only B parks).
    ///
    /// Deadlocks by design on a shared worker: parking_lot waits on a futex word in the
    /// thread's TLS, which openco lets block the thread (two coroutines waiting there at once
    /// would corrupt parking_lot's queues, which tokio's internal locks hit under load), so
    /// the holder, suspended on that thread, never runs again. README caveat.
    #[ignore = "parking_lot waits block the worker thread: a parking_lot lock must not be held across a blocking call"]
    fn parking_lot_mutex_held_across_a_sleep(cfg) {
        let rt = cfg.rt();
        let m = Arc::new(parking_lot::Mutex::new(0u32));
        let (marker_ran, submit_marker) = marker(&rt);
        let (started_tx, started_rx) = mpsc::channel();
        let a = {
            let m = m.clone();
            rt.blocking(move || {
                let mut g = m.lock();
                started_tx.send(()).unwrap();
                let ok = sleep_until(&marker_ran);
                *g = 1;
                ok
            })
        };
        recv_n("A holds the lock", &started_rx, 1);
        let b = rt.blocking(move || *m.lock());
        let c = submit_marker();
        join("marker", c);
        assert!(join("A", a), "the marker job never ran while B waited for the lock");
        assert_eq!(join("B", b), 1);
    }
}

sync_test! {
    /// A writer holds an `RwLock` across sleeps while 10 readers and a second writer wait;
    /// every reader sees the first writer's value (or the second's, if it got in first).
    fn rwlock_writer_across_a_sleep(cfg) {
        let rt = cfg.rt();
        let lock = Arc::new(RwLock::new(0u32));
        let (marker_ran, submit_marker) = marker(&rt);
        let (started_tx, started_rx) = mpsc::channel();
        let writer = {
            let lock = lock.clone();
            rt.blocking(move || {
                let mut g = lock.write().unwrap();
                started_tx.send(()).unwrap();
                let ok = sleep_until(&marker_ran);
                *g = 42;
                ok
            })
        };
        recv_n("the writer holds the lock", &started_rx, 1);
        let readers: Vec<_> = (0..10)
            .map(|_| {
                let lock = lock.clone();
                rt.blocking(move || *lock.read().unwrap())
            })
            .collect();
        let second = {
            let lock = lock.clone();
            rt.blocking(move || {
                let mut g = lock.write().unwrap();
                assert_eq!(*g, 42, "the second writer got in before the first");
                *g = 43;
            })
        };
        let c = submit_marker();
        join("marker", c);
        assert!(join("writer", writer), "the marker job never ran while the others waited");
        for r in readers {
            let v = join("reader", r);
            assert!(v == 42 || v == 43, "a reader saw {v}");
        }
        join("second writer", second);
        assert_eq!(*lock.read().unwrap(), 43);
    }
}

sync_test! {
    /// A `OnceLock` and a `Once` initialised by one coroutine that sleeps inside the
    /// initialiser while 9 others wait for it: one initialisation, everyone sees its value.
    fn once_initialised_by_a_sleeping_coroutine(cfg) {
        let rt = cfg.rt();
        // OnceLock
        let cell = Arc::new(OnceLock::<u32>::new());
        let inits = Arc::new(AtomicUsize::new(0));
        let (marker_ran, submit_marker) = marker(&rt);
        let (started_tx, started_rx) = mpsc::channel();
        let init = |started: Option<mpsc::Sender<()>>| {
            let (cell, inits, marker_ran) = (cell.clone(), inits.clone(), marker_ran.clone());
            move || {
                *cell.get_or_init(|| {
                    inits.fetch_add(1, SeqCst);
                    if let Some(s) = started {
                        s.send(()).unwrap();
                    }
                    assert!(sleep_until(&marker_ran), "the marker job never ran during the initialisation");
                    7
                })
            }
        };
        let first = rt.blocking(init(Some(started_tx)));
        recv_n("the initialiser started", &started_rx, 1);
        let others: Vec<_> = (0..9).map(|_| rt.blocking(init(None))).collect();
        join("marker", submit_marker());
        assert_eq!(join("initialiser", first), 7);
        for h in others {
            assert_eq!(join("waiter", h), 7);
        }
        assert_eq!(inits.load(SeqCst), 1);

        // Once
        let once = Arc::new(Once::new());
        let value = Arc::new(AtomicUsize::new(0));
        let (marker_ran, submit_marker) = marker(&rt);
        let (started_tx, started_rx) = mpsc::channel();
        let call = |started: Option<mpsc::Sender<()>>| {
            let (once, value, marker_ran) = (once.clone(), value.clone(), marker_ran.clone());
            move || {
                once.call_once(|| {
                    if let Some(s) = started {
                        s.send(()).unwrap();
                    }
                    assert!(sleep_until(&marker_ran), "the marker job never ran during call_once");
                    value.fetch_add(5, SeqCst);
                });
                value.load(SeqCst)
            }
        };
        let first = rt.blocking(call(Some(started_tx)));
        recv_n("call_once started", &started_rx, 1);
        let others: Vec<_> = (0..9).map(|_| rt.blocking(call(None))).collect();
        join("marker", submit_marker());
        assert_eq!(join("call_once", first), 5);
        for h in others {
            assert_eq!(join("waiter", h), 5);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A coroutine and a plain thread

sync_test! {
    /// A plain thread holds a `Mutex`; a coroutine waits for it (while a marker job runs on
    /// the runtime); the plain thread's unlock wakes the coroutine.
    fn coroutine_waits_for_a_plain_threads_lock(cfg) {
        let rt = cfg.rt();
        let m = Arc::new(Mutex::new(0u32));
        let (locked_tx, locked_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.lock().unwrap();
                locked_tx.send(()).unwrap();
                let released = release_rx.recv_timeout(LIMIT).is_ok();
                *g = 5;
                released
            })
        };
        recv_n("the plain thread holds the lock", &locked_rx, 1);
        let waiter = rt.blocking(move || *m.lock().unwrap());
        let (marker_ran, submit_marker) = marker(&rt);
        join("marker", submit_marker());
        assert!(marker_ran.load(SeqCst));
        assert!(!waiter.is_finished(), "the coroutine got a lock the plain thread holds");
        release_tx.send(()).unwrap();
        assert_eq!(join("waiter", waiter), 5);
        assert!(holder.join().unwrap());
    }
}

sync_test! {
    /// A coroutine holds a `Mutex` across sleeps; a plain thread waits for it in the kernel;
    /// the coroutine's unlock wakes the plain thread.
    fn plain_thread_waits_for_a_coroutines_lock(cfg) {
        let rt = cfg.rt();
        let m = Arc::new(Mutex::new(0u32));
        let trying = Arc::new(AtomicBool::new(false));
        let (locked_tx, locked_rx) = mpsc::channel();
        let holder = {
            let (m, trying) = (m.clone(), trying.clone());
            rt.blocking(move || {
                let mut g = m.lock().unwrap();
                locked_tx.send(()).unwrap();
                let ok = sleep_until(&trying);
                thread::sleep(Duration::from_millis(20)); // most likely blocked in the kernel by now
                *g = 9;
                ok
            })
        };
        recv_n("the coroutine holds the lock", &locked_rx, 1);
        let waiter = thread::spawn(move || {
            trying.store(true, SeqCst);
            *m.lock().unwrap()
        });
        assert!(join("holder", holder));
        assert_eq!(watched::within(LIMIT, move || waiter.join().unwrap()), 9);
    }
}

sync_test! {
    /// A coroutine waits on a `Condvar` (while a marker job runs); a plain thread notifies it.
    fn condvar_notified_from_a_plain_thread(cfg) {
        let rt = cfg.rt();
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let waiter = {
            let pair = pair.clone();
            rt.blocking(move || {
                let (m, cv) = &*pair;
                let g = m.lock().unwrap();
                waiting_tx.send(()).unwrap(); // the lock is held until wait releases it
                *cv.wait_while(g, |ready| !*ready).unwrap()
            })
        };
        recv_n("the coroutine waits", &waiting_rx, 1);
        let (marker_ran, submit_marker) = marker(&rt);
        join("marker", submit_marker());
        assert!(marker_ran.load(SeqCst));
        assert!(!waiter.is_finished());
        let notifier = thread::spawn(move || {
            let (m, cv) = &*pair;
            *m.lock().unwrap() = true;
            cv.notify_one();
        });
        assert!(join("waiter", waiter));
        notifier.join().unwrap();
    }
}

sync_test! {
    /// The other way round: a plain thread waits on a `Condvar`; a coroutine notifies it.
    fn condvar_notified_from_a_coroutine(cfg) {
        let rt = cfg.rt();
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let waiter = {
            let pair = pair.clone();
            thread::spawn(move || {
                let (m, cv) = &*pair;
                let g = m.lock().unwrap();
                waiting_tx.send(()).unwrap();
                *cv.wait_timeout_while(g, LIMIT, |ready| !*ready).unwrap().0
            })
        };
        recv_n("the plain thread waits", &waiting_rx, 1);
        let notifier = rt.blocking(move || {
            let (m, cv) = &*pair;
            *m.lock().unwrap() = true;
            cv.notify_one();
        });
        join("notifier", notifier);
        assert!(watched::within(LIMIT, move || waiter.join().unwrap()), "the plain thread was not notified");
    }
}
