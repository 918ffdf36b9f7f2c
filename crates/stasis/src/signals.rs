//! Signal dispositions (per process) and the per-thread signal state that goes with them.

use stasis_image::{SigAction, SigAltStack, SignalTable};

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
    // SS_ONSTACK only reports that the thread ran on it; it cannot be set.
    let flags = st.flags & (libc::SS_DISABLE | (1 << 31));
    let (sp, size) = if flags & libc::SS_DISABLE != 0 {
        (0, 0)
    } else {
        (st.sp, st.size)
    };
    let addr = s.put(0, &inject::words(&[sp, flags as u32 as u64, size]))?;
    s.call("sigaltstack", libc::SYS_sigaltstack, [addr, 0, 0, 0, 0, 0])?;
    Ok(())
}
