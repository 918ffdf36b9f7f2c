//! CPU state: testprogs/regs_victim.c (general-purpose, x87, SSE/AVX/AVX-512 registers, MXCSR, fs/gs base, direction flag).

mod common;

use common::*;

fn victim() -> Victim {
    Victim::c("regs_victim")
}

#[test]
fn regs_standalone() {
    run_control(&victim());
}

#[test]
fn regs_dump_restore() {
    run_cycle(&victim());
}

#[test]
fn regs_dump_restore_twice() {
    run_double_cycle(&victim());
}

#[test]
fn regs_leave_running() {
    run_leave_running(&victim());
}
