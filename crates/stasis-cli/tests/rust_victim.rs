//! A Rust program: testprogs/victim_rust.rs (heap collections, closures, thread_local, an open File).

mod common;

use common::*;

fn victim() -> Victim {
    Victim::rust("victim_rust")
}

#[test]
fn rust_victim_standalone() {
    run_control(&victim());
}

#[test]
fn rust_victim_dump_restore() {
    run_cycle(&victim());
}

#[test]
fn rust_victim_dump_restore_twice() {
    run_double_cycle(&victim());
}

#[test]
fn rust_victim_leave_running() {
    run_leave_running(&victim());
}
