//! Reading and writing an image directory.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::container::{self, MetaKind};
use crate::types::{FileDigest, Manifest, TaskImage};
use crate::ImageError;

/// Name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.img";

fn io_err<'a>(file: &'a str, op: &'static str) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        file: file.to_string(),
        op,
        source,
    }
}

/// Writes the files of a new image; the manifest comes last, so a failed dump never leaves
/// a directory that looks like a complete image.
pub struct ImageWriter {
    dir: PathBuf,
    files: Vec<FileDigest>,
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
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one metadata file.
    pub fn write_meta<T: Serialize>(
        &mut self,
        name: &str,
        kind: MetaKind,
        value: &T,
    ) -> Result<(), ImageError> {
        let bytes = container::encode(kind, value)?;
        fs::write(self.dir.join(name), &bytes).map_err(io_err(name, "write"))?;
        self.files.push(FileDigest {
            name: name.to_string(),
            len: bytes.len() as u64,
            xxh3: xxh3_64(&bytes),
        });
        Ok(())
    }

    /// Starts a raw page file.
    pub fn pages(&self, name: &str) -> Result<PagesWriter, ImageError> {
        let file = File::create(self.dir.join(name)).map_err(io_err(name, "create"))?;
        Ok(PagesWriter {
            name: name.to_string(),
            file,
            hasher: Xxh3::new(),
            len: 0,
        })
    }

    /// Records a finished page file.
    pub fn add_pages(&mut self, pages: PagesWriter) -> Result<(), ImageError> {
        let digest = pages.finish()?;
        self.files.push(digest);
        Ok(())
    }

    /// Writes the manifest (with the digests of every file written so far) atomically.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<(), ImageError> {
        manifest.files = std::mem::take(&mut self.files);
        let bytes = container::encode(MetaKind::Manifest, &manifest)?;
        let tmp = self.dir.join(format!("{MANIFEST_FILE}.tmp"));
        fs::write(&tmp, &bytes).map_err(io_err(MANIFEST_FILE, "write"))?;
        fs::rename(&tmp, self.dir.join(MANIFEST_FILE)).map_err(io_err(MANIFEST_FILE, "rename"))
    }
}

/// A raw page file being written: the checksum is computed as the data goes by.
pub struct PagesWriter {
    name: String,
    file: File,
    hasher: Xxh3,
    len: u64,
}

impl PagesWriter {
    /// Current length, i.e. the offset the next write lands at.
    pub fn offset(&self) -> u64 {
        self.len
    }

    pub fn write_all(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.hasher.update(data);
        self.file
            .write_all(data)
            .map_err(io_err(&self.name, "write"))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn finish(self) -> Result<FileDigest, ImageError> {
        Ok(FileDigest {
            name: self.name,
            len: self.len,
            xxh3: self.hasher.digest(),
        })
    }
}

/// An image directory opened for reading. `open` checks the manifest and every metadata
/// file; page files are checked for length here and for content with [`Self::verify_pages`].
#[derive(Debug)]
pub struct ImageReader {
    dir: PathBuf,
    manifest: Manifest,
}

impl ImageReader {
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        if !dir.is_dir() {
            return Err(ImageError::Io {
                file: dir.display().to_string(),
                op: "open image directory",
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let bytes = read_file(&dir.join(MANIFEST_FILE), MANIFEST_FILE)?;
        let manifest: Manifest = container::decode(MANIFEST_FILE, MetaKind::Manifest, &bytes)?;
        let reader = Self {
            dir: dir.to_path_buf(),
            manifest,
        };
        reader.check_manifest()?;
        Ok(reader)
    }

    fn check_manifest(&self) -> Result<(), ImageError> {
        if self.manifest.tasks.is_empty() {
            return Err(ImageError::BadManifest("no tasks".into()));
        }
        for digest in &self.manifest.files {
            if digest.name.contains('/') || digest.name.starts_with('.') {
                return Err(ImageError::BadManifest(format!(
                    "bad file name {:?}",
                    digest.name
                )));
            }
            let path = self.dir.join(&digest.name);
            let meta = fs::metadata(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ImageError::MissingFile {
                    file: digest.name.clone(),
                },
                _ => io_err(&digest.name, "stat")(e),
            })?;
            if meta.len() != digest.len {
                return Err(ImageError::Truncated {
                    file: digest.name.clone(),
                    len: meta.len(),
                    expected: digest.len,
                });
            }
        }
        for task in &self.manifest.tasks {
            for name in [&task.core_file, &task.pages_file] {
                if self.digest(name).is_none() {
                    return Err(ImageError::BadManifest(format!(
                        "task {} refers to {name}, which has no checksum",
                        task.pid
                    )));
                }
            }
            // Decoding checks the container checksum; the manifest digest covers the header.
            let bytes = self.read_checked(&task.core_file)?;
            let core: TaskImage = container::decode(&task.core_file, MetaKind::Task, &bytes)?;
            if core.pid != task.pid {
                return Err(ImageError::BadManifest(format!(
                    "{} holds pid {}, the manifest says {}",
                    task.core_file, core.pid, task.pid
                )));
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn digest(&self, name: &str) -> Option<&FileDigest> {
        self.manifest.files.iter().find(|d| d.name == name)
    }

    /// Reads a whole file named in the manifest and checks its length and checksum.
    pub fn read_checked(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let digest = self.digest(name).ok_or_else(|| {
            ImageError::BadManifest(format!("{name} is not listed in the manifest"))
        })?;
        let bytes = read_file(&self.dir.join(name), name)?;
        check_digest(digest, &bytes)?;
        Ok(bytes)
    }

    /// Checks bytes of a page file (for instance an mmap of it) against the manifest.
    pub fn verify_pages(&self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let digest = self.digest(name).ok_or_else(|| {
            ImageError::BadManifest(format!("{name} is not listed in the manifest"))
        })?;
        check_digest(digest, bytes)
    }

    /// Decodes one metadata file.
    pub fn read_meta<T: DeserializeOwned>(
        &self,
        name: &str,
        kind: MetaKind,
    ) -> Result<T, ImageError> {
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

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn check_digest(digest: &FileDigest, bytes: &[u8]) -> Result<(), ImageError> {
    if bytes.len() as u64 != digest.len {
        return Err(ImageError::Truncated {
            file: digest.name.clone(),
            len: bytes.len() as u64,
            expected: digest.len,
        });
    }
    if xxh3_64(bytes) != digest.xxh3 {
        return Err(ImageError::ChecksumMismatch {
            file: digest.name.clone(),
        });
    }
    Ok(())
}

fn read_file(path: &Path, name: &str) -> Result<Vec<u8>, ImageError> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ImageError::MissingFile {
            file: name.to_string(),
        },
        _ => io_err(name, "open")(e),
    })?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(name, "read"))?;
    Ok(bytes)
}
