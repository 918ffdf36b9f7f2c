//! What the tree's unix sockets hold together, read once every descriptor of the tree is
//! known: the messages queued for each socket with the files in flight in them (which may
//! be sockets, pipes or epoll instances of their own), the connections waiting in a
//! listener's backlog, and whether every peer is in the tree. This is the part of
//! `DescTable` that is about sockets.

use std::collections::BTreeMap;

use stasis_image::{FdImage, FileKind, InFlightFiles, SocketQueue};
use stasis_sys::sockdiag::UnixSocket;

use super::{classify, epoll, meta_ino, unix, DescTable, OPEN_ONLY_FLAGS};
use crate::error::{Error, Result};

/// Where a unix socket was first found.
#[derive(Clone, Copy)]
pub(super) struct SocketSeen {
    /// The task whose image records its queue.
    owner: i32,
    /// A process and descriptor to reach it through: the owner's, or ours for a socket
    /// that is only in flight.
    pid: i32,
    fd: i32,
    peer: Option<u64>,
    listening: bool,
}

/// A listener of the tree with connections waiting in its backlog that hold data: the
/// clients of its waiting connections in backlog order, up to the last one that sent
/// something.
pub(super) struct WaitingData {
    listener: u64,
    /// A process and descriptor to reach the listener through.
    pid: i32,
    fd: i32,
    /// (client inode, the task whose image records the client, whether it sent data).
    clients: Vec<(u64, i32, bool)>,
}

/// What sock_diag says of socket `inode`, if it is listed.
fn diag(list: &std::cell::OnceCell<Vec<UnixSocket>>, inode: u64) -> Option<&UnixSocket> {
    list.get()?.iter().find(|s| s.ino == inode)
}

/// An error met while describing a file in flight, said as such: `carried` says which
/// message carries it.
fn in_flight_error(e: Error, owner: i32, carried: impl FnOnce() -> String) -> Error {
    match e {
        Error::Unsupported { object, detail, .. } => Error::Unsupported {
            pid: owner,
            object: format!("a file in flight (SCM_RIGHTS) {}", carried()),
            detail: format!("{object}: {detail}"),
        },
        other => other,
    }
}

impl DescTable {
    pub(super) fn note_socket(&mut self, owner: i32, pid: i32, fd: i32, file: &FileKind) {
        if let FileKind::UnixSocket {
            inode,
            peer,
            listen_backlog,
            ..
        } = *file
        {
            self.sockets.entry(inode).or_insert(SocketSeen {
                owner,
                pid,
                fd,
                peer,
                listening: listen_backlog.is_some(),
            });
        }
    }

    /// Reads what is queued in every unix socket, the files in flight in those messages
    /// included (which may be sockets with queues of their own), and checks that every
    /// connected unix socket's peer is in the tree. Returns the queues keyed by the pid of
    /// the task that records them. Runs before `pipe_data`: pipes can be in flight too.
    pub fn socket_queues(&mut self) -> Result<Vec<(i32, SocketQueue)>> {
        let mut out = Vec::new();
        let mut read: std::collections::BTreeSet<u64> = Default::default();
        while let Some((inode, seen)) = self
            .sockets
            .iter()
            .find(|(i, _)| !read.contains(i))
            .map(|(&i, &s)| (i, s))
        {
            read.insert(inode);
            if seen.listening {
                continue; // nothing to read; what waiting connections hold comes last
            }
            let mut queue = SocketQueue {
                inode,
                messages: Vec::new(),
                in_flight: Vec::new(),
                sent_before_accept: false,
            };
            for (index, message) in unix::peek(seen.pid, seen.fd)?.into_iter().enumerate() {
                if !message.fds.is_empty() {
                    let mut files = Vec::with_capacity(message.fds.len());
                    for (position, local) in message.fds.into_iter().enumerate() {
                        let file = self
                            .in_flight_file(seen.owner, &local, position as i32)
                            .map_err(|e| {
                                in_flight_error(e, seen.owner, || {
                                    format!("queued in socket:[{inode}]")
                                })
                            })?;
                        self.in_flight.push(local);
                        files.push(file);
                    }
                    queue.in_flight.push(InFlightFiles {
                        message: index as u32,
                        files,
                    });
                }
                queue.messages.push(message.data);
            }
            if !queue.messages.is_empty() {
                if seen.peer.is_none() && !self.refillable(inode) {
                    return Err(Error::Unsupported {
                        pid: seen.owner,
                        object: format!("fd {} (socket:[{inode}])", seen.fd),
                        detail: "messages queued for a socket that has no peer and no name to send them to again (not supported)".into(),
                    });
                }
                out.push((seen.owner, queue));
            }
        }
        // Connections waiting to be accepted: client and listener both in the tree. What a
        // client sent waits in its connection, which only accept() can read: that is left
        // for the very end of a dump that kills the tree (`accept_waiting`).
        // Every listener of the namespace is looked at, in the tree or not.
        let mut sent: std::collections::BTreeSet<u64> = Default::default();
        let mut waiting: BTreeMap<u64, u64> = BTreeMap::new();
        for l in self.unix.get().map_or(&[][..], |v| &v[..]) {
            for &client in &l.pending {
                waiting.insert(client, l.ino);
            }
        }
        for (&inode, seen) in &self.sockets {
            if let Some(&listener) = waiting.get(&inode) {
                if !self.sockets.contains_key(&listener) {
                    return Err(Error::Unsupported {
                        pid: seen.owner,
                        object: format!("fd {} (socket:[{inode}])", seen.fd),
                        detail: format!(
                            "connected to listener socket:[{listener}] outside the dumped tree, which has not accepted it yet (not supported)"
                        ),
                    });
                }
                if unix::sent_before_accept(seen.pid, seen.fd)? {
                    if self.tree_goes_on {
                        return Err(Error::Unsupported {
                            pid: seen.owner,
                            object: format!("fd {} (socket:[{inode}])", seen.fd),
                            detail: format!(
                                "a connection waiting to be accepted by socket:[{listener}] with data sent on it already: what it holds can only be read by accepting it, which the program that goes on (--leave-running/--leave-stopped) would then miss (supported only by a dump that kills the tree)"
                            ),
                        });
                    }
                    sent.insert(inode);
                }
            }
        }
        for (&client, &listener) in &waiting {
            if self.sockets.contains_key(&listener) && !self.sockets.contains_key(&client) {
                let seen = self.sockets[&listener];
                return Err(Error::Unsupported {
                    pid: seen.owner,
                    object: format!("fd {} (socket:[{listener}])", seen.fd),
                    detail: format!(
                        "a listening unix socket with a connection waiting to be accepted from socket:[{client}], outside the dumped tree (not supported)"
                    ),
                });
            }
        }
        self.waiting_data.clear();
        for (&inode, seen) in self.sockets.iter().filter(|(_, s)| s.listening) {
            let pending = diag(&self.unix, inode).map_or(&[][..], |l| &l.pending[..]);
            let Some(last) = pending.iter().rposition(|c| sent.contains(c)) else {
                continue;
            };
            let clients = pending[..=last]
                .iter()
                .filter_map(|c| Some((*c, self.sockets.get(c)?.owner, sent.contains(c))))
                .collect();
            self.waiting_data.push(WaitingData {
                listener: inode,
                pid: seen.pid,
                fd: seen.fd,
                clients,
            });
        }
        for (&inode, seen) in &self.sockets {
            if let Some(peer) = seen.peer {
                let symmetric = self
                    .sockets
                    .get(&peer)
                    .is_some_and(|p| p.peer == Some(inode));
                if !symmetric && self.ext_unix_sk && !self.sockets.contains_key(&peer) {
                    // Outside the tree. A datagram socket connects to its peer's name again
                    // at restore, which would drop what is queued for it.
                    let named_dgram = diag(&self.unix, inode)
                        .is_some_and(|s| s.kind as i32 == libc::SOCK_DGRAM)
                        && diag(&self.unix, peer)
                            .is_some_and(|p| p.name.as_ref().is_some_and(|n| !n.is_empty()));
                    if named_dgram && out.iter().any(|(_, q)| q.inode == inode) {
                        return Err(Error::Unsupported {
                            pid: seen.owner,
                            object: format!("fd {} (socket:[{inode}])", seen.fd),
                            detail: format!(
                                "a datagram socket connected to socket:[{peer}] outside the dumped tree, with messages queued for it (they would be lost when it connects again at restore)"
                            ),
                        });
                    }
                    continue;
                }
                if !symmetric {
                    return Err(Error::Unsupported {
                        pid: seen.owner,
                        object: format!("fd {} (socket:[{inode}])", seen.fd),
                        detail: format!(
                            "its peer socket:[{peer}] is held by a process outside the dumped tree (see --ext-unix-sk), or is not connected back to it (not supported yet)"
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The tasks whose images record what waiting connections hold (`accept_waiting`):
    /// their images can only be written after it.
    pub fn waiting_data_owners(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .waiting_data
            .iter()
            .flat_map(|w| w.clients.iter().filter(|c| c.2).map(|c| c.1))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Reads what the clients of connections waiting to be accepted sent on them, by
    /// accepting them (with the tree frozen, through a duplicate of the listener): every
    /// waiting connection up to the last one that holds data, in backlog order. This
    /// cannot be undone, so a dump does it last, just before the manifest and the kill;
    /// `socket_queues` has refused it already when the tree goes on. Returns the queues
    /// (`sent_before_accept`) keyed by the pid of the task that records each client.
    pub fn accept_waiting(&mut self) -> Result<Vec<(i32, SocketQueue)>> {
        let mut out = Vec::new();
        let waiting = std::mem::take(&mut self.waiting_data);
        for w in &waiting {
            let clients: Vec<u64> = w.clients.iter().map(|c| c.0).collect();
            let held = unix::accept_waiting(w.pid, w.fd, w.listener, &clients)?;
            log::info!(
                "pid {}: accepted {} waiting connection(s) of socket:[{}] to read what they hold",
                w.pid,
                clients.len(),
                w.listener
            );
            for (&(client, owner, _), messages) in w.clients.iter().zip(held) {
                if messages.is_empty() {
                    continue;
                }
                let mut queue = SocketQueue {
                    inode: client,
                    messages: Vec::new(),
                    in_flight: Vec::new(),
                    sent_before_accept: true,
                };
                for (index, message) in messages.into_iter().enumerate() {
                    if !message.fds.is_empty() {
                        let files = self.late_in_flight(owner, message.fds).map_err(|e| {
                            in_flight_error(e, owner, || {
                                format!(
                                    "sent by socket:[{client}] before its connection to socket:[{}] was accepted",
                                    w.listener
                                )
                            })
                        })?;
                        queue.in_flight.push(InFlightFiles {
                            message: index as u32,
                            files,
                        });
                    }
                    queue.messages.push(message.data);
                }
                out.push((owner, queue));
            }
        }
        Ok(out)
    }

    /// Describes the files in flight in a connection `accept_waiting` read, like those of
    /// any queue, as long as that needs nothing the dump has read already: a pipe, FIFO,
    /// socket or file object met for the first time would need its data or queue, which
    /// were read before, so it is refused.
    fn late_in_flight(
        &mut self,
        owner: i32,
        fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<Vec<FdImage>> {
        let mut files = Vec::with_capacity(fds.len());
        for (position, local) in fds.into_iter().enumerate() {
            let before = (
                self.pipes.len(),
                self.fifos.len(),
                self.sockets.len(),
                self.objects.borrow().count(),
            );
            let file = self.in_flight_file(owner, &local, position as i32)?;
            self.in_flight.push(local);
            let after = (
                self.pipes.len(),
                self.fifos.len(),
                self.sockets.len(),
                self.objects.borrow().count(),
            );
            if after != before {
                return Err(Error::Unsupported {
                    pid: owner,
                    object: format!("descriptor {position} of the message"),
                    detail: "a pipe, FIFO, socket or file object held nowhere else in the tree (not supported: its data would be needed, and was read before; the dump had to accept the connection to find it, so the connection is lost to the tree)".into(),
                });
            }
            files.push(file);
        }
        Ok(files)
    }

    /// Whether restore can queue messages again for socket `inode`, which has no peer: a
    /// stand-in sends them when its peer was closed, or to its name when it is a bound
    /// datagram socket.
    fn refillable(&self, inode: u64) -> bool {
        let all = self.unix.get().map_or(&[][..], |v| &v[..]);
        diag(&self.unix, inode).is_some_and(|s| {
            unix::peer_closed(s, all)
                || (s.kind as i32 == libc::SOCK_DGRAM
                    && s.name.as_ref().is_some_and(|n| !n.is_empty()))
        })
    }

    /// Describes a file in flight, reached through our own descriptor `local` (which the
    /// caller keeps open until the dump ends), like a descriptor of task `owner`.
    fn in_flight_file(
        &mut self,
        owner: i32,
        local: &std::os::fd::OwnedFd,
        position: i32,
    ) -> Result<FdImage> {
        use std::os::fd::AsRawFd;
        let me = std::process::id() as i32;
        let fd = local.as_raw_fd();
        let (file, info, meta) = classify(me, fd, false, self)?;
        let mut file = file;
        if let FileKind::Epoll { targets } = &mut file {
            let held: Vec<(i32, i32, u32)> =
                self.seen.iter().map(|&(p, f, _, d)| (p, f, d)).collect();
            epoll::resolve_in_flight(owner, fd, targets, &held)?;
        }
        let desc = self.id_of(me, fd, meta_ino(&meta))?;
        self.note_pipe(owner, me, fd, &file);
        self.note_fifo(owner, me, fd, info.flags, &file);
        self.note_socket(owner, me, fd, &file);
        Ok(FdImage {
            fd: position,
            flags: info.flags & !(libc::O_CLOEXEC as u32) & !OPEN_ONLY_FLAGS,
            cloexec: false,
            pos: info.pos,
            desc,
            file,
        })
    }
}
