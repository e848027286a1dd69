//! Helpers shared by the test files: unique temporary paths, a loopback echo server on a
//! std thread, test data, and blocking `Read`/`Write` values that count, gate or fail.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// A fresh directory under the system's temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("openco-smol-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes of a pattern that does not repeat with any power-of-two period.
pub fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251 % 7) as u8).collect()
}

/// A std echo server on loopback: one thread per connection, echoing until EOF.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = io::copy(&mut reader, &mut stream);
            });
        }
    });
    addr
}

/// A writer that tells `entered` of each call, records the sizes of the `write` calls it gets and what they carried, waits
/// for a permit from `gate` before each call (if gated), fails once `fail_after` bytes were
/// written, and reports what it holds on `dropped` when dropped.
pub struct Probe {
    /// Told the size of each `write` call as it begins, before the gate.
    pub entered: Option<mpsc::Sender<usize>>,
    pub gate: Option<mpsc::Receiver<()>>,
    pub fail_after: Option<usize>,
    pub got: Vec<u8>,
    pub calls: Vec<usize>,
    pub flushes: usize,
    pub dropped: Option<mpsc::Sender<(Vec<u8>, Vec<usize>)>>,
}

impl Probe {
    pub fn new() -> Probe {
        Probe {
            entered: None,
            gate: None,
            fail_after: None,
            got: Vec::new(),
            calls: Vec::new(),
            flushes: 0,
            dropped: None,
        }
    }
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(entered) = &self.entered {
            let _ = entered.send(buf.len());
        }
        if let Some(gate) = &self.gate {
            gate.recv().map_err(|_| io::Error::other("gate closed"))?;
        }
        if self.fail_after.is_some_and(|n| self.got.len() >= n) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "expected failure: probe"));
        }
        self.calls.push(buf.len());
        self.got.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(tx) = self.dropped.take() {
            let _ = tx.send((std::mem::take(&mut self.got), std::mem::take(&mut self.calls)));
        }
    }
}

/// A reader that fails, or panics, on its first call.
pub struct Broken {
    pub panic: bool,
}

impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        if self.panic {
            panic!("expected panic: broken reader");
        }
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "expected failure: broken reader"))
    }
}

/// Held by the tests whose jobs panic, so that no two of them run at once: two jobs of one
/// openco worker panicking at about the same time can abort the process ("thread panicked
/// while processing panic") since the monitor's hand-off (openco commit ab94364); that is the
/// runtime's to fix and test, not these tests'.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
