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
use crate::{creds, signals, task};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub images_dir: PathBuf,
    pub shell_job: bool,
    pub pidfile: Option<PathBuf>,
}

/// A restored tree: its root is a child of the calling process.
#[derive(Debug)]
pub struct Restored {
    pub root_pid: i32,
}

impl Restored {
    /// Waits for the root to end.
    pub fn wait(&self) -> Result<process::ExitStatus> {
        process::wait_exit(self.root_pid).ctx(self.root_pid, || "wait for the restored process".into())
    }
}

/// Everything the restore child needs, computed before it is created.
struct Plan {
    report_fd: i32,
    map_files: Vec<MapFile>,
    exe_fd: i32,
    scratch: u64,
    terminal: Option<String>,
}

const SCRATCH_LEN: u64 = 2 * PAGE;
/// `syscall` followed by `int3`s: the only code the scratch page holds.
const SCRATCH_CODE: [u8; 4] = [0x0f, 0x05, 0xcc, 0xcc];

pub fn restore(opts: &RestoreOptions) -> Result<Restored> {
    let reader = ImageReader::open(&opts.images_dir)?;
    let manifest = reader.manifest().clone();
    let tasks = reader.tasks()?;
    if tasks.len() != 1 {
        return Err(Error::Restore {
            pid: manifest.root_pid,
            reason: format!("the image holds {} processes; trees are not supported yet", tasks.len()),
        });
    }
    let t = &tasks[0];
    let pid = t.pid;
    let here = process::xsave_features();
    if manifest.xsave_features & !here != 0 {
        return Err(Error::Restore {
            pid,
            reason: format!(
                "the image needs CPU register state this CPU lacks (XSAVE features {:#x}, this CPU {here:#x})",
                manifest.xsave_features
            ),
        });
    }
    if manifest.page_size != process::page_size() {
        return Err(Error::Restore {
            pid,
            reason: format!("page size {} differs from this machine's", manifest.page_size),
        });
    }
    let entry = &manifest.tasks[0];
    let pages_file = File::open(reader.path_of(&entry.pages_file)).map_err(|e| Error::Restore {
        pid,
        reason: format!("open {}: {e}", entry.pages_file),
    })?;
    let pages = MappedFile::open(&pages_file, &entry.pages_file).ctx(pid, || "map the page file".into())?;
    reader.verify_pages(&entry.pages_file, pages.bytes())?;
    files::check(pid, &t.fds)?;
    mem::check_map_files(pid, &t.mm)?;
    if opts.shell_job != t.attrs.shell_job && t.fds.iter().any(|f| matches!(f.file, stasis_image::FileKind::Terminal { .. })) && !opts.shell_job {
        return Err(Error::Restore {
            pid,
            reason: "the image was dumped with --shell-job; restore it with --shell-job".into(),
        });
    }
    wait_pid_free(pid)?;

    let plan = make_plan(t, opts)?;
    let (report_r, report_w) = own::pipe().ctx(pid, || "create report pipe".into())?;
    let child = process::spawn_with_pid(pid, || child_main(t, &plan, report_w))
        .map_err(|e| {
            own::close(report_r);
            own::close(report_w);
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
        })?;
    own::close(report_w);
    let mut guard = ChildGuard(Some(child));
    let report = own::read_to_end(report_r).ctx(pid, || "read the child's report".into());
    own::close(report_r);
    let report = String::from_utf8_lossy(&report?).into_owned();
    if report != "ok" {
        return Err(Error::ChildSetup {
            pid,
            message: report.trim_start_matches("error: ").to_string(),
        });
    }
    log::info!("pid {pid}: created, file table and attributes set up");
    take_over(t, &plan, pages.bytes())?;
    if let Some(path) = &opts.pidfile {
        std::fs::write(path, format!("{pid}\n")).map_err(|e| Error::Restore {
            pid,
            reason: format!("write pidfile {}: {e}", path.display()),
        })?;
    }
    guard.0 = None;
    Ok(Restored { root_pid: pid })
}

/// Kills and reaps the restore child unless the restore completed.
struct ChildGuard(Option<i32>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            process::kill_and_reap(pid);
        }
    }
}

fn comm_of(pid: i32) -> String {
    procfs::status(pid).map(|s| s.name).unwrap_or_else(|_| "unknown".into())
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

fn make_plan(t: &TaskImage, opts: &RestoreOptions) -> Result<Plan> {
    let pid = t.pid;
    let max_fd = t.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2);
    let report_fd = max_fd + 1;
    let map_files = mem::plan_map_files(&t.mm, report_fd + 1);
    let exe_fd = report_fd + 1 + map_files.len() as i32;
    // The scratch area must be free both in our own layout (the child starts as our copy)
    // and in the image's.
    let mut occupied: Vec<(u64, u64)> = t.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    occupied.extend(
        procfs::maps(std::process::id() as i32)
            .proc(pid)?
            .iter()
            .map(|m| (m.start, m.end)),
    );
    let scratch = mem::find_gap(&occupied, SCRATCH_LEN, 1 << 32, TASK_TOP).ok_or_else(|| {
        Error::Restore {
            pid,
            reason: "no free address range for the scratch page".into(),
        }
    })?;
    let terminal = if opts.shell_job {
        std::fs::read_link("/proc/self/fd/0")
            .ok()
            .map(|p| p.display().to_string())
            .filter(|p| p.starts_with("/dev/"))
    } else {
        None
    };
    Ok(Plan {
        report_fd,
        map_files,
        exe_fd,
        scratch,
        terminal,
    })
}

/// Runs in the new process (a copy of the tool): sets up what it can do itself, reports,
/// and waits to be taken over.
fn child_main(t: &TaskImage, plan: &Plan, report_w: i32) -> i32 {
    own::block_all_signals();
    let _ = own::set_pdeathsig(libc::SIGKILL);
    let r = child_setup(t, plan, report_w);
    let (msg, code) = match &r {
        Ok(()) => ("ok".to_string(), 0),
        Err(e) => (format!("error: {e}"), 1),
    };
    let fd = if r.is_ok() || own::dup_to(report_w, plan.report_fd, true).is_ok() {
        plan.report_fd
    } else {
        report_w
    };
    let _ = own::write_all(fd, msg.as_bytes());
    own::close(fd);
    if code != 0 {
        return code;
    }
    own::park()
}

fn child_setup(t: &TaskImage, plan: &Plan, report_w: i32) -> std::result::Result<(), String> {
    let pid = t.pid;
    own::dup_to(report_w, plan.report_fd, true).map_err(|e| e.to_string())?;
    own::close_all_except(&[plan.report_fd]);
    if t.sid == pid {
        own::setsid().map_err(|e| e.to_string())?;
    } else if t.pgid == pid {
        own::setpgid(0, 0).map_err(|e| e.to_string())?;
    }
    let ctx = ReopenContext {
        terminal: plan.terminal.clone(),
    };
    for (i, f) in t.fds.iter().enumerate() {
        files::reopen(f, &ctx, &t.fds[..i])?;
    }
    for mf in &plan.map_files {
        let flags = if mf.writable { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = own::open(Path::new(&mf.path), flags, 0)
            .map_err(|e| format!("open mapped file: {e}"))?;
        own::move_fd(fd, mf.fd, true).map_err(|e| e.to_string())?;
    }
    let exe = own::open(Path::new(&t.attrs.exe), libc::O_RDONLY, 0)
        .map_err(|e| format!("open executable: {e}"))?;
    own::move_fd(exe, plan.exe_fd, true).map_err(|e| e.to_string())?;
    task::restore_attrs_in_child(&t.attrs).map_err(|e| e.to_string())?;
    own::map_scratch(plan.scratch, SCRATCH_LEN as usize, &SCRATCH_CODE).map_err(|e| e.to_string())?;
    Ok(())
}

/// Final mask, registers and FPU state of a stopped thread.
fn finish_thread(pid: i32, th: &stasis_image::ThreadImage) -> Result<()> {
    let tid = th.tid;
    ptrace::set_sigmask(tid, th.sigmask).ctx(pid, || format!("signal mask of thread {tid}"))?;
    ptrace::set_regs(tid, &task::regs_from_image(&th.regs))
        .ctx(pid, || format!("registers of thread {tid}"))?;
    ptrace::set_xstate(tid, &th.xstate).ctx(pid, || format!("FPU/vector registers of thread {tid}"))
}

/// Takes the waiting child over with ptrace and turns it into the image's process.
fn take_over(t: &TaskImage, plan: &Plan, pages: &[u8]) -> Result<()> {
    let pid = t.pid;
    ptrace::seize(pid, libc::PTRACE_O_TRACECLONE).ctx(pid, || "seize the restore child".into())?;
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
    let thread = &t.threads[0];

    task::unregister_inherited_rseq(&mut s)?;
    mem::restore(&mut s, &t.mm, &plan.map_files, plan.exe_fd, pages, (plan.scratch, plan.scratch + SCRATCH_LEN))?;
    for fd in plan.map_files.iter().map(|m| m.fd).chain([plan.exe_fd]) {
        s.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    }
    signals::restore(&mut s, &t.signals)?;
    task::restore_attrs_remote(&mut s, &t.attrs)?;
    task::restore_thread_remote(&mut s, thread)?;
    task::restore_thread_outside(pid, thread)?;
    task::restore_attrs_outside(pid, &t.attrs)?;
    creds::restore(&mut s, &t.creds)?;
    task::restore_attrs_last(&mut s, &t.attrs)?;

    // The other threads: created in the main one, set up through sessions of their own,
    // left stopped with their final registers.
    for th in t.threads.iter().filter(|th| th.tid != pid) {
        task::create_thread(&mut s, th.tid)?;
        let regs = ptrace::get_regs(th.tid).ctx(pid, || format!("registers of new thread {}", th.tid))?;
        let mut ts = Session::new(pid, Remote::new(th.tid, plan.scratch, regs), plan.scratch + PAGE)?;
        task::restore_thread_remote(&mut ts, th)?;
        task::restore_thread_outside(pid, th)?;
        finish_thread(pid, th)?;
    }

    // Last: the mask, then the scratch page goes; the task stops at that munmap's exit,
    // where it gets its final registers.
    s.call("munmap", libc::SYS_munmap, [plan.scratch, SCRATCH_LEN, 0, 0, 0, 0])?;
    finish_thread(pid, thread)?;
    let sig = if t.job_stopped { libc::SIGSTOP } else { 0 };
    for th in &t.threads {
        ptrace::detach(th.tid, sig).ctx(pid, || format!("detach thread {}", th.tid))?;
    }
    log::info!("pid {pid}: restored and running");
    Ok(())
}
