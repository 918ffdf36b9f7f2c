//! Processes frozen inside blocking system calls: testprogs/blocking_victim.c. After
//! restore each call must be restarted or return EINTR as the kernel would do it, and
//! the timed ones must not return before their time is up.
//!
//! Not covered yet (pipes, sockets and child processes are not supported by the tool
//! yet): read on a pipe or socket, wait on a child, epoll_wait.

mod common;

use common::*;

/// Timed modes block for `ms` milliseconds from READY; signal modes wait for SIGUSR1,
/// which the harness sends once the go file exists.
fn victim(mode: &str, ms: u32) -> Victim {
    let v = Victim::c("blocking_victim")
        .named(&format!("blocking_{mode}"))
        .arg(mode)
        .arg(ms.to_string());
    if mode == "pause" || mode == "sigsuspend" {
        v.wake_signal(libc::SIGUSR1)
    } else {
        v
    }
}

macro_rules! blocking_tests {
    ($($mode:ident),*) => {$(
        mod $mode {
            use super::*;

            #[test]
            fn standalone() {
                run_control(&victim(stringify!($mode), 1000));
            }

            #[test]
            fn dump_restore() {
                run_cycle(&victim(stringify!($mode), 3000));
            }

            #[test]
            fn dump_restore_twice() {
                run_double_cycle(&victim(stringify!($mode), 5000));
            }

            #[test]
            fn leave_running() {
                run_leave_running(&victim(stringify!($mode), 3000));
            }
        }
    )*};
}

blocking_tests!(
    nanosleep,
    clock_nanosleep,
    poll,
    select,
    futex,
    pause,
    sigsuspend
);

/// The timed modes really slept their time across the cycle (the victim checks this
/// too; this checks it from outside).
#[test]
fn nanosleep_takes_its_time_across_restore() {
    let f = run_cycle(&victim("nanosleep", 3000));
    assert!(
        f.elapsed >= std::time::Duration::from_millis(3000),
        "a 3 s nanosleep finished after {:?} across dump and restore",
        f.elapsed
    );
}
