//! POSIX message queues (mq_open). The link of such a descriptor is "/NAME" (with
//! " (deleted)" once unlinked) on the mqueue filesystem.
//!
//! Dump: the queue is opened again through /proc/PID/fd/N (a description of our own, which
//! can read even when the process's is write-only, and works for unlinked queues); its
//! attributes come from mq_getattr, its owner and mode from stat. The kernel has no way to
//! read a message without taking it: every message is received (highest priority first,
//! oldest first within one) and at once sent again in the same order, which gives the
//! queue back exactly as it was, before anything else of the dump happens. A queue with a
//! notification registered (mq_notify) is refused before it is touched: the first message
//! sent to the emptied queue would fire it. Processes outside the tree that use the queue
//! at the same moment could see it empty or take a message meanwhile: the tool cannot stop
//! them.
//!
//! Restore: the tool makes each queue before the tree (`prepare`): a queue that still
//! exists by name is used as it is (like a file reopened by path) if its sizes are the
//! image's, else the restore is refused; a missing one is created with its attributes,
//! owner, mode and messages. Restore children open it by name. An unlinked queue is
//! created under its name and unlinked again once every task holds it (`Prepared::finish`).
//! If the restore fails, the queues it created are unlinked again.
//!
//! A tree with an IPC namespace of its own owns every queue of it, also those no
//! descriptor holds (`dump_unheld`): the tool lists the namespace's queues, and a thread
//! of the tool that joins the namespace opens each such queue by name and reads it the same
//! way (taken and given back). Held queues are told apart by their inode, not their name:
//! a descriptor may hold an unlinked queue, or one of another namespace, under the name of
//! an unheld one, which is refused (restore makes both by name in the new namespace). The
//! unheld queues are kept in the IPC image; `prepare` creates them in the tree's new
//! namespace and closes them again (they stay, with no descriptor, as they were).

use std::collections::BTreeSet;

use stasis_image::ipc::{MqMessage, MqueueImage};
use stasis_image::{FdImage, FileKind, TaskImage};
use stasis_sys::mqueue::{self as sys, Mq};

/// The queues themselves are made before the tree (`prepare`); a descriptor opens its
/// queue by name.
pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::Mqueue(_)),
    open: |f, at, _, _| match &f.file {
        FileKind::Mqueue(q) => place(reopen(f, q, open_flags(f))?, at, f),
        _ => Err(format!("fd {}: not a message queue", f.fd)),
    },
    ..Kind::NONE
};

use super::{open_flags, place, ChildResult, FdProbe, Kind};
use crate::error::{Error, Result, SysContext};

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let t = p.target;
    let (name, unlinked) = match t.strip_suffix(" (deleted)") {
        Some(n) => (n, true),
        None => (t, false),
    };
    let plausible = p.is_file() && name.starts_with('/') && !name[1..].contains('/');
    if !plausible || !sys::is_mqueue(&format!("/proc/{}/fd/{}", p.pid, p.fd)) {
        return Ok(None);
    }
    let q = Mq::reopen(p.pid, p.fd, libc::O_RDWR | libc::O_NONBLOCK)
        .ctx(p.pid, || format!("open the message queue of fd {}", p.fd))?;
    let status = q
        .status()
        .ctx(p.pid, || format!("message queue status of fd {}", p.fd))?;
    let notify_pid = notify_pid(&status);
    if notify_pid != 0 {
        return Err(p.unsupported(&format!(
            "a message queue with a notification registered (mq_notify by pid {notify_pid}): \
             not supported"
        )));
    }
    let attr = q.attr().ctx(p.pid, || {
        format!("attributes of the message queue of fd {}", p.fd)
    })?;
    let messages = take_and_give_back(p.pid, &format!("fd {}", p.fd), &q, attr.msgsize as usize)?;
    use std::os::unix::fs::MetadataExt;
    Ok(Some(FileKind::Mqueue(MqueueImage {
        name: name.to_string(),
        unlinked,
        uid: p.meta.uid(),
        gid: p.meta.gid(),
        mode: p.meta.mode() & 0o7777,
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        messages,
    })))
}

/// The pid that registered a notification (mq_notify) from the queue's status text; 0
/// when none.
fn notify_pid(status: &str) -> i32 {
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("NOTIFY_PID:"))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// The queues of the tree's own IPC namespace (that of `root`) that no descriptor of
/// `images` holds, sorted by name (see the module comment).
pub fn dump_unheld(root: i32, images: &[TaskImage]) -> Result<Vec<MqueueImage>> {
    use std::os::unix::fs::MetadataExt;
    // A descriptor may hold a queue of another namespace (opened before the unshare) under
    // a name the tree's namespace uses too: held queues are known by their inode.
    let mut held = Held::default();
    for t in images {
        for f in &t.fds {
            let FileKind::Mqueue(q) = &f.file else {
                continue;
            };
            held.names.insert(q.name.as_str());
            match std::fs::metadata(format!("/proc/{}/fd/{}", t.pid, f.fd)) {
                Ok(m) => {
                    held.inodes.insert((m.dev(), m.ino()));
                }
                // /proc no longer shows it (a vfork child that has ended): known by name.
                Err(_) if !q.unlinked => {
                    held.names_only.insert(q.name.as_str());
                }
                Err(_) => {}
            }
        }
    }
    let mut names = sys::names_in_ipc_namespace_of(root).ctx(root, || {
        "list the POSIX message queues of the tree's IPC namespace".into()
    })?;
    names.retain(|n| !held.names_only.contains(n.as_str()));
    names.sort();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let dumped = stasis_sys::sysvipc::in_ipc_namespace_of(root, || -> Result<Vec<_>> {
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            out.extend(dump_named(root, name, &held)?);
        }
        Ok(out)
    })
    .ctx(root, || "join the tree's IPC namespace".into())??;
    for q in &dumped {
        log::info!(
            "message queue {} (no descriptor holds it): {} message(s)",
            q.name,
            q.messages.len()
        );
    }
    Ok(dumped)
}

/// The queues the tree's descriptors hold.
#[derive(Default)]
struct Held<'a> {
    /// (st_dev, st_ino) of each.
    inodes: BTreeSet<(u64, u64)>,
    /// Their names (restore makes an unlinked one under its name for a while).
    names: BTreeSet<&'a str>,
    /// Those whose inode /proc no longer shows.
    names_only: BTreeSet<&'a str>,
}

/// Queue `name` of the calling thread's IPC namespace; None if a descriptor of the tree
/// holds it or it is gone since listed.
fn dump_named(root: i32, name: &str, held: &Held) -> Result<Option<MqueueImage>> {
    let what = format!("message queue {name}");
    let q = match Mq::open(name, libc::O_RDWR | libc::O_NONBLOCK) {
        Ok(q) => q,
        Err(e) if e.errno.0 == libc::ENOENT => return Ok(None),
        Err(e) => {
            return Err(Error::Sys {
                pid: root,
                context: format!("open {what} of the tree's IPC namespace"),
                source: e,
            })
        }
    };
    let st = q.stat().ctx(root, || format!("stat {what}"))?;
    if held.inodes.contains(&(st.dev, st.ino)) {
        return Ok(None);
    }
    if held.names.contains(name) {
        return Err(Error::Unsupported {
            pid: root,
            object: format!("POSIX message queue {name}"),
            detail: "the tree's IPC namespace has a queue that no descriptor holds under the \
                     name of another queue that a descriptor holds (unlinked, or of another IPC \
                     namespace): restore makes both by name in the tree's new namespace, where \
                     they would clash"
                .into(),
        });
    }
    let status = q.status().ctx(root, || format!("status of {what}"))?;
    let notify_pid = notify_pid(&status);
    if notify_pid != 0 {
        return Err(Error::Unsupported {
            pid: root,
            object: format!("POSIX message queue {name}"),
            detail: format!(
                "a queue of the tree's IPC namespace with a notification registered \
                 (mq_notify by pid {notify_pid}): not supported"
            ),
        });
    }
    let attr = q.attr().ctx(root, || format!("attributes of {what}"))?;
    let messages = take_and_give_back(root, &what, &q, attr.msgsize as usize)?;
    Ok(Some(MqueueImage {
        name: name.to_string(),
        unlinked: false,
        uid: st.uid,
        gid: st.gid,
        mode: st.mode,
        maxmsg: attr.maxmsg,
        msgsize: attr.msgsize,
        messages,
    }))
}

/// Receives every message, then sends them all again in the same order: the queue is as it
/// was. Sending back is attempted for every message even if one fails. `what` names the
/// queue in errors.
fn take_and_give_back(pid: i32, what: &str, q: &Mq, msgsize: usize) -> Result<Vec<MqMessage>> {
    let mut messages = Vec::new();
    let mut failed = None;
    loop {
        match q.receive(msgsize) {
            Ok(Some((priority, data))) => messages.push(MqMessage { priority, data }),
            Ok(None) => break,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut lost = 0usize;
    let mut send_err = None;
    for m in &messages {
        if let Err(e) = q.send(m.priority, &m.data) {
            lost += 1;
            send_err.get_or_insert(e);
        }
    }
    if let Some(e) = send_err {
        log::error!(
            "pid {pid} {what}: {lost} message(s) could not be put back into the queue: {e}"
        );
        return Err(Error::Sys {
            pid,
            context: format!(
                "put {lost} message(s) back into the message queue of {what} (something outside the tree filled it meanwhile?)"
            ),
            source: e,
        });
    }
    if let Some(e) = failed {
        return Err(Error::Sys {
            pid,
            context: format!("read the messages of the queue of {what}"),
            source: e,
        });
    }
    Ok(messages)
}

/// Opens the queue of `f` by name in the calling restore child; returns its descriptor.
fn reopen(f: &FdImage, q: &MqueueImage, flags: i32) -> ChildResult<i32> {
    let keep = flags & (libc::O_ACCMODE | libc::O_NONBLOCK);
    Mq::open(&q.name, keep)
        .map(Mq::into_raw)
        .map_err(|e| format!("fd {}: message queue {}: {e}", f.fd, q.name))
}

/// The queues this restore created: unlinked again on drop unless the restore completed.
pub struct Prepared {
    pid: i32,
    created: Vec<String>,
    unlink_at_end: Vec<String>,
}

impl Prepared {
    /// Every task holds its queues: unlinked queues lose their names again.
    pub fn finish(mut self) -> Result<()> {
        self.created.clear();
        for name in std::mem::take(&mut self.unlink_at_end) {
            sys::unlink(&name).ctx(self.pid, || format!("unlink message queue {name} again"))?;
        }
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for name in &self.created {
            let _ = sys::unlink(name);
        }
    }
}

/// Creates queue `q` (which must not exist) with its attributes, messages, owner and mode;
/// it is unlinked again if the restore fails.
fn create_filled(pid: i32, q: &MqueueImage, done: &mut Prepared) -> Result<()> {
    let made = Mq::create(
        &q.name,
        libc::O_WRONLY | libc::O_NONBLOCK,
        0o600,
        q.maxmsg,
        q.msgsize,
    )
    .map_err(|e| {
        let reason = match e.errno.0 {
            libc::EEXIST => "the name is taken by another queue".to_string(),
            libc::EINVAL | libc::EMFILE | libc::ENOMEM | libc::ENOSPC => format!(
                "maxmsg {}, msgsize {}: larger than the limits allow \
                 (/proc/sys/fs/mqueue/*, RLIMIT_MSGQUEUE)? ({e})",
                q.maxmsg, q.msgsize
            ),
            _ => e.to_string(),
        };
        Error::Restore {
            pid,
            reason: format!("create message queue {}: {reason}", q.name),
        }
    })?;
    done.created.push(q.name.clone());
    for m in &q.messages {
        made.send(m.priority, &m.data)
            .ctx(pid, || format!("refill message queue {}", q.name))?;
    }
    made.set_owner(q.uid, q.gid, q.mode).ctx(pid, || {
        format!("owner and mode of message queue {}", q.name)
    })?;
    Ok(())
}

/// Makes every message queue the image's descriptors need, then the queues of the tree's
/// own IPC namespace that no descriptor held (`unheld`, from the IPC image; the calling
/// thread is in the tree's new namespace already). See the module comment.
pub fn prepare(pid: i32, tasks: &[TaskImage], unheld: &[MqueueImage]) -> Result<Prepared> {
    let mut done = Prepared {
        pid,
        created: Vec::new(),
        unlink_at_end: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    let queues = tasks
        .iter()
        .flat_map(|t| t.fds.iter())
        .filter_map(|f| match &f.file {
            FileKind::Mqueue(q) => Some(q),
            _ => None,
        });
    for q in queues {
        if seen.contains(&q.name.as_str()) {
            continue;
        }
        seen.push(&q.name);
        match Mq::open(&q.name, libc::O_RDONLY) {
            Ok(existing) => {
                let a = existing
                    .attr()
                    .ctx(pid, || format!("attributes of message queue {}", q.name))?;
                if q.unlinked || a.maxmsg != q.maxmsg || a.msgsize != q.msgsize {
                    return Err(Error::Restore {
                        pid,
                        reason: format!(
                            "message queue {}: the name is taken by a different queue \
                             (maxmsg {}, msgsize {}; the image's: maxmsg {}, msgsize {}{})",
                            q.name,
                            a.maxmsg,
                            a.msgsize,
                            q.maxmsg,
                            q.msgsize,
                            if q.unlinked { ", unlinked" } else { "" }
                        ),
                    });
                }
                log::info!("message queue {}: still there, used as it is", q.name);
            }
            Err(e) if e.errno.0 == libc::ENOENT => {
                create_filled(pid, q, &mut done)?;
                if q.unlinked {
                    done.unlink_at_end.push(q.name.clone());
                }
                log::info!(
                    "message queue {}: created ({} messages)",
                    q.name,
                    q.messages.len()
                );
            }
            Err(e) => {
                return Err(Error::Sys {
                    pid,
                    context: format!("look up message queue {}", q.name),
                    source: e,
                })
            }
        }
    }
    // After the held ones: a name both held and unheld (a broken image) is refused here.
    for q in unheld {
        create_filled(pid, q, &mut done)?;
        log::info!(
            "message queue {} (no descriptor): created ({} messages)",
            q.name,
            q.messages.len()
        );
    }
    Ok(done)
}
