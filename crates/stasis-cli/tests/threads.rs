//! Multi-threaded processes: every thread comes back with its tid, name, TLS, blocked
//! mask, nice value and sigaltstack, and threads blocked in futex waits (mutexes,
//! condition variables, barriers, raw FUTEX_WAIT, std channels, park), nanosleep and
//! poll go on as if nothing happened.
//!
//! - testprogs/thread_sync.c: 8 pthreads with mutexes and condition variables (a token
//!   ring, a shared sum), one each in cond wait, nanosleep, poll and FUTEX_WAIT; signals
//!   pending for single threads and for the process, a robust mutex held by a thread
//!   that ends; `thread_sync_creds` runs it with one thread that has its own
//!   credentials;
//! - testprogs/threads_victim.rs: std threads, mpsc and sync channels, Arc<Mutex<..>>,
//!   Condvar, RwLock, park, sleep;
//! - testprogs/thread_many.c: 1000 threads with 64 KiB stacks, each blocked on a condition
//!   variable or a barrier;
//! - testprogs/thread_sigtrap.c: a SIGTRAP handler (or, `thread_sigtrap_ignore`, SIGTRAP
//!   ignored), threads with and without SIGTRAP blocked, one with a SIGTRAP pending: the
//!   restore's remote calls that stop at an int3 must leave all of it as it was.
//!
//! Each victim checks itself after restore; each runs standalone (proving the victim),
//! through dump/kill/restore, twice, and with --leave-running.

mod common;

use std::time::Duration;

use common::*;

fn thread_sync() -> Victim {
    Victim::program("thread_sync", build_c("thread_sync", &["-pthread"]))
}

/// thread_sync with one thread whose euid and egid differ from the others'.
fn thread_sync_creds() -> Victim {
    thread_sync().named("thread_sync_creds").arg("creds")
}

fn threads_rust() -> Victim {
    Victim::rust("threads_victim")
}

fn thread_many() -> Victim {
    Victim::program("thread_many", build_c("thread_many", &["-pthread"]))
        .arg("1000")
        .ready_timeout(Duration::from_secs(60))
}

fn thread_sigtrap() -> Victim {
    Victim::program("thread_sigtrap", build_c("thread_sigtrap", &["-pthread"]))
}

fn thread_sigtrap_ignore() -> Victim {
    thread_sigtrap()
        .named("thread_sigtrap_ignore")
        .arg("ignore")
}

/// /proc/PID/task of the restored process lists the threads the victim had at READY.
fn task_ids(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

macro_rules! thread_tests {
    ($($name:ident => $victim:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn standalone() {
                run_control(&$victim);
            }

            #[test]
            fn dump_restore() {
                run_cycle(&$victim);
            }

            #[test]
            fn dump_restore_twice() {
                run_double_cycle(&$victim);
            }

            #[test]
            fn leave_running() {
                run_leave_running(&$victim);
            }
        }
    )*};
}

thread_tests!(
    thread_sync => thread_sync(),
    thread_sync_creds => thread_sync_creds(),
    threads_rust => threads_rust(),
    thread_many => thread_many(),
    thread_sigtrap => thread_sigtrap(),
    thread_sigtrap_ignore => thread_sigtrap_ignore(),
);

/// Seen from outside: the restored process has exactly the tids the original had at
/// the dump, each with its name (the victim checks the same from inside).
#[test]
fn thread_sync_same_tids_and_names_seen_from_outside() {
    let v = thread_sync();
    let mut s = Session::start(&v);
    let before = task_ids(s.pid);
    let names_before: Vec<Option<String>> = before
        .iter()
        .map(|t| {
            std::fs::read_to_string(format!("/proc/{}/task/{t}/comm", s.pid))
                .ok()
                .map(|c| c.trim_end().to_string())
        })
        .collect();
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let t = s.spawn_restore(&images, &[]);
    s.wait_restored(t);
    let after = task_ids(s.pid);
    let names_after: Vec<Option<String>> = after
        .iter()
        .map(|t| {
            std::fs::read_to_string(format!("/proc/{}/task/{t}/comm", s.pid))
                .ok()
                .map(|c| c.trim_end().to_string())
        })
        .collect();
    if before != after || names_before != names_after {
        s.fail(&format!(
            "threads before the dump: {before:?} {names_before:?}\nthreads after restore: {after:?} {names_after:?}"
        ));
    }
    s.go();
    s.finish_restored(t, "dump, kill, restore");
}
