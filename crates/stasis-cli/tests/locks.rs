//! File locks: testprogs/locks_victim.c holds POSIX locks (two in the parent, one in its
//! child, on one file through one shared description), an OFD lock, an exclusive flock and
//! a shared flock on a description the child shares. `dump --file-locks` saves them; after
//! restore a helper forked by the victim finds each held, with its type, range and owner.
//! Without `--file-locks` the dump fails naming the option, and the tree goes on unharmed
//! with its locks.

mod common;

use common::tree::*;
use common::*;

fn locks() -> Victim {
    Victim::c("locks_victim")
}

#[test]
fn locks_standalone() {
    tree_control(&locks());
}

fn dump_kill_with_locks(t: &mut Tree, n: usize) -> std::path::PathBuf {
    let images = t.images(n);
    t.s().dump_ok(&images, &["--file-locks"]);
    let pids = t.note_image(&images);
    t.s().reap_killed();
    t.wait_gone_all(&pids, "after the dump killed the tree");
    images
}

#[test]
fn locks_dump_restore() {
    let mut t = Tree::start(&locks());
    let images = dump_kill_with_locks(&mut t, 1);
    let tool = t.s().spawn_restore(&images, &["--file-locks"]);
    t.s().wait_restored(tool);
    t.check_same_tree("after restore");
    t.s().go();
    t.s()
        .finish_restored(tool, "dump --file-locks, kill, restore");
    t.finish();
}

#[test]
fn locks_dump_restore_twice() {
    let mut t = Tree::start(&locks());
    let first = dump_kill_with_locks(&mut t, 1);
    let t1 = t.s().spawn_restore(&first, &[]);
    t.s().wait_restored(t1);
    let second = t.images(2);
    t.s().dump_ok(&second, &["--file-locks"]);
    let pids = t.note_image(&second);
    let r1 = t.s().wait_tool(t1, "second dump");
    if r1.code() != 128 + libc::SIGKILL {
        let rep = r1.report();
        t.fail(&format!(
            "the first restore tool exited with {}\n{rep}",
            r1.code()
        ));
    }
    t.s().reap_killed();
    t.wait_gone_all(&pids, "after the second dump");
    let t2 = t.s().spawn_restore(&second, &[]);
    t.s().wait_restored(t2);
    t.check_same_tree("after the second restore");
    t.s().go();
    t.s().finish_restored(t2, "dump, restore, dump, restore");
    t.finish();
}

#[test]
fn held_locks_without_the_option_are_refused() {
    let mut t = Tree::start(&locks());
    t.expect_refused_dump(&[], "--file-locks");
}
