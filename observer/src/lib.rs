//! observer: how Kubernetes containers die, from the kernel's point of view.
//!
//! The pipeline, in the order data flows:
//! - [`kernel`]: the eBPF probes (built from `observer-ebpf`) and reading their ring buffer;
//! - [`events`]: ring-buffer records decoded into typed events;
//! - [`correlate`]: pure state machine, events -> one termination record per container;
//! - [`metadata`]: who a cgroup belongs to (namespace, pod, container, workload);
//! - [`sinks`]: Prometheus metrics, the JSON-lines journal, the HTTP server;
//! - [`daemon`]: wires the above for `observer run`; [`check`] is the preflight.
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod kernel;
pub mod signals;
