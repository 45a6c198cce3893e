//! HTTP: `GET /metrics` (Prometheus text), `GET /healthz`, `GET /terminations` (the most
//! recent records as a JSON array, newest first, filtered by query parameters) and `GET /pods`
//! (the most recent pod records, the same way). With a web config file ([`super::web`]) it
//! serves TLS and asks every path but /healthz for credentials.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use axum::{
    extract::{Query, Request, State},
    http::{
        header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
        StatusCode,
    },
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use chrono::{DateTime, Utc};

use super::{
    metrics::Metrics,
    recent::{Recent, RecentPods},
    web::{Auth, Denied, Rejected, TlsListener, WebConfig},
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
    /// CLOCK_MONOTONIC ns of the pipeline's last tick ([`crate::clock::monotonic_ns`]):
    /// /healthz fails once it is [`PIPELINE_STALL_NS`] old.
    pub last_tick_ns: AtomicU64,
    /// CLOCK_MONOTONIC ns since which a journal write has been pending; 0: none is.
    pub journal_stalled_since_ns: AtomicU64,
    /// Requests and connections the server refused before a handler ran.
    pub rejected: Arc<Rejected>,
}

/// The pipeline ticks every 50 ms (`daemon::TICK`) and a tick's work is milliseconds; a loop
/// that has not come back to tick for 10 s (200 ticks) is stuck, not busy: /healthz then
/// fails and kubelet's liveness probe (3 failures 10 s apart) restarts the daemon, which the
/// pinned probes survive. Shorter would fail a node that is merely starved for a moment.
pub const PIPELINE_STALL_NS: u64 = 10_000_000_000;

/// /healthz's answer: 503 once the pipeline has stopped or has not ticked for
/// [`PIPELINE_STALL_NS`]; else 200, saying so when the journal's writes are stalled (the
/// pipeline runs on and the records reach the metrics and /terminations; a restart would not
/// mend a hung disk, so it is not asked for). Times are CLOCK_MONOTONIC ns.
pub fn health(
    running: bool,
    now_ns: u64,
    last_tick_ns: u64,
    journal_stalled_since_ns: u64,
) -> (StatusCode, String) {
    let secs = |since: u64| now_ns.saturating_sub(since) / 1_000_000_000;
    if !running {
        return (StatusCode::SERVICE_UNAVAILABLE, "event pipeline stopped\n".into());
    }
    if now_ns.saturating_sub(last_tick_ns) >= PIPELINE_STALL_NS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("event pipeline stalled: last tick {} s ago\n", secs(last_tick_ns)),
        );
    }
    if journal_stalled_since_ns != 0 {
        let stalled = secs(journal_stalled_since_ns);
        return (StatusCode::OK, format!("ok; journal writes stalled for {stalled} s\n"));
    }
    (StatusCode::OK, "ok\n".into())
}

/// /healthz is open (kubelet probes it without credentials; it tells only whether the daemon
/// works); the other paths ask for credentials when the web config names any.
pub fn router(shared: Arc<Shared>, web: &WebConfig) -> Router {
    let mut protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/terminations", get(terminations))
        .route("/pods", get(pods));
    if web.auth.required() {
        let state = (web.auth.clone(), shared.clone());
        protected = protected.route_layer(middleware::from_fn_with_state(state, authorize));
    }
    let mut router =
        Router::new().route("/healthz", get(healthz)).merge(protected).with_state(shared);
    if !web.headers.is_empty() {
        let headers = Arc::new(web.headers.clone());
        router = router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let headers = headers.clone();
            async move {
                let mut resp = next.run(req).await;
                for (name, value) in headers.iter() {
                    resp.headers_mut().insert(name.clone(), value.clone());
                }
                resp
            }
        }));
    }
    router
}

/// 401 with the schemes to use (RFC 9110 15.5.2), or 429 when password checks are backed up.
async fn authorize(
    State((auth, shared)): State<(Arc<Auth>, Arc<Shared>)>,
    req: Request,
    next: Next,
) -> Response {
    match auth.check(req.headers().get(AUTHORIZATION)).await {
        Ok(()) => next.run(req).await,
        Err(Denied::Unauthorized) => {
            shared.rejected.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut resp = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
            for c in auth.challenges() {
                resp.headers_mut().append(WWW_AUTHENTICATE, c);
            }
            resp
        }
        Err(Denied::Busy) => {
            shared.rejected.busy.fetch_add(1, Ordering::Relaxed);
            (StatusCode::TOO_MANY_REQUESTS, "too many password checks waiting\n").into_response()
        }
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    health(
        s.healthy.load(Ordering::Relaxed),
        crate::clock::monotonic_ns(),
        s.last_tick_ns.load(Ordering::Relaxed),
        s.journal_stalled_since_ns.load(Ordering::Relaxed),
    )
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

/// Serves until the listener fails: HTTPS when the web config has TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    web: WebConfig,
) -> std::io::Result<()> {
    log::info!("HTTP endpoint: {} (/healthz open)", web.describe());
    if web.tls.is_none() && web.auth.required() {
        log::warn!("passwords and tokens cross the network in clear text: add tls_server_config");
    }
    let app = router(shared.clone(), &web);
    match &web.tls {
        None => axum::serve(listener, app).await,
        Some(tls) => {
            let listener = TlsListener::new(listener, tls.clone(), shared.rejected.clone());
            axum::serve(listener, app).await
        }
    }
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

    #[test]
    fn healthz_fails_a_stopped_or_stalled_pipeline_not_a_stalled_journal() {
        const S: u64 = 1_000_000_000;
        let now = 1_000 * S;
        let ok = (StatusCode::OK, "ok\n".to_string());
        let unavailable = |body: &str| (StatusCode::SERVICE_UNAVAILABLE, body.to_string());
        assert_eq!(health(true, now, now - S / 20, 0), ok);
        assert_eq!(health(true, now, now - PIPELINE_STALL_NS + 1, 0), ok);
        // A tick stored after the handler read the clock.
        assert_eq!(health(true, now, now + 5, 0), ok);
        assert_eq!(
            health(true, now, now - PIPELINE_STALL_NS, 0),
            unavailable("event pipeline stalled: last tick 10 s ago\n")
        );
        assert_eq!(
            health(true, now, now - 75 * S - S / 2, 0),
            unavailable("event pipeline stalled: last tick 75 s ago\n")
        );
        assert_eq!(health(false, now, now, 0), unavailable("event pipeline stopped\n"));
        assert_eq!(health(false, now, 0, 0), unavailable("event pipeline stopped\n"));
        assert_eq!(
            health(true, now, now, now - 42 * S),
            (StatusCode::OK, "ok; journal writes stalled for 42 s\n".to_string())
        );
        assert_eq!(
            health(true, now, now - 60 * S, now - 42 * S),
            unavailable("event pipeline stalled: last tick 60 s ago\n")
        );
    }
}
