//! Every `OPENCO_*` environment variable, read in one place.
//!
//! | variable | meaning |
//! |---|---|
//! | `OPENCO_WORKERS` | default worker threads of a [`Builder`](crate::Builder) |
//! | `OPENCO_STACK_SIZE` | default coroutine stack size, in bytes |

use std::io;

pub(crate) struct Env {
    pub(crate) workers: Option<usize>,
    pub(crate) stack_size: Option<usize>,
}

pub(crate) fn read() -> io::Result<Env> {
    Ok(Env { workers: number("OPENCO_WORKERS")?, stack_size: number("OPENCO_STACK_SIZE")? })
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
