//! The readiness hooks (`poll`, `ppoll`, `select`, `epoll_wait`) and `close`'s wake-ups.
//!
//! - Inside a coroutine each readiness call waits on several fds with a timeout by suspending:
//!   the fd that becomes ready is written by another coroutine of the SAME worker, which can
//!   only run if the waiter is suspended (without the hook: deadlock, watchdog failure).
//! - Zero timeouts, expired timeouts and errors (POLLNVAL, EBADF, EINVAL, EFAULT) give what
//!   libc gives (`support::conform` tables, run outside and inside coroutines).
//! - A user's own epoll fd works in a legacy event loop inside a coroutine.
//! - `close` of an fd a coroutine is blocked reading wakes it with -1/EBADF, from the same
//!   worker and from another; the fd number, reused for a new socket, then works normally.
//! - 200 coroutines of one worker, each blocked reading its own socket, are all released.

#[macro_use]
mod support;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use libc::{c_int, EBADF, EINVAL, POLLIN, POLLOUT};
use support::conform::{conform, errno, Record, Want::*};
use support::fd::*;
use support::{hold, join, rt_leak_on_panic, wait_then_wake, WATCHDOG};

const TIMEOUT: Duration = Duration::from_millis(50);
const LONG: Option<Duration> = Some(Duration::from_secs(20));

// ---------------------------------------------------------------------------------------------
// The four calls, each over a list of fds

fn poll(fds: &[(RawFd, i16)], timeout_ms: c_int) -> (c_int, Vec<i16>) {
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    // SAFETY: `pfds` holds `len` valid pollfds.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    (n, pfds.iter().map(|p| p.revents).collect())
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos().into() }
}

fn ppoll(fds: &[(RawFd, i16)], timeout: Option<Duration>) -> (c_int, Vec<i16>) {
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    let ts = timeout.map(timespec);
    let ts_ptr = ts.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `pfds` holds `len` valid pollfds; `ts_ptr` is null or a valid timespec; a null
    // signal mask leaves the mask alone.
    let n = unsafe { libc::ppoll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ts_ptr, ptr::null()) };
    (n, pfds.iter().map(|p| p.revents).collect())
}

/// What `select` reported.
#[derive(Debug, PartialEq, Eq)]
struct Selected {
    readable: Vec<bool>,
    writable: Vec<bool>,
    /// The timeout as `select` left it (Linux writes back the time not slept).
    left: Option<(i64, i64)>,
}

fn fd_set(fds: &[RawFd]) -> libc::fd_set {
    // SAFETY: an all-zero fd_set is the empty set.
    let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
    for &fd in fds {
        assert!((0..libc::FD_SETSIZE as c_int).contains(&fd));
        // SAFETY: `fd` is within the set's range.
        unsafe { libc::FD_SET(fd, &mut set) };
    }
    set
}

fn select(read: &[RawFd], write: &[RawFd], timeout: Option<Duration>) -> (c_int, Selected) {
    let (mut rset, mut wset) = (fd_set(read), fd_set(write));
    let mut tv = timeout.map(|d| tv(d.as_secs() as i64, d.subsec_micros().into()));
    let nfds = read.iter().chain(write).max().map_or(0, |m| m + 1);
    let tv_ptr = tv.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
    // SAFETY: the sets cover `nfds` fds; `tv_ptr` is null or a valid timeval.
    let n = unsafe { libc::select(nfds, &mut rset, &mut wset, ptr::null_mut(), tv_ptr) };
    let readable = read.iter().map(|&fd| {
        // SAFETY: `fd` is within the set's range (checked in `fd_set`).
        unsafe { libc::FD_ISSET(fd, &rset) }
    });
    let readable = readable.collect();
    let writable = write.iter().map(|&fd| {
        // SAFETY: as above.
        unsafe { libc::FD_ISSET(fd, &wset) }
    });
    let writable = writable.collect();
    (n, Selected { readable, writable, left: tv.map(|t| (t.tv_sec, t.tv_usec)) })
}

/// A user's epoll fd watching `fds` (level-triggered), each with its index as data.
fn epoll_of(fds: &[(RawFd, u32)]) -> OwnedFd {
    // SAFETY: no pointer arguments.
    let ep = own(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) });
    for (i, &(fd, events)) in fds.iter().enumerate() {
        let mut ev = libc::epoll_event { events, u64: i as u64 };
        // SAFETY: `ev` is a valid epoll_event.
        assert_eq!(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }, 0);
    }
    ep
}

/// `epoll_wait` for up to 8 events: `(result, sorted (events, data))`.
fn epoll_wait(ep: RawFd, timeout_ms: c_int) -> (c_int, Vec<(u32, u64)>) {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: `evs` has room for the 8 events asked for.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 8, timeout_ms) };
    let mut got: Vec<(u32, u64)> = evs[..n.max(0) as usize].iter().map(|e| (e.events, e.u64)).collect();
    got.sort_unstable();
    (n, got)
}

#[derive(Clone, Copy, Debug)]
enum Api {
    Poll,
    Ppoll,
    Select,
    Epoll,
}
const APIS: [Api; 4] = [Api::Poll, Api::Ppoll, Api::Select, Api::Epoll];

fn ms(timeout: Option<Duration>) -> c_int {
    timeout.map_or(-1, |d| d.as_millis() as c_int)
}

/// Waits with `api` until one of `fds` is readable or `timeout` passes (`None`: no timeout);
/// returns the call's result, errno, and which fds it reported readable.
fn wait_readable(api: Api, fds: &[RawFd], timeout: Option<Duration>) -> (c_int, c_int, Vec<bool>) {
    let pfds: Vec<(RawFd, i16)> = fds.iter().map(|&fd| (fd, POLLIN)).collect();
    let (n, ready) = match api {
        Api::Poll => {
            let (n, rev) = poll(&pfds, ms(timeout));
            (n, rev.iter().map(|r| r & POLLIN != 0).collect())
        }
        Api::Ppoll => {
            let (n, rev) = ppoll(&pfds, timeout);
            (n, rev.iter().map(|r| r & POLLIN != 0).collect())
        }
        Api::Select => {
            let (n, sel) = select(fds, &[], timeout);
            (n, sel.readable)
        }
        Api::Epoll => {
            let ep = epoll_of(&fds.iter().map(|&fd| (fd, libc::EPOLLIN as u32)).collect::<Vec<_>>());
            let (n, evs) = epoll_wait(ep.as_raw_fd(), ms(timeout));
            (n, (0..fds.len() as u64).map(|i| evs.iter().any(|e| e.1 == i)).collect())
        }
    };
    (n, errno(), ready)
}

// ---------------------------------------------------------------------------------------------
// Suspension

rt_test! {
    /// Each call waits on three fds with a long timeout; another coroutine writes to the
    /// second one later: the call reports exactly that fd.
    fn a_wait_on_several_fds_ends_when_one_becomes_ready(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        for api in APIS {
            let (r1, _w1) = pipe();
            let (r2, w2) = pipe();
            let (u, _peer) = unix_pair();
            let fds = [r1.as_raw_fd(), r2.as_raw_fd(), u.as_raw_fd()];
            let ((n, _, ready), _) = wait_then_wake(
                &rt,
                move || wait_readable(api, &fds, LONG),
                move || write(w2.as_raw_fd(), b"x"),
            );
            assert_eq!((n, ready), (1, vec![false, true, false]), "{api:?}");
            drop((r1, r2, u));
        }
    }
}

/// On ONE worker, a sibling submitted once the waiter waits runs during the wait of each call
/// when nothing becomes ready; the call then returns 0 after its timeout.
#[test]
fn timed_waits_let_a_sibling_run() {
    let rt = rt_leak_on_panic(1);
    for api in APIS {
        let b_ran = Arc::new(AtomicBool::new(false));
        let seen = b_ran.clone();
        let ((n, ran_meanwhile), ()) = wait_then_wake(
            &rt,
            move || {
                let (r, _w) = pipe();
                let (n, _, _) = wait_readable(api, &[r.as_raw_fd()], Some(Duration::from_millis(100)));
                (n, seen.load(SeqCst))
            },
            move || b_ran.store(true, SeqCst),
        );
        assert_eq!(n, 0, "{api:?}");
        assert!(ran_meanwhile, "{api:?}: the sibling did not run while the call waited");
    }
}

rt_test! {
    /// A legacy event loop on the user's own epoll fd, inside a coroutine: it waits with no
    /// timeout and collects what another coroutine of the same worker writes to a pipe, in
    /// three writes with suspensions between them, until an eventfd says stop.
    fn legacy_epoll_loop(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        let (r, w) = pipe();
        let stop = Arc::new(eventfd(0, 0));
        let stop2 = stop.clone();
        let (got, ()) = wait_then_wake(
            &rt,
            move || {
                let ep = epoll_of(&[(r.as_raw_fd(), libc::EPOLLIN as u32), (stop.as_raw_fd(), libc::EPOLLIN as u32)]);
                let mut got = Vec::new();
                loop {
                    let (n, evs) = epoll_wait(ep.as_raw_fd(), -1);
                    assert!(n > 0, "epoll_wait gave {n}, errno {}", errno());
                    if evs.iter().any(|e| e.1 == 0) {
                        let mut buf = [0u8; 64];
                        let k = read(r.as_raw_fd(), &mut buf);
                        got.extend_from_slice(&buf[..k.max(0) as usize]);
                    }
                    // Everything was written before the stop: once it shows, it is all read.
                    if evs.iter().any(|e| e.1 == 1) {
                        return got;
                    }
                }
            },
            move || {
                for part in [&b"one "[..], b"two ", b"three"] {
                    assert_eq!(write(w.as_raw_fd(), part), part.len() as isize);
                    thread::sleep(Duration::from_millis(1)); // let the loop turn
                }
                assert_eq!(write(stop2.as_raw_fd(), &1u64.to_ne_bytes()), 8);
            },
        );
        assert_eq!(String::from_utf8(got).unwrap(), "one two three");
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance

/// Zero timeouts return at once with libc's answer, over fds in various states: data waiting,
/// nothing waiting, peer closed (POLLHUP/POLLRDHUP), writable.
fn zero_timeouts() -> Record {
    let mut r = Record::default();
    let (data_r, data_w) = pipe();
    write(data_w.as_raw_fd(), b"x");
    let (empty_r, _empty_w) = pipe();
    let (hup, peer) = unix_pair();
    drop(peer);
    let (tcp, tcp_peer) = tcp_pair();
    shutdown(tcp_peer.as_raw_fd(), libc::SHUT_WR);
    r.call("peer's FIN arrived (blocking read)", Ret(0), || read(tcp.as_raw_fd(), &mut [0; 4]));
    let all = libc::POLLIN | POLLOUT | libc::POLLRDHUP;
    let fds = [(data_r.as_raw_fd(), all), (empty_r.as_raw_fd(), all), (hup.as_raw_fd(), all), (tcp.as_raw_fd(), all)];
    let mut rev = None;
    r.call("poll 0", Ret(3), || {
        let (n, v) = poll(&fds, 0);
        rev = Some(v);
        n
    });
    r.fact("revents", rev.take());
    r.call("ppoll 0", Ret(3), || {
        let (n, v) = ppoll(&fds, Some(Duration::ZERO));
        rev = Some(v);
        n
    });
    r.fact("revents", rev);
    let raw: Vec<RawFd> = fds.iter().map(|f| f.0).collect();
    let mut sel = None;
    r.call("select 0", Any, || {
        let (n, s) = select(&raw, &raw, Some(Duration::ZERO));
        sel = Some(s);
        n
    });
    r.fact("selected", sel);
    let ep = epoll_of(&fds.iter().map(|&(fd, ev)| (fd, ev as u32)).collect::<Vec<_>>());
    let mut evs = None;
    r.call("epoll_wait 0", Ret(3), || {
        let (n, e) = epoll_wait(ep.as_raw_fd(), 0);
        evs = Some(e);
        n
    });
    r.fact("events", evs);
    r
}

/// Timeouts with nothing ready: 0 after at least the timeout; `select` writes back a zero
/// time left; `poll` of no fds and `select` of no sets are sleeps.
fn expired_timeouts() -> Record {
    let mut r = Record::default();
    let (rd, _w) = pipe();
    let fd = rd.as_raw_fd();
    fn timed(r: &mut Record, what: &str, call: &dyn Fn() -> c_int) {
        let start = Instant::now();
        r.call(what, Ret(0), call);
        r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    }
    timed(&mut r, "poll 50 ms", &|| poll(&[(fd, POLLIN)], 50).0);
    timed(&mut r, "ppoll 50 ms", &|| ppoll(&[(fd, POLLIN)], Some(TIMEOUT)).0);
    timed(&mut r, "epoll_wait 50 ms", &|| epoll_wait(epoll_of(&[(fd, libc::EPOLLIN as u32)]).as_raw_fd(), 50).0);
    timed(&mut r, "poll of no fds, 50 ms", &|| poll(&[], 50).0);
    let start = Instant::now();
    let mut left = None;
    r.call("select 50 ms", Ret(0), || {
        let (n, s) = select(&[fd], &[], Some(TIMEOUT));
        left = s.left;
        n
    });
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    r.fact("time left", left);
    let start = Instant::now();
    r.call("select of no sets, 50 ms", Ret(0), || select(&[], &[], Some(TIMEOUT)).0);
    r.check("waited the timeout", start.elapsed() >= TIMEOUT);
    r
}

/// Errors: POLLNVAL for a closed fd (and a negative fd ignored), EBADF from `select` and
/// `epoll_wait`, EINVAL for bad counts and timeouts, EFAULT for a bad array.
fn errors() -> Record {
    let mut r = Record::default();
    let closed = closed_fd(0);
    let closed_low = closed_fd_below_1024(0);
    let (rd, _w) = pipe();
    let mut rev = None;
    r.call("poll: closed fd, fd -1, open fd", Ret(1), || {
        let (n, v) = poll(&[(closed, POLLIN), (-1, POLLIN), (rd.as_raw_fd(), POLLIN)], 20);
        rev = Some(v);
        n
    });
    r.fact("revents", rev.take());
    r.call("ppoll with a closed fd", Ret(1), || {
        let (n, v) = ppoll(&[(closed, POLLIN)], LONG);
        rev = Some(v);
        n
    });
    r.fact("revents", rev);
    r.call("select with a closed fd", Err(EBADF), || select(&[rd.as_raw_fd(), closed_low], &[], LONG).0);
    r.call("select nfds -1", Err(EINVAL), || {
        // SAFETY: null sets and timeout are allowed; the count is rejected first.
        unsafe { libc::select(-1, ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut()) }
    });
    r.call("select negative timeout", Err(EINVAL), || {
        let mut t = tv(-1, 0);
        // SAFETY: null sets are allowed; `t` is a valid timeval.
        unsafe { libc::select(0, ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), &mut t) }
    });
    r.call("ppoll tv_nsec -1", Err(EINVAL), || {
        let ts = libc::timespec { tv_sec: 0, tv_nsec: -1 };
        let mut p = libc::pollfd { fd: rd.as_raw_fd(), events: POLLIN, revents: 0 };
        // SAFETY: one valid pollfd and a (bad but readable) timespec.
        unsafe { libc::ppoll(&mut p, 1, &ts, ptr::null()) }
    });
    r.call("poll nfds past RLIMIT_NOFILE", Err(EINVAL), || {
        let mut p = libc::pollfd { fd: rd.as_raw_fd(), events: POLLIN, revents: 0 };
        // SAFETY: the count is rejected before the kernel reads the array.
        unsafe { libc::poll(&mut p, 10_000_000, 0) }
    });
    r.call("poll of a bad array", Err(libc::EFAULT), || {
        // SAFETY: a dangling pointer (address 4, in the never-mapped first page); the kernel
        // checks it and fails with EFAULT.
        unsafe { libc::poll(ptr::dangling_mut(), 1, 10) }
    });
    let ep = epoll_of(&[(rd.as_raw_fd(), libc::EPOLLIN as u32)]);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
    let mut ep_wait = |ep: RawFd, max: c_int| {
        // SAFETY: `evs` has room for the one event asked for (or none).
        unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), max, 10) }
    };
    r.call("epoll_wait maxevents 0", Err(EINVAL), || ep_wait(ep.as_raw_fd(), 0));
    r.call("epoll_wait on a pipe", Err(EINVAL), || ep_wait(rd.as_raw_fd(), 1));
    r.call("epoll_wait on a closed fd", Err(EBADF), || ep_wait(closed, 1));
    r
}

#[test]
fn zero_timeouts_match_libc() {
    conform(zero_timeouts);
}

#[test]
fn expired_timeouts_match_libc() {
    conform(expired_timeouts);
}

#[test]
fn errors_match_libc() {
    conform(errors);
}

// ---------------------------------------------------------------------------------------------
// close

/// A coroutine blocked reading `fd` (a private slot number) and one that closes it: the
/// reader gets -1/EBADF.
fn read_then_close(rt: &support::LeakOnPanic, fd: RawFd) -> (isize, c_int) {
    let (got, closed) = wait_then_wake(
        rt,
        move || {
            let n = read(fd, &mut [0; 8]);
            (n, errno())
        },
        move || close(fd),
    );
    assert_eq!(closed, 0);
    got
}

#[test]
fn close_wakes_a_reader_on_the_same_worker() {
    let rt = rt_leak_on_panic(1);
    let (_a, b) = unix_pair();
    let fd = move_to(b, fd_slot(10));
    assert_eq!(read_then_close(&rt, fd), (-1, EBADF));
}

/// The closer holds one worker (spinning) until the reader has started, so the reader runs
/// on the other worker.
#[test]
fn close_wakes_a_reader_on_another_worker() {
    let rt = rt_leak_on_panic(2);
    let (_a, b) = unix_pair();
    let fd = move_to(b, fd_slot(11));
    let (release, holding) = hold();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let closer = rt.blocking(move || {
        tx.send(thread::current().id()).unwrap();
        holding.wait();
        thread::sleep(Duration::from_millis(20)); // the reader is (most likely) waiting by now
        (close(fd), thread::current().id())
    });
    let closer_thread = rx.recv_timeout(WATCHDOG).unwrap();
    let reader = rt.blocking(move || {
        tx2.send(thread::current().id()).unwrap();
        let n = read(fd, &mut [0; 8]);
        (n, errno())
    });
    let reader_thread = rx.recv_timeout(WATCHDOG).unwrap();
    assert_ne!(closer_thread, reader_thread, "the reader should run on the worker the closer does not hold");
    release.release();
    assert_eq!(join(closer).unwrap().0, 0);
    assert_eq!(join(reader).unwrap(), (-1, EBADF));
}

rt_test! {
    /// After a blocked reader was woken by `close`, the same fd number given to a new socket
    /// works normally: a new reader waits on it and gets what the new peer writes.
    fn a_reused_fd_number_works_for_a_new_reader(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        let slot = fd_slot(20 + workers as c_int);
        let (old_peer, b) = unix_pair();
        let fd = move_to(b, slot);
        assert_eq!(read_then_close(&rt, fd), (-1, EBADF));
        let (new_peer, d) = unix_pair();
        assert_eq!(move_to(d, slot), fd);
        let (got, wrote) = wait_then_wake(
            &rt,
            move || {
                let mut buf = [0u8; 8];
                let n = read(fd, &mut buf);
                (n, buf[..n.max(0) as usize].to_vec())
            },
            move || write(new_peer.as_raw_fd(), b"fresh"),
        );
        assert_eq!(wrote, 5);
        assert_eq!(got, (5, b"fresh".to_vec()));
        assert_eq!(send(old_peer.as_raw_fd(), b"x", libc::MSG_NOSIGNAL), -1, "the old socket is gone");
        assert_eq!(close(fd), 0);
    }
}

rt_test! {
    /// 200 coroutines each block reading their own socket; a job queued after all of them
    /// writes to every socket, and each reader gets its own byte.
    fn many_blocked_readers_are_all_released(workers: usize) {
        const N: usize = 200;
        let rt = rt_leak_on_panic(workers);
        let (writers, readers): (Vec<OwnedFd>, Vec<OwnedFd>) = (0..N).map(|_| unix_pair()).unzip();
        let handles: Vec<_> = readers
            .into_iter()
            .map(|r| {
                rt.blocking(move || {
                    let mut buf = [0u8; 4];
                    (read(r.as_raw_fd(), &mut buf), buf[0])
                })
            })
            .collect();
        let writer = rt.blocking(move || {
            for (i, w) in writers.iter().enumerate() {
                assert_eq!(write(w.as_raw_fd(), &[i as u8]), 1);
            }
            writers
        });
        let _writers = join(writer).unwrap();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(join(h).unwrap(), (1, i as u8), "reader {i}");
        }
    }
}
