//! openco's hooks and tokio in one process: a tokio TCP echo server (tokio's own threads and
//! IO, outside any coroutine) serves 100 clients that are coroutines of a ONE-worker openco
//! runtime using plain `std::net::TcpStream`, plus one tokio client. The server answers
//! nobody until all 101 have connected and sent their line, so the 100 coroutines must all be
//! waiting in `read` at once on one worker thread: without working hooks the first one blocks
//! the worker and the watchdog fails the test.
//!
//! Name resolution (`ToSocketAddrs`, i.e. `getaddrinfo`) inside a coroutine gives what it
//! gives outside, and a resolving coroutine leaves its worker to a sibling.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use support::{join, on_thread, rt_leak_on_panic, wait_then_wake};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const CLIENTS: usize = 100;

/// Starts the echo server on `tokio`: each connection's first line is echoed once `barrier`
/// has seen every client.
fn echo_server(tokio: &tokio::runtime::Runtime, barrier: Arc<tokio::sync::Barrier>) -> SocketAddr {
    let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                assert!(!openco::in_coroutine(), "tokio's tasks run outside coroutines");
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                barrier.wait().await;
                stream.get_mut().write_all(line.as_bytes()).await.unwrap();
            });
        }
    });
    addr
}

#[test]
fn coroutine_clients_of_a_tokio_server() {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = echo_server(&tokio, Arc::new(tokio::sync::Barrier::new(CLIENTS + 1)));
    let rt = rt_leak_on_panic(1);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            rt.blocking(move || {
                assert!(openco::in_coroutine());
                let mut stream = TcpStream::connect(addr).unwrap();
                let line = format!("coroutine client {i}\n");
                stream.write_all(line.as_bytes()).unwrap();
                let mut back = vec![0u8; line.len()];
                stream.read_exact(&mut back).unwrap();
                assert_eq!(stream.read(&mut [0u8; 8]).unwrap(), 0, "EOF after the echo");
                String::from_utf8(back).unwrap() == line
            })
        })
        .collect();
    let tokio_client = tokio.spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"tokio client\n").await.unwrap();
        let mut back = String::new();
        stream.read_to_string(&mut back).await.unwrap();
        back
    });
    for (i, client) in clients.into_iter().enumerate() {
        assert!(join(client).unwrap(), "client {i} got someone else's line");
    }
    let back = tokio.block_on(async { tokio::time::timeout(support::WATCHDOG, tokio_client).await });
    assert_eq!(back.expect("the tokio client hangs").unwrap(), "tokio client\n");
}

fn resolve(target: (&'static str, u16)) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = target.to_socket_addrs().map_err(|e| format!("{:?}", e.kind()))?.collect();
    addrs.sort();
    Ok(addrs)
}

rt_test! {
    /// `("localhost", 80)` and `("127.0.0.1", 80)` resolve to the same addresses inside a
    /// coroutine as on a plain thread.
    fn resolution_matches_outside(workers: usize) {
        let rt = rt_leak_on_panic(workers);
        for target in [("localhost", 80), ("127.0.0.1", 80)] {
            let outside = on_thread(move || resolve(target));
            assert!(outside.as_ref().is_ok_and(|a| !a.is_empty()), "{target:?} does not resolve here: {outside:?}");
            let inside = join(rt.blocking(move || resolve(target))).unwrap();
            assert_eq!(inside, outside, "{target:?}");
        }
    }
}

/// On ONE worker, a sibling submitted once the resolver runs gets the worker while a
/// resolution is under way (the resolver tries up to 100 times; the first normally suffices).
#[test]
fn a_resolving_coroutine_lets_a_sibling_run() {
    let rt = rt_leak_on_panic(1);
    let b_ran = Arc::new(AtomicBool::new(false));
    let seen = b_ran.clone();
    let (ran_meanwhile, ()) = wait_then_wake(
        &rt,
        move || {
            (0..100).any(|_| {
                assert!(resolve(("localhost", 80)).is_ok());
                seen.load(SeqCst)
            })
        },
        move || b_ran.store(true, SeqCst),
    );
    assert!(ran_meanwhile, "the sibling never ran while the resolver resolved");
}
