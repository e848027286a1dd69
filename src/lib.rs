//! Examples, integration tests and benchmarks of openco live in this package. Its library
//! holds what the demo and the benchmarks share: reading the process's own figures.

pub mod proc_stats {
    //! Process figures from `/proc/self/status`: thread count, resident memory.

    use std::fs;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    /// A numeric field of `/proc/self/status` (`Threads`, or a `Vm*` field in KiB).
    ///
    /// ```
    /// use openco_workspace::proc_stats::{status, Sampler};
    /// let sampler = Sampler::start();
    /// assert!(status("VmRSS") > 0);
    /// assert!(sampler.stop() >= 2); // this thread and the sampler
    /// ```
    pub fn status(field: &str) -> usize {
        let text = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
    }

    /// Resets `VmHWM` to the current RSS (Linux >= 4.0). False if the kernel refused.
    pub fn reset_peak_rss() -> bool {
        fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// Samples the process's thread count every millisecond, keeping the peak. The sampler
    /// thread counts itself.
    pub struct Sampler {
        stop: Arc<AtomicBool>,
        peak: Arc<AtomicUsize>,
        thread: thread::JoinHandle<()>,
    }

    impl Sampler {
        /// Starts sampling; returns after the first sample.
        pub fn start() -> Sampler {
            let stop = Arc::new(AtomicBool::new(false));
            let peak = Arc::new(AtomicUsize::new(0));
            let (s, p) = (stop.clone(), peak.clone());
            let thread = thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(status("Threads"), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(1));
                }
            });
            while peak.load(Ordering::Relaxed) == 0 {
                thread::yield_now();
            }
            Sampler { stop, peak, thread }
        }

        /// Stops sampling and returns the peak thread count seen.
        pub fn stop(self) -> usize {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.join().expect("sampler thread panicked");
            self.peak.load(Ordering::Relaxed)
        }
    }
}
