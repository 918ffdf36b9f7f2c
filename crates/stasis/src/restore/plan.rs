//! What restore computes before the first process exists: where every open file
//! description, file object and scratch page goes (`TreePlan`), and how the image's PIDs
//! map to PIDs here (`PidMap`).

use std::path::PathBuf;

use stasis_image::TaskImage;
use stasis_sys::procfs;

use super::RestoreOptions;
use crate::error::{Error, ProcContext, Result};
use crate::mem::{self, MapFile, PAGE, TASK_TOP};
use crate::{cow, sharing};

/// Everything the restore children need, computed before the first one is created.
///
/// Every open file description of the tree is opened once, by the root, at a "slot"
/// descriptor above all the image's numbers; children inherit the slots when they are
/// forked, take their own descriptors from them, and close the rest. So descriptions
/// shared between processes come back shared.
pub(super) struct TreePlan<'a> {
    pub(super) report_fd: i32,
    pub(super) slot_base: i32,
    /// For each description id, the first descriptor that refers to it: (task, index in
    /// `TaskImage::all_files`, which goes on with the files in flight after the task's fds).
    pub(super) descs: Vec<(u32, usize, usize)>,
    pub(super) tasks: Vec<TaskPlan>,
    pub(super) terminal: Option<String>,
    /// Memory shared copy-on-write between parents and children, and the page files.
    pub(super) cow: cow::CowPlan<'a>,
    /// File objects (memfd, deleted files), made by the root at slots of their own after
    /// the descriptions': (object id, task index, index in its `file_objects`).
    pub(super) objects: Vec<(u32, usize, usize)>,
    pub(super) object_base: i32,
    /// The image directory (absolute), where the objects' data files are.
    pub(super) data_dir: PathBuf,
}

pub(super) struct TaskPlan {
    pub(super) map_files: Vec<MapFile>,
    pub(super) exe_fd: i32,
    pub(super) scratch: u64,
    /// Indices of this task's children in the image's task list.
    pub(super) children: Vec<usize>,
}

impl TreePlan<'_> {
    pub(super) fn slot(&self, desc: u32) -> i32 {
        self.slot_base + desc as i32
    }

    pub(super) fn object_slot(&self, id: u32) -> i32 {
        let i = self.objects.iter().position(|o| o.0 == id).unwrap_or(0);
        self.object_base + i as i32
    }

    pub(super) fn slots(&self) -> Vec<i32> {
        let objects = self.objects.iter().map(|o| self.object_slot(o.0));
        self.descs
            .iter()
            .map(|d| self.slot(d.0))
            .chain(objects)
            .collect()
    }
}

/// The code page and the data area for pointer arguments.
pub(super) const SCRATCH_LEN: u64 = PAGE + crate::inject::DATA_LEN as u64;
/// `syscall` followed by `int3`s: the only code the scratch page holds.
pub(super) const SCRATCH_CODE: [u8; 4] = [0x0f, 0x05, 0xcc, 0xcc];

/// How the image's PIDs map to PIDs the tool can use.
pub(super) enum PidMap {
    /// Restored with their own PIDs in our namespace.
    Same,
    /// Restored in a new PID namespace: (PID inside, PID here).
    Namespace(Vec<(i32, i32)>),
}

impl PidMap {
    /// Reads /proc/*/status NSpid of every process in the PID namespace of `init`.
    pub(super) fn of_namespace(init: i32) -> Result<Self> {
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

    pub(super) fn host(&self, pid: i32) -> Result<i32> {
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
    pub(super) fn host_thread(&self, host_pid: i32, tid: i32) -> Result<i32> {
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

pub(super) fn make_plan<'a>(
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
        for (fi, f) in t.all_files().enumerate() {
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
