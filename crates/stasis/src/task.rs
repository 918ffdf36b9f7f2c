//! Per-process attributes (cwd, root, umask, rlimits, prctl flags...) and per-thread state
//! (registers, FPU, TLS, masks, robust list, rseq, scheduling).

use stasis_image::{GpRegs, ProcessAttrs, Rlimit, RseqConfig, SchedParams, TaskImage, ThreadImage};
use stasis_sys::procfs::{self, Status};
use stasis_sys::ptrace::{self, UserRegs};
use stasis_sys::remote::{resumable_regs, RestartPolicy};
use stasis_sys::{own, process};

use crate::error::{Error, ProcContext, Result, SysContext};
use crate::freeze::FrozenThread;
use crate::inject::Session;
use crate::signals;

const PR_GET_TID_ADDRESS: u64 = 40;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const PR_SET_NAME: u64 = 15;

/// Copies between the kernel's register layout and the image's, field by field (the
/// image crate makes no Linux calls, so it has its own type).
macro_rules! copy_regs {
    ($from:expr, $to:ident) => {{
        let r = $from;
        $to {
            r15: r.r15,
            r14: r.r14,
            r13: r.r13,
            r12: r.r12,
            rbp: r.rbp,
            rbx: r.rbx,
            r11: r.r11,
            r10: r.r10,
            r9: r.r9,
            r8: r.r8,
            rax: r.rax,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            orig_rax: r.orig_rax,
            rip: r.rip,
            cs: r.cs,
            eflags: r.eflags,
            rsp: r.rsp,
            ss: r.ss,
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            ds: r.ds,
            es: r.es,
            fs: r.fs,
            gs: r.gs,
        }
    }};
}

pub fn regs_to_image(r: &UserRegs) -> GpRegs {
    copy_regs!(r, GpRegs)
}

pub fn regs_from_image(r: &GpRegs) -> UserRegs {
    copy_regs!(r, UserRegs)
}

/// Everything about one frozen thread; `s` runs in that thread.
pub fn dump_thread(pid: i32, t: &FrozenThread, s: &mut Session) -> Result<ThreadImage> {
    let tid = t.tid;
    let xstate = ptrace::get_xstate(tid).ctx(pid, || format!("thread {tid} FPU state"))?;
    let sigaltstack = signals::dump_altstack(s)?;
    let data = s.data_addr();
    s.call(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        [PR_GET_TID_ADDRESS, data, 0, 0, 0, 0],
    )?;
    let clear_child_tid = s.get_u64(0)?;
    let (head, len) =
        ptrace::get_robust_list(tid).ctx(pid, || format!("thread {tid} robust list"))?;
    let rseq = ptrace::get_rseq_configuration(tid).ctx(pid, || format!("thread {tid} rseq"))?;
    let (policy, priority) = process::get_scheduler(tid).ctx(pid, || format!("thread {tid}"))?;
    let nice = process::get_nice(tid).ctx(pid, || format!("thread {tid}"))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    Ok(ThreadImage {
        tid,
        comm,
        regs: regs_to_image(&resumable_regs(&t.regs, RestartPolicy::NewTask)),
        xstate,
        sigmask: t.sigmask,
        sigaltstack,
        clear_child_tid,
        robust_list: stasis_image::RobustList { head, len },
        rseq: (rseq.rseq_abi_size > 0).then_some(RseqConfig {
            abi_pointer: rseq.rseq_abi_pointer,
            len: rseq.rseq_abi_size,
            flags: rseq.flags,
            signature: rseq.signature,
        }),
        sched: SchedParams {
            policy: policy & !libc::SCHED_RESET_ON_FORK,
            priority,
            nice,
            reset_on_fork: policy & libc::SCHED_RESET_ON_FORK != 0,
        },
        pending: signals::dump_pending(pid, tid, false)?,
        creds: None,
        seccomp: None,
    })
}

/// Drops the rseq registration the restore child inherited from the tool: its area is
/// about to be unmapped, and the kernel would fault writing to it.
pub fn unregister_inherited_rseq(s: &mut Session) -> Result<()> {
    let tid = s.tid();
    let conf =
        ptrace::get_rseq_configuration(tid).ctx(s.pid(), || "rseq of restore child".into())?;
    if conf.rseq_abi_size > 0 {
        s.call(
            "rseq(unregister)",
            libc::SYS_rseq,
            [
                conf.rseq_abi_pointer,
                conf.rseq_abi_size as u64,
                RSEQ_FLAG_UNREGISTER,
                conf.signature as u64,
                0,
                0,
            ],
        )?;
    }
    Ok(())
}

/// Thread state set by remote syscalls, once the address space is back.
pub fn restore_thread_remote(s: &mut Session, t: &ThreadImage) -> Result<()> {
    signals::restore_pending(s, Some(t.tid), &t.pending)?;
    signals::restore_altstack(s, &t.sigaltstack)?;
    restore_comm(s, t)?;
    s.call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [t.clear_child_tid, 0, 0, 0, 0, 0],
    )?;
    s.call(
        "set_robust_list",
        libc::SYS_set_robust_list,
        [t.robust_list.head, t.robust_list.len.max(24), 0, 0, 0, 0],
    )?;
    restore_rseq(s, t)
}

/// [`restore_thread_remote`] for a thread just made by [`create_thread`] in `process`,
/// which already has its clear-child-tid address (from clone3) and, as every new thread,
/// no robust list, no rseq area and no alternate signal stack: only what differs from that
/// takes a call. Where SIGTRAP allows, the session's calls stop once each from here on
/// (the thread's final mask replaces the one this sets).
pub fn restore_new_thread_remote(
    s: &mut Session,
    t: &ThreadImage,
    process: &TaskImage,
) -> Result<()> {
    // Its mask is its creator's (SIGTRAP unblocked if the creator's calls stop at int3).
    s.trap_after_calls(trap_after_allowed(process, t))?;
    signals::restore_pending(s, Some(t.tid), &t.pending)?;
    // The rest in one batch (one stop), each argument struct at its own offset.
    let mut calls = Vec::new();
    if t.sigaltstack.flags & (libc::SS_DISABLE | (1 << 31)) != libc::SS_DISABLE {
        calls.push(signals::altstack_call(s, &t.sigaltstack, 0)?);
    }
    calls.extend(comm_call(s, t, 64)?);
    if t.robust_list.head != 0 {
        calls.push((
            "set_robust_list",
            libc::SYS_set_robust_list,
            [t.robust_list.head, t.robust_list.len.max(24), 0, 0, 0, 0],
        ));
    }
    calls.extend(rseq_call(t));
    s.call_batch(&calls)
}

/// Whether remote calls in `thread` of `process` may stop at an int3 (see
/// [`Session::trap_after_calls`]), once the process's signal handlers and pending signals
/// are back: SIGTRAP is neither ignored nor pending for the thread or the process.
pub fn trap_after_allowed(process: &TaskImage, thread: &ThreadImage) -> bool {
    let trap = libc::SIGTRAP;
    let trap_handled = process
        .signals
        .actions
        .iter()
        .any(|a| a.signo == trap && a.handler != libc::SIG_IGN as u64);
    let trap_pending = thread
        .pending
        .iter()
        .chain(&process.shared_pending)
        .any(|p| p.signo == trap);
    trap_handled && !trap_pending
}

/// The thread's name, unless it has it already (a new thread inherits its creator's).
fn restore_comm(s: &mut Session, t: &ThreadImage) -> Result<()> {
    if let Some((name, nr, args)) = comm_call(s, t, 0)? {
        s.call(name, nr, args)?;
    }
    Ok(())
}

/// The prctl(PR_SET_NAME) that names the thread, its name written at `offset` of the data
/// area; None when the thread has that name already.
fn comm_call(
    s: &Session,
    t: &ThreadImage,
    offset: usize,
) -> Result<Option<(&'static str, i64, [u64; 6])>> {
    let mut name = t.comm.as_bytes().to_vec();
    name.truncate(15);
    if procfs::comm(s.pid(), s.tid()).is_ok_and(|now| now == name) {
        return Ok(None);
    }
    // /proc/PID/comm is only writable from inside the thread group: set it from inside.
    name.push(0);
    let addr = s.put(offset, &name)?;
    Ok(Some((
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        [PR_SET_NAME, addr, 0, 0, 0, 0],
    )))
}

fn rseq_call(t: &ThreadImage) -> Option<(&'static str, i64, [u64; 6])> {
    t.rseq.map(|r| {
        (
            "rseq",
            libc::SYS_rseq,
            [r.abi_pointer, r.len as u64, 0, r.signature as u64, 0, 0],
        )
    })
}

fn restore_rseq(s: &mut Session, t: &ThreadImage) -> Result<()> {
    if let Some((name, nr, args)) = rseq_call(t) {
        s.call(name, nr, args)?;
    }
    Ok(())
}

/// Thread state the tool sets from outside.
pub fn restore_thread_outside(pid: i32, tid: i32, t: &ThreadImage) -> Result<()> {
    let mut policy = t.sched.policy;
    if t.sched.reset_on_fork {
        policy |= libc::SCHED_RESET_ON_FORK;
    }
    process::set_scheduler(tid, policy, t.sched.priority).ctx(pid, || format!("thread {tid}"))?;
    process::set_nice(tid, t.sched.nice).ctx(pid, || format!("thread {tid}"))?;
    Ok(())
}

const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_SET_PDEATHSIG: u64 = 1;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_THP_DISABLE: u64 = 42;
const PR_SET_THP_DISABLE: u64 = 41;
const PR_SET_NO_NEW_PRIVS: u64 = 38;

/// Process-wide attributes: from /proc, and from remote prctl calls.
pub fn dump_attrs(pid: i32, status: &Status, s: &mut Session) -> Result<ProcessAttrs> {
    let data = s.data_addr();
    let dumpable = s.call(
        "prctl(PR_GET_DUMPABLE)",
        libc::SYS_prctl,
        [PR_GET_DUMPABLE, 0, 0, 0, 0, 0],
    )? as i32;
    s.put(0, &[0u8; 8])?;
    s.call(
        "prctl(PR_GET_PDEATHSIG)",
        libc::SYS_prctl,
        [PR_GET_PDEATHSIG, data, 0, 0, 0, 0],
    )?;
    let pdeath_signal = s.get_u64(0)? as u32 as i32;
    s.put(0, &[0u8; 8])?;
    s.call(
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        [PR_GET_CHILD_SUBREAPER, data, 0, 0, 0, 0],
    )?;
    let child_subreaper = s.get_u64(0)? as u32 != 0;
    let thp_disable = s.call(
        "prctl(PR_GET_THP_DISABLE)",
        libc::SYS_prctl,
        [PR_GET_THP_DISABLE, 0, 0, 0, 0, 0],
    )? != 0;
    let rlimits = procfs::limits(pid)
        .proc(pid)?
        .into_iter()
        .map(|l| Rlimit {
            resource: l.resource,
            soft: l.soft,
            hard: l.hard,
        })
        .collect();
    Ok(ProcessAttrs {
        cwd: procfs::link(pid, "cwd").proc(pid)?,
        root: procfs::link(pid, "root").proc(pid)?,
        exe: procfs::link(pid, "exe").proc(pid)?,
        umask: status.umask.unwrap_or(0o022),
        personality: procfs::personality(pid).proc(pid)?,
        rlimits,
        dumpable,
        pdeath_signal,
        child_subreaper,
        no_new_privs: status.no_new_privs,
        thp_disable,
        oom_score_adj: procfs::oom_score_adj(pid).proc(pid)?,
        shell_job: false,
        loginuid: None,
    })
}

/// What the restore child does to itself before it is taken over (no ptrace needed).
/// `shared_fs`: cwd, root and umask are the parent's (CLONE_FS), which sets them.
pub fn restore_attrs_in_child(a: &ProcessAttrs, shared_fs: bool) -> stasis_sys::SysResult<()> {
    own::personality(a.personality)?;
    if shared_fs {
        return Ok(());
    }
    own::umask(a.umask);
    // cwd first: its path is as seen from the tool's root, which chroot is about to change.
    own::chdir(std::path::Path::new(&a.cwd))?;
    if a.root != "/" {
        own::chroot(std::path::Path::new(&a.root))?;
    }
    Ok(())
}

/// Attributes set by remote prctl calls, after the address space is back.
pub fn restore_attrs_remote(s: &mut Session, a: &ProcessAttrs) -> Result<()> {
    if a.dumpable == 0 || a.dumpable == 1 {
        s.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            [PR_SET_DUMPABLE, a.dumpable as u64, 0, 0, 0, 0],
        )?;
    }
    s.call(
        "prctl(PR_SET_CHILD_SUBREAPER)",
        libc::SYS_prctl,
        [PR_SET_CHILD_SUBREAPER, a.child_subreaper as u64, 0, 0, 0, 0],
    )?;
    s.call(
        "prctl(PR_SET_THP_DISABLE)",
        libc::SYS_prctl,
        [PR_SET_THP_DISABLE, a.thp_disable as u64, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// The last remote settings: the parent-death signal (the restore used SIGKILL so that the
/// child cannot outlive a failed restore) and no_new_privs.
pub fn restore_attrs_last(s: &mut Session, a: &ProcessAttrs) -> Result<()> {
    s.call(
        "prctl(PR_SET_PDEATHSIG)",
        libc::SYS_prctl,
        [PR_SET_PDEATHSIG, a.pdeath_signal as u64, 0, 0, 0, 0],
    )?;
    if a.no_new_privs {
        s.call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Attributes the tool sets from outside: rlimits and the OOM score adjustment.
pub fn restore_attrs_outside(pid: i32, a: &ProcessAttrs) -> Result<()> {
    let current = procfs::limits(pid).proc(pid)?;
    for l in &a.rlimits {
        let same = current
            .iter()
            .any(|c| c.resource == l.resource && c.soft == l.soft && c.hard == l.hard);
        if same {
            continue;
        }
        process::set_rlimit(pid, l.resource, l.soft, l.hard).ctx(pid, || {
            format!(
                "restore resource limit {} (raising a hard limit needs CAP_SYS_RESOURCE)",
                l.resource
            )
        })?;
    }
    std::fs::write(
        format!("/proc/{pid}/oom_score_adj"),
        a.oom_score_adj.to_string(),
    )
    .map_err(|e| Error::Restore {
        pid,
        reason: format!("set oom_score_adj {}: {e}", a.oom_score_adj),
    })?;
    Ok(())
}

/// Flags of a thread as pthread_create makes them.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Creates thread `t.tid` in the task the session runs in, with a remote clone3 that also
/// gives it its clear-child-tid address. The tracer must have PTRACE_O_TRACECLONE set on
/// that task: the new thread is then attached and stops before it runs a single
/// instruction. Returns once it is in that stop.
pub fn create_thread(
    s: &mut Session,
    t: &ThreadImage,
    host_tid: impl Fn(i32) -> Result<i32>,
) -> Result<i32> {
    // CLONE_CHILD_CLEARTID only records the address (CLONE_CHILD_SETTID would write it).
    let clear_tid = if t.clear_child_tid != 0 {
        libc::CLONE_CHILD_CLEARTID as u64
    } else {
        0
    };
    let clone = Clone3 {
        flags: THREAD_FLAGS | clear_tid,
        child_tid: t.clear_child_tid,
        exit_signal: 0,
    };
    remote_clone3(s, t.tid, clone, host_tid)
}

/// The clone_args fields a remote clone3 sets besides `set_tid`.
struct Clone3 {
    flags: u64,
    child_tid: u64,
    exit_signal: u64,
}

/// Creates, with a remote clone3 in the session's task, a process with PID `pid` that
/// shares its address space (and what else `flags` say: CLONE_SIGHAND, CLONE_FILES,
/// CLONE_FS); it is left stopped before its first instruction, traced. Needs
/// PTRACE_O_TRACEFORK on the task. Returns its PID as seen here.
pub fn create_process_in_mm(
    s: &mut Session,
    pid: i32,
    flags: u64,
    host_pid: impl Fn(i32) -> Result<i32>,
) -> Result<i32> {
    let clone = Clone3 {
        flags: flags | libc::CLONE_VM as u64,
        child_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
    };
    remote_clone3(s, pid, clone, host_pid)
}

/// A remote clone3 with `set_tid = [id]`, then the new task's first stop.
fn remote_clone3(
    s: &mut Session,
    tid: i32,
    clone: Clone3,
    host_tid: impl Fn(i32) -> Result<i32>,
) -> Result<i32> {
    let pid = s.pid();
    let set_tid_off = 128usize;
    let set_tid = s.put(set_tid_off, &(tid as u64).to_le_bytes())?;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls, set_tid, set_tid_size, cgroup.
    let args = crate::inject::words(&[
        clone.flags,
        0,
        clone.child_tid,
        0,
        clone.exit_signal,
        0,
        0,
        0,
        set_tid,
        1,
        0,
    ]);
    let addr = s.put(0, &args)?;
    let got = s
        .call(
            "clone3",
            libc::SYS_clone3,
            [addr, args.len() as u64, 0, 0, 0, 0],
        )
        .map_err(|e| match &e {
            // The image's TID is another task's now.
            Error::Sys { source, .. } if source.errno.0 == libc::EEXIST => Error::pid_in_use(tid),
            _ => e,
        })?;
    if got != tid as u64 {
        return Err(Error::Restore {
            pid,
            reason: format!("clone3 created task {got}, not {tid}"),
        });
    }
    let tid = host_tid(tid)?;
    loop {
        match ptrace::wait_task(tid).ctx(pid, || format!("wait for new task {tid}"))? {
            ptrace::WaitStatus::Stopped { event: 128, .. } => return Ok(tid),
            ptrace::WaitStatus::Stopped { .. } | ptrace::WaitStatus::Continued => {}
            other => {
                return Err(Error::Restore {
                    pid,
                    reason: format!("new task {tid}: {other:?}"),
                })
            }
        }
    }
}
