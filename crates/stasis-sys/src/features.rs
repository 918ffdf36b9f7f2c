//! Kernel feature probes, for `stasis check` and for refusing early when something that
//! dump or restore needs is missing.
//!
//! Every probe really exercises the interface in a harmless way (on the tool itself, or on
//! a short-lived forked child that is always killed and reaped) and tells the reasons apart:
//! a missing syscall (ENOSYS), an unknown request (EINVAL, EIO, ENOTTY), or a lack of
//! privilege (EPERM, EACCES). `present` means "usable by this process, now": a feature that
//! the kernel has but that we may not use is reported absent, with the reason in `detail`.

use std::ffi::c_void;
use std::fs;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libc::{c_int, c_long};

use crate::procfs;
use crate::Errno;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    /// Usable by this process.
    pub present: bool,
    /// Dump or restore cannot work without it.
    pub required: bool,
    /// What was tried and what happened (the errno when absent).
    pub detail: String,
}

type ProbeFn = fn() -> Result<String, String>;

struct Probe {
    name: &'static str,
    required: bool,
    run: ProbeFn,
}

const PROBES: &[Probe] = &[
    Probe {
        name: "ptrace_seize",
        required: true,
        run: probe_ptrace_seize,
    },
    Probe {
        name: "ptrace_get_rseq_configuration",
        required: false,
        run: probe_rseq_configuration,
    },
    Probe {
        name: "seccomp_get_filter",
        required: false,
        run: probe_seccomp_get_filter,
    },
    Probe {
        name: "clone3_set_tid",
        required: true,
        run: probe_clone3_set_tid,
    },
    Probe {
        name: "pidfd_open",
        required: false,
        run: probe_pidfd_open,
    },
    Probe {
        name: "pidfd_getfd",
        required: true,
        run: probe_pidfd_getfd,
    },
    Probe {
        name: "process_vm_readv",
        required: true,
        run: probe_process_vm_readv,
    },
    Probe {
        name: "PR_SET_MM_MAP",
        required: true,
        run: probe_prctl_mm_map,
    },
    Probe {
        name: "map_files",
        required: false,
        run: probe_map_files,
    },
    Probe {
        name: "pagemap",
        required: true,
        run: probe_pagemap,
    },
    Probe {
        name: "kcmp",
        required: false,
        run: probe_kcmp,
    },
    Probe {
        name: "memfd_create",
        required: false,
        run: probe_memfd_create,
    },
    Probe {
        name: "userfaultfd",
        required: false,
        run: probe_userfaultfd,
    },
    Probe {
        name: "soft_dirty",
        required: false,
        run: probe_soft_dirty,
    },
    Probe {
        name: "pagemap_scan",
        required: false,
        run: probe_pagemap_scan,
    },
    Probe {
        name: "time_namespace",
        required: false,
        run: probe_time_ns,
    },
    Probe {
        name: "timer_create_restore_ids",
        required: false,
        run: probe_timer_restore_ids,
    },
    Probe {
        name: "pid_namespace",
        required: false,
        run: probe_pid_ns,
    },
    Probe {
        name: "net_namespace",
        required: false,
        run: probe_net_ns,
    },
    Probe {
        name: "sock_diag",
        required: false,
        run: probe_sock_diag,
    },
    Probe {
        name: "tcp_repair",
        required: false,
        run: probe_tcp_repair,
    },
    Probe {
        name: "io_uring",
        required: false,
        run: probe_io_uring,
    },
];

/// Probes share process-wide state (clear_refs of the tool itself, free pids for clone3):
/// run one at a time.
static PROBE_LOCK: Mutex<()> = Mutex::new(());

fn run(p: &Probe) -> Feature {
    let (present, detail) = match (p.run)() {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Feature {
        name: p.name,
        present,
        required: p.required,
        detail,
    }
}

/// The names of all probes, in the order `probe_all` reports them.
pub fn names() -> Vec<&'static str> {
    PROBES.iter().map(|p| p.name).collect()
}

/// Runs every probe.
pub fn probe_all() -> Vec<Feature> {
    let _guard = PROBE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    PROBES.iter().map(run).collect()
}

/// Runs the probe of that name (compared without regard to case), or None for an unknown
/// name.
pub fn probe(name: &str) -> Option<Feature> {
    let p = PROBES.iter().find(|p| p.name.eq_ignore_ascii_case(name))?;
    let _guard = PROBE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    Some(run(p))
}

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn errname(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSYS => "ENOSYS",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        _ => "errno",
    }
}

fn describe(e: Errno) -> String {
    format!("{} ({e})", errname(e.0))
}

/// "`what` failed: EXXX (message)" for the errno of the last call.
fn failed(what: &str) -> String {
    let e = Errno::last();
    format!("{what} failed: {}", describe(e))
}

/// A raw system call with every argument passed as a full-width long.
///
/// # Safety
/// The arguments must be valid for system call `nr`: every pointer must point to memory of
/// the size and mutability the call expects, for the duration of the call.
unsafe fn sys(nr: c_long, a: [c_long; 5]) -> c_long {
    // SAFETY: the caller guarantees the arguments are valid for this call.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) }
}

/// A pointer the kernel only reads, as a system call argument.
fn ptr<T>(p: *const T) -> c_long {
    p as c_long
}

/// A pointer the kernel writes through, as a system call argument.
fn ptr_mut<T>(p: *mut T) -> c_long {
    p as c_long
}

/// Takes ownership of a descriptor a successful call just returned.
fn own_fd(ret: c_long, what: &str) -> Result<OwnedFd, String> {
    if ret < 0 {
        return Err(failed(what));
    }
    let fd = c_int::try_from(ret).map_err(|_| format!("{what} returned {ret}"))?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nothing else
    // owns; the OwnedFd closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn own_fd_int(ret: c_int, what: &str) -> Result<OwnedFd, String> {
    own_fd(c_long::from(ret), what)
}

fn my_pid() -> libc::pid_t {
    // Pids fit in pid_t (pid_max is at most 2^22).
    libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX)
}

/// A forked or cloned child that is always killed and reaped.
struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Filter of one instruction, `return SECCOMP_RET_ALLOW` (struct sock_filter).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// struct sock_fprog.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_MODE_FILTER: c_long = 2;

impl Child {
    /// Forks a child that waits in pause() until killed (and dies with the forking thread).
    /// With `seccomp`, the child first installs an allow-everything seccomp filter. Returns
    /// once the child is ready, with whether its filter is installed.
    fn spawn_paused(seccomp: bool) -> Result<(Child, bool), String> {
        let filter = [SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        }];
        let prog = SockFprog {
            len: 1,
            filter: filter.as_ptr(),
        };
        let mut ends: [c_int; 2] = [-1; 2];
        // SAFETY: `ends` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(failed("pipe2"));
        }
        let read_end = own_fd_int(ends[0], "pipe2")?;
        let write_end = own_fd_int(ends[1], "pipe2")?;
        let ready_fd = write_end.as_raw_fd();
        let parent = my_pid();
        // SAFETY: fork has no memory-safety preconditions. In the child (ret 0) only raw
        // system calls follow, which are async-signal-safe, and it never returns: it pauses
        // until killed or calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: plain prctl/getppid/write/pause/_exit calls; `prog`, `filter` and
            // `byte` live on this (copied) stack frame, which the child never leaves.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_long, 0, 0, 0);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                let mut byte: u8 = b'r';
                if seccomp {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_long, 0, 0, 0);
                    let r =
                        libc::prctl(libc::PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ptr(&prog), 0, 0);
                    byte = if r == 0 { b's' } else { b'n' };
                }
                libc::write(ready_fd, ptr(&byte) as *const c_void, 1);
                loop {
                    libc::pause();
                }
            }
        }
        drop(write_end);
        if pid < 0 {
            return Err(failed("fork"));
        }
        let child = Child { pid, reaped: false };
        let mut pfd = libc::pollfd {
            fd: read_end.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 5000) };
        if r <= 0 {
            return Err(format!("probe child {pid} did not get ready within 5 s"));
        }
        let mut byte = [0u8; 1];
        use std::io::Read;
        fs::File::from(read_end)
            .read_exact(&mut byte)
            .map_err(|e| format!("probe child {pid} did not get ready: {e}"))?;
        Ok((child, byte[0] == b's'))
    }

    /// Waits (up to 5 s) for a report about the child; returns its wait status, or None on
    /// timeout. Marks the child reaped when it exited.
    fn wait(&mut self) -> Result<Option<c_int>, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut st: c_int = 0;
            // SAFETY: `st` is a valid out-pointer for the call.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::__WALL | libc::WNOHANG) };
            if r == self.pid {
                if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                    self.reaped = true;
                }
                return Ok(Some(st));
            }
            if r < 0 {
                let e = Errno::last();
                if e.0 == libc::EINTR {
                    continue;
                }
                if e.0 == libc::ECHILD {
                    // Someone else reaped it.
                    self.reaped = true;
                }
                return Err(format!("waitpid({}) failed: {}", self.pid, describe(e)));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the child to exit and returns its exit code (or an error naming the signal
    /// or the timeout).
    fn exit_code(&mut self) -> Result<c_int, String> {
        loop {
            match self.wait()? {
                None => return Err(format!("child {} did not exit within 5 s", self.pid)),
                Some(st) if libc::WIFEXITED(st) => return Ok(libc::WEXITSTATUS(st)),
                Some(st) if libc::WIFSIGNALED(st) => {
                    return Err(format!(
                        "child {} killed by signal {}",
                        self.pid,
                        libc::WTERMSIG(st)
                    ))
                }
                Some(_) => continue,
            }
        }
    }

    /// PTRACE_SEIZE + PTRACE_INTERRUPT, and waits for the PTRACE_EVENT_STOP.
    fn seize_and_stop(&mut self) -> Result<(), String> {
        // SAFETY: PTRACE_SEIZE of our own child with no options; no pointers.
        if unsafe { sys(libc::SYS_ptrace, [PTRACE_SEIZE, self.pid.into(), 0, 0, 0]) } < 0 {
            return Err(failed("PTRACE_SEIZE"));
        }
        // SAFETY: PTRACE_INTERRUPT of a tracee we just seized; no pointers.
        if unsafe {
            sys(
                libc::SYS_ptrace,
                [PTRACE_INTERRUPT, self.pid.into(), 0, 0, 0],
            )
        } < 0
        {
            return Err(failed("PTRACE_INTERRUPT"));
        }
        match self.wait()? {
            None => Err("no ptrace stop within 5 s of PTRACE_INTERRUPT".to_string()),
            Some(st) if libc::WIFSTOPPED(st) && (st >> 16) == PTRACE_EVENT_STOP => Ok(()),
            Some(st) => Err(format!(
                "unexpected wait status {st:#x} after PTRACE_INTERRUPT"
            )),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signalling our own, not yet reaped child (so the pid cannot have been
        // reused).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        loop {
            let mut st: c_int = 0;
            // SAFETY: `st` is a valid out-pointer; a blocking wait for a SIGKILLed child.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::__WALL) };
            if r == self.pid && (libc::WIFEXITED(st) || libc::WIFSIGNALED(st)) {
                break;
            }
            if r < 0 && Errno::last().0 != libc::EINTR {
                break;
            }
        }
        self.reaped = true;
    }
}

const PTRACE_SEIZE: c_long = 0x4206;
const PTRACE_INTERRUPT: c_long = 0x4207;
const PTRACE_SECCOMP_GET_FILTER: c_long = 0x420c;
const PTRACE_GET_RSEQ_CONFIGURATION: c_long = 0x420f;
const PTRACE_EVENT_STOP: c_int = 128;

// ---------------------------------------------------------------------------------------
// ptrace
// ---------------------------------------------------------------------------------------

fn probe_ptrace_seize() -> Result<String, String> {
    let (mut child, _) = Child::spawn_paused(false)?;
    child.seize_and_stop()?;
    Ok(format!(
        "PTRACE_SEIZE + PTRACE_INTERRUPT put forked child {} in PTRACE_EVENT_STOP",
        child.pid
    ))
}

/// struct ptrace_rseq_configuration.
#[repr(C)]
#[derive(Default)]
struct RseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

fn probe_rseq_configuration() -> Result<String, String> {
    let (mut child, _) = Child::spawn_paused(false)?;
    child.seize_and_stop()?;
    let mut conf = RseqConfiguration::default();
    let size = size_of::<RseqConfiguration>();
    // SAFETY: `conf` is a writable buffer of exactly `size` bytes, the size we pass.
    let r = unsafe {
        sys(
            libc::SYS_ptrace,
            [
                PTRACE_GET_RSEQ_CONFIGURATION,
                child.pid.into(),
                size as c_long,
                ptr_mut(&mut conf),
                0,
            ],
        )
    };
    if r < 0 {
        return Err(failed("PTRACE_GET_RSEQ_CONFIGURATION"));
    }
    if conf.rseq_abi_pointer == 0 {
        Ok("works (the probe child has no rseq area registered)".to_string())
    } else {
        Ok(format!(
            "works: child rseq area at {:#x}, size {}, signature {:#x}",
            conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature
        ))
    }
}

fn probe_seccomp_get_filter() -> Result<String, String> {
    let (mut child, filtered) = Child::spawn_paused(true)?;
    if !filtered {
        return Err("the probe child could not install a seccomp filter".to_string());
    }
    child.seize_and_stop()?;
    // With a null buffer the call returns the filter's length in instructions.
    // SAFETY: a null buffer is allowed; the kernel then writes nothing.
    let r = unsafe {
        sys(
            libc::SYS_ptrace,
            [PTRACE_SECCOMP_GET_FILTER, child.pid.into(), 0, 0, 0],
        )
    };
    if r >= 0 {
        return Ok(format!(
            "read the probe child's seccomp filter ({r} instruction)"
        ));
    }
    let e = Errno::last();
    match e.0 {
        libc::EACCES => Err(format!(
            "PTRACE_SECCOMP_GET_FILTER: {} (needs CAP_SYS_ADMIN and a tracer not itself under seccomp)",
            describe(e)
        )),
        libc::EIO => Err(format!(
            "PTRACE_SECCOMP_GET_FILTER unknown to this kernel: {}",
            describe(e)
        )),
        _ => Err(format!("PTRACE_SECCOMP_GET_FILTER failed: {}", describe(e))),
    }
}

// ---------------------------------------------------------------------------------------
// clone3 with set_tid
// ---------------------------------------------------------------------------------------

use crate::process::CloneArgs;

fn read_sysctl_int(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn probe_clone3_set_tid() -> Result<String, String> {
    let pid_max = read_sysctl_int("/proc/sys/kernel/pid_max").unwrap_or(32768);
    let ns_last = match read_sysctl_int("/proc/sys/kernel/ns_last_pid") {
        Some(n) => format!("ns_last_pid readable ({n})"),
        None => "ns_last_pid not readable".to_string(),
    };
    // Try free pids from the top of the range, where the kernel's cyclic allocation is
    // least likely to get to first; EEXIST means someone took it meanwhile: try the next.
    let mut candidate = pid_max - 1;
    let mut tries = 0;
    while candidate > 300 && tries < 8 {
        let want = libc::pid_t::try_from(candidate).map_err(|_| "pid_max too large")?;
        candidate -= 1;
        if procfs::pid_exists(want) {
            continue;
        }
        tries += 1;
        let set_tid: [libc::pid_t; 1] = [want];
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            set_tid: set_tid.as_ptr() as u64,
            set_tid_size: 1,
            ..CloneArgs::default()
        };
        // SAFETY: `args` and the `set_tid` array it points to are valid for the call.
        // Without CLONE_VM the child runs on a copy of our memory; it only calls _exit.
        let r = unsafe {
            sys(
                libc::SYS_clone3,
                [ptr(&args), size_of::<CloneArgs>() as c_long, 0, 0, 0],
            )
        };
        if r == 0 {
            // SAFETY: in the new child: leave at once, without running any of our code.
            unsafe { libc::_exit(0) };
        }
        if r < 0 {
            let e = Errno::last();
            return match e.0 {
                libc::EEXIST => continue,
                libc::ENOSYS => Err(format!("clone3: {} (kernel before 5.3)", describe(e))),
                libc::E2BIG => Err(format!(
                    "clone3 does not take set_tid: {} (kernel before 5.5)",
                    describe(e)
                )),
                libc::EPERM => Err(format!(
                    "clone3 set_tid: {} (needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN)",
                    describe(e)
                )),
                _ => Err(format!("clone3 set_tid={want}: {}", describe(e))),
            };
        }
        let got = libc::pid_t::try_from(r).map_err(|_| format!("clone3 returned {r}"))?;
        let mut child = Child {
            pid: got,
            reaped: false,
        };
        let code = child.exit_code()?;
        if got != want {
            return Err(format!("clone3 asked for pid {want} but created {got}"));
        }
        if code != 0 {
            return Err(format!("clone3 child {got} exited with {code}"));
        }
        return Ok(format!(
            "clone3 created a child with the requested pid {want}; {ns_last}"
        ));
    }
    Err(format!(
        "found no free pid to try below pid_max {pid_max} ({tries} taken meanwhile)"
    ))
}

// ---------------------------------------------------------------------------------------
// pidfd, process_vm_readv, kcmp, memfd
// ---------------------------------------------------------------------------------------

fn pidfd_self() -> Result<OwnedFd, String> {
    // SAFETY: pidfd_open takes no pointers.
    let r = unsafe { sys(libc::SYS_pidfd_open, [my_pid().into(), 0, 0, 0, 0]) };
    own_fd(r, "pidfd_open")
}

fn probe_pidfd_open() -> Result<String, String> {
    let fd = pidfd_self()?;
    Ok(format!("pidfd_open(self) returned fd {}", fd.as_raw_fd()))
}

fn probe_pidfd_getfd() -> Result<String, String> {
    let pidfd = pidfd_self()?;
    let file =
        fs::File::open("/proc/self/stat").map_err(|e| format!("open /proc/self/stat: {e}"))?;
    // SAFETY: pidfd_getfd takes no pointers.
    let r = unsafe {
        sys(
            libc::SYS_pidfd_getfd,
            [pidfd.as_raw_fd().into(), file.as_raw_fd().into(), 0, 0, 0],
        )
    };
    let dup = own_fd(r, "pidfd_getfd")?;
    let a = file.metadata().map_err(|e| format!("fstat: {e}"))?;
    let b = fs::File::from(dup)
        .metadata()
        .map_err(|e| format!("fstat: {e}"))?;
    use std::os::unix::fs::MetadataExt;
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err("pidfd_getfd returned a descriptor of another file".to_string());
    }
    Ok("pidfd_getfd duplicated a descriptor of the tool itself".to_string())
}

fn probe_process_vm_readv() -> Result<String, String> {
    let src: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0x5a);
    let mut dst = [0u8; 64];
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast::<c_void>(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src.as_ptr() as *mut c_void,
        iov_len: src.len(),
    };
    // SAFETY: both iovecs describe live buffers of the stated lengths; the remote one is
    // only read (the kernel reads our own memory).
    let n = unsafe { libc::process_vm_readv(my_pid(), &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(failed("process_vm_readv"));
    }
    if usize::try_from(n).ok() != Some(src.len()) || dst != src {
        return Err(format!("process_vm_readv copied {n} bytes, or wrong data"));
    }
    Ok("process_vm_readv copied 64 bytes of the tool's own memory".to_string())
}

const KCMP_FILE: c_long = 0;

fn probe_kcmp() -> Result<String, String> {
    let a = fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    let b = a.try_clone().map_err(|e| format!("dup: {e}"))?;
    let c = fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    let pid: c_long = my_pid().into();
    // SAFETY: kcmp takes no pointers.
    let same = unsafe {
        sys(
            libc::SYS_kcmp,
            [
                pid,
                pid,
                KCMP_FILE,
                a.as_raw_fd().into(),
                b.as_raw_fd().into(),
            ],
        )
    };
    if same < 0 {
        return Err(failed("kcmp(KCMP_FILE)"));
    }
    // SAFETY: as above.
    let other = unsafe {
        sys(
            libc::SYS_kcmp,
            [
                pid,
                pid,
                KCMP_FILE,
                a.as_raw_fd().into(),
                c.as_raw_fd().into(),
            ],
        )
    };
    if same != 0 || other <= 0 {
        return Err(format!(
            "kcmp gave {same} for a dup and {other} for another open file"
        ));
    }
    Ok("kcmp(KCMP_FILE) tells a dup from another open of the same file".to_string())
}

fn probe_memfd_create() -> Result<String, String> {
    // SAFETY: the name is a NUL-terminated literal.
    let r = unsafe { libc::memfd_create(c"stasis-probe".as_ptr(), libc::MFD_CLOEXEC) };
    let fd = own_fd_int(r, "memfd_create")?;
    let target = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(format!("memfd_create works ({target})"))
}

// ---------------------------------------------------------------------------------------
// prctl(PR_SET_MM, PR_SET_MM_MAP)
// ---------------------------------------------------------------------------------------

/// struct prctl_mm_map.
#[repr(C)]
#[derive(Default)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

const PR_SET_MM_MAP: c_long = 14;
const PR_SET_MM_MAP_SIZE: c_long = 15;

fn probe_prctl_mm_map() -> Result<String, String> {
    let mut size: u32 = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE only writes an unsigned int to the given address.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            PR_SET_MM_MAP_SIZE,
            ptr_mut(&mut size),
            0 as c_long,
            0 as c_long,
        )
    };
    if r < 0 {
        let e = Errno::last();
        return Err(format!(
            "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): {} (kernel without CONFIG_CHECKPOINT_RESTORE?)",
            describe(e)
        ));
    }
    if usize::try_from(size).ok() != Some(size_of::<PrctlMmMap>()) {
        return Err(format!(
            "struct prctl_mm_map is {size} bytes in this kernel, {} in stasis",
            size_of::<PrctlMmMap>()
        ));
    }

    // Really set the mm fields, to their current values, in a forked child (which exits
    // right after, so a stale value can do no harm).
    let st = procfs::stat(my_pid()).map_err(|e| e.to_string())?;
    let mut map = PrctlMmMap {
        start_code: st.start_code,
        end_code: st.end_code,
        start_data: st.start_data,
        end_data: st.end_data,
        start_brk: st.start_brk,
        brk: 0,
        start_stack: st.start_stack,
        arg_start: st.arg_start,
        arg_end: st.arg_end,
        env_start: st.env_start,
        env_end: st.env_end,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: fork has no memory-safety preconditions; the child only makes raw system
    // calls on its own copy of `map` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: brk(0) only queries; `map` is a valid prctl_mm_map of the size passed;
        // errno is thread-local; _exit never returns.
        unsafe {
            map.brk = libc::syscall(libc::SYS_brk, 0 as c_long) as u64;
            let r = libc::prctl(
                libc::PR_SET_MM,
                PR_SET_MM_MAP,
                ptr(&map),
                size_of::<PrctlMmMap>() as c_long,
                0 as c_long,
            );
            let code = if r == 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(code & 0xff);
        }
    }
    if pid < 0 {
        return Err(failed("fork"));
    }
    let mut child = Child { pid, reaped: false };
    match child.exit_code()? {
        0 => Ok(format!(
            "PR_SET_MM_MAP (struct of {size} bytes) set a child's mm fields"
        )),
        code => Err(format!(
            "PR_SET_MM_MAP in a probe child failed: {}",
            describe(Errno(code))
        )),
    }
}

// ---------------------------------------------------------------------------------------
// /proc: map_files, pagemap, soft-dirty, PAGEMAP_SCAN
// ---------------------------------------------------------------------------------------

fn probe_map_files() -> Result<String, String> {
    let dir = "/proc/self/map_files";
    let mut count = 0;
    let mut opened = None;
    for entry in fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))? {
        let entry = entry.map_err(|e| format!("{dir}: {e}"))?;
        count += 1;
        if opened.is_none() {
            let path = entry.path();
            if fs::read_link(&path).is_ok() && fs::File::open(&path).is_ok() {
                opened = Some(path);
            }
        }
    }
    match opened {
        Some(p) => Ok(format!(
            "{count} entries; opened {} through its map_files link",
            p.display()
        )),
        None if count == 0 => Err(format!("{dir} is empty")),
        None => Err(format!(
            "{dir} lists {count} entries but none can be opened (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)"
        )),
    }
}

/// A private anonymous page, unmapped on drop.
struct Page {
    addr: *mut c_void,
    len: usize,
}

impl Page {
    fn new() -> Result<Page, String> {
        let len = usize::try_from(procfs::page_size()).map_err(|e| e.to_string())?;
        // SAFETY: a fresh anonymous mapping chosen by the kernel; nothing aliases it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(failed("mmap"));
        }
        Ok(Page { addr, len })
    }

    fn touch(&self, v: u8) {
        // SAFETY: the page is mapped readable and writable for the lifetime of self.
        unsafe { std::ptr::write_volatile(self.addr.cast::<u8>(), v) };
    }

    fn start(&self) -> u64 {
        self.addr as u64
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in new().
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

fn pagemap_entry(page: &Page) -> Result<u64, String> {
    let mut pm = procfs::Pagemap::open(my_pid()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(1);
    pm.read(page.start(), 1, &mut out)
        .map_err(|e| e.to_string())?;
    out.first()
        .copied()
        .ok_or_else(|| "pagemap returned no entry".to_string())
}

fn probe_pagemap() -> Result<String, String> {
    let page = Page::new()?;
    let before = pagemap_entry(&page)?;
    page.touch(1);
    let after = pagemap_entry(&page)?;
    if before & procfs::PM_PRESENT != 0 || after & procfs::PM_PRESENT == 0 {
        return Err(format!(
            "present bit wrong: {before:#x} before and {after:#x} after touching a page"
        ));
    }
    let pfn = if after & procfs::PM_PFN_MASK != 0 {
        "PFNs visible"
    } else {
        "PFNs hidden (no CAP_SYS_ADMIN)"
    };
    let excl = if after & procfs::PM_EXCLUSIVE != 0 {
        ", exclusive bit set"
    } else {
        ""
    };
    Ok(format!("present bit follows a first touch; {pfn}{excl}"))
}

fn probe_soft_dirty() -> Result<String, String> {
    let page = Page::new()?;
    page.touch(1);
    fs::write("/proc/self/clear_refs", "4")
        .map_err(|e| format!("write \"4\" to /proc/self/clear_refs: {e}"))?;
    let cleared = pagemap_entry(&page)?;
    page.touch(2);
    let written = pagemap_entry(&page)?;
    let sd = procfs::PM_SOFT_DIRTY;
    match (cleared & sd != 0, written & sd != 0) {
        (false, true) => Ok("bit 55 cleared by clear_refs \"4\" and set again by a write".to_string()),
        (false, false) => Err(
            "clear_refs accepted \"4\" but bit 55 stays clear after a write (kernel without CONFIG_MEM_SOFT_DIRTY)"
                .to_string(),
        ),
        (true, _) => Err("bit 55 still set right after clear_refs \"4\"".to_string()),
    }
}

/// struct pm_scan_arg.
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// struct page_region.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

const PAGE_IS_PRESENT: u64 = 1 << 3;
/// _IOWR('f', 16, struct pm_scan_arg).
const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<PmScanArg>() as u64) << 16) | (0x66 << 8) | 16;

fn probe_pagemap_scan() -> Result<String, String> {
    let page = Page::new()?;
    page.touch(1);
    let file =
        fs::File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
    let mut regions = [PageRegion::default(); 4];
    let mut arg = PmScanArg {
        size: size_of::<PmScanArg>() as u64,
        start: page.start(),
        end: page.start() + page.len as u64,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        category_anyof_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT,
        ..PmScanArg::default()
    };
    // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points to `regions`, writable for
    // `vec_len` entries; the scanned range is our own mapped page.
    let r = unsafe {
        sys(
            libc::SYS_ioctl,
            [
                file.as_raw_fd().into(),
                PAGEMAP_SCAN as c_long,
                ptr_mut(&mut arg),
                0,
                0,
            ],
        )
    };
    if r < 0 {
        let e = Errno::last();
        return Err(match e.0 {
            libc::ENOTTY => format!("PAGEMAP_SCAN: {} (kernel before 6.7)", describe(e)),
            _ => format!("PAGEMAP_SCAN failed: {}", describe(e)),
        });
    }
    let first = regions[0];
    if r != 1 || first.start != page.start() || first.categories & PAGE_IS_PRESENT == 0 {
        return Err(format!(
            "PAGEMAP_SCAN returned {r} regions, first {:#x}-{:#x} categories {:#x}",
            first.start, first.end, first.categories
        ));
    }
    Ok("PAGEMAP_SCAN found a touched page present".to_string())
}

// ---------------------------------------------------------------------------------------
// namespaces
// ---------------------------------------------------------------------------------------

fn ns_link(name: &str) -> Result<String, String> {
    let path = format!("/proc/self/ns/{name}");
    fs::read_link(&path)
        .map(|p| p.display().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

fn probe_time_ns() -> Result<String, String> {
    let ns = ns_link("time")?;
    let children = ns_link("time_for_children")?;
    Ok(format!("{ns}, for children {children}"))
}

/// prctl(PR_TIMER_CREATE_RESTORE_IDS, GET) (Linux 6.17): POSIX timers get their ids back.
fn probe_timer_restore_ids() -> Result<String, String> {
    const PR_TIMER_CREATE_RESTORE_IDS: c_int = 77;
    const GET: c_long = 2;
    // SAFETY: a query without pointer arguments.
    let r = unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, GET, 0, 0, 0) };
    if r < 0 {
        let e = Errno::last().0;
        return Err(format!(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, GET): {} (Linux 6.17+ needed to restore POSIX timers)",
            errname(e)
        ));
    }
    Ok(format!("prctl(PR_TIMER_CREATE_RESTORE_IDS, GET) = {r}"))
}

fn probe_pid_ns() -> Result<String, String> {
    let ns = ns_link("pid")?;
    let level = procfs::status(my_pid())
        .map(|s| s.ns_pid.len())
        .map_err(|e| e.to_string())?;
    Ok(format!("{ns}, the tool is at pid-namespace depth {level}"))
}

fn probe_net_ns() -> Result<String, String> {
    ns_link("net")
}

// ---------------------------------------------------------------------------------------
// sockets: sock_diag, TCP_REPAIR
// ---------------------------------------------------------------------------------------

const NETLINK_SOCK_DIAG: c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const AF_NETLINK_U8: u8 = 16;
const AF_PACKET_U8: u8 = 17;
const AF_UNIX_U8: u8 = 1;
const AF_INET_U8: u8 = 2;

/// Sends one SOCK_DIAG_BY_FAMILY dump request with this payload (the request struct of
/// the family's diag module) and checks the first answer.
fn diag_request(payload: &[u8]) -> Result<(), String> {
    // SAFETY: socket takes no pointers.
    let r = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    let sock = own_fd_int(r, "socket(AF_NETLINK, NETLINK_SOCK_DIAG)")?;
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a timeval of the size passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            ptr(&tv) as *const c_void,
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let len = NLMSG_HDRLEN + payload.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(payload);
    // SAFETY: `msg` is a live buffer of msg.len() bytes.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(failed("send"));
    }
    let mut buf = vec![0u8; 32768];
    // SAFETY: `buf` is a live, writable buffer of buf.len() bytes.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(failed("recv"));
    }
    let n = usize::try_from(n).unwrap_or(0);
    if n < NLMSG_HDRLEN {
        return Err(format!("short netlink answer ({n} bytes)"));
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    match kind {
        SOCK_DIAG_BY_FAMILY | NLMSG_DONE => Ok(()),
        NLMSG_ERROR if n >= NLMSG_HDRLEN + 4 => {
            let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            if err == 0 {
                Ok(())
            } else {
                Err(describe(Errno(-err)))
            }
        }
        other => Err(format!("unexpected netlink message type {other}")),
    }
}

fn unix_diag_req() -> Vec<u8> {
    let mut p = vec![AF_UNIX_U8, 0, 0, 0];
    p.extend_from_slice(&u32::MAX.to_ne_bytes()); // udiag_states: all
    p.extend_from_slice(&[0u8; 16]); // ino, show, cookie[2]
    p
}

fn inet_diag_req(protocol: u8) -> Vec<u8> {
    let mut p = vec![AF_INET_U8, protocol, 0, 0];
    p.extend_from_slice(&u32::MAX.to_ne_bytes()); // idiag_states: all
    p.extend_from_slice(&[0u8; 48]); // struct inet_diag_sockid
    p
}

/// packet_diag_req and netlink_diag_req share this layout.
fn simple_diag_req(family: u8, protocol: u8) -> Vec<u8> {
    let mut p = vec![family, protocol, 0, 0];
    p.extend_from_slice(&[0u8; 16]); // ino, show, cookie[2]
    p
}

fn probe_sock_diag() -> Result<String, String> {
    let checks: [(&str, bool, Vec<u8>); 5] = [
        ("unix", true, unix_diag_req()),
        ("tcp", true, inet_diag_req(libc::IPPROTO_TCP as u8)),
        ("udp", false, inet_diag_req(libc::IPPROTO_UDP as u8)),
        ("packet", false, simple_diag_req(AF_PACKET_U8, 0)),
        ("netlink", false, simple_diag_req(AF_NETLINK_U8, 255)),
    ];
    let mut parts = Vec::new();
    let mut missing_essential = false;
    for (name, essential, req) in checks {
        match diag_request(&req) {
            Ok(()) => parts.push(format!("{name} ok")),
            Err(e) => {
                missing_essential |= essential;
                parts.push(format!("{name}: {e}"));
            }
        }
    }
    let detail = parts.join(", ");
    if missing_essential {
        Err(detail)
    } else {
        Ok(detail)
    }
}

fn probe_tcp_repair() -> Result<String, String> {
    let mut last = String::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        // SAFETY: socket takes no pointers.
        let r = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        let sock = match own_fd_int(r, "socket(SOCK_STREAM)") {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let set = |v: c_int| {
            // SAFETY: `v` is an int of the size passed.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_REPAIR,
                    ptr(&v) as *const c_void,
                    size_of::<c_int>() as libc::socklen_t,
                )
            }
        };
        if set(1) < 0 {
            let e = Errno::last();
            return Err(match e.0 {
                libc::EPERM => format!("TCP_REPAIR: {} (needs CAP_NET_ADMIN)", describe(e)),
                _ => format!("setsockopt(TCP_REPAIR): {}", describe(e)),
            });
        }
        set(0);
        return Ok("TCP_REPAIR switched on and off on a fresh TCP socket".to_string());
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------
// userfaultfd, io_uring
// ---------------------------------------------------------------------------------------

/// struct uffdio_api.
#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

const UFFD_API: u64 = 0xaa;
/// _IOWR(0xAA, 0x3F, struct uffdio_api).
const UFFDIO_API: c_long = 0xc018_aa3f;
/// _IO(0xAA, 0x00): USERFAULTFD_IOC_NEW on /dev/userfaultfd.
const USERFAULTFD_IOC_NEW: c_long = 0xaa00;

fn probe_userfaultfd() -> Result<String, String> {
    let flags = c_long::from(libc::O_CLOEXEC | libc::O_NONBLOCK);
    // SAFETY: userfaultfd takes no pointers.
    let r = unsafe { sys(libc::SYS_userfaultfd, [flags, 0, 0, 0, 0]) };
    let (fd, how) = match own_fd(r, "userfaultfd()") {
        Ok(fd) => (fd, "userfaultfd()"),
        Err(first) => {
            let dev = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/userfaultfd")
                .map_err(|e| format!("{first}; /dev/userfaultfd: {e}"))?;
            // SAFETY: USERFAULTFD_IOC_NEW takes the flags as its argument, no pointer.
            let r = unsafe {
                sys(
                    libc::SYS_ioctl,
                    [dev.as_raw_fd().into(), USERFAULTFD_IOC_NEW, flags, 0, 0],
                )
            };
            let fd = own_fd(r, "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)")
                .map_err(|e| format!("{first}; {e}"))?;
            (fd, "/dev/userfaultfd")
        }
    };
    let mut api = UffdioApi {
        api: UFFD_API,
        ..UffdioApi::default()
    };
    // SAFETY: `api` is a valid, writable uffdio_api.
    let r = unsafe {
        sys(
            libc::SYS_ioctl,
            [fd.as_raw_fd().into(), UFFDIO_API, ptr_mut(&mut api), 0, 0],
        )
    };
    if r < 0 {
        return Err(failed("UFFDIO_API"));
    }
    Ok(format!(
        "{how}: API {:#x}, features {:#x}, ioctls {:#x}",
        api.api, api.features, api.ioctls
    ))
}

fn probe_io_uring() -> Result<String, String> {
    let disabled = read_sysctl_int("/proc/sys/kernel/io_uring_disabled");
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable buffer of sizeof(struct io_uring_params).
    let r = unsafe {
        sys(
            libc::SYS_io_uring_setup,
            [1, ptr_mut(params.as_mut_ptr()), 0, 0, 0],
        )
    };
    let _fd = own_fd(r, "io_uring_setup").map_err(|e| match disabled {
        Some(d) => format!("{e}; kernel.io_uring_disabled = {d}"),
        None => e,
    })?;
    Ok(format!(
        "io_uring_setup works, features {:#x} (checkpointing io_uring instances is not supported)",
        params[5]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let names = names();
        assert_eq!(names.len(), PROBES.len());
        let mut sorted = names.clone();
        sorted.sort_unstable_by_key(|n| n.to_ascii_lowercase());
        sorted.dedup_by_key(|n| n.to_ascii_lowercase());
        assert_eq!(sorted.len(), names.len());
    }

    #[test]
    fn probe_all_runs() {
        let all = probe_all();
        assert_eq!(all.iter().map(|f| f.name).collect::<Vec<_>>(), names());
        for f in &all {
            assert!(!f.detail.is_empty(), "{}", f.name);
            eprintln!(
                "{:<30} {:<7} {:<9} {}",
                f.name,
                if f.present { "yes" } else { "no" },
                if f.required { "required" } else { "" },
                f.detail
            );
        }
        let required: Vec<_> = all.iter().filter(|f| f.required).map(|f| f.name).collect();
        assert_eq!(
            required,
            [
                "ptrace_seize",
                "clone3_set_tid",
                "pidfd_getfd",
                "process_vm_readv",
                "PR_SET_MM_MAP",
                "pagemap"
            ]
        );
    }

    #[test]
    fn unknown_name() {
        assert!(probe("no-such").is_none());
        assert!(probe("").is_none());
    }

    #[test]
    fn probe_by_name() {
        let f = probe("pidfd_open").unwrap();
        assert_eq!(f.name, "pidfd_open");
        assert!(!f.required);
        let f = probe("pr_set_mm_map").unwrap();
        assert_eq!(f.name, "PR_SET_MM_MAP");
        assert!(f.required);
    }

    #[test]
    fn children_are_reaped() {
        let (child, _) = Child::spawn_paused(false).unwrap();
        let pid = child.pid;
        assert!(procfs::pid_exists(pid));
        drop(child);
        assert!(!procfs::pid_exists(pid), "child {pid} left behind");

        let (mut child, _) = Child::spawn_paused(false).unwrap();
        child.seize_and_stop().unwrap();
        let pid = child.pid;
        assert_eq!(procfs::status(pid).unwrap().tracer_pid, my_pid_or_tid());
        drop(child);
        assert!(!procfs::pid_exists(pid), "traced child {pid} left behind");
    }

    /// The tracer of a seized child is the thread that seized it.
    fn my_pid_or_tid() -> libc::pid_t {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }

    /// The structs passed to the kernel have the sizes of the kernel's ABI.
    #[test]
    fn abi_sizes() {
        assert_eq!(size_of::<CloneArgs>(), 88);
        assert_eq!(size_of::<PrctlMmMap>(), 104);
        assert_eq!(size_of::<PmScanArg>(), 96);
        assert_eq!(size_of::<PageRegion>(), 24);
        assert_eq!(size_of::<UffdioApi>(), 24);
        assert_eq!(size_of::<RseqConfiguration>(), 24);
        assert_eq!(size_of::<SockFilter>(), 8);
        assert_eq!(size_of::<SockFprog>(), 16);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
        assert_eq!(unix_diag_req().len(), 24);
        assert_eq!(inet_diag_req(6).len(), 56);
        assert_eq!(simple_diag_req(17, 0).len(), 20);
    }

    /// On the development machine (root, kernel 6.18) the required features are all there.
    #[test]
    fn required_features_present_as_root() {
        if procfs::status(my_pid()).map(|s| s.uid[1]).unwrap_or(1) != 0 {
            return;
        }
        for f in probe_all().into_iter().filter(|f| f.required) {
            assert!(f.present, "{}: {}", f.name, f.detail);
        }
    }
}
