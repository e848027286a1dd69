//! Conformance records: a scenario makes libc calls and writes down, call by call, what each
//! returned and what errno was right after it (with errno set to a sentinel before, so a call
//! that leaves errno alone shows it). [`conform`] runs a scenario on a plain thread, then
//! inside a coroutine on a 1-worker and on a 2-worker runtime, and requires the three records
//! to be equal.
//!
//! Each call also states what libc is expected to give ([`Want`]); a miss outside a coroutine
//! means the scenario itself is wrong about libc and fails the test as such, so the table is
//! checked against libc on every run. `CONFORM_SHOW=1 cargo test ... -- --nocapture` prints
//! each record.

use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use libc::c_int;

/// Written to errno before each recorded call.
pub const ERRNO_SENTINEL: c_int = 7777;

pub fn errno() -> c_int {
    // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: c_int) {
    // SAFETY: as in `errno`; the calling thread's own errno is writable.
    unsafe { *libc::__errno_location() = value }
}

thread_local! {
    /// Where the scenario running on this thread is, for the watchdog's message. Coroutines
    /// of one worker share it, which is fine: [`conform`] runs one scenario per runtime.
    static PROGRESS: RefCell<Option<Arc<Mutex<String>>>> = const { RefCell::new(None) };
}

fn progress(now: String) {
    PROGRESS.with(|p| {
        if let Some(p) = &*p.borrow() {
            *p.lock().unwrap_or_else(|e| e.into_inner()) = now;
        }
    });
}

/// What a recorded call should give, according to libc.
#[derive(Clone, Copy, Debug)]
pub enum Want {
    /// This return value (errno not checked: the record compares it anyway).
    Ret(i64),
    /// -1 with this errno.
    Err(c_int),
    /// A return value in this range (inclusive), e.g. a partial count.
    Between(i64, i64),
    /// Anything: the record alone decides.
    Any,
}

/// A syscall's return value of any integer width.
pub trait Ret {
    fn to_i64(self) -> i64;
}
impl Ret for i32 {
    fn to_i64(self) -> i64 {
        self.into()
    }
}
impl Ret for isize {
    fn to_i64(self) -> i64 {
        self as i64
    }
}
impl Ret for i64 {
    fn to_i64(self) -> i64 {
        self
    }
}

/// What a scenario saw, step by step. Equality compares the steps only.
#[derive(Debug, Default, Clone)]
pub struct Record {
    steps: Vec<String>,
    surprises: Vec<String>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.steps == other.steps
    }
}

impl Record {
    /// Runs `call` with errno set to [`ERRNO_SENTINEL`] and records its result and errno.
    /// Returns the result. A `Between` result is recorded as in range or not, not as a number
    /// (partial counts vary from run to run).
    pub fn call<R: Ret>(&mut self, what: &str, want: Want, call: impl FnOnce() -> R) -> i64 {
        progress(format!("in `{what}`"));
        set_errno(ERRNO_SENTINEL);
        let ret = call().to_i64();
        let err = errno();
        let shown = match want {
            Want::Between(lo, hi) if (lo..=hi).contains(&ret) => format!("in {lo}..={hi}"),
            _ => show(ret, err),
        };
        self.steps.push(format!("{what}: {shown}"));
        let ok = match want {
            Want::Ret(n) => ret == n,
            Want::Err(e) => ret == -1 && err == e,
            Want::Between(lo, hi) => (lo..=hi).contains(&ret),
            Want::Any => true,
        };
        if !ok {
            self.surprises.push(format!("{what}: got {}, wanted {want:?}", show(ret, err)));
        }
        ret
    }

    /// Records a value as it is.
    pub fn fact(&mut self, what: &str, value: impl Debug) {
        progress(format!("after `{what}`"));
        self.steps.push(format!("{what}: {value:?}"));
    }

    /// Records a condition that libc is expected to meet.
    pub fn check(&mut self, what: &str, ok: bool) {
        self.fact(what, ok);
        if !ok {
            self.surprises.push(format!("{what}: false"));
        }
    }

    fn show(&self) -> String {
        self.steps.iter().map(|s| format!("    {s}\n")).collect()
    }
}

fn show(ret: i64, err: c_int) -> String {
    if err == ERRNO_SENTINEL {
        format!("{ret}")
    } else {
        format!("{ret}, errno {}", errno_name(err))
    }
}

/// The symbolic name of the errno values the tests meet, else the number.
pub fn errno_name(err: c_int) -> String {
    let name = match err {
        libc::EAGAIN => "EAGAIN",
        libc::EBADF => "EBADF",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EISCONN => "EISCONN",
        libc::EDOM => "EDOM",
        libc::EINTR => "EINTR",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESPIPE => "ESPIPE",
        libc::ENOTTY => "ENOTTY",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::EISDIR => "EISDIR",
        libc::ENOTDIR => "ENOTDIR",
        libc::ENOTEMPTY => "ENOTEMPTY",
        _ => return err.to_string(),
    };
    name.to_owned()
}

/// Runs `scenario` on a plain thread and inside a coroutine on 1 and on 2 workers; fails
/// unless libc met every expectation outside and the three records are equal.
pub fn conform(scenario: fn() -> Record) {
    let outside = super::on_thread(move || {
        assert!(!openco::in_coroutine());
        scenario()
    });
    if std::env::var_os("CONFORM_SHOW").is_some() {
        eprintln!("record outside a coroutine:\n{}", outside.show());
    }
    assert!(
        outside.surprises.is_empty(),
        "outside a coroutine libc did not do what the scenario expects (the table is wrong):\n  {}\nrecord:\n{}",
        outside.surprises.join("\n  "),
        outside.show()
    );
    for workers in [1, 2] {
        let rt = super::rt_leak_on_panic(workers);
        let at = Arc::new(Mutex::new(String::from("before the first call")));
        let at2 = at.clone();
        let mut job = rt.blocking(move || {
            assert!(openco::in_coroutine());
            PROGRESS.with(|p| *p.borrow_mut() = Some(at2));
            let record = scenario();
            PROGRESS.with(|p| p.borrow_mut().take());
            record
        });
        let inside = match job.timeout_join(super::WATCHDOG) {
            Err(e) if e.is_timeout() => panic!(
                "inside a coroutine ({workers} worker(s)) the scenario did not end within {:?}; it is {}",
                super::WATCHDOG,
                at.lock().unwrap_or_else(|e| e.into_inner())
            ),
            r => r.unwrap(),
        };
        assert!(inside == outside, "{}", diff(&outside, &inside, workers));
    }
}

fn diff(outside: &Record, inside: &Record, workers: usize) -> String {
    let mut out = format!("inside a coroutine ({workers} worker(s)) the record differs from libc's:\n");
    for i in 0..outside.steps.len().max(inside.steps.len()) {
        let (o, n) = (outside.steps.get(i), inside.steps.get(i));
        if o != n {
            out +=
                &format!("  step {i}\n    outside: {}\n    inside:  {}\n", o.map_or("-", |s| s), n.map_or("-", |s| s));
        }
    }
    out + &format!("full record outside:\n{}", outside.show())
}
