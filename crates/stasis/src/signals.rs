//! Signal dispositions (per process) and the per-thread signal state that goes with them.

use stasis_image::{PendingSignal, SigAction, SigAltStack, SignalTable};
use stasis_sys::ptrace;

use crate::error::SysContext;

use crate::error::Result;
use crate::inject::{self, Session};

/// Signals whose disposition cannot be read or changed.
fn fixed(sig: i32) -> bool {
    sig == libc::SIGKILL || sig == libc::SIGSTOP
}

/// Reads the disposition of every signal with remote rt_sigaction calls.
pub fn dump(s: &mut Session) -> Result<SignalTable> {
    let mut actions = Vec::with_capacity(64);
    for sig in 1..=64 {
        if fixed(sig) {
            continue;
        }
        let old = s.data_addr();
        s.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig as u64, 0, old, 8, 0, 0],
        )?;
        let b = s.get(0, 32)?;
        actions.push(SigAction {
            signo: sig,
            handler: inject::word_at(&b, 0),
            flags: inject::word_at(&b, 1),
            restorer: inject::word_at(&b, 2),
            mask: inject::word_at(&b, 3),
        });
    }
    Ok(SignalTable { actions })
}

/// Sets every signal's disposition (signals the image does not list get SIG_DFL, so
/// nothing of the restoring tool's own handlers survives).
pub fn restore(s: &mut Session, table: &SignalTable) -> Result<()> {
    for sig in 1..=64 {
        if fixed(sig) {
            continue;
        }
        let a = table
            .actions
            .iter()
            .find(|a| a.signo == sig)
            .copied()
            .unwrap_or(SigAction {
                signo: sig,
                ..Default::default()
            });
        let addr = s.put(0, &inject::words(&[a.handler, a.flags, a.restorer, a.mask]))?;
        s.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig as u64, addr, 0, 8, 0, 0],
        )?;
    }
    Ok(())
}

/// The alternate signal stack of the thread the session runs in.
pub fn dump_altstack(s: &mut Session) -> Result<SigAltStack> {
    let addr = s.data_addr();
    s.call("sigaltstack", libc::SYS_sigaltstack, [0, addr, 0, 0, 0, 0])?;
    let b = s.get(0, 24)?;
    Ok(SigAltStack {
        sp: inject::word_at(&b, 0),
        flags: inject::word_at(&b, 1) as u32 as i32,
        size: inject::word_at(&b, 2),
    })
}

pub fn restore_altstack(s: &mut Session, st: &SigAltStack) -> Result<()> {
    let (name, nr, args) = altstack_call(s, st, 0)?;
    s.call(name, nr, args)?;
    Ok(())
}

/// The sigaltstack call that sets `st`, its struct written at `offset` of the data area.
pub fn altstack_call(
    s: &Session,
    st: &SigAltStack,
    offset: usize,
) -> Result<(&'static str, i64, [u64; 6])> {
    // SS_ONSTACK only reports that the thread ran on it; it cannot be set.
    let flags = st.flags & (libc::SS_DISABLE | (1 << 31));
    let (sp, size) = if flags & libc::SS_DISABLE != 0 {
        (0, 0)
    } else {
        (st.sp, st.size)
    };
    let addr = s.put(offset, &inject::words(&[sp, flags as u32 as u64, size]))?;
    Ok(("sigaltstack", libc::SYS_sigaltstack, [addr, 0, 0, 0, 0, 0]))
}

/// Signals queued for thread `tid` (or, with `shared`, for its process), left queued.
pub fn dump_pending(pid: i32, tid: i32, shared: bool) -> Result<Vec<PendingSignal>> {
    let raw = ptrace::peek_pending(tid, shared)
        .ctx(pid, || format!("pending signals of thread {tid}"))?;
    Ok(raw
        .into_iter()
        .map(|info| PendingSignal {
            signo: i32::from_le_bytes(info[0..4].try_into().expect("4 bytes")),
            siginfo: info.to_vec(),
        })
        .collect())
}

/// Dequeues every signal pending for the task (thread and process), all of them blocked:
/// rt_sigtimedwait with a zero timeout until none is left.
pub fn drain_pending(s: &mut Session) -> Result<()> {
    let zero = s.put(64, &inject::words(&[0, 0]))?;
    let all = s.put(0, &inject::words(&[!0u64]))?;
    for _ in 0..=2 * 64 * 32 {
        let got = s.call(
            "rt_sigtimedwait",
            libc::SYS_rt_sigtimedwait,
            [all, 0, zero, 8, 0, 0],
        );
        if got.is_err() {
            return Ok(()); // EAGAIN: nothing left
        }
    }
    Ok(())
}

/// Queues signals again, in order, from inside the task (a task may queue any siginfo to
/// itself). `tid` None means process-directed. The task must have them blocked for now.
pub fn restore_pending(s: &mut Session, tid: Option<i32>, pending: &[PendingSignal]) -> Result<()> {
    let tgid = s.ns_pid();
    for p in pending {
        if p.siginfo.len() != ptrace::SIGINFO_LEN {
            return Err(crate::error::Error::Restore {
                pid: tgid,
                reason: format!(
                    "pending signal {} has a siginfo of {} bytes",
                    p.signo,
                    p.siginfo.len()
                ),
            });
        }
        let info = s.put(0, &p.siginfo)?;
        match tid {
            Some(tid) => s.call(
                "rt_tgsigqueueinfo",
                libc::SYS_rt_tgsigqueueinfo,
                [tgid as u64, tid as u64, p.signo as u64, info, 0, 0],
            )?,
            None => s.call(
                "rt_sigqueueinfo",
                libc::SYS_rt_sigqueueinfo,
                [tgid as u64, p.signo as u64, info, 0, 0, 0],
            )?,
        };
    }
    Ok(())
}
