//! Reading and writing an image directory.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::container::{self, MetaKind, MAX_META_LEN};
use crate::types::{FileDigest, Manifest, TaskImage};
use crate::validate::{self, valid_file_name};
use crate::ImageError;

/// Name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.img";

/// Conventional name of the metadata file of task `pid`.
pub fn task_file_name(pid: i32) -> String {
    format!("task-{pid}.img")
}

/// Conventional name of the page file of task `pid`.
pub fn pages_file_name(pid: i32) -> String {
    format!("pages-{pid}.img")
}

fn io_err<'a>(file: &'a str, op: &'static str) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        file: file.to_string(),
        op,
        source,
    }
}

/// The error for a file whose length is not the expected one.
fn length_error(file: &str, len: u64, expected: u64) -> ImageError {
    if len < expected {
        ImageError::Truncated {
            file: file.to_string(),
            len,
            expected,
        }
    } else {
        ImageError::TrailingData {
            file: file.to_string(),
            extra: len - expected,
        }
    }
}

/// Writes the files of a new image; the manifest comes last, so a failed dump never leaves
/// a directory that looks like a complete image.
///
/// Dropped before [`ImageWriter::finish`] (a dump that failed), it removes every file it
/// created, so no half-written image is left behind.
pub struct ImageWriter {
    dir: PathBuf,
    files: Vec<FileDigest>,
    created: Vec<PathBuf>,
    finished: bool,
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.finished {
            for path in &self.created {
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl ImageWriter {
    /// Creates `dir` if needed and removes the manifest of an earlier image in it.
    pub fn create(dir: &Path) -> Result<Self, ImageError> {
        let name = dir.display().to_string();
        fs::create_dir_all(dir).map_err(io_err(&name, "create directory"))?;
        let manifest = dir.join(MANIFEST_FILE);
        match fs::remove_file(&manifest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(MANIFEST_FILE, "remove old manifest")(e)),
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            created: Vec::new(),
            finished: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Refuses names the reader would refuse, and names already written.
    fn check_name(&self, name: &str) -> Result<(), ImageError> {
        if !valid_file_name(name) {
            return Err(ImageError::Encode(format!(
                "{name:?} cannot name a file of an image"
            )));
        }
        if self.files.iter().any(|d| d.name == name) {
            return Err(ImageError::Encode(format!("{name} is written twice")));
        }
        Ok(())
    }

    /// Writes one metadata file.
    pub fn write_meta<T: Serialize>(
        &mut self,
        name: &str,
        kind: MetaKind,
        value: &T,
    ) -> Result<(), ImageError> {
        self.check_name(name)?;
        let bytes = container::encode(kind, value)?;
        let path = self.dir.join(name);
        self.created.push(path.clone());
        fs::write(path, &bytes).map_err(io_err(name, "write"))?;
        self.files.push(FileDigest {
            name: name.to_string(),
            len: bytes.len() as u64,
            xxh3: xxh3_64(&bytes),
        });
        Ok(())
    }

    /// Writes the metadata file of a task (`write_meta` with [`MetaKind::Task`]).
    pub fn write_task(&mut self, name: &str, task: &TaskImage) -> Result<(), ImageError> {
        self.write_meta(name, MetaKind::Task, task)
    }

    /// Starts a raw page file.
    pub fn pages(&mut self, name: &str) -> Result<PagesWriter, ImageError> {
        self.check_name(name)?;
        let path = self.dir.join(name);
        self.created.push(path.clone());
        let file = File::create(path).map_err(io_err(name, "create"))?;
        Ok(PagesWriter {
            name: name.to_string(),
            file: BufWriter::with_capacity(1 << 20, file),
            hasher: Xxh3::new(),
            len: 0,
        })
    }

    /// Starts a raw data file (the contents of a file object); written and recorded like
    /// a page file.
    pub fn raw(&mut self, name: &str) -> Result<PagesWriter, ImageError> {
        self.pages(name)
    }

    /// Records a finished page file (flushing it to the file system).
    pub fn add_pages(&mut self, pages: PagesWriter) -> Result<(), ImageError> {
        self.check_name(&pages.name)?;
        let digest = pages.finish()?;
        self.files.push(digest);
        Ok(())
    }

    /// Writes the manifest (with the digests of every file written so far) atomically.
    /// The manifest is checked as a reader would check it, so a dumper bug is reported
    /// here rather than at restore.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<(), ImageError> {
        manifest.files = std::mem::take(&mut self.files);
        validate::validate_manifest(&manifest)?;
        let bytes = container::encode(MetaKind::Manifest, &manifest)?;
        let tmp = self.dir.join(format!("{MANIFEST_FILE}.tmp"));
        self.created.push(tmp.clone());
        fs::write(&tmp, &bytes).map_err(io_err(MANIFEST_FILE, "write"))?;
        fs::rename(&tmp, self.dir.join(MANIFEST_FILE)).map_err(io_err(MANIFEST_FILE, "rename"))?;
        self.finished = true;
        Ok(())
    }
}

/// A raw page file being written: the checksum is computed as the data goes by.
pub struct PagesWriter {
    name: String,
    file: BufWriter<File>,
    hasher: Xxh3,
    len: u64,
}

impl PagesWriter {
    /// Current length, i.e. the offset the next write lands at.
    pub fn offset(&self) -> u64 {
        self.len
    }

    pub fn write_all(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.file
            .write_all(data)
            .map_err(io_err(&self.name, "write"))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<FileDigest, ImageError> {
        self.file.flush().map_err(io_err(&self.name, "write"))?;
        Ok(FileDigest {
            name: self.name,
            len: self.len,
            xxh3: self.hasher.digest(),
        })
    }
}

/// An image directory opened for reading.
///
/// `open` rejects a bad image before returning: the manifest (magic, version, checksum,
/// consistency), the length of every file it lists, and every task file (checksum, kind,
/// decoding, consistency with the manifest and with its page file's length). Page
/// contents are checked with [`Self::verify_pages`] (on bytes the caller already has, e.g.
/// an mmap) or [`Self::verify_file`] / [`Self::verify_all`] (streaming from disk).
#[derive(Debug)]
pub struct ImageReader {
    dir: PathBuf,
    manifest: Manifest,
    version: (u16, u16),
    /// Index into `manifest.files` by name.
    by_name: HashMap<String, usize>,
}

impl ImageReader {
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let dir_name = dir.display().to_string();
        let meta = fs::metadata(dir).map_err(io_err(&dir_name, "open image directory"))?;
        if !meta.is_dir() {
            return Err(ImageError::Io {
                file: dir_name,
                op: "open image directory",
                source: std::io::Error::other("not a directory"),
            });
        }
        let bytes = read_meta_file(&dir.join(MANIFEST_FILE), MANIFEST_FILE)?;
        let header = container::verify(MANIFEST_FILE, &bytes)?;
        if header.kind != MetaKind::Manifest as u32 {
            return Err(ImageError::WrongKind {
                file: MANIFEST_FILE.to_string(),
                expected: MetaKind::Manifest.name(),
                found: header.kind,
            });
        }
        let manifest: Manifest =
            container::decode_payload(MANIFEST_FILE, &bytes[container::HEADER_LEN..])?;
        validate::validate_manifest(&manifest)?;
        let reader = Self::unchecked(dir, manifest, (header.major, header.minor));
        reader.check_files()?;
        Ok(reader)
    }

    /// Opens the image and also checks the content of every page file: nothing in the
    /// directory is left unverified.
    pub fn open_verified(dir: &Path) -> Result<Self, ImageError> {
        let reader = Self::open(dir)?;
        reader.verify_all()?;
        Ok(reader)
    }

    fn check_files(&self) -> Result<(), ImageError> {
        for digest in &self.manifest.files {
            let meta = fs::metadata(self.dir.join(&digest.name)).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ImageError::MissingFile {
                    file: digest.name.clone(),
                },
                _ => io_err(&digest.name, "stat")(e),
            })?;
            if !meta.is_file() {
                return Err(ImageError::Io {
                    file: digest.name.clone(),
                    op: "open",
                    source: std::io::Error::other("not a regular file"),
                });
            }
            if meta.len() != digest.len {
                return Err(length_error(&digest.name, meta.len(), digest.len));
            }
        }
        let mut objects: HashSet<u32> = HashSet::new();
        let mut referenced: Vec<(String, u32)> = Vec::new();
        for entry in &self.manifest.tasks {
            // The manifest digest covers the whole file; decoding checks the header again.
            let task: TaskImage = self.read_meta(&entry.core_file, MetaKind::Task)?;
            for o in &task.file_objects {
                if !objects.insert(o.id) {
                    return Err(ImageError::BadManifest(format!(
                        "file object {} is recorded twice",
                        o.id
                    )));
                }
                let len = self.listed(&o.data_file)?.len;
                if len != o.data_len() {
                    return Err(length_error(&o.data_file, len, o.data_len()));
                }
            }
            let fds = task.fds.iter().filter_map(|f| match f.file {
                crate::FileKind::Object { object } => Some(object),
                _ => None,
            });
            let maps = task.mm.vmas.iter().filter_map(|v| match v.kind {
                crate::VmaKind::Object { object } => Some(object),
                _ => None,
            });
            referenced.extend(fds.chain(maps).map(|o| (entry.core_file.clone(), o)));
            let pages_len = self.digest(&entry.pages_file).map_or(0, |d| d.len);
            validate::validate_task(
                &entry.core_file,
                &task,
                entry,
                self.manifest.page_size,
                pages_len,
            )?;
        }
        if let Some((file, o)) = referenced.iter().find(|r| !objects.contains(&r.1)) {
            return Err(ImageError::Invalid {
                file: file.clone(),
                reason: format!("refers to file object {o}, which the image does not hold"),
            });
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The format version (major, minor) in the manifest's header.
    pub fn format_version(&self) -> (u16, u16) {
        self.version
    }

    /// A reader over a manifest that has been decoded but not checked against the
    /// directory (for showing a single file); restore never uses this.
    pub(crate) fn unchecked(dir: &Path, manifest: Manifest, version: (u16, u16)) -> Self {
        let mut by_name = HashMap::with_capacity(manifest.files.len());
        for (i, d) in manifest.files.iter().enumerate() {
            // The first one wins, as a linear search would (open refuses duplicates anyway).
            by_name.entry(d.name.clone()).or_insert(i);
        }
        Self {
            dir: dir.to_path_buf(),
            manifest,
            version,
            by_name,
        }
    }

    /// The length and checksum the manifest records for `name`.
    pub fn digest(&self, name: &str) -> Option<&FileDigest> {
        self.by_name
            .get(name)
            .and_then(|&i| self.manifest.files.get(i))
    }

    fn listed(&self, name: &str) -> Result<&FileDigest, ImageError> {
        self.digest(name)
            .ok_or_else(|| ImageError::BadManifest(format!("{name} is not listed in the manifest")))
    }

    /// Reads a whole file named in the manifest and checks its length and checksum.
    pub fn read_checked(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let digest = self.listed(name)?;
        let (bytes, len) = read_bounded(&self.dir.join(name), name, digest.len)?;
        if len != digest.len {
            return Err(length_error(name, len, digest.len));
        }
        check_digest(digest, &bytes)?;
        Ok(bytes)
    }

    /// Checks bytes of a page file (for instance an mmap of it) against the manifest.
    pub fn verify_pages(&self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        check_digest(self.listed(name)?, bytes)
    }

    /// Checks a file named in the manifest by streaming it from disk (constant memory).
    pub fn verify_file(&self, name: &str) -> Result<(), ImageError> {
        let digest = self.listed(name)?;
        let mut file = open_file(&self.dir.join(name), name)?;
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(name, "read")(e)),
            };
            hasher.update(&buf[..n]);
            len += n as u64;
            if len > digest.len {
                break;
            }
        }
        if len != digest.len {
            if len > digest.len {
                // Stopped reading early: report the whole length.
                len = file.metadata().map_or(len, |m| m.len().max(len));
            }
            return Err(length_error(name, len, digest.len));
        }
        if hasher.digest() != digest.xxh3 {
            return Err(ImageError::ChecksumMismatch {
                file: name.to_string(),
            });
        }
        Ok(())
    }

    /// Checks every file named in the manifest with [`Self::verify_file`].
    pub fn verify_all(&self) -> Result<(), ImageError> {
        let mut seen = HashSet::new();
        for d in &self.manifest.files {
            if seen.insert(d.name.as_str()) {
                self.verify_file(&d.name)?;
            }
        }
        Ok(())
    }

    /// Decodes one metadata file.
    pub fn read_meta<T: DeserializeOwned>(
        &self,
        name: &str,
        kind: MetaKind,
    ) -> Result<T, ImageError> {
        let digest = self.listed(name)?;
        if digest.len > MAX_META_LEN {
            return Err(ImageError::TooLarge {
                file: name.to_string(),
                len: digest.len,
                limit: MAX_META_LEN,
            });
        }
        let bytes = self.read_checked(name)?;
        container::decode(name, kind, &bytes)
    }

    /// Decodes the core file of every task, in manifest order.
    pub fn tasks(&self) -> Result<Vec<TaskImage>, ImageError> {
        self.manifest
            .tasks
            .iter()
            .map(|t| self.read_meta(&t.core_file, MetaKind::Task))
            .collect()
    }

    /// Decodes the core file of task `pid`.
    pub fn task(&self, pid: i32) -> Result<TaskImage, ImageError> {
        let entry = self
            .manifest
            .tasks
            .iter()
            .find(|t| t.pid == pid)
            .ok_or_else(|| ImageError::BadManifest(format!("no task {pid} in the image")))?;
        self.read_meta(&entry.core_file, MetaKind::Task)
    }

    /// Decodes and validates the IPC file (`ipc.img`), if the image has one.
    pub fn ipc(&self) -> Result<Option<crate::ipc::IpcImage>, ImageError> {
        if self.digest(crate::ipc::IPC_FILE).is_none() {
            return Ok(None);
        }
        let img: crate::ipc::IpcImage = self.read_meta(crate::ipc::IPC_FILE, MetaKind::Ipc)?;
        crate::ipc::validate(&img).map_err(|reason| ImageError::Invalid {
            file: crate::ipc::IPC_FILE.to_string(),
            reason,
        })?;
        Ok(Some(img))
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn check_digest(digest: &FileDigest, bytes: &[u8]) -> Result<(), ImageError> {
    if bytes.len() as u64 != digest.len {
        return Err(length_error(&digest.name, bytes.len() as u64, digest.len));
    }
    if xxh3_64(bytes) != digest.xxh3 {
        return Err(ImageError::ChecksumMismatch {
            file: digest.name.clone(),
        });
    }
    Ok(())
}

fn open_file(path: &Path, name: &str) -> Result<File, ImageError> {
    File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::MissingFile {
            file: name.to_string(),
        },
        _ => io_err(name, "open")(e),
    })
}

/// Reads a whole file unless it is longer than `limit` bytes: returns the bytes read (empty
/// if the file was too long) and the length the file had when opened.
fn read_bounded(path: &Path, name: &str, limit: u64) -> Result<(Vec<u8>, u64), ImageError> {
    let file = open_file(path, name)?;
    let len = file.metadata().map_err(io_err(name, "stat"))?.len();
    if len > limit {
        return Ok((Vec::new(), len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte more than the limit, so a file that grew since the stat is still noticed.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err(name, "read"))?;
    let len = bytes.len() as u64;
    Ok((bytes, len))
}

/// Reads a whole metadata file, refusing one larger than [`MAX_META_LEN`].
pub(crate) fn read_meta_file(path: &Path, name: &str) -> Result<Vec<u8>, ImageError> {
    let (bytes, len) = read_bounded(path, name, MAX_META_LEN)?;
    if len > MAX_META_LEN {
        return Err(ImageError::TooLarge {
            file: name.to_string(),
            len,
            limit: MAX_META_LEN,
        });
    }
    Ok(bytes)
}
