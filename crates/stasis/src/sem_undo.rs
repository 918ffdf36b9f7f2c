//! System V semaphore undo lists (SEM_UNDO): the adjustment (`semadj`) the kernel applies
//! to each semaphore when a process exits.
//!
//! The kernel does not expose the adjustments, but it applies them when a process whose
//! list is not shared calls unshare(CLONE_SYSVSEM) (as exit does, clamping each value to
//! [0, SEMVMX]). So at dump, one process at a time, in the frozen tree: read the values of
//! every set, make the process unshare remotely, read them again: the difference is its
//! adjustment. It then gets the adjustment straight back with a remote
//! semop(-adj, SEM_UNDO): the values and its undo entries are as before, whether the dump
//! goes on, fails, or leaves the tree running.
//!
//! A value clamped at exit hides part of the adjustment: before unsharing, the process
//! raises (semop without SEM_UNDO) each semaphore of the tree's sets below `MEASURE_AT`
//! to that value, and lowers it again afterwards, so any adjustment within ±16383 is seen
//! whole. A value that ends at 0 or SEMVMX anyway is ambiguous: put back as well as
//! possible (the value exactly, the adjustment as seen) and refused. While a process is
//! measured, its semaphores hold other values for a few system calls: a process outside
//! the tree operating on them just then could see them, so sets with waiters outside the
//! tree are refused before anything is touched (frozen tasks of the tree are not
//! waiting), and values that differ after the measurement are reported. Applying a
//! nonzero adjustment makes the process the semaphore's last user (GETPID): a change on
//! a semaphore whose last user is another process is not this process's; a set of the
//! namespace that is not the tree's joins the image when the process has adjustments on
//! it (it is not raised: a clamp there is refused). Side effect:
//! GETPID of the tree's semaphores names the measured process afterwards (its raise).
//!
//! A vfork child is not measured: it has ended by then (dumped, then killed).
//!
//! A process with threads has one list for all of them (CLONE_SYSVSEM): unsharing would
//! split it for good. The kernel applies it when the last thread exits, so a dump that
//! kills the tree measures it by the process's death ([`measure_by_death`]), as its very
//! last step (everything else collected and written; then the IPC file and the
//! manifest): one process at a time, the tool reads the values, raises the tree's
//! semaphores below `MEASURE_AT` itself, kills the process and reaps all its threads
//! (`Frozen::kill_and_wait`), reads the values again (difference = adjustment) and lowers
//! what it raised; the values are then the first ones plus the adjustments, as the exit
//! left them. A clamp or another process's operation is only seen once the process is
//! dead: the dump fails and the whole tree is killed (`dump::dump`). Side effect: `GETPID`
//! of a raised semaphore with no adjustment names the tool, so a restore that reuses a set
//! makes a value-neutral last operation on it from the tree (`touch_reused`) for the next
//! dump to find it. With --leave-running/--leave-stopped such a process is refused before
//! anything is touched when the tree uses semaphore sets.
//!
//! Not supported (refused when the tree uses semaphore sets, as before): a list shared
//! with another process, a CLONE_VM child with a list (single-threaded).
//!
//! At restore, a created set starts at its dumped values plus every adjustment on it
//! (`start_values`); each restored process then makes semop(-adj, SEM_UNDO) (`restore`),
//! which gives it its adjustment and brings the value to the dumped one; its other threads
//! are made afterwards with CLONE_SYSVSEM (`task::create_thread`), so they share that list. A set still
//! there (reused) is at its dumped values plus the adjustments when the dump killed the
//! tree (exit applied them): the same operations bring it back.

use std::collections::BTreeSet;

use stasis_image::ipc::{IpcImage, SemSet, SemUndo};
use stasis_image::TaskImage;
use stasis_sys::sysvipc::{self as sys, Kind, SEMVMX};

use crate::dump::DumpSession;
use crate::error::{Error, Result, SysContext};
use crate::freeze::Frozen;
use crate::inject::Session;

/// Semaphores are raised to this value while measured (see the module comment).
const MEASURE_AT: u16 = 16384;
const SEM_UNDO: u64 = 0x1000;
const IPC_NOWAIT: u64 = libc::IPC_NOWAIT as u64;

/// One set as read by the tool: values and, per semaphore, the last process to operate.
#[derive(Debug, Clone)]
struct SetState {
    id: i32,
    values: Vec<u16>,
    pids: Vec<i32>,
}

/// Every set of the calling thread's IPC namespace.
/// Raises every semaphore of the tree's sets below `MEASURE_AT` to it with `op(set, num,
/// by)`, which says whether it did, so that the kernel's clamping at 0 cannot hide an
/// adjustment. Returns raised[set][num], in the order of `before`.
fn raise(
    before: &[SetState],
    tree_sets: &BTreeSet<i32>,
    mut op: impl FnMut(i32, usize, u16) -> Result<bool>,
) -> Result<Vec<Vec<u16>>> {
    let mut raised: Vec<Vec<u16>> = before.iter().map(|b| vec![0; b.values.len()]).collect();
    for (b, r) in before.iter().zip(raised.iter_mut()) {
        if !tree_sets.contains(&b.id) {
            continue;
        }
        for (n, &v) in b.values.iter().enumerate() {
            if v < MEASURE_AT && op(b.id, n, MEASURE_AT - v)? {
                r[n] = MEASURE_AT - v;
            }
        }
    }
    Ok(raised)
}

/// The sets read, or none when reading them failed, which goes to `problems`.
fn read_or_note<'a>(
    read: &'a Result<Vec<SetState>>,
    when: &str,
    problems: &mut Vec<String>,
) -> &'a [SetState] {
    match read {
        Ok(sets) => sets,
        Err(e) => {
            problems.push(format!("reading the values {when}: {e}"));
            &[]
        }
    }
}

/// The set of `after` that is `b` still (same id, same size); a set that was raised
/// (`raised`) and is gone or replaced is a problem.
fn same_set<'a>(
    b: &SetState,
    raised: &[u16],
    after: &'a [SetState],
    problems: &mut Vec<String>,
) -> Option<&'a SetState> {
    let a = after
        .iter()
        .find(|a| a.id == b.id && a.values.len() == b.values.len());
    if a.is_none() && raised.iter().any(|&by| by > 0) {
        problems.push(format!("set {} was removed or replaced meanwhile", b.id));
    }
    a
}

/// The adjustment of `pid` on semaphore `n`, from its value before its list was applied
/// (plus `raised`) and after; None when the process is not the semaphore's last user,
/// so had none (applying a nonzero adjustment makes it the last user; a raise by the
/// process itself too). What makes the figure unsure goes to `problems`: another process
/// that moved a value of the tree's set meanwhile, or a value at 0 or SEMVMX after the
/// undo, where the kernel may have clamped it.
fn seen_adjustment(
    pid: i32,
    (b, a): (&SetState, &SetState),
    n: usize,
    raised: u16,
    tree_set: bool,
    problems: &mut Vec<String>,
) -> Option<i32> {
    let start = i32::from(b.values[n]) + i32::from(raised);
    let end = i32::from(a.values[n]);
    let d = end - start;
    if a.pids[n] != pid {
        if d != 0 && tree_set {
            problems.push(format!(
                "semaphore {n} of set {}: process {} operated on it meanwhile",
                b.id, a.pids[n]
            ));
        }
        return None;
    }
    if end == 0 || end == i32::from(SEMVMX) {
        problems.push(format!(
            "semaphore {n} of set {}: its value {end} after the undo may be clamped, so the \
             adjustment ({d}, or more in size) cannot be told",
            b.id
        ));
    }
    Some(d)
}

fn snapshot(pid: i32) -> Result<Vec<SetState>> {
    let mut out = Vec::new();
    for row in sys::list(Kind::Sem).ctx(pid, || "list SysV semaphore sets".into())? {
        let Some(id) = row.get("semid").map(|i| i as i32) else {
            continue;
        };
        let gone = |e: &stasis_sys::SysError| e.errno.0 == libc::EINVAL || e.errno.0 == libc::EIDRM;
        let st = match sys::sem_stat(id) {
            Ok(st) => st,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e).ctx(pid, || format!("SysV semaphore set {id}")),
        };
        let values = match sys::sem_values(id, st.nsems as usize) {
            Ok(v) => v,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e).ctx(pid, || format!("values of SysV semaphore set {id}")),
        };
        let mut pids = Vec::with_capacity(values.len());
        for n in 0..values.len() as i32 {
            pids.push(sys::sem_pid(id, n).unwrap_or(0));
        }
        out.push(SetState { id, values, pids });
    }
    Ok(out)
}

/// Runs `f` where the tree's sets are seen: the tool's thread, or one that joined the
/// tree's own IPC namespace.
fn in_tree_ns<T: Send>(root: i32, own: bool, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if own {
        sys::in_ipc_namespace_of(root, f)
            .ctx(root, || "look into the tree's IPC namespace".into())?
    } else {
        f()
    }
}

fn refuse(pid: i32, detail: String) -> Error {
    Error::Unsupported {
        pid,
        object: "System V semaphore undo list".into(),
        detail,
    }
}

/// The threaded processes with an undo list, whose adjustments [`measure_by_death`]
/// measures as the last step of a dump that kills the tree.
#[derive(Debug, Default)]
#[must_use]
pub struct ByDeath {
    pids: Vec<i32>,
}

/// Measures the undo adjustments of the tree's single-threaded processes (frozen; `images`
/// are dumped) and stores them in `out`; sets a process has adjustments on join the image.
/// Threaded processes with a list are left to [`measure_by_death`] when the dump kills the
/// tree (`tree_dies`), and refused otherwise when the tree uses semaphore sets.
pub fn dump(
    out: &mut IpcImage,
    images: &[TaskImage],
    frozen: &[Frozen],
    tree_dies: bool,
) -> Result<ByDeath> {
    let Some(root) = images.first().map(|t| t.pid) else {
        return Ok(ByDeath::default());
    };
    let own = out.own_namespace;
    if in_tree_ns(root, own, || snapshot(root))?.is_empty() {
        return Ok(ByDeath::default());
    }
    // A vfork child has ended by now (dumped, then killed).
    let live: Vec<&TaskImage> = images.iter().filter(|t| !t.vfork_child).collect();
    let pids: Vec<i32> = live.iter().map(|t| t.pid).collect();
    let with_list =
        sys::pids_with_sem_undo(&pids).ctx(root, || "compare semaphore undo lists".into())?;
    if with_list.is_empty() {
        return Ok(ByDeath::default());
    }
    // (image, frozen process) of the single-threaded processes with a list; the pids of
    // the threaded ones.
    let mut single: Vec<(&TaskImage, &Frozen)> = Vec::new();
    let mut threaded: Vec<i32> = Vec::new();
    for t in live.iter().filter(|t| with_list.contains(&t.pid)) {
        let f = frozen
            .iter()
            .find(|f| f.pid == t.pid)
            .ok_or_else(|| Error::BadTarget {
                pid: t.pid,
                reason: "a dumped process is not among the frozen ones".into(),
            })?;
        if f.threads.len() > 1 {
            threaded.push(t.pid);
        } else {
            single.push((t, f));
        }
    }
    // Everything that would refuse, before anything is touched.
    if !tree_dies && !out.sem.is_empty() {
        if let Some(&pid) = threaded.first() {
            return Err(refuse_threads(pid, out));
        }
    }
    let by_death = ByDeath {
        pids: if tree_dies {
            threaded.clone()
        } else {
            Vec::new()
        },
    };
    let checked = single.iter().map(|&(t, _)| t).chain(
        live.iter()
            .copied()
            .filter(|t| by_death.pids.contains(&t.pid)),
    );
    for t in checked {
        let pid = t.pid;
        // Measured by a remote unshare, whose code would run in the parent's memory too.
        if t.shared_with_parent.memory && !by_death.pids.contains(&pid) {
            return Err(refuse(
                pid,
                "a child sharing its parent's memory (CLONE_VM) with an undo list (made a \
                 semop with SEM_UNDO): not supported"
                    .into(),
            ));
        }
        let mut others: Vec<i32> = with_list.iter().copied().filter(|&p| p != pid).collect();
        // A list shared with a process outside the tree goes through the root's parent.
        if pid == root {
            others.push(t.ppid);
        }
        for other in others {
            if other > 0 && sys::same_sem_undo(pid, other).unwrap_or(false) {
                return Err(refuse(
                    pid,
                    format!(
                        "its undo list is shared with process {other} (CLONE_SYSVSEM): the \
                         adjustments cannot be measured without splitting it"
                    ),
                ));
            }
        }
    }
    if single.is_empty() && by_death.pids.is_empty() {
        return Ok(by_death);
    }
    let tree_sets: BTreeSet<i32> = out.sem.iter().map(|s| s.perm.id).collect();
    {
        let sets: Vec<SemSet> = out.sem.clone();
        in_tree_ns(root, own, || {
            for set in &sets {
                for n in 0..set.values.len() as i32 {
                    let w = sys::sem_waiters(set.perm.id, n).ctx(root, || {
                        format!("waiters of SysV semaphore set {}", set.perm.id)
                    })?;
                    if w > 0 {
                        return Err(refuse(
                            root,
                            format!(
                                "semaphore {n} of set {} has {w} waiting process(es) outside \
                                 the tree, which could take a value while the adjustments \
                                 are measured",
                                set.perm.id
                            ),
                        ));
                    }
                }
            }
            Ok(())
        })?;
    }
    for &(t, f) in &single {
        let pid = t.pid;
        let found = measure(root, own, t, f, &tree_sets)?;
        for u in &found {
            log::info!(
                "pid {pid}: SysV semaphore set {} undo adjustments {:?}",
                u.semid,
                u.adj
            );
        }
        out.sem_undo.extend(found);
    }
    // Sets the tree has adjustments on are the tree's, whoever used them last.
    let missing: BTreeSet<i32> = out
        .sem_undo
        .iter()
        .map(|u| u.semid)
        .filter(|id| !tree_sets.contains(id))
        .collect();
    for id in missing {
        let set = in_tree_ns(root, own, || crate::ipc::dump_sem(root, id, None))?;
        match set {
            Some(set) => out.sem.push(set),
            None => {
                return Err(refuse(
                    root,
                    format!("semaphore set {id} was removed while the dump read it"),
                ))
            }
        }
    }
    // The sets joined: a threaded process (not measured) is refused after all.
    if !tree_dies && !out.sem.is_empty() {
        if let Some(&pid) = threaded.first() {
            return Err(refuse_threads(pid, out));
        }
    }
    Ok(by_death)
}

fn refuse_threads(pid: i32, out: &IpcImage) -> Error {
    refuse(
        pid,
        format!(
            "the tree uses semaphore set(s) {:?} and this process has threads, which share \
             one undo list (CLONE_SYSVSEM): measuring its adjustments would split the list \
             for good, so threaded processes with semaphore sets are not supported when the \
             tree is left running or stopped (a dump that kills the tree measures them)",
            out.sem.iter().map(|s| s.perm.id).collect::<Vec<_>>()
        ),
    )
}

/// Measures the adjustments of the threaded processes `by` names, one after the other, by
/// their death (see the module comment), and stores them in `out`; sets one has
/// adjustments on join the image. The last step of a dump that kills the tree: the
/// processes are dead afterwards, whatever the result.
pub fn measure_by_death(
    out: &mut IpcImage,
    images: &[TaskImage],
    frozen: &mut [Frozen],
    by: ByDeath,
) -> Result<()> {
    let (Some(root), false) = (images.first().map(|t| t.pid), by.pids.is_empty()) else {
        return Ok(());
    };
    let tree_sets: BTreeSet<i32> = out.sem.iter().map(|s| s.perm.id).collect();
    // All on one thread that joined the tree's namespace: the root may be among the dead.
    let (undo, joined) = in_tree_ns(root, out.own_namespace, || {
        let mut undo = Vec::new();
        let mut joined: Vec<SemSet> = Vec::new();
        for &pid in &by.pids {
            let f = frozen
                .iter_mut()
                .find(|f| f.pid == pid)
                .ok_or_else(|| Error::BadTarget {
                    pid,
                    reason: "a dumped process is not among the frozen ones".into(),
                })?;
            let (found, sets) = measure_death(f, &tree_sets)?;
            for u in &found {
                log::info!(
                    "pid {pid}: SysV semaphore set {} undo adjustments {:?} (measured by \
                     its death)",
                    u.semid,
                    u.adj
                );
            }
            undo.extend(found);
            for set in sets {
                if !joined.iter().any(|j| j.perm.id == set.perm.id) {
                    joined.push(set);
                }
            }
        }
        Ok((undo, joined))
    })?;
    out.sem_undo.extend(undo);
    out.sem.extend(joined);
    Ok(())
}

/// Kills the threaded process of `f` and measures its adjustments by the values its death
/// changed. Returns them with the sets not the tree's it had adjustments on (as they were
/// before). Runs in the tree's IPC namespace.
fn measure_death(f: &mut Frozen, tree_sets: &BTreeSet<i32>) -> Result<(Vec<SemUndo>, Vec<SemSet>)> {
    let pid = f.pid;
    let before = snapshot(pid)?;
    // The sets not the tree's as they are now: one joins the image if the process has
    // adjustments on it.
    let mut outside = Vec::new();
    for b in before.iter().filter(|b| !tree_sets.contains(&b.id)) {
        if let Some(mut set) = crate::ipc::dump_sem(pid, b.id, None)? {
            if set.values.len() == b.values.len() {
                set.values.clone_from(&b.values);
            }
            outside.push(set);
        }
    }
    // How much the tool added before the death (see the module comment).
    let raised = raise(&before, tree_sets, |id, n, by| {
        Ok(sys::sem_op(id, n as u16, by as i16, IPC_NOWAIT as i16).is_ok())
    })?;
    let killed = f.kill_and_wait();
    let after = snapshot(pid);
    // Put back what can be, whatever happened.
    let mut problems = Vec::new();
    if let Err(e) = &killed {
        problems.push(format!("killing it: {e}"));
    }
    let after = read_or_note(&after, "after its death", &mut problems);
    let mut undo = Vec::new();
    let mut sets = Vec::new();
    for (b, r) in before.iter().zip(&raised) {
        let Some(a) = same_set(b, r, after, &mut problems) else {
            continue;
        };
        let tree_set = tree_sets.contains(&b.id);
        let mut adj = vec![0i16; b.values.len()];
        for n in 0..b.values.len() {
            if let Some(d) = seen_adjustment(pid, (b, a), n, r[n], tree_set, &mut problems) {
                adj[n] = d as i16;
            }
        }
        for (n, &by) in r.iter().enumerate() {
            if by == 0 {
                continue;
            }
            // Below the raise, the value would have been clamped at 0 by the exit.
            let down = by.min(a.values[n]);
            if down < by {
                problems.push(format!(
                    "semaphore {n} of set {}: its value {} plus the adjustment {} is below 0 \
                     (the exit clamps it)",
                    b.id, b.values[n], adj[n]
                ));
            }
            if let Err(e) = sys::sem_op(b.id, n as u16, -(down as i16), IPC_NOWAIT as i16) {
                problems.push(format!(
                    "semaphore {n} of set {}: lowering it back by {down} failed: {e}",
                    b.id
                ));
            }
        }
        if adj.iter().any(|&d| d != 0) {
            if !tree_set {
                sets.extend(outside.iter().find(|s| s.perm.id == b.id).cloned());
            }
            undo.push(SemUndo {
                pid,
                semid: b.id,
                adj,
            });
        }
    }
    // The tree's sets and those with adjustments now hold their values plus the
    // adjustments, as the exit left them.
    let now = snapshot(pid)?;
    let touched = |id: i32| tree_sets.contains(&id) || undo.iter().any(|u| u.semid == id);
    for b in before.iter().filter(|b| touched(b.id)) {
        let Some(n) = now.iter().find(|n| n.id == b.id) else {
            continue;
        };
        let adj = undo.iter().find(|u| u.semid == b.id).map(|u| &u.adj);
        let expected: Vec<i32> = b
            .values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let d = adj.and_then(|a| a.get(i)).map_or(0, |&d| i32::from(d));
                (i32::from(v) + d).clamp(0, i32::from(SEMVMX))
            })
            .collect();
        let got: Vec<i32> = n.values.iter().map(|&v| i32::from(v)).collect();
        if got != expected {
            problems.push(format!(
                "set {} holds {got:?} after the measurement, {expected:?} expected (another \
                 process used it meanwhile?)",
                b.id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(refuse(
            pid,
            format!(
                "measuring the SEM_UNDO adjustments of this threaded process by its death: {}",
                problems.join("; ")
            ),
        ));
    }
    Ok((undo, sets))
}

/// A semop of one operation made by the process of `s`; the raw result.
fn remote_semop(s: &mut Session, id: i32, num: usize, op: i32, flags: u64) -> Result<i64> {
    let mut buf = Vec::with_capacity(6);
    buf.extend_from_slice(&(num as u16).to_ne_bytes());
    buf.extend_from_slice(&(op as i16).to_ne_bytes());
    buf.extend_from_slice(&(flags as i16).to_ne_bytes());
    let addr = s.put(0, &buf)?;
    s.call_raw(libc::SYS_semop, [id as u64, addr, 1, 0, 0, 0])
}

/// One process's adjustments (see the module comment), put back before returning.
fn measure(
    root: i32,
    own: bool,
    t: &TaskImage,
    f: &Frozen,
    tree_sets: &BTreeSet<i32>,
) -> Result<Vec<SemUndo>> {
    let pid = t.pid;
    let before = in_tree_ns(root, own, || snapshot(pid))?;
    let mut session = DumpSession::open(pid, f.leader(), &t.mm.vmas)?;
    let s = session.session();
    // How much the process added before unsharing.
    let raised = raise(&before, tree_sets, |id, n, by| {
        Ok(remote_semop(s, id, n, i32::from(by), IPC_NOWAIT)? == 0)
    })?;
    let unshared = s.call_raw(
        libc::SYS_unshare,
        [libc::CLONE_SYSVSEM as u64, 0, 0, 0, 0, 0],
    )?;
    let after = in_tree_ns(root, own, || snapshot(pid));
    // Put back what can be, whatever happened.
    let mut problems = Vec::new();
    let mut undo = Vec::new();
    if unshared < 0 {
        problems.push(format!(
            "unshare(CLONE_SYSVSEM) failed: {}",
            std::io::Error::from_raw_os_error(-unshared as i32)
        ));
    }
    let after = read_or_note(&after, "after unshare", &mut problems);
    for (b, r) in before.iter().zip(&raised) {
        let Some(a) = same_set(b, r, after, &mut problems) else {
            continue;
        };
        let tree_set = tree_sets.contains(&b.id);
        let mut adj = vec![0i16; b.values.len()];
        for n in 0..b.values.len() {
            let Some(d) = seen_adjustment(pid, (b, a), n, r[n], tree_set, &mut problems) else {
                continue;
            };
            if d != 0 {
                let back = remote_semop(s, b.id, n, -d, SEM_UNDO | IPC_NOWAIT)?;
                if back < 0 {
                    problems.push(format!(
                        "semaphore {n} of set {}: giving adjustment {d} back failed: {}",
                        b.id,
                        std::io::Error::from_raw_os_error(-back as i32)
                    ));
                    continue;
                }
                adj[n] = d as i16;
            }
        }
        for (n, &by) in r.iter().enumerate() {
            if by > 0 {
                let lowered = remote_semop(s, b.id, n, -i32::from(by), IPC_NOWAIT)?;
                if lowered < 0 {
                    problems.push(format!(
                        "semaphore {n} of set {}: lowering it back by {by} failed: {}",
                        b.id,
                        std::io::Error::from_raw_os_error(-lowered as i32)
                    ));
                }
            }
        }
        if adj.iter().any(|&d| d != 0) {
            undo.push(SemUndo {
                pid,
                semid: b.id,
                adj,
            });
        }
    }
    session.close()?;
    // The sets this process changed: the tree's (raised) and those it had adjustments on.
    let now = in_tree_ns(root, own, || snapshot(pid))?;
    let touched = |id: i32| tree_sets.contains(&id) || undo.iter().any(|u| u.semid == id);
    for b in before.iter().filter(|b| touched(b.id)) {
        if let Some(n) = now.iter().find(|n| n.id == b.id) {
            if n.values != b.values {
                problems.push(format!(
                    "set {} holds {:?} after the measurement, {:?} before (another process \
                     used it meanwhile?)",
                    b.id, n.values, b.values
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(refuse(
            pid,
            format!(
                "measuring the process's SEM_UNDO adjustments: {}",
                problems.join("; ")
            ),
        ));
    }
    Ok(undo)
}

// ---- restore ---------------------------------------------------------------------------

/// The values a created set starts with: the dumped ones plus every process's adjustment,
/// which the processes' own semop(-adj, SEM_UNDO) takes back (`restore`).
pub fn start_values(pid: i32, img: &IpcImage, set: &SemSet) -> Result<Vec<u16>> {
    let id = set.perm.id;
    let mut out = Vec::with_capacity(set.values.len());
    for (n, &v) in set.values.iter().enumerate() {
        let sum: i32 = img
            .sem_undo
            .iter()
            .filter(|u| u.semid == id)
            .filter_map(|u| u.adj.get(n))
            .map(|&a| i32::from(a))
            .sum();
        let start = i32::from(v) + sum;
        if !(0..=i32::from(SEMVMX)).contains(&start) {
            return Err(Error::Restore {
                pid,
                reason: format!(
                    "SysV semaphore set {id}, semaphore {n}: value {v} plus the processes' \
                     undo adjustments ({sum}) is out of range"
                ),
            });
        }
        // The processes take their adjustments back one after the other, in the order
        // they are restored (the image's): no step may leave [0, SEMVMX] (it would fail).
        let mut value = start;
        for u in img.sem_undo.iter().filter(|u| u.semid == id) {
            value -= u.adj.get(n).map_or(0, |&a| i32::from(a));
            if !(0..=i32::from(SEMVMX)).contains(&value) {
                return Err(Error::Restore {
                    pid,
                    reason: format!(
                        "SysV semaphore set {id}, semaphore {n}: the processes' undo \
                         adjustments cannot be given back in the order they are restored \
                         (process {} would take it to {value})",
                        u.pid
                    ),
                });
            }
        }
        out.push(start as u16);
    }
    Ok(out)
}

/// Run in the restored root (remote calls), for the sets used as they are (not in
/// `made`): the first semaphore of each gets a last operation from inside the tree, an
/// atomic +1 -1 (-1 +1 at SEMVMX) that changes no value, so a later dump finds the set
/// again (by `GETPID`) even when the dump that measured by death was its last user (the
/// tool raised and lowered it).
pub fn touch_reused(s: &mut Session, img: &IpcImage, made: &[usize]) -> Result<()> {
    for (_, set) in img
        .sem
        .iter()
        .enumerate()
        .filter(|(i, set)| !made.contains(i) && !set.values.is_empty())
    {
        let id = set.perm.id;
        let at_max = sys::sem_values(id, set.values.len())
            .map(|v| v.first() == Some(&SEMVMX))
            .unwrap_or(false);
        let (first, then) = if at_max { (-1i16, 1i16) } else { (1, -1) };
        let mut buf = Vec::with_capacity(12);
        for op in [first, then] {
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&op.to_ne_bytes());
            buf.extend_from_slice(&(IPC_NOWAIT as i16).to_ne_bytes());
        }
        let addr = s.put(0, &buf)?;
        let r = s.call_raw(libc::SYS_semop, [id as u64, addr, 2, 0, 0, 0])?;
        if r < 0 {
            // Only the next dump's finding it by its last user is at stake.
            log::warn!(
                "SysV semaphore set {id}: the last-use operation from the tree failed: {}",
                std::io::Error::from_raw_os_error(-r as i32)
            );
        }
    }
    Ok(())
}

/// Gives the restored process of `s` (image pid `pid`) its undo adjustments: a semop
/// (-adj, SEM_UNDO) per semaphore, without waiting. After its sets exist with their start
/// values, in the order the processes are restored.
pub fn restore(s: &mut Session, pid: i32, img: &IpcImage) -> Result<()> {
    for u in img.sem_undo.iter().filter(|u| u.pid == pid) {
        for (n, &adj) in u.adj.iter().enumerate() {
            if adj == 0 {
                continue;
            }
            let r = remote_semop(s, u.semid, n, -i32::from(adj), SEM_UNDO | IPC_NOWAIT)?;
            if r < 0 {
                let errno = -r as i32;
                let why = match errno {
                    libc::EAGAIN => {
                        "the value is too low for it (the set was reused as it is: is the \
                         dumped process still running, holding it?)"
                    }
                    libc::ERANGE => "the value would go past SEMVMX",
                    _ => "",
                };
                return Err(Error::Restore {
                    pid,
                    reason: format!(
                        "SysV semaphore set {}, semaphore {n}: the undo adjustment {adj} \
                         cannot be given back: semop({}): {} {why}",
                        u.semid,
                        -i32::from(adj),
                        std::io::Error::from_raw_os_error(errno)
                    ),
                });
            }
        }
        log::info!(
            "pid {pid}: SysV semaphore set {} undo adjustments {:?} restored",
            u.semid,
            u.adj
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stasis_image::ipc::IpcPerm;

    fn image(values: Vec<u16>, undo: &[(i32, Vec<i16>)]) -> IpcImage {
        IpcImage {
            sem: vec![SemSet {
                perm: IpcPerm {
                    id: 3,
                    ..Default::default()
                },
                values,
            }],
            sem_undo: undo
                .iter()
                .map(|(pid, adj)| SemUndo {
                    pid: *pid,
                    semid: 3,
                    adj: adj.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn start_values_add_every_adjustment() {
        // A lock held by 10 (+1) and a post by 11 (-3) on the other semaphore.
        let img = image(vec![0, 13], &[(10, vec![1, 0]), (11, vec![0, -3])]);
        assert_eq!(start_values(1, &img, &img.sem[0]).unwrap(), vec![1, 10]);
    }

    #[test]
    fn start_values_refuse_an_order_that_would_block() {
        // 10 takes back +1 first: from 0 it would go below zero.
        let img = image(vec![0], &[(10, vec![1]), (11, vec![-1])]);
        let err = start_values(1, &img, &img.sem[0]).unwrap_err();
        assert!(err.to_string().contains("process 10"), "{err}");
        // The other way round works.
        let img = image(vec![0], &[(11, vec![-1]), (10, vec![1])]);
        assert_eq!(start_values(1, &img, &img.sem[0]).unwrap(), vec![0]);
        // Out of range altogether.
        let img = image(vec![32000], &[(10, vec![1000])]);
        assert!(start_values(1, &img, &img.sem[0]).is_err());
    }
}
