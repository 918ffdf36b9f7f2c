//! Versioning rules: a newer minor version (with fields this version does not know) is
//! read, fields added with `#[serde(default)]` may be missing, a different major is refused.

use std::fs;

use ciborium::Value;
use serde::Serialize;
use stasis_image::container::{self, MetaKind, FORMAT_MAJOR, FORMAT_MINOR};
use stasis_image::{
    sample, FileDigest, ImageError, ImageReader, Manifest, TaskImage, MANIFEST_FILE,
};

mod common;
use common::TempDir;

fn to_value<T: Serialize>(v: &T) -> Value {
    Value::serialized(v).unwrap()
}

fn map_mut(v: &mut Value) -> &mut Vec<(Value, Value)> {
    match v {
        Value::Map(m) => m,
        other => panic!("not a map: {other:?}"),
    }
}

fn field<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
    map_mut(v)
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn remove_field(v: &mut Value, name: &str) {
    let m = map_mut(v);
    let before = m.len();
    m.retain(|(k, _)| k.as_text() != Some(name));
    assert_eq!(m.len(), before - 1, "{name}");
}

fn add_field(v: &mut Value, name: &str, value: Value) {
    map_mut(v).push((Value::Text(name.into()), value));
}

/// Something a later minor version might add: a nested structure of every CBOR type.
fn novelty() -> Value {
    Value::Map(vec![
        (
            Value::Text("numbers".into()),
            Value::Array(vec![1.into(), (-5).into()]),
        ),
        (Value::Text("blob".into()), Value::Bytes(vec![0, 1, 2, 3])),
        (Value::Text("ratio".into()), Value::Float(0.5)),
        (Value::Text("flag".into()), Value::Bool(true)),
        (Value::Text("nothing".into()), Value::Null),
        (
            Value::Text("tagged".into()),
            Value::Tag(1, Box::new(1_700_000_000.into())),
        ),
        (Value::Integer(7.into()), Value::Text("integer key".into())),
    ])
}

fn frame_value(kind: MetaKind, minor: u16, v: &Value) -> Vec<u8> {
    container::encode_versioned(kind, FORMAT_MAJOR, minor, v).unwrap()
}

/// A task file as a newer minor version would write it: unknown fields at the top level and
/// in nested structs (a thread, its registers, a mapping, an fd, an enum variant's fields).
fn newer_task(task: &TaskImage) -> Value {
    let mut v = to_value(task);
    add_field(&mut v, "cgroup", Value::Text("/user.slice".into()));
    add_field(&mut v, "namespaces", novelty());
    let thread = &mut field(&mut v, "threads").as_array_mut().unwrap()[0];
    add_field(thread, "shadow_stack", novelty());
    add_field(field(thread, "regs"), "ssp", 0x7fff_0000u64.into());
    let mm = field(&mut v, "mm");
    add_field(mm, "mm_flags", 0x8du64.into());
    let vma = &mut field(mm, "vmas").as_array_mut().unwrap()[0];
    add_field(vma, "anon_name", Value::Null);
    // VmaKind::File { path, dev, ino, size } is encoded {"File": {...}}.
    let file = field(field(vma, "kind"), "File");
    add_field(file, "mtime_ns", 12345u64.into());
    let fd = &mut field(&mut v, "fds").as_array_mut().unwrap()[2];
    add_field(fd, "lock", novelty());
    v
}

#[test]
fn unknown_fields_are_ignored() {
    let task = sample::task(100, 1, 2);
    let bytes = frame_value(MetaKind::Task, FORMAT_MINOR, &newer_task(&task));
    let back: TaskImage = container::decode("task-100.img", MetaKind::Task, &bytes).unwrap();
    assert_eq!(back, task);
}

/// The same with a "v1.1" struct written with serde derives, as the next version's code
/// would be.
#[test]
fn a_newer_struct_decodes_as_the_current_one() {
    #[derive(Serialize)]
    struct SchedParamsV1_1 {
        policy: i32,
        priority: i32,
        nice: i32,
        reset_on_fork: bool,
        // New in "1.1".
        deadline: (u64, u64, u64),
        uclamp: Option<[u32; 2]>,
    }
    #[derive(Serialize)]
    struct ManifestV1_1<'a> {
        tool_version: &'a str,
        kernel_release: &'a str,
        page_size: u64,
        xsave_features: u64,
        root_pid: i32,
        tasks: Vec<stasis_image::TaskEntry>,
        files: Vec<FileDigest>,
        dump_options: Vec<String>,
        // New in "1.1".
        hostname: &'a str,
        parent_image: Option<&'a str>,
        cpu_flags: Vec<&'a str>,
    }
    let sched = SchedParamsV1_1 {
        policy: 1,
        priority: 50,
        nice: -3,
        reset_on_fork: true,
        deadline: (1, 2, 3),
        uclamp: Some([0, 1024]),
    };
    let bytes = container::encode_versioned(MetaKind::Task, 1, 1, &sched).unwrap();
    let back: stasis_image::SchedParams = container::decode("f", MetaKind::Task, &bytes).unwrap();
    assert_eq!(
        back,
        stasis_image::SchedParams {
            policy: 1,
            priority: 50,
            nice: -3,
            reset_on_fork: true
        }
    );

    let m = ManifestV1_1 {
        tool_version: "stasis 1.1.0",
        kernel_release: "7.0",
        page_size: 4096,
        xsave_features: 7,
        root_pid: 5,
        tasks: vec![],
        files: vec![],
        dump_options: vec![],
        hostname: "box",
        parent_image: Some("../prev"),
        cpu_flags: vec!["avx2"],
    };
    let bytes = container::encode_versioned(MetaKind::Manifest, 1, 1, &m).unwrap();
    let back: Manifest = container::decode(MANIFEST_FILE, MetaKind::Manifest, &bytes).unwrap();
    assert_eq!(back.tool_version, "stasis 1.1.0");
    assert_eq!(back.root_pid, 5);
}

#[test]
fn fields_with_defaults_may_be_missing() {
    let task = sample::task(100, 1, 2);
    let mut v = to_value(&task);
    remove_field(&mut v, "job_stopped");
    remove_field(field(&mut v, "attrs"), "shell_job");
    let thread = &mut field(&mut v, "threads").as_array_mut().unwrap()[0];
    remove_field(field(thread, "sched"), "reset_on_fork");
    let bytes = frame_value(MetaKind::Task, 0, &v);
    let back: TaskImage = container::decode("t", MetaKind::Task, &bytes).unwrap();
    assert!(!back.job_stopped);
    assert!(!back.attrs.shell_job);
    assert_eq!(back.threads, task.threads);

    let mut m = to_value(&Manifest {
        tool_version: "x".into(),
        kernel_release: "y".into(),
        page_size: 4096,
        xsave_features: 0,
        root_pid: 1,
        tasks: vec![],
        files: vec![],
        dump_options: vec!["--a".into()],
        clocks: None,
        requires: vec![],
    });
    remove_field(&mut m, "dump_options");
    remove_field(&mut m, "clocks");
    remove_field(&mut m, "requires");
    let back: Manifest = container::decode(
        "m",
        MetaKind::Manifest,
        &frame_value(MetaKind::Manifest, 0, &m),
    )
    .unwrap();
    assert!(back.dump_options.is_empty());
    assert!(back.clocks.is_none());
    assert!(back.requires.is_empty());
}

#[test]
fn a_missing_required_field_is_a_clear_error() {
    let mut v = to_value(&sample::task(100, 1, 2));
    remove_field(field(&mut v, "mm"), "vmas");
    let e = container::decode::<TaskImage>(
        "task-100.img",
        MetaKind::Task,
        &frame_value(MetaKind::Task, 0, &v),
    )
    .unwrap_err();
    assert!(matches!(e, ImageError::Decode { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("task-100.img: cannot decode") && msg.contains("vmas"),
        "{msg}"
    );
}

/// Enum variants are not forward compatible: a reader cannot ignore a kind of file it does
/// not know how to restore. Such an image is refused with a clear error (the format rules
/// in IMAGE_FORMAT.md say so).
#[test]
fn an_unknown_enum_variant_is_refused() {
    let mut v = to_value(&sample::task(100, 1, 2));
    let fd = &mut field(&mut v, "fds").as_array_mut().unwrap()[0];
    *field(fd, "file") = Value::Map(vec![(
        Value::Text("FutureKind".into()),
        Value::Map(vec![(Value::Text("ino".into()), 5.into())]),
    )]);
    let e = container::decode::<TaskImage>(
        "task-100.img",
        MetaKind::Task,
        &frame_value(MetaKind::Task, 3, &v),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "task-100.img: cannot decode: unknown variant `FutureKind`, expected one of"
        ),
        "{msg}"
    );
}

#[test]
fn minor_versions_are_accepted_and_majors_refused() {
    let task = sample::task(100, 1, 2);
    for minor in [0, 1, 99, u16::MAX] {
        let bytes =
            container::encode_versioned(MetaKind::Task, FORMAT_MAJOR, minor, &task).unwrap();
        let back: TaskImage = container::decode("t", MetaKind::Task, &bytes).unwrap();
        assert_eq!(back, task);
    }
    for major in [0, FORMAT_MAJOR + 1, u16::MAX] {
        let bytes = container::encode_versioned(MetaKind::Task, major, 0, &task).unwrap();
        let e = container::decode::<TaskImage>("task-100.img", MetaKind::Task, &bytes).unwrap_err();
        match e {
            ImageError::UnsupportedVersion {
                ref file,
                major: m,
                minor: 0,
            } if file == "task-100.img" && m == major => {}
            other => panic!("{other}"),
        }
        assert!(e
            .to_string()
            .contains(&format!("version {major}.0 is not supported")));
    }
}

/// Rewrites the image in `dir` as a newer minor version would have written it.
fn rewrite_as_newer(dir: &std::path::Path, major: u16, minor: u16) {
    let reader = ImageReader::open(dir).unwrap();
    let mut manifest = reader.manifest().clone();
    for t in reader.manifest().tasks.clone() {
        let task = reader.task(t.pid).unwrap();
        let bytes = frame_value(MetaKind::Task, minor, &newer_task(&task));
        fs::write(dir.join(&t.core_file), &bytes).unwrap();
        let d = manifest
            .files
            .iter_mut()
            .find(|d| d.name == t.core_file)
            .unwrap();
        d.len = bytes.len() as u64;
        d.xxh3 = xxhash_rust::xxh3::xxh3_64(&bytes);
    }
    let mut v = to_value(&manifest);
    add_field(&mut v, "hostname", Value::Text("box".into()));
    add_field(
        &mut field(&mut v, "tasks").as_array_mut().unwrap()[0],
        "comm",
        Value::Text("x".into()),
    );
    add_field(
        &mut field(&mut v, "files").as_array_mut().unwrap()[0],
        "compression",
        Value::Null,
    );
    let bytes = container::encode_versioned(MetaKind::Manifest, major, minor, &v).unwrap();
    fs::write(dir.join(MANIFEST_FILE), bytes).unwrap();
}

#[test]
fn a_newer_minor_image_opens() {
    let tmp = TempDir::new("compat-minor");
    let original = sample::write_image(&tmp.0, 2).unwrap();
    let tasks = ImageReader::open(&tmp.0).unwrap().tasks().unwrap();
    rewrite_as_newer(&tmp.0, FORMAT_MAJOR, FORMAT_MINOR + 3);
    let reader = ImageReader::open_verified(&tmp.0).unwrap();
    assert_eq!(reader.format_version(), (FORMAT_MAJOR, FORMAT_MINOR + 3));
    assert_eq!(reader.manifest().tasks, original.tasks);
    assert_eq!(reader.tasks().unwrap(), tasks);
    let text = stasis_image::render::render_text(&reader).unwrap();
    assert!(
        text.contains(&format!("format version  1.{}", FORMAT_MINOR + 3)),
        "{text}"
    );
}

#[test]
fn a_newer_major_image_is_refused() {
    let tmp = TempDir::new("compat-major");
    sample::write_image(&tmp.0, 2).unwrap();
    rewrite_as_newer(&tmp.0, FORMAT_MAJOR + 1, 0);
    let e = ImageReader::open(&tmp.0).unwrap_err();
    assert!(
        matches!(e, ImageError::UnsupportedVersion { ref file, major: 2, minor: 0 } if file == MANIFEST_FILE),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "manifest.img: image format version 2.0 is not supported (this stasis reads 1.x)"
    );
}

/// A newer minor version that adds a field restore must not skip names it in `requires`:
/// this version refuses such an image by the feature's name, and opens one that requires
/// only features it knows.
#[test]
fn an_image_requiring_an_unknown_feature_is_refused_by_name() {
    let tmp = TempDir::new("compat-requires");
    let written = sample::write_image(&tmp.0, 2).unwrap();
    let set_requires = |requires: Vec<&str>| {
        let mut manifest = written.clone();
        manifest.requires = requires.into_iter().map(String::from).collect();
        let bytes = container::encode(MetaKind::Manifest, &manifest).unwrap();
        fs::write(tmp.0.join(MANIFEST_FILE), bytes).unwrap();
    };
    set_requires(vec![stasis_image::features::SEM_UNDO, "tcp-repair"]);
    let e = ImageReader::open(&tmp.0).unwrap_err();
    assert!(
        matches!(e, ImageError::UnknownFeature { ref feature, .. } if feature == "tcp-repair"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("requires feature \"tcp-repair\", which this stasis does not know"),
        "{e}"
    );
    let known: Vec<&str> = stasis_image::features::KNOWN.iter().map(|k| k.0).collect();
    set_requires(known);
    ImageReader::open_verified(&tmp.0).unwrap();
}
