//! Character devices, reopened by path, and terminals (re-attached with --shell-job).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stasis_image::{FdImage, FileKind};
use stasis_sys::own;

use super::{open_flags, place, ChildResult, FdProbe, Kind, ReopenContext};
use crate::error::{Error, Result};

pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::CharDevice { .. } | FileKind::Terminal { .. }),
    check: |pid, f| match &f.file {
        FileKind::CharDevice { path, .. } => {
            std::fs::symlink_metadata(path)
                .map(drop)
                .map_err(|e| Error::Restore {
                    pid,
                    reason: format!("fd {}: {path} is not available: {e}", f.fd),
                })
        }
        _ => Ok(()),
    },
    open: |f, at, r, _| place(reopen(f, open_flags(f), r.ctx)?, at, f),
    ..Kind::NONE
};

/// Major numbers of terminal devices: tty (4), /dev/tty and console (5), pty slaves
/// (136-143).
fn is_tty(rdev: u64) -> bool {
    let major = libc::major(rdev);
    major == 4 || major == 5 || (136..=143).contains(&major)
}

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if !p.is_char_device() {
        return Ok(None);
    }
    let rdev = p.meta.rdev();
    if is_tty(rdev) || p.target == "/dev/ptmx" || p.target.starts_with("/dev/pts/") {
        if !p.shell_job {
            return Err(p.unsupported(
                "a terminal; use --shell-job to dump a process that uses the terminal it was started from",
            ));
        }
        return Ok(Some(FileKind::Terminal {
            path: p.target.to_string(),
        }));
    }
    Ok(Some(FileKind::CharDevice {
        path: p.target.to_string(),
        rdev,
    }))
}

fn reopen(f: &FdImage, flags: i32, ctx: &ReopenContext) -> ChildResult<i32> {
    let path = match &f.file {
        FileKind::CharDevice { path, .. } => path.clone(),
        FileKind::Terminal { .. } => ctx.terminal.clone().ok_or_else(|| {
            format!(
                "fd {}: the image has a terminal but this restore has none (run it with --shell-job from a terminal)",
                f.fd
            )
        })?,
        _ => return Err(format!("fd {}: not a character device", f.fd)),
    };
    own::open(Path::new(&path), flags | libc::O_NOCTTY, 0).map_err(|e| format!("fd {}: {e}", f.fd))
}
