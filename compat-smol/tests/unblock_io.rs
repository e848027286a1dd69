//! `openco_smol::Unblock` over files, loopback TCP streams and probes: round trips, large
//! transfers through small buffers, `futures::io::copy` between two `Unblock`s, seeking, the
//! write buffer's bound, errors, panics, closing, and dropping mid-operation. Run on
//! `smol::block_on` and `async_std::task::block_on`.

mod support;

use std::fs::File;
use std::io::{self, Cursor, SeekFrom};
use std::net::TcpStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use openco_smol::{unblock, Unblock};
use support::{data, echo_server, Broken, Probe, TempDir};

const MIB: usize = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`LIMIT`] (a deadlock).
async fn within<F: std::future::Future>(fut: F) -> F::Output {
    async_std::future::timeout(LIMIT, fut).await.expect("timed out: a deadlock?")
}

/// Writes `bytes` to a new file through an `Unblock`, then reads them back through another.
async fn file_round_trip(dir: &TempDir, name: &str, cap: usize, bytes: &[u8]) {
    let path = dir.path(name);
    let file = unblock({
        let path = path.clone();
        move || File::create(path)
    })
    .await
    .unwrap();
    let mut w = Unblock::with_capacity(cap, file);
    // In uneven pieces, to cross the pipe's bound at odd places.
    for piece in bytes.chunks(cap / 3 + 17) {
        w.write_all(piece).await.unwrap();
    }
    w.close().await.unwrap();

    let mut r = Unblock::with_capacity(cap, File::open(&path).unwrap());
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), bytes.len());
    assert!(back == bytes, "{name}: contents differ");
    assert_eq!(std::fs::read(&path).unwrap().len(), bytes.len());
}

#[test]
fn file_write_then_read_on_smol() {
    let dir = TempDir::new("file-smol");
    smol::block_on(async {
        file_round_trip(&dir, "small", 8 * 1024, b"hello, file").await;
        file_round_trip(&dir, "default-cap", 8 * MIB, &data(100_000)).await;
        file_round_trip(&dir, "large", 64 * 1024, &data(4 * MIB + 123)).await;
    });
}

#[test]
fn file_write_then_read_on_async_std() {
    let dir = TempDir::new("file-async-std");
    async_std::task::block_on(async {
        file_round_trip(&dir, "large", 100_000, &data(3 * MIB + 7)).await;
    });
}

#[test]
fn copy_between_two_unblocks() {
    let dir = TempDir::new("copy");
    let bytes = data(3 * MIB + 5);
    std::fs::write(dir.path("src"), &bytes).unwrap();
    let copied = smol::block_on(async {
        let reader = Unblock::with_capacity(32 * 1024, File::open(dir.path("src")).unwrap());
        let mut writer = Unblock::with_capacity(48 * 1024, File::create(dir.path("dst")).unwrap());
        let n = futures::io::copy(reader, &mut writer).await.unwrap();
        writer.flush().await.unwrap();
        n
    });
    assert_eq!(copied, bytes.len() as u64);
    assert!(std::fs::read(dir.path("dst")).unwrap() == bytes);
}

#[test]
fn tcp_request_response_on_one_unblock() {
    // Reads are lazy: after each reply nothing reads ahead, so the next request goes out.
    let addr = echo_server();
    async_std::task::block_on(within(async {
        let mut s = Unblock::new(TcpStream::connect(addr).unwrap());
        for i in 0..20 {
            let msg = format!("request {i}\n");
            s.write_all(msg.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            let mut reply = vec![0; msg.len()];
            s.read_exact(&mut reply).await.unwrap();
            assert_eq!(reply, msg.as_bytes());
        }
        // Line-oriented, through AsyncBufRead.
        s.write_all(b"one\ntwo\n").await.unwrap();
        s.flush().await.unwrap();
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        assert_eq!(line, "one\n");
        line.clear();
        s.read_line(&mut line).await.unwrap();
        assert_eq!(line, "two\n");
    }));
}

#[test]
fn tcp_large_transfer_through_small_buffers() {
    // 4 MiB each way through 64 KiB buffers, writing and reading at once on two Unblocks of
    // one connection (the echo server's socket buffers cannot hold it all).
    let addr = echo_server();
    let bytes = data(4 * MIB);
    let stream = TcpStream::connect(addr).unwrap();
    let mut w = Unblock::with_capacity(64 * 1024, stream.try_clone().unwrap());
    let mut r = Unblock::with_capacity(64 * 1024, stream);
    let back = smol::block_on(within(async {
        let send = async {
            w.write_all(&bytes).await.unwrap();
            w.flush().await.unwrap();
            let stream = w.into_inner().await;
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        };
        let recv = async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            back
        };
        futures::join!(send, recv).1
    }));
    assert!(back == bytes);
}

#[test]
fn seek_counts_only_the_bytes_consumed() {
    let dir = TempDir::new("seek");
    std::fs::write(dir.path("f"), data(10_000)).unwrap();
    smol::block_on(async {
        let mut f = Unblock::with_capacity(4096, File::open(dir.path("f")).unwrap());
        assert_eq!(f.seek(SeekFrom::Start(100)).await.unwrap(), 100);
        let mut five = [0; 5];
        f.read_exact(&mut five).await.unwrap(); // reads up to 4096 bytes ahead
        assert_eq!(&five[..], &data(10_000)[100..105]);
        assert_eq!(f.stream_position().await.unwrap(), 105);
        assert_eq!(f.seek(SeekFrom::Current(-5)).await.unwrap(), 100);
        f.read_exact(&mut five).await.unwrap();
        assert_eq!(&five[..], &data(10_000)[100..105]);
        assert_eq!(f.seek(SeekFrom::End(-1)).await.unwrap(), 9_999);
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, &data(10_000)[9_999..]);
    });
}

#[test]
fn get_mut_with_mut_and_into_inner() {
    smol::block_on(async {
        let mut c = Unblock::new(Cursor::new(Vec::new()));
        c.write_all(b"abcdef").await.unwrap();
        // get_mut waits for the writer.
        assert_eq!(c.get_mut().await.get_ref(), b"abcdef");
        c.get_mut().await.set_position(2);
        let mut two = [0; 2];
        c.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"cd");
        let pos = c.with_mut(|c| c.position()).await;
        assert_eq!(pos, 6, "the read ahead moved the cursor to the end; with_mut drops it");
        let inner = c.into_inner().await;
        assert_eq!(inner.into_inner(), b"abcdef");
    });
}

#[test]
fn the_write_buffer_is_bounded() {
    const CAP: usize = 1000;
    let (open, gate) = mpsc::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let (entered_tx, entered) = mpsc::channel();
    let mut probe = Probe::new();
    probe.entered = Some(entered_tx);
    probe.gate = Some(gate);
    probe.dropped = Some(dropped_tx);
    let mut w = Unblock::with_capacity(CAP, probe);
    let bytes = data(10 * CAP);
    smol::block_on(async {
        // The first write is taken up to the capacity, at once.
        assert!(matches!(futures::poll!(w.write(&bytes)), Poll::Ready(Ok(CAP))));
        // Once the writer job holds those bytes (blocked at the gate), there is no room.
        assert_eq!(entered.recv_timeout(LIMIT).unwrap(), CAP);
        assert!(futures::poll!(w.write(&bytes[CAP..])).is_pending());
        for _ in 0..bytes.len() {
            open.send(()).unwrap(); // permits for every call the probe may get
        }
        w.write_all(&bytes[CAP..]).await.unwrap();
        w.close().await.unwrap();
    });
    let (got, calls) = dropped.recv_timeout(LIMIT).unwrap();
    assert!(got == bytes);
    assert!(calls.iter().all(|&n| n <= CAP), "a write call of more than the capacity: {calls:?}");
}

#[test]
fn flush_reports_a_write_error() {
    let mut probe = Probe::new();
    probe.fail_after = Some(5000);
    smol::block_on(async {
        let mut w = Unblock::with_capacity(1024, probe);
        let mut result = Ok(());
        for piece in data(20_000).chunks(700) {
            result = w.write_all(piece).await;
            if result.is_err() {
                break;
            }
        }
        let err = match result {
            Err(e) => e,
            Ok(()) => w.flush().await.unwrap_err(),
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // The value came back: the next writes go to it (and fail again, it is broken).
        let got = w.with_mut(|p| p.got.len()).await;
        assert!((5000..5000 + 1024).contains(&got), "{got}");
    });
}

#[test]
fn read_errors_and_panics_propagate() {
    let _serial = support::serial();
    smol::block_on(async {
        let mut r = Unblock::new(Broken { panic: false });
        let err = r.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    });
    let mut r = Unblock::new(Broken { panic: true });
    let caught = panic::catch_unwind(AssertUnwindSafe(|| smol::block_on(r.read(&mut [0; 8]))));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"expected panic: broken reader"));
    // The value went down with the job.
    let err = smol::block_on(r.read(&mut [0; 8])).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected);
}

#[test]
fn close_drops_the_value() {
    let (tx, dropped) = mpsc::channel();
    let mut probe = Probe::new();
    probe.dropped = Some(tx);
    smol::block_on(async {
        let mut w = Unblock::new(probe);
        w.write_all(b"last words").await.unwrap();
        w.close().await.unwrap();
        let (got, _) = dropped.try_recv().expect("closed: the value was dropped");
        assert_eq!(got, b"last words");
        assert_eq!(w.write(b"more").await.unwrap_err().kind(), io::ErrorKind::NotConnected);
    });
}

#[test]
fn dropped_unflushed_the_bytes_are_still_written() {
    let (tx, dropped) = mpsc::channel();
    let mut probe = Probe::new();
    probe.dropped = Some(tx);
    let bytes = data(300_000);
    smol::block_on(async {
        let mut w = Unblock::with_capacity(64 * 1024, probe);
        w.write_all(&bytes).await.unwrap();
        drop(w); // no flush
    });
    let (got, _) = dropped.recv_timeout(LIMIT).unwrap();
    assert!(got == bytes);
}

#[test]
fn dropped_mid_read_the_stream_closes_when_the_read_ends() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut r = Unblock::new(client);
    smol::block_on(async {
        // Starts a read job that waits for data; then the read and the Unblock go away.
        assert!(futures::poll!(r.read(&mut [0; 16])).is_pending());
    });
    drop(r);
    // The detached job gets these bytes, ends, and drops (closes) the client stream.
    server.write_all(b"late").unwrap();
    server.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(server.read(&mut [0; 16]).unwrap(), 0, "the client side was closed");
}

#[test]
fn switching_from_reading_to_writing() {
    let dir = TempDir::new("switch");
    std::fs::write(dir.path("f"), b"0123456789").unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.path("f")).unwrap();
    smol::block_on(async {
        let mut f = Unblock::new(file);
        let mut two = [0; 2];
        f.read_exact(&mut two).await.unwrap();
        // The read ahead took the cursor to the end: seek to where we are, then write.
        f.seek(SeekFrom::Current(0)).await.unwrap();
        f.write_all(b"ab").await.unwrap();
        f.flush().await.unwrap();
    });
    assert_eq!(std::fs::read(dir.path("f")).unwrap(), b"01ab456789");
}

#[test]
fn unblock_is_send_unpin_and_debug() {
    fn check<T: Send + Sync + Unpin>(_: &T) {}
    let u = Unblock::new(Cursor::new(vec![1u8]));
    check(&u);
    assert!(format!("{u:?}").contains("Cursor"));
}
