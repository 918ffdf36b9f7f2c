//! Pseudo-terminals with both sides in the tree: testprogs/ipc_pty.c drives a child
//! through a pty. The child's session has the slave as its controlling terminal, with a
//! grandchild's group in the foreground; bytes are queued both ways at dump. After
//! restore: the queued bytes are read once each (output processing not applied twice),
//! settings and window size are kept, the controlling terminal and foreground group are
//! the new pty's, and the two sides talk. The slave's index may differ (a new pty). In
//! canonical mode a pending line is refused at dump, and so is a slave held outside the tree.

mod common;

use common::tree::*;
use common::*;

fn pty_victim() -> Victim {
    Victim::c("ipc_pty")
}

tree_cycle_tests!(pty_victim(), Outside::Compare;
    standalone pty_standalone,
    dump_restore pty_dump_restore,
    dump_restore_twice pty_dump_restore_twice,
    leave_running pty_leave_running,
);

/// A line typed but not read yet in canonical mode cannot be taken out and put back
/// unchanged: the dump is refused, and the tree goes on as without a dump.
#[test]
fn canonical_line_pending_is_refused() {
    let v = pty_victim().named("ipc_pty_canonical").arg("canonical");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    let run = s.dump(&images, &[]);
    run.assert_no_panic();
    if run.code() != 1 || !mentions(&run.stderr, &["canonical"]) {
        let rep = run.report();
        s.fail(&format!(
            "expected the dump to fail (exit 1) naming the pending line\n{rep}"
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("after a refused dump");
}

/// A real program under a pty: testprogs/pty_bash.py drives an interactive bash (job
/// control, readline) through `pty.fork()`, with a command's output left unread at dump;
/// after restore bash still has its variable, pid and window size, runs a foreground
/// job, and exits with 7.
fn bash_under_pty() -> Victim {
    Victim::program("pty_bash", python3()).arg(testprogs_dir().join("pty_bash.py"))
}

tree_cycle_tests!(bash_under_pty(), Outside::Compare;
    standalone bash_pty_standalone,
    dump_restore bash_pty_dump_restore,
    dump_restore_twice bash_pty_dump_restore_twice,
    leave_running bash_pty_leave_running,
);

/// A pty master in the tree whose slave a process outside the tree also holds
/// (testprogs/ipc_extpeer.c pty): restoring would leave that process on the old pty, cut
/// off, so the dump is refused naming the slave and the holder, and both go on.
#[test]
fn slave_held_outside_the_tree_is_refused() {
    dump_refused("pty", &["outside the dumped tree"]);
}
