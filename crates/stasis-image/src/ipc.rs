//! IPC objects of the dumped tree that live outside its processes: System V shared memory
//! segments, message queues and semaphore sets. Stored in one metadata file, `ipc.img`
//! (kind [`crate::MetaKind::Ipc`]), present only when the tree uses such objects or has an
//! IPC namespace of its own.

use serde::{Deserialize, Serialize};

use crate::types::serde_bytes_compat;

/// The name of the IPC file inside an image directory.
pub const IPC_FILE: &str = "ipc.img";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpcImage {
    #[serde(default)]
    pub shm: Vec<ShmSegment>,
    #[serde(default)]
    pub msg: Vec<MsgQueue>,
    #[serde(default)]
    pub sem: Vec<SemSet>,
    /// The tree was in an IPC namespace of its own: these are all of that namespace's
    /// objects, and restore makes a new namespace for the tree and creates them in it.
    #[serde(default)]
    pub own_namespace: bool,
    /// The POSIX message queues of that own namespace that no descriptor of the tree held
    /// (those held are in the descriptors' `FileKind::Mqueue`): restore creates them in the
    /// new namespace, with their messages, and leaves them with no descriptor open. Never
    /// unlinked; empty unless `own_namespace`.
    #[serde(default)]
    pub mqueues: Vec<MqueueImage>,
    /// The SEM_UNDO adjustments (semadj) of the tree's processes: restore gives each
    /// process the same ones. Only sets with a nonzero adjustment are listed.
    #[serde(default)]
    pub sem_undo: Vec<SemUndo>,
}

impl IpcImage {
    pub fn is_empty(&self) -> bool {
        self.shm.is_empty() && self.msg.is_empty() && self.sem.is_empty() && self.mqueues.is_empty()
    }
}

/// Identity, ownership and permissions of a System V object (`struct ipc_perm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpcPerm {
    /// The id (shmid, msqid, semid); restore recreates the object with this id.
    pub id: i32,
    /// The key (0 = IPC_PRIVATE, also what a removed segment shows).
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    /// Creator ids (informative: a recreated object's creator is the restoring tool).
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits (0o777) plus kind-specific flags (shm: SHM_DEST 0o1000).
    pub mode: u32,
}

/// A System V shared memory segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmSegment {
    pub perm: IpcPerm,
    /// shm_segsz in bytes.
    pub size: u64,
    /// The segment was removed (IPC_RMID) while still attached: it lives until its last
    /// detach.
    pub removed: bool,
    /// The non-zero pages of the contents, coalesced: the rest is zero.
    pub chunks: Vec<ShmChunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmChunk {
    /// Byte offset in the segment (page aligned).
    pub offset: u64,
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// A System V message queue with its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgQueue {
    pub perm: IpcPerm,
    /// msg_qbytes: the most bytes the queue holds.
    pub qbytes: u64,
    pub messages: Vec<SysvMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvMessage {
    /// mtype (> 0).
    pub mtype: i64,
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// A System V semaphore set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemSet {
    pub perm: IpcPerm,
    /// Every semaphore's value, in order (nsems = values.len()).
    pub values: Vec<u16>,
}

/// One process's undo entry for one semaphore set: what the kernel adds to each semaphore
/// when the process exits (`semadj`, the opposite of the process's SEM_UNDO operations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemUndo {
    /// The process (as in its task image).
    pub pid: i32,
    /// The set (one of `IpcImage::sem`).
    pub semid: i32,
    /// One adjustment per semaphore of the set, in order.
    pub adj: Vec<i16>,
}

/// A POSIX message queue as a descriptor sees it (in `FileKind::Mqueue` of each of its
/// descriptors; restore makes the queue once per name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqueueImage {
    /// "/NAME".
    pub name: String,
    /// The name was unlinked at dump: restore creates the queue under it, opens it and
    /// unlinks it again.
    pub unlinked: bool,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// mq_maxmsg and mq_msgsize.
    pub maxmsg: i64,
    pub msgsize: i64,
    /// Every message, in the order the queue gives them (highest priority first, oldest
    /// first within one priority).
    pub messages: Vec<MqMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqMessage {
    pub priority: u32,
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// Structural checks of a decoded IPC image: ids unique per kind, chunks inside their
/// segment, sizes and message types sane.
pub fn validate(img: &IpcImage) -> Result<(), String> {
    fn unique(kind: &str, ids: impl Iterator<Item = i32>) -> Result<(), String> {
        let mut seen: Vec<i32> = ids.collect();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("{kind} id {} appears twice", w[0]));
        }
        if let Some(id) = seen.iter().find(|&&id| id < 0) {
            return Err(format!("{kind} id {id} is negative"));
        }
        Ok(())
    }
    unique("shm", img.shm.iter().map(|s| s.perm.id))?;
    unique("msg", img.msg.iter().map(|q| q.perm.id))?;
    unique("sem", img.sem.iter().map(|s| s.perm.id))?;
    for s in &img.shm {
        if s.size == 0 {
            return Err(format!("shm {}: size 0", s.perm.id));
        }
        for c in &s.chunks {
            let end = c.offset.checked_add(c.data.len() as u64);
            if end.map_or(true, |e| e > s.size.div_ceil(4096) * 4096) {
                return Err(format!(
                    "shm {}: {} bytes at offset {} lie outside the segment of {} bytes",
                    s.perm.id,
                    c.data.len(),
                    c.offset,
                    s.size
                ));
            }
        }
    }
    for q in &img.msg {
        if let Some(m) = q.messages.iter().find(|m| m.mtype <= 0) {
            return Err(format!("msg {}: message type {} <= 0", q.perm.id, m.mtype));
        }
    }
    for s in &img.sem {
        if s.values.is_empty() {
            return Err(format!("sem {}: no semaphores", s.perm.id));
        }
    }
    if !img.mqueues.is_empty() && !img.own_namespace {
        return Err("POSIX message queues without an IPC namespace of the tree's own".into());
    }
    let mut names: Vec<&str> = Vec::new();
    for q in &img.mqueues {
        let plausible = q.name.len() > 1 && q.name.starts_with('/') && !q.name[1..].contains('/');
        if !plausible || q.unlinked {
            return Err(format!(
                "POSIX message queue {:?}: not a queue name",
                q.name
            ));
        }
        if names.contains(&q.name.as_str()) {
            return Err(format!("POSIX message queue {} appears twice", q.name));
        }
        names.push(&q.name);
        if q.maxmsg <= 0 || q.msgsize <= 0 || q.messages.len() as i64 > q.maxmsg {
            return Err(format!(
                "POSIX message queue {}: {} message(s) with maxmsg {}, msgsize {}",
                q.name,
                q.messages.len(),
                q.maxmsg,
                q.msgsize
            ));
        }
        if let Some(m) = q.messages.iter().find(|m| m.data.len() as i64 > q.msgsize) {
            return Err(format!(
                "POSIX message queue {}: a message of {} bytes, msgsize {}",
                q.name,
                m.data.len(),
                q.msgsize
            ));
        }
    }
    let mut seen = Vec::new();
    for u in &img.sem_undo {
        let Some(set) = img.sem.iter().find(|s| s.perm.id == u.semid) else {
            return Err(format!(
                "undo entry of pid {} names sem {}, which the image does not have",
                u.pid, u.semid
            ));
        };
        if u.adj.len() != set.values.len() {
            return Err(format!(
                "undo entry of pid {} for sem {}: {} adjustments for {} semaphores",
                u.pid,
                u.semid,
                u.adj.len(),
                set.values.len()
            ));
        }
        if u.adj.contains(&i16::MIN) {
            return Err(format!(
                "undo entry of pid {} for sem {}: adjustment {} out of range",
                u.pid,
                u.semid,
                i16::MIN
            ));
        }
        if seen.contains(&(u.pid, u.semid)) {
            return Err(format!(
                "pid {} has two undo entries for sem {}",
                u.pid, u.semid
            ));
        }
        seen.push((u.pid, u.semid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: i32, size: u64, offset: u64, len: usize) -> ShmSegment {
        ShmSegment {
            perm: IpcPerm {
                id,
                ..Default::default()
            },
            size,
            removed: false,
            chunks: vec![ShmChunk {
                offset,
                data: vec![1; len],
            }],
        }
    }

    #[test]
    fn validate_finds_bad_chunks_and_duplicates() {
        let mut img = IpcImage::default();
        img.shm.push(seg(3, 5000, 4096, 4096));
        assert!(validate(&img).is_ok());
        img.shm.push(seg(3, 5000, 0, 10));
        assert!(validate(&img).unwrap_err().contains("twice"));
        img.shm[1] = seg(4, 5000, 8192, 1);
        assert!(validate(&img).unwrap_err().contains("outside"));
    }

    #[test]
    fn validate_checks_undo_entries() {
        let mut img = IpcImage::default();
        img.sem.push(SemSet {
            perm: IpcPerm {
                id: 7,
                ..Default::default()
            },
            values: vec![0, 3],
        });
        img.sem_undo.push(SemUndo {
            pid: 100,
            semid: 7,
            adj: vec![1, -2],
        });
        assert!(validate(&img).is_ok());
        img.sem_undo.push(img.sem_undo[0].clone());
        assert!(validate(&img).unwrap_err().contains("two undo entries"));
        img.sem_undo[1].semid = 8;
        assert!(validate(&img).unwrap_err().contains("does not have"));
        img.sem_undo[1].semid = 7;
        img.sem_undo[1].pid = 101;
        img.sem_undo[1].adj = vec![1];
        assert!(validate(&img).unwrap_err().contains("adjustments for 2"));
    }

    /// An image written before undo entries existed still reads.
    #[test]
    fn undo_entries_default_to_none() {
        #[derive(Serialize)]
        struct Old {
            sem: Vec<SemSet>,
        }
        let bytes = serde_json::to_vec(&Old { sem: Vec::new() }).expect("encode");
        let img: IpcImage = serde_json::from_slice(&bytes).expect("decode");
        assert!(img.sem_undo.is_empty());
    }
}
