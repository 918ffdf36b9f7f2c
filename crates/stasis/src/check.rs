//! TEMPORARY until stasis_sys::features lands.
pub struct Feature { pub name: &'static str, pub present: bool, pub required: bool, pub detail: String }
pub fn probe_all() -> Vec<Feature> { Vec::new() }
pub fn probe(_n: &str) -> Option<Feature> { None }
pub fn names() -> Vec<&'static str> { Vec::new() }
