//! Many tasks: a tree of processes and a process with many threads.
//!
//! The victims are this binary again: `victim-tree READY N` makes a tree of N processes
//! (the root, 9 children, the rest grandchildren spread over the children), each with
//! 256 KiB of its own memory and sharing the root's 4 MiB copy-on-write; `victim-threads
//! READY N` starts N threads that sleep. Both create READY once everything is in place.
//!
//! A run: `stasis dump --leave-running -v4` (wall time; the frozen time is what stasis
//! logged), kill and reap every task, `stasis restore -d` (wall time), then check that every
//! process is back (tree) or that the process has all its threads again, and kill it all.
//! The baseline, measured in the same run, is what the kernel needs to make as many tasks:
//! forking and reaping N processes, or creating and joining N threads.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{dir_size, frozen_from_log, kill_and_reap, proc_state, quiet, wait_until, Bench, Res};

const OWN_BYTES: usize = 256 << 10;
const SHARED_BYTES: usize = 4 << 20;

/// Touches `bytes` of fresh memory (kept: the allocation is leaked on purpose).
fn touch(bytes: usize, seed: u8) {
    let v = vec![seed; bytes];
    std::mem::forget(v);
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Creates the file that says the victim is ready.
fn ready(path: &str) {
    if fs::write(path, b"ready").is_err() {
        std::process::exit(7);
    }
}

/// Forks; the child runs `f`, which never returns (it sleeps until killed).
fn fork_into(f: impl FnOnce()) -> i32 {
    // SAFETY: the victim is single-threaded here (threads come only in victim-threads,
    // which never forks), so the child's copy of every lock is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        std::process::exit(8);
    }
    if pid == 0 {
        f();
        std::process::exit(0);
    }
    pid
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor this process owns.
    unsafe { libc::close(fd) };
}

/// `victim-tree READY N`.
pub fn tree_victim(args: &[String]) -> ! {
    let n: usize = args[1].parse().unwrap_or_else(|_| std::process::exit(4));
    touch(SHARED_BYTES, 1);
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        std::process::exit(6);
    }
    let (r, w) = (fds[0], fds[1]);
    let children = 9.min(n.saturating_sub(1));
    let grandchildren = n.saturating_sub(1 + children);
    for c in 0..children {
        let mine = grandchildren / children + usize::from(c < grandchildren % children);
        fork_into(move || {
            close(r);
            for _ in 0..mine {
                fork_into(move || {
                    touch(OWN_BYTES, 3);
                    close(w);
                    sleep_forever()
                });
            }
            touch(OWN_BYTES, 2);
            close(w);
            sleep_forever()
        });
    }
    close(w);
    // Every task closes its write end once set up: end of file means all are.
    let mut b = [0u8; 1];
    // SAFETY: reading into a one-byte buffer we own.
    while unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) } > 0 {}
    close(r);
    ready(&args[0]);
    sleep_forever()
}

/// `victim-threads READY N`.
pub fn threads_victim(args: &[String]) -> ! {
    let n: usize = args[1].parse().unwrap_or_else(|_| std::process::exit(4));
    for _ in 0..n {
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(|| sleep_forever());
        if spawned.is_err() {
            std::process::exit(5);
        }
    }
    ready(&args[0]);
    sleep_forever()
}

/// `root` and all its descendants.
fn tree_of(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        i += 1;
        let text =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    out
}

fn threads_of(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

fn kill_all(pids: &[i32]) -> Res<()> {
    for &p in pids {
        // SAFETY: kill has no memory arguments.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    for &p in pids {
        kill_and_reap(p)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tree,
    Threads,
}

impl Kind {
    pub fn name(self, n: usize) -> String {
        match self {
            Kind::Tree => format!("tree of {n} processes"),
            Kind::Threads => format!("process with {n} threads"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ManyRun {
    pub dump: Duration,
    pub frozen: Option<Duration>,
    pub image: u64,
    pub restore: Duration,
}

/// Kills every task it lists on every path.
struct Tasks(Vec<i32>);

impl Drop for Tasks {
    fn drop(&mut self) {
        let _ = kill_all(&self.0);
    }
}

pub fn run(bench: &Bench, kind: Kind, n: usize, i: usize) -> Res<ManyRun> {
    let tag = format!("{kind:?}-{n}-{i}").to_lowercase();
    let ready_path = bench.work.join(format!("ready-{tag}"));
    let images = bench.work.join(format!("img-{tag}"));
    let log = bench.work.join(format!("dump-{tag}.log"));
    let _ = fs::remove_file(&ready_path);
    let _ = fs::remove_dir_all(&images);
    let sub = match kind {
        Kind::Tree => "victim-tree",
        Kind::Threads => "victim-threads",
    };
    let child = quiet(
        Command::new(&bench.self_exe)
            .arg(sub)
            .arg(&ready_path)
            .arg(n.to_string()),
    )
    .spawn()
    .map_err(|e| format!("start the {} victim: {e}", kind.name(n)))?;
    let root = child.id() as i32;
    // The Child handle is not used to reap: kill_and_reap does (we are a subreaper).
    drop(child);
    let mut tasks = Tasks(vec![root]);
    wait_until("the victim to be ready", Duration::from_secs(60), || {
        Ok(ready_path.exists())
    })?;
    if kind == Kind::Tree {
        tasks.0 = tree_of(root);
        if tasks.0.len() != n {
            return Err(format!(
                "the victim tree has {} processes, not {n}",
                tasks.0.len()
            ));
        }
    } else if threads_of(root) != n + 1 {
        return Err(format!(
            "the victim has {} threads, not {}",
            threads_of(root),
            n + 1
        ));
    }
    let images_s = images.display().to_string();
    let dump = bench.stasis.dump_leave_running(root, &images, &log)?;
    let frozen = frozen_from_log(&log);
    let image = dir_size(&images)?;
    kill_all(&tasks.0)?;
    let restore = bench.stasis.run(&["restore", "-D", &images_s, "-d"])?;
    // Whatever came back is ours to kill, also if a check below fails.
    match kind {
        Kind::Tree => {
            let back = tree_of(root);
            let mut want = tasks.0.clone();
            want.sort_unstable();
            let mut got = back.clone();
            got.sort_unstable();
            tasks.0 = back;
            if got != want {
                return Err(format!(
                    "after restore the tree has {} processes, not the {} dumped",
                    got.len(),
                    want.len()
                ));
            }
            if let Some(p) = got
                .iter()
                .find(|&&p| !matches!(proc_state(p), Some('S' | 'R')))
            {
                return Err(format!(
                    "restored process {p} is in state {:?}",
                    proc_state(*p)
                ));
            }
        }
        Kind::Threads => {
            if threads_of(root) != n + 1 {
                return Err(format!(
                    "after restore the process has {} threads, not {}",
                    threads_of(root),
                    n + 1
                ));
            }
        }
    }
    drop(tasks);
    if !bench.keep_logs {
        let _ = fs::remove_file(&log);
    }
    let _ = fs::remove_file(&ready_path);
    let _ = fs::remove_dir_all(&images);
    Ok(ManyRun {
        dump,
        frozen,
        image,
        restore,
    })
}

/// What the kernel needs to make `n` tasks of this kind (forking and reaping `n`
/// processes, or creating and joining `n` threads): median of three.
pub fn baseline(kind: Kind, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        match kind {
            Kind::Tree => {
                for _ in 0..n {
                    // SAFETY: the bench is single-threaded here; the child exits at once.
                    let pid = unsafe { libc::fork() };
                    if pid == 0 {
                        // SAFETY: _exit in the child, without running the parent's handlers.
                        unsafe { libc::_exit(0) };
                    }
                    let mut st = 0;
                    // SAFETY: st is an int we own.
                    unsafe { libc::waitpid(pid, &mut st, 0) };
                }
            }
            Kind::Threads => {
                let handles: Vec<_> = (0..n)
                    .filter_map(|_| {
                        std::thread::Builder::new()
                            .stack_size(64 << 10)
                            .spawn(|| ())
                            .ok()
                    })
                    .collect();
                for h in handles {
                    let _ = h.join();
                }
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    times[1]
}
