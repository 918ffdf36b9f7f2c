//! The fd table: testprogs/files_victim.c (regular files with offsets and flags, dup'ed fds, directory, O_PATH, character devices).

mod common;

use common::*;

fn victim() -> Victim {
    Victim::c("files_victim")
}

#[test]
fn files_standalone() {
    run_control(&victim());
}

#[test]
fn files_dump_restore() {
    run_cycle(&victim());
}

#[test]
fn files_dump_restore_twice() {
    run_double_cycle(&victim());
}

#[test]
fn files_leave_running() {
    run_leave_running(&victim());
}
