//! Remote syscalls: make a ptrace-stopped task execute one system call of our choosing.
//!
//! The task's registers are pointed at a `syscall` instruction that already exists in its
//! address space (in the vDSO at dump, in the scratch page at restore), the arguments are
//! loaded, and the task runs to the syscall's exit stop. Nothing else in stasis pokes
//! registers to run code in another task.

use crate::mem::ProcMem;
use crate::ptrace::{self, UserRegs, WaitStatus};
use crate::{Errno, SysError, SysResult};

/// `-ERESTARTSYS` and friends: the kernel's "restart me" results, never seen by user space.
const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// How to resume a task that was stopped inside an interrupted system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// As the kernel does for the same task: restartable calls run again, calls using a
    /// restart block continue through `restart_syscall`.
    SameTask,
    /// For a restored task, which has no kernel restart block: restartable calls run again,
    /// calls using a restart block (nanosleep, poll with timeout...) return EINTR, as they do
    /// after a signal handler ran.
    NewTask,
}

/// Rewrites registers captured in a ptrace stop so that they can be resumed without the
/// kernel's syscall-restart logic (which only runs if the task returns through the signal
/// path): afterwards `orig_rax` is -1 and the interrupted call is re-issued or fails with
/// EINTR, exactly as the kernel would have arranged.
pub fn resumable_regs(regs: &UserRegs, policy: RestartPolicy) -> UserRegs {
    let mut out = *regs;
    if (regs.orig_rax as i64) >= 0 {
        match -(regs.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                out.rax = regs.orig_rax;
                out.rip = regs.rip.wrapping_sub(2);
            }
            ERESTART_RESTARTBLOCK => match policy {
                RestartPolicy::SameTask => {
                    out.rax = libc::SYS_restart_syscall as u64;
                    out.rip = regs.rip.wrapping_sub(2);
                }
                RestartPolicy::NewTask => out.rax = (-(libc::EINTR as i64)) as u64,
            },
            _ => {}
        }
    }
    out.orig_rax = u64::MAX;
    out
}

/// Finds a `syscall` instruction (0f 05) in a block of code, returning its offset.
pub fn find_syscall_insn(code: &[u8]) -> Option<usize> {
    code.windows(2).position(|w| w == [0x0f, 0x05])
}

const PAGE: u64 = 4096;
/// Where batch code starts in the page of the syscall instruction (trap mode only).
pub const BATCH_OFFSET: u64 = 64;
/// Bytes of stub per call: seven `mov r64, imm64`, `syscall`, `mov [imm64], rax`.
const BATCH_CALL_LEN: u64 = 7 * 10 + 2 + 10;
/// Calls per batch: code (and the final int3) and 8-byte results fit in the page.
pub const BATCH_MAX: usize = ((PAGE - BATCH_OFFSET - 1) / (BATCH_CALL_LEN + 8)) as usize;

/// Machine code that makes `calls` in order, stores each result (rax) at
/// `results_at + 8 * i`, and ends in int3.
pub fn batch_code(calls: &[(i64, [u64; 6])], results_at: u64) -> Vec<u8> {
    // REX prefix and opcode of `mov r64, imm64` for rax, rdi, rsi, rdx, r10, r8, r9.
    const MOVS: [[u8; 2]; 7] = [
        [0x48, 0xb8],
        [0x48, 0xbf],
        [0x48, 0xbe],
        [0x48, 0xba],
        [0x49, 0xba],
        [0x49, 0xb8],
        [0x49, 0xb9],
    ];
    let mut code = Vec::with_capacity(calls.len() * BATCH_CALL_LEN as usize + 1);
    for (i, &(nr, args)) in calls.iter().enumerate() {
        let values = [
            nr as u64, args[0], args[1], args[2], args[3], args[4], args[5],
        ];
        for (op, v) in MOVS.iter().zip(values) {
            code.extend_from_slice(op);
            code.extend_from_slice(&v.to_le_bytes());
        }
        code.extend_from_slice(&[0x0f, 0x05]);
        // movabs [imm64], rax
        code.extend_from_slice(&[0x48, 0xa3]);
        code.extend_from_slice(&(results_at + 8 * i as u64).to_le_bytes());
    }
    code.push(0xcc);
    code
}

/// A task in a ptrace stop that we run system calls in.
#[derive(Debug)]
pub struct Remote {
    tid: i32,
    syscall_insn: u64,
    base: UserRegs,
    /// Calls stop once, at an `int3` right after the syscall instruction, instead of at the
    /// syscall's entry and exit (see [`Remote::set_trap_after`]).
    trap_after: bool,
}

impl Remote {
    /// `base` is the register set the calls are made from (segment registers and flags are
    /// taken from it); `syscall_insn` is the address of a `syscall` instruction in the task.
    pub fn new(tid: i32, syscall_insn: u64, base: UserRegs) -> Self {
        Self {
            tid,
            syscall_insn,
            base,
            trap_after: false,
        }
    }

    /// With `on`, each call runs with PTRACE_CONT to the `int3` that must follow the
    /// syscall instruction, one stop instead of two (and the page of that instruction
    /// must be writable and free from [`BATCH_OFFSET`] on, for [`Remote::syscall_batch`]). The SIGTRAP of that int3 is forced:
    /// the caller must make sure it is unblocked and not ignored in the task (the kernel
    /// would reset its disposition and unblock it), and that no SIGTRAP is pending (it
    /// would be taken for ours and dropped). Our SIGTRAP is dropped at its
    /// signal-delivery stop, where the task stays after the call.
    pub fn set_trap_after(&mut self, on: bool) {
        self.trap_after = on;
    }

    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Runs one system call and returns the raw result (negative errno on failure).
    pub fn syscall_raw(&mut self, nr: i64, args: [u64; 6]) -> SysResult<i64> {
        let mut regs = self.base;
        regs.rip = self.syscall_insn;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        ptrace::set_regs(self.tid, &regs)?;
        if self.trap_after {
            // syscall (2 bytes), then int3 (1 byte): the trap reports the address after it.
            return Ok(self.run_to_trap(self.syscall_insn + 3, nr)?.rax as i64);
        }
        self.run_to_syscall_stop(nr)?; // entry
        self.run_to_syscall_stop(nr)?; // exit
        let after = ptrace::get_regs(self.tid)?;
        Ok(after.rax as i64)
    }

    /// Runs several system calls, in order, with one stop: in trap mode (see
    /// [`Remote::set_trap_after`]), a stub written after [`BATCH_OFFSET`] in the syscall
    /// instruction's page makes them one after another and ends in int3. Returns each
    /// call's raw result; a failed call does not stop the later ones. Without trap mode, or
    /// for more calls than fit, the calls are made one by one.
    pub fn syscall_batch(
        &mut self,
        mem: &ProcMem,
        calls: &[(i64, [u64; 6])],
    ) -> SysResult<Vec<i64>> {
        if !self.trap_after || calls.len() <= 1 || calls.len() > BATCH_MAX {
            return calls
                .iter()
                .map(|&(nr, args)| self.syscall_raw(nr, args))
                .collect();
        }
        let page = self.syscall_insn & !(PAGE - 1);
        let code_at = page + BATCH_OFFSET;
        let results_at = page + PAGE - 8 * calls.len() as u64;
        let code = batch_code(calls, results_at);
        mem.write(code_at, &code)?;
        let mut regs = self.base;
        regs.rip = code_at;
        regs.orig_rax = u64::MAX;
        ptrace::set_regs(self.tid, &regs)?;
        self.run_to_trap(code_at + code.len() as u64, calls[0].0)?;
        let mut raw = vec![0u8; 8 * calls.len()];
        mem.read(results_at, &mut raw)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// Runs the task until it stops for the SIGTRAP of the int3 that ends at `trap_rip`;
    /// returns its registers there.
    fn run_to_trap(&mut self, trap_rip: u64, nr: i64) -> SysResult<UserRegs> {
        ptrace::cont(self.tid, 0)?;
        loop {
            match ptrace::wait_task(self.tid)? {
                WaitStatus::Stopped { sig, event: 0 } if sig == libc::SIGTRAP => {
                    let regs = ptrace::get_regs(self.tid)?;
                    if regs.rip == trap_rip {
                        return Ok(regs);
                    }
                    log::debug!("tid {}: SIGTRAP during remote syscall {nr}", self.tid);
                    ptrace::cont(self.tid, 0)?
                }
                WaitStatus::Stopped { sig, event } => {
                    // Event stops (clone...), group-stops, and signals that are not
                    // blocked: held back as in run_to_syscall_stop.
                    if event == 0 {
                        log::debug!("tid {}: signal {sig} during remote syscall {nr}", self.tid);
                    }
                    ptrace::cont(self.tid, 0)?
                }
                WaitStatus::SyscallStop => ptrace::cont(self.tid, 0)?,
                WaitStatus::Exited(code) => return Err(exited(self.tid, nr, code)),
                WaitStatus::Signaled(sig) => return Err(killed(self.tid, nr, sig)),
                WaitStatus::Continued => {}
            }
        }
    }

    /// Runs one system call; a result in -4095..=-1 becomes an error naming the call.
    pub fn syscall(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> SysResult<u64> {
        let r = self.syscall_raw(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(SysError::new(
                name,
                format!("remote, in tid {}", self.tid),
                Errno(-r as i32),
            ));
        }
        Ok(r as u64)
    }

    fn run_to_syscall_stop(&mut self, nr: i64) -> SysResult<()> {
        ptrace::syscall(self.tid, 0)?;
        loop {
            match ptrace::wait_task(self.tid)? {
                WaitStatus::SyscallStop => return Ok(()),
                // Group-stop or interrupt traps: keep going; the stop stays recorded.
                WaitStatus::Stopped { event, .. } if event != 0 => ptrace::syscall(self.tid, 0)?,
                WaitStatus::Stopped { sig, .. } => {
                    // A signal that is not blocked: hold it back, the task gets it again
                    // when the original mask comes back (it stays pending for the thread).
                    log::debug!("tid {}: signal {sig} during remote syscall {nr}", self.tid);
                    ptrace::syscall(self.tid, 0)?
                }
                WaitStatus::Exited(code) => return Err(exited(self.tid, nr, code)),
                WaitStatus::Signaled(sig) => return Err(killed(self.tid, nr, sig)),
                WaitStatus::Continued => {}
            }
        }
    }

    /// Puts `regs` back into the task (it stays stopped).
    pub fn set_regs(&self, regs: &UserRegs) -> SysResult<()> {
        ptrace::set_regs(self.tid, regs)
    }
}

fn exited(tid: i32, nr: i64, code: i32) -> SysError {
    SysError::new(
        "remote syscall",
        format!("tid {tid} exited with {code} during syscall {nr}"),
        Errno(libc::ESRCH),
    )
}

fn killed(tid: i32, nr: i64, sig: i32) -> SysError {
    SysError::new(
        "remote syscall",
        format!("tid {tid} killed by signal {sig} during syscall {nr}"),
        Errno(libc::ESRCH),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_code_layout() {
        let code = batch_code(&[(1, [2, 3, 4, 5, 6, 7]), (8, [0; 6])], 0x1000);
        assert_eq!(code.len(), 2 * BATCH_CALL_LEN as usize + 1);
        assert_eq!(&code[..10], &[0x48, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&code[70..72], &[0x0f, 0x05]);
        assert_eq!(&code[72..74], &[0x48, 0xa3]);
        assert_eq!(u64::from_le_bytes(code[74..82].try_into().unwrap()), 0x1000);
        let second = BATCH_CALL_LEN as usize;
        assert_eq!(
            u64::from_le_bytes(code[second + 74..second + 82].try_into().unwrap()),
            0x1008
        );
        assert_eq!(code.last(), Some(&0xcc));
        let max = BATCH_MAX as u64;
        assert!(BATCH_OFFSET + max * BATCH_CALL_LEN + 1 + 8 * max <= PAGE);
    }
}
