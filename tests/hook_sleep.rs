//! Conformance of the sleep-family hooks (`nanosleep`, `clock_nanosleep`, `usleep`, `sleep`,
//! and `std::thread::sleep` on top of them): same results and errno inside a coroutine as
//! libc gives outside one, real suspension inside, errno kept per coroutine, passthrough on
//! tokio's threads.

use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use libc::{c_int, timespec};

/// Written to errno before each call, to see whether the call touched it.
const ERRNO_SENTINEL: c_int = 7777;
/// Written to `rem` before each call: libc writes `rem` only when interrupted.
const REM_SENTINEL: (i64, i64) = (4242, 4242);

fn errno() -> c_int {
    // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`; the calling thread's own errno is writable.
    unsafe { *libc::__errno_location() = value }
}

fn ts(sec: i64, nsec: i64) -> timespec {
    timespec { tv_sec: sec, tv_nsec: nsec }
}

fn ms(n: i64) -> timespec {
    ts(0, n * 1_000_000)
}

/// What one call produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcome {
    ret: i64,
    errno: c_int,
    rem: (i64, i64),
    /// A successful call took at least the time it was asked to sleep.
    slept_enough: bool,
}

/// Runs `call` with errno and `rem` set to sentinels. `call` gets a valid `rem` pointer and
/// returns the function's result and the least time it must have slept if it succeeded.
fn measure(call: impl FnOnce(*mut timespec) -> (i64, Duration)) -> Outcome {
    let mut rem = ts(REM_SENTINEL.0, REM_SENTINEL.1);
    let start = Instant::now();
    set_errno(ERRNO_SENTINEL);
    let (ret, min) = call(&mut rem);
    let errno = errno();
    let elapsed = start.elapsed();
    Outcome { ret, errno, rem: (rem.tv_sec, rem.tv_nsec), slept_enough: ret != 0 || elapsed >= min }
}

fn nanosleep(req: timespec) -> Outcome {
    measure(|rem| {
        // SAFETY: `req` and `rem` are valid for the call.
        let ret = unsafe { libc::nanosleep(&req, rem) };
        (ret.into(), min_sleep(req))
    })
}

fn clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: timespec) -> Outcome {
    measure(|rem| {
        // SAFETY: `req` and `rem` are valid for the call.
        let ret = unsafe { libc::clock_nanosleep(clock, flags, &req, rem) };
        (ret.into(), if flags == 0 { min_sleep(req) } else { Duration::ZERO })
    })
}

/// The least a valid relative sleep of `req` takes; zero for invalid requests.
fn min_sleep(req: timespec) -> Duration {
    if req.tv_sec < 0 || !(0..1_000_000_000).contains(&req.tv_nsec) {
        return Duration::ZERO;
    }
    Duration::new(req.tv_sec as u64, req.tv_nsec as u32)
}

fn monotonic_now() -> timespec {
    let mut now = ts(0, 0);
    // SAFETY: `now` is a valid out-parameter.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) }, 0);
    now
}

fn add(t: timespec, d: Duration) -> timespec {
    let nsec = t.tv_nsec + i64::from(d.subsec_nanos());
    ts(t.tv_sec + d.as_secs() as i64 + nsec / 1_000_000_000, nsec % 1_000_000_000)
}

/// `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` 10 ms from now.
fn abstime_future() -> Outcome {
    measure(|rem| {
        let wait = Duration::from_millis(10);
        // The deadline is read after `measure`'s start, so the call must outlast `wait`.
        let deadline = add(monotonic_now(), wait);
        // SAFETY: `deadline` and `rem` are valid for the call.
        let ret = unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &deadline, rem) };
        (ret.into(), wait)
    })
}

/// `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` one second ago: returns 0 at once.
fn abstime_past() -> Outcome {
    let now = monotonic_now();
    clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, ts((now.tv_sec - 1).max(0), now.tv_nsec))
}

struct Case {
    name: &'static str,
    call: fn() -> Outcome,
    /// The (return value, errno) libc gives; checked outside coroutines too, so the table
    /// itself is verified against libc.
    expect: (i64, c_int),
}

const OK_UNTOUCHED: (i64, c_int) = (0, ERRNO_SENTINEL);

fn cases() -> Vec<Case> {
    vec![
        Case { name: "nanosleep 5 ms", call: || nanosleep(ms(5)), expect: OK_UNTOUCHED },
        Case { name: "nanosleep zero", call: || nanosleep(ts(0, 0)), expect: OK_UNTOUCHED },
        Case { name: "nanosleep nsec = 1e9", call: || nanosleep(ts(0, 1_000_000_000)), expect: (-1, libc::EINVAL) },
        Case { name: "nanosleep nsec = -1", call: || nanosleep(ts(0, -1)), expect: (-1, libc::EINVAL) },
        Case { name: "nanosleep sec = -1", call: || nanosleep(ts(-1, 0)), expect: (-1, libc::EINVAL) },
        Case {
            name: "nanosleep null req",
            call: || {
                measure(|rem| {
                    // SAFETY: a null `req` is reported as EFAULT by the kernel (and the hook)
                    // without being dereferenced; `rem` is valid.
                    let ret = unsafe { libc::nanosleep(ptr::null(), rem) };
                    (ret.into(), Duration::ZERO)
                })
            },
            expect: (-1, libc::EFAULT),
        },
        Case {
            name: "clock_nanosleep MONOTONIC 5 ms",
            call: || clock_nanosleep(libc::CLOCK_MONOTONIC, 0, ms(5)),
            expect: OK_UNTOUCHED,
        },
        Case {
            name: "clock_nanosleep REALTIME 5 ms",
            call: || clock_nanosleep(libc::CLOCK_REALTIME, 0, ms(5)),
            expect: OK_UNTOUCHED,
        },
        Case {
            name: "clock_nanosleep BOOTTIME 5 ms",
            call: || clock_nanosleep(libc::CLOCK_BOOTTIME, 0, ms(5)),
            expect: OK_UNTOUCHED,
        },
        Case { name: "clock_nanosleep MONOTONIC ABSTIME +10 ms", call: abstime_future, expect: OK_UNTOUCHED },
        Case { name: "clock_nanosleep MONOTONIC ABSTIME -1 s", call: abstime_past, expect: OK_UNTOUCHED },
        Case {
            name: "clock_nanosleep clock 12345",
            call: || clock_nanosleep(12345, 0, ms(1)),
            expect: (libc::EINVAL.into(), ERRNO_SENTINEL),
        },
        Case {
            name: "clock_nanosleep THREAD_CPUTIME_ID",
            call: || clock_nanosleep(libc::CLOCK_THREAD_CPUTIME_ID, 0, ms(1)),
            expect: (libc::EINVAL.into(), ERRNO_SENTINEL),
        },
        Case {
            name: "clock_nanosleep MONOTONIC nsec = 1e9",
            call: || clock_nanosleep(libc::CLOCK_MONOTONIC, 0, ts(0, 1_000_000_000)),
            expect: (libc::EINVAL.into(), ERRNO_SENTINEL),
        },
        Case {
            name: "clock_nanosleep MONOTONIC sec = -1",
            call: || clock_nanosleep(libc::CLOCK_MONOTONIC, 0, ts(-1, 0)),
            expect: (libc::EINVAL.into(), ERRNO_SENTINEL),
        },
        Case {
            name: "clock_nanosleep MONOTONIC ABSTIME nsec = -1",
            call: || clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, ts(0, -1)),
            expect: (libc::EINVAL.into(), ERRNO_SENTINEL),
        },
        Case {
            name: "clock_nanosleep MONOTONIC null req",
            call: || {
                measure(|rem| {
                    // SAFETY: a null `req` is reported as EFAULT without being dereferenced.
                    let ret = unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, ptr::null(), rem) };
                    (ret.into(), Duration::ZERO)
                })
            },
            expect: (libc::EFAULT.into(), ERRNO_SENTINEL),
        },
        Case {
            name: "usleep 5000",
            call: || {
                measure(|_| {
                    // SAFETY: no pointer arguments.
                    let ret = unsafe { libc::usleep(5000) };
                    (ret.into(), Duration::from_millis(5))
                })
            },
            expect: OK_UNTOUCHED,
        },
        Case {
            name: "usleep 0",
            call: || {
                measure(|_| {
                    // SAFETY: no pointer arguments.
                    (unsafe { libc::usleep(0) }.into(), Duration::ZERO)
                })
            },
            expect: OK_UNTOUCHED,
        },
        Case {
            name: "sleep 0",
            call: || {
                measure(|_| {
                    // SAFETY: no pointer arguments.
                    (unsafe { libc::sleep(0) }.into(), Duration::ZERO)
                })
            },
            expect: OK_UNTOUCHED,
        },
    ]
}

#[test]
fn coroutine_results_match_libc() {
    let rt = openco::Builder::new().workers(2).build().unwrap();
    let mut failures = Vec::new();
    for case in cases() {
        let call = case.call;
        let outside = std::thread::spawn(move || (openco::in_coroutine(), call())).join().unwrap();
        let inside = rt.blocking(move || (openco::in_coroutine(), call())).join().unwrap();
        assert!(!outside.0 && inside.0, "{}: ran in the wrong context", case.name);
        let (outside, inside) = (outside.1, inside.1);
        if (outside.ret, outside.errno) != case.expect {
            failures.push(format!("{}: libc gave {outside:?}, the table expects {:?}", case.name, case.expect));
        }
        if inside != outside {
            failures.push(format!("{}: inside a coroutine {inside:?}, outside {outside:?}", case.name));
        }
        for (where_, o) in [("outside", outside), ("inside", inside)] {
            if o.rem != REM_SENTINEL {
                failures.push(format!("{}: rem written {where_}: {:?}", case.name, o.rem));
            }
            if !o.slept_enough {
                failures.push(format!("{}: returned early {where_}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// On a single worker, job B can only run while job A is suspended. A sleeps in 50 ms steps
/// and checks after each whether B has run: if sleeping blocked the worker thread, B could
/// not run before A returned, and A would give up after 40 steps. B normally runs during
/// the first step; the steps only give a loaded machine room.
#[test]
fn sleep_in_a_coroutine_lets_other_jobs_run() {
    let rt = openco::Builder::new().workers(1).build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (b_done_tx, b_done_rx) = mpsc::channel::<std::thread::ThreadId>();
    let a = rt.blocking(move || {
        started_tx.send(()).unwrap();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(b_thread) = b_done_rx.try_recv() {
                return Some(b_thread == std::thread::current().id());
            }
        }
        None
    });
    started_rx.recv().unwrap(); // A runs (and owns the only worker) before B is submitted
    let b = rt.blocking(move || {
        b_done_tx.send(std::thread::current().id()).unwrap();
    });
    assert_eq!(a.join().unwrap(), Some(true), "job B did not run on the worker while job A slept");
    b.join().unwrap();
}

/// Same, with each libc entry point instead of `std::thread::sleep`. Zero-length sleeps
/// (`sleep(0)`, `nanosleep` of zero) only yield, and are left out: a yielding coroutine is
/// currently resumed before jobs that have not started yet, so B would never run.
#[test]
fn each_hook_suspends_rather_than_blocks() {
    type Sleep = fn();
    let sleeps: [(&str, Sleep); 4] = [
        ("nanosleep", || {
            // SAFETY: valid `req`, null `rem` allowed.
            unsafe { libc::nanosleep(&ms(20), ptr::null_mut()) };
        }),
        ("clock_nanosleep MONOTONIC", || {
            // SAFETY: valid `req`, null `rem` allowed.
            unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &ms(20), ptr::null_mut()) };
        }),
        ("clock_nanosleep ABSTIME", || {
            let deadline = add(monotonic_now(), Duration::from_millis(20));
            // SAFETY: valid `req`, null `rem` allowed.
            unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &deadline, ptr::null_mut()) };
        }),
        ("usleep", || {
            // SAFETY: no pointer arguments.
            unsafe { libc::usleep(20_000) };
        }),
    ];
    let rt = openco::Builder::new().workers(1).build().unwrap();
    for (name, sleep) in sleeps {
        let (started_tx, started_rx) = mpsc::channel();
        let b_ran = Arc::new(AtomicBool::new(false));
        let seen = b_ran.clone();
        let a = rt.blocking(move || {
            started_tx.send(()).unwrap();
            // B normally runs during the first try; the others give a loaded machine room.
            (0..100).any(|_| {
                sleep();
                seen.load(Ordering::SeqCst)
            })
        });
        started_rx.recv().unwrap();
        let set = b_ran.clone();
        let b = rt.blocking(move || set.store(true, Ordering::SeqCst));
        assert!(a.join().unwrap(), "{name}: job B never ran while job A slept");
        b.join().unwrap();
    }
}

#[test]
fn thread_sleep_in_a_coroutine_lasts_at_least_the_request() {
    let rt = openco::Builder::new().workers(1).build().unwrap();
    let jobs: Vec<_> = (1..=10u64)
        .map(|i| {
            rt.blocking(move || {
                let want = Duration::from_millis(2 * i);
                let start = Instant::now();
                std::thread::sleep(want);
                (want, start.elapsed())
            })
        })
        .collect();
    for job in jobs {
        let (want, got) = job.join().unwrap();
        assert!(got >= want, "slept {got:?}, asked for {want:?}");
    }
}

/// A sets errno, sleeps until B has run, and must see its own errno again; B sets another
/// value on the same worker thread meanwhile, and must see its own after its own sleep.
#[test]
fn errno_is_kept_per_coroutine_across_sleeps() {
    const A_ERRNO: c_int = 1111;
    const B_ERRNO: c_int = 2222;
    let rt = openco::Builder::new().workers(1).build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let b_done = Arc::new(AtomicBool::new(false));
    let seen = b_done.clone();
    let a = rt.blocking(move || {
        set_errno(A_ERRNO);
        started_tx.send(()).unwrap();
        let mut b_ran = false;
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(50));
            if seen.load(Ordering::SeqCst) {
                b_ran = true;
                break;
            }
        }
        (b_ran, errno())
    });
    started_rx.recv().unwrap();
    let done = b_done.clone();
    let b = rt.blocking(move || {
        set_errno(B_ERRNO);
        std::thread::sleep(Duration::from_millis(1));
        let mine = errno();
        done.store(true, Ordering::SeqCst);
        set_errno(B_ERRNO + 1); // left behind on the worker thread when B ends
        mine
    });
    assert_eq!(b.join().unwrap(), B_ERRNO, "B's errno changed across its sleep");
    let (b_ran, a_errno) = a.join().unwrap();
    assert!(b_ran, "job B did not run while job A slept");
    assert_eq!(a_errno, A_ERRNO, "A's errno changed across its sleep");
}

/// Outside coroutines the hooks pass through: `std::thread::sleep` on a tokio thread blocks
/// it for at least the duration (tokio's timers and `spawn_blocking` threads are unaffected).
#[test]
fn thread_sleep_passes_through_on_tokio_threads() {
    let _rt = openco::Builder::new().workers(1).build().unwrap(); // hooks live, runtime running
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        assert!(!openco::in_coroutine());
        let want = Duration::from_millis(20);
        let start = Instant::now();
        std::thread::sleep(want);
        assert!(start.elapsed() >= want, "std::thread::sleep returned after {:?}", start.elapsed());

        let blocking = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            std::thread::sleep(want);
            (openco::in_coroutine(), start.elapsed())
        });
        let (in_co, elapsed) = blocking.await.unwrap();
        assert!(!in_co);
        assert!(elapsed >= want, "spawn_blocking sleep returned after {elapsed:?}");

        let start = Instant::now();
        tokio::time::sleep(want).await;
        assert!(start.elapsed() >= want);
    });
}
