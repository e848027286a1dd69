//! `maybe_grow`: deep recursions spread over stack segments, in coroutines, on plain threads
//! and on the test thread; panics propagate; segments are reused; a coroutine may suspend on
//! a segment while another coroutine of the same worker grows its own stack; an overflow of a
//! segment is reported as a coroutine stack overflow (in a child process).

#[macro_use]
mod support;

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, Output};

use futures::channel::oneshot;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// One level: a frame of `FRAME` bytes that is really written, then the level below, each
/// through `maybe_grow(red_zone, segment, ..)`. Returns the sum of the depths visited.
#[inline(never)]
fn recurse<const FRAME: usize>(depth: u32, red_zone: usize, segment: usize) -> u64 {
    openco::maybe_grow(red_zone, segment, || {
        let mut frame = [0u8; FRAME];
        frame[FRAME - 1] = 1;
        black_box(&mut frame);
        let below = if depth == 0 { 0 } else { recurse::<FRAME>(depth - 1, red_zone, segment) };
        below + u64::from(depth) * u64::from(black_box(&frame)[FRAME - 1])
    })
}

fn triangle(depth: u32) -> u64 {
    u64::from(depth) * (u64::from(depth) + 1) / 2
}

/// The seeds' example: 50 levels of 10 KiB frames through `maybe_grow!`, about 500 KiB of
/// stack (more in a debug build), on a 128 KiB coroutine stack.
#[test]
fn seed_recursion_on_a_small_coroutine_stack() {
    fn recurse(i: u32, p: &mut [u8; 10240]) -> u32 {
        openco::maybe_grow!(|| {
            black_box(&mut *p);
            if i > 0 {
                1 + recurse(i - 1, &mut [0; 10240])
            } else {
                0
            }
        })
    }
    let rt = openco::Builder::new().workers(1).stack_size(128 * KIB).build().unwrap();
    let levels = rt.blocking(|| recurse(50, &mut [0; 10240])).join().unwrap();
    assert_eq!(levels, 50);
}

/// 65,536 levels of 16 KiB frames: a 1 GiB deep recursion over 16 MiB segments, from a
/// coroutine with a 256 KiB stack.
#[test]
fn gigabyte_recursion_in_a_coroutine() {
    const DEPTH: u32 = 64 * 1024;
    let rt = openco::Builder::new().workers(1).stack_size(256 * KIB).build().unwrap();
    let start = std::time::Instant::now();
    let sum = rt.blocking(|| recurse::<{ 16 * KIB }>(DEPTH - 1, 64 * KIB, 16 * MIB)).join().unwrap();
    assert_eq!(sum, triangle(DEPTH - 1));
    eprintln!("1 GiB recursion: {:?}", start.elapsed());
}

/// A thread with a 64 KiB stack recurses 32 MiB deep.
#[test]
fn plain_thread_with_a_small_stack() {
    let t = std::thread::Builder::new().stack_size(64 * KIB).spawn(|| recurse::<{ 16 * KIB }>(2047, 48 * KIB, MIB));
    assert_eq!(t.unwrap().join().unwrap(), triangle(2047));
}

/// The test's own thread (libtest gives it a 2 MiB stack) recurses 64 MiB deep. The process's
/// main thread is covered by `maybe_grow`'s doc example, which runs on it.
#[test]
fn test_thread() {
    assert_eq!(recurse::<{ 16 * KIB }>(4095, 64 * KIB, 4 * MIB), triangle(4095));
}

/// With room left, `f` runs in place: its frame is next to the caller's.
#[test]
fn runs_in_place_when_there_is_room() {
    let outer = 0u8;
    let outer = black_box(&outer) as *const u8 as usize;
    let inner = openco::maybe_grow(0, MIB, || {
        let inner = 0u8;
        black_box(&inner) as *const u8 as usize
    });
    assert!(outer.abs_diff(inner) < 64 * KIB, "{outer:#x} vs {inner:#x}");
}

/// Growing twice in a row on one thread reuses the same segment (no mapping per call).
#[test]
fn segments_are_reused() {
    let here = || {
        let local = 0u8;
        black_box(&local) as *const u8 as usize
    };
    support::on_thread(move || {
        let outer = here();
        let first = openco::maybe_grow(usize::MAX, MIB, here);
        let second = openco::maybe_grow(usize::MAX, MIB, here);
        assert!(outer.abs_diff(first) > MIB, "the first call ran on a segment");
        assert_eq!(first, second, "the second call ran on the same segment");
    });
}

/// A panic deep in a recursion spread over several segments reaches the caller with its
/// payload; the thread's stack bounds are restored, so a second recursion works.
#[test]
fn panics_propagate_through_segments() {
    #[inline(never)]
    fn dive(depth: u32) {
        openco::maybe_grow(64 * KIB, MIB, || {
            let frame = black_box([0u8; 16 * KIB]);
            if depth == 0 {
                panic::panic_any(support::ExpectedPanic(7));
            }
            dive(depth - 1);
            black_box(frame);
        })
    }
    support::quiet_panics();
    let rt = openco::Builder::new().workers(1).stack_size(128 * KIB).build().unwrap();
    let err = rt.blocking(|| dive(256)).join().unwrap_err();
    assert_eq!(*err.into_panic().downcast::<support::ExpectedPanic>().unwrap(), support::ExpectedPanic(7));
    assert_eq!(rt.blocking(|| recurse::<{ 16 * KIB }>(1023, 64 * KIB, MIB)).join().unwrap(), triangle(1023));
    support::on_thread(|| {
        let payload = panic::catch_unwind(AssertUnwindSafe(|| dive(256))).unwrap_err();
        assert_eq!(*payload.downcast::<support::ExpectedPanic>().unwrap(), support::ExpectedPanic(7));
        assert_eq!(recurse::<{ 16 * KIB }>(1023, 64 * KIB, MIB), triangle(1023));
    });
}

/// Two coroutines of one worker: the first suspends while it runs on a segment, the second
/// then grows its own stack deep, and the first resumes on its segment and goes deep too.
/// Each must see the bounds of the stack it runs on.
#[test]
fn coroutines_suspend_on_segments() {
    let rt = openco::Builder::new().workers(1).stack_size(128 * KIB).build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let first = rt.blocking(move || {
        openco::maybe_grow(usize::MAX, MIB, move || {
            openco::block_on(rx).unwrap(); // suspends this coroutine on its segment
            recurse::<{ 16 * KIB }>(1023, 64 * KIB, MIB)
        })
    });
    let second = rt.blocking(move || {
        let sum = openco::maybe_grow(usize::MAX, MIB, || recurse::<{ 16 * KIB }>(1023, 64 * KIB, MIB));
        tx.send(()).unwrap();
        sum
    });
    assert_eq!(second.join().unwrap(), triangle(1023));
    assert_eq!(first.join().unwrap(), triangle(1023));
}

const CHILD_ENV: &str = "OPENCO_TEST_CHILD";

fn run_child(name: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--ignored", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("spawn the child test process")
}

fn is_child() -> bool {
    if std::env::var_os(CHILD_ENV).is_none_or(|v| v != "1") {
        return false;
    }
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `none` is a valid rlimit for the duration of the call.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    true
}

/// Recurses without bound and without `maybe_grow`.
#[inline(never)]
fn overflow(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    overflow(depth + 1) + u64::from(black_box(frame)[0])
}

#[test]
#[ignore = "child process of segment_overflow_is_reported"]
fn child_segment_overflow() {
    if !is_child() {
        return;
    }
    let rt = openco::Builder::new().workers(1).stack_size(256 * KIB).build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let h = rt.blocking(move || {
        openco::maybe_grow(usize::MAX, 96 * KIB, move || {
            openco::block_on(rx).unwrap(); // resumed with the coroutine's own guard published
            openco::maybe_grow(0, MIB, || overflow(0)) // publishes the segment's guard again
        })
    });
    tx.send(()).unwrap();
    eprintln!("child: the overflowing job returned {:?}", h.join());
}

#[test]
fn segment_overflow_is_reported() {
    let out = run_child("child_segment_overflow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(stderr.contains("openco: coroutine stack overflow (stack size 96 KiB)"), "{stderr}");
}
