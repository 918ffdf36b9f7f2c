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
