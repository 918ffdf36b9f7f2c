//! Seccomp: strict mode and filter stacks, per thread.
//!
//! Filters are read with PTRACE_SECCOMP_GET_FILTER and installed again from inside each
//! thread. Both sides trace with PTRACE_O_SUSPEND_SECCOMP, so that no filter can block the
//! remote syscalls stasis itself makes; they take effect when the task is let go.

use stasis_image::{Seccomp, SeccompFilter, ThreadImage};
use stasis_sys::ptrace;

use crate::error::{Error, Result, SysContext};
use crate::inject::Session;

const SECCOMP_MODE_STRICT: u32 = 1;
const SECCOMP_MODE_FILTER: u32 = 2;
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const BPF_RET_K: u16 = 0x06;
const BPF_MAXINSNS: usize = 4096;

/// `mode` is the Seccomp field of the thread's /proc status.
pub fn dump(pid: i32, tid: i32, mode: u32) -> Result<Option<Seccomp>> {
    match mode {
        0 => Ok(None),
        SECCOMP_MODE_STRICT => Ok(Some(Seccomp {
            strict: true,
            filters: Vec::new(),
        })),
        SECCOMP_MODE_FILTER => {
            let mut filters = Vec::new();
            let mut index = 0;
            while let Some((program, flags)) = ptrace::seccomp_filter(tid, index)
                .ctx(pid, || format!("seccomp filters of thread {tid}"))?
            {
                if notifies(&program) {
                    return Err(Error::Unsupported {
                        pid,
                        object: format!("thread {tid}: seccomp filter {index}"),
                        detail: "it sends system calls to a user-space supervisor (SECCOMP_RET_USER_NOTIF)".into(),
                    });
                }
                filters.push(SeccompFilter { flags, program });
                index += 1;
            }
            filters.reverse();
            Ok(Some(Seccomp {
                strict: false,
                filters,
            }))
        }
        other => Err(Error::Unsupported {
            pid,
            object: format!("thread {tid}: seccomp mode {other}"),
            detail: "unknown seccomp mode".into(),
        }),
    }
}

/// Whether a program can return SECCOMP_RET_USER_NOTIF.
fn notifies(program: &[u8]) -> bool {
    program.chunks_exact(8).any(|i| {
        let code = u16::from_le_bytes([i[0], i[1]]);
        let k = u32::from_le_bytes([i[4], i[5], i[6], i[7]]);
        code == BPF_RET_K && k & 0xffff_0000 == SECCOMP_RET_USER_NOTIF
    })
}

/// How many filters, oldest first, every thread of a process has in common. The main
/// thread installs those before it creates the other threads, which inherit them: the
/// threads then share those filters as they did after a TSYNC or a clone, so a later
/// SECCOMP_FILTER_FLAG_TSYNC still finds them in sync. (Identical programs that threads
/// installed separately come back shared too: /proc and ptrace cannot tell them apart.)
pub fn shared_prefix(threads: &[ThreadImage]) -> usize {
    let stacks: Vec<&[SeccompFilter]> = threads
        .iter()
        .map(|t| t.seccomp.as_ref().map_or(&[][..], |sc| &sc.filters[..]))
        .collect();
    let Some(first) = stacks.first() else {
        return 0;
    };
    (0..first.len())
        .take_while(|&i| stacks.iter().all(|st| st.get(i) == Some(&first[i])))
        .count()
}

/// Installs the first `count` filters of a thread's stack (see [`shared_prefix`]).
pub fn restore_prefix(s: &mut Session, state: &Seccomp, count: usize) -> Result<()> {
    install(s, &state.filters[..count.min(state.filters.len())])
}

/// Installs the thread's seccomp state from inside it (the session's thread), less the
/// first `skip` filters, which it has already (inherited or installed by
/// [`restore_prefix`]).
pub fn restore(s: &mut Session, state: &Seccomp, skip: usize) -> Result<()> {
    install(s, state.filters.get(skip..).unwrap_or(&[]))?;
    if state.strict {
        s.call(
            "seccomp(SECCOMP_SET_MODE_STRICT)",
            libc::SYS_seccomp,
            [SECCOMP_SET_MODE_STRICT, 0, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

fn install(s: &mut Session, filters: &[SeccompFilter]) -> Result<()> {
    let pid = s.pid();
    for f in filters {
        let insns = f.program.len() / 8;
        if insns == 0 || insns > BPF_MAXINSNS || f.program.len() % 8 != 0 {
            return Err(Error::Restore {
                pid,
                reason: format!(
                    "a seccomp filter of {} bytes is not a valid program",
                    f.program.len()
                ),
            });
        }
        let prog = s.put(64, &f.program)?;
        let mut fprog = (insns as u64).to_le_bytes().to_vec(); // len (u16) and padding
        fprog.extend_from_slice(&prog.to_le_bytes());
        let addr = s.put(0, &fprog)?;
        s.call(
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            libc::SYS_seccomp,
            [SECCOMP_SET_MODE_FILTER, f.flags, addr, 0, 0, 0],
        )?;
    }
    Ok(())
}
