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

use stasis_sys::procfs;

use crate::error::{Error, ProcContext, Result, SysContext};

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
        memory: parent_here && share(ppid, Shared::Memory)?,
        signal_handlers: parent_here && share(ppid, Shared::SignalHandlers)?,
    };
    for q in done.iter().filter(|t| t.state != 'Z').map(|t| t.pid) {
        for (what, flag, with_parent) in [
            (Shared::Memory, "CLONE_VM", out.memory),
            (Shared::SignalHandlers, "CLONE_SIGHAND", out.signal_handlers),
        ] {
            if !with_parent && share(q, what)? {
                return Err(Error::Unsupported {
                    pid,
                    object: format!("{what:?} shared with pid {q}"),
                    detail: format!(
                        "{flag} sharing (without CLONE_THREAD) is supported between a parent and its child only; pid {q} is not the parent"
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

/// Checks what a child sharing its parent's memory must have as its parent has it, so
/// that the parent can make it again with a clone in its restored address space: one
/// thread, no children, the parent's session and group, and the parent's descriptors
/// (the same table, or an unchanged copy of it).
pub fn check_memory_child(
    me: &procfs::Stat,
    threads: usize,
    shared: &SharedWithParent,
) -> Result<()> {
    let (pid, ppid) = (me.pid, me.ppid);
    let refuse = |detail: String| Error::Unsupported {
        pid,
        object: format!("address space shared with its parent {ppid} (CLONE_VM)"),
        detail,
    };
    if threads != 1 {
        return Err(refuse(format!(
            "it has {threads} threads; only one is supported"
        )));
    }
    if let Some(q) = procfs::children(pid, pid).proc(pid)?.first() {
        return Err(refuse(format!("it has a child ({q}); not supported")));
    }
    let parent = procfs::stat(ppid).proc(ppid)?;
    if (me.session, me.pgrp) != (parent.session, parent.pgrp) {
        return Err(refuse(
            "its session or process group is not its parent's".into(),
        ));
    }
    if !shared.fd_table {
        crate::files::check_same_table(ppid, pid)?;
    }
    Ok(())
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
    if t.shared_with_parent.signal_handlers {
        flags |= libc::CLONE_SIGHAND as u64;
    }
    flags
}

/// Whether the process is made by its parent's restore rather than by a restore child of
/// its own: a vfork child, or one sharing its parent's memory.
pub fn made_by_parent(t: &TaskImage) -> bool {
    t.vfork_child || t.shared_with_parent.memory
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
