//! A remote-syscall session in one stopped thread, with a page of the target's memory for
//! the arguments that are pointers (structs in, structs out).

use stasis_sys::mem::ProcMem;
use stasis_sys::ptrace::{self, UserRegs};
use stasis_sys::remote::{self, Remote};

use crate::error::{Result, SysContext};

/// Size of the data area used for pointer arguments.
pub const DATA_LEN: usize = 64 * 1024;

pub struct Session {
    pid: i32,
    /// The task's PID as the task itself sees it (differs from `pid` in a new PID
    /// namespace); used where a PID is a syscall argument run inside the task.
    ns_pid: i32,
    remote: Remote,
    mem: ProcMem,
    data: u64,
}

impl Session {
    /// `data` is the address of a writable area of at least [`DATA_LEN`] bytes in the task.
    pub fn new(pid: i32, remote: Remote, data: u64) -> Result<Self> {
        let mem = ProcMem::open(pid).ctx(pid, || "open /proc/PID/mem".into())?;
        Ok(Self {
            pid,
            ns_pid: pid,
            remote,
            mem,
            data,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn ns_pid(&self) -> i32 {
        self.ns_pid
    }

    pub fn set_ns_pid(&mut self, ns_pid: i32) {
        self.ns_pid = ns_pid;
    }

    pub fn tid(&self) -> i32 {
        self.remote.tid()
    }

    pub fn data_addr(&self) -> u64 {
        self.data
    }

    pub fn set_data_addr(&mut self, data: u64) {
        self.data = data;
    }

    pub fn mem(&self) -> &ProcMem {
        &self.mem
    }

    /// With `on`, calls stop once each, at the `int3` after the syscall instruction of the
    /// restore's scratch code, rather than at the syscall's entry and exit. Only for a task
    /// of the restore (all signals blocked) whose SIGTRAP is neither ignored nor pending:
    /// SIGTRAP is unblocked meanwhile (a forced one that is blocked would reset its
    /// disposition); off blocks every signal again.
    pub fn trap_after_calls(&mut self, on: bool) -> Result<()> {
        let trap = 1u64 << (libc::SIGTRAP - 1);
        let mask = if on { !trap } else { !0 };
        let (pid, tid) = (self.pid, self.tid());
        ptrace::set_sigmask(tid, mask).ctx(pid, || format!("signal mask of thread {tid}"))?;
        self.remote.set_trap_after(on);
        Ok(())
    }

    /// A syscall whose failure is an error naming it.
    pub fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let pid = self.pid;
        self.remote
            .syscall(name, nr, args)
            .ctx(pid, || "remote syscall".into())
    }

    /// Several syscalls in order, with one stop per [`remote::BATCH_MAX`] of them once
    /// [`Session::trap_after_calls`] is on (one by one otherwise). The first failure is an
    /// error naming its call; the calls after it in the same batch have run too.
    pub fn call_batch(&mut self, calls: &[(&'static str, i64, [u64; 6])]) -> Result<()> {
        let pid = self.pid;
        for chunk in calls.chunks(remote::BATCH_MAX) {
            let raw: Vec<(i64, [u64; 6])> = chunk.iter().map(|c| (c.1, c.2)).collect();
            let results = self
                .remote
                .syscall_batch(&self.mem, &raw)
                .ctx(pid, || "remote syscall batch".into())?;
            for (&(name, _, _), r) in chunk.iter().zip(results) {
                if (-4095..0).contains(&r) {
                    return Err(stasis_sys::SysError::new(
                        name,
                        format!("remote, in tid {}", self.remote.tid()),
                        stasis_sys::Errno(-r as i32),
                    ))
                    .ctx(pid, || "remote syscall".into());
                }
            }
        }
        Ok(())
    }

    /// A syscall whose raw result (negative errno) the caller interprets.
    pub fn call_raw(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid;
        self.remote
            .syscall_raw(nr, args)
            .ctx(pid, || format!("remote syscall {nr}"))
    }

    /// Copies `bytes` to the data area at `offset`; returns the target address.
    pub fn put(&self, offset: usize, bytes: &[u8]) -> Result<u64> {
        assert!(
            offset + bytes.len() <= DATA_LEN,
            "remote data area overflow"
        );
        let addr = self.data + offset as u64;
        self.mem
            .write(addr, bytes)
            .ctx(self.pid, || "write remote data area".into())?;
        Ok(addr)
    }

    /// Reads `len` bytes of the data area at `offset`.
    pub fn get(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        assert!(offset + len <= DATA_LEN, "remote data area overflow");
        let mut buf = vec![0u8; len];
        self.mem
            .read(self.data + offset as u64, &mut buf)
            .ctx(self.pid, || "read remote data area".into())?;
        Ok(buf)
    }

    pub fn get_u64(&self, offset: usize) -> Result<u64> {
        let b = self.get(offset, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn set_regs(&self, regs: &UserRegs) -> Result<()> {
        self.remote
            .set_regs(regs)
            .ctx(self.pid, || "set registers".into())
    }
}

/// Little-endian packing of u64 words (kernel structs on x86-64 are words and halves).
pub fn words(ws: &[u64]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub fn word_at(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}
