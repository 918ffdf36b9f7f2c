//! Features of an image that a reader must know to restore it correctly.
//!
//! A minor version may add fields an older reader skips (section 4 of IMAGE_FORMAT.md).
//! Some of them change what restore must do, and a reader that skipped one would restore
//! something else without a word: a FIFO unlinked at dump opened by its old path, a
//! /dev/tty descriptor opened as its pty's slave, data a waiting connection held dropped.
//! The writer names each such feature the image uses in the manifest's `requires`; a
//! reader refuses an image that requires a feature it does not know, naming it.

use crate::ipc::IpcImage;
use crate::{FileKind, TaskImage};

/// Every feature this version knows, with what it means.
pub const KNOWN: &[(&str, &str)] = &[
    (
        FIFO_UNLINKED,
        "a FIFO whose path was unlinked while open (FileKind::Fifo.unlinked)",
    ),
    (
        PTY_DEV_TTY,
        "a /dev/tty descriptor of a pty of the image (FileKind::PtySlave.dev_tty)",
    ),
    (
        SOCKET_DATA_BEFORE_ACCEPT,
        "data queued in a connection not yet accepted (SocketQueue.sent_before_accept)",
    ),
    (
        UNHELD_MQUEUES,
        "POSIX message queues of the tree's IPC namespace that no descriptor held (IpcImage.mqueues)",
    ),
    (
        SEM_UNDO,
        "SysV semaphore undo adjustments (IpcImage.sem_undo)",
    ),
    (
        UNIX_BOUND_FILE,
        "the owner and mode of a unix socket's file, or that it was unlinked (UnixSocket.bound_file)",
    ),
    (
        EPOLL_IN_FLIGHT,
        "registrations of an epoll instance in flight, by description (EpollTarget.desc)",
    ),
];

pub const FIFO_UNLINKED: &str = "fifo-unlinked";
pub const PTY_DEV_TTY: &str = "pty-dev-tty";
pub const SOCKET_DATA_BEFORE_ACCEPT: &str = "socket-data-before-accept";
pub const UNHELD_MQUEUES: &str = "unheld-mqueues";
pub const SEM_UNDO: &str = "sem-undo";
pub const EPOLL_IN_FLIGHT: &str = "epoll-in-flight";
pub const UNIX_BOUND_FILE: &str = "unix-bound-file";

/// The features an image with these tasks and IPC objects uses, sorted.
pub fn required(tasks: &[TaskImage], ipc: &IpcImage) -> Vec<String> {
    let files = || tasks.iter().flat_map(TaskImage::all_files);
    let uses = [
        (
            FIFO_UNLINKED,
            files().any(|f| matches!(f.file, FileKind::Fifo { unlinked: true, .. })),
        ),
        (
            PTY_DEV_TTY,
            files().any(|f| matches!(f.file, FileKind::PtySlave { dev_tty: true, .. })),
        ),
        (
            SOCKET_DATA_BEFORE_ACCEPT,
            tasks
                .iter()
                .flat_map(|t| t.socket_queues.iter())
                .any(|q| q.sent_before_accept),
        ),
        (
            EPOLL_IN_FLIGHT,
            files().any(|f| {
                matches!(&f.file, FileKind::Epoll { targets } if targets.iter().any(|t| t.desc.is_some()))
            }),
        ),
        (
            UNIX_BOUND_FILE,
            files().any(|f| {
                matches!(&f.file, FileKind::UnixSocket { bound_file, .. } if bound_file.is_some())
            }),
        ),
        (UNHELD_MQUEUES, !ipc.mqueues.is_empty()),
        (SEM_UNDO, !ipc.sem_undo.is_empty()),
    ];
    let mut out: Vec<String> = uses
        .into_iter()
        .filter(|u| u.1)
        .map(|u| u.0.to_string())
        .collect();
    out.sort();
    out
}

/// The first feature of `requires` this version does not know.
pub fn unknown(requires: &[String]) -> Option<&str> {
    requires
        .iter()
        .map(String::as_str)
        .find(|r| !KNOWN.iter().any(|k| k.0 == *r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::SemUndo;
    use crate::{sample, FdImage, SocketQueue};

    fn fd(file: FileKind) -> FdImage {
        FdImage {
            fd: 3,
            flags: 0,
            cloexec: false,
            pos: 0,
            desc: 1,
            file,
        }
    }

    #[test]
    fn each_feature_is_found_where_it_is_used() {
        let plain = sample::task(100, 1, 2);
        let ipc = IpcImage::default();
        assert!(required(std::slice::from_ref(&plain), &ipc).is_empty());

        let mut t = plain.clone();
        t.fds.push(fd(FileKind::Fifo {
            path: "/f".into(),
            inode: 1,
            unlinked: true,
        }));
        t.fds.push(fd(FileKind::Epoll {
            targets: vec![crate::EpollTarget {
                fd: 4,
                events: 1,
                data: 2,
                now_at: None,
                desc: Some(1),
            }],
        }));
        t.fds.push(fd(FileKind::UnixSocket {
            inode: 9,
            kind: 1,
            name: Some(b"/s".to_vec()),
            peer: None,
            peer_name: None,
            listen_backlog: Some(1),
            waiting: vec![],
            peer_gone: false,
            shutdown: 0,
            options: Default::default(),
            bound_file: Some(crate::BoundFile {
                mode: 0o600,
                uid: 0,
                gid: 0,
                unlinked: false,
            }),
        }));
        t.fds.push(fd(FileKind::PtySlave {
            index: 1,
            dev_tty: true,
        }));
        t.socket_queues.push(SocketQueue {
            inode: 2,
            messages: vec![b"x".to_vec()],
            in_flight: vec![],
            sent_before_accept: true,
        });
        let mut ipc = IpcImage {
            sem_undo: vec![SemUndo {
                pid: 100,
                semid: 0,
                adj: vec![1],
            }],
            ..Default::default()
        };
        ipc.mqueues.push(crate::ipc::MqueueImage {
            name: "/q".into(),
            unlinked: false,
            uid: 0,
            gid: 0,
            mode: 0o600,
            maxmsg: 1,
            msgsize: 1,
            messages: vec![],
        });
        let all: Vec<&str> = KNOWN.iter().map(|k| k.0).collect();
        let mut want = all.clone();
        want.sort();
        assert_eq!(required(&[t], &ipc), want);
        assert_eq!(unknown(&["x".to_string()]), Some("x"));
        assert_eq!(
            unknown(&all.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            None
        );
    }
}
