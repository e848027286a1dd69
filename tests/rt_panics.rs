//! Jobs that panic together on one worker: a panicking coroutine must not suspend (the panic
//! count is per thread; std's panic hook takes a lock that the futex hook would otherwise
//! turn into a suspension, letting a second coroutine panic "while processing a panic").

use std::time::Duration;

#[test]
fn many_jobs_panicking_at_once_on_one_worker() {
    let rt = openco::Builder::new().workers(1).build().unwrap();
    std::panic::set_hook(Box::new(|_| std::thread::sleep(Duration::from_micros(50))));
    for _ in 0..50 {
        let jobs: Vec<_> = (0..20).map(|i| rt.blocking(move || -> u32 { panic!("job {i}") })).collect();
        for mut job in jobs {
            let err = job.timeout_join(Duration::from_secs(10)).unwrap_err();
            assert!(err.is_panic(), "{err}");
        }
    }
    let _ = std::panic::take_hook();
}
