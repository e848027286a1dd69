//! Calls that resolve a path, which may wait for the disk or a network filesystem: `open`,
//! `openat`, `creat` (and their `*64` names), `unlink`, `unlinkat`, `rmdir`, `rename`,
//! `renameat`, `renameat2`, `mkdir`, `mkdirat`. Each but the opens is the `*at` io_uring
//! operation with `AT_FDCWD` where the call has no directory fd; the kernel copies the path
//! when it takes the entry. An open is answered from the kernel's caches when it can be
//! (`cached`), else made by libc on a helper thread (see `openat_in` for why not io_uring).
//!
//! `open` is variadic in C: its `mode` travels on to libc as the hook received it. On x86_64
//! and aarch64 Linux a variadic integer travels in the register a named one would, so the
//! hook receives it as a third argument (unused by libc unless `flags` asks for a mode).

use io_uring::{opcode, types::Fd};
use libc::{c_char, c_int, c_uint, mode_t};

use super::cached::{lookup, may_reopen, Lookup};
use super::{call_int, inline, inline_call, offloaded};
use crate::coroutine;
use crate::hook::real;
use crate::sys;

/// `openat` for the running coroutine, or `plain` outside one: inline if the kernel's
/// caches can answer it (`cached`), else on a helper thread.
///
/// # Safety
/// As libc's `openat`, with `plain` the libc call of the same arguments.
unsafe fn openat_in(dirfd: c_int, path: *const c_char, flags: c_int, plain: impl FnOnce() -> c_int) -> c_int {
    let Some(ctx) = coroutine::current() else { return plain() };
    if inline(ctx) && may_reopen(flags) {
        let (follow, directory) = (flags & libc::O_NOFOLLOW == 0, flags & libc::O_DIRECTORY != 0);
        // SAFETY: the caller's path.
        let answer = match unsafe { lookup(dirfd, path, follow, directory) } {
            Lookup::Found(probe) => probe.reopen(flags),
            Lookup::Failed(errno) => Some(Err(errno)),
            Lookup::Uncached => None,
        };
        match answer {
            Some(Ok(fd)) => return inline_call(ctx, || fd),
            Some(Err(errno)) => {
                return inline_call(ctx, || {
                    sys::set_errno(errno);
                    -1
                })
            }
            None => {}
        }
    }
    // Not from the caches: libc's open on a helper thread. Not io_uring's `OPENAT`: its
    // inline try adds `O_NONBLOCK` (a FIFO's writer got `ENXIO`, its reader did not wait),
    // and from its kernel workers opens are "bounded" work, 4 x CPUs of them at once per
    // thread: opens that block for good (FIFO ends whose peers come later) filled them and
    // hung a worker. The helper pool grows when every helper is stuck (`offload`).
    // SAFETY: the caller's arguments, for libc itself on a helper.
    unsafe { offloaded(|| plain() as isize) as c_int }
}

macro_rules! open_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
            let real = real!($name: fn(*const c_char, c_int, c_uint) -> c_int);
            // SAFETY: the caller's arguments.
            unsafe { openat_in(libc::AT_FDCWD, path, flags, move || real(path, flags, mode)) }
        }
    )*};
}

macro_rules! openat_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
            let real = real!($name: fn(c_int, *const c_char, c_int, c_uint) -> c_int);
            // SAFETY: the caller's arguments.
            unsafe { openat_in(dirfd, path, flags, move || real(dirfd, path, flags, mode)) }
        }
    )*};
}

macro_rules! creat_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: mode_t) -> c_int {
            let real = real!($name: fn(*const c_char, mode_t) -> c_int);
            let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
            // SAFETY: the caller's arguments.
            unsafe { openat_in(libc::AT_FDCWD, path, flags, move || real(path, mode)) }
        }
    )*};
}

open_hooks!(open, open64);
openat_hooks!(openat, openat64);
creat_hooks!(creat, creat64);

/// `unlinkat` for the running coroutine, or `plain` outside one.
///
/// # Safety
/// As libc's `unlinkat`, with `plain` the libc call of the same arguments.
unsafe fn unlinkat_in(dirfd: c_int, path: *const c_char, flags: c_int, plain: impl FnOnce() -> c_int) -> c_int {
    let Some(ctx) = coroutine::current() else { return plain() };
    let entry = || opcode::UnlinkAt::new(Fd(dirfd), path).flags(flags).build();
    // SAFETY: the caller's arguments.
    unsafe { call_int(ctx, opcode::UnlinkAt::CODE, entry, plain) }
}

/// # Safety
/// As libc's `unlink`.
#[no_mangle]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    let real = real!(unlink: fn(*const c_char) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { unlinkat_in(libc::AT_FDCWD, path, 0, move || real(path)) }
}

/// # Safety
/// As libc's `rmdir`.
#[no_mangle]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    let real = real!(rmdir: fn(*const c_char) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { unlinkat_in(libc::AT_FDCWD, path, libc::AT_REMOVEDIR, move || real(path)) }
}

/// # Safety
/// As libc's `unlinkat`.
#[no_mangle]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let real = real!(unlinkat: fn(c_int, *const c_char, c_int) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { unlinkat_in(dirfd, path, flags, move || real(dirfd, path, flags)) }
}

/// `renameat2` for the running coroutine, or `plain` outside one.
///
/// # Safety
/// As libc's `renameat2`, with `plain` the libc call of the same arguments.
unsafe fn renameat_in(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
    plain: impl FnOnce() -> c_int,
) -> c_int {
    let Some(ctx) = coroutine::current() else { return plain() };
    let entry = || opcode::RenameAt::new(Fd(olddirfd), old, Fd(newdirfd), new).flags(flags).build();
    // SAFETY: the caller's arguments.
    unsafe { call_int(ctx, opcode::RenameAt::CODE, entry, plain) }
}

/// # Safety
/// As libc's `rename`.
#[no_mangle]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    let real = real!(rename: fn(*const c_char, *const c_char) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { renameat_in(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0, move || real(old, new)) }
}

/// # Safety
/// As libc's `renameat`.
#[no_mangle]
pub unsafe extern "C" fn renameat(olddirfd: c_int, old: *const c_char, newdirfd: c_int, new: *const c_char) -> c_int {
    let real = real!(renameat: fn(c_int, *const c_char, c_int, *const c_char) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { renameat_in(olddirfd, old, newdirfd, new, 0, move || real(olddirfd, old, newdirfd, new)) }
}

/// # Safety
/// As libc's `renameat2`.
#[no_mangle]
pub unsafe extern "C" fn renameat2(
    olddirfd: c_int,
    old: *const c_char,
    newdirfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    let real = real!(renameat2: fn(c_int, *const c_char, c_int, *const c_char, c_uint) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { renameat_in(olddirfd, old, newdirfd, new, flags, move || real(olddirfd, old, newdirfd, new, flags)) }
}

/// `mkdirat` for the running coroutine, or `plain` outside one.
///
/// # Safety
/// As libc's `mkdirat`, with `plain` the libc call of the same arguments.
unsafe fn mkdirat_in(dirfd: c_int, path: *const c_char, mode: mode_t, plain: impl FnOnce() -> c_int) -> c_int {
    let Some(ctx) = coroutine::current() else { return plain() };
    let entry = || opcode::MkDirAt::new(Fd(dirfd), path).mode(mode).build();
    // SAFETY: the caller's arguments.
    unsafe { call_int(ctx, opcode::MkDirAt::CODE, entry, plain) }
}

/// # Safety
/// As libc's `mkdir`.
#[no_mangle]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    let real = real!(mkdir: fn(*const c_char, mode_t) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { mkdirat_in(libc::AT_FDCWD, path, mode, move || real(path, mode)) }
}

/// # Safety
/// As libc's `mkdirat`.
#[no_mangle]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    let real = real!(mkdirat: fn(c_int, *const c_char, mode_t) -> c_int);
    // SAFETY: the caller's arguments.
    unsafe { mkdirat_in(dirfd, path, mode, move || real(dirfd, path, mode)) }
}
