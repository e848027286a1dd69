//! The seeds' "arbitrary use of blocking syscalls" example: with `#[openco::main]`, `main`'s
//! body runs in a coroutine, so a blocking call made right in `main` (here
//! `std::thread::sleep`, which calls the hooked `clock_nanosleep`) suspends the coroutine,
//! not the thread, as it does in every task.
//!
//! ```text
//! $ cargo run --example seed_sleep
//! main runs in a coroutine: true
//! main slept 1.00 s (suspended, its worker was free meanwhile)
//! 1000 tasks slept 500 ms each, all at once: 0.51 s on 2 worker threads
//! ```

use std::time::{Duration, Instant};

#[openco::main(workers = 2)]
fn main() -> std::io::Result<()> {
    println!("main runs in a coroutine: {}", openco::in_coroutine());

    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    println!("main slept {:.2} s (suspended, its worker was free meanwhile)", start.elapsed().as_secs_f64());

    let start = Instant::now();
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            openco::task!(
                |i| {
                    std::thread::sleep(Duration::from_millis(500));
                    i
                },
                i
            )
        })
        .collect();
    let mut sum = 0;
    for task in tasks {
        sum += task.join()?; // a `JoinError` converts into an `io::Error`
    }
    assert_eq!(sum, 999 * 1000 / 2);
    println!("1000 tasks slept 500 ms each, all at once: {:.2} s on 2 worker threads", start.elapsed().as_secs_f64());
    Ok(())
}
