//! The on-disk container of metadata files: a fixed header followed by a CBOR payload.
//!
//! ```text
//! offset size
//!      0    8  magic  "STASISIM"
//!      8    2  major  format major version (little endian)
//!     10    2  minor  format minor version
//!     12    4  kind   which struct the payload holds (FileKind)
//!     16    8  len    payload length in bytes
//!     24    8  xxh3   XXH3-64 of the payload
//!     32  len  payload (CBOR)
//! ```

use serde::{de::DeserializeOwned, Serialize};

use crate::ImageError;

/// Magic bytes at the start of every metadata file.
pub const MAGIC: [u8; 8] = *b"STASISIM";
/// Major version: a reader refuses any other major.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor version: a reader accepts any minor of its major (unknown fields are ignored).
pub const FORMAT_MINOR: u16 = 0;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;

/// What a metadata file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetaKind {
    Manifest = 1,
    Task = 2,
}

impl MetaKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Manifest),
            2 => Some(Self::Task),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::Task => "task",
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

/// Encodes `value` as a complete metadata file (header and payload).
pub fn encode<T: Serialize>(kind: MetaKind, value: &T) -> Result<Vec<u8>, ImageError> {
    let mut payload = Vec::new();
    ciborium::into_writer(value, &mut payload)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    out.extend_from_slice(&(kind as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses and checks the fixed header: magic, major version, declared length.
pub fn parse_header(name: &str, bytes: &[u8]) -> Result<Header, ImageError> {
    if bytes.len() < HEADER_LEN {
        return Err(ImageError::Truncated {
            file: name.to_string(),
            len: bytes.len() as u64,
            expected: HEADER_LEN as u64,
        });
    }
    if bytes[..8] != MAGIC {
        return Err(ImageError::BadMagic {
            file: name.to_string(),
        });
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let header = Header {
        major: u16_at(8),
        minor: u16_at(10),
        kind: u32_at(12),
        len: u64_at(16),
        xxh3: u64_at(24),
    };
    if header.major != FORMAT_MAJOR {
        return Err(ImageError::UnsupportedVersion {
            file: name.to_string(),
            major: header.major,
            minor: header.minor,
        });
    }
    let have = (bytes.len() - HEADER_LEN) as u64;
    if have != header.len {
        return Err(if have < header.len {
            ImageError::Truncated {
                file: name.to_string(),
                len: bytes.len() as u64,
                expected: HEADER_LEN as u64 + header.len,
            }
        } else {
            ImageError::TrailingData {
                file: name.to_string(),
                extra: have - header.len,
            }
        });
    }
    Ok(header)
}

/// Decodes a complete metadata file, checking header, kind and checksum.
pub fn decode<T: DeserializeOwned>(
    name: &str,
    kind: MetaKind,
    bytes: &[u8],
) -> Result<T, ImageError> {
    let header = parse_header(name, bytes)?;
    if header.kind != kind as u32 {
        return Err(ImageError::WrongKind {
            file: name.to_string(),
            expected: kind.name(),
            found: header.kind,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if xxhash_rust::xxh3::xxh3_64(payload) != header.xxh3 {
        return Err(ImageError::ChecksumMismatch {
            file: name.to_string(),
        });
    }
    ciborium::from_reader(payload).map_err(|e| ImageError::Decode {
        file: name.to_string(),
        reason: e.to_string(),
    })
}
