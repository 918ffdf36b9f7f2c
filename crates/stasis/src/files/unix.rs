//! Unix sockets: connected pairs with both ends in the tree (socketpair, or a connection
//! accepted from a listener), listening sockets, and unconnected sockets, bound or not.
//! What is queued for each socket to read is peeked at dump (SO_PEEK_OFF) and sent again
//! from the peer at restore, message by message, so datagram and record boundaries hold.

use stasis_image::{FdImage, FileKind, SocketOptions};
use stasis_sys::{own, process};

use super::FdProbe;
use crate::error::{Result, SysContext};

const TCP_LISTEN: u8 = 10;

pub fn dump(p: &FdProbe) -> Result<Option<FileKind>> {
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
    if !s.pending.is_empty() {
        return Err(p.unsupported(&format!(
            "a listening unix socket with {} connection(s) waiting to be accepted (not supported yet)",
            s.pending.len()
        )));
    }
    let local =
        process::pidfd_getfd(p.pid, p.fd).ctx(p.pid, || format!("fd {} ({})", p.fd, p.target))?;
    let fd = local.raw();
    let opt =
        |o| own::get_sockopt_int(fd, libc::SOL_SOCKET, o).ctx(p.pid, || format!("fd {}", p.fd));
    let options = SocketOptions {
        sndbuf: opt(libc::SO_SNDBUF)?,
        rcvbuf: opt(libc::SO_RCVBUF)?,
        passcred: opt(libc::SO_PASSCRED)? != 0,
        peek_off: opt(libc::SO_PEEK_OFF)?,
    };
    Ok(Some(FileKind::UnixSocket {
        inode,
        kind: s.kind,
        name: s.name.clone().filter(|n| !n.is_empty()),
        peer: s.peer.filter(|&p| p != 0),
        listen_backlog: (s.state == TCP_LISTEN).then_some(s.wqueue),
        shutdown: s.shutdown,
        options,
    }))
}

/// The messages queued for `pid`'s socket `fd` to read, left queued.
pub fn peek(pid: i32, fd: i32) -> Result<Vec<Vec<u8>>> {
    let local = process::pidfd_getfd(pid, fd).ctx(pid, || format!("fd {fd}"))?;
    own::peek_socket(local.raw()).ctx(pid, || format!("read what is queued in socket fd {fd}"))
}

/// A socket created at restore, by inode.
pub struct NewSocket {
    pub inode: u64,
    pub fd: i32,
}

/// Creates the socket `f` describes (and its peer, for a connected pair, with `peer_file`
/// describing the peer); `queued(inode)` gives what each must find queued to read.
pub fn create<'a>(
    f: &FdImage,
    peer_file: Option<&FdImage>,
    queued: impl Fn(u64) -> &'a [Vec<u8>],
) -> std::result::Result<Vec<NewSocket>, String> {
    let FileKind::UnixSocket {
        inode,
        kind,
        name,
        peer,
        listen_backlog,
        ..
    } = &f.file
    else {
        return Err(format!("fd {}: not a unix socket", f.fd));
    };
    let err = |e: stasis_sys::SysError| format!("fd {} (socket:[{inode}]): {e}", f.fd);
    let mut made = Vec::new();
    match (peer, peer_file) {
        (Some(peer), Some(pf)) => {
            let (a, b) = own::unix_socketpair(*kind as i32).map_err(err)?;
            made.push(NewSocket {
                inode: *inode,
                fd: a,
            });
            made.push(NewSocket {
                inode: *peer,
                fd: b,
            });
            for m in queued(*inode) {
                own::send_message(b, m).map_err(err)?;
            }
            for m in queued(*peer) {
                own::send_message(a, m).map_err(err)?;
            }
            set_options(a, f).map_err(err)?;
            set_options(b, pf).map_err(err)?;
            shut(a, f, Some(pf)).map_err(err)?;
            shut(b, pf, Some(f)).map_err(err)?;
        }
        (Some(peer), None) => {
            return Err(format!(
                "fd {}: socket:[{inode}]'s peer socket:[{peer}] is not in the image",
                f.fd
            ))
        }
        (None, _) => {
            let fd = own::unix_socket(*kind as i32, name.as_deref()).map_err(err)?;
            made.push(NewSocket { inode: *inode, fd });
            if let Some(backlog) = listen_backlog {
                own::listen(fd, *backlog as i32).map_err(err)?;
            }
            set_options(fd, f).map_err(err)?;
            shut(fd, f, None).map_err(err)?;
        }
    }
    Ok(made)
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
