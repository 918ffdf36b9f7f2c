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
    /// The signal that stopped it (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU), when stopped.
    pub stop_signal: i32,
    /// Its only thread is inside vfork, waiting for a child that still runs in its memory:
    /// seized and interrupted, it stops only once that child execs or exits
    /// ([`Frozen::finish_vfork`]); until then `threads` is empty.
    pub vfork_wait: Option<i32>,
    released: bool,
    /// Killed before its release ([`Frozen::kill_and_wait`]).
    killed: bool,
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
            stop_signal: 0,
            vfork_wait: None,
            released: false,
            killed: false,
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
                // Seccomp suspended: no filter of the target may block our remote calls.
                let seized_ok = ptrace::seize(tid, ptrace::PTRACE_O_SUSPEND_SECCOMP)
                    .or_else(|_| ptrace::seize(tid, 0));
                if let Err(e) = seized_ok.ctx(pid, || format!("seize thread {tid}")) {
                    // Traced already (a debugger, or another process of the tree): only
                    // one tracer per task, and the tracer's hold is not saved yet.
                    let tracer = procfs::task_status(pid, tid).map_or(0, |s| s.tracer_pid);
                    if tracer != 0 {
                        frozen.detach_seized(&seized);
                        return Err(Error::Unsupported {
                            pid,
                            object: format!("thread {tid}"),
                            detail: format!(
                                "it is being traced (ptrace) by pid {tracer}; a traced task cannot be checkpointed yet"
                            ),
                        });
                    }
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
        if let [tid] = seized[..] {
            if in_vfork(pid, tid) {
                frozen.vfork_wait = Some(tid);
                return Ok(frozen);
            }
        }
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        for &tid in &seized {
            match wait_for_interrupt(tid, deadline) {
                Ok(Some(sig)) => {
                    if tid == pid && job_stopped && STOP_SIGNALS.contains(&sig) {
                        frozen.stop_signal = sig;
                    }
                }
                Ok(None) => continue, // exited while we froze it
                Err(e) if e.errno.0 == libc::ETIMEDOUT => {
                    frozen.detach_seized(&seized);
                    let wchan = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"))
                        .unwrap_or_default();
                    let why = if wchan.contains("clone") || wchan.contains("vfork") {
                        "it is waiting for a vfork child that still shares its memory (not supported yet)".to_string()
                    } else {
                        format!("it did not stop within {FREEZE_TIMEOUT:?} (uninterruptible sleep in {wchan:?}?)")
                    };
                    return Err(Error::BadTarget {
                        pid,
                        reason: format!("thread {tid}: {why}"),
                    });
                }
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

    /// Completes the freeze of a process that was inside vfork, once its child has
    /// released its memory (exited or exec'ed): waits for its stop, which comes before it
    /// runs any instruction; the SIGCHLD of the child is not delivered meanwhile (it would
    /// run a handler in a process being dumped).
    pub fn finish_vfork(&mut self) -> Result<()> {
        let Some(tid) = self.vfork_wait.take() else {
            return Ok(());
        };
        let pid = self.pid;
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        let sig = wait_for_interrupt_holding(tid, deadline, libc::SIGCHLD).ctx(pid, || {
            format!("freeze thread {tid} after its vfork child ended")
        })?;
        if sig.is_none() {
            return Err(Error::NoSuchProcess(pid));
        }
        let regs = ptrace::get_regs(tid).ctx(pid, || format!("registers of thread {tid}"))?;
        let sigmask =
            ptrace::get_sigmask(tid).ctx(pid, || format!("signal mask of thread {tid}"))?;
        self.threads.push(FrozenThread { tid, regs, sigmask });
        Ok(())
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

    /// Kills the process now and waits until every thread has ended: the threads are
    /// reaped (as their tracer), the main thread last, once it is the only one left, which
    /// hands it to its parent. Everything exit does before the process can be waited for
    /// is done then (the SysV semaphore undo list is applied). The process is not released
    /// again afterwards.
    pub fn kill_and_wait(&mut self) -> Result<()> {
        let pid = self.pid;
        self.released = true;
        self.killed = true;
        stasis_sys::process::kill(pid, libc::SIGKILL).ctx(pid, || "kill".into())?;
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        let others = self.threads.iter().map(|t| t.tid).filter(|&t| t != pid);
        for tid in others.chain([pid]) {
            loop {
                let status = match ptrace::try_wait_task(tid) {
                    Ok(s) => s,
                    // Not ours to wait for: reaped already (a thread that ended first).
                    Err(e) if e.errno.0 == libc::ECHILD && tid != pid => break,
                    Err(e) => return Err(e).ctx(pid, || format!("wait for killed thread {tid}")),
                };
                match status {
                    Some(WaitStatus::Exited(_) | WaitStatus::Signaled(_)) => break,
                    Some(_) => continue,
                    None if std::time::Instant::now() > deadline => {
                        return Err(Error::BadTarget {
                            pid,
                            reason: format!(
                                "thread {tid} did not end within {FREEZE_TIMEOUT:?} of SIGKILL"
                            ),
                        })
                    }
                    None => std::thread::sleep(std::time::Duration::from_micros(500)),
                }
            }
        }
        Ok(())
    }

    /// Whether [`Frozen::kill_and_wait`] killed it.
    pub fn killed(&self) -> bool {
        self.killed
    }

    /// Puts every thread's registers and mask back and lets the process go.
    pub fn release(mut self, how: Release) -> Result<()> {
        if self.killed {
            return Ok(());
        }
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
                    let sig = if self.job_stopped {
                        self.stop_signal.max(libc::SIGSTOP)
                    } else if how == Release::Stopped {
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
                let sig = if self.job_stopped {
                    self.stop_signal.max(libc::SIGSTOP)
                } else {
                    0
                };
                let _ = ptrace::detach(t.tid, sig);
            }
        }
    }
}

/// Whether thread `tid` is blocked inside vfork (or a clone with CLONE_VFORK), waiting for
/// its child: uninterruptible, with the call still in progress.
fn in_vfork(pid: i32, tid: i32) -> bool {
    let dir = format!("/proc/{pid}/task/{tid}");
    let state = std::fs::read_to_string(format!("{dir}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()));
    if state != Some('D') {
        return false;
    }
    let syscall = std::fs::read_to_string(format!("{dir}/syscall")).unwrap_or_default();
    let mut words = syscall.split_whitespace();
    let nr: i64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(-1);
    let arg0 = words
        .next()
        .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    match nr {
        libc::SYS_vfork => true,
        libc::SYS_clone => arg0 & libc::CLONE_VFORK as u64 != 0,
        libc::SYS_clone3 => {
            std::fs::read_to_string(format!("{dir}/wchan")).is_ok_and(|w| w.contains("clone"))
        }
        _ => false,
    }
}

fn tid_alive(pid: i32, tid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// How long a freeze may take before stasis gives up and lets everything go.
const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const STOP_SIGNALS: [i32; 4] = [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// Waits for the PTRACE_EVENT_STOP of a freshly interrupted thread, until `deadline`
/// (ETIMEDOUT then). Signals that arrive first are delivered (they would have been anyway).
/// Returns the stop's signal (the job-control signal for a stopped task), or None if the
/// thread exited.
fn wait_for_interrupt(
    tid: i32,
    deadline: std::time::Instant,
) -> stasis_sys::SysResult<Option<i32>> {
    wait_for_interrupt_holding(tid, deadline, 0)
}

/// [`wait_for_interrupt`], except that signal `hold` (if not 0) is left undelivered.
fn wait_for_interrupt_holding(
    tid: i32,
    deadline: std::time::Instant,
    hold: i32,
) -> stasis_sys::SysResult<Option<i32>> {
    let mut spins = 0u32;
    loop {
        let Some(status) = ptrace::try_wait_task(tid)? else {
            if std::time::Instant::now() > deadline {
                return Err(stasis_sys::SysError::new(
                    "freeze",
                    format!("tid {tid}"),
                    stasis_sys::Errno(libc::ETIMEDOUT),
                ));
            }
            spins += 1;
            if spins > 100 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
            continue;
        };
        match status {
            WaitStatus::Stopped { event, sig } if event == PTRACE_EVENT_STOP => {
                return Ok(Some(sig))
            }
            WaitStatus::Stopped { sig, .. } if sig == hold && hold != 0 => ptrace::cont(tid, 0)?,
            WaitStatus::Stopped { sig, .. } => ptrace::cont(tid, sig)?,
            WaitStatus::SyscallStop => ptrace::cont(tid, 0)?,
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => return Ok(None),
            WaitStatus::Continued => {}
        }
    }
}
