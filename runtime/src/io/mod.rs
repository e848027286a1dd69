//! The IO driver: one epoll reactor per worker.
//!
//! A coroutine whose non-blocking attempt failed with `EAGAIN` suspends with
//! `Suspend::Io`, naming the fds and events it waits for. Its worker arms each fd in its own
//! epoll instance with `EPOLLONESHOT` (`EPOLL_CTL_MOD`, or `ADD` the first time) and records
//! the waiter; the worker wakes it when epoll reports the fd, when its deadline passes, or
//! when the fd is closed (see [`registry`]). The woken coroutine retries its call, so a
//! spurious wake-up costs one failed attempt and nothing else.
//!
//! Why one-shot re-arming per wait rather than a registration kept for the fd's life: the
//! `MOD` is also the check that the fd number still names the file it was registered for.
//! If the fd was closed without openco seeing it (glibc closes fds internally) and the
//! number reused, `MOD` fails with `ENOENT` and the new file is added; a registration kept
//! across waits would silently wait on the old file forever. It costs one `epoll_ctl` per
//! wait, about what a readiness-cache lookup and its bookkeeping would.
//!
//! The reactor also remembers, per fd, what a blocking call needs to know before it waits:
//! whether the user made the fd non-blocking, and its socket timeouts. A successful `MOD`
//! proves the fd still names the file these were read from; a user's `F_SETFL`,
//! `ioctl(FIONBIO)` or timeout `setsockopt` bumps a process-wide epoch that invalidates them
//! (see `flags`). So a wait costs one `epoll_ctl` and nothing more in the common case.
//!
//! The same epoll instance holds the worker's wake-up eventfd, so a parked worker wakes for
//! IO, timers (its `epoll_wait` timeout) and other threads alike.

pub(crate) mod flags;
pub(crate) mod registry;
pub(crate) mod uring;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::coroutine::Interest;
use crate::sys;

/// The epoll token of the worker's own eventfd.
pub(crate) const WAKE_TOKEN: u64 = u64::MAX;

/// Events that wake every waiter of an fd, whatever it asked for.
const ALWAYS: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// A suspended coroutine, as the worker names it (slot, generation, park count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
    pub(crate) park: u32,
}

#[derive(Clone, Copy)]
struct Waiting {
    who: Waiter,
    events: u32,
}

#[derive(Default)]
struct Entry {
    /// Added to the epoll instance at some point (it may have been dropped since, if the
    /// fd was closed: then `MOD` fails and we add it again).
    registered: bool,
    waiting: Vec<Waiting>,
    /// What the kernel said of the file when it was last added (see the module docs).
    known: Option<Known>,
}

#[derive(Clone, Copy)]
struct Known {
    epoch: u64,
    nonblocking: bool,
    recv_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
}

/// One single-fd blocking call's state across its waits, on the waiting coroutine's stack.
#[derive(Debug)]
pub(crate) struct CallState {
    /// `SO_RCVTIMEO` or `SO_SNDTIMEO`: which timeout bounds the call.
    pub(crate) timeout_option: i32,
    /// The call's deadline, fixed at its first wait: `Some(None)` when it has none.
    pub(crate) deadline: Option<Option<Instant>>,
}

/// fds are small dense integers: multiply to spread them over the hash table's control bits.
#[derive(Default)]
struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i32(&mut self, fd: i32) {
        self.0 = (fd as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) struct Reactor {
    epoll: sys::Fd,
    /// This worker's process-wide id, for the close registry.
    id: usize,
    entries: HashMap<i32, Entry, BuildHasherDefault<FdHasher>>,
    /// Waiters recorded and not yet woken or pruned (an upper bound of the live ones).
    waiting: usize,
    events: Vec<libc::epoll_event>,
}

impl Reactor {
    pub(crate) fn new(epoll: sys::Fd, id: usize) -> Reactor {
        Reactor {
            epoll,
            id,
            entries: HashMap::default(),
            waiting: 0,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        }
    }

    /// Whether some coroutine may be waiting for IO, so the worker should look at epoll even
    /// while it has other work.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting > 0
    }

    /// Arms each interest for `who`. On failure returns the errno of the first fd that could
    /// not be armed (`EPERM`: the fd cannot be polled, e.g. a regular file; `EBADF`: closed);
    /// the fds armed before it stay armed and will wake a stale waiter, which is ignored.
    ///
    /// With `call` (a single-fd blocking call), also decides whether the call waits at all:
    /// `Err(EAGAIN)` if the user made the fd non-blocking, `Err(0)` (resume at once) if its
    /// deadline has passed; else `Ok` with the call's deadline.
    pub(crate) fn register(
        &mut self,
        interests: &[Interest],
        who: Waiter,
        is_live: impl Fn(Waiter) -> bool,
        call: Option<&mut CallState>,
    ) -> Result<Option<Instant>, i32> {
        let mut reused = false;
        for interest in interests {
            reused = self.arm(interest.fd, Waiting { who, events: interest.events }, &is_live)?;
        }
        let (Some(call), [interest]) = (call, interests) else { return Ok(None) };
        let fd = interest.fd;
        let entry = self.entries.get_mut(&fd).expect("armed above");
        let known = match entry.known {
            Some(k) if reused && k.epoch == flags::epoch() => k,
            _ => {
                let epoch = flags::epoch();
                let known = match flags::user_flags(fd) {
                    Ok(fl) => Known {
                        epoch,
                        nonblocking: fl & libc::O_NONBLOCK != 0,
                        recv_timeout: flags::socket_timeout(fd, libc::SO_RCVTIMEO),
                        send_timeout: flags::socket_timeout(fd, libc::SO_SNDTIMEO),
                    },
                    Err(errno) => {
                        self.unwait(fd);
                        return Err(errno);
                    }
                };
                entry.known = Some(known);
                known
            }
        };
        if known.nonblocking {
            self.unwait(fd);
            return Err(libc::EAGAIN);
        }
        let deadline = *call.deadline.get_or_insert_with(|| {
            let timeout =
                if call.timeout_option == libc::SO_RCVTIMEO { known.recv_timeout } else { known.send_timeout };
            timeout
                .map(|t| Instant::now().checked_add(t).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30)))
        });
        if deadline.is_some_and(|d| Instant::now() >= d) {
            self.unwait(fd);
            return Err(0);
        }
        Ok(deadline)
    }

    /// Removes the waiter `arm` just added for `fd` (it is the last one).
    fn unwait(&mut self, fd: i32) {
        if let Some(entry) = self.entries.get_mut(&fd) {
            if entry.waiting.pop().is_some() {
                self.waiting -= 1;
            }
            if entry.waiting.is_empty() {
                registry::unmark(fd, self.id);
            }
        }
    }

    /// Adds `new` to the waiters of `fd` and arms it. `Ok(true)` if the fd was re-armed
    /// (`MOD`), which proves it names the same file as when it was added.
    fn arm(&mut self, fd: i32, new: Waiting, is_live: &impl Fn(Waiter) -> bool) -> Result<bool, i32> {
        let entry = self.entries.entry(fd).or_default();
        let before = entry.waiting.len();
        entry.waiting.retain(|w| is_live(w.who));
        self.waiting -= before - entry.waiting.len();
        entry.waiting.push(new);
        self.waiting += 1;
        if entry.waiting.len() == 1 {
            registry::mark(fd, self.id);
        }
        let events = entry.waiting.iter().fold(libc::EPOLLONESHOT as u32, |acc, w| acc | w.events);
        let epfd = self.epoll.0;
        let modify = |op| sys::epoll_ctl(epfd, op, fd, events, fd as u64);
        let result = if entry.registered {
            match modify(libc::EPOLL_CTL_MOD) {
                Err(libc::ENOENT) => modify(libc::EPOLL_CTL_ADD).map(|()| false),
                other => other.map(|()| true),
            }
        } else {
            match modify(libc::EPOLL_CTL_ADD) {
                // Added by an earlier entry for this fd number; its file is unknown.
                Err(libc::EEXIST) => modify(libc::EPOLL_CTL_MOD).map(|()| false),
                other => other.map(|()| false),
            }
        };
        match result {
            Ok(reused) => {
                entry.registered = true;
                if !reused {
                    entry.known = None;
                }
                Ok(reused)
            }
            Err(errno) => {
                entry.waiting.pop();
                self.waiting -= 1;
                if entry.waiting.is_empty() {
                    registry::unmark(fd, self.id);
                }
                if errno == libc::EBADF || errno == libc::EPERM {
                    self.entries.remove(&fd);
                }
                Err(errno)
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for events and wakes the waiters they
    /// concern. Returns whether any waiter was woken or the eventfd fired.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<std::time::Duration>,
        is_live: impl Fn(Waiter) -> bool,
        mut wake: impl FnMut(Waiter),
    ) -> bool {
        let n = sys::epoll_wait(self.epoll.0, &mut self.events, timeout);
        let mut any = false;
        for i in 0..n {
            let libc::epoll_event { events, u64: token } = self.events[i];
            if token == WAKE_TOKEN {
                any = true;
                continue;
            }
            any |= self.dispatch(token as i32, events, &is_live, &mut wake);
        }
        any
    }

    fn dispatch(
        &mut self,
        fd: i32,
        events: u32,
        is_live: &impl Fn(Waiter) -> bool,
        wake: &mut impl FnMut(Waiter),
    ) -> bool {
        let Some(entry) = self.entries.get_mut(&fd) else { return false };
        let before = entry.waiting.len();
        let mut woke = false;
        entry.waiting.retain(|w| {
            if !is_live(w.who) {
                return false;
            }
            if events & (w.events | ALWAYS) != 0 {
                wake(w.who);
                woke = true;
                return false;
            }
            true
        });
        self.waiting -= before - entry.waiting.len();
        if entry.waiting.is_empty() {
            registry::unmark(fd, self.id);
            return woke;
        }
        // The one-shot registration fired: re-arm it for the waiters that remain.
        let rest = entry.waiting.iter().fold(libc::EPOLLONESHOT as u32, |acc, w| acc | w.events);
        if sys::epoll_ctl(self.epoll.0, libc::EPOLL_CTL_MOD, fd, rest, fd as u64).is_err() {
            self.closed(fd, is_live, wake);
            return true;
        }
        woke
    }

    /// `fd` was closed or shut down: wakes all its waiters and forgets it.
    pub(crate) fn closed(&mut self, fd: i32, is_live: &impl Fn(Waiter) -> bool, wake: &mut impl FnMut(Waiter)) {
        if let Some(entry) = self.entries.remove(&fd) {
            self.waiting -= entry.waiting.len();
            for w in entry.waiting {
                if is_live(w.who) {
                    wake(w.who);
                }
            }
        }
    }

    /// Drops the waiters of coroutines that no longer wait (woken by a deadline or another
    /// fd), so that fds that never fire do not keep them forever.
    pub(crate) fn prune(&mut self, is_live: impl Fn(Waiter) -> bool) {
        let id = self.id;
        let mut removed = 0;
        self.entries.retain(|&fd, entry| {
            let before = entry.waiting.len();
            entry.waiting.retain(|w| is_live(w.who));
            removed += before - entry.waiting.len();
            if entry.waiting.is_empty() {
                registry::unmark(fd, id);
            }
            entry.registered || !entry.waiting.is_empty()
        });
        self.waiting -= removed;
    }

    pub(crate) fn waiting_count(&self) -> usize {
        self.waiting
    }
}
