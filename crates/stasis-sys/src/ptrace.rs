//! ptrace: seize, interrupt, registers, signal masks, resume, detach.

use crate::{Errno, SysError, SysResult};

/// The kernel's x86-64 `user_regs_struct`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// The rseq registration of a thread as PTRACE_GET_RSEQ_CONFIGURATION reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Largest XSAVE area we accept (AVX-512 with AMX tiles fits in 12 KiB).
const XSTATE_MAX: usize = 16384;

/// What a `waitpid` on a traced task reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
    /// A ptrace stop: the signal and the event (status >> 16).
    Stopped {
        sig: i32,
        event: i32,
    },
    /// A syscall-enter or -exit stop (PTRACE_O_TRACESYSGOOD).
    SyscallStop,
    Continued,
}

impl WaitStatus {
    fn from_raw(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            Self::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Self::Signaled(libc::WTERMSIG(status))
        } else if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            if sig == libc::SIGTRAP | 0x80 {
                Self::SyscallStop
            } else {
                Self::Stopped {
                    sig,
                    event: (status >> 16) & 0xff,
                }
            }
        } else {
            Self::Continued
        }
    }
}

/// Waits for a state change of one task (`__WALL`, so threads and clones are seen too).
pub fn wait_task(tid: i32) -> SysResult<WaitStatus> {
    wait_task_flags(tid, 0).map(|s| s.expect("blocking wait returns a status"))
}

/// Non-blocking variant: `None` when nothing happened yet.
pub fn try_wait_task(tid: i32) -> SysResult<Option<WaitStatus>> {
    wait_task_flags(tid, libc::WNOHANG)
}

fn wait_task_flags(tid: i32, flags: i32) -> SysResult<Option<WaitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes one int into `status`, which outlives the call.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | flags) };
        if r < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(SysError::new("waitpid", format!("tid {tid}"), e));
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(WaitStatus::from_raw(status)));
    }
}

fn ptrace_raw(
    req: libc::c_uint,
    tid: i32,
    addr: usize,
    data: usize,
    name: &'static str,
) -> SysResult<libc::c_long> {
    // SAFETY: every caller passes addr/data that are either plain integers or pointers to
    // buffers it owns and that are large enough for the request; the kernel validates tid.
    let r = unsafe {
        libc::ptrace(
            req,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r < 0 {
        Err(SysError::last(name, format!("tid {tid}")))
    } else {
        Ok(r)
    }
}

/// PTRACE_SEIZE with TRACESYSGOOD (and `extra` options).
pub fn seize(tid: i32, extra_options: i32) -> SysResult<()> {
    let opts = libc::PTRACE_O_TRACESYSGOOD | extra_options;
    ptrace_raw(
        libc::PTRACE_SEIZE,
        tid,
        0,
        opts as usize,
        "ptrace(PTRACE_SEIZE)",
    )
    .map(drop)
}

pub fn interrupt(tid: i32) -> SysResult<()> {
    ptrace_raw(
        libc::PTRACE_INTERRUPT,
        tid,
        0,
        0,
        "ptrace(PTRACE_INTERRUPT)",
    )
    .map(drop)
}

/// PTRACE_SETOPTIONS: TRACESYSGOOD plus `extra_options` (replacing the options set so far).
pub fn set_options(tid: i32, extra_options: i32) -> SysResult<()> {
    let opts = libc::PTRACE_O_TRACESYSGOOD | extra_options;
    ptrace_raw(
        libc::PTRACE_SETOPTIONS,
        tid,
        0,
        opts as usize,
        "ptrace(PTRACE_SETOPTIONS)",
    )
    .map(drop)
}

/// PTRACE_GETEVENTMSG: e.g. the new child's PID at a fork, vfork or clone event stop.
pub fn event_msg(tid: i32) -> SysResult<u64> {
    let mut msg: libc::c_ulong = 0;
    ptrace_raw(
        libc::PTRACE_GETEVENTMSG,
        tid,
        0,
        &mut msg as *mut libc::c_ulong as usize,
        "ptrace(PTRACE_GETEVENTMSG)",
    )?;
    Ok(msg)
}

/// Detaches, delivering `sig` (0 for none).
pub fn detach(tid: i32, sig: i32) -> SysResult<()> {
    ptrace_raw(
        libc::PTRACE_DETACH,
        tid,
        0,
        sig as usize,
        "ptrace(PTRACE_DETACH)",
    )
    .map(drop)
}

pub fn cont(tid: i32, sig: i32) -> SysResult<()> {
    ptrace_raw(
        libc::PTRACE_CONT,
        tid,
        0,
        sig as usize,
        "ptrace(PTRACE_CONT)",
    )
    .map(drop)
}

/// Resumes until the next syscall entry or exit.
pub fn syscall(tid: i32, sig: i32) -> SysResult<()> {
    ptrace_raw(
        libc::PTRACE_SYSCALL,
        tid,
        0,
        sig as usize,
        "ptrace(PTRACE_SYSCALL)",
    )
    .map(drop)
}

pub fn get_regs(tid: i32) -> SysResult<UserRegs> {
    let mut regs = UserRegs::default();
    let mut iov = libc::iovec {
        iov_base: (&mut regs as *mut UserRegs).cast(),
        iov_len: std::mem::size_of::<UserRegs>(),
    };
    ptrace_raw(
        libc::PTRACE_GETREGSET,
        tid,
        libc::NT_PRSTATUS as usize,
        &mut iov as *mut libc::iovec as usize,
        "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)",
    )?;
    Ok(regs)
}

pub fn set_regs(tid: i32, regs: &UserRegs) -> SysResult<()> {
    let mut copy = *regs;
    let mut iov = libc::iovec {
        iov_base: (&mut copy as *mut UserRegs).cast(),
        iov_len: std::mem::size_of::<UserRegs>(),
    };
    ptrace_raw(
        libc::PTRACE_SETREGSET,
        tid,
        libc::NT_PRSTATUS as usize,
        &mut iov as *mut libc::iovec as usize,
        "ptrace(PTRACE_SETREGSET, NT_PRSTATUS)",
    )
    .map(drop)
}

/// Reads the XSAVE area (x87, SSE, AVX, AVX-512... state).
pub fn get_xstate(tid: i32) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace_raw(
        libc::PTRACE_GETREGSET,
        tid,
        NT_X86_XSTATE as usize,
        &mut iov as *mut libc::iovec as usize,
        "ptrace(PTRACE_GETREGSET, NT_X86_XSTATE)",
    )?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

pub fn set_xstate(tid: i32, xstate: &[u8]) -> SysResult<()> {
    let mut buf = xstate.to_vec();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace_raw(
        libc::PTRACE_SETREGSET,
        tid,
        NT_X86_XSTATE as usize,
        &mut iov as *mut libc::iovec as usize,
        "ptrace(PTRACE_SETREGSET, NT_X86_XSTATE)",
    )
    .map(drop)
}

/// The blocked signal mask (bit N-1 for signal N).
pub fn get_sigmask(tid: i32) -> SysResult<u64> {
    let mut mask = 0u64;
    ptrace_raw(
        libc::PTRACE_GETSIGMASK,
        tid,
        8,
        &mut mask as *mut u64 as usize,
        "ptrace(PTRACE_GETSIGMASK)",
    )?;
    Ok(mask)
}

pub fn set_sigmask(tid: i32, mask: u64) -> SysResult<()> {
    let mut copy = mask;
    ptrace_raw(
        libc::PTRACE_SETSIGMASK,
        tid,
        8,
        &mut copy as *mut u64 as usize,
        "ptrace(PTRACE_SETSIGMASK)",
    )
    .map(drop)
}

pub fn get_rseq_configuration(tid: i32) -> SysResult<RseqConfiguration> {
    let mut conf = RseqConfiguration::default();
    ptrace_raw(
        PTRACE_GET_RSEQ_CONFIGURATION,
        tid,
        std::mem::size_of::<RseqConfiguration>(),
        &mut conf as *mut RseqConfiguration as usize,
        "ptrace(PTRACE_GET_RSEQ_CONFIGURATION)",
    )?;
    Ok(conf)
}

/// The siginfo of the current stop.
pub fn get_siginfo(tid: i32) -> SysResult<libc::siginfo_t> {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    ptrace_raw(
        libc::PTRACE_GETSIGINFO,
        tid,
        0,
        &mut info as *mut libc::siginfo_t as usize,
        "ptrace(PTRACE_GETSIGINFO)",
    )?;
    Ok(info)
}

/// `get_robust_list(tid)`: (head, len).
pub fn get_robust_list(tid: i32) -> SysResult<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: the kernel writes one pointer into `head` and one size_t into `len`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    if r < 0 {
        return Err(SysError::last("get_robust_list", format!("tid {tid}")));
    }
    Ok((head, len as u64))
}

const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// Size of the kernel's siginfo_t.
pub const SIGINFO_LEN: usize = 128;

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// The signals queued for thread `tid` (or, with `shared`, for its whole process), oldest
/// first, as raw siginfo records. The queue is left as it is.
pub fn peek_pending(tid: i32, shared: bool) -> SysResult<Vec<[u8; SIGINFO_LEN]>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    loop {
        let mut args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        let mut buf = [[0u8; SIGINFO_LEN]; BATCH];
        let n = ptrace_raw(
            PTRACE_PEEKSIGINFO,
            tid,
            &mut args as *mut PeekSiginfoArgs as usize,
            buf.as_mut_ptr() as usize,
            "ptrace(PTRACE_PEEKSIGINFO)",
        )? as usize;
        out.extend_from_slice(&buf[..n.min(BATCH)]);
        if n < BATCH {
            return Ok(out);
        }
    }
}

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// Suspends the tracee's seccomp filters while it is traced (needs CAP_SYS_ADMIN).
pub const PTRACE_O_SUSPEND_SECCOMP: i32 = 1 << 21;

/// The classic-BPF program of seccomp filter `index` of thread `tid` (0 is the newest),
/// as raw 8-byte instructions, with its SECCOMP_FILTER_FLAG_* flags; None past the last.
pub fn seccomp_filter(tid: i32, index: u64) -> SysResult<Option<(Vec<u8>, u64)>> {
    // SAFETY: with a null buffer the kernel only returns the instruction count.
    let n = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index as *mut libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if n < 0 {
        let e = Errno::last();
        if e.0 == libc::ENOENT {
            return Ok(None);
        }
        return Err(SysError::new(
            "ptrace(PTRACE_SECCOMP_GET_FILTER)",
            format!("tid {tid} filter {index}"),
            e,
        ));
    }
    let mut prog = vec![0u8; n as usize * 8];
    ptrace_raw(
        PTRACE_SECCOMP_GET_FILTER,
        tid,
        index as usize,
        prog.as_mut_ptr() as usize,
        "ptrace(PTRACE_SECCOMP_GET_FILTER)",
    )?;
    let mut meta = [index, 0u64];
    ptrace_raw(
        PTRACE_SECCOMP_GET_METADATA,
        tid,
        std::mem::size_of_val(&meta),
        meta.as_mut_ptr() as usize,
        "ptrace(PTRACE_SECCOMP_GET_METADATA)",
    )?;
    Ok(Some((prog, meta[1])))
}
