//! The seeds' first examples: `task!(f, param)` submits a job with a parameter, and
//! `task!(f, param, priority)` gives it a priority (a smaller number runs first).
//!
//! `main` runs in a coroutine of a one-worker runtime. While it runs, that worker is busy, so
//! the tasks it submits queue up; when `main` waits for them, the worker runs them in
//! priority order, whatever the order of submission.
//!
//! ```text
//! $ cargo run --example seed_priority
//! task!(|param| ..., "param") ran with "param"
//! priority   0: first
//! priority   1: one
//! priority   2: two
//! priority   3: three
//! priority 128: default
//! priority 255: last
//! ```

#[openco::main(workers = 1)]
fn main() {
    let task = openco::task!(
        |param| {
            assert_eq!(param, "param");
            println!("task!(|param| ..., \"param\") ran with {param:?}");
        },
        "param"
    );
    task.join().unwrap();

    let mut tasks: Vec<_> = [(3, "three"), (1, "one"), (255, "last"), (0, "first"), (2, "two")]
        .into_iter()
        .map(|(priority, name)| openco::task!(move |name| println!("priority {priority:>3}: {name}"), name, priority))
        .collect();
    tasks.push(openco::task!(|name| println!("priority {:>3}: {name}", openco::Priority::DEFAULT.get()), "default"));
    for task in tasks {
        task.join().unwrap(); // suspends main: the worker runs the queued tasks
    }
}
