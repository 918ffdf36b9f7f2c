//! POSIX message queues: open by name or through /proc, attributes, messages with their
//! priorities (received and sent without waiting).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{Errno, SysError, SysResult};

/// The magic of the mqueue filesystem (statfs f_type).
const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// Whether `path` (e.g. /proc/PID/fd/N) is a file of the mqueue filesystem.
pub fn is_mqueue(path: &str) -> bool {
    let Ok(c) = CString::new(path) else {
        return false;
    };
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; statfs writes one struct statfs to the pointer.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == MQUEUE_MAGIC
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MqAttr {
    pub flags: i64,
    pub maxmsg: i64,
    pub msgsize: i64,
    pub curmsgs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqStat {
    /// The mqueue filesystem (one per IPC namespace) and the queue's inode in it.
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (& 0o7777).
    pub mode: u32,
}

/// An open message queue descriptor of the calling process.
pub struct Mq(OwnedFd);

fn name_c(name: &str) -> SysResult<CString> {
    CString::new(name).map_err(|_| SysError::new("mq_open", name, Errno(libc::EINVAL)))
}

impl Mq {
    /// Opens an existing queue by name ("/NAME").
    pub fn open(name: &str, flags: i32) -> SysResult<Self> {
        let c = name_c(name)?;
        // SAFETY: c is NUL-terminated; without O_CREAT no further argument is read.
        let fd = unsafe { libc::mq_open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(SysError::last("mq_open", name));
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Creates a queue that must not exist yet, with its attributes.
    pub fn create(name: &str, flags: i32, mode: u32, maxmsg: i64, msgsize: i64) -> SysResult<Self> {
        let c = name_c(name)?;
        // SAFETY: mq_attr is plain data; all-zero is a valid value.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = maxmsg;
        attr.mq_msgsize = msgsize;
        let oflag = flags | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        // SAFETY: c is NUL-terminated; with O_CREAT mq_open reads a mode and a pointer to
        // an mq_attr, which lives across the call.
        let fd = unsafe { libc::mq_open(c.as_ptr(), oflag, mode as libc::mode_t, &mut attr) };
        if fd < 0 {
            return Err(SysError::last("mq_open(O_CREAT)", name));
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens another process's queue descriptor again through /proc/PID/fd/N: a new
    /// description of the same queue (works for unlinked queues and write-only fds too).
    pub fn reopen(pid: i32, fd: i32, flags: i32) -> SysResult<Self> {
        let path = format!("/proc/{pid}/fd/{fd}");
        let c = name_c(&path)?;
        // SAFETY: c is NUL-terminated.
        let r = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
        if r < 0 {
            return Err(SysError::last("open", path));
        }
        // SAFETY: r is a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(r) }))
    }

    pub fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }

    pub fn attr(&self) -> SysResult<MqAttr> {
        // SAFETY: mq_attr is plain data; all-zero is a valid value.
        let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
        // SAFETY: mq_getattr writes one mq_attr to the pointer.
        let r = unsafe { libc::mq_getattr(self.raw(), &mut a) };
        if r < 0 {
            return Err(SysError::last("mq_getattr", format!("fd {}", self.raw())));
        }
        Ok(MqAttr {
            flags: a.mq_flags,
            maxmsg: a.mq_maxmsg,
            msgsize: a.mq_msgsize,
            curmsgs: a.mq_curmsgs,
        })
    }

    /// The status text read() gives: "QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:..".
    pub fn status(&self) -> SysResult<String> {
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::pread(self.raw(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(SysError::last("read", "mqueue status"));
        }
        Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
    }

    /// Takes the first message (highest priority, oldest) without waiting: (priority,
    /// text), or None when the queue is empty.
    pub fn receive(&self, msgsize: usize) -> SysResult<Option<(u32, Vec<u8>)>> {
        let mut buf = vec![0u8; msgsize.max(1)];
        let mut prio: u32 = 0;
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: buf is writable for its length, prio and zero live across the call.
        let n = unsafe {
            libc::mq_timedreceive(
                self.raw(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut prio,
                &zero,
            )
        };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::ETIMEDOUT || e.0 == libc::EAGAIN {
                return Ok(None);
            }
            return Err(SysError::new(
                "mq_timedreceive",
                format!("fd {}", self.raw()),
                e,
            ));
        }
        buf.truncate(n as usize);
        Ok(Some((prio, buf)))
    }

    /// Queues a message without waiting.
    pub fn send(&self, prio: u32, text: &[u8]) -> SysResult<()> {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: text is readable for its length; zero lives across the call.
        let r = unsafe {
            libc::mq_timedsend(self.raw(), text.as_ptr().cast(), text.len(), prio, &zero)
        };
        if r < 0 {
            return Err(SysError::last("mq_timedsend", format!("fd {}", self.raw())));
        }
        Ok(())
    }

    /// The queue's inode: which one it is, its owner and permission bits.
    pub fn stat(&self) -> SysResult<MqStat> {
        // SAFETY: stat is plain data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one struct stat to the pointer.
        if unsafe { libc::fstat(self.raw(), &mut st) } < 0 {
            return Err(SysError::last("fstat", format!("mqueue fd {}", self.raw())));
        }
        Ok(MqStat {
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
        })
    }

    /// Owner and permission bits.
    pub fn set_owner(&self, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
        // SAFETY: fchown/fchmod take a descriptor we own and integers.
        if unsafe { libc::fchown(self.raw(), uid, gid) } < 0 {
            return Err(SysError::last("fchown", format!("mqueue {uid}:{gid}")));
        }
        // SAFETY: as above.
        if unsafe { libc::fchmod(self.raw(), mode & 0o7777) } < 0 {
            return Err(SysError::last("fchmod", format!("mqueue {mode:o}")));
        }
        Ok(())
    }

    /// Gives the descriptor away (the caller owns it).
    pub fn into_raw(self) -> i32 {
        use std::os::fd::IntoRawFd;
        self.0.into_raw_fd()
    }
}

/// Removes the name of a queue.
pub fn unlink(name: &str) -> SysResult<()> {
    let c = name_c(name)?;
    // SAFETY: c is NUL-terminated.
    if unsafe { libc::mq_unlink(c.as_ptr()) } < 0 {
        return Err(SysError::last("mq_unlink", name));
    }
    Ok(())
}

/// The names ("/NAME") of the POSIX message queues of process `pid`'s IPC namespace.
/// A thread of the caller gets a mount namespace of its own (private, so nothing leaks to
/// the caller's), joins that IPC namespace, mounts its mqueue filesystem on a temporary
/// directory and lists it.
pub fn names_in_ipc_namespace_of(pid: i32) -> SysResult<Vec<String>> {
    let ns_path = format!("/proc/{pid}/ns/ipc");
    let io = |what: &'static str, path: String, e: std::io::Error| {
        SysError::new(what, path, Errno(e.raw_os_error().unwrap_or(libc::EIO)))
    };
    let ns = std::fs::File::open(&ns_path).map_err(|e| io("open", ns_path.clone(), e))?;
    let dir = std::env::temp_dir().join(format!("stasis-mqueue-{}-{pid}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| io("mkdir", dir.display().to_string(), e))?;
    let dir_c = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::new("mount", "mqueue", Errno(libc::EINVAL)))?;
    let listed = std::thread::scope(|scope| {
        scope
            .spawn(|| -> SysResult<Vec<String>> {
                // SAFETY: no memory arguments; it gives this thread (which ends after the
                // listing) a mount namespace of its own.
                if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
                    return Err(SysError::last("unshare(CLONE_NEWNS)", "mqueue listing"));
                }
                // SAFETY: NUL-terminated static strings; no data argument. Only this
                // thread's new mount namespace changes.
                let r = unsafe {
                    libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    )
                };
                if r < 0 {
                    return Err(SysError::last("mount(MS_PRIVATE)", "/"));
                }
                // SAFETY: a descriptor we own and a flag; changes only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWIPC) } < 0 {
                    return Err(SysError::last("setns(CLONE_NEWIPC)", ns_path.clone()));
                }
                // SAFETY: NUL-terminated strings that outlive the call; no data argument.
                // The mount is in this thread's private mount namespace.
                let r = unsafe {
                    libc::mount(
                        c"mqueue".as_ptr(),
                        dir_c.as_ptr(),
                        c"mqueue".as_ptr(),
                        0,
                        std::ptr::null(),
                    )
                };
                if r < 0 {
                    return Err(SysError::last("mount(mqueue)", dir.display().to_string()));
                }
                let names = std::fs::read_dir(&dir)
                    .map_err(|e| io("readdir", dir.display().to_string(), e))
                    .map(|entries| {
                        entries
                            .filter_map(|e| Some(format!("/{}", e.ok()?.file_name().to_str()?)))
                            .collect()
                    });
                // SAFETY: a NUL-terminated path; detaches the mount made above.
                unsafe { libc::umount2(dir_c.as_ptr(), libc::MNT_DETACH) };
                names
            })
            .join()
            .unwrap_or_else(|_| Err(SysError::new("thread", "mqueue listing", Errno(libc::EIO))))
    });
    let _ = std::fs::remove_dir(&dir);
    listed
}
