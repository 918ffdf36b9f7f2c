//! File objects whose contents go into the image (memfd, deleted files): found through a
//! descriptor (/proc/PID/fd/N) or a mapping (/proc/PID/map_files/A-B), recorded once per
//! inode so that every reference comes back to one object, and saved without their holes
//! (SEEK_DATA/SEEK_HOLE). At restore the root of the tree creates each object at a slot
//! of its own, before any description; descriptions reopen it through /proc/self/fd and
//! mappings map it from that slot.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use stasis_image::{
    object_data_file_name, DataExtent, FileObject, ImageWriter, ObjectKind, PagesWriter,
};
use stasis_sys::own;

use super::{open_flags, place, ChildResult, Kind};
use crate::error::{Error, Result, SysContext};

/// A descriptor of a file object opens a description of its own on the object, which the
/// root made first (`create_all`).
pub const KIND: Kind = Kind {
    restores: |f| matches!(f, stasis_image::FileKind::Object { .. }),
    open: |f, at, r, _| {
        let stasis_image::FileKind::Object { object } = f.file else {
            return Err(format!("fd {}: not a file object", f.fd));
        };
        let &(_, object_fd) = r
            .ctx
            .object_slots
            .iter()
            .find(|o| o.0 == object)
            .ok_or_else(|| format!("fd {}: file object {object} was not made", f.fd))?;
        let fd = reopen(object_fd, open_flags(f), f.pos)
            .map_err(|e| format!("fd {} (file object {object}): {e}", f.fd))?;
        place(fd, at, f)
    },
    ..Kind::NONE
};

/// What an object is, as far as dump knows before reading it.
#[derive(Debug, Clone)]
pub enum Found {
    Memfd { name: String },
    Deleted { path: String },
}

/// What a mapping of a deleted path ("/memfd:NAME" or an unlinked file) maps.
/// `source` opens it (/proc/PID/map_files/A-B).
pub fn classify(
    path: &str,
    source: &str,
    meta: &std::fs::Metadata,
    link_remap: bool,
) -> ChildResult<Found> {
    if !meta.is_file() {
        return Err("mapping of a deleted file that is not a regular file".into());
    }
    if let Some(name) = super::memfd::name_of(path) {
        super::memfd::refuse_hugetlb(source)?;
        return Ok(Found::Memfd {
            name: name.to_string(),
        });
    }
    if !super::deleted::dir_exists(path) {
        return Err(super::deleted::DIR_GONE.into());
    }
    if meta.nlink() != 0 && !link_remap {
        return Err(STILL_LINKED.into());
    }
    Ok(Found::Deleted {
        path: path.to_string(),
    })
}

struct Entry {
    id: u32,
    key: (u64, u64),
    first_pid: i32,
    /// A /proc path that opens the object.
    source: String,
    what: Found,
}

/// The objects of the tree met so far.
#[derive(Default)]
pub struct ObjectTable {
    entries: Vec<Entry>,
    /// `dump --link-remap`: deleted files get a name again (see `save`).
    pub link_remap: bool,
}

pub const STILL_LINKED: &str = "the file was unlinked here but still has another name (dump with --link-remap to keep it one file)";

impl ObjectTable {
    /// How many objects are known.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// The id of the object with inode `key` (dev, ino), recorded on first sight.
    pub fn note(&mut self, pid: i32, key: (u64, u64), source: String, what: Found) -> u32 {
        if let Some(e) = self.entries.iter().find(|e| e.key == key) {
            return e.id;
        }
        let id = self.entries.len() as u32 + 1;
        self.entries.push(Entry {
            id,
            key,
            first_pid: pid,
            source,
            what,
        });
        id
    }

    /// Reads every object's contents into a data file of the image; returns each object
    /// with the pid of the task that records it (the first that referred to it).
    ///
    /// With `link_remap`, a deleted file gets a name in its directory instead, and no data
    /// is saved, when the kernel allows it: the file still has another name (it must: it
    /// stays one file with it), or is an O_TMPFILE file made without O_EXCL.
    pub fn save(&self, writer: &mut ImageWriter) -> Result<Vec<(i32, FileObject)>> {
        let link_remap = self.link_remap;
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let pid = e.first_pid;
            let io = |what: &str, err: std::io::Error| Error::Unsupported {
                pid,
                object: e.source.clone(),
                detail: format!("cannot {what} the file to save its contents: {err}"),
            };
            let file = std::fs::File::open(&e.source).map_err(|err| io("open", err))?;
            let meta = file.metadata().map_err(|err| io("stat", err))?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            let kind = match &e.what {
                Found::Memfd { name } => ObjectKind::Memfd {
                    name: name.clone(),
                    seals: own::get_seals(fd).ctx(pid, || format!("seals of {}", e.source))?,
                },
                Found::Deleted { path } => ObjectKind::Deleted {
                    path: path.clone(),
                    link_remap: if link_remap {
                        super::deleted::link_again(path, &e.source, pid, e.id)
                    } else {
                        None
                    },
                },
            };
            if let ObjectKind::Deleted {
                link_remap: None, ..
            } = &kind
            {
                if meta.nlink() != 0 {
                    return Err(Error::Unsupported {
                        pid,
                        object: e.source.clone(),
                        detail: "the file still has another name and cannot be given one more"
                            .into(),
                    });
                }
            }
            let data_file = object_data_file_name(e.id);
            let mut raw = writer.raw(&data_file)?;
            let linked = matches!(
                kind,
                ObjectKind::Deleted {
                    link_remap: Some(_),
                    ..
                }
            );
            let extents = if linked {
                Vec::new()
            } else {
                copy_extents(pid, &e.source, &file, meta.len(), &mut raw)?
            };
            writer.add_pages(raw)?;
            let object = FileObject {
                id: e.id,
                kind,
                size: meta.len(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                extents,
                data_file,
            };
            log::info!(
                "pid {pid}: saved {} ({} bytes of data)",
                object.describe(),
                object.data_len()
            );
            out.push((pid, object));
        }
        Ok(out)
    }
}

/// Copies the data extents of `file` (up to `size`) to `out`.
fn copy_extents(
    pid: i32,
    source: &str,
    file: &std::fs::File,
    size: u64,
    out: &mut PagesWriter,
) -> Result<Vec<DataExtent>> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    let mut extents = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let Some(start) = own::seek_data(fd, pos).ctx(pid, || source.to_string())? else {
            break;
        };
        if start >= size {
            break;
        }
        let end = own::seek_hole(fd, start)
            .ctx(pid, || source.to_string())?
            .min(size);
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], at)
                .map_err(|err| Error::Unsupported {
                    pid,
                    object: source.to_string(),
                    detail: format!("cannot read the file at {at}: {err}"),
                })?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        extents.push(DataExtent {
            offset: start,
            len: end - start,
        });
        pos = end;
    }
    Ok(extents)
}

/// Checks, before anything is created, that an object can be made again.
pub fn check(pid: i32, o: &FileObject) -> Result<()> {
    if let ObjectKind::Deleted {
        link_remap: Some(link),
        ..
    } = &o.kind
    {
        if !Path::new(link).is_file() {
            return Err(Error::Restore {
                pid,
                reason: format!(
                    "{}: the name the dump gave it ({link}) is gone",
                    o.describe()
                ),
            });
        }
    } else if let ObjectKind::Deleted { path, .. } = &o.kind {
        let dir = Path::new(path).parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(Error::Restore {
                pid,
                reason: format!(
                    "deleted file {path}: its directory {} is not available to re-create it in",
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Creates every object (in the restore root) at its slot: its size, data, mode and seals.
/// `data_dir` is the image directory.
pub fn create_all(
    objects: &[&FileObject],
    data_dir: &Path,
    slot: impl Fn(u32) -> i32,
) -> ChildResult {
    for o in objects {
        let fd = create(o, data_dir).map_err(|e| format!("file object {}: {e}", o.describe()))?;
        own::move_fd(fd, slot(o.id), true)
            .map_err(|e| format!("file object {}: {e}", o.describe()))?;
    }
    Ok(())
}

fn create(o: &FileObject, data_dir: &Path) -> ChildResult<i32> {
    let fd = match &o.kind {
        ObjectKind::Memfd { name, .. } => {
            own::memfd_create(name, libc::MFD_ALLOW_SEALING).map_err(|e| e.to_string())?
        }
        ObjectKind::Deleted {
            link_remap: Some(link),
            path,
        } => {
            // The file itself, kept under a name since the dump: only the name goes. Under
            // its own name if that is free, so /proc shows the same "PATH (deleted)".
            let name = if std::fs::symlink_metadata(path).is_err()
                && std::fs::rename(link, path).is_ok()
            {
                path
            } else {
                link
            };
            let fd = own::open(Path::new(name), libc::O_RDWR | libc::O_CLOEXEC, 0)
                .map_err(|e| e.to_string())?;
            own::unlink(Path::new(name)).map_err(|e| e.to_string())?;
            return Ok(fd);
        }
        ObjectKind::Deleted { path, .. } => super::deleted::create_unlinked(path, o.id)?,
    };
    let r = fill(fd, o, data_dir);
    if r.is_err() {
        own::close(fd);
    }
    r.map(|()| fd)
}

fn fill(fd: i32, o: &FileObject, data_dir: &Path) -> ChildResult {
    own::ftruncate(fd, o.size).map_err(|e| e.to_string())?;
    let data_path = data_dir.join(&o.data_file);
    let data = std::fs::File::open(&data_path)
        .map_err(|e| format!("open {}: {e}", data_path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut from = 0u64;
    for e in &o.extents {
        let mut done = 0u64;
        while done < e.len {
            let n = ((e.len - done) as usize).min(buf.len());
            data.read_exact_at(&mut buf[..n], from)
                .map_err(|err| format!("read {}: {err}", data_path.display()))?;
            own::pwrite_all(fd, &buf[..n], e.offset + done).map_err(|e| e.to_string())?;
            from += n as u64;
            done += n as u64;
        }
    }
    // Owner first: chown clears the set-user-ID and set-group-ID bits.
    own::fchown(fd, o.uid, o.gid).map_err(|e| e.to_string())?;
    own::fchmod(fd, o.mode).map_err(|e| e.to_string())?;
    if let ObjectKind::Memfd { seals, .. } = o.kind {
        let (now, _) = split_seals(seals);
        if now != 0 {
            own::add_seals(fd, now).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Seals to add when the object is made, and seals to add once every mapping exists:
/// F_SEAL_FUTURE_WRITE forbids new writable shared mappings, which the original may have
/// made before sealing (and then F_SEAL_SEAL must wait too).
fn split_seals(seals: u32) -> (u32, u32) {
    let future = libc::F_SEAL_FUTURE_WRITE as u32;
    if seals & future == 0 {
        return (seals, 0);
    }
    let late = future | (seals & libc::F_SEAL_SEAL as u32);
    (seals & !late, late)
}

/// Adds the seals `create_all` left for later (see `split_seals`), once every process
/// is rebuilt, through a descriptor or mapping of a restored process: `host` turns an
/// image PID into one the tool can use.
pub fn seal_late(
    tasks: &[stasis_image::TaskImage],
    host: impl Fn(i32) -> Result<i32>,
) -> Result<()> {
    for t in tasks {
        for o in &t.file_objects {
            let ObjectKind::Memfd { seals, .. } = o.kind else {
                continue;
            };
            let (_, late) = split_seals(seals);
            if late == 0 {
                continue;
            }
            let path = find_reference(tasks, o.id, &host)?.ok_or_else(|| Error::Restore {
                pid: t.pid,
                reason: format!("file object {}: no process refers to it", o.describe()),
            })?;
            // F_ADD_SEALS needs a writable descriptor.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::Restore {
                    pid: t.pid,
                    reason: format!("file object {}: open {path}: {e}", o.describe()),
                })?;
            own::add_seals(std::os::fd::AsRawFd::as_raw_fd(&file), late)
                .ctx(t.pid, || format!("seal {}", o.describe()))?;
        }
    }
    Ok(())
}

/// A /proc path that opens object `id` in a restored process.
fn find_reference(
    tasks: &[stasis_image::TaskImage],
    id: u32,
    host: &impl Fn(i32) -> Result<i32>,
) -> Result<Option<String>> {
    for t in tasks.iter().filter(|t| t.state != 'Z') {
        let fd = t
            .fds
            .iter()
            .find(|f| f.file == stasis_image::FileKind::Object { object: id });
        let vma =
            t.mm.vmas
                .iter()
                .find(|v| v.kind == stasis_image::VmaKind::Object { object: id });
        let pid = host(t.pid)?;
        if let Some(f) = fd {
            return Ok(Some(format!("/proc/{pid}/fd/{}", f.fd)));
        }
        if let Some(v) = vma {
            return Ok(Some(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                v.start, v.end
            )));
        }
    }
    Ok(None)
}

/// Opens a new description of the object at `object_fd` with `flags`, at `pos`.
pub fn reopen(object_fd: i32, flags: i32, pos: u64) -> ChildResult<i32> {
    let path = format!("/proc/self/fd/{object_fd}");
    // An O_TMPFILE file's flags still say so (with O_DIRECTORY): the file exists now.
    let flags = flags & !libc::O_TMPFILE;
    let fd = own::open(Path::new(&path), flags, 0).map_err(|e| e.to_string())?;
    if pos > 0 {
        own::seek(fd, pos).map_err(|e| e.to_string())?;
    }
    Ok(fd)
}
