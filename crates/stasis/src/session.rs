//! Sessions and process groups: what a restored process can set up itself, and which
//! ones need a stand-in leader because theirs exited before the dump.

use stasis_image::TaskImage;
use stasis_sys::own;

/// Whether a child's session or process group has a leader that is not in the tree (it
/// exited before the dump), so that a stand-in must make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaderless {
    No,
    Session(i32),
    Group(i32),
}

pub fn leaderless(tasks: &[TaskImage], parent: &TaskImage, c: &TaskImage) -> Leaderless {
    let in_tree = |pid: i32| tasks.iter().any(|t| t.pid == pid);
    if c.sid != parent.sid && c.sid != c.pid && !in_tree(c.sid) {
        Leaderless::Session(c.sid)
    } else if c.pgid != parent.pgid && c.pgid != c.pid && c.sid == parent.sid && !in_tree(c.pgid) {
        Leaderless::Group(c.pgid)
    } else {
        Leaderless::No
    }
}

/// Session and process group, as far as a process can set them itself.
/// The root's session and group, when their leaders are outside the tree, cannot be
/// joined: it keeps those it inherits from the restoring tool (or the new namespace's init).
pub fn set_session(t: &TaskImage, root: bool) -> std::result::Result<(), String> {
    let pid = t.pid;
    if t.sid == pid {
        own::setsid().map_err(|e| e.to_string())?;
    }
    if own::getpgid() == t.pgid {
        return Ok(());
    }
    if t.pgid == pid {
        own::setpgid(0, 0).map_err(|e| e.to_string())?;
    } else if t.sid != pid && !root {
        own::setpgid(0, t.pgid).map_err(|e| {
            format!(
                "join process group {} (its leader is not restored before it?): {e}",
                t.pgid
            )
        })?;
    }
    Ok(())
}
