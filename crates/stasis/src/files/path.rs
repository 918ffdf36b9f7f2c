//! Files opened by path: regular files, directories and O_PATH descriptors.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stasis_image::{FdImage, FileKind};
use stasis_sys::own;

use super::{open_flags, place, ChildResult, FdProbe, Kind};
use crate::error::{Error, Result};

pub const KIND: Kind = Kind {
    dump,
    restores: |f| {
        matches!(
            f,
            FileKind::Regular { .. } | FileKind::Directory { .. } | FileKind::Path { .. }
        )
    },
    check,
    open: |f, at, _, _| place(reopen(f, open_flags(f))?, at, f),
    ..Kind::NONE
};

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if !p.target.starts_with('/') {
        return Ok(None);
    }
    if p.target.ends_with(" (deleted)") {
        return Err(p.unsupported("the file was deleted while open (not supported yet)"));
    }
    let path = p.target.to_string();
    if p.info.flags & libc::O_PATH as u32 != 0 {
        return Ok(Some(FileKind::Path { path }));
    }
    if p.is_dir() {
        return Ok(Some(FileKind::Directory { path }));
    }
    if p.is_file() {
        let (dev, ino) = super::meta_ino(p.meta);
        return Ok(Some(FileKind::Regular {
            path,
            size: p.meta.len(),
            dev,
            ino,
            mode: p.meta.mode(),
        }));
    }
    Ok(None)
}

/// The file must still be there; a regular file must have kept its size.
fn check(pid: i32, f: &FdImage) -> Result<()> {
    let unavailable = |path: &str, e: std::io::Error| Error::Restore {
        pid,
        reason: format!("fd {}: {path} is not available: {e}", f.fd),
    };
    match &f.file {
        // A process's own /proc files exist only once it does.
        FileKind::Regular { path, .. } if path.starts_with("/proc/") => Ok(()),
        FileKind::Regular { path, size, .. } => {
            let meta = std::fs::metadata(path).map_err(|e| unavailable(path, e))?;
            if meta.len() != *size {
                return Err(Error::Restore {
                    pid,
                    reason: format!(
                        "fd {}: file {path} changed since the dump (size {}, was {size})",
                        f.fd,
                        meta.len()
                    ),
                });
            }
            Ok(())
        }
        FileKind::Directory { path } | FileKind::Path { path } => std::fs::symlink_metadata(path)
            .map(drop)
            .map_err(|e| unavailable(path, e)),
        _ => Ok(()),
    }
}

fn reopen(f: &FdImage, flags: i32) -> ChildResult<i32> {
    let (path, extra) = match &f.file {
        FileKind::Regular { path, .. } => (path, 0),
        FileKind::Directory { path } => (path, libc::O_DIRECTORY),
        FileKind::Path { path } => (path, libc::O_PATH),
        _ => return Err(format!("fd {}: not a path-opened file", f.fd)),
    };
    let fd =
        own::open(Path::new(path), flags | extra, 0).map_err(|e| format!("fd {}: {e}", f.fd))?;
    if !matches!(f.file, FileKind::Path { .. }) && f.pos > 0 {
        own::seek(fd, f.pos).map_err(|e| format!("fd {}: {e}", f.fd))?;
    }
    Ok(fd)
}
