//! Every byte of an image is checksummed: flipping any byte, truncating or extending any
//! file, or deleting one must make reading the image fail, with an error naming the file,
//! and never panic. And input that defeats the checksums (recomputed after a change, as a
//! hostile image would have them) must still never panic.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use stasis_image::container::{self, MetaKind, HEADER_LEN};
use stasis_image::{sample, ImageError, ImageReader, Manifest, MANIFEST_FILE};

/// xorshift64*: small, deterministic, good enough to pick positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

mod common;
use common::TempDir;

/// Everything restore reads before creating anything: the manifest and task files (open),
/// every task, and the content of every page file.
fn read_everything(dir: &Path) -> Result<(), ImageError> {
    let reader = ImageReader::open(dir)?;
    let tasks = reader.tasks()?;
    assert_eq!(tasks.len(), reader.manifest().tasks.len());
    for t in &reader.manifest().tasks {
        let bytes = fs::read(reader.path_of(&t.pages_file)).map_err(|e| ImageError::Io {
            file: t.pages_file.clone(),
            op: "read",
            source: e,
        })?;
        reader.verify_pages(&t.pages_file, &bytes)?;
    }
    Ok(())
}

fn image_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corruption_is_detected() {
    let tmp = TempDir::new("corruption");
    sample::write_image(&tmp.0, 4).unwrap();
    read_everything(&tmp.0).expect("the pristine image reads");
    // Also the streaming checks.
    ImageReader::open_verified(&tmp.0).unwrap();
    let files = image_files(&tmp.0);
    assert_eq!(files.len(), 5, "manifest, two task files, two page files");

    let mut rng = Rng(0x5eed_0f57_a515);
    let mut kinds = [0usize; 4];
    for iteration in 0..2000 {
        let (name, original) = &files[rng.below(files.len())];
        let path = tmp.0.join(name);
        let mut bytes = original.clone();
        let what = match rng.below(20) {
            0..=13 => {
                let pos = rng.below(bytes.len());
                let mask = (rng.below(255) + 1) as u8;
                bytes[pos] ^= mask;
                kinds[0] += 1;
                format!("flip byte {pos} with {mask:#x}")
            }
            14..=17 => {
                let len = rng.below(bytes.len());
                bytes.truncate(len);
                kinds[1] += 1;
                format!("truncate to {len}")
            }
            18 => {
                let n = rng.below(16) + 1;
                bytes.extend((0..n).map(|_| rng.next() as u8));
                kinds[2] += 1;
                format!("append {n} bytes")
            }
            _ => {
                kinds[3] += 1;
                "delete".to_string()
            }
        };
        if what == "delete" {
            fs::remove_file(&path).unwrap();
        } else {
            fs::write(&path, &bytes).unwrap();
        }

        let result = catch_unwind(AssertUnwindSafe(|| read_everything(&tmp.0)));
        let result =
            result.unwrap_or_else(|_| panic!("iteration {iteration}: {name}: {what}: panicked"));
        let err = match result {
            Ok(()) => panic!("iteration {iteration}: {name}: {what}: not detected"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(name.as_str()),
            "iteration {iteration}: {name}: {what}: the error does not name the file: {err}"
        );

        fs::write(&path, original).unwrap();
    }
    assert!(kinds.iter().all(|&k| k > 0), "{kinds:?}");
    read_everything(&tmp.0).expect("restored image reads again");
}

/// Flips bytes of a metadata payload and recomputes every checksum, as a hostile image
/// could: decoding must fail or succeed, never panic, and a reader that accepts the image
/// must be able to render it.
#[test]
fn hostile_payloads_never_panic() {
    let tmp = TempDir::new("hostile");
    sample::write_image(&tmp.0, 2).unwrap();
    let files = image_files(&tmp.0);
    let manifest_bytes = &files.iter().find(|f| f.0 == MANIFEST_FILE).unwrap().1;
    let manifest: Manifest =
        container::decode(MANIFEST_FILE, MetaKind::Manifest, manifest_bytes).unwrap();

    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut accepted = 0;
    for iteration in 0..2000 {
        // Mutate the manifest (1 in 4) or a task file, with a few flips.
        let name = if rng.below(4) == 0 {
            MANIFEST_FILE.to_string()
        } else {
            format!("task-{}.img", 100 + rng.below(2))
        };
        let original = &files.iter().find(|f| f.0 == name).unwrap().1;
        let kind = if name == MANIFEST_FILE {
            MetaKind::Manifest
        } else {
            MetaKind::Task
        };
        let mut payload = original[HEADER_LEN..].to_vec();
        for _ in 0..rng.below(4) + 1 {
            match rng.below(10) {
                0 => {
                    let len = rng.below(payload.len());
                    payload.truncate(len);
                }
                1 => {
                    let pos = rng.below(payload.len() + 1);
                    payload.insert(pos, rng.next() as u8);
                }
                _ if !payload.is_empty() => {
                    let pos = rng.below(payload.len());
                    payload[pos] = rng.next() as u8;
                }
                _ => {}
            }
        }
        let bytes = container::frame(kind as u32, 1, 0, &payload);
        let r = catch_unwind(|| {
            let _ = container::decode::<stasis_image::TaskImage>(&name, MetaKind::Task, &bytes);
            let _ = container::decode::<Manifest>(&name, MetaKind::Manifest, &bytes);
        });
        assert!(r.is_ok(), "iteration {iteration}: decoding {name} panicked");

        // Put it in the directory with matching digests, and read the whole image.
        if kind == MetaKind::Manifest {
            fs::write(tmp.0.join(MANIFEST_FILE), &bytes).unwrap();
        } else {
            fs::write(tmp.0.join(&name), &bytes).unwrap();
            let mut m = manifest.clone();
            for d in &mut m.files {
                if d.name == name {
                    d.len = bytes.len() as u64;
                    d.xxh3 = xxhash_rust::xxh3::xxh3_64(&bytes);
                }
            }
            let mb = container::encode(MetaKind::Manifest, &m).unwrap();
            fs::write(tmp.0.join(MANIFEST_FILE), mb).unwrap();
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let ok = read_everything(&tmp.0).is_ok();
            if ok {
                let reader = ImageReader::open(&tmp.0).unwrap();
                stasis_image::render::render_text(&reader).unwrap();
                stasis_image::render::render_json(&reader).unwrap();
            }
            let _ = stasis_image::render::render_file_text(&tmp.0.join(&name));
            ok
        }));
        match r {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => {
                panic!("iteration {iteration}: reading the image with a changed {name} panicked")
            }
        }
        for (n, b) in &files {
            fs::write(tmp.0.join(n), b).unwrap();
        }
    }
    // Some changes (a different byte in a string, a register value) are valid images.
    assert!(accepted > 0);
}

/// Deterministic complement of the random test: every byte of the manifest, and the first
/// and last 64 bytes of every other file (headers, where a random flip rarely lands).
#[test]
fn every_byte_of_the_manifest_and_headers_matters() {
    let tmp = TempDir::new("exhaustive");
    sample::write_image(&tmp.0, 1).unwrap();
    let files = image_files(&tmp.0);
    for (name, original) in &files {
        let path = tmp.0.join(name);
        let len = original.len();
        let positions: Vec<usize> = if name == MANIFEST_FILE {
            (0..len).collect()
        } else {
            (0..64).chain(len - 64..len).collect()
        };
        for pos in positions {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bytes = original.clone();
                bytes[pos] ^= mask;
                fs::write(&path, &bytes).unwrap();
                let err = read_everything(&tmp.0)
                    .expect_err(&format!(
                        "{name}: flip of byte {pos} with {mask:#x} not detected"
                    ))
                    .to_string();
                assert!(err.contains(name.as_str()), "{name}: byte {pos}: {err}");
            }
        }
        let cuts: Vec<usize> = if name == MANIFEST_FILE {
            (0..len).collect()
        } else {
            (0..64).chain([len / 2, len - 1]).collect()
        };
        for cut in cuts {
            fs::write(&path, &original[..cut]).unwrap();
            let err = read_everything(&tmp.0)
                .expect_err(&format!("{name}: truncation to {cut} not detected"))
                .to_string();
            assert!(err.contains(name.as_str()), "{name}: cut {cut}: {err}");
        }
        fs::write(&path, original).unwrap();
    }
    read_everything(&tmp.0).unwrap();
}
