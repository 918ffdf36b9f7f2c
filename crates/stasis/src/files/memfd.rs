//! memfd_create files: a descriptor refers to a file object (see `object.rs`) saved with
//! its name, contents, size, mode and seals.

use std::os::unix::fs::MetadataExt;

use stasis_image::FileKind;

use super::object::Found;
use super::FdProbe;
use crate::error::Result;

/// The memfd name in a link text or maps path ("/memfd:NAME (deleted)").
pub fn name_of(link: &str) -> Option<&str> {
    let name = link.strip_prefix("/memfd:")?;
    Some(name.strip_suffix(" (deleted)").unwrap_or(name))
}

pub fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let Some(name) = name_of(p.target) else {
        return Ok(None);
    };
    if !p.is_file() {
        return Ok(None);
    }
    let object = p.objects.borrow_mut().note(
        p.pid,
        (p.meta.dev(), p.meta.ino()),
        format!("/proc/{}/fd/{}", p.pid, p.fd),
        Found::Memfd {
            name: name.to_string(),
        },
    );
    Ok(Some(FileKind::Object { object }))
}
