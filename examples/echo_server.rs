//! An echo server written as plain blocking `std::net` code, run on openco's coroutines, and
//! a load client to measure it.
//!
//! The server is the thread-per-connection design: an `accept` loop, and for every
//! connection a job that reads and writes back until the client hangs up. Each job is an
//! `openco::blocking` coroutine instead of a thread. openco hooks `accept` and the socket
//! calls behind `read` and `write`: when one would block, it suspends the coroutine and its
//! worker thread serves other connections meanwhile. A thousand connections take openco's
//! workers (one per CPU), not a thousand threads; the code itself is ordinary blocking Rust.
//!
//! ```text
//! cargo run --release --example echo_server                                   # both, in one process, 5 s
//! cargo run --release --example echo_server -- server 127.0.0.1:7000          # the server alone
//! cargo run --release --example echo_server -- client 127.0.0.1:7000 --conns 1000 --secs 5
//! ```
//!
//! The client is a tokio async client: it opens `--conns` connections (default 1000), and on
//! each sends a 64-byte message, waits for the echo, checks it and repeats, for `--secs`
//! seconds (default 5). It prints the requests per second and the latency percentiles of
//! one request (send to echo received). With no arguments the server and the client run in
//! one process on a free port, and the process's OS thread count is printed too. Linux only.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use openco_workspace::proc_stats::status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESSAGE_LEN: usize = 64;
const USAGE: &str = "usage: echo_server [server ADDR | client ADDR [--conns N] [--secs S]]";

// ---------------------------------------------------------------------------------------
// The server: blocking std::net code, one openco job per connection.

/// Accepts connections forever, each served by its own coroutine.
fn serve(listener: TcpListener) {
    loop {
        match listener.accept() {
            // Dropping the handle detaches the job: it runs until the client hangs up.
            Ok((stream, _peer)) => drop(openco::blocking(move || echo(stream))),
            // Out of file descriptors, or a connection reset before it was accepted: say so
            // and pause (the sleep too suspends only this coroutine).
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Echoes everything the client sends until it closes the connection.
fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(()); // the client closed the connection
        }
        stream.write_all(&buf[..n])?;
    }
}

// ---------------------------------------------------------------------------------------
// The load client: tokio, one task per connection.

/// What a load run measured.
struct Report {
    elapsed: Duration,
    /// One entry per request, sorted.
    latencies: Vec<Duration>,
}

impl Report {
    fn requests_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency below which a fraction `p` of the requests fall.
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len().saturating_sub(1));
        self.latencies.get(i).copied().unwrap_or_default()
    }

    fn print(&self, conns: usize) {
        println!(
            "{} requests on {conns} connections in {:.2} s: {:.0} requests/s",
            self.latencies.len(),
            self.elapsed.as_secs_f64(),
            self.requests_per_sec()
        );
        println!(
            "latency: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
            self.percentile(0.50),
            self.percentile(0.99),
            self.latencies.last().copied().unwrap_or_default()
        );
    }
}

/// Opens `conns` connections to `addr`, then runs request/echo round trips on all of them
/// for `duration`.
async fn load(addr: SocketAddr, conns: usize, duration: Duration) -> io::Result<Report> {
    // Connect one at a time, so that a small listen backlog (std's is 128) is never full.
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = streams.into_iter().map(|stream| tokio::spawn(round_trips(stream, deadline))).collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Report { elapsed, latencies })
}

/// Sends a message, waits for its echo, repeats until `deadline`; returns the latencies.
async fn round_trips(mut stream: tokio::net::TcpStream, deadline: Instant) -> io::Result<Vec<Duration>> {
    let message = [b'x'; MESSAGE_LEN];
    let mut reply = [0u8; MESSAGE_LEN];
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        stream.write_all(&message).await?;
        stream.read_exact(&mut reply).await?;
        latencies.push(sent.elapsed());
        if reply != message {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the echo differs from the message"));
        }
    }
    Ok(latencies)
}

// ---------------------------------------------------------------------------------------
// Command line.

fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}

fn run(args: Vec<String>) -> io::Result<()> {
    match args.first().map(String::as_str) {
        Some("server") => {
            let listener = TcpListener::bind(parse_addr(args.get(1))?)?;
            println!("echo server listening on {}", listener.local_addr()?);
            raise_fd_limit();
            openco::blocking(move || serve(listener)).join().map_err(io::Error::from)
        }
        Some("client") => {
            let addr = parse_addr(args.get(1))?;
            let (conns, secs) = parse_load_options(&args[2..])?;
            raise_fd_limit();
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(load(addr, conns, Duration::from_secs_f64(secs)))?;
            report.print(conns);
            Ok(())
        }
        None => {
            raise_fd_limit();
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let addr = listener.local_addr()?;
            let (conns, secs) = (1000, 5.0);
            println!("echo server on openco at {addr}; tokio client, {conns} connections, {secs} s\n");
            drop(openco::blocking(move || serve(listener)));
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(load(addr, conns, Duration::from_secs_f64(secs)))?;
            report.print(conns);
            println!(
                "\n{} OS threads in this process: main, the client's tokio workers, openco's workers\n\
                 (and any helper threads); the server's {conns} connections are coroutines, not threads.",
                status("Threads")
            );
            Ok(())
        }
        Some(_) => Err(usage_error()),
    }
}

fn parse_addr(arg: Option<&String>) -> io::Result<SocketAddr> {
    arg.and_then(|a| a.parse().ok()).ok_or_else(usage_error)
}

/// `--conns N` and `--secs S`, in any order.
fn parse_load_options(args: &[String]) -> io::Result<(usize, f64)> {
    let (mut conns, mut secs) = (1000, 5.0);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(usage_error)?;
        match flag.as_str() {
            "--conns" => conns = value.parse().ok().filter(|&n| n > 0).ok_or_else(usage_error)?,
            "--secs" => secs = value.parse().ok().filter(|&s: &f64| s > 0.0).ok_or_else(usage_error)?,
            _ => return Err(usage_error()),
        }
    }
    Ok((conns, secs))
}

fn usage_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, USAGE)
}

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor
/// (two when the client and the server share the process), and the usual soft limit is 1024.
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 && limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}
