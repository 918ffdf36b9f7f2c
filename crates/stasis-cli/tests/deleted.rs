//! Deleted files: testprogs/deleted_victim.c holds regular files unlinked while open
//! (shared and separate descriptions, O_APPEND), an O_TMPFILE file, a 3 GiB sparse file
//! with 3 MiB of data, a file whose name was taken again by a new file, and a file only
//! mapped (MAP_SHARED and MAP_PRIVATE). After restore they are unlinked files again with
//! their contents, holes, sizes, modes, flags and offsets, nothing is left in the
//! directory, and the image holds the sparse file's data only. A file unlinked under one
//! name but still linked under another is refused at dump, the victim unharmed.

mod common;

use std::path::Path;

use common::*;

fn deleted() -> Victim {
    Victim::c("deleted_victim")
}

fn image_bytes(images: &Path) -> u64 {
    std::fs::read_dir(images)
        .expect("image dir")
        .filter_map(|e| e.ok())
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn deleted_standalone() {
    run_control(&deleted());
}

#[test]
fn deleted_dump_restore() {
    let mut s = Session::start(&deleted());
    let images = s.scratch.images(1);
    s.dump_ok(&images, &[]);
    s.reap_killed();
    // 3 MiB of the sparse file, about 18 KiB of the others, and the victim's pages (its
    // 1 MiB buffer among them): far from the 3 GiB the sparse file spans.
    let bytes = image_bytes(&images);
    if !(3 << 20..12 << 20).contains(&bytes) {
        s.fail(&format!("the image takes {bytes} bytes"));
    }
    s.restore_and_finish(&images, "dump, kill, restore");
}

/// `--link-remap`: a deleted file that still has another name is given one more at dump
/// (no data saved) and restore opens it, so fd and name stay one file; the name goes.
#[test]
fn deleted_linked_elsewhere_with_link_remap() {
    link_remap(deleted().named("deleted_linked_remap").arg("linked"), 0, 1);
}

/// `--link-remap` on files with no name left: only the O_TMPFILE one (made without
/// O_EXCL) can be linked; the others are saved as without the option.
#[test]
fn deleted_link_remap() {
    link_remap(deleted(), 3 << 20, 1);
}

fn link_remap(v: Victim, min_data: u64, want_links: usize) {
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    s.dump_ok(&images, &["--link-remap"]);
    s.reap_killed();
    let data: u64 = std::fs::read_dir(&images)
        .expect("image dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("filedata-"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let links = std::fs::read_dir(s.scratch.tmp())
        .expect("victim dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("link_remap."))
        .count();
    if data < min_data || data > min_data + (1 << 20) || links != want_links {
        s.fail(&format!(
            "with --link-remap: {data} bytes of file data in the image (expected {min_data} to 1 MiB more), {links} link_remap names (expected {want_links})"
        ));
    }
    s.restore_and_finish(&images, "dump --link-remap, kill, restore");
}

#[test]
fn deleted_dump_restore_twice() {
    run_double_cycle(&deleted());
}

#[test]
fn deleted_leave_running() {
    run_leave_running(&deleted());
}

#[test]
fn deleted_but_linked_elsewhere_is_refused() {
    refused("linked", &["--link-remap"]);
}

#[test]
fn deleted_with_its_directory_is_refused() {
    refused("dirgone", &["directory"]);
}

fn refused(mode: &str, words: &[&str]) {
    let v = deleted().named(&format!("deleted_{mode}")).arg(mode);
    let mut s = Session::start(&v);
    let images = s.scratch.images(1);
    let r = s.dump(&images, &[]);
    r.assert_no_panic();
    if r.code() != 1 || !mentions(&r.stderr, words) {
        s.fail(&format!(
            "the dump must fail (1) with a message mentioning one of {words:?}\n{}",
            r.report()
        ));
    }
    s.assert_running_untraced("after the refused dump");
    s.go();
    s.finish_original("the victim after a refused dump");
}
