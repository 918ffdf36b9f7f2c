//! epoll instances and their registrations.
//!
//! A registration is keyed by a file *and* a descriptor number of the process that made
//! it, so registrations are made again by the task that holds the epoll descriptor first,
//! once its own descriptors are in place.

use std::os::unix::fs::MetadataExt;

use stasis_image::{EpollTarget, FdImage, FileKind};
use stasis_sys::own;

use super::FdProbe;
use crate::error::Result;

fn hex_after(v: &str, key: &str) -> Option<u64> {
    let rest = &v[v.find(key)? + key.len()..];
    let tok = rest.split_whitespace().next()?;
    u64::from_str_radix(tok, 16).ok()
}

pub fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if p.target != "anon_inode:[eventpoll]" {
        return Ok(None);
    }
    let mut targets = Vec::new();
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
        let ino = hex_after(v, "ino:").ok_or_else(bad)?;
        // The registered file must still be at that number in this process.
        let here = std::fs::metadata(format!("/proc/{}/fd/{fd}", p.pid)).map(|m| m.ino());
        if here.ok() != Some(ino) {
            return Err(p.unsupported(&format!(
                "a registration of fd {fd}, which was closed or replaced since (not supported yet)"
            )));
        }
        targets.push(EpollTarget { fd, events, data });
    }
    Ok(Some(FileKind::Epoll { targets }))
}

pub fn create(f: &FdImage) -> std::result::Result<i32, String> {
    own::epoll_create(libc::EPOLL_CLOEXEC).map_err(|e| format!("fd {}: {e}", f.fd))
}

/// Registers the targets of epoll descriptor `f` (already at its number) again.
pub fn register(f: &FdImage) -> std::result::Result<(), String> {
    if let FileKind::Epoll { targets } = &f.file {
        for t in targets {
            own::epoll_add(f.fd, t.fd, t.events, t.data)
                .map_err(|e| format!("fd {}: register fd {}: {e}", f.fd, t.fd))?;
        }
    }
    Ok(())
}
