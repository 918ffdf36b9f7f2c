//! File locks (`dump --file-locks`): POSIX (fcntl) locks belong to the process, flock and
//! OFD locks to the open file description. They are found in the "lock:" lines of
//! /proc/PID/fdinfo/N, which list the locks held through that descriptor (a POSIX lock
//! only in the fdinfo of its owner). Without the option a held lock is refused.
//!
//! A lease (F_SETLEASE) is on the description too, and shows with the PID of the process
//! that took it: that process takes it again, through its own descriptor, once its
//! descriptors are in place (a remote fcntl, like its POSIX locks), which also makes it the
//! owner that lease breaks signal (SIGIO), as F_SETLEASE did. Processes that share the
//! description show the lease too: the one that took it must be in the tree and still hold
//! the description (`check_shared_leases`). A lease being broken is refused.
//!
//! At restore the root takes flock and OFD locks on the descriptions it opens (every
//! process sharing a description then shares its lock); each process takes its POSIX
//! locks itself, through a remote fcntl once every descriptor it will not keep (slots,
//! mapped files) is closed, since closing any descriptor of a file drops the process's
//! POSIX locks on it.

use super::ChildResult;
use stasis_image::{FdImage, FileLock, LockKind, TaskImage};
use stasis_sys::{own, procfs};

use crate::error::{Error, ProcContext, Result};
use crate::inject::Session;

/// One "lock:" line of fdinfo: "1: POSIX  ADVISORY  WRITE 1234 08:02:131 0 EOF", or
/// "1: LEASE  ACTIVE    READ 1234 08:02:131 0 EOF". `pid` is the process whose fdinfo it is;
/// None for a lease another process took (on a description they share), which that
/// process's image holds (`check_shared_leases`).
fn parse(pid: i32, fd: i32, line: &str) -> ChildResult<Option<FileLock>> {
    let t: Vec<&str> = line.split_whitespace().collect();
    let bad = || format!("unexpected lock line {line:?}");
    if t.len() < 8 {
        return Err(bad());
    }
    let kind = match t[1] {
        "POSIX" => LockKind::Posix,
        "OFDLCK" => LockKind::Ofd,
        "FLOCK" => LockKind::Flock,
        "LEASE" => LockKind::Lease,
        "DELEG" => return Err("an NFS delegation (not supported)".into()),
        other => return Err(format!("a {other} lock (not supported)")),
    };
    if kind == LockKind::Lease {
        if t[2] != "ACTIVE" {
            return Err(format!(
                "a file lease in state {} (being broken: not supported)",
                t[2]
            ));
        }
        let holder = t[4].parse::<i32>().map_err(|_| bad())?;
        if holder != pid {
            return Ok(None);
        }
    } else if t[2] != "ADVISORY" {
        return Err(format!("a {} {} lock (not supported)", t[2], t[1]));
    }
    let write = match t[3] {
        "WRITE" => true,
        "READ" => false,
        _ => return Err(bad()),
    };
    let start = t[6].parse::<u64>().map_err(|_| bad())?;
    let end = match t[7] {
        "EOF" => None,
        n => Some(n.parse::<u64>().map_err(|_| bad())?),
    };
    Ok(Some(FileLock {
        fd,
        kind,
        write,
        start,
        end,
    }))
}

/// The holder (PID) of each lease that shows through a descriptor of `pid`: (fd, holder).
fn leases_seen(pid: i32, fds: &[FdImage]) -> Result<Vec<(i32, i32)>> {
    let mut out = Vec::new();
    for f in fds {
        let info = procfs::fdinfo(pid, f.fd).proc(pid)?;
        for (_, line) in info.extra.iter().filter(|(k, _)| k == "lock") {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.get(1) == Some(&"LEASE") {
                if let Some(holder) = t.get(4).and_then(|p| p.parse().ok()) {
                    out.push((f.fd, holder));
                }
            }
        }
    }
    Ok(out)
}

/// A lease that shows through a descriptor of a process other than the one that took it
/// is that one's to take again at restore: it must be in the tree and have the lease in
/// its image on the same description, else the lease would be lost. The tree is still
/// frozen.
pub fn check_shared_leases(images: &[TaskImage]) -> Result<()> {
    for t in images.iter().filter(|t| !t.vfork_child) {
        for (fd, holder) in leases_seen(t.pid, &t.fds)? {
            if holder == t.pid {
                continue;
            }
            let Some(desc) = t.fds.iter().find(|f| f.fd == fd).map(|f| f.desc) else {
                continue;
            };
            let kept = images.iter().find(|h| h.pid == holder).is_some_and(|h| {
                h.file_locks.iter().any(|l| {
                    l.kind == LockKind::Lease
                        && h.fds.iter().any(|f| f.fd == l.fd && f.desc == desc)
                })
            });
            if !kept {
                let link = procfs::fd_target(t.pid, fd).unwrap_or_default();
                return Err(Error::Unsupported {
                    pid: t.pid,
                    object: format!("fd {fd} ({link})"),
                    detail: format!(
                        "a file lease taken by process {holder}, which is not in the tree or \
                         no longer holds the open file description (the lease could not be \
                         taken again)"
                    ),
                });
            }
        }
    }
    Ok(())
}

fn kind_name(k: LockKind) -> &'static str {
    match k {
        LockKind::Posix => "POSIX (fcntl)",
        LockKind::Ofd => "OFD",
        LockKind::Flock => "flock",
        LockKind::Lease => "lease (F_SETLEASE)",
    }
}

/// The locks held through the descriptors of `pid`; with `allowed` false a held lock is
/// an `Unsupported` error.
pub fn dump(pid: i32, fds: &[FdImage], allowed: bool) -> Result<Vec<FileLock>> {
    let mut out: Vec<(FileLock, u32)> = Vec::new();
    for f in fds {
        let info = procfs::fdinfo(pid, f.fd).proc(pid)?;
        for (_, line) in info.extra.iter().filter(|(k, _)| k == "lock") {
            let object = || {
                let link = procfs::fd_target(pid, f.fd).unwrap_or_default();
                format!("fd {} ({link})", f.fd)
            };
            let parsed = parse(pid, f.fd, line).map_err(|detail| Error::Unsupported {
                pid,
                object: object(),
                detail,
            })?;
            let Some(lock) = parsed else {
                if allowed {
                    continue; // another process's lease: `check_shared_leases`
                }
                return Err(Error::Unsupported {
                    pid,
                    object: object(),
                    detail: "it shares a file lease (dump with --file-locks to save file locks)"
                        .into(),
                });
            };
            if !allowed {
                return Err(Error::Unsupported {
                    pid,
                    object: object(),
                    detail: format!(
                        "it holds a {} file lock (dump with --file-locks to save file locks)",
                        kind_name(lock.kind)
                    ),
                });
            }
            // The same lock shows through every descriptor of its description: keep one.
            let same = |(l, d): &(FileLock, u32)| {
                *d == f.desc
                    && (l.kind, l.write, l.start, l.end)
                        == (lock.kind, lock.write, lock.start, lock.end)
            };
            if !out.iter().any(same) {
                out.push((lock, f.desc));
            }
        }
    }
    Ok(out.into_iter().map(|(l, _)| l).collect())
}

fn len_of(l: &FileLock) -> u64 {
    l.end.map_or(0, |e| e.saturating_sub(l.start) + 1)
}

fn l_type(l: &FileLock) -> i16 {
    if l.write {
        libc::F_WRLCK as i16
    } else {
        libc::F_RDLCK as i16
    }
}

/// Takes the flock and OFD locks of `locks` (held through the descriptors `fds`) on the
/// descriptions the root opened: `slot` gives a description's descriptor. Runs in the
/// restore root.
pub fn take_description_locks(
    locks: &[FileLock],
    fds: &[FdImage],
    slot: impl Fn(u32) -> i32,
) -> ChildResult {
    for l in locks
        .iter()
        .filter(|l| matches!(l.kind, LockKind::Flock | LockKind::Ofd))
    {
        let f = fds
            .iter()
            .find(|f| f.fd == l.fd)
            .ok_or_else(|| format!("a lock is held through fd {}, which is not open", l.fd))?;
        let at = slot(f.desc);
        let r = match l.kind {
            LockKind::Flock => own::flock_nb(at, l.write),
            _ => own::fcntl_lock(at, libc::F_OFD_SETLK, l_type(l), l.start, len_of(l)).map(drop),
        };
        r.map_err(|e| {
            format!(
                "fd {}: take its {} lock again (held by a process outside the tree?): {e}",
                l.fd,
                kind_name(l.kind)
            )
        })?;
    }
    Ok(())
}

/// Takes the process's POSIX locks and leases from inside it (remote fcntl F_SETLK,
/// F_SETLEASE).
pub fn take_posix_locks(s: &mut Session, locks: &[FileLock]) -> Result<()> {
    let pid = s.pid();
    for l in locks.iter().filter(|l| l.kind == LockKind::Lease) {
        s.call(
            "fcntl(F_SETLEASE)",
            libc::SYS_fcntl,
            [
                l.fd as u64,
                libc::F_SETLEASE as u64,
                l_type(l) as u64,
                0,
                0,
                0,
            ],
        )
        .map_err(|e| Error::Restore {
            pid,
            reason: format!(
                "fd {}: take its {} lease again (the file is open elsewhere{}?): {e}",
                l.fd,
                if l.write { "write" } else { "read" },
                if l.write { "" } else { " for writing" }
            ),
        })?;
    }
    for l in locks.iter().filter(|l| l.kind == LockKind::Posix) {
        // struct flock: l_type i16, l_whence i16, (pad), l_start i64, l_len i64, l_pid i32.
        let mut fl = [0u8; 32];
        fl[0..2].copy_from_slice(&l_type(l).to_le_bytes());
        fl[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_le_bytes());
        fl[8..16].copy_from_slice(&l.start.to_le_bytes());
        fl[16..24].copy_from_slice(&len_of(l).to_le_bytes());
        let addr = s.put(0, &fl)?;
        s.call(
            "fcntl(F_SETLK)",
            libc::SYS_fcntl,
            [l.fd as u64, libc::F_SETLK as u64, addr, 0, 0, 0],
        )
        .map_err(|e| Error::Restore {
            pid,
            reason: format!(
                "fd {}: take its POSIX lock on {}..{} again (held by a process outside the tree?): {e}",
                l.fd,
                l.start,
                l.end.map_or("EOF".to_string(), |e| e.to_string())
            ),
        })?;
    }
    Ok(())
}
