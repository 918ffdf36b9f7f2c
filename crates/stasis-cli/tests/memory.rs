//! The address space: testprogs/mem_victim.c (mappings, contents, untouched pages, protections, madvise/mlock flags, heap/brk, stack, mm fields, auxv, exe).

mod common;

use common::*;

fn victim() -> Victim {
    Victim::c("mem_victim")
}

#[test]
fn memory_standalone() {
    run_control(&victim());
}

#[test]
fn memory_dump_restore() {
    run_cycle(&victim());
}

#[test]
fn memory_dump_restore_twice() {
    run_double_cycle(&victim());
}

#[test]
fn memory_leave_running() {
    run_leave_running(&victim());
}
