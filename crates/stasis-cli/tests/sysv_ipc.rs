//! System V IPC: testprogs/sysv_victim.c (shm segments attached read-write, read-only,
//! partly unmapped, removed while attached; message queues; semaphore sets). An object
//! still there at restore is used as it is; one that is gone is created again with its id,
//! owner, mode and contents; an id held by a different object makes the restore fail
//! before anything is created, and leaves nothing behind.

mod common;

use common::tree::*;
use common::*;
use stasis_sys::sysvipc::{self, Kind};

fn sysv(mode: &str) -> Victim {
    Victim::c("sysv_victim")
        .named(&format!("sysv_{}", mode.replace('-', "_")))
        .arg(mode)
}

/// The ids the victim printed ("IDS shm=1 shm=2").
fn ids(s: &Session, kind: &str) -> Vec<i32> {
    let out = s.output();
    let line = out
        .lines()
        .find(|l| l.starts_with("IDS "))
        .unwrap_or_default()
        .to_string();
    line.split_whitespace()
        .filter_map(|w| w.strip_prefix(&format!("{kind}=")))
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn listed(kind: Kind, id: i32) -> bool {
    let col = match kind {
        Kind::Shm => "shmid",
        Kind::Msg => "msqid",
        Kind::Sem => "semid",
    };
    sysvipc::list(kind)
        .expect("list /proc/sysvipc")
        .iter()
        .any(|r| r.get(col) == Some(id as i64))
}

fn remove(kind: Kind, id: i32) {
    let _ = match kind {
        Kind::Shm => sysvipc::shm_remove(id),
        Kind::Msg => sysvipc::msg_remove(id),
        Kind::Sem => sysvipc::sem_remove(id),
    };
}

/// dump (kill), remove the objects the victim made, restore: they come back from the
/// image alone.
fn recreated(mode: &str, kind: Kind) {
    let mut s = Session::start(&sysv(mode));
    let kind_name = kind.name();
    let made = ids(&s, kind_name);
    assert!(
        !made.is_empty(),
        "the victim printed no ids\n{}",
        s.output()
    );
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    for &id in &made {
        remove(kind, id);
        assert!(
            !listed(kind, id),
            "{kind_name} {id} still there after IPC_RMID"
        );
    }
    s.restore_and_finish(&images, "restore after the objects were removed");
}

/// As `recreated`, twice: objects a restore created (so the kernel never saw the tree
/// create them) are still found as the tree's by the next dump.
fn recreated_twice(mode: &str, kind: Kind) {
    let mut s = Session::start(&sysv(mode));
    let made = ids(&s, kind.name());
    let (first, second) = (s.scratch.images(1), s.scratch.images(2));
    s.dump_ok(&first, &[]);
    s.reap_killed();
    for &id in &made {
        remove(kind, id);
    }
    let t1 = s.spawn_restore(&first, &[]);
    if s.wait_restored(t1).is_some() {
        s.fail("the restored process finished before the second dump");
    }
    s.dump_ok(&second, &[]);
    s.wait_tool(t1, "second dump");
    s.reap_killed();
    for &id in &made {
        remove(kind, id);
    }
    s.restore_and_finish(
        &second,
        "second restore, objects made again from the second image",
    );
}

/// dump (kill), then put a different object at the id of one the victim made: the
/// restore must fail naming it, and leave none of the image's objects behind.
fn id_taken(mode: &str, kind: Kind, make: impl Fn() -> i32) {
    let mut s = Session::start(&sysv(mode));
    let made = ids(&s, kind.name());
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    for &id in &made {
        remove(kind, id);
    }
    let victim_id = *made.last().expect("ids");
    // The next id is one value for the namespace: the lock keeps concurrent restores
    // (other tests) from taking it.
    let lock = sysvipc::NextIdLock::take().expect("lock");
    sysvipc::set_next_id(kind, victim_id).expect("set next id");
    let other = make();
    drop(lock);
    assert_eq!(other, victim_id, "the impostor did not get the id");
    s.restore_must_fail(
        &images,
        &["taken by a different object"],
        PidRule::NeverAppears,
        "restore with an id taken",
    );
    let left: Vec<i32> = made[..made.len() - 1]
        .iter()
        .copied()
        .filter(|&id| listed(kind, id))
        .collect();
    remove(kind, other);
    assert!(
        left.is_empty(),
        "the failed restore left {} {left:?} behind",
        kind.name()
    );
}

#[test]
fn shm_standalone() {
    run_control(&sysv("shm"));
}

#[test]
fn shm_dump_restore() {
    // Segment A is still there (used as it is); B was removed and is created again.
    run_cycle(&sysv("shm"));
}

#[test]
fn shm_restored_from_the_image_alone() {
    recreated("shm", Kind::Shm);
}

#[test]
fn shm_restored_from_the_image_alone_twice() {
    recreated_twice("shm", Kind::Shm);
}

#[test]
fn msg_restored_from_the_image_alone_twice() {
    recreated_twice("msg", Kind::Msg);
}

#[test]
fn sem_restored_from_the_image_alone_twice() {
    recreated_twice("sem", Kind::Sem);
}

#[test]
fn shm_shared_with_a_child() {
    tree_cycle(&sysv("shm-fork"), Outside::VictimOnly);
}

#[test]
fn shm_shared_with_a_child_twice() {
    tree_double_cycle(&sysv("shm-fork"), Outside::VictimOnly);
}

#[test]
fn shm_dump_restore_twice() {
    run_double_cycle(&sysv("shm"));
}

#[test]
fn shm_leave_running() {
    // The original removes its segments when it ends: restore creates them.
    run_leave_running(&sysv("shm"));
}

#[test]
fn shm_id_taken_by_another_segment_is_refused() {
    id_taken("shm", Kind::Shm, || {
        sysvipc::shm_create(0, 3 * 4096, 0o600).expect("create the impostor")
    });
}

/// A's id is free but its key is taken by another segment: refused before B (whose id is
/// free too) is created.
#[test]
fn shm_key_taken_is_refused() {
    let mut s = Session::start(&sysv("shm"));
    let made = ids(&s, "shm");
    let (a, b) = (made[0], made[1]);
    let key = sysvipc::shm_stat(a).expect("stat A").perm.key;
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    remove(Kind::Shm, a);
    let other = sysvipc::shm_create(key, 4096, 0o600).expect("create a segment with A's key");
    let run = s.restore_must_fail(
        &images,
        &["key is taken"],
        PidRule::NeverAppears,
        "restore with A's key taken",
    );
    remove(Kind::Shm, other);
    assert!(
        !listed(Kind::Shm, b),
        "the failed restore left segment {b} behind\n{}",
        run.report()
    );
}

#[test]
fn msg_standalone() {
    run_control(&sysv("msg"));
}

#[test]
fn msg_dump_restore() {
    run_cycle(&sysv("msg"));
}

#[test]
fn msg_restored_from_the_image_alone() {
    recreated("msg", Kind::Msg);
}

#[test]
fn msg_leave_running() {
    // The original takes its messages and removes its queues: restore makes them again.
    run_leave_running(&sysv("msg"));
}

#[test]
fn msg_id_taken_by_another_queue_is_refused() {
    id_taken("msg", Kind::Msg, || {
        // Another mode: a private queue with the same owner and mode would pass for the
        // same queue (nothing else tells two empty private queues apart).
        sysvipc::msg_create(0, 0o640).expect("create the impostor")
    });
}

#[test]
fn sem_standalone() {
    run_control(&sysv("sem"));
}

#[test]
fn sem_dump_restore() {
    run_cycle(&sysv("sem"));
}

#[test]
fn sem_restored_from_the_image_alone() {
    recreated("sem", Kind::Sem);
}

#[test]
fn sem_leave_running() {
    run_leave_running(&sysv("sem"));
}

#[test]
fn sem_id_taken_by_another_set_is_refused() {
    id_taken("sem", Kind::Sem, || {
        sysvipc::sem_create(0, 2, 0o600).expect("create the impostor")
    });
}

/// SEM_UNDO adjustments are measured at dump (and given back) and restored: the
/// process's own undo applies exactly its adjustment after restore.
#[test]
fn sem_undo_dump_restore() {
    run_cycle(&sysv("sem-undo"));
}

/// A parent holding a lock (adjustment +1) and a child that posted (adjustment -3): each
/// adjustment is applied exactly, at the child's exit and at the parent's unshare. The set
/// is still there at restore (reused): the kernel applied the adjustments when the dump
/// killed the tree, and the restored processes take them back.
#[test]
fn sem_undo_tree_dump_restore() {
    tree_cycle(&sysv("sem-undo-tree"), Outside::VictimOnly);
}

/// Twice: a restored tree's adjustments are measured again.
#[test]
fn sem_undo_tree_dump_restore_twice() {
    tree_double_cycle(&sysv("sem-undo-tree"), Outside::VictimOnly);
}

/// Dumped (the tree killed), the set removed, restored: the set is created at its values
/// plus the adjustments, which the restored processes take back.
#[test]
fn sem_undo_tree_restored_from_the_image_alone() {
    restored_from_the_image_alone("sem-undo-tree");
}

/// Dumps `mode` (killing the tree), removes its sets, restores: the victims check their
/// values and adjustments from inside.
fn restored_from_the_image_alone(mode: &str) {
    let mut t = Tree::start(&sysv(mode));
    let made = ids(t.s(), "sem");
    let images = t.dump_kill(1);
    for &id in &made {
        remove(Kind::Sem, id);
    }
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    t.s().go();
    t.s()
        .finish_restored(tool, "restore after the set was removed");
    t.finish();
}

/// The last operation on the set is made by a process outside the tree (this test): the
/// set is not found by its last user, but the tree's adjustment on it brings it into the
/// image; restored, the process's own undo applies exactly its adjustment.
#[test]
fn sem_undo_set_last_used_outside_the_tree() {
    let mut s = Session::start(&sysv("sem-undo"));
    let id = ids(&s, "sem")[0];
    sysvipc::sem_op(id, 0, 1, libc::IPC_NOWAIT as i16).expect("semop +1");
    sysvipc::sem_op(id, 0, -1, libc::IPC_NOWAIT as i16).expect("semop -1");
    assert_eq!(
        sysvipc::sem_pid(id, 0).expect("GETPID"),
        std::process::id() as i32
    );
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    s.restore_and_finish(&images, "restore of a set the tree did not use last");
}

/// The original goes on after the measurement with its adjustments intact (it checks them
/// itself), and removes the set: restore creates it.
#[test]
fn sem_undo_tree_leave_running() {
    run_leave_running(&sysv("sem-undo-tree"));
}

/// After the dump killed the tree (which released its lock), another process takes the
/// lock: the restored parent cannot take it back (the set is reused as it is): refused,
/// naming the undo adjustment, with nothing left behind.
#[test]
fn sem_undo_lock_taken_meanwhile_is_refused_at_restore() {
    let mut t = Tree::start(&sysv("sem-undo-tree"));
    let id = ids(t.s(), "sem")[0];
    let images = t.dump_kill(1);
    sysvipc::sem_op(id, 0, -1, libc::IPC_NOWAIT as i16).expect("take the released lock");
    t.s().restore_must_fail(
        &images,
        &["undo adjustment"],
        PidRule::NothingLeft,
        "restore while another process holds the lock",
    );
    let values = sysvipc::sem_values(id, 2);
    remove(Kind::Sem, id);
    // The killed restored child must not have applied anything.
    assert_eq!(
        values.ok(),
        Some(vec![0, 10]),
        "the set's values after the refused restore"
    );
    t.finish();
}

/// An adjustment the undo clamps (-20000 on a value of 20000): the dump cannot tell it
/// and refuses; the process keeps its value and its whole adjustment (it checks both).
#[test]
fn sem_undo_clamped_is_refused_and_the_process_goes_on() {
    let mut s = Session::start(&sysv("sem-undo-big"));
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, &["clamped"]) {
        s.fail(&format!(
            "dump of a process whose undo clamps must fail naming it\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("the victim after a refused dump");
}

/// A process outside the tree waits on a semaphore of the set: it could take a value
/// while the adjustments are measured, so the dump refuses before touching anything; the
/// tree goes on unharmed.
#[test]
fn sem_undo_with_a_waiter_outside_is_refused() {
    let mut t = Tree::start(&sysv("sem-undo-tree"));
    let id = ids(t.s(), "sem")[0];
    // Waits for semaphore 1 (13) to be zero: until the victim removes the set.
    let waiter = std::thread::spawn(move || sysvipc::sem_op(id, 1, 0, 0));
    let start = std::time::Instant::now();
    while sysvipc::sem_waiters(id, 1).unwrap_or(0) == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the waiter does not wait"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Refused naming the waiters; the tree goes on and passes (it removes the set at the
    // end, which ends the wait).
    t.expect_refused_dump(&[], "waiting");
    let waited = waiter.join().expect("the waiter thread");
    assert!(waited.is_err(), "the waiter saw semaphore 1 reach zero");
}

/// Threads share one undo list: measuring it without killing the process would split it.
/// A dump that leaves the process running or stopped is refused, and the process goes on
/// with its list (its check: unshare in one thread applies nothing).
#[test]
fn sem_undo_threads_are_refused_when_left_running_and_the_process_goes_on() {
    for leave in ["--leave-running", "--leave-stopped"] {
        let v = sysv("sem-undo-threads");
        let mut s = Session::start(&v);
        let images = s.scratch.images(1);
        let r = s.dump(&images, &[leave]);
        r.assert_no_panic();
        if r.code() != 1 || !mentions(&r.stderr, &["undo", "threads"]) {
            s.fail(&format!(
                "dump {leave} of a threaded process with a semaphore undo list must fail \
                 naming it\n{}",
                r.report()
            ));
        }
        s.assert_running_untraced("after the refused dump");
        s.go();
        s.finish_original("the victim after a refused dump");
    }
}

/// A dump that kills the tree measures a threaded process's list by its death: the
/// threads, restored, share one list that holds exactly the adjustments (each thread's end
/// applies nothing, the last thread's unshare applies both), and the child's own
/// adjustment is applied exactly at its exit. The set is reused (the deaths applied the
/// adjustments; the restored processes take them back).
#[test]
fn sem_undo_threads_dump_kill_restore() {
    tree_cycle(&sysv("sem-undo-threads-kill"), Outside::VictimOnly);
}

/// Twice: the restored threads' shared list is measured again by their death.
#[test]
fn sem_undo_threads_dump_kill_restore_twice() {
    tree_double_cycle(&sysv("sem-undo-threads-kill"), Outside::VictimOnly);
}

/// Dumped (the tree killed), restored with the sets still there (reused), dumped again,
/// the sets removed, restored: the second image holds both sets, the one without
/// adjustments too (the measurement by death raised and lowered it from the tool, which
/// became its last user: the restore makes the tree its last user again).
#[test]
fn sem_undo_threads_reused_sets_are_found_again() {
    let mut t = Tree::start(&sysv("sem-undo-threads-kill"));
    let made = ids(t.s(), "sem");
    assert_eq!(made.len(), 2, "the victim printed {made:?}");
    let first = t.dump_kill(1);
    let t1 = t.s().spawn_restore(&first, &[]);
    t.s().wait_restored(t1);
    let second = t.images(2);
    t.s().dump_ok(&second, &[]);
    let pids = t.note_image(&second);
    t.s().wait_tool(t1, "second dump");
    t.s().reap_killed();
    t.wait_gone_all(&pids, "after the second dump killed the restored tree");
    for &id in &made {
        remove(Kind::Sem, id);
    }
    let t2 = t.s().spawn_restore(&second, &[]);
    t.s().wait_restored(t2);
    t.s().go();
    t.s().finish_restored(
        t2,
        "restore of the second image after the sets were removed",
    );
    t.finish();
}

/// Dumped (the tree killed), the set removed, restored: created at its values plus the
/// adjustments measured by the deaths.
#[test]
fn sem_undo_threads_restored_from_the_image_alone() {
    restored_from_the_image_alone("sem-undo-threads-kill");
}

/// The death of the threaded process clamps its adjustment (-20000 on 20000): found only
/// once it is dead, so the dump fails saying the tree was killed, and the rest of the tree
/// (its child) is killed too rather than left running half-dumped.
#[test]
fn sem_undo_threads_clamped_at_death_fails_and_kills_the_tree() {
    let mut t = Tree::start(&sysv("sem-undo-threads-big"));
    let id = ids(t.s(), "sem")[0];
    let members = t.member_pids();
    assert!(members.len() >= 2, "the victim has no child: {members:?}");
    let images = t.images(1);
    let r = t.s().dump(&images, &[]);
    r.assert_no_panic();
    let said = r.stderr.contains("the tree was killed") && r.stderr.contains("clamped");
    remove(Kind::Sem, id);
    if r.code() != 1 || !said {
        t.fail(&format!(
            "the dump must fail naming the clamp and saying the tree was killed\n{}",
            r.report()
        ));
    }
    t.s().reap_killed();
    t.wait_gone_all(&members, "after the failed dump that killed the tree");
    t.finish();
}

/// The threaded process is refused before anything is touched when the dump leaves the
/// tree running; the whole tree goes on and passes its checks.
#[test]
fn sem_undo_threads_leave_running_is_refused() {
    let mut t = Tree::start(&sysv("sem-undo-threads-kill"));
    t.expect_refused_dump(&["--leave-running"], "threads");
}

/// A threaded process with the tree's sets in an IPC namespace of its own: measured by its
/// death from a thread that joined the namespace (the root is the one that dies).
#[test]
fn sem_undo_threads_own_ipc_namespace() {
    let program = build_c("sysv_victim", &[]);
    let v = Victim::program("sysv_ipcns_sem_undo_threads", "/usr/bin/unshare").args_of([
        std::ffi::OsString::from("--ipc"),
        program.into_os_string(),
        "sem-undo-threads-kill".into(),
    ]);
    tree_cycle(&v, Outside::VictimOnly);
}

/// The parent and child in an IPC namespace of their own: the set is created in the new
/// namespace at its values plus the adjustments.
#[test]
fn sem_undo_tree_own_ipc_namespace() {
    let program = build_c("sysv_victim", &[]);
    let v = Victim::program("sysv_ipcns_sem_undo_tree", "/usr/bin/unshare").args_of([
        std::ffi::OsString::from("--ipc"),
        program.into_os_string(),
        "sem-undo-tree".into(),
    ]);
    tree_cycle(&v, Outside::VictimOnly);
}

/// The same victims in an IPC namespace of their own (unshare --ipc): dumped with every
/// object of the namespace, restored into a new one.
#[test]
fn own_ipc_namespace_dump_restore() {
    for mode in ["msg", "shm", "sem"] {
        let program = build_c("sysv_victim", &[]);
        let v = Victim::program(&format!("sysv_ipcns_{mode}"), "/usr/bin/unshare").args_of([
            std::ffi::OsString::from("--ipc"),
            program.into_os_string(),
            mode.into(),
        ]);
        run_cycle(&v);
    }
}
