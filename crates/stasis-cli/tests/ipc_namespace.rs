//! A tree in an IPC namespace of its own: testprogs/ipcns_victim.c unshares one, fills it
//! with System V objects (some with chosen ids, one made by a helper that is gone) and a
//! POSIX message queue, and shares a segment with a child. The dump takes every object of
//! that namespace; restore makes a new namespace for the tree and creates them in it with
//! their ids; the host's namespace never sees them. A tree spread over namespaces is
//! refused.

mod common;

use common::tree::*;
use common::*;
use stasis_sys::sysvipc::{self, Kind};

fn victim() -> Victim {
    Victim::c("ipcns_victim").named("ipcns_ns").arg("ns")
}

/// The keys and the POSIX queue name the victim printed ("KEYS shm=K msg=K sem=K MQ /n").
fn keys(s: &Session) -> (Vec<(Kind, i32)>, String) {
    let out = s.output();
    let line = out
        .lines()
        .find(|l| l.starts_with("KEYS "))
        .unwrap_or_default()
        .to_string();
    let mut keys = Vec::new();
    for (kind, name) in [
        (Kind::Shm, "shm="),
        (Kind::Msg, "msg="),
        (Kind::Sem, "sem="),
    ] {
        if let Some(k) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.parse().ok())
        {
            keys.push((kind, k));
        }
    }
    let mq = line
        .split_whitespace()
        .skip_while(|w| *w != "MQ")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        keys.len() == 3 && mq.starts_with('/'),
        "the victim printed no keys\n{out}"
    );
    (keys, mq)
}

/// Fails the session if the test's (the host's) IPC namespace holds any of the victim's
/// objects.
fn host_has_none(s: &mut Session, keys: &[(Kind, i32)], mq: &str, what: &str) {
    for &(kind, key) in keys {
        if let Some(id) = sysvipc::find_key(kind, key).expect("look up a key") {
            s.fail(&format!(
                "{what}: the host's IPC namespace holds SysV {} {id} with the victim's key {key:#x}",
                kind.name()
            ));
        }
    }
    match stasis_sys::mqueue::Mq::open(mq, libc::O_RDONLY) {
        Err(e) if e.errno.0 == libc::ENOENT => {}
        other => s.fail(&format!(
            "{what}: the host's namespace has POSIX queue {mq}: {:?}",
            other.map(|_| ())
        )),
    }
}

fn ipc_ns(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/ipc"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn ipcns_standalone() {
    run_control(&victim());
}

/// dump (kill), restore: the restored tree is in a new namespace (not the host's) holding
/// every object; the host got none of them.
#[test]
fn own_ipc_namespace_dump_restore() {
    let mut t = Tree::start(&victim());
    let (keys, mq) = keys(t.s());
    let pid = t.s().pid.to_string();
    host_has_none(t.s(), &keys, &mq, "before the dump");
    let images = t.dump_kill(1);
    let tool = t.s().spawn_restore(&images, &[]);
    if t.s().wait_restored(tool).is_some() {
        t.fail("the restored process finished before the go file");
    }
    t.check_same_tree("after restore");
    // (The original namespace is gone: its inode number may be the new one's.)
    let restored = ipc_ns(&pid);
    if restored == ipc_ns("self") || restored.is_empty() {
        t.fail(&format!(
            "restored in IPC namespace {restored:?}, ours is {:?}",
            ipc_ns("self")
        ));
    }
    host_has_none(t.s(), &keys, &mq, "after the restore");
    t.s().go();
    t.s()
        .finish_restored(tool, "restore into a new IPC namespace");
    t.finish();
}

#[test]
fn own_ipc_namespace_dump_restore_twice() {
    tree_double_cycle(&victim(), Outside::Compare);
}

/// dump --leave-running, then a copy restored (in a new PID namespace) while the original
/// still runs with its namespace and objects: the copy's ids and names do not collide
/// with the original's, since it has a namespace of its own. Both PASS.
#[test]
fn own_ipc_namespace_copy_while_the_original_runs() {
    let mut s = Session::start(&victim());
    let (keys, mq) = keys(&s);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--leave-running"]);
    s.assert_running_untraced("after dump --leave-running");
    let t = s.spawn_restore(&images, &["--new-pidns"]);
    // The copy is running once the restore tool has a child in another PID namespace
    // whose IPC namespace is neither ours nor the original's.
    let ours = ipc_ns("self");
    let original = ipc_ns(&s.pid.to_string());
    let comm = s.comm.clone();
    let start = std::time::Instant::now();
    loop {
        let copies: Vec<i32> = std::fs::read_dir("/proc")
            .expect("list /proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&p: &i32| p != s.pid && proc_comm(p).as_deref() == Some(comm.as_str()))
            .filter(|&p| {
                status_field(p, "NSpid").is_some_and(|n| n.split_whitespace().count() > 1)
                    && status_field(p, "TracerPid").as_deref() == Some("0")
            })
            .filter(|&p| {
                let ns = ipc_ns(&p.to_string());
                ns != ours && ns != original
            })
            .collect();
        if copies.len() >= 2 {
            break; // the copy and its child
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            s.fail("the copy did not appear running in new PID and IPC namespaces");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    host_has_none(&mut s, &keys, &mq, "with the copy running");
    s.go();
    s.finish_original("the original, with a copy running");
    s.finish_restored(t, "the copy in new PID and IPC namespaces");
}

/// The child has an IPC namespace, its parent another one: refused naming it, and the
/// tree goes on.
#[test]
fn tree_spread_over_ipc_namespaces_is_refused() {
    let v = Victim::c("ipcns_victim").named("ipcns_split").arg("split");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, &["IPC namespace"]) {
        s.fail(&format!(
            "dump of a tree spread over IPC namespaces must fail naming it\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("the victim after a refused dump");
}

fn unheld_victim() -> Victim {
    Victim::c("ipcns_victim")
        .named("ipcns_mq_unheld")
        .arg("mq-unheld")
}

/// The queue listing of a dump leaves no mount in the tool's (= the test's) mount
/// namespace, and the host's IPC namespace never gets the victim's queues.
fn nothing_leaked(s: &mut Session, what: &str) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mounts.contains("stasis-mqueue-") {
        s.fail(&format!(
            "{what}: the queue listing left a mount behind:\n{mounts}"
        ));
    }
    for name in ["/ipcns_unheld_a", "/ipcns_unheld_e", "/ipcns_held"] {
        match stasis_sys::mqueue::Mq::open(name, libc::O_RDONLY) {
            Err(e) if e.errno.0 == libc::ENOENT => {}
            other => s.fail(&format!(
                "{what}: the host's namespace has POSIX queue {name}: {:?}",
                other.map(|_| ())
            )),
        }
    }
}

#[test]
fn unheld_queues_standalone() {
    run_control(&unheld_victim());
}

/// POSIX queues of the namespace that no descriptor holds (one with five messages of
/// three priorities, one empty) next to one held open: the dump takes them, restore makes
/// them in the new namespace with their attributes, owner, mode and messages in order, and
/// leaves no descriptor on them (the victim checks all of it).
#[test]
fn unheld_queues_dump_restore() {
    let mut f = run_cycle(&unheld_victim());
    nothing_leaked(&mut f.session, "dump, kill, restore");
}

/// Restored unheld queues are found and dumped again by a second dump.
#[test]
fn unheld_queues_dump_restore_twice() {
    let mut f = run_double_cycle(&unheld_victim());
    nothing_leaked(&mut f.session, "two dump and restore cycles");
}

/// dump --leave-running reads every message and gives it back: the original, which goes on,
/// finds its queues as they were (it checks every message and priority); then the image
/// restores.
#[test]
fn unheld_queues_leave_running() {
    let mut f = run_leave_running(&unheld_victim());
    nothing_leaked(&mut f.session, "dump --leave-running, restore");
}

/// A queue no descriptor holds, with a notification registered (by a child that shared the
/// descriptor table and is gone): refused naming it before it is touched; the victim finds
/// its messages and its registration as they were.
#[test]
fn unheld_queue_with_a_notification_is_refused() {
    let v = Victim::c("ipcns_victim")
        .named("ipcns_mq_notify")
        .arg("mq-notify");
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, &["/ipcns_notify", "notification"]) {
        s.fail(&format!(
            "dump of a namespace with a queue with a notification must fail naming it\n{}",
            r.report()
        ));
    }
    nothing_leaked(&mut s, "after the refused dump");
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("the victim after a refused dump");
}

/// A queue no descriptor holds under the name of a queue a descriptor holds from the host's
/// namespace (unlinked there): refused naming it (restore would make both by name in the new
/// namespace); the victim finds both queues as they were.
#[test]
fn unheld_queue_named_like_a_held_one_is_refused() {
    let v = Victim::c("ipcns_victim")
        .named("ipcns_mq_clash")
        .arg("mq-clash");
    let mut s = Session::start(&v);
    let out = s.output();
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("QUEUE "))
        .unwrap_or_default()
        .to_string();
    if !name.starts_with("/ipcns_clash_") {
        s.fail(&format!("the victim printed no queue name\n{out}"));
    }
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, &[&name, "clash"]) {
        s.fail(&format!(
            "dump of a queue named like a held one must fail naming it\n{}",
            r.report()
        ));
    }
    nothing_leaked(&mut s, "after the refused dump");
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("the victim after a refused dump");
}
