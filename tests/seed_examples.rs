//! The seed README's examples, as close to verbatim as openco's API allows, each as the body
//! of a `#[openco::main]` function that a test calls. Differences from the seed:
//! - `timeout_join` takes `&mut self` (the handle stays usable after a timeout), so the
//!   handle is bound with `let mut`;
//! - `maybe_grow!` returns the closure's value, not an `io::Result` (as `stacker::maybe_grow`;
//!   it panics if no segment can be mapped), so there is no `.expect(..)` after it.

use std::hint::black_box;

/// "Create a task".
#[openco::main]
fn task() {
    _ = openco::task!(
        |param| {
            assert_eq!(param, "param");
        },
        "param"
    );
}

/// "Create a task with a priority" (a smaller number runs first).
#[openco::main]
fn task_with_priority() {
    _ = openco::task!(
        |param| {
            assert_eq!(param, "param");
        },
        "param",
        1 /* smaller runs first */
    );
}

/// "Wait for a task to finish, or time out".
#[openco::main]
fn timeout_join() {
    let mut task = openco::task!(
        |param| {
            assert_eq!(param, "param");
        },
        "param",
        1
    );
    task.timeout_join(std::time::Duration::from_secs(1)).expect("timeout");
}

/// "Scalable stack", on a 128 KiB coroutine stack (the seed's default is its own).
#[openco::main(stack_size = 131072)]
fn scalable_stack() {
    openco::task!(
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
            // Use ~500KB of stack.
            recurse(50, &mut [0; 10240]);
        },
        ()
    )
    .join()
    .expect("the recursion ran"); // not in the seed: here the test waits for the task
}

/// "Arbitrary use of blocking syscalls", with a shorter sleep.
#[openco::main]
fn blocking_syscall_in_main() {
    assert!(openco::in_coroutine());
    std::thread::sleep(std::time::Duration::from_millis(10));
}

#[test]
fn seed_task() {
    task();
}

#[test]
fn seed_task_with_priority() {
    task_with_priority();
}

#[test]
fn seed_timeout_join() {
    timeout_join();
}

#[test]
fn seed_scalable_stack() {
    scalable_stack();
}

#[test]
fn seed_blocking_syscall_in_main() {
    blocking_syscall_in_main();
}
