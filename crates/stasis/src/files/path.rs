//! Files opened by path: regular files, directories, O_PATH descriptors and FIFOs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stasis_image::{FdImage, FileKind};
use stasis_sys::own;

use super::FdProbe;
use crate::error::Result;

pub fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
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
    if std::os::unix::fs::FileTypeExt::is_fifo(&p.meta.file_type()) {
        return Ok(Some(FileKind::Fifo {
            path,
            inode: p.meta.ino(),
        }));
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

pub fn reopen(f: &FdImage, flags: i32) -> std::result::Result<i32, String> {
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

/// Opens a FIFO end without blocking: `keep` is a read-write descriptor of the same FIFO
/// (so a reader and a writer exist); the final flags are set afterwards.
pub fn reopen_fifo(f: &FdImage, flags: i32, path: &str) -> std::result::Result<i32, String> {
    let err = |e: stasis_sys::SysError| format!("fd {}: {e}", f.fd);
    let fd = own::open(Path::new(path), flags | libc::O_NONBLOCK, 0).map_err(err)?;
    own::set_status_flags(
        fd,
        flags & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC),
    )
    .map_err(err)?;
    Ok(fd)
}
