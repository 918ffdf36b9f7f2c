//! Descriptors stasis cannot checkpoint yet: named precisely, so that the dump fails with a
//! clear message instead of silently dropping them.

use stasis_image::FileKind;

use super::{FdProbe, Kind};
use crate::error::Result;

/// Kinds recognised by their link text, not taken by the kinds before.
pub const BY_NAME: Kind = Kind { dump, ..Kind::NONE };

/// Whatever no other kind took.
pub const REST: Kind = Kind {
    dump: dump_rest,
    ..Kind::NONE
};

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let t = p.target;
    let what = if t.starts_with("pipe:") {
        "a pipe (not supported yet)".to_string()
    } else if t.starts_with("socket:") {
        "a socket (not supported yet)".to_string()
    } else if let Some(kind) = t.strip_prefix("anon_inode:") {
        format!(
            "an anonymous-inode file {} (not supported yet)",
            kind.trim_matches(|c| c == '[' || c == ']')
        )
    } else {
        return Ok(None);
    };
    Err(p.unsupported(&what))
}

fn dump_rest(p: &FdProbe) -> Result<Option<FileKind>> {
    let ft = p.meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    let what = if ft.is_fifo() {
        "a FIFO (not supported yet)"
    } else if ft.is_block_device() {
        "a block device (not supported)"
    } else if ft.is_socket() {
        "a socket (not supported yet)"
    } else {
        "an unknown kind of file"
    };
    Err(p.unsupported(what))
}
