//! Credentials: uids, gids, groups, capability sets, securebits.

use stasis_image::Credentials;
use stasis_sys::procfs::{self, Status};

use crate::error::{ProcContext, Result};
use crate::inject::Session;

const PR_GET_SECUREBITS: u64 = 27;
const PR_SET_SECUREBITS: u64 = 28;
const PR_CAPBSET_DROP: u64 = 24;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_SET_KEEPCAPS: u64 = 8;
const CAP_VERSION_3: u32 = 0x2008_0522;
const SECBIT_KEEP_CAPS: u32 = 1 << 4;
const LAST_CAP: u32 = 63;

pub fn dump(status: &Status, s: &mut Session) -> Result<Credentials> {
    let securebits = s.call(
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        [PR_GET_SECUREBITS, 0, 0, 0, 0, 0],
    )? as u32;
    Ok(Credentials {
        uid: status.uid,
        gid: status.gid,
        groups: status.groups.clone(),
        cap_inheritable: status.cap_inh,
        cap_permitted: status.cap_prm,
        cap_effective: status.cap_eff,
        cap_bounding: status.cap_bnd,
        cap_ambient: status.cap_amb,
        securebits,
    })
}

/// Credentials for threads that one task creates while its own do not change: every new
/// thread starts with the same credentials, so whether they already are the wanted ones
/// is checked once (two remote calls fewer per thread).
#[derive(Default)]
pub struct Inherited {
    already: Vec<Credentials>,
}

impl Inherited {
    /// [`restore`] for a thread just created by the task.
    pub fn restore(&mut self, s: &mut Session, c: &Credentials) -> Result<()> {
        if self.already.contains(c) {
            return Ok(());
        }
        if restore(s, c)? == Changed::No {
            self.already.push(c.clone());
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    No,
    Yes,
}

/// Sets the credentials of the task the session runs in, if they differ from what it has.
/// Order matters: what needs privileges first, the uid change late, capabilities after it.
pub fn restore(s: &mut Session, c: &Credentials) -> Result<Changed> {
    let pid = s.pid();
    let now = procfs::task_status(pid, s.tid()).proc(pid)?;
    let securebits_now = s.call(
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        [PR_GET_SECUREBITS, 0, 0, 0, 0, 0],
    )? as u32;
    let same = now.uid == c.uid
        && now.gid == c.gid
        && now.groups == c.groups
        && now.cap_inh == c.cap_inheritable
        && now.cap_prm == c.cap_permitted
        && now.cap_eff == c.cap_effective
        && now.cap_bnd == c.cap_bounding
        && now.cap_amb == c.cap_ambient
        && securebits_now == c.securebits;
    if same {
        return Ok(Changed::No);
    }
    for cap in 0..=LAST_CAP {
        let bit = 1u64 << cap;
        if now.cap_bnd & bit != 0 && c.cap_bounding & bit == 0 {
            s.call(
                "prctl(PR_CAPBSET_DROP)",
                libc::SYS_prctl,
                [PR_CAPBSET_DROP, cap as u64, 0, 0, 0, 0],
            )?;
        }
    }
    // Securebits other than keep-caps need privileges: set them while we still have them.
    if (c.securebits & !SECBIT_KEEP_CAPS) != (securebits_now & !SECBIT_KEEP_CAPS) {
        s.call(
            "prctl(PR_SET_SECUREBITS)",
            libc::SYS_prctl,
            [
                PR_SET_SECUREBITS,
                (c.securebits | SECBIT_KEEP_CAPS) as u64,
                0,
                0,
                0,
                0,
            ],
        )?;
    }
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let gaddr = s.put(512, &groups)?;
    s.call(
        "setgroups",
        libc::SYS_setgroups,
        [c.groups.len() as u64, gaddr, 0, 0, 0, 0],
    )?;
    s.call(
        "setresgid",
        libc::SYS_setresgid,
        [c.gid[0] as u64, c.gid[1] as u64, c.gid[2] as u64, 0, 0, 0],
    )?;
    s.call(
        "setfsgid",
        libc::SYS_setfsgid,
        [c.gid[3] as u64, 0, 0, 0, 0, 0],
    )?;
    // Keep the permitted set across the uid change; capset below sets the real sets.
    s.call(
        "prctl(PR_SET_KEEPCAPS)",
        libc::SYS_prctl,
        [PR_SET_KEEPCAPS, 1, 0, 0, 0, 0],
    )?;
    s.call(
        "setresuid",
        libc::SYS_setresuid,
        [c.uid[0] as u64, c.uid[1] as u64, c.uid[2] as u64, 0, 0, 0],
    )?;
    s.call(
        "setfsuid",
        libc::SYS_setfsuid,
        [c.uid[3] as u64, 0, 0, 0, 0, 0],
    )?;
    let mut capdata = Vec::new();
    capdata.extend_from_slice(&CAP_VERSION_3.to_le_bytes());
    capdata.extend_from_slice(&0i32.to_le_bytes());
    for half in 0..2 {
        let sh = 32 * half;
        for set in [c.cap_effective, c.cap_permitted, c.cap_inheritable] {
            capdata.extend_from_slice(&((set >> sh) as u32).to_le_bytes());
        }
    }
    let hdr = s.put(0, &capdata)?;
    s.call("capset", libc::SYS_capset, [hdr, hdr + 8, 0, 0, 0, 0])?;
    let keep = (c.securebits & SECBIT_KEEP_CAPS != 0) as u64;
    s.call(
        "prctl(PR_SET_KEEPCAPS)",
        libc::SYS_prctl,
        [PR_SET_KEEPCAPS, keep, 0, 0, 0, 0],
    )?;
    for cap in 0..=LAST_CAP {
        if c.cap_ambient & (1u64 << cap) != 0 {
            s.call(
                "prctl(PR_CAP_AMBIENT_RAISE)",
                libc::SYS_prctl,
                [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap as u64, 0, 0, 0],
            )?;
        }
    }
    Ok(Changed::Yes)
}

/// The audit login uid of a process (`None` if the kernel has no audit support).
pub fn dump_loginuid(pid: i32) -> Option<u32> {
    read_loginuid(&pid.to_string())
}

fn read_loginuid(pid: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/loginuid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Run by a restore child on itself (a task can only set its own login uid): sets the
/// image's login uid if it differs from the one inherited from the tool. Threads made
/// later inherit it. (The audit session id cannot be chosen: the kernel gives a new one.)
pub fn restore_loginuid_in_child(want: Option<u32>) -> std::result::Result<(), String> {
    let Some(want) = want else {
        return Ok(());
    };
    if read_loginuid("self") == Some(want) {
        return Ok(());
    }
    std::fs::write("/proc/self/loginuid", want.to_string()).map_err(|e| {
        format!("set the audit login uid to {want} (/proc/self/loginuid): {e} (the kernel allows it once if unset, else with CAP_AUDIT_CONTROL unless loginuid is immutable)")
    })
}
