//! Unix sockets: connected pairs with both ends in the tree (socketpair, or a connection
//! accepted from a listener), listening sockets, and unconnected sockets, bound or not.
//! What is queued for each socket to read is peeked at dump (SO_PEEK_OFF) and sent again
//! from the peer at restore, message by message, so datagram and record boundaries hold.

use std::os::unix::ffi::OsStrExt;

use stasis_image::{BoundFile, FdImage, FileKind, SocketOptions, SocketQueue};
use stasis_sys::{own, process};

use super::{place_copy, ChildResult, FdProbe, Kind, KindState, Reopen};
use crate::error::{Result, SysContext};

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

/// Whether a socket was connected and its peer has been closed since: sock_diag shows it
/// connected with a peer that has no inode any more. (A client whose connection waits to
/// be accepted looks the same, but is in its listener's list of waiting connections.)
pub fn peer_closed(
    s: &stasis_sys::sockdiag::UnixSocket,
    all: &[stasis_sys::sockdiag::UnixSocket],
) -> bool {
    s.state == TCP_ESTABLISHED
        && s.peer.is_none_or(|p| p == 0)
        && !all.iter().any(|l| l.pending.contains(&s.ino))
}

/// Whether the client socket `pid`'s `fd` has sent data the listener's side holds.
pub fn sent_before_accept(pid: i32, fd: i32) -> Result<bool> {
    let local = process::pidfd_getfd(pid, fd).ctx(pid, || format!("fd {fd}"))?;
    Ok(own::socket_outq(local.raw()).ctx(pid, || format!("fd {fd}"))? > 0)
}

/// What waits in the connections of a listener's backlog, read by accepting them: the
/// only way, and one that cannot be undone (the connections are then the tool's, and are
/// lost to the tree). So only a dump that kills the tree does it, last of all.
///
/// The listener is `pid`'s `fd`, socket `listener`; `clients` are the clients of its first
/// waiting connections, in backlog order, which is the order accept() takes them in. Each
/// connection accepted is checked to be the expected client's (sock_diag: its peer), then
/// what it holds is peeked like any queue. Returns the messages of each, in order.
pub fn accept_waiting(
    pid: i32,
    fd: i32,
    listener: u64,
    clients: &[u64],
) -> Result<Vec<Vec<own::PeekedMessage>>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let what = || format!("fd {fd} (listener socket:[{listener}])");
    let local = process::pidfd_getfd(pid, fd).ctx(pid, what)?;
    let mut accepted = Vec::with_capacity(clients.len());
    for &client in clients {
        let conn = own::accept_waiting(local.raw()).ctx(pid, || {
            format!(
                "{}: accept the connection of socket:[{client}] to read what it holds",
                what()
            )
        })?;
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", conn.as_raw_fd()))
            .map_err(|e| crate::error::Error::Unsupported {
                pid,
                object: what(),
                detail: format!("cannot stat the connection accepted for socket:[{client}]: {e}"),
            })?
            .ino();
        accepted.push((client, ino, conn));
    }
    let all = stasis_sys::sockdiag::unix_sockets().ctx(pid, || "list unix sockets".into())?;
    let mut out = Vec::with_capacity(accepted.len());
    for (client, ino, conn) in &accepted {
        let peer = all.iter().find(|s| s.ino == *ino).and_then(|s| s.peer);
        if peer != Some(*client) {
            return Err(crate::error::Error::Unsupported {
                pid,
                object: what(),
                detail: format!(
                    "the connection accepted in the place of socket:[{client}]'s is socket:[{}]'s (the backlog changed during the dump)",
                    peer.unwrap_or(0)
                ),
            });
        }
        out.push(own::peek_socket(conn.as_raw_fd()).ctx(pid, || {
            format!(
                "{}: read what the connection of socket:[{client}] holds",
                what()
            )
        })?);
    }
    Ok(out)
}

fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
    let Some(inode) = p
        .target
        .strip_prefix("socket:[")
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let Some(s) = p.unix_sockets()?.iter().find(|s| s.ino == inode).cloned() else {
        return Ok(None); // not a unix socket
    };
    let local =
        process::pidfd_getfd(p.pid, p.fd).ctx(p.pid, || format!("fd {} ({})", p.fd, p.target))?;
    let fd = local.raw();
    let opt =
        |o| own::get_sockopt_int(fd, libc::SOL_SOCKET, o).ctx(p.pid, || format!("fd {}", p.fd));
    let timeo = |o| own::get_sockopt_timeval_us(fd, o).ctx(p.pid, || format!("fd {}", p.fd));
    let options = SocketOptions {
        sndbuf: opt(libc::SO_SNDBUF)?,
        rcvbuf: opt(libc::SO_RCVBUF)?,
        passcred: opt(libc::SO_PASSCRED)? != 0,
        peek_off: opt(libc::SO_PEEK_OFF)?,
        rcvtimeo_us: timeo(libc::SO_RCVTIMEO)?,
        sndtimeo_us: timeo(libc::SO_SNDTIMEO)?,
        rcvlowat: opt(libc::SO_RCVLOWAT)?,
    };
    let peer = s.peer.filter(|&p| p != 0);
    let peer_gone = peer_closed(&s, p.unix_sockets()?);
    let peer_name = peer.and_then(|peer| {
        let list = p.unix_sockets().ok()?;
        list.iter().find(|o| o.ino == peer)?.name.clone()
    });
    Ok(Some(FileKind::UnixSocket {
        peer_name: peer_name.filter(|n| !n.is_empty()),
        inode,
        kind: s.kind,
        name: s.name.clone().filter(|n| !n.is_empty()),
        peer,
        listen_backlog: (s.state == TCP_LISTEN).then_some(s.wqueue),
        // sock_diag names a waiting connection by its client's inode.
        waiting: s.pending.clone(),
        peer_gone,
        shutdown: s.shutdown,
        options,
        bound_file: bound_file(&s),
    }))
}

/// The file a socket bound to an absolute path made, as it is now: its mode and owner,
/// or unlinked when the path is gone or holds another file. None when sock_diag names no
/// file (abstract or unnamed sockets) or the name is relative (to a directory unknown).
fn bound_file(s: &stasis_sys::sockdiag::UnixSocket) -> Option<BoundFile> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let file = s.file?;
    let name = s.name.as_deref()?;
    let path = name
        .split(|b| *b == 0)
        .next()
        .filter(|p| p.first() == Some(&b'/'))?;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    Some(match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == file => BoundFile {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            unlinked: false,
        },
        _ => BoundFile {
            mode: 0,
            uid: 0,
            gid: 0,
            unlinked: true,
        },
    })
}

/// A socket of `kind` bound to `name`, whose file is then given the owner and mode it
/// had (`bound`), or unlinked again if it was. A stale socket file at the path is
/// replaced, unless the socket's own file was unlinked: what is there now is another's.
fn bound_socket(
    kind: u8,
    name: Option<&[u8]>,
    bound: Option<&BoundFile>,
) -> stasis_sys::SysResult<i32> {
    use std::os::unix::fs::PermissionsExt;
    let unlinked = bound.is_some_and(|b| b.unlinked);
    let fd = own::unix_socket(i32::from(kind), name, !unlinked)?;
    let (Some(b), Some(name)) = (bound, name) else {
        return Ok(fd);
    };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(
        name.split(|c| *c == 0).next().unwrap_or(name),
    ));
    let io = |call: &'static str, e: std::io::Error| {
        stasis_sys::SysError::new(
            call,
            path.display().to_string(),
            stasis_sys::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    };
    let settled = if b.unlinked {
        own::unlink(path)
    } else {
        std::os::unix::fs::lchown(path, Some(b.uid), Some(b.gid))
            .map_err(|e| io("lchown", e))
            .and_then(|()| {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(b.mode))
                    .map_err(|e| io("chmod", e))
            })
    };
    if let Err(e) = settled {
        own::close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// The messages queued for `pid`'s socket `fd` to read, left queued, with new descriptors
/// (ours) of the files in flight in them.
pub fn peek(pid: i32, fd: i32) -> Result<Vec<own::PeekedMessage>> {
    let local = process::pidfd_getfd(pid, fd).ctx(pid, || format!("fd {fd}"))?;
    own::peek_socket(local.raw()).ctx(pid, || format!("read what is queued in socket fd {fd}"))
}

pub const KIND: Kind = Kind {
    dump,
    restores: |f| matches!(f, FileKind::UnixSocket { .. }),
    open,
    finish: finish_all,
    ..Kind::NONE
};

/// Puts socket `f` at `at`; the first of a connected pair to be opened makes both.
fn open(f: &FdImage, at: i32, r: &Reopen, state: &mut KindState) -> ChildResult {
    let FileKind::UnixSocket { inode, peer, .. } = f.file else {
        return Err(format!("fd {}: not a unix socket", f.fd));
    };
    let sockets = state.of::<Vec<NewSocket>>();
    if !sockets.iter().any(|s| s.inode == inode) {
        let peer_file = peer.and_then(|p| {
            r.find(|k| matches!(*k, FileKind::UnixSocket { inode, .. } if inode == p))
        });
        for mut made in create(f, peer_file)? {
            made.fd = r.park(made.fd, f)?;
            sockets.push(made);
        }
    }
    let Some(s) = sockets.iter().find(|s| s.inode == inode) else {
        return Err(format!("fd {}: socket:[{inode}] was not made", f.fd));
    };
    place_copy(s.fd, at, f)
}

/// Fills, sets and shuts down every socket made (see `finish`), then closes the root's
/// copies.
fn finish_all(r: &Reopen, state: &mut KindState) -> ChildResult {
    let sockets = std::mem::take(state.of::<Vec<NewSocket>>());
    let done = finish(
        &sockets,
        |inode, sent| {
            r.socket_queues
                .iter()
                .find(|q| q.inode == inode && q.sent_before_accept == sent)
                .copied()
        },
        r.slot,
    );
    for s in sockets {
        own::close(s.fd);
    }
    done
}

/// A socket created at restore, by inode.
struct NewSocket {
    inode: u64,
    fd: i32,
    file: FdImage,
    /// The connected peer (made with it), which sends what this socket must find queued.
    peer: Option<u64>,
    /// A stand-in for a peer outside the tree: it sends what was queued, then is closed.
    stand_in: bool,
}

impl NewSocket {
    /// A socket made without a peer of its own (unconnected, listening, or connected to
    /// a name outside the tree).
    fn unpaired(inode: u64, fd: i32, f: &FdImage) -> NewSocket {
        NewSocket {
            inode,
            fd,
            file: f.clone(),
            peer: None,
            stand_in: false,
        }
    }
}

/// A connected pair: socket `inode` of `f`, and its peer `(inode, file)`, which is a
/// stand-in when the real peer is outside the tree or was closed.
fn pair(
    f: &FdImage,
    inode: u64,
    kind: u8,
    (peer, peer_file): (u64, &FdImage),
    stand_in: bool,
) -> stasis_sys::SysResult<[NewSocket; 2]> {
    let (a, b) = own::unix_socketpair(kind as i32)?;
    Ok([
        NewSocket {
            inode,
            fd: a,
            file: f.clone(),
            peer: Some(peer),
            stand_in: false,
        },
        NewSocket {
            inode: peer,
            fd: b,
            file: peer_file.clone(),
            peer: Some(inode),
            stand_in,
        },
    ])
}

/// Creates the socket `f` describes (and its peer, for a connected pair, with `peer_file`
/// describing the peer). Their queues, options and shutdown state come later, in
/// `finish`, once every file a queued message carries is open too.
fn create(f: &FdImage, peer_file: Option<&FdImage>) -> ChildResult<Vec<NewSocket>> {
    let FileKind::UnixSocket {
        inode,
        kind,
        name,
        peer,
        peer_name,
        listen_backlog,
        peer_gone,
        bound_file,
        ..
    } = &f.file
    else {
        return Err(format!("fd {}: not a unix socket", f.fd));
    };
    let err = |e: stasis_sys::SysError| format!("fd {} (socket:[{inode}]): {e}", f.fd);
    let mut made = Vec::new();
    match (peer, peer_file) {
        (Some(peer), Some(pf)) => {
            made.extend(pair(f, *inode, *kind, (*peer, pf), false).map_err(err)?);
        }
        // The peer is outside the tree (the dump had --ext-unix-sk).
        (Some(peer), None) => match peer_name {
            Some(to) if *kind as i32 == libc::SOCK_DGRAM => {
                let fd = bound_socket(*kind, name.as_deref(), bound_file.as_ref()).map_err(err)?;
                made.push(NewSocket::unpaired(*inode, fd, f));
                own::unix_connect(fd, to).map_err(|e| {
                    format!(
                        "fd {} (socket:[{inode}]): its peer outside the tree, bound at {:?}, cannot be reached again: {e}",
                        f.fd,
                        String::from_utf8_lossy(to)
                    )
                })?;
            }
            _ => made.extend(pair(f, *inode, *kind, (*peer, f), true).map_err(err)?),
        },
        // Its peer was closed: a stand-in sends what was queued and is closed, so reads
        // end as they would have (and writes fail).
        (None, _) if *peer_gone => {
            made.extend(pair(f, *inode, *kind, (!*inode, f), true).map_err(err)?);
        }
        (None, _) => {
            let fd = bound_socket(*kind, name.as_deref(), bound_file.as_ref()).map_err(err)?;
            made.push(NewSocket::unpaired(*inode, fd, f));
            if let Some(backlog) = listen_backlog {
                own::listen(fd, *backlog as i32).map_err(err)?;
            }
        }
    }
    Ok(made)
}

/// Fills the queues of the sockets made (each message sent again by the peer, with the
/// files it carries: `slot(desc)` is where each open file description now is), then sets
/// their options and shutdown state (after the fill: a shut or smaller buffer would
/// refuse it).
fn finish<'q>(
    sockets: &[NewSocket],
    queue: impl Fn(u64, bool) -> Option<&'q SocketQueue>,
    slot: impl Fn(u32) -> i32,
) -> ChildResult {
    let made = |inode: Option<u64>| inode.and_then(|i| sockets.iter().find(|o| o.inode == i));
    // Connections waiting to be accepted: each client connects again, in the order the
    // listener had them, so accept() takes them in that order.
    for l in sockets {
        let FileKind::UnixSocket { waiting, name, .. } = &l.file.file else {
            continue;
        };
        for &client in waiting {
            let err = |e: stasis_sys::SysError| {
                format!(
                    "socket:[{client}] waiting on listener socket:[{}]: {e}",
                    l.inode
                )
            };
            let c = made(Some(client)).ok_or_else(|| {
                format!(
                    "socket:[{client}] waiting on listener socket:[{}] is not in the image",
                    l.inode
                )
            })?;
            let name = name
                .as_deref()
                .ok_or_else(|| format!("listener socket:[{}] has no name", l.inode))?;
            own::unix_connect(c.fd, name).map_err(err)?;
            // What it had sent before being accepted waits in the new connection.
            if let Some(q) = queue(client, true) {
                send_queue(q, &slot, |m, fds| own::send_message_with_fds(c.fd, m, fds))
                    .map_err(err)?;
            }
        }
    }
    for s in sockets {
        let err = |e: stasis_sys::SysError| format!("fd {} (socket:[{}]): {e}", s.file.fd, s.inode);
        // A bound datagram socket with no peer received from anyone: a stand-in sends
        // what was queued to its name (the sender's address is the stand-in's, unnamed).
        if let (
            None,
            Some(q),
            FileKind::UnixSocket {
                name: Some(name), ..
            },
        ) = (s.peer, queue(s.inode, false), &s.file.file)
        {
            let sender = own::unix_socket(libc::SOCK_DGRAM, None, false).map_err(err)?;
            let r = send_queue(q, &slot, |m, fds| {
                own::send_datagram_to(sender, name, m, fds)
            });
            own::close(sender);
            r.map_err(err)?;
            continue;
        }
        if let (Some(sender), Some(q)) = (made(s.peer), queue(s.inode, false)) {
            send_queue(q, &slot, |m, fds| {
                own::send_message_with_fds(sender.fd, m, fds)
            })
            .map_err(err)?;
        }
    }
    for s in sockets.iter().filter(|s| !s.stand_in) {
        let err = |e: stasis_sys::SysError| format!("fd {} (socket:[{}]): {e}", s.file.fd, s.inode);
        set_options(s.fd, &s.file).map_err(err)?;
        let peer = made(s.peer).filter(|o| !o.stand_in).map(|o| &o.file);
        shut(s.fd, &s.file, peer).map_err(err)?;
    }
    Ok(())
}
/// Sends every message of `q` again with `send`, each with the descriptors of the files
/// it carried (`slot(desc)` is where each open file description now is).
fn send_queue(
    q: &SocketQueue,
    slot: impl Fn(u32) -> i32,
    send: impl Fn(&[u8], &[i32]) -> stasis_sys::SysResult<()>,
) -> stasis_sys::SysResult<()> {
    for (index, m) in q.messages.iter().enumerate() {
        let fds: Vec<i32> = q
            .in_flight
            .iter()
            .filter(|f| f.message as usize == index)
            .flat_map(|f| f.files.iter().map(|file| slot(file.desc)))
            .collect();
        send(m, &fds)?;
    }
    Ok(())
}

fn set_options(fd: i32, f: &FdImage) -> stasis_sys::SysResult<()> {
    let FileKind::UnixSocket { options: o, .. } = &f.file else {
        return Ok(());
    };
    // getsockopt reports twice what setsockopt was given.
    own::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, o.sndbuf / 2)?;
    own::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, o.rcvbuf / 2)?;
    if o.passcred {
        own::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 1)?;
    }
    if o.peek_off >= 0 {
        own::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, o.peek_off)?;
    }
    if o.rcvtimeo_us != 0 {
        own::set_sockopt_timeval_us(fd, libc::SO_RCVTIMEO, o.rcvtimeo_us)?;
    }
    if o.sndtimeo_us != 0 {
        own::set_sockopt_timeval_us(fd, libc::SO_SNDTIMEO, o.sndtimeo_us)?;
    }
    if o.rcvlowat > 1 {
        own::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, o.rcvlowat)?;
    }
    Ok(())
}

/// Shut-down state: a side that can no longer send was shut down for writing; a side that
/// can no longer receive without its peer having stopped sending shut reading itself.
fn shut(fd: i32, f: &FdImage, peer: Option<&FdImage>) -> stasis_sys::SysResult<()> {
    let bits = |f: &FdImage| match f.file {
        FileKind::UnixSocket { shutdown, .. } => shutdown,
        _ => 0,
    };
    let mine = bits(f);
    let theirs = peer.map_or(0, bits);
    if mine & 2 != 0 {
        own::shutdown(fd, libc::SHUT_WR)?;
    }
    if mine & 1 != 0 && theirs & 2 == 0 {
        own::shutdown(fd, libc::SHUT_RD)?;
    }
    Ok(())
}
