//! Anonymous-inode files that are only state: eventfd, signalfd, timerfd. fdinfo describes
//! each completely, and a new one with the same state replaces it.

use stasis_image::{FdImage, FileKind};
use stasis_sys::own;

use super::{place, ChildResult, FdProbe, Kind};
use crate::error::Result;

fn field<'a>(p: &'a FdProbe, key: &str) -> Option<&'a str> {
    p.info
        .extra
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn hex(p: &FdProbe, key: &str) -> Result<u64> {
    field(p, key)
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| p.unsupported(&format!("fdinfo has no readable {key:?}")))
}

fn dec(p: &FdProbe, key: &str) -> Result<u64> {
    field(p, key)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| p.unsupported(&format!("fdinfo has no readable {key:?}")))
}

pub const KIND: Kind = Kind {
    dump,
    restores: |f| {
        matches!(
            f,
            FileKind::EventFd { .. } | FileKind::SignalFd { .. } | FileKind::TimerFd { .. }
        )
    },
    open: |f, at, _, _| place(create(f)?, at, f),
    ..Kind::NONE
};

/// "(sec, nsec)" as nanoseconds.
fn timespec_ns(p: &FdProbe, key: &str) -> Result<u64> {
    let v = field(p, key).unwrap_or("");
    let mut it = v
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(|x| x.trim().parse::<u64>());
    match (it.next(), it.next()) {
        (Some(Ok(s)), Some(Ok(ns))) => Ok(s * 1_000_000_000 + ns),
        _ => Err(p.unsupported(&format!("fdinfo has no readable {key:?}"))),
    }
}

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    Ok(Some(match p.target {
        "anon_inode:[eventfd]" => FileKind::EventFd {
            count: hex(p, "eventfd-count")?,
            semaphore: field(p, "eventfd-semaphore").is_some_and(|v| v.trim() == "1"),
        },
        "anon_inode:[signalfd]" => FileKind::SignalFd {
            mask: hex(p, "sigmask")?,
        },
        "anon_inode:[timerfd]" => {
            let interval_ns = timespec_ns(p, "it_interval")?;
            let mut value_ns = timespec_ns(p, "it_value")?;
            // A periodic timer that expired is only moved on when it is read; until then
            // fdinfo shows no time left. Its next expiry is one interval on.
            if value_ns == 0 && interval_ns > 0 {
                value_ns = interval_ns;
            }
            FileKind::TimerFd {
                clockid: dec(p, "clockid")? as i32,
                value_ns,
                interval_ns,
                ticks: dec(p, "ticks")?,
            }
        }
        _ => return Ok(None),
    }))
}

/// Creates the file in the calling process; returns its descriptor.
fn create(f: &FdImage) -> ChildResult<i32> {
    let nonblock = f.flags as i32 & libc::O_NONBLOCK;
    let r = match f.file {
        FileKind::EventFd { count, semaphore } => {
            let sem = if semaphore { libc::EFD_SEMAPHORE } else { 0 };
            own::eventfd(count, nonblock | sem | libc::EFD_CLOEXEC)
        }
        FileKind::SignalFd { mask } => own::signalfd(mask, nonblock | libc::SFD_CLOEXEC),
        FileKind::TimerFd {
            clockid,
            value_ns,
            interval_ns,
            ticks,
        } => own::timerfd(
            clockid,
            nonblock | libc::TFD_CLOEXEC,
            value_ns,
            interval_ns,
            ticks,
        ),
        _ => return Err(format!("fd {}: not an eventfd, signalfd or timerfd", f.fd)),
    };
    r.map_err(|e| format!("fd {}: {e}", f.fd))
}
