//! memfd: testprogs/memfd_victim.c holds memfds by descriptor (dup'ed, reopened, sealed,
//! with holes) and by mapping only (MAP_SHARED and MAP_PRIVATE, one whose fd is closed),
//! shared with a child. After restore each is one object again, with its name, contents,
//! holes, size, mode, seals, flags and offsets, and the processes see each other's writes.
//! The image holds each object's data once and without its holes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::tree::*;
use common::*;

fn memfd() -> Victim {
    Victim::c("memfd_victim")
}

/// Bytes in the image's file object data files.
fn object_data(images: &Path) -> u64 {
    std::fs::read_dir(images)
        .expect("image dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("filedata-"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn memfd_standalone() {
    tree_control(&memfd());
}

#[test]
fn memfd_dump_restore() {
    let mut t = Tree::start(&memfd());
    let images = t.dump_kill(1);
    // 64 KiB + 64 KiB + "hello" + 2 pages of the fd-less memfd (+ the child's nothing):
    // not the 2 MiB the first memfd spans, and each object once although two processes
    // and three descriptors and three mappings refer to them.
    let data = object_data(&images);
    if !(128 * 1024..256 * 1024).contains(&data) {
        t.fail(&format!("file object data in the image: {data} bytes"));
    }
    let show = run_stasis(
        &t.s().scratch.tmp(),
        "show",
        &["show".as_ref(), images.as_os_str()],
        Duration::from_secs(30),
    );
    for name in [
        "memfd:stasis-memfd-a",
        "memfd:only-mapped",
        "memfd:b with space",
    ] {
        if !show.stdout.contains(name) {
            t.fail(&format!("show does not list {name}:\n{}", show.report()));
        }
    }
    let tool = t.s().spawn_restore(&images, &[]);
    t.s().wait_restored(tool);
    t.check_same_tree("after restore");
    t.s().go();
    t.s().finish_restored(tool, "dump, kill, restore");
    t.finish();
}

#[test]
fn memfd_with_huge_pages_is_refused() {
    let mut t = Tree::start(&memfd().named("memfd_hugetlb").arg("hugetlb"));
    t.expect_refused_dump(&[], "MFD_HUGETLB");
}

#[test]
fn memfd_dump_restore_twice() {
    tree_double_cycle(&memfd(), Outside::Compare);
}
