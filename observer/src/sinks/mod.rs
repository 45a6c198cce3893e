//! Where records and counts go: Prometheus metrics, the journal, the HTTP server.
pub mod http;
pub mod journal;
pub mod metrics;
