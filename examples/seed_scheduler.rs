//! The seeds' low-level single-thread scheduler example: three coroutines on one thread.
//! Coroutine 1 loops until coroutine 2 ends, coroutine 2 loops until coroutine 3 runs; each
//! loop turn `usleep`s, which suspends the coroutine (the hook), so the thread runs the
//! others meanwhile and all three finish. The seed's example needed preemption for this;
//! here the sleeps are suspensions, and what stays stuck is only what never suspends.
//!
//! `try_schedule` runs what is ready and returns; `try_timeout_schedule` also waits (in
//! `epoll_wait`, until the next timer) for the sleeping ones.
//!
//! ```text
//! $ cargo run --example seed_scheduler
//! coroutine1 launched
//! loop1
//! coroutine2 launched
//! loop2
//! coroutine3 launched
//! try_schedule: 2 coroutines still pending (they sleep)
//! loop1
//! loop2 end
//! loop1 end
//! try_timeout_schedule: 0 pending; results 1, 2, 3, all on thread "scheduler"
//! ```

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use openco::Scheduler;

static TEST_FLAG1: AtomicBool = AtomicBool::new(true);
static TEST_FLAG2: AtomicBool = AtomicBool::new(true);

fn main() -> std::io::Result<()> {
    let pair = Arc::new((Mutex::new(true), Condvar::new()));
    let pair2 = Arc::clone(&pair);
    let handler = std::thread::Builder::new().name("scheduler".to_string()).spawn(move || -> std::io::Result<()> {
        let scheduler = Scheduler::new()?;
        let one = scheduler.submit(
            || {
                println!("coroutine1 launched");
                while TEST_FLAG1.load(SeqCst) {
                    println!("loop1");
                    // SAFETY: usleep has no preconditions.
                    _ = unsafe { libc::usleep(10_000) };
                }
                println!("loop1 end");
                1
            },
            None,
        );
        let two = scheduler.submit(
            || {
                println!("coroutine2 launched");
                while TEST_FLAG2.load(SeqCst) {
                    println!("loop2");
                    // SAFETY: usleep has no preconditions.
                    _ = unsafe { libc::usleep(10_000) };
                }
                println!("loop2 end");
                TEST_FLAG1.store(false, SeqCst);
                2
            },
            None,
        );
        let three = scheduler.submit(
            || {
                println!("coroutine3 launched");
                TEST_FLAG2.store(false, SeqCst);
                3
            },
            Some(128 * 1024), // a smaller stack of its own
        );
        let pending = scheduler.try_schedule()?;
        println!("try_schedule: {pending} coroutines still pending (they sleep)");
        let pending = scheduler.try_timeout_schedule(Duration::from_secs(3))?;
        let thread = std::thread::current().name().unwrap_or_default().to_owned();
        let results = [one.join()?, two.join()?, three.join()?];
        println!(
            "try_timeout_schedule: {pending} pending; results {}, {}, {}, all on thread {thread:?}",
            results[0], results[1], results[2]
        );

        let (lock, cvar) = &*pair2;
        *lock.lock().unwrap() = false;
        cvar.notify_one();
        Ok(())
    })?;

    // Wait for the scheduler thread, as the seed does.
    let (lock, cvar) = &*pair;
    let result = cvar.wait_timeout_while(lock.lock().unwrap(), Duration::from_millis(3000), |&mut pending| pending);
    if result.unwrap().1.timed_out() {
        return Err(std::io::Error::other("the scheduler did not finish its coroutines"));
    }
    handler.join().expect("the scheduler thread panicked")?;
    assert!(!TEST_FLAG1.load(SeqCst));
    Ok(())
}
