//! Pipes whose two ends are both in the dumped tree.
//!
//! - testprogs/ipc_pipe.c: a producer blocked writing into a full 128 KiB pipe (enlarged
//!   with F_SETPIPE_SZ) and a consumer that, after restore, reads the whole 1 MiB stream
//!   byte for byte, then EOF, and sees the producer exit 0; a pipe with a nonblocking read
//!   end and 11 bytes queued; a full nonblocking 16 KiB pipe (capacities, flags, data).
//! - a shell pipeline (`seq | sort -n | md5sum` under bash) dumped in the middle of its
//!   run: with `seq` blocked on a full pipe before `sort` starts, and with `sort` holding
//!   half of its input while its reader and writer wait; the md5 of the result must be
//!   that of `seq 1 200000`, computed here.
//! - a pipe whose other end is held by a process outside the tree: the dump is refused
//!   naming the pipe, and both processes go on unharmed (testprogs/ipc_extpeer.c).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

// ---- process trees (after trees.rs: the harness's cycles handle one process) ------------
//
// After a dump kills a tree, the processes other than the root are re-parented to the
// test process (a child subreaper) and must be reaped here before their PIDs are free
// for the restore; the tree's PIDs come from the image's manifest. Dropping a `Tree`
// kills and reaps whatever of it is left.

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

/// How much of the tree the test compares from outside.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the same helpers serve several test files
enum Outside {
    /// The tree at READY is stable: compare every process.
    Compare,
    /// Processes come and go (a shell's `sleep`s): only the victim's own checks.
    VictimOnly,
}

struct Tree {
    s: Option<Session>,
    /// The tree at READY: pid, comm and what /proc said; the root first.
    members: Vec<(i32, String, Ids)>,
    /// PIDs of every image written.
    image_pids: Vec<i32>,
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

    /// dump (not --leave-running), then wait until every process of the image is gone.
    fn dump_kill(&mut self, n: usize) -> PathBuf {
        let images = self.s().scratch.images(n);
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

    /// The processes seen at READY are there again with the same parent (but the
    /// root's), process group, session and kind of state.
    fn check_same_tree(&mut self, what: &str) {
        let root = self.members[0].0;
        let want: Vec<(i32, Ids)> = self.members.iter().map(|(p, _, i)| (*p, *i)).collect();
        let start = Instant::now();
        loop {
            let mut diffs = Vec::new();
            for &(pid, w) in &want {
                let Some(h) = ids_of(pid) else {
                    diffs.push(format!("pid {pid} does not exist (was {w:?})"));
                    continue;
                };
                let class = |c: char| match c {
                    'R' | 'S' | 'D' => 'S',
                    c => c,
                };
                if class(h.state) != class(w.state)
                    || (pid != root && h.ppid != w.ppid)
                    || h.pgid != w.pgid
                    || h.sid != w.sid
                {
                    diffs.push(format!("pid {pid}: {h:?}, at READY {w:?}"));
                }
            }
            if diffs.is_empty() {
                return;
            }
            if start.elapsed() > Duration::from_secs(5) {
                self.fail(&format!(
                    "{what}: the tree differs from the one at READY:\n{}",
                    diffs.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn member_pids(&self) -> Vec<i32> {
        self.members.iter().map(|m| m.0).collect()
    }

    /// The test passed: every process seen is gone.
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
            if !any {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The victim alone, no dump: it must PASS.
fn tree_control(v: &Victim) {
    let mut t = Tree::start(v);
    t.s().go();
    t.s().finish_original("standalone run (no dump)");
    t.finish();
}

/// dump, kill, restore: the restored tree must PASS.
fn tree_cycle(v: &Victim, outside: Outside) {
    let mut t = Tree::start(v);
    let images = t.dump_kill(1);
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    if outside == Outside::Compare {
        t.check_same_tree("after restore");
    }
    t.s().go();
    t.s().finish_restored(tool, "dump, kill, restore");
    t.finish();
}

/// dump, restore, dump the restored tree again, restore again: PASS.
fn tree_double_cycle(v: &Victim, outside: Outside) {
    let mut t = Tree::start(v);
    let first = t.dump_kill(1);
    let t1 = t.s().spawn_restore(&first, &[]);
    t.s().wait_restored(t1);
    if outside == Outside::Compare {
        t.check_same_tree("after the first restore");
    }
    let second = t.s().scratch.images(2);
    t.s().dump_ok(&second, &[]);
    let pids = t.note_image(&second);
    let r1 = t.s().wait_tool(t1, "second dump");
    if r1.code() != 128 + libc::SIGKILL {
        let rep = r1.report();
        t.fail(&format!(
            "the first restore tool exited with {} after its tree was dumped (and killed) again; expected {}\n{rep}",
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
    t.s().finish_restored(t2, "dump, restore, dump, restore");
    t.finish();
}

/// dump --leave-running: the original tree goes on and PASSes; then the image is
/// restored (after putting the victim's files back as they were) and PASSes again.
fn tree_leave_running(v: &Victim, outside: Outside) {
    let mut t = Tree::start(v);
    let images = t.s().scratch.images(1);
    t.s().dump_ok(&images, &["--leave-running"]);
    t.note_image(&images);
    let mut names = Vec::new();
    files_under(&t.s().scratch.tmp(), &mut names);
    let snap = FileSnapshot::take(&t.s().scratch, &[]);
    t.s().assert_running_untraced("after dump --leave-running");
    if outside == Outside::Compare {
        t.check_same_tree("after dump --leave-running (the original)");
    }
    t.s().go();
    let first = t
        .s()
        .finish_original("the original after dump --leave-running");
    fs::write(t.s().scratch.path("original.out"), first).expect("save output");
    let pids = t.member_pids();
    t.wait_gone_all(&pids, "after the original root finished");
    t.s().remove_go();
    let mut now = Vec::new();
    files_under(&t.s().scratch.tmp(), &mut now);
    for p in now.iter().filter(|p| !names.contains(p)) {
        let _ = fs::remove_file(p);
    }
    snap.rewind();
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    if outside == Outside::Compare {
        t.check_same_tree("after restoring the --leave-running image");
    }
    t.s().go();
    t.s()
        .finish_restored(tool, "restore of a --leave-running image");
    t.finish();
}

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
fn dump_refused(mode: &str, words: &[&str]) {
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

// ---- victims -------------------------------------------------------------------------------

fn pipe_victim() -> Victim {
    Victim::c("ipc_pipe")
}

/// The md5sum line (`HASH  -`) of `seq 1 200000`, computed here.
fn expected_md5() -> String {
    let out = Command::new("/bin/bash")
        .args(["-c", "seq 1 200000 | md5sum"])
        .output()
        .expect("run seq | md5sum");
    assert!(out.status.success(), "seq | md5sum failed");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// A pipeline under bash whose result is checked by the script itself (PASS or FAIL).
/// `full`: `seq` is blocked on a full pipe at the dump and `sort` starts only after the
/// go file; otherwise `sort` has read half of its input (the first `seq` is done) and
/// waits for the rest, which comes after the go file.
fn pipeline(full: bool) -> Victim {
    let script = if full {
        r#"echo READY
result=$(seq 200000 -1 1 | (while [ ! -e "$STASIS_GO" ]; do sleep 0.05; done; sort -n) | md5sum)
if [ "$result" = "$1" ]; then echo PASS; else echo "FAIL: md5 $result, expected $1"; exit 1; fi"#
    } else {
        r#"echo READY
result=$( (seq 200000 -1 100001; while [ ! -e "$STASIS_GO" ]; do sleep 0.05; done; seq 100000 -1 1) | sort -n | md5sum)
if [ "$result" = "$1" ]; then echo PASS; else echo "FAIL: md5 $result, expected $1"; exit 1; fi"#
    };
    let name = if full {
        "pipeline_full_pipe"
    } else {
        "pipeline_sort_midway"
    };
    Victim::program(name, "/bin/bash")
        .args_of(["-c", script, name])
        .arg(expected_md5())
        .ready_when(move |s| {
            if !s.output().lines().any(|l| l == "READY") {
                return false;
            }
            let procs: Vec<(String, Option<char>)> = tree_of(s.pid)
                .into_iter()
                .filter_map(|p| Some((proc_comm(p)?, proc_state(p))))
                .collect();
            let sleeping = |name: &str| procs.iter().any(|(c, st)| c == name && *st == Some('S'));
            let present = |name: &str| procs.iter().any(|(c, _)| c == name);
            if full {
                // seq blocked in write on the full pipe, sort not started
                sleeping("seq") && sleeping("md5sum") && !present("sort")
            } else {
                // the first seq is done, sort waits for more input
                sleeping("sort") && sleeping("md5sum") && !present("seq")
            }
        })
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn pipe_standalone() {
    tree_control(&pipe_victim());
}

#[test]
fn pipe_dump_restore() {
    tree_cycle(&pipe_victim(), Outside::Compare);
}

#[test]
fn pipe_dump_restore_twice() {
    tree_double_cycle(&pipe_victim(), Outside::Compare);
}

#[test]
fn pipe_leave_running() {
    tree_leave_running(&pipe_victim(), Outside::Compare);
}

#[test]
fn pipeline_standalone() {
    tree_control(&pipeline(true));
}

#[test]
fn pipeline_full_pipe_dump_restore() {
    tree_cycle(&pipeline(true), Outside::VictimOnly);
}

#[test]
fn pipeline_full_pipe_dump_restore_twice() {
    tree_double_cycle(&pipeline(true), Outside::VictimOnly);
}

#[test]
fn pipeline_full_pipe_leave_running() {
    tree_leave_running(&pipeline(true), Outside::VictimOnly);
}

#[test]
fn pipeline_sort_midway_dump_restore() {
    tree_cycle(&pipeline(false), Outside::VictimOnly);
}

#[test]
fn pipe_read_end_with_writer_outside_is_refused() {
    dump_refused("pipe-read", &["pipe"]);
}

#[test]
fn pipe_write_end_with_reader_outside_is_refused() {
    dump_refused("pipe-write", &["pipe"]);
}
