//! epoll instances and their registrations.
//!
//! A registration is keyed by a file *and* a descriptor number of the process that made
//! it, so registrations are made again by the task that holds the epoll descriptor first,
//! once its own descriptors are in place. The registration outlives that descriptor: the
//! number may since have been closed (the file still open through a `dup`) or reused for
//! another file. kcmp(KCMP_EPOLL_TFD) tells which descriptor of the task now holds the
//! registered file; at restore that file is put at the registered number just long enough
//! to register it.

use stasis_image::{EpollTarget, FdImage, FileKind};
use stasis_sys::{own, process, procfs};

use super::{place, ChildResult, FdProbe, Kind};
use crate::error::{ProcContext, Result, SysContext};

/// The instance is made empty; its registrations come once the task that holds it has
/// its descriptors (`register`).
pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::Epoll { .. }),
    open: |f, at, _, _| {
        let fd = own::epoll_create(libc::EPOLL_CLOEXEC).map_err(|e| format!("fd {}: {e}", f.fd))?;
        place(fd, at, f)
    },
    ..Kind::NONE
};

fn hex_after(v: &str, key: &str) -> Option<u64> {
    let rest = &v[v.find(key)? + key.len()..];
    let tok = rest.split_whitespace().next()?;
    u64::from_str_radix(tok, 16).ok()
}

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if p.target != "anon_inode:[eventpoll]" {
        return Ok(None);
    }
    let mut targets: Vec<EpollTarget> = Vec::new();
    let mut fds: Option<Vec<i32>> = None;
    for (k, v) in &p.info.extra {
        if k != "tfd" {
            continue;
        }
        let bad = || p.unsupported(&format!("unreadable epoll registration {v:?}"));
        let fd: i32 = v
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        let events = hex_after(v, "events:").ok_or_else(bad)? as u32;
        let data = hex_after(v, "data:").ok_or_else(bad)?;
        // Registrations under the same number (of different files) are told apart by
        // their rank; fdinfo lists them in the order kcmp counts them.
        let toff = targets.iter().filter(|t| t.fd == fd).count() as u32;
        let holds = |at: i32| {
            process::epoll_target_is(p.pid, p.fd, fd, toff, at).ctx(p.pid, || {
                format!("fd {}: find the file registered as fd {fd}", p.fd)
            })
        };
        let now_at = if holds(fd)? {
            None
        } else {
            let list = match &fds {
                Some(l) => l,
                None => fds.insert(procfs::fds(p.pid).proc(p.pid)?),
            };
            let mut found = None;
            for &other in list.iter() {
                if other != p.fd && holds(other)? {
                    found = Some(other);
                    break;
                }
            }
            Some(found.ok_or_else(|| {
                p.unsupported(&format!(
                    "a registration of fd {fd}, whose file is no longer held by any descriptor of the process (not supported yet)"
                ))
            })?)
        };
        targets.push(EpollTarget {
            fd,
            events,
            data,
            now_at,
        });
    }
    Ok(Some(FileKind::Epoll { targets }))
}

/// Registers the targets of epoll descriptor `f` (already at its number) again. A target
/// whose file is now at another descriptor is put at its registered number for the call,
/// and whatever was at that number (or nothing) is put back.
pub fn register(f: &FdImage) -> ChildResult {
    if let FileKind::Epoll { targets } = &f.file {
        for t in targets {
            let err = |e: stasis_sys::SysError| format!("fd {}: register fd {}: {e}", f.fd, t.fd);
            match t.now_at {
                None => own::epoll_add(f.fd, t.fd, t.events, t.data).map_err(err)?,
                Some(at) => {
                    let saved = own::save_fd(t.fd).map_err(err)?;
                    own::dup_to(at, t.fd, true).map_err(err)?;
                    let r = own::epoll_add(f.fd, t.fd, t.events, t.data);
                    own::restore_fd(t.fd, saved).map_err(err)?;
                    r.map_err(err)?;
                }
            }
        }
    }
    Ok(())
}
