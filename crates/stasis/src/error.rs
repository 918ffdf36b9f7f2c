//! The engine's error type: every variant names the task and the object it concerns.

use stasis_image::ImageError;
use stasis_sys::procfs::ProcError;
use stasis_sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process to dump does not exist.
    #[error("process {0} does not exist")]
    NoSuchProcess(i32),
    /// The target is something stasis will not dump (itself, a thread, a kernel thread...).
    #[error("pid {pid}: cannot dump: {reason}")]
    BadTarget { pid: i32, reason: String },
    /// The process holds an object that stasis cannot checkpoint (yet).
    #[error("pid {pid}: {object}: not supported: {detail}")]
    Unsupported {
        pid: i32,
        object: String,
        detail: String,
    },
    /// A system call failed.
    #[error("pid {pid}: {context}: {source}")]
    Sys {
        pid: i32,
        context: String,
        #[source]
        source: SysError,
    },
    /// Reading or parsing /proc failed.
    #[error("pid {pid}: {source}")]
    Proc {
        pid: i32,
        #[source]
        source: ProcError,
    },
    /// The image could not be read or written.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The image is valid but cannot be restored on this machine as it is.
    #[error("cannot restore pid {pid}: {reason}")]
    Restore { pid: i32, reason: String },
    /// The PID the image needs is taken by a live process.
    #[error("cannot restore pid {pid}: the PID is in use by a running process ({comm})")]
    PidInUse { pid: i32, comm: String },
    /// The dump failed after it had killed processes of the tree (their death measures
    /// their SysV semaphore undo adjustments): the rest of the tree was killed too.
    #[error(
        "the dump failed and the tree was killed (process(es) of it had been killed to \
         measure their semaphore undo adjustments): {0}"
    )]
    TreeKilled(Box<Error>),
    /// A restored child reported a failure while setting itself up.
    #[error("restored pid {pid} failed to set itself up: {message}")]
    ChildSetup { pid: i32, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds the task and what was being done to a system-call error.
pub trait SysContext<T> {
    fn ctx(self, pid: i32, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, SysError> {
    fn ctx(self, pid: i32, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            pid,
            context: context(),
            source,
        })
    }
}

/// Adds the task to a /proc error.
pub trait ProcContext<T> {
    fn proc(self, pid: i32) -> Result<T>;
}

impl<T> ProcContext<T> for std::result::Result<T, ProcError> {
    fn proc(self, pid: i32) -> Result<T> {
        self.map_err(|source| Error::Proc { pid, source })
    }
}

impl Error {
    /// PID (or TID) `pid` of the image is taken: named with the command of what has it.
    pub fn pid_in_use(pid: i32) -> Error {
        Error::PidInUse {
            pid,
            comm: stasis_sys::procfs::status(pid)
                .map(|s| s.name)
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}
