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
    let done = run_cycle(&unlinked_fifo());
    // An older stasis would open the old path instead: the image says it needs more.
    let images = done.scratch().images(1);
    let r = run_stasis(
        &done.scratch().dir,
        "show",
        &["show", images.to_str().unwrap()],
        std::time::Duration::from_secs(60),
    );
    assert!(
        r.code() == 0 && r.stdout.contains("requires        fifo-unlinked"),
        "stasis show does not list the feature the image requires\n{}",
        r.report()
    );
}

#[test]
fn unlinked_fifo_dump_restore_twice() {
    run_double_cycle(&unlinked_fifo());
}

#[test]
fn unlinked_fifo_leave_running() {
    run_leave_running(&unlinked_fifo());
}
