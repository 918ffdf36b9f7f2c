//! The audit login uid: testprogs/loginuid_victim.c sets its own to 4242 before READY;
//! after restore (by a tool whose own login uid differs) it still reads 4242, and a new
//! thread inherits it.

mod common;

use common::*;

fn loginuid() -> Victim {
    Victim::program("loginuid_victim", build_c("loginuid_victim", &["-pthread"]))
}

#[test]
fn loginuid_standalone() {
    run_control(&loginuid());
}

#[test]
fn loginuid_dump_restore() {
    run_cycle(&loginuid());
}

#[test]
fn loginuid_dump_restore_twice() {
    run_double_cycle(&loginuid());
}

#[test]
fn loginuid_leave_running() {
    run_leave_running(&loginuid());
}
