//! What every blocking IO hook does inside a coroutine: try without blocking, and on
//! `EAGAIN` suspend until the fd is ready, then try again.
//!
//! A [`Call`] carries one hooked call's state across its attempts: the fd, the events it
//! needs, and its deadline, fixed at the first wait from the fd's flags and socket timeout
//! as the kernel holds them (the worker's reactor reads and remembers them):
//! - the user made the fd non-blocking: `EAGAIN` is the answer, returned as it is;
//! - `SO_RCVTIMEO`/`SO_SNDTIMEO` is set: the call gives up with the kernel's timeout error
//!   once it passes;
//! - the fd cannot be polled (epoll answers `EPERM`): the plain blocking call is made, as
//!   without openco.

use std::time::Instant;

use libc::c_int;

use crate::coroutine::{self, Context, Interest, Suspend};
use crate::io::CallState;
use crate::sys;

/// Suspends until one of `interests` is ready, `deadline` passes or an fd is closed.
/// `Err(errno)` if an fd could not be registered (the coroutine did not wait).
pub(crate) fn wait(ctx: &Context, interests: &[Interest], deadline: Option<Instant>) -> Result<(), c_int> {
    let request =
        Suspend::Io { interests: interests.as_ptr(), len: interests.len(), deadline, call: std::ptr::null_mut() };
    match coroutine::suspend(ctx, request) {
        0 => Ok(()),
        errno => Err(errno),
    }
}

/// One blocking call in progress.
pub(crate) struct Call {
    fd: c_int,
    events: u32,
    /// The error a passed socket timeout gives (`EAGAIN`; `EINPROGRESS` for `connect`).
    pub(crate) timeout_errno: c_int,
    state: CallState,
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
    fn new(fd: c_int, events: c_int, timeout_option: c_int) -> Call {
        Call {
            fd,
            events: events as u32,
            timeout_errno: libc::EAGAIN,
            state: CallState { timeout_option, deadline: None },
        }
    }

    /// A call that waits to read, bounded by `SO_RCVTIMEO`.
    pub(crate) fn read(fd: c_int) -> Call {
        Call::new(fd, libc::EPOLLIN, libc::SO_RCVTIMEO)
    }

    /// A call that waits to write, bounded by `SO_SNDTIMEO`.
    pub(crate) fn write(fd: c_int) -> Call {
        Call::new(fd, libc::EPOLLOUT, libc::SO_SNDTIMEO)
    }

    /// After an attempt failed with `EAGAIN`: waits for readiness if the call would have
    /// blocked (the worker decides, from what the kernel says of the fd; see `io`). errno is
    /// set when the answer is [`Next::Fail`].
    pub(crate) fn on_eagain(&mut self, ctx: &Context) -> Next {
        if let Some(Some(deadline)) = self.state.deadline {
            if Instant::now() >= deadline {
                sys::set_errno(self.timeout_errno);
                return Next::Fail;
            }
        }
        let interests = [Interest { fd: self.fd, events: self.events }];
        let request = Suspend::Io { interests: interests.as_ptr(), len: 1, deadline: None, call: &mut self.state };
        match coroutine::suspend(ctx, request) {
            0 => Next::Retry,
            libc::EPERM => Next::Block,
            errno => {
                sys::set_errno(errno);
                Next::Fail
            }
        }
    }

    /// Runs `attempt(false)` (a non-blocking try) until it no longer fails with `EAGAIN`,
    /// waiting in between; `attempt(true)` is the plain blocking call, for fds epoll cannot
    /// watch. Returns the attempt's result, errno set.
    pub(crate) fn run(&mut self, ctx: &Context, mut attempt: impl FnMut(bool) -> isize) -> isize {
        // libc leaves errno alone when a call succeeds: so must the attempts that failed
        // with EAGAIN on the way.
        let caller_errno = sys::errno();
        loop {
            let ret = attempt(false);
            if ret >= 0 || sys::errno() != libc::EAGAIN {
                let errno = if ret >= 0 { caller_errno } else { sys::errno() };
                coroutine::consume_budget(ctx);
                sys::set_errno(errno);
                return ret;
            }
            match self.on_eagain(ctx) {
                Next::Retry => {}
                Next::Fail => return -1,
                Next::Block => {
                    sys::set_errno(caller_errno);
                    return attempt(true);
                }
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

/// Whether `fd` has any of `events` (poll bits) right now, by a zero-timeout `poll`.
pub(crate) fn ready_now(fd: c_int, events: libc::c_short) -> bool {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: one valid pollfd and a valid timeout; no signal mask.
    let n = unsafe {
        crate::sys::syscall!(libc::SYS_ppoll, &mut pfd as *mut libc::pollfd, 1, &zero as *const _, 0usize, 8usize)
    };
    n > 0
}
