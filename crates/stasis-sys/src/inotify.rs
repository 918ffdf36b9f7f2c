//! inotify instances: what a watch refers to (its file handle, turned back into a path)
//! and making watches with chosen watch descriptors.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Errno, SysError, SysResult};

/// The path (as seen from here) of the file that a file handle on device `major:minor`
/// refers to: the device's mount is found in /proc/self/mountinfo and the handle opened
/// with open_by_handle_at (needs CAP_DAC_READ_SEARCH).
pub fn path_of_handle(
    major: u32,
    minor: u32,
    handle_type: i32,
    handle: &[u8],
) -> SysResult<String> {
    let what = || format!("file handle on device {major}:{minor}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        SysError::new(
            "read",
            "/proc/self/mountinfo",
            Errno(e.raw_os_error().unwrap_or(0)),
        )
    })?;
    let dev = format!("{major}:{minor}");
    let mount = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[2] == dev).then(|| f[4].to_string())
        })
        .next()
        .ok_or_else(|| SysError::new("mountinfo", what(), Errno(libc::ENODEV)))?;
    let c = CString::new(mount.as_bytes())
        .map_err(|_| SysError::new("mount", what(), Errno(libc::EINVAL)))?;
    // open_by_handle_at refuses an O_PATH mount descriptor (EBADF): open it for reading.
    // SAFETY: NUL-terminated path, flags only.
    let mfd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if mfd < 0 {
        return Err(SysError::last("open", mount));
    }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&handle_type.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: `buf` is a complete struct file_handle (size, type, bytes) that outlives
    // the call; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mfd,
            buf.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    let err = Errno::last();
    crate::own::close(mfd);
    if fd < 0 {
        return Err(SysError::new("open_by_handle_at", what(), err));
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    crate::own::close(fd as i32);
    path.map(|p| p.display().to_string())
        .map_err(|e| SysError::new("readlink", what(), Errno(e.raw_os_error().unwrap_or(0))))
}

/// inotify_init1.
pub fn init(flags: i32) -> SysResult<i32> {
    // SAFETY: flags only.
    let r = unsafe { libc::inotify_init1(flags) };
    if r < 0 {
        return Err(SysError::last("inotify_init1", format!("flags {flags:#x}")));
    }
    Ok(r)
}

/// inotify_add_watch: the watch descriptor.
pub fn add_watch(fd: i32, path: &Path, mask: u32) -> SysResult<i32> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        SysError::new(
            "inotify_add_watch",
            path.display().to_string(),
            Errno(libc::EINVAL),
        )
    })?;
    // SAFETY: NUL-terminated path.
    let r = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
    if r < 0 {
        return Err(SysError::last(
            "inotify_add_watch",
            path.display().to_string(),
        ));
    }
    Ok(r)
}

pub fn rm_watch(fd: i32, wd: i32) -> SysResult<()> {
    // SAFETY: integers only.
    if unsafe { libc::inotify_rm_watch(fd, wd) } < 0 {
        return Err(SysError::last("inotify_rm_watch", format!("wd {wd}")));
    }
    Ok(())
}

/// Reads and drops every queued event (the instance must be non-blocking).
pub fn drain(fd: i32) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a local buffer of its length.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return;
        }
    }
}
