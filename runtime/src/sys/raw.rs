//! The one place the runtime enters the kernel without libc.
//!
//! openco interposes libc's `syscall()` (for `futex`, see `hook::futex`), so the runtime
//! cannot use `libc::syscall` for its own calls without going through its own hook. This
//! module issues the `syscall`/`svc` instruction itself. It allocates nothing and takes no
//! lock: it is async-signal-safe and usable before `main` and during thread exit.
//!
//! Invariant: callers pass the arguments the kernel documents for `number`; pointer
//! arguments are valid for what that system call reads or writes.

/// Issues system call `number` with six arguments (unused ones are ignored by the kernel).
/// Returns the kernel's raw result: `-errno` (-4095..=-1) on failure.
///
/// # Safety
/// See the module invariant.
#[inline]
pub(crate) unsafe fn syscall6(number: libc::c_long, args: [usize; 6]) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the x86_64 Linux system call ABI: number in rax, arguments in rdi, rsi, rdx,
    // r10, r8, r9; the kernel clobbers rcx and r11 and touches no user stack. What the call
    // does with memory is the caller's contract (module invariant).
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the aarch64 Linux system call ABI: number in x8, arguments in x0-x5, result in
    // x0; nothing else is clobbered. Memory effects are the caller's contract.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") args[0] => ret,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x5") args[5],
            options(nostack),
        );
    }
    ret
}

/// [`syscall6`] with libc's convention: -1 with `errno` set on failure.
///
/// # Safety
/// See the module invariant.
#[inline]
pub(crate) unsafe fn syscall(number: libc::c_long, args: [usize; 6]) -> libc::c_long {
    // SAFETY: forwarded contract.
    let ret = unsafe { syscall6(number, args) };
    if (-4095..0).contains(&ret) {
        super::set_errno(-ret as i32);
        -1
    } else {
        ret as libc::c_long
    }
}

/// Pads a system call's arguments to six.
#[inline]
pub(crate) const fn args<const N: usize>(given: [usize; N]) -> [usize; 6] {
    let mut all = [0usize; 6];
    let mut i = 0;
    while i < N {
        all[i] = given[i];
        i += 1;
    }
    all
}
