//! Seccomp: testprogs/seccomp_victim.c, with two stacked filters in the process and a
//! third installed by one thread alone; after restore every filter still denies what it
//! denied, only where it did.

mod common;

use common::*;

fn seccomp() -> Victim {
    Victim::program("seccomp_victim", build_c("seccomp_victim", &["-pthread"]))
}

#[test]
fn seccomp_standalone() {
    run_control(&seccomp());
}

#[test]
fn seccomp_dump_restore() {
    run_cycle(&seccomp());
}

#[test]
fn seccomp_dump_restore_twice() {
    run_double_cycle(&seccomp());
}

#[test]
fn seccomp_leave_running() {
    run_leave_running(&seccomp());
}
