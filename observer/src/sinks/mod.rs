//! Where records and counts go: Prometheus metrics, the journal, the recent-terminations
//! store, the HTTP server.
pub mod http;
pub mod journal;
pub mod metrics;
pub mod recent;
