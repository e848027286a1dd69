//! `hookcost`: what a hooked libc call costs outside any coroutine (here: the main thread,
//! with openco's global runtime started), against the same call through libc's own
//! definition (`dlsym(RTLD_NEXT, name)`, what the hook forwards to) and through a raw
//! `syscall(2)`. Three loops, each run as interleaved rounds of the three ways to call:
//! - `read/write`: write 1 byte into a pipe, read it back;
//! - `send/recv`: the same on a Unix stream socketpair (`sendto`/`recvfrom` for the raw
//!   syscall);
//! - `poll`: `poll` of an empty pipe with timeout 0 (raw: `ppoll` with a zero timeout on
//!   aarch64, which has no `poll` syscall).
//!
//! A round times 50,000 calls of each way (25,000 write+read pairs), the three ways one
//! after another in a rotating order; 20 rounds, so 1M calls each. The child reports each
//! way's median round, and the median over rounds of hooked / libc's within one round (the
//! two timed next to each other, so load from elsewhere mostly cancels out). Whether the
//! call really goes to a hook is checked as `tests/hook_linkage.rs` does: the address this
//! binary calls differs from libc's.
//!
//! Invariants the `unsafe` calls rely on:
//! 1. the descriptors are the open ends of one pipe or socketpair, owned by [`child`] until
//!    it closes them at the end;
//! 2. `buf` points to a live 1-byte buffer, and every iteration writes a byte before reading
//!    it back (poll: an empty pipe, timeout 0), so no call blocks;
//! 3. the `real_*` pointers are libc's definitions of the functions named, which have the C
//!    signatures given to them here.

use std::ffi::{c_void, CStr};
use std::hint::black_box;
use std::time::Instant;

use crate::harness::{fmt_stat, run_child, stats};

const ROUNDS: usize = 20;
const CALLS_PER_ROUND: usize = 50_000;
const OPS: [&str; 3] = ["rw", "sendrecv", "poll"];
const WAYS: [&str; 3] = ["hooked", "libc", "syscall"];

// ---------------------------------------------------------------------------------------
// Parent.

pub fn scenario(runs: usize) {
    println!(
        "\nhookcost: ns per call outside any coroutine; {} calls per way per child, rounds interleaved",
        ROUNDS * CALLS_PER_ROUND
    );
    let mut samples = Vec::new();
    for _ in 0..runs {
        match run_child(&["hookcost".into()]) {
            Ok(s) => samples.push(s),
            Err(e) => println!("  !! hookcost: {e}"),
        }
    }
    println!(
        "  {:<22} {:>20} {:>20} {:>20} {:>22} {:>8}",
        "", "hooked ns", "libc's ns", "raw syscall ns", "hooked/libc", "hooked?"
    );
    let labels = ["read/write (pipe)", "send/recv (socketpair)", "poll (timeout 0)"];
    for (op, label) in OPS.iter().zip(labels) {
        let key = |way: &str| format!("{op}_{way}_ns");
        let (hooked, libc_, raw) = (key("hooked"), key("libc"), key("syscall"));
        let is_hooked = match stats(&samples, |s| s[&format!("{op}_hooked")]) {
            Some((x, _, _)) if x > 0.5 => "yes",
            Some(_) => "NO",
            None => "-",
        };
        println!(
            "  {:<22} {:>20} {:>20} {:>20} {:>22} {:>8}",
            label,
            fmt_stat(&samples, |s| s[&hooked], 1),
            fmt_stat(&samples, |s| s[&libc_], 1),
            fmt_stat(&samples, |s| s[&raw], 1),
            fmt_stat(&samples, |s| s[&format!("{op}_ratio")], 3),
            is_hooked
        );
    }
    println!(
        "  (hooked/libc: median over rounds of the ratio within a round; \"hooked? NO\": this build calls libc's)"
    );
}

// ---------------------------------------------------------------------------------------
// Child.

/// libc's definition of `name` (the next one after this executable), and whether the
/// address this binary calls, `ours`, is a different one (a hook).
fn real(name: &CStr, ours: usize) -> (usize, bool) {
    // SAFETY: `name` is NUL-terminated; RTLD_NEXT is a valid pseudo-handle.
    let theirs = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    assert_ne!(theirs, 0, "libc has no {name:?}");
    (theirs, theirs != ours)
}

type ReadFn = unsafe extern "C" fn(libc::c_int, *mut c_void, libc::size_t) -> libc::ssize_t;
type WriteFn = unsafe extern "C" fn(libc::c_int, *const c_void, libc::size_t) -> libc::ssize_t;
type RecvFn = unsafe extern "C" fn(libc::c_int, *mut c_void, libc::size_t, libc::c_int) -> libc::ssize_t;
type SendFn = unsafe extern "C" fn(libc::c_int, *const c_void, libc::size_t, libc::c_int) -> libc::ssize_t;
type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, libc::c_int) -> libc::c_int;

/// Times `ways` (each makes `calls_per_iter` calls per invocation) in interleaved rounds;
/// returns each way's median ns per call, and the median over rounds of way 0 / way 1.
fn interleaved<const N: usize>(calls_per_iter: usize, ways: &mut [&mut dyn FnMut(); N]) -> ([f64; N], f64) {
    let iters = CALLS_PER_ROUND / calls_per_iter;
    let mut rounds = [[0.0; N]; ROUNDS]; // ns per call, by round then way
    for (round, ns) in rounds.iter_mut().enumerate() {
        for k in 0..N {
            let w = (round + k) % N; // rotate the order, so no way always runs first
            let start = Instant::now();
            for _ in 0..iters {
                ways[w]();
            }
            ns[w] = start.elapsed().as_nanos() as f64 / (iters * calls_per_iter) as f64;
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[ROUNDS / 2 - 1] + v[ROUNDS / 2]) / 2.0
    };
    let ns = std::array::from_fn(|w| median(rounds.iter().map(|ns| ns[w]).collect()));
    (ns, median(rounds.iter().map(|ns| ns[0] / ns[1]).collect()))
}

fn pair(kind: libc::c_int) -> [libc::c_int; 2] {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe/socketpair to fill in.
    let rc = unsafe {
        if kind == 0 {
            libc::pipe(fds.as_mut_ptr())
        } else {
            libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr())
        }
    };
    assert_eq!(rc, 0, "pipe/socketpair: {}", std::io::Error::last_os_error());
    fds
}

/// `hookcost`: prints `RESULT {op}_{way}_ns=... {op}_hooked=0|1`.
pub fn child() {
    // Start openco's global runtime, as an application using it would have.
    openco::blocking(|| ()).join().expect("openco");
    let mut byte = [0u8; 1];
    let buf = byte.as_mut_ptr().cast::<c_void>();
    let one = 1usize; // a size_t, for the variadic syscall(2)
    let mut out = String::new();

    // read/write on a pipe.
    let [r, w] = pair(0);
    let (real_read, hooked_read) = real(c"read", libc::read as *const () as usize);
    let (real_write, hooked_write) = real(c"write", libc::write as *const () as usize);
    // SAFETY: invariant 3.
    let (real_read, real_write) =
        unsafe { (std::mem::transmute::<usize, ReadFn>(real_read), std::mem::transmute::<usize, WriteFn>(real_write)) };
    let (rl, wl) = (r as libc::c_long, w as libc::c_long);
    let ns = interleaved(
        2,
        &mut [
            // SAFETY: invariants 1 and 2.
            &mut || unsafe {
                black_box(libc::write(w, buf, 1));
                black_box(libc::read(r, buf, 1));
            },
            // SAFETY: invariants 1, 2 and 3.
            &mut || unsafe {
                black_box(real_write(w, buf, 1));
                black_box(real_read(r, buf, 1));
            },
            // SAFETY: invariants 1 and 2; every argument is passed at its register width.
            &mut || unsafe {
                black_box(libc::syscall(libc::SYS_write, wl, buf, one));
                black_box(libc::syscall(libc::SYS_read, rl, buf, one));
            },
        ],
    );
    record(&mut out, "rw", ns, hooked_read && hooked_write);

    // send/recv on a Unix stream socketpair.
    let [a, b] = pair(libc::SOCK_STREAM);
    let (real_recv, hooked_recv) = real(c"recv", libc::recv as *const () as usize);
    let (real_send, hooked_send) = real(c"send", libc::send as *const () as usize);
    // SAFETY: invariant 3.
    let (real_recv, real_send) =
        unsafe { (std::mem::transmute::<usize, RecvFn>(real_recv), std::mem::transmute::<usize, SendFn>(real_send)) };
    let (al, bl, null, zero) = (a as libc::c_long, b as libc::c_long, std::ptr::null_mut::<c_void>(), 0usize);
    let ns = interleaved(
        2,
        &mut [
            // SAFETY: invariants 1 and 2.
            &mut || unsafe {
                black_box(libc::send(a, buf, 1, 0));
                black_box(libc::recv(b, buf, 1, 0));
            },
            // SAFETY: invariants 1, 2 and 3.
            &mut || unsafe {
                black_box(real_send(a, buf, 1, 0));
                black_box(real_recv(b, buf, 1, 0));
            },
            // SAFETY: invariants 1 and 2; no address is given or asked for (null, 0).
            &mut || unsafe {
                black_box(libc::syscall(libc::SYS_sendto, al, buf, one, zero, null, zero));
                black_box(libc::syscall(libc::SYS_recvfrom, bl, buf, one, zero, null, null));
            },
        ],
    );
    record(&mut out, "sendrecv", ns, hooked_recv && hooked_send);

    // poll, timeout 0, on the (now empty) read end of the pipe.
    let mut pfd = libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 };
    let pfd: *mut libc::pollfd = &mut pfd;
    let (real_poll, hooked_poll) = real(c"poll", libc::poll as *const () as usize);
    // SAFETY: invariant 3.
    let real_poll = unsafe { std::mem::transmute::<usize, PollFn>(real_poll) };
    let ns = interleaved(
        1,
        &mut [
            // SAFETY: invariants 1 and 2; `pfd` points to one live pollfd.
            &mut || unsafe {
                black_box(libc::poll(pfd, 1, 0));
            },
            // SAFETY: as above, and invariant 3.
            &mut || unsafe {
                black_box(real_poll(pfd, 1, 0));
            },
            // SAFETY: as above.
            &mut || unsafe {
                black_box(raw_poll(pfd));
            },
        ],
    );
    record(&mut out, "poll", ns, hooked_poll);

    for fd in [r, w, a, b] {
        // SAFETY: invariant 1; nothing uses the descriptors after this.
        unsafe { libc::close(fd) };
    }
    println!("RESULT{out}");
}

/// `poll(fds, 1, 0)` as a raw system call.
///
/// # Safety
/// `fds` points to a valid `pollfd`.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_poll(fds: *mut libc::pollfd) -> libc::c_long {
    // SAFETY: the caller's one pollfd; timeout 0.
    unsafe { libc::syscall(libc::SYS_poll, fds, 1usize, 0 as libc::c_long) }
}

/// `ppoll(fds, 1, {0, 0}, NULL)` as a raw system call: aarch64 has no `poll` syscall.
///
/// # Safety
/// `fds` points to a valid `pollfd`.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_poll(fds: *mut libc::pollfd) -> libc::c_long {
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let null = std::ptr::null::<libc::sigset_t>();
    // SAFETY: the caller's one pollfd, a valid timespec, no signal mask (so no mask size).
    unsafe { libc::syscall(libc::SYS_ppoll, fds, 1usize, &zero as *const libc::timespec, null, 0usize) }
}

fn record(out: &mut String, op: &str, (ns, ratio): ([f64; 3], f64), hooked: bool) {
    for (way, ns) in WAYS.iter().zip(ns) {
        out.push_str(&format!(" {op}_{way}_ns={ns:.2}"));
    }
    out.push_str(&format!(" {op}_ratio={ratio:.4} {op}_hooked={}", hooked as u8));
}
