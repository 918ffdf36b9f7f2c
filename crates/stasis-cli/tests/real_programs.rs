//! Real programs, not only ours: a python3 interpreter with objects and suspended
//! generators (testprogs/py_victim.py), a python3 multiprocessing pool (a tree with
//! pipes, semaphores in deleted shared files and copy-on-write memory:
//! testprogs/py_multiprocessing.py), `sleep` restored mid-sleep, `dd` copying a file
//! byte by byte (file offsets of a real program), `tail -f` following a file.
//!
//! `cat FILE` is not here: cat reads a regular file in 128 KiB blocks and is done in
//! milliseconds, so it cannot be caught mid-read reliably; it would only block on a
//! pipe or a terminal, which the tool does not support yet. `dd bs=1` and `tail -f`
//! cover "a coreutils program reading a file" instead.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tree::*;
use common::*;

fn python() -> Victim {
    Victim::program("python3", python3())
        .arg(testprogs_dir().join("py_victim.py"))
        .ready_timeout(Duration::from_secs(60))
}

#[test]
fn python_standalone() {
    run_control(&python());
}

#[test]
fn python_dump_restore() {
    run_cycle(&python());
}

#[test]
fn python_dump_restore_twice() {
    run_double_cycle(&python());
}

#[test]
fn python_leave_running() {
    run_leave_running(&python());
}

fn python_pool() -> Victim {
    Victim::program("python3", python3())
        .named("py_multiprocessing")
        .arg(testprogs_dir().join("py_multiprocessing.py"))
        .ready_timeout(Duration::from_secs(60))
}

tree_cycle_tests!(python_pool(), Outside::VictimOnly;
    standalone python_pool_standalone,
    dump_restore python_pool_dump_restore,
    dump_restore_twice python_pool_dump_restore_twice,
    leave_running python_pool_leave_running,
);

/// Ready when the process runs `comm` and sleeps in the kernel.
fn sleeping_as(comm: &'static str) -> impl Fn(&Session) -> bool + Send + Sync {
    move |s: &Session| proc_comm(s.pid).as_deref() == Some(comm) && proc_state(s.pid) == Some('S')
}

fn sleep3() -> Victim {
    Victim::program("sleep", "sleep")
        .arg("3")
        .ready_when(sleeping_as("sleep"))
        .expect_exit(0)
}

#[test]
fn sleep_restored_mid_sleep() {
    let f = run_cycle(&sleep3());
    assert!(
        f.elapsed >= Duration::from_secs(3),
        "`sleep 3` exited 0 but only {:?} after it started",
        f.elapsed
    );
}

#[test]
fn sleep_dump_restore_twice() {
    let f = run_double_cycle(&sleep3());
    assert!(
        f.elapsed >= Duration::from_secs(3),
        "finished after {:?}",
        f.elapsed
    );
}

#[test]
fn sleep_leave_running() {
    run_leave_running(&sleep3());
}

const DD_SIZE: usize = 3 << 20;

fn dd() -> Victim {
    Victim::program("dd", "dd")
        .args_of(["if=tmp/in.dat", "of=tmp/out.dat", "bs=1", "status=none"])
        .before_start(|s: &Scratch| {
            let data: Vec<u8> = (0..DD_SIZE as u64)
                .map(|i| ((i.wrapping_mul(0x9e3779b97f4a7c15) >> 56) ^ i) as u8)
                .collect();
            fs::write(s.tmp().join("in.dat"), data).expect("write dd input");
        })
        .ready_when(|s: &Session| {
            fs::metadata(s.scratch.tmp().join("out.dat")).is_ok_and(|m| m.len() >= 64 << 10)
        })
        .expect_exit(0)
}

fn check_dd(f: &Finished) {
    let input = fs::read(f.scratch().tmp().join("in.dat")).expect("read dd input");
    let output = fs::read(f.scratch().tmp().join("out.dat")).expect("read dd output");
    assert_eq!(output.len(), input.len(), "dd output has the wrong size");
    if let Some(i) = input.iter().zip(&output).position(|(a, b)| a != b) {
        panic!(
            "dd output differs from its input at byte {i} (of {})",
            input.len()
        );
    }
}

// (no --leave-running run for dd: it keeps writing its output while and after it is
// dumped, so the output file cannot be put back as it was at dump time)
#[test]
fn dd_copy_byte_by_byte() {
    let f = run_cycle(&dd());
    check_dd(&f);
}

/// A process that only has to exist (tail --pid watches it); killed and reaped on drop.
struct Watched(Arc<Mutex<Option<Child>>>);

impl Watched {
    fn start() -> Watched {
        let c = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep");
        Watched(Arc::new(Mutex::new(Some(c))))
    }
    fn pid(&self) -> u32 {
        self.0.lock().unwrap().as_ref().unwrap().id()
    }
    fn end(h: &Mutex<Option<Child>>) {
        if let Some(mut c) = h.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        Watched::end(&self.0);
    }
}

#[test]
fn tail_follows_a_file() {
    let watched = Watched::start();
    let handle = watched.0.clone();
    let v = Victim::program("tail", "tail")
        .args_of(["---disable-inotify", "-s", "0.1", "-f"])
        .arg(format!("--pid={}", watched.pid()))
        .arg("tmp/log.txt")
        .before_start(|s: &Scratch| {
            let text: String = (1..=20).map(|i| format!("line {i}\n")).collect();
            fs::write(s.tmp().join("log.txt"), text).expect("write log");
        })
        .ready_when(|s: &Session| {
            s.output().ends_with("line 20\n") && proc_state(s.pid) == Some('S')
        })
        .on_go(move |s: &Session| {
            // append a line; once tail has shown it, end the process it watches
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(s.scratch.tmp().join("log.txt"))
                .expect("open log");
            std::io::Write::write_all(&mut f, b"appended after restore\n").expect("append");
            let start = Instant::now();
            while !s.output().contains("appended after restore") {
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "tail did not show a line appended to the file it follows; its output:\n{}",
                    s.output()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Watched::end(&handle);
        })
        .expect_exit(0);
    let f = run_cycle(&v);
    let want: String = (11..=20)
        .map(|i| format!("line {i}\n"))
        .chain(std::iter::once("appended after restore\n".to_string()))
        .collect();
    assert_eq!(
        f.output, want,
        "tail's output is not the last 10 lines plus the new one"
    );
}
