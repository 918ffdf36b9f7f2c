//! memfd_create files: a descriptor refers to a file object (see `object.rs`) saved with
//! its name, contents, size, mode and seals.

use std::os::unix::fs::MetadataExt;

use stasis_image::FileKind;

use super::object::Found;
use super::{ChildResult, FdProbe, Kind};
use crate::error::Result;

/// The memfd name in a link text or maps path ("/memfd:NAME (deleted)").
pub fn name_of(link: &str) -> Option<&str> {
    let name = link.strip_prefix("/memfd:")?;
    Some(name.strip_suffix(" (deleted)").unwrap_or(name))
}

const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// A memfd is a file object: `object` restores it.
pub const KIND: Kind = Kind { dump, ..Kind::NONE };

/// A memfd made with MFD_HUGETLB lives on hugetlbfs: refused (restore would make an
/// ordinary one).
pub fn refuse_hugetlb(path: &str) -> ChildResult {
    match stasis_sys::own::fs_type(std::path::Path::new(path)) {
        Ok(HUGETLBFS_MAGIC) => {
            Err("a memfd with huge pages (MFD_HUGETLB, not supported yet)".into())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot statfs the memfd: {e}")),
    }
}

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let Some(name) = name_of(p.target) else {
        return Ok(None);
    };
    if !p.is_file() {
        return Ok(None);
    }
    refuse_hugetlb(&format!("/proc/{}/fd/{}", p.pid, p.fd))
        .map_err(|detail| p.unsupported(&detail))?;
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
