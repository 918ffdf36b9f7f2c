//! Pseudo-terminals whose master is in the tree: the pair is made again as a new pty
//! (with the same index when that is free, else another), with its settings, window size, the bytes queued either way,
//! and, for a session whose controlling terminal it is, that and the foreground group.
//! A slave whose master is outside the tree is the caller's terminal (`chardev`,
//! `--shell-job`).
//!
//! Terminals cannot be peeked: the queued bytes are read at dump (from our own
//! descriptors) and written straight back with output or input processing switched off
//! for the moment, so the pty is left as it was.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use stasis_image::{FdImage, FileKind};
use stasis_sys::{own, process, pty};

use super::{open_flags, place, place_copy, ChildResult, FdProbe, Kind, KindState, Reopen};
use crate::error::{Error, Result, SysContext};

const PTMX_MAJOR: u32 = 5;
const PTMX_MINOR: u32 = 2;
const PTS_MAJOR: u32 = 136;
const DEV_TTY_MAJOR: u32 = 5;
const DEV_TTY_MINOR: u32 = 0;

// termios2 field offsets and flags.
const IFLAG: usize = 0;
const OFLAG: usize = 4;
const LFLAG: usize = 12;
const CC: usize = 17;

/// How many bytes of `data` end with a line terminator of canonical mode (newline, VEOL,
/// VEOL2): what a reader in canonical mode can read; the rest is a line being typed.
fn complete_lines(termios: &[u8], data: &[u8]) -> usize {
    let cc = |i: usize| termios.get(CC + i).copied().unwrap_or(0);
    let (eol, eol2) = (cc(libc::VEOL), cc(libc::VEOL2));
    data.iter()
        .rposition(|&b| b == b'\n' || (b != 0 && (b == eol || b == eol2)))
        .map_or(0, |i| i + 1)
}

fn flag(t: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(t[at..at + 4].try_into().expect("4 bytes"))
}

fn with_flag(t: &[u8], at: usize, v: u32) -> Vec<u8> {
    let mut out = t.to_vec();
    out[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    out
}

/// The index of the pty a slave device number names, if it is one.
pub fn slave_index(rdev: u64) -> Option<u32> {
    (libc::major(rdev) == PTS_MAJOR).then_some(libc::minor(rdev))
}

/// Whether the device is the pty multiplexer (a master when opened).
pub fn is_master(rdev: u64) -> bool {
    libc::major(rdev) == PTMX_MAJOR && libc::minor(rdev) == PTMX_MINOR
}

pub fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if !p.is_char_device() {
        return Ok(None);
    }
    let mut rdev = p.meta.rdev();
    let dev_tty = rdev == libc::makedev(DEV_TTY_MAJOR, DEV_TTY_MINOR);
    if dev_tty {
        // /dev/tty stands for the terminal that was the opener's controlling terminal.
        let local = process::pidfd_getfd(p.pid, p.fd)
            .ctx(p.pid, || format!("fd {} ({})", p.fd, p.target))?;
        rdev = pty::real_device(local.raw()).ctx(p.pid, || format!("fd {} (/dev/tty)", p.fd))?;
    }
    if let Some(index) = slave_index(rdev) {
        if p.pty_masters.contains(&index) {
            return Ok(Some(FileKind::PtySlave { index, dev_tty }));
        }
        return Ok(None); // the caller's terminal, or another outside the tree
    }
    if dev_tty {
        return Ok(None);
    }
    if !is_master(rdev) {
        return Ok(None);
    }
    let local =
        process::pidfd_getfd(p.pid, p.fd).ctx(p.pid, || format!("fd {} ({})", p.fd, p.target))?;
    let m = local.raw();
    let ctx = || format!("fd {} (pty master)", p.fd);
    let index = pty::pty_index(m).ctx(p.pid, ctx)?;
    let termios = pty::termios(m).ctx(p.pid, ctx)?;
    let locked = pty::pty_locked(m).ctx(p.pid, ctx)?;
    let packet = pty::pty_packet(m).ctx(p.pid, ctx)?;
    let (output, input) = if locked {
        (Vec::new(), Vec::new()) // nobody could have opened the slave
    } else {
        queued(p, m, index, &termios, packet)?
    };
    Ok(Some(FileKind::PtyMaster {
        index,
        winsize: pty::winsize(m).ctx(p.pid, ctx)?,
        locked,
        packet,
        session: pty::tty_session(m).ctx(p.pid, ctx)?,
        foreground: pty::tty_foreground(m).unwrap_or(0),
        termios,
        output,
        input,
    }))
}

/// A pty whose master is in the tree comes back as a new pty: a process outside the tree
/// that holds its slave would be left on the old one, cut off. Refused by name.
pub fn refuse_slave_outside(index: u32, tree: &[i32]) -> Result<()> {
    let slave = format!("/dev/pts/{index}");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Ok(());
    };
    let me = std::process::id() as i32;
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| !tree.contains(p) && *p != me)
    {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == slave.as_str()) {
                return Err(Error::Unsupported {
                    pid: tree.first().copied().unwrap_or(pid),
                    object: format!("pty {slave} (its master is in the dumped tree)"),
                    detail: format!(
                        "its slave is also held by pid {pid}, outside the dumped tree (fd {})",
                        fd.file_name().to_string_lossy()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Reads what is queued either way and writes it back at once.
fn queued(
    p: &FdProbe,
    m: i32,
    index: u32,
    termios: &[u8],
    packet: bool,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let ctx = || format!("fd {} (pty master of /dev/pts/{index})", p.fd);
    let slave_path = format!("/dev/pts/{index}");
    let slave = own::open(
        Path::new(&slave_path),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
        0,
    )
    .ctx(p.pid, ctx)?;
    let slave = Closing(slave);
    let out_len = pty::tty_inq(m).ctx(p.pid, ctx)? as usize;
    if out_len > 0 && packet {
        return Err(p.unsupported(
            "a pty master in packet mode with output not yet read (not supported yet)",
        ));
    }
    // In canonical mode only whole lines count as queued. With canonical mode off for a
    // moment the line being typed is readable too: the kernel keeps the bytes and only
    // counts them another way. They go back with canonical processing (put_back_input).
    let canonical = flag(termios, LFLAG) & libc::ICANON != 0;
    if canonical {
        let plain = flag(termios, LFLAG) & !libc::ICANON;
        pty::set_termios(m, &with_flag(termios, LFLAG, plain)).ctx(p.pid, ctx)?;
    }
    let in_len = pty::tty_inq(slave.0).ctx(p.pid, ctx)? as usize;
    if canonical && in_len == 0 {
        pty::set_termios(m, termios).ctx(p.pid, ctx)?;
    }
    let output = if out_len > 0 {
        let data = own::read_some(m, out_len).ctx(p.pid, ctx)?;
        put_back_output(m, slave.0, termios, &data).ctx(p.pid, ctx)?;
        data
    } else {
        Vec::new()
    };
    let input = if in_len > 0 {
        let data = own::read_some(slave.0, in_len).ctx(p.pid, ctx)?;
        put_back_input(m, slave.0, termios, &data).ctx(p.pid, ctx)?;
        data
    } else {
        Vec::new()
    };
    Ok((output, input))
}

struct Closing(i32);

impl Drop for Closing {
    fn drop(&mut self) {
        own::close(self.0);
    }
}

/// Waits until `fd` has `want` bytes to read (the tty layer moves bytes asynchronously).
fn settle(fd: i32, want: usize) -> stasis_sys::SysResult<()> {
    let start = Instant::now();
    while (pty::tty_inq(fd)? as usize) < want && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Writes `data` on the slave so that the master has it to read, without output
/// processing; then the settings `termios` again.
fn put_back_output(m: i32, slave: i32, termios: &[u8], data: &[u8]) -> stasis_sys::SysResult<()> {
    let before = pty::tty_inq(m)? as usize;
    pty::set_termios(m, &with_flag(termios, OFLAG, 0))?;
    let r = own::write_all(slave, data).and_then(|_| settle(m, before + data.len()));
    pty::set_termios(m, termios)?;
    r
}

/// Writes `data` on the master so that the slave has it to read, without input
/// processing, echo or signals, but in canonical mode if `termios` has it (so that whole
/// lines are lines again and a line being typed is still being typed); then the settings
/// `termios` again. The slave must have nothing queued (canonical mode is switched).
fn put_back_input(m: i32, slave: i32, termios: &[u8], data: &[u8]) -> stasis_sys::SysResult<()> {
    let quiet = flag(termios, LFLAG) & !(libc::ECHO | libc::ECHONL | libc::ISIG | libc::IEXTEN);
    let raw = with_flag(&with_flag(termios, IFLAG, 0), LFLAG, quiet);
    let canonical = quiet & libc::ICANON != 0;
    let countable = if canonical {
        complete_lines(termios, data)
    } else {
        data.len()
    };
    pty::set_termios(m, &raw)?;
    let r = own::write_all(m, data)
        .and_then(|_| settle(slave, countable))
        // A poll with nothing readable waits for the tty layer to take in what is in
        // flight: a line being typed, which no count shows.
        .and_then(|_| own::poll_readable(slave, 0).map(drop));
    // Setting the termios waits until the tty layer is done with what it is taking in.
    pty::set_termios(m, termios)?;
    r
}

/// A pty made at restore: its master (above the slots) and the index it got.
struct NewPty {
    old_index: u32,
    new_index: u32,
    master: i32,
    file: FdImage,
}

pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::PtyMaster { .. } | FileKind::PtySlave { .. }),
    open,
    finish: finish_all,
    ..Kind::NONE
};

/// Puts a master or slave at `at`; the first side of a pty to be opened makes the pty.
fn open(f: &FdImage, at: i32, r: &Reopen, state: &mut KindState) -> ChildResult {
    let (FileKind::PtyMaster { index, .. } | FileKind::PtySlave { index, .. }) = f.file else {
        return Err(format!("fd {}: not a pty", f.fd));
    };
    let ptys = state.of::<Vec<NewPty>>();
    if !ptys.iter().any(|p| p.old_index == index) {
        let master = r
            .find(|k| matches!(*k, FileKind::PtyMaster { index: i, .. } if i == index))
            .ok_or_else(|| format!("fd {}: the master of pty {index} is not in the image", f.fd))?;
        let mut made = create(master)?;
        made.master = r.park(made.master, f)?;
        ptys.push(made);
    }
    let Some(p) = ptys.iter().find(|p| p.old_index == index) else {
        return Err(format!("fd {}: pty {index} was not made", f.fd));
    };
    match f.file {
        FileKind::PtyMaster { .. } => place_copy(p.master, at, f),
        FileKind::PtySlave { dev_tty: true, .. } => {
            let path = format!("/dev/pts/{}", p.new_index);
            pty::open_dev_tty_at(Path::new(&path), open_flags(f), at)
                .map_err(|e| format!("fd {} (/dev/tty of the pty now at {path}): {e}", f.fd))
        }
        _ => place(open_slave(p, f, open_flags(f))?, at, f),
    }
}

/// Gives each pty made its state (`finish`), then closes the root's masters.
fn finish_all(_: &Reopen, state: &mut KindState) -> ChildResult {
    let ptys = std::mem::take(state.of::<Vec<NewPty>>());
    let done = finish(&ptys);
    for p in ptys {
        own::close(p.master);
    }
    done
}

/// Makes the pty of master `f` (its state comes in `finish`).
fn create(f: &FdImage) -> ChildResult<NewPty> {
    let FileKind::PtyMaster { index, .. } = &f.file else {
        return Err(format!("fd {}: not a pty master", f.fd));
    };
    let err =
        |e: stasis_sys::SysError| format!("fd {} (pty master of /dev/pts/{index}): {e}", f.fd);
    // The kernel gives the lowest free index: hold the ones below the old index until we
    // get it, or a higher one when it is taken.
    let mut below: Vec<i32> = Vec::new();
    let opened = loop {
        let made = pty::open_master(f.flags as i32 & libc::O_NONBLOCK).and_then(|m| {
            pty::pty_index(m)
                .map(|i| (m, i))
                .inspect_err(|_| own::close(m))
        });
        match made {
            Ok((m, got)) if got < *index && below.len() < 4096 => below.push(m),
            other => break other,
        }
    };
    for m in below {
        own::close(m);
    }
    let (master, new_index) = opened.map_err(err)?;
    Ok(NewPty {
        old_index: *index,
        new_index,
        master,
        file: f.clone(),
    })
}

/// Opens the slave `f` of the pty made as `p`.
fn open_slave(p: &NewPty, f: &FdImage, flags: i32) -> ChildResult<i32> {
    let path = format!("/dev/pts/{}", p.new_index);
    own::open(Path::new(&path), flags | libc::O_NOCTTY, 0)
        .map_err(|e| format!("fd {} (pty slave, now {path}): {e}", f.fd))
}

/// Gives each new pty its queued bytes and settings.
fn finish(ptys: &[NewPty]) -> ChildResult {
    for p in ptys {
        let FileKind::PtyMaster {
            termios,
            winsize,
            locked,
            packet,
            output,
            input,
            ..
        } = &p.file.file
        else {
            continue;
        };
        let err = |e: stasis_sys::SysError| {
            format!(
                "pty master of /dev/pts/{} (now {}): {e}",
                p.old_index, p.new_index
            )
        };
        if !output.is_empty() || !input.is_empty() {
            let path = format!("/dev/pts/{}", p.new_index);
            let slave = own::open(
                Path::new(&path),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
                0,
            )
            .map_err(err)?;
            let slave = Closing(slave);
            if !output.is_empty() {
                put_back_output(p.master, slave.0, termios, output).map_err(err)?;
            }
            if !input.is_empty() {
                put_back_input(p.master, slave.0, termios, input).map_err(err)?;
            }
        }
        pty::set_termios(p.master, termios).map_err(err)?;
        pty::set_winsize(p.master, *winsize).map_err(err)?;
        if *packet {
            pty::set_pty_packet(p.master, true).map_err(err)?;
        }
        if *locked {
            pty::set_pty_locked(p.master, true).map_err(err)?;
        }
    }
    Ok(())
}

/// For a session leader whose controlling terminal is a pty of the image: takes it (the
/// master is at `master_slot`). Runs in the restored process, after setsid.
pub fn take_controlling(master_slot: i32) -> ChildResult {
    let err = |e: stasis_sys::SysError| format!("controlling terminal: {e}");
    let index = pty::pty_index(master_slot).map_err(err)?;
    let path = format!("/dev/pts/{index}");
    let fd = own::open(Path::new(&path), libc::O_RDWR | libc::O_NOCTTY, 0).map_err(err)?;
    let r = pty::set_controlling_tty(fd).map_err(err);
    own::close(fd);
    r
}

/// Puts group `pgrp` in the foreground of the pty whose master is at `master_slot` (the
/// caller's controlling terminal).
pub fn set_foreground_here(master_slot: i32, pgrp: i32) -> ChildResult {
    pty::set_tty_foreground(master_slot, pgrp)
        .map_err(|e| format!("foreground process group {pgrp}: {e}"))
}
