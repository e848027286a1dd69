//! The seeds' "scalable stack" example: `maybe_grow!` at each level of a recursion moves the
//! rest of it to a new stack segment when the current stack runs low, without copying.
//!
//! The coroutines here have 128 KiB stacks. The seed's recursion (50 levels of 10 KiB frames,
//! about 500 KiB) fits only thanks to `maybe_grow!`; so does a 256 MiB deep one.
//!
//! ```text
//! $ cargo run --example seed_scalable_stack
//! [task] launched
//! [task] 50 levels of 10 KiB frames on a 128 KiB coroutine stack: done
//! [task] 16384 levels of 16 KiB frames (256 MiB of stack): done in 130 ms
//! ```

use std::hint::black_box;
use std::time::Instant;

#[openco::main(workers = 1, stack_size = 131072)]
fn main() {
    let task = openco::task!(
        |_| {
            fn recurse(i: u32, p: &mut [u8; 10240]) {
                openco::maybe_grow!(|| {
                    // Ensure the stack allocation isn't optimized away.
                    black_box(&mut *p);
                    if i > 0 {
                        recurse(i - 1, &mut [0; 10240]);
                    }
                })
            }
            println!("[task] launched");
            // Use ~500 KiB of stack.
            recurse(50, &mut [0; 10240]);
            println!("[task] 50 levels of 10 KiB frames on a 128 KiB coroutine stack: done");
        },
        ()
    );
    task.join().unwrap();

    let deep = openco::task!(
        |levels| {
            /// Returns the number of levels below this one.
            fn recurse(i: u32) -> u32 {
                // A 64 KiB red zone (one level needs about 16 KiB), 16 MiB segments.
                openco::maybe_grow!(64 * 1024, 16 * 1024 * 1024, || {
                    let mut frame = [1u8; 16 * 1024];
                    black_box(&mut frame);
                    if i == 0 {
                        0
                    } else {
                        recurse(i - 1) + u32::from(frame[0])
                    }
                })
            }
            let start = Instant::now();
            assert_eq!(recurse(levels - 1), levels - 1);
            start.elapsed()
        },
        16 * 1024
    );
    let took = deep.join().unwrap();
    println!("[task] 16384 levels of 16 KiB frames (256 MiB of stack): done in {} ms", took.as_millis());
}
