//! Timers: interval timers (setitimer); POSIX timers are refused until they are saved.

use stasis_image::ITimer;

use crate::error::{Error, Result};
use crate::inject::{self, Session};

const WHICH: [i32; 3] = [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF];

fn to_us(sec: u64, usec: u64) -> u64 {
    sec * 1_000_000 + usec
}

/// The armed interval timers of the process the session runs in.
pub fn dump(s: &mut Session) -> Result<Vec<ITimer>> {
    let mut out = Vec::new();
    for which in WHICH {
        let [isec, iusec, vsec, vusec] = get(s, which)?;
        if vsec != 0 || vusec != 0 || isec != 0 || iusec != 0 {
            out.push(ITimer {
                which,
                interval_us: to_us(isec, iusec),
                value_us: to_us(vsec, vusec),
            });
        }
    }
    Ok(out)
}

/// Arms the timers again with the time they had left at dump.
pub fn restore(s: &mut Session, timers: &[ITimer]) -> Result<()> {
    for t in timers {
        let words = [
            t.interval_us / 1_000_000,
            t.interval_us % 1_000_000,
            t.value_us / 1_000_000,
            t.value_us % 1_000_000,
        ];
        // A timer about to fire at dump still fires (a zero value would disarm it).
        let words = if words[2] == 0 && words[3] == 0 {
            [words[0], words[1], 0, 1]
        } else {
            words
        };
        set(s, t.which, words)?;
        if t.which != libc::ITIMER_REAL {
            // The kernel adds one tick to a CPU-time timer's first expiry: measure it
            // (the task is stopped, so its CPU clock stands still) and take it off.
            let got = get(s, t.which)?;
            let (want, now) = (to_us(words[2], words[3]), to_us(got[2], got[3]));
            if now > want && want > now - want {
                let v = want - (now - want);
                set(
                    s,
                    t.which,
                    [words[0], words[1], v / 1_000_000, v % 1_000_000],
                )?;
            }
        }
    }
    Ok(())
}

fn set(s: &mut Session, which: i32, words: [u64; 4]) -> Result<()> {
    let addr = s.put(0, &inject::words(&words))?;
    s.call(
        "setitimer",
        libc::SYS_setitimer,
        [which as u64, addr, 0, 0, 0, 0],
    )?;
    Ok(())
}

fn get(s: &mut Session, which: i32) -> Result<[u64; 4]> {
    let addr = s.data_addr();
    s.call(
        "getitimer",
        libc::SYS_getitimer,
        [which as u64, addr, 0, 0, 0, 0],
    )?;
    let b = s.get(0, 32)?;
    Ok([
        inject::word_at(&b, 0),
        inject::word_at(&b, 1),
        inject::word_at(&b, 2),
        inject::word_at(&b, 3),
    ])
}

/// POSIX timers (timer_create) cannot be saved yet: refuse rather than drop them.
pub fn refuse_posix_timers(pid: i32) -> Result<()> {
    let timers = std::fs::read_to_string(format!("/proc/{pid}/timers")).unwrap_or_default();
    if let Some(id) = timers.lines().find_map(|l| l.strip_prefix("ID: ")) {
        return Err(Error::Unsupported {
            pid,
            object: format!("POSIX timer {}", id.trim()),
            detail: "timers made with timer_create are not supported yet".into(),
        });
    }
    Ok(())
}
