//! `stasis check`: which kernel features are present.

pub use stasis_sys::features::{names, probe, probe_all, Feature};
