//! Creating, signalling and waiting for processes; per-process settings another process may
//! change (rlimits, scheduling, priority).

use crate::{Errno, SysError, SysResult};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128+N for death by signal N.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(c) => c,
            Self::Signaled(s) => 128 + s,
        }
    }
}

/// Number of threads of the calling process.
fn own_thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(usize::MAX)
}

/// The kernel's struct clone_args up to set_tid_size and cgroup (CLONE_ARGS_SIZE_VER2,
/// 88 bytes).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Forks the calling process with clone3, giving the child the PID `pid` (0: any PID).
/// The child runs `child` and exits with its return value; it never returns here.
///
/// The caller must be single-threaded (checked): after a fork from a multi-threaded
/// process, the child could deadlock on a lock held by a thread that does not exist in it.
pub fn spawn_with_pid(pid: i32, child: impl FnOnce() -> i32) -> SysResult<i32> {
    spawn_with(pid, 0, child)
}

/// [`spawn_with_pid`] with extra clone flags (CLONE_NEWPID, CLONE_NEWNS...).
pub fn spawn_with(pid: i32, flags: u64, child: impl FnOnce() -> i32) -> SysResult<i32> {
    if own_thread_count() != 1 {
        return Err(SysError::new(
            "clone3",
            "the restoring process must be single-threaded",
            Errno(libc::EDEADLK),
        ));
    }
    let set_tid: [libc::pid_t; 1] = [pid];
    // With CLONE_PARENT the child's exit signal is the caller's own; clone3 wants 0.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let mut args = CloneArgs {
        flags,
        exit_signal,
        ..Default::default()
    };
    if pid > 0 {
        args.set_tid = set_tid.as_ptr() as u64;
        args.set_tid_size = 1;
    }
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child gets a
    // copy of our address space and continues here with a return value of 0. We are
    // single-threaded (checked above), so the child's copy of every lock is consistent.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(SysError::last("clone3", format!("set_tid {pid}")));
    }
    if r == 0 {
        let code = child();
        // SAFETY: _exit ends the child without running the parent's atexit handlers or
        // destructors that belong to the parent's state.
        unsafe { libc::_exit(code) };
    }
    Ok(r as i32)
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(SysError::last("kill", format!("pid {pid}, signal {sig}")));
    }
    Ok(())
}

/// Sends `sig` to thread `tid` of thread group `tgid`.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: tgkill has no memory arguments.
    if unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) } < 0 {
        return Err(SysError::last("tgkill", format!("tid {tid}, signal {sig}")));
    }
    Ok(())
}

/// Waits for child `pid` to end (not for stops) and reaps it.
pub fn wait_exit(pid: i32) -> SysResult<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(SysError::new("waitpid", format!("pid {pid}"), e));
        }
        if libc::WIFEXITED(status) {
            return Ok(ExitStatus::Exited(libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(ExitStatus::Signaled(libc::WTERMSIG(status)));
        }
    }
}

/// Reaps child `pid` if it has ended, without blocking (waitpid with WNOHANG).
///
/// Returns the raw wait status (as `std::os::unix::process::ExitStatusExt::from_raw`
/// takes it), or `None` when the child is still running.
pub fn try_wait(pid: i32) -> SysResult<Option<i32>> {
    let mut status = 0;
    // SAFETY: waitpid writes one int into `status`, a local that outlives the call.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r < 0 {
        return Err(SysError::last("waitpid(WNOHANG)", format!("pid {pid}")));
    }
    Ok((r != 0).then_some(status))
}

/// Kills and reaps a child of ours, ignoring errors (cleanup path).
pub fn kill_and_reap(pid: i32) {
    let _ = kill(pid, libc::SIGKILL);
    let _ = wait_exit(pid);
}

/// Kills process `pid`, which may have threads we trace, and reaps what we can until it
/// is gone (cleanup path). A traced thread that exits waits for its tracer to reap it,
/// and its process can be reaped only after every thread: so every tracee of ours that
/// ends is reaped, `pid` last (if it is our child). Gives up after `limit`.
pub fn kill_and_reap_traced(pid: i32, limit: std::time::Duration) {
    let _ = kill(pid, libc::SIGKILL);
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`, a local that outlives the call.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if r == pid || (r < 0 && Errno::last().0 == libc::ECHILD) || (r == 0 && gone) {
            return;
        }
        if r == 0 {
            if std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Sets one resource limit of process `pid` (prlimit).
pub fn set_rlimit(pid: i32, resource: u32, soft: u64, hard: u64) -> SysResult<()> {
    let new = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `new` is a valid rlimit64; old_limit is null (not requested).
    let r = unsafe {
        libc::prlimit64(
            pid,
            resource as libc::__rlimit_resource_t,
            &new,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(SysError::last(
            "prlimit",
            format!("pid {pid}, resource {resource}, {soft}/{hard}"),
        ));
    }
    Ok(())
}

/// Scheduling policy (with SCHED_RESET_ON_FORK folded in), static priority.
pub fn get_scheduler(tid: i32) -> SysResult<(i32, i32)> {
    // SAFETY: no memory arguments.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    if policy < 0 {
        return Err(SysError::last("sched_getscheduler", format!("tid {tid}")));
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel writes one sched_param into `param`.
    if unsafe { libc::sched_getparam(tid, &mut param) } < 0 {
        return Err(SysError::last("sched_getparam", format!("tid {tid}")));
    }
    Ok((policy, param.sched_priority))
}

pub fn set_scheduler(tid: i32, policy: i32, priority: i32) -> SysResult<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param that outlives the call.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } < 0 {
        return Err(SysError::last(
            "sched_setscheduler",
            format!("tid {tid}, policy {policy}, priority {priority}"),
        ));
    }
    Ok(())
}

/// The nice value of thread `tid`.
pub fn get_nice(tid: i32) -> SysResult<i32> {
    // SAFETY: getpriority's -1 result is ambiguous, so errno is cleared first.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: no memory arguments.
    let r = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    let e = Errno::last();
    if r == -1 && e.0 != 0 {
        return Err(SysError::new("getpriority", format!("tid {tid}"), e));
    }
    Ok(r)
}

pub fn set_nice(tid: i32, nice: i32) -> SysResult<()> {
    // SAFETY: no memory arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } < 0 {
        return Err(SysError::last(
            "setpriority",
            format!("tid {tid}, nice {nice}"),
        ));
    }
    Ok(())
}

/// uname -r of the running kernel.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory arguments.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

/// XCR0: the XSAVE features enabled by the OS (0 without XSAVE).
pub fn xsave_features() -> u64 {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !osxsave {
        return 0;
    }
    // SAFETY: xgetbv is valid when CPUID reports OSXSAVE, checked above.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

/// Makes the calling process a child subreaper (orphans below it are re-parented to it).
pub fn set_child_subreaper() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(SysError::last("prctl(PR_SET_CHILD_SUBREAPER)", "self"));
    }
    Ok(())
}

/// The effective user ID of the calling process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes `cmd` close every descriptor above 2 in the child, just before exec (so that
/// descriptors the parent leaks without CLOEXEC are not inherited).
pub fn close_fds_above_2_on_exec(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child between fork and exec, where only
    // async-signal-safe operations are allowed: it captures nothing, makes one system call
    // (close_range, integer arguments only), allocates nothing and takes no lock. The
    // descriptors it closes (3 and up) are not used by std afterwards except its CLOEXEC
    // error-report pipe: if exec then fails, the child cannot report the errno and the
    // spawn looks successful while the child dies; that loses a diagnostic, not memory
    // safety. Stdio (0-2) has already been set up when pre_exec hooks run.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        })
    }
}

const KCMP_FILE: i32 = 0;

/// Whether descriptor `fd1` of `pid1` and `fd2` of `pid2` are the same open file description.
pub fn same_file_description(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> SysResult<bool> {
    // SAFETY: kcmp with KCMP_FILE takes only integers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) };
    if r < 0 {
        return Err(SysError::last(
            "kcmp(KCMP_FILE)",
            format!("pid {pid1} fd {fd1}, pid {pid2} fd {fd2}"),
        ));
    }
    Ok(r == 0)
}

const KCMP_EPOLL_TFD: i32 = 7;

/// Whether the file registered in `pid`'s epoll `epfd` under descriptor number `tfd` (the
/// `toff`-th registration with that number, counting from 0) is the open file description
/// of `pid`'s descriptor `fd`.
pub fn epoll_target_is(pid: i32, epfd: i32, tfd: i32, toff: u32, fd: i32) -> SysResult<bool> {
    epoll_target_held_by(pid, epfd, tfd, toff, (pid, fd))
}

/// As [`epoll_target_is`], for descriptor `fd` of another process `holder`.
pub fn epoll_target_held_by(
    pid: i32,
    epfd: i32,
    tfd: i32,
    toff: u32,
    (holder, fd): (i32, i32),
) -> SysResult<bool> {
    #[repr(C)]
    struct KcmpEpollSlot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = KcmpEpollSlot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: kcmp reads one kcmp_epoll_slot through the pointer, which lives for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            holder,
            pid,
            KCMP_EPOLL_TFD,
            fd,
            &slot as *const KcmpEpollSlot,
        )
    };
    if r < 0 {
        let e = Errno::last();
        // No such registration, or no such descriptor: not the same file.
        if e.0 == libc::ENOENT || e.0 == libc::EBADF {
            return Ok(false);
        }
        return Err(SysError::new(
            "kcmp(KCMP_EPOLL_TFD)",
            format!("pid {pid} epoll fd {epfd} target {tfd}/{toff}, pid {holder} fd {fd}"),
            e,
        ));
    }
    Ok(r == 0)
}

/// What two processes can share since a clone (kcmp's KCMP_* resource types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// The address space (CLONE_VM).
    Memory = 1,
    /// The file descriptor table (CLONE_FILES).
    FdTable = 2,
    /// cwd, root and umask (CLONE_FS).
    FsInfo = 3,
    /// The signal handler table (CLONE_SIGHAND).
    SignalHandlers = 4,
}

/// Whether `pid1` and `pid2` share `what`.
pub fn shares(pid1: i32, pid2: i32, what: Shared) -> SysResult<bool> {
    // SAFETY: kcmp with these types takes only integers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, what as i32, 0, 0) };
    if r < 0 {
        return Err(SysError::last(
            "kcmp",
            format!("{what:?} of pid {pid1} and pid {pid2}"),
        ));
    }
    Ok(r == 0)
}

/// Waits until child `pid` stops (waitpid WUNTRACED). Fails if it ends instead.
pub fn wait_stopped(pid: i32) -> SysResult<()> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::__WALL) };
        if r < 0 {
            let e = SysError::last("waitpid", format!("pid {pid} to stop"));
            if e.errno.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if libc::WIFSTOPPED(status) {
            return Ok(());
        }
        return Err(SysError::new(
            "waitpid",
            format!("pid {pid} ended (status {status:#x}) instead of stopping"),
            Errno(libc::ECHILD),
        ));
    }
}

/// A descriptor of another process, duplicated into ours (pidfd_getfd).
pub struct RemoteFd(std::os::fd::OwnedFd);

impl RemoteFd {
    pub fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// Duplicates descriptor `fd` of process `pid` into the calling process.
pub fn pidfd_getfd(pid: i32, fd: i32) -> SysResult<RemoteFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes integers only.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(SysError::last("pidfd_open", format!("pid {pid}")));
    }
    // SAFETY: as above; the pidfd is ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd as i32, fd, 0) };
    let err = Errno::last();
    // SAFETY: closing the pidfd we opened.
    unsafe { libc::close(pidfd as i32) };
    if r < 0 {
        return Err(SysError::new(
            "pidfd_getfd",
            format!("pid {pid} fd {fd}"),
            err,
        ));
    }
    // SAFETY: r is a fresh descriptor that nothing else owns.
    Ok(RemoteFd(unsafe {
        std::os::fd::OwnedFd::from_raw_fd(r as i32)
    }))
}
