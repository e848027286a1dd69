//! A coroutine whose fd is always ready does not starve the other coroutines of its worker:
//! after a budget of hooked calls that did not wait, it yields (as tokio's tasks do after
//! 128 operations).

#[macro_use]
mod support;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

rt_test! {
    fn always_ready_reader_yields(rt) {
        // The peer is gone: every read returns 0 at once, none ever waits. Without a budget
        // the reader would never suspend, and the other job, behind it on the same worker
        // when there is one, would only run after the reader gave up.
        let (mut reader, writer) = UnixStream::pair().unwrap();
        drop(writer);
        let other_ran = Arc::new(AtomicBool::new(false));
        let reads = {
            let other_ran = other_ran.clone();
            rt.blocking(move || {
                for _ in 0..1_000_000 {
                    if other_ran.load(Ordering::SeqCst) {
                        return true;
                    }
                    assert_eq!(reader.read(&mut [0u8; 16]).unwrap(), 0);
                }
                false
            })
        };
        let other = rt.blocking(move || other_ran.store(true, Ordering::SeqCst));
        support::join(other).unwrap();
        assert!(support::join(reads).unwrap(), "the reader never let the other job run");
    }
}

rt_test! {
    /// The same with reads of a file the page cache holds, which are served inline (no
    /// suspension); without the monitor, which would otherwise hand the other job to
    /// another thread.
    fn warm_file_reader_yields(workers: usize) {
        use std::os::unix::fs::FileExt;
        let rt = support::builder(workers).time_slice(None).build().unwrap();
        let rt = support::LeakOnPanic::new(rt);
        let path = std::env::temp_dir().join(format!("openco-fairness-{}-{workers}", std::process::id()));
        std::fs::write(&path, [7u8; 4096]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let other_ran = Arc::new(AtomicBool::new(false));
        let reads = {
            let other_ran = other_ran.clone();
            rt.blocking(move || {
                for _ in 0..10_000_000 {
                    if other_ran.load(Ordering::SeqCst) {
                        return true;
                    }
                    assert_eq!(file.read_at(&mut [0u8; 64], 0).unwrap(), 64);
                }
                false
            })
        };
        let other = rt.blocking(move || other_ran.store(true, Ordering::SeqCst));
        support::join(other).unwrap();
        assert!(support::join(reads).unwrap(), "the reader never let the other job run");
        std::fs::remove_file(&path).unwrap();
    }
}

rt_test! {
    /// And with `stat` by path, answered from the kernel's caches inline.
    fn stat_loop_yields(workers: usize) {
        let rt = support::builder(workers).time_slice(None).build().unwrap();
        let rt = support::LeakOnPanic::new(rt);
        let other_ran = Arc::new(AtomicBool::new(false));
        let stats = {
            let other_ran = other_ran.clone();
            rt.blocking(move || {
                for _ in 0..10_000_000 {
                    if other_ran.load(Ordering::SeqCst) {
                        return true;
                    }
                    assert!(std::fs::metadata("Cargo.toml").unwrap().is_file());
                }
                false
            })
        };
        let other = rt.blocking(move || other_ran.store(true, Ordering::SeqCst));
        support::join(other).unwrap();
        assert!(support::join(stats).unwrap(), "the stat loop never let the other job run");
    }
}
