//! System V IPC: shared memory segments, message queues and semaphore sets.
//!
//! These objects belong to the IPC namespace, not to a process, so the tool reads and
//! rebuilds them itself (in the tree's namespace); only the attachments of shm
//! segments are per process (`mem.rs` maps them with a remote `shmat`).
//!
//! Which objects a dump takes (nothing links a process to a queue or a semaphore set):
//! - shm: every segment attached in the tree's mappings, and every segment whose creator
//!   (`cpid`) or last attacher (`lpid`) is a process of the tree;
//! - msg: every queue whose last sender (`lspid`) or receiver (`lrpid`) is in the tree;
//! - sem: every set where the last operation on one of its semaphores (`GETPID`) was made
//!   by a process of the tree.
//!
//! A tree with an IPC namespace of its own (the root's is not the tool's; every process of
//! the tree must be in it) owns all of it: every object is dumped, from a thread of the
//! tool that joins the namespace, and restore makes a new namespace for the tree
//! (`enter_own_namespace`) where every id is free. Its POSIX message queues are dumped
//! by `files/mqueue.rs`: those held by descriptors with them, the others into the image's
//! `mqueues`.
//!
//! At restore each object must come back with its id: if an object with that id still
//! exists with the same key, owner, permissions and size, it is the same object and is used
//! as it is (like a file reopened by path: its contents are not rewritten); if the id is
//! free it is created with that id (`/proc/sys/kernel/*_next_id`), owner, permissions and
//! contents; if a different object holds it, the restore stops before creating anything.

use std::collections::BTreeSet;

use stasis_image::ipc::{IpcImage, IpcPerm, MsgQueue, SemSet, ShmChunk, ShmSegment, SysvMessage};
use stasis_image::{TaskImage, VmaKind};
use stasis_sys::sysvipc::{self as sys, Kind, Perm};

use crate::error::{Error, Result, SysContext};
use crate::inject::{Session, DATA_LEN};

const PAGE: usize = 4096;
/// Most shm contents `ipc.img` holds (a metadata file is at most 256 MiB).
const SHM_BYTES_MAX: usize = 192 << 20;
/// SHM_DEST in shm_perm.mode: removed, alive until the last detach.
const SHM_DEST: u32 = 0o1000;
/// SHM_LOCKED in shm_perm.mode: locked in memory (SHM_LOCK).
const SHM_LOCKED: u32 = 0o2000;

fn perm_image(id: i32, p: &Perm) -> IpcPerm {
    IpcPerm {
        id,
        key: p.key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
    }
}

fn ipc_ns(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/ipc")).ok()
}

/// The segment `shmid` as process `pid` sees it (from a thread that joins its IPC
/// namespace when it is not the tool's).
pub fn shm_stat_of(pid: i32, shmid: i32) -> stasis_sys::SysResult<sys::ShmStat> {
    if ipc_ns(pid) == ipc_ns(std::process::id() as i32) {
        sys::shm_stat(shmid)
    } else {
        sys::in_ipc_namespace_of(pid, || sys::shm_stat(shmid))?
    }
}

/// The SysV objects the tree uses (see the module comment for the rule). `images` are the
/// tree's live processes, already dumped; the tree is still frozen.
pub fn dump(images: &[TaskImage]) -> Result<IpcImage> {
    let Some(root) = images.first().map(|t| t.pid) else {
        return Ok(IpcImage::default());
    };
    let pids: BTreeSet<i32> = images.iter().map(|t| t.pid).collect();
    let attached: BTreeSet<i32> = images
        .iter()
        .flat_map(|t| t.mm.vmas.iter())
        .filter_map(|v| match v.kind {
            VmaKind::SysvShm { shmid, .. } => Some(shmid),
            _ => None,
        })
        .collect();
    let ours = ipc_ns(std::process::id() as i32);
    let theirs = ipc_ns(root);
    // A vfork child has ended by now (it is made again from its parent, in its namespace).
    if let Some(t) = images
        .iter()
        .filter(|t| !t.vfork_child)
        .find(|t| ipc_ns(t.pid) != theirs)
    {
        return Err(Error::Unsupported {
            pid: t.pid,
            object: "IPC namespace".into(),
            detail: format!(
                "the process is in another IPC namespace than the tree's root {root}; a tree \
                 spread over IPC namespaces is not supported"
            ),
        });
    }
    let out = if theirs == ours {
        tree_objects(root, &pids, &attached)?
    } else {
        // The tree has an IPC namespace of its own: all of it is the tree's, and only a
        // thread that joins it sees it.
        let mut all = sys::in_ipc_namespace_of(root, || namespace_objects(root))
            .ctx(root, || "look into the tree's IPC namespace".into())??;
        all.own_namespace = true;
        all.mqueues = crate::files::dump_unheld_mqueues(root, images)?;
        all
    };
    // The SEM_UNDO adjustments of the tree's processes: `sem_undo::dump`, next.
    let level = if out.is_empty() {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(
        level,
        "SysV IPC: {} shm segment(s), {} message queue(s), {} semaphore set(s)",
        out.shm.len(),
        out.msg.len(),
        out.sem.len()
    );
    Ok(out)
}

/// The objects of the tool's own namespace that the tree uses.
fn tree_objects(root: i32, pids: &BTreeSet<i32>, attached: &BTreeSet<i32>) -> Result<IpcImage> {
    let in_tree = |pid: Option<i64>| pid.is_some_and(|p| pids.contains(&(p as i32)));
    let mut shm_ids = attached.clone();
    for row in sys::list(Kind::Shm).ctx(root, || "list SysV shm".into())? {
        if in_tree(row.get("cpid")) || in_tree(row.get("lpid")) {
            if let Some(id) = row.get("shmid") {
                shm_ids.insert(id as i32);
            }
        }
    }
    let mut out = IpcImage::default();
    let mut budget = SHM_BYTES_MAX;
    for id in shm_ids {
        out.shm.push(dump_shm(root, id, &mut budget)?);
    }
    for row in sys::list(Kind::Msg).ctx(root, || "list SysV message queues".into())? {
        if in_tree(row.get("lspid")) || in_tree(row.get("lrpid")) {
            if let Some(id) = row.get("msqid") {
                out.msg.push(dump_msg(root, id as i32)?);
            }
        }
    }
    for row in sys::list(Kind::Sem).ctx(root, || "list SysV semaphore sets".into())? {
        let Some(id) = row.get("semid").map(|i| i as i32) else {
            continue;
        };
        if let Some(set) = dump_sem(root, id, Some(pids))? {
            out.sem.push(set);
        }
    }
    Ok(out)
}

/// Every object of the calling thread's namespace (the tree's own).
fn namespace_objects(root: i32) -> Result<IpcImage> {
    let ids = |kind: Kind, col: &str| -> Result<Vec<i32>> {
        Ok(sys::list(kind)
            .ctx(root, || format!("list SysV {}", kind.name()))?
            .iter()
            .filter_map(|r| r.get(col).map(|i| i as i32))
            .collect())
    };
    let mut out = IpcImage::default();
    let mut budget = SHM_BYTES_MAX;
    for id in ids(Kind::Shm, "shmid")? {
        out.shm.push(dump_shm(root, id, &mut budget)?);
    }
    for id in ids(Kind::Msg, "msqid")? {
        out.msg.push(dump_msg(root, id)?);
    }
    for id in ids(Kind::Sem, "semid")? {
        if let Some(set) = dump_sem(root, id, None)? {
            out.sem.push(set);
        }
    }
    Ok(out)
}

fn dump_shm(pid: i32, id: i32, budget: &mut usize) -> Result<ShmSegment> {
    let st = sys::shm_stat(id).ctx(pid, || format!("SysV shm {id}"))?;
    // Only the non-zero pages are kept: a segment is zero where it was never written.
    let chunks = sys::shm_read(id, st.size, |bytes| {
        let mut chunks: Vec<ShmChunk> = Vec::new();
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            if *budget < page.len() {
                return None;
            }
            *budget -= page.len();
            let offset = (i * PAGE) as u64;
            match chunks.last_mut() {
                Some(c) if c.offset + c.data.len() as u64 == offset => {
                    c.data.extend_from_slice(page)
                }
                _ => chunks.push(ShmChunk {
                    offset,
                    data: page.to_vec(),
                }),
            }
        }
        Some(chunks)
    })
    .ctx(pid, || format!("read the contents of SysV shm {id}"))?
    .ok_or_else(|| Error::Unsupported {
        pid,
        object: format!("SysV shm {id} ({} bytes)", st.size),
        detail: format!(
            "the tree's SysV shm segments hold more than {} MiB of data (not supported yet)",
            SHM_BYTES_MAX >> 20
        ),
    })?;
    Ok(ShmSegment {
        perm: perm_image(id, &st.perm),
        size: st.size,
        removed: st.perm.mode & SHM_DEST != 0,
        chunks,
    })
}

fn dump_msg(pid: i32, id: i32) -> Result<MsgQueue> {
    let st = sys::msg_stat(id).ctx(pid, || format!("SysV message queue {id}"))?;
    let max = st.qbytes.max(st.cbytes).max(8192) as usize;
    let mut messages = Vec::with_capacity(st.qnum as usize);
    for i in 0..st.qnum {
        match sys::msg_copy(id, i, max) {
            Ok((mtype, data)) => messages.push(SysvMessage { mtype, data }),
            Err(e) if e.errno.0 == libc::ENOSYS => {
                return Err(Error::Unsupported {
                    pid,
                    object: format!("SysV message queue {id}"),
                    detail: "this kernel cannot copy messages (MSG_COPY needs \
                             CONFIG_CHECKPOINT_RESTORE)"
                        .into(),
                })
            }
            Err(e) => {
                return Err(Error::Sys {
                    pid,
                    context: format!("read message {i} of SysV message queue {id}"),
                    source: e,
                })
            }
        }
    }
    Ok(MsgQueue {
        perm: perm_image(id, &st.perm),
        qbytes: st.qbytes,
        messages,
    })
}

/// Set `id` if one of `pids` made the last operation on one of its semaphores (every set
/// when `pids` is None).
pub(crate) fn dump_sem(pid: i32, id: i32, pids: Option<&BTreeSet<i32>>) -> Result<Option<SemSet>> {
    let st = match sys::sem_stat(id) {
        Ok(s) => s,
        // Removed since it was listed.
        Err(e) if e.errno.0 == libc::EINVAL || e.errno.0 == libc::EIDRM => return Ok(None),
        Err(e) => {
            return Err(Error::Sys {
                pid,
                context: format!("SysV semaphore set {id}"),
                source: e,
            })
        }
    };
    let mut used = pids.is_none();
    if let Some(pids) = pids {
        for n in 0..st.nsems as i32 {
            let last = sys::sem_pid(id, n).ctx(pid, || format!("SysV semaphore set {id}"))?;
            used |= pids.contains(&last);
        }
    }
    if !used {
        return Ok(None);
    }
    let values = sys::sem_values(id, st.nsems as usize)
        .ctx(pid, || format!("values of SysV semaphore set {id}"))?;
    Ok(Some(SemSet {
        perm: perm_image(id, &st.perm),
        values,
    }))
}

// ---- restore ---------------------------------------------------------------------------

/// What restore does with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The object is still there: use it as it is.
    Reuse,
    /// The id is free: create the object.
    Create,
}

/// The decisions for every object, made before anything is created.
pub struct Plan<'a> {
    img: &'a IpcImage,
    shm: Vec<Action>,
    msg: Vec<Action>,
    sem: Vec<Action>,
}

fn conflict(pid: i32, kind: Kind, want: &IpcPerm, what: String) -> Error {
    Error::Restore {
        pid,
        reason: format!(
            "SysV {} id {} (key {:#x}) cannot be restored: taken by a different object \
             ({what}); remove it (ipcrm) or restore where the id is free",
            kind.name(),
            want.id,
            want.key
        ),
    }
}

fn same_perm(want: &IpcPerm, have: &Perm) -> Option<String> {
    if want.key != have.key {
        return Some(format!("key {:#x}", have.key));
    }
    if (want.uid, want.gid) != (have.uid, have.gid) {
        return Some(format!("owner {}:{}", have.uid, have.gid));
    }
    if want.mode & 0o777 != have.mode & 0o777 {
        return Some(format!("mode {:o}", have.mode & 0o777));
    }
    None
}

/// Is the id free? `Ok(Some(stat))` when an object holds it.
fn lookup<T>(pid: i32, kind: Kind, id: i32, r: stasis_sys::SysResult<T>) -> Result<Option<T>> {
    match r {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.errno.0 == libc::EINVAL || e.errno.0 == libc::EIDRM => Ok(None),
        Err(e) => Err(Error::Sys {
            pid,
            context: format!("look up SysV {} id {id}", kind.name()),
            source: e,
        }),
    }
}

/// An object to create needs its key free too.
fn key_free(pid: i32, kind: Kind, want: &IpcPerm) -> Result<Action> {
    if want.key == libc::IPC_PRIVATE {
        return Ok(Action::Create);
    }
    match sys::find_key(kind, want.key).ctx(pid, || format!("look up SysV {} key", kind.name()))? {
        None => Ok(Action::Create),
        Some(other) => Err(conflict(
            pid,
            kind,
            want,
            format!("its key is taken by id {other}"),
        )),
    }
}

/// When the tree had an IPC namespace of its own, the calling thread (the tool's, which
/// creates the objects and then the tree's root) moves to a new, empty one: the objects
/// are created in it with their ids (the next-id files are per namespace), and every
/// process the thread creates from now on is in it. Before `check`.
pub fn enter_own_namespace(pid: i32, img: &IpcImage) -> Result<()> {
    if img.own_namespace {
        stasis_sys::own::unshare(libc::CLONE_NEWIPC)
            .ctx(pid, || "a new IPC namespace for the tree".into())?;
        log::info!("the tree gets an IPC namespace of its own");
    }
    Ok(())
}

/// Decides, for every object of the image, whether it is reused or created; refuses ids
/// and keys held by other objects. Creates nothing.
pub fn check(pid: i32, img: &IpcImage) -> Result<Plan<'_>> {
    let mut plan = Plan {
        img,
        shm: Vec::new(),
        msg: Vec::new(),
        sem: Vec::new(),
    };
    for s in &img.shm {
        let id = s.perm.id;
        let action = match lookup(pid, Kind::Shm, id, sys::shm_stat(id))? {
            None => key_free(pid, Kind::Shm, &s.perm)?,
            Some(st) => {
                let differs = same_perm(&s.perm, &st.perm)
                    .or_else(|| (st.size != s.size).then(|| format!("size {}", st.size)))
                    .or_else(|| {
                        (s.removed != (st.perm.mode & SHM_DEST != 0))
                            .then(|| "removed state differs".to_string())
                    });
                if let Some(what) = differs {
                    return Err(conflict(pid, Kind::Shm, &s.perm, what));
                }
                Action::Reuse
            }
        };
        plan.shm.push(action);
    }
    for q in &img.msg {
        let id = q.perm.id;
        let action = match lookup(pid, Kind::Msg, id, sys::msg_stat(id))? {
            None => key_free(pid, Kind::Msg, &q.perm)?,
            Some(st) => {
                if let Some(what) = same_perm(&q.perm, &st.perm) {
                    return Err(conflict(pid, Kind::Msg, &q.perm, what));
                }
                Action::Reuse
            }
        };
        plan.msg.push(action);
    }
    for m in &img.sem {
        let id = m.perm.id;
        let action = match lookup(pid, Kind::Sem, id, sys::sem_stat(id))? {
            None => key_free(pid, Kind::Sem, &m.perm)?,
            Some(st) => {
                let differs = same_perm(&m.perm, &st.perm).or_else(|| {
                    (st.nsems != m.values.len() as u64).then(|| format!("{} semaphores", st.nsems))
                });
                if let Some(what) = differs {
                    return Err(conflict(pid, Kind::Sem, &m.perm, what));
                }
                Action::Reuse
            }
        };
        plan.sem.push(action);
    }
    Ok(plan)
}

/// The objects this restore created; removed again on drop unless the restore completed
/// (`finish`), so that a failed restore leaves nothing behind.
pub struct Created {
    pid: i32,
    objects: Vec<(Kind, i32)>,
    /// Indices in the image of the objects created (for `touch`).
    made_shm: Vec<usize>,
    made_msg: Vec<usize>,
    made_sem: Vec<usize>,
    /// Segments that were removed (IPC_RMID) at dump: removed again once attached.
    remove_at_end: Vec<i32>,
}

impl Created {
    pub fn none(pid: i32) -> Self {
        Self {
            pid,
            objects: Vec::new(),
            made_shm: Vec::new(),
            made_msg: Vec::new(),
            made_sem: Vec::new(),
            remove_at_end: Vec::new(),
        }
    }

    /// Run in the restored root task (remote calls): the last operation on each object
    /// this restore created is made from inside the tree, so the kernel records one of the
    /// tree's pids as its last user (lpid, lspid/lrpid, sempid) and a later dump of the
    /// tree finds the object again (a creator pid cannot be set).
    pub fn touch(&self, s: &mut Session, img: &IpcImage) -> Result<()> {
        for &i in &self.made_shm {
            let id = img.shm[i].perm.id as u64;
            let at = s.call(
                "shmat",
                libc::SYS_shmat,
                [id, 0, libc::SHM_RDONLY as u64, 0, 0, 0],
            )?;
            s.call("shmdt", libc::SYS_shmdt, [at, 0, 0, 0, 0, 0])?;
        }
        for &i in &self.made_msg {
            let q = &img.msg[i];
            let id = q.perm.id as u64;
            let nowait = libc::IPC_NOWAIT as u64;
            // The last message is sent from here (create sent the others); an empty queue
            // gets one message sent and taken back.
            let (mtype, data, take_back) = match q.messages.last() {
                Some(m) => (m.mtype, m.data.as_slice(), false),
                None => (1, &[0u8][..], true),
            };
            let mut buf = mtype.to_ne_bytes().to_vec();
            buf.extend_from_slice(data);
            if buf.len() > DATA_LEN {
                continue; // sent by create
            }
            let addr = s.put(0, &buf)?;
            s.call(
                "msgsnd",
                libc::SYS_msgsnd,
                [id, addr, data.len() as u64, nowait, 0, 0],
            )?;
            if take_back {
                s.call(
                    "msgrcv",
                    libc::SYS_msgrcv,
                    [id, addr, data.len() as u64, mtype as u64, nowait, 0],
                )?;
            }
        }
        for &i in &self.made_sem {
            let set = &img.sem[i];
            // SETALL clears every undo adjustment of the set: the processes make theirs
            // after this (`sem_undo::restore`).
            let vals: Vec<u8> = crate::sem_undo::start_values(s.pid(), img, set)?
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect();
            let addr = s.put(0, &vals)?;
            s.call(
                "semctl(SETALL)",
                libc::SYS_semctl,
                [set.perm.id as u64, 0, libc::SETALL as u64, addr, 0, 0],
            )?;
        }
        crate::sem_undo::touch_reused(s, img, &self.made_sem)?;
        Ok(())
    }

    /// Every task is attached: removed segments get IPC_RMID again, and the created
    /// objects stay.
    pub fn finish(mut self) -> Result<()> {
        self.objects.clear();
        for id in std::mem::take(&mut self.remove_at_end) {
            sys::shm_remove(id).ctx(self.pid, || format!("remove SysV shm {id} again"))?;
        }
        Ok(())
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for &(kind, id) in self.objects.iter().rev() {
            let _ = match kind {
                Kind::Shm => sys::shm_remove(id),
                Kind::Msg => sys::msg_remove(id),
                Kind::Sem => sys::sem_remove(id),
            };
        }
    }
}

/// Creates object `kind` with exactly `id`: sets the namespace's next id, calls `make`,
/// and checks the id the kernel gave.
fn create_with_id(
    pid: i32,
    created: &mut Created,
    kind: Kind,
    id: i32,
    make: impl FnOnce() -> stasis_sys::SysResult<i32>,
) -> Result<()> {
    sys::set_next_id(kind, id).ctx(pid, || {
        format!("choose the id of SysV {} {id}", kind.name())
    })?;
    let got = match make() {
        Ok(got) => got,
        Err(e) => {
            // The kernel keeps next_id until an object is created (and refuses -1 here):
            // a throwaway object uses it up, so that no later object gets it by surprise.
            let throwaway = match kind {
                Kind::Shm => sys::shm_create(libc::IPC_PRIVATE, 1, 0o600),
                Kind::Msg => sys::msg_create(libc::IPC_PRIVATE, 0o600),
                Kind::Sem => sys::sem_create(libc::IPC_PRIVATE, 1, 0o600),
            };
            if let Ok(t) = throwaway {
                let _ = match kind {
                    Kind::Shm => sys::shm_remove(t),
                    Kind::Msg => sys::msg_remove(t),
                    Kind::Sem => sys::sem_remove(t),
                };
            }
            return Err(Error::Sys {
                pid,
                context: format!("create SysV {} {id}", kind.name()),
                source: e,
            });
        }
    };
    created.objects.push((kind, got));
    if got != id {
        return Err(Error::Restore {
            pid,
            reason: format!(
                "SysV {} {id}: the kernel gave id {got} (another object took the id meanwhile?)",
                kind.name()
            ),
        });
    }
    Ok(())
}

/// Creates the objects the plan says, with their contents. On error, what was created so
/// far is removed (the returned guard, or its drop on the error path).
pub fn create(pid: i32, plan: &Plan) -> Result<Created> {
    let mut created = Created::none(pid);
    let any = plan
        .shm
        .iter()
        .chain(&plan.msg)
        .chain(&plan.sem)
        .any(|&a| a == Action::Create);
    let _lock = if any {
        Some(sys::NextIdLock::take().ctx(pid, || "lock the SysV next ids".into())?)
    } else {
        None
    };
    for (i, (s, &action)) in plan.img.shm.iter().zip(&plan.shm).enumerate() {
        let id = s.perm.id;
        if action == Action::Create {
            created.made_shm.push(i);
            create_with_id(pid, &mut created, Kind::Shm, id, || {
                sys::shm_create(s.perm.key, s.size, s.perm.mode)
            })?;
            let chunks: Vec<(u64, &[u8])> = s
                .chunks
                .iter()
                .map(|c| (c.offset, c.data.as_slice()))
                .collect();
            // The segment's pages are whole pages; the image's chunks may end past size.
            sys::shm_write(id, s.size.div_ceil(PAGE as u64) * PAGE as u64, &chunks)
                .ctx(pid, || format!("fill SysV shm {id}"))?;
            sys::shm_set(id, s.perm.uid, s.perm.gid, s.perm.mode)
                .ctx(pid, || format!("owner and mode of SysV shm {id}"))?;
            if s.perm.mode & SHM_LOCKED != 0 {
                sys::shm_lock(id).ctx(pid, || format!("lock SysV shm {id} in memory"))?;
            }
            if s.removed {
                created.remove_at_end.push(id);
            }
            log::info!("SysV shm {id}: created ({} bytes)", s.size);
        } else {
            log::info!("SysV shm {id}: still there, used as it is");
        }
    }
    for (i, (q, &action)) in plan.img.msg.iter().zip(&plan.msg).enumerate() {
        let id = q.perm.id;
        if action == Action::Create {
            created.made_msg.push(i);
            create_with_id(pid, &mut created, Kind::Msg, id, || {
                sys::msg_create(q.perm.key, q.perm.mode)
            })?;
            sys::msg_set(id, q.perm.uid, q.perm.gid, q.perm.mode, q.qbytes).ctx(pid, || {
                format!("owner, mode and size of SysV message queue {id}")
            })?;
            // The last one is sent by the restored root (`touch`) unless it is too large
            // for its data area.
            let last_from_root = q
                .messages
                .last()
                .is_some_and(|m| m.data.len() + 8 <= DATA_LEN);
            let by_tool = q.messages.len() - usize::from(last_from_root);
            for m in &q.messages[..by_tool] {
                sys::msg_send(id, m.mtype, &m.data)
                    .ctx(pid, || format!("refill SysV message queue {id}"))?;
            }
            log::info!(
                "SysV message queue {id}: created ({} messages)",
                q.messages.len()
            );
        } else {
            log::info!("SysV message queue {id}: still there, used as it is");
        }
    }
    for (i, (set, &action)) in plan.img.sem.iter().zip(&plan.sem).enumerate() {
        let id = set.perm.id;
        if action == Action::Create {
            created.made_sem.push(i);
            create_with_id(pid, &mut created, Kind::Sem, id, || {
                sys::sem_create(set.perm.key, set.values.len(), set.perm.mode)
            })?;
            // Plus the processes' undo adjustments, which their own semop takes back.
            let values = crate::sem_undo::start_values(pid, plan.img, set)?;
            sys::sem_set_values(id, &values)
                .ctx(pid, || format!("values of SysV semaphore set {id}"))?;
            sys::sem_set(id, set.perm.uid, set.perm.gid, set.perm.mode)
                .ctx(pid, || format!("owner and mode of SysV semaphore set {id}"))?;
            log::info!("SysV semaphore set {id}: created");
        } else {
            log::info!("SysV semaphore set {id}: still there, used as it is");
        }
    }
    Ok(created)
}
