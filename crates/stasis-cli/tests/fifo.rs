//! Named pipes: testprogs/fifo_victim.c (three ends of one FIFO with bytes queued), also
//! after its path was unlinked.

mod common;

use common::*;

fn fifo() -> Victim {
    Victim::c("fifo_victim")
}

#[test]
fn fifo_standalone() {
    run_control(&fifo());
}

#[test]
fn fifo_dump_restore() {
    run_cycle(&fifo());
}

#[test]
fn fifo_dump_restore_twice() {
    run_double_cycle(&fifo());
}

#[test]
fn fifo_leave_running() {
    run_leave_running(&fifo());
}

fn unlinked_fifo() -> Victim {
    Victim::c("fifo_victim")
        .named("fifo_unlinked")
        .arg("unlinked")
}

#[test]
fn unlinked_fifo_dump_restore() {
    run_cycle(&unlinked_fifo());
}

#[test]
fn unlinked_fifo_dump_restore_twice() {
    run_double_cycle(&unlinked_fifo());
}

#[test]
fn unlinked_fifo_leave_running() {
    run_leave_running(&unlinked_fifo());
}
