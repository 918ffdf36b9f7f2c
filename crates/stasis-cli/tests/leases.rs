//! File leases (fcntl F_SETLEASE): testprogs/lease_victim.c holds a read and a write lease.
//! With --file-locks they are dumped and taken again by the process that held them; after
//! restore F_GETLEASE shows them and a conflicting open breaks them (SIGIO) as before.
//! A child sharing the descriptions keeps sharing them. Without the option, or with a
//! lease whose holder is not in the tree, the dump is refused and the process goes on.

mod common;

use common::tree::*;
use common::*;

fn leases(mode: &str) -> Victim {
    Victim::c("lease_victim")
        .named(&format!("lease_{mode}"))
        .arg(mode)
}

#[test]
fn leases_standalone() {
    run_control(&leases("leases"));
}

#[test]
fn leases_dump_restore() {
    let mut s = Session::start(&leases("leases"));
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--file-locks"]);
    s.reap_killed();
    let tool = s.spawn_restore(&images, &["--file-locks"]);
    if s.wait_restored(tool).is_some() {
        s.fail("the restored process finished before the go file");
    }
    s.go();
    s.finish_restored(tool, "dump --file-locks, kill, restore");
}

/// The leases a restore took are found again by the next dump.
#[test]
fn leases_dump_restore_twice() {
    let mut s = Session::start(&leases("leases"));
    let (first, second) = (s.scratch.images(1), s.scratch.images(2));
    s.dump_ok(&first, &["--file-locks"]);
    s.reap_killed();
    let t1 = s.spawn_restore(&first, &[]);
    if s.wait_restored(t1).is_some() {
        s.fail("the restored process finished before the second dump");
    }
    s.dump_ok(&second, &["--file-locks"]);
    s.wait_tool(t1, "second dump");
    s.reap_killed();
    let t2 = s.spawn_restore(&second, &[]);
    if s.wait_restored(t2).is_some() {
        s.fail("the restored process finished before the go file");
    }
    s.go();
    s.finish_restored(t2, "dump, restore, dump, restore");
}

fn refused(v: &Victim, extra: &[&str], words: &[&str], what: &str) {
    let mut t = Tree::start(v);
    let images = t.images(1);
    let r = t.s().dump(&images, extra);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, words) {
        t.fail(&format!(
            "{what}: the dump must fail naming {words:?}\n{}",
            r.report()
        ));
    }
    t.s().assert_running_untraced("after the refused dump");
    t.s().go();
    t.s().finish_original("the victim after a refused dump");
    t.finish();
}

#[test]
fn leases_without_the_option_are_refused() {
    refused(
        &leases("leases"),
        &[],
        &["--file-locks"],
        "without --file-locks",
    );
}

/// A child shares the descriptions (its fdinfo shows the leases with the parent's PID):
/// the parent takes them again, the child keeps sharing the descriptions.
#[test]
fn leases_shared_with_a_child() {
    let mut t = Tree::start(&leases("shared"));
    let images = t.images(1);
    t.s().dump_ok(&images, &["--file-locks"]);
    let pids = t.note_image(&images);
    t.s().reap_killed();
    t.wait_gone_all(&pids, "after the dump killed the tree");
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    t.check_same_tree("after restore");
    t.s().go();
    t.s().finish_restored(tool, "leases shared with a child");
    t.finish();
}

/// The lease was taken by a child that has exited: nobody in the tree can take it again.
#[test]
fn lease_whose_holder_is_gone_is_refused() {
    refused(
        &leases("holder-gone"),
        &["--file-locks"],
        &["lease", "not in the tree"],
        "a lease taken by a process that has exited",
    );
}
