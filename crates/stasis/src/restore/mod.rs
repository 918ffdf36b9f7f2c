//! Restore orchestration: check the whole image, create the process with its PID, let it
//! set up what it can itself, then rebuild the rest through remote syscalls and let it go.

mod child;
mod plan;
mod take_over;

use std::fs::File;
use std::path::PathBuf;

use stasis_image::{ImageReader, TaskImage};
use stasis_sys::mem::MappedFile;
use stasis_sys::{own, process, procfs};

use crate::error::{Error, Result, SysContext};
use crate::files;
use crate::mem;
use crate::{ipc, sharing, timens, vfork};

use child::{init_main, task_main};
use plan::{make_plan, PidMap};
use take_over::{finish_thread, take_over, Made, Ready};

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
        files::check(pid, t.all_files())?;
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
        Error::pid_in_use(pid)
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
    all: Vec<i32>,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(child) = self.child {
            for &pid in self.all.iter().rev() {
                let _ = process::kill(pid, libc::SIGKILL);
            }
            // The threads we trace must be reaped by us before their processes can be.
            process::kill_and_reap_traced(child, std::time::Duration::from_secs(10));
        }
    }
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
