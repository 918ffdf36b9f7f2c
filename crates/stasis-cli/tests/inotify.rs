//! inotify: testprogs/inotify_victim.c (watches with the same descriptors, events still
//! delivered for each).

mod common;

use common::*;

fn inotify() -> Victim {
    Victim::c("inotify_victim")
}

#[test]
fn inotify_standalone() {
    run_control(&inotify());
}

#[test]
fn inotify_dump_restore() {
    run_cycle(&inotify());
}

#[test]
fn inotify_dump_restore_twice() {
    run_double_cycle(&inotify());
}

#[test]
fn inotify_leave_running() {
    run_leave_running(&inotify());
}
