//! `echo`: an echo server of blocking `std::net` code on openco (one `openco::blocking` job
//! per connection, as in `examples/echo_server.rs`) against a tokio async echo server, under
//! the same tokio load client. Server and client are separate child processes, fresh for
//! every measurement; the server's threads, RSS and CPU time are its own.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    fmt_stat, raise_fd_limit, ratio, run_child, serve_until_stdin_closes, threads_added, Sample, Server,
};

const IMPLS: [&str; 2] = ["openco", "tokio"];
const MESSAGE_LEN: usize = 64;

// ---------------------------------------------------------------------------------------
// Parent.

pub fn scenario(runs: usize, conns: usize, secs: f64) {
    println!(
        "\necho: {conns} connections, each sending {MESSAGE_LEN} bytes and awaiting the echo in a loop, {secs} s; \
         tokio client in its own process"
    );
    let mut all: Vec<(&str, Vec<Sample>)> = IMPLS.iter().map(|&i| (i, Vec::new())).collect();
    for _ in 0..runs {
        for (imp, samples) in &mut all {
            match measure(imp, conns, secs) {
                Ok(s) => samples.push(s),
                Err(e) => println!("  !! echo/{imp}: {e}"),
            }
        }
    }
    println!(
        "  {:<8} {:>20} {:>16} {:>16} {:>16} {:>14} {:>20} {:>16}",
        "server",
        "k requests/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "threads added",
        "server CPU us/req",
        "server RSS +MiB"
    );
    let krps = |s: &Sample| s["requests"] / (s["wall_ns"] / 1e9) / 1e3;
    for (imp, s) in &all {
        println!(
            "  {:<8} {:>20} {:>16} {:>16} {:>16} {:>14} {:>20} {:>16}",
            imp,
            fmt_stat(s, krps, 1),
            fmt_stat(s, |s| s["p50_us"] / 1e3, 1),
            fmt_stat(s, |s| s["p99_us"] / 1e3, 1),
            fmt_stat(s, |s| s["p999_us"] / 1e3, 1),
            fmt_stat(s, threads_added, 0),
            fmt_stat(s, |s| s["cpu_us"] / s["requests"], 2),
            fmt_stat(s, |s| (s["hwm_kib"] - s["rss_before_kib"]) / 1024.0, 1),
        );
    }
    println!("  requests/s, openco / tokio: {}", ratio(&all[0].1, &all[1].1, krps));
    println!("  (both processes share the machine's CPUs; server CPU includes accepting the connections)");
}

/// One run: a fresh server child, a fresh client child against it.
fn measure(imp: &str, conns: usize, secs: f64) -> Result<Sample, String> {
    let server = Server::start(&["echo-server".into(), imp.into()])?;
    let client = run_child(&["echo-client".into(), server.addr.clone(), conns.to_string(), secs.to_string()]);
    let mut sample = server.stop()?;
    sample.extend(client?);
    Ok(sample)
}

// ---------------------------------------------------------------------------------------
// Children.

/// `echo-server openco|tokio`: serves until stdin closes.
pub fn server_child(imp: &str) {
    raise_fd_limit();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    serve_until_stdin_closes(listener.local_addr().expect("local_addr"));
    match imp {
        "openco" => openco::blocking(move || openco_serve(listener)).join().expect("openco accept loop"),
        "tokio" => {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(tokio_serve(listener));
        }
        other => panic!("unknown echo server {other}"),
    }
}

/// The example's server: blocking code, one coroutine per connection.
fn openco_serve(listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => drop(openco::blocking(move || openco_echo(stream))),
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn openco_echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

/// The same server as async tokio code, one task per connection.
async fn tokio_serve(listener: TcpListener) {
    listener.set_nonblocking(true).expect("set_nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                tokio::spawn(async move {
                    stream.set_nodelay(true)?;
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = stream.read(&mut buf).await?;
                        if n == 0 {
                            return io::Result::Ok(());
                        }
                        stream.write_all(&buf[..n]).await?;
                    }
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// `echo-client addr conns secs`: the load client; prints throughput and latency percentiles.
pub fn client_child(args: &[String]) {
    let [addr, conns, secs] = args else { panic!("echo-client addr conns secs") };
    let addr: SocketAddr = addr.parse().expect("addr");
    let conns: usize = conns.parse().expect("conns");
    let duration = Duration::from_secs_f64(secs.parse().expect("secs"));
    raise_fd_limit();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (wall, mut latencies) = rt.block_on(load(addr, conns, duration)).expect("load");
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64 / 1e3;
    println!(
        "RESULT requests={} wall_ns={} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
        latencies.len(),
        wall.as_nanos(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
}

/// Connects `conns` times (one at a time, so that no listen backlog overflows), then runs
/// round trips on every connection until `duration` has passed; returns the time that took
/// and every request's latency in nanoseconds.
async fn load(addr: SocketAddr, conns: usize, duration: Duration) -> io::Result<(Duration, Vec<u64>)> {
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let message = [b'x'; MESSAGE_LEN];
                let mut reply = [0u8; MESSAGE_LEN];
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    stream.write_all(&message).await?;
                    stream.read_exact(&mut reply).await?;
                    latencies.push(sent.elapsed().as_nanos() as u64);
                    if reply != message {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong echo"));
                    }
                }
                io::Result::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((start.elapsed(), latencies))
}
