//! Process trees: `stasis dump -t PID` takes PID and all its descendants, and restore
//! brings every process back with its PID, parent, session, process group and state
//! (zombies stay zombies with their exit status, stopped processes stay stopped), and
//! open file descriptions shared by inheritance stay shared.
//!
//! - testprogs/tree_sessions.c: depth 3, two sessions, four process groups, a zombie;
//! - testprogs/tree_stopped.c: children stopped by SIGSTOP and SIGTSTP, continued later;
//! - testprogs/tree_cow.c: 256 MiB shared copy-on-write by a parent, child and
//!   grandchild, each with pages of its own; contents and memory use (Pss) after restore.
//! - testprogs/shmem_tree.c: shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS) with pages
//!   written by a child that has ended (held by the memory object only): every page comes
//!   back, the memory is still one object, and the image stores it once;
//! - testprogs/tree_clone_share.c: an fd table (CLONE_FILES) shared by three processes
//!   and fs information (CLONE_FS) shared by two, still shared after restore;
//! - testprogs/tree_shared_fd.c: an inherited fd whose offset parent and child move in
//!   turns, an fd only the child still has, same-file fds that are not shared;
//! - testprogs/tree_orphans.c: orphans re-parented to a child subreaper in the tree, a
//!   process group and a session whose leaders have exited (`subreaper`: only an orphan
//!   re-parented to the subreaper, in the subreaper's group);
//! - testprogs/tree_vfork.c: a vfork child still sharing its parent's memory;
//! - testprogs/tree_bash.sh: bash with background jobs and `wait`;
//! - testprogs/tree_storm.c: a fork/exit storm dumped repeatedly with --leave-running:
//!   every dump succeeds or fails cleanly, the storm goes on and PASSes, and one image is
//!   restored and PASSes.
//!
//! The harness's cycles handle one process; a tree needs more: after a dump kills the
//! tree, the other processes are re-parented to the test process (a child subreaper) and
//! must be reaped here before their PIDs are free for the restore. The helpers below do
//! that (the tree's PIDs come from the image's manifest), compare the tree seen from
//! /proc before and after, and kill and reap whatever is left if a test fails.

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use common::tree::*;
use common::*;

/// The storm burns through PIDs quickly and would take the PIDs of other trees between
/// their dump and their restore: it runs alone; the other tests share.
static PID_LOCK: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    PID_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    PID_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

// ---- victims ---------------------------------------------------------------------------------

fn sessions() -> Victim {
    Victim::c("tree_sessions")
}

fn stopped() -> Victim {
    Victim::c("tree_stopped")
}

fn shared_fd() -> Victim {
    Victim::c("tree_shared_fd")
}

fn shmem() -> Victim {
    Victim::c("shmem_tree")
}

fn cow() -> Victim {
    Victim::c("tree_cow")
}

fn clone_share() -> Victim {
    Victim::c("tree_clone_share")
}

fn orphans() -> Victim {
    Victim::c("tree_orphans")
}

fn subreaper() -> Victim {
    Victim::c("tree_orphans")
        .named("tree_subreaper")
        .arg("subreaper")
}

fn vfork() -> Victim {
    Victim::c("tree_vfork")
}

fn bash() -> Victim {
    Victim::program("tree_bash", "/bin/bash").arg(testprogs_dir().join("tree_bash.sh"))
}

fn storm() -> Victim {
    Victim::program("tree_storm", build_c("tree_storm", &["-pthread"]))
}

macro_rules! tree_tests {
    ($($name:ident => $victim:expr, $outside:expr);* $(;)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn standalone() {
                let _g = shared();
                tree_control(&$victim);
            }

            #[test]
            fn dump_restore() {
                let _g = shared();
                tree_cycle(&$victim, $outside);
            }

            #[test]
            fn dump_restore_twice() {
                let _g = shared();
                tree_double_cycle(&$victim, $outside);
            }

            #[test]
            fn leave_running() {
                let _g = shared();
                tree_leave_running(&$victim, $outside, Untraced::EveryProcess);
            }
        }
    )*};
}

tree_tests!(
    sessions => sessions(), Outside::Compare;
    stopped => stopped(), Outside::Compare;
    shared_fd => shared_fd(), Outside::Compare;
    cow => cow(), Outside::Compare;
    shmem => shmem(), Outside::Compare;
    clone_share => clone_share(), Outside::Compare;
    orphans => orphans(), Outside::Compare;
    subreaper => subreaper(), Outside::Compare;
    bash => bash(), Outside::VictimOnly;
);

/// Shared anonymous memory is stored once per dump (by the first process that maps it),
/// the pages that only the memory object holds included: 6 MiB and a page were written,
/// by three processes.
#[test]
fn shmem_object_is_stored_once() {
    let _g = shared();
    let mut t = Tree::start(&shmem());
    let images = t.dump_kill(1);
    let stored: u64 = fs::read_dir(&images)
        .expect("read the image directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let mib = 1u64 << 20;
    assert!(
        (6 * mib..8 * mib).contains(&stored),
        "the page files hold {stored} bytes; expected the 6 MiB written once, plus a little"
    );
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    t.s().go();
    t.s()
        .finish_restored(tool, "restore of shared memory stored once");
    t.finish();
}

/// A vfork child still sharing its parent's memory. The parent waits inside vfork and
/// cannot be frozen until the child ends, so the dump takes the child first, then ends it
/// (which lets the parent stop); restore makes the parent call vfork again with the
/// child's PID. Only a dump that kills the tree can do that: with --leave-running the dump
/// is refused quickly, says why, and the tree goes on as before.
mod vfork {
    use super::*;

    #[test]
    fn standalone() {
        let _g = shared();
        tree_control(&vfork());
    }

    #[test]
    fn dump_restore() {
        let _g = shared();
        tree_cycle(&vfork(), Outside::Compare);
    }

    #[test]
    fn dump_restore_twice() {
        let _g = shared();
        tree_double_cycle(&vfork(), Outside::Compare);
    }

    #[test]
    fn leave_running_is_refused_and_the_tree_goes_on() {
        let _g = shared();
        let mut t = Tree::start(&vfork());
        t.expect_refused_dump(&["--leave-running"], "vfork");
    }
}

/// Children sharing their parent's memory without being threads (clone(CLONE_VM)), one
/// with the signal handlers too, one with the fd table: they come back made by their
/// parent in its restored address space, sharing what they shared. One that has a child
/// of its own is refused, naming CLONE_VM, and the tree goes on unharmed.
mod clone_vm {
    use super::*;

    fn victim() -> Victim {
        clone_share().arg("vm")
    }

    #[test]
    fn standalone() {
        let _g = shared();
        tree_control(&victim());
    }

    #[test]
    fn dump_restore() {
        let _g = shared();
        tree_cycle(&victim(), Outside::Compare);
    }

    #[test]
    fn dump_restore_twice() {
        let _g = shared();
        tree_double_cycle(&victim(), Outside::Compare);
    }

    #[test]
    fn leave_running() {
        let _g = shared();
        tree_leave_running(&victim(), Outside::Compare, Untraced::EveryProcess);
    }

    #[test]
    fn with_a_child_of_its_own_is_refused_and_the_tree_goes_on() {
        let _g = shared();
        let mut t = Tree::start(&clone_share().arg("vm-child"));
        t.expect_refused_dump(&[], "CLONE_VM");
    }
}

/// The zombie comes back as a zombie: seen from outside, before the go file, it is a
/// zombie child of the restored root (the victim then reaps it and checks status 42).
#[test]
fn sessions_zombie_is_a_zombie_after_restore() {
    let _g = shared();
    let mut t = Tree::start(&sessions());
    let root = t.members[0].0;
    let zombies: Vec<i32> = t
        .members
        .iter()
        .filter(|m| m.2.state == 'Z')
        .map(|m| m.0)
        .collect();
    if zombies.len() != 1 {
        t.fail(&format!("expected one zombie at READY, found {zombies:?}"));
    }
    let images = t.dump_kill(1);
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    let z = ids_of(zombies[0]);
    if !z.is_some_and(|i| i.state == 'Z' && i.ppid == root) {
        t.fail(&format!(
            "after restore the zombie {} is {z:?}, expected a zombie child of {root}",
            zombies[0]
        ));
    }
    t.s().go();
    t.s().finish_restored(tool, "dump, kill, restore");
    t.finish();
}

/// The storm is dumped at least MIN times, then until a dump has succeeded (at most
/// MAX times in all).
const MIN_STORM_DUMPS: usize = 8;
const MAX_STORM_DUMPS: usize = 40;

#[test]
fn storm_standalone() {
    let _g = exclusive();
    let mut t = Tree::start(&storm());
    t.members.truncate(1);
    t.reap_comm = Some(t.members[0].1.clone());
    t.s().go();
    t.s().finish_original("standalone run (no dump)");
    t.finish();
}

/// Dumps a fork/exit storm with --leave-running again and again: each dump succeeds or
/// fails cleanly (exit 1 with a message, no panic), the storm keeps running untraced
/// and in the end PASSes (every child reaped with its status); at least one dump must
/// succeed, and the latest successful image is restored and PASSes too. (The storm runs
/// alone, so the PIDs of that image are free again once the original storm ended.)
#[test]
fn storm_dumped_while_running() {
    let _g = exclusive();
    let mut t = Tree::start(&storm());
    // the children seen at READY are long gone (and their PIDs reused) by the end
    t.members.truncate(1);
    t.reap_comm = Some(t.members[0].1.clone());
    let mut ok: Option<(PathBuf, FilesAtDump)> = None;
    let mut summary = Vec::new();
    for k in 1..=MAX_STORM_DUMPS {
        if k > MIN_STORM_DUMPS && ok.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let images = t.images(k);
        let r = t.s().dump(&images, &["--leave-running"]);
        r.assert_no_panic();
        match r.code() {
            0 => {
                let files = FilesAtDump::take(t.s());
                t.note_image(&images);
                summary.push(format!("dump {k}: ok"));
                ok = Some((images, files));
            }
            1 if r.stderr.contains("error") => {
                summary.push(format!("dump {k}: failed: {}", r.stderr.trim()));
            }
            c => {
                let rep = r.report();
                t.fail(&format!(
                    "dump {k} of the storm exited with {c}; expected 0, or 1 with an error message\n{rep}"
                ));
            }
        }
        t.s()
            .assert_running_untraced(&format!("after dump {k} --leave-running"));
        t.check_untraced(&format!("after dump {k} --leave-running"));
    }
    eprintln!("storm dumps:\n{}", summary.join("\n"));
    let Some((images, files)) = ok else {
        t.fail(&format!(
            "none of {MAX_STORM_DUMPS} dumps of the storm succeeded:\n{}",
            summary.join("\n")
        ));
    };
    t.s().go();
    let first = t
        .s()
        .finish_original("the storm after its dumps with --leave-running");
    fs::write(t.s().scratch.path("original.out"), &first).expect("save output");
    let root = t.s().pid;
    wait_gone(root, "the storm");
    t.s().remove_go();
    files.rewind(t.s());
    // only the restored image's processes are ours to wait for at the end
    t.image_pids.clear();
    t.note_image(&images);
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    t.s().go();
    t.s()
        .finish_restored(tool, "restore of an image of the storm");
    t.finish();
}
