//! Open file descriptors. Each kind of file is one module that knows how to recognise it at
//! dump and how to open it again at restore; `KINDS` is the registry.

mod anon;
mod chardev;
mod deleted;
mod epoll;
mod fifo;
mod inotify;
pub mod locks;
mod memfd;
mod mqueue;
pub mod object;
mod path;
pub mod pidfd;
mod pipe;
mod pty;
mod unix;
mod unix_queues;
mod unsupported;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use std::collections::BTreeMap;

use stasis_image::{FdImage, FileKind, PipeData, SocketQueue, TaskImage};
use stasis_sys::procfs::{self, FdInfo};
use stasis_sys::sockdiag::{self, UnixSocket};
use stasis_sys::{own, process};

use crate::error::{Error, ProcContext, Result, SysContext};
use unix_queues::{SocketSeen, WaitingData};

pub use mqueue::{
    dump_unheld as dump_unheld_mqueues, prepare as prepare_mqueues, Prepared as PreparedMqueues,
};

/// What dump knows about one descriptor while classifying it.
pub struct FdProbe<'a> {
    pub pid: i32,
    pub fd: i32,
    /// readlink of /proc/PID/fd/N.
    pub target: &'a str,
    pub info: &'a FdInfo,
    pub meta: &'a std::fs::Metadata,
    pub shell_job: bool,
    unix: &'a std::cell::OnceCell<Vec<UnixSocket>>,
    /// File objects (memfd, deleted files) of the tree.
    pub objects: &'a std::cell::RefCell<object::ObjectTable>,
    /// Indices of the pty masters the tree holds.
    pub pty_masters: &'a std::collections::BTreeSet<u32>,
    /// Epoll registrations whose file the process no longer holds (`epoll::dump`).
    pub epoll_pending: &'a std::cell::RefCell<Vec<epoll::Pending>>,
}

impl FdProbe<'_> {
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }
    pub fn is_file(&self) -> bool {
        self.meta.is_file()
    }
    pub fn is_char_device(&self) -> bool {
        self.meta.file_type().is_char_device()
    }
    /// Every unix socket of the network namespace (sock_diag), read once per dump.
    pub fn unix_sockets(&self) -> Result<&[UnixSocket]> {
        if self.unix.get().is_none() {
            let list = sockdiag::unix_sockets().ctx(self.pid, || "list unix sockets".into())?;
            let _ = self.unix.set(list);
        }
        Ok(self.unix.get().map(|v| v.as_slice()).unwrap_or(&[]))
    }

    pub fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            pid: self.pid,
            object: format!("fd {} ({})", self.fd, self.target),
            detail: what.to_string(),
        }
    }
}

/// What a restore step that runs in the restore child returns: errors are text, which the
/// child reports to the tool.
pub type ChildResult<T = ()> = std::result::Result<T, String>;

/// One kind of file, both sides: how dump recognises a descriptor of it, and how restore
/// checks and opens it again. A kind sets the steps it has and takes the rest from
/// [`Kind::NONE`]; adding a kind is one module and one line in `KINDS`.
pub struct Kind {
    /// Dump: describes the descriptor, or None when it is not of this kind.
    dump: fn(&FdProbe) -> Result<Option<FileKind>>,
    /// Restore: whether an image's file is of this kind.
    restores: fn(&FileKind) -> bool,
    /// Restore, before anything is created: whether the file can be opened as it was.
    check: fn(i32, &FdImage) -> Result<()>,
    /// Restore, in the restore root: opens description `f` at descriptor `at`.
    open: fn(&FdImage, i32, &Reopen, &mut KindState) -> ChildResult,
    /// Restore, once every description is open: what needs all of them (messages that
    /// carry files, settings that would refuse the fill); closes what the kind made.
    finish: fn(&Reopen, &mut KindState) -> ChildResult,
}

impl Kind {
    /// Recognises nothing and restores nothing.
    const NONE: Kind = Kind {
        dump: |_| Ok(None),
        restores: |_| false,
        check: |_, _| Ok(()),
        open: |f, _, _, _| Err(format!("fd {}: no kind of file opens it", f.fd)),
        finish: |_, _| Ok(()),
    };
}

/// The registry. Dump tries the kinds in order; the last one names everything else as
/// unsupported. Restore finishes them in order.
const KINDS: &[Kind] = &[
    pipe::KIND,
    unix::KIND,
    anon::KIND,
    epoll::KIND,
    inotify::KIND,
    // Before `deleted`: an unlinked queue looks like a deleted file.
    mqueue::KIND,
    memfd::KIND,
    // Before `deleted` and `path`: an unlinked FIFO is a FIFO still.
    fifo::KIND,
    deleted::KIND,
    object::KIND,
    pidfd::KIND,
    pty::KIND,
    unsupported::BY_NAME,
    path::KIND,
    chardev::KIND,
    unsupported::REST,
];

/// Status flags that describe how the file was opened rather than its state.
const OPEN_ONLY_FLAGS: u32 = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) as u32;

/// Open file descriptions seen so far in the tree, to find the ones that are shared.
#[derive(Default)]
pub struct DescTable {
    /// (pid, fd, (dev, ino), desc id)
    seen: Vec<(i32, i32, (u64, u64), u32)>,
    next: u32,
    pipes: BTreeMap<u64, PipeEnds>,
    /// FIFOs: inode -> (first pid, a reading end if the tree has one).
    fifos: BTreeMap<u64, (i32, Option<(i32, i32)>)>,
    unix: std::cell::OnceCell<Vec<UnixSocket>>,
    /// Unix sockets seen, by inode.
    sockets: BTreeMap<u64, SocketSeen>,
    /// Our own descriptors of the files in flight, kept open while the dump compares
    /// descriptions (kcmp) and reads queues through them.
    in_flight: Vec<std::os::fd::OwnedFd>,
    /// Unix sockets may have their peer outside the tree (--ext-unix-sk).
    ext_unix_sk: bool,
    /// The tree goes on after the dump (--leave-running, --leave-stopped).
    tree_goes_on: bool,
    /// Listeners whose waiting connections hold data, read last (`accept_waiting`).
    waiting_data: Vec<WaitingData>,
    /// Indices of the pty masters the tree holds (`note_tree`).
    pty_masters: std::collections::BTreeSet<u32>,
    objects: std::cell::RefCell<object::ObjectTable>,
    /// Epoll registrations whose file no descriptor of their process holds: found among
    /// every description of the tree once all are known (`resolve_epolls`).
    epoll_pending: std::cell::RefCell<Vec<epoll::Pending>>,
}

/// Where the ends of one pipe were found ((pid, fd) to reach each through: a task's, or
/// ours for an end that is only in flight).
#[derive(Default)]
struct PipeEnds {
    /// The task whose image records the pipe's data.
    first_pid: i32,
    reader: Option<(i32, i32)>,
    writer: Option<(i32, i32)>,
    capacity: u32,
}

impl DescTable {
    /// File objects (memfd, deleted files) met so far, by descriptors or mappings.
    pub fn objects(&self) -> &std::cell::RefCell<object::ObjectTable> {
        &self.objects
    }

    /// Saves the contents of every file object; returns them with the pid of the task
    /// that records each.
    pub fn save_objects(
        &self,
        writer: &mut stasis_image::ImageWriter,
    ) -> Result<Vec<(i32, stasis_image::FileObject)>> {
        self.objects.borrow().save(writer)
    }

    pub fn new(ext_unix_sk: bool, tree_goes_on: bool) -> DescTable {
        DescTable {
            ext_unix_sk,
            tree_goes_on,
            ..Default::default()
        }
    }

    /// Notes what must be known of the whole tree before its descriptors are described:
    /// which ptys have their master in it (their slaves are then part of the image rather
    /// than the caller's terminal).
    pub fn note_tree(&mut self, pids: &[i32]) -> Result<()> {
        for &pid in pids {
            for fd in procfs::fds(pid).proc(pid)? {
                let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) else {
                    continue;
                };
                if meta.file_type().is_char_device() && pty::is_master(meta.rdev()) {
                    let local = process::pidfd_getfd(pid, fd).ctx(pid, || format!("fd {fd}"))?;
                    let index = stasis_sys::pty::pty_index(local.raw())
                        .ctx(pid, || format!("fd {fd} (pty master)"))?;
                    self.pty_masters.insert(index);
                }
            }
        }
        for &index in &self.pty_masters {
            pty::refuse_slave_outside(index, pids)?;
        }
        Ok(())
    }

    /// `owner` is the task whose image records the data; `pid` and `fd` reach the file.
    fn note_fifo(&mut self, owner: i32, pid: i32, fd: i32, flags: u32, file: &FileKind) {
        if let FileKind::Fifo { inode, .. } = *file {
            let e = self.fifos.entry(inode).or_insert((owner, None));
            if flags & libc::O_ACCMODE as u32 != libc::O_WRONLY as u32 && e.1.is_none() {
                e.1 = Some((pid, fd));
            }
        }
    }

    fn note_pipe(&mut self, owner: i32, pid: i32, fd: i32, file: &FileKind) {
        if let FileKind::Pipe {
            inode,
            read_end,
            capacity,
        } = *file
        {
            let e = self.pipes.entry(inode).or_insert_with(|| PipeEnds {
                first_pid: owner,
                capacity,
                ..Default::default()
            });
            let end = if read_end {
                &mut e.reader
            } else {
                &mut e.writer
            };
            end.get_or_insert((pid, fd));
        }
    }

    /// Checks that every pipe has both ends in the tree and reads what is queued in it.
    /// Returns the data keyed by the pid of the task that records it.
    pub fn pipe_data(&self) -> Result<Vec<(i32, PipeData)>> {
        let mut out = Vec::new();
        for (&inode, e) in &self.pipes {
            let (Some((rpid, rfd)), Some(_)) = (e.reader, e.writer) else {
                let (pid, fd) = e.reader.or(e.writer).unwrap_or((e.first_pid, -1));
                return Err(Error::Unsupported {
                    pid,
                    object: format!("fd {fd} (pipe:[{inode}])"),
                    detail:
                        "the other end of the pipe is held by a process outside the dumped tree"
                            .into(),
                });
            };
            let data = pipe::peek(rpid, rfd, e.capacity)?;
            out.push((e.first_pid, PipeData { inode, data }));
        }
        for (&inode, &(first_pid, reader)) in &self.fifos {
            if let Some((rpid, rfd)) = reader {
                let data = pipe::peek(rpid, rfd, 1 << 20)?;
                if !data.is_empty() {
                    out.push((first_pid, PipeData { inode, data }));
                }
            }
        }
        Ok(out)
    }
}

impl DescTable {
    /// The id of the description behind `pid`'s `fd`: an earlier one if shared, else new.
    fn id_of(&mut self, pid: i32, fd: i32, ident: (u64, u64)) -> Result<u32> {
        for &(p, f, id, desc) in &self.seen {
            if id == ident
                && process::same_file_description(p, f, pid, fd)
                    .ctx(pid, || format!("compare fd {fd} with fd {f} of pid {p}"))?
            {
                self.seen.push((pid, fd, ident, desc));
                return Ok(desc);
            }
        }
        self.next += 1;
        self.seen.push((pid, fd, ident, self.next));
        Ok(self.next)
    }
}

/// Classifies `pid`'s descriptor `fd` through `KINDS`.
fn classify(
    pid: i32,
    fd: i32,
    shell_job: bool,
    table: &DescTable,
) -> Result<(FileKind, FdInfo, std::fs::Metadata)> {
    let target = procfs::fd_target(pid, fd).proc(pid)?;
    let info = procfs::fdinfo(pid, fd).proc(pid)?;
    let meta =
        std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).map_err(|e| Error::Unsupported {
            pid,
            object: format!("fd {fd} ({target})"),
            detail: format!("cannot stat it: {e}"),
        })?;
    let probe = FdProbe {
        pid,
        fd,
        target: &target,
        info: &info,
        meta: &meta,
        shell_job,
        unix: &table.unix,
        pty_masters: &table.pty_masters,
        objects: &table.objects,
        epoll_pending: &table.epoll_pending,
    };
    for kind in KINDS {
        if let Some(f) = (kind.dump)(&probe)? {
            return Ok((f, info, meta));
        }
    }
    Err(probe.unsupported("unknown kind of file"))
}

/// Reads every descriptor of `pid`.
pub fn dump(pid: i32, shell_job: bool, descs: &mut DescTable) -> Result<Vec<FdImage>> {
    let mut out: Vec<FdImage> = Vec::new();
    for fd in procfs::fds(pid).proc(pid)? {
        let (file, info, meta) = classify(pid, fd, shell_job, descs)?;
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let desc = descs.id_of(pid, fd, meta_ino(&meta))?;
        descs.note_pipe(pid, pid, fd, &file);
        descs.note_fifo(pid, pid, fd, info.flags, &file);
        descs.note_socket(pid, pid, fd, &file);
        out.push(FdImage {
            fd,
            flags: info.flags & !(libc::O_CLOEXEC as u32) & !OPEN_ONLY_FLAGS,
            cloexec,
            pos: info.pos,
            desc,
            file,
        });
    }
    Ok(out)
}

/// Checks that vfork child `child` still has exactly its parent's descriptors (same
/// numbers, same open file descriptions, same close-on-exec flags): what it had when vfork
/// copied the table. A child that changed them cannot be restored by a new vfork.
pub fn check_same_table(parent: i32, child: i32) -> Result<()> {
    let differ = |detail: String| Error::Unsupported {
        pid: child,
        object: format!("fd table of the vfork child of {parent}"),
        detail,
    };
    let mine = procfs::fds(child).proc(child)?;
    let theirs = procfs::fds(parent).proc(parent)?;
    if mine != theirs {
        return Err(differ(format!(
            "its descriptors {mine:?} are not its parent's {theirs:?} (changed after vfork)"
        )));
    }
    for fd in mine {
        let same = process::same_file_description(parent, fd, child, fd)
            .ctx(child, || format!("compare fd {fd} with its parent's"))?;
        let cloexec = |pid: i32| {
            procfs::fdinfo(pid, fd)
                .map(|i| i.flags & libc::O_CLOEXEC as u32)
                .proc(pid)
        };
        if !same || cloexec(parent)? != cloexec(child)? {
            return Err(differ(format!("fd {fd} changed after vfork")));
        }
    }
    Ok(())
}

/// Checks, before anything is created, that every file can be opened as it was.
pub fn check<'a>(pid: i32, fds: impl IntoIterator<Item = &'a FdImage>) -> Result<()> {
    for f in fds {
        (kind_of(pid, f)?.check)(pid, f)?;
    }
    Ok(())
}

/// The kind that restores `f`.
fn kind_of(pid: i32, f: &FdImage) -> Result<&'static Kind> {
    KINDS
        .iter()
        .find(|k| (k.restores)(&f.file))
        .ok_or_else(|| Error::Restore {
            pid,
            reason: format!("fd {}: no kind of file restores it", f.fd),
        })
}

/// Context the restore child needs to reopen files.
pub struct ReopenContext {
    /// Path of the caller's terminal, for --shell-job.
    pub terminal: Option<String>,
    /// File objects made by `object::create_all`: (object id, descriptor).
    pub object_slots: Vec<(u32, i32)>,
    /// The descriptions first met in flight (SCM_RIGHTS): no task holds them first, so
    /// the root does what a task would (an epoll instance's registrations).
    pub in_flight: Vec<u32>,
}

/// What every kind reads while the restore root opens the tree's descriptions.
pub struct Reopen<'a> {
    /// Every open file description: its id and the first descriptor that refers to it.
    descs: &'a [(u32, &'a FdImage)],
    pipe_data: &'a [&'a PipeData],
    socket_queues: &'a [&'a SocketQueue],
    ctx: &'a ReopenContext,
    slot: &'a dyn Fn(u32) -> i32,
    /// Above every slot. Objects made in pairs (pipes, sockets, ptys) wait here for their
    /// own slot, so that placing one never lands on another.
    spare: i32,
}

impl Reopen<'_> {
    /// The first descriptor of the image whose file `pick` chooses.
    fn find(&self, pick: impl Fn(&FileKind) -> bool) -> Option<&FdImage> {
        self.descs.iter().map(|d| d.1).find(|d| pick(&d.file))
    }

    /// Moves `fd`, made for `f`, above every slot.
    fn park(&self, fd: i32, f: &FdImage) -> ChildResult<i32> {
        own::move_above(fd, self.spare).map_err(|e| format!("fd {}: {e}", f.fd))
    }
}

/// Restore state of the kinds whose objects several descriptions or a later step need
/// (the ends of a pipe, a socket pair, a pty): each kind keeps its own, found by type.
#[derive(Default)]
pub struct KindState(std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any>>);

impl KindState {
    fn of<T: Default + 'static>(&mut self) -> &mut T {
        self.0
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("each entry is keyed by its own type")
    }
}

/// The status flags a description is opened with (close-on-exec belongs to descriptors).
fn open_flags(f: &FdImage) -> i32 {
    f.flags as i32 & !libc::O_CLOEXEC
}

/// Puts `fd`, a new description made for `f`, at `at`.
fn place(fd: i32, at: i32, f: &FdImage) -> ChildResult {
    own::move_fd(fd, at, true).map_err(|e| format!("fd {}: {e}", f.fd))
}

/// Puts a duplicate of `fd`, an object made for several descriptions, at `at` with the
/// status flags of `f` that belong to the description.
fn place_copy(fd: i32, at: i32, f: &FdImage) -> ChildResult {
    let err = |e: stasis_sys::SysError| format!("fd {}: {e}", f.fd);
    own::dup_to(fd, at, true).map_err(err)?;
    own::set_status_flags(at, open_flags(f) & (libc::O_NONBLOCK | libc::O_ASYNC)).map_err(err)
}

/// Opens every open file description of the tree in the calling (restore root) process:
/// `descs` gives for each description id the first descriptor that refers to it, and
/// `slot` the number it must be put at. Each kind opens its own, then finishes them once
/// all are open. Runs in the child, which reports errors as text.
pub fn open_descriptions(
    descs: &[(u32, &FdImage)],
    pipe_data: &[&PipeData],
    socket_queues: &[&SocketQueue],
    ctx: &ReopenContext,
    slot: impl Fn(u32) -> i32,
) -> ChildResult {
    let reopen = Reopen {
        descs,
        pipe_data,
        socket_queues,
        ctx,
        slot: &slot,
        spare: descs.iter().map(|d| slot(d.0)).max().unwrap_or(0) + 1,
    };
    let mut state = KindState::default();
    let me = std::process::id() as i32;
    for &(desc, f) in descs {
        let kind = kind_of(me, f).map_err(|e| e.to_string())?;
        (kind.open)(f, slot(desc), &reopen, &mut state)?;
    }
    for kind in KINDS {
        (kind.finish)(&reopen, &mut state)?;
    }
    Ok(())
}

/// Makes the epoll registrations of the epoll descriptors this task holds first (`first`
/// says whether a descriptor's description is first held by this task).
/// `slot(desc)` is where each description is (for a registered file that no descriptor
/// of the task holds).
pub fn register_epolls(
    fds: &[FdImage],
    first: impl Fn(&FdImage) -> bool,
    slot: impl Fn(u32) -> i32,
) -> ChildResult {
    for f in fds
        .iter()
        .filter(|f| matches!(f.file, FileKind::Epoll { .. }) && first(f))
    {
        epoll::register(f, &slot)?;
    }
    Ok(())
}

pub(crate) fn meta_ino(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// A session leader whose controlling terminal is a pty of the image takes it again; the
/// leader of the group in the foreground of such a terminal puts its group there (the
/// kernel lets only a process of the terminal's session do that, and the group must
/// exist). `all` are every task's files, `slot` where each description is. Runs in the
/// restored process once its descriptors are in place, before it forks its children
/// (which inherit the controlling terminal).
pub fn take_controlling_terminal<'a>(
    t: &TaskImage,
    all: impl Iterator<Item = &'a FdImage>,
    slot: impl Fn(u32) -> i32,
) -> ChildResult {
    for f in all {
        let FileKind::PtyMaster {
            session: Some(session),
            foreground,
            ..
        } = f.file
        else {
            continue;
        };
        if session != t.sid {
            continue;
        }
        if t.pid == session {
            pty::take_controlling(slot(f.desc))?;
        }
        if t.pgid == t.pid && foreground == t.pid && t.pid != session {
            pty::set_foreground_here(slot(f.desc), foreground)?;
        }
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One file of every kind the image knows. The match below has no wildcard, so a new
    /// variant of `FileKind` does not compile until it is listed here.
    fn one_of_each() -> Vec<FileKind> {
        let path = || "/x".to_string();
        let all = vec![
            FileKind::Regular {
                path: path(),
                size: 0,
                dev: 0,
                ino: 0,
                mode: 0,
            },
            FileKind::Directory { path: path() },
            FileKind::Path { path: path() },
            FileKind::CharDevice {
                path: path(),
                rdev: 0,
            },
            FileKind::Terminal { path: path() },
            FileKind::EventFd {
                count: 0,
                semaphore: false,
            },
            FileKind::SignalFd { mask: 0 },
            FileKind::TimerFd {
                clockid: 0,
                value_ns: 0,
                interval_ns: 0,
                ticks: 0,
            },
            FileKind::Epoll { targets: vec![] },
            FileKind::UnixSocket {
                inode: 1,
                kind: 1,
                name: None,
                peer: None,
                peer_name: None,
                listen_backlog: None,
                waiting: vec![],
                peer_gone: false,
                shutdown: 0,
                options: Default::default(),
                bound_file: None,
            },
            FileKind::PtyMaster {
                index: 0,
                termios: vec![],
                winsize: [0; 4],
                locked: false,
                packet: false,
                output: vec![],
                input: vec![],
                session: None,
                foreground: 0,
            },
            FileKind::PtySlave {
                index: 0,
                dev_tty: false,
            },
            FileKind::Inotify { watches: vec![] },
            FileKind::Fifo {
                path: path(),
                inode: 1,
                unlinked: false,
            },
            FileKind::Pipe {
                inode: 1,
                read_end: true,
                capacity: 4096,
            },
            FileKind::Object { object: 1 },
            FileKind::PidFd { pid: 1 },
            FileKind::Mqueue(stasis_image::ipc::MqueueImage {
                name: "/q".into(),
                unlinked: false,
                uid: 0,
                gid: 0,
                mode: 0,
                maxmsg: 1,
                msgsize: 1,
                messages: vec![],
            }),
        ];
        for f in &all {
            match f {
                FileKind::Regular { .. }
                | FileKind::Directory { .. }
                | FileKind::Path { .. }
                | FileKind::CharDevice { .. }
                | FileKind::Terminal { .. }
                | FileKind::EventFd { .. }
                | FileKind::SignalFd { .. }
                | FileKind::TimerFd { .. }
                | FileKind::Epoll { .. }
                | FileKind::UnixSocket { .. }
                | FileKind::PtyMaster { .. }
                | FileKind::PtySlave { .. }
                | FileKind::Inotify { .. }
                | FileKind::Fifo { .. }
                | FileKind::Pipe { .. }
                | FileKind::Object { .. }
                | FileKind::PidFd { .. }
                | FileKind::Mqueue(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_kind_of_file_is_restored_by_exactly_one_kind() {
        for file in one_of_each() {
            let n = KINDS.iter().filter(|k| (k.restores)(&file)).count();
            assert_eq!(n, 1, "{file:?} is restored by {n} kinds");
        }
    }
}
