//! File objects whose contents live in the image: memfd and files deleted while open (or
//! mapped). Descriptors ([`crate::FileKind::Object`]) and mappings
//! ([`crate::VmaKind::Object`]) refer to an object by its id, so that every reference in
//! the tree comes back to one object.

use serde::{Deserialize, Serialize};

/// One file object and where its data is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// Unique within the image.
    pub id: u32,
    pub kind: ObjectKind,
    /// Length of the file (st_size), holes included.
    pub size: u64,
    /// Permission bits (st_mode & 0o7777).
    pub mode: u32,
    /// Owner and group.
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// The parts of the file that hold data, sorted, not overlapping; the rest are holes.
    pub extents: Vec<DataExtent>,
    /// The raw data file in the image directory: the extents' bytes one after the other.
    pub data_file: String,
}

/// What the object was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    /// A memfd_create file.
    Memfd {
        /// The name given to memfd_create (without the "memfd:" prefix).
        name: String,
        /// F_GET_SEALS (F_SEAL_SEAL 1, SHRINK 2, GROW 4, WRITE 8, FUTURE_WRITE 16, EXEC 32).
        seals: u32,
    },
    /// A regular file unlinked while still open or mapped (O_TMPFILE files too).
    Deleted {
        /// The path it had (for O_TMPFILE files, the directory followed by `#INODE`); it
        /// is re-created in the same directory and unlinked again.
        path: String,
        /// With `dump --link-remap`: a name the dump gave the file (in the same directory)
        /// instead of saving its contents; restore opens it and removes the name.
        #[serde(default)]
        link_remap: Option<String>,
    },
}

/// A range of the file that holds data (between SEEK_DATA and SEEK_HOLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataExtent {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A file lock held at dump (`dump --file-locks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// A descriptor of the task through which the lock is held: for a POSIX lock, the
    /// file it is on (the lock belongs to the process); for flock and OFD locks, the open
    /// file description the lock belongs to.
    pub fd: i32,
    pub kind: LockKind,
    /// A write (exclusive) lock, else a read (shared) one.
    pub write: bool,
    /// First byte (0 for flock).
    pub start: u64,
    /// Last byte, included; None up to the end of the file (and for flock).
    pub end: Option<u64>,
}

/// The kinds of lock, as /proc/locks names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// fcntl F_SETLK: owned by the process.
    Posix,
    /// fcntl F_OFD_SETLK: owned by the open file description.
    Ofd,
    /// flock(2): owned by the open file description.
    Flock,
    /// fcntl F_SETLEASE (read or write lease, not being broken): on the open file
    /// description, taken again by the process that holds it (`fd` is its descriptor;
    /// `start` and `end` are 0 and None).
    Lease,
}

/// Conventional name of the data file of object `id`.
pub fn object_data_file_name(id: u32) -> String {
    format!("filedata-{id}.img")
}

impl FileObject {
    /// Total bytes of data, i.e. the expected length of the data file.
    pub fn data_len(&self) -> u64 {
        self.extents.iter().map(|e| e.len).sum()
    }

    /// Short description for messages and `show`.
    pub fn describe(&self) -> String {
        match &self.kind {
            ObjectKind::Memfd { name, seals } => {
                format!("memfd:{name} (size {}, seals {seals:#x})", self.size)
            }
            ObjectKind::Deleted {
                path,
                link_remap: None,
            } => format!("deleted file {path} (size {})", self.size),
            ObjectKind::Deleted {
                path,
                link_remap: Some(link),
            } => format!("deleted file {path} (size {}, linked as {link})", self.size),
        }
    }
}
