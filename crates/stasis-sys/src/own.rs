//! Operations on the calling process: what a freshly forked restore child does to itself
//! before the tool takes it over with ptrace (file table, cwd, root, umask, session...).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Errno, SysError, SysResult};

fn cstr(path: &Path) -> SysResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SysError::new("path", path.display().to_string(), Errno(libc::EINVAL)))
}

fn check(
    r: libc::c_long,
    call: &'static str,
    what: impl FnOnce() -> String,
) -> SysResult<libc::c_long> {
    if r < 0 {
        Err(SysError::last(call, what()))
    } else {
        Ok(r)
    }
}

/// open(2) with raw flags; returns the new descriptor number.
pub fn open(path: &Path, flags: i32, mode: u32) -> SysResult<i32> {
    let c = cstr(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(c.as_ptr(), flags, mode) };
    check(fd as _, "open", || {
        format!("{} flags {flags:#o}", path.display())
    })
    .map(|v| v as i32)
}

/// Moves descriptor `from` to number `to` (closing `from`), with close-on-exec as given.
pub fn move_fd(from: i32, to: i32, cloexec: bool) -> SysResult<()> {
    if from != to {
        let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
        // SAFETY: dup3 has no memory arguments.
        check(unsafe { libc::dup3(from, to, flags) } as _, "dup3", || {
            format!("{from} -> {to}")
        })?;
        close(from);
    } else {
        set_cloexec(to, cloexec)?;
    }
    Ok(())
}

/// Duplicates `from` onto `to` (both stay open).
pub fn dup_to(from: i32, to: i32, cloexec: bool) -> SysResult<()> {
    if from == to {
        return set_cloexec(to, cloexec);
    }
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 has no memory arguments.
    check(unsafe { libc::dup3(from, to, flags) } as _, "dup3", || {
        format!("{from} -> {to}")
    })
    .map(drop)
}

/// What descriptor number `fd` holds, kept aside for `restore_fd`: a duplicate and its
/// close-on-exec flag, or None when the number is free.
pub fn save_fd(fd: i32) -> SysResult<Option<(i32, bool)>> {
    // SAFETY: fcntl F_GETFD with no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        let e = Errno::last();
        if e.0 == libc::EBADF {
            return Ok(None);
        }
        return Err(SysError::new("fcntl(F_GETFD)", format!("fd {fd}"), e));
    }
    // SAFETY: fcntl F_DUPFD_CLOEXEC with an integer argument.
    let copy = check(
        unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } as _,
        "fcntl(F_DUPFD_CLOEXEC)",
        || format!("fd {fd}"),
    )?;
    Ok(Some((copy as i32, flags & libc::FD_CLOEXEC != 0)))
}

/// Puts back at `fd` what `save_fd` kept (closing the copy), or closes `fd`.
pub fn restore_fd(fd: i32, saved: Option<(i32, bool)>) -> SysResult<()> {
    match saved {
        Some((copy, cloexec)) => {
            let r = dup_to(copy, fd, cloexec);
            close(copy);
            r
        }
        None => {
            close(fd);
            Ok(())
        }
    }
}

pub fn set_cloexec(fd: i32, cloexec: bool) -> SysResult<()> {
    let v = if cloexec { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl F_SETFD with an integer argument.
    check(
        unsafe { libc::fcntl(fd, libc::F_SETFD, v) } as _,
        "fcntl(F_SETFD)",
        || format!("fd {fd}"),
    )
    .map(drop)
}

/// Sets the file status flags that F_SETFL can change (O_APPEND, O_NONBLOCK, O_ASYNC...).
pub fn set_status_flags(fd: i32, flags: i32) -> SysResult<()> {
    // SAFETY: fcntl F_SETFL with an integer argument.
    check(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } as _,
        "fcntl(F_SETFL)",
        || format!("fd {fd}"),
    )
    .map(drop)
}

pub fn seek(fd: i32, pos: u64) -> SysResult<()> {
    // SAFETY: lseek has no memory arguments.
    check(
        unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_SET) } as _,
        "lseek",
        || format!("fd {fd} to {pos}"),
    )
    .map(drop)
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor number; errors are irrelevant on this path.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from `first` up, except those in `keep`.
pub fn close_all_except(keep: &[i32]) {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    for fd in fds {
        if !keep.contains(&fd) {
            close(fd);
        }
    }
}

pub fn chdir(path: &Path) -> SysResult<()> {
    let c = cstr(path)?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chdir(c.as_ptr()) } as _, "chdir", || {
        path.display().to_string()
    })
    .map(drop)
}

pub fn chroot(path: &Path) -> SysResult<()> {
    let c = cstr(path)?;
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::chroot(c.as_ptr()) } as _, "chroot", || {
        path.display().to_string()
    })
    .map(drop)
}

pub fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

pub fn personality(persona: u32) -> SysResult<()> {
    // SAFETY: no memory arguments.
    check(
        unsafe { libc::personality(persona as libc::c_ulong) } as _,
        "personality",
        || format!("{persona:#x}"),
    )
    .map(drop)
}

pub fn setsid() -> SysResult<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() } as _, "setsid", String::new).map(drop)
}

pub fn setpgid(pid: i32, pgid: i32) -> SysResult<()> {
    // SAFETY: no memory arguments.
    check(unsafe { libc::setpgid(pid, pgid) } as _, "setpgid", || {
        format!("pid {pid} pgid {pgid}")
    })
    .map(drop)
}

pub fn set_pdeathsig(sig: i32) -> SysResult<()> {
    // SAFETY: prctl with integer arguments.
    check(
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } as _,
        "prctl(PR_SET_PDEATHSIG)",
        || sig.to_string(),
    )
    .map(drop)
}

/// Blocks every signal that can be blocked.
pub fn block_all_signals() {
    // SAFETY: sigset_t is plain data; sigfillset initialises it; sigprocmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Maps `len` bytes of fresh anonymous memory at exactly `addr` (failing if anything is
/// there) and copies `code` to its start. Used for the scratch page of a restore child.
pub fn map_scratch(addr: u64, len: usize, code: &[u8]) -> SysResult<()> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so nothing of ours
    // can be clobbered; the result is checked before use.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(SysError::last("mmap", format!("scratch at {addr:#x}")));
    }
    if p as u64 != addr {
        return Err(SysError::new(
            "mmap",
            format!("scratch at {addr:#x}"),
            Errno(libc::EEXIST),
        ));
    }
    assert!(code.len() <= len);
    // SAFETY: p..p+len is the fresh writable mapping created above and code fits in it.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len()) };
    Ok(())
}

/// Maps fresh private anonymous read-write memory at exactly `addr`..`addr + len`,
/// failing if anything is mapped there already. `growsdown` and `noreserve` add
/// MAP_GROWSDOWN and MAP_NORESERVE. A restore child uses it to build, before it forks, the
/// memory its children will share copy-on-write.
pub fn map_anon_fixed(addr: u64, len: u64, growsdown: bool, noreserve: bool) -> SysResult<()> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
    if growsdown {
        flags |= libc::MAP_GROWSDOWN;
    }
    if noreserve {
        flags |= libc::MAP_NORESERVE;
    }
    let what = || format!("{addr:#x}-{:#x}", addr.saturating_add(len));
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so nothing of ours
    // can be clobbered; the result is checked.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(SysError::last("mmap", what()));
    }
    if p as u64 != addr {
        return Err(SysError::new("mmap", what(), Errno(libc::EEXIST)));
    }
    Ok(())
}

/// poll(2) for input on `fd`, waiting at most `timeout_ms`: whether it is readable.
pub fn poll_readable(fd: i32, timeout_ms: i32) -> SysResult<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, which outlives the call.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 && Errno::last().0 == libc::EINTR {
            continue;
        }
        return check(r as _, "poll", || format!("fd {fd}")).map(|n| n > 0);
    }
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> SysResult<(i32, i32)> {
    pipe_with(libc::O_CLOEXEC)
}

pub fn write_all(fd: i32, mut data: &[u8]) -> SysResult<()> {
    while !data.is_empty() {
        // SAFETY: data is a valid readable slice.
        let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if r < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return Err(SysError::last("write", format!("fd {fd}")));
        }
        data = &data[r as usize..];
    }
    Ok(())
}

/// Reads `n` bytes that the caller knows are there to read (stops early at EOF or
/// EAGAIN).
pub fn read_some(fd: i32, n: usize) -> SysResult<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut have = 0;
    while have < n {
        // SAFETY: the slice from `have` is valid writable memory of n - have bytes.
        let r = unsafe { libc::read(fd, out[have..].as_mut_ptr().cast(), n - have) };
        if r < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            if e.0 == libc::EAGAIN {
                break;
            }
            return Err(SysError::new("read", format!("fd {fd}"), e));
        }
        if r == 0 {
            break;
        }
        have += r as usize;
    }
    out.truncate(have);
    Ok(out)
}

/// Reads until EOF.
pub fn read_to_end(fd: i32) -> SysResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is a valid writable buffer of its length.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return Err(SysError::last("read", format!("fd {fd}")));
        }
        if r == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..r as usize]);
    }
}

/// Blocks forever (until the tool takes the process over with ptrace).
pub fn park() -> ! {
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

/// stat(2) by path, following symlinks: (dev, ino, size, mode, rdev).
pub fn stat(path: &Path) -> SysResult<(u64, u64, u64, u32, u64)> {
    let c = cstr(path)?;
    // SAFETY: stat is plain data; the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path and a valid stat buffer.
    let r = unsafe { libc::stat(c.as_ptr(), &mut st) };
    check(r as _, "stat", || path.display().to_string())?;
    Ok((
        st.st_dev,
        st.st_ino,
        st.st_size as u64,
        st.st_mode,
        st.st_rdev,
    ))
}

/// The calling process's process group.
pub fn getpgid() -> i32 {
    // SAFETY: no memory arguments.
    unsafe { libc::getpgid(0) }
}

/// Ends the calling process by `sig` with the default action (for zombies that died by a
/// signal).
pub fn die_by_signal(sig: i32) -> ! {
    // SAFETY: resetting a disposition and unblocking; the signal then kills us.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig)
    }
}

/// Capacity of a pipe (F_GETPIPE_SZ).
pub fn pipe_capacity(fd: i32) -> SysResult<u32> {
    // SAFETY: fcntl with an integer argument.
    let r = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    check(r as _, "fcntl(F_GETPIPE_SZ)", || format!("fd {fd}")).map(|v| v as u32)
}

/// Sets the capacity of a pipe (F_SETPIPE_SZ).
pub fn set_pipe_capacity(fd: i32, bytes: u32) -> SysResult<()> {
    // SAFETY: fcntl with an integer argument.
    let r = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes as libc::c_int) };
    check(r as _, "fcntl(F_SETPIPE_SZ)", || {
        format!("fd {fd} to {bytes}")
    })
    .map(drop)
}

/// The bytes queued in the pipe whose read end is `fd`, without consuming them: tee(2)
/// duplicates them into a scratch pipe, which is then drained.
pub fn peek_pipe(fd: i32, capacity: u32) -> SysResult<Vec<u8>> {
    let (r, w) = pipe()?;
    let result = (|| {
        set_pipe_capacity(w, capacity.max(4096))?;
        // SAFETY: tee takes descriptors and flags only.
        let n = unsafe { libc::tee(fd, w, capacity as usize, libc::SPLICE_F_NONBLOCK) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EAGAIN {
                return Ok(Vec::new()); // empty pipe
            }
            return Err(SysError::new("tee", format!("pipe fd {fd}"), e));
        }
        let mut out = vec![0u8; n as usize];
        let mut got = 0usize;
        while got < out.len() {
            // SAFETY: reading into the unfilled tail of `out`.
            let k = unsafe { libc::read(r, out[got..].as_mut_ptr().cast(), out.len() - got) };
            if k <= 0 {
                return Err(SysError::last("read", "scratch pipe"));
            }
            got += k as usize;
        }
        Ok(out)
    })();
    close(r);
    close(w);
    result
}

/// pipe2 with the given flags (O_CLOEXEC, O_NONBLOCK...): (read end, write end).
pub fn pipe_with(flags: i32) -> SysResult<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two ints into `fds`.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    check(r as _, "pipe2", String::new)?;
    Ok((fds[0], fds[1]))
}

/// Makes every mount of the calling process's (new) mount namespace private and mounts a
/// fresh /proc, so that /proc shows the PID namespace the process is in.
pub fn remount_proc_private() -> SysResult<()> {
    let none = c"none";
    let root = c"/";
    let proc_ = c"proc";
    let target = c"/proc";
    // SAFETY: NUL-terminated static strings; no data argument.
    let r = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    check(r as _, "mount(MS_PRIVATE)", || "/".into())?;
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            proc_.as_ptr(),
            target.as_ptr(),
            proc_.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    check(r as _, "mount(proc)", || "/proc".into()).map(drop)
}

/// Waits for any child; None when there is none left.
pub fn wait_any() -> Option<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return None;
        }
        return Some((r, status));
    }
}

/// eventfd(2): a new event counter.
pub fn eventfd(count: u64, flags: i32) -> SysResult<i32> {
    // SAFETY: integers only.
    let r = unsafe { libc::eventfd(count.min(u32::MAX as u64) as u32, flags) };
    let fd = check(r as _, "eventfd", || format!("count {count}"))? as i32;
    if count > u32::MAX as u64 {
        // eventfd() takes an unsigned int: add the rest with a write.
        let rest = count - u32::MAX as u64;
        write_all(fd, &rest.to_ne_bytes())?;
    }
    Ok(fd)
}

/// signalfd(2) for the signals in `mask` (bit N-1 for signal N).
pub fn signalfd(mask: u64, flags: i32) -> SysResult<i32> {
    // SAFETY: the kernel reads 8 bytes of mask from `mask`.
    let r = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags) };
    check(r as _, "signalfd", || format!("mask {mask:#x}")).map(|v| v as i32)
}

/// timerfd_create + timerfd_settime (relative) + the ticks not yet read.
pub fn timerfd(
    clockid: i32,
    flags: i32,
    value_ns: u64,
    interval_ns: u64,
    ticks: u64,
) -> SysResult<i32> {
    // SAFETY: integers only.
    let fd = check(
        unsafe { libc::timerfd_create(clockid, flags) } as _,
        "timerfd_create",
        || format!("clock {clockid}"),
    )? as i32;
    let ts = |ns: u64| libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts(interval_ns),
        it_value: ts(value_ns),
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not requested.
    let r = unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) };
    check(r as _, "timerfd_settime", || format!("fd {fd}"))?;
    if ticks > 0 {
        const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
        // SAFETY: the ioctl reads one u64 from `ticks`.
        let r = unsafe { libc::ioctl(fd, TFD_IOC_SET_TICKS, &ticks as *const u64) };
        check(r as _, "ioctl(TFD_IOC_SET_TICKS)", || format!("fd {fd}"))?;
    }
    Ok(fd)
}

pub fn epoll_create(flags: i32) -> SysResult<i32> {
    // SAFETY: integers only.
    check(
        unsafe { libc::epoll_create1(flags) } as _,
        "epoll_create1",
        String::new,
    )
    .map(|v| v as i32)
}

/// EPOLL_CTL_ADD of `fd` with raw `events` and `data`.
pub fn epoll_add(epfd: i32, fd: i32, events: u32, data: u64) -> SysResult<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    check(r as _, "epoll_ctl(ADD)", || {
        format!("epoll fd {epfd}, fd {fd}")
    })
    .map(drop)
}

/// A connected pair of unix sockets of `kind` (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET).
pub fn unix_socketpair(kind: i32) -> SysResult<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two ints into `fds`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    check(r as _, "socketpair", || format!("type {kind}"))?;
    Ok((fds[0], fds[1]))
}

/// A unix socket address (a path, or an abstract name starting with a NUL byte) and the
/// length that covers the family and the name.
fn unix_addr(name: &[u8], call: &'static str) -> SysResult<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.len() > addr.sun_path.len() {
        let shown = String::from_utf8_lossy(name).into_owned();
        return Err(SysError::new(call, shown, Errno(libc::ENAMETOOLONG)));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + name.len()) as libc::socklen_t;
    Ok((addr, len))
}

/// A new unix socket of `kind`, bound to `name` when given (a path, or an abstract name
/// starting with a NUL byte). A stale socket file at the path is replaced when
/// `replace_stale` says so.
pub fn unix_socket(kind: i32, name: Option<&[u8]>, replace_stale: bool) -> SysResult<i32> {
    // SAFETY: integers only.
    let r = unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) };
    let fd = check(r as _, "socket(AF_UNIX)", || format!("type {kind}"))? as i32;
    if let Some(name) = name {
        let shown = String::from_utf8_lossy(name).into_owned();
        let (addr, len) = match unix_addr(name, "bind") {
            Ok(a) => a,
            Err(e) => {
                close(fd);
                return Err(e);
            }
        };
        if replace_stale && name.first() != Some(&0) {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(
                name.split(|b| *b == 0).next().unwrap_or(name),
            ));
            if std::fs::symlink_metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            }) {
                let _ = std::fs::remove_file(path);
            }
        }
        // SAFETY: `addr` is a valid sockaddr_un and `len` covers the family and the name.
        let r = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
        if let Err(e) = check(r as _, "bind", || shown.clone()) {
            close(fd);
            return Err(e);
        }
    }
    Ok(fd)
}

/// Connects unix socket `fd` to the socket bound at `name` (a path, or an abstract name
/// starting with a NUL byte).
pub fn unix_connect(fd: i32, name: &[u8]) -> SysResult<()> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let (addr, len) = unix_addr(name, "connect")?;
    // SAFETY: `addr` is a valid sockaddr_un and `len` covers the family and the name.
    let r = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    check(r as _, "connect", || format!("fd {fd} to {shown:?}")).map(drop)
}

/// SIOCOUTQ of a unix socket: the memory its sent data still holds in the peer's queue
/// (0 when the peer has read everything).
pub fn socket_outq(fd: i32) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut v as *mut libc::c_int) };
    check(r as _, "ioctl(SIOCOUTQ)", || format!("fd {fd}"))?;
    Ok(v)
}

/// Accepts the first connection waiting on listening socket `fd`, without blocking even
/// when the listener's file is blocking (EAGAIN when none waits). The new socket is
/// non-blocking and close-on-exec.
pub fn accept_waiting(fd: i32) -> SysResult<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; a zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    check(r as _, "poll", || format!("listener fd {fd}"))?;
    if r == 0 || p.revents & libc::POLLIN == 0 {
        return Err(SysError::new(
            "accept4",
            format!("listener fd {fd}: no connection waiting"),
            Errno(libc::EAGAIN),
        ));
    }
    // SAFETY: no address is asked for (null pointers are allowed).
    let r = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    let r = check(r as _, "accept4", || format!("listener fd {fd}"))?;
    // SAFETY: accept4 just made this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}

pub fn listen(fd: i32, backlog: i32) -> SysResult<()> {
    // SAFETY: integers only.
    let r = unsafe { libc::listen(fd, backlog) };
    check(r as _, "listen", || format!("fd {fd}")).map(drop)
}

pub fn shutdown(fd: i32, how: i32) -> SysResult<()> {
    // SAFETY: integers only.
    let r = unsafe { libc::shutdown(fd, how) };
    check(r as _, "shutdown", || format!("fd {fd}")).map(drop)
}

/// Sends one message (one datagram or record; all of it on a stream).
pub fn send_message(fd: i32, data: &[u8]) -> SysResult<()> {
    let mut done = 0usize;
    loop {
        // SAFETY: sending from a valid slice.
        let r = unsafe {
            libc::send(
                fd,
                data[done..].as_ptr().cast(),
                data.len() - done,
                libc::MSG_DONTWAIT,
            )
        };
        let n = check(r as _, "send", || format!("fd {fd}, {} bytes", data.len()))? as usize;
        done += n;
        if done >= data.len() {
            return Ok(());
        }
    }
}

pub fn get_sockopt_int(fd: i32, level: i32, opt: i32) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    check(r as _, "getsockopt", || format!("fd {fd}, option {opt}"))?;
    Ok(v)
}

pub fn set_sockopt_int(fd: i32, level: i32, opt: i32, v: i32) -> SysResult<()> {
    // SAFETY: the kernel reads one int from `v`.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(r as _, "setsockopt", || {
        format!("fd {fd}, option {opt} = {v}")
    })
    .map(drop)
}

/// A socket option that is a `struct timeval` (SO_RCVTIMEO, SO_SNDTIMEO), in microseconds.
pub fn get_sockopt_timeval_us(fd: i32, opt: i32) -> SysResult<u64> {
    let mut v = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    check(r as _, "getsockopt", || format!("fd {fd}, option {opt}"))?;
    Ok(v.tv_sec.max(0) as u64 * 1_000_000 + v.tv_usec.max(0) as u64)
}

pub fn set_sockopt_timeval_us(fd: i32, opt: i32, us: u64) -> SysResult<()> {
    let v = libc::timeval {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_usec: (us % 1_000_000) as libc::suseconds_t,
    };
    // SAFETY: the kernel reads one timeval from `v`.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check(r as _, "setsockopt", || {
        format!("fd {fd}, option {opt} = {us} us")
    })
    .map(drop)
}

/// One message peeked from a socket's queue: its bytes and the descriptors it carries
/// (SCM_RIGHTS), which the peek installed in the calling process as new descriptors of the
/// same open files (close-on-exec).
pub struct PeekedMessage {
    pub data: Vec<u8>,
    pub fds: Vec<std::os::fd::OwnedFd>,
}

/// The messages queued for reading on socket `fd`, oldest first, left in the queue:
/// peeked with SO_PEEK_OFF, which is put back afterwards. A stream gives its bytes in as
/// few messages as the kernel glues together: it stops after each chunk that carries
/// descriptors, so those stay attached to the bytes they came with. Credentials attached
/// to messages (SO_PASSCRED) are dropped: the kernel attaches the sender's again when the
/// message is sent at restore.
pub fn peek_socket(fd: i32) -> SysResult<Vec<PeekedMessage>> {
    use std::os::fd::FromRawFd;
    let stream = get_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)? == libc::SOCK_STREAM;
    let old = get_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    // Room for SCM_RIGHTS with the kernel's maximum of 253 descriptors, or credentials.
    let mut cmsg = [0u8; 2048];
    let result = loop {
        if out.len() >= 1 << 20 {
            break Err(SysError::new(
                "recvmsg(MSG_PEEK)",
                format!("fd {fd}: over a million messages"),
                Errno(libc::E2BIG),
            ));
        }
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is valid, then filled in.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.len();
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
        // SAFETY: every pointer in `msg` refers to live buffers of the stated lengths.
        let r = unsafe { libc::recvmsg(fd, &mut msg, flags) };
        if r < 0 {
            let e = Errno::last();
            if e.0 == libc::EAGAIN {
                break Ok(());
            }
            break Err(SysError::new("recvmsg(MSG_PEEK)", format!("fd {fd}"), e));
        }
        let fds: Vec<std::os::fd::OwnedFd> =
            received_descriptors(&cmsg[..msg.msg_controllen.min(cmsg.len())])
                .into_iter()
                // SAFETY: the kernel just installed these descriptors for us; nothing else
                // owns them.
                .map(|raw| unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
                .collect();
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            break Err(SysError::new(
                "recvmsg(MSG_PEEK)",
                format!("fd {fd}: control data of a queued message truncated"),
                Errno(libc::EMSGSIZE),
            ));
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            break Err(SysError::new(
                "recvmsg(MSG_PEEK)",
                format!("fd {fd}: message over 1 MiB"),
                Errno(libc::EMSGSIZE),
            ));
        }
        if r == 0 && stream && fds.is_empty() {
            break Ok(()); // end of stream: the peer shut down
        }
        // Zero-length datagrams are messages too; the peek offset moves past them.
        out.push(PeekedMessage {
            data: buf[..r as usize].to_vec(),
            fds,
        });
    };
    let _ = set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old);
    result.map(|_| out)
}

/// The descriptors of the SCM_RIGHTS messages in control data.
fn received_descriptors(control: &[u8]) -> Vec<i32> {
    let header = std::mem::size_of::<libc::cmsghdr>();
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + header <= control.len() {
        let len = usize::from_ne_bytes(control[off..off + 8].try_into().expect("8 bytes"));
        let level = i32::from_ne_bytes(control[off + 8..off + 12].try_into().expect("4 bytes"));
        let kind = i32::from_ne_bytes(control[off + 12..off + 16].try_into().expect("4 bytes"));
        if len < header || off + len > control.len() {
            break;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            for c in control[off + header..off + len].chunks_exact(4) {
                out.push(i32::from_ne_bytes(c.try_into().expect("4 bytes")));
            }
        }
        off += (len + 7) & !7;
    }
    out
}

/// The control message that carries descriptors `fds` (SCM_RIGHTS): a cmsghdr and the
/// descriptors, CMSG_SPACE long (the payload rounded up to 8 bytes).
fn scm_rights_control(fds: &[i32]) -> Vec<u8> {
    let header = std::mem::size_of::<libc::cmsghdr>();
    let payload = std::mem::size_of_val(fds);
    let mut control = vec![0u8; header + ((payload + 7) & !7)];
    control[..8].copy_from_slice(&(header + payload).to_ne_bytes());
    control[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
    control[12..16].copy_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
    for (i, f) in fds.iter().enumerate() {
        control[header + 4 * i..header + 4 * i + 4].copy_from_slice(&f.to_ne_bytes());
    }
    control
}

/// Sends `data` on socket `fd` with descriptors `fds` attached (SCM_RIGHTS), without
/// blocking. A stream may take the bytes in several calls; the descriptors go with the
/// first.
pub fn send_message_with_fds(fd: i32, data: &[u8], fds: &[i32]) -> SysResult<()> {
    if fds.is_empty() {
        return send_message(fd, data);
    }
    let mut control = scm_rights_control(fds);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid, then filled in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: `msg` points at `data` (only read) and `control`, both live for the call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    let n = check(r as _, "sendmsg(SCM_RIGHTS)", || {
        format!("fd {fd}, {} bytes, {} descriptor(s)", data.len(), fds.len())
    })? as usize;
    if n < data.len() {
        send_message(fd, &data[n..])?;
    }
    Ok(())
}

/// Sends one datagram `data` from socket `fd` to the unix socket bound at `name`, with
/// descriptors `fds` attached (SCM_RIGHTS) if any, without blocking.
pub fn send_datagram_to(fd: i32, name: &[u8], data: &[u8], fds: &[i32]) -> SysResult<()> {
    let shown = String::from_utf8_lossy(name).into_owned();
    let (mut addr, addr_len) = unix_addr(name, "sendmsg")?;
    let mut control = scm_rights_control(fds);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid, then filled in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = addr_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
    }
    // SAFETY: `msg` points at `addr`, `data` (only read) and `control`, all live for the
    // call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    check(r as _, "sendmsg", || {
        format!("fd {fd} to {shown:?}, {} bytes", data.len())
    })
    .map(drop)
}

/// Moves descriptor `fd` to the lowest free number at or above `min` (close-on-exec).
pub fn move_above(fd: i32, min: i32) -> SysResult<i32> {
    let new = dup_above(fd, min)?;
    close(fd);
    Ok(new)
}

/// A copy of descriptor `fd` at the lowest free number at or above `min` (close-on-exec).
pub fn dup_above(fd: i32, min: i32) -> SysResult<i32> {
    // SAFETY: fcntl F_DUPFD_CLOEXEC with integer arguments.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    check(r as _, "fcntl(F_DUPFD_CLOEXEC)", || {
        format!("fd {fd} above {min}")
    })
    .map(|v| v as i32)
}

/// clock_gettime(2) as nanoseconds (the clocks that matter here never go negative).
pub fn clock_ns(clock: libc::clockid_t) -> SysResult<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    check(r as _, "clock_gettime", || format!("clock {clock}"))?;
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// unshare(2): new namespaces of the kinds in `flags` (for a time namespace, for the
/// children created afterwards).
pub fn unshare(flags: i32) -> SysResult<()> {
    // SAFETY: no memory arguments.
    check(unsafe { libc::unshare(flags) } as _, "unshare", || {
        format!("flags {flags:#x}")
    })
    .map(drop)
}

/// lseek(SEEK_DATA): the first offset at or after `from` that holds data, or None past
/// the last data (ENXIO).
pub fn seek_data(fd: i32, from: u64) -> SysResult<Option<u64>> {
    // SAFETY: lseek has no memory arguments.
    let r = unsafe { libc::lseek(fd, from as libc::off_t, libc::SEEK_DATA) };
    if r < 0 {
        let e = SysError::last("lseek(SEEK_DATA)", format!("fd {fd} from {from}"));
        return if e.errno.0 == libc::ENXIO {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(r as u64))
}

/// lseek(SEEK_HOLE): the first hole at or after `from` (the end of the file counts as one).
pub fn seek_hole(fd: i32, from: u64) -> SysResult<u64> {
    // SAFETY: lseek has no memory arguments.
    let r = unsafe { libc::lseek(fd, from as libc::off_t, libc::SEEK_HOLE) };
    check(r as _, "lseek(SEEK_HOLE)", || {
        format!("fd {fd} from {from}")
    })
    .map(|v| v as u64)
}

/// memfd_create(2); returns the new descriptor (close-on-exec).
pub fn memfd_create(name: &str, flags: u32) -> SysResult<i32> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| SysError::new("memfd_create", name.to_string(), Errno(libc::EINVAL)))?;
    // SAFETY: `c` is a NUL-terminated name that outlives the call.
    let r = unsafe { libc::memfd_create(c.as_ptr(), flags | libc::MFD_CLOEXEC) };
    check(r as _, "memfd_create", || name.to_string()).map(|v| v as i32)
}

/// fcntl(F_GET_SEALS).
pub fn get_seals(fd: i32) -> SysResult<u32> {
    // SAFETY: fcntl F_GET_SEALS has no argument.
    let r = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    check(r as _, "fcntl(F_GET_SEALS)", || format!("fd {fd}")).map(|v| v as u32)
}

/// fcntl(F_ADD_SEALS).
pub fn add_seals(fd: i32, seals: u32) -> SysResult<()> {
    // SAFETY: fcntl F_ADD_SEALS with an integer argument.
    let r = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals as libc::c_int) };
    check(r as _, "fcntl(F_ADD_SEALS)", || {
        format!("fd {fd} seals {seals:#x}")
    })
    .map(drop)
}

pub fn ftruncate(fd: i32, len: u64) -> SysResult<()> {
    // SAFETY: ftruncate has no memory arguments.
    let r = unsafe { libc::ftruncate(fd, len as libc::off_t) };
    check(r as _, "ftruncate", || format!("fd {fd} to {len}")).map(drop)
}

pub fn fchmod(fd: i32, mode: u32) -> SysResult<()> {
    // SAFETY: fchmod has no memory arguments.
    let r = unsafe { libc::fchmod(fd, mode as libc::mode_t) };
    check(r as _, "fchmod", || format!("fd {fd} mode {mode:o}")).map(drop)
}

/// Writes all of `data` at offset `at` (pwrite, retried until done).
pub fn pwrite_all(fd: i32, mut data: &[u8], mut at: u64) -> SysResult<()> {
    while !data.is_empty() {
        // SAFETY: the buffer is valid for data.len() bytes for the duration of the call.
        let r = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), at as libc::off_t) };
        if r < 0 {
            let e = SysError::last("pwrite", format!("fd {fd} at {at}"));
            if e.errno.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        data = &data[r as usize..];
        at += r as u64;
    }
    Ok(())
}

/// unlink(2).
pub fn unlink(path: &Path) -> SysResult<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::unlink(c.as_ptr()) };
    check(r as _, "unlink", || path.display().to_string()).map(drop)
}

/// mkfifo(3): a new FIFO at `path` with permission bits `mode` (less the umask).
pub fn mkfifo(path: &Path, mode: u32) -> SysResult<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), mode) };
    check(r as _, "mkfifo", || path.display().to_string()).map(drop)
}

/// flock(2) with LOCK_NB: a shared or exclusive lock on the open file description.
pub fn flock_nb(fd: i32, exclusive: bool) -> SysResult<()> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: flock has no memory arguments.
    let r = unsafe { libc::flock(fd, op) };
    check(r as _, "flock", || format!("fd {fd} op {op:#x}")).map(drop)
}

/// fcntl(cmd) with a `struct flock` for [start, start + len) (len 0: to the end of the
/// file): F_SETLK, F_OFD_SETLK (set, without waiting), F_GETLK, F_OFD_GETLK (query).
/// Returns the resulting struct (l_type, l_start, l_len, l_pid).
pub fn fcntl_lock(
    fd: i32,
    cmd: i32,
    l_type: i16,
    start: u64,
    len: u64,
) -> SysResult<(i16, u64, u64, i32)> {
    // SAFETY: an all-zero struct flock is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: `fl` is a valid struct flock that outlives the call.
    let r = unsafe { libc::fcntl(fd, cmd, &mut fl as *mut libc::flock) };
    check(r as _, "fcntl(lock)", || {
        format!("fd {fd} cmd {cmd} type {l_type} at {start} len {len}")
    })?;
    Ok((fl.l_type, fl.l_start as u64, fl.l_len as u64, fl.l_pid))
}

pub fn fchown(fd: i32, uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: fchown has no memory arguments.
    let r = unsafe { libc::fchown(fd, uid, gid) };
    check(r as _, "fchown", || format!("fd {fd} to {uid}:{gid}")).map(drop)
}

/// The file system type (statfs f_type) of the file at `path` (links followed).
pub fn fs_type(path: &Path) -> SysResult<i64> {
    let c = cstr(path)?;
    // SAFETY: an all-zero struct statfs is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid struct statfs; both outlive the call.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    check(r as _, "statfs", || path.display().to_string())?;
    Ok(st.f_type as i64)
}

/// linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW): a new name for the file
/// `from` names; with a /proc/PID/fd/N `from`, a name for an unlinked file.
pub fn link_following(from: &Path, to: &Path) -> SysResult<()> {
    let (a, b) = (cstr(from)?, cstr(to)?);
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    check(r as _, "linkat", || {
        format!("{} -> {}", from.display(), to.display())
    })
    .map(drop)
}
