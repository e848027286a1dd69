//! `getaddrinfo` (what `std`'s `ToSocketAddrs` calls), offloaded.
//!
//! glibc resolves names inside `getaddrinfo` with its own internal calls (reading
//! `/etc/hosts`, talking to DNS servers), which bypass the PLT: no hook can make them suspend.
//! So inside a coroutine the whole call runs on a helper thread of the [`offload`] pool while
//! the coroutine is parked, and the worker runs other coroutines meanwhile. The result is
//! libc's own: the `EAI_*` return code, `*res` written by libc on success (to be freed with
//! `freeaddrinfo` as usual; glibc's allocator does not care which thread frees), and `errno`
//! as the call left it on the helper, which matters for `EAI_SYSTEM`. Outside a coroutine the
//! call goes to libc directly.
//!
//! One difference remains: glibc keeps the resolver state `_res` per thread, so resolver
//! options a program sets through `_res` (a deprecated interface) on its own thread do not
//! apply to lookups its coroutines make; `/etc/resolv.conf` applies to both.

use libc::{addrinfo, c_char, c_int};

use super::real;
use crate::coroutine;
use crate::offload;

type GetAddrInfo = unsafe extern "C" fn(*const c_char, *const c_char, *const addrinfo, *mut *mut addrinfo) -> c_int;

/// The arguments of one call, sent to a helper thread.
struct Args {
    real: GetAddrInfo,
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
}

// SAFETY: the pointers are the caller's arguments, valid for the duration of the call; the
// caller is parked until the helper returns (`offload`), so they are used within it, by one
// thread at a time. `getaddrinfo` is MT-Safe, so any thread may make the call.
unsafe impl Send for Args {}

impl Args {
    /// Makes the call. Takes `self` whole, so that a closure calling it captures the `Send`
    /// struct, not its raw-pointer fields one by one.
    ///
    /// # Safety
    /// The pointers are valid as libc's `getaddrinfo` requires, for the whole call.
    unsafe fn call(self) -> c_int {
        // SAFETY: guaranteed by the caller.
        unsafe { (self.real)(self.node, self.service, self.hints, self.res) }
    }
}

/// # Safety
/// As libc's `getaddrinfo`.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let real = real!(getaddrinfo: fn(*const c_char, *const c_char, *const addrinfo, *mut *mut addrinfo) -> c_int);
    if !coroutine::in_coroutine() {
        // SAFETY: the caller's arguments, passed on as they are.
        return unsafe { real(node, service, hints, res) };
    }
    let args = Args { real, node, service, hints, res };
    // SAFETY: the caller's arguments, valid until this hook returns, which it does only
    // after the helper's call has returned (`offload::run`).
    offload::run_with_errno(move || unsafe { args.call() })
}
