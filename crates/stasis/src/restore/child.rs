//! What runs in the restore children, copies of the tool made with the image's PIDs: each
//! sets up what a process can do for itself (descriptors, session, memory it shares with
//! its children, attributes), forks its children, reports, and waits to be taken over.

use std::path::Path;

use stasis_image::TaskImage;
use stasis_sys::{own, process};

use super::plan::{TreePlan, SCRATCH_CODE, SCRATCH_LEN};
use crate::files::{self, ReopenContext};
use crate::{creds, session, sharing, task};

/// PID 1 of a new PID namespace: gives it its own /proc, creates the tree's root with its
/// PID, reaps orphans, and ends with the root's status (taking the namespace with it).
pub(super) fn init_main(tasks: &[TaskImage], plan: &TreePlan, report_w: i32) -> i32 {
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

/// Runs in each new process (a copy of the tool): sets up what it can do itself, creates
/// its children, reports, and waits to be taken over. `report_w` is the tool's pipe for
/// the root; other tasks inherit it at `plan.report_fd`.
pub(super) fn task_main(
    tasks: &[TaskImage],
    plan: &TreePlan,
    idx: usize,
    report_w: Option<i32>,
) -> i32 {
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
            // `TaskImage::all_files` lists a task's descriptors before the files in flight.
            in_flight: plan
                .descs
                .iter()
                .filter(|&&(_, ti, fi)| fi >= tasks[ti].fds.len())
                .map(|d| d.0)
                .collect(),
        };
        let descs: Vec<(u32, &stasis_image::FdImage)> = plan
            .descs
            .iter()
            .filter_map(|&(d, ti, fi)| Some((d, tasks[ti].all_files().nth(fi)?)))
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
    files::take_controlling_terminal(t, tasks.iter().flat_map(TaskImage::all_files), |d| {
        plan.slot(d)
    })?;
    files::register_epolls(
        &t.fds,
        |f| {
            plan.descs
                .iter()
                .any(|&(d, ti, _)| d == f.desc && ti == idx)
        },
        |d| plan.slot(d),
    )?;
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
