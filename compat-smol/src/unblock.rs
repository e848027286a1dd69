//! `Unblock<T>`: a blocking I/O value behind the async I/O traits.
//!
//! The value is either here (`Idle`) or inside the one job that works on it; the job hands it
//! back through its `JoinHandle` when it ends. States and who owns the value:
//! ```text
//!   Idle(Some(io)) --poll_read--> Reading(job: io, read buffer)  --done--> Idle (+ bytes read)
//!                  --poll_write-> Writing(pipe, job: io)          --pipe drained, io flushed--> Idle
//!                  --poll_seek--> Seeking(pos, job: io)           --done--> Idle
//!                  --with_mut---> WithMut(job: io)                --done--> Idle
//!   Idle(None): closed by poll_close, or lost with a job that panicked or was cancelled.
//! ```
//! Invariants:
//! 1. At most one job holds the value; a new one starts only from `Idle(Some(_))`. Any
//!    operation finds the state in another mode waits for that job first (`poll_idle`).
//! 2. Read-ahead (`read_buf[read_pos..read_end]`) holds at most `cap` bytes: one `read` call's
//!    worth. It is dropped when the value is used otherwise (write, seek, `get_mut`,
//!    `with_mut`, `into_inner`); a seek relative to the current position subtracts it first.
//! 3. The write pipe holds at most `cap` bytes between the bytes waiting (`buf`) and those
//!    the job is writing (`in_flight`), and each of its two buffers has at most `cap` bytes
//!    of capacity.
//! 4. Dropping the `Unblock` in any state detaches the job: it finishes its call (a writer
//!    drains and flushes the pipe) and the value is dropped on its coroutine.
//!
//! The writer job protocol, under the pipe's lock:
//! 1. set `in_flight = 0` and take the waker of a `poll_write` waiting for room;
//! 2. if `buf` is empty: set `done`, flush the value, end (the async side, seeing `done`,
//!    collects the value and starts a new job for later writes);
//! 3. else swap `buf` with its own (empty) chunk, set `in_flight`, unlock, wake the waker,
//!    `write_all` the chunk, and go to 1. On an error: set `done`, drop the waiting bytes,
//!    flush, end with the error, which the next operation reports.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::mem;
use std::panic;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use futures_io::{AsyncBufRead, AsyncRead, AsyncSeek, AsyncWrite};
use openco::{JoinError, JoinHandle};

/// The default capacity of the read buffer and of the write pipe, as `blocking`'s.
const DEFAULT_CAPACITY: usize = 8 * 1024 * 1024;

/// Runs blocking I/O on openco coroutines behind `futures_io`'s async traits; a drop-in for
/// `blocking::Unblock`.
///
/// `Unblock<T>` implements [`AsyncRead`] and [`AsyncBufRead`] if `T: Read`, [`AsyncWrite`] if
/// `T: Write`, and [`AsyncSeek`] if `T: Seek` (each with `T: Send + 'static`), whatever
/// executor polls it (smol, async-std, tokio through `tokio-util`'s compat, `futures`).
///
/// - **Reading** runs one `read` of up to the capacity on a coroutine when the buffered bytes
///   are used up, and only then.
/// - **Writing** copies into a pipe of at most the capacity and returns; a job writes the pipe
///   out in batches. `flush` waits until everything written reached the value and the
///   value was flushed, and reports the first error met; `close` flushes, then drops the
///   value. Dropping the
///   `Unblock` unflushed still writes the buffered bytes in the background, but nobody learns
///   of an error then: flush first.
/// - **Switching** from reading to anything else drops the bytes read ahead (at most one
///   read's worth), as `blocking::Unblock` does; `SeekFrom::Current` subtracts them first so
///   that positions stay those of the bytes consumed.
/// - A **panic** in the value's methods is resumed in the task polling the `Unblock`, and the
///   value is lost: later reads and writes fail, [`get_mut`](Unblock::get_mut) and
///   [`into_inner`](Unblock::into_inner) panic.
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// use openco_smol::Unblock;
/// use std::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// std::thread::spawn(move || {
///     let (mut s, _) = listener.accept().unwrap();
///     std::io::copy(&mut s.try_clone().unwrap(), &mut s).unwrap(); // echo
/// });
/// smol::block_on(async {
///     let mut stream = Unblock::new(TcpStream::connect(addr)?);
///     stream.write_all(b"ping").await?;
///     stream.flush().await?;
///     let mut reply = [0; 4];
///     stream.read_exact(&mut reply).await?;
///     assert_eq!(&reply, b"ping");
///     std::io::Result::Ok(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Unblock<T> {
    cap: usize,
    state: State<T>,
    /// Bytes read ahead, `read_buf[read_pos..read_end]`; `read_buf` is empty while a read job
    /// has it, and allocated (`cap` bytes) on the first read.
    read_buf: Vec<u8>,
    read_pos: usize,
    read_end: usize,
}

enum State<T> {
    Idle(Option<T>),
    Reading(JoinHandle<(T, Vec<u8>, io::Result<usize>)>),
    Writing(Arc<Pipe>, JoinHandle<(T, io::Result<()>)>),
    /// The position asked for (before the read-ahead adjustment) and the job.
    Seeking(SeekFrom, JoinHandle<(T, io::Result<u64>)>),
    WithMut(JoinHandle<T>),
}

// The value is never pinned: it moves between the state and the jobs.
impl<T> Unpin for Unblock<T> {}

impl<T> Unblock<T> {
    /// Wraps a blocking I/O value, with the default capacity (8 MiB, as `blocking`'s).
    ///
    /// ```
    /// let stdout = openco_smol::Unblock::new(std::io::stdout());
    /// ```
    pub fn new(io: T) -> Unblock<T> {
        Unblock::with_capacity(DEFAULT_CAPACITY, io)
    }

    /// Wraps a blocking I/O value; `cap` bounds the bytes read at once (and buffered ahead)
    /// and the bytes written but not yet handed to the value.
    ///
    /// # Panics
    /// If `cap` is zero.
    ///
    /// ```
    /// let stdout = openco_smol::Unblock::with_capacity(64 * 1024, std::io::stdout());
    /// ```
    pub fn with_capacity(cap: usize, io: T) -> Unblock<T> {
        assert!(cap > 0, "openco_smol::Unblock: the capacity must be positive");
        Unblock { cap, state: State::Idle(Some(io)), read_buf: Vec::new(), read_pos: 0, read_end: 0 }
    }

    /// Waits for the running job, then gives a mutable reference to the value. Bytes read
    /// ahead are dropped; an error of earlier writes is ignored (flush first to see it).
    ///
    /// # Panics
    /// If the value was closed or lost (see the type docs).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("openco-smol-get-mut-{}", std::process::id()));
    /// smol::block_on(async {
    ///     let mut file = openco_smol::Unblock::new(std::fs::File::create(&path)?);
    ///     let len = file.get_mut().await.metadata()?.len();
    ///     assert_eq!(len, 0);
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn get_mut(&mut self) -> &mut T {
        let _ = poll_fn(|cx| self.poll_idle(cx)).await;
        self.drop_read_ahead();
        match &mut self.state {
            State::Idle(Some(io)) => io,
            _ => panic!("{}", GONE),
        }
    }

    /// Waits for the running job, then runs `op` on the value on a coroutine and returns its
    /// result. Bytes read ahead are dropped; an error of earlier writes is ignored.
    ///
    /// # Panics
    /// If the value was closed or lost, or if `op` panics (the value is then lost).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("openco-smol-with-mut-{}", std::process::id()));
    /// smol::block_on(async {
    ///     let mut file = openco_smol::Unblock::new(std::fs::File::create(&path)?);
    ///     let len = file.with_mut(|f| f.metadata().map(|m| m.len())).await?;
    ///     assert_eq!(len, 0);
    ///     std::io::Result::Ok(())
    /// })?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn with_mut<R, F>(&mut self, op: F) -> R
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
        T: Send + 'static,
    {
        let _ = poll_fn(|cx| self.poll_idle(cx)).await;
        self.drop_read_ahead();
        let mut io = self.take_io().unwrap_or_else(|e| panic!("{e}"));
        let out = Arc::new(Mutex::new(None));
        let slot = out.clone();
        self.state = State::WithMut(openco::blocking(move || {
            let value = op(&mut io);
            *lock(&slot) = Some(value);
            io
        }));
        if let Err(e) = poll_fn(|cx| self.poll_idle(cx)).await {
            panic!("{e}");
        }
        let value = lock(&out).take();
        value.expect("the job stored its value before handing the I/O value back")
    }

    /// Waits for the running job (a writer drains and flushes first), then returns the value.
    /// An error of earlier writes is ignored: flush first to see it.
    ///
    /// # Panics
    /// If the value was closed or lost (see the type docs).
    ///
    /// ```
    /// use futures::io::AsyncWriteExt;
    /// let mut out = openco_smol::Unblock::new(Vec::new());
    /// smol::block_on(async {
    ///     out.write_all(b"bytes").await.unwrap();
    ///     assert_eq!(out.into_inner().await, b"bytes");
    /// });
    /// ```
    pub async fn into_inner(mut self) -> T {
        let _ = poll_fn(|cx| self.poll_idle(cx)).await;
        self.take_io().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Brings the state back to `Idle`, waiting for the running job. The bytes of a read job
    /// still running (its reader went away) become read-ahead. Reports the error of a
    /// writer; a read or seek nobody waits for any more has its error dropped.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Idle(_) => return Poll::Ready(Ok(())),
                State::Reading(job) => {
                    let out = ready!(Pin::new(job).poll(cx));
                    let (io, buf, res) = self.finish(out)?;
                    self.state = State::Idle(Some(io));
                    self.read_done(buf, res.unwrap_or(0));
                }
                State::Writing(_, job) => {
                    let out = ready!(Pin::new(job).poll(cx));
                    let (io, res) = self.finish(out)?;
                    self.state = State::Idle(Some(io));
                    res?;
                }
                State::Seeking(_, job) => {
                    let out = ready!(Pin::new(job).poll(cx));
                    let (io, _) = self.finish(out)?;
                    self.state = State::Idle(Some(io));
                }
                State::WithMut(job) => {
                    let out = ready!(Pin::new(job).poll(cx));
                    let io = self.finish(out)?;
                    self.state = State::Idle(Some(io));
                }
            }
        }
    }

    /// The result of a job that ended: its output, or (the value being lost with the job)
    /// the job's panic resumed here, or an error if it was cancelled.
    fn finish<R>(&mut self, out: Result<R, JoinError>) -> io::Result<R> {
        out.map_err(|err| {
            self.state = State::Idle(None);
            if err.is_panic() {
                panic::resume_unwind(err.into_panic());
            }
            io::Error::other(format!("openco_smol::Unblock: the I/O job did not run to its end: {err}"))
        })
    }

    fn take_io(&mut self) -> io::Result<T> {
        match &mut self.state {
            State::Idle(io) => io.take().ok_or_else(gone),
            _ => unreachable!("take_io is called in the idle state only"),
        }
    }

    fn read_done(&mut self, buf: Vec<u8>, n: usize) {
        self.read_buf = buf;
        self.read_pos = 0;
        self.read_end = n;
    }

    fn drop_read_ahead(&mut self) {
        self.read_pos = 0;
        self.read_end = 0;
    }
}

const GONE: &str = "openco_smol::Unblock: the I/O value is gone (closed, or lost with a job that panicked)";

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, GONE)
}

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    // Nothing panics while the locks of this module are held.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Read + Send + 'static> Unblock<T> {
    /// Makes read-ahead available (or finds the end of the input: then none is).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.read_pos < self.read_end {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut self.state {
                State::Idle(None) => return Poll::Ready(Err(gone())),
                State::Idle(Some(_)) => {
                    let mut io = self.take_io()?;
                    let mut buf = mem::take(&mut self.read_buf);
                    if buf.len() != self.cap {
                        buf = vec![0; self.cap];
                    }
                    self.state = State::Reading(openco::blocking(move || {
                        let res = io.read(&mut buf);
                        (io, buf, res)
                    }));
                }
                State::Reading(job) => {
                    let out = ready!(Pin::new(job).poll(cx));
                    let (io, buf, res) = self.finish(out)?;
                    self.state = State::Idle(Some(io));
                    let n = res.as_ref().map_or(0, |&n| n);
                    self.read_done(buf, n);
                    return Poll::Ready(res.map(drop));
                }
                _ => ready!(self.poll_idle(cx))?,
            }
        }
    }
}

impl<T: Read + Send + 'static> AsyncRead for Unblock<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_fill(cx))?;
        let ahead = &this.read_buf[this.read_pos..this.read_end];
        let n = ahead.len().min(buf.len());
        buf[..n].copy_from_slice(&ahead[..n]);
        this.read_pos += n;
        Poll::Ready(Ok(n))
    }
}

impl<T: Read + Send + 'static> AsyncBufRead for Unblock<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        ready!(this.poll_fill(cx))?;
        Poll::Ready(Ok(&this.read_buf[this.read_pos..this.read_end]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.read_pos = (this.read_pos + amt).min(this.read_end);
    }
}

/// What `poll_write` and the writer job share.
struct Pipe {
    cap: usize,
    state: Mutex<PipeState>,
}

struct PipeState {
    /// Written by `poll_write`, not yet taken by the job.
    buf: Vec<u8>,
    /// Taken by the job and being written.
    in_flight: usize,
    /// The job left its loop: it takes nothing more and is about to hand the value back.
    done: bool,
    /// A `poll_write` waiting for room.
    waker: Option<Waker>,
}

impl Pipe {
    /// Accepts as much of `data` as fits; `None` if the job is done (collect it first).
    fn push(&self, data: &[u8], cx: &mut Context<'_>) -> Option<Poll<usize>> {
        let mut st = lock(&self.state);
        if st.done {
            return None;
        }
        let room = self.cap.saturating_sub(st.buf.len() + st.in_flight);
        if room == 0 {
            st.waker = Some(cx.waker().clone());
            return Some(Poll::Pending);
        }
        let n = room.min(data.len());
        let needed = st.buf.len() + n;
        if st.buf.capacity() < needed {
            // Grow geometrically, but never past the capacity (invariant 3).
            let target = needed.max(st.buf.capacity() * 2).min(self.cap);
            let len = st.buf.len();
            st.buf.reserve_exact(target - len);
        }
        st.buf.extend_from_slice(&data[..n]);
        Some(Poll::Ready(n))
    }

    /// The writer job (see the module docs for its protocol).
    fn drain<T: Write>(&self, mut io: T) -> (T, io::Result<()>) {
        let mut chunk = Vec::new();
        loop {
            let waker = {
                let mut st = lock(&self.state);
                st.in_flight = 0;
                let waker = st.waker.take();
                if st.buf.is_empty() {
                    st.done = true;
                    drop(st);
                    wake(waker);
                    let res = io.flush();
                    return (io, res);
                }
                mem::swap(&mut chunk, &mut st.buf);
                st.in_flight = chunk.len();
                waker
            };
            wake(waker);
            if let Err(err) = io.write_all(&chunk) {
                let waker = {
                    let mut st = lock(&self.state);
                    st.done = true;
                    st.in_flight = 0;
                    st.buf = Vec::new();
                    st.waker.take()
                };
                wake(waker);
                let _ = io.flush();
                return (io, Err(err));
            }
            chunk.clear();
        }
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

impl<T: Write + Send + 'static> AsyncWrite for Unblock<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match &mut this.state {
                State::Writing(pipe, job) => {
                    if let Some(accepted) = pipe.push(buf, cx) {
                        return accepted.map(Ok);
                    }
                    // The job is done: collect the value (and the error of earlier writes).
                    let out = ready!(Pin::new(job).poll(cx));
                    let (io, res) = this.finish(out)?;
                    this.state = State::Idle(Some(io));
                    res?;
                }
                State::Idle(None) => return Poll::Ready(Err(gone())),
                State::Idle(Some(_)) => {
                    this.drop_read_ahead();
                    let io = this.take_io()?;
                    let n = buf.len().min(this.cap);
                    let pipe = Arc::new(Pipe {
                        cap: this.cap,
                        state: Mutex::new(PipeState { buf: buf[..n].to_vec(), in_flight: 0, done: false, waker: None }),
                    });
                    let job = openco::blocking({
                        let pipe = pipe.clone();
                        move || pipe.drain(io)
                    });
                    this.state = State::Writing(pipe, job);
                    return Poll::Ready(Ok(n));
                }
                _ => ready!(this.poll_idle(cx))?,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            // Only a writer has bytes to push out; the value was flushed when it ended.
            State::Writing(..) => this.poll_idle(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        this.drop_read_ahead();
        this.state = State::Idle(None);
        Poll::Ready(Ok(()))
    }
}

impl<T: Seek + Send + 'static> AsyncSeek for Unblock<T> {
    fn poll_seek(self: Pin<&mut Self>, cx: &mut Context<'_>, pos: SeekFrom) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Seeking(asked, job) => {
                    let asked = *asked;
                    let out = ready!(Pin::new(job).poll(cx));
                    let (io, res) = this.finish(out)?;
                    this.state = State::Idle(Some(io));
                    if asked == pos {
                        return Poll::Ready(res);
                    }
                    // A seek whose caller went away; now the one asked for.
                }
                State::Idle(None) => return Poll::Ready(Err(gone())),
                State::Idle(Some(_)) => {
                    // Positions are those of the bytes consumed: the read-ahead is behind us.
                    let ahead = (this.read_end - this.read_pos) as i64;
                    let target = match pos {
                        SeekFrom::Current(off) => match off.checked_sub(ahead) {
                            Some(off) => SeekFrom::Current(off),
                            None => {
                                let msg = "openco_smol::Unblock: seek offset out of range";
                                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidInput, msg)));
                            }
                        },
                        pos => pos,
                    };
                    this.drop_read_ahead();
                    let mut io = this.take_io()?;
                    this.state = State::Seeking(
                        pos,
                        openco::blocking(move || {
                            let res = io.seek(target);
                            (io, res)
                        }),
                    );
                }
                _ => ready!(this.poll_idle(cx))?,
            }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Unblock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Unblock");
        match &self.state {
            State::Idle(Some(io)) => d.field("io", io),
            State::Idle(None) => d.field("io", &format_args!("<gone>")),
            State::Reading(_) => d.field("io", &format_args!("<reading>")),
            State::Writing(..) => d.field("io", &format_args!("<writing>")),
            State::Seeking(..) => d.field("io", &format_args!("<seeking>")),
            State::WithMut(_) => d.field("io", &format_args!("<in with_mut>")),
        };
        d.field("cap", &self.cap).finish()
    }
}
