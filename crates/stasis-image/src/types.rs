//! The data model of an image: what the engine writes at dump and reads at restore.
//!
//! Every struct is encoded as a CBOR map keyed by field name, so a reader ignores the fields
//! it does not know (a newer minor version) and fields added later carry `#[serde(default)]`
//! so that older images still decode.

use serde::{Deserialize, Serialize};

/// The manifest: the entry point of an image directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of the stasis tool that wrote the image.
    pub tool_version: String,
    /// `uname -r` of the kernel the image was taken on.
    pub kernel_release: String,
    /// Page size of the machine that wrote the image.
    pub page_size: u64,
    /// XSAVE feature mask (XCR0) of the CPU the registers were saved on.
    pub xsave_features: u64,
    /// The PID of the root of the dumped tree.
    pub root_pid: i32,
    /// Every task of the tree, parents before children.
    pub tasks: Vec<TaskEntry>,
    /// Every other file of the image with its length and checksum.
    pub files: Vec<FileDigest>,
    /// The command line options that changed how the image was taken (for `show`).
    #[serde(default)]
    pub dump_options: Vec<String>,
    /// CLOCK_MONOTONIC and CLOCK_BOOTTIME as the root saw them when it was frozen (for
    /// `restore --time-ns`); absent in images of older versions.
    #[serde(default)]
    pub clocks: Option<DumpClocks>,
    /// The features of the image a reader must know to restore it correctly (names from
    /// [`crate::features::KNOWN`], sorted); a reader refuses an image that requires one it
    /// does not know. Added in 1.1.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// The clocks a time namespace can offset, as the dumped tree saw them at the freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DumpClocks {
    pub monotonic_ns: u64,
    pub boottime_ns: u64,
}

/// One task of the dumped tree as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// PID of the task at dump (restore recreates it with this PID).
    pub pid: i32,
    /// PID of its parent; for the root, the parent outside the dumped tree.
    pub ppid: i32,
    /// Name of the task's core file inside the image directory.
    pub core_file: String,
    /// Name of the task's page data file inside the image directory.
    pub pages_file: String,
}

/// Length and checksum of one file of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// File name inside the image directory (no `/`, not hidden).
    pub name: String,
    /// Length of the whole file in bytes.
    pub len: u64,
    /// XXH3-64 of the whole file.
    pub xxh3: u64,
}

/// Everything about one process except its page contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskImage {
    pub pid: i32,
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// The task's state letter at dump (R, S, D, T, t, Z...).
    pub state: char,
    /// Whether the process was stopped by job control (SIGSTOP, SIGTSTP...) at dump.
    #[serde(default)]
    pub job_stopped: bool,
    /// The signal that stopped it (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU); 0 if unknown.
    #[serde(default)]
    pub job_stop_signal: i32,
    /// For a zombie (state 'Z'): the wait status its parent will collect (exit code << 8,
    /// or the signal that killed it). Zombies have no threads, memory or files.
    #[serde(default)]
    pub exit_status: i32,
    /// Every thread, the thread group leader first.
    pub threads: Vec<ThreadImage>,
    /// Signal dispositions (shared by all threads).
    pub signals: SignalTable,
    pub attrs: ProcessAttrs,
    pub creds: Credentials,
    /// The address space and the index of its stored pages.
    pub mm: MmImage,
    /// Open file descriptors, in fd order.
    pub fds: Vec<FdImage>,
    /// Interval timers (setitimer): REAL, VIRTUAL, PROF.
    #[serde(default)]
    pub itimers: Vec<ITimer>,
    /// POSIX timers (timer_create), by id.
    #[serde(default)]
    pub posix_timers: Vec<PosixTimer>,
    /// Signals queued for the whole process, oldest first.
    #[serde(default)]
    pub shared_pending: Vec<PendingSignal>,
    /// Messages queued in the unix sockets whose first descriptor (in tree order) this
    /// task holds.
    #[serde(default)]
    pub socket_queues: Vec<SocketQueue>,
    /// Data queued in the pipes whose first end (in tree order) this task holds.
    #[serde(default)]
    pub pipe_data: Vec<PipeData>,
    /// What the process shares with its parent since it was cloned.
    #[serde(default)]
    pub shared_with_parent: SharedWithParent,
    /// A child made by vfork that had not exec'ed or exited: it runs in its parent's
    /// memory (its own `mm` is empty) with a copy of its parent's fd table (its `fds` are
    /// empty), and the parent was inside vfork (its registers are those of vfork's return).
    #[serde(default)]
    pub vfork_child: bool,
    /// File objects (memfd, deleted files) whose first reference (in tree order) this
    /// task holds, by descriptor or mapping.
    #[serde(default)]
    pub file_objects: Vec<crate::FileObject>,
    /// File locks the task holds or whose open file description it holds (`dump
    /// --file-locks`).
    #[serde(default)]
    pub file_locks: Vec<crate::FileLock>,
}

impl TaskImage {
    /// The task's descriptors, then the files in flight in the socket queues its image
    /// records: every open file description the image gives this task.
    pub fn all_files(&self) -> impl Iterator<Item = &FdImage> {
        self.fds.iter().chain(
            self.socket_queues
                .iter()
                .flat_map(|q| q.in_flight.iter().flat_map(|m| m.files.iter())),
        )
    }
}

/// Kernel objects a process shares with its parent (clone flags that outlived the clone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedWithParent {
    /// One file descriptor table (CLONE_FILES): the process's fds are its parent's.
    pub fd_table: bool,
    /// One cwd, root and umask (CLONE_FS).
    pub fs_info: bool,
    /// One address space (CLONE_VM without CLONE_THREAD): the process's `mm` is empty, the
    /// parent's is its own, and its `fds` are empty (the parent's table, shared or copied).
    #[serde(default)]
    pub memory: bool,
    /// One signal handler table (CLONE_SIGHAND, which comes with CLONE_VM).
    #[serde(default)]
    pub signal_handlers: bool,
}

/// Per-thread state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadImage {
    /// Thread ID at dump.
    pub tid: i32,
    /// Thread name (/proc/PID/task/TID/comm, at most 15 bytes).
    pub comm: String,
    pub regs: GpRegs,
    /// The raw NT_X86_XSTATE (XSAVE area) as the kernel returned it.
    #[serde(with = "serde_bytes_compat")]
    pub xstate: Vec<u8>,
    /// Blocked signal mask, bit N-1 for signal N.
    pub sigmask: u64,
    pub sigaltstack: SigAltStack,
    /// set_tid_address() value (clear_child_tid).
    pub clear_child_tid: u64,
    pub robust_list: RobustList,
    pub rseq: Option<RseqConfig>,
    /// Signals queued for this thread, oldest first.
    #[serde(default)]
    pub pending: Vec<PendingSignal>,
    /// This thread's credentials where they differ from the process's (threads can set
    /// their own with raw syscalls).
    #[serde(default)]
    pub creds: Option<Credentials>,
    /// The thread's seccomp state.
    #[serde(default)]
    pub seccomp: Option<Seccomp>,
    pub sched: SchedParams,
}

/// x86-64 general purpose registers in the kernel's `user_regs_struct` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GpRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// The alternate signal stack (`stack_t` of sigaltstack(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SigAltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

/// The robust futex list registered with set_robust_list(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RobustList {
    pub head: u64,
    pub len: u64,
}

/// The rseq registration of a thread (PTRACE_GET_RSEQ_CONFIGURATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RseqConfig {
    pub abi_pointer: u64,
    pub len: u32,
    pub flags: u32,
    pub signature: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SchedParams {
    /// SCHED_OTHER (0), SCHED_FIFO (1), SCHED_RR (2), SCHED_BATCH (3), SCHED_IDLE (5)...
    pub policy: i32,
    /// Real-time priority (0 for the normal policies).
    pub priority: i32,
    /// Nice value, -20..=19.
    pub nice: i32,
    /// SCHED_RESET_ON_FORK was set.
    #[serde(default)]
    pub reset_on_fork: bool,
}

/// Dispositions of signals 1..=64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SignalTable {
    /// One entry per signal, in signal order.
    pub actions: Vec<SigAction>,
}

/// One signal's disposition, in the kernel's `struct sigaction` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SigAction {
    pub signo: i32,
    /// Handler address, or 0 (SIG_DFL) / 1 (SIG_IGN).
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Process-wide attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessAttrs {
    /// Current directory.
    pub cwd: String,
    /// Root directory (chroot).
    pub root: String,
    /// The executable (/proc/PID/exe).
    pub exe: String,
    pub umask: u32,
    /// personality(2) flags.
    pub personality: u32,
    /// Resource limits (getrlimit/prlimit).
    pub rlimits: Vec<Rlimit>,
    /// PR_GET_DUMPABLE.
    pub dumpable: i32,
    /// PR_GET_PDEATHSIG (0: none).
    pub pdeath_signal: i32,
    /// PR_GET_CHILD_SUBREAPER.
    pub child_subreaper: bool,
    /// PR_GET_NO_NEW_PRIVS.
    pub no_new_privs: bool,
    /// PR_GET_THP_DISABLE.
    pub thp_disable: bool,
    /// /proc/PID/oom_score_adj.
    pub oom_score_adj: i32,
    /// Whether the tree was restored with the terminal of the caller (`--shell-job`).
    #[serde(default)]
    pub shell_job: bool,
    /// The audit login uid (/proc/PID/loginuid; `u32::MAX` is unset); `None` without
    /// audit support.
    #[serde(default)]
    pub loginuid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Rlimit {
    /// RLIMIT_* number (RLIMIT_NOFILE is 7).
    pub resource: u32,
    /// Soft limit; `u64::MAX` is RLIM_INFINITY.
    pub soft: u64,
    /// Hard limit; `u64::MAX` is RLIM_INFINITY.
    pub hard: u64,
}

/// User and group IDs, capabilities and securebits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Credentials {
    /// Real, effective, saved and file-system UIDs (the order of "Uid:" in /proc/PID/status).
    pub uid: [u32; 4],
    /// Real, effective, saved and file-system GIDs.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub securebits: u32,
}

/// The address space: the mm fields of prctl(PR_SET_MM_MAP) (from /proc/PID/stat), the
/// auxiliary vector, the mappings and the index of stored pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MmImage {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// The auxiliary vector as pairs of u64 words.
    pub auxv: Vec<u64>,
    /// Every mapping, sorted by address, not overlapping.
    pub vmas: Vec<Vma>,
    /// Where each stored run of pages lives in the task's page file.
    pub pages: Vec<PageRun>,
    /// Pages of private anonymous mappings that are still the very pages of the parent
    /// (copy-on-write since fork, not written by either): not stored here, the parent's
    /// image holds them, and the restore makes them shared again.
    #[serde(default)]
    pub inherited: Vec<PageSpan>,
}

/// A run of consecutive pages, by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSpan {
    /// Virtual address of the first page.
    pub vaddr: u64,
    /// Number of pages.
    pub count: u64,
}

impl PageSpan {
    /// The address after the last page.
    pub fn end(&self, page_size: u64) -> u64 {
        self.vaddr
            .saturating_add(self.count.saturating_mul(page_size))
    }
}

/// A run of consecutive stored pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun {
    /// Virtual address of the first page.
    pub vaddr: u64,
    /// Number of pages.
    pub count: u64,
    /// Byte offset in the page file (page aligned).
    pub offset: u64,
}

/// One mapping of the address space, as /proc/PID/maps and smaps describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// First address (page aligned).
    pub start: u64,
    /// Address after the last byte (page aligned).
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// MAP_SHARED rather than MAP_PRIVATE.
    pub shared: bool,
    pub kind: VmaKind,
    /// File offset for file mappings, in bytes (the offset column of /proc/PID/maps).
    pub pgoff: u64,
    /// Two-letter VmFlags from smaps (e.g. "gd", "lo", "dc", "hg").
    pub vm_flags: Vec<String>,
}

/// What backs a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Anonymous memory (including `[heap]` and `[stack]`); `name` is the bracketed name if any.
    Anonymous { name: Option<String> },
    /// MAP_SHARED|MAP_ANONYMOUS memory (a shmem object, shown as "/dev/zero (deleted)").
    /// Mappings with the same inode, in one task or across the tree (inherited over
    /// fork), are one object and stay one object after restore.
    SharedAnonymous { inode: u64 },
    /// A mapping of a file by path; dev/ino/size identify it at restore.
    File {
        path: String,
        dev: u64,
        ino: u64,
        size: u64,
    },
    /// A mapping of a file object stored in the image (memfd, deleted file): the
    /// [`crate::FileObject`] with this id.
    Object { object: u32 },
    /// An attachment of a System V shared memory segment (maps shows `/SYSV<key> (deleted)`,
    /// the inode is the shmid). `pgoff` is the offset of the mapping in the segment; the
    /// segment itself (with its contents) is in the IPC image (`ipc.img`).
    SysvShm { shmid: i32, size: u64 },
    /// A kernel special mapping (`[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`, ...), not stored.
    Special { name: String },
}

/// One open file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdImage {
    /// Descriptor number.
    pub fd: i32,
    /// Status flags (O_APPEND, O_NONBLOCK, access mode...) as fdinfo reports them.
    pub flags: u32,
    /// FD_CLOEXEC.
    pub cloexec: bool,
    /// File position (lseek).
    pub pos: u64,
    /// Identity of the open file description: descriptors with the same id (dups, or
    /// inherited across fork) share one description, its offset and status flags. Unique
    /// within the whole image.
    #[serde(default)]
    pub desc: u32,
    pub file: FileKind,
}

/// What an fd refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file by path; `size` and `ino` are checked at restore.
    Regular {
        path: String,
        size: u64,
        dev: u64,
        ino: u64,
        mode: u32,
    },
    Directory {
        path: String,
    },
    /// An O_PATH descriptor.
    Path {
        path: String,
    },
    /// A character device opened by path (/dev/null, /dev/urandom...).
    CharDevice {
        path: String,
        rdev: u64,
    },
    /// The caller's terminal, re-attached with --shell-job.
    Terminal {
        path: String,
    },
    /// An eventfd with its counter.
    EventFd {
        count: u64,
        semaphore: bool,
    },
    /// A signalfd and the signals it accepts (bit N-1 for signal N).
    SignalFd {
        mask: u64,
    },
    /// A timerfd: its clock, the time left and interval (ns) and expirations not yet read.
    TimerFd {
        clockid: i32,
        value_ns: u64,
        interval_ns: u64,
        ticks: u64,
    },
    /// An epoll instance and its registrations. Target descriptor numbers are those of the
    /// first task (in tree order) that holds the epoll descriptor.
    Epoll {
        targets: Vec<EpollTarget>,
    },
    /// A unix socket. A connected one's peer is in the tree too; what is queued for it to
    /// read is in the [`SocketQueue`] of the same inode.
    UnixSocket {
        inode: u64,
        /// SOCK_STREAM (1), SOCK_DGRAM (2) or SOCK_SEQPACKET (5).
        kind: u8,
        /// Bound address: a path, or an abstract name starting with a NUL byte.
        #[serde(default)]
        name: Option<Vec<u8>>,
        /// Inode of the connected peer.
        #[serde(default)]
        peer: Option<u64>,
        /// The peer's bound name, when it has one. A peer that is not in the image is
        /// outside the tree (dumped with --ext-unix-sk): a datagram socket connects to
        /// this name again at restore.
        #[serde(default)]
        peer_name: Option<Vec<u8>>,
        /// Listening, with this backlog.
        #[serde(default)]
        listen_backlog: Option<u32>,
        /// A listener's connections waiting to be accepted, in the order accept() takes
        /// them: the inodes of their clients (sockets of the tree, connected again at
        /// restore).
        #[serde(default)]
        waiting: Vec<u64>,
        /// Connected once, its peer closed since: what is queued for it is read, then
        /// end of file (stream) or ECONNREFUSED on sending (datagram).
        #[serde(default)]
        peer_gone: bool,
        /// SHUT_RD (1) / SHUT_WR (2) bits this socket was shut down with.
        #[serde(default)]
        shutdown: u8,
        #[serde(default)]
        options: SocketOptions,
        /// For a socket bound to a path: the socket file that binding made, as it was at
        /// dump. None for abstract and unnamed sockets, a relative path, and in older
        /// images (restore then leaves the file as binding makes it).
        #[serde(default)]
        bound_file: Option<BoundFile>,
    },
    /// The master side of a pseudo-terminal whose pair is restored as a new pty (its
    /// index may differ). Terminal state is the pty's, kept here once.
    PtyMaster {
        /// The index at dump (/dev/pts/N); slaves name their master by it.
        index: u32,
        /// The kernel's `struct termios2` (TCGETS2), raw.
        #[serde(with = "serde_bytes_compat")]
        termios: Vec<u8>,
        /// rows, columns, x pixels, y pixels.
        winsize: [u16; 4],
        locked: bool,
        packet: bool,
        /// Written by the slave side, not yet read on the master.
        #[serde(with = "serde_bytes_compat")]
        output: Vec<u8>,
        /// Written on the master, not yet read on the slave side (raw mode only).
        #[serde(with = "serde_bytes_compat")]
        input: Vec<u8>,
        /// The session (its leader's pid) whose controlling terminal this is, and the
        /// foreground process group.
        session: Option<i32>,
        foreground: i32,
    },
    /// The slave side of a pty whose master is in the tree too.
    PtySlave {
        /// The pty's index at dump.
        index: u32,
        /// Opened as /dev/tty (the opener's controlling terminal then): it comes back as
        /// a /dev/tty description of the new pty.
        #[serde(default)]
        dev_tty: bool,
    },
    /// An inotify instance and its watches (queued events are not kept).
    Inotify {
        watches: Vec<InotifyWatch>,
    },
    /// A named pipe (FIFO) opened by path. Bytes queued in it are in the [`PipeData`] of
    /// its inode when a reading end is in the tree.
    Fifo {
        path: String,
        inode: u64,
        /// The path was unlinked while the FIFO was open: restore makes a FIFO there for
        /// the moment its ends are opened, then unlinks it again.
        #[serde(default)]
        unlinked: bool,
    },
    /// One end of a pipe; both ends are in the tree. Its queued data is in the
    /// [`PipeData`] of the same inode.
    Pipe {
        /// Inode of the pipe at dump: ends with the same inode are one pipe.
        inode: u64,
        /// The read end (else the write end).
        read_end: bool,
        /// Capacity in bytes (F_GETPIPE_SZ).
        capacity: u32,
    },
    /// A file object stored in the image (memfd, deleted file): the
    /// [`crate::FileObject`] with this id, opened again with this descriptor's flags.
    Object {
        object: u32,
    },
    /// A pidfd on process `pid` (of the tree, or outside it if it still exists at restore).
    PidFd {
        pid: i32,
    },
    /// A POSIX message queue (the queue itself: see [`crate::ipc::MqueueImage`]).
    Mqueue(crate::ipc::MqueueImage),
}

/// Seccomp: strict mode, or a stack of filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Seccomp {
    pub strict: bool,
    /// Filters, oldest first (the order they are installed in again).
    pub filters: Vec<SeccompFilter>,
}

/// One seccomp filter: a classic-BPF program and its SECCOMP_FILTER_FLAG_* flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    pub flags: u64,
    /// Raw 8-byte `struct sock_filter` instructions.
    #[serde(with = "serde_bytes_compat")]
    pub program: Vec<u8>,
}

/// One interval timer as getitimer reported it at dump, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ITimer {
    /// ITIMER_REAL (0), ITIMER_VIRTUAL (1) or ITIMER_PROF (2).
    pub which: i32,
    pub interval_us: u64,
    pub value_us: u64,
}

/// One POSIX timer (timer_create): how it notifies, and its state at dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PosixTimer {
    /// The timer id (the kernel's `timer_t`), the same after restore.
    pub id: i32,
    /// The clock id as the kernel keeps it (CPU clocks of other tasks are encoded ids).
    pub clock: i32,
    /// `sigev_notify`: SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD (2), or
    /// SIGEV_THREAD_ID (4) with `target_tid`.
    pub notify: i32,
    /// The signal it sends (`sigev_signo`).
    pub signo: i32,
    /// `sigev_value`, as the bits of the pointer.
    pub value: u64,
    /// The thread a SIGEV_THREAD_ID timer signals (as the dumped task saw it); 0 otherwise.
    pub target_tid: i32,
    /// The period, in nanoseconds (0: one-shot).
    pub interval_ns: u64,
    /// Time left to the next expiry at dump, in nanoseconds (0: disarmed).
    pub value_ns: u64,
    /// timer_getoverrun at dump (for information: it cannot be set again).
    pub overrun: i32,
}

/// A queued signal with its full siginfo (sender, value...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    pub signo: i32,
    /// The kernel's 128-byte siginfo_t, as PTRACE_PEEKSIGINFO returned it.
    #[serde(with = "serde_bytes_compat")]
    pub siginfo: Vec<u8>,
}

/// One inotify watch: its descriptor, the watched file's path and the event mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    pub wd: i32,
    pub path: String,
    pub mask: u32,
}

/// One registration of an epoll instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    /// The descriptor number the file was registered under (the registration's key).
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// When that number was closed or reused since: the descriptor that now holds the
    /// registered file.
    #[serde(default)]
    pub now_at: Option<i32>,
    /// The open file description (`FdImage::desc`) of the registered file, for an epoll
    /// instance that only a message in flight held (restore registers it from the restore
    /// root, where every description is open) or for a file that no descriptor of the
    /// task holds (the task registers it from the description's slot).
    #[serde(default)]
    pub desc: Option<u32>,
}

/// The file a unix socket's path name made when it was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundFile {
    /// Permission bits (who may connect), owner and group.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The path was unlinked since (or holds another file now): restore removes the file
    /// its bind makes, and does not replace a file found at the path.
    pub unlinked: bool,
}

/// Socket options restored with setsockopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SocketOptions {
    /// SO_SNDBUF and SO_RCVBUF as getsockopt reports them (twice what was set).
    pub sndbuf: i32,
    pub rcvbuf: i32,
    pub passcred: bool,
    /// SO_PEEK_OFF (-1 when off).
    pub peek_off: i32,
    /// SO_RCVTIMEO and SO_SNDTIMEO in microseconds (0: none).
    #[serde(default)]
    pub rcvtimeo_us: u64,
    #[serde(default)]
    pub sndtimeo_us: u64,
    /// SO_RCVLOWAT (1 by default; 0 in images that predate it means the default).
    #[serde(default)]
    pub rcvlowat: i32,
}

/// The messages queued for a socket to read (a stream's bytes as one message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketQueue {
    pub inode: u64,
    pub messages: Vec<Vec<u8>>,
    /// Files in flight: the descriptors some of the messages carry (SCM_RIGHTS).
    #[serde(default)]
    pub in_flight: Vec<InFlightFiles>,
    /// Not queued for `inode` to read but sent by it: `inode` is a client whose
    /// connection waits in a listener's backlog (that listener's `waiting`), and these
    /// messages wait in that connection for whoever accepts it. Restore sends them from
    /// the client once it has connected again.
    #[serde(default)]
    pub sent_before_accept: bool,
}

/// The open files one queued message carries (SCM_RIGHTS), in the order they were sent.
/// Each is described like a descriptor of a task (its `fd` is only its position in the
/// message); its `desc` is shared with the task descriptors, or other files in flight,
/// that refer to the same open file description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightFiles {
    /// Index of the message in [`SocketQueue::messages`].
    pub message: u32,
    pub files: Vec<FdImage>,
}

/// Bytes queued in a pipe at dump, to be written into it again at restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeData {
    pub inode: u64,
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// `Vec<u8>` as a CBOR byte string rather than an array of integers.
pub(crate) mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        // `deserialize_byte_buf`, not `deserialize_bytes`: ciborium serves the latter from a
        // 4 KiB scratch buffer only and refuses longer byte strings, and an XSAVE area with
        // AVX-512 and AMX state is about 11 KiB.
        d.deserialize_byte_buf(V)
    }
}
