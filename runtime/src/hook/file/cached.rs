//! Path calls the kernel can answer from its caches, made inline.
//!
//! Most `open`s and `stat`s of a busy program name files whose directory entries are cached
//! on a local filesystem: neither the lookup nor the inode's status needs the disk, and a
//! suspension plus a trip to io_uring's kernel workers (where io_uring runs every `statx`,
//! and openco every open: see `path`) would cost ten times the call. So, before taking the
//! backend, these calls try:
//! 1. `openat2(dirfd, path, O_PATH, RESOLVE_CACHED)`: a lookup that fails with `EAGAIN`
//!    rather than read a directory from disk, and an `O_PATH` open, which calls no driver's
//!    `open` and has no side effect (no FIFO peer counted, no tty made controlling);
//! 2. `fstatfs` of it: a local filesystem ([`is_local_fs`]), whose inodes' status is in
//!    memory;
//! 3. `stat` family: `fstat`/`statx` of that fd is the answer. `open`: a regular file or a
//!    directory is reopened with the caller's flags through `/proc/self/fd/N`, which names
//!    the very inode looked up (no race with a rename), and opening one needs no IO on a
//!    local filesystem. Other file types, `O_CREAT`, `O_TRUNC` and `O_TMPFILE` take the
//!    backend.
//!
//! A lookup error (`ENOENT`, `ENOTDIR`, `EACCES`, `ELOOP`...) is the call's own: the real
//! call would have met it in the same lookup. Anything that says "not from the cache"
//! (`EAGAIN`), or that the trick cannot tell (no free fd, no `/proc`), sends the call to
//! the backend, where libc's semantics hold. `OPENCO_INLINE_FILE_CALLS=0` turns this off.

use libc::{c_char, c_int, c_uint};

use super::is_local_fs;
use crate::sys;

const RESOLVE_CACHED: u64 = 0x20;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// What a cached lookup says.
pub(crate) enum Lookup {
    /// Found in the caches, on a local filesystem.
    Found(Probe),
    /// The lookup failed with this errno: the call's own answer.
    Failed(c_int),
    /// Not from the caches (or not a local filesystem): take the backend.
    Uncached,
}

/// An `O_PATH` fd from a cached lookup, closed on drop.
pub(crate) struct Probe(c_int);

impl Drop for Probe {
    fn drop(&mut self) {
        let errno = sys::errno();
        // SAFETY: our own fd, closed once.
        unsafe { sys::syscall!(libc::SYS_close, self.0) };
        sys::set_errno(errno);
    }
}

/// Looks `path` up relative to `dirfd` from the caches only. `follow`: follow a final
/// symlink (else the probe names the link itself); `directory`: fail with `ENOTDIR` unless
/// it is a directory (`O_DIRECTORY`).
///
/// # Safety
/// `path` is the caller's C string pointer (the kernel checks it: `EFAULT`).
pub(crate) unsafe fn lookup(dirfd: c_int, path: *const c_char, follow: bool, directory: bool) -> Lookup {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    let how = OpenHow { flags: flags as u64, mode: 0, resolve: RESOLVE_CACHED };
    let errno = sys::errno();
    // SAFETY: `how` is a valid `open_how` of the size passed; `path` as guaranteed.
    let fd = unsafe {
        sys::syscall!(libc::SYS_openat2, dirfd, path, &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    };
    if fd < 0 {
        let err = sys::errno();
        sys::set_errno(errno);
        return match err {
            // Not cached, or the trick's own limits: the backend decides.
            libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOSYS | libc::EINVAL | libc::E2BIG => {
                Lookup::Uncached
            }
            err => Lookup::Failed(err),
        };
    }
    let probe = Probe(fd as c_int);
    if !is_local_fs(probe.0) {
        return Lookup::Uncached;
    }
    Lookup::Found(probe)
}

impl Probe {
    /// `fstat` of the probed file into `buf`: 0, or -1 with errno (`EFAULT` for a bad
    /// buffer, as the real call).
    pub(crate) fn fstat(&self, buf: *mut libc::stat) -> c_int {
        // SAFETY: the kernel checks `buf`.
        unsafe { sys::syscall!(libc::SYS_fstat, self.0, buf) as c_int }
    }

    /// `statx` of the probed file: as `statx(dirfd, path, flags, mask, buf)` of the path.
    pub(crate) fn statx(&self, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int {
        let flags = (flags & libc::AT_STATX_SYNC_TYPE) | libc::AT_EMPTY_PATH;
        // SAFETY: a static empty C string; the kernel checks `buf`.
        unsafe { sys::syscall!(libc::SYS_statx, self.0, c"".as_ptr(), flags, mask, buf) as c_int }
    }

    /// The probed file's type (`S_IFMT` bits), if `fstat` can tell.
    fn file_type(&self) -> Option<libc::mode_t> {
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (self.fstat(&mut st) == 0).then_some(st.st_mode & libc::S_IFMT)
    }

    /// Opens the probed file with the caller's `flags`, if it is a regular file or a
    /// directory: `Some(Ok(fd))`, `Some(Err(errno))` for the open's own error (`EACCES`,
    /// `EISDIR`, `EROFS`...), `None` to take the backend.
    pub(crate) fn reopen(&self, flags: c_int) -> Option<Result<c_int, c_int>> {
        if !matches!(self.file_type()?, libc::S_IFREG | libc::S_IFDIR) {
            return None;
        }
        let mut path = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        path[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 10];
        let (mut n, mut len) = (self.0 as u32, 0);
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, d) in digits[..len].iter().rev().enumerate() {
            path[prefix.len() + i] = *d;
        }
        // The probe's lookup already honoured `O_NOFOLLOW`; on the magic link it would fail.
        let flags = flags & !libc::O_NOFOLLOW;
        let errno = sys::errno();
        // SAFETY: `path` is NUL-terminated (zero-filled past the digits).
        let fd = unsafe { sys::syscall!(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, 0) };
        if fd >= 0 {
            return Some(Ok(fd as c_int));
        }
        let err = sys::errno();
        sys::set_errno(errno);
        match err {
            // What `/proc` itself (absent, or odd) may answer, or a shortage: the backend.
            libc::ENOENT
            | libc::ENOTDIR
            | libc::ELOOP
            | libc::ENXIO
            | libc::EAGAIN
            | libc::EMFILE
            | libc::ENFILE
            | libc::ENOMEM => None,
            err => Some(Err(err)),
        }
    }
}

/// Whether an `open` with `flags` may be tried from the caches: it creates, truncates or
/// makes nothing, and asks for a real fd.
pub(crate) fn may_reopen(flags: c_int) -> bool {
    flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_PATH) == 0 && flags & libc::O_TMPFILE != libc::O_TMPFILE
}
