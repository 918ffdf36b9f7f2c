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
    refused("linked", &["another name"]);
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
