//! `restore --time-ns`: testprogs/time_ns_victim.c reads CLOCK_MONOTONIC and
//! CLOCK_BOOTTIME (vDSO and system call) just before READY and after the go file. The
//! image waits 3 s between dump and restore; restored with --time-ns the clocks must not
//! have moved by more than 2 s (they go on from the dump), and the vDSO must agree with
//! the system calls. Restored without it, the default is unchanged: CLOCK_MONOTONIC has
//! moved by at least the 3 s the image waited.

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
