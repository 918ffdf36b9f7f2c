//! epoll instances and their registrations.
//!
//! A registration is keyed by a file *and* a descriptor number of the process that made
//! it, so registrations are made again by the task that holds the epoll descriptor first,
//! once its own descriptors are in place. The registration outlives that descriptor: the
//! number may since have been closed (the file still open through a `dup`) or reused for
//! another file. kcmp(KCMP_EPOLL_TFD) tells which descriptor of the task now holds the
//! registered file; at restore that file is put at the registered number just long enough
//! to register it.
//!
//! An epoll instance that only a message in flight holds (SCM_RIGHTS) has no process whose
//! numbers its registrations would follow: each registered file is found among the tree's
//! descriptions (`resolve_in_flight`), and the restore root, which holds every description,
//! registers it (`finish`).

use stasis_image::{EpollTarget, FdImage, FileKind};
use stasis_sys::{own, process, procfs};

use super::{place, ChildResult, FdProbe, Kind, KindState, Reopen};
use crate::error::{ProcContext, Result, SysContext};

/// The instance is made empty; its registrations come once the task that holds it has
/// its descriptors (`register`).
pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::Epoll { .. }),
    open,
    finish,
    ..Kind::NONE
};

/// Epoll instances the root registers itself: (slot, image), those held only in flight.
#[derive(Default)]
struct HeldInFlight(Vec<(i32, FdImage)>);

fn open(f: &FdImage, at: i32, r: &Reopen, state: &mut KindState) -> ChildResult {
    let fd = own::epoll_create(libc::EPOLL_CLOEXEC).map_err(|e| format!("fd {}: {e}", f.fd))?;
    place(fd, at, f)?;
    if r.ctx.in_flight.contains(&f.desc) {
        state.of::<HeldInFlight>().0.push((at, f.clone()));
    }
    Ok(())
}

/// Registers the targets of the instances only messages in flight held, each file from
/// its description's slot. The instance is reached through a copy above every number in
/// play, so that putting a file at its registered number never covers the instance.
fn finish(r: &Reopen, state: &mut KindState) -> ChildResult {
    for (at, f) in std::mem::take(&mut state.of::<HeldInFlight>().0) {
        let FileKind::Epoll { targets } = &f.file else {
            continue;
        };
        let above = targets.iter().map(|t| t.fd + 1).fold(r.spare, i32::max);
        let err = |e: stasis_sys::SysError| format!("epoll in flight (fd {}): {e}", f.fd);
        let ep = own::dup_above(at, above).map_err(err)?;
        let mut done = Ok(());
        for t in targets {
            let Some(desc) = t.desc else {
                continue;
            };
            done = add(ep, t, Some((r.slot)(desc)));
            if done.is_err() {
                break;
            }
        }
        own::close(ep);
        done.map_err(err)?;
    }
    Ok(())
}

fn hex_after(v: &str, key: &str) -> Option<u64> {
    let rest = &v[v.find(key)? + key.len()..];
    let tok = rest.split_whitespace().next()?;
    u64::from_str_radix(tok, 16).ok()
}

/// A registration whose file no descriptor of its process holds any more: its target
/// `target` (in fdinfo order) of `pid`'s epoll `epfd`, registered as `tfd` (the
/// `toff`-th under that number).
pub struct Pending {
    pub pid: i32,
    pub epfd: i32,
    pub target: usize,
    tfd: i32,
    toff: u32,
}

/// Finds the description that holds the file of each pending registration, among `held`
/// (every descriptor of the tree, ours for files in flight: (pid, fd, description id)).
/// Returns (pid, epoll fd, target index, description).
pub fn resolve_pending(
    pending: &[Pending],
    held: &[(i32, i32, u32)],
) -> Result<Vec<(i32, i32, usize, u32)>> {
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        let mut found = None;
        for &(pid, at, desc) in held {
            let same = process::epoll_target_held_by(p.pid, p.epfd, p.tfd, p.toff, (pid, at))
                .ctx(p.pid, || {
                    format!("fd {}: find the file registered as fd {}", p.epfd, p.tfd)
                })?;
            if same {
                found = Some(desc);
                break;
            }
        }
        let desc = found.ok_or_else(|| crate::error::Error::Unsupported {
            pid: p.pid,
            object: format!("fd {} (anon_inode:[eventpoll])", p.epfd),
            detail: format!(
                "a registration of fd {}, whose file no process of the dumped tree holds any more (not supported)",
                p.tfd
            ),
        })?;
        out.push((p.pid, p.epfd, p.target, desc));
    }
    Ok(out)
}

/// Registrations of an instance in flight (ours, `p.pid` is the tool) are left for
/// `resolve_in_flight`; one whose file no descriptor of the process holds is left for
/// `resolve_pending`.
fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    if p.target != "anon_inode:[eventpoll]" {
        return Ok(None);
    }
    let in_flight = p.pid == std::process::id() as i32;
    let mut targets: Vec<EpollTarget> = Vec::new();
    let mut fds: Option<Vec<i32>> = None;
    for (k, v) in &p.info.extra {
        if k != "tfd" {
            continue;
        }
        let bad = || p.unsupported(&format!("unreadable epoll registration {v:?}"));
        let fd: i32 = v
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        let events = hex_after(v, "events:").ok_or_else(bad)? as u32;
        let data = hex_after(v, "data:").ok_or_else(bad)?;
        // Registrations under the same number (of different files) are told apart by
        // their rank; fdinfo lists them in the order kcmp counts them.
        let toff = targets.iter().filter(|t| t.fd == fd).count() as u32;
        let holds = |at: i32| {
            process::epoll_target_is(p.pid, p.fd, fd, toff, at).ctx(p.pid, || {
                format!("fd {}: find the file registered as fd {fd}", p.fd)
            })
        };
        let now_at = if in_flight || holds(fd)? {
            None
        } else {
            let list = match &fds {
                Some(l) => l,
                None => fds.insert(procfs::fds(p.pid).proc(p.pid)?),
            };
            let mut found = None;
            for &other in list.iter() {
                if other != p.fd && holds(other)? {
                    found = Some(other);
                    break;
                }
            }
            if found.is_none() {
                // Held elsewhere (another process, a message in flight) or nowhere:
                // looked for once every description of the tree is known.
                p.epoll_pending.borrow_mut().push(Pending {
                    pid: p.pid,
                    epfd: p.fd,
                    target: targets.len(),
                    tfd: fd,
                    toff,
                });
            }
            found
        };
        targets.push(EpollTarget {
            fd,
            events,
            data,
            now_at,
            desc: None,
        });
    }
    Ok(Some(FileKind::Epoll { targets }))
}

/// For the epoll instance in flight at our descriptor `epfd`: finds the description of
/// each registered file among `held`, the descriptors of the tree met so far ((pid, fd,
/// description id), ours for files in flight).
pub fn resolve_in_flight(
    owner: i32,
    epfd: i32,
    targets: &mut [EpollTarget],
    held: &[(i32, i32, u32)],
) -> Result<()> {
    let me = std::process::id() as i32;
    for i in 0..targets.len() {
        let fd = targets[i].fd;
        let toff = targets[..i].iter().filter(|t| t.fd == fd).count() as u32;
        let mut found = None;
        for &(pid, at, desc) in held {
            let same = process::epoll_target_held_by(me, epfd, fd, toff, (pid, at))
                .ctx(owner, || {
                    format!("find the file an epoll in flight registered as fd {fd}")
                })?;
            if same {
                found = Some(desc);
                break;
            }
        }
        targets[i].desc = Some(found.ok_or_else(|| crate::error::Error::Unsupported {
            pid: owner,
            object: "an epoll instance in flight (SCM_RIGHTS)".into(),
            detail: format!(
                "its registration of fd {fd} is of a file no process of the dumped tree holds (not supported)"
            ),
        })?);
    }
    Ok(())
}

/// Registers the targets of epoll descriptor `f` (already at its number) again. A target
/// whose file is now at another descriptor is put at its registered number for the call,
/// and whatever was at that number (or nothing) is put back.
pub fn register(f: &FdImage, slot: impl Fn(u32) -> i32) -> ChildResult {
    if let FileKind::Epoll { targets } = &f.file {
        for t in targets {
            // A file no descriptor of the task holds is taken from its description's slot.
            let held_at = t.now_at.or(t.desc.map(&slot));
            add(f.fd, t, held_at).map_err(|e| format!("fd {}: register fd {}: {e}", f.fd, t.fd))?;
        }
    }
    Ok(())
}

/// Registers `t` in the instance at `epfd`. When the file is at another descriptor
/// (`held_at`), it is put at the registered number for the call, and whatever was at that
/// number (or nothing) is put back.
fn add(epfd: i32, t: &EpollTarget, held_at: Option<i32>) -> stasis_sys::SysResult<()> {
    match held_at {
        None => own::epoll_add(epfd, t.fd, t.events, t.data),
        Some(at) => {
            let saved = own::save_fd(t.fd)?;
            own::dup_to(at, t.fd, true)?;
            let r = own::epoll_add(epfd, t.fd, t.events, t.data);
            own::restore_fd(t.fd, saved)?;
            r
        }
    }
}

impl super::DescTable {
    /// Finds, among every description of the tree (files in flight included, so after
    /// `socket_queues`), the file of each epoll registration that no descriptor of its
    /// process holds, and records its description in `images`.
    pub fn resolve_epolls(&self, images: &mut [stasis_image::TaskImage]) -> Result<()> {
        let held: Vec<(i32, i32, u32)> = self.seen.iter().map(|&(p, f, _, d)| (p, f, d)).collect();
        let found = resolve_pending(&self.epoll_pending.borrow(), &held)?;
        for (pid, epfd, target, desc) in found {
            let t = images
                .iter_mut()
                .find(|t| t.pid == pid)
                .and_then(|t| t.fds.iter_mut().find(|f| f.fd == epfd));
            if let Some(FdImage {
                file: FileKind::Epoll { targets },
                ..
            }) = t
            {
                if let Some(t) = targets.get_mut(target) {
                    t.desc = Some(desc);
                }
            }
        }
        Ok(())
    }
}
