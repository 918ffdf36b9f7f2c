//! Timers: interval timers (setitimer) and POSIX timers (timer_create).

use stasis_image::{ITimer, PosixTimer};

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

// ---- POSIX timers (timer_create) ----

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
/// prctl(PR_TIMER_CREATE_RESTORE_IDS, ON/OFF) (Linux 6.17): while on, timer_create takes
/// the id to use from `*timerid`.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// The timers `/proc/PID/timers` lists, without their times (see [`dump_posix`]).
/// Refuses what cannot be created again the same way.
pub fn list_posix(pid: i32, tids: &[i32]) -> Result<Vec<PosixTimer>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/timers")) {
        Ok(t) => t,
        // A kernel without the file (no CONFIG_CHECKPOINT_RESTORE) shows no timers.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::warn!("pid {pid}: no /proc/{pid}/timers: POSIX timers cannot be seen");
            String::new()
        }
        Err(e) => {
            return Err(Error::Unsupported {
                pid,
                object: "POSIX timers".into(),
                detail: format!("cannot read /proc/{pid}/timers: {e}"),
            })
        }
    };
    let timers = parse_proc_timers(&text).map_err(|detail| Error::Unsupported {
        pid,
        object: "POSIX timers".into(),
        detail,
    })?;
    for t in &timers {
        // A thread CPU-time timer counts the thread that made it, which /proc does not say.
        if counts_its_creator(t.clock) && tids.len() > 1 {
            return Err(Error::Unsupported {
                pid,
                object: format!("POSIX timer {}", t.id),
                detail: "a CLOCK_THREAD_CPUTIME_ID timer in a multi-threaded process (which thread's clock it counts is not visible)".into(),
            });
        }
    }
    for t in &timers {
        if t.notify & SIGEV_THREAD_ID != 0 && !tids.contains(&t.target_tid) {
            return Err(Error::Unsupported {
                pid,
                object: format!("POSIX timer {}", t.id),
                detail: format!(
                    "it signals thread {}, which is not a thread of the process (gone?)",
                    t.target_tid
                ),
            });
        }
    }
    Ok(timers)
}

/// Whether a clock id is the CPU time of "the calling thread": CLOCK_THREAD_CPUTIME_ID, or
/// the encoded form glibc passes (per-thread CPU clock of pid 0).
fn counts_its_creator(clock: i32) -> bool {
    const CPUCLOCK_PERTHREAD_MASK: i32 = 4;
    clock == CLOCK_THREAD_CPUTIME_ID
        || (clock < 0 && clock & CPUCLOCK_PERTHREAD_MASK != 0 && !(clock >> 3) == 0)
}

/// Parses `/proc/PID/timers`: blocks of `ID:`, `signal: SIGNO/VALUE`, `notify:
/// KIND/pid|tid.N`, `ClockID:`.
fn parse_proc_timers(text: &str) -> std::result::Result<Vec<PosixTimer>, String> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let bad = || format!("unexpected line in /proc/PID/timers: {line:?}");
        if key == "ID" {
            out.push(PosixTimer {
                id: val.parse().map_err(|_| bad())?,
                ..Default::default()
            });
            continue;
        }
        let Some(t) = out.last_mut() else {
            return Err(bad());
        };
        match key {
            "signal" => {
                let (signo, value) = val.split_once('/').ok_or_else(bad)?;
                t.signo = signo.parse().map_err(|_| bad())?;
                let value = value.trim_start_matches("0x");
                t.value = u64::from_str_radix(value, 16).map_err(|_| bad())?;
            }
            "notify" => {
                let (kind, target) = val.split_once('/').ok_or_else(bad)?;
                t.notify = match kind {
                    "signal" => SIGEV_SIGNAL,
                    "none" => SIGEV_NONE,
                    "thread" => SIGEV_THREAD,
                    _ => return Err(bad()),
                };
                if let Some(tid) = target.strip_prefix("tid.") {
                    t.notify |= SIGEV_THREAD_ID;
                    t.target_tid = tid.parse().map_err(|_| bad())?;
                }
            }
            "ClockID" => t.clock = val.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok(out)
}

/// Fills in each timer's time left, period and overrun (timer_gettime, timer_getoverrun
/// in the task).
pub fn dump_posix(s: &mut Session, timers: &mut [PosixTimer]) -> Result<()> {
    for t in timers.iter_mut() {
        let addr = s.data_addr();
        s.call(
            "timer_gettime",
            libc::SYS_timer_gettime,
            [t.id as u64, addr, 0, 0, 0, 0],
        )?;
        let b = s.get(0, 32)?;
        let ns = |i: usize| inject::word_at(&b, i) * 1_000_000_000 + inject::word_at(&b, i + 1);
        t.interval_ns = ns(0);
        t.value_ns = ns(2);
        t.overrun = s.call(
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            [t.id as u64, 0, 0, 0, 0, 0],
        )? as i32;
    }
    Ok(())
}

/// Creates the timers again with their ids (every thread they target must exist), and
/// arms them relative to now with the time they had left.
pub fn restore_posix(s: &mut Session, timers: &[PosixTimer]) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let pid = s.pid();
    let on = s.call_raw(
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
    )?;
    if on < 0 {
        return Err(Error::Restore {
            pid,
            reason: format!(
                "POSIX timers need prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.17 or later) to get their ids back: errno {}",
                -on
            ),
        });
    }
    let created = create_all(s, timers);
    let off = s.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
    );
    created?;
    off?;
    for t in timers.iter().filter(|t| t.value_ns != 0) {
        let sec = 1_000_000_000;
        let words = [
            t.interval_ns / sec,
            t.interval_ns % sec,
            t.value_ns / sec,
            t.value_ns % sec,
        ];
        let addr = s.put(0, &inject::words(&words))?;
        s.call(
            "timer_settime",
            libc::SYS_timer_settime,
            [t.id as u64, 0, addr, 0, 0, 0],
        )?;
    }
    Ok(())
}

fn create_all(s: &mut Session, timers: &[PosixTimer]) -> Result<()> {
    for t in timers {
        // struct sigevent (64 bytes): sigev_value, sigev_signo, sigev_notify, then the
        // union whose first int is the target thread.
        let mut ev = [0u8; 64];
        ev[0..8].copy_from_slice(&t.value.to_le_bytes());
        ev[8..12].copy_from_slice(&t.signo.to_le_bytes());
        ev[12..16].copy_from_slice(&t.notify.to_le_bytes());
        ev[16..20].copy_from_slice(&t.target_tid.to_le_bytes());
        let ev_addr = s.put(0, &ev)?;
        let id_addr = s.put(64, &t.id.to_le_bytes())?;
        s.call(
            "timer_create",
            libc::SYS_timer_create,
            [t.clock as i64 as u64, ev_addr, id_addr, 0, 0, 0],
        )?;
        let got = s.get(64, 4)?;
        let got = i32::from_le_bytes(got.try_into().expect("4 bytes"));
        if got != t.id {
            return Err(Error::Restore {
                pid: s.pid(),
                reason: format!("POSIX timer {} came back with id {got}", t.id),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_timers() {
        let text = "ID: 0\nsignal: 14/00000000deadbeef\nnotify: signal/pid.100\nClockID: 0\n\
                    ID: 7\nsignal: 34/0000000000000000\nnotify: signal/tid.101\nClockID: 1\n\
                    ID: 9\nsignal: 0/0000000000000000\nnotify: none/pid.100\nClockID: 2\n";
        let t = parse_proc_timers(text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].id, t[0].signo, t[0].value, t[0].notify),
            (0, 14, 0xdeadbeef, 0)
        );
        assert_eq!(
            (t[1].id, t[1].notify, t[1].target_tid, t[1].clock),
            (7, 4, 101, 1)
        );
        assert_eq!((t[2].notify, t[2].clock), (SIGEV_NONE, 2));
        assert!(parse_proc_timers("signal: 1/0\n").is_err());
    }

    #[test]
    fn thread_clocks_of_the_caller() {
        assert!(counts_its_creator(3));
        assert!(counts_its_creator(-2)); // glibc's CLOCK_THREAD_CPUTIME_ID
        assert!(!counts_its_creator(-6)); // glibc's CLOCK_PROCESS_CPUTIME_ID
        assert!(!counts_its_creator((!100 << 3) | 6)); // thread 100's clock, by tid
        assert!(!counts_its_creator(2));
    }
}
