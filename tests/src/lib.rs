//! Harness for the root integration tests: the real `observer` binary against the real kernel,
//! real pid namespaces in real kubepods-style cgroups, and real runc containers.
//!
//! Everything a test starts is ended by PID and everything it creates is removed on drop.
//! Each test gets its own pod uid, container id and namespace name (through a kubelet log
//! layout of its own), so journal records and metric series are its own even when tests run
//! in parallel.
//!
//! One module a concern, everything re-exported here:
//! - `names`: unique names, container ids and pod uids;
//! - `cgroups`: the v2 mount, removing a cgroup from every hierarchy, a memory limit;
//! - `pod`: a pod in kubelet's cgroup layout (cgroupfs or systemd driver, any QoS, any
//!   `--cgroup-root`) and log layout ([`Pod`], [`Layout`]);
//! - `nsinit`: PID 1 of a fresh pid namespace ([`NsInit`]) and its workloads;
//! - `daemon`: the daemon under test ([`Daemon`]), its metrics, ending children;
//! - `net`: network namespaces of the test's own ([`Netns`]), a pod's and a client's joined by
//!   a veth pair ([`VethPair`]), connections from inside one, the kernel's monotonic clock;
//! - `record`: filters and field lists for the journal's records;
//! - `runc`: runc containers ([`Runc`]) from a [`Spec`] (busybox, or the host's programs
//!   read-only; mounts, joined namespaces, capabilities), alone or in a pod; [`Pidfd`];
//! - `progs`: the trigger programs of `tests/progs`;
//! - `time`: the records' timestamps and intervals against the test's clock;
//! - [`containerd`], [`prometheus`], [`vm`]: a private containerd, a real Prometheus, the
//!   kernel matrix.

mod cgroups;
mod daemon;
mod names;
mod net;
mod nsinit;
mod pod;
mod progs;
mod record;
mod runc;
mod time;

pub mod containerd;
pub mod prometheus;
pub mod vm;
pub mod web;

pub use cgroups::{cgroup_v2_root, remove_cgroup_everywhere, MemoryLimit, MEMORY_HOG};
pub use daemon::{
    cleanup_pins, free_port, metric_value, observer_bin, require_root, stop_child, Daemon, Exit,
};
pub use names::{hex64, unique, uuid};
pub use net::{monotonic, Netns, VethPair};
pub use nsinit::{args, graceful_inits, handler_exits, wait_handler, NsInit};
pub use pod::{Layout, Pod};
pub use progs::trigger_program;
pub use record::{by_id, INTERVALS, TIMESTAMPS};
pub use runc::{
    runc_container, runc_in_pod, spec_container, spec_in_pod, Pidfd, Runc, Sent, Spec,
    KUBERNETES_CAPS,
};
pub use time::{close_to, epoch_ns, CLOCK_SLACK};
