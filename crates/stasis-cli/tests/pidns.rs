//! `stasis restore --new-pidns`: an image restored into new PID namespaces while the
//! original still runs, three copies at the same time (testprogs/ipc_pidns.c).
//!
//! The victim is dumped with --leave-running; three restores with --new-pidns run at
//! once. Each copy must appear in its own namespace with the original PID there (seen
//! from here through the NSpid line of /proc/PID/status), and after the go file the
//! original and every copy check themselves: getpid(), gettid() and /proc/self give the
//! recorded PID, memory is intact, fork and waitpid work. Each copy reports through its
//! exit status, which its restore tool (waiting for the namespace's init) must return.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

const COPIES: usize = 3;

/// `NSpid` of /proc/PID/status: the PID in each namespace, outermost first.
fn nspids(pid: i32) -> Vec<i32> {
    status_field(pid, "NSpid")
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes (host PIDs) with `comm` whose PID in their own, nested namespace is `pid`.
fn copies_of(pid: i32, comm: &str) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let ns = nspids(p);
            ns.len() >= 2
                && ns.last() == Some(&pid)
                && proc_comm(p).as_deref() == Some(comm)
                && proc_state(p) != Some('Z')
        })
        .collect()
}

/// Kills the copies still running if the test ends early: their namespaces' inits (the
/// children of the restore tools, which the session kills) and the copies themselves.
struct Copies {
    pid: i32,
    comm: String,
    tools: Vec<i32>,
}

impl Drop for Copies {
    fn drop(&mut self) {
        for p in copies_of(self.pid, &self.comm) {
            let _ = stasis_sys::process::kill(p, libc::SIGKILL);
        }
        let Ok(rd) = fs::read_dir("/proc") else {
            return;
        };
        for p in rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if proc_ppid(p).is_some_and(|pp| self.tools.contains(&pp)) {
                let _ = stasis_sys::process::kill(p, libc::SIGKILL);
            }
        }
    }
}

fn victim() -> Victim {
    Victim::c("ipc_pidns")
}

#[test]
fn pidns_standalone() {
    run_control(&victim());
}

/// The victim as started by the harness: its process group and session are the test
/// runner's (outside the tree).
#[test]
fn three_copies_in_new_pid_namespaces_while_the_original_runs() {
    three_copies(&victim());
}

/// The victim leads its own session and process group.
#[test]
fn three_copies_of_a_session_leader_in_new_pid_namespaces() {
    three_copies(&victim().named("ipc_pidns_setsid").arg("setsid"));
}

fn three_copies(v: &Victim) {
    let mut s = Session::start(v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--leave-running"]);
    s.assert_running_untraced("after dump --leave-running");
    let mut guard = Copies {
        pid: s.pid,
        comm: s.comm.clone(),
        tools: Vec::new(),
    };
    let mut tools = Vec::new();
    for _ in 0..COPIES {
        tools.push(s.spawn_restore(&images, &["--new-pidns"]));
    }
    // every copy appears, in a namespace of its own, with the original PID there
    let start = Instant::now();
    loop {
        let found = copies_of(s.pid, &s.comm);
        let steady = found.len() == COPIES
            && found.iter().all(|&p| {
                status_field(p, "TracerPid").as_deref() == Some("0")
                    && matches!(proc_state(p), Some('R' | 'S' | 'D'))
            });
        if steady {
            break;
        }
        if start.elapsed() > RESTORE_TIMEOUT {
            let desc: Vec<String> = found
                .iter()
                .map(|&p| format!("{p}: NSpid {:?} state {:?}", nspids(p), proc_state(p)))
                .collect();
            s.fail(&format!(
                "expected {COPIES} restored copies running untraced with PID {} in their own namespaces within {RESTORE_TIMEOUT:?}, found [{}]",
                s.pid,
                desc.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let hosts = copies_of(s.pid, &s.comm);
    let mut namespaces: Vec<String> = hosts
        .iter()
        .filter_map(|p| fs::read_link(format!("/proc/{p}/ns/pid")).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let ours = fs::read_link("/proc/self/ns/pid")
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    if namespaces.len() != COPIES || namespaces.contains(&ours) {
        s.fail(&format!(
            "the copies {hosts:?} should be in {COPIES} distinct new PID namespaces, found {namespaces:?} (ours {ours})"
        ));
    }
    guard.tools = hosts.iter().filter_map(|&p| proc_ppid(p)).collect();
    s.assert_running_untraced("with three copies restored");
    s.go();
    s.finish_original("the original, with three copies running");
    // the tools are removed from the session as they finish: always the first one left
    for k in 0..COPIES {
        s.finish_restored(
            0,
            &format!("copy {} of {COPIES} in a new PID namespace", k + 1),
        );
    }
    let left = copies_of(s.pid, &s.comm);
    if !left.is_empty() {
        s.fail(&format!(
            "copies still exist after their restore tools exited: {left:?}"
        ));
    }
    drop(tools);
    drop(guard);
}
