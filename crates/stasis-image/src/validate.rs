//! Consistency checks of decoded metadata, run by [`crate::ImageReader::open`] (and by
//! [`crate::ImageWriter::finish`] for the manifest) so that restore never starts from an
//! image it would choke on halfway.
//!
//! The checks are about structure only (names, ranges, uniqueness); whether the files a
//! task refers to still exist on this machine is the engine's business.

use std::collections::HashSet;

use crate::dir::MANIFEST_FILE;
use crate::types::{Manifest, PageRun, TaskEntry, TaskImage, Vma, VmaKind};
use crate::ImageError;

/// Longest file name accepted in an image directory (NAME_MAX).
const NAME_MAX: usize = 255;

/// Whether `name` may name a file of an image directory: a plain name (no `/`, no NUL,
/// not hidden, not `.`/`..`), at most 255 bytes, and not the manifest itself.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('.')
        && !name.contains(['/', '\0'])
        && name != MANIFEST_FILE
}

fn bad(msg: String) -> ImageError {
    ImageError::BadManifest(msg)
}

/// Checks the manifest on its own: page size, task tree, file names and digests.
pub fn validate_manifest(m: &Manifest) -> Result<(), ImageError> {
    if !m.page_size.is_power_of_two() || !(4096..=1 << 30).contains(&m.page_size) {
        return Err(bad(format!("bad page size {}", m.page_size)));
    }
    if let Some(feature) = crate::features::unknown(&m.requires) {
        return Err(ImageError::UnknownFeature {
            feature: feature.to_string(),
            writer: m.tool_version.clone(),
        });
    }
    let Some(root) = m.tasks.first() else {
        return Err(bad("no tasks".into()));
    };
    if root.pid != m.root_pid {
        return Err(bad(format!(
            "the first task is pid {}, but the root is pid {}",
            root.pid, m.root_pid
        )));
    }
    let mut files = HashSet::new();
    for d in &m.files {
        if !valid_file_name(&d.name) {
            return Err(bad(format!("bad file name {:?}", d.name)));
        }
        if !files.insert(d.name.as_str()) {
            return Err(bad(format!("{} is listed twice", d.name)));
        }
    }
    let mut pids = HashSet::new();
    let mut used = HashSet::new();
    for (i, t) in m.tasks.iter().enumerate() {
        if t.pid <= 0 {
            return Err(bad(format!("bad pid {}", t.pid)));
        }
        if i > 0 && !pids.contains(&t.ppid) {
            return Err(bad(format!(
                "task {} has parent {}, which is not listed before it",
                t.pid, t.ppid
            )));
        }
        if !pids.insert(t.pid) {
            return Err(bad(format!("task {} is listed twice", t.pid)));
        }
        for name in [&t.core_file, &t.pages_file] {
            if !files.contains(name.as_str()) {
                return Err(bad(format!(
                    "task {} refers to {name:?}, which has no checksum",
                    t.pid
                )));
            }
            if !used.insert(name.as_str()) {
                return Err(bad(format!("{name} is used twice")));
            }
        }
    }
    Ok(())
}

/// Checks a decoded task file against its manifest entry and the length of its page file.
pub fn validate_task(
    file: &str,
    task: &TaskImage,
    entry: &TaskEntry,
    page_size: u64,
    pages_len: u64,
) -> Result<(), ImageError> {
    let invalid = |reason: String| ImageError::Invalid {
        file: file.to_string(),
        reason,
    };
    if !page_size.is_power_of_two() {
        return Err(invalid(format!("bad page size {page_size}")));
    }
    if task.pid != entry.pid || task.ppid != entry.ppid {
        return Err(invalid(format!(
            "holds pid {} (parent {}), the manifest says pid {} (parent {})",
            task.pid, task.ppid, entry.pid, entry.ppid
        )));
    }
    let mut tids = HashSet::new();
    for t in &task.threads {
        if t.tid <= 0 || !tids.insert(t.tid) {
            return Err(invalid(format!("bad or repeated thread id {}", t.tid)));
        }
    }
    let mut signals = HashSet::new();
    for a in &task.signals.actions {
        if !(1..=64).contains(&a.signo) || !signals.insert(a.signo) {
            return Err(invalid(format!(
                "bad or repeated signal number {}",
                a.signo
            )));
        }
    }
    let mut timer_ids = HashSet::new();
    for p in &task.posix_timers {
        let target_ok = match p.notify {
            0 | 2 => (1..=64).contains(&p.signo),
            1 => true,
            4 => (1..=64).contains(&p.signo) && tids.contains(&p.target_tid),
            _ => false,
        };
        if p.id < 0 || !timer_ids.insert(p.id) || !target_ok {
            return Err(invalid(format!(
                "bad or repeated POSIX timer {} (notify {}, signal {}, thread {})",
                p.id, p.notify, p.signo, p.target_tid
            )));
        }
    }
    let mut fds = HashSet::new();
    for f in &task.fds {
        if f.fd < 0 || !fds.insert(f.fd) {
            return Err(invalid(format!("bad or repeated file descriptor {}", f.fd)));
        }
    }
    for q in &task.socket_queues {
        for m in &q.in_flight {
            if m.message as usize >= q.messages.len() || m.files.is_empty() || m.files.len() > 253 {
                return Err(invalid(format!(
                    "socket:[{}]: bad files in flight for message {} ({} file(s), {} message(s))",
                    q.inode,
                    m.message,
                    m.files.len(),
                    q.messages.len()
                )));
            }
        }
    }
    let vmas = &task.mm.vmas;
    for (i, v) in vmas.iter().enumerate() {
        if v.start >= v.end || v.start % page_size != 0 || v.end % page_size != 0 {
            return Err(invalid(format!("bad mapping {:#x}-{:#x}", v.start, v.end)));
        }
        if i > 0 && vmas[i - 1].end > v.start {
            return Err(invalid(format!(
                "mapping {:#x}-{:#x} overlaps or precedes the one before it",
                v.start, v.end
            )));
        }
    }
    let mut runs: Vec<(u64, u64)> = Vec::with_capacity(task.mm.pages.len());
    for r in &task.mm.pages {
        let (start, end) = check_run(r, page_size, pages_len).map_err(|why| {
            invalid(format!(
                "page run {:#x} x{} at offset {:#x}: {why}",
                r.vaddr, r.count, r.offset
            ))
        })?;
        if !covered(vmas, start, end) {
            return Err(invalid(format!(
                "page run {start:#x}-{end:#x} is not inside the mappings"
            )));
        }
        runs.push((start, end));
    }
    for span in &task.mm.inherited {
        let bytes = span.count.checked_mul(page_size);
        let end = bytes.and_then(|b| span.vaddr.checked_add(b));
        let Some(end) = end.filter(|_| span.count > 0 && span.vaddr % page_size == 0) else {
            return Err(invalid(format!(
                "inherited pages {:#x} x{}: empty, unaligned or past the end of the address space",
                span.vaddr, span.count
            )));
        };
        let private_anon = vmas.iter().any(|v| {
            v.start <= span.vaddr
                && end <= v.end
                && !v.shared
                && matches!(v.kind, VmaKind::Anonymous { .. })
        });
        if !private_anon {
            return Err(invalid(format!(
                "inherited pages {:#x}-{end:#x} are not inside one private anonymous mapping",
                span.vaddr
            )));
        }
        runs.push((span.vaddr, end));
    }
    for l in &task.file_locks {
        if !fds.contains(&l.fd) || l.end.is_some_and(|e| e < l.start) {
            return Err(invalid(format!(
                "file lock on fd {} ({}..{:?}): no such fd, or an empty range",
                l.fd, l.start, l.end
            )));
        }
    }
    for o in &task.file_objects {
        check_object(o).map_err(|why| invalid(format!("file object {}: {why}", o.id)))?;
    }
    runs.sort_unstable();
    for w in runs.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(invalid(format!(
                "page runs {:#x}-{:#x} and {:#x}-{:#x} overlap",
                w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }
    }
    Ok(())
}

/// Checks the extents and the data file name of one file object.
fn check_object(o: &crate::FileObject) -> Result<(), String> {
    if !valid_file_name(&o.data_file) {
        return Err(format!("{:?} cannot name a file of an image", o.data_file));
    }
    let mut end = 0u64;
    for e in &o.extents {
        let e_end = e
            .offset
            .checked_add(e.len)
            .ok_or_else(|| format!("extent at {:#x} overflows", e.offset))?;
        if e.len == 0 || e.offset < end || e_end > o.size {
            return Err(format!(
                "extent {:#x}+{:#x} is empty, out of order or past the size {}",
                e.offset, e.len, o.size
            ));
        }
        end = e_end;
    }
    Ok(())
}

/// Checks one run and returns its address range.
fn check_run(r: &PageRun, page_size: u64, pages_len: u64) -> Result<(u64, u64), &'static str> {
    if r.count == 0 {
        return Err("no pages");
    }
    if r.vaddr % page_size != 0 || r.offset % page_size != 0 {
        return Err("not page aligned");
    }
    let bytes = r.count.checked_mul(page_size).ok_or("too many pages")?;
    let end = r
        .vaddr
        .checked_add(bytes)
        .ok_or("past the end of the address space")?;
    match r.offset.checked_add(bytes) {
        Some(file_end) if file_end <= pages_len => Ok((r.vaddr, end)),
        _ => Err("past the end of the page file"),
    }
}

/// Whether `[start, end)` lies inside the union of `vmas` (sorted, non-overlapping).
fn covered(vmas: &[Vma], start: u64, end: u64) -> bool {
    // First mapping that ends after `start`.
    let mut i = vmas.partition_point(|v| v.end <= start);
    let mut at = start;
    while at < end {
        match vmas.get(i) {
            Some(v) if v.start <= at => at = v.end,
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VmaKind;

    fn vma(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            prot: 3,
            shared: false,
            kind: VmaKind::Anonymous { name: None },
            pgoff: 0,
            vm_flags: vec![],
        }
    }

    #[test]
    fn coverage() {
        let v = [
            vma(0x1000, 0x3000),
            vma(0x3000, 0x5000),
            vma(0x8000, 0x9000),
        ];
        assert!(covered(&v, 0x1000, 0x5000));
        assert!(covered(&v, 0x2000, 0x4000));
        assert!(covered(&v, 0x8000, 0x9000));
        assert!(!covered(&v, 0x0, 0x2000));
        assert!(!covered(&v, 0x4000, 0x6000));
        assert!(!covered(&v, 0x8000, 0xa000));
        assert!(!covered(&[], 0x1000, 0x2000));
    }

    #[test]
    fn runs() {
        let run = |vaddr, count, offset| PageRun {
            vaddr,
            count,
            offset,
        };
        assert_eq!(
            check_run(&run(0x1000, 2, 0), 4096, 8192),
            Ok((0x1000, 0x3000))
        );
        assert!(check_run(&run(0x1000, 2, 4096), 4096, 8192).is_err());
        assert!(check_run(&run(0x1000, 0, 0), 4096, 8192).is_err());
        assert!(check_run(&run(0x1001, 1, 0), 4096, 8192).is_err());
        assert!(check_run(&run(0x1000, u64::MAX, 0), 4096, u64::MAX).is_err());
        assert!(check_run(&run(u64::MAX - 4095, 1, 0), 4096, 8192).is_err());
        assert!(check_run(&run(0, 1, u64::MAX - 4095), 4096, u64::MAX).is_err());
    }

    #[test]
    fn names() {
        for ok in ["task-1.img", "pages-1.img", "a"] {
            assert!(valid_file_name(ok), "{ok}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "/etc/passwd",
            "a\0b",
            MANIFEST_FILE,
            &long,
        ] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
    }
}
