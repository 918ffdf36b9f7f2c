//! System V IPC objects (shared memory, message queues, semaphore sets) as the calling
//! process sees them: its IPC namespace. Reading an object's state, creating one with a
//! chosen id (through /proc/sys/kernel/*_next_id), and filling it.

use crate::{Errno, SysError, SysResult};

/// The ownership and permissions of an object (`struct ipc_perm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits and, for shm, SHM_DEST (01000) and SHM_LOCKED (02000).
    pub mode: u32,
}

fn perm_of(p: &libc::ipc_perm) -> Perm {
    Perm {
        key: p.__key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode as u32,
    }
}

fn check(r: libc::c_int, call: &'static str, what: impl FnOnce() -> String) -> SysResult<i32> {
    if r < 0 {
        Err(SysError::last(call, what()))
    } else {
        Ok(r)
    }
}

/// The object kinds, for messages and for the `*_next_id` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shm,
    Msg,
    Sem,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Shm => "shm",
            Self::Msg => "msg",
            Self::Sem => "sem",
        }
    }
}

/// Makes the next object of `kind` created in this IPC namespace get `id` (the kernel
/// forgets the value once used). Needs CAP_SYS_RESOURCE in the namespace's user namespace.
pub fn set_next_id(kind: Kind, id: i32) -> SysResult<()> {
    let path = format!("/proc/sys/kernel/{}_next_id", kind.name());
    std::fs::write(&path, format!("{id}\n")).map_err(|e| {
        SysError::new(
            "write",
            format!("{path} = {id}"),
            Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })
}

/// The id of the object of `kind` with `key` (not IPC_PRIVATE), if there is one.
pub fn find_key(kind: Kind, key: i32) -> SysResult<Option<i32>> {
    // SAFETY: the *get calls take integers only; without IPC_CREAT they create nothing.
    let r = unsafe {
        match kind {
            Kind::Shm => libc::shmget(key, 0, 0),
            Kind::Msg => libc::msgget(key, 0),
            Kind::Sem => libc::semget(key, 0, 0),
        }
    };
    if r >= 0 {
        return Ok(Some(r));
    }
    let e = Errno::last();
    if e.0 == libc::ENOENT {
        Ok(None)
    } else {
        Err(SysError::new(
            "get",
            format!("{} key {key:#x}", kind.name()),
            e,
        ))
    }
}

/// An exclusive lock that stasis processes take around `set_next_id` and the creation
/// that uses it: the next id is one value for the whole namespace, so two restores at once
/// would take each other's ids. (Other programs creating objects meanwhile can still take
/// it; the caller checks the id it got.)
pub struct NextIdLock(#[allow(dead_code)] std::fs::File);

impl NextIdLock {
    pub fn take() -> SysResult<Self> {
        let dir = if std::path::Path::new("/run/lock").is_dir() {
            "/run/lock"
        } else {
            "/tmp"
        };
        let path = format!("{dir}/stasis-sysv-next-id.lock");
        let io = |e: std::io::Error| {
            SysError::new(
                "lock",
                path.clone(),
                Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock takes a descriptor we own and an integer.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(Self(f))
    }
}

/// Runs `f` on a thread of its own that joined the IPC namespace of process `pid`
/// (/proc/sysvipc and the IPC calls see the caller's namespace; setns of an IPC
/// namespace is per thread).
pub fn in_ipc_namespace_of<T: Send>(pid: i32, f: impl FnOnce() -> T + Send) -> SysResult<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/{pid}/ns/ipc");
    let ns = std::fs::File::open(&path).map_err(|e| {
        SysError::new(
            "open",
            path.clone(),
            Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns takes a descriptor we own and a flag; it changes only this
                // thread's IPC namespace, and the thread ends after f.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWIPC) } < 0 {
                    return Err(SysError::last("setns(CLONE_NEWIPC)", path.clone()));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(SysError::new("thread", "IPC namespace", Errno(libc::EIO))))
    })
}

// ---- shared memory ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmStat {
    pub perm: Perm,
    pub size: u64,
    pub cpid: i32,
    pub lpid: i32,
    pub nattch: u64,
}

pub fn shm_stat(id: i32) -> SysResult<ShmStat> {
    // SAFETY: shmid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds to the pointer, which is valid for it.
    let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    check(r, "shmctl(IPC_STAT)", || format!("shmid {id}"))?;
    Ok(ShmStat {
        perm: perm_of(&ds.shm_perm),
        size: ds.shm_segsz as u64,
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        nattch: ds.shm_nattch,
    })
}

/// shmget(key, size, IPC_CREAT | IPC_EXCL | mode); returns the id.
pub fn shm_create(key: i32, size: u64, mode: u32) -> SysResult<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: shmget takes integers only.
    let r = unsafe { libc::shmget(key, size as usize, flags) };
    check(r, "shmget", || format!("key {key:#x} size {size}"))
}

/// A segment attached to the calling process, detached on drop.
struct Attached {
    addr: *mut libc::c_void,
    len: usize,
}

impl Attached {
    fn new(id: i32, len: usize, read_only: bool) -> SysResult<Self> {
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose a free range; nothing of ours is
        // replaced.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(SysError::last("shmat", format!("shmid {id}")));
        }
        Ok(Self { addr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the segment is mapped readable at addr for len bytes (its size) until
        // drop; other processes may write it meanwhile, which only changes the values read.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        // SAFETY: the range is inside the segment (checked above), mapped writable.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (self.addr as *mut u8).add(offset),
                data.len(),
            )
        };
        true
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: addr is the address shmat returned; nothing refers to the mapping after
        // drop.
        unsafe { libc::shmdt(self.addr) };
    }
}

/// Calls `f` on the contents of segment `id` (attached read-only for the duration).
pub fn shm_read<T>(id: i32, size: u64, f: impl FnOnce(&[u8]) -> T) -> SysResult<T> {
    let a = Attached::new(id, size as usize, true)?;
    Ok(f(a.bytes()))
}

/// Writes `chunks` (offset, bytes) into segment `id` of `size` bytes.
pub fn shm_write(id: i32, size: u64, chunks: &[(u64, &[u8])]) -> SysResult<()> {
    let mut a = Attached::new(id, size as usize, false)?;
    for (off, data) in chunks {
        if !a.write(*off as usize, data) {
            return Err(SysError::new(
                "shm write",
                format!(
                    "shmid {id}: {} bytes at {off} past the size {size}",
                    data.len()
                ),
                Errno(libc::EINVAL),
            ));
        }
    }
    Ok(())
}

/// IPC_SET: owner and permission bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
    // SAFETY: shmid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as u16;
    // SAFETY: IPC_SET reads one shmid_ds from the pointer.
    let r = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    check(r, "shmctl(IPC_SET)", || format!("shmid {id}")).map(drop)
}

/// SHM_LOCK: the segment's pages stay in memory.
pub fn shm_lock(id: i32) -> SysResult<()> {
    // SAFETY: SHM_LOCK does not use the buffer.
    let r = unsafe { libc::shmctl(id, libc::SHM_LOCK, std::ptr::null_mut()) };
    check(r, "shmctl(SHM_LOCK)", || format!("shmid {id}")).map(drop)
}

/// IPC_RMID: the segment goes when its last attachment does.
pub fn shm_remove(id: i32) -> SysResult<()> {
    // SAFETY: IPC_RMID does not use the buffer.
    let r = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    check(r, "shmctl(IPC_RMID)", || format!("shmid {id}")).map(drop)
}

// ---- message queues --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgStat {
    pub perm: Perm,
    pub qbytes: u64,
    pub qnum: u64,
    pub cbytes: u64,
    pub lspid: i32,
    pub lrpid: i32,
}

pub fn msg_stat(id: i32) -> SysResult<MsgStat> {
    // SAFETY: msqid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds to the pointer.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    check(r, "msgctl(IPC_STAT)", || format!("msqid {id}"))?;
    Ok(MsgStat {
        perm: perm_of(&ds.msg_perm),
        qbytes: ds.msg_qbytes,
        qnum: ds.msg_qnum,
        cbytes: ds.__msg_cbytes,
        lspid: ds.msg_lspid,
        lrpid: ds.msg_lrpid,
    })
}

const MSG_COPY: i32 = 0o40000;

/// A copy of message number `index` (0 = oldest) of queue `id`, left in the queue
/// (msgrcv with MSG_COPY, which needs CONFIG_CHECKPOINT_RESTORE): (type, text).
pub fn msg_copy(id: i32, index: u64, max_len: usize) -> SysResult<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max_len];
    let flags = MSG_COPY | libc::IPC_NOWAIT;
    // SAFETY: buf holds a long (mtype) and max_len bytes of text, as msgrcv's size says.
    let r = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr() as *mut libc::c_void,
            max_len,
            index as libc::c_long,
            flags,
        )
    };
    if r < 0 {
        return Err(SysError::last(
            "msgrcv(MSG_COPY)",
            format!("msqid {id} message {index}"),
        ));
    }
    let mut ty = [0u8; 8];
    ty.copy_from_slice(&buf[..8]);
    let len = r as usize;
    Ok((i64::from_ne_bytes(ty), buf[8..8 + len].to_vec()))
}

/// msgget(key, IPC_CREAT | IPC_EXCL | mode); returns the id.
pub fn msg_create(key: i32, mode: u32) -> SysResult<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: msgget takes integers only.
    let r = unsafe { libc::msgget(key, flags) };
    check(r, "msgget", || format!("key {key:#x}"))
}

/// Queues one message without waiting.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> SysResult<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: buf holds a long (mtype) followed by text.len() bytes, as the size says.
    let r = unsafe {
        libc::msgsnd(
            id,
            buf.as_ptr() as *const libc::c_void,
            text.len(),
            libc::IPC_NOWAIT,
        )
    };
    check(r, "msgsnd", || format!("msqid {id} type {mtype}")).map(drop)
}

/// IPC_SET: owner, permission bits and the byte limit.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> SysResult<()> {
    // SAFETY: msqid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as u16;
    ds.msg_qbytes = qbytes;
    // SAFETY: IPC_SET reads one msqid_ds from the pointer.
    let r = unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) };
    check(r, "msgctl(IPC_SET)", || format!("msqid {id}")).map(drop)
}

pub fn msg_remove(id: i32) -> SysResult<()> {
    // SAFETY: IPC_RMID does not use the buffer.
    let r = unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    check(r, "msgctl(IPC_RMID)", || format!("msqid {id}")).map(drop)
}

// ---- semaphores ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemStat {
    pub perm: Perm,
    pub nsems: u64,
}

pub fn sem_stat(id: i32) -> SysResult<SemStat> {
    // SAFETY: semid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one semid_ds to the pointer passed as the semun argument.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    check(r, "semctl(IPC_STAT)", || format!("semid {id}"))?;
    Ok(SemStat {
        perm: perm_of(&ds.sem_perm),
        nsems: ds.sem_nsems,
    })
}

/// Every semaphore's value (GETALL).
pub fn sem_values(id: i32, nsems: usize) -> SysResult<Vec<u16>> {
    let mut vals = vec![0u16; nsems];
    // SAFETY: GETALL writes nsems unsigned shorts to the array, which has room for them.
    let r = unsafe { libc::semctl(id, 0, libc::GETALL, vals.as_mut_ptr()) };
    check(r, "semctl(GETALL)", || format!("semid {id}"))?;
    Ok(vals)
}

/// The PID of the last operation on semaphore `num` (GETPID).
pub fn sem_pid(id: i32, num: i32) -> SysResult<i32> {
    // SAFETY: GETPID takes no buffer.
    let r = unsafe { libc::semctl(id, num, libc::GETPID) };
    check(r, "semctl(GETPID)", || format!("semid {id} sem {num}"))
}

/// The number of processes waiting on semaphore `num`: for it to grow (GETNCNT) plus
/// for it to become zero (GETZCNT).
pub fn sem_waiters(id: i32, num: i32) -> SysResult<i32> {
    // SAFETY: GETNCNT takes no buffer.
    let n = unsafe { libc::semctl(id, num, libc::GETNCNT) };
    let n = check(n, "semctl(GETNCNT)", || format!("semid {id} sem {num}"))?;
    // SAFETY: GETZCNT takes no buffer.
    let z = unsafe { libc::semctl(id, num, libc::GETZCNT) };
    let z = check(z, "semctl(GETZCNT)", || format!("semid {id} sem {num}"))?;
    Ok(n + z)
}

/// One semop on semaphore `num` by the calling process (flags: SEM_UNDO, IPC_NOWAIT).
pub fn sem_op(id: i32, num: u16, op: i16, flags: i16) -> SysResult<()> {
    let mut sb = libc::sembuf {
        sem_num: num,
        sem_op: op,
        sem_flg: flags,
    };
    // SAFETY: semop reads one sembuf from the pointer, which is valid for it.
    let r = unsafe { libc::semop(id, &mut sb, 1) };
    check(r, "semop", || format!("semid {id} sem {num} op {op}")).map(drop)
}

/// The largest value of a semaphore (SEMVMX); exit clamps undone values to [0, SEMVMX].
pub const SEMVMX: u16 = 32767;

/// semget(key, nsems, IPC_CREAT | IPC_EXCL | mode); returns the id.
pub fn sem_create(key: i32, nsems: usize, mode: u32) -> SysResult<i32> {
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: semget takes integers only.
    let r = unsafe { libc::semget(key, nsems as i32, flags) };
    check(r, "semget", || format!("key {key:#x} nsems {nsems}"))
}

/// Sets every semaphore's value (SETALL).
pub fn sem_set_values(id: i32, vals: &[u16]) -> SysResult<()> {
    // SAFETY: SETALL reads nsems unsigned shorts; the caller passes the set's nsems values
    // (the kernel reads exactly the set's count, which is vals.len() for a set we made).
    let r = unsafe { libc::semctl(id, 0, libc::SETALL, vals.as_ptr()) };
    check(r, "semctl(SETALL)", || format!("semid {id}")).map(drop)
}

/// IPC_SET: owner and permission bits.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
    // SAFETY: semid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as u16;
    // SAFETY: IPC_SET reads one semid_ds from the pointer.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) };
    check(r, "semctl(IPC_SET)", || format!("semid {id}")).map(drop)
}

pub fn sem_remove(id: i32) -> SysResult<()> {
    // SAFETY: IPC_RMID takes no buffer.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
    check(r, "semctl(IPC_RMID)", || format!("semid {id}")).map(drop)
}

const KCMP_SYSVSEM: i32 = 6;

/// Whether two processes have the same semaphore undo list (both none counts as the same).
pub fn same_sem_undo(pid1: i32, pid2: i32) -> SysResult<bool> {
    // SAFETY: kcmp with KCMP_SYSVSEM takes only integers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_SYSVSEM, 0, 0) };
    if r < 0 {
        return Err(SysError::last(
            "kcmp(KCMP_SYSVSEM)",
            format!("pids {pid1} and {pid2}"),
        ));
    }
    Ok(r == 0)
}

/// Whether process `pid` has a semaphore undo list (see [`pids_with_sem_undo`]).
pub fn has_sem_undo(pid: i32) -> SysResult<bool> {
    Ok(!pids_with_sem_undo(&[pid])?.is_empty())
}

/// Those of `pids` that have a semaphore undo list. Each is compared with one child
/// forked for the purpose: fork does not share the list (no CLONE_SYSVSEM), so the child
/// has none, while a process may have one (every thread it made shares one).
pub fn pids_with_sem_undo(pids: &[i32]) -> SysResult<Vec<i32>> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check(r, "pipe2", || "undo list probe".to_string())?;
    // SAFETY: the child only makes raw system calls (read, _exit) and leaves with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut b = 0u8;
        // SAFETY: reads at most one byte into `b`; _exit never returns. The read waits
        // until the parent closes its end.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing the read end we own.
    unsafe { libc::close(fds[0]) };
    if child < 0 {
        let e = SysError::last("fork", "undo list probe");
        // SAFETY: closing the write end we own.
        unsafe { libc::close(fds[1]) };
        return Err(e);
    }
    let mut with = Vec::new();
    let mut failed = None;
    for &pid in pids {
        match same_sem_undo(child, pid) {
            Ok(true) => {}
            Ok(false) => with.push(pid),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // SAFETY: closing the write end lets the child end; waitpid reaps our own child.
    unsafe {
        libc::close(fds[1]);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(with),
    }
}

// ---- /proc/sysvipc ---------------------------------------------------------------------

/// One row of /proc/sysvipc/{shm,msg,sem}: column name -> value.
#[derive(Debug, Clone, Default)]
pub struct Row(Vec<(String, i64)>);

impl Row {
    pub fn get(&self, col: &str) -> Option<i64> {
        self.0.iter().find(|c| c.0 == col).map(|c| c.1)
    }
}

/// The objects of `kind` in the calling process's IPC namespace.
pub fn list(kind: Kind) -> SysResult<Vec<Row>> {
    let path = format!("/proc/sysvipc/{}", kind.name());
    let text = std::fs::read_to_string(&path)
        .map_err(|e| SysError::new("read", path, Errno(e.raw_os_error().unwrap_or(libc::EIO))))?;
    Ok(parse_table(&text))
}

fn parse_table(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split_whitespace().collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            Row(cols
                .iter()
                .zip(l.split_whitespace())
                .filter_map(|(c, v)| Some((c.to_string(), v.parse::<i64>().ok()?)))
                .collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shm_table() {
        let t = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n         0         12  1600                  8192  4242  4243      2     0     0     0     0 1700000000          0 1700000000                  4096                     0\n";
        let rows = parse_table(t);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get("shmid"), Some(12));
        assert_eq!(rows[0].get("cpid"), Some(4242));
        assert_eq!(rows[0].get("lpid"), Some(4243));
        assert_eq!(rows[0].get("size"), Some(8192));
        assert_eq!(rows[0].get("nope"), None);
    }
}
