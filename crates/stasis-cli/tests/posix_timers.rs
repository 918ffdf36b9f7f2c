//! POSIX timers: testprogs/posix_timers.c makes timers with sparse ids on the REALTIME,
//! MONOTONIC, BOOTTIME and process CPU-time clocks, notifying by signal (with values), a
//! given thread, or not at all, periodic, one-shot and disarmed. After restore the same
//! ids work, with the same intervals and plausible time left; deleted ids are still free;
//! the periodic timers fire at their rate (about 10, 20 and 10 signals in 1 s, accepted
//! 6..14, 14..26, 6..14; the CPU-time one at least 5 times in 300 ms of CPU) with the
//! right si_timerid, si_value and target thread.

mod common;

use common::*;

fn posix_timers() -> Victim {
    Victim::program("posix_timers", build_c("posix_timers", &["-pthread"]))
}

#[test]
fn posix_timers_standalone() {
    run_control(&posix_timers());
}

#[test]
fn posix_timers_dump_restore() {
    run_cycle(&posix_timers());
}

#[test]
fn posix_timers_dump_restore_twice() {
    run_double_cycle(&posix_timers());
}

#[test]
fn posix_timers_leave_running() {
    run_leave_running(&posix_timers());
}

/// Restored into a new PID namespace: the thread-targeted timer is made again with the
/// thread's id inside the namespace.
#[test]
fn posix_timers_in_a_new_pid_namespace() {
    let v = posix_timers().named("posix_timers_pidns");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let t = s.spawn_restore(&images, &["--new-pidns"]);
    // The copy's host PID differs from the original's: give it time to run, then go.
    std::thread::sleep(std::time::Duration::from_millis(500));
    s.go();
    s.finish_restored(t, "restore --new-pidns");
}
