//! What every blocking IO hook does inside a coroutine: try without blocking, and on
//! `EAGAIN` suspend until the fd is ready, then try again.
//!
//! A [`Call`] carries one hooked call's state across its attempts: the fd, the events it
//! needs, and its deadline, computed on the first `EAGAIN` from the fd's flags and socket
//! timeout as the kernel holds them at that moment:
//! - the user made the fd non-blocking: `EAGAIN` is the answer, returned as it is;
//! - `SO_RCVTIMEO`/`SO_SNDTIMEO` is set: the call gives up with the kernel's timeout error
//!   once it passes;
//! - the fd cannot be polled (epoll answers `EPERM`): the plain blocking call is made, as
//!   without openco.

use std::time::{Duration, Instant};

use libc::c_int;

use crate::coroutine::{self, Context, Interest, Suspend};
use crate::io::flags;
use crate::sys;

/// Suspends until one of `interests` is ready, `deadline` passes or an fd is closed.
/// `Err(errno)` if an fd could not be registered (the coroutine did not wait).
pub(crate) fn wait(ctx: &Context, interests: &[Interest], deadline: Option<Instant>) -> Result<(), c_int> {
    let request = Suspend::Io { interests: interests.as_ptr(), len: interests.len(), deadline };
    match coroutine::suspend(ctx, request) {
        0 => Ok(()),
        errno => Err(errno),
    }
}

/// Which socket timeout bounds a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeout {
    Recv,
    Send,
}

/// One blocking call in progress.
pub(crate) struct Call {
    pub(crate) fd: c_int,
    events: u32,
    timeout: Timeout,
    /// The error a passed socket timeout gives (`EAGAIN`; `EINPROGRESS` for `connect`).
    pub(crate) timeout_errno: c_int,
    /// `None` until the first `EAGAIN`; then the deadline, if any.
    deadline: Option<Option<Instant>>,
    /// The fd's flags were read already and it is blocking.
    known_blocking: bool,
}

/// What to do after an attempt failed with `EAGAIN`.
pub(crate) enum Next {
    /// Attempt again (the fd may be ready).
    Retry,
    /// Return -1 with errno set.
    Fail,
    /// Make the plain blocking call: the fd cannot be polled.
    Block,
}

impl Call {
    pub(crate) fn new(fd: c_int, events: libc::c_int, timeout: Timeout) -> Call {
        Call { fd, events: events as u32, timeout, timeout_errno: libc::EAGAIN, deadline: None, known_blocking: false }
    }

    pub(crate) fn read(fd: c_int) -> Call {
        Call::new(fd, libc::EPOLLIN, Timeout::Recv)
    }

    pub(crate) fn write(fd: c_int) -> Call {
        Call::new(fd, libc::EPOLLOUT, Timeout::Send)
    }

    /// The caller checked already that the user's fd is blocking.
    pub(crate) fn blocking(mut self) -> Call {
        self.known_blocking = true;
        self
    }

    /// After an attempt failed with `EAGAIN`: waits for readiness if the call would have
    /// blocked. errno is set when the answer is [`Next::Fail`].
    pub(crate) fn on_eagain(&mut self, ctx: &Context) -> Next {
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => {
                if !self.known_blocking {
                    match flags::user_flags(self.fd) {
                        Ok(fl) if fl & libc::O_NONBLOCK == 0 => {}
                        Ok(_) => {
                            sys::set_errno(libc::EAGAIN);
                            return Next::Fail;
                        }
                        Err(errno) => {
                            sys::set_errno(errno);
                            return Next::Fail;
                        }
                    }
                    self.known_blocking = true;
                }
                let option = match self.timeout {
                    Timeout::Recv => libc::SO_RCVTIMEO,
                    Timeout::Send => libc::SO_SNDTIMEO,
                };
                let deadline = flags::socket_timeout(self.fd, option)
                    .map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future));
                self.deadline = Some(deadline);
                deadline
            }
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            sys::set_errno(self.timeout_errno);
            return Next::Fail;
        }
        match wait(ctx, &[Interest { fd: self.fd, events: self.events }], deadline) {
            Ok(()) => Next::Retry,
            Err(libc::EPERM) => Next::Block,
            Err(errno) => {
                sys::set_errno(errno);
                Next::Fail
            }
        }
    }

    /// Runs `attempt(false)` (a non-blocking try) until it no longer fails with `EAGAIN`,
    /// waiting in between; `attempt(true)` is the plain blocking call, for fds epoll cannot
    /// watch. Returns the attempt's result, errno set.
    pub(crate) fn run(&mut self, ctx: &Context, mut attempt: impl FnMut(bool) -> isize) -> isize {
        loop {
            let ret = attempt(false);
            if ret >= 0 || sys::errno() != libc::EAGAIN {
                return ret;
            }
            match self.on_eagain(ctx) {
                Next::Retry => {}
                Next::Fail => return -1,
                Next::Block => return attempt(true),
            }
        }
    }

    /// Like [`run`](Call::run) for a write to a blocking fd, which the kernel completes in
    /// full unless an error or a timeout stops it: attempts continue after partial writes,
    /// `attempt(blocking, done)` writing from offset `done`. `total` gives the byte count;
    /// it is asked only after a partial write, when the kernel has accepted the buffers.
    /// Returns the bytes written if any were, else the error, as the kernel does.
    pub(crate) fn run_write_all(
        &mut self,
        ctx: &Context,
        total: impl FnOnce() -> usize,
        mut attempt: impl FnMut(bool, usize) -> isize,
    ) -> isize {
        let mut total = Some(total);
        let mut len = usize::MAX;
        let mut done = 0usize;
        loop {
            let ret = self.run(ctx, |blocking| attempt(blocking, done));
            if ret < 0 {
                return if done > 0 { done as isize } else { ret };
            }
            done += ret as usize;
            if let Some(total) = total.take() {
                len = total();
            }
            if done >= len || ret == 0 {
                return done as isize;
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// Whether `fd` has any of `events` (poll bits) right now, by a zero-timeout `poll`.
pub(crate) fn ready_now(fd: c_int, events: libc::c_short) -> bool {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: one valid pollfd and a valid timeout; no signal mask.
    let n =
        unsafe { libc::syscall(libc::SYS_ppoll, &mut pfd as *mut libc::pollfd, 1, &zero as *const _, 0usize, 8usize) };
    n > 0
}
