//! `restore --time-ns`: testprogs/time_ns_victim.c reads CLOCK_MONOTONIC and
//! CLOCK_BOOTTIME (vDSO and system call) just before READY and after the go file. The
//! image waits 3 s between dump and restore; restored with --time-ns the clocks must not
//! have moved by more than 2 s (they go on from the dump), and the vDSO must agree with
//! the system calls. Restored without it, the default is unchanged: CLOCK_MONOTONIC has
//! moved by at least the 3 s the image waited. A process frozen in an absolute
//! CLOCK_MONOTONIC clock_nanosleep still sleeps what it had left.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(3);

fn victim(mode: &str, ms: u32) -> Victim {
    Victim::c("time_ns_victim")
        .named(&format!("time_ns_{mode}"))
        .arg(mode)
        .arg(ms.to_string())
}

/// dump, kill, wait, restore with `extra`: the restored victim must PASS.
fn cycle_after_a_wait(v: &Victim, extra: &[&str]) {
    let mut s = Session::start(v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    std::thread::sleep(WAIT);
    let t = s.spawn_restore(&images, extra);
    if s.wait_restored(t).is_some() {
        s.fail("the restored process finished before the go file");
    }
    s.go();
    s.finish_restored(t, "restore after a 3 s wait");
}

#[test]
fn time_ns_standalone() {
    run_control(&victim("continue", 2000));
}

#[test]
fn time_ns_clocks_go_on_from_the_dump() {
    cycle_after_a_wait(&victim("continue", 2000), &["--time-ns"]);
}

#[test]
fn time_ns_twice_clocks_go_on_from_the_second_dump() {
    // the second dump reads the clocks of a process inside a time namespace
    let v = victim("continue", 2000);
    let mut s = Session::start(&v);
    let first = s.scratch.images(1);
    let second = s.scratch.images(2);
    s.dump_ok(&first, &[]);
    s.reap_killed();
    std::thread::sleep(WAIT);
    let t1 = s.spawn_restore(&first, &["--time-ns"]);
    if s.wait_restored(t1).is_some() {
        s.fail("the restored process finished before it could be dumped a second time");
    }
    s.dump_ok(&second, &[]);
    s.wait_tool(t1, "second dump");
    s.reap_killed();
    std::thread::sleep(WAIT);
    let t2 = s.spawn_restore(&second, &["--time-ns"]);
    if s.wait_restored(t2).is_some() {
        s.fail("the restored process finished before the go file");
    }
    s.go();
    s.finish_restored(t2, "dump, restore --time-ns, dump, restore --time-ns");
}

#[test]
fn time_ns_default_restore_keeps_the_machine_clocks() {
    cycle_after_a_wait(&victim("jump", 2900), &[]);
}

/// testprogs/blocking_victim.c frozen in clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)
/// with 3 s to go: restored with --time-ns after a 3 s wait, its deadline is in the
/// namespace's time, so it still sleeps what it had left (a plain restore would find the
/// deadline passed and return at once).
#[test]
fn time_ns_absolute_sleep_still_waits_what_was_left() {
    let v = Victim::c("blocking_victim")
        .named("time_ns_clock_nanosleep")
        .arg("clock_nanosleep")
        .arg("3000");
    let mut s = Session::start(&v);
    let ready = std::time::Instant::now();
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    let before_dump = ready.elapsed();
    s.reap_killed();
    std::thread::sleep(WAIT);
    let restored = std::time::Instant::now();
    let t = s.spawn_restore(&images, &["--time-ns"]);
    s.go();
    s.finish_restored(t, "restore --time-ns of an absolute clock_nanosleep");
    let slept = restored.elapsed();
    let left = Duration::from_millis(3000).saturating_sub(before_dump);
    assert!(
        slept + Duration::from_millis(300) >= left,
        "the restored sleep took {slept:?}; {left:?} were left at dump"
    );
}
