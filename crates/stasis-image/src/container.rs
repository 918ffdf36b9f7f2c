//! The on-disk container of metadata files: a fixed header followed by a CBOR payload.
//!
//! ```text
//! offset size
//!      0    8  magic  "STASISIM"
//!      8    2  major  format major version (little endian)
//!     10    2  minor  format minor version (little endian)
//!     12    4  kind   which struct the payload holds (MetaKind, little endian)
//!     16    8  len    payload length in bytes (little endian)
//!     24    8  xxh3   XXH3-64 of bytes 0..24 followed by the payload (little endian)
//!     32  len  payload (CBOR)
//! ```
//!
//! The checksum covers the header fields as well as the payload, so a flipped bit anywhere
//! in a metadata file is detected even without the manifest (which is how the manifest
//! itself is protected).
//!
//! Decoding never panics and never allocates much more than the input: the payload length
//! is bounded by the bytes actually present, serde caps pre-allocation from declared
//! lengths, ciborium reads strings and byte strings in chunks, and nesting is limited to
//! [`MAX_NESTING`] levels so hostile input cannot exhaust the stack.

use serde::{de::DeserializeOwned, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::ImageError;

/// Magic bytes at the start of every metadata file.
pub const MAGIC: [u8; 8] = *b"STASISIM";
/// Major version: a reader refuses any other major.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor version: a reader accepts any minor of its major (unknown fields are ignored).
pub const FORMAT_MINOR: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Largest metadata file a reader accepts (a task with 10 000 threads and 65 530 mappings
/// is far below this); protects against reading a huge foreign file into memory.
pub const MAX_META_LEN: u64 = 256 << 20;
/// Deepest CBOR nesting (arrays, maps, tags) a reader accepts. The v1 types nest at most
/// 7 levels; 64 leaves room for later minors while keeping the decoder's stack use small
/// (about 3 KiB per level in a debug build) even on small thread stacks.
pub const MAX_NESTING: usize = 64;

/// What a metadata file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetaKind {
    Manifest = 1,
    Task = 2,
    /// System V IPC objects and POSIX message queues of the tree (`ipc.img`).
    Ipc = 3,
}

impl MetaKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Manifest),
            2 => Some(Self::Task),
            3 => Some(Self::Ipc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Task => "task",
            Self::Ipc => "ipc",
        }
    }
}

/// The parsed fixed header of a metadata file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub major: u16,
    pub minor: u16,
    pub kind: u32,
    pub len: u64,
    pub xxh3: u64,
}

impl Header {
    /// The kind of record, if this stasis knows it.
    pub fn meta_kind(&self) -> Option<MetaKind> {
        MetaKind::from_u32(self.kind)
    }
}

/// Encodes `value` as a complete metadata file (header and payload) of the current version.
pub fn encode<T: Serialize>(kind: MetaKind, value: &T) -> Result<Vec<u8>, ImageError> {
    encode_versioned(kind, FORMAT_MAJOR, FORMAT_MINOR, value)
}

/// Encodes `value` with an explicit version in the header. Meant for tests and converters;
/// the dumper always writes the current version with [`encode`].
pub fn encode_versioned<T: Serialize>(
    kind: MetaKind,
    major: u16,
    minor: u16,
    value: &T,
) -> Result<Vec<u8>, ImageError> {
    let mut payload = Vec::new();
    ciborium::into_writer(value, &mut payload).map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(frame(kind as u32, major, minor, &payload))
}

/// Wraps an already encoded payload in a header (with a correct checksum). Meant for tests
/// and converters.
pub fn frame(kind: u32, major: u16, minor: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&major.to_le_bytes());
    out.extend_from_slice(&minor.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = checksum(&out, payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// XXH3-64 of the first 24 header bytes followed by the payload.
fn checksum(header24: &[u8], payload: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&header24[..24]);
    h.update(payload);
    h.digest()
}

fn u16_at(bytes: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([bytes[o], bytes[o + 1]])
}

fn u32_at(bytes: &[u8], o: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[o..o + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], o: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[o..o + 8]);
    u64::from_le_bytes(b)
}

/// Whether `bytes` starts like a metadata file (as much of the magic as there is matches).
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

/// Parses and checks the fixed header: magic, major version, declared length. Does not
/// check the checksum (see [`verify`]).
pub fn parse_header(name: &str, bytes: &[u8]) -> Result<Header, ImageError> {
    let prefix = bytes.len().min(MAGIC.len());
    if bytes[..prefix] != MAGIC[..prefix] {
        return Err(ImageError::BadMagic {
            file: name.to_string(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(ImageError::Truncated {
            file: name.to_string(),
            len: bytes.len() as u64,
            expected: HEADER_LEN as u64,
        });
    }
    let header = Header {
        major: u16_at(bytes, 8),
        minor: u16_at(bytes, 10),
        kind: u32_at(bytes, 12),
        len: u64_at(bytes, 16),
        xxh3: u64_at(bytes, 24),
    };
    if header.major != FORMAT_MAJOR {
        return Err(ImageError::UnsupportedVersion {
            file: name.to_string(),
            major: header.major,
            minor: header.minor,
        });
    }
    let have = (bytes.len() - HEADER_LEN) as u64;
    if have < header.len {
        return Err(ImageError::Truncated {
            file: name.to_string(),
            len: bytes.len() as u64,
            expected: (HEADER_LEN as u64).saturating_add(header.len),
        });
    }
    if have > header.len {
        return Err(ImageError::TrailingData {
            file: name.to_string(),
            extra: have - header.len,
        });
    }
    Ok(header)
}

/// Parses the header and checks the checksum: after this, the file is exactly what a
/// writer produced, whatever its kind.
pub fn verify(name: &str, bytes: &[u8]) -> Result<Header, ImageError> {
    let header = parse_header(name, bytes)?;
    if checksum(bytes, &bytes[HEADER_LEN..]) != header.xxh3 {
        return Err(ImageError::ChecksumMismatch {
            file: name.to_string(),
        });
    }
    Ok(header)
}

/// Decodes a complete metadata file, checking header, checksum and kind.
pub fn decode<T: DeserializeOwned>(
    name: &str,
    kind: MetaKind,
    bytes: &[u8],
) -> Result<T, ImageError> {
    let header = verify(name, bytes)?;
    if header.kind != kind as u32 {
        return Err(ImageError::WrongKind {
            file: name.to_string(),
            expected: kind.name(),
            found: header.kind,
        });
    }
    decode_payload(name, &bytes[HEADER_LEN..])
}

/// Decodes a CBOR payload (without header). The whole payload must be one CBOR item.
pub fn decode_payload<T: DeserializeOwned>(name: &str, payload: &[u8]) -> Result<T, ImageError> {
    let mut rest = payload;
    let value =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_NESTING).map_err(|e| {
            ImageError::Decode {
                file: name.to_string(),
                reason: describe_cbor_error(e),
            }
        })?;
    if !rest.is_empty() {
        return Err(ImageError::Decode {
            file: name.to_string(),
            reason: format!("{} bytes after the end of the record", rest.len()),
        });
    }
    Ok(value)
}

fn describe_cbor_error(e: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the record ends early".to_string()
        }
        Error::Io(e) => e.to_string(),
        Error::Syntax(offset) => format!("malformed CBOR at payload offset {offset}"),
        Error::Semantic(Some(offset), msg) => format!("{msg} (at payload offset {offset})"),
        Error::Semantic(None, msg) => msg,
        Error::RecursionLimitExceeded => {
            format!("data nested more than {MAX_NESTING} levels deep")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Small {
        a: u32,
        b: String,
    }

    fn small() -> Vec<u8> {
        encode(
            MetaKind::Task,
            &Small {
                a: 7,
                b: "x".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let v: Small = decode("f", MetaKind::Task, &small()).unwrap();
        assert_eq!(v.a, 7);
    }

    #[test]
    fn short_or_foreign() {
        for n in 0..HEADER_LEN {
            let e = decode::<Small>("f", MetaKind::Task, &small()[..n]).unwrap_err();
            assert!(matches!(e, ImageError::Truncated { .. }), "{n}: {e}");
        }
        let e = decode::<Small>("f", MetaKind::Task, b"#!/bin/sh\n").unwrap_err();
        assert!(matches!(e, ImageError::BadMagic { .. }), "{e}");
        let e = decode::<Small>("f", MetaKind::Task, b"\x7fELF").unwrap_err();
        assert!(matches!(e, ImageError::BadMagic { .. }), "{e}");
        assert!(e.to_string().starts_with("f: "));
    }

    #[test]
    fn huge_declared_length() {
        let mut b = small();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = decode::<Small>("f", MetaKind::Task, &b).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Truncated {
                    expected: u64::MAX,
                    ..
                }
            ),
            "{e}"
        );
        b[16..24].copy_from_slice(&0u64.to_le_bytes());
        let e = decode::<Small>("f", MetaKind::Task, &b).unwrap_err();
        assert!(matches!(e, ImageError::TrailingData { .. }), "{e}");
    }

    #[test]
    fn header_fields_are_checksummed() {
        // A changed minor version or kind is caught by the checksum.
        for offset in [10, 12, 13] {
            let mut b = small();
            b[offset] ^= 1;
            let e = decode::<Small>("f", MetaKind::Task, &b).unwrap_err();
            assert!(matches!(e, ImageError::ChecksumMismatch { .. }), "{e}");
        }
    }

    #[test]
    fn wrong_kind() {
        let e = decode::<Small>("f", MetaKind::Manifest, &small()).unwrap_err();
        assert!(matches!(e, ImageError::WrongKind { found: 2, .. }), "{e}");
    }

    #[test]
    fn trailing_cbor_rejected() {
        let mut payload = Vec::new();
        ciborium::into_writer(
            &Small {
                a: 1,
                b: String::new(),
            },
            &mut payload,
        )
        .unwrap();
        payload.push(0);
        let b = frame(MetaKind::Task as u32, FORMAT_MAJOR, FORMAT_MINOR, &payload);
        let e = decode::<Small>("f", MetaKind::Task, &b).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }), "{e}");
    }

    /// `{"a": 1, "b": "", "x": <depth levels of arrays or tags>}` with a valid checksum.
    fn nested(depth: usize, item: u8) -> Vec<u8> {
        let mut p = vec![0xa3, 0x61, b'a', 0x01, 0x61, b'b', 0x60, 0x61, b'x'];
        p.extend(vec![item; depth]);
        p.push(0x00);
        frame(MetaKind::Task as u32, FORMAT_MAJOR, FORMAT_MINOR, &p)
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_a_small_stack() {
        // 0x81: array of one element; 0xa1 map of one pair would need keys; 0xc6: tag 6.
        for item in [0x81u8, 0xc6, 0x9f] {
            let ok = nested(MAX_NESTING - 2, item);
            let bad = nested(100_000, item);
            let r = std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || {
                    let ok = decode::<Small>("f", MetaKind::Task, &ok);
                    let bad = decode::<Small>("f", MetaKind::Task, &bad);
                    (ok.is_ok() || item == 0x9f, bad.is_err())
                })
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(r, (true, true), "item {item:#x}");
        }
    }

    #[test]
    fn absurd_declared_sizes_do_not_allocate() {
        // {"a": 1, "b": <text of 2^62 bytes>}, {"a": <array of 2^62>}, a 2^62-byte byte string.
        let cases: [&[u8]; 3] = [
            &[
                0xa2, 0x61, b'a', 0x01, 0x61, b'b', 0x7b, 0x40, 0, 0, 0, 0, 0, 0, 0, b'z',
            ],
            &[0xa1, 0x61, b'a', 0x9b, 0x40, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xa1, 0x61, b'x', 0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0, 1],
        ];
        for p in cases {
            let b = frame(MetaKind::Task as u32, FORMAT_MAJOR, FORMAT_MINOR, p);
            let e = decode::<Small>("f", MetaKind::Task, &b).unwrap_err();
            assert!(matches!(e, ImageError::Decode { .. }), "{e}");
        }
    }
}
