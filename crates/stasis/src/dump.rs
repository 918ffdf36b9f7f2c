//! Dump orchestration: freeze, read every kind of object, write the image, let go.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stasis_image::{ImageWriter, Manifest, MetaKind, TaskEntry, TaskImage, VmaKind};
use stasis_sys::mem::ProcMem;
use stasis_sys::procfs;
use stasis_sys::ptrace;
use stasis_sys::remote::{find_syscall_insn, Remote};

use crate::error::{Error, ProcContext, Result, SysContext};
use crate::freeze::{Frozen, Release};
use crate::inject::{Session, DATA_LEN};
use crate::{
    cow, creds, files, ipc, mem, seccomp, sem_undo, sharing, signals, task, timens, timers, vfork,
};

#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub pid: i32,
    pub images_dir: PathBuf,
    pub leave_running: bool,
    pub leave_stopped: bool,
    pub shell_job: bool,
    /// Save the file locks the tree holds (else a held lock is refused).
    pub file_locks: bool,
    /// Give deleted files a name again instead of saving their contents (CRIU's
    /// --link-remap); restore removes the name.
    pub link_remap: bool,
    /// Accept unix sockets whose peer is outside the tree (CRIU's --ext-unix-sk).
    pub ext_unix_sk: bool,
}

/// What a dump did, for the log and for benchmarks.
#[derive(Debug, Clone)]
pub struct DumpSummary {
    pub pid: i32,
    pub pages: u64,
    /// From the first thread seized to the last one let go.
    pub frozen_for: Duration,
    pub total: Duration,
}

pub fn dump(opts: &DumpOptions) -> Result<DumpSummary> {
    let started = Instant::now();
    let pid = opts.pid;
    let mut tree = freeze_tree(pid)?;
    let freeze_start = Instant::now();
    let vforks = vfork::pairs(&mut tree.live, opts.leave_running || opts.leave_stopped)?;
    // What the tree's clocks read as it stops (for restore --time-ns).
    let clocks = timens::dump_clocks(pid)?;
    log::info!(
        "froze the tree of pid {pid}: {} process(es), {} zombie(s)",
        tree.live.len(),
        tree.zombies.len()
    );
    let pages = match dump_tree(opts, &mut tree, &vforks, clocks) {
        Ok(pages) => pages,
        // Too late to let the tree go on: the rest of it goes too.
        Err(e) if tree.live.iter().any(Frozen::killed) => {
            for frozen in tree.live {
                let _ = frozen.release(Release::Kill);
            }
            return Err(Error::TreeKilled(Box::new(e)));
        }
        Err(e) => return Err(e),
    };
    let how = if opts.leave_stopped {
        Release::Stopped
    } else if opts.leave_running {
        Release::Resume
    } else {
        Release::Kill
    };
    let mut first_err = None;
    for frozen in tree.live {
        if let Err(e) = frozen.release(how) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let frozen_for = freeze_start.elapsed();
    log::info!("pid {pid}: released ({how:?}) after {frozen_for:?}");
    Ok(DumpSummary {
        pid,
        pages,
        frozen_for,
        total: started.elapsed(),
    })
}

/// A frozen process tree: live processes (parents before children) and zombies.
struct Tree {
    live: Vec<Frozen>,
    zombies: Vec<procfs::Stat>,
}

/// Freezes `root` and all its descendants. A frozen process cannot fork, so once every
/// frozen process's children are frozen too, the set is complete and consistent.
fn freeze_tree(root: i32) -> Result<Tree> {
    let mut tree = Tree {
        live: vec![Frozen::freeze(root)?],
        zombies: Vec::new(),
    };
    let mut next = 0;
    while next < tree.live.len() {
        let (pid, tids): (i32, Vec<i32>) = {
            let f = &tree.live[next];
            (
                f.pid,
                f.threads
                    .iter()
                    .map(|t| t.tid)
                    .chain(f.vfork_wait)
                    .collect(),
            )
        };
        next += 1;
        let mut children = Vec::new();
        for tid in tids {
            children.extend(procfs::children(pid, tid).proc(pid)?);
        }
        children.sort_unstable();
        children.dedup();
        for child in children {
            let stat = match procfs::stat(child) {
                Ok(s) => s,
                Err(e) if e.is_gone() => continue,
                Err(e) => {
                    return Err(Error::Proc {
                        pid: child,
                        source: e,
                    })
                }
            };
            if stat.state == 'Z' {
                tree.zombies.push(stat);
            } else {
                match Frozen::freeze(child) {
                    Ok(f) => tree.live.push(f),
                    // A child that exits while the tree is frozen: a zombie now, or gone.
                    Err(e) => match procfs::stat(child) {
                        Ok(s) if s.state == 'Z' || s.state == 'X' => tree.zombies.push(s),
                        Err(gone) if gone.is_gone() => {}
                        _ => return Err(e),
                    },
                }
            }
        }
    }
    Ok(tree)
}

fn dump_tree(
    opts: &DumpOptions,
    tree: &mut Tree,
    vforks: &[(usize, usize)],
    clocks: stasis_image::DumpClocks,
) -> Result<u64> {
    let mut writer = ImageWriter::create(&opts.images_dir)?;
    let mut entries = Vec::new();
    let mut descs =
        files::DescTable::new(opts.ext_unix_sk, opts.leave_running || opts.leave_stopped);
    descs.note_tree(&tree.live.iter().map(|f| f.pid).collect::<Vec<_>>())?;
    descs.objects().borrow_mut().link_remap = opts.link_remap;
    let mut stored = 0;
    let mut images = Vec::with_capacity(tree.live.len());
    // vfork children first: dumped, then killed, which lets their parent stop.
    let mut vfork_children = Vec::new();
    for &(pi, ci) in vforks {
        let (ppid, cpid) = (tree.live[pi].pid, tree.live[ci].pid);
        files::check_same_table(ppid, cpid)?;
        let (image, _) = dump_process(opts, &tree.live[ci], &[], &mut writer, &mut descs, true)?;
        vfork_children.push(image);
        stasis_sys::process::kill(cpid, libc::SIGKILL)
            .ctx(cpid, || "end the vfork child (dumped)".into())?;
        tree.live[pi].finish_vfork()?;
        log::info!("pid {cpid}: vfork child dumped and ended; its parent {ppid} is frozen");
    }
    for (i, frozen) in tree.live.iter().enumerate() {
        if vforks.iter().any(|&(_, ci)| ci == i) {
            continue;
        }
        let (image, pages) = dump_process(opts, frozen, &images, &mut writer, &mut descs, false)?;
        stored += pages;
        images.push(image);
    }
    for child in vfork_children {
        if let Some(parent) = images.iter().find(|p| p.pid == child.ppid) {
            vfork::check_child(parent, &child)?;
        }
        images.push(child);
    }
    // Sockets first: their queues may hold pipes in flight.
    give(&mut images, descs.socket_queues()?, |i| {
        &mut i.socket_queues
    });
    // Every description is known now, those in flight included.
    descs.resolve_epolls(&mut images)?;
    give(&mut images, descs.pipe_data()?, |i| &mut i.pipe_data);
    give(&mut images, descs.save_objects(&mut writer)?, |i| {
        &mut i.file_objects
    });
    if opts.file_locks {
        files::locks::check_shared_leases(&images)?;
    }
    let mut sysv = ipc::dump(&images)?;
    let tree_dies = !(opts.leave_running || opts.leave_stopped);
    let by_death = sem_undo::dump(&mut sysv, &images, &tree.live, tree_dies)?;
    // The images that will record what waiting connections hold are written last.
    let late = descs.waiting_data_owners();
    for image in images.iter().filter(|i| !late.contains(&i.pid)) {
        write_task(&mut writer, image)?;
    }
    let mut zombie_entries = Vec::new();
    for z in &tree.zombies {
        let image = TaskImage {
            pid: z.pid,
            ppid: z.ppid,
            pgid: z.pgrp,
            sid: z.session,
            state: 'Z',
            exit_status: z.exit_code,
            ..Default::default()
        };
        let pages = writer.pages(&format!("pages-{}.img", z.pid))?;
        writer.add_pages(pages)?;
        zombie_entries.push(write_task(&mut writer, &image)?);
    }
    // Last, as it cannot be undone: accept the waiting connections that hold data.
    give(&mut images, descs.accept_waiting()?, |i| {
        &mut i.socket_queues
    });
    for image in images.iter().filter(|i| late.contains(&i.pid)) {
        write_task(&mut writer, image)?;
    }
    // The very last: the undo adjustments of threaded processes, measured by their death
    // (a failure from the first one on kills the whole tree: `dump`).
    sem_undo::measure_by_death(&mut sysv, &images, &mut tree.live, by_death)?;
    if !sysv.is_empty() || sysv.own_namespace {
        writer.write_meta(stasis_image::ipc::IPC_FILE, MetaKind::Ipc, &sysv)?;
    }
    entries.extend(images.iter().map(task_entry));
    entries.extend(zombie_entries);
    let mut dump_options = Vec::new();
    if opts.shell_job {
        dump_options.push("--shell-job".to_string());
    }
    if opts.file_locks {
        dump_options.push("--file-locks".to_string());
    }
    if opts.link_remap {
        dump_options.push("--link-remap".to_string());
    }
    writer.finish(Manifest {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: procfs::kernel_release(),
        page_size: stasis_sys::process::page_size(),
        xsave_features: stasis_sys::process::xsave_features(),
        root_pid: tree.live[0].pid,
        tasks: entries,
        files: Vec::new(),
        dump_options,
        clocks: Some(clocks),
        requires: stasis_image::features::required(&images, &sysv),
    })?;
    Ok(stored)
}

/// Adds each item to the image of the task it belongs to (by pid).
fn give<T>(
    images: &mut [TaskImage],
    items: Vec<(i32, T)>,
    list: impl Fn(&mut TaskImage) -> &mut Vec<T>,
) {
    for (pid, item) in items {
        if let Some(image) = images.iter_mut().find(|i| i.pid == pid) {
            list(image).push(item);
        }
    }
}

fn write_task(writer: &mut ImageWriter, image: &TaskImage) -> Result<TaskEntry> {
    let entry = task_entry(image);
    writer.write_meta(&entry.core_file, MetaKind::Task, image)?;
    Ok(entry)
}

fn task_entry(image: &TaskImage) -> TaskEntry {
    TaskEntry {
        pid: image.pid,
        ppid: image.ppid,
        core_file: format!("task-{}.img", image.pid),
        pages_file: format!("pages-{}.img", image.pid),
    }
}

/// Everything about one frozen process; its pages go to its page file.
fn dump_process(
    opts: &DumpOptions,
    frozen: &Frozen,
    done: &[TaskImage],
    writer: &mut ImageWriter,
    descs: &mut files::DescTable,
    vfork_child: bool,
) -> Result<(TaskImage, u64)> {
    let pid = frozen.pid;
    let stat = procfs::stat(pid).proc(pid)?;
    let status = procfs::status(pid).proc(pid)?;
    let tids: Vec<i32> = frozen.threads.iter().map(|t| t.tid).collect();
    let mut posix_timers = timers::list_posix(pid, &tids)?;
    let smaps = procfs::smaps(pid).proc(pid)?;
    let vmas = mem::collect_vmas(pid, &smaps, descs.objects())?;
    let shared_with_parent = if vfork_child {
        Default::default()
    } else {
        sharing::dump(pid, stat.ppid, done)?
    };
    if shared_with_parent.memory {
        sharing::check_memory_child(&stat, frozen.threads.len(), &shared_with_parent)?;
    }
    // A vfork child's or a CLONE_VM child's memory is its parent's, and so is its fd
    // table (shared, or a copy checked to be unchanged): both are the parent's business.
    let of_parent = vfork_child || shared_with_parent.memory;
    let fds = if of_parent {
        Vec::new()
    } else {
        files::dump(pid, opts.shell_job, descs)?
    };
    let file_locks = files::locks::dump(pid, &fds, opts.file_locks)?;

    let pages_name = format!("pages-{pid}.img");
    let mut pages_out = writer.pages(&pages_name)?;
    // The parent is dumped first (tree order) and still frozen.
    let parent = done
        .iter()
        .find(|p| p.pid == stat.ppid)
        .map(|p| (p.pid, &p.mm.vmas[..]));
    let inherited = if of_parent {
        Vec::new()
    } else {
        cow::find_inherited(pid, &vmas, parent)?
    };
    let runs = if of_parent {
        Vec::new()
    } else {
        let shared_done = mem::shared_anon_stored(done);
        mem::dump_pages(pid, &vmas, &inherited, &shared_done, &mut pages_out)?
    };
    writer.add_pages(pages_out)?;
    let stored: u64 = runs.iter().map(|r| r.count).sum();
    let shared: u64 = inherited.iter().map(|r| r.count).sum();
    log::info!(
        "pid {pid}: {} mappings, {stored} pages stored, {shared} shared with the parent",
        vmas.len()
    );

    let leader = frozen.leader().clone();
    let mut session = DumpSession::open(pid, &leader, &vmas)?;
    let s = session.session();
    let signals = signals::dump(s)?;
    // The leader first, then the other threads, each through a session of its own that
    // shares the data page.
    let mut threads = vec![task::dump_thread(pid, &leader, s)?];
    threads[0].seccomp = seccomp::dump(pid, leader.tid, status.seccomp)?;
    let creds = creds::dump(&status, s)?;
    let data = s.data_addr();
    let insn = session.syscall_insn;
    for t in frozen.threads.iter().filter(|t| t.tid != leader.tid) {
        ptrace::set_sigmask(t.tid, !0u64)
            .ctx(pid, || format!("block signals of thread {}", t.tid))?;
        let mut ts = Session::new(pid, Remote::new(t.tid, insn, t.regs), data)?;
        let mut thread = task::dump_thread(pid, t, &mut ts)?;
        let thread_status = procfs::task_status(pid, t.tid).proc(pid)?;
        thread.seccomp = seccomp::dump(pid, t.tid, thread_status.seccomp)?;
        let own = creds::dump(&thread_status, &mut ts)?;
        if own != creds {
            thread.creds = Some(own);
        }
        threads.push(thread);
    }
    let s = session.session();
    let mut attrs = task::dump_attrs(pid, &status, s)?;
    attrs.shell_job = opts.shell_job;
    attrs.loginuid = creds::dump_loginuid(pid);
    let shared_pending = signals::dump_pending(pid, pid, true)?;
    let itimers = timers::dump(s)?;
    timers::dump_posix(s, &mut posix_timers)?;
    let mut mm = mem::dump_mm(pid, &stat, s, vmas, runs, inherited)?;
    if of_parent {
        mm = Default::default();
    }
    session.close()?;

    let image = TaskImage {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        state: stat.state,
        job_stopped: frozen.job_stopped,
        job_stop_signal: frozen.stop_signal,
        exit_status: 0,
        threads,
        signals,
        attrs,
        creds,
        mm,
        fds,
        itimers,
        posix_timers,
        shared_pending,
        socket_queues: Vec::new(),
        pipe_data: Vec::new(),
        shared_with_parent,
        vfork_child,
        file_objects: Vec::new(),
        file_locks,
    };
    Ok((image, stored))
}

/// A remote-syscall session in a frozen thread, with a data page mapped for the duration.
/// Dropping it (on an error path) unmaps the page; the registers and mask are put back by
/// the `Frozen` it came from.
pub(crate) struct DumpSession {
    session: Session,
    mapped: bool,
    syscall_insn: u64,
}

impl DumpSession {
    pub(crate) fn open(
        pid: i32,
        thread: &crate::freeze::FrozenThread,
        vmas: &[stasis_image::Vma],
    ) -> Result<Self> {
        let vdso = vmas
            .iter()
            .find(|v| matches!(&v.kind, VmaKind::Special { name } if name == "[vdso]"))
            .ok_or_else(|| Error::Unsupported {
                pid,
                object: "address space".into(),
                detail: "no [vdso] mapping to run remote syscalls from".into(),
            })?;
        let mem = ProcMem::open(pid).ctx(pid, || "open /proc/PID/mem".into())?;
        let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
        mem.read(vdso.start, &mut code)
            .ctx(pid, || "read the vdso".into())?;
        let off = find_syscall_insn(&code).ok_or_else(|| Error::Unsupported {
            pid,
            object: "vdso".into(),
            detail: "no syscall instruction in the vdso".into(),
        })?;
        // Signals stay pending (not delivered) while we run calls; Frozen restores the mask.
        ptrace::set_sigmask(thread.tid, !0u64).ctx(pid, || "block signals".into())?;
        let remote = Remote::new(thread.tid, vdso.start + off as u64, thread.regs);
        let mut session = Session::new(pid, remote, 0)?;
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let data = session.call(
            "mmap",
            libc::SYS_mmap,
            [0, DATA_LEN as u64, prot, flags, u64::MAX, 0],
        )?;
        session.set_data_addr(data);
        Ok(Self {
            session,
            mapped: true,
            syscall_insn: vdso.start + off as u64,
        })
    }

    pub(crate) fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    pub(crate) fn close(mut self) -> Result<()> {
        self.mapped = false;
        let data = self.session.data_addr();
        self.session.call(
            "munmap",
            libc::SYS_munmap,
            [data, DATA_LEN as u64, 0, 0, 0, 0],
        )?;
        Ok(())
    }
}

impl Drop for DumpSession {
    fn drop(&mut self) {
        if self.mapped {
            let data = self.session.data_addr();
            let _ = self.session.call(
                "munmap",
                libc::SYS_munmap,
                [data, DATA_LEN as u64, 0, 0, 0, 0],
            );
        }
    }
}
