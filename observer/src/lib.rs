//! observer: how Kubernetes containers die, from the kernel's point of view.
//!
//! The pipeline, in the order data flows:
//! - [`kernel`]: the eBPF probes (built from `observer-ebpf`), loading and attaching them;
//! - [`events`]: ring-buffer records decoded into typed events;
//! - [`correlate`]: pure state machine, events -> one termination per container PID 1;
//! - [`metadata`]: who a cgroup belongs to (namespace, pod, container, workload);
//! - [`record`]: the journal schema; [`sinks`]: Prometheus metrics, journal, HTTP;
//! - [`pipeline`]: the record path, events -> records -> sinks, pure but for the sinks;
//! - [`daemon`]: wires the above for `observer run`; [`check`] is the preflight;
//!   [`cgroup`] and [`existing`]: the start-up walk, containers older than the daemon;
//! - [`kubelet`]: kubelet's killContainer sequence, pure; [`drill`] carries it out on a workload;
//! - [`prestop`]: preStop as observed: exec sessions, the hook among them, inference, the record field.
//! - [`verdict`]: each record judged against kubelet's rules (kept, kill_late, kill_early);
//!   [`status`]: what kubelet will report for it; [`stuck`]: what holds a SIGKILLed container;
//!   [`pod`]: one record for a pod's end, from its containers'.
//! - [`report`]: `observer report`, post-incident analysis of the journal.
//! - [`privileges`]: what `observer run` drops once started; the seccomp profile's installer.
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod clock;
pub mod correlate;
pub mod daemon;
pub mod drill;
pub mod duration;
pub mod events;
pub mod existing;
#[cfg(test)]
mod fuzz;
pub mod kernel;
pub mod kubelet;
pub mod metadata;
pub mod node;
pub mod pipeline;
pub mod pod;
pub mod prestop;
pub mod privileges;
pub mod record;
pub mod report;
pub mod signals;
pub mod sinks;
pub mod status;
pub mod stuck;
pub mod traffic;
pub mod verdict;
