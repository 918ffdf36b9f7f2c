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

/// Busy: no sleep between rounds, so the dump stops the process in user mode between
/// two instructions (rax, rcx, r11 and rflags as they are there, not as a syscall left
/// them).
fn busy() -> Victim {
    Victim::c("regs_victim")
        .named("regs_busy")
        .arg("400000")
        .arg("0")
}

#[test]
fn regs_busy_dump_restore() {
    run_cycle(&busy());
}

#[test]
fn regs_busy_dump_restore_twice() {
    run_double_cycle(&busy());
}

#[test]
fn regs_busy_leave_running() {
    run_leave_running(&busy());
}
