//! `reqresp`: many blocking request/response jobs at once. Each job connects with
//! `std::net::TcpStream`, writes a request, reads the reply until the server closes, and
//! drops the stream; all are submitted at once through openco, `spawn_blocking` or
//! `blocking::unblock` from a tokio task, then awaited. The server is a tokio server in a
//! child process of its own (listen backlog 4096), fresh for every measurement, so the jobs'
//! process holds only the client sockets.
//!
//! Measured twice: with the server replying at once (the cost of a job: every job is
//! CPU work, on both sides), and with the server replying after a delay (a slow backend:
//! the jobs spend their time waiting, and how many can wait at once is what counts).

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::{status, Sampler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{fmt_stat, raise_fd_limit, ratio, run_child, serve_until_stdin_closes, sysctl, threads_added};
use crate::harness::{Sample, Server};

const IMPLS: [&str; 3] = ["openco", "spawn_blocking", "unblock"];
const REQUEST_LEN: usize = 64;
const REPLY_LEN: usize = 64;
/// The listen backlog asked for; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

// ---------------------------------------------------------------------------------------
// Parent.

pub fn scenario(runs: usize, jobs: usize, delay_ms: u64) {
    for delay_ms in [0, delay_ms] {
        one_scenario(runs, jobs, delay_ms);
    }
}

fn one_scenario(runs: usize, jobs: usize, delay_ms: u64) {
    println!(
        "\nreqresp: {jobs} jobs at once, each: std::net connect, write {REQUEST_LEN} B, read the {REPLY_LEN} B reply \
         until EOF, drop; tokio server in its own process, replying {}",
        if delay_ms == 0 { "at once".to_string() } else { format!("after {delay_ms} ms") }
    );
    println!(
        "  listen backlog {BACKLOG}, capped by net.core.somaxconn = {}; net.ipv4.tcp_max_syn_backlog = {}",
        sysctl("net/core/somaxconn"),
        sysctl("net/ipv4/tcp_max_syn_backlog")
    );
    let mut all: Vec<(&str, Vec<Sample>)> = IMPLS.iter().map(|&i| (i, Vec::new())).collect();
    for _ in 0..runs {
        for (imp, samples) in &mut all {
            match measure(imp, jobs, delay_ms) {
                Ok(s) => samples.push(s),
                Err(e) => println!("  !! reqresp/{imp}: {e}"),
            }
        }
    }
    println!(
        "  {:<15} {:>20} {:>20} {:>14} {:>18} {:>8} {:>14}",
        "", "wall ms", "k jobs/s", "threads added", "max open at once", "errors", "openco faster"
    );
    let wall_ms = |s: &Sample| s["wall_ns"] / 1e6;
    for (imp, s) in &all {
        let speedup = if *imp == "openco" { "-".into() } else { ratio(s, &all[0].1, wall_ms) };
        println!(
            "  {:<15} {:>20} {:>20} {:>14} {:>18} {:>8} {:>14}",
            imp,
            fmt_stat(s, wall_ms, 0),
            fmt_stat(s, |s| jobs as f64 / (s["wall_ns"] / 1e9) / 1e3, 1),
            fmt_stat(s, threads_added, 0),
            fmt_stat(s, |s| s["max_open"], 0),
            fmt_stat(s, |s| s["errors"], 0),
            speedup
        );
    }
}

fn measure(imp: &str, jobs: usize, delay_ms: u64) -> Result<Sample, String> {
    let server = Server::start(&["rr-server".into(), delay_ms.to_string()])?;
    let sample = run_child(&["reqresp".into(), imp.into(), server.addr.clone(), jobs.to_string()]);
    server.stop()?;
    sample
}

// ---------------------------------------------------------------------------------------
// Children.

/// `rr-server delay_ms`: per connection, reads a request, waits `delay_ms`, writes the
/// reply, closes (so the server side, not the jobs' ephemeral ports, holds the TIME_WAIT
/// state).
pub fn server_child(delay_ms: &str) {
    let delay = Duration::from_millis(delay_ms.parse().expect("delay_ms"));
    raise_fd_limit();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let listener = socket.listen(BACKLOG).expect("listen");
        serve_until_stdin_closes(listener.local_addr().expect("local_addr"));
        loop {
            match listener.accept().await {
                Ok((mut stream, _)) => {
                    tokio::spawn(async move {
                        let mut request = [0u8; REQUEST_LEN];
                        stream.read_exact(&mut request).await?;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        stream.write_all(&[b'r'; REPLY_LEN]).await?;
                        io::Result::Ok(())
                    });
                }
                Err(e) => {
                    // Out of descriptors: back off a little rather than spin.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
}

static OPEN: AtomicUsize = AtomicUsize::new(0);
static MAX_OPEN: AtomicUsize = AtomicUsize::new(0);

/// One job: a whole request/response exchange on a fresh connection.
fn request(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    MAX_OPEN.fetch_max(OPEN.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
    let result = (|| {
        stream.write_all(&[b'q'; REQUEST_LEN])?;
        let mut reply = Vec::with_capacity(REPLY_LEN);
        stream.read_to_end(&mut reply)?;
        if reply.len() != REPLY_LEN {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} B reply", reply.len())));
        }
        Ok(())
    })();
    OPEN.fetch_sub(1, Ordering::Relaxed);
    result
}

/// A way to run a blocking closure and await its result.
fn spawn(imp: &str, addr: SocketAddr) -> std::pin::Pin<Box<dyn Future<Output = io::Result<()>> + Send>> {
    match imp {
        "openco" => {
            let handle = openco::blocking(move || request(addr));
            Box::pin(async move { handle.await.expect("openco job failed") })
        }
        "spawn_blocking" => {
            let handle = tokio::task::spawn_blocking(move || request(addr));
            Box::pin(async move { handle.await.expect("spawn_blocking job failed") })
        }
        "unblock" => Box::pin(blocking::unblock(move || request(addr))),
        other => panic!("unknown implementation {other}"),
    }
}

/// `reqresp impl addr jobs`: submits all jobs from a tokio task, awaits them all.
pub fn jobs_child(args: &[String]) {
    let [imp, addr, jobs] = args else { panic!("reqresp impl addr jobs") };
    let addr: SocketAddr = addr.parse().expect("addr");
    let jobs: usize = jobs.parse().expect("jobs");
    let fd_limit = raise_fd_limit();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let sampler = Sampler::start();
    let threads_before = status("Threads");
    let start = Instant::now();
    let imp2 = imp.clone();
    let errors = rt
        .block_on(rt.spawn(async move {
            let handles: Vec<_> = (0..jobs).map(|_| spawn(&imp2, addr)).collect();
            let mut errors = Vec::new();
            for h in handles {
                if let Err(e) = h.await {
                    errors.push(e);
                }
            }
            errors
        }))
        .expect("batch task");
    let wall = start.elapsed();
    let peak_threads = sampler.stop().max(threads_before);
    if let Some(e) = errors.first() {
        eprintln!("reqresp/{imp}: {} jobs failed (fd limit {fd_limit}), the first with: {e}", errors.len());
    }
    println!(
        "RESULT wall_ns={} threads_before={threads_before} peak_threads={peak_threads} max_open={} errors={}",
        wall.as_nanos(),
        MAX_OPEN.load(Ordering::Relaxed),
        errors.len()
    );
}
