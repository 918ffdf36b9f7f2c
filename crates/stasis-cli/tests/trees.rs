//! Process trees: `stasis dump -t PID` takes PID and all its descendants, and restore
//! brings every process back with its PID, parent, session, process group and state
//! (zombies stay zombies with their exit status, stopped processes stay stopped), and
//! open file descriptions shared by inheritance stay shared.
//!
//! - testprogs/tree_sessions.c: depth 3, two sessions, four process groups, a zombie;
//! - testprogs/tree_stopped.c: children stopped by SIGSTOP and SIGTSTP, continued later;
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

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

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

// ---- /proc ---------------------------------------------------------------------------------

/// What /proc/PID/stat says about a process: state, ppid, pgid, sid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ids {
    state: char,
    ppid: i32,
    pgid: i32,
    sid: i32,
}

fn ids_of(pid: i32) -> Option<Ids> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(Ids {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
    })
}

/// `root` and all its descendants (children of every thread), parents first.
fn tree_of(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let p = t.path().join("children");
            if let Ok(text) = fs::read_to_string(p) {
                for c in text
                    .split_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok())
                {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

fn our_pid() -> i32 {
    std::process::id() as i32
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory arguments.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Reaps pid if it is a zombie child of ours.
fn reap_if_ours(pid: i32) {
    if ids_of(pid).is_some_and(|i| i.ppid == our_pid() && i.state == 'Z') {
        let mut st = 0;
        // SAFETY: waitpid writes only to `st`, on our stack.
        unsafe {
            libc::waitpid(pid, &mut st, libc::WNOHANG);
        }
    }
}

/// The PIDs of every task an image holds (its manifest), root first.
fn image_pids(images: &Path) -> Result<Vec<i32>, String> {
    let r = stasis_image::ImageReader::open(images)
        .map_err(|e| format!("cannot read the image {}: {e}", images.display()))?;
    Ok(r.manifest().tasks.iter().map(|t| t.pid).collect())
}

/// Names of the regular files under `dir` (recursively).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

// ---- a tree under test -------------------------------------------------------------------

/// A victim tree and what is known about it; dropping it kills and reaps whatever of the
/// tree is left (unless the test finished and saw every process gone).
struct Tree {
    s: Option<Session>,
    /// The tree at READY: pid, comm and what /proc said; the root first.
    members: Vec<(i32, String, Ids)>,
    /// PIDs of every image written (a dump may catch processes that come and go).
    image_pids: Vec<i32>,
    /// After the session is dropped, also reap our zombie children with this comm.
    reap_comm: Option<String>,
    done: bool,
}

impl Tree {
    fn start(v: &Victim) -> Tree {
        let s = Session::start(v);
        let members = tree_of(s.pid)
            .into_iter()
            .filter_map(|p| Some((p, proc_comm(p)?, ids_of(p)?)))
            .collect();
        Tree {
            s: Some(s),
            members,
            image_pids: Vec::new(),
            reap_comm: None,
            done: false,
        }
    }

    fn s(&mut self) -> &mut Session {
        self.s.as_mut().expect("session")
    }

    fn fail(&mut self, msg: &str) -> ! {
        let tree: Vec<String> = self
            .members
            .iter()
            .map(|(p, c, _)| format!("{p} {c:?} now {:?}", ids_of(*p)))
            .collect();
        self.s().fail(&format!(
            "{msg}\n--- the tree at READY, now ---\n{}",
            tree.join("\n")
        ))
    }

    fn images(&mut self, n: usize) -> PathBuf {
        self.s().scratch.images(n)
    }

    fn note_image(&mut self, images: &Path) -> Vec<i32> {
        match image_pids(images) {
            Ok(p) => {
                for &pid in &p {
                    if !self.image_pids.contains(&pid) {
                        self.image_pids.push(pid);
                    }
                }
                p
            }
            Err(e) => self.fail(&e),
        }
    }

    /// dump (not --leave-running), then wait until every process of the image is gone,
    /// reaping those re-parented to us.
    fn dump_kill(&mut self, n: usize) -> PathBuf {
        let images = self.images(n);
        self.s().dump_ok(&images, &[]);
        let pids = self.note_image(&images);
        self.s().reap_killed();
        self.wait_gone_all(&pids, "after the dump killed the tree");
        images
    }

    /// Waits until none of `pids` exists, reaping our zombies.
    fn wait_gone_all(&mut self, pids: &[i32], what: &str) {
        let start = Instant::now();
        loop {
            let left: Vec<i32> = pids.iter().copied().filter(|p| proc_exists(*p)).collect();
            if left.is_empty() {
                return;
            }
            for &p in &left {
                reap_if_ours(p);
            }
            if start.elapsed() > GONE_TIMEOUT {
                let desc: Vec<String> = left
                    .iter()
                    .map(|p| format!("{p} {:?} {:?}", proc_comm(*p), ids_of(*p)))
                    .collect();
                self.fail(&format!(
                    "{what}: processes of the tree still exist {GONE_TIMEOUT:?} later: {}",
                    desc.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The processes seen at READY are there again, with the same parent (except the
    /// root's), process group and session, and stopped ones stopped, zombies zombies.
    fn check_same_tree(&mut self, what: &str) {
        let want: BTreeMap<i32, Ids> = self.members.iter().map(|(p, _, i)| (*p, *i)).collect();
        let root = self.members[0].0;
        let start = Instant::now();
        loop {
            let mut diffs = Vec::new();
            for (&pid, w) in &want {
                let Some(h) = ids_of(pid) else {
                    diffs.push(format!("pid {pid} does not exist (was {w:?})"));
                    continue;
                };
                let class = |c: char| match c {
                    'R' | 'S' | 'D' => 'S',
                    c => c,
                };
                let same = class(h.state) == class(w.state)
                    && (pid == root || h.ppid == w.ppid)
                    && h.pgid == w.pgid
                    && h.sid == w.sid;
                if !same {
                    diffs.push(format!("pid {pid}: {h:?}, at READY {w:?}"));
                }
            }
            if diffs.is_empty() {
                return;
            }
            if start.elapsed() > Duration::from_secs(5) {
                self.fail(&format!(
                    "{what}: the tree differs from the one at READY (state, ppid, pgid, sid):\n{}",
                    diffs.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every process of the tree right now is untraced and not in a tracing stop, and
    /// the processes seen at READY are still as they were.
    fn check_untraced(&mut self, what: &str) {
        for pid in tree_of(self.s().pid) {
            let tracer = status_field(pid, "TracerPid");
            let state = proc_state(pid);
            if tracer.as_deref().is_some_and(|t| t != "0") || state == Some('t') {
                if !proc_exists(pid) {
                    continue;
                }
                self.fail(&format!(
                    "{what}: pid {pid} of the tree is still traced or in a tracing stop (TracerPid {tracer:?}, state {state:?})"
                ));
            }
        }
    }

    fn member_pids(&self) -> Vec<i32> {
        self.members.iter().map(|m| m.0).collect()
    }

    /// The test passed: every process seen is gone; nothing to clean up.
    fn finish(&mut self) {
        let mut pids = self.member_pids();
        pids.extend(self.image_pids.iter().copied());
        self.wait_gone_all(&pids, "after the root finished");
        self.done = true;
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let mut pids = self.member_pids();
        pids.extend(self.image_pids.iter().copied());
        if !self.done {
            let comms: Vec<&str> = self.members.iter().map(|m| m.1.as_str()).collect();
            for &p in &pids {
                let ours = proc_comm(p).is_some_and(|c| comms.contains(&c.as_str()));
                if ours && proc_state(p) != Some('Z') {
                    kill(p, libc::SIGKILL);
                }
            }
        }
        drop(self.s.take());
        if self.done {
            return;
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let mut any = false;
            for &p in &pids {
                if ids_of(p).is_some_and(|i| i.ppid == our_pid() && i.state == 'Z') {
                    reap_if_ours(p);
                    any = true;
                }
            }
            if let Some(c) = &self.reap_comm {
                if let Ok(rd) = fs::read_dir("/proc") {
                    for e in rd.flatten() {
                        let Some(p) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                            continue;
                        };
                        if proc_comm(p).as_deref() == Some(c.as_str()) {
                            if ids_of(p).is_some_and(|i| i.ppid == our_pid() && i.state != 'Z') {
                                kill(p, libc::SIGKILL);
                                any = true;
                            }
                            reap_if_ours(p);
                        }
                    }
                }
            }
            if !any {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---- cycles for trees ----------------------------------------------------------------------

/// How much of the tree the test compares from outside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outside {
    /// The tree at READY is stable: compare every process.
    Compare,
    /// Processes come and go (bash's `sleep`s): only the victim's own checks.
    VictimOnly,
}

/// The victim alone, no dump: it must PASS.
fn tree_control(v: &Victim) -> String {
    let mut t = Tree::start(v);
    t.s().go();
    let out = t.s().finish_original("standalone run (no dump)");
    t.finish();
    out
}

/// dump, kill, restore: the restored tree must PASS.
fn tree_cycle(v: &Victim, outside: Outside) -> String {
    let mut t = Tree::start(v);
    let images = t.dump_kill(1);
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    if outside == Outside::Compare {
        t.check_same_tree("after restore");
    }
    t.s().go();
    let out = t.s().finish_restored(tool, "dump, kill, restore");
    t.finish();
    out
}

/// dump, restore, dump the restored tree again, restore again: PASS.
fn tree_double_cycle(v: &Victim, outside: Outside) -> String {
    let mut t = Tree::start(v);
    let first = t.dump_kill(1);
    let t1 = t.s().spawn_restore(&first, &[]);
    t.s().wait_restored(t1);
    if outside == Outside::Compare {
        t.check_same_tree("after the first restore");
    }
    let second = t.images(2);
    t.s().dump_ok(&second, &[]);
    let pids = t.note_image(&second);
    let r1 = t.s().wait_tool(t1, "second dump");
    if r1.code() != 128 + libc::SIGKILL {
        let rep = r1.report();
        t.fail(&format!(
            "the first restore tool exited with {} after its tree was dumped (and killed) again; expected {} (128+SIGKILL)\n{rep}",
            r1.code(),
            128 + libc::SIGKILL
        ));
    }
    t.s().reap_killed();
    t.wait_gone_all(&pids, "after the second dump killed the restored tree");
    let t2 = t.s().spawn_restore(&second, &[]);
    t.s().wait_restored(t2);
    if outside == Outside::Compare {
        t.check_same_tree("after the second restore");
    }
    t.s().go();
    let out = t.s().finish_restored(t2, "dump, restore, dump, restore");
    t.finish();
    out
}

/// Puts the victim's files back as they were at the dump: removes files made since,
/// rewrites the others in place.
struct FilesAtDump {
    names: Vec<PathBuf>,
    snap: FileSnapshot,
}

impl FilesAtDump {
    fn take(s: &Session) -> FilesAtDump {
        let mut names = Vec::new();
        files_under(&s.scratch.tmp(), &mut names);
        FilesAtDump {
            names,
            snap: FileSnapshot::take(&s.scratch, &[]),
        }
    }
    fn rewind(&self, s: &Session) {
        let mut now = Vec::new();
        files_under(&s.scratch.tmp(), &mut now);
        for p in now.iter().filter(|p| !self.names.contains(p)) {
            let _ = fs::remove_file(p);
        }
        self.snap.rewind();
    }
}

/// dump --leave-running: the original tree goes on and PASSes; then the image is
/// restored (after putting the files back as they were) and PASSes again.
fn tree_leave_running(v: &Victim, outside: Outside) -> String {
    let mut t = Tree::start(v);
    let images = t.images(1);
    t.s().dump_ok(&images, &["--leave-running"]);
    t.note_image(&images);
    let files = FilesAtDump::take(t.s());
    t.s().assert_running_untraced("after dump --leave-running");
    t.check_untraced("after dump --leave-running");
    if outside == Outside::Compare {
        t.check_same_tree("after dump --leave-running (the original)");
    }
    t.s().go();
    let first = t
        .s()
        .finish_original("the original after dump --leave-running");
    fs::write(t.s().scratch.path("original.out"), &first).expect("save output");
    let pids = t.member_pids();
    t.wait_gone_all(&pids, "after the original root finished");
    t.s().remove_go();
    files.rewind(t.s());
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    if outside == Outside::Compare {
        t.check_same_tree("after restoring the --leave-running image");
    }
    t.s().go();
    let out = t
        .s()
        .finish_restored(tool, "restore of a --leave-running image");
    t.finish();
    out
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
                tree_leave_running(&$victim, $outside);
            }
        }
    )*};
}

tree_tests!(
    sessions => sessions(), Outside::Compare;
    stopped => stopped(), Outside::Compare;
    shared_fd => shared_fd(), Outside::Compare;
    orphans => orphans(), Outside::Compare;
    subreaper => subreaper(), Outside::Compare;
    bash => bash(), Outside::VictimOnly;
);

/// A vfork child still sharing its parent's memory. Checkpointing it is not supported
/// yet: the parent waits for the child in the kernel and cannot be frozen. What must hold
/// is what holds for every unsupported object: the dump fails quickly, says why, and
/// leaves the whole tree running as before (it then PASSes without any restore).
mod vfork {
    use super::*;

    #[test]
    fn standalone() {
        let _g = shared();
        tree_control(&vfork());
    }

    #[test]
    fn dump_is_refused_and_the_tree_goes_on() {
        let _g = shared();
        let mut t = Tree::start(&vfork());
        let images = t.images(1);
        let started = Instant::now();
        let run = t.s().dump(&images, &[]);
        if run.status.code() != Some(1) || !run.stderr.contains("vfork") {
            t.fail(&format!(
                "expected the dump to fail (exit 1) naming vfork, got {:?}\n{}",
                run.status, run.stderr
            ));
        }
        if started.elapsed() > Duration::from_secs(15) {
            t.fail(&format!("the refused dump took {:?}", started.elapsed()));
        }
        t.check_untraced("after the refused dump");
        t.check_same_tree("after the refused dump");
        t.s().go();
        t.s().finish_original("after a refused dump");
        t.finish();
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
