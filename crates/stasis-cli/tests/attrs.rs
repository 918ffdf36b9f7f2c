//! Task attributes: testprogs/attrs_victim.c (comm, cwd, umask, rlimits, personality,
//! credentials and capabilities, signal dispositions, blocked mask, sigaltstack, prctl
//! flags, scheduling, oom_score_adj, rseq) and testprogs/sigpending_victim.c (signals
//! pending at dump time, with their siginfo and order).

mod common;

use common::*;

fn attrs() -> Victim {
    Victim::c("attrs_victim")
}

fn pending() -> Victim {
    Victim::c("sigpending_victim")
}

#[test]
fn attrs_standalone() {
    run_control(&attrs());
}

#[test]
fn attrs_dump_restore() {
    run_cycle(&attrs());
}

#[test]
fn attrs_dump_restore_twice() {
    run_double_cycle(&attrs());
}

#[test]
fn attrs_leave_running() {
    run_leave_running(&attrs());
}

#[test]
fn pending_signals_standalone() {
    run_control(&pending());
}

#[test]
fn pending_signals_dump_restore() {
    run_cycle(&pending());
}

#[test]
fn pending_signals_dump_restore_twice() {
    run_double_cycle(&pending());
}

#[test]
fn pending_signals_leave_running() {
    run_leave_running(&pending());
}
