//! Restore orchestration: check the whole image, create the process with its PID, let it
//! set up what it can itself, then rebuild the rest through remote syscalls and let it go.

use std::fs::File;
use std::path::{Path, PathBuf};

use stasis_image::{ImageReader, TaskImage};
use stasis_sys::mem::MappedFile;
use stasis_sys::ptrace::{self, WaitStatus};
use stasis_sys::remote::Remote;
use stasis_sys::{own, process, procfs};

use crate::error::{Error, ProcContext, Result, SysContext};
use crate::files::{self, ReopenContext};
use crate::inject::Session;
use crate::mem::{self, MapFile, PAGE, TASK_TOP};
use crate::{
    cow, creds, ipc, seccomp, sem_undo, session, sharing, signals, task, timens, timers, vfork,
};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub images_dir: PathBuf,
    pub shell_job: bool,
    pub pidfile: Option<PathBuf>,
    /// Restore into a new PID namespace (with a minimal init as its PID 1), where the
    /// image's PIDs are free even while the original runs, and so for any number of copies.
    pub new_pidns: bool,
    /// Make the root (or the new namespace's init) a sibling of the restoring process:
    /// a child of its parent, which then waits for it (CRIU's --restore-sibling).
    pub sibling: bool,
    /// Restore into a new time namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME go on
    /// from the values they had at dump (`timens`).
    pub time_ns: bool,
}

/// A restored tree: its root (or, with a new PID namespace, that namespace's init, which
/// ends with the root's status) is a child of the calling process.
#[derive(Debug)]
pub struct Restored {
    /// The root's PID as seen from here.
    pub root_pid: i32,
    /// The process to wait for: the root, or the namespace's init.
    pub child_pid: i32,
}

impl Restored {
    /// Waits for the root to end.
    pub fn wait(&self) -> Result<process::ExitStatus> {
        process::wait_exit(self.child_pid)
            .ctx(self.root_pid, || "wait for the restored process".into())
    }
}

/// Everything the restore children need, computed before the first one is created.
///
/// Every open file description of the tree is opened once, by the root, at a "slot"
/// descriptor above all the image's numbers; children inherit the slots when they are
/// forked, take their own descriptors from them, and close the rest. So descriptions
/// shared between processes come back shared.
struct TreePlan<'a> {
    report_fd: i32,
    slot_base: i32,
    /// For each description id, the first descriptor that refers to it: (task, index in
    /// `files::all_files`, which goes on with the files in flight after the task's fds).
    descs: Vec<(u32, usize, usize)>,
    tasks: Vec<TaskPlan>,
    terminal: Option<String>,
    /// Memory shared copy-on-write between parents and children, and the page files.
    cow: cow::CowPlan<'a>,
    /// File objects (memfd, deleted files), made by the root at slots of their own after
    /// the descriptions': (object id, task index, index in its `file_objects`).
    objects: Vec<(u32, usize, usize)>,
    object_base: i32,
    /// The image directory (absolute), where the objects' data files are.
    data_dir: PathBuf,
}

struct TaskPlan {
    map_files: Vec<MapFile>,
    exe_fd: i32,
    scratch: u64,
    /// Indices of this task's children in the image's task list.
    children: Vec<usize>,
}

impl TreePlan<'_> {
    fn slot(&self, desc: u32) -> i32 {
        self.slot_base + desc as i32
    }

    fn object_slot(&self, id: u32) -> i32 {
        let i = self.objects.iter().position(|o| o.0 == id).unwrap_or(0);
        self.object_base + i as i32
    }

    fn slots(&self) -> Vec<i32> {
        let objects = self.objects.iter().map(|o| self.object_slot(o.0));
        self.descs
            .iter()
            .map(|d| self.slot(d.0))
            .chain(objects)
            .collect()
    }
}

/// The code page and the data area for pointer arguments.
const SCRATCH_LEN: u64 = PAGE + crate::inject::DATA_LEN as u64;
/// `syscall` followed by `int3`s: the only code the scratch page holds.
const SCRATCH_CODE: [u8; 4] = [0x0f, 0x05, 0xcc, 0xcc];

pub fn restore(opts: &RestoreOptions) -> Result<Restored> {
    let reader = ImageReader::open(&opts.images_dir)?;
    let manifest = reader.manifest().clone();
    let tasks = reader.tasks()?;
    let root = &tasks[0];
    let here = process::xsave_features();
    if manifest.xsave_features & !here != 0 {
        return Err(Error::Restore {
            pid: root.pid,
            reason: format!(
                "the image needs CPU register state this CPU lacks (XSAVE features {:#x}, this CPU {here:#x})",
                manifest.xsave_features
            ),
        });
    }
    if manifest.page_size != process::page_size() {
        return Err(Error::Restore {
            pid: root.pid,
            reason: format!(
                "page size {} differs from this machine's",
                manifest.page_size
            ),
        });
    }
    // Everything is checked before anything is created.
    let mut pages = Vec::with_capacity(tasks.len());
    for (t, entry) in tasks.iter().zip(&manifest.tasks) {
        let pid = t.pid;
        let file = File::open(reader.path_of(&entry.pages_file)).map_err(|e| Error::Restore {
            pid,
            reason: format!("open {}: {e}", entry.pages_file),
        })?;
        let map =
            MappedFile::open(&file, &entry.pages_file).ctx(pid, || "map the page file".into())?;
        reader.verify_pages(&entry.pages_file, map.bytes())?;
        pages.push(map);
        files::check(pid, files::all_files(t))?;
        let tree: Vec<i32> = tasks.iter().map(|t| t.pid).collect();
        files::pidfd::check(pid, &t.fds, &tree)?;
        for o in &t.file_objects {
            files::object::check(pid, o)?;
            reader.verify_file(&o.data_file)?;
        }
        mem::check_map_files(pid, &t.mm)?;
        let has_terminal = t
            .fds
            .iter()
            .any(|f| matches!(f.file, stasis_image::FileKind::Terminal { .. }));
        if has_terminal && !opts.shell_job {
            return Err(Error::Restore {
                pid,
                reason: "the image was dumped with --shell-job; restore it with --shell-job".into(),
            });
        }
    }
    if opts.new_pidns && tasks.iter().any(|t| t.vfork_child) {
        return Err(Error::Restore {
            pid: root.pid,
            reason: "the image holds a vfork child; restoring it into a new PID namespace is not supported yet".into(),
        });
    }
    if opts.new_pidns {
        if root.pid == 1 {
            return Err(Error::Restore {
                pid: 1,
                reason: "the root is PID 1 already; restoring a PID namespace's init into a new namespace is not supported yet".into(),
            });
        }
    } else {
        for t in &tasks {
            wait_pid_free(t.pid)?;
        }
    }

    // SysV IPC objects: decided (reuse or create) before anything is created; made
    // before the tree, which attaches its segments; removed again if the restore fails.
    let sysv = reader.ipc()?;
    if let Some(img) = &sysv {
        ipc::enter_own_namespace(root.pid, img)?;
    }
    let sysv_plan = sysv
        .as_ref()
        .map(|img| ipc::check(root.pid, img))
        .transpose()?;
    let page_bytes: Vec<&[u8]> = pages.iter().map(|p| p.bytes()).collect();
    let mut plan = make_plan(&tasks, &page_bytes, opts)?;
    plan.data_dir = std::path::absolute(reader.dir()).map_err(|e| Error::Restore {
        pid: root.pid,
        reason: format!("image directory {}: {e}", reader.dir().display()),
    })?;
    let sysv_created = match &sysv_plan {
        Some(p) => ipc::create(root.pid, p)?,
        None => ipc::Created::none(root.pid),
    };
    let unheld_mqueues = sysv.as_ref().map_or(&[][..], |i| i.mqueues.as_slice());
    let mqueues = files::prepare_mqueues(root.pid, &tasks, unheld_mqueues)?;
    if opts.time_ns {
        // Before the first child: the children made from now on are in it.
        timens::enter_for_children(root.pid, manifest.clocks.as_ref())?;
    }
    let (report_r, report_w) = own::pipe().ctx(root.pid, || "create report pipe".into())?;
    let sibling = if opts.sibling {
        libc::CLONE_PARENT as u64
    } else {
        0
    };
    let spawned = if opts.new_pidns {
        let flags = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64 | sibling;
        process::spawn_with(0, flags, || init_main(&tasks, &plan, report_w))
    } else {
        process::spawn_with(root.pid, sibling, || {
            task_main(&tasks, &plan, 0, Some(report_w))
        })
    };
    own::close(report_w);
    let child_pid = match spawned {
        Ok(p) => p,
        Err(e) => {
            own::close(report_r);
            return Err(spawn_error(root.pid, e));
        }
    };
    let mut guard = TreeGuard {
        child: Some(child_pid),
        ours: !opts.sibling,
        all: if opts.new_pidns {
            Vec::new()
        } else {
            tasks.iter().map(|t| t.pid).collect()
        },
    };
    let report = own::read_to_end(report_r).ctx(root.pid, || "read the children's reports".into());
    own::close(report_r);
    let report = String::from_utf8_lossy(&report?).into_owned();
    check_reports(&tasks, &report)?;
    log::info!(
        "{} process(es) created, file tables and attributes set up",
        tasks.len()
    );
    let pids = if opts.new_pidns {
        PidMap::of_namespace(child_pid)?
    } else {
        PidMap::Same
    };
    // Every task is rebuilt before any runs: memory shared between them must not change
    // while the rest is restored, and the tree starts as one.
    let mut made = Made::default();
    let mut ready = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if t.state != 'Z' && !sharing::made_by_parent(t) {
            let mm_children: Vec<&TaskImage> = tasks
                .iter()
                .filter(|c| c.ppid == t.pid && c.shared_with_parent.memory)
                .collect();
            // The root touches the objects this restore created.
            let sysv_root = (i == 0).then_some(&sysv_created);
            ready.extend(take_over(
                t,
                &plan.tasks[i],
                &plan.cow.contents(i),
                &pids,
                &mut made,
                (sysv_root, sysv.as_ref()),
                &mm_children,
            )?);
            if let Some(child) = tasks.iter().find(|c| c.vfork_child && c.ppid == t.pid) {
                let cpid = vfork::again(t, child)?;
                // `again` checked that the child has its thread.
                finish_thread(cpid, cpid, &child.threads[0])?;
                ready.push(Ready {
                    pid: cpid,
                    tids: vec![cpid],
                    sig: 0,
                });
            }
        }
    }
    files::object::seal_late(&tasks, |pid| pids.host(pid))?;
    // Every task holds its segments and queues now.
    sysv_created.finish()?;
    mqueues.finish()?;
    for r in ready {
        r.release()?;
    }
    let root_pid = pids.host(root.pid)?;
    if let Some(path) = &opts.pidfile {
        std::fs::write(path, format!("{root_pid}\n")).map_err(|e| Error::Restore {
            pid: root_pid,
            reason: format!("write pidfile {}: {e}", path.display()),
        })?;
    }
    guard.child = None;
    Ok(Restored {
        root_pid,
        child_pid,
    })
}

fn spawn_error(pid: i32, e: stasis_sys::SysError) -> Error {
    if e.errno.0 == libc::EEXIST {
        Error::PidInUse {
            pid,
            comm: comm_of(pid),
        }
    } else {
        Error::Sys {
            pid,
            context: "create the process with its PID (clone3 set_tid)".into(),
            source: e,
        }
    }
}

/// Every task reports one line, "PID ok" or "PID error: ...".
fn check_reports(tasks: &[TaskImage], report: &str) -> Result<()> {
    for line in report.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or((line, ""));
        if let Some(msg) = rest.strip_prefix("error: ") {
            return Err(Error::ChildSetup {
                pid: pid.parse().unwrap_or(0),
                message: msg.to_string(),
            });
        }
    }
    for t in tasks
        .iter()
        .filter(|t| t.state != 'Z' && !sharing::made_by_parent(t))
    {
        let ok = format!("{} ok", t.pid);
        if !report.lines().any(|l| l == ok) {
            return Err(Error::ChildSetup {
                pid: t.pid,
                message: "it ended without reporting (killed?)".into(),
            });
        }
    }
    Ok(())
}

/// Kills every process of the tree and reaps our child (the root, or the namespace's
/// init, whose death takes the whole namespace with it) unless the restore completed.
struct TreeGuard {
    child: Option<i32>,
    /// The child is ours to reap (not a sibling).
    ours: bool,
    all: Vec<i32>,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child {
            for &pid in self.all.iter().rev() {
                let _ = process::kill(pid, libc::SIGKILL);
            }
            if self.ours {
                process::kill_and_reap(child);
            } else {
                let _ = process::kill(child, libc::SIGKILL);
            }
        }
    }
}

/// How the image's PIDs map to PIDs the tool can use.
enum PidMap {
    /// Restored with their own PIDs in our namespace.
    Same,
    /// Restored in a new PID namespace: (PID inside, PID here).
    Namespace(Vec<(i32, i32)>),
}

impl PidMap {
    /// Reads /proc/*/status NSpid of every process in the PID namespace of `init`.
    fn of_namespace(init: i32) -> Result<Self> {
        let ns =
            std::fs::read_link(format!("/proc/{init}/ns/pid")).map_err(|e| Error::Restore {
                pid: init,
                reason: format!("read the PID namespace of the restore init: {e}"),
            })?;
        let mut map = Vec::new();
        for entry in std::fs::read_dir("/proc").map_err(|e| Error::Restore {
            pid: init,
            reason: format!("list /proc: {e}"),
        })? {
            let Some(host) = entry
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
            else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{host}/ns/pid"))
                .ok()
                .as_ref()
                != Some(&ns)
            {
                continue;
            }
            if let Ok(st) = procfs::status(host) {
                if let Some(&inner) = st.ns_pid.last() {
                    map.push((inner, host));
                }
            }
        }
        Ok(Self::Namespace(map))
    }

    fn host(&self, pid: i32) -> Result<i32> {
        match self {
            Self::Same => Ok(pid),
            Self::Namespace(map) => {
                map.iter()
                    .find(|m| m.0 == pid)
                    .map(|m| m.1)
                    .ok_or(Error::Restore {
                        pid,
                        reason: "the restored process is not in the new PID namespace".into(),
                    })
            }
        }
    }

    /// The PID here of thread `tid` (a PID inside) of process `host_pid` (a PID here).
    fn host_thread(&self, host_pid: i32, tid: i32) -> Result<i32> {
        if let Self::Same = self {
            return Ok(tid);
        }
        for t in procfs::threads(host_pid).proc(host_pid)? {
            if procfs::task_status(host_pid, t).is_ok_and(|s| s.ns_pid.last() == Some(&tid)) {
                return Ok(t);
            }
        }
        Err(Error::Restore {
            pid: host_pid,
            reason: format!("thread {tid} not found after creating it"),
        })
    }
}

/// PID 1 of a new PID namespace: gives it its own /proc, creates the tree's root with its
/// PID, reaps orphans, and ends with the root's status (taking the namespace with it).
fn init_main(tasks: &[TaskImage], plan: &TreePlan, report_w: i32) -> i32 {
    let root = &tasks[0];
    if let Err(e) = own::remount_proc_private() {
        let _ = own::write_all(
            report_w,
            format!("{} error: new PID namespace: {e}\n", root.pid).as_bytes(),
        );
        return 1;
    }
    let spawned = process::spawn_with_pid(root.pid, || task_main(tasks, plan, 0, Some(report_w)));
    if let Err(e) = &spawned {
        let _ = own::write_all(report_w, format!("{} error: {e}\n", root.pid).as_bytes());
    }
    own::close_all_except(&[]);
    let Ok(root_pid) = spawned else {
        return 1;
    };
    while let Some((pid, status)) = own::wait_any() {
        if pid == root_pid {
            return if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                libc::WEXITSTATUS(status)
            };
        }
    }
    1
}

fn comm_of(pid: i32) -> String {
    procfs::status(pid)
        .map(|s| s.name)
        .unwrap_or_else(|_| "unknown".into())
}

/// A PID held by a zombie or a dying process is free soon: wait a little for it.
fn wait_pid_free(pid: i32) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let st = match procfs::status(pid) {
            Err(_) => return Ok(()),
            Ok(s) => s,
        };
        let dying = st.state == 'Z' || st.state == 'X';
        if !dying || std::time::Instant::now() > deadline {
            return Err(Error::PidInUse { pid, comm: st.name });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn make_plan<'a>(
    tasks: &[TaskImage],
    pages: &[&'a [u8]],
    opts: &RestoreOptions,
) -> Result<TreePlan<'a>> {
    let root = tasks[0].pid;
    let max_fd = tasks
        .iter()
        .flat_map(|t| t.fds.iter().map(|f| f.fd))
        .max()
        .unwrap_or(2)
        .max(2);
    let report_fd = max_fd + 1;
    let slot_base = max_fd + 2;
    let mut descs: Vec<(u32, usize, usize)> = Vec::new();
    for (ti, t) in tasks.iter().enumerate() {
        for (fi, f) in files::all_files(t).enumerate() {
            if !descs.iter().any(|d| d.0 == f.desc) {
                descs.push((f.desc, ti, fi));
            }
        }
    }
    let max_desc = descs.iter().map(|d| d.0).max().unwrap_or(0) as i32;
    let objects: Vec<(u32, usize, usize)> = tasks
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| {
            t.file_objects
                .iter()
                .enumerate()
                .map(move |(oi, o)| (o.id, ti, oi))
        })
        .collect();
    let object_base = slot_base + max_desc + 1;
    let mut next_fd = object_base + objects.len() as i32;
    let own_maps: Vec<(u64, u64)> = procfs::maps(std::process::id() as i32)
        .proc(root)?
        .iter()
        .map(|m| (m.start, m.end))
        .collect();
    let cow = cow::CowPlan::new(tasks, pages, &own_maps)?;
    let prepared: Vec<(u64, u64)> = cow.all_regions().collect();
    let mut plans = Vec::with_capacity(tasks.len());
    for t in tasks {
        let map_files = mem::plan_map_files(&t.mm, next_fd);
        let exe_fd = next_fd + map_files.len() as i32;
        next_fd = exe_fd + 1;
        // The scratch area must be free both in our own layout (the child starts as our
        // copy) and in the image's.
        let mut occupied: Vec<(u64, u64)> = t.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        occupied.extend_from_slice(&own_maps);
        // Restore children inherit the regions their ancestors prepare.
        occupied.extend_from_slice(&prepared);
        let scratch =
            mem::find_gap(&occupied, SCRATCH_LEN, 1 << 32, TASK_TOP).ok_or_else(|| {
                Error::Restore {
                    pid: t.pid,
                    reason: "no free address range for the scratch page".into(),
                }
            })?;
        let children = tasks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ppid == t.pid && c.pid != root && !sharing::made_by_parent(c))
            .map(|(i, _)| i)
            .collect();
        plans.push(TaskPlan {
            map_files,
            exe_fd,
            scratch,
            children,
        });
    }
    let terminal = if opts.shell_job {
        std::fs::read_link("/proc/self/fd/0")
            .ok()
            .map(|p| p.display().to_string())
            .filter(|p| p.starts_with("/dev/"))
    } else {
        None
    };
    Ok(TreePlan {
        report_fd,
        slot_base,
        descs,
        tasks: plans,
        terminal,
        cow,
        objects,
        object_base,
        data_dir: PathBuf::new(),
    })
}

/// Runs in each new process (a copy of the tool): sets up what it can do itself, creates
/// its children, reports, and waits to be taken over. `report_w` is the tool's pipe for
/// the root; other tasks inherit it at `plan.report_fd`.
fn task_main(tasks: &[TaskImage], plan: &TreePlan, idx: usize, report_w: Option<i32>) -> i32 {
    own::block_all_signals();
    let _ = own::set_pdeathsig(libc::SIGKILL);
    let pid = tasks[idx].pid;
    let r = task_setup(tasks, plan, idx, report_w);
    let line = match &r {
        Ok(()) => format!("{pid} ok\n"),
        Err(e) => format!("{pid} error: {}\n", e.replace('\n', " ")),
    };
    // On an early failure the report descriptor may not have been moved yet.
    if own::write_all(plan.report_fd, line.as_bytes()).is_err() {
        if let Some(w) = report_w {
            let _ = own::write_all(w, line.as_bytes());
        }
    }
    if r.is_err() {
        return 1;
    }
    if tasks[idx].shared_with_parent.fd_table {
        // The table is the parent's: it closes the report pipe, once this stop tells it
        // that this task is done with the table.
        let _ = process::kill(std::process::id() as i32, libc::SIGSTOP);
    } else {
        own::close(plan.report_fd);
    }
    own::park()
}

fn task_setup(
    tasks: &[TaskImage],
    plan: &TreePlan,
    idx: usize,
    report_w: Option<i32>,
) -> std::result::Result<(), String> {
    let t = &tasks[idx];
    let tp = &plan.tasks[idx];
    // First, while the tool's copy has allocated least: the memory children share.
    plan.cow.prepare(idx)?;
    let shares_table = t.shared_with_parent.fd_table;
    let mut keep = plan.slots();
    keep.push(plan.report_fd);
    if let Some(w) = report_w {
        // The root: only the report pipe comes from the tool; it opens every description.
        own::dup_to(w, plan.report_fd, true).map_err(|e| e.to_string())?;
        own::close_all_except(&[plan.report_fd]);
        let objects: Vec<&stasis_image::FileObject> = plan
            .objects
            .iter()
            .map(|&(_, ti, oi)| &tasks[ti].file_objects[oi])
            .collect();
        files::object::create_all(&objects, &plan.data_dir, |id| plan.object_slot(id))?;
        let ctx = ReopenContext {
            terminal: plan.terminal.clone(),
            object_slots: plan
                .objects
                .iter()
                .map(|o| (o.0, plan.object_slot(o.0)))
                .collect(),
        };
        let descs: Vec<(u32, &stasis_image::FdImage)> = plan
            .descs
            .iter()
            .filter_map(|&(d, ti, fi)| Some((d, files::all_files(&tasks[ti]).nth(fi)?)))
            .collect();
        let pipe_data: Vec<&stasis_image::PipeData> =
            tasks.iter().flat_map(|t| t.pipe_data.iter()).collect();
        let socket_queues: Vec<&stasis_image::SocketQueue> =
            tasks.iter().flat_map(|t| t.socket_queues.iter()).collect();
        files::open_descriptions(&descs, &pipe_data, &socket_queues, &ctx, |d| plan.slot(d))?;
        for t in tasks {
            files::locks::take_description_locks(&t.file_locks, &t.fds, |d| plan.slot(d))?;
        }
    } else if !shares_table {
        own::close_all_except(&keep);
    }
    session::set_session(t, report_w.is_some())?;
    // A child sharing its parent's fd table finds its descriptors in place.
    for f in t.fds.iter().filter(|_| !shares_table) {
        own::dup_to(plan.slot(f.desc), f.fd, f.cloexec).map_err(|e| format!("fd {}: {e}", f.fd))?;
    }
    files::take_controlling_terminal(t, tasks.iter().flat_map(files::all_files), |d| plan.slot(d))?;
    files::register_epolls(&t.fds, |f| {
        plan.descs
            .iter()
            .any(|&(d, ti, _)| d == f.desc && ti == idx)
    })?;
    // Children in a session or process group whose leader is gone are forked by a helper
    // that takes the leader's PID and makes the session or group; with CLONE_PARENT
    // their parent is still this task. The helper then ends and is reaped here.
    let mut helpers: Vec<session::Leaderless> = Vec::new();
    for &ci in &tp.children {
        let key = session::leaderless(tasks, t, &tasks[ci]);
        if !helpers.contains(&key) {
            helpers.push(key);
        }
    }
    for key in helpers {
        let mine: Vec<usize> = tp
            .children
            .iter()
            .copied()
            .filter(|&ci| session::leaderless(tasks, t, &tasks[ci]) == key)
            .collect();
        let spawn_children = |flags: u64| -> std::result::Result<(), String> {
            for &ci in &mine {
                let c = &tasks[ci];
                let r = if c.state == 'Z' {
                    process::spawn_with(c.pid, flags, || zombie_main(c))
                } else {
                    let flags = flags | sharing::clone_flags(c);
                    process::spawn_with(c.pid, flags, || task_main(tasks, plan, ci, None))
                };
                r.map_err(|e| format!("create child {}: {e}", c.pid))?;
            }
            Ok(())
        };
        match key {
            session::Leaderless::No => spawn_children(0)?,
            session::Leaderless::Session(id) | session::Leaderless::Group(id) => {
                // Sharing the fd table or fs information with this task goes through
                // the stand-in, which shares them too.
                let share = mine
                    .iter()
                    .map(|&ci| sharing::clone_flags(&tasks[ci]))
                    .fold(0, |a, b| a | b);
                let helper = process::spawn_with(id, share, || {
                    let made = match key {
                        session::Leaderless::Session(_) => own::setsid(),
                        _ => own::setpgid(0, 0),
                    };
                    match made
                        .map_err(|e| e.to_string())
                        .and_then(|_| spawn_children(libc::CLONE_PARENT as u64))
                    {
                        Ok(()) => 0,
                        Err(e) => {
                            let line = format!("{} error: leader stand-in {id}: {e}\n", t.pid);
                            let _ = own::write_all(plan.report_fd, line.as_bytes());
                            1
                        }
                    }
                })
                .map_err(|e| format!("create a stand-in for the gone leader {id}: {e}"))?;
                let _ = process::wait_exit(helper);
            }
        }
    }
    // Children sharing this fd table have set up everything they open in it (they stop
    // when done); only then can the slots go, sparing what they opened.
    let group = sharing::fd_table_group(tasks, idx);
    for &ci in tp.children.iter().filter(|&&ci| group.contains(&ci)) {
        let pid = tasks[ci].pid;
        process::wait_stopped(pid)
            .and_then(|()| process::kill(pid, libc::SIGCONT))
            .map_err(|e| format!("wait for child {pid} sharing the fd table: {e}"))?;
    }
    let mut own_fds: Vec<i32> = t.fds.iter().map(|f| f.fd).collect();
    own_fds.push(plan.report_fd);
    for &gi in group.iter().filter(|&&gi| gi != idx) {
        let g = &plan.tasks[gi];
        own_fds.extend(g.map_files.iter().map(|m| m.fd));
        own_fds.push(g.exe_fd);
    }
    // Mapped file objects come from their slots, which close now.
    for mf in &tp.map_files {
        if let Some(object) = mf.object {
            own::dup_to(plan.object_slot(object), mf.fd, true)
                .map_err(|e| format!("mapped file object {object}: {e}"))?;
            own_fds.push(mf.fd);
        }
    }
    if !shares_table {
        own::close_all_except(&own_fds);
    }
    for mf in tp.map_files.iter().filter(|m| m.object.is_none()) {
        let flags = if mf.writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let fd = own::open(Path::new(&mf.path), flags, 0)
            .map_err(|e| format!("open mapped file: {e}"))?;
        own::move_fd(fd, mf.fd, true).map_err(|e| e.to_string())?;
    }
    let exe = own::open(Path::new(&t.attrs.exe), libc::O_RDONLY, 0)
        .map_err(|e| format!("open executable: {e}"))?;
    own::move_fd(exe, tp.exe_fd, true).map_err(|e| e.to_string())?;
    // Only the task itself can set it; through /proc, so before the chroot.
    creds::restore_loginuid_in_child(t.attrs.loginuid)?;
    // Paths are resolved above; chroot comes now.
    task::restore_attrs_in_child(&t.attrs, t.shared_with_parent.fs_info)
        .map_err(|e| e.to_string())?;
    own::map_scratch(tp.scratch, SCRATCH_LEN as usize, &SCRATCH_CODE).map_err(|e| e.to_string())?;
    Ok(())
}

/// A zombie comes back as a child that ends at once with the status it had.
fn zombie_main(t: &TaskImage) -> i32 {
    let _ = session::set_session(t, false);
    let status = t.exit_status;
    if libc::WIFSIGNALED(status) {
        own::die_by_signal(libc::WTERMSIG(status));
    }
    libc::WEXITSTATUS(status)
}

/// The signal that stops a job-stopped task again: the one that stopped it, if its
/// default action still applies, else SIGSTOP.
fn stop_signal(t: &TaskImage) -> i32 {
    let sig = t.job_stop_signal;
    let default = t
        .signals
        .actions
        .iter()
        .find(|a| a.signo == sig)
        .is_none_or(|a| a.handler == 0);
    if sig > 0 && default {
        sig
    } else {
        libc::SIGSTOP
    }
}

/// Final mask, registers and FPU state of a stopped thread.
fn finish_thread(pid: i32, tid: i32, th: &stasis_image::ThreadImage) -> Result<()> {
    ptrace::set_sigmask(tid, th.sigmask).ctx(pid, || format!("signal mask of thread {tid}"))?;
    ptrace::set_regs(tid, &task::regs_from_image(&th.regs))
        .ctx(pid, || format!("registers of thread {tid}"))?;
    ptrace::set_xstate(tid, &th.xstate).ctx(pid, || format!("FPU/vector registers of thread {tid}"))
}

/// Objects made once per restore that later tasks find again: shared anonymous memory,
/// pidfds.
#[derive(Default)]
struct Made {
    shmem: mem::ShmemTable,
    pidfds: files::pidfd::Opened,
}

/// Takes the waiting child over with ptrace and turns it into the image's process.
fn take_over(
    t: &TaskImage,
    plan: &TaskPlan,
    contents: &mem::Contents,
    pids: &PidMap,
    made: &mut Made,
    sysv: (Option<&ipc::Created>, Option<&stasis_image::ipc::IpcImage>),
    mm_children: &[&TaskImage],
) -> Result<Vec<Ready>> {
    let pid = pids.host(t.pid)?;
    ptrace::seize(
        pid,
        libc::PTRACE_O_TRACECLONE | ptrace::PTRACE_O_SUSPEND_SECCOMP,
    )
    .ctx(pid, || "seize the restore child".into())?;
    ptrace::interrupt(pid).ctx(pid, || "interrupt the restore child".into())?;
    loop {
        match ptrace::wait_task(pid).ctx(pid, || "wait for the restore child".into())? {
            WaitStatus::Stopped { event: 128, .. } => break,
            WaitStatus::Stopped { sig, .. } => {
                ptrace::cont(pid, sig).ctx(pid, || "resume restore child".into())?
            }
            WaitStatus::Exited(c) => {
                return Err(Error::Restore {
                    pid,
                    reason: format!("the restore child exited with {c}"),
                })
            }
            WaitStatus::Signaled(s) => {
                return Err(Error::Restore {
                    pid,
                    reason: format!("the restore child was killed by signal {s}"),
                })
            }
            _ => {}
        }
    }
    let regs = ptrace::get_regs(pid).ctx(pid, || "registers of the restore child".into())?;
    let remote = Remote::new(pid, plan.scratch, regs);
    let mut s = Session::new(pid, remote, plan.scratch + PAGE)?;
    s.set_ns_pid(t.pid);
    let thread = &t.threads[0];

    task::unregister_inherited_rseq(&mut s)?;
    // What the tool's copy collected (SIGCHLD of its children...) is not the image's.
    signals::drain_pending(&mut s)?;
    // The child's exe is the tool's; when the image's is the same file, it stays (the
    // kernel refuses to replace an exe that is still mapped).
    let same_exe = match (
        own::stat(Path::new(&t.attrs.exe)),
        own::stat(Path::new("/proc/self/exe")),
    ) {
        (Ok(a), Ok(b)) => (a.0, a.1) == (b.0, b.1),
        _ => false,
    };
    let exe_fd = if same_exe { -1 } else { plan.exe_fd };
    // Nothing is pending and no handler is set yet: one stop per call is safe.
    s.trap_after_calls(true)?;
    mem::restore(
        &mut s,
        &mut made.shmem,
        &t.mm,
        &plan.map_files,
        exe_fd,
        contents,
        (plan.scratch, plan.scratch + SCRATCH_LEN),
    )?;
    for fd in plan.map_files.iter().map(|m| m.fd).chain([plan.exe_fd]) {
        s.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    }
    s.trap_after_calls(false)?;
    // Once no descriptor it does not keep is left to close (which would drop them).
    files::locks::take_posix_locks(&mut s, &t.file_locks)?;
    // The whole tree exists now: pidfds can be opened on any process of it.
    files::pidfd::restore(&mut s, &t.fds, &mut made.pidfds)?;
    // Objects this restore created get their last use from inside the tree.
    if let (Some(created), Some(img)) = sysv {
        created.touch(&mut s, img)?;
    }
    // After the root's touch (whose SETALL clears the undo adjustments of created sets).
    if let Some(img) = sysv.1 {
        sem_undo::restore(&mut s, t.pid, img)?;
    }
    restore_process_state(&mut s, pid, t, true)?;
    // Children in this address space, made before filters and credentials change.
    let mut ready = Vec::with_capacity(1 + mm_children.len());
    for c in mm_children {
        ready.push(create_mm_child(&mut s, pid, plan.scratch, c, pids)?);
    }
    // The filters every thread has, before the threads are made: they inherit them, shared.
    let seccomp_shared = seccomp::shared_prefix(&t.threads);
    if let Some(sc) = &thread.seccomp {
        seccomp::restore_prefix(&mut s, sc, seccomp_shared)?;
    }
    // The other threads: created in the main one, set up through sessions of their own,
    // left stopped with their final registers. Before the main thread's credentials
    // change, which new threads would inherit.
    let mut host_tids = vec![pid];
    s.trap_after_calls(task::trap_after_allowed(t, thread))?;
    let mut inherited_creds = creds::Inherited::default();
    for th in t.threads.iter().filter(|th| th.tid != t.pid) {
        let tid = task::create_thread(&mut s, th, |ns_tid| pids.host_thread(pid, ns_tid))?;
        host_tids.push(tid);
        let regs = ptrace::get_regs(tid).ctx(pid, || format!("registers of new thread {tid}"))?;
        let mut ts = Session::new(
            pid,
            Remote::new(tid, plan.scratch, regs),
            plan.scratch + PAGE,
        )?;
        ts.set_ns_pid(t.pid);
        task::restore_new_thread_remote(&mut ts, th, t)?;
        task::restore_thread_outside(pid, tid, th)?;
        if let Some(sc) = &th.seccomp {
            seccomp::restore(&mut ts, sc, seccomp_shared)?;
        }
        inherited_creds.restore(&mut ts, th.creds.as_ref().unwrap_or(&t.creds))?;
        finish_thread(pid, tid, th)?;
    }

    s.trap_after_calls(false)?;
    // POSIX timers once every thread they may target exists.
    restore_privileged_last(&mut s, t, seccomp_shared)?;

    // Last: the mask, then the scratch page goes; the task stops at that munmap's exit,
    // where it gets its final registers.
    s.call(
        "munmap",
        libc::SYS_munmap,
        [plan.scratch, SCRATCH_LEN, 0, 0, 0, 0],
    )?;
    finish_thread(pid, pid, thread)?;
    let sig = if t.job_stopped { stop_signal(t) } else { 0 };
    log::info!("pid {pid}: restored, stopped until the whole tree is");
    ready.push(Ready {
        pid,
        tids: host_tids,
        sig,
    });
    Ok(ready)
}

/// What a process's main thread (the session's) gets once its memory is back: signal
/// handlers (unless `handlers` is false: a table shared with the parent, already there),
/// process and thread attributes, interval timers, process-wide pending signals. `pid` is
/// the process as seen here.
fn restore_process_state(s: &mut Session, pid: i32, t: &TaskImage, handlers: bool) -> Result<()> {
    let thread = &t.threads[0];
    if handlers {
        signals::restore(s, &t.signals)?;
    }
    task::restore_attrs_remote(s, &t.attrs)?;
    task::restore_thread_remote(s, thread)?;
    task::restore_thread_outside(pid, pid, thread)?;
    task::restore_attrs_outside(pid, &t.attrs)?;
    timers::restore(s, &t.itimers)?;
    signals::restore_pending(s, None, &t.shared_pending)
}

/// The last steps of a process's main thread, once its threads exist: POSIX timers (which
/// may target them), then its seccomp filters (less the first `seccomp_done`, which it
/// has) while it still has every privilege, its credentials, and the attributes that need
/// privileges to set.
fn restore_privileged_last(s: &mut Session, t: &TaskImage, seccomp_done: usize) -> Result<()> {
    timers::restore_posix(s, &t.posix_timers)?;
    // Suspended while traced: the filters cannot block our own calls.
    if let Some(sc) = &t.threads[0].seccomp {
        seccomp::restore(s, sc, seccomp_done)?;
    }
    creds::restore(s, &t.creds)?;
    task::restore_attrs_last(s, &t.attrs)
}

/// A child that shared its parent's address space (CLONE_VM, not a thread): made by a
/// remote clone3 in the restored parent, with the image's PID and what else it shared
/// (handlers, fd table, fs), then given its own per-task state through a session on the
/// scratch page (which is in the shared memory) and its final registers. Left stopped.
fn create_mm_child(
    s: &mut Session,
    pid: i32,
    scratch: u64,
    c: &TaskImage,
    pids: &PidMap,
) -> Result<Ready> {
    let Some(thread) = c.threads.first() else {
        return Err(Error::Restore {
            pid: c.pid,
            reason: "a process sharing its parent's memory has no thread in the image".into(),
        });
    };
    ptrace::set_options(
        pid,
        libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEFORK | ptrace::PTRACE_O_SUSPEND_SECCOMP,
    )
    .ctx(pid, || "trace fork".into())?;
    let flags = sharing::clone_flags(c);
    let cpid = task::create_process_in_mm(s, c.pid, flags, |p| pids.host(p))?;
    let regs = ptrace::get_regs(cpid).ctx(cpid, || "registers of the new process".into())?;
    let mut cs = Session::new(cpid, Remote::new(cpid, scratch, regs), scratch + PAGE)?;
    cs.set_ns_pid(c.pid);
    restore_process_state(&mut cs, cpid, c, !c.shared_with_parent.signal_handlers)?;
    restore_privileged_last(&mut cs, c, 0)?;
    finish_thread(cpid, cpid, thread)?;
    log::info!("pid {cpid}: made in the address space of {pid}");
    Ok(Ready {
        pid: cpid,
        tids: vec![cpid],
        sig: if c.job_stopped { stop_signal(c) } else { 0 },
    })
}

/// A task whose restore is complete, held stopped until every task's is.
struct Ready {
    pid: i32,
    tids: Vec<i32>,
    /// The signal to leave it with (a job-control stop), or 0.
    sig: i32,
}

impl Ready {
    fn release(self) -> Result<()> {
        for tid in self.tids {
            ptrace::detach(tid, self.sig).ctx(self.pid, || format!("detach thread {tid}"))?;
        }
        log::info!("pid {}: running", self.pid);
        Ok(())
    }
}
