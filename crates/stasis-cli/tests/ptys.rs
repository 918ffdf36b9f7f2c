//! Pseudo-terminals with both sides in the tree: testprogs/ipc_pty.c drives a child
//! through a pty. The child's session has the slave as its controlling terminal, with a
//! grandchild's group in the foreground; bytes are queued both ways at dump. After
//! restore: the queued bytes are read once each (output processing not applied twice),
//! settings and window size are kept, the controlling terminal and foreground group are
//! the new pty's, and the two sides talk. The slave's index may differ (a new pty). In
//! canonical mode a whole line and a line being typed come back as they were. A slave held
//! outside the tree is refused.

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

/// Canonical mode with a whole line and a line being typed queued at dump: both come
/// back as they were (the whole line readable, the other not until it is finished).
fn canonical_victim() -> Victim {
    pty_victim().named("ipc_pty_canonical").arg("canonical")
}

tree_cycle_tests!(canonical_victim(), Outside::Compare;
    standalone canonical_standalone,
    dump_restore canonical_dump_restore,
    dump_restore_twice canonical_dump_restore_twice,
    leave_running canonical_leave_running,
);

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
