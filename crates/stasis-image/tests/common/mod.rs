//! Shared by the image crate's integration tests.

use std::fs;
use std::path::PathBuf;

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("stasis-image-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The manifest of a one-process test image (pid 100, parent 1) with its task and page
/// files under the standard names.
#[allow(dead_code)]
pub fn one_task_manifest() -> stasis_image::Manifest {
    stasis_image::Manifest {
        tool_version: "test".into(),
        kernel_release: "test".into(),
        page_size: 4096,
        xsave_features: 0,
        root_pid: 100,
        tasks: vec![stasis_image::TaskEntry {
            pid: 100,
            ppid: 1,
            core_file: stasis_image::task_file_name(100),
            pages_file: stasis_image::pages_file_name(100),
        }],
        files: Vec::new(),
        dump_options: Vec::new(),
        clocks: None,
        requires: Vec::new(),
    }
}
