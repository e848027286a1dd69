//! File calls inside a coroutine: on the worker's io_uring ring, else on a helper thread.
//!
//! A regular file, a directory or a block device is always "ready" to epoll, yet reading it
//! may wait for the disk, and `open`, `fsync`, `unlink` or `stat` may wait for the disk or
//! the network behind a path. Inside a coroutine these calls never run on the worker
//! thread. Each hook builds the io_uring entry that does the same thing as the libc call
//! and suspends until its completion (`io::uring`); where the ring cannot take it (no ring
//! on this kernel, the opcode is missing, `OPENCO_IO_URING=0`), the libc call itself runs on
//! the `offload` pool while the coroutine parks. Either way the result and `errno` are
//! libc's: io_uring reports `-errno`, which becomes -1 with `errno` set, and a success
//! leaves `errno` as the caller had it. Outside a coroutine every hook is libc's function.
//!
//! What goes where:
//! - `read`/`write`/`readv`/`writev` (in `hook::rw`) and `pread`/`pwrite`/`preadv`/`pwritev`
//!   (here) come here for fds that [`kind`] calls [`Kind::File`]; sockets, pipes and the
//!   like keep their readiness path, fds the user made non-blocking go to libc.
//! - fd calls that work on any fd (`fsync`, `fdatasync`, `ftruncate`, `fallocate`, `fstat`)
//!   and every path call (`open`, `openat`, `creat`, `stat`, `lstat`, `fstatat`, `statx`,
//!   `unlink`, `unlinkat`, `rmdir`, `rename`, `renameat`, `renameat2`, `mkdir`, `mkdirat`)
//!   come here for any argument libc would accept; arguments io_uring reads differently
//!   (a negative offset, which io_uring takes as "the current position"; a null `statx`
//!   path) go to libc, which rejects them without blocking.
//! - Opens never use the ring: what the kernel's caches cannot answer runs libc's `open` on
//!   a helper (see `path`).
//! - `close` of a file on a filesystem that may flush over the network goes to the ring
//!   (`hook::fd`).
//! - What the kernel answers from its caches is made inline, without a suspension (unless
//!   `OPENCO_INLINE_FILE_CALLS=0`): a read the page cache holds (`preadv2(RWF_NOWAIT)`, see
//!   `rw`), a buffered write to a local filesystem (a copy into the page cache), an open or
//!   stat whose path lookup is cached on a local filesystem (`cached`),
//!   an open file's own status and its close on a local filesystem ([`is_local_fs`]). These
//!   count against the coroutine's budget, as socket calls that did not wait do.
//! - Each call has both spellings glibc exports (`pread`/`pread64`...): C code built with
//!   `_FILE_OFFSET_BITS=64`, such as SQLite, calls the `*64` names.
//!
//! Why the helper fallback may borrow the caller's buffers: the coroutine stays parked in
//! `offload::run` until the helper is done (see `offload`), as it stays in `uring::run`
//! until the kernel is (invariant 1 of `io::uring`).

mod cached;
mod meta;
mod path;
mod rw;

pub(crate) use meta::close_file;
pub(crate) use rw::{read_at, readv_at, write_at, writev_at};

use std::cell::Cell;

use io_uring::squeue::Entry;
use libc::c_int;

use crate::coroutine::Context;
use crate::io::{flags, uring};
use crate::offload;
use crate::sys;

/// What a blocking read or write on an fd does inside a coroutine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// A socket, pipe, FIFO, eventfd, tty or other character device: it waits for readiness.
    Waitable,
    /// A regular file, directory or block device: it goes to the ring or a helper, unless
    /// the page cache can serve the call inline (see [`Cache`]).
    File(Cache),
    /// Goes to libc as it is: the user made it non-blocking, it is an `O_PATH` fd, or its
    /// flags cannot be read (libc gives `EBADF`).
    Plain,
}

/// Which calls on a file the page cache may serve inline, from its status flags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Cache {
    /// Not `O_DIRECT`: a read may be served from the page cache (`RWF_NOWAIT` would not stop
    /// a direct read from waiting for the device).
    pub(crate) reads: bool,
    /// Neither `O_DIRECT` nor `O_SYNC`/`O_DSYNC`: a write ends in the page cache.
    pub(crate) writes: bool,
    /// On a local filesystem ([`is_local_fs`]): a buffered write, the file's status and its
    /// close need no device or network.
    pub(crate) local: bool,
}

/// The kernel's `O_LARGEFILE` as `F_GETFL` reports it (libc's constant is 0 on 64-bit
/// targets, where the flag is implied for user space).
#[cfg(target_arch = "x86_64")]
const KERNEL_O_LARGEFILE: c_int = 0o100000;
#[cfg(target_arch = "aarch64")]
const KERNEL_O_LARGEFILE: c_int = 0o400000;

/// Tells the kinds apart with one `fcntl(F_GETFL)`, which also gives the user's
/// `O_NONBLOCK`: fds made by `socket`, `pipe`, `eventfd` and the like are anonymous inodes,
/// which the kernel never marks `O_LARGEFILE`; every fd opened by path is marked (64-bit
/// kernels force the flag), and only those need an `fstat` (and, for a file, an `fstatfs`).
///
/// A file's answer is remembered per thread ([`Recent`]): the next call on the same fd
/// costs one `fstat`, which proves the number still names the same inode.
pub(crate) fn kind(fd: c_int) -> Kind {
    if let Some(cache) = recent(fd) {
        return Kind::File(cache);
    }
    let Ok(fl) = flags::user_flags(fd) else { return Kind::Plain };
    if fl & (libc::O_NONBLOCK | libc::O_PATH) != 0 {
        return Kind::Plain;
    }
    if fl & KERNEL_O_LARGEFILE == 0 {
        return Kind::Waitable;
    }
    let epoch = flags::epoch();
    let Some(st) = fstat(fd) else { return Kind::Plain };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFSOCK => Kind::Waitable,
        _ => {
            let cache = Cache {
                reads: fl & libc::O_DIRECT == 0,
                writes: fl & (libc::O_DIRECT | libc::O_SYNC | libc::O_DSYNC) == 0,
                local: is_local_fs(fd),
            };
            let entry = Recent { fd, dev: st.st_dev, ino: st.st_ino, epoch, cache };
            RECENT.with(|r| {
                let mut all = r.get();
                all[fd as usize % RECENT_SLOTS] = Some(entry);
                r.set(all);
            });
            Kind::File(cache)
        }
    }
}

/// A file [`kind`] classified on this thread: while `fstat` of its fd still gives the same
/// inode and no flag change went through the hooks (the epoch of `io::flags`), the flags
/// read then still hold. (An fd closed behind the hooks' back and reopened on the same
/// inode with other open flags would be taken for the old one: its calls are then made
/// inline or on the ring where libc's would block, with libc's results either way.)
#[derive(Clone, Copy)]
struct Recent {
    fd: c_int,
    dev: u64,
    ino: u64,
    epoch: u64,
    cache: Cache,
}

/// Direct-mapped by fd number.
const RECENT_SLOTS: usize = 8;

thread_local! {
    static RECENT: Cell<[Option<Recent>; RECENT_SLOTS]> = const { Cell::new([None; RECENT_SLOTS]) };
}

/// What [`kind`] remembers of `fd`, if it still holds (one `fstat`).
fn recent(fd: c_int) -> Option<Cache> {
    let slot = fd.rem_euclid(RECENT_SLOTS as c_int) as usize;
    let entry = RECENT.with(|r| r.get()[slot]).filter(|e| e.fd == fd)?;
    let st = fstat(fd).filter(|st| st.st_dev == entry.dev && st.st_ino == entry.ino);
    if st.is_none() || entry.epoch != flags::epoch() {
        forget(fd);
        return None;
    }
    Some(entry.cache)
}

/// Drops what [`kind`] remembers of `fd` (closed).
pub(crate) fn forget(fd: c_int) {
    let slot = fd.rem_euclid(RECENT_SLOTS as c_int) as usize;
    RECENT.with(|r| {
        let mut all = r.get();
        if all[slot].is_some_and(|e| e.fd == fd) {
            all[slot] = None;
            r.set(all);
        }
    });
}

/// `fstat` by a raw system call.
fn fstat(fd: c_int) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-parameter.
    (unsafe { sys::syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat) } == 0).then_some(st)
}

/// Whether `fd` lives on a filesystem whose open files answer `fstat` and `close` from
/// memory: local disk filesystems, tmpfs, procfs, pipes, sockets... (an allow-list of
/// `statfs` magic numbers). On these, those calls are made inline, without a suspension;
/// on others (NFS, SMB, FUSE, Ceph, 9p...) they may wait for the network and go to the
/// ring or a helper like every other file call. One `fstatfs`.
pub(crate) fn is_local_fs(fd: c_int) -> bool {
    // SAFETY: an all-zero `statfs` is a valid value to be overwritten.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fs` is a valid out-parameter.
    if unsafe { sys::syscall!(libc::SYS_fstatfs, fd, &mut fs as *mut libc::statfs) } != 0 {
        return false;
    }
    const LOCAL: [i64; 22] = [
        0xEF53,      // ext2/3/4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs, devtmpfs
        0x8584_58F6, // ramfs
        0xF2F5_2010, // f2fs
        0x794C_7630, // overlayfs
        0x2FC1_2FC1, // zfs
        0x7371_7368, // squashfs
        0xE0F5_E1E2, // erofs
        0x4D44,      // vfat
        0x2011_BAB0, // exfat
        0x9FA0,      // proc
        0x6265_6572, // sysfs
        0x6367_7270, // cgroup2
        0x5049_5045, // pipefs
        0x534F_434B, // sockfs
        0x0904_1934, // anon inodes
        0x6264_6576, // block devices
        0x1CD1,      // devpts
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
    ];
    LOCAL.contains(&(fs.f_type as i64))
}

/// Whether the running coroutine's runtime answers file calls from the kernel's caches
/// inline when it can (`OPENCO_INLINE_FILE_CALLS`).
pub(crate) fn inline(ctx: &Context) -> bool {
    ctx.shared.config.inline_file_calls
}

/// Makes a call the kernel answers from its caches, inline, and counts it against the
/// coroutine's budget (a loop of such calls must let the worker's other coroutines run).
pub(crate) fn inline_call<R>(ctx: &Context, call: impl FnOnce() -> R) -> R {
    let ret = call();
    crate::coroutine::consume_budget(ctx);
    ret
}

/// A closure that may be sent to a helper thread although it captures raw pointers.
struct AssertSend<F>(F);

// SAFETY: only built by `call`, whose contract makes the captured pointers (the hooked call's
// arguments) usable from the helper thread while the caller is parked.
unsafe impl<F> Send for AssertSend<F> {}

impl<F: FnOnce() -> isize> AssertSend<F> {
    /// Takes `self` whole, so a closure calling it captures the `Send` wrapper.
    fn call(self) -> isize {
        (self.0)()
    }
}

/// Makes one file call for the running coroutine: `entry()` on the worker's ring if the
/// runtime and the kernel allow `opcode`, else `plain()` (the libc call) on a helper thread.
/// Returns libc's result with `errno` set as libc sets it.
///
/// # Safety
/// As for [`on_ring`] and [`offloaded`].
pub(crate) unsafe fn call(
    ctx: &Context,
    opcode: u8,
    entry: impl FnOnce() -> Entry,
    plain: impl FnOnce() -> isize,
) -> isize {
    // SAFETY: guaranteed by the caller.
    match unsafe { on_ring(ctx, opcode, entry) } {
        Some(ret) => ret,
        // SAFETY: guaranteed by the caller.
        None => unsafe { offloaded(plain) },
    }
}

/// `entry()` on the worker's ring, if the runtime and the kernel allow `opcode`: its result
/// as libc gives it (-1 with `errno` set on failure). `None`: take the fallback.
///
/// # Safety
/// The pointers in `entry()` are the hooked call's arguments (or the caller's own memory),
/// valid as libc requires until this returns.
pub(crate) unsafe fn on_ring(ctx: &Context, opcode: u8, entry: impl FnOnce() -> Entry) -> Option<isize> {
    if !ctx.shared.config.io_uring || !uring::may_use(opcode) {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let res = unsafe { uring::run(ctx, entry()) }?;
    if res < 0 {
        sys::set_errno(-res);
        return Some(-1);
    }
    Some(res as isize)
}

/// `plain()` (a libc call) on a helper thread while the coroutine parks; `errno` travels
/// both ways.
///
/// # Safety
/// What `plain` captures is the hooked call's arguments, usable from another thread as long
/// as the caller waits (nothing tied to the calling thread).
pub(crate) unsafe fn offloaded(plain: impl FnOnce() -> isize) -> isize {
    uring::count_offloaded();
    let plain = AssertSend(plain);
    offload::run_with_errno(move || plain.call())
}

/// [`call`] for a libc function that returns an `int`.
///
/// # Safety
/// As for [`call`].
pub(crate) unsafe fn call_int(
    ctx: &Context,
    opcode: u8,
    entry: impl FnOnce() -> Entry,
    plain: impl FnOnce() -> c_int,
) -> c_int {
    // SAFETY: guaranteed by the caller.
    unsafe { call(ctx, opcode, entry, || plain() as isize) as c_int }
}
