//! The kernel side seen from userspace: BTF offsets, tracefs, loading the probes (reading them is `daemon::reader`).
pub mod btf;
pub mod compat;
pub mod floor;
pub mod loader;
pub mod misses;
pub mod pins;
pub mod slots;
pub mod tracefs;
