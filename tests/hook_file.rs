//! Conformance of the file hooks (`open`, `openat`, `creat`, `read`, `pread`, `readv`,
//! `preadv`, `write`, `pwrite`, `writev`, `pwritev`, `lseek` positions, `fsync`,
//! `fdatasync`, `ftruncate`, `fallocate`, `statx`, `fstat`, `stat`, `lstat`, `fstatat`,
//! `unlink`, `unlinkat`, `rmdir`, `rename`, `renameat`, `renameat2`, `mkdir`, `mkdirat`,
//! `close`): results and errno inside a coroutine are libc's.
//!
//! A table of scenarios, each run on a plain thread and inside a coroutine on 1 and 2
//! workers (`support::conform`). Which backend serves the calls inside coroutines follows
//! `OPENCO_IO_URING`: CI runs this file twice, once with `OPENCO_IO_URING=0` (helper
//! threads) and once without (io_uring where the kernel has it). The `*64` spellings are
//! called through `libc`'s bindings, which name them.

#[macro_use]
mod support;

use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libc::{c_int, EBADF, EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, ESPIPE};
use support::conform::{Record, Want::*};

conformance_table! {
    positions, short_reads_at_eof, cold_reads, direct_io, vectored, append, create_and_truncate, sync_and_allocate,
    stat_family, directories, renames, open_errors, fd_errors, close_twice, links_and_special_files,
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory for one run of a scenario (its path never enters a record).
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "openco-hook-file-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> CString {
        CString::new(self.0.join(name).into_os_string().into_encoded_bytes()).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &CString, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: a valid C string.
    unsafe { libc::open(path.as_ptr(), flags, mode as libc::c_uint) }
}

fn read(fd: c_int, buf: &mut [u8]) -> isize {
    // SAFETY: a valid buffer.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

fn write(fd: c_int, buf: &[u8]) -> isize {
    // SAFETY: a valid buffer.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
}

fn pread(fd: c_int, buf: &mut [u8], off: i64) -> isize {
    // SAFETY: a valid buffer.
    unsafe { libc::pread64(fd, buf.as_mut_ptr().cast(), buf.len(), off) }
}

fn pwrite(fd: c_int, buf: &[u8], off: i64) -> isize {
    // SAFETY: a valid buffer.
    unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off) }
}

fn lseek(fd: c_int, off: i64, whence: c_int) -> i64 {
    // SAFETY: integer arguments.
    unsafe { libc::lseek64(fd, off, whence) }
}

fn close(fd: c_int) -> c_int {
    // SAFETY: the scenario owns `fd`.
    unsafe { libc::close(fd) }
}

fn size_of(fd: c_int) -> i64 {
    // SAFETY: an all-zero stat is valid; the out-parameter is valid.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::fstat64(fd, &mut st) }, 0);
    st.st_size
}

/// The file's bytes, read with `std` (outside the calls under test).
fn contents(path: &CString) -> Vec<u8> {
    std::fs::read(path.to_str().unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Reads and writes move the file position as libc's do; positioned calls leave it alone.
fn positions() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("f");
    let fd = r.call("open O_CREAT|O_RDWR", Between(3, 1 << 20), || open(&path, libc::O_CREAT | libc::O_RDWR, 0o644))
        as c_int;
    r.call("write 10", Ret(10), || write(fd, b"0123456789"));
    r.call("lseek CUR after write", Ret(10), || lseek(fd, 0, libc::SEEK_CUR));
    r.call("lseek SET 2", Ret(2), || lseek(fd, 2, libc::SEEK_SET));
    let mut buf = [0u8; 4];
    r.call("read 4", Ret(4), || read(fd, &mut buf));
    r.fact("read gave", buf);
    r.call("lseek CUR after read", Ret(6), || lseek(fd, 0, libc::SEEK_CUR));
    r.call("pread 4 at 1", Ret(4), || pread(fd, &mut buf, 1));
    r.fact("pread gave", buf);
    r.call("pwrite 2 at 12 (a hole)", Ret(2), || pwrite(fd, b"xy", 12));
    r.call("lseek CUR after positioned calls", Ret(6), || lseek(fd, 0, libc::SEEK_CUR));
    r.call("fstat size", Ret(14), || size_of(fd));
    r.call("close", Ret(0), || close(fd));
    r.fact("contents", contents(&path));
    r
}

/// Reads at and past the end: short counts, then 0.
fn short_reads_at_eof() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("f");
    std::fs::write(path.to_str().unwrap(), b"abcde").unwrap();
    let fd = r.call("open O_RDONLY", Between(3, 1 << 20), || open(&path, libc::O_RDONLY, 0)) as c_int;
    let mut buf = [0u8; 64];
    r.call("read 64 of 5", Ret(5), || read(fd, &mut buf));
    r.call("read at EOF", Ret(0), || read(fd, &mut buf));
    r.call("pread past EOF", Ret(0), || pread(fd, &mut buf, 100));
    r.call("pread across EOF", Ret(2), || pread(fd, &mut buf, 3));
    r.call("read 0 bytes", Ret(0), || read(fd, &mut buf[..0]));
    // SAFETY: a 1 GiB count over a 64-byte buffer: the kernel reads only the 0 bytes left.
    r.call("read with a huge count at EOF", Ret(0), || unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 1 << 30) });
    r.call("close", Ret(0), || close(fd));
    r
}

/// Evicts `fd`'s pages from the page cache (they are clean after an `fsync`), and turns
/// readahead off, so that the next reads miss the cache and go to io_uring or a helper
/// rather than being served inline.
fn evict(fd: c_int) {
    // SAFETY: integer arguments.
    unsafe {
        assert_eq!(libc::fsync(fd), 0);
        assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED), 0);
        assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM), 0);
    }
}

/// Reads that miss the page cache, in full or in part (the first page cached, the rest
/// not: the inline part and the backend's part add up).
fn cold_reads() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("cold");
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(path.to_str().unwrap(), &data).unwrap();
    let fd = r.call("open", Between(3, 1 << 20), || open(&path, libc::O_RDONLY, 0)) as c_int;
    let mut buf = vec![0u8; 65536];
    evict(fd);
    r.call("cold read 64 KiB", Ret(65536), || read(fd, &mut buf));
    r.check("cold read bytes", buf == data);
    r.call("lseek CUR", Ret(65536), || lseek(fd, 0, libc::SEEK_CUR));
    evict(fd);
    r.call("pread one page", Ret(4096), || pread(fd, &mut buf[..4096], 0));
    buf.fill(0);
    r.call("pread 64 KiB, the first page cached", Ret(65536), || pread(fd, &mut buf, 0));
    r.check("pread bytes", buf == data);
    evict(fd);
    r.call("lseek SET 0", Ret(0), || lseek(fd, 0, libc::SEEK_SET));
    r.call("read one page", Ret(4096), || read(fd, &mut buf[..4096]));
    buf.fill(0);
    r.call("read the rest (uncached) and past the end", Ret(61440), || read(fd, &mut buf));
    r.check("read bytes", buf[..61440] == data[4096..]);
    evict(fd);
    let (mut a, mut b) = (vec![0u8; 100], vec![0u8; 65536]);
    let iov = [
        libc::iovec { iov_base: a.as_mut_ptr().cast(), iov_len: a.len() },
        libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() },
    ];
    // SAFETY: valid iovecs over live buffers.
    r.call("cold preadv at 0", Ret(65536), || unsafe { libc::preadv64(fd, iov.as_ptr(), 2, 0) });
    r.check("preadv bytes", a[..] == data[..100] && b[..65436] == data[100..]);
    r.call("close", Ret(0), || close(fd));
    r
}

/// `O_DIRECT` reads and writes (aligned), which bypass the page cache: never served inline.
/// A filesystem without `O_DIRECT` refuses the open, inside and outside alike.
fn direct_io() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("direct");
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(path.to_str().unwrap(), &data).unwrap();
    let fd = r.call("open O_DIRECT", Between(-1, 1 << 20), || open(&path, libc::O_RDWR | libc::O_DIRECT, 0)) as c_int;
    r.fact("the filesystem takes O_DIRECT", fd >= 0);
    if fd < 0 {
        return r;
    }
    let layout = std::alloc::Layout::from_size_align(8192, 4096).unwrap();
    // SAFETY: a non-zero size.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: `buf` is 8192 bytes, 4096-aligned, ours until freed below.
    let aligned = unsafe { std::slice::from_raw_parts_mut(buf, 8192) };
    r.call("pread 8 KiB", Ret(8192), || pread(fd, aligned, 0));
    r.check("pread bytes", aligned[..] == data[..]);
    r.call("read 4 KiB", Ret(4096), || read(fd, &mut aligned[..4096]));
    r.call("pwrite 4 KiB at 4096", Ret(4096), || pwrite(fd, &aligned[..4096], 4096));
    r.call("unaligned pread", Err(EINVAL), || pread(fd, &mut aligned[1..4097], 0));
    r.call("close", Ret(0), || close(fd));
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    r.check("file now", contents(&path)[4096..] == data[..4096]);
    r
}

/// `readv`, `writev`, `preadv`, `pwritev`, including bad iovec counts.
fn vectored() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("f");
    let fd = r.call("open", Between(3, 1 << 20), || open(&path, libc::O_CREAT | libc::O_RDWR, 0o600)) as c_int;
    let parts: [&[u8]; 3] = [b"ab", b"", b"cdef"];
    let iov: Vec<libc::iovec> =
        parts.iter().map(|p| libc::iovec { iov_base: p.as_ptr().cast_mut().cast(), iov_len: p.len() }).collect();
    // SAFETY: valid iovecs over live buffers.
    r.call("writev 3 parts", Ret(6), || unsafe { libc::writev(fd, iov.as_ptr(), 3) });
    // SAFETY: as above.
    r.call("pwritev at 10", Ret(6), || unsafe { libc::pwritev64(fd, iov.as_ptr(), 3, 10) });
    // SAFETY: as above; a negative count is rejected.
    r.call("writev -1 parts", Err(EINVAL), || unsafe { libc::writev(fd, iov.as_ptr(), -1) });
    // SAFETY: as above.
    r.call("pwritev at -1", Err(EINVAL), || unsafe { libc::pwritev(fd, iov.as_ptr(), 3, -1) });
    r.call("lseek SET 0", Ret(0), || lseek(fd, 0, libc::SEEK_SET));
    let (mut a, mut b) = ([0u8; 3], [0u8; 5]);
    let riov = [
        libc::iovec { iov_base: a.as_mut_ptr().cast(), iov_len: a.len() },
        libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() },
    ];
    // SAFETY: valid iovecs over live buffers.
    r.call("readv 8 of 16", Ret(8), || unsafe { libc::readv(fd, riov.as_ptr(), 2) });
    r.fact("readv gave", (a, b));
    // SAFETY: as above.
    r.call("preadv at 10", Ret(6), || unsafe { libc::preadv(fd, riov.as_ptr(), 2, 10) });
    r.fact("preadv gave", (a, b));
    // SAFETY: as above.
    r.call("readv 0 parts", Ret(0), || unsafe { libc::readv(fd, riov.as_ptr(), 0) });
    r.call("lseek CUR", Ret(8), || lseek(fd, 0, libc::SEEK_CUR));
    r.call("close", Ret(0), || close(fd));
    r
}

/// `O_APPEND` writes go to the end, `pwrite` included (Linux ignores its offset then).
fn append() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("log");
    std::fs::write(path.to_str().unwrap(), b"start\n").unwrap();
    let fd = r.call("open O_APPEND", Between(3, 1 << 20), || open(&path, libc::O_WRONLY | libc::O_APPEND, 0)) as c_int;
    r.call("lseek CUR at open", Ret(0), || lseek(fd, 0, libc::SEEK_CUR));
    r.call("write", Ret(4), || write(fd, b"one\n"));
    r.call("lseek CUR after append", Ret(10), || lseek(fd, 0, libc::SEEK_CUR));
    r.call("pwrite at 0", Ret(4), || pwrite(fd, b"two\n", 0));
    r.call("read a write-only fd", Err(EBADF), || read(fd, &mut [0u8; 4]));
    r.call("close", Ret(0), || close(fd));
    r.fact("contents", contents(&path));
    r
}

/// `creat`, `O_EXCL`, `O_TRUNC`, `ftruncate` both ways.
fn create_and_truncate() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("f");
    // SAFETY: a valid C string.
    let fd = r.call("creat", Between(3, 1 << 20), || unsafe { libc::creat(path.as_ptr(), 0o640) }) as c_int;
    r.call("write", Ret(8), || write(fd, b"12345678"));
    r.call("read a creat fd (write-only)", Err(EBADF), || read(fd, &mut [0u8; 1]));
    // SAFETY: integer arguments.
    r.call("ftruncate 3", Ret(0), || unsafe { libc::ftruncate(fd, 3) });
    // SAFETY: integer arguments.
    r.call("ftruncate64 100", Ret(0), || unsafe { libc::ftruncate64(fd, 100) });
    r.call("size", Ret(100), || size_of(fd));
    // SAFETY: integer arguments.
    r.call("ftruncate -1", Err(EINVAL), || unsafe { libc::ftruncate(fd, -1) });
    r.call("close", Ret(0), || close(fd));
    r.call("O_CREAT|O_EXCL on it", Err(EEXIST), || open(&path, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600));
    let fd = r.call("O_TRUNC", Between(3, 1 << 20), || open(&path, libc::O_TRUNC | libc::O_RDWR, 0)) as c_int;
    r.call("size after O_TRUNC", Ret(0), || size_of(fd));
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-parameter.
    r.call("stat", Ret(0), || unsafe { libc::stat(path.as_ptr(), &mut st) });
    r.fact("mode", st.st_mode & 0o7777);
    let ro = r.call("open O_RDONLY", Between(3, 1 << 20), || open(&path, libc::O_RDONLY, 0)) as c_int;
    // SAFETY: integer arguments.
    r.call("ftruncate a read-only fd", Err(EINVAL), || unsafe { libc::ftruncate(ro, 0) });
    r.call("close", Ret(0), || close(ro));
    r.call("close", Ret(0), || close(fd));
    r
}

/// `fsync`, `fdatasync`, `fallocate`.
fn sync_and_allocate() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("f");
    let fd = r.call("open", Between(3, 1 << 20), || open(&path, libc::O_CREAT | libc::O_RDWR, 0o600)) as c_int;
    r.call("write", Ret(3), || write(fd, b"abc"));
    // SAFETY: integer arguments.
    r.call("fsync", Ret(0), || unsafe { libc::fsync(fd) });
    // SAFETY: integer arguments.
    r.call("fdatasync", Ret(0), || unsafe { libc::fdatasync(fd) });
    // SAFETY: integer arguments.
    r.call("fallocate 4096", Ret(0), || unsafe { libc::fallocate(fd, 0, 0, 4096) });
    r.call("size after fallocate", Ret(4096), || size_of(fd));
    // SAFETY: integer arguments.
    r.call("fallocate KEEP_SIZE", Ret(0), || unsafe { libc::fallocate64(fd, libc::FALLOC_FL_KEEP_SIZE, 0, 8192) });
    r.call("size after KEEP_SIZE", Ret(4096), || size_of(fd));
    // SAFETY: integer arguments.
    r.call("fallocate len 0", Err(EINVAL), || unsafe { libc::fallocate(fd, 0, 0, 0) });
    let (pr, pw) = support::fd::pipe();
    use std::os::fd::AsRawFd;
    // SAFETY: integer arguments.
    r.call("fsync a pipe", Err(EINVAL), || unsafe { libc::fsync(pr.as_raw_fd()) });
    drop(pw);
    r.call("close", Ret(0), || close(fd));
    r
}

/// Every `stat` spelling agrees, field by field, with the kernel's own `newfstatat` (the
/// record keeps only the verdicts: inode numbers and times differ from run to run).
fn stat_family() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let file = dir.path("f");
    std::fs::write(file.to_str().unwrap(), b"twelve bytes").unwrap();
    let link = dir.path("l");
    // SAFETY: valid C strings.
    r.call("symlink", Ret(0), || unsafe { libc::symlink(file.as_ptr(), link.as_ptr()) });
    let kernel = |dirfd: c_int, path: &CString, flags: c_int| {
        // SAFETY: an all-zero stat is valid; valid pointers.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the raw system call bypasses every hook.
        let ret =
            unsafe { libc::syscall(libc::SYS_newfstatat, dirfd, path.as_ptr(), &mut st as *mut libc::stat, flags) };
        assert_eq!(ret, 0);
        format!("{st:?}")
    };
    let shown = |st: &libc::stat| format!("{st:?}");
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    r.call("stat", Ret(0), || unsafe { libc::stat(file.as_ptr(), &mut st) });
    r.check("stat == newfstatat", shown(&st) == kernel(libc::AT_FDCWD, &file, 0));
    r.fact("size", st.st_size);
    // SAFETY: valid pointers.
    r.call("lstat", Ret(0), || unsafe { libc::lstat(link.as_ptr(), &mut st) });
    r.check("lstat == newfstatat NOFOLLOW", shown(&st) == kernel(libc::AT_FDCWD, &link, libc::AT_SYMLINK_NOFOLLOW));
    r.fact("lstat is a link", st.st_mode & libc::S_IFMT == libc::S_IFLNK);
    // SAFETY: valid pointers (stat64 is stat on 64-bit targets).
    r.call("stat64 through the link", Ret(0), || unsafe {
        libc::stat64(link.as_ptr(), (&mut st as *mut libc::stat).cast())
    });
    r.check("stat64 == newfstatat", shown(&st) == kernel(libc::AT_FDCWD, &file, 0));
    let dir_c = dir.path("");
    let dirfd =
        r.call("open the dir", Between(3, 1 << 20), || open(&dir_c, libc::O_RDONLY | libc::O_DIRECTORY, 0)) as c_int;
    let name = CString::new("f").unwrap();
    // SAFETY: valid pointers.
    r.call("fstatat relative", Ret(0), || unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, 0) });
    r.check("fstatat == newfstatat", shown(&st) == kernel(dirfd, &name, 0));
    // SAFETY: valid pointers; 0x1 is no flag of fstatat's.
    r.call("fstatat bad flags", Err(EINVAL), || unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, 0x1) });
    let empty = CString::new("").unwrap();
    for (what, path, flags) in [
        ("fstat file", &file, libc::O_RDONLY),
        ("fstat dir", &dir_c, libc::O_RDONLY),
        ("fstat /dev/null", &CString::new("/dev/null").unwrap(), libc::O_RDWR),
    ] {
        let fd = open(path, flags, 0);
        // SAFETY: valid pointers.
        r.call(what, Ret(0), || unsafe { libc::fstat(fd, &mut st) });
        r.check(&format!("{what} == newfstatat EMPTY_PATH"), shown(&st) == kernel(fd, &empty, libc::AT_EMPTY_PATH));
        close(fd);
    }
    let (p, _w) = support::fd::pipe();
    use std::os::fd::AsRawFd;
    // SAFETY: valid pointers.
    r.call("fstat64 a pipe", Ret(0), || unsafe { libc::fstat64(p.as_raw_fd(), (&mut st as *mut libc::stat).cast()) });
    r.check("fstat pipe == newfstatat", shown(&st) == kernel(p.as_raw_fd(), &empty, libc::AT_EMPTY_PATH));
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    r.call("statx", Ret(0), || unsafe { libc::statx(libc::AT_FDCWD, file.as_ptr(), 0, libc::STATX_SIZE, &mut stx) });
    r.fact("statx size", stx.stx_size);
    let missing = dir.path("missing");
    // SAFETY: valid pointers.
    r.call("statx missing", Err(ENOENT), || unsafe {
        libc::statx(libc::AT_FDCWD, missing.as_ptr(), 0, libc::STATX_ALL, &mut stx)
    });
    // SAFETY: valid pointers.
    r.call("stat missing", Err(ENOENT), || unsafe { libc::stat(missing.as_ptr(), &mut st) });
    let through_file = dir.path("f/x");
    // SAFETY: valid pointers.
    r.call("stat through a file", Err(ENOTDIR), || unsafe { libc::stat(through_file.as_ptr(), &mut st) });
    // SAFETY: valid pointers; fd 1_000_000 is not open.
    r.call("fstat a closed fd", Err(EBADF), || unsafe { libc::fstat(1_000_000, &mut st) });
    // SAFETY: a negative fd is rejected.
    r.call("fstat -1", Err(EBADF), || unsafe { libc::fstat(-1, &mut st) });
    // SAFETY: a null buffer is rejected.
    r.call("stat into null", Err(libc::EFAULT), || unsafe { libc::stat(file.as_ptr(), std::ptr::null_mut()) });
    r.call("close dir", Ret(0), || close(dirfd));
    r
}

/// `mkdir`, `mkdirat`, `openat` in a directory fd, `rmdir`, `unlinkat`, `EISDIR`.
fn directories() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let sub = dir.path("sub");
    // SAFETY: valid C strings.
    r.call("mkdir", Ret(0), || unsafe { libc::mkdir(sub.as_ptr(), 0o755) });
    // SAFETY: as above.
    r.call("mkdir again", Err(EEXIST), || unsafe { libc::mkdir(sub.as_ptr(), 0o755) });
    let subfd = r.call("open dir", Between(3, 1 << 20), || open(&sub, libc::O_RDONLY | libc::O_DIRECTORY, 0)) as c_int;
    let (inner, file) = (CString::new("inner").unwrap(), CString::new("file").unwrap());
    // SAFETY: valid C strings.
    r.call("mkdirat", Ret(0), || unsafe { libc::mkdirat(subfd, inner.as_ptr(), 0o700) });
    // SAFETY: valid C strings.
    let fd = r.call("openat O_CREAT", Between(3, 1 << 20), || unsafe {
        libc::openat(subfd, file.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600)
    }) as c_int;
    r.call("write", Ret(2), || write(fd, b"hi"));
    r.call("close", Ret(0), || close(fd));
    r.call("read a directory", Err(EISDIR), || read(subfd, &mut [0u8; 8]));
    r.call("write-open a directory", Err(EISDIR), || open(&sub, libc::O_WRONLY, 0));
    // SAFETY: valid C strings.
    r.call("rmdir non-empty", Err(ENOTEMPTY), || unsafe { libc::rmdir(sub.as_ptr()) });
    // SAFETY: valid C strings.
    r.call("unlinkat a dir without AT_REMOVEDIR", Err(EISDIR), || unsafe { libc::unlinkat(subfd, inner.as_ptr(), 0) });
    // SAFETY: valid C strings.
    r.call("unlinkat AT_REMOVEDIR", Ret(0), || unsafe { libc::unlinkat(subfd, inner.as_ptr(), libc::AT_REMOVEDIR) });
    // SAFETY: valid C strings; 0x1 is no flag of unlinkat's.
    r.call("unlinkat bad flags", Err(EINVAL), || unsafe { libc::unlinkat(subfd, file.as_ptr(), 0x1) });
    // SAFETY: valid C strings.
    r.call("unlinkat file", Ret(0), || unsafe { libc::unlinkat(subfd, file.as_ptr(), 0) });
    let missing = dir.path("sub/file");
    // SAFETY: valid C strings.
    r.call("unlink missing", Err(ENOENT), || unsafe { libc::unlink(missing.as_ptr()) });
    r.call("close dir", Ret(0), || close(subfd));
    // SAFETY: valid C strings.
    r.call("rmdir", Ret(0), || unsafe { libc::rmdir(sub.as_ptr()) });
    r
}

/// `rename`, `renameat`, `renameat2` with `RENAME_NOREPLACE`.
fn renames() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let (a, b, c) = (dir.path("a"), dir.path("b"), dir.path("c"));
    std::fs::write(a.to_str().unwrap(), b"A").unwrap();
    std::fs::write(c.to_str().unwrap(), b"C").unwrap();
    // SAFETY: valid C strings.
    r.call("rename a b", Ret(0), || unsafe { libc::rename(a.as_ptr(), b.as_ptr()) });
    // SAFETY: valid C strings.
    r.call("rename missing", Err(ENOENT), || unsafe { libc::rename(a.as_ptr(), b.as_ptr()) });
    // SAFETY: valid C strings.
    r.call("renameat2 NOREPLACE onto c", Err(EEXIST), || unsafe {
        libc::renameat2(libc::AT_FDCWD, b.as_ptr(), libc::AT_FDCWD, c.as_ptr(), libc::RENAME_NOREPLACE)
    });
    // SAFETY: valid C strings.
    r.call("renameat onto c", Ret(0), || unsafe {
        libc::renameat(libc::AT_FDCWD, b.as_ptr(), libc::AT_FDCWD, c.as_ptr())
    });
    r.fact("c now", contents(&c));
    // SAFETY: valid C strings.
    r.call("renameat2 bad flags", Err(EINVAL), || unsafe {
        libc::renameat2(libc::AT_FDCWD, c.as_ptr(), libc::AT_FDCWD, a.as_ptr(), 0x80)
    });
    r
}

/// Opens that fail, and that errno is left alone by those that succeed.
fn open_errors() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let missing = dir.path("nope/f");
    r.call("open missing", Err(ENOENT), || open(&missing, libc::O_RDONLY, 0));
    r.call("O_CREAT in a missing dir", Err(ENOENT), || open(&missing, libc::O_CREAT | libc::O_RDWR, 0o600));
    let file = dir.path("f");
    std::fs::write(file.to_str().unwrap(), b"x").unwrap();
    r.call("O_DIRECTORY on a file", Err(ENOTDIR), || open(&file, libc::O_RDONLY | libc::O_DIRECTORY, 0));
    // SAFETY: a null path is rejected.
    r.call("open null", Err(libc::EFAULT), || unsafe { libc::open(std::ptr::null(), libc::O_RDONLY) });
    // SAFETY: a null path is rejected.
    r.call("openat bad dirfd", Err(EBADF), || unsafe { libc::openat(1_000_000, c"rel".as_ptr(), libc::O_RDONLY) });
    let tmp = dir.path("");
    let fd = r.call("O_TMPFILE", Between(3, 1 << 20), || open(&tmp, libc::O_TMPFILE | libc::O_RDWR, 0o600)) as c_int;
    r.call("write to it", Ret(3), || write(fd, b"tmp"));
    r.call("close", Ret(0), || close(fd));
    r
}

/// Calls on bad fds, and `pread` on fds without positions.
fn fd_errors() -> Record {
    let mut r = Record::default();
    let mut buf = [0u8; 4];
    r.call("pread a closed fd", Err(EBADF), || pread(1_000_000, &mut buf, 0));
    // SAFETY: integer arguments.
    r.call("fsync a closed fd", Err(EBADF), || unsafe { libc::fsync(1_000_000) });
    // SAFETY: integer arguments.
    r.call("fdatasync -1", Err(EBADF), || unsafe { libc::fdatasync(-1) });
    // SAFETY: integer arguments.
    r.call("ftruncate a closed fd", Err(EBADF), || unsafe { libc::ftruncate(1_000_000, 0) });
    // SAFETY: integer arguments.
    r.call("fallocate a closed fd", Err(EBADF), || unsafe { libc::fallocate(1_000_000, 0, 0, 1) });
    let (p, w) = support::fd::pipe();
    use std::os::fd::AsRawFd;
    r.call("pread a pipe", Err(ESPIPE), || pread(p.as_raw_fd(), &mut buf, 0));
    r.call("pwrite a pipe", Err(ESPIPE), || pwrite(w.as_raw_fd(), b"x", 0));
    let dev_null = CString::new("/dev/null").unwrap();
    let fd = open(&dev_null, libc::O_RDWR, 0);
    r.call("pread /dev/null", Ret(0), || pread(fd, &mut buf, 0));
    r.call("pread at -1", Err(EINVAL), || pread(fd, &mut buf, -1));
    close(fd);
    r
}

/// A file closed twice: the second close fails with `EBADF`. The fd is moved to a number
/// of its own first (`fd_slot`), which no other test's open can be given in between.
fn close_twice() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let path = dir.path("f");
    let fd = r.call("open", Between(3, 1 << 20), || open(&path, libc::O_CREAT | libc::O_RDWR, 0o600)) as c_int;
    let fd = support::fd::move_to(support::fd::own(fd), support::fd::fd_slot(0));
    r.call("close", Ret(0), || close(fd));
    r.call("close again", Err(EBADF), || close(fd));
    r.call("read after close", Err(EBADF), || read(fd, &mut [0u8; 1]));
    r
}

/// Symlinks (followed, not followed, dangling, through a directory), FIFOs and devices: the
/// kinds of file the cached lookup (see `hook::file::cached`) must hand to the backend or
/// answer exactly as libc.
fn links_and_special_files() -> Record {
    let (mut r, dir) = (Record::default(), Scratch::new());
    let (file, link, dangling, sub, sublink) =
        (dir.path("file"), dir.path("link"), dir.path("dangling"), dir.path("sub"), dir.path("sublink"));
    std::fs::write(file.to_str().unwrap(), b"target").unwrap();
    std::fs::create_dir(sub.to_str().unwrap()).unwrap();
    std::fs::write(dir.0.join("sub/inner"), b"inner").unwrap();
    // SAFETY: valid C strings.
    unsafe {
        assert_eq!(libc::symlink(file.as_ptr(), link.as_ptr()), 0);
        assert_eq!(libc::symlink(dir.path("nowhere").as_ptr(), dangling.as_ptr()), 0);
        assert_eq!(libc::symlink(sub.as_ptr(), sublink.as_ptr()), 0);
    }
    let fd = r.call("open through a link", Between(3, 1 << 20), || open(&link, libc::O_RDONLY, 0)) as c_int;
    let mut buf = [0u8; 16];
    r.call("read the target", Ret(6), || read(fd, &mut buf));
    close(fd);
    r.call("open a link O_NOFOLLOW", Err(libc::ELOOP), || open(&link, libc::O_RDONLY | libc::O_NOFOLLOW, 0));
    r.call("open a dangling link", Err(ENOENT), || open(&dangling, libc::O_RDONLY, 0));
    let inner = dir.path("sublink/inner");
    let fd = r.call("open through a linked dir", Between(3, 1 << 20), || open(&inner, libc::O_RDONLY, 0)) as c_int;
    r.call("read it", Ret(5), || read(fd, &mut buf));
    close(fd);
    let fd = r.call("open O_PATH", Between(3, 1 << 20), || open(&file, libc::O_PATH, 0)) as c_int;
    r.call("read an O_PATH fd", Err(EBADF), || read(fd, &mut buf));
    close(fd);
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    r.call("stat a dangling link", Err(ENOENT), || unsafe { libc::stat(dangling.as_ptr(), &mut st) });
    // SAFETY: valid pointers.
    r.call("lstat a dangling link", Ret(0), || unsafe { libc::lstat(dangling.as_ptr(), &mut st) });
    r.fact("it is a link", st.st_mode & libc::S_IFMT == libc::S_IFLNK);
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    r.call("statx NOFOLLOW a link", Ret(0), || unsafe {
        libc::statx(libc::AT_FDCWD, link.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, libc::STATX_TYPE, &mut stx)
    });
    r.fact("statx type is a link", u32::from(stx.stx_mode) & libc::S_IFMT == libc::S_IFLNK);
    // SAFETY: valid pointers; 0x1 is no flag of statx's.
    r.call("statx bad flags", Err(EINVAL), || unsafe { libc::statx(libc::AT_FDCWD, file.as_ptr(), 0x1, 0, &mut stx) });
    let fifo = dir.path("fifo");
    // SAFETY: a valid C string.
    r.call("mkfifo", Ret(0), || unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) });
    r.call("open a FIFO for writing, no reader, O_NONBLOCK", Err(libc::ENXIO), || {
        open(&fifo, libc::O_WRONLY | libc::O_NONBLOCK, 0)
    });
    let rd = r.call("open a FIFO for reading, O_NONBLOCK", Between(3, 1 << 20), || {
        open(&fifo, libc::O_RDONLY | libc::O_NONBLOCK, 0)
    }) as c_int;
    let wr = r.call("then for writing", Between(3, 1 << 20), || open(&fifo, libc::O_WRONLY, 0)) as c_int;
    r.call("write", Ret(2), || write(wr, b"ok"));
    r.call("read", Ret(2), || read(rd, &mut buf));
    close(wr);
    close(rd);
    let null = CString::new("/dev/null").unwrap();
    let fd = r.call("open /dev/null", Between(3, 1 << 20), || open(&null, libc::O_WRONLY, 0)) as c_int;
    r.call("write to it", Ret(3), || write(fd, b"abc"));
    close(fd);
    let subfd = open(&sub, libc::O_RDONLY | libc::O_DIRECTORY, 0);
    // SAFETY: a valid C string.
    let fd = r.call("openat relative", Between(3, 1 << 20), || unsafe {
        libc::openat(subfd, c"inner".as_ptr(), libc::O_RDONLY)
    }) as c_int;
    close(fd);
    // SAFETY: a valid C string.
    r.call("openat .. relative", Between(3, 1 << 20), || unsafe {
        libc::openat(subfd, c"../file".as_ptr(), libc::O_RDONLY)
    })
    .try_into()
    .map(close)
    .ok();
    close(subfd);
    r
}
