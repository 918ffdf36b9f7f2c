//! Pseudo-terminals.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use crate::{Errno, SysError, SysResult};

/// Opens a new pseudo-terminal: its master (O_RDWR | O_NOCTTY | O_CLOEXEC), granted and
/// unlocked, and the path of its slave (e.g. /dev/pts/3), which the caller opens itself.
pub fn open_pty() -> SysResult<(OwnedFd, PathBuf)> {
    // SAFETY: posix_openpt takes flags only; the returned fd is owned below.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(SysError::last("posix_openpt", "O_RDWR|O_NOCTTY|O_CLOEXEC"));
    }
    // SAFETY: m is a fresh descriptor that nothing else owns; the OwnedFd closes it on
    // every return path below.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let fd = master.as_raw_fd();
    // SAFETY: grantpt takes a descriptor only; `master` keeps it open.
    if unsafe { libc::grantpt(fd) } != 0 {
        return Err(SysError::last("grantpt", format!("fd {fd}")));
    }
    // SAFETY: unlockpt takes a descriptor only; `master` keeps it open.
    if unsafe { libc::unlockpt(fd) } != 0 {
        return Err(SysError::last("unlockpt", format!("fd {fd}")));
    }
    let mut name = [0u8; 128];
    // SAFETY: ptsname_r writes at most name.len() bytes, NUL included, into `name`, a
    // local buffer that outlives the call (c_char and u8 have the same layout).
    let r = unsafe { libc::ptsname_r(fd, name.as_mut_ptr().cast(), name.len()) };
    if r != 0 {
        // ptsname_r returns the error number (and may not set errno).
        return Err(SysError::new("ptsname_r", format!("fd {fd}"), Errno(r)));
    }
    let slave = CStr::from_bytes_until_nul(&name)
        .map_err(|_| SysError::new("ptsname_r", format!("fd {fd}"), Errno(libc::ERANGE)))?;
    let slave = PathBuf::from(slave.to_string_lossy().into_owned());
    Ok((master, slave))
}

/// The size of the kernel's `struct termios2` (TCGETS2/TCSETS2), kept as raw bytes.
pub const TERMIOS2_LEN: usize = 44;

fn ioctl_int_out(fd: i32, req: libc::c_ulong, name: &'static str) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these requests write one int through the pointer.
    let r = unsafe { libc::ioctl(fd, req, &mut v as *mut libc::c_int) };
    if r < 0 {
        return Err(SysError::last(name, format!("fd {fd}")));
    }
    Ok(v)
}

fn ioctl_int_in(fd: i32, req: libc::c_ulong, v: i32, name: &'static str) -> SysResult<()> {
    // SAFETY: these requests read one int through the pointer.
    let r = unsafe { libc::ioctl(fd, req, &v as *const libc::c_int) };
    if r < 0 {
        return Err(SysError::last(name, format!("fd {fd} = {v}")));
    }
    Ok(())
}

/// The index N of a pty master's slave (/dev/pts/N).
pub fn pty_index(master: i32) -> SysResult<u32> {
    ioctl_int_out(master, libc::TIOCGPTN, "ioctl(TIOCGPTN)").map(|v| v as u32)
}

/// Whether the slave of a pty master is locked (cannot be opened).
pub fn pty_locked(master: i32) -> SysResult<bool> {
    ioctl_int_out(master, libc::TIOCGPTLCK, "ioctl(TIOCGPTLCK)").map(|v| v != 0)
}

pub fn set_pty_locked(master: i32, locked: bool) -> SysResult<()> {
    ioctl_int_in(master, libc::TIOCSPTLCK, locked as i32, "ioctl(TIOCSPTLCK)")
}

/// Whether a pty master is in packet mode.
pub fn pty_packet(master: i32) -> SysResult<bool> {
    ioctl_int_out(master, libc::TIOCGPKT, "ioctl(TIOCGPKT)").map(|v| v != 0)
}

pub fn set_pty_packet(master: i32, on: bool) -> SysResult<()> {
    ioctl_int_in(master, libc::TIOCPKT, on as i32, "ioctl(TIOCPKT)")
}

/// Bytes waiting to be read on a terminal descriptor (on a master: what the slave wrote).
pub fn tty_inq(fd: i32) -> SysResult<i32> {
    ioctl_int_out(fd, libc::FIONREAD, "ioctl(FIONREAD)")
}

/// The session whose controlling terminal this is (asked through the master), if any.
pub fn tty_session(master: i32) -> SysResult<Option<i32>> {
    match ioctl_int_out(master, libc::TIOCGSID, "ioctl(TIOCGSID)") {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.errno.0 == libc::ENOTTY => Ok(None),
        Err(e) => Err(e),
    }
}

/// The foreground process group (asked through the master; 0 if none).
pub fn tty_foreground(master: i32) -> SysResult<i32> {
    ioctl_int_out(master, libc::TIOCGPGRP, "ioctl(TIOCGPGRP)")
}

/// Sets the foreground process group; through a master this needs no controlling
/// terminal, only a group of the terminal's session.
pub fn set_tty_foreground(fd: i32, pgrp: i32) -> SysResult<()> {
    ioctl_int_in(fd, libc::TIOCSPGRP, pgrp, "ioctl(TIOCSPGRP)")
}

/// Makes the terminal `fd` the caller's controlling terminal (a session leader without one).
pub fn set_controlling_tty(fd: i32) -> SysResult<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(SysError::last("ioctl(TIOCSCTTY)", format!("fd {fd}")));
    }
    Ok(())
}

/// The terminal settings (`struct termios2`) as raw bytes; through a master, the slave's.
pub fn termios(fd: i32) -> SysResult<Vec<u8>> {
    let mut buf = [0u8; TERMIOS2_LEN];
    // SAFETY: TCGETS2 writes one struct termios2 (TERMIOS2_LEN bytes) into `buf`.
    let r = unsafe { libc::ioctl(fd, libc::TCGETS2, buf.as_mut_ptr()) };
    if r < 0 {
        return Err(SysError::last("ioctl(TCGETS2)", format!("fd {fd}")));
    }
    Ok(buf.to_vec())
}

pub fn set_termios(fd: i32, raw: &[u8]) -> SysResult<()> {
    if raw.len() != TERMIOS2_LEN {
        return Err(SysError::new(
            "ioctl(TCSETS2)",
            format!("fd {fd}: {} bytes of termios", raw.len()),
            Errno(libc::EINVAL),
        ));
    }
    // SAFETY: TCSETS2 reads one struct termios2 (TERMIOS2_LEN bytes) from `raw`.
    let r = unsafe { libc::ioctl(fd, libc::TCSETS2, raw.as_ptr()) };
    if r < 0 {
        return Err(SysError::last("ioctl(TCSETS2)", format!("fd {fd}")));
    }
    Ok(())
}

/// Window size: rows, columns, x pixels, y pixels.
pub fn winsize(fd: i32) -> SysResult<[u16; 4]> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w as *mut libc::winsize) };
    if r < 0 {
        return Err(SysError::last("ioctl(TIOCGWINSZ)", format!("fd {fd}")));
    }
    Ok([w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel])
}

pub fn set_winsize(fd: i32, ws: [u16; 4]) -> SysResult<()> {
    let w = libc::winsize {
        ws_row: ws[0],
        ws_col: ws[1],
        ws_xpixel: ws[2],
        ws_ypixel: ws[3],
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &w as *const libc::winsize) };
    if r < 0 {
        return Err(SysError::last("ioctl(TIOCSWINSZ)", format!("fd {fd}")));
    }
    Ok(())
}

/// Opens a new pty master (O_RDWR | O_NOCTTY | O_CLOEXEC plus `flags`), unlocked.
pub fn open_master(flags: i32) -> SysResult<i32> {
    let path = c"/dev/ptmx";
    // SAFETY: a NUL-terminated path and integer flags.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | flags,
        )
    };
    if fd < 0 {
        return Err(SysError::last("open", "/dev/ptmx"));
    }
    if let Err(e) = set_pty_locked(fd, false) {
        // SAFETY: closing the descriptor we just opened.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

/// TIOCGDEV: the device of the terminal behind `fd` (for /dev/tty, the terminal it
/// stands for).
pub fn real_device(fd: i32) -> SysResult<u64> {
    let mut dev: libc::c_uint = 0;
    // SAFETY: TIOCGDEV writes one unsigned int into `dev`, which outlives the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGDEV, &mut dev as *mut libc::c_uint) };
    if r < 0 {
        return Err(SysError::last("ioctl(TIOCGDEV)", format!("fd {fd}")));
    }
    // The kernel's "new" encoding: minor in bits 0-7 and 20-31, major in bits 8-19.
    let major = (dev >> 8) & 0xfff;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    Ok(libc::makedev(major, minor))
}

/// Opens /dev/tty as the pty slave at `slave` with `flags` and puts the new description
/// at descriptor `at` (close-on-exec). Only a process whose controlling terminal it is
/// can open /dev/tty for a terminal, so a short-lived child that shares our descriptor
/// table makes a session of its own, takes the slave as its controlling terminal, opens
/// /dev/tty at `at` and ends; ending lets the terminal go again for the session that
/// takes it later.
pub fn open_dev_tty_at(slave: &std::path::Path, flags: i32, at: i32) -> SysResult<()> {
    let what = || format!("/dev/tty of {} at fd {at}", slave.display());
    let slave_c = std::ffi::CString::new(slave.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::new("open", what(), Errno(libc::EINVAL)))?;
    let flags = flags & !libc::O_CREAT;
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child runs on its own
    // copy of our memory and sees our descriptor table (CLONE_FILES). It makes only raw
    // system calls on data prepared before the clone, and leaves with _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_FILES | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: raw system calls on NUL-terminated strings made before the clone; every
        // path ends in _exit with errno (or 0) as the status.
        unsafe {
            let fail = || libc::_exit(*libc::__errno_location() & 0xff);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            if libc::setsid() < 0 {
                fail();
            }
            let s = libc::open(
                slave_c.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            if s < 0 || libc::ioctl(s, libc::TIOCSCTTY, 0) < 0 {
                fail();
            }
            let t = libc::open(c"/dev/tty".as_ptr(), flags | libc::O_CLOEXEC);
            if t < 0 || libc::dup3(t, at, libc::O_CLOEXEC) < 0 {
                fail();
            }
            libc::close(t);
            libc::close(s);
            libc::_exit(0);
        }
    }
    if pid < 0 {
        return Err(SysError::last("clone(CLONE_FILES)", what()));
    }
    let mut status = 0;
    // SAFETY: waits for the child made above; `status` outlives the call.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    if r < 0 {
        return Err(SysError::last("waitpid", what()));
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, errno) => Err(SysError::new("open", what(), Errno(errno))),
        _ => Err(SysError::new("open", what(), Errno(libc::ECHILD))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_pty_whose_slave_exists() {
        let (master, slave) = open_pty().expect("open_pty");
        assert!(master.as_raw_fd() >= 0);
        assert!(slave.starts_with("/dev/pts"), "{}", slave.display());
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&slave)
            .expect("open the slave");
    }
}
