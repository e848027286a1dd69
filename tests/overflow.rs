//! Fatal faults, each in a child process: a coroutine stack overflow aborts with openco's
//! message; a plain thread's overflow still gets Rust's own message (openco's handler chains
//! to std's); any other segfault inside a coroutine still kills with SIGSEGV.
//!
//! Each parent test re-executes this test binary to run one `#[ignore]`d child test. The
//! children do nothing unless `OPENCO_TEST_CHILD=1` is set, so `cargo test -- --ignored`
//! stays harmless.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const CHILD_ENV: &str = "OPENCO_TEST_CHILD";
const COROUTINE_OVERFLOW: &str = "openco: coroutine stack overflow (stack size 64 KiB)";
const THREAD_OVERFLOW: &str = "has overflowed its stack";

/// Runs the child test `name` of this binary and returns what it left.
fn run_child(name: &str) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args(["--exact", name, "--nocapture", "--ignored", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("spawn the child test process")
}

/// Whether this process is a child started by `run_child`; also disables core dumps, so the
/// deliberate crashes write none.
fn is_child() -> bool {
    if std::env::var_os(CHILD_ENV).is_none_or(|v| v != "1") {
        return false;
    }
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `none` is a valid rlimit for the duration of the call.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    true
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?} (signal {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Recurses without bound, 1 KiB of stack per frame.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth as u8; 1024];
    std::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return 0; // never: keeps the recursion from being "unconditional"
    }
    recurse(depth + 1) + u64::from(std::hint::black_box(frame)[0])
}

fn runtime() -> openco::Runtime {
    let rt = openco::Builder::new().workers(1).stack_size(64 * 1024).build().unwrap();
    // A first job proves the runtime (and its signal handler) is up.
    assert!(rt.blocking(openco::in_coroutine).join().unwrap());
    rt
}

#[test]
#[ignore = "child process of coroutine_overflow_aborts_with_message"]
fn child_coroutine_overflow() {
    if !is_child() {
        return;
    }
    let rt = runtime();
    let depth = rt.blocking(|| recurse(0)).join();
    eprintln!("child: the overflowing job returned {depth:?}");
}

#[test]
fn coroutine_overflow_aborts_with_message() {
    let out = run_child("child_coroutine_overflow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", describe(&out));
    assert!(stderr.contains(COROUTINE_OVERFLOW), "{}", describe(&out));
    assert!(!stderr.contains(THREAD_OVERFLOW), "{}", describe(&out));
}

#[test]
#[ignore = "child process of thread_overflow_keeps_rusts_message"]
fn child_thread_overflow() {
    if !is_child() {
        return;
    }
    let _rt = runtime(); // openco's handler is installed, in front of std's
    let depth = std::thread::Builder::new().name("plain-thread".into()).spawn(|| recurse(0)).unwrap().join();
    eprintln!("child: the overflowing thread returned {depth:?}");
}

#[test]
fn thread_overflow_keeps_rusts_message() {
    let out = run_child("child_thread_overflow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}", describe(&out));
    // "thread 'plain-thread' (<tid>) has overflowed its stack" on recent Rust.
    let line = stderr.lines().find(|l| l.contains(THREAD_OVERFLOW)).unwrap_or_default();
    assert!(line.contains("thread 'plain-thread'"), "{}", describe(&out));
    assert!(!stderr.contains("openco: coroutine stack overflow"), "{}", describe(&out));
}

#[test]
#[ignore = "child process of null_page_write_in_coroutine_is_sigsegv"]
fn child_null_page_write() {
    if !is_child() {
        return;
    }
    let rt = runtime();
    let result = rt
        .blocking(|| {
            // A literal null would be caught by Rust's debug-build checks (a panic, not a
            // fault); an address inside the unmapped null page faults the same way.
            let addr = std::hint::black_box(0x10usize);
            // SAFETY: deliberately unsound: the write must fault; SIGSEGV kills this child process.
            unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
        })
        .join();
    eprintln!("child: the faulting job returned {result:?}");
}

#[test]
fn null_page_write_in_coroutine_is_sigsegv() {
    let out = run_child("child_null_page_write");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{}", describe(&out));
    assert!(!stderr.contains("overflow"), "{}", describe(&out));
}
