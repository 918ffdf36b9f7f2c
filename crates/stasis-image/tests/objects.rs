//! File objects (memfd, deleted files): their data files are listed in the manifest and
//! checked like page files; the references to them, their extents and their data length
//! are checked when the image is opened; `show` lists them.

use std::fs;
use std::path::Path;

use stasis_image::*;

mod common;
use common::TempDir;

/// A one-task image whose fd 4 and one mapping refer to a memfd with `data` at 4096.
fn write(dir: &Path, object: &FileObject, data: &[u8], refer_to: u32) {
    let mut w = ImageWriter::create(dir).unwrap();
    let mut t = sample::task(100, 1, 1);
    t.fds.push(FdImage {
        fd: 4,
        flags: 0o100002,
        cloexec: false,
        pos: 5,
        desc: 4,
        file: FileKind::Object { object: refer_to },
    });
    t.file_objects.push(object.clone());
    w.write_task("task-100.img", &t).unwrap();
    let mut pages = w.pages("pages-100.img").unwrap();
    for i in 0..2 {
        pages.write_all(&sample::page_content(100, i)).unwrap();
    }
    w.add_pages(pages).unwrap();
    let mut raw = w.raw(&object.data_file).unwrap();
    raw.write_all(data).unwrap();
    w.add_pages(raw).unwrap();
    w.finish(common::one_task_manifest()).unwrap();
}

fn memfd(len: u64) -> FileObject {
    FileObject {
        id: 1,
        kind: ObjectKind::Memfd {
            name: "sample".into(),
            seals: 6,
        },
        size: 3 * 4096,
        mode: 0o600,
        uid: 0,
        gid: 0,
        extents: vec![DataExtent { offset: 4096, len }],
        data_file: object_data_file_name(1),
    }
}

#[test]
fn objects_are_read_checked_and_shown() {
    let tmp = TempDir::new("objects");
    let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    write(&tmp.0, &memfd(300), &data, 1);
    let reader = ImageReader::open_verified(&tmp.0).unwrap();
    let t = reader.task(100).unwrap();
    assert_eq!(t.file_objects[0].data_len(), 300);
    let text = render::render_text(&reader).unwrap();
    for needle in [
        "file object 1  flags 0x8002 (O_RDWR|O_LARGEFILE)  pos 5",
        "1 memfd:sample (size 12288, seals 0x6), mode 600, 300 bytes of data in 1 extent(s) in filedata-1.img",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    // A flipped byte of the data file is caught by the checksum.
    let path = tmp.0.join("filedata-1.img");
    let mut bytes = fs::read(&path).unwrap();
    bytes[7] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let e = ImageReader::open_verified(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("filedata-1.img"), "{e}");
    // So is a missing one.
    fs::remove_file(&path).unwrap();
    let e = ImageReader::open(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("filedata-1.img"), "{e}");
}

#[test]
fn inconsistent_objects_are_refused() {
    let data = vec![1u8; 300];
    // Extents that do not add up to the data file's length.
    let tmp = TempDir::new("objects-len");
    write(&tmp.0, &memfd(200), &data, 1);
    let e = ImageReader::open(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("filedata-1.img"), "{e}");
    // An extent past the size of the file.
    let tmp = TempDir::new("objects-past");
    let mut o = memfd(300);
    o.extents[0].offset = 3 * 4096 - 100;
    write(&tmp.0, &o, &data, 1);
    let e = ImageReader::open(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("past the size"), "{e}");
    // A descriptor that refers to an object the image does not hold.
    let tmp = TempDir::new("objects-ref");
    write(&tmp.0, &memfd(300), &data, 9);
    let e = ImageReader::open(&tmp.0).unwrap_err().to_string();
    assert!(e.contains("file object 9"), "{e}");
}
