//! sock_diag over netlink: what the kernel knows about unix sockets (peer, name, queues,
//! pending connections) that no /proc file tells.

use crate::{Errno, SysError, SysResult};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_VFS: u32 = 2;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_ICONS: u32 = 8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// One unix socket as sock_diag describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSocket {
    pub ino: u64,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u8,
    /// TCP-like state: 1 established, 7 close (unconnected), 10 listen.
    pub state: u8,
    /// The bound address (without the family), if any; abstract names start with a NUL.
    pub name: Option<Vec<u8>>,
    pub peer: Option<u64>,
    /// Inodes of connections waiting in a listening socket's backlog.
    pub pending: Vec<u64>,
    pub rqueue: u32,
    pub wqueue: u32,
    /// SHUT_RD (1) and/or SHUT_WR (2) as seen by this socket.
    pub shutdown: u8,
    /// For a socket bound to a path: the device and inode of the file binding made (the
    /// device as `stat` gives it).
    pub file: Option<(u64, u64)>,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes(b[o..o + 2].try_into().expect("2 bytes"))
}

/// Every unix socket of the caller's network namespace.
pub fn unix_sockets() -> SysResult<Vec<UnixSocket>> {
    // SAFETY: socket() takes integers only.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(SysError::last("socket(NETLINK_SOCK_DIAG)", "unix sockets"));
    }
    let r = query(fd);
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    r
}

fn query(fd: i32) -> SysResult<Vec<UnixSocket>> {
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8);
    req.push(0); // protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // all states
    req.extend_from_slice(&0u32.to_ne_bytes()); // ino
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    req.extend_from_slice(&show.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // cookie: none
                                       // SAFETY: `req` is a valid buffer of its length.
    let n = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(SysError::last("send", "sock_diag request"));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: receiving into `buf`, which has its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return Err(SysError::last("recv", "sock_diag"));
        }
        let data = &buf[..n as usize];
        let mut off = 0usize;
        while off + 16 <= data.len() {
            let len = u32_at(data, off) as usize;
            let kind = u16_at(data, off + 4);
            if len < 16 || off + len > data.len() {
                return Err(SysError::new(
                    "sock_diag",
                    "malformed reply",
                    Errno(libc::EPROTO),
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let err = if len >= 20 {
                        -(u32_at(data, off + 16) as i32)
                    } else {
                        libc::EPROTO
                    };
                    return Err(SysError::new("sock_diag", "unix sockets", Errno(err)));
                }
                _ => out.push(parse_msg(&data[off + 16..off + len])),
            }
            off += (len + 3) & !3;
        }
    }
}

fn parse_msg(m: &[u8]) -> UnixSocket {
    let mut s = UnixSocket::default();
    if m.len() < 16 {
        return s;
    }
    s.kind = m[1];
    s.state = m[2];
    s.ino = u32_at(m, 4) as u64;
    let mut off = 16usize;
    while off + 4 <= m.len() {
        let len = u16_at(m, off) as usize;
        let ty = u16_at(m, off + 2);
        if len < 4 || off + len > m.len() {
            break;
        }
        let p = &m[off + 4..off + len];
        match ty {
            UNIX_DIAG_NAME => s.name = Some(p.to_vec()),
            // struct unix_diag_vfs: inode, then the kernel's dev_t (major << 20 | minor).
            UNIX_DIAG_VFS if p.len() >= 8 => {
                let dev = u32_at(p, 4);
                let dev = libc::makedev(dev >> 20, dev & 0xfffff);
                s.file = Some((dev, u64::from(u32_at(p, 0))));
            }
            UNIX_DIAG_PEER if p.len() >= 4 => s.peer = Some(u32_at(p, 0) as u64),
            UNIX_DIAG_ICONS => s.pending = p.chunks_exact(4).map(|c| u32_at(c, 0) as u64).collect(),
            UNIX_DIAG_RQLEN if p.len() >= 8 => {
                s.rqueue = u32_at(p, 0);
                s.wqueue = u32_at(p, 4);
            }
            UNIX_DIAG_SHUTDOWN if !p.is_empty() => s.shutdown = p[0],
            _ => {}
        }
        off += (len + 3) & !3;
    }
    s
}
