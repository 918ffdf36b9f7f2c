//! A thread's TID taken by another process when restore creates the thread. In a test
//! binary of its own: taking a chosen PID moves the kernel's next PID (ns_last_pid), which
//! would hand just-freed PIDs of other tests' victims to our `sleep`.

mod common;

use std::fs;

use common::*;

/// Takes PID `want` for a `sleep` of ours (through ns_last_pid, retried when another
/// process takes it first); the sleep is killed and reaped on drop.
struct PidHolder(std::process::Child);

impl Drop for PidHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn take_pid(want: i32) -> PidHolder {
    for _ in 0..100 {
        fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", want - 1)).expect("ns_last_pid");
        let child = std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start sleep");
        let holder = PidHolder(child);
        if holder.0.id() as i32 == want {
            return holder;
        }
    }
    panic!("could not take pid {want} for a sleep in 100 tries");
}

/// A thread's TID is another process's when the restore creates the thread: the restore
/// fails naming the PID in use, quickly, and leaves nothing behind. (It used to hang:
/// clean-up waited for the process while the threads it traced waited to be reaped.)
#[test]
fn restore_with_a_thread_id_taken_fails_and_leaves_nothing() {
    let mut s = Session::start(&Victim::c("thread_sync"));
    let tids: Vec<i32> = fs::read_dir(format!("/proc/{}/task", s.pid))
        .expect("list the victim's threads")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&t| t != s.pid)
        .collect();
    let Some(&tid) = tids.iter().max() else {
        s.fail("the victim has no threads besides its main one");
    };
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    let _holder = take_pid(tid);
    s.restore_must_fail(
        &images,
        &["in use"],
        PidRule::NothingLeft,
        "restore with a thread's id taken",
    );
}
