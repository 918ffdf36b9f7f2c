//! Pipes whose two ends are both in the tree, with the bytes queued in them.

use stasis_image::{FdImage, FileKind};
use stasis_sys::{own, process};

use super::{place_copy, ChildResult, FdProbe, Kind, KindState, Reopen};
use crate::error::{Result, SysContext};

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
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
struct NewPipe {
    inode: u64,
    read: i32,
    write: i32,
}

pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::Pipe { .. }),
    open,
    finish,
    ..Kind::NONE
};

/// Puts an end at `at`; the first end of a pipe to be opened makes the pipe, with what
/// was queued in it.
fn open(f: &FdImage, at: i32, r: &Reopen, state: &mut KindState) -> ChildResult {
    let FileKind::Pipe {
        inode,
        read_end,
        capacity,
    } = f.file
    else {
        return Err(format!("fd {}: not a pipe", f.fd));
    };
    let pipes = state.of::<Vec<NewPipe>>();
    if !pipes.iter().any(|p| p.inode == inode) {
        let data = r
            .pipe_data
            .iter()
            .find(|d| d.inode == inode)
            .map_or(&[][..], |d| &d.data[..]);
        let err = |e: stasis_sys::SysError| format!("fd {} (pipe:[{inode}]): {e}", f.fd);
        let (read, write) = own::pipe_with(libc::O_CLOEXEC).map_err(err)?;
        let made = NewPipe {
            inode,
            read: r.park(read, f)?,
            write: r.park(write, f)?,
        };
        own::set_pipe_capacity(made.write, capacity).map_err(err)?;
        own::write_all(made.write, data).map_err(err)?;
        pipes.push(made);
    }
    let Some(p) = pipes.iter().find(|p| p.inode == inode) else {
        return Err(format!("fd {}: pipe:[{inode}] was not made", f.fd));
    };
    place_copy(if read_end { p.read } else { p.write }, at, f)
}

/// Closes the ends the root made (the tasks hold their own copies).
fn finish(_: &Reopen, state: &mut KindState) -> ChildResult {
    for p in state.of::<Vec<NewPipe>>().drain(..) {
        own::close(p.read);
        own::close(p.write);
    }
    Ok(())
}
