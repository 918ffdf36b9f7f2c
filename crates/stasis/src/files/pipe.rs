//! Pipes whose two ends are both in the tree, with the bytes queued in them.

use stasis_image::{FdImage, FileKind};
use stasis_sys::{own, process};

use super::FdProbe;
use crate::error::{Result, SysContext};

pub fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let Some(inode) = p
        .target
        .strip_prefix("pipe:[")
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let local =
        process::pidfd_getfd(p.pid, p.fd).ctx(p.pid, || format!("fd {} ({})", p.fd, p.target))?;
    let capacity = own::pipe_capacity(local.raw()).ctx(p.pid, || format!("fd {}", p.fd))?;
    Ok(Some(FileKind::Pipe {
        inode,
        read_end: p.info.flags & libc::O_ACCMODE as u32 == libc::O_RDONLY as u32,
        capacity,
    }))
}

/// The queued bytes of the pipe behind `pid`'s read end `fd`, left in place.
pub fn peek(pid: i32, fd: i32, capacity: u32) -> Result<Vec<u8>> {
    let local = process::pidfd_getfd(pid, fd).ctx(pid, || format!("fd {fd}"))?;
    own::peek_pipe(local.raw(), capacity).ctx(pid, || format!("read the data queued in fd {fd}"))
}

/// A pipe created at restore: its two ends in the calling process.
pub struct NewPipe {
    pub inode: u64,
    pub read: i32,
    pub write: i32,
}

/// Creates the pipe `f` is an end of and queues `data` in it.
pub fn create(f: &FdImage, data: &[u8]) -> std::result::Result<NewPipe, String> {
    let FileKind::Pipe {
        inode, capacity, ..
    } = f.file
    else {
        return Err(format!("fd {}: not a pipe", f.fd));
    };
    let err = |e: stasis_sys::SysError| format!("fd {} (pipe:[{inode}]): {e}", f.fd);
    let (read, write) = own::pipe_with(libc::O_CLOEXEC).map_err(err)?;
    own::set_pipe_capacity(write, capacity).map_err(err)?;
    own::write_all(write, data).map_err(err)?;
    Ok(NewPipe { inode, read, write })
}
