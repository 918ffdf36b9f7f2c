//! A vfork child that has not exec'ed or exited yet: it runs in its parent's memory while
//! the parent waits inside vfork, in the kernel, where it cannot be frozen.
//!
//! Dump (`pairs`, `check_child`): the child is dumped first (its memory and fd table are
//! its parent's), then ended; the parent's vfork returns and it stops before its next
//! instruction. So only a dump that kills the tree can take it. Restore (`again`): the
//! rebuilt parent calls vfork again from the same instruction, with the child's PID made
//! the next one.

use stasis_image::TaskImage;
use stasis_sys::process::{self, Shared};
use stasis_sys::procfs;
use stasis_sys::ptrace::{self, WaitStatus};

use crate::error::{Error, Result, SysContext};
use crate::freeze::Frozen;
use crate::task;

/// Parents inside vfork (indices in `live`) with their child that still runs in
/// their memory. Such a child is dumped first and then killed, which ends the parent's
/// vfork: so only a dump that kills the tree can take it. A parent whose child has let
/// its memory go meanwhile just finishes its freeze.
pub fn pairs(live: &mut [Frozen], keeps_running: bool) -> Result<Vec<(usize, usize)>> {
    let mut pairs = Vec::new();
    for pi in 0..live.len() {
        if live[pi].vfork_wait.is_none() {
            continue;
        }
        let ppid = live[pi].pid;
        let child = live.iter().position(|c| {
            c.pid != ppid
                && procfs::stat(c.pid).is_ok_and(|s| s.ppid == ppid)
                && process::shares(ppid, c.pid, Shared::Memory).unwrap_or(false)
        });
        match child {
            Some(ci) if keeps_running => {
                return Err(Error::Unsupported {
                    pid: ppid,
                    object: format!("vfork child {}", live[ci].pid),
                    detail: "a vfork child that still runs in its parent's memory can only be checkpointed by a dump that kills the tree (without --leave-running/--leave-stopped): its parent cannot be frozen until the child ends".into(),
                });
            }
            Some(ci) => pairs.push((pi, ci)),
            None => live[pi].finish_vfork()?,
        }
    }
    Ok(pairs)
}

/// Refuses a vfork child that changed, after vfork, what a new vfork cannot give it back:
/// a new child gets its parent's handlers, credentials, session and group.
pub fn check_child(parent: &TaskImage, child: &TaskImage) -> Result<()> {
    for (what, same) in [
        ("signal handlers", parent.signals == child.signals),
        ("credentials", parent.creds == child.creds),
        (
            "session or process group",
            (parent.sid, parent.pgid) == (child.sid, child.pgid),
        ),
    ] {
        if !same {
            return Err(Error::Unsupported {
                pid: child.pid,
                object: format!("vfork child of {}", parent.pid),
                detail: format!(
                    "it changed its {what} after vfork (only its registers, mask and the memory it shares can be restored)"
                ),
            });
        }
    }
    Ok(())
}

/// The parent was inside vfork at dump (its registers are those of vfork's return): it
/// makes the vfork again, from the same instruction, with the child's PID made the next
/// one (ns_last_pid), and the new child, which runs in the parent's memory as the old one
/// did, is returned stopped, for the caller to give it the child's registers and mask;
/// the parent stays stopped at the vfork event, and once let go waits for its child as
/// before.
pub fn again(parent: &TaskImage, child: &TaskImage) -> Result<i32> {
    let pid = parent.pid;
    let cpid = child.pid;
    let (Some(pt), Some(_)) = (parent.threads.first(), child.threads.first()) else {
        return Err(Error::Restore {
            pid,
            reason: "the vfork parent or child has no thread in the image".into(),
        });
    };
    let mut regs = task::regs_from_image(&pt.regs);
    let at = regs.rip.wrapping_sub(2);
    let mut insn = [0u8; 2];
    stasis_sys::mem::ProcMem::open(pid)
        .and_then(|m| m.read(at, &mut insn))
        .ctx(pid, || format!("read the vfork call at {at:#x}"))?;
    if insn != [0x0f, 0x05] {
        return Err(Error::Restore {
            pid,
            reason: format!(
                "no syscall instruction before {:#x}, where vfork returned",
                regs.rip
            ),
        });
    }
    regs.rip = at;
    regs.rax = libc::SYS_vfork as u64;
    regs.orig_rax = u64::MAX;
    ptrace::set_regs(pid, &regs).ctx(pid, || "registers to call vfork again".into())?;
    ptrace::set_options(
        pid,
        libc::PTRACE_O_TRACEVFORK | ptrace::PTRACE_O_SUSPEND_SECCOMP,
    )
    .ctx(pid, || "trace vfork".into())?;
    let next = NextPid::set(pid, cpid)?;
    ptrace::cont(pid, 0).ctx(pid, || "resume into vfork".into())?;
    loop {
        match ptrace::wait_task(pid).ctx(pid, || "wait for vfork".into())? {
            WaitStatus::Stopped { event, .. } if event == libc::PTRACE_EVENT_VFORK => break,
            WaitStatus::Stopped { .. } | WaitStatus::SyscallStop | WaitStatus::Continued => {
                ptrace::cont(pid, 0).ctx(pid, || "resume into vfork".into())?
            }
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => {
                return Err(Error::Restore {
                    pid,
                    reason: "it ended instead of calling vfork again".into(),
                })
            }
        }
    }
    let got = ptrace::event_msg(pid).ctx(pid, || "the new vfork child's PID".into())? as i32;
    drop(next);
    if got != cpid {
        let _ = process::kill(got, libc::SIGKILL);
        return Err(Error::Restore {
            pid,
            reason: format!(
                "the vfork child came back as PID {got}, not {cpid} (PID taken meanwhile?)"
            ),
        });
    }
    loop {
        match ptrace::wait_task(cpid).ctx(cpid, || "wait for the new vfork child".into())? {
            WaitStatus::Stopped { .. } => break,
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => {
                return Err(Error::Restore {
                    pid: cpid,
                    reason: "the new vfork child ended at once".into(),
                })
            }
            _ => {}
        }
    }
    log::info!("pid {cpid}: vfork child of {pid} made again");
    Ok(cpid)
}

const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// Makes `pid` the next PID the kernel gives out (ns_last_pid), for a call that cannot
/// choose its child's PID. Moving the counter back would hand out recently freed PIDs
/// early, so dropping this puts the counter back where it was (when it was further on).
struct NextPid {
    before: Option<i32>,
}

impl NextPid {
    fn set(for_pid: i32, pid: i32) -> Result<Self> {
        let before = std::fs::read_to_string(NS_LAST_PID)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        std::fs::write(NS_LAST_PID, (pid - 1).to_string()).map_err(|e| Error::Restore {
            pid: for_pid,
            reason: format!("make {pid} the next PID (write {NS_LAST_PID}): {e}"),
        })?;
        Ok(Self {
            before: before.filter(|&b| b > pid),
        })
    }
}

impl Drop for NextPid {
    fn drop(&mut self) {
        if let Some(b) = self.before {
            let _ = std::fs::write(NS_LAST_PID, b.to_string());
        }
    }
}
