//! The stasis engine: freeze, dump and restore, organised by kernel object.
//!
//! `dump` and `restore` only orchestrate; each object module (`mem`, `files`, `signals`,
//! `task`, `creds`) owns both its dump and its restore side.

pub mod check;
pub mod cow;
pub mod creds;
pub mod dump;
pub mod error;
pub mod files;
pub mod freeze;
pub mod inject;
pub mod ipc;
pub mod mem;
pub mod restore;
pub mod seccomp;
pub mod sem_undo;
pub mod session;
pub mod sharing;
pub mod signals;
pub mod task;
pub mod timens;
pub mod timers;
pub mod vfork;

pub use dump::{dump, DumpOptions, DumpSummary};
pub use error::{Error, Result};
pub use restore::{restore, RestoreOptions, Restored};
