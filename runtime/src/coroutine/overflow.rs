//! Turns a coroutine stack overflow into a clear message and an abort, as Rust does for threads.
//!
//! A `SIGSEGV`/`SIGBUS` handler, installed once, runs on the thread's alternate signal stack
//! (the fault happened because the coroutine stack is full). It compares the fault address
//! with the guard page of the coroutine running on this thread, published by the worker in
//! `RUNNING_GUARD` before each resume. On a match it writes the message with a raw `write(2)`
//! and aborts; otherwise it hands the signal to the handler that was installed before it
//! (std's own overflow check, a debugger's, or the default action).
//!
//! Invariants of the handler (it must be async-signal-safe):
//! 1. it allocates nothing and takes no lock;
//! 2. it reads only a const-initialised thread-local `Cell` and a `OnceLock` written before the
//!    handler was installed.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

thread_local! {
    /// `(guard_low, guard_high, usable_bytes)` of the coroutine running on this thread, or zeros.
    static RUNNING_GUARD: Cell<(usize, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// Publishes the guard of the coroutine about to run on this thread (zeros: none).
#[inline]
pub(crate) fn set_running_guard(guard: (usize, usize, usize)) {
    RUNNING_GUARD.with(|g| g.set(guard));
}

/// The guard last published on this thread by [`set_running_guard`] (zeros: none).
#[inline]
pub(crate) fn running_guard() -> (usize, usize, usize) {
    RUNNING_GUARD.try_with(|g| g.get()).unwrap_or((0, 0, 0))
}

struct Previous {
    segv: libc::sigaction,
    bus: libc::sigaction,
}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// Installs the handler once per process.
pub(crate) fn install() {
    PREVIOUS.get_or_init(|| {
        // SAFETY: zeroed `sigaction`s are valid out-parameters; the handler we install is a
        // plain `extern "C"` function obeying the invariants above.
        unsafe {
            let mut action: libc::sigaction = MaybeUninit::zeroed().assume_init();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut segv: libc::sigaction = MaybeUninit::zeroed().assume_init();
            let mut bus: libc::sigaction = MaybeUninit::zeroed().assume_init();
            // Read the previous actions first, so that the handler can always find them.
            libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut segv);
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut bus);
            let previous = Previous { segv, bus };
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
            previous
        }
    });
}

extern "C" fn handler(signum: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SIGSEGV/SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (low, high, usable) = RUNNING_GUARD.try_with(|g| g.get()).unwrap_or((0, 0, 0));
    if low != 0 && addr >= low && addr < high {
        report_overflow(usable);
    }
    let Some(previous) = PREVIOUS.get() else { return reset_default(signum) };
    let old = if signum == libc::SIGSEGV { &previous.segv } else { &previous.bus };
    match old.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => reset_default(signum),
        f if old.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous handler was installed as an SA_SIGINFO handler.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(f) };
            f(signum, info, context)
        }
        f => {
            // SAFETY: the previous handler was installed as a plain handler.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(f) };
            f(signum)
        }
    }
}

/// Restores the default action; returning re-runs the faulting instruction, which then
/// terminates the process with the signal as it would have without openco.
fn reset_default(signum: libc::c_int) {
    // SAFETY: resetting a signal to SIG_DFL is async-signal-safe.
    unsafe { libc::signal(signum, libc::SIG_DFL) };
}

fn report_overflow(usable: usize) -> ! {
    let mut buf = [0u8; 160];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    push(b"\nopenco: coroutine stack overflow (stack size ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut kib = usable / 1024;
    loop {
        i -= 1;
        digits[i] = b'0' + (kib % 10) as u8;
        kib /= 10;
        if kib == 0 {
            break;
        }
    }
    push(&digits[i..]);
    push(b" KiB); raise it with Builder::stack_size (Scheduler::submit: its stack_size)\n");
    // SAFETY: write(2) and abort(3) are async-signal-safe; `buf` is valid for `len` bytes.
    unsafe {
        crate::sys::syscall!(libc::SYS_write, 2, buf.as_ptr(), len);
        libc::abort()
    }
}

/// Gives the calling thread an alternate signal stack if it has none, so that the handler can
/// run when the coroutine stack is exhausted. The returned guard frees it.
pub(crate) fn ensure_altstack() -> io::Result<Option<AltStack>> {
    // SAFETY: a zeroed `stack_t` is a valid out-parameter.
    let mut current: libc::stack_t = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: querying the current alternate stack.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(None); // std (or someone else) already gave this thread one
    }
    let size = libc::SIGSTKSZ.max(64 * 1024);
    // SAFETY: an anonymous mapping of our own.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let stack = libc::stack_t { ss_sp: ptr, ss_flags: 0, ss_size: size };
    // SAFETY: `stack` describes a mapping that outlives its use (freed by `AltStack::drop`
    // after being disabled).
    if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: unmapping the mapping made above, never installed.
        unsafe { libc::munmap(ptr, size) };
        return Err(err);
    }
    Ok(Some(AltStack { ptr, size }))
}

/// An alternate signal stack installed by [`ensure_altstack`] on the current thread.
pub(crate) struct AltStack {
    ptr: *mut libc::c_void,
    size: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
        // SAFETY: the thread that installed the stack disables it, then unmaps it.
        unsafe {
            libc::sigaltstack(&disable, std::ptr::null_mut());
            libc::munmap(self.ptr, self.size);
        }
    }
}
