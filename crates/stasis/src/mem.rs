//! Memory: the mappings of an address space, their contents and the mm fields.
//!
//! Dump reads /proc/PID/smaps for the mappings, /proc/PID/pagemap to find the pages worth
//! storing (touched anonymous pages, private copies of file pages), and the pages themselves
//! with process_vm_readv. Restore rebuilds the mappings in the new task through remote
//! syscalls and fills them with process_vm_writev straight from the mapped page file.

use std::collections::BTreeMap;

use std::os::unix::fs::MetadataExt;

use stasis_image::{MmImage, PageRun, PageSpan, PagesWriter, TaskImage, Vma, VmaKind};
use stasis_sys::mem::{self as sysmem, ProcMem, RemoteRange};
use stasis_sys::own;
use stasis_sys::procfs::{self, MapsEntry, Pagemap, SmapsEntry, Stat};

use crate::error::{Error, ProcContext, Result, SysContext};
use crate::files::object::{self, ObjectTable};
use crate::inject::{self, Session};

pub const PAGE: u64 = 4096;
/// How much page data is read from the target per batch.
const BATCH: usize = 64 << 20;
/// Top of the user address space with 4-level page tables.
pub const TASK_TOP: u64 = 0x7fff_ffff_f000;

/// Special mappings the kernel owns that are never unmapped or stored.
const FIXED_SPECIALS: &[&str] = &["[vsyscall]"];

fn prot_of(m: &MapsEntry) -> u32 {
    let mut p = 0;
    if m.read {
        p |= libc::PROT_READ as u32;
    }
    if m.write {
        p |= libc::PROT_WRITE as u32;
    }
    if m.exec {
        p |= libc::PROT_EXEC as u32;
    }
    p
}

/// Turns smaps entries into image VMAs, refusing what cannot be restored yet. Mappings of
/// memfd and deleted files are recorded as file objects in `objects`.
pub fn collect_vmas(
    pid: i32,
    smaps: &[SmapsEntry],
    objects: &std::cell::RefCell<ObjectTable>,
) -> Result<Vec<Vma>> {
    let mut out = Vec::with_capacity(smaps.len());
    for s in smaps {
        let m = &s.map;
        let range = || format!("mapping {:#x}-{:#x} {}", m.start, m.end, m.path);
        let kind = if m.is_special() {
            VmaKind::Special {
                name: m.path.clone(),
            }
        } else if m.path.is_empty() || m.path.starts_with('[') {
            VmaKind::Anonymous {
                name: (!m.path.is_empty()).then(|| m.path.clone()),
            }
        } else if m.shared && m.deleted && m.path == "/dev/zero" {
            // MAP_SHARED|MAP_ANONYMOUS memory is a deleted shmem file named /dev/zero.
            VmaKind::SharedAnonymous { inode: m.inode }
        } else if let Some(kind) = sysv_shm_kind(pid, s, &range)? {
            kind
        } else if m.deleted && m.path.starts_with("/SYSV") {
            return Err(Error::Unsupported {
                pid,
                object: range(),
                detail: "mapping of a SysV shared memory segment (not supported yet)".into(),
            });
        } else if m.deleted && m.path.starts_with('/') {
            // A memfd or an unlinked file: the mapping may be its only reference, so it
            // is found through map_files.
            let source = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
            let meta = std::fs::metadata(&source).map_err(|e| Error::Unsupported {
                pid,
                object: range(),
                detail: format!("cannot stat the mapped file through {source}: {e}"),
            })?;
            let found = object::classify(&m.path, &source, &meta, objects.borrow().link_remap)
                .map_err(|detail| Error::Unsupported {
                    pid,
                    object: range(),
                    detail,
                })?;
            let key = (meta.dev(), meta.ino());
            VmaKind::Object {
                object: objects.borrow_mut().note(pid, key, source, found),
            }
        } else if m.path.starts_with('/') {
            let (dev, ino, size, _, _) = stasis_sys::own::stat(std::path::Path::new(&m.path))
                .ctx(pid, || format!("stat the file of {}", range()))?;
            if ino != m.inode {
                return Err(Error::Unsupported {
                    pid,
                    object: range(),
                    detail: format!(
                        "the path now names another file (inode {ino}, mapped inode {})",
                        m.inode
                    ),
                });
            }
            VmaKind::File {
                path: m.path.clone(),
                dev,
                ino,
                size,
            }
        } else {
            return Err(Error::Unsupported {
                pid,
                object: range(),
                detail: "unknown kind of mapping".into(),
            });
        };
        out.push(Vma {
            start: m.start,
            end: m.end,
            prot: prot_of(m),
            shared: m.shared,
            kind,
            pgoff: m.offset,
            vm_flags: s.vm_flags.clone(),
        });
    }
    Ok(out)
}

/// An attachment of a SysV shm segment: shared, "/SYSV" and 8 hex digits of key, deleted;
/// the inode is the shmid. The segment (contents included) goes to the IPC image.
fn sysv_shm_kind(pid: i32, s: &SmapsEntry, range: &dyn Fn() -> String) -> Result<Option<VmaKind>> {
    let m = &s.map;
    let is_sysv = m.shared
        && m.deleted
        && m.path
            .strip_prefix("/SYSV")
            .is_some_and(|k| k.len() == 8 && k.bytes().all(|b| b.is_ascii_hexdigit()));
    if !is_sysv {
        return Ok(None);
    }
    if s.vm_flags.iter().any(|f| f == "ht") {
        return Err(Error::Unsupported {
            pid,
            object: range(),
            detail: "SysV shm segment in huge pages (SHM_HUGETLB)".into(),
        });
    }
    let shmid = i32::try_from(m.inode).map_err(|_| Error::Unsupported {
        pid,
        object: range(),
        detail: format!("SysV shm id {} out of range", m.inode),
    })?;
    let st = crate::ipc::shm_stat_of(pid, shmid).map_err(|e| Error::Unsupported {
        pid,
        object: range(),
        detail: format!("SysV shm segment {shmid} cannot be looked up: {e}"),
    })?;
    Ok(Some(VmaKind::SysvShm {
        shmid,
        size: st.size,
    }))
}

/// Which pages of a mapping are stored in the image.
fn store_page(vma: &Vma, entry: u64) -> bool {
    let present = entry & procfs::PM_PRESENT != 0;
    let swapped = entry & procfs::PM_SWAP != 0;
    match &vma.kind {
        VmaKind::Special { .. } => false,
        VmaKind::Anonymous { .. } | VmaKind::SharedAnonymous { .. } => present || swapped,
        // Private file mappings: only the pages the process wrote (now anonymous copies).
        VmaKind::File { .. } | VmaKind::Object { .. } if !vma.shared => {
            swapped || (present && entry & procfs::PM_FILE == 0)
        }
        // Shared file mappings: the file (or the saved file object) holds the data.
        VmaKind::File { .. } | VmaKind::Object { .. } => false,
        // The segment's contents are in the IPC image.
        VmaKind::SysvShm { .. } => false,
    }
}

/// The parts of shared anonymous memory objects that earlier images of this dump store:
/// (inode, first byte, end byte) in the object.
pub fn shared_anon_stored(done: &[TaskImage]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for t in done {
        for v in &t.mm.vmas {
            let VmaKind::SharedAnonymous { inode } = v.kind else {
                continue;
            };
            for r in &t.mm.pages {
                let (a, b) = (r.vaddr.max(v.start), (r.vaddr + r.count * PAGE).min(v.end));
                if a < b {
                    out.push((inode, v.pgoff + (a - v.start), v.pgoff + (b - v.start)));
                }
            }
        }
    }
    out
}

/// `ranges` sorted, with those that overlap or touch joined.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Whether one of `ranges` (sorted, apart) holds `at`.
fn covers(ranges: &[(u64, u64)], at: u64) -> bool {
    let i = ranges.partition_point(|r| r.0 <= at);
    i > 0 && at < ranges[i - 1].1
}

/// The byte ranges of the shmem object behind shared anonymous mapping `vma` that hold
/// pages (SEEK_DATA/SEEK_HOLE on its /proc/PID/map_files entry), within the mapping. A
/// page can hold data while no process maps it in (one that wrote it has ended), so the
/// processes' page tables do not tell.
fn shmem_populated(pid: i32, vma: &Vma) -> Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let what = || format!("shared memory {:#x}-{:#x}", vma.start, vma.end);
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", vma.start, vma.end);
    let file = std::fs::File::open(&path).map_err(|e| Error::Sys {
        pid,
        context: format!("{}: open {path}", what()),
        source: stasis_sys::SysError::new(
            "open",
            path.clone(),
            stasis_sys::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        ),
    })?;
    let fd = file.as_raw_fd();
    let end = vma.pgoff + (vma.end - vma.start);
    let mut out = Vec::new();
    let mut from = vma.pgoff;
    while from < end {
        let Some(data) = own::seek_data(fd, from).ctx(pid, what)? else {
            break;
        };
        if data >= end {
            break;
        }
        let hole = own::seek_hole(fd, data).ctx(pid, what)?.min(end);
        out.push((data, hole));
        from = hole;
    }
    Ok(out)
}

/// Reads the pages worth storing, except those in `inherited` (sorted, held by the
/// parent's image), and appends them to the page file; returns the index. Of shared
/// anonymous memory, every page its object holds is stored, once per dump: not those
/// `shared_done` says an earlier image stores.
pub fn dump_pages(
    pid: i32,
    vmas: &[Vma],
    inherited: &[PageSpan],
    shared_done: &[(u64, u64, u64)],
    out: &mut PagesWriter,
) -> Result<Vec<PageRun>> {
    let mut pagemap = Pagemap::open(pid).proc(pid)?;
    let mem = ProcMem::open(pid).ctx(pid, || "open /proc/PID/mem".into())?;
    let mut runs: Vec<PageRun> = Vec::new();
    let mut entries = Vec::new();
    // Collect runs first (cheap), then read the data in large batches.
    let mut readable: Vec<bool> = Vec::new();
    for vma in vmas {
        if matches!(vma.kind, VmaKind::Special { .. } | VmaKind::SysvShm { .. })
            || (matches!(vma.kind, VmaKind::File { .. } | VmaKind::Object { .. }) && vma.shared)
        {
            continue;
        }
        let pages = ((vma.end - vma.start) / PAGE) as usize;
        // For shared anonymous memory: the object's pages not stored already.
        let object_pages = match vma.kind {
            VmaKind::SharedAnonymous { inode } => {
                let done = merged(
                    shared_done
                        .iter()
                        .filter(|d| d.0 == inode)
                        .map(|d| (d.1, d.2))
                        .collect(),
                );
                Some((shmem_populated(pid, vma)?, done))
            }
            _ => None,
        };
        // Read pagemap in slices so huge reservations do not need huge buffers.
        let mut done = 0usize;
        while done < pages {
            let n = (pages - done).min(1 << 18);
            let start = vma.start + done as u64 * PAGE;
            entries.clear();
            pagemap.read(start, n, &mut entries).proc(pid)?;
            let end = start + n as u64 * PAGE;
            let first = inherited.partition_point(|sp| sp.end(PAGE) <= start);
            for sp in inherited[first..].iter().take_while(|sp| sp.vaddr < end) {
                let a = ((sp.vaddr.max(start) - start) / PAGE) as usize;
                let b = ((sp.end(PAGE).min(end) - start) / PAGE) as usize;
                entries[a..b].fill(0);
            }
            // process_vm_readv pins the pages it reads, and the kernel gives a task its
            // own copy of an anonymous page that is shared copy-on-write before pinning
            // it: reading shared pages that way would cost the dumped tree the memory it
            // shares. They are read through /proc/PID/mem, which does not pin.
            let prot_read = vma.prot & libc::PROT_READ as u32 != 0;
            let fast = |e: u64| prot_read && e & procfs::PM_EXCLUSIVE != 0;
            let keep: Vec<bool> = match &object_pages {
                None => entries.iter().map(|&e| store_page(vma, e)).collect(),
                Some((populated, done)) => (0..entries.len())
                    .map(|i| {
                        let at = vma.pgoff + (start - vma.start) + i as u64 * PAGE;
                        covers(populated, at) && !covers(done, at)
                    })
                    .collect(),
            };
            let mut i = 0;
            while i < entries.len() {
                if !keep[i] {
                    i += 1;
                    continue;
                }
                let first = i;
                let can_read = fast(entries[i]);
                while i < entries.len() && keep[i] && fast(entries[i]) == can_read {
                    i += 1;
                }
                let vaddr = start + first as u64 * PAGE;
                let count = (i - first) as u64;
                match runs.last_mut() {
                    Some(last)
                        if last.vaddr + last.count * PAGE == vaddr
                            && readable.last() == Some(&can_read) =>
                    {
                        last.count += count
                    }
                    _ => {
                        runs.push(PageRun {
                            vaddr,
                            count,
                            offset: 0,
                        });
                        readable.push(can_read);
                    }
                }
            }
            done += n;
        }
    }
    // Offsets follow the order of the runs: the page file is one sequential stream.
    let mut offset = out.offset();
    let mut pieces: Vec<(RemoteRange, bool)> = Vec::new();
    for (r, &can_read) in runs.iter_mut().zip(&readable) {
        r.offset = offset;
        offset += r.count * PAGE;
        // Cut runs into pieces no larger than a batch.
        let mut addr = r.vaddr;
        let end = r.vaddr + r.count * PAGE;
        while addr < end {
            let len = (end - addr).min(BATCH as u64);
            pieces.push((
                RemoteRange {
                    addr,
                    len: len as usize,
                },
                can_read,
            ));
            addr += len;
        }
    }
    let total = (offset - out.offset()) as usize;
    let mut buf = vec![0u8; total.min(BATCH)];
    let mut i = 0;
    while i < pieces.len() {
        let mut len = 0usize;
        let first = i;
        while i < pieces.len() && len + pieces[i].0.len <= buf.len() {
            len += pieces[i].0.len;
            i += 1;
        }
        read_batch(pid, &mem, &pieces[first..i], &mut buf[..len])?;
        out.write_all(&buf[..len])?;
    }
    Ok(runs)
}

/// Reads one batch of pieces into `buf` (packed): readable ones with process_vm_readv,
/// the rest (PROT_NONE, or what process_vm_readv refused) through /proc/PID/mem.
fn read_batch(
    pid: i32,
    mem: &ProcMem,
    pieces: &[(RemoteRange, bool)],
    buf: &mut [u8],
) -> Result<()> {
    let mut pos = 0usize;
    let mut k = 0usize;
    while k < pieces.len() {
        let first = k;
        let can_read = pieces[k].1;
        let mut len = 0usize;
        while k < pieces.len() && pieces[k].1 == can_read {
            len += pieces[k].0.len;
            k += 1;
        }
        let group: Vec<RemoteRange> = pieces[first..k].iter().map(|p| p.0).collect();
        let got = if can_read {
            sysmem::read_ranges(pid, &group, &mut buf[pos..pos + len])
                .ctx(pid, || "read memory".into())?
        } else {
            0
        };
        let mut off = 0usize;
        for r in &group {
            let end = off + r.len;
            if end > got {
                let skip = got.saturating_sub(off);
                mem.read(r.addr + skip as u64, &mut buf[pos + off + skip..pos + end])
                    .ctx(pid, || {
                        format!("read memory at {:#x}", r.addr + skip as u64)
                    })?;
            }
            off = end;
        }
        pos += len;
    }
    Ok(())
}

/// The mm fields: most come from /proc/PID/stat, the brk from a remote brk(0).
pub fn dump_mm(
    pid: i32,
    stat: &Stat,
    session: &mut Session,
    vmas: Vec<Vma>,
    pages: Vec<PageRun>,
    inherited: Vec<PageSpan>,
) -> Result<MmImage> {
    let brk = session.call("brk", libc::SYS_brk, [0; 6])?;
    let auxv = procfs::auxv(pid).proc(pid)?;
    Ok(MmImage {
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv,
        vmas,
        pages,
        inherited,
    })
}

/// A file that mappings are made from at restore, opened by the restore child at `fd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFile {
    /// The path to open (empty for a file object).
    pub path: String,
    pub fd: i32,
    pub writable: bool,
    /// A file object of the image (memfd, deleted file), taken from its restore slot.
    pub object: Option<u32>,
}

/// Chooses descriptor numbers (from `first_fd` up) for the files that mappings need.
pub fn plan_map_files(mm: &MmImage, first_fd: i32) -> Vec<MapFile> {
    let mut by_path: BTreeMap<&str, bool> = BTreeMap::new();
    for v in &mm.vmas {
        if let VmaKind::File { path, .. } = &v.kind {
            let w = v.shared
                && (v.prot & libc::PROT_WRITE as u32 != 0 || v.vm_flags.iter().any(|f| f == "mw"));
            *by_path.entry(path).or_default() |= w;
        }
    }
    let mut objects: Vec<u32> = mm
        .vmas
        .iter()
        .filter_map(|v| match v.kind {
            VmaKind::Object { object } => Some(object),
            _ => None,
        })
        .collect();
    objects.sort_unstable();
    objects.dedup();
    let by_object = objects.into_iter().map(|o| (None, Some(o)));
    by_path
        .into_iter()
        .map(|(path, writable)| (Some((path, writable)), None))
        .chain(by_object)
        .enumerate()
        .map(|(i, (path, object))| MapFile {
            path: path.map(|p| p.0.to_string()).unwrap_or_default(),
            fd: first_fd + i as i32,
            // File objects are made read-write.
            writable: path.is_none_or(|p| p.1),
            object,
        })
        .collect()
}

/// Checks that every mapped file is still there with the size it had.
pub fn check_map_files(pid: i32, mm: &MmImage) -> Result<()> {
    for v in &mm.vmas {
        if let VmaKind::File { path, size, .. } = &v.kind {
            let (_, _, now, _, _) =
                stasis_sys::own::stat(std::path::Path::new(path)).map_err(|e| Error::Restore {
                    pid,
                    reason: format!("mapped file {path} is not available: {e}"),
                })?;
            if now != *size {
                return Err(Error::Restore {
                    pid,
                    reason: format!(
                        "mapped file {path} changed since the dump (size {now}, was {size})"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Finds `len` free bytes in [lo, hi) outside `occupied` (sorted or not), highest first.
pub fn find_gap(occupied: &[(u64, u64)], len: u64, lo: u64, hi: u64) -> Option<u64> {
    let mut occ: Vec<(u64, u64)> = occupied.to_vec();
    occ.sort_unstable();
    let mut top = hi;
    for &(s, e) in occ.iter().rev() {
        if e <= lo {
            break;
        }
        if e < top && top - e >= len + 2 * PAGE * 16 {
            return Some(top - len - PAGE * 16);
        }
        top = top.min(s);
    }
    (top > lo && top - lo >= len + 2 * PAGE * 16).then(|| top - len - PAGE * 16)
}

const MADVISE_FLAGS: &[(&str, i32)] = &[
    ("dc", libc::MADV_DONTFORK),
    ("hg", libc::MADV_HUGEPAGE),
    ("nh", libc::MADV_NOHUGEPAGE),
    ("dd", libc::MADV_DONTDUMP),
    ("wf", libc::MADV_WIPEONFORK),
    ("mg", libc::MADV_MERGEABLE),
    ("sr", libc::MADV_SEQUENTIAL),
    ("rr", libc::MADV_RANDOM),
];
const SYS_MSEAL: i64 = 462;

/// Rebuilds the address space of a restore child from its image. On entry the child is a
/// copy of the tool plus the scratch area `scratch` (start, end); on return it holds the
/// image's mappings and contents, the kernel's special mappings at their recorded places,
/// and only the scratch area besides.
pub fn restore(
    s: &mut Session,
    shmem: &mut ShmemTable,
    mm: &MmImage,
    map_files: &[MapFile],
    exe_fd: i32,
    contents: &Contents,
    scratch: (u64, u64),
) -> Result<()> {
    let pid = s.pid();
    let current = procfs::maps(pid).proc(pid)?;
    unmap_all_but(s, &current, scratch, &contents.kept)?;
    move_specials(s, mm, &current, scratch)?;
    attach_sysv_shm(s, mm)?;

    // Map every VMA, writable for now where contents must be filled in. Kept ones are
    // there already, writable.
    let kept = |v: &Vma| {
        contents
            .kept
            .iter()
            .any(|&(a, b)| a <= v.start && v.end <= b)
    };
    let mut has_pages: Vec<bool> = mm.vmas.iter().map(kept).collect();
    for &(addr, data) in &contents.writes {
        let end = addr + data.len() as u64;
        let first = mm.vmas.partition_point(|v| v.end <= addr);
        for (i, v) in mm.vmas.iter().enumerate().skip(first) {
            if v.start >= end {
                break;
            }
            has_pages[i] = true;
        }
    }
    // Private anonymous mappings in a row (thread stacks, guard pages, signal stacks) are
    // mapped together, then given their protections piece by piece.
    let mut run = AnonRun::default();
    for (i, v) in mm.vmas.iter().enumerate() {
        if kept(v) {
            continue;
        }
        let (fd, file_flags) = match &v.kind {
            VmaKind::Special { .. } | VmaKind::SysvShm { .. } => continue,
            VmaKind::Anonymous { .. } => (-1i64, libc::MAP_ANONYMOUS),
            VmaKind::SharedAnonymous { inode } => match shmem.find(*inode) {
                None => {
                    shmem.owners.push(ShmemOwner {
                        inode: *inode,
                        ns_pid: s.ns_pid(),
                        start: v.start,
                        end: v.end,
                        pgoff: v.pgoff,
                    });
                    (-1i64, libc::MAP_ANONYMOUS)
                }
                Some(owner) => {
                    map_shared_again(s, v, &owner, has_pages[i])?;
                    continue;
                }
            },
            VmaKind::File { path, .. } => {
                let f =
                    map_files
                        .iter()
                        .find(|f| &f.path == path)
                        .ok_or_else(|| Error::Restore {
                            pid,
                            reason: format!("no descriptor planned for mapped file {path}"),
                        })?;
                (f.fd as i64, 0)
            }
            VmaKind::Object { object } => {
                let f = map_files
                    .iter()
                    .find(|f| f.object == Some(*object))
                    .ok_or_else(|| Error::Restore {
                        pid,
                        reason: format!("no descriptor planned for mapped file object {object}"),
                    })?;
                (f.fd as i64, 0)
            }
        };
        let mut prot = v.prot;
        if has_pages[i] {
            prot |= (libc::PROT_READ | libc::PROT_WRITE) as u32;
        }
        let mut flags = libc::MAP_FIXED
            | file_flags
            | if v.shared {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
        if v.vm_flags.iter().any(|f| f == "gd") {
            flags |= libc::MAP_GROWSDOWN;
        }
        if v.vm_flags.iter().any(|f| f == "nr") {
            flags |= libc::MAP_NORESERVE;
        }
        let plain_private = fd < 0
            && !v.shared
            && flags & libc::MAP_GROWSDOWN == 0
            && matches!(v.kind, VmaKind::Anonymous { name: None });
        if plain_private {
            if !run.extends(v.start, flags) {
                run.map(s, pid)?;
                run = AnonRun {
                    start: v.start,
                    flags,
                    pieces: Vec::new(),
                };
            }
            run.pieces.push((v.start, v.end, prot));
            continue;
        }
        let got = s
            .call(
                "mmap",
                libc::SYS_mmap,
                [
                    v.start,
                    v.end - v.start,
                    prot as u64,
                    flags as u64,
                    fd as u64,
                    if fd >= 0 { v.pgoff } else { 0 },
                ],
            )
            .map_err(|e| vma_err(pid, v, e))?;
        if got != v.start {
            return Err(Error::Restore {
                pid,
                reason: format!("mmap of {:#x}-{:#x} landed at {got:#x}", v.start, v.end),
            });
        }
    }
    run.map(s, pid)?;

    // Advice first: MADV_HUGEPAGE makes the fill below allocate huge pages, as the
    // original had them. One call per run of adjacent mappings with the same advice (a
    // thread's stack, its guard page and its signal stack are four mappings in a row).
    for (flag, advice) in MADVISE_FLAGS {
        let advised = mm.vmas.iter().filter(|v| {
            !matches!(v.kind, VmaKind::Special { .. }) && v.vm_flags.iter().any(|f| f == flag)
        });
        for (start, end) in adjacent_runs(advised) {
            s.call(
                "madvise",
                libc::SYS_madvise,
                [start, end - start, *advice as u64, 0, 0, 0],
            )
            .map_err(|e| Error::Restore {
                pid,
                reason: format!("advice {flag} for mappings {start:#x}-{end:#x}: {e}"),
            })?;
        }
    }
    fill_pages(pid, &contents.writes)?;
    for &(start, end) in &contents.discard {
        s.call(
            "madvise",
            libc::SYS_madvise,
            [start, end - start, libc::MADV_DONTNEED as u64, 0, 0, 0],
        )
        .map_err(|e| Error::Restore {
            pid,
            reason: format!("discard pages {start:#x}-{end:#x} the parent had: {e}"),
        })?;
    }

    // Final protections and advice.
    for (i, v) in mm.vmas.iter().enumerate() {
        if matches!(v.kind, VmaKind::Special { .. }) {
            continue;
        }
        let len = v.end - v.start;
        if has_pages[i] && v.prot != v.prot | (libc::PROT_READ | libc::PROT_WRITE) as u32 {
            s.call(
                "mprotect",
                libc::SYS_mprotect,
                [v.start, len, v.prot as u64, 0, 0, 0],
            )
            .map_err(|e| vma_err(pid, v, e))?;
        }
        if v.vm_flags.iter().any(|f| f == "lo") {
            s.call("mlock", libc::SYS_mlock, [v.start, len, 0, 0, 0, 0])
                .map_err(|e| vma_err(pid, v, e))?;
        }
    }
    // Sealing comes last: a sealed mapping cannot be changed any more.
    for v in mm
        .vmas
        .iter()
        .filter(|v| v.vm_flags.iter().any(|f| f == "sl"))
    {
        if !matches!(v.kind, VmaKind::Special { .. }) {
            s.call("mseal", SYS_MSEAL, [v.start, v.end - v.start, 0, 0, 0, 0])
                .map_err(|e| vma_err(pid, v, e))?;
        }
    }

    set_mm_fields(s, mm, exe_fd)
}

/// What a task's memory still needs once its restore child has done its part.
#[derive(Debug, Default)]
pub struct Contents<'a> {
    /// Pages to write, by address, straight from the mapped page files.
    pub writes: Vec<(u64, &'a [u8])>,
    /// Mappings the restore child built itself (memory shared copy-on-write with its
    /// parent or children): left in place, not mapped or filled again.
    pub kept: Vec<(u64, u64)>,
    /// Ranges of kept mappings to empty (pages the parent had and this task did not).
    pub discard: Vec<(u64, u64)>,
}

/// Attaches the SysV shm segments at their addresses (remote shmat), read-only where the
/// mapping could never be written (no VM_MAYWRITE), then unmaps what of each attachment
/// the process had unmapped and sets each piece's protection.
fn attach_sysv_shm(s: &mut Session, mm: &MmImage) -> Result<()> {
    let pid = s.pid();
    // One attachment: the segment, its base address, its pieces.
    let mut attaches: Vec<(i32, u64, u64, Vec<&Vma>)> = Vec::new();
    for v in &mm.vmas {
        if let VmaKind::SysvShm { shmid, size } = v.kind {
            let base = v.start.checked_sub(v.pgoff).ok_or_else(|| Error::Restore {
                pid,
                reason: format!("SysV shm mapping {:#x} has offset {:#x}", v.start, v.pgoff),
            })?;
            match attaches.iter_mut().find(|a| a.0 == shmid && a.1 == base) {
                Some(a) => a.3.push(v),
                None => attaches.push((shmid, base, size.div_ceil(PAGE) * PAGE, vec![v])),
            }
        }
    }
    for (shmid, base, len, pieces) in attaches {
        let writable = pieces.iter().any(|v| v.vm_flags.iter().any(|f| f == "mw"));
        let exec = pieces.iter().any(|v| v.prot & libc::PROT_EXEC as u32 != 0);
        let mut flags = 0u64;
        if !writable {
            flags |= libc::SHM_RDONLY as u64;
        }
        if exec {
            flags |= libc::SHM_EXEC as u64;
        }
        let got = s
            .call(
                "shmat",
                libc::SYS_shmat,
                [shmid as u64, base, flags, 0, 0, 0],
            )
            .map_err(|e| Error::Restore {
                pid,
                reason: format!("attach SysV shm {shmid} at {base:#x}: {e}"),
            })?;
        if got != base {
            return Err(Error::Restore {
                pid,
                reason: format!("SysV shm {shmid} attached at {got:#x}, not {base:#x}"),
            });
        }
        let mut at = base;
        let mut sorted = pieces.clone();
        sorted.sort_by_key(|v| v.start);
        for v in sorted
            .iter()
            .map(|v| (v.start, v.end))
            .chain([(base + len, base + len)])
        {
            if v.0 > at {
                s.call("munmap", libc::SYS_munmap, [at, v.0 - at, 0, 0, 0, 0])?;
            }
            at = at.max(v.1);
        }
        let attach_prot = libc::PROT_READ as u32
            | if writable { libc::PROT_WRITE as u32 } else { 0 }
            | if exec { libc::PROT_EXEC as u32 } else { 0 };
        for v in pieces.iter().filter(|v| v.prot != attach_prot) {
            s.call(
                "mprotect",
                libc::SYS_mprotect,
                [v.start, v.end - v.start, v.prot as u64, 0, 0, 0],
            )
            .map_err(|e| vma_err(pid, v, e))?;
        }
    }
    Ok(())
}

/// Writes the pages into the task on every core: the cost is dominated by the kernel
/// allocating fresh pages in the target.
fn fill_pages(pid: i32, writes: &[(u64, &[u8])]) -> Result<()> {
    let total: usize = writes.iter().map(|w| w.1.len()).sum();
    if total == 0 {
        return Ok(());
    }
    // Split into one share per core, at piece boundaries (and inside a large piece).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let share = total.div_ceil(workers).max(1 << 20);
    let mut jobs: Vec<Vec<(u64, &[u8])>> = Vec::new();
    let mut cur: Vec<(u64, &[u8])> = Vec::new();
    let mut cur_len = 0usize;
    for &(addr, data) in writes {
        let (mut addr, mut data) = (addr, data);
        while !data.is_empty() {
            let take = data.len().min(share - cur_len);
            cur.push((addr, &data[..take]));
            cur_len += take;
            addr += take as u64;
            data = &data[take..];
            if cur_len == share {
                jobs.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
        }
    }
    if cur_len > 0 {
        jobs.push(cur);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|pieces| scope.spawn(move || sysmem::write_pieces(pid, pieces)))
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Restore {
                    pid,
                    reason: "a memory fill thread panicked".into(),
                })?
                .ctx(pid, || "fill memory".into())?;
        }
        Ok(())
    })
}

/// Shared anonymous memory objects made so far in this restore, by their inode at dump.
#[derive(Default)]
pub struct ShmemTable {
    owners: Vec<ShmemOwner>,
}

/// The first mapping of a shmem object: which task made it, where.
#[derive(Debug, Clone, Copy)]
struct ShmemOwner {
    inode: u64,
    /// The task's PID as tasks of the tree see it (for /proc/PID/map_files).
    ns_pid: i32,
    start: u64,
    end: u64,
    pgoff: u64,
}

impl ShmemTable {
    fn find(&self, inode: u64) -> Option<ShmemOwner> {
        self.owners.iter().find(|o| o.inode == inode).copied()
    }
}

/// Maps a shmem object that an earlier mapping made, through that mapping's
/// /proc/PID/map_files entry: the same object, so the memory stays shared.
fn map_shared_again(s: &mut Session, v: &Vma, owner: &ShmemOwner, fill: bool) -> Result<()> {
    let pid = s.pid();
    let offset = v
        .pgoff
        .checked_sub(owner.pgoff)
        .ok_or_else(|| Error::Restore {
            pid,
            reason: format!(
                "shared mapping {:#x}-{:#x} starts before the first mapping of its object",
                v.start, v.end
            ),
        })?;
    let path = format!(
        "/proc/{}/map_files/{:x}-{:x}\0",
        owner.ns_pid, owner.start, owner.end
    );
    let at = s.put(1024, path.as_bytes())?;
    let fd = s
        .call(
            "openat",
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, at, libc::O_RDWR as u64, 0, 0, 0],
        )
        .map_err(|e| vma_err(pid, v, e))?;
    let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
    // Writable for now only if contents are to be filled in (as every other mapping).
    let extra = if fill {
        (libc::PROT_READ | libc::PROT_WRITE) as u32
    } else {
        0
    };
    let prot = (v.prot | extra) as u64;
    let r = s.call(
        "mmap",
        libc::SYS_mmap,
        [v.start, v.end - v.start, prot, flags, fd, offset],
    );
    s.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    r.map_err(|e| vma_err(pid, v, e))?;
    Ok(())
}

/// Adjacent private anonymous mappings with the same mmap flags, mapped with one call.
#[derive(Default)]
struct AnonRun {
    start: u64,
    flags: i32,
    /// (start, end, protection to map with) of each mapping, in address order.
    pieces: Vec<(u64, u64, u32)>,
}

impl AnonRun {
    fn extends(&self, start: u64, flags: i32) -> bool {
        self.pieces.last().is_some_and(|p| p.1 == start) && self.flags == flags
    }

    /// Maps the run PROT_NONE, then sets each piece's protection: what a separate mmap
    /// of each piece would have made (mprotect to a writable protection charges the
    /// memory as mmap would).
    fn map(&self, s: &mut Session, pid: i32) -> Result<()> {
        let Some(&(_, end, _)) = self.pieces.last() else {
            return Ok(());
        };
        let start = self.start;
        let single = self.pieces.len() == 1;
        let prot = if single { self.pieces[0].2 } else { 0 };
        let got = s
            .call(
                "mmap",
                libc::SYS_mmap,
                [
                    start,
                    end - start,
                    prot as u64,
                    self.flags as u64,
                    -1i64 as u64,
                    0,
                ],
            )
            .map_err(|e| Error::Restore {
                pid,
                reason: format!("anonymous mapping {start:#x}-{end:#x}: {e}"),
            })?;
        if got != start {
            return Err(Error::Restore {
                pid,
                reason: format!("mmap of {start:#x}-{end:#x} landed at {got:#x}"),
            });
        }
        if single {
            return Ok(());
        }
        let calls: Vec<_> = self
            .pieces
            .iter()
            .filter(|p| p.2 != 0)
            .map(|&(a, b, prot)| {
                (
                    "mprotect",
                    libc::SYS_mprotect,
                    [a, b - a, prot as u64, 0, 0, 0],
                )
            })
            .collect();
        s.call_batch(&calls).map_err(|e| Error::Restore {
            pid,
            reason: format!("protections in anonymous mappings {start:#x}-{end:#x}: {e}"),
        })
    }
}

/// The address ranges covered by `vmas` (in address order), adjacent ones joined.
fn adjacent_runs<'a>(vmas: impl Iterator<Item = &'a Vma>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for v in vmas {
        match runs.last_mut() {
            Some(last) if last.1 == v.start => last.1 = v.end,
            _ => runs.push((v.start, v.end)),
        }
    }
    runs
}

fn vma_err(pid: i32, v: &Vma, e: Error) -> Error {
    Error::Restore {
        pid,
        reason: format!("mapping {:#x}-{:#x} ({:?}): {e}", v.start, v.end, v.kind),
    }
}

/// Unmaps everything but the kernel's special mappings, the scratch area and `kept`.
fn unmap_all_but(
    s: &mut Session,
    current: &[MapsEntry],
    scratch: (u64, u64),
    kept: &[(u64, u64)],
) -> Result<()> {
    let mut keep: Vec<(u64, u64)> = current
        .iter()
        .filter(|m| m.is_special())
        .map(|m| (m.start, m.end))
        .collect();
    keep.push(scratch);
    keep.extend_from_slice(kept);
    keep.sort_unstable();
    let mut at = 0u64;
    for (start, end) in keep
        .into_iter()
        .chain(std::iter::once((TASK_TOP, TASK_TOP)))
    {
        let start = start.min(TASK_TOP);
        if start > at {
            s.call("munmap", libc::SYS_munmap, [at, start - at, 0, 0, 0, 0])?;
        }
        at = at.max(end);
    }
    Ok(())
}

/// Moves [vdso], [vvar], [vvar_vclock]... of the child to where the image had them.
fn move_specials(
    s: &mut Session,
    mm: &MmImage,
    current: &[MapsEntry],
    scratch: (u64, u64),
) -> Result<()> {
    let pid = s.pid();
    let wanted: Vec<&Vma> = mm
        .vmas
        .iter()
        .filter(|v| matches!(&v.kind, VmaKind::Special { name } if !FIXED_SPECIALS.contains(&name.as_str())))
        .collect();
    let have: Vec<&MapsEntry> = current
        .iter()
        .filter(|m| m.is_special() && !FIXED_SPECIALS.contains(&m.path.as_str()))
        .collect();
    let name_of = |v: &Vma| match &v.kind {
        VmaKind::Special { name } => name.clone(),
        _ => String::new(),
    };
    let mismatch = || {
        Error::Restore {
        pid,
        reason: format!(
            "the kernel's special mappings differ from the image's (image: {}; this kernel: {}): restore on the kernel the image was taken on",
            wanted.iter().map(|v| format!("{} {} KiB", name_of(v), (v.end - v.start) / 1024)).collect::<Vec<_>>().join(", "),
            have.iter().map(|m| format!("{} {} KiB", m.path, (m.end - m.start) / 1024)).collect::<Vec<_>>().join(", "),
        ),
    }
    };
    if wanted.len() != have.len() {
        return Err(mismatch());
    }
    let mut pairs = Vec::new();
    for w in &wanted {
        let h = have
            .iter()
            .find(|m| m.path == name_of(w) && m.end - m.start == w.end - w.start)
            .ok_or_else(mismatch)?;
        pairs.push((h.start, w.start, w.end - w.start));
    }
    // Two moves, through a free area, so that no move lands on a mapping not yet moved.
    let mut occupied: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    occupied.extend(have.iter().map(|m| (m.start, m.end)));
    occupied.push(scratch);
    let total: u64 = pairs.iter().map(|p| p.2).sum();
    let mut tmp = find_gap(&occupied, total, 1 << 32, TASK_TOP).ok_or_else(|| Error::Restore {
        pid,
        reason: "no free address range to move the vdso through".into(),
    })?;
    let mut staged = Vec::new();
    for &(from, to, len) in &pairs {
        mremap(s, from, tmp, len)?;
        staged.push((tmp, to, len));
        tmp += len;
    }
    for (from, to, len) in staged {
        mremap(s, from, to, len)?;
    }
    Ok(())
}

fn mremap(s: &mut Session, from: u64, to: u64, len: u64) -> Result<()> {
    if from == to {
        return Ok(());
    }
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    s.call("mremap", libc::SYS_mremap, [from, len, len, flags, to, 0])?;
    Ok(())
}

const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

/// PR_SET_MM_MAP: code/data/brk/stack/arg/env boundaries, auxv and /proc/PID/exe.
fn set_mm_fields(s: &mut Session, mm: &MmImage, exe_fd: i32) -> Result<()> {
    let auxv = inject::words(&mm.auxv);
    let auxv_off = 256usize;
    let auxv_addr = s.put(auxv_off, &auxv)?;
    let mut st = inject::words(&[
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack,
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        auxv_addr,
    ]);
    st.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
    st.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    let addr = s.put(0, &st)?;
    s.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, addr, st.len() as u64, 0, 0],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            prot: 0,
            shared: false,
            kind: VmaKind::Anonymous { name: None },
            pgoff: 0,
            vm_flags: vec![],
        }
    }

    #[test]
    fn ranges_merge_and_cover() {
        let r = merged(vec![(30, 40), (0, 10), (5, 20), (20, 25)]);
        assert_eq!(r, vec![(0, 25), (30, 40)]);
        assert!(covers(&r, 0) && covers(&r, 24) && covers(&r, 30));
        assert!(!covers(&r, 25) && !covers(&r, 29) && !covers(&r, 40) && !covers(&[], 1));
    }

    #[test]
    fn adjacent_runs_join_touching_mappings_only() {
        let vmas = [
            vma(0x1000, 0x2000),
            vma(0x2000, 0x5000),
            vma(0x6000, 0x7000),
        ];
        assert_eq!(
            adjacent_runs(vmas.iter()),
            vec![(0x1000, 0x5000), (0x6000, 0x7000)]
        );
        assert!(adjacent_runs([].iter()).is_empty());
    }
}
