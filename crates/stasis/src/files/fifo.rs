//! Named pipes (FIFOs) opened by path, also after the path was unlinked. The bytes queued
//! in one are read at dump through a reading end of the tree (`DescTable::pipe_data`); at
//! restore the first end opened puts them back through a read-write descriptor of its
//! own, held until every end is open so that opening never blocks.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use stasis_image::{FdImage, FileKind};
use stasis_sys::own;

use super::{open_flags, place, ChildResult, FdProbe, Kind, KindState, Reopen};
use crate::error::{Error, Result};

pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::Fifo { .. }),
    check,
    open,
    finish: |_, state| {
        drop(std::mem::take(state.of::<Made>()));
        Ok(())
    },
};

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    // An O_PATH descriptor of a FIFO is no end of it: `path` takes it.
    if !p.meta.file_type().is_fifo() || p.info.flags & libc::O_PATH as u32 != 0 {
        return Ok(None);
    }
    let (path, unlinked) = match p.target.strip_suffix(" (deleted)") {
        Some(path) => (path, true),
        None => (p.target, false),
    };
    if !path.starts_with('/') {
        return Ok(None);
    }
    Ok(Some(FileKind::Fifo {
        path: path.to_string(),
        inode: p.meta.ino(),
        unlinked,
    }))
}

/// A named FIFO must still be one; an unlinked one needs a directory to be made in.
fn check(pid: i32, f: &FdImage) -> Result<()> {
    let FileKind::Fifo { path, unlinked, .. } = &f.file else {
        return Ok(());
    };
    let fail = |what: String| Error::Restore {
        pid,
        reason: format!("fd {}: {what}", f.fd),
    };
    if *unlinked {
        return Ok(());
    }
    let meta =
        std::fs::metadata(path).map_err(|e| fail(format!("{path} is not available: {e}")))?;
    if !meta.file_type().is_fifo() {
        return Err(fail(format!("{path} is no longer a FIFO")));
    }
    Ok(())
}

/// One FIFO at restore: a read-write descriptor held while its ends are opened, and the
/// path made for an unlinked one, unlinked again when done (or when the restore fails).
struct Held {
    inode: u64,
    rw: i32,
    path: PathBuf,
    made: bool,
}

#[derive(Default)]
struct Made(Vec<Held>);

impl Drop for Made {
    fn drop(&mut self) {
        for h in &self.0 {
            own::close(h.rw);
            if h.made {
                let _ = own::unlink(&h.path);
            }
        }
    }
}

/// Where an unlinked FIFO is made for a moment: its old path when free, else a name of
/// ours beside it (or in the temporary directory when its directory is gone too).
fn place_for_unlinked(path: &str, inode: u64) -> PathBuf {
    let old = Path::new(path);
    if std::fs::symlink_metadata(old).is_err() && old.parent().is_some_and(Path::is_dir) {
        return old.to_path_buf();
    }
    let dir = old
        .parent()
        .filter(|d| d.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    dir.join(format!(".stasis-fifo-{inode}-{}", std::process::id()))
}

fn open(f: &FdImage, at: i32, r: &Reopen, state: &mut KindState) -> ChildResult {
    let FileKind::Fifo {
        path,
        inode,
        unlinked,
    } = &f.file
    else {
        return Err(format!("fd {}: not a FIFO", f.fd));
    };
    let err = |e: stasis_sys::SysError| format!("fd {} (FIFO {path}): {e}", f.fd);
    let made = state.of::<Made>();
    if !made.0.iter().any(|h| h.inode == *inode) {
        let (at_path, new) = if *unlinked {
            let p = place_for_unlinked(path, *inode);
            own::mkfifo(&p, 0o600).map_err(err)?;
            (p, true)
        } else {
            (PathBuf::from(path), false)
        };
        let rw = own::open(&at_path, libc::O_RDWR | libc::O_NONBLOCK, 0);
        let rw = match rw.and_then(|fd| own::move_above(fd, r.spare)) {
            Ok(fd) => fd,
            Err(e) => {
                if new {
                    let _ = own::unlink(&at_path);
                }
                return Err(err(e));
            }
        };
        made.0.push(Held {
            inode: *inode,
            rw,
            path: at_path,
            made: new,
        });
        let held = made.0.last().map_or(-1, |h| h.rw);
        if let Some(d) = r.pipe_data.iter().find(|d| d.inode == *inode) {
            own::write_all(held, &d.data).map_err(err)?;
        }
    }
    let Some(h) = made.0.iter().find(|h| h.inode == *inode) else {
        return Err(format!("fd {}: FIFO {path} was not opened", f.fd));
    };
    // Without blocking (a reader and a writer exist); the final flags are set after.
    let flags = open_flags(f);
    let fd = own::open(&h.path, flags | libc::O_NONBLOCK, 0).map_err(err)?;
    own::set_status_flags(
        fd,
        flags & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC),
    )
    .map_err(err)?;
    place(fd, at, f)
}
