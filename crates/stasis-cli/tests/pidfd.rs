//! pidfds: testprogs/pidfd_victim.c holds pidfds of its two children (one
//! PIDFD_NONBLOCK), of its parent outside the tree (the test process), and one child
//! holds a pidfd of the victim. After restore each refers to the same (restored)
//! process: fdinfo names it, pidfd_send_signal reaches it, poll and waitid(P_PIDFD)
//! collect the children's exits. A pidfd of a process outside the tree that is gone at
//! restore makes the restore fail before anything is created.

mod common;

use common::tree::*;
use common::*;

fn pidfd() -> Victim {
    Victim::c("pidfd_victim")
}

#[test]
fn pidfd_standalone() {
    tree_control(&pidfd());
}

#[test]
fn pidfd_dump_restore() {
    tree_cycle(&pidfd(), Outside::Compare);
}

#[test]
fn pidfd_dump_restore_twice() {
    tree_double_cycle(&pidfd(), Outside::Compare);
}

#[test]
fn pidfd_of_an_outside_process_gone_at_restore_is_refused() {
    let mut outsider = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("start sleep");
    let v = pidfd().named("pidfd_gone").arg(outsider.id().to_string());
    let mut t = Tree::start(&v);
    let images = t.dump_kill(1);
    let _ = outsider.kill();
    let _ = outsider.wait();
    t.s().restore_must_fail(
        &images,
        &["gone"],
        PidRule::NeverAppears,
        "restore of a pidfd of a process that is gone",
    );
    t.finish();
}

#[test]
fn pidfd_leave_running() {
    tree_leave_running(&pidfd(), Outside::Compare, Untraced::EveryProcess);
}
