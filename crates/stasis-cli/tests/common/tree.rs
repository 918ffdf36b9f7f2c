//! Process trees. The harness's cycles handle one process; a tree needs more: after a
//! dump kills the tree, the processes other than the root are re-parented to the test
//! process (a child subreaper) and must be reaped here before their PIDs are free for
//! the restore. The helpers below do that (the tree's PIDs come from the image's
//! manifest), compare the tree seen from /proc before and after, and kill and reap
//! whatever is left if a test fails (dropping a `Tree`).
//!
//! Also here: a victim whose object has its other end in a helper outside the tree
//! (testprogs/ipc_extpeer.c), whose dump must be refused.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

// ---- /proc ---------------------------------------------------------------------------------

/// What /proc/PID/stat says about a process: state, ppid, pgid, sid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
}

pub fn ids_of(pid: i32) -> Option<Ids> {
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
pub fn tree_of(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(t.path().join("children")) {
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

pub fn our_pid() -> i32 {
    std::process::id() as i32
}

/// Reaps pid if it is a zombie child of ours.
pub fn reap_if_ours(pid: i32) {
    if ids_of(pid).is_some_and(|i| i.ppid == our_pid() && i.state == 'Z') {
        let _ = stasis_sys::process::try_wait(pid);
    }
}

/// The PIDs of every task an image holds (its manifest), root first.
pub fn image_pids(images: &Path) -> Result<Vec<i32>, String> {
    let r = stasis_image::ImageReader::open(images)
        .map_err(|e| format!("cannot read the image {}: {e}", images.display()))?;
    Ok(r.manifest().tasks.iter().map(|t| t.pid).collect())
}

/// Names of the regular files under `dir` (recursively).
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
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
pub struct Tree {
    s: Option<Session>,
    /// The tree at READY: pid, comm and what /proc said; the root first.
    pub members: Vec<(i32, String, Ids)>,
    /// PIDs of every image written (a dump may catch processes that come and go).
    pub image_pids: Vec<i32>,
    /// After the session is dropped, also reap our zombie children with this comm.
    pub reap_comm: Option<String>,
    done: bool,
}

impl Tree {
    pub fn start(v: &Victim) -> Tree {
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

    pub fn s(&mut self) -> &mut Session {
        self.s.as_mut().expect("session")
    }

    pub fn fail(&mut self, msg: &str) -> ! {
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

    pub fn images(&mut self, n: usize) -> PathBuf {
        self.s().scratch.images(n)
    }

    pub fn note_image(&mut self, images: &Path) -> Vec<i32> {
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
    pub fn dump_kill(&mut self, n: usize) -> PathBuf {
        let images = self.images(n);
        self.s().dump_ok(&images, &[]);
        let pids = self.note_image(&images);
        self.s().reap_killed();
        self.wait_gone_all(&pids, "after the dump killed the tree");
        images
    }

    /// Waits until none of `pids` exists, reaping our zombies.
    pub fn wait_gone_all(&mut self, pids: &[i32], what: &str) {
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
    pub fn check_same_tree(&mut self, what: &str) {
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
    pub fn check_untraced(&mut self, what: &str) {
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

    pub fn member_pids(&self) -> Vec<i32> {
        self.members.iter().map(|m| m.0).collect()
    }

    /// A dump with `extra` options must be refused quickly (exit 1, the error naming
    /// `naming`) and leave every process of the tree running, untraced, as it was; then the
    /// tree is let go and must pass on its own.
    pub fn expect_refused_dump(&mut self, extra: &[&str], naming: &str) {
        let images = self.images(1);
        let started = Instant::now();
        let run = self.s().dump(&images, extra);
        if run.code() != 1 || !run.stderr.contains(naming) {
            self.fail(&format!(
                "expected the dump to fail (exit 1) naming {naming}\n{}",
                run.report()
            ));
        }
        if started.elapsed() > Duration::from_secs(15) {
            self.fail(&format!("the refused dump took {:?}", started.elapsed()));
        }
        self.check_untraced("after the refused dump");
        self.check_same_tree("after the refused dump");
        self.s().go();
        self.s().finish_original("after a refused dump");
        self.finish();
    }

    /// The test passed: every process seen is gone; nothing to clean up.
    pub fn finish(&mut self) {
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
pub enum Outside {
    /// The tree at READY is stable: compare every process.
    Compare,
    /// Processes come and go (a shell's `sleep`s): only the victim's own checks.
    VictimOnly,
}

/// Which processes `tree_leave_running` checks are untraced after the dump.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Untraced {
    /// The root (running and untraced).
    Root,
    /// The root, and every process of the tree (untraced, not in a tracing stop).
    EveryProcess,
}

/// The victim alone, no dump: it must PASS.
pub fn tree_control(v: &Victim) -> String {
    let mut t = Tree::start(v);
    t.s().go();
    let out = t.s().finish_original("standalone run (no dump)");
    t.finish();
    out
}

/// dump, kill, restore: the restored tree must PASS.
pub fn tree_cycle(v: &Victim, outside: Outside) -> String {
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
pub fn tree_double_cycle(v: &Victim, outside: Outside) -> String {
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
pub struct FilesAtDump {
    names: Vec<PathBuf>,
    snap: FileSnapshot,
}

impl FilesAtDump {
    pub fn take(s: &Session) -> FilesAtDump {
        let mut names = Vec::new();
        files_under(&s.scratch.tmp(), &mut names);
        FilesAtDump {
            names,
            snap: FileSnapshot::take(&s.scratch, &[]),
        }
    }

    pub fn rewind(&self, s: &Session) {
        let mut now = Vec::new();
        files_under(&s.scratch.tmp(), &mut now);
        for p in now.iter().filter(|p| !self.names.contains(p)) {
            let _ = fs::remove_file(p);
        }
        self.snap.rewind();
    }
}

/// dump --leave-running: the original tree goes on and PASSes; then the image is
/// restored (after putting the victim's files back as they were) and PASSes again.
pub fn tree_leave_running(v: &Victim, outside: Outside, untraced: Untraced) -> String {
    let mut t = Tree::start(v);
    let images = t.images(1);
    t.s().dump_ok(&images, &["--leave-running"]);
    t.note_image(&images);
    let files = FilesAtDump::take(t.s());
    t.s().assert_running_untraced("after dump --leave-running");
    if untraced == Untraced::EveryProcess {
        t.check_untraced("after dump --leave-running");
    }
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

/// `#[test]` functions running the cycles above on one victim, named by the caller:
/// `tree_cycle_tests!(victim(), Outside::Compare; standalone NAME, dump_restore NAME,
/// dump_restore_twice NAME, leave_running NAME)` (any of them, each kind is
/// `tree_control`, `tree_cycle`, `tree_double_cycle` or `tree_leave_running` with
/// `Untraced::Root`).
#[allow(unused_macros)] // like the rest of common/, not every test binary uses it
macro_rules! tree_cycle_tests {
    ($victim:expr, $outside:expr; $($kind:ident $name:ident),* $(,)?) => {$(
        $crate::common::tree::tree_cycle_tests!(@one $kind $name, $victim, $outside);
    )*};
    (@one standalone $name:ident, $victim:expr, $outside:expr) => {
        #[test]
        fn $name() {
            $crate::common::tree::tree_control(&$victim);
        }
    };
    (@one dump_restore $name:ident, $victim:expr, $outside:expr) => {
        #[test]
        fn $name() {
            $crate::common::tree::tree_cycle(&$victim, $outside);
        }
    };
    (@one dump_restore_twice $name:ident, $victim:expr, $outside:expr) => {
        #[test]
        fn $name() {
            $crate::common::tree::tree_double_cycle(&$victim, $outside);
        }
    };
    (@one leave_running $name:ident, $victim:expr, $outside:expr) => {
        #[test]
        fn $name() {
            $crate::common::tree::tree_leave_running(
                &$victim,
                $outside,
                $crate::common::tree::Untraced::Root,
            );
        }
    };
}
#[allow(unused_imports)]
pub(crate) use tree_cycle_tests;

// ---- a peer outside the tree -------------------------------------------------------------

/// Kills and reaps the helper of testprogs/ipc_extpeer.c (re-parented to us) if the test
/// ends early.
struct Helper(i32);

impl Drop for Helper {
    fn drop(&mut self) {
        if proc_exists(self.0) && proc_ppid(self.0) == Some(our_pid()) {
            kill(self.0, libc::SIGKILL);
            let _ = wait_reaped(self.0, GONE_TIMEOUT);
        }
    }
}

/// testprogs/ipc_extpeer.c MODE: the victim holds one end of an object whose other end
/// (or waiting client) is in a helper outside the tree. The dump must fail with exit 1
/// and an error mentioning one of `words`, quickly, and leave the victim running
/// untraced with its data intact: after the go file the victim and the helper both
/// PASS (the helper's exit status comes to us, its subreaper).
pub fn dump_refused(mode: &str, words: &[&str]) {
    let v = Victim::c("ipc_extpeer")
        .named(&format!("extpeer_{mode}"))
        .arg(mode);
    let mut s = Session::start(&v);
    let out = s.output();
    let Some(hpid) = out
        .lines()
        .find_map(|l| l.strip_prefix("helper: "))
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        s.fail("the victim did not name its helper");
    };
    let helper = Helper(hpid);
    if tree_of(s.pid).contains(&hpid) || proc_ppid(hpid) != Some(our_pid()) {
        s.fail(&format!(
            "the helper {hpid} should be outside the tree, a child of the test process (ppid {:?})",
            proc_ppid(hpid)
        ));
    }
    let images = s.scratch.images(1);
    let started = Instant::now();
    let run = s.dump(&images, &[]);
    run.assert_no_panic();
    if run.code() != 1 || !mentions(&run.stderr, words) {
        let rep = run.report();
        s.fail(&format!(
            "expected the dump to fail (exit 1) with an error mentioning one of {words:?}\n{rep}"
        ));
    }
    if started.elapsed() > Duration::from_secs(15) {
        s.fail(&format!("the refused dump took {:?}", started.elapsed()));
    }
    s.assert_running_untraced("after the refused dump");
    if status_field(hpid, "TracerPid").as_deref() != Some("0") {
        s.fail("the helper is traced after the refused dump");
    }
    s.go();
    s.finish_original("after a refused dump");
    match wait_reaped(hpid, RESTORE_TIMEOUT) {
        Some(st) if status_code(st) == 0 => {}
        Some(st) => s.fail(&format!(
            "the helper (outside the tree) exited with {} after the go file, expected 0",
            status_code(st)
        )),
        None => s.fail("the helper did not exit after the go file"),
    }
    drop(helper);
}
