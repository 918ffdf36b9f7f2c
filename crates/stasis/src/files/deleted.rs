//! Regular files unlinked while open (O_TMPFILE files included): a descriptor refers to a
//! file object (see `object.rs`) whose contents the image holds; at restore the file is
//! created again in the same directory and unlinked at once.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stasis_image::FileKind;
use stasis_sys::own;

/// A deleted file is a file object: `object` restores it.
pub const KIND: Kind = Kind { dump, ..Kind::NONE };

use super::object::Found;
use super::{ChildResult, FdProbe, Kind};
use crate::error::Result;

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let Some(path) = p
        .target
        .strip_suffix(" (deleted)")
        .filter(|t| t.starts_with('/'))
    else {
        return Ok(None);
    };
    if !p.is_file() || p.info.flags & libc::O_PATH as u32 != 0 {
        return Ok(None);
    }
    if !dir_exists(path) {
        return Err(p.unsupported(DIR_GONE));
    }
    if p.meta.nlink() != 0 && !p.objects.borrow().link_remap {
        return Err(p.unsupported(super::object::STILL_LINKED));
    }
    let object = p.objects.borrow_mut().note(
        p.pid,
        (p.meta.dev(), p.meta.ino()),
        format!("/proc/{}/fd/{}", p.pid, p.fd),
        Found::Deleted {
            path: path.to_string(),
        },
    );
    Ok(Some(FileKind::Object { object }))
}

pub const DIR_GONE: &str =
    "the file was deleted and so was its directory, where it would be re-created (not supported)";

/// The directory a deleted file would be re-created in exists.
pub fn dir_exists(path: &str) -> bool {
    Path::new(path).parent().is_some_and(|d| d.is_dir())
}

/// `dump --link-remap`: gives the deleted file `path` (open as `source`, a /proc path) a
/// name in its directory; None if the kernel refuses (a file with no name left, unless
/// it is an O_TMPFILE file made without O_EXCL) or the name is taken.
pub fn link_again(path: &str, source: &str, pid: i32, id: u32) -> Option<String> {
    let dir = Path::new(path).parent()?;
    let link = dir.join(format!("link_remap.{pid}.{id}"));
    match own::link_following(Path::new(source), &link) {
        Ok(()) => {
            log::info!(
                "pid {pid}: deleted file {path} linked as {}",
                link.display()
            );
            Some(link.display().to_string())
        }
        Err(e) => {
            log::info!("pid {pid}: deleted file {path} not linked again ({e}): contents saved");
            None
        }
    }
}

/// Creates a file in the directory of `path` and unlinks it: under the same name if it is
/// free (so that /proc shows the same "PATH (deleted)"), else under a temporary one.
pub fn create_unlinked(path: &str, id: u32) -> ChildResult<i32> {
    let wanted = Path::new(path);
    let dir = wanted.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(".stasis-deleted-{}-{id}", std::process::id()));
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
    for name in [wanted, temp.as_path()] {
        match own::open(name, flags, 0o600) {
            Ok(fd) => {
                own::unlink(name).map_err(|e| e.to_string())?;
                return Ok(fd);
            }
            Err(e) if e.errno.0 == libc::EEXIST => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "cannot create a file in {} (names taken)",
        dir.display()
    ))
}
