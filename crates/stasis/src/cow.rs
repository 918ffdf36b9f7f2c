//! Private memory that a parent and its child still share copy-on-write since a fork.
//!
//! Dump: a page of a child's private anonymous mapping that is, physically, the page its
//! parent has at the same address (same page frame in /proc/PID/pagemap) is not stored
//! again; the child's image lists it as inherited, and the parent's image holds it.
//!
//! Restore: sharing comes back the way it was made, by forking. Each restore child (a copy
//! of the tool that becomes one process of the tree) maps and fills, before it forks its
//! own children, the mappings they inherit pages of ("prepared" regions); the children
//! then hold the very same pages. A child keeps the prepared mappings it inherited that it
//! has itself, writes its own pages over them and later discards the pages it did not have.
//! Where a region cannot be prepared (the address is taken in the tool's own layout), the
//! inherited pages are copied from the parent's image instead: same contents, not shared.

use std::collections::BTreeMap;

use stasis_image::{PageSpan, TaskImage, Vma, VmaKind};
use stasis_sys::procfs::{self, Pagemap};
use stasis_sys::{mem as sysmem, own};

use crate::error::{Error, ProcContext, Result};
use crate::mem::{Contents, PAGE};

/// Pages read from pagemap at a time.
const SLICE: usize = 1 << 18;

fn private_anon(v: &Vma) -> bool {
    !v.shared && matches!(v.kind, VmaKind::Anonymous { .. })
}

/// The pages of `pid`'s private anonymous mappings that are the same page frames as its
/// parent's at the same address, in mappings the parent has too (`parent`: its PID and
/// mappings). Page frame numbers are only shown to a privileged reader; without them
/// nothing is found and every page is stored.
pub fn find_inherited(
    pid: i32,
    vmas: &[Vma],
    parent: Option<(i32, &[Vma])>,
) -> Result<Vec<PageSpan>> {
    let Some((ppid, parent_vmas)) = parent else {
        return Ok(Vec::new());
    };
    let mut spans: Vec<PageSpan> = Vec::new();
    let mut mine = Pagemap::open(pid).proc(pid)?;
    let mut theirs = Pagemap::open(ppid).proc(ppid)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for v in vmas.iter().filter(|v| private_anon(v)) {
        let in_parent = parent_vmas
            .iter()
            .any(|p| private_anon(p) && p.start <= v.start && v.end <= p.end);
        if !in_parent {
            continue;
        }
        let pages = ((v.end - v.start) / PAGE) as usize;
        let mut done = 0usize;
        while done < pages {
            let n = (pages - done).min(SLICE);
            let start = v.start + done as u64 * PAGE;
            mine.read(start, n, &mut a).proc(pid)?;
            theirs.read(start, n, &mut b).proc(ppid)?;
            for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
                let frame = x & procfs::PM_PFN_MASK;
                let same = x & procfs::PM_PRESENT != 0
                    && y & procfs::PM_PRESENT != 0
                    && frame != 0
                    && frame == y & procfs::PM_PFN_MASK;
                if !same {
                    continue;
                }
                let vaddr = start + i as u64 * PAGE;
                match spans.last_mut() {
                    Some(last) if last.end(PAGE) == vaddr => last.count += 1,
                    _ => spans.push(PageSpan { vaddr, count: 1 }),
                }
            }
            done += n;
        }
    }
    Ok(spans)
}

/// A mapping a restore child builds itself before it forks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// Mapped afresh in this task; otherwise it is (part of) a region inherited from the
    /// parent, kept with its shared pages.
    pub fresh: bool,
    growsdown: bool,
    noreserve: bool,
}

/// Where the bytes of one task's pages are.
struct PageIndex<'a> {
    /// Stored runs: start address -> (end address, bytes).
    stored: BTreeMap<u64, (u64, &'a [u8])>,
    /// Inherited spans: start -> end.
    inherited: BTreeMap<u64, u64>,
    /// The parent's index in the task list, for inherited pages.
    parent: Option<usize>,
}

fn find_in<V: Copy>(map: &BTreeMap<u64, (u64, V)>, addr: u64) -> Option<(u64, u64, V)> {
    map.range(..=addr)
        .next_back()
        .filter(|(_, &(end, _))| addr < end)
        .map(|(&start, &(end, v))| (start, end, v))
}

fn inside(map: &BTreeMap<u64, u64>, addr: u64) -> bool {
    map.range(..=addr)
        .next_back()
        .is_some_and(|(_, &end)| addr < end)
}

/// Which regions each task of the tree prepares, and where every page's bytes are.
pub struct CowPlan<'a> {
    regions: Vec<Vec<Region>>,
    index: Vec<PageIndex<'a>>,
}

impl<'a> CowPlan<'a> {
    /// `pages[i]` is the page file of `tasks[i]`; `tool_maps` the ranges the tool itself
    /// has mapped (a restore child starts as its copy).
    pub fn new(tasks: &[TaskImage], pages: &[&'a [u8]], tool_maps: &[(u64, u64)]) -> Result<Self> {
        let parent_of = |t: &TaskImage| {
            tasks
                .iter()
                .position(|p| p.pid == t.ppid && p.state != 'Z' && p.pid != t.pid)
        };
        let mut index = Vec::with_capacity(tasks.len());
        for (t, bytes) in tasks.iter().zip(pages) {
            let mut stored = BTreeMap::new();
            for r in &t.mm.pages {
                let len = (r.count * PAGE) as usize;
                let data = usize::try_from(r.offset)
                    .ok()
                    .and_then(|o| bytes.get(o..o.checked_add(len)?))
                    .ok_or_else(|| Error::Restore {
                        pid: t.pid,
                        reason: format!("page run at {:#x} points past its page file", r.vaddr),
                    })?;
                stored.insert(r.vaddr, (r.vaddr + r.count * PAGE, data));
            }
            let inherited =
                t.mm.inherited
                    .iter()
                    .map(|s| (s.vaddr, s.end(PAGE)))
                    .collect();
            let parent = parent_of(t);
            if !t.mm.inherited.is_empty() && parent.is_none() {
                return Err(Error::Restore {
                    pid: t.pid,
                    reason: format!(
                        "pages are inherited from parent {}, which is not in the image",
                        t.ppid
                    ),
                });
            }
            index.push(PageIndex {
                stored,
                inherited,
                parent,
            });
        }
        let mut plan = Self {
            regions: vec![Vec::new(); tasks.len()],
            index,
        };
        // Every inherited page must be found in an ancestor's image.
        for (i, t) in tasks.iter().enumerate() {
            for s in &t.mm.inherited {
                for k in 0..s.count {
                    let addr = s.vaddr + k * PAGE;
                    if plan.page(i, addr).is_none() {
                        return Err(Error::Restore {
                            pid: t.pid,
                            reason: format!("inherited page {addr:#x} is in no ancestor's image"),
                        });
                    }
                }
            }
        }
        // Parents before children: the tree's order from the root, by depth.
        let depth: Vec<usize> = (0..tasks.len())
            .map(|i| {
                let mut d = 0;
                let mut at = plan.index[i].parent;
                // A cycle would make the image inconsistent: stop counting there.
                while let Some(p) = at.filter(|_| d <= tasks.len()) {
                    d += 1;
                    at = plan.index[p].parent;
                }
                d
            })
            .collect();
        let mut order: Vec<usize> = (0..tasks.len()).collect();
        order.sort_by_key(|&i| depth[i]);
        for i in order {
            let t = &tasks[i];
            if t.state == 'Z' {
                continue;
            }
            let parent_regions: &[Region] = match plan.index[i].parent {
                Some(p) => &plan.regions[p],
                None => &[],
            };
            let children: Vec<&TaskImage> = tasks
                .iter()
                .enumerate()
                .filter(|&(c, _)| plan.index[c].parent == Some(i))
                .map(|(_, c)| c)
                .collect();
            let mut mine = Vec::new();
            for v in t.mm.vmas.iter().filter(|v| private_anon(v)) {
                let has_inherited =
                    t.mm.inherited
                        .iter()
                        .any(|s| v.start <= s.vaddr && s.vaddr < v.end);
                let kept = has_inherited
                    && parent_regions
                        .iter()
                        .any(|r| r.start <= v.start && v.end <= r.end);
                let needed = children.iter().any(|c| {
                    c.mm.inherited
                        .iter()
                        .any(|s| v.start <= s.vaddr && s.vaddr < v.end)
                });
                let clashes = |(a, b): (u64, u64)| a < v.end && v.start < b;
                let fresh = !kept
                    && needed
                    && !tool_maps.iter().copied().any(clashes)
                    && !ancestors_regions(&plan, i).any(clashes);
                if kept || fresh {
                    mine.push(Region {
                        start: v.start,
                        end: v.end,
                        fresh,
                        growsdown: v.vm_flags.iter().any(|f| f == "gd"),
                        noreserve: v.vm_flags.iter().any(|f| f == "nr"),
                    });
                }
            }
            plan.regions[i] = mine;
        }
        Ok(plan)
    }

    /// The regions task `idx` prepares.
    pub fn regions(&self, idx: usize) -> &[Region] {
        &self.regions[idx]
    }

    /// Every prepared region of the tree (they exist in restore children's layouts).
    pub fn all_regions(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.regions.iter().flatten().map(|r| (r.start, r.end))
    }

    /// The bytes of the page at `addr` of task `idx`: stored, or found in an ancestor.
    fn page(&self, mut idx: usize, addr: u64) -> Option<&'a [u8]> {
        for _ in 0..=self.index.len() {
            let ix = &self.index[idx];
            if let Some((start, _, data)) = find_in(&ix.stored, addr) {
                let off = (addr - start) as usize;
                return data.get(off..off + PAGE as usize);
            }
            if !inside(&ix.inherited, addr) {
                return None;
            }
            idx = ix.parent?;
        }
        None
    }

    /// What task `idx` writes into `[start, end)`: its stored pages and, when
    /// `with_inherited`, copies of its inherited ones.
    fn pieces(
        &self,
        idx: usize,
        start: u64,
        end: u64,
        with_inherited: bool,
    ) -> Vec<(u64, &'a [u8])> {
        let ix = &self.index[idx];
        let mut out: Vec<(u64, &'a [u8])> = Vec::new();
        for (&s, &(e, data)) in ix.stored.range(..end) {
            let (a, b) = (s.max(start), e.min(end));
            if a < b {
                out.push((a, &data[(a - s) as usize..(b - s) as usize]));
            }
        }
        if with_inherited {
            for (&s, &e) in ix.inherited.range(..end) {
                let mut addr = s.max(start);
                while addr < e.min(end) {
                    if let Some(page) = self.page(idx, addr) {
                        out.push((addr, page));
                    }
                    addr += PAGE;
                }
            }
        }
        out.sort_unstable_by_key(|p| p.0);
        out
    }

    /// Runs in the restore child of task `idx` (a copy of the tool) before it forks its
    /// children: maps the fresh regions and writes the task's own pages into every region.
    pub fn prepare(&self, idx: usize) -> std::result::Result<(), String> {
        let me = std::process::id() as i32;
        for r in &self.regions[idx] {
            if r.fresh {
                own::map_anon_fixed(r.start, r.end - r.start, r.growsdown, r.noreserve)
                    .map_err(|e| format!("prepare memory shared with children: {e}"))?;
            }
            // A fresh region has no parent's pages under it: copies of the inherited ones.
            let pieces = self.pieces(idx, r.start, r.end, r.fresh);
            sysmem::write_pieces(me, &pieces)
                .map_err(|e| format!("fill memory shared with children: {e}"))?;
        }
        Ok(())
    }

    /// What the take-over of task `idx` still has to do for its memory.
    pub fn contents(&self, idx: usize) -> Contents<'a> {
        let regions = &self.regions[idx];
        let kept: Vec<(u64, u64)> = regions.iter().map(|r| (r.start, r.end)).collect();
        let mut writes = Vec::new();
        let mut at = 0u64;
        for &(s, e) in kept.iter().chain(std::iter::once(&(u64::MAX, u64::MAX))) {
            if s > at {
                writes.extend(self.pieces(idx, at, s, true));
            }
            at = e;
        }
        // In a kept region, the parent's pages this task did not have go.
        let ix = &self.index[idx];
        let mut discard = Vec::new();
        for r in regions.iter().filter(|r| !r.fresh) {
            let mut addr = r.start;
            while addr < r.end {
                let mine = find_in(&ix.stored, addr).is_some() || inside(&ix.inherited, addr);
                if !mine {
                    match discard.last_mut() {
                        Some((_, end)) if *end == addr => *end += PAGE,
                        _ => discard.push((addr, addr + PAGE)),
                    }
                }
                addr += PAGE;
            }
        }
        Contents {
            writes,
            kept,
            discard,
        }
    }
}

fn ancestors_regions<'p>(
    plan: &'p CowPlan<'_>,
    idx: usize,
) -> impl Iterator<Item = (u64, u64)> + 'p {
    let mut chain = Vec::new();
    let mut at = plan.index[idx].parent;
    while let Some(p) = at {
        if chain.len() > plan.index.len() {
            break;
        }
        chain.push(p);
        at = plan.index[p].parent;
    }
    chain
        .into_iter()
        .flat_map(move |p| plan.regions[p].iter().map(|r| (r.start, r.end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stasis_image::{sample, PageRun};

    const BASE: u64 = 0x1000_0000;
    const N: u64 = 16;

    fn region() -> Vma {
        Vma {
            start: BASE,
            end: BASE + N * PAGE,
            prot: (libc::PROT_READ | libc::PROT_WRITE) as u32,
            shared: false,
            kind: VmaKind::Anonymous { name: None },
            pgoff: 0,
            vm_flags: vec!["rd".into(), "wr".into()],
        }
    }

    /// A parent with every page of the region stored (page k holds k + 1) and a child
    /// that wrote page 3 (0xee), inherited pages 0-2 and 4-9, and has no pages 10-15.
    fn tree() -> (Vec<TaskImage>, Vec<Vec<u8>>) {
        let mut parent = sample::task(10, 1, 1);
        parent.mm.vmas = vec![region()];
        parent.mm.pages = vec![PageRun {
            vaddr: BASE,
            count: N,
            offset: 0,
        }];
        let mut child = sample::task(11, 10, 1);
        child.mm.vmas = vec![region()];
        child.mm.pages = vec![PageRun {
            vaddr: BASE + 3 * PAGE,
            count: 1,
            offset: 0,
        }];
        child.mm.inherited = vec![
            PageSpan {
                vaddr: BASE,
                count: 3,
            },
            PageSpan {
                vaddr: BASE + 4 * PAGE,
                count: 6,
            },
        ];
        let parent_pages: Vec<u8> = (0..N)
            .flat_map(|k| vec![k as u8 + 1; PAGE as usize])
            .collect();
        let child_pages = vec![0xee; PAGE as usize];
        (vec![parent, child], vec![parent_pages, child_pages])
    }

    fn byte_at(writes: &[(u64, &[u8])], addr: u64) -> Option<u8> {
        writes
            .iter()
            .find(|(a, d)| *a <= addr && addr < *a + d.len() as u64)
            .map(|(a, d)| d[(addr - a) as usize])
    }

    #[test]
    fn the_parent_prepares_and_the_child_keeps() {
        let (tasks, pages) = tree();
        let pages: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
        let plan = CowPlan::new(&tasks, &pages, &[]).unwrap();
        assert_eq!(plan.regions(0).len(), 1);
        assert!(plan.regions(0)[0].fresh);
        assert_eq!(plan.regions(1).len(), 1);
        assert!(!plan.regions(1)[0].fresh);
        // Everything happens before the fork: the take-over writes nothing there.
        let parent = plan.contents(0);
        assert!(parent.writes.is_empty());
        assert!(parent.discard.is_empty());
        assert_eq!(parent.kept, vec![(BASE, BASE + N * PAGE)]);
        let child = plan.contents(1);
        assert!(child.writes.is_empty());
        assert_eq!(child.discard, vec![(BASE + 10 * PAGE, BASE + N * PAGE)]);
        // The child's own page is written by its restore child over the inherited one.
        let own = plan.pieces(1, BASE, BASE + N * PAGE, false);
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].0, BASE + 3 * PAGE);
    }

    #[test]
    fn where_the_tool_is_in_the_way_pages_are_copied() {
        let (tasks, pages) = tree();
        let pages: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
        let plan = CowPlan::new(&tasks, &pages, &[(BASE + PAGE, BASE + 2 * PAGE)]).unwrap();
        assert!(plan.regions(0).is_empty());
        assert!(plan.regions(1).is_empty());
        let child = plan.contents(1);
        assert!(child.kept.is_empty() && child.discard.is_empty());
        for k in 0..N {
            let want = match k {
                3 => Some(0xee),
                0..=9 => Some(k as u8 + 1),
                _ => None,
            };
            assert_eq!(byte_at(&child.writes, BASE + k * PAGE), want, "page {k}");
        }
    }

    #[test]
    fn an_inherited_page_needs_the_parent() {
        let (mut tasks, pages) = tree();
        let pages: Vec<&[u8]> = pages.iter().map(|p| &p[..]).collect();
        tasks[1].ppid = 99;
        let err = CowPlan::new(&tasks, &pages, &[]).err().unwrap();
        assert!(err.to_string().contains("not in the image"), "{err}");
        tasks[1].ppid = 10;
        tasks[0].mm.pages[0].count = 2;
        let err = CowPlan::new(&tasks, &pages, &[]).err().unwrap();
        assert!(err.to_string().contains("in no ancestor"), "{err}");
    }
}
