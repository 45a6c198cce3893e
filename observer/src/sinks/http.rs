//! HTTP: `GET /metrics` (Prometheus text), `GET /healthz`, `GET /terminations` (the most
//! recent records as a JSON array, newest first, filtered by query parameters) and `GET /pods`
//! (the most recent pod records, the same way).

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use axum::{
    extract::{Query, State},
    http::{header::CONTENT_TYPE, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use chrono::{DateTime, Utc};

use super::{
    metrics::Metrics,
    recent::{Recent, RecentPods},
};
use crate::record::filter::{self, Filter};

/// What the handlers read.
pub struct Shared {
    pub metrics: Metrics,
    /// False once the event pipeline has stopped: /healthz then fails.
    pub healthy: AtomicBool,
    /// The most recent records, for /terminations.
    pub recent: Recent,
    /// The most recent pod records, for /pods.
    pub pods: RecentPods,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/terminations", get(terminations))
        .route("/pods", get(pods))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.healthy.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "event pipeline stopped\n")
    }
}

/// The parameters /terminations understands.
pub const TERMINATIONS_PARAMS: &str = "since, namespace, workload, pod, outcome, verdict, limit";

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown parameter {0:?}: expected {TERMINATIONS_PARAMS}")]
    Unknown(String),
    #[error("parameter {0:?} given twice")]
    Repeated(String),
    #[error("parameter {0:?} is empty")]
    Empty(String),
    #[error("since: {0}")]
    Since(filter::FilterError),
    #[error("outcome: {0}")]
    Outcome(filter::FilterError),
    #[error("verdict: {0}")]
    Verdict(filter::FilterError),
    #[error("limit {0:?}: expected a whole number of at least 1")]
    Limit(String),
}

/// `since` (a duration before now, or a time), exact names, `limit` (default: all held).
pub fn parse_query(
    params: &[(String, String)],
    now: DateTime<Utc>,
    max: usize,
) -> Result<(Filter, usize), QueryError> {
    let mut filter = Filter::default();
    let mut limit = None;
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return Err(QueryError::Repeated(k.clone()));
        }
        seen.push(k);
        if v.is_empty() {
            return Err(QueryError::Empty(k.clone()));
        }
        match k.as_str() {
            "since" => filter.from = Some(filter::parse_since(v, now).map_err(QueryError::Since)?),
            "namespace" => filter.namespace = Some(v.clone()),
            "workload" => filter.workload = Some(v.clone()),
            "pod" => filter.pod = Some(v.clone()),
            "outcome" => {
                filter.outcome = Some(filter::parse_outcome(v).map_err(QueryError::Outcome)?)
            }
            "verdict" => {
                filter.verdict = Some(filter::parse_verdict(v).map_err(QueryError::Verdict)?)
            }
            "limit" => {
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| QueryError::Limit(v.clone()))?;
                limit = Some(n);
            }
            _ => return Err(QueryError::Unknown(k.clone())),
        }
    }
    Ok((filter, limit.unwrap_or(max).min(max)))
}

async fn terminations(
    State(s): State<Arc<Shared>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    answer(&params, s.recent.capacity(), |f, n| s.recent.query(f, n))
}

async fn pods(
    State(s): State<Arc<Shared>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    answer(&params, s.pods.capacity(), |f, n| s.pods.query(f, n))
}

/// The records `query` picks for the parameters, as a JSON array; or HTTP 400 saying why not.
fn answer<T: serde::Serialize>(
    params: &[(String, String)],
    capacity: usize,
    query: impl Fn(&Filter, usize) -> Vec<Arc<T>>,
) -> Response {
    match parse_query(params, Utc::now(), capacity) {
        Ok((filter, limit)) => {
            let body = json_array(&query(&filter, limit));
            ([(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// `[record,record]` and a newline, each record exactly its journal line.
fn json_array<T: serde::Serialize>(records: &[Arc<T>]) -> String {
    let records: Vec<&T> = records.iter().map(|r| &**r).collect();
    let mut body = serde_json::to_string(&records).expect("a journal line always serializes");
    body.push('\n');
    body
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn q(s: &[(&str, &str)]) -> Result<(Filter, usize), QueryError> {
        let params: Vec<(String, String)> =
            s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_query(&params, filter::parse_time("2026-08-01T12:00:00Z").unwrap(), 1000)
    }

    #[test]
    fn good_parameters() {
        assert_eq!(q(&[]), Ok((Filter::default(), 1000)));
        let (f, limit) = q(&[
            ("since", "1h"),
            ("namespace", "shop"),
            ("workload", "web"),
            ("pod", "web-1"),
            ("outcome", "oom_killed"),
            ("verdict", "kill_early"),
            ("limit", "20"),
        ])
        .unwrap();
        assert_eq!(limit, 20);
        assert_eq!(f.from, Some(filter::parse_time("2026-08-01T11:00:00Z").unwrap()));
        assert_eq!(
            (f.namespace.as_deref(), f.workload.as_deref(), f.pod.as_deref()),
            (Some("shop"), Some("web"), Some("web-1"))
        );
        assert_eq!(f.outcome.as_deref(), Some("oom_killed"));
        assert_eq!(f.verdict.as_deref(), Some("kill_early"));
        assert_eq!(q(&[("limit", "5000")]).unwrap().1, 1000, "at most what is held");
        assert!(q(&[("since", "2026-08-01T00:00:00Z")]).is_ok());
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let msg = |s: &[(&str, &str)]| q(s).unwrap_err().to_string();
        assert!(msg(&[("namepsace", "x")]).contains("unknown parameter \"namepsace\""));
        assert!(msg(&[("limit", "0")]).contains("at least 1"));
        assert!(msg(&[("limit", "-3")]).contains("limit \"-3\""));
        assert!(msg(&[("limit", "ten")]).contains("limit \"ten\""));
        assert!(msg(&[("outcome", "exploded")]).contains("unknown outcome \"exploded\""));
        assert!(msg(&[("since", "yesterday")]).starts_with("since: bad duration"));
        assert!(msg(&[("namespace", "")]).contains("empty"));
        assert!(msg(&[("pod", "a"), ("pod", "b")]).contains("twice"));
    }

    #[test]
    fn the_api_says_what_the_journal_says() {
        let recent = Recent::new(2);
        let killed = Record::example().build();
        let graceful = Record::example().graceful(0.25).build();
        recent.push(&killed);
        recent.push(&graceful);
        let line = |r: &Record| serde_json::to_string(r).unwrap();
        let served = json_array(&recent.query(&Filter::default(), 2));
        assert_eq!(served, format!("[{},{}]\n", line(&graceful), line(&killed)));
        let (filter, limit) = q(&[("outcome", "killed")]).unwrap();
        let served = json_array(&recent.query(&filter, limit));
        assert_eq!(served, format!("[{}]\n", line(&killed)));
        assert_eq!(json_array::<Record>(&[]), "[]\n");
    }
}
