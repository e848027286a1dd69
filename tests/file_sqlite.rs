//! SQLite (rusqlite's bundled C library) inside `openco::blocking`: its file calls resolve
//! to openco's hooks, since the C code is linked into the same executable (SQLite is built
//! with `_FILE_OFFSET_BITS=64`, so it calls `open64`, `pread64`, `pwrite64`, `fstat64`,
//! `ftruncate64`, `fsync`, `unlink`...), and jobs sharing one worker all make progress.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use openco_runtime::file_io_counts;
use rusqlite::Connection;
use support::join;

fn scratch() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("openco-sqlite-{}-{}", std::process::id(), NEXT.fetch_add(1, Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime(workers: usize, io_uring: bool) -> support::LeakOnPanic {
    support::LeakOnPanic::new(support::builder(workers).io_uring(io_uring).build().unwrap())
}

/// Creates a table and inserts `rows` rows, one transaction (and so one journal and a few
/// fsyncs) each; returns the row count SQLite reads back.
fn insert_rows(path: &std::path::Path, rows: i64) -> rusqlite::Result<i64> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(20))?;
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)", ())?;
    for i in 0..rows {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])?;
    }
    conn.query_row("SELECT count(*) FROM t", (), |r| r.get(0))
}

#[test]
fn sqlite_file_calls_go_through_the_hooks() {
    for io_uring in [true, false] {
        let rt = runtime(1, io_uring);
        let dir = scratch();
        let before = file_io_counts();
        let db = dir.join("a.db");
        let count = join(rt.blocking(move || insert_rows(&db, 20))).unwrap().unwrap();
        assert_eq!(count, 20);
        let after = file_io_counts();
        let calls = (after.0 - before.0) + (after.1 - before.1);
        // Each commit writes a journal, the database and fsyncs both: far more than 20*4
        // calls if SQLite's calls reach the hooks, none if they bypassed them.
        assert!(calls >= 20 * 4, "only {calls} of SQLite's file calls went through openco's hooks");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

rt_test! {
    /// Twenty jobs on their own databases, all on the same worker(s).
    fn sqlite_jobs_on_their_own_databases(workers: usize) {
        for io_uring in [true, false] {
            let rt = runtime(workers, io_uring);
            let dir = scratch();
            let jobs: Vec<_> = (0..20)
                .map(|i| {
                    let db = dir.join(format!("db{i}.sqlite"));
                    rt.blocking(move || insert_rows(&db, 10))
                })
                .collect();
            for job in jobs {
                assert_eq!(join(job).unwrap().unwrap(), 10);
            }
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

rt_test! {
    /// Ten jobs writing to one database through their own connections: SQLite's locks make
    /// all but one wait (`busy_timeout` sleeps, which suspend), and every insert lands.
    fn sqlite_jobs_share_a_database(workers: usize) {
        for io_uring in [true, false] {
            let rt = runtime(workers, io_uring);
            let dir = scratch();
            let db = dir.join("shared.sqlite");
            insert_rows(&db, 0).unwrap();
            let jobs: Vec<_> = (0..10)
                .map(|_| {
                    let db = db.clone();
                    rt.blocking(move || insert_rows(&db, 10))
                })
                .collect();
            for job in jobs {
                assert!(join(job).unwrap().unwrap() >= 10);
            }
            assert_eq!(insert_rows(&db, 0).unwrap(), 100);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
