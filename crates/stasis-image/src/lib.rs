//! The stasis image format.
//!
//! An image is a directory: a `manifest.img` naming every other file with its length and
//! XXH3 checksum, one metadata file per task (`task-PID.img`, CBOR in a checksummed
//! container) and one raw, page-aligned page file per task (`pages-PID.img`). This crate
//! makes no Linux calls, so the inspector, converters and fuzzers can use it anywhere.
//! See docs/IMAGE_FORMAT.md.

#![forbid(unsafe_code)]

pub mod container;
pub mod dir;
pub mod features;
pub mod ipc;
pub mod objects;
pub mod render;
pub mod sample;
pub mod types;
pub mod validate;

pub use container::{MetaKind, FORMAT_MAJOR, FORMAT_MINOR};
pub use dir::{
    pages_file_name, task_file_name, ImageReader, ImageWriter, PagesWriter, MANIFEST_FILE,
};
pub use objects::{object_data_file_name, DataExtent, FileLock, FileObject, LockKind, ObjectKind};
pub use types::*;

/// Errors reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// I/O error on an image file.
    #[error("{file}: {op}: {source}")]
    Io {
        file: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file is shorter than its header or the manifest says.
    #[error("{file}: truncated: {len} bytes, expected {expected}")]
    Truncated {
        file: String,
        len: u64,
        expected: u64,
    },
    /// A file is longer than its header says.
    #[error("{file}: {extra} bytes of trailing data after the payload")]
    TrailingData { file: String, extra: u64 },
    /// A file does not start with the stasis magic.
    #[error("{file}: not a stasis image file (bad magic)")]
    BadMagic { file: String },
    /// The format major version is not the one this stasis reads.
    #[error(
        "{file}: image format version {major}.{minor} is not supported (this stasis reads {}.x)",
        crate::FORMAT_MAJOR
    )]
    UnsupportedVersion {
        file: String,
        major: u16,
        minor: u16,
    },
    /// A metadata file holds another kind of record than expected.
    #[error("{file}: expected a {expected} record, found kind {found}")]
    WrongKind {
        file: String,
        expected: &'static str,
        found: u32,
    },
    /// The payload checksum does not match.
    #[error("{file}: checksum mismatch: the file is corrupted")]
    ChecksumMismatch { file: String },
    /// The payload could not be decoded.
    #[error("{file}: cannot decode: {reason}")]
    Decode { file: String, reason: String },
    /// A value could not be encoded.
    #[error("cannot encode image data: {0}")]
    Encode(String),
    /// The manifest, or a file it names, is not in the directory.
    #[error("{file}: missing from the image directory")]
    MissingFile { file: String },
    /// The image needs a feature this version of stasis does not know.
    #[error(
        "the image requires feature \"{feature}\", which this stasis does not know (it was written by stasis {writer}; restore it with that version or a newer one)"
    )]
    UnknownFeature { feature: String, writer: String },
    /// The manifest is inconsistent.
    #[error("manifest: {0}")]
    BadManifest(String),
    /// A file decodes but its content is inconsistent (a page run outside the page file,
    /// overlapping mappings, a pid that does not match the manifest...).
    #[error("{file}: invalid image data: {reason}")]
    Invalid { file: String, reason: String },
    /// A metadata file is larger than any real image would make it.
    #[error("{file}: {len} bytes is too large for a metadata file (limit {limit})")]
    TooLarge { file: String, len: u64, limit: u64 },
}
