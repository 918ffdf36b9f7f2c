//! Time namespace: the clocks the tree saw at the freeze, and `restore --time-ns`, which
//! puts the restored tree into a new time namespace whose CLOCK_MONOTONIC and
//! CLOCK_BOOTTIME continue from those values instead of jumping by the time the image
//! waited.

use stasis_image::DumpClocks;
use stasis_sys::own;

use crate::error::{Error, Result, SysContext};

const NS: i128 = 1_000_000_000;

/// A process's time-namespace offsets (monotonic, boottime) in nanoseconds, relative to
/// the host's clocks; zero where the file is missing (no time namespaces).
fn offsets(pid: &str) -> (i128, i128) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap_or_default();
    let mut out = (0, 0);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(sec), Some(nsec)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Ok(sec), Ok(nsec)) = (sec.parse::<i128>(), nsec.parse::<i128>()) else {
            continue;
        };
        match name {
            "monotonic" => out.0 = sec * NS + nsec,
            "boottime" => out.1 = sec * NS + nsec,
            _ => {}
        }
    }
    out
}

fn host_clocks(pid: i32) -> Result<(i128, i128)> {
    let mono = own::clock_ns(libc::CLOCK_MONOTONIC).ctx(pid, || "read CLOCK_MONOTONIC".into())?;
    let boot = own::clock_ns(libc::CLOCK_BOOTTIME).ctx(pid, || "read CLOCK_BOOTTIME".into())?;
    let mine = offsets("self");
    Ok((mono as i128 - mine.0, boot as i128 - mine.1))
}

/// CLOCK_MONOTONIC and CLOCK_BOOTTIME as process `pid` sees them now (its time
/// namespace's offsets added to the host's clocks).
pub fn dump_clocks(pid: i32) -> Result<DumpClocks> {
    let (mono, boot) = host_clocks(pid)?;
    let theirs = offsets(&pid.to_string());
    Ok(DumpClocks {
        monotonic_ns: (mono + theirs.0).max(0) as u64,
        boottime_ns: (boot + theirs.1).max(0) as u64,
    })
}

/// Makes the processes this one creates from now on start in a new time namespace whose
/// clocks read what `clocks` recorded. Must run before the first of them is created.
pub fn enter_for_children(pid: i32, clocks: Option<&DumpClocks>) -> Result<()> {
    let Some(clocks) = clocks else {
        return Err(Error::Restore {
            pid,
            reason: "--time-ns: the image has no clocks recorded (dumped by an older stasis)"
                .into(),
        });
    };
    own::unshare(libc::CLONE_NEWTIME).ctx(pid, || "--time-ns: a new time namespace".into())?;
    let (mono, boot) = host_clocks(pid)?;
    let text = format!(
        "monotonic {}\nboottime {}\n",
        split(clocks.monotonic_ns as i128 - mono),
        split(clocks.boottime_ns as i128 - boot)
    );
    std::fs::write("/proc/self/timens_offsets", &text).map_err(|e| Error::Restore {
        pid,
        reason: format!(
            "--time-ns: write /proc/self/timens_offsets ({}): {e}",
            text.trim().replace('\n', ", ")
        ),
    })?;
    log::info!(
        "time namespace for the tree: offsets {}",
        text.trim().replace('\n', ", ")
    );
    Ok(())
}

/// "SECONDS NANOSECONDS" with the nanoseconds in 0..1e9, as timens_offsets wants them.
fn split(ns: i128) -> String {
    format!("{} {}", ns.div_euclid(NS), ns.rem_euclid(NS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_with_positive_nanoseconds() {
        assert_eq!(split(1_500_000_000), "1 500000000");
        assert_eq!(split(-1_500_000_000), "-2 500000000");
        assert_eq!(split(-3), "-1 999999997");
        assert_eq!(split(0), "0 0");
    }
}
