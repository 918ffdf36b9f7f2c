//! Seccomp: testprogs/seccomp_victim.c, with two stacked filters in the process and a
//! third installed by one thread alone; after restore every filter still denies what it
//! denied, only where it did. testprogs/seccomp_tree.c (filters inherited over fork,
//! and synchronised over threads with TSYNC) and testprogs/seccomp_strict.c (a child in
//! strict mode) are process trees.

mod common;

use common::tree::*;
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

/// testprogs/seccomp_tree.c: a filter inherited by a forked child (plus one of the
/// child's own), and a filter synchronised over three threads with TSYNC; after restore
/// a new TSYNC filter must still succeed, which needs the threads' filters shared.
fn seccomp_tree() -> Victim {
    Victim::program("seccomp_tree", build_c("seccomp_tree", &["-pthread"]))
}

/// testprogs/seccomp_strict.c: a child in strict mode blocked in read() on a pipe;
/// after restore it still serves a request with read/write only, and dies of SIGKILL
/// when it calls getpid.
fn seccomp_strict() -> Victim {
    Victim::c("seccomp_strict")
}

// Trees: the tree helpers reap the children the dump killed before restoring.

#[test]
fn seccomp_tree_standalone() {
    tree_control(&seccomp_tree());
}

#[test]
fn seccomp_tree_dump_restore() {
    tree_cycle(&seccomp_tree(), Outside::Compare);
}

#[test]
fn seccomp_tree_dump_restore_twice() {
    tree_double_cycle(&seccomp_tree(), Outside::Compare);
}

#[test]
fn seccomp_tree_leave_running() {
    tree_leave_running(&seccomp_tree(), Outside::Compare, Untraced::EveryProcess);
}

#[test]
fn seccomp_strict_standalone() {
    tree_control(&seccomp_strict());
}

#[test]
fn seccomp_strict_dump_restore() {
    tree_cycle(&seccomp_strict(), Outside::Compare);
}

#[test]
fn seccomp_strict_dump_restore_twice() {
    tree_double_cycle(&seccomp_strict(), Outside::Compare);
}

#[test]
fn seccomp_strict_leave_running() {
    tree_leave_running(&seccomp_strict(), Outside::Compare, Untraced::EveryProcess);
}
