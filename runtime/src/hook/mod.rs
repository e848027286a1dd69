//! Interposed libc functions.
//!
//! Each hook is a `#[no_mangle] extern "C"` function with libc's name and signature, defined
//! in this crate and therefore linked into every executable that uses openco: the static
//! linker prefers it to the shared libc's symbol, for the program's code and for `std`'s alike.
//! No `LD_PRELOAD` is involved.
//!
//! Every hook starts with the same test: is a coroutine running on this thread
//! ([`coroutine::current`](crate::coroutine::current), one thread-local load)? If not, it
//! calls the real function, found once with `dlsym(RTLD_NEXT)` and cached in an `AtomicPtr`,
//! so code outside coroutines behaves exactly as without openco. Inside a coroutine, the hook
//! keeps libc's results and errno convention but suspends the coroutine instead of the thread.
//!
//! One file per syscall family.

mod dns;
mod fd;
mod file;
mod futex;
mod lock;
mod net;
mod poll;
mod rw;
mod sleep;
mod wait;

pub(crate) use futex::{probe_parker, probe_parker_once, release_parker, tend_parker};

/// Resolves the next definition of a libc function (libc's own), once.
macro_rules! real {
    ($name:ident : fn($($arg:ty),*) -> $ret:ty) => {{
        static PTR: std::sync::atomic::AtomicPtr<libc::c_void> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
        let mut ptr = PTR.load(std::sync::atomic::Ordering::Relaxed);
        if ptr.is_null() {
            ptr = $crate::hook::resolve(concat!(stringify!($name), "\0"));
            PTR.store(ptr, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: `ptr` is libc's definition of the function named like this hook, whose C
        // signature the hook copies.
        unsafe { std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn($($arg),*) -> $ret>(ptr) }
    }};
}
pub(crate) use real;

/// `dlsym(RTLD_NEXT, name)`, or an abort with a message if libc lacks the symbol (a static
/// binary without a libc to forward to cannot keep libc's behaviour).
pub(crate) fn resolve(name: &'static str) -> *mut libc::c_void {
    // SAFETY: `name` is NUL-terminated; RTLD_NEXT looks past this executable.
    let ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
    if ptr.is_null() {
        let msg = b"openco: cannot find libc's definition of a hooked function\n";
        // SAFETY: write(2) and abort(3) with a valid buffer.
        unsafe {
            crate::sys::syscall!(libc::SYS_write, 2, msg.as_ptr(), msg.len());
            libc::abort();
        }
    }
    ptr
}
