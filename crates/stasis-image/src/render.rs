//! Human-readable and JSON renderings of an image, for `stasis show`.
//!
//! [`render_text`] and [`render_json`] show a whole image directory opened with
//! [`ImageReader::open`]; [`render_file_text`] and [`render_file_json`] show any single file
//! of an image (a metadata file by the kind in its header, a raw page file as a size summary,
//! checked against the manifest next to it when there is one); [`render_path_text`] and
//! [`render_path_json`] pick between the two.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::container::{self, MetaKind, HEADER_LEN};
use crate::dir::{self, ImageReader, MANIFEST_FILE};
use crate::types::{
    FdImage, FileKind, Manifest, MmImage, SigAction, TaskImage, ThreadImage, Vma, VmaKind,
};
use crate::ImageError;

/// Page size assumed for a file shown without its manifest.
const DEFAULT_PAGE_SIZE: u64 = 4096;
/// At most this many page runs are listed one per line in text output.
const MAX_RUNS_LISTED: usize = 64;

/// Renders a whole image for a person.
pub fn render_text(reader: &ImageReader) -> Result<String, ImageError> {
    let tasks = reader.tasks()?;
    let mut out = String::new();
    write_image(&mut out, reader, &tasks).map_err(fmt_err)?;
    Ok(out)
}

/// Renders a whole image as JSON: `{"format_version", "manifest", "tasks"}`.
pub fn render_json(reader: &ImageReader) -> Result<Value, ImageError> {
    let (major, minor) = reader.format_version();
    Ok(json!({
        "format_version": { "major": major, "minor": minor },
        "manifest": to_json(reader.manifest())?,
        "tasks": to_json(&reader.tasks()?)?,
        "ipc": to_json(&reader.ipc()?)?,
    }))
}

/// Renders a directory with [`render_text`] (after [`ImageReader::open`]) or a single file
/// with [`render_file_text`].
pub fn render_path_text(path: &Path) -> Result<String, ImageError> {
    if path.is_dir() {
        render_text(&ImageReader::open(path)?)
    } else {
        render_file_text(path)
    }
}

/// JSON counterpart of [`render_path_text`].
pub fn render_path_json(path: &Path) -> Result<Value, ImageError> {
    if path.is_dir() {
        render_json(&ImageReader::open(path)?)
    } else {
        render_file_json(path)
    }
}

/// What a single file turned out to be.
enum Shown {
    Manifest(container::Header, Box<Manifest>),
    Task(container::Header, Box<TaskImage>, u64),
    Ipc(container::Header, Box<crate::ipc::IpcImage>),
    /// A metadata file of a kind this stasis does not know (a newer minor version).
    Unknown(container::Header),
    Pages(PagesInfo),
}

/// (runs, stored pages) of a task file, or why it cannot be read.
type RunCounts = Result<(u64, u64), String>;

struct PagesInfo {
    len: u64,
    page_size: u64,
    /// The task whose page file this is (per the manifest alongside), and the number of
    /// runs and stored pages its task file lists (or why it cannot be read).
    owner: Option<(i32, RunCounts)>,
    /// Whether the content matches the manifest's checksum (None: no manifest lists it).
    checksum_ok: Option<bool>,
}

/// Renders one file of an image: a manifest or task file (after checking its header and
/// checksum), or a raw page file as a size summary.
pub fn render_file_text(path: &Path) -> Result<String, ImageError> {
    let name = display_name(path);
    let shown = inspect_file(path, &name)?;
    let mut out = String::new();
    write_shown(&mut out, &name, &shown).map_err(fmt_err)?;
    Ok(out)
}

fn write_shown(out: &mut String, name: &str, shown: &Shown) -> fmt::Result {
    match shown {
        Shown::Manifest(h, m) => {
            writeln!(
                out,
                "{name}: stasis manifest, format {}.{}",
                h.major, h.minor
            )?;
            write_manifest(out, m)
        }
        Shown::Task(h, t, page_size) => {
            writeln!(
                out,
                "{name}: stasis task file, format {}.{}",
                h.major, h.minor
            )?;
            write_task(out, t, *page_size)
        }
        Shown::Ipc(h, i) => {
            writeln!(
                out,
                "{name}: stasis IPC file, format {}.{}",
                h.major, h.minor
            )?;
            write_ipc(out, i)
        }
        Shown::Unknown(h) => writeln!(
            out,
            "{name}: stasis metadata file of unknown kind {} (format {}.{}, {} payload bytes, \
             checksum OK); a newer stasis wrote it",
            h.kind, h.major, h.minor, h.len
        ),
        Shown::Pages(p) => write_pages_info(out, name, p),
    }
}

/// JSON counterpart of [`render_file_text`]: `{"file", "kind", ...}` with `"manifest"` or
/// `"task"` holding the decoded record, or the page file summary.
pub fn render_file_json(path: &Path) -> Result<Value, ImageError> {
    let name = display_name(path);
    let version = |h: &container::Header| json!({ "major": h.major, "minor": h.minor });
    Ok(match inspect_file(path, &name)? {
        Shown::Manifest(h, m) => json!({
            "file": name, "kind": "manifest", "format_version": version(&h),
            "manifest": to_json(&m)?,
        }),
        Shown::Task(h, t, _) => json!({
            "file": name, "kind": "task", "format_version": version(&h),
            "task": to_json(&t)?,
        }),
        Shown::Ipc(h, i) => json!({
            "file": name, "kind": "ipc", "format_version": version(&h),
            "ipc": to_json(&i)?,
        }),
        Shown::Unknown(h) => json!({
            "file": name, "kind": h.kind, "format_version": version(&h),
            "payload_len": h.len,
        }),
        Shown::Pages(p) => json!({
            "file": name, "kind": "pages", "len": p.len, "page_size": p.page_size,
            "pages": p.len / p.page_size, "remainder": p.len % p.page_size,
            "pid": p.owner.as_ref().map(|o| o.0),
            "runs": p.owner.as_ref().and_then(|o| o.1.as_ref().ok().map(|r| r.0)),
            "stored_pages": p.owner.as_ref().and_then(|o| o.1.as_ref().ok().map(|r| r.1)),
            "checksum_ok": p.checksum_ok,
        }),
    })
}

fn fmt_err(_: fmt::Error) -> ImageError {
    ImageError::Encode("cannot format the output".into())
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<Value, ImageError> {
    serde_json::to_value(v).map_err(|e| ImageError::Encode(e.to_string()))
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Reads the manifest next to `path`, if there is a readable one (checked by its own
/// header checksum only).
fn sibling_manifest(path: &Path) -> Option<(Manifest, (u16, u16))> {
    let dir = path.parent()?;
    let mpath = dir.join(MANIFEST_FILE);
    let bytes = dir::read_meta_file(&mpath, MANIFEST_FILE).ok()?;
    let h = container::verify(MANIFEST_FILE, &bytes).ok()?;
    if h.meta_kind() != Some(MetaKind::Manifest) {
        return None;
    }
    let m = container::decode_payload(MANIFEST_FILE, &bytes[HEADER_LEN..]).ok()?;
    Some((m, (h.major, h.minor)))
}

fn inspect_file(path: &Path, name: &str) -> Result<Shown, ImageError> {
    let io = |op| {
        move |source| ImageError::Io {
            file: name.to_string(),
            op,
            source,
        }
    };
    let sibling = sibling_manifest(path);
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let page_size = sibling
        .as_ref()
        .map_or(DEFAULT_PAGE_SIZE, |(m, _)| m.page_size)
        .max(1);
    // A page file listed in the manifest alongside is shown as one even if its first bytes
    // happen to look like a header (a dump of stasis itself).
    let listed_pages = sibling.as_ref().and_then(|(m, _)| {
        m.tasks
            .iter()
            .find(|t| t.pages_file == file_name)
            .map(|t| (t.pid, t.core_file.clone()))
    });
    let mut file = File::open(path).map_err(io("open"))?;
    let len = file.metadata().map_err(io("stat"))?.len();
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io("read"))?;
    if listed_pages.is_none() && container::has_magic(&head) {
        drop(file);
        let bytes = dir::read_meta_file(path, name)?;
        let h = container::verify(name, &bytes)?;
        let payload = &bytes[HEADER_LEN..];
        return Ok(match h.meta_kind() {
            Some(MetaKind::Manifest) => {
                Shown::Manifest(h, Box::new(container::decode_payload(name, payload)?))
            }
            Some(MetaKind::Task) => Shown::Task(
                h,
                Box::new(container::decode_payload(name, payload)?),
                page_size,
            ),
            Some(MetaKind::Ipc) => {
                Shown::Ipc(h, Box::new(container::decode_payload(name, payload)?))
            }
            None => Shown::Unknown(h),
        });
    }
    drop(file);
    let mut info = PagesInfo {
        len,
        page_size,
        owner: None,
        checksum_ok: None,
    };
    match (listed_pages, sibling) {
        (Some((pid, core_file)), Some((manifest, version))) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let reader = ImageReader::unchecked(dir, manifest, version);
            info.checksum_ok = Some(match reader.verify_file(&file_name) {
                Ok(()) => true,
                Err(ImageError::ChecksumMismatch { .. } | ImageError::Truncated { .. })
                | Err(ImageError::TrailingData { .. }) => false,
                Err(e) => return Err(e),
            });
            let runs = reader
                .read_meta::<TaskImage>(&core_file, MetaKind::Task)
                .map(|task| {
                    let stored = task
                        .mm
                        .pages
                        .iter()
                        .map(|r| r.count)
                        .fold(0u64, u64::saturating_add);
                    (task.mm.pages.len() as u64, stored)
                })
                .map_err(|e| e.to_string());
            info.owner = Some((pid, runs));
        }
        _ if file_name.starts_with("pages-") || (len > 0 && len % page_size == 0) => {}
        _ => {
            return Err(ImageError::BadMagic {
                file: name.to_string(),
            })
        }
    }
    Ok(Shown::Pages(info))
}

fn write_pages_info(out: &mut String, name: &str, p: &PagesInfo) -> fmt::Result {
    writeln!(
        out,
        "{name}: raw page file, {} bytes = {} pages of {} KiB{}",
        p.len,
        p.len / p.page_size,
        p.page_size / 1024,
        if p.len % p.page_size == 0 {
            String::new()
        } else {
            format!(
                " + {} bytes (not a whole number of pages)",
                p.len % p.page_size
            )
        }
    )?;
    match &p.owner {
        Some((pid, Ok((runs, stored)))) => writeln!(
            out,
            "  page data of task {pid}: {stored} stored pages in {runs} runs according to its task file"
        )?,
        Some((pid, Err(why))) => writeln!(
            out,
            "  page data of task {pid}; its task file cannot be read: {why}"
        )?,
        None => writeln!(
            out,
            "  no manifest alongside lists this file; contents not checked"
        )?,
    }
    match p.checksum_ok {
        Some(true) => writeln!(out, "  checksum: OK (matches the manifest)")?,
        Some(false) => writeln!(
            out,
            "  checksum: MISMATCH (the file is corrupted or truncated)"
        )?,
        None => {}
    }
    Ok(())
}

fn write_image(out: &mut String, reader: &ImageReader, tasks: &[TaskImage]) -> fmt::Result {
    let (major, minor) = reader.format_version();
    writeln!(out, "Image {}", reader.dir().display())?;
    writeln!(out, "  format version  {major}.{minor}")?;
    write_manifest(out, reader.manifest())?;
    for task in tasks {
        writeln!(out)?;
        write_task(out, task, reader.manifest().page_size)?;
    }
    if let Ok(Some(ipc)) = reader.ipc() {
        writeln!(out)?;
        write_ipc(out, &ipc)?;
    }
    Ok(())
}

fn write_ipc(out: &mut String, ipc: &crate::ipc::IpcImage) -> fmt::Result {
    if ipc.own_namespace {
        writeln!(out, "IPC objects (all of the tree's own IPC namespace)")?;
    } else {
        writeln!(out, "IPC objects")?;
    }
    for s in &ipc.shm {
        let stored: usize = s.chunks.iter().map(|c| c.data.len()).sum();
        writeln!(
            out,
            "  shm {} key {:#x} size {} mode {:o} uid {} gid {}{} ({stored} bytes stored)",
            s.perm.id,
            s.perm.key,
            s.size,
            s.perm.mode & 0o777,
            s.perm.uid,
            s.perm.gid,
            if s.removed { " removed" } else { "" }
        )?;
    }
    for q in &ipc.msg {
        writeln!(
            out,
            "  msg {} key {:#x} mode {:o} uid {} gid {} qbytes {}: {} message(s)",
            q.perm.id,
            q.perm.key,
            q.perm.mode & 0o777,
            q.perm.uid,
            q.perm.gid,
            q.qbytes,
            q.messages.len()
        )?;
    }
    for m in &ipc.sem {
        writeln!(
            out,
            "  sem {} key {:#x} mode {:o} uid {} gid {} values {:?}",
            m.perm.id,
            m.perm.key,
            m.perm.mode & 0o777,
            m.perm.uid,
            m.perm.gid,
            m.values
        )?;
    }
    for q in &ipc.mqueues {
        writeln!(
            out,
            "  mqueue {} (no descriptor) maxmsg {} msgsize {} mode {:o} uid {} gid {}: {} message(s)",
            q.name,
            q.maxmsg,
            q.msgsize,
            q.mode & 0o7777,
            q.uid,
            q.gid,
            q.messages.len()
        )?;
    }
    for u in &ipc.sem_undo {
        writeln!(
            out,
            "  sem {} undo of pid {}: adjustments {:?}",
            u.semid, u.pid, u.adj
        )?;
    }
    Ok(())
}

fn write_manifest(out: &mut String, m: &Manifest) -> fmt::Result {
    writeln!(out, "  tool version    {}", m.tool_version)?;
    writeln!(out, "  kernel          {}", m.kernel_release)?;
    writeln!(out, "  page size       {}", m.page_size)?;
    writeln!(out, "  xsave features  {:#x}", m.xsave_features)?;
    writeln!(out, "  root pid        {}", m.root_pid)?;
    if !m.requires.is_empty() {
        writeln!(out, "  requires        {}", m.requires.join(" "))?;
    }
    if !m.dump_options.is_empty() {
        writeln!(out, "  dump options    {}", m.dump_options.join(" "))?;
    }
    if let Some(c) = &m.clocks {
        writeln!(
            out,
            "  clocks at dump  monotonic {}  boottime {}",
            seconds(c.monotonic_ns),
            seconds(c.boottime_ns)
        )?;
    }
    writeln!(out, "  tasks ({}):", m.tasks.len())?;
    for t in &m.tasks {
        writeln!(
            out,
            "    pid {:<7} ppid {:<7} {} {}",
            t.pid, t.ppid, t.core_file, t.pages_file
        )?;
    }
    let total: u64 = m.files.iter().map(|f| f.len).fold(0, u64::saturating_add);
    writeln!(out, "  files ({}, {} bytes):", m.files.len(), total)?;
    for f in &m.files {
        writeln!(
            out,
            "    {:<24} {:>12} bytes  xxh3 {:016x}",
            f.name, f.len, f.xxh3
        )?;
    }
    Ok(())
}

fn write_task(out: &mut String, t: &TaskImage, page_size: u64) -> fmt::Result {
    writeln!(out, "Task {}", t.pid)?;
    writeln!(
        out,
        "  pid {}  ppid {}  pgid {}  sid {}  state {}{}",
        t.pid,
        t.ppid,
        t.pgid,
        t.sid,
        t.state,
        if t.job_stopped {
            " (stopped by job control)"
        } else {
            ""
        }
    )?;
    writeln!(out, "  threads ({}):", t.threads.len())?;
    for th in &t.threads {
        write_thread(out, th)?;
    }
    write_mm(out, &t.mm, page_size)?;
    write_fds(out, &t.fds)?;
    write_objects(out, &t.file_objects)?;
    write_locks(out, &t.file_locks)?;
    write_socket_queues(out, &t.socket_queues)?;
    write_signals(out, &t.signals.actions)?;
    write_creds(out, t)?;
    write_attrs(out, t)?;
    write_timers(out, t)
}

/// Nanoseconds as seconds with 9 decimals.
fn seconds(ns: u64) -> String {
    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000)
}

fn write_timers(out: &mut String, t: &TaskImage) -> fmt::Result {
    if t.itimers.is_empty() && t.posix_timers.is_empty() {
        return Ok(());
    }
    writeln!(out, "  timers:")?;
    const WHICH: [&str; 3] = ["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"];
    for it in &t.itimers {
        let name = WHICH
            .get(it.which as usize)
            .map_or_else(|| format!("itimer {}", it.which), |s| (*s).to_string());
        writeln!(
            out,
            "    {name:<15} left {}  interval {}",
            seconds(it.value_us.saturating_mul(1000)),
            seconds(it.interval_us.saturating_mul(1000))
        )?;
    }
    for p in &t.posix_timers {
        let notify = match p.notify {
            0 => format!("signal {}", signal_name(p.signo)),
            1 => "none".to_string(),
            2 => format!("thread (signal {})", signal_name(p.signo)),
            4 => format!("signal {} to thread {}", signal_name(p.signo), p.target_tid),
            n => format!("notify {n}"),
        };
        writeln!(
            out,
            "    POSIX timer {:<3} clock {:<3} {notify}  value {:#x}  left {}  interval {}  overrun {}",
            p.id,
            p.clock,
            p.value,
            seconds(p.value_ns),
            seconds(p.interval_ns),
            p.overrun
        )?;
    }
    Ok(())
}

/// Messages queued in sockets, and the files in flight in them (as descriptors are shown).
fn write_socket_queues(out: &mut String, queues: &[crate::types::SocketQueue]) -> fmt::Result {
    for q in queues {
        let bytes: usize = q.messages.iter().map(|m| m.len()).sum();
        let what = if q.sent_before_accept {
            "sent before its connection was accepted"
        } else {
            "queue"
        };
        writeln!(
            out,
            "  socket:[{}] {what}: {} message(s), {bytes} byte(s)",
            q.inode,
            q.messages.len()
        )?;
        for m in &q.in_flight {
            writeln!(out, "    message {} carries (SCM_RIGHTS):", m.message)?;
            write_fds(out, &m.files)?;
        }
    }
    Ok(())
}

fn write_thread(out: &mut String, th: &ThreadImage) -> fmt::Result {
    let r = &th.regs;
    writeln!(out, "    tid {}  comm {:?}", th.tid, th.comm)?;
    writeln!(
        out,
        "      rip {:#018x}  rsp {:#018x}  rax {:#x}  orig_rax {}  fs_base {:#x}  xstate {} bytes",
        r.rip,
        r.rsp,
        r.rax,
        r.orig_rax as i64,
        r.fs_base,
        th.xstate.len()
    )?;
    writeln!(
        out,
        "      sigmask {:#018x}{}",
        th.sigmask,
        signal_list(th.sigmask)
    )?;
    if th.sigaltstack.sp != 0 || th.sigaltstack.size != 0 {
        writeln!(
            out,
            "      sigaltstack {:#x} size {} flags {:#x}",
            th.sigaltstack.sp, th.sigaltstack.size, th.sigaltstack.flags
        )?;
    }
    let s = &th.sched;
    writeln!(
        out,
        "      sched {} priority {} nice {}{}  clear_child_tid {:#x}  robust_list {:#x}/{}{}",
        sched_policy(s.policy),
        s.priority,
        s.nice,
        if s.reset_on_fork {
            " reset-on-fork"
        } else {
            ""
        },
        th.clear_child_tid,
        th.robust_list.head,
        th.robust_list.len,
        match &th.rseq {
            Some(q) => format!(
                "  rseq {:#x} len {} sig {:#x}",
                q.abi_pointer, q.len, q.signature
            ),
            None => String::new(),
        }
    )
}

fn prot_string(v: &Vma) -> String {
    let b = |bit: u32, c: char| if v.prot & bit != 0 { c } else { '-' };
    format!(
        "{}{}{}{}",
        b(1, 'r'),
        b(2, 'w'),
        b(4, 'x'),
        if v.shared { 's' } else { 'p' }
    )
}

fn write_mm(out: &mut String, mm: &MmImage, page_size: u64) -> fmt::Result {
    writeln!(out, "  memory:")?;
    writeln!(
        out,
        "    code {:#x}-{:#x}  data {:#x}-{:#x}  brk {:#x}-{:#x}  stack {:#x}",
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack
    )?;
    writeln!(
        out,
        "    args {:#x}-{:#x}  env {:#x}-{:#x}  auxv {} entries",
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        mm.auxv.len() / 2
    )?;
    let mut runs: Vec<(u64, u64)> = mm
        .pages
        .iter()
        .map(|r| {
            let len = r.count.saturating_mul(page_size);
            (r.vaddr, r.vaddr.saturating_add(len))
        })
        .collect();
    runs.sort_unstable();
    writeln!(out, "    mappings ({}):", mm.vmas.len())?;
    let (mut anon, mut file, mut special) = (0u64, 0u64, 0u64);
    for v in &mm.vmas {
        let size = v.end.saturating_sub(v.start);
        let what = match &v.kind {
            VmaKind::Anonymous { name } => {
                anon = anon.saturating_add(size);
                match name {
                    Some(n) => format!("anon {n}"),
                    None => "anon".to_string(),
                }
            }
            VmaKind::SharedAnonymous { inode } => {
                anon = anon.saturating_add(size);
                format!("shared anon (shmem {inode}) @{:#x}", v.pgoff)
            }
            VmaKind::SysvShm { shmid, size: seg } => {
                anon = anon.saturating_add(size);
                format!("SysV shm {shmid} ({seg} bytes) @{:#x}", v.pgoff)
            }
            VmaKind::File { path, .. } => {
                file = file.saturating_add(size);
                format!("file {path} @{:#x}", v.pgoff)
            }
            VmaKind::Object { object } => {
                file = file.saturating_add(size);
                format!("file object {object} @{:#x}", v.pgoff)
            }
            VmaKind::Special { name } => {
                special = special.saturating_add(size);
                format!("special {name}")
            }
        };
        let stored = stored_in(&runs, v.start, v.end) / page_size;
        writeln!(
            out,
            "      {:016x}-{:016x} {:>9} KiB {} {}  [{}]{}",
            v.start,
            v.end,
            size / 1024,
            prot_string(v),
            what,
            v.vm_flags.join(" "),
            if stored > 0 {
                format!("  {stored} pages stored")
            } else {
                String::new()
            }
        )?;
    }
    let total = anon.saturating_add(file).saturating_add(special);
    writeln!(
        out,
        "    total {} KiB mapped: {} KiB anonymous, {} KiB file, {} KiB special",
        total / 1024,
        anon / 1024,
        file / 1024,
        special / 1024
    )?;
    let stored: u64 = mm
        .pages
        .iter()
        .map(|r| r.count)
        .fold(0, u64::saturating_add);
    writeln!(
        out,
        "    stored pages: {} ({} KiB) in {} runs",
        stored,
        stored.saturating_mul(page_size) / 1024,
        mm.pages.len()
    )?;
    let inherited: u64 = mm
        .inherited
        .iter()
        .map(|r| r.count)
        .fold(0, u64::saturating_add);
    if inherited > 0 {
        writeln!(
            out,
            "    pages shared with the parent (copy-on-write, stored in its image): {} ({} KiB)",
            inherited,
            inherited.saturating_mul(page_size) / 1024
        )?;
    }
    for r in mm.pages.iter().take(MAX_RUNS_LISTED) {
        writeln!(
            out,
            "      {:016x} x{:<6} at offset {:#x}",
            r.vaddr, r.count, r.offset
        )?;
    }
    if mm.pages.len() > MAX_RUNS_LISTED {
        writeln!(
            out,
            "      ... and {} more runs (see --json)",
            mm.pages.len() - MAX_RUNS_LISTED
        )?;
    }
    Ok(())
}

/// Bytes of the sorted runs that fall inside `[start, end)`.
fn stored_in(runs: &[(u64, u64)], start: u64, end: u64) -> u64 {
    let first = runs.partition_point(|r| r.1 <= start);
    runs[first..]
        .iter()
        .take_while(|r| r.0 < end)
        .map(|r| r.1.min(end).saturating_sub(r.0.max(start)))
        .fold(0, u64::saturating_add)
}

const O_FLAGS: &[(u32, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

fn open_flags(flags: u32) -> String {
    let mut names = vec![match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE?",
    }];
    let mut rest = flags & !3;
    for &(bit, name) in O_FLAGS {
        if rest & bit == bit {
            names.push(name);
            rest &= !bit;
        }
    }
    let mut s = names.join("|");
    if rest != 0 {
        let _ = write!(s, "|{rest:#x}");
    }
    s
}

fn write_fds(out: &mut String, fds: &[FdImage]) -> fmt::Result {
    writeln!(out, "  file descriptors ({}):", fds.len())?;
    for f in fds {
        let what = match &f.file {
            FileKind::Regular {
                path,
                size,
                dev,
                ino,
                mode,
            } => format!("file {path} (size {size}, dev {dev:#x}, ino {ino}, mode {mode:o})"),
            FileKind::Directory { path } => format!("dir {path}"),
            FileKind::Path { path } => format!("O_PATH {path}"),
            FileKind::CharDevice { path, rdev } => format!("chardev {path} (rdev {rdev:#x})"),
            FileKind::Terminal { path } => format!("terminal {path}"),
            FileKind::EventFd { count, semaphore } => {
                format!("eventfd count {count}{}", if *semaphore { " (semaphore)" } else { "" })
            }
            FileKind::SignalFd { mask } => format!("signalfd mask {mask:#018x}"),
            FileKind::TimerFd {
                clockid,
                value_ns,
                interval_ns,
                ticks,
            } => format!(
                "timerfd clock {clockid}, {value_ns} ns left, interval {interval_ns} ns, {ticks} unread"
            ),
            FileKind::Epoll { targets } => format!(
                "epoll: {}",
                targets
                    .iter()
                    .map(|t| {
                        let moved = t.now_at.map_or(String::new(), |m| format!(" (file now at fd {m})"));
                        format!("fd {}{moved} events {:#x} data {:#x}", t.fd, t.events, t.data)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FileKind::Inotify { watches } => format!(
                "inotify: {}",
                watches
                    .iter()
                    .map(|w| format!("wd {} {} mask {:#x}", w.wd, w.path, w.mask))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FileKind::Fifo {
                path,
                inode,
                unlinked,
            } => format!(
                "fifo {path}{} (inode {inode})",
                if *unlinked { " (deleted)" } else { "" }
            ),
            FileKind::PtyMaster {
                index,
                winsize,
                output,
                input,
                session,
                foreground,
                ..
            } => format!(
                "pty master of /dev/pts/{index}, {}x{}, {} byte(s) out, {} in{}",
                winsize[1],
                winsize[0],
                output.len(),
                input.len(),
                session
                    .map(|s| format!(", terminal of session {s} (foreground {foreground})"))
                    .unwrap_or_default()
            ),
            FileKind::PtySlave { index, dev_tty } => format!(
                "pty slave /dev/pts/{index}{}",
                if *dev_tty { " (as /dev/tty)" } else { "" }
            ),
            FileKind::UnixSocket {
                inode,
                kind,
                name,
                peer,
                listen_backlog,
                shutdown,
                waiting,
                peer_gone,
                bound_file,
                ..
            } => format!(
                "unix socket:[{inode}] type {kind}{}{}{}{}{}{}{}",
                name.as_ref()
                    .map(|n| format!(" bound to {:?}", String::from_utf8_lossy(n)))
                    .unwrap_or_default(),
                match bound_file {
                    Some(b) if b.unlinked => " (its file unlinked)".to_string(),
                    Some(b) => format!(" (file mode {:o} owner {}:{})", b.mode, b.uid, b.gid),
                    None => String::new(),
                },
                peer.map(|p| format!(" peer {p}")).unwrap_or_default(),
                listen_backlog
                    .map(|b| format!(" listening (backlog {b})"))
                    .unwrap_or_default(),
                if *shutdown != 0 { format!(" shutdown {shutdown}") } else { String::new() },
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!(" waiting to be accepted: {waiting:?}")
                },
                if *peer_gone { " (peer closed)" } else { "" }
            ),
            FileKind::Pipe {
                inode,
                read_end,
                capacity,
            } => format!(
                "pipe:[{inode}] {} end, capacity {capacity}",
                if *read_end { "read" } else { "write" }
            ),
            FileKind::Object { object } => format!("file object {object}"),
            FileKind::PidFd { pid } => format!("pidfd of pid {pid}"),
            FileKind::Mqueue(q) => format!(
                "mqueue {}{} (maxmsg {}, msgsize {}, mode {:o}, owner {}:{}), {} message(s)",
                q.name,
                if q.unlinked { " (unlinked)" } else { "" },
                q.maxmsg,
                q.msgsize,
                q.mode,
                q.uid,
                q.gid,
                q.messages.len()
            ),
        };
        writeln!(
            out,
            "    {:>4} {}  flags {:#x} ({})  pos {}  cloexec {}",
            f.fd,
            what,
            f.flags,
            open_flags(f.flags),
            f.pos,
            if f.cloexec { "yes" } else { "no" }
        )?;
    }
    Ok(())
}

fn write_locks(out: &mut String, locks: &[crate::FileLock]) -> fmt::Result {
    if locks.is_empty() {
        return Ok(());
    }
    writeln!(out, "  file locks ({}):", locks.len())?;
    for l in locks {
        writeln!(
            out,
            "    fd {:>4} {:?} {} {}..{}",
            l.fd,
            l.kind,
            if l.write { "write" } else { "read" },
            l.start,
            l.end.map_or("EOF".to_string(), |e| e.to_string())
        )?;
    }
    Ok(())
}

fn write_objects(out: &mut String, objects: &[crate::FileObject]) -> fmt::Result {
    if objects.is_empty() {
        return Ok(());
    }
    writeln!(out, "  file objects ({}):", objects.len())?;
    for o in objects {
        writeln!(
            out,
            "    {:>4} {}, mode {:o}, {} bytes of data in {} extent(s) in {}",
            o.id,
            o.describe(),
            o.mode,
            o.data_len(),
            o.extents.len(),
            o.data_file
        )?;
    }
    Ok(())
}

const SIGNAL_NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of signal `signo` (SIGHUP...), or SIGn for real-time and unknown signals.
pub fn signal_name(signo: i32) -> String {
    usize::try_from(signo)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| SIGNAL_NAMES.get(i))
        .map_or_else(|| format!("SIG{signo}"), |s| (*s).to_string())
}

/// " (SIGINT SIGTERM)" for a mask with bit N-1 set for signal N, or "" for an empty mask.
fn signal_list(mask: u64) -> String {
    if mask == 0 {
        return String::new();
    }
    let names: Vec<String> = (1..=64)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(signal_name)
        .collect();
    format!(" ({})", names.join(" "))
}

const SA_FLAGS: &[(u64, &str)] = &[
    (0x1, "NOCLDSTOP"),
    (0x2, "NOCLDWAIT"),
    (0x4, "SIGINFO"),
    (0x400, "UNSUPPORTED"),
    (0x800, "EXPOSE_TAGBITS"),
    (0x0400_0000, "RESTORER"),
    (0x0800_0000, "ONSTACK"),
    (0x1000_0000, "RESTART"),
    (0x4000_0000, "NODEFER"),
    (0x8000_0000, "RESETHAND"),
];

fn sa_flags(flags: u64) -> String {
    let mut names: Vec<String> = SA_FLAGS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| (*n).to_string())
        .collect();
    let rest = SA_FLAGS.iter().fold(flags, |f, (bit, _)| f & !bit);
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join("|"))
    }
}

fn write_signals(out: &mut String, actions: &[SigAction]) -> fmt::Result {
    let set: Vec<&SigAction> = actions.iter().filter(|a| a.handler != 0).collect();
    writeln!(out, "  signal dispositions (non-default: {}):", set.len())?;
    for a in set {
        let handler = if a.handler == 1 {
            "SIG_IGN".to_string()
        } else {
            format!("handler {:#x}", a.handler)
        };
        writeln!(
            out,
            "    {:<10} {}  flags {:#x}{}  restorer {:#x}  mask {:#x}{}",
            signal_name(a.signo),
            handler,
            a.flags,
            sa_flags(a.flags),
            a.restorer,
            a.mask,
            signal_list(a.mask)
        )?;
    }
    Ok(())
}

fn write_creds(out: &mut String, t: &TaskImage) -> fmt::Result {
    let c = &t.creds;
    let ids = |v: &[u32; 4]| format!("{} {} {} {}", v[0], v[1], v[2], v[3]);
    writeln!(out, "  credentials:")?;
    writeln!(out, "    uid (real effective saved fs) {}", ids(&c.uid))?;
    writeln!(out, "    gid (real effective saved fs) {}", ids(&c.gid))?;
    let groups: Vec<String> = c.groups.iter().map(u32::to_string).collect();
    writeln!(out, "    groups [{}]", groups.join(" "))?;
    writeln!(
        out,
        "    capabilities inh {:#x} prm {:#x} eff {:#x} bnd {:#x} amb {:#x}  securebits {:#x}",
        c.cap_inheritable,
        c.cap_permitted,
        c.cap_effective,
        c.cap_bounding,
        c.cap_ambient,
        c.securebits
    )
}

const RLIMIT_NAMES: [&str; 16] = [
    "CPU",
    "FSIZE",
    "DATA",
    "STACK",
    "CORE",
    "RSS",
    "NPROC",
    "NOFILE",
    "MEMLOCK",
    "AS",
    "LOCKS",
    "SIGPENDING",
    "MSGQUEUE",
    "NICE",
    "RTPRIO",
    "RTTIME",
];

fn rlimit_value(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

fn sched_policy(p: i32) -> String {
    match p {
        0 => "OTHER".into(),
        1 => "FIFO".into(),
        2 => "RR".into(),
        3 => "BATCH".into(),
        5 => "IDLE".into(),
        6 => "DEADLINE".into(),
        n => format!("policy-{n}"),
    }
}

fn write_attrs(out: &mut String, t: &TaskImage) -> fmt::Result {
    let a = &t.attrs;
    let yn = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "  attributes:")?;
    writeln!(out, "    exe {}", a.exe)?;
    writeln!(out, "    cwd {}  root {}", a.cwd, a.root)?;
    writeln!(
        out,
        "    umask {:04o}  personality {:#x}  dumpable {}  pdeath_signal {}  oom_score_adj {}",
        a.umask, a.personality, a.dumpable, a.pdeath_signal, a.oom_score_adj
    )?;
    writeln!(
        out,
        "    child_subreaper {}  no_new_privs {}  thp_disable {}  shell_job {}",
        yn(a.child_subreaper),
        yn(a.no_new_privs),
        yn(a.thp_disable),
        yn(a.shell_job)
    )?;
    if let Some(uid) = a.loginuid {
        let shown = if uid == u32::MAX {
            "unset".to_string()
        } else {
            uid.to_string()
        };
        writeln!(out, "    loginuid {shown}")?;
    }
    if !a.rlimits.is_empty() {
        writeln!(out, "    rlimits (soft / hard):")?;
        for r in &a.rlimits {
            let name = RLIMIT_NAMES
                .get(r.resource as usize)
                .map_or_else(|| format!("resource {}", r.resource), |s| (*s).to_string());
            writeln!(
                out,
                "      {:<11} {} / {}",
                name,
                rlimit_value(r.soft),
                rlimit_value(r.hard)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use std::path::PathBuf;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir()
                .join(format!("stasis-image-render-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn text_of_a_whole_image() {
        let tmp = TempDir::new("text");
        sample::write_image(&tmp.0, 3).unwrap();
        let reader = ImageReader::open(&tmp.0).unwrap();
        let text = render_text(&reader).unwrap();
        for needle in [
            &format!("format version  1.{}", crate::FORMAT_MINOR),
            "tool version    stasis 0.1.0",
            "requires        sem-undo",
            "kernel          6.8.0-sample",
            "root pid        100",
            "dump options    --shell-job",
            "pid 101     ppid 100",
            "Task 100",
            "Task 101",
            "pid 100  ppid 1  pgid 100  sid 1  state S",
            "comm \"sample-worker\"",
            "rip 0x0000555555555123",
            "orig_rax 230",
            "xstate 2696 bytes",
            "sigmask 0x0000000000010000 (SIGCHLD)",
            "0000555555579000-000055555559a000       132 KiB rw-p anon [heap]  [rd wr mr mw me ac]  3 pages stored",
            "r-xp file /usr/bin/sample @0x0",
            "special [vdso]",
            "stored pages: 6 (24 KiB) in 2 runs",
            "0000555555579000 x3      at offset 0x0",
            "chardev /dev/null (rdev 0x103)  flags 0x8001 (O_WRONLY|O_LARGEFILE)  pos 0  cloexec no",
            "cloexec yes",
            "terminal /dev/pts/3",
            "SIGINT     handler 0x555555556000  flags 0x14000000 (RESTORER|RESTART)",
            "mask 0x4000 (SIGTERM)",
            "SIGPIPE    SIG_IGN",
            "non-default: 2",
            "uid (real effective saved fs) 1000 1000 1000 1000",
            "groups [4 27 1000]",
            "umask 0022",
            "STACK       8388608 / unlimited",
            "NOFILE      1024 / 524288",
            "shell_job yes",
            "loginuid 1000",
            "clocks at dump  monotonic 12.000000001s  boottime 13.000000002s",
            "ITIMER_REAL     left 0.042000000s  interval 0.100000000s",
            "POSIX timer 3   clock 1   signal SIG34 to thread 1100  value 0xa11ce  left 0.012345678s  interval 0.050000000s  overrun 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(
            !text.contains("SIGHUP"),
            "default dispositions are not shown"
        );
    }

    #[test]
    fn json_of_a_whole_image() {
        let tmp = TempDir::new("json");
        sample::write_image(&tmp.0, 2).unwrap();
        let reader = ImageReader::open(&tmp.0).unwrap();
        let v = render_json(&reader).unwrap();
        assert_eq!(v["format_version"]["major"], 1);
        assert_eq!(v["manifest"]["root_pid"], 100);
        assert_eq!(v["manifest"]["files"].as_array().unwrap().len(), 4);
        assert_eq!(v["tasks"].as_array().unwrap().len(), 2);
        assert_eq!(v["tasks"][1]["pid"], 101);
        assert_eq!(v["tasks"][0]["mm"]["pages"][0]["count"], 2);
        assert_eq!(v["tasks"][0]["threads"][0]["regs"]["orig_rax"], 230);
        // Round trip back into the types.
        let back: Vec<TaskImage> = serde_json::from_value(v["tasks"].clone()).unwrap();
        assert_eq!(back, reader.tasks().unwrap());
        assert_eq!(render_path_json(&tmp.0).unwrap(), v);
    }

    #[test]
    fn single_files() {
        let tmp = TempDir::new("files");
        sample::write_image(&tmp.0, 2).unwrap();
        let text = render_file_text(&tmp.0.join("task-101.img")).unwrap();
        let format = format!("format 1.{}", crate::FORMAT_MINOR);
        assert!(
            text.contains(&format!("stasis task file, {format}")),
            "{text}"
        );
        assert!(text.contains("pid 101  ppid 100"), "{text}");
        let text = render_file_text(&tmp.0.join(MANIFEST_FILE)).unwrap();
        assert!(
            text.contains(&format!("stasis manifest, {format}")),
            "{text}"
        );
        assert!(text.contains("task-100.img"), "{text}");
        let text = render_path_text(&tmp.0.join("pages-100.img")).unwrap();
        assert!(
            text.contains("raw page file, 16384 bytes = 4 pages of 4 KiB"),
            "{text}"
        );
        assert!(
            text.contains("task 100: 4 stored pages in 2 runs"),
            "{text}"
        );
        assert!(text.contains("checksum: OK"), "{text}");

        let v = render_file_json(&tmp.0.join("task-100.img")).unwrap();
        assert_eq!(v["kind"], "task");
        assert_eq!(v["task"]["pid"], 100);
        let v = render_file_json(&tmp.0.join("pages-101.img")).unwrap();
        assert_eq!(v["kind"], "pages");
        assert_eq!(v["pages"], 4);
        assert_eq!(v["pid"], 101);
        assert_eq!(v["checksum_ok"], true);

        // A corrupted page file is shown, with its checksum flagged.
        let p = tmp.0.join("pages-101.img");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[5] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let text = render_file_text(&p).unwrap();
        assert!(text.contains("checksum: MISMATCH"), "{text}");

        // A corrupted metadata file is refused with its name.
        let p = tmp.0.join("task-100.img");
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = render_file_text(&p).unwrap_err().to_string();
        assert!(e.contains("task-100.img") && e.contains("checksum"), "{e}");

        // A foreign file.
        let p = tmp.0.join("notes.txt");
        std::fs::write(&p, "hello\n").unwrap();
        let e = render_file_text(&p).unwrap_err();
        assert!(matches!(e, ImageError::BadMagic { .. }), "{e}");
        // A lone page file without a manifest.
        std::fs::remove_file(tmp.0.join(MANIFEST_FILE)).unwrap();
        let text = render_file_text(&tmp.0.join("pages-100.img")).unwrap();
        assert!(text.contains("4 pages of 4 KiB"), "{text}");
        assert!(text.contains("no manifest alongside"), "{text}");
    }

    #[test]
    fn helpers() {
        assert_eq!(signal_name(1), "SIGHUP");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(34), "SIG34");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(-5), "SIG-5");
        assert_eq!(signal_list(0), "");
        assert_eq!(signal_list(1 << 63), " (SIG64)");
        assert_eq!(
            open_flags(0o2000000 | 0o4010000 | 2),
            "O_RDWR|O_SYNC|O_CLOEXEC"
        );
        assert_eq!(open_flags(0x8000_0000), "O_RDONLY|0x80000000");
        assert_eq!(sa_flags(0x4 | 0x20), " (SIGINFO|0x20)");
        assert_eq!(sa_flags(0), "");
        let runs = [(0x1000, 0x3000), (0x5000, 0x6000)];
        assert_eq!(stored_in(&runs, 0x2000, 0x5800), 0x1800);
        assert_eq!(stored_in(&runs, 0x6000, 0x7000), 0);
        assert_eq!(stored_in(&[], 0, u64::MAX), 0);
    }
}
