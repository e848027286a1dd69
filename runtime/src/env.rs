//! Every `OPENCO_*` environment variable, read in one place.
//!
//! | variable | meaning |
//! |---|---|
//! | `OPENCO_WORKERS` | default worker threads of a [`Builder`](crate::Builder) |
//! | `OPENCO_STACK_SIZE` | default coroutine stack size, in bytes |
//! | `OPENCO_INLINE_FILE_CALLS` | `0`: every file call inside a coroutine goes to io_uring or the helper threads, none is answered inline from the kernel's caches (for tests and diagnosis); `1` (the default): warm reads, cached lookups and an open file's status are made inline |
//! | `OPENCO_IO_URING` | `0`: file calls run on helper threads instead of io_uring; `1`: io_uring where the kernel allows (the default) |

use std::io;

pub(crate) struct Env {
    pub(crate) workers: Option<usize>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) io_uring: Option<bool>,
    pub(crate) inline_file_calls: Option<bool>,
}

pub(crate) fn read() -> io::Result<Env> {
    Ok(Env {
        workers: number("OPENCO_WORKERS")?,
        stack_size: number("OPENCO_STACK_SIZE")?,
        io_uring: switch("OPENCO_IO_URING")?,
        inline_file_calls: switch("OPENCO_INLINE_FILE_CALLS")?,
    })
}

fn switch(name: &str) -> io::Result<Option<bool>> {
    match std::env::var(name).as_deref().map(str::trim) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok("0") => Ok(Some(false)),
        Ok("1") => Ok(Some(true)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("openco: environment variable {name} must be 0 or 1"),
        )),
    }
}

fn number(name: &str) -> io::Result<Option<usize>> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v.trim().parse::<usize>().is_ok() => Ok(v.trim().parse().ok()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("openco: environment variable {name} must be a non-negative integer"),
        )),
    }
}
