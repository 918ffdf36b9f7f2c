//! Freezing a process with ptrace and letting it go again.
//!
//! Every thread is seized and interrupted; /proc is rescanned until no new thread appears.
//! While frozen, the captured registers are the truth: whoever runs remote syscalls in a
//! thread puts them back with [`Frozen::release`], which leaves the task exactly as it was.

use stasis_sys::procfs;
use stasis_sys::ptrace::{self, UserRegs, WaitStatus};
use stasis_sys::remote::{resumable_regs, RestartPolicy};

use crate::error::{Error, ProcContext, Result, SysContext};

const PTRACE_EVENT_STOP: i32 = 128;

/// One frozen thread and the state it was frozen in.
#[derive(Debug, Clone)]
pub struct FrozenThread {
    pub tid: i32,
    /// Registers as captured (possibly inside an interrupted syscall).
    pub regs: UserRegs,
    pub sigmask: u64,
}

/// A process whose threads are all in a ptrace stop.
#[derive(Debug)]
pub struct Frozen {
    pub pid: i32,
    pub threads: Vec<FrozenThread>,
    /// The process was stopped by job control before we came.
    pub job_stopped: bool,
    released: bool,
}

/// How to let a frozen process go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Resume it as if nothing happened.
    Resume,
    /// Leave it stopped, as by SIGSTOP.
    Stopped,
    /// Kill it.
    Kill,
}

impl Frozen {
    /// Seizes and interrupts every thread of `pid`.
    pub fn freeze(pid: i32) -> Result<Self> {
        if !procfs::pid_exists(pid) {
            return Err(Error::NoSuchProcess(pid));
        }
        let status = procfs::status(pid).proc(pid)?;
        if status.tgid != pid {
            return Err(Error::BadTarget {
                pid,
                reason: format!("it is a thread of process {}", status.tgid),
            });
        }
        // SAFETY-free check: never freeze ourselves or an ancestor (we would deadlock).
        let me = std::process::id() as i32;
        let mut anc = me;
        while anc > 1 {
            if anc == pid {
                return Err(Error::BadTarget {
                    pid,
                    reason: "it is stasis itself or one of its ancestors".into(),
                });
            }
            anc = match procfs::status(anc) {
                Ok(s) => s.ppid,
                Err(_) => break,
            };
        }
        let job_stopped = status.state == 'T';
        let mut frozen = Frozen {
            pid,
            threads: Vec::new(),
            job_stopped,
            released: false,
        };
        let mut seized: Vec<i32> = Vec::new();
        loop {
            let tids = match procfs::threads(pid) {
                Ok(t) => t,
                Err(e) => {
                    frozen.detach_seized(&seized);
                    return Err(Error::Proc { pid, source: e });
                }
            };
            let new: Vec<i32> = tids.into_iter().filter(|t| !seized.contains(t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                if let Err(e) = ptrace::seize(tid, 0).ctx(pid, || format!("seize thread {tid}")) {
                    // A thread that exited meanwhile is fine; anything else is not.
                    if procfs::pid_exists(tid) && tid_alive(pid, tid) {
                        frozen.detach_seized(&seized);
                        return Err(e);
                    }
                    continue;
                }
                seized.push(tid);
                let _ = ptrace::interrupt(tid);
            }
        }
        for &tid in &seized {
            match wait_for_interrupt(tid) {
                Ok(true) => {}
                Ok(false) => continue, // exited while we froze it
                Err(e) => {
                    frozen.detach_seized(&seized);
                    return Err(Error::Sys {
                        pid,
                        context: format!("freeze thread {tid}"),
                        source: e,
                    });
                }
            }
            let regs = ptrace::get_regs(tid);
            let mask = ptrace::get_sigmask(tid);
            match (regs, mask) {
                (Ok(regs), Ok(sigmask)) => frozen.threads.push(FrozenThread { tid, regs, sigmask }),
                (Err(e), _) | (_, Err(e)) => {
                    frozen.detach_seized(&seized);
                    return Err(Error::Sys {
                        pid,
                        context: format!("read registers of thread {tid}"),
                        source: e,
                    });
                }
            }
        }
        if frozen.threads.is_empty() {
            return Err(Error::NoSuchProcess(pid));
        }
        Ok(frozen)
    }

    fn detach_seized(&mut self, tids: &[i32]) {
        for &tid in tids {
            let _ = ptrace::detach(tid, 0);
        }
        self.released = true;
    }

    /// The main thread.
    pub fn leader(&self) -> &FrozenThread {
        self.threads
            .iter()
            .find(|t| t.tid == self.pid)
            .unwrap_or(&self.threads[0])
    }

    /// Puts every thread's registers and mask back and lets the process go.
    pub fn release(mut self, how: Release) -> Result<()> {
        self.released = true;
        if how == Release::Kill {
            let _ = stasis_sys::process::kill(self.pid, libc::SIGKILL);
            for t in &self.threads {
                let _ = ptrace::detach(t.tid, 0);
            }
            return Ok(());
        }
        let mut first_err = None;
        for t in &self.threads {
            let regs = resumable_regs(&t.regs, RestartPolicy::SameTask);
            let r = ptrace::set_regs(t.tid, &regs)
                .and_then(|_| ptrace::set_sigmask(t.tid, t.sigmask))
                .and_then(|_| {
                    let sig = if how == Release::Stopped || self.job_stopped {
                        libc::SIGSTOP
                    } else {
                        0
                    };
                    ptrace::detach(t.tid, sig)
                });
            if let Err(e) = r {
                first_err.get_or_insert(Error::Sys {
                    pid: self.pid,
                    context: format!("release thread {}", t.tid),
                    source: e,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Frozen {
    /// A dump that fails half way still lets the target go unharmed.
    fn drop(&mut self) {
        if !self.released {
            for t in &self.threads {
                let regs = resumable_regs(&t.regs, RestartPolicy::SameTask);
                let _ = ptrace::set_regs(t.tid, &regs);
                let _ = ptrace::set_sigmask(t.tid, t.sigmask);
                let sig = if self.job_stopped { libc::SIGSTOP } else { 0 };
                let _ = ptrace::detach(t.tid, sig);
            }
        }
    }
}

fn tid_alive(pid: i32, tid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// Waits for the PTRACE_EVENT_STOP of a freshly interrupted thread. Signals that arrive
/// first are delivered (they would have been anyway); returns false if the thread exited.
fn wait_for_interrupt(tid: i32) -> stasis_sys::SysResult<bool> {
    loop {
        match ptrace::wait_task(tid)? {
            WaitStatus::Stopped { event, .. } if event == PTRACE_EVENT_STOP => return Ok(true),
            WaitStatus::Stopped { sig, .. } => ptrace::cont(tid, sig)?,
            WaitStatus::SyscallStop => ptrace::cont(tid, 0)?,
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => return Ok(false),
            WaitStatus::Continued => {}
        }
    }
}
