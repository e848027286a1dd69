//! Conformance of the `getaddrinfo` hook: inside a coroutine the call runs on an offload
//! helper thread while the coroutine is parked, and must give what libc gives outside one:
//! the same `EAI_*` code, the same list of addresses, the same errno; through `std`
//! (`ToSocketAddrs`) the same addresses and the same errors. The resolving coroutine must not
//! hold its worker thread.
//!
//! Only names answered locally are used (`/etc/hosts`, numeric addresses, a malformed name
//! under `.invalid`): no DNS server is asked.

#[macro_use]
mod support;

use std::ffi::{CStr, CString};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};

use libc::{addrinfo, c_int};

/// Written to errno before each call, to see whether the call touched it.
const ERRNO_SENTINEL: c_int = 7777;
/// A name that can never resolve: under `.invalid` (RFC 6761), and with a first label of 64
/// characters, one over DNS's limit, so that glibc rejects it before sending a query. A
/// well-formed `.invalid` name is sent to the configured DNS server (glibc does not treat
/// `.invalid` specially), whose answer may change under load (`EAI_AGAIN` on a timeout).
const BAD_NAME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.invalid";

fn errno() -> c_int {
    // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`; the calling thread's own errno is writable.
    unsafe { *libc::__errno_location() = value }
}

/// One entry of a `getaddrinfo` result list, copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    flags: c_int,
    family: c_int,
    socktype: c_int,
    protocol: c_int,
    addr: Vec<u8>,
    canonname: Option<String>,
}

/// What one call produced.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    ret: c_int,
    errno: c_int,
    entries: Vec<Entry>,
    /// `*res` was left as it was (null) by a failed call.
    res_untouched: bool,
}

#[derive(Clone, Copy, Default)]
struct Hints {
    flags: c_int,
    family: c_int,
    socktype: c_int,
}

/// Calls `getaddrinfo` with errno set to the sentinel, copies the result and frees it.
fn lookup(node: Option<&str>, service: Option<&str>, hints: Option<Hints>) -> Outcome {
    let node = node.map(|s| CString::new(s).unwrap());
    let service = service.map(|s| CString::new(s).unwrap());
    let hints = hints.map(|h| {
        // SAFETY: `addrinfo` is plain data; all zeros (null pointers) is a valid value.
        let mut ai: addrinfo = unsafe { std::mem::zeroed() };
        ai.ai_flags = h.flags;
        ai.ai_family = h.family;
        ai.ai_socktype = h.socktype;
        ai
    });
    let mut res: *mut addrinfo = ptr::null_mut();
    set_errno(ERRNO_SENTINEL);
    // SAFETY: the strings are NUL-terminated or null, `hints` is null or a valid `addrinfo`,
    // `res` a valid out-parameter.
    let ret = unsafe {
        libc::getaddrinfo(
            node.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            service.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            hints.as_ref().map_or(ptr::null(), |h| h as *const addrinfo),
            &mut res,
        )
    };
    let errno = errno();
    let res_untouched = res.is_null();
    let mut entries = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` is an entry of the list libc returned, not yet freed.
        let ai = unsafe { &*p };
        // SAFETY: `ai_addr` points at `ai_addrlen` bytes of the entry.
        let addr = unsafe { std::slice::from_raw_parts(ai.ai_addr.cast::<u8>(), ai.ai_addrlen as usize) };
        let canonname = (!ai.ai_canonname.is_null())
            // SAFETY: a non-null `ai_canonname` is a NUL-terminated string of the list.
            .then(|| unsafe { CStr::from_ptr(ai.ai_canonname) }.to_string_lossy().into_owned());
        entries.push(Entry {
            flags: ai.ai_flags,
            family: ai.ai_family,
            socktype: ai.ai_socktype,
            protocol: ai.ai_protocol,
            addr: addr.to_vec(),
            canonname,
        });
        p = ai.ai_next;
    }
    if ret == 0 {
        // SAFETY: `res` is the list a successful call returned, freed once.
        unsafe { libc::freeaddrinfo(res) };
    }
    Outcome { ret, errno, entries, res_untouched }
}

struct Case {
    name: &'static str,
    node: Option<&'static str>,
    service: Option<&'static str>,
    hints: Option<Hints>,
    /// The code libc returns; checked outside coroutines too, so the table itself is
    /// verified against libc.
    expect: c_int,
}

fn cases() -> Vec<Case> {
    let stream = Some(Hints { socktype: libc::SOCK_STREAM, ..Hints::default() });
    let numeric = Some(Hints { flags: libc::AI_NUMERICHOST | libc::AI_NUMERICSERV, ..Hints::default() });
    vec![
        Case { name: "localhost", node: Some("localhost"), service: None, hints: None, expect: 0 },
        Case { name: "localhost:80 stream", node: Some("localhost"), service: Some("80"), hints: stream, expect: 0 },
        Case {
            name: "localhost:http stream",
            node: Some("localhost"),
            service: Some("http"),
            hints: stream,
            expect: 0,
        },
        Case {
            name: "localhost canonname",
            node: Some("localhost"),
            service: None,
            hints: Some(Hints { flags: libc::AI_CANONNAME, ..Hints::default() }),
            expect: 0,
        },
        Case { name: "127.0.0.1:80 numeric", node: Some("127.0.0.1"), service: Some("80"), hints: numeric, expect: 0 },
        Case { name: "::1:443 numeric", node: Some("::1"), service: Some("443"), hints: numeric, expect: 0 },
        Case {
            name: "passive :8080",
            node: None,
            service: Some("8080"),
            hints: Some(Hints { flags: libc::AI_PASSIVE, socktype: libc::SOCK_STREAM, ..Hints::default() }),
            expect: 0,
        },
        Case { name: "bad name", node: Some(BAD_NAME), service: None, hints: None, expect: libc::EAI_NONAME },
        Case {
            name: "bad name stream",
            node: Some(BAD_NAME),
            service: Some("80"),
            hints: stream,
            expect: libc::EAI_NONAME,
        },
        Case { name: "no node, no service", node: None, service: None, hints: None, expect: libc::EAI_NONAME },
        Case {
            name: "not numeric with AI_NUMERICHOST",
            node: Some("localhost"),
            service: None,
            hints: numeric,
            expect: libc::EAI_NONAME,
        },
        Case {
            name: "unknown service",
            node: Some("localhost"),
            service: Some("no-such-service-here"),
            hints: stream,
            expect: libc::EAI_SERVICE,
        },
        Case {
            name: "bad flags",
            node: Some("localhost"),
            service: None,
            hints: Some(Hints { flags: 0x4000_0000, ..Hints::default() }),
            expect: libc::EAI_BADFLAGS,
        },
        Case {
            name: "bad family",
            node: Some("localhost"),
            service: None,
            hints: Some(Hints { family: 12345, ..Hints::default() }),
            expect: libc::EAI_FAMILY,
        },
    ]
}

fn run_cases(case_list: Vec<Case>, workers: usize) {
    let rt = support::rt(workers);
    let mut failures = Vec::new();
    for case in case_list {
        let (node, service, hints) = (case.node, case.service, case.hints);
        let outside =
            std::thread::spawn(move || (openco::in_coroutine(), lookup(node, service, hints))).join().unwrap();
        let inside =
            support::join(rt.blocking(move || (openco::in_coroutine(), lookup(node, service, hints)))).unwrap();
        assert!(!outside.0 && inside.0, "{}: ran in the wrong context", case.name);
        let (outside, inside) = (outside.1, inside.1);
        if outside.ret != case.expect {
            failures.push(format!("{}: libc gave {}, the table expects {}", case.name, outside.ret, case.expect));
        }
        if outside.ret == 0 && outside.entries.is_empty() {
            failures.push(format!("{}: libc succeeded with no entry", case.name));
        }
        if inside != outside {
            failures.push(format!("{}: inside a coroutine {inside:?}, outside {outside:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

rt_test! {
    /// Every case of the table: same code, entries, errno and `*res` inside as outside.
    fn libc_results_match(workers: usize) {
        run_cases(cases(), workers);
    }
}

/// What `ToSocketAddrs` gives, made comparable (`io::Error` is not `PartialEq`).
fn std_lookup(target: (&str, u16)) -> Result<Vec<SocketAddr>, (std::io::ErrorKind, String)> {
    target.to_socket_addrs().map(|addrs| addrs.collect()).map_err(|e| (e.kind(), e.to_string()))
}

rt_test! {
    /// `std`'s resolution, the way applications reach `getaddrinfo`.
    fn std_lookups_match(rt) {
        let targets: [(&'static str, u16); 4] = [("localhost", 80), ("127.0.0.1", 80), ("::1", 443), (BAD_NAME, 80)];
        for target in targets {
            let outside = std::thread::spawn(move || std_lookup(target)).join().unwrap();
            let inside = support::join(rt.blocking(move || std_lookup(target))).unwrap();
            assert_eq!(inside, outside, "{target:?}");
        }
        assert_eq!(BAD_NAME.split('.').next().unwrap().len(), 64);
        let localhost = std_lookup(("localhost", 80)).unwrap();
        assert!(localhost.contains(&"127.0.0.1:80".parse().unwrap()), "{localhost:?}");
        assert!(std_lookup((BAD_NAME, 80)).is_err());
    }
}

/// On a single worker, job B can only run while job A is suspended. A resolves `localhost`
/// again and again, and checks after each call whether B has run; it does nothing else that
/// could suspend. If `getaddrinfo` held the worker thread, B could not run before A
/// returned, and A would give up after 1000 calls. B normally runs during A's first call; the
/// other calls only give a loaded machine room.
#[test]
fn a_resolving_coroutine_lets_others_run() {
    let rt = support::rt(1);
    let (started_tx, started_rx) = mpsc::channel();
    let b_ran = Arc::new(AtomicBool::new(false));
    let seen = b_ran.clone();
    let a = rt.blocking(move || {
        started_tx.send(()).unwrap();
        (0..1000).any(|_| {
            assert_eq!(lookup(Some("localhost"), None, None).ret, 0);
            seen.load(SeqCst)
        })
    });
    started_rx.recv().unwrap(); // A owns the only worker before B is submitted
    let b = rt.blocking(move || b_ran.store(true, SeqCst));
    assert!(support::join(a).unwrap(), "job B never ran while job A resolved");
    support::join(b).unwrap();
}

/// Fifty resolutions queued at once on one worker all finish with libc's answer, and were in
/// flight together: more than one coroutine was inside `getaddrinfo` at the same time, which
/// a single worker thread allows only if the calls park their coroutines. The worker is held
/// busy while the jobs are queued, so they all start back to back.
#[test]
fn fifty_concurrent_resolutions_on_one_worker() {
    let rt = support::rt(1);
    let expected = lookup(Some("localhost"), Some("80"), None);
    assert_eq!(expected.ret, 0);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (hold, waiter) = support::hold();
    let holder = rt.blocking(move || waiter.wait());
    let jobs: Vec<_> = (0..50)
        .map(|_| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            rt.blocking(move || {
                most.fetch_max(in_flight.fetch_add(1, SeqCst) + 1, SeqCst);
                let outcome = lookup(Some("localhost"), Some("80"), None);
                in_flight.fetch_sub(1, SeqCst);
                (support::thread_name(), outcome)
            })
        })
        .collect();
    hold.release();
    support::join(holder).unwrap();
    for job in jobs {
        let (thread, outcome) = support::join(job).unwrap();
        assert_eq!(outcome, expected);
        assert!(thread.starts_with("openco-test-1w"), "ran on {thread}");
    }
    let most = most.load(SeqCst);
    assert!(most > 1, "the resolutions ran one at a time: the worker thread was blocked");
}

/// The variable that tells a child process to run [`errno_child`].
const CHILD_ENV: &str = "OPENCO_TEST_DNS_ERRNO_CHILD";

/// errno written by libc inside `getaddrinfo` reaches the coroutine that called it. With no
/// file descriptor left (`RLIMIT_NOFILE` of 0), glibc fails to open `/etc/hosts` and leaves
/// `EMFILE` in errno, on success as on failure. Lowering the limit would break the other
/// tests of this process, so it runs in a child process: this binary, running `errno_child`.
#[test]
fn errno_comes_back_from_the_helper() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "errno_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by errno_comes_back_from_the_helper, in a child process"]
fn errno_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = support::rt(1); // its descriptors are opened before the limit drops
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid in/out-parameter for both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = 0;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let names = [Some("localhost"), Some(BAD_NAME), Some("127.0.0.1")];
    for node in names {
        let outside = lookup(node, None, None);
        let inside = support::join(rt.blocking(move || lookup(node, None, None))).unwrap();
        assert_ne!(outside.errno, ERRNO_SENTINEL, "{node:?}: libc left errno alone, the test proves nothing");
        assert_eq!(inside, outside, "{node:?}");
    }
}
