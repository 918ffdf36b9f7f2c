//! The tool's side: each waiting restore child is taken over with ptrace and turned into
//! the image's process (memory, threads, registers, signals, timers, credentials), then
//! held stopped until the whole tree is ready.

use std::path::Path;

use stasis_image::TaskImage;
use stasis_sys::own;
use stasis_sys::ptrace::{self, WaitStatus};
use stasis_sys::remote::Remote;

use super::plan::{PidMap, TaskPlan, SCRATCH_LEN};
use crate::error::{Error, Result, SysContext};
use crate::files;
use crate::inject::Session;
use crate::mem::{self, PAGE};
use crate::{creds, ipc, seccomp, sem_undo, sharing, signals, task, timers};

/// The signal that stops a job-stopped task again: the one that stopped it, if its
/// default action still applies, else SIGSTOP.
pub(super) fn stop_signal(t: &TaskImage) -> i32 {
    let sig = t.job_stop_signal;
    let default = t
        .signals
        .actions
        .iter()
        .find(|a| a.signo == sig)
        .is_none_or(|a| a.handler == 0);
    if sig > 0 && default {
        sig
    } else {
        libc::SIGSTOP
    }
}

/// Final mask, registers and FPU state of a stopped thread.
pub(super) fn finish_thread(pid: i32, tid: i32, th: &stasis_image::ThreadImage) -> Result<()> {
    ptrace::set_sigmask(tid, th.sigmask).ctx(pid, || format!("signal mask of thread {tid}"))?;
    ptrace::set_regs(tid, &task::regs_from_image(&th.regs))
        .ctx(pid, || format!("registers of thread {tid}"))?;
    ptrace::set_xstate(tid, &th.xstate).ctx(pid, || format!("FPU/vector registers of thread {tid}"))
}

/// Objects made once per restore that later tasks find again: shared anonymous memory,
/// pidfds.
#[derive(Default)]
pub(super) struct Made {
    shmem: mem::ShmemTable,
    pidfds: files::pidfd::Opened,
}

/// Takes the waiting child over with ptrace and turns it into the image's process.
pub(super) fn take_over(
    t: &TaskImage,
    plan: &TaskPlan,
    contents: &mem::Contents,
    pids: &PidMap,
    made: &mut Made,
    sysv: (Option<&ipc::Created>, Option<&stasis_image::ipc::IpcImage>),
    mm_children: &[&TaskImage],
) -> Result<Vec<Ready>> {
    let pid = pids.host(t.pid)?;
    ptrace::seize(
        pid,
        libc::PTRACE_O_TRACECLONE | ptrace::PTRACE_O_SUSPEND_SECCOMP,
    )
    .ctx(pid, || "seize the restore child".into())?;
    ptrace::interrupt(pid).ctx(pid, || "interrupt the restore child".into())?;
    loop {
        match ptrace::wait_task(pid).ctx(pid, || "wait for the restore child".into())? {
            WaitStatus::Stopped { event: 128, .. } => break,
            WaitStatus::Stopped { sig, .. } => {
                ptrace::cont(pid, sig).ctx(pid, || "resume restore child".into())?
            }
            WaitStatus::Exited(c) => {
                return Err(Error::Restore {
                    pid,
                    reason: format!("the restore child exited with {c}"),
                })
            }
            WaitStatus::Signaled(s) => {
                return Err(Error::Restore {
                    pid,
                    reason: format!("the restore child was killed by signal {s}"),
                })
            }
            _ => {}
        }
    }
    let regs = ptrace::get_regs(pid).ctx(pid, || "registers of the restore child".into())?;
    let remote = Remote::new(pid, plan.scratch, regs);
    let mut s = Session::new(pid, remote, plan.scratch + PAGE)?;
    s.set_ns_pid(t.pid);
    let thread = &t.threads[0];

    task::unregister_inherited_rseq(&mut s)?;
    // What the tool's copy collected (SIGCHLD of its children...) is not the image's.
    signals::drain_pending(&mut s)?;
    // The child's exe is the tool's; when the image's is the same file, it stays (the
    // kernel refuses to replace an exe that is still mapped).
    let same_exe = match (
        own::stat(Path::new(&t.attrs.exe)),
        own::stat(Path::new("/proc/self/exe")),
    ) {
        (Ok(a), Ok(b)) => (a.0, a.1) == (b.0, b.1),
        _ => false,
    };
    let exe_fd = if same_exe { -1 } else { plan.exe_fd };
    // Nothing is pending and no handler is set yet: one stop per call is safe.
    s.trap_after_calls(true)?;
    mem::restore(
        &mut s,
        &mut made.shmem,
        &t.mm,
        &plan.map_files,
        exe_fd,
        contents,
        (plan.scratch, plan.scratch + SCRATCH_LEN),
    )?;
    for fd in plan.map_files.iter().map(|m| m.fd).chain([plan.exe_fd]) {
        s.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    }
    s.trap_after_calls(false)?;
    // Once no descriptor it does not keep is left to close (which would drop them).
    files::locks::take_posix_locks(&mut s, &t.file_locks)?;
    // The whole tree exists now: pidfds can be opened on any process of it.
    files::pidfd::restore(&mut s, &t.fds, &mut made.pidfds)?;
    // Objects this restore created get their last use from inside the tree.
    if let (Some(created), Some(img)) = sysv {
        created.touch(&mut s, img)?;
    }
    // After the root's touch (whose SETALL clears the undo adjustments of created sets).
    if let Some(img) = sysv.1 {
        sem_undo::restore(&mut s, t.pid, img)?;
    }
    restore_process_state(&mut s, pid, t, true)?;
    // Children in this address space, made before filters and credentials change.
    let mut ready = Vec::with_capacity(1 + mm_children.len());
    for c in mm_children {
        ready.push(create_mm_child(&mut s, pid, plan.scratch, c, pids)?);
    }
    // The filters every thread has, before the threads are made: they inherit them, shared.
    let seccomp_shared = seccomp::shared_prefix(&t.threads);
    if let Some(sc) = &thread.seccomp {
        seccomp::restore_prefix(&mut s, sc, seccomp_shared)?;
    }
    // The other threads: created in the main one, set up through sessions of their own,
    // left stopped with their final registers. Before the main thread's credentials
    // change, which new threads would inherit.
    let mut host_tids = vec![pid];
    s.trap_after_calls(task::trap_after_allowed(t, thread))?;
    let mut inherited_creds = creds::Inherited::default();
    for th in t.threads.iter().filter(|th| th.tid != t.pid) {
        let tid = task::create_thread(&mut s, th, |ns_tid| pids.host_thread(pid, ns_tid))?;
        host_tids.push(tid);
        let regs = ptrace::get_regs(tid).ctx(pid, || format!("registers of new thread {tid}"))?;
        let mut ts = Session::new(
            pid,
            Remote::new(tid, plan.scratch, regs),
            plan.scratch + PAGE,
        )?;
        ts.set_ns_pid(t.pid);
        task::restore_new_thread_remote(&mut ts, th, t)?;
        task::restore_thread_outside(pid, tid, th)?;
        if let Some(sc) = &th.seccomp {
            seccomp::restore(&mut ts, sc, seccomp_shared)?;
        }
        inherited_creds.restore(&mut ts, th.creds.as_ref().unwrap_or(&t.creds))?;
        finish_thread(pid, tid, th)?;
    }

    s.trap_after_calls(false)?;
    // POSIX timers once every thread they may target exists.
    restore_privileged_last(&mut s, t, seccomp_shared)?;

    // Last: the mask, then the scratch page goes; the task stops at that munmap's exit,
    // where it gets its final registers.
    s.call(
        "munmap",
        libc::SYS_munmap,
        [plan.scratch, SCRATCH_LEN, 0, 0, 0, 0],
    )?;
    finish_thread(pid, pid, thread)?;
    let sig = if t.job_stopped { stop_signal(t) } else { 0 };
    log::info!("pid {pid}: restored, stopped until the whole tree is");
    ready.push(Ready {
        pid,
        tids: host_tids,
        sig,
    });
    Ok(ready)
}

/// What a process's main thread (the session's) gets once its memory is back: signal
/// handlers (unless `handlers` is false: a table shared with the parent, already there),
/// process and thread attributes, interval timers, process-wide pending signals. `pid` is
/// the process as seen here.
fn restore_process_state(s: &mut Session, pid: i32, t: &TaskImage, handlers: bool) -> Result<()> {
    let thread = &t.threads[0];
    if handlers {
        signals::restore(s, &t.signals)?;
    }
    task::restore_attrs_remote(s, &t.attrs)?;
    task::restore_thread_remote(s, thread)?;
    task::restore_thread_outside(pid, pid, thread)?;
    task::restore_attrs_outside(pid, &t.attrs)?;
    timers::restore(s, &t.itimers)?;
    signals::restore_pending(s, None, &t.shared_pending)
}

/// The last steps of a process's main thread, once its threads exist: POSIX timers (which
/// may target them), then its seccomp filters (less the first `seccomp_done`, which it
/// has) while it still has every privilege, its credentials, and the attributes that need
/// privileges to set.
fn restore_privileged_last(s: &mut Session, t: &TaskImage, seccomp_done: usize) -> Result<()> {
    timers::restore_posix(s, &t.posix_timers)?;
    // Suspended while traced: the filters cannot block our own calls.
    if let Some(sc) = &t.threads[0].seccomp {
        seccomp::restore(s, sc, seccomp_done)?;
    }
    creds::restore(s, &t.creds)?;
    task::restore_attrs_last(s, &t.attrs)
}

/// A child that shared its parent's address space (CLONE_VM, not a thread): made by a
/// remote clone3 in the restored parent, with the image's PID and what else it shared
/// (handlers, fd table, fs), then given its own per-task state through a session on the
/// scratch page (which is in the shared memory) and its final registers. Left stopped.
fn create_mm_child(
    s: &mut Session,
    pid: i32,
    scratch: u64,
    c: &TaskImage,
    pids: &PidMap,
) -> Result<Ready> {
    let Some(thread) = c.threads.first() else {
        return Err(Error::Restore {
            pid: c.pid,
            reason: "a process sharing its parent's memory has no thread in the image".into(),
        });
    };
    ptrace::set_options(
        pid,
        libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEFORK | ptrace::PTRACE_O_SUSPEND_SECCOMP,
    )
    .ctx(pid, || "trace fork".into())?;
    let flags = sharing::clone_flags(c);
    let cpid = task::create_process_in_mm(s, c.pid, flags, |p| pids.host(p))?;
    let regs = ptrace::get_regs(cpid).ctx(cpid, || "registers of the new process".into())?;
    let mut cs = Session::new(cpid, Remote::new(cpid, scratch, regs), scratch + PAGE)?;
    cs.set_ns_pid(c.pid);
    restore_process_state(&mut cs, cpid, c, !c.shared_with_parent.signal_handlers)?;
    restore_privileged_last(&mut cs, c, 0)?;
    finish_thread(cpid, cpid, thread)?;
    log::info!("pid {cpid}: made in the address space of {pid}");
    Ok(Ready {
        pid: cpid,
        tids: vec![cpid],
        sig: if c.job_stopped { stop_signal(c) } else { 0 },
    })
}

/// A task whose restore is complete, held stopped until every task's is.
pub(super) struct Ready {
    pub(super) pid: i32,
    pub(super) tids: Vec<i32>,
    /// The signal to leave it with (a job-control stop), or 0.
    pub(super) sig: i32,
}

impl Ready {
    pub(super) fn release(self) -> Result<()> {
        for tid in self.tids {
            ptrace::detach(tid, self.sig).ctx(self.pid, || format!("detach thread {tid}"))?;
        }
        log::info!("pid {}: running", self.pid);
        Ok(())
    }
}
