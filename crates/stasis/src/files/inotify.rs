//! inotify instances. Each watch is found again by path (its file handle in fdinfo is
//! opened and read back) and made again with the same watch descriptor: descriptors are
//! handed out in increasing order, so a gap is skipped by making a watch and dropping it.
//! Events queued at dump are not kept.

use std::path::Path;

use stasis_image::{FdImage, FileKind, InotifyWatch};
use stasis_sys::inotify;

use super::{place, ChildResult, FdProbe, Kind};
use crate::error::{Error, Result};

pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::Inotify { .. }),
    check,
    open: |f, at, _, _| place(create(f)?, at, f),
    ..Kind::NONE
};

/// Every watched file must exist again.
fn check(pid: i32, f: &FdImage) -> Result<()> {
    if let FileKind::Inotify { watches } = &f.file {
        for w in watches {
            std::fs::symlink_metadata(&w.path).map_err(|e| Error::Restore {
                pid,
                reason: format!("fd {}: watched file {} is not available: {e}", f.fd, w.path),
            })?;
        }
    }
    Ok(())
}

fn field<'a>(v: &'a str, key: &str) -> Option<&'a str> {
    v.split_whitespace().find_map(|t| t.strip_prefix(key))
}

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if p.target != "anon_inode:inotify" {
        return Ok(None);
    }
    let mut watches = Vec::new();
    for (k, v) in &p.info.extra {
        if k != "inotify wd" {
            continue;
        }
        let bad = || p.unsupported(&format!("unreadable inotify watch {v:?}"));
        let wd: i32 = v
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        let hex = |key| field(v, key).and_then(|t| u64::from_str_radix(t, 16).ok());
        let mask = hex("mask:").ok_or_else(bad)? as u32;
        let sdev = hex("sdev:").ok_or_else(bad)?;
        let htype: i32 = field(v, "fhandle-type:")
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        let handle: Vec<u8> = field(v, "f_handle:")
            .map(|h| {
                (0..h.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                    .collect()
            })
            .ok_or_else(bad)?;
        // The kernel's own device encoding: major in the bits above 20.
        let (major, minor) = ((sdev >> 20) as u32, (sdev & 0xfffff) as u32);
        let path = inotify::path_of_handle(major, minor, htype, &handle).map_err(|e| {
            p.unsupported(&format!(
                "watch {wd}: the watched file cannot be found again: {e}"
            ))
        })?;
        watches.push(InotifyWatch { wd, path, mask });
    }
    watches.sort_by_key(|w| w.wd);
    Ok(Some(FileKind::Inotify { watches }))
}

/// Creates the instance with its watches at their descriptors; returns its fd.
fn create(f: &FdImage) -> ChildResult<i32> {
    let FileKind::Inotify { watches } = &f.file else {
        return Err(format!("fd {}: not an inotify instance", f.fd));
    };
    let err = |e: stasis_sys::SysError| format!("fd {} (inotify): {e}", f.fd);
    let fd = inotify::init(libc::IN_NONBLOCK | libc::IN_CLOEXEC).map_err(err)?;
    let r = add_all(fd, watches).map_err(err);
    // Dropped watches queued IN_IGNORED events the program never saw.
    inotify::drain(fd);
    if let Err(e) = r {
        stasis_sys::own::close(fd);
        return Err(e);
    }
    let nonblock = f.flags as i32 & libc::O_NONBLOCK;
    stasis_sys::own::set_status_flags(fd, nonblock).map_err(err)?;
    Ok(fd)
}

/// Descriptors are allocated cyclically: a watch that comes too early is dropped and made
/// again, which moves the next descriptor on by one.
fn add_all(fd: i32, watches: &[InotifyWatch]) -> stasis_sys::SysResult<()> {
    for w in watches {
        loop {
            let wd = inotify::add_watch(fd, Path::new(&w.path), w.mask)?;
            if wd == w.wd {
                break;
            }
            if wd > w.wd {
                return Err(stasis_sys::SysError::new(
                    "inotify_add_watch",
                    format!("{}: got watch {wd}, expected {}", w.path, w.wd),
                    stasis_sys::Errno(libc::EEXIST),
                ));
            }
            inotify::rm_watch(fd, wd)?;
        }
    }
    Ok(())
}
