//! What a process shares with another since a clone without CLONE_THREAD: the fd table
//! (CLONE_FILES) and cwd/root/umask (CLONE_FS) come back shared with the parent; memory
//! (CLONE_VM) and signal handlers (CLONE_SIGHAND, which needs CLONE_VM) are refused.
//!
//! Dump: kcmp against every process dumped before (the parent comes first in tree order).
//! Restore: the parent's restore child forks the child with the same clone flags; a child
//! that shares the fd table finds its descriptors in place and leaves the table to its
//! parent, and one that shares fs information leaves cwd, root and umask to its parent.

use stasis_image::{SharedWithParent, TaskImage};
use stasis_sys::process::{self, Shared};

use crate::error::{Error, Result, SysContext};

/// What `pid` (whose parent is `ppid`) shares with its parent; an error if it shares
/// something with another process of `done` that cannot be restored.
pub fn dump(pid: i32, ppid: i32, done: &[TaskImage]) -> Result<SharedWithParent> {
    let share = |q: i32, what: Shared| {
        process::shares(pid, q, what).ctx(pid, || format!("compare with pid {q} (kcmp)"))
    };
    let parent_here = done.iter().any(|t| t.pid == ppid && t.state != 'Z');
    let out = SharedWithParent {
        fd_table: parent_here && share(ppid, Shared::FdTable)?,
        fs_info: parent_here && share(ppid, Shared::FsInfo)?,
    };
    for q in done.iter().filter(|t| t.state != 'Z').map(|t| t.pid) {
        for (what, flag) in [
            (Shared::Memory, "CLONE_VM"),
            (Shared::SignalHandlers, "CLONE_SIGHAND"),
        ] {
            if share(q, what)? {
                return Err(Error::Unsupported {
                    pid,
                    object: format!("{what:?} shared with pid {q}"),
                    detail: format!(
                        "processes sharing their address space or signal handlers ({flag} without CLONE_THREAD) are not supported"
                    ),
                });
            }
        }
        // Shared with the parent, the table is also the one of whoever else shares it.
        for (what, flag, with_parent) in [
            (Shared::FdTable, "CLONE_FILES", out.fd_table),
            (Shared::FsInfo, "CLONE_FS", out.fs_info),
        ] {
            if !with_parent && share(q, what)? {
                return Err(Error::Unsupported {
                    pid,
                    object: format!("{what:?} shared with pid {q}"),
                    detail: format!(
                        "{flag} sharing is supported between a parent and its child only; pid {q} is not the parent"
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// The clone flags that make a restored child share with its parent what it shared.
pub fn clone_flags(t: &TaskImage) -> u64 {
    let mut flags = 0;
    if t.shared_with_parent.fd_table {
        flags |= libc::CLONE_FILES as u64;
    }
    if t.shared_with_parent.fs_info {
        flags |= libc::CLONE_FS as u64;
    }
    flags
}

/// The tasks (indices) whose fd table is task `idx`'s: itself and the descendants that
/// share it, through children that share it with their parent.
pub fn fd_table_group(tasks: &[TaskImage], idx: usize) -> Vec<usize> {
    let mut group = vec![idx];
    let mut i = 0;
    while i < group.len() {
        let pid = tasks[group[i]].pid;
        i += 1;
        for (c, t) in tasks.iter().enumerate() {
            if t.ppid == pid
                && t.pid != pid
                && t.state != 'Z'
                && t.shared_with_parent.fd_table
                && !group.contains(&c)
            {
                group.push(c);
            }
        }
    }
    group
}
