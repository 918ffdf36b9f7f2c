//! The only crate of stasis that contains `unsafe` code.
//!
//! Thin, typed wrappers over the Linux interfaces that checkpoint/restore needs: ptrace,
//! remote (injected) syscalls, clone3 with set_tid, pidfds, process_vm_*, prctl, and the
//! /proc parsers. Every `unsafe` block carries a `// SAFETY:` comment; nothing above this
//! crate sees a raw pointer.

pub mod features;
pub mod inotify;
pub mod mem;
pub mod mqueue;
pub mod own;
pub mod process;
pub mod procfs;
pub mod ptrace;
pub mod pty;
pub mod remote;
pub mod sockdiag;
pub mod sysvipc;

pub use errno::{Errno, SysError, SysResult};

mod errno {
    /// An errno value with its name, for messages.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Errno(pub i32);

    impl Errno {
        pub fn last() -> Self {
            Self(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }

    impl std::fmt::Display for Errno {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
        }
    }

    /// A failed system call: which call, on what, and the errno.
    #[derive(Debug, thiserror::Error)]
    #[error("{call}({what}): {errno}")]
    pub struct SysError {
        pub call: &'static str,
        pub what: String,
        pub errno: Errno,
    }

    impl SysError {
        pub fn new(call: &'static str, what: impl Into<String>, errno: Errno) -> Self {
            Self {
                call,
                what: what.into(),
                errno,
            }
        }

        pub fn last(call: &'static str, what: impl Into<String>) -> Self {
            Self::new(call, what, Errno::last())
        }
    }

    pub type SysResult<T> = Result<T, SysError>;
}
