//! pidfds (pidfd_open, clone's CLONE_PIDFD): a descriptor that refers to a process, of the
//! tree or outside it. fdinfo names the process ("Pid:"). At restore the process may not
//! exist yet when the root opens the descriptions (children are forked later), so the
//! root holds a placeholder at the slot and each process opens its pidfds itself,
//! through a remote pidfd_open once the whole tree exists; a pidfd shared between
//! descriptors or processes is opened once and the others take it from its first holder.

use stasis_image::{FdImage, FileKind};

use super::{place, FdProbe, Kind};
use crate::error::{Error, Result};
use crate::inject::Session;

/// The root holds a placeholder at a pidfd's slot until the process it names exists and
/// the task that holds it opens the pidfd (`restore`).
pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::PidFd { .. }),
    open: |f, at, _, _| {
        let fd = stasis_sys::own::open(std::path::Path::new("/dev/null"), libc::O_RDONLY, 0)
            .map_err(|e| format!("fd {}: {e}", f.fd))?;
        place(fd, at, f)
    },
    ..Kind::NONE
};

const SYS_PIDFD_OPEN: i64 = 434;

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if p.target != "anon_inode:[pidfd]" {
        return Ok(None);
    }
    let pid = p
        .info
        .extra
        .iter()
        .find(|(k, _)| k == "Pid")
        .and_then(|(_, v)| v.trim().parse::<i32>().ok())
        .ok_or_else(|| p.unsupported("a pidfd whose fdinfo names no process"))?;
    if pid <= 0 {
        return Err(p.unsupported(
            "a pidfd of a process that has ended and been reaped, or is in another PID namespace (not supported)",
        ));
    }
    Ok(Some(FileKind::PidFd { pid }))
}

/// Checks, before anything is created, that every process a pidfd refers to outside the
/// tree (`tree`: the tree's PIDs) still exists.
pub fn check(pid: i32, fds: &[FdImage], tree: &[i32]) -> Result<()> {
    for f in fds {
        if let FileKind::PidFd { pid: target } = f.file {
            if !tree.contains(&target) && !std::path::Path::new(&format!("/proc/{target}")).exists()
            {
                return Err(Error::Restore {
                    pid,
                    reason: format!(
                        "fd {}: pidfd of process {target}, which is outside the tree and gone",
                        f.fd
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The pidfds made so far in this restore: description id -> (the holder's PID as the tree
/// sees it, its descriptor).
pub type Opened = std::collections::BTreeMap<u32, (i32, i32)>;

const SYS_PIDFD_GETFD: i64 = 438;

/// Opens the process's pidfds in it, over their placeholders: the first descriptor of a
/// description with a remote pidfd_open; a later one, in this process or another of the
/// tree, from that one (dup3, or pidfd_getfd through a pidfd of its holder), so that a
/// pidfd shared between processes is one description again.
pub fn restore(s: &mut Session, fds: &[FdImage], opened: &mut Opened) -> Result<()> {
    let pid = s.pid();
    let me = s.ns_pid();
    for f in fds {
        let FileKind::PidFd { pid: target } = f.file else {
            continue;
        };
        let fail = |what: &str, e: Error| Error::Restore {
            pid,
            reason: format!("fd {} (pidfd of {target}): {what}: {e}", f.fd),
        };
        let cloexec = if f.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        let got = match opened.get(&f.desc).copied() {
            Some((holder, fd)) if holder == me => fd as u64,
            Some((holder, fd)) => {
                let of_holder = s
                    .call("pidfd_open", SYS_PIDFD_OPEN, [holder as u64, 0, 0, 0, 0, 0])
                    .map_err(|e| fail("pidfd_open of its holder", e))?;
                let got = s.call(
                    "pidfd_getfd",
                    SYS_PIDFD_GETFD,
                    [of_holder, fd as u64, 0, 0, 0, 0],
                );
                s.call("close", libc::SYS_close, [of_holder, 0, 0, 0, 0, 0])?;
                got.map_err(|e| fail("pidfd_getfd from its holder", e))?
            }
            None => {
                let flags = (f.flags & libc::O_NONBLOCK as u32) as u64;
                s.call(
                    "pidfd_open",
                    SYS_PIDFD_OPEN,
                    [target as u64, flags, 0, 0, 0, 0],
                )
                .map_err(|e| fail("pidfd_open", e))?
            }
        };
        if got != f.fd as u64 {
            s.call("dup3", libc::SYS_dup3, [got, f.fd as u64, cloexec, 0, 0, 0])?;
            if opened
                .get(&f.desc)
                .is_none_or(|&(h, fd)| h != me || fd as u64 != got)
            {
                s.call("close", libc::SYS_close, [got, 0, 0, 0, 0, 0])?;
            }
        }
        opened.entry(f.desc).or_insert((me, f.fd));
    }
    Ok(())
}
