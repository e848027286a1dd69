//! tokio futures awaited from jobs with `openco_tokio::block_on`: timers, `tokio::net`,
//! `tokio::sync` channels; and many jobs on one worker waiting on tokio at the same time.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openco_tokio::{block_on, spawn_blocking, spawn_blocking_on};
use support::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tokio echo server on loopback, run by the calling runtime.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// From inside a job: connects with `tokio::net`, sends `msg`, reads it back.
fn round_trip(addr: SocketAddr, msg: Vec<u8>) -> Vec<u8> {
    block_on(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&msg).await.unwrap();
        let mut back = vec![0; msg.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    })
}

async fn timer() {
    let elapsed = within(spawn_blocking(|| {
        let start = Instant::now();
        block_on(tokio::time::sleep(Duration::from_millis(30)));
        start.elapsed()
    }))
    .await
    .unwrap();
    assert!(elapsed >= Duration::from_millis(30), "{elapsed:?}");
    // A tokio timeout around a future that never completes.
    let timed_out = within(spawn_blocking(|| {
        block_on(tokio::time::timeout(Duration::from_millis(5), std::future::pending::<()>())).is_err()
    }))
    .await
    .unwrap();
    assert!(timed_out);
}
flavors!(tokio_time, timer);

async fn net() {
    let addr = echo_server().await;
    let msg: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let back = within(spawn_blocking({
        let msg = msg.clone();
        move || round_trip(addr, msg)
    }))
    .await
    .unwrap();
    assert!(back == msg);

    // The other way round: a tokio listener accepting inside a job, a plain tokio client.
    let accepted = within(spawn_blocking(|| {
        block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(b"hi").await.unwrap();
            });
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.unwrap();
            buf
        })
    }))
    .await
    .unwrap();
    assert_eq!(accepted, b"hi");
}
flavors!(tokio_net, net);

async fn channels() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u32>();
    // The job receives from an async producer and answers on a oneshot.
    let job = spawn_blocking(move || {
        let mut sum = 0;
        while let Some(v) = block_on(rx.recv()) {
            sum += v;
        }
        done_tx.send(sum).unwrap();
    });
    for i in 1..=100 {
        within(tx.send(i)).await.unwrap();
    }
    drop(tx);
    assert_eq!(within(done_rx).await.unwrap(), 5050);
    within(job).await.unwrap();

    // And the other way: jobs send into a bounded channel the async side drains.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
    let producers: Vec<_> = (0..10)
        .map(|i| {
            let tx = tx.clone();
            spawn_blocking(move || block_on(tx.send(i)).unwrap())
        })
        .collect();
    drop(tx);
    let mut got = Vec::new();
    while let Some(v) = within(rx.recv()).await {
        got.push(v);
    }
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    for p in producers {
        within(p).await.unwrap();
    }
}
flavors!(tokio_sync_mpsc_and_oneshot, channels);

/// The recommended way under concurrency: 100 jobs on a one-worker openco runtime, each
/// waiting on tokio through `block_on`. They meet at a barrier that only opens when all 100
/// wait at once, which is impossible unless `block_on` suspends the coroutine rather than the
/// worker thread; then each sleeps on a tokio timer and does a TCP round trip.
async fn hundred_on_one_worker() {
    const JOBS: usize = 100;
    let worker = support::openco_runtime(1);
    let addr = echo_server().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(JOBS));
    let jobs: Vec<_> = (0..JOBS)
        .map(|i| {
            let barrier = barrier.clone();
            spawn_blocking_on(worker.handle(), move || {
                block_on(barrier.wait());
                block_on(tokio::time::sleep(Duration::from_millis(20)));
                let msg = format!("job {i}").into_bytes();
                assert_eq!(round_trip(addr, msg.clone()), msg);
                i
            })
        })
        .collect();
    let mut sum = 0;
    for job in jobs {
        sum += within(job).await.unwrap();
    }
    assert_eq!(sum, JOBS * (JOBS - 1) / 2);
}
flavors!(hundred_jobs_on_one_worker_wait_on_tokio_at_once, hundred_on_one_worker);
