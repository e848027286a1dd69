//! Each hooked call that waits suspends its coroutine instead of blocking the worker thread.
//!
//! The waiting call and the call that ends its wait run in two coroutines of ONE worker
//! (`support::wait_then_wake`), so without a working hook they deadlock and the watchdog
//! fails the test; the `two_workers` variants run the same on two. Covered: `read`, `readv`,
//! `recv`, `recvfrom`, `recvmsg` (unix and TCP sockets, pipes, eventfds), `write`, `writev`,
//! `send`, `sendto`, `sendmsg` (full unix sockets and pipes), `accept`/`accept4`, and waits
//! that end by a timeout (`SO_RCVTIMEO`, `SO_SNDTIMEO`, `connect` with `SO_SNDTIMEO`,
//! `connect_timeout`). errno after a suspension is the caller's, though a sibling on the same
//! worker set errno meanwhile.

#[macro_use]
mod support;

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use libc::{EAGAIN, O_RDWR};
use support::conform::{errno, set_errno};
use support::fd::*;
use support::{rt_leak_on_panic, wait_then_wake};

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Suspension: the waiting call and its waker share ONE worker (and, in `two_workers`, maybe not).

type ReadCall = fn(RawFd, &mut [u8]) -> isize;
type WriteCall = fn(RawFd, &[u8]) -> isize;

const READS: [(&str, ReadCall); 5] = [
    ("read", read),
    ("readv", readv1),
    ("recv", recv_plain),
    ("recvfrom", |fd, buf| recvfrom(fd, buf, 0).0),
    ("recvmsg", |fd, buf| recvmsg(fd, buf, 0).0),
];

const WRITES: [(&str, WriteCall); 5] = [
    ("write", write),
    ("writev", writev1),
    ("send", send_plain),
    ("sendto", |fd, buf| sendto(fd, buf, 0, None)),
    ("sendmsg", |fd, buf| sendmsg(fd, buf, 0)),
];

rt_test! {
    /// Each read call on an empty unix socket, pipe and TCP socket waits for a write made
    /// later by another coroutine; an eventfd read waits for an eventfd write.
    fn each_read_call_suspends(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        for (name, call) in READS {
            for (kind, (w, rd)) in [("unix", unix_pair()), ("tcp", tcp_pair())] {
                let (got, wrote) = wait_then_wake(
                    &rt,
                    move || {
                        let mut buf = [0u8; 16];
                        let n = call(rd.as_raw_fd(), &mut buf);
                        (n, buf[..n.max(0) as usize].to_vec())
                    },
                    move || write(w.as_raw_fd(), b"hello"),
                );
                assert_eq!(wrote, 5);
                assert_eq!(got, (5, b"hello".to_vec()), "{name} on {kind}");
            }
        }
        let (rd, w) = pipe();
        let (got, _) = wait_then_wake(&rt, move || read(rd.as_raw_fd(), &mut [0; 8]), move || write(w.as_raw_fd(), b"abc"));
        assert_eq!(got, 3, "pipe read");
        let ev = Arc::new(eventfd(0, 0));
        let ev2 = ev.clone();
        let (got, _) = wait_then_wake(
            &rt,
            move || {
                let mut buf = [0u8; 8];
                (read(ev.as_raw_fd(), &mut buf), u64::from_ne_bytes(buf))
            },
            move || write(ev2.as_raw_fd(), &7u64.to_ne_bytes()),
        );
        assert_eq!(got, (8, 7), "eventfd read");
    }
}

rt_test! {
    /// Each write call of 1 MiB on a full unix socket (and a pipe) completes in full while
    /// another coroutine drains the other end.
    fn each_write_call_suspends(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        let calls = WRITES.iter().map(|&(n, c)| (n, c, true)).chain([("pipe write", write as WriteCall, false)]);
        for (name, call, socket) in calls {
            let (w, rd) = if socket { unix_pair() } else { let (r, w) = pipe(); (w, r) };
            let filled = fill(w.as_raw_fd());
            let (wrote, drained) = wait_then_wake(
                &rt,
                move || call(w.as_raw_fd(), &vec![9u8; MIB]),
                move || drain(rd.as_raw_fd(), filled + MIB),
            );
            assert_eq!(wrote, MIB as isize, "{name}");
            assert_eq!(drained, filled + MIB, "{name}");
        }
    }
}

rt_test! {
    /// `accept` (libc) and `TcpListener::accept` (accept4) wait for a connection made later by
    /// another coroutine.
    fn accept_suspends(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        for use_std in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (accepted, connected) = wait_then_wake(
                &rt,
                move || {
                    if use_std {
                        listener.accept().map(|(s, _)| getfl(s.as_raw_fd())).unwrap_or(-1)
                    } else {
                        let fd = accept(listener.as_raw_fd());
                        if fd < 0 { -1 } else { getfl(own(fd).as_raw_fd()) }
                    }
                },
                move || TcpStream::connect(addr).map(|mut s| s.write_all(b"x")).is_ok(),
            );
            assert!(connected);
            assert_eq!(accepted, O_RDWR, "accept (std: {use_std}) gave a blocking fd");
        }
    }
}

/// Timed waits let the worker run a sibling: on ONE worker, job B (submitted once A waits)
/// runs while A's call waits for its timeout. Without suspension B would run only after A.
#[test]
fn timed_waits_let_a_sibling_run() {
    type Timed = fn() -> bool;
    let cases: [(&str, Timed); 4] = [
        ("recv with SO_RCVTIMEO", || {
            let (c, _s) = tcp_pair();
            set_timeout(c.as_raw_fd(), libc::SO_RCVTIMEO, tv(0, 100_000));
            recv(c.as_raw_fd(), &mut [0; 8], 0) == -1 && errno() == EAGAIN
        }),
        ("write with SO_SNDTIMEO", || {
            let (a, _b) = unix_pair();
            fill(a.as_raw_fd());
            set_timeout(a.as_raw_fd(), libc::SO_SNDTIMEO, tv(0, 100_000));
            write(a.as_raw_fd(), b"x") == -1 && errno() == EAGAIN
        }),
        ("connect with SO_SNDTIMEO", || {
            let (_l, _f, addr) = full_backlog();
            let fd = own(socket(libc::AF_INET, libc::SOCK_STREAM));
            set_timeout(fd.as_raw_fd(), libc::SO_SNDTIMEO, tv(0, 100_000));
            connect(fd.as_raw_fd(), &addr) == -1 && errno() == libc::EINPROGRESS
        }),
        ("connect_timeout", || {
            let (_l, _f, addr) = full_backlog();
            TcpStream::connect_timeout(&addr, Duration::from_millis(100))
                .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
        }),
    ];
    let rt = rt_leak_on_panic(1);
    for (name, call) in cases {
        let b_ran = Arc::new(AtomicBool::new(false));
        let seen = b_ran.clone();
        let ((ok, ran_meanwhile), ()) =
            wait_then_wake(&rt, move || (call(), seen.load(SeqCst)), move || b_ran.store(true, SeqCst));
        assert!(ok, "{name}: not the timeout's error");
        assert!(ran_meanwhile, "{name}: the sibling did not run while the call waited");
    }
}

rt_test! {
    /// errno after a suspended call is that call's, though a sibling on the same worker set
    /// errno while it waited; and a call that succeeds after a wait leaves the caller's errno.
    fn errno_survives_a_suspension(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        let (c, s) = tcp_pair();
        let (got, ()) = wait_then_wake(
            &rt,
            move || {
                set_errno(1111);
                let n = recv(c.as_raw_fd(), &mut [0; 8], 0);
                (n, errno())
            },
            move || {
                set_errno(2222);
                set_linger0(s.as_raw_fd());
                drop(s);
                set_errno(3333);
                std::thread::sleep(Duration::from_millis(1)); // a suspension of its own
                set_errno(4444);
            },
        );
        assert_eq!(got, (-1, libc::ECONNRESET));
        let (a, b) = unix_pair();
        let (got, ()) = wait_then_wake(
            &rt,
            move || {
                set_errno(1111);
                let n = read(b.as_raw_fd(), &mut [0; 8]);
                (n, errno())
            },
            move || {
                set_errno(2222);
                write(a.as_raw_fd(), b"abc");
                set_errno(3333);
            },
        );
        assert_eq!(got, (3, 1111));
    }
}
