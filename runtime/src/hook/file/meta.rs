//! fd calls that may wait for the disk: `fsync`, `fdatasync`, `ftruncate`, `fallocate`,
//! `close` of a file (the `close` hook's file half), and the `stat` family: `statx` itself,
//! and `fstat`, `stat`, `lstat`, `fstatat` (with their `*64` names), done with `statx` and
//! converted to `struct stat` as glibc does on kernels without `newfstatat`.
//!
//! The status of an open file, and its `close`, on a local filesystem ([`is_local_fs`])
//! never wait for a device: those are made inline.

use std::ffi::CStr;

use io_uring::{opcode, types};
use libc::{c_char, c_int, c_uint, off_t};

use super::cached::{lookup, Lookup};
use super::{call_int, forget, inline, inline_call, is_local_fs, kind, offloaded, on_ring, Kind};
use crate::coroutine::{self, Context};
use crate::hook::real;

// `stat64` is `stat` on the 64-bit targets openco supports: one conversion serves both.
const _: () = assert!(std::mem::size_of::<libc::stat>() == std::mem::size_of::<libc::stat64>());

/// # Safety
/// As libc's `fsync`.
#[no_mangle]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    let real = real!(fsync: fn(c_int) -> c_int);
    // SAFETY: the caller's argument, passed on as it is.
    let plain = move || unsafe { real(fd) };
    match coroutine::current() {
        // SAFETY: an fd argument only.
        Some(ctx) => unsafe { call_int(ctx, opcode::Fsync::CODE, || opcode::Fsync::new(types::Fd(fd)).build(), plain) },
        None => plain(),
    }
}

/// # Safety
/// As libc's `fdatasync`.
#[no_mangle]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    let real = real!(fdatasync: fn(c_int) -> c_int);
    // SAFETY: the caller's argument, passed on as it is.
    let plain = move || unsafe { real(fd) };
    let entry = || opcode::Fsync::new(types::Fd(fd)).flags(types::FsyncFlags::DATASYNC).build();
    match coroutine::current() {
        // SAFETY: an fd argument only.
        Some(ctx) => unsafe { call_int(ctx, opcode::Fsync::CODE, entry, plain) },
        None => plain(),
    }
}

macro_rules! ftruncate_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, length: off_t) -> c_int {
            let real = real!($name: fn(c_int, off_t) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, length) };
            let entry = || opcode::Ftruncate::new(types::Fd(fd), length as u64).build();
            match coroutine::current() {
                // SAFETY: integer arguments only (the kernel rejects a negative length).
                Some(ctx) => unsafe { call_int(ctx, opcode::Ftruncate::CODE, entry, plain) },
                None => plain(),
            }
        }
    )*};
}

macro_rules! fallocate_hooks {
    ($($name:ident),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, mode: c_int, offset: off_t, len: off_t) -> c_int {
            let real = real!($name: fn(c_int, c_int, off_t, off_t) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, mode, offset, len) };
            let entry = || opcode::Fallocate::new(types::Fd(fd), len as u64).offset(offset as u64).mode(mode).build();
            match coroutine::current() {
                // SAFETY: integer arguments only (the kernel rejects negative ones).
                Some(ctx) => unsafe { call_int(ctx, opcode::Fallocate::CODE, entry, plain) },
                None => plain(),
            }
        }
    )*};
}

ftruncate_hooks!(ftruncate, ftruncate64);
fallocate_hooks!(fallocate, fallocate64);

/// The file half of the `close` hook: a file on a filesystem that may flush it over the
/// network on its last close (NFS, FUSE...) is closed on the ring or a helper. `Err`: any
/// other fd, or not in a coroutine: close it inline.
pub(crate) fn close_file(fd: c_int, plain: impl FnOnce() -> c_int) -> Result<c_int, impl FnOnce() -> c_int> {
    match coroutine::current() {
        Some(ctx) if fd > 2 => match kind(fd) {
            Kind::File(cache) => {
                forget(fd);
                if inline(ctx) && cache.local {
                    return Err(plain);
                }
                // SAFETY: an fd argument only.
                Ok(unsafe { call_int(ctx, opcode::Close::CODE, || opcode::Close::new(types::Fd(fd)).build(), plain) })
            }
            _ => Err(plain),
        },
        _ => Err(plain),
    }
}

/// `statx(dirfd, path, flags, mask, buf)` for a coroutine.
///
/// # Safety
/// As libc's `statx`, with `plain` the libc call of the same arguments.
unsafe fn statx_in(
    ctx: &Context,
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut libc::statx,
    plain: impl FnOnce() -> c_int,
) -> c_int {
    if flags & !STATX_FLAGS == 0 {
        // SAFETY: the caller's path, a C string.
        match unsafe { cached(ctx, dirfd, path, flags) } {
            Lookup::Found(probe) => return inline_call(ctx, || probe.statx(flags, mask, buf)),
            Lookup::Failed(errno) => return inline_call(ctx, || failed(errno)),
            Lookup::Uncached => {}
        }
    }
    let entry = || opcode::Statx::new(types::Fd(dirfd), path, buf.cast()).flags(flags).mask(mask).build();
    // SAFETY: the caller's arguments.
    unsafe { call_int(ctx, opcode::Statx::CODE, entry, plain) }
}

/// # Safety
/// As libc's `statx`.
#[no_mangle]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut libc::statx,
) -> c_int {
    let real = real!(statx: fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int);
    // SAFETY: the caller's arguments, passed on as they are.
    let plain = move || unsafe { real(dirfd, path, flags, mask, buf) };
    match coroutine::current() {
        // A null path means "the fd itself" to newer kernels' statx(2) but not to io_uring.
        // SAFETY: the caller's arguments; `path` is a C string.
        Some(ctx) if !path.is_null() => {
            if unsafe { of_open_file(ctx, dirfd, path, flags) } {
                return inline_call(ctx, plain);
            }
            // SAFETY: the caller's arguments.
            unsafe { statx_in(ctx, dirfd, path, flags, mask, buf, plain) }
        }
        _ => plain(),
    }
}

/// Whether a stat call asks for an open file's own status (`AT_EMPTY_PATH` and an empty
/// path, as `File::metadata` does) on a local filesystem: that is in memory, so the call is
/// made inline rather than as a suspension and a trip to the kernel's workers (io_uring
/// always runs `statx` there).
///
/// # Safety
/// `path` is a valid C string.
unsafe fn of_open_file(ctx: &Context, dirfd: c_int, path: *const c_char, flags: c_int) -> bool {
    // SAFETY: guaranteed by the caller.
    inline(ctx) && flags & libc::AT_EMPTY_PATH != 0 && unsafe { *path } == 0 && dirfd >= 0 && is_local_fs(dirfd)
}

/// The flags `statx` accepts.
const STATX_FLAGS: c_int =
    libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_SYNC_TYPE;

/// A cached lookup of a stat call's non-empty `path` (see `cached`), if the runtime makes
/// such calls inline.
///
/// # Safety
/// `path` is a C string.
unsafe fn cached(ctx: &Context, dirfd: c_int, path: *const c_char, flags: c_int) -> Lookup {
    // SAFETY: guaranteed by the caller.
    if !inline(ctx) || unsafe { *path } == 0 {
        return Lookup::Uncached; // an empty path names `dirfd` itself (`AT_EMPTY_PATH`)
    }
    // SAFETY: as above.
    unsafe { lookup(dirfd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0, false) }
}

/// -1 with `errno`.
fn failed(errno: c_int) -> c_int {
    crate::sys::set_errno(errno);
    -1
}

/// The flags `fstatat` accepts (the kernel's `vfs_fstatat` takes `statx`'s sync bits too);
/// calls with any other go to libc, which fails them with `EINVAL`.
const FSTATAT_FLAGS: c_int =
    libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_SYNC_TYPE;

/// `fstatat` for a coroutine: `statx` on the ring, converted to `struct stat`. `None` for
/// arguments it does not take (see the callers).
///
/// # Safety
/// As libc's `fstatat`, with `plain` the libc call of the same arguments.
unsafe fn stat_in(
    ctx: &Context,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut libc::stat,
    flags: c_int,
    plain: impl FnOnce() -> c_int,
) -> c_int {
    // SAFETY: the caller's path, a C string.
    match unsafe { cached(ctx, dirfd, path, flags) } {
        Lookup::Found(probe) => return inline_call(ctx, || probe.fstat(buf)),
        Lookup::Failed(errno) => return inline_call(ctx, || failed(errno)),
        Lookup::Uncached => {}
    }
    // SAFETY: an all-zero `statx` is a valid value to be overwritten.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let stx_ptr: *mut libc::statx = &mut stx;
    let entry = || {
        opcode::Statx::new(types::Fd(dirfd), path, stx_ptr.cast()).flags(flags).mask(libc::STATX_BASIC_STATS).build()
    };
    // SAFETY: `path` is the caller's; `stx` lives on this stack until the call returns.
    match unsafe { on_ring(ctx, opcode::Statx::CODE, entry) } {
        Some(ret) => {
            if ret == 0 {
                // SAFETY: the caller's buffer, which libc would fill. The callers send a null
                // one to libc (`EFAULT`); any other bad pointer faults here where the kernel
                // would have answered `EFAULT` (README caveats).
                unsafe { buf.write(stat_from_statx(&stx)) };
            }
            ret as c_int
        }
        // SAFETY: the caller's arguments, for libc itself.
        None => unsafe { offloaded(|| plain() as isize) as c_int },
    }
}

/// The `struct stat` a kernel's `newfstatat` gives for the file `statx` described.
fn stat_from_statx(stx: &libc::statx) -> libc::stat {
    // SAFETY: an all-zero `stat` is valid (its padding fields included).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.st_ino = stx.stx_ino;
    st.st_nlink = stx.stx_nlink as _;
    st.st_mode = stx.stx_mode as _;
    st.st_uid = stx.stx_uid;
    st.st_gid = stx.stx_gid;
    st.st_rdev = libc::makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
    st.st_size = stx.stx_size as _;
    st.st_blksize = stx.stx_blksize as _;
    st.st_blocks = stx.stx_blocks as _;
    st.st_atime = stx.stx_atime.tv_sec;
    st.st_atime_nsec = stx.stx_atime.tv_nsec as _;
    st.st_mtime = stx.stx_mtime.tv_sec;
    st.st_mtime_nsec = stx.stx_mtime.tv_nsec as _;
    st.st_ctime = stx.stx_ctime.tv_sec;
    st.st_ctime_nsec = stx.stx_ctime.tv_nsec as _;
    st
}

const EMPTY: &CStr = c"";

macro_rules! fstat_hooks {
    ($($name:ident: $stat:ty),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut $stat) -> c_int {
            let real = real!($name: fn(c_int, *mut $stat) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(fd, buf) };
            match coroutine::current() {
                // A negative fd must not become `AT_FDCWD` (the working directory).
                // SAFETY: the caller's arguments; `EMPTY` is static.
                Some(ctx) if fd >= 0 && !buf.is_null() => {
                    if inline(ctx) && is_local_fs(fd) {
                        return inline_call(ctx, plain);
                    }
                    // SAFETY: the caller's arguments; `EMPTY` is static.
                    unsafe { stat_in(ctx, fd, EMPTY.as_ptr(), buf.cast(), libc::AT_EMPTY_PATH, plain) }
                }
                _ => plain(),
            }
        }
    )*};
}

macro_rules! path_stat_hooks {
    ($($name:ident: $stat:ty, $flags:expr),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, buf: *mut $stat) -> c_int {
            let real = real!($name: fn(*const c_char, *mut $stat) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(path, buf) };
            match coroutine::current() {
                // SAFETY: the caller's arguments.
                Some(ctx) if !path.is_null() && !buf.is_null() => unsafe { stat_in(ctx, libc::AT_FDCWD, path, buf.cast(), $flags, plain) },
                _ => plain(),
            }
        }
    )*};
}

macro_rules! fstatat_hooks {
    ($($name:ident: $stat:ty),*) => {$(
        /// # Safety
        /// As libc's function of this name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: *const c_char, buf: *mut $stat, flags: c_int) -> c_int {
            let real = real!($name: fn(c_int, *const c_char, *mut $stat, c_int) -> c_int);
            // SAFETY: the caller's arguments, passed on as they are.
            let plain = move || unsafe { real(dirfd, path, buf, flags) };
            match coroutine::current() {
                Some(ctx) if !path.is_null() && !buf.is_null() && flags & !FSTATAT_FLAGS == 0 => {
                    // SAFETY: `path` is a C string.
                    if unsafe { of_open_file(ctx, dirfd, path, flags) } {
                        return inline_call(ctx, plain);
                    }
                    // SAFETY: the caller's arguments.
                    unsafe { stat_in(ctx, dirfd, path, buf.cast(), flags, plain) }
                }
                _ => plain(),
            }
        }
    )*};
}

fstat_hooks!(fstat: libc::stat, fstat64: libc::stat64);
path_stat_hooks!(
    stat: libc::stat, 0,
    stat64: libc::stat64, 0,
    lstat: libc::stat, libc::AT_SYMLINK_NOFOLLOW,
    lstat64: libc::stat64, libc::AT_SYMLINK_NOFOLLOW
);
fstatat_hooks!(fstatat: libc::stat, fstatat64: libc::stat64);
