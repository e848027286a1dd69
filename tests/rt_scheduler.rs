//! The single-thread `Scheduler`: jobs run on the calling thread and only when it drives
//! them, `try_schedule` never waits, `try_timeout_schedule` waits in the worker's park for
//! sleepers, IO and wake-ups from other threads, per-job stack sizes, handles, and a drop
//! with coroutines still suspended.
//!
//! Each test runs on its own plain thread under the watchdog (`support::on_thread`), so a
//! hang fails the test. Timing is never asserted beyond generous bounds.

#[macro_use]
mod support;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use openco::{Handle, Scheduler};
use support::{on_thread, EXPECTED, WATCHDOG};

/// Long enough for anything in these tests; reaching it is a failure, not a timing result.
const LONG: Duration = WATCHDOG;

#[test]
fn jobs_run_on_the_calling_thread_and_only_when_scheduled() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let here = thread::current().id();
        let handle = {
            let ran = ran.clone();
            scheduler.submit(
                move || {
                    ran.store(true, SeqCst);
                    assert!(openco::in_coroutine());
                    thread::current().id()
                },
                None,
            )
        };
        assert!(!ran.load(SeqCst), "nothing runs at submit");
        assert_eq!(scheduler.pending(), 1);
        assert_eq!(scheduler.try_schedule().unwrap(), 0);
        assert!(ran.load(SeqCst));
        assert_eq!(handle.join().unwrap(), here);
        // Again, on a scheduler that already ran jobs.
        let second = scheduler.submit(|| thread::current().id(), None);
        assert_eq!(scheduler.try_schedule().unwrap(), 0);
        assert_eq!(second.join().unwrap(), here);
    });
}

#[test]
fn sleepers_finish_in_deadline_order() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = [60u64, 20, 40]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                scheduler.submit(
                    move || {
                        thread::sleep(Duration::from_millis(ms));
                        order.lock().unwrap().push(ms);
                        ms
                    },
                    None,
                )
            })
            .collect();
        let started = Instant::now();
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        // They slept at once on one thread: far less than the sum of the naps, far below LONG.
        assert!(started.elapsed() < LONG / 2);
        assert_eq!(*order.lock().unwrap(), [20, 40, 60]);
        let results: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results, [60, 20, 40]);
    });
}

#[test]
fn try_schedule_does_not_wait_for_a_sleeper() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let sleeper = scheduler.submit(|| thread::sleep(LONG * 10), None);
        let quick = scheduler.submit(|| 7, None);
        let started = Instant::now();
        assert_eq!(scheduler.try_schedule().unwrap(), 1);
        assert!(started.elapsed() < LONG / 2, "try_schedule waited for the sleeper");
        assert_eq!(quick.join().unwrap(), 7);
        assert!(!sleeper.is_finished());
        // A zero timeout does not wait either.
        assert_eq!(scheduler.try_timeout_schedule(Duration::ZERO).unwrap(), 1);
        drop(scheduler);
        assert!(sleeper.join().unwrap_err().is_cancelled());
    });
}

#[test]
fn try_timeout_schedule_returns_at_its_timeout_with_work_left() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let sleeper = scheduler.submit(|| thread::sleep(LONG * 10), None);
        let started = Instant::now();
        assert_eq!(scheduler.try_timeout_schedule(Duration::from_millis(30)).unwrap(), 1);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(30) && took < LONG / 2, "{took:?}");
        assert!(!sleeper.is_finished());
    });
}

/// Recurses `frames` deep with 1 KiB of locals a frame; `lowest` gets the deepest address.
fn recurse(frames: u32, lowest: &mut usize) -> u32 {
    let pad = black_box([1u8; 1024]);
    *lowest = (*lowest).min(pad.as_ptr() as usize);
    if frames == 0 {
        return pad[0] as u32;
    }
    black_box(recurse(frames - 1, lowest) + pad[1023] as u32)
}

/// Uses at least `bytes` of stack (frame sizes differ between debug and release builds, so
/// they are measured first); returns the bytes used.
fn use_stack(bytes: usize) -> usize {
    let top = black_box(0u8);
    let top = &top as *const u8 as usize;
    let mut frames = 16;
    loop {
        let mut lowest = usize::MAX;
        recurse(frames, &mut lowest);
        let used = top - lowest;
        if used >= bytes {
            return used;
        }
        // `used` includes a fixed overhead, so this stays below `bytes` (never overshoots).
        frames = (frames as usize * bytes / used) as u32 + 2;
    }
}

#[test]
fn stack_size_per_job() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        // 512 KiB: would overflow a 64 KiB stack, fits in 1 MiB.
        let mid = scheduler.submit(|| use_stack(512 * 1024), Some(1024 * 1024));
        // 4 MiB: would overflow the default 2 MiB stack, fits in 8 MiB.
        let big = scheduler.submit(|| use_stack(4 * 1024 * 1024), Some(8 * 1024 * 1024));
        // Below the minimum: rounded up to it, and the job runs.
        let tiny = scheduler.submit(|| use_stack(16 * 1024), Some(1));
        // The default size, named: takes a pooled stack.
        let named = scheduler.submit(|| use_stack(16 * 1024), Some(openco::DEFAULT_STACK_SIZE));
        let default = scheduler.submit(|| use_stack(1024 * 1024), None);
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        assert!(mid.join().unwrap() >= 512 * 1024);
        assert!(big.join().unwrap() >= 4 * 1024 * 1024);
        assert!(tiny.join().unwrap() >= 16 * 1024);
        assert!(named.join().unwrap() >= 16 * 1024);
        assert!(default.join().unwrap() >= 1024 * 1024);
        // A job's own stack is unmapped when it ends: many in a row do not pile up.
        for _ in 0..200 {
            let h = scheduler.submit(|| use_stack(100 * 1024), Some(256 * 1024));
            assert_eq!(scheduler.try_schedule().unwrap(), 0);
            assert!(h.join().unwrap() >= 100 * 1024);
        }
    });
}

#[test]
fn sized_jobs_that_suspend_keep_their_stacks() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let handles: Vec<_> = (0..20u32)
            .map(|i| {
                scheduler.submit(
                    move || {
                        let before = use_stack(100 * 1024);
                        thread::sleep(Duration::from_millis(u64::from(i % 5)));
                        (before >= 100 * 1024 && use_stack(300 * 1024) >= 300 * 1024, i)
                    },
                    Some(1024 * 1024),
                )
            })
            .collect();
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), (true, i as u32));
        }
    });
}

#[test]
fn handles_join_await_and_time_out() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let mut napper = scheduler.submit(
            || {
                thread::sleep(Duration::from_millis(20));
                "napped"
            },
            None,
        );
        let awaited = scheduler.submit(|| 40 + 2, None);
        // Not scheduled yet: a timed join gives up (the job is not even started).
        let err = napper.timeout_join(Duration::from_millis(10)).unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        assert_eq!(napper.timeout_join(Duration::from_secs(1)).unwrap(), "napped");
        // Awaited from another thread, as a future.
        let value = thread::spawn(move || futures::executor::block_on(awaited)).join().unwrap();
        assert_eq!(value.unwrap(), 42);
    });
}

#[test]
fn abort_cancels_a_job_that_has_not_started() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let handle = {
            let ran = ran.clone();
            scheduler.submit(move || ran.store(true, SeqCst), None)
        };
        assert!(handle.abort());
        assert_eq!(scheduler.try_schedule().unwrap(), 0);
        assert!(!ran.load(SeqCst));
        assert!(handle.join().unwrap_err().is_cancelled());
    });
}

#[test]
fn a_panic_is_reported_through_the_handle() {
    support::quiet_panics();
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let bad = scheduler.submit(|| -> u32 { panic!("{EXPECTED}: in a scheduler job") }, None);
        let good = scheduler.submit(|| 1u32, None);
        assert_eq!(scheduler.try_schedule().unwrap(), 0);
        assert!(bad.join().unwrap_err().is_panic());
        assert_eq!(good.join().unwrap(), 1);
    });
}

#[test]
fn dropping_with_suspended_coroutines_cancels_their_handles() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        // One in a sleep, one in a std channel (`thread::park`), one in a socket accept.
        let sleeping = {
            let c = Counted(dropped.clone());
            scheduler.submit(
                move || {
                    thread::sleep(LONG * 10);
                    drop(c);
                },
                None,
            )
        };
        let (tx, rx) = mpsc::channel::<u32>();
        let receiving = scheduler.submit(move || rx.recv(), None);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let accepting = scheduler.submit(move || listener.accept().map(|_| ()), Some(256 * 1024));
        let never_started = scheduler.submit(|| (), None);
        assert_eq!(scheduler.pending(), 4);
        assert!(never_started.abort());
        // The first three run to their suspension; `queued` is still queued at the drop.
        assert_eq!(scheduler.try_schedule().unwrap(), 3);
        let queued = scheduler.submit(|| (), None);
        drop(scheduler);
        for err in [
            sleeping.join().unwrap_err(),
            accepting.join().unwrap_err(),
            queued.join().unwrap_err(),
            never_started.join().unwrap_err(),
        ] {
            assert!(err.is_cancelled(), "{err}");
        }
        assert!(receiving.join().unwrap_err().is_cancelled());
        // Abandoned, not unwound: the sleeper's captured value was never dropped.
        assert_eq!(dropped.load(SeqCst), 0);
        // A send to the abandoned receiver neither hangs nor crashes (the receiver is leaked).
        let _ = tx.send(1);
        // The thread parks normally afterwards (its parker word is not left to the coroutines).
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            done_tx.send(()).unwrap();
        });
        done_rx.recv_timeout(LONG).unwrap();
    });
}

#[test]
fn a_wake_from_another_thread_is_picked_up_by_try_timeout_schedule() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let (tx, rx) = mpsc::channel::<u32>();
        let receivers: Vec<_> = {
            let rx = Arc::new(Mutex::new(rx));
            (0..3)
                .map(|_| {
                    let rx = rx.clone();
                    scheduler.submit(move || rx.lock().unwrap().recv().unwrap(), None)
                })
                .collect()
        };
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let feeder = thread::spawn(move || {
            go_rx.recv().unwrap();
            for i in 1..=3 {
                thread::sleep(Duration::from_millis(5));
                tx.send(i).unwrap();
            }
        });
        // All three are suspended (one in `recv`, two on the mutex) before the feeder starts.
        assert_eq!(scheduler.try_schedule().unwrap(), 3);
        go_tx.send(()).unwrap();
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        let mut got: Vec<u32> = receivers.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
        feeder.join().unwrap();
    });
}

#[test]
fn a_coroutine_waits_for_a_runtime_job() {
    on_thread(|| {
        let rt = support::rt(1);
        let scheduler = Scheduler::new().unwrap();
        let remote = rt.blocking(|| {
            thread::sleep(Duration::from_millis(20));
            5
        });
        // The JoinHandle's waker is this coroutine's: the runtime's worker wakes it.
        let waiting = scheduler.submit(move || remote.join().unwrap() * 2, None);
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        assert_eq!(waiting.join().unwrap(), 10);
    });
}

#[test]
fn sockets_suspend_coroutines_of_one_thread() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Submitted first: if `accept` blocked the thread, the client would never run.
        let server = scheduler.submit(
            move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 5];
                conn.read_exact(&mut buf).unwrap();
                conn.write_all(&buf).unwrap();
                buf
            },
            None,
        );
        let client = scheduler.submit(
            move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.write_all(b"hello").unwrap();
                let mut buf = [0u8; 5];
                conn.read_exact(&mut buf).unwrap();
                buf
            },
            None,
        );
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        assert_eq!(&server.join().unwrap(), b"hello");
        assert_eq!(&client.join().unwrap(), b"hello");
    });
}

#[test]
fn jobs_submitted_from_inside_run_on_the_same_scheduler() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let here = thread::current().id();
        let outer = scheduler.submit(
            move || {
                let inner = Handle::current().blocking(|| {
                    thread::sleep(Duration::from_millis(5));
                    thread::current().id()
                });
                inner.join().unwrap() == here
            },
            None,
        );
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        assert!(outer.join().unwrap());
    });
}

#[test]
fn driving_inside_a_coroutine_is_an_error() {
    let rt = support::rt(1);
    let result = support::join(rt.blocking(|| {
        let scheduler = Scheduler::new().unwrap();
        let job = scheduler.submit(|| (), None);
        let err = scheduler.try_schedule().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        let err = scheduler.try_timeout_schedule(Duration::ZERO).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        drop(scheduler);
        job.join().unwrap_err().is_cancelled()
    }));
    assert!(result.unwrap());
}

#[test]
fn many_schedulers_on_one_thread_one_after_another() {
    on_thread(|| {
        for round in 0..50u32 {
            let scheduler = Scheduler::new().unwrap();
            let handles: Vec<_> = (0..10u32)
                .map(|i| {
                    scheduler.submit(
                        move || {
                            thread::sleep(Duration::from_millis(u64::from(i % 3)));
                            round + i
                        },
                        None,
                    )
                })
                .collect();
            assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
            let sum: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, 10 * round + 45);
        }
    });
}

/// The seeds' example (`examples/seed_scheduler.rs`): two coroutines loop in `usleep` until
/// a flag the next one clears; on one thread, they finish only if `usleep` suspends.
#[test]
fn loops_in_usleep_let_each_other_run() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let flag1 = Arc::new(AtomicBool::new(true));
        let flag2 = Arc::new(AtomicBool::new(true));
        let one = {
            let flag1 = flag1.clone();
            scheduler.submit(
                move || {
                    let mut turns = 0u32;
                    while flag1.load(SeqCst) {
                        turns += 1;
                        // SAFETY: usleep has no preconditions.
                        unsafe { libc::usleep(1_000) };
                    }
                    turns
                },
                None,
            )
        };
        let two = {
            let flag2 = flag2.clone();
            scheduler.submit(
                move || {
                    while flag2.load(SeqCst) {
                        // SAFETY: usleep has no preconditions.
                        unsafe { libc::usleep(1_000) };
                    }
                    flag1.store(false, SeqCst);
                },
                None,
            )
        };
        let three = scheduler.submit(move || flag2.store(false, SeqCst), Some(128 * 1024));
        assert_eq!(scheduler.try_schedule().unwrap(), 2);
        assert_eq!(scheduler.try_timeout_schedule(LONG).unwrap(), 0);
        assert!(one.join().unwrap() >= 1);
        two.join().unwrap();
        three.join().unwrap();
    });
}

/// File calls in a Scheduler's coroutines suspend too (the FIFO's read end waits for the
/// writer, a later job on the same thread), and their completions are reaped while it
/// drives.
#[test]
fn file_calls_suspend_in_a_scheduler() {
    on_thread(|| {
        let scheduler = Scheduler::new().unwrap();
        let dir = std::env::temp_dir().join(format!("openco-scheduler-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (f1, f2, file) = (fifo.clone(), fifo.clone(), dir.join("data"));
        let reader = scheduler.submit(move || std::fs::read_to_string(&f1).unwrap(), None);
        let writer = scheduler.submit(
            move || {
                std::fs::write(&file, b"synced").unwrap();
                std::fs::File::open(&file).unwrap().sync_all().unwrap();
                std::fs::write(&f2, std::fs::read(&file).unwrap()).unwrap();
            },
            None,
        );
        assert_eq!(scheduler.try_timeout_schedule(WATCHDOG).unwrap(), 0);
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), "synced");
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
