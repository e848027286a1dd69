//! File calls suspend the coroutine, not the worker, on both backends (io_uring and the
//! helper threads), and go where the runtime's setting sends them.
//!
//! The slow file operation is the `open` of a FIFO, which blocks until the other end is
//! opened: deterministic, and only possible on one worker if the first `open` suspends.

#[macro_use]
mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use openco::{Builder, Runtime};
use openco_runtime::file_io_counts;
use support::join;

/// A runtime without the monitor: a worker blocked in a call stays blocked, rather than
/// handing its queued jobs to another thread (which would hide the block).
fn runtime(workers: usize, io_uring: bool) -> support::LeakOnPanic {
    let rt = support::builder(workers).io_uring(io_uring).time_slice(None).build().unwrap();
    support::LeakOnPanic::new(rt)
}

fn scratch(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("openco-{what}-{}-{}", std::process::id(), NEXT.fetch_add(1, Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Which backend the runtime should use for file calls: io_uring if asked for and the
/// kernel has it.
fn uses_ring(io_uring: bool) -> bool {
    io_uring && openco::io_uring_available() != Some(false)
}

/// Checks that at least `calls` more file calls went to the backend `io_uring` selects.
/// (Opens that miss the kernel's caches go to the helpers whatever the backend: count them
/// with [`assert_offloaded`].)
fn assert_served(before: (u64, u64), calls: u64, io_uring: bool) {
    let after = file_io_counts();
    let (ring, offloaded) = (after.0 - before.0, after.1 - before.1);
    if uses_ring(io_uring) && openco::io_uring_available() == Some(true) {
        assert!(ring >= calls, "{ring} calls went to io_uring, {calls} expected");
    } else {
        assert!(offloaded >= calls, "{offloaded} calls went to helper threads, {calls} expected");
    }
}

/// Checks that at least `calls` more file calls went to the helper threads.
fn assert_offloaded(before: (u64, u64), calls: u64) {
    let offloaded = file_io_counts().1 - before.1;
    assert!(offloaded >= calls, "{offloaded} calls went to helper threads, {calls} expected");
}

rt_test! {
    /// Opening one end of a FIFO blocks until the other end is opened. On one worker, the
    /// second job can only run if the first one's `open` suspended its coroutine; either
    /// end may come first (a writer first once got `ENXIO` from io_uring's inline try).
    fn a_blocked_open_leaves_the_worker_free(workers: usize) {
        for (io_uring, reader_first) in [(true, true), (true, false), (false, true), (false, false)] {
            let rt = runtime(workers, io_uring);
            let dir = scratch("fifo");
            let fifo = dir.join("fifo");
            mkfifo(&fifo);
            let before = file_io_counts();
            let (f1, f2) = (fifo.clone(), fifo.clone());
            let read = move || std::fs::read_to_string(&f1).unwrap();
            let write = move || std::fs::write(&f2, "through the fifo").unwrap();
            let (reader, writer) = if reader_first {
                let reader = rt.blocking(read);
                (reader, rt.blocking(write))
            } else {
                let writer = rt.blocking(write);
                (rt.blocking(read), writer)
            };
            join(writer).unwrap();
            assert_eq!(join(reader).unwrap(), "through the fifo", "reader first: {reader_first}");
            assert_offloaded(before, 2); // opens of FIFOs run on the helpers
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

rt_test! {
    /// More FIFOs than the helper pool has threads (4 to 16), every read end opened before
    /// any write end: each open blocks a helper (or one of io_uring's kernel workers) until
    /// its peer comes, and the peers are queued behind them. The pool starts helpers beyond
    /// its size for calls left queued while every helper is busy (`offload`); io_uring's
    /// workers grow on their own.
    fn more_blocked_opens_than_helpers(workers: usize) {
        const PAIRS: usize = 20;
        for io_uring in [true, false] {
            let rt = runtime(workers, io_uring);
            let dir = scratch("fifos");
            let fifos: Vec<_> = (0..PAIRS).map(|i| dir.join(format!("fifo{i}"))).collect();
            fifos.iter().for_each(|f| mkfifo(f));
            let readers: Vec<_> = fifos
                .iter()
                .map(|f| {
                    let f = f.clone();
                    rt.blocking(move || std::fs::read_to_string(&f).unwrap())
                })
                .collect();
            let writers: Vec<_> = fifos
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let f = f.clone();
                    rt.blocking(move || std::fs::write(&f, format!("pair {i}")).unwrap())
                })
                .collect();
            writers.into_iter().for_each(|w| join(w).unwrap());
            for (i, r) in readers.into_iter().enumerate() {
                assert_eq!(join(r).unwrap(), format!("pair {i}"));
            }
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

rt_test! {
    /// Many coroutines doing file IO at once: each writes, syncs, reads back, stats, renames
    /// and removes its own file.
    fn many_coroutines_do_file_io_at_once(workers: usize) {
        for io_uring in [true, false] {
            let rt = runtime(workers, io_uring);
            let dir = scratch("many");
            let before = file_io_counts();
            let jobs: Vec<_> = (0..200)
                .map(|i| {
                    let dir = dir.clone();
                    rt.blocking(move || {
                        use std::io::Write;
                        let path = dir.join(format!("f{i}"));
                        let mut f = std::fs::File::create(&path)?;
                        f.write_all(format!("job {i}").as_bytes())?;
                        f.sync_all()?;
                        drop(f);
                        let text = std::fs::read_to_string(&path)?;
                        let len = std::fs::metadata(&path)?.len();
                        let moved = dir.join(format!("g{i}"));
                        std::fs::rename(&path, &moved)?;
                        std::fs::remove_file(&moved)?;
                        Ok::<_, std::io::Error>((text, len))
                    })
                })
                .collect();
            for (i, job) in jobs.into_iter().enumerate() {
                let (text, len) = join(job).unwrap().unwrap();
                assert_eq!(text, format!("job {i}"));
                assert_eq!(len, text.len() as u64);
            }
            // fsync, rename, unlink: 3 a job on the backend, and the create on the helpers
            // (the open of an existing file and the stat by path are answered from the
            // kernel's caches, the write and the reads by the page cache, an open file's
            // status and the closes inline: see `hook::file`).
            assert_served(before, 200 * 3, io_uring);
            assert_offloaded(before, 200);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

rt_test! {
    /// A read that misses the page cache goes to the backend (a warm one is served inline).
    fn cold_reads_go_to_the_backend(workers: usize) {
        for io_uring in [true, false] {
            let rt = runtime(workers, io_uring);
            let dir = scratch("cold");
            let path = dir.join("f");
            let data: Vec<u8> = (0..1 << 20).map(|i: u32| i as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let before = file_io_counts();
            let read = join(rt.blocking(move || {
                use std::os::fd::AsRawFd;
                let f = std::fs::File::open(&path).unwrap();
                let f = &f;
                // SAFETY: an open fd; clean pages (after the fsync) can be dropped.
                unsafe {
                    assert_eq!(libc::fsync(f.as_raw_fd()), 0);
                    assert_eq!(libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED), 0);
                }
                let mut all = Vec::new();
                std::io::Read::read_to_end(&mut { f }, &mut all).unwrap();
                all.len()
            }))
            .unwrap();
            assert_eq!(read, data.len());
            // the fsync and at least one read
            assert_served(before, 2, io_uring);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

/// A runtime without an explicit setting follows `OPENCO_IO_URING` (CI runs this file with
/// it set to 0 and unset).
#[test]
fn the_default_follows_the_environment() {
    let rt = support::rt_leak_on_panic(1);
    let env_on = std::env::var("OPENCO_IO_URING").map_or(true, |v| v.trim() != "0");
    let dir = scratch("env");
    let path = dir.join("f");
    let before = file_io_counts();
    join(rt.blocking(move || std::fs::File::create(&path)?.sync_all())).unwrap().unwrap();
    assert_served(before, 1, env_on); // the fsync (the create runs on a helper either way)
    std::fs::remove_dir_all(dir).unwrap();
}

/// A job aborted while its `open` waits in the kernel (or on a helper) finishes that call
/// before anything it owns is freed; the runtime stays usable.
#[test]
fn abort_during_a_file_call() {
    for io_uring in [true, false] {
        let rt = runtime(1, io_uring);
        let dir = scratch("abort");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        let f1 = fifo.clone();
        let (started_tx, started) = std::sync::mpsc::channel();
        let reader = rt.blocking(move || {
            started_tx.send(()).unwrap();
            let mut buf = vec![0u8; 64];
            let n = std::io::Read::read(&mut std::fs::File::open(&f1).unwrap(), &mut buf).unwrap();
            buf.truncate(n);
            buf
        });
        started.recv_timeout(support::WATCHDOG).unwrap();
        std::thread::sleep(Duration::from_millis(20)); // let it reach the open (not required)
        reader.abort();
        std::fs::write(&fifo, b"late").unwrap();
        let again = rt.blocking(|| std::fs::read_to_string("Cargo.toml").map(|s| s.len()));
        assert!(join(again).unwrap().unwrap() > 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A runtime shut down while a coroutine waits on a file call leaves that coroutine
/// suspended forever (its memory leaked, never reused); nothing crashes when the call ends
/// afterwards.
#[test]
fn shutdown_during_a_file_call() {
    for io_uring in [true, false] {
        let rt: Runtime = Builder::new().workers(1).io_uring(io_uring).build().unwrap();
        let dir = scratch("shutdown");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        let f1 = fifo.clone();
        let (started_tx, started) = std::sync::mpsc::channel();
        let _reader = rt.blocking(move || {
            started_tx.send(()).unwrap();
            std::fs::read(&f1).map(|v| v.len())
        });
        started.recv_timeout(support::WATCHDOG).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        rt.shutdown_timeout(Duration::from_millis(50));
        // The reader may still be in `open`: give it its writer so the kernel (or the
        // helper) completes the call into the abandoned coroutine's memory.
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
        if fd >= 0 {
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
        }
        std::thread::sleep(Duration::from_millis(20));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
