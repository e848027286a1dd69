//! Proves that openco's libc hooks are linked into this test binary: the sleep and file
//! families and the pthread locks that Rust code (this file's and `std`'s) and C code
//! linked in (SQLite) call resolve to the executable's own definitions, not to libc's.
//!
//! How, and why this way: a Rust reference such as `libc::clock_nanosleep` is bound by the
//! static linker, which prefers the `#[no_mangle]` definition in openco's rlib to the shared
//! libc's symbol; the function pointer we take is therefore exactly the address every call
//! from this binary goes to. We check that address three independent ways:
//!
//! 1. it differs from `dlsym(RTLD_NEXT, name)`, the next definition after this executable in
//!    the lookup order, which is libc's (and which the hooks themselves forward to);
//! 2. `dladdr` puts it in the same loaded object as a function defined in this very file
//!    (same `dli_fbase`), while `dladdr` of the `RTLD_NEXT` address names a `libc.so` object;
//! 3. `/proc/self/maps` shows it inside a mapping of the file `std::env::current_exe()`.
//!
//! 4. `dlsym(RTLD_DEFAULT, name)`, the lookup a shared library's PLT does, also finds the
//!    executable's definition: the linker puts a symbol in the executable's dynamic symbol
//!    table when a shared library of the link (libc.so) defines it too, so C code in shared
//!    libraries (linked or `dlopen`ed) reaches the hooks as well. This one depends on the
//!    linker's export rule rather than only on the hook being linked in, so it has its own
//!    test with its own message.

use std::ffi::{c_void, CStr};
use std::mem::MaybeUninit;
use std::path::PathBuf;

use openco as _;

/// The hooked functions, with the address this binary's code calls them at.
fn hooked() -> Vec<(&'static CStr, usize)> {
    vec![
        (c"clock_nanosleep", libc::clock_nanosleep as *const () as usize),
        (c"nanosleep", libc::nanosleep as *const () as usize),
        (c"usleep", libc::usleep as *const () as usize),
        (c"sleep", libc::sleep as *const () as usize),
        // The file family (C code built with `_FILE_OFFSET_BITS=64` calls the `*64` names)
        // and the pthread locks openco counts.
        (c"open", libc::open as *const () as usize),
        (c"open64", libc::open64 as *const () as usize),
        (c"openat", libc::openat as *const () as usize),
        (c"openat64", libc::openat64 as *const () as usize),
        (c"creat", libc::creat as *const () as usize),
        (c"creat64", libc::creat64 as *const () as usize),
        (c"read", libc::read as *const () as usize),
        (c"readv", libc::readv as *const () as usize),
        (c"write", libc::write as *const () as usize),
        (c"writev", libc::writev as *const () as usize),
        (c"pread", libc::pread as *const () as usize),
        (c"pread64", libc::pread64 as *const () as usize),
        (c"preadv", libc::preadv as *const () as usize),
        (c"preadv64", libc::preadv64 as *const () as usize),
        (c"pwrite", libc::pwrite as *const () as usize),
        (c"pwrite64", libc::pwrite64 as *const () as usize),
        (c"pwritev", libc::pwritev as *const () as usize),
        (c"pwritev64", libc::pwritev64 as *const () as usize),
        (c"fsync", libc::fsync as *const () as usize),
        (c"fdatasync", libc::fdatasync as *const () as usize),
        (c"ftruncate", libc::ftruncate as *const () as usize),
        (c"ftruncate64", libc::ftruncate64 as *const () as usize),
        (c"fallocate", libc::fallocate as *const () as usize),
        (c"fallocate64", libc::fallocate64 as *const () as usize),
        (c"statx", libc::statx as *const () as usize),
        (c"fstat", libc::fstat as *const () as usize),
        (c"fstat64", libc::fstat64 as *const () as usize),
        (c"stat", libc::stat as *const () as usize),
        (c"stat64", libc::stat64 as *const () as usize),
        (c"lstat", libc::lstat as *const () as usize),
        (c"lstat64", libc::lstat64 as *const () as usize),
        (c"fstatat", libc::fstatat as *const () as usize),
        (c"fstatat64", libc::fstatat64 as *const () as usize),
        (c"unlink", libc::unlink as *const () as usize),
        (c"unlinkat", libc::unlinkat as *const () as usize),
        (c"rmdir", libc::rmdir as *const () as usize),
        (c"rename", libc::rename as *const () as usize),
        (c"renameat", libc::renameat as *const () as usize),
        (c"renameat2", libc::renameat2 as *const () as usize),
        (c"mkdir", libc::mkdir as *const () as usize),
        (c"mkdirat", libc::mkdirat as *const () as usize),
        (c"close", libc::close as *const () as usize),
        (c"pthread_mutex_lock", libc::pthread_mutex_lock as *const () as usize),
        (c"pthread_mutex_trylock", libc::pthread_mutex_trylock as *const () as usize),
        (c"pthread_mutex_timedlock", libc::pthread_mutex_timedlock as *const () as usize),
        (c"pthread_mutex_unlock", libc::pthread_mutex_unlock as *const () as usize),
        (c"pthread_rwlock_rdlock", libc::pthread_rwlock_rdlock as *const () as usize),
        (c"pthread_rwlock_wrlock", libc::pthread_rwlock_wrlock as *const () as usize),
        (c"pthread_rwlock_tryrdlock", libc::pthread_rwlock_tryrdlock as *const () as usize),
        (c"pthread_rwlock_trywrlock", libc::pthread_rwlock_trywrlock as *const () as usize),
        (c"pthread_rwlock_unlock", libc::pthread_rwlock_unlock as *const () as usize),
    ]
}

/// A function certainly defined in this executable.
#[inline(never)]
fn local_marker() -> u32 {
    std::hint::black_box(7)
}

fn dladdr(addr: usize) -> libc::Dl_info {
    // SAFETY: `Dl_info` is plain data; all-zero is a valid value for an out-parameter.
    let mut info: libc::Dl_info = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: `dladdr` only reads the address and writes `info`, a valid out-parameter.
    let found = unsafe { libc::dladdr(addr as *const c_void, &mut info) };
    assert_ne!(found, 0, "dladdr found no loaded object containing {addr:#x}");
    info
}

fn dlsym(handle: *mut c_void, name: &CStr) -> usize {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT and RTLD_NEXT are valid pseudo-handles.
    unsafe { libc::dlsym(handle, name.as_ptr()) as usize }
}

fn object_name(info: &libc::Dl_info) -> String {
    if info.dli_fname.is_null() {
        return String::new();
    }
    // SAFETY: a non-null `dli_fname` is a NUL-terminated string owned by the dynamic loader.
    unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned()
}

/// The file backing the mapping that contains `addr`, from `/proc/self/maps`.
fn mapped_file(addr: usize) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().find_map(|line| {
        // "start-end perms offset dev inode   path"
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
        if !(start..end).contains(&addr) {
            return None;
        }
        let path = fields.nth(4)?;
        Some(PathBuf::from(path))
    })
}

#[test]
fn hooks_are_distinct_from_libc() {
    for (name, ours) in hooked() {
        let next = dlsym(libc::RTLD_NEXT, name);
        assert_ne!(next, 0, "{name:?}: libc has no definition after this executable");
        assert_ne!(ours, next, "{name:?}: this binary calls libc's definition, so the hook is not linked in");
    }
}

#[test]
fn hooks_live_in_the_executable_and_libc_is_next() {
    let exe_base = dladdr(local_marker as *const () as usize).dli_fbase;
    for (name, ours) in hooked() {
        let info = dladdr(ours);
        assert_eq!(
            info.dli_fbase,
            exe_base,
            "{name:?} at {ours:#x} is not in the executable (object {:?})",
            object_name(&info)
        );

        let next = dladdr(dlsym(libc::RTLD_NEXT, name));
        assert_ne!(next.dli_fbase, exe_base, "{name:?}: RTLD_NEXT resolved into the executable itself");
        let libc_name = object_name(&next);
        assert!(libc_name.contains("libc.so"), "{name:?}: RTLD_NEXT resolved into {libc_name:?}, expected libc.so");
    }
}

#[test]
fn hooks_are_mapped_from_the_executable_file() {
    let exe = std::env::current_exe().expect("current_exe").canonicalize().expect("canonicalize current_exe");
    for (name, ours) in hooked() {
        let file = mapped_file(ours).unwrap_or_else(|| panic!("{name:?} at {ours:#x} is in no mapping"));
        let file = file.canonicalize().unwrap_or(file);
        assert_eq!(file, exe, "{name:?} at {ours:#x} is mapped from {file:?}, not from the test executable");
    }
}

#[test]
fn rtld_default_resolves_to_the_hook() {
    for (name, ours) in hooked() {
        let default = dlsym(libc::RTLD_DEFAULT, name);
        let next = dlsym(libc::RTLD_NEXT, name);
        assert_ne!(
            default, next,
            "{name:?}: dlsym(RTLD_DEFAULT) gives libc's definition: the executable does not export the hook \
             dynamically, so shared libraries would bypass it"
        );
        assert_eq!(default, ours, "{name:?}: RTLD_DEFAULT gave {default:#x}, neither ours ({ours:#x}) nor libc's");
    }
}
