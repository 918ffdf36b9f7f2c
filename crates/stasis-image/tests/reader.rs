//! What `ImageReader::open` refuses (before anything is restored) and what `ImageWriter`
//! refuses to write.

use std::fs;
use std::path::Path;

use stasis_image::container::{self, MetaKind};
use stasis_image::*;

mod common;
use common::TempDir;

/// Writes a manifest as is (no consistency checks), with correct checksums.
fn put_manifest(dir: &Path, m: &Manifest) {
    fs::write(
        dir.join(MANIFEST_FILE),
        container::encode(MetaKind::Manifest, m).unwrap(),
    )
    .unwrap();
}

/// Replaces a task file and its digest in the manifest.
fn put_task(dir: &Path, name: &str, t: &TaskImage) {
    let bytes = container::encode(MetaKind::Task, t).unwrap();
    fs::write(dir.join(name), &bytes).unwrap();
    let mut m = ImageReader::open(dir)
        .map(|r| r.manifest().clone())
        .or_else(|_| {
            container::decode::<Manifest>(
                MANIFEST_FILE,
                MetaKind::Manifest,
                &fs::read(dir.join(MANIFEST_FILE)).unwrap(),
            )
        })
        .unwrap();
    let d = m.files.iter_mut().find(|d| d.name == name).unwrap();
    d.len = bytes.len() as u64;
    d.xxh3 = xxhash_rust::xxh3::xxh3_64(&bytes);
    put_manifest(dir, &m);
}

/// An expected error message and the change that causes it.
type Case<T> = (&'static str, Box<dyn Fn(&mut T)>);

fn open_err(dir: &Path) -> String {
    ImageReader::open(dir).unwrap_err().to_string()
}

#[test]
fn not_an_image() {
    let tmp = TempDir::new("reader-none");
    let e = ImageReader::open(&tmp.0.join("nope")).unwrap_err();
    assert!(
        matches!(e, ImageError::Io { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
    let file = tmp.0.join("file");
    fs::write(&file, "x").unwrap();
    let e = open_err(&file);
    assert!(e.contains("not a directory"), "{e}");
    let e = ImageReader::open(&tmp.0).unwrap_err();
    assert!(
        matches!(e, ImageError::MissingFile { ref file } if file == MANIFEST_FILE),
        "{e}"
    );
    // Some foreign file where the manifest should be.
    fs::write(tmp.0.join(MANIFEST_FILE), "{\"json\": true}").unwrap();
    let e = ImageReader::open(&tmp.0).unwrap_err();
    assert!(matches!(e, ImageError::BadMagic { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "manifest.img: not a stasis image file (bad magic)"
    );
    fs::write(tmp.0.join(MANIFEST_FILE), "").unwrap();
    let e = open_err(&tmp.0);
    assert_eq!(e, "manifest.img: truncated: 0 bytes, expected 32");
}

#[test]
fn a_huge_manifest_is_not_read() {
    let tmp = TempDir::new("reader-huge");
    let f = fs::File::create(tmp.0.join(MANIFEST_FILE)).unwrap();
    f.set_len(container::MAX_META_LEN + 1).unwrap(); // sparse
    let e = ImageReader::open(&tmp.0).unwrap_err();
    assert!(matches!(e, ImageError::TooLarge { .. }), "{e}");
}

#[test]
fn wrong_kinds() {
    let tmp = TempDir::new("reader-kind");
    sample::write_image(&tmp.0, 1).unwrap();
    let manifest = fs::read(tmp.0.join(MANIFEST_FILE)).unwrap();
    fs::copy(tmp.0.join("task-100.img"), tmp.0.join(MANIFEST_FILE)).unwrap();
    let e = ImageReader::open(&tmp.0).unwrap_err();
    assert!(
        matches!(e, ImageError::WrongKind { ref file, expected: "manifest", found: 2 } if file == MANIFEST_FILE),
        "{e}"
    );
    fs::write(tmp.0.join(MANIFEST_FILE), &manifest).unwrap();
    // A manifest where a task file should be (with matching digests).
    let m: Manifest = container::decode(MANIFEST_FILE, MetaKind::Manifest, &manifest).unwrap();
    let bytes = container::encode(MetaKind::Manifest, &m).unwrap();
    fs::write(tmp.0.join("task-101.img"), &bytes).unwrap();
    let mut m2 = m.clone();
    let d = m2
        .files
        .iter_mut()
        .find(|d| d.name == "task-101.img")
        .unwrap();
    d.len = bytes.len() as u64;
    d.xxh3 = xxhash_rust::xxh3::xxh3_64(&bytes);
    put_manifest(&tmp.0, &m2);
    assert_eq!(
        open_err(&tmp.0),
        "task-101.img: expected a task record, found kind 1"
    );
}

#[test]
fn inconsistent_manifests() {
    let tmp = TempDir::new("reader-manifest");
    let good = sample::write_image(&tmp.0, 1).unwrap();
    let cases: Vec<Case<Manifest>> = vec![
        ("bad page size 0", Box::new(|m| m.page_size = 0)),
        ("bad page size 12288", Box::new(|m| m.page_size = 12288)),
        ("no tasks", Box::new(|m| m.tasks.clear())),
        (
            "the first task is pid 100, but the root is pid 7",
            Box::new(|m| m.root_pid = 7),
        ),
        (
            "task 100 has parent 1, which is not listed before it",
            Box::new(|m| {
                m.tasks.swap(0, 1);
                m.root_pid = 101;
            }),
        ),
        (
            "task 100 is listed twice",
            Box::new(|m| {
                m.tasks[1].pid = 100;
                m.tasks[1].ppid = 100;
            }),
        ),
        ("bad pid -3", Box::new(|m| m.tasks[1].pid = -3)),
        (
            "task-100.img is listed twice",
            Box::new(|m| {
                let d = m.files[0].clone();
                m.files.push(d);
            }),
        ),
        (
            "bad file name \"../../etc/passwd\"",
            Box::new(|m| m.files[0].name = "../../etc/passwd".into()),
        ),
        (
            "bad file name \"manifest.img\"",
            Box::new(|m| m.files[0].name = MANIFEST_FILE.into()),
        ),
        (
            "task 101 refers to \"elsewhere.img\", which has no checksum",
            Box::new(|m| m.tasks[1].pages_file = "elsewhere.img".into()),
        ),
        (
            "pages-100.img is used twice",
            Box::new(|m| m.tasks[1].pages_file = "pages-100.img".into()),
        ),
    ];
    for (expected, mutate) in cases {
        let mut m = good.clone();
        mutate(&mut m);
        put_manifest(&tmp.0, &m);
        let e = ImageReader::open(&tmp.0).unwrap_err();
        assert!(matches!(e, ImageError::BadManifest(_)), "{expected}: {e}");
        assert_eq!(e.to_string(), format!("manifest: {expected}"));
    }

    // Files listed but absent or of another length.
    let mut m = good.clone();
    m.files.push(FileDigest {
        name: "extra.img".into(),
        len: 1,
        xxh3: 0,
    });
    put_manifest(&tmp.0, &m);
    assert_eq!(
        open_err(&tmp.0),
        "extra.img: missing from the image directory"
    );
    fs::write(tmp.0.join("extra.img"), "12").unwrap();
    assert_eq!(
        open_err(&tmp.0),
        "extra.img: 1 bytes of trailing data after the payload"
    );
    fs::create_dir(tmp.0.join("dir.img")).unwrap();
    m.files.pop();
    m.files.push(FileDigest {
        name: "dir.img".into(),
        len: 0,
        xxh3: 0,
    });
    put_manifest(&tmp.0, &m);
    assert!(open_err(&tmp.0).contains("dir.img: open: not a regular file"));

    // Core files swapped between tasks.
    let mut m = good.clone();
    m.tasks[0].core_file = "task-101.img".into();
    m.tasks[1].core_file = "task-100.img".into();
    put_manifest(&tmp.0, &m);
    assert_eq!(
        open_err(&tmp.0),
        "task-101.img: invalid image data: holds pid 101 (parent 100), the manifest says pid 100 (parent 1)"
    );

    put_manifest(&tmp.0, &good);
    ImageReader::open_verified(&tmp.0).unwrap();
}

#[test]
fn inconsistent_tasks() {
    let tmp = TempDir::new("reader-task");
    sample::write_image(&tmp.0, 2).unwrap(); // 4 pages per page file
    let good = sample::task(100, 1, 2);
    let cases: Vec<Case<TaskImage>> = vec![
        (
            "page run 0x555555579000 x2 at offset 0x3000: past the end of the page file",
            Box::new(|t| t.mm.pages[0].offset = 0x3000),
        ),
        (
            "page run 0x555555579000 x5 at offset 0x0: past the end of the page file",
            Box::new(|t| t.mm.pages[0].count = 5),
        ),
        (
            "page run 0x555555579000 x0 at offset 0x0: no pages",
            Box::new(|t| t.mm.pages[0].count = 0),
        ),
        (
            "page run 0x555555579800 x2 at offset 0x0: not page aligned",
            Box::new(|t| t.mm.pages[0].vaddr += 0x800),
        ),
        (
            "page run 0x555555579000 x2 at offset 0x800: not page aligned",
            Box::new(|t| t.mm.pages[0].offset = 0x800),
        ),
        (
            "page run 0x555555578000-0x55555557a000 is not inside the mappings",
            Box::new(|t| t.mm.pages[0].vaddr -= 0x1000),
        ),
        (
            "page runs 0x555555579000-0x55555557b000 and 0x55555557a000-0x55555557c000 overlap",
            Box::new(|t| t.mm.pages[1].vaddr = t.mm.pages[0].vaddr + 0x1000),
        ),
        (
            "page run 0x1000 x18446744073709551615 at offset 0x0: too many pages",
            Box::new(|t| {
                t.mm.pages[0].vaddr = 0x1000;
                t.mm.pages[0].count = u64::MAX;
            }),
        ),
        (
            "bad mapping 0x5000-0x5000",
            Box::new(|t| {
                t.mm.vmas[0].start = 0x5000;
                t.mm.vmas[0].end = 0x5000;
            }),
        ),
        (
            "mapping 0x555555554000-0x555555558000 overlaps or precedes the one before it",
            Box::new(|t| t.mm.vmas.swap(0, 1)),
        ),
        (
            "bad or repeated thread id 100",
            Box::new(|t| t.threads[1].tid = 100),
        ),
        (
            "bad or repeated signal number 65",
            Box::new(|t| t.signals.actions[0].signo = 65),
        ),
        (
            "bad or repeated file descriptor 1",
            Box::new(|t| t.fds[0].fd = 1),
        ),
        (
            "holds pid 100 (parent 2), the manifest says pid 100 (parent 1)",
            Box::new(|t| t.ppid = 2),
        ),
    ];
    for (expected, mutate) in cases {
        let mut t = good.clone();
        mutate(&mut t);
        put_task(&tmp.0, "task-100.img", &t);
        let e = ImageReader::open(&tmp.0).unwrap_err();
        assert!(matches!(e, ImageError::Invalid { .. }), "{expected}: {e}");
        assert_eq!(
            e.to_string(),
            format!("task-100.img: invalid image data: {expected}")
        );
    }
    put_task(&tmp.0, "task-100.img", &good);
    ImageReader::open_verified(&tmp.0).unwrap();
}

#[test]
fn page_contents_are_checked_on_request() {
    let tmp = TempDir::new("reader-pages");
    sample::write_image(&tmp.0, 2).unwrap();
    let p = tmp.0.join("pages-101.img");
    let mut bytes = fs::read(&p).unwrap();
    bytes[4096 * 3 + 17] ^= 4;
    fs::write(&p, &bytes).unwrap();
    // Same length: open (which reads only metadata) accepts it; every content check refuses.
    let r = ImageReader::open(&tmp.0).unwrap();
    let check = |e: ImageError| {
        assert_eq!(
            e.to_string(),
            "pages-101.img: checksum mismatch: the file is corrupted"
        );
    };
    check(r.verify_pages("pages-101.img", &bytes).unwrap_err());
    check(r.verify_file("pages-101.img").unwrap_err());
    check(r.verify_all().unwrap_err());
    check(r.read_checked("pages-101.img").unwrap_err());
    check(ImageReader::open_verified(&tmp.0).unwrap_err());
    r.verify_file("pages-100.img").unwrap();
    let e = r.verify_pages("pages-7.img", &bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "manifest: pages-7.img is not listed in the manifest"
    );
    // Another length is caught by open.
    fs::write(&p, &bytes[..4096]).unwrap();
    assert_eq!(
        open_err(&tmp.0),
        "pages-101.img: truncated: 4096 bytes, expected 16384"
    );
    let e = r.verify_file("pages-101.img").unwrap_err();
    assert!(matches!(e, ImageError::Truncated { len: 4096, .. }), "{e}");
}

#[test]
fn reader_accessors() {
    let tmp = TempDir::new("reader-access");
    let m = sample::write_image(&tmp.0, 1).unwrap();
    let r = ImageReader::open(&tmp.0).unwrap();
    assert_eq!(r.manifest(), &m);
    assert_eq!(r.dir(), tmp.0.as_path());
    assert_eq!(r.format_version(), (FORMAT_MAJOR, FORMAT_MINOR));
    assert_eq!(r.path_of("task-100.img"), tmp.0.join("task-100.img"));
    assert_eq!(r.task(101).unwrap(), sample::task(101, 100, 1));
    assert!(r.task(5).is_err());
    let t: TaskImage = r.read_meta("task-100.img", MetaKind::Task).unwrap();
    assert_eq!(t, sample::task(100, 1, 1));
    assert_eq!(r.tasks().unwrap().len(), 2);
    let pages = r.read_checked("pages-100.img").unwrap();
    assert_eq!(&pages[..4096], &sample::page_content(100, 0)[..]);
    assert_eq!(r.digest("pages-100.img").unwrap().len, 8192);
}

#[test]
fn writer_refusals() {
    let tmp = TempDir::new("writer");
    sample::write_image(&tmp.0, 1).unwrap();
    // Starting a new image removes the old manifest: the directory is no image until finish.
    let mut w = ImageWriter::create(&tmp.0).unwrap();
    assert!(matches!(
        ImageReader::open(&tmp.0),
        Err(ImageError::MissingFile { .. })
    ));
    let t = sample::task(100, 1, 1);
    for bad in ["", "../x.img", "a/b", ".hidden", MANIFEST_FILE] {
        assert!(w.write_task(bad, &t).is_err(), "{bad:?}");
        assert!(w.pages(bad).is_err(), "{bad:?}");
    }
    w.write_task("task-100.img", &t).unwrap();
    assert!(w.write_task("task-100.img", &t).is_err());
    assert!(w.pages("task-100.img").is_err());
    let mut p = w.pages("pages-100.img").unwrap();
    assert_eq!(p.offset(), 0);
    p.write_all(&sample::page_content(100, 0)).unwrap();
    p.write_all(&sample::page_content(100, 1)).unwrap();
    assert_eq!(p.offset(), 8192);
    w.add_pages(p).unwrap();
    let manifest = |tasks: Vec<TaskEntry>| Manifest {
        tool_version: "t".into(),
        kernel_release: "k".into(),
        page_size: 4096,
        xsave_features: 0,
        root_pid: 100,
        tasks,
        files: vec![],
        dump_options: vec![],
        clocks: None,
        requires: Vec::new(),
    };
    let entry = |pid, ppid| TaskEntry {
        pid,
        ppid,
        core_file: task_file_name(pid),
        pages_file: pages_file_name(pid),
    };
    // A manifest naming files that were not written is refused, and nothing is written.
    let e = w
        .finish(manifest(vec![entry(100, 1), entry(101, 100)]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "manifest: task 101 refers to \"task-101.img\", which has no checksum"
    );
    assert!(!tmp.0.join(MANIFEST_FILE).exists());

    let mut w = ImageWriter::create(&tmp.0).unwrap();
    assert_eq!(w.dir(), tmp.0.as_path());
    w.write_meta("task-100.img", MetaKind::Task, &t).unwrap();
    let mut p = w.pages("pages-100.img").unwrap();
    p.write_all(&sample::page_content(100, 0)).unwrap();
    p.write_all(&sample::page_content(100, 1)).unwrap();
    w.add_pages(p).unwrap();
    w.finish(manifest(vec![entry(100, 1)])).unwrap();
    let r = ImageReader::open_verified(&tmp.0).unwrap();
    assert_eq!(r.manifest().files.len(), 2);
    assert!(!tmp.0.join(format!("{MANIFEST_FILE}.tmp")).exists());
}
