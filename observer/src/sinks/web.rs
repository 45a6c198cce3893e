//! Securing the HTTP endpoint: `--web-config-file`, the web configuration file Prometheus
//! exporters share (exporter-toolkit's `docs/web-configuration.md`), so one file and one habit
//! serve node_exporter and observer alike:
//!
//! - `tls_server_config`: HTTPS with rustls (`cert_file`/`key_file` or inline `cert`/`key`,
//!   `min_version`/`max_version`, `client_auth_type` with `client_ca_file` or `client_ca`);
//! - `basic_auth_users`: user -> bcrypt hash (`$2y$`, `$2b$`, `$2a$`, as htpasswd writes);
//! - `http_server_config`: `headers` (the five exporter-toolkit allows), `http2` (accepted;
//!   observer serves HTTP/1.1 only);
//! - observer's own `bearer_tokens_file`: one token a line (`Authorization: Bearer TOKEN`,
//!   what Prometheus sends for `authorization: {credentials_file: ...}`), several for rotation.
//!
//! As in exporter-toolkit, relative paths are relative to the file's directory and an unknown
//! key is an error; a key exporter-toolkit knows and observer does not implement
//! (`cipher_suites`, `client_allowed_sans`, `rate_limit`, ...) is an error that says so, never
//! silently dropped. Everything is read and checked once, at start: a bad file stops the
//! daemon before it attaches anything. The file is not watched: a new certificate or user
//! takes a restart (exporter-toolkit reads it on every request).

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use clap::Args;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// `observer run`'s flag for the web configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct WebArgs {
    /// Web configuration file (exporter-toolkit's format): TLS (tls_server_config), basic
    /// auth (basic_auth_users: user -> bcrypt hash), bearer tokens (bearer_tokens_file).
    /// Every path but /healthz then needs the credentials. Default: plain HTTP, no auth.
    #[arg(long, value_name = "PATH", env = "OBSERVER_WEB_CONFIG")]
    pub web_config_file: Option<PathBuf>,
}

impl WebArgs {
    /// The configuration the server runs with: the file's, or plain HTTP without auth.
    pub fn load(&self) -> Result<WebConfig, WebConfigError> {
        match &self.web_config_file {
            None => Ok(WebConfig::default()),
            Some(path) => WebConfig::load(path),
        }
    }
}

/// A web configuration file that cannot be used: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("web config file {}: {problem}", path.display())]
pub struct WebConfigError {
    pub path: PathBuf,
    pub problem: Problem,
}

/// What is wrong with a web configuration file.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("{0}")]
    Yaml(serde_norway::Error),
    #[error("{key}: cannot read {}: {source}", file.display())]
    ReadFile {
        key: &'static str,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {what}")]
    Pem { key: &'static str, what: String },
    #[error("{key}: {source}")]
    Tls {
        key: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{key} is not supported by observer: {why}")]
    Unsupported { key: &'static str, why: &'static str },
    #[error("basic_auth_users: {user:?}: not a bcrypt hash ({reason}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")]
    NotBcrypt { user: String, reason: String },
}

/// The file as written. Key names and meanings are exporter-toolkit's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    bearer_tokens_file: Option<PathBuf>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    client_allowed_sans: Option<serde_norway::Value>,
    cipher_suites: Option<serde_norway::Value>,
    prefer_server_cipher_suites: Option<serde_norway::Value>,
    curve_preferences: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// exporter-toolkit's default is true; observer offers HTTP/1.1 (ALPN) either way.
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The response headers `http_server_config.headers` may set, and the values each allows
/// (none listed: any value), as exporter-toolkit's `extraHTTPHeaders` has them.
const EXTRA_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// How the server runs: TLS or not, who may read, what every response carries.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// HTTPS when set.
    pub tls: Option<Arc<ServerConfig>>,
    /// Whether the TLS handshake requires a verified client certificate.
    pub client_certs: ClientAuth,
    pub auth: Arc<Auth>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `client_auth_type`, the policies observer implements (Go's `tls.ClientAuthType` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    /// A client may connect without one; one it sends must verify.
    VerifyClientCertIfGiven,
    /// Every client sends one that verifies against `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl WebConfig {
    /// Reads and checks `path`: every file it names is loaded (certificates, keys, CAs,
    /// tokens) and every hash parsed, so what starts, serves.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let fail = |problem| WebConfigError { path: path.to_path_buf(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| fail(Problem::Read(e)))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(fail)
    }

    /// The file's text; relative paths are taken from `dir`.
    fn parse(text: &str, dir: &Path) -> Result<Self, Problem> {
        // An empty file is a valid one that changes nothing (exporter-toolkit reads it so).
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(text).map_err(Problem::Yaml)?
        };
        if file.rate_limit.is_some() {
            return Err(Problem::Unsupported {
                key: "rate_limit",
                why: "put a limit in front of the endpoint (a NetworkPolicy, a proxy)",
            });
        }
        let (tls, client_certs) = match &file.tls_server_config {
            Some(t) => {
                let (config, client) = tls_config(t, dir)?;
                (Some(Arc::new(config)), client)
            }
            None => (None, ClientAuth::NoClientCert),
        };
        let headers = match &file.http_server_config {
            Some(h) => extra_headers(&h.headers)?,
            None => Vec::new(),
        };
        let tokens = match &file.bearer_tokens_file {
            Some(f) => read_tokens(&dir.join(f))?,
            None => Vec::new(),
        };
        let auth = Auth::new(file.basic_auth_users, tokens)?;
        Ok(Self { tls, client_certs, auth: Arc::new(auth), headers })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// One line for the log: what protects the endpoint.
    pub fn describe(&self) -> String {
        let mut parts = vec![match (&self.tls, self.client_certs) {
            (None, _) => "plain HTTP".to_string(),
            (Some(_), ClientAuth::NoClientCert) => "TLS".to_string(),
            (Some(_), c) => format!("TLS ({c:?})"),
        }];
        if !self.auth.users.is_empty() {
            let n = self.auth.users.len();
            parts.push(format!("basic auth for {n} user{}", if n == 1 { "" } else { "s" }));
        }
        if !self.auth.tokens.is_empty() {
            parts.push(format!("bearer tokens: {}", self.auth.tokens.len()));
        }
        if !self.auth.required() {
            parts.push("no auth".into());
        }
        parts.join(", ")
    }
}

/// A PEM source: inline text (`cert`) or a file (`cert_file`), one at most.
fn pem_source(
    dir: &Path,
    inline: &Option<String>,
    inline_key: &'static str,
    file: &Option<PathBuf>,
    file_key: &'static str,
) -> Result<Option<(Vec<u8>, &'static str)>, Problem> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            let short = |k: &'static str| k.rsplit('.').next().unwrap_or(k);
            Err(Problem::Invalid(format!(
                "tls_server_config: give one of {} and {}, not both",
                short(inline_key),
                short(file_key)
            )))
        }
        (Some(text), None) => Ok(Some((text.clone().into_bytes(), inline_key))),
        (None, Some(f)) => {
            let file = dir.join(f);
            let bytes = std::fs::read(&file).map_err(|source| Problem::ReadFile {
                key: file_key,
                file,
                source,
            })?;
            Ok(Some((bytes, file_key)))
        }
        (None, None) => Ok(None),
    }
}

fn certificates(pem: &[u8], key: &'static str) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::Pem { key, what: format!("not PEM: {e}") })?;
    if certs.is_empty() {
        return Err(Problem::Pem { key, what: "no CERTIFICATE in it".into() });
    }
    Ok(certs)
}

/// rustls speaks TLS 1.2 and 1.3 only.
fn tls_version(
    v: &Option<String>,
    key: &'static str,
    default: &'static rustls::SupportedProtocolVersion,
) -> Result<&'static rustls::SupportedProtocolVersion, Problem> {
    match v.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(&rustls::version::TLS12),
        Some("TLS13") => Ok(&rustls::version::TLS13),
        Some(old @ ("TLS10" | "TLS11")) => Err(Problem::Unsupported {
            key,
            why: if old == "TLS10" {
                "TLS10: observer speaks TLS12 and TLS13 only"
            } else {
                "TLS11: observer speaks TLS12 and TLS13 only"
            },
        }),
        Some(other) => Err(Problem::Invalid(format!(
            "{key}: unknown TLS version {other:?}: expected TLS12 or TLS13"
        ))),
    }
}

fn tls_config(t: &TlsFile, dir: &Path) -> Result<(ServerConfig, ClientAuth), Problem> {
    for (key, value, why) in [
        ("tls_server_config.cipher_suites", &t.cipher_suites, "observer uses rustls' suites"),
        (
            "tls_server_config.prefer_server_cipher_suites",
            &t.prefer_server_cipher_suites,
            "observer uses rustls' suites",
        ),
        (
            "tls_server_config.curve_preferences",
            &t.curve_preferences,
            "observer uses rustls' groups",
        ),
        (
            "tls_server_config.client_allowed_sans",
            &t.client_allowed_sans,
            "trust a CA that signs only the allowed clients",
        ),
    ] {
        if value.is_some() {
            return Err(Problem::Unsupported { key, why });
        }
    }
    let (cert_pem, cert_key) = pem_source(
        dir,
        &t.cert,
        "tls_server_config.cert",
        &t.cert_file,
        "tls_server_config.cert_file",
    )?
    .ok_or_else(|| {
        Problem::Invalid("tls_server_config: missing one of cert or cert_file".into())
    })?;
    let (key_pem, key_key) = pem_source(
        dir,
        &t.key,
        "tls_server_config.key",
        &t.key_file,
        "tls_server_config.key_file",
    )?
    .ok_or_else(|| Problem::Invalid("tls_server_config: missing one of key or key_file".into()))?;
    let chain = certificates(&cert_pem, cert_key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Problem::Pem {
        key: key_key,
        what: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in it".into(),
            e => format!("not a PEM private key: {e}"),
        },
    })?;

    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            return Err(Problem::Unsupported {
                key: "tls_server_config.client_auth_type",
                why: "a certificate nobody verifies proves nothing: use RequireAndVerifyClientCert",
            })
        }
        Some(other) => {
            return Err(Problem::Invalid(format!(
                "tls_server_config.client_auth_type: unknown policy {other:?}: expected \
                 NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )))
        }
    };
    let ca = pem_source(
        dir,
        &t.client_ca,
        "tls_server_config.client_ca",
        &t.client_ca_file,
        "tls_server_config.client_ca_file",
    )?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        match (client_auth, ca) {
            (ClientAuth::NoClientCert, None) => WebPkiClientVerifier::no_client_auth(),
            (ClientAuth::NoClientCert, Some(_)) => return Err(Problem::Invalid(
                "tls_server_config: client CAs are given but client_auth_type is NoClientCert: \
                 set RequireAndVerifyClientCert"
                    .into(),
            )),
            (_, None) => {
                return Err(Problem::Invalid(format!(
                "tls_server_config: client_auth_type {client_auth:?} needs client_ca_file (the CA \
                 that signs the clients' certificates)"
            )))
            }
            (policy, Some((pem, key))) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates(&pem, key)? {
                    roots.add(ca).map_err(|source| Problem::Tls { key, source })?;
                }
                let builder =
                    WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone());
                let builder = if policy == ClientAuth::VerifyClientCertIfGiven {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder.build().map_err(|e| Problem::Invalid(format!("{key}: {e}")))?
            }
        };

    let min =
        tls_version(&t.min_version, "tls_server_config.min_version", &rustls::version::TLS12)?;
    let max =
        tls_version(&t.max_version, "tls_server_config.max_version", &rustls::version::TLS13)?;
    let versions: Vec<_> = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| u16::from(v.version) >= u16::from(min.version))
        .filter(|v| u16::from(v.version) <= u16::from(max.version))
        .collect();
    if versions.is_empty() {
        return Err(Problem::Invalid("tls_server_config: min_version is above max_version".into()));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|source| Problem::Tls { key: "tls_server_config", source })?
        .with_client_cert_verifier(verifier)
        // Also checks that the key is the certificate's.
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(e) => {
                Problem::Pem { key: cert_key, what: format!("not a usable certificate: {e:?}") }
            }
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                Problem::Pem {
                    key: key_key,
                    what: format!("not the key of the certificate in {cert_key}"),
                }
            }
            source => Problem::Tls { key: key_key, source },
        })?;
    // The server is axum's HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, client_auth))
}

fn extra_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, Problem> {
    headers
        .iter()
        .map(|(name, value)| {
            let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| n == name) else {
                return Err(Problem::Invalid(format!(
                    "http_server_config.headers: HTTP header {name:?} can not be configured: \
                     expected one of {}",
                    EXTRA_HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(Problem::Invalid(format!(
                    "http_server_config.headers: invalid value for {name}: expected one of \
                     {allowed:?}, got {value:?}"
                )));
            }
            let bad = |_| {
                Problem::Invalid(format!(
                    "http_server_config.headers: {name}: {value:?} is not a header value"
                ))
            };
            Ok((
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad(()))?,
                HeaderValue::from_str(value).map_err(|_| bad(()))?,
            ))
        })
        .collect()
}

/// One token a line; blank lines and `#` comments skipped. Kept as SHA-256 digests, compared
/// in constant time.
fn read_tokens(file: &Path) -> Result<Vec<[u8; 32]>, Problem> {
    let text = std::fs::read_to_string(file).map_err(|source| Problem::ReadFile {
        key: "bearer_tokens_file",
        file: file.to_path_buf(),
        source,
    })?;
    let tokens: Vec<[u8; 32]> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|t| digest(t.as_bytes()))
        .collect();
    if tokens.is_empty() {
        return Err(Problem::Invalid(format!(
            "bearer_tokens_file: no token in {}",
            file.display()
        )));
    }
    Ok(tokens)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Password checks waiting for the bcrypt worker past which a request is refused (429): a
/// flood of wrong passwords costs one core, never a queue without end.
const MAX_WAITING_CHECKS: usize = 16;
/// Successful (user, password) checks remembered, so a scrape every 15 s costs one bcrypt,
/// not one a scrape; forgotten all at once when full.
const CACHE_SIZE: usize = 256;

/// Who may read the protected paths: basic auth users and bearer tokens (either one grants);
/// nobody configured: everyone.
pub struct Auth {
    /// user -> bcrypt hash.
    users: BTreeMap<String, String>,
    /// SHA-256 of each token.
    tokens: Vec<[u8; 32]>,
    /// SHA-256 of user, hash and password of checks that passed.
    passed: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time (exporter-toolkit's bcryptMtx): ~70 ms of a core at cost 10.
    bcrypt: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 401: no credentials, malformed ones, or wrong ones.
    Unauthorized,
    /// 429: too many password checks are waiting.
    Busy,
}

/// What an `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    Basic { user: String, password: Vec<u8> },
    Bearer(String),
}

impl Credentials {
    /// RFC 7617 basic (`user:password` in base64; the user may not hold a colon, the password
    /// may) and RFC 6750 bearer; the scheme is case-insensitive (RFC 9110 11.1).
    fn parse(value: &HeaderValue) -> Option<Self> {
        let (scheme, rest) = value.to_str().ok()?.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let raw = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            let colon = raw.iter().position(|b| *b == b':')?;
            let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
            Some(Self::Basic { user, password: raw[colon + 1..].to_vec() })
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Some(Self::Bearer(rest.to_string()))
        } else {
            None
        }
    }
}

/// Counts the waiting checks while alive.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(n: &'a AtomicUsize) -> Option<Self> {
        if n.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING_CHECKS {
            n.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(n))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Auth {
    /// Nobody configured: everyone reads.
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
            tokens: Vec::new(),
            passed: Mutex::default(),
            bcrypt: Arc::new(tokio::sync::Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Auth {
    fn new(users: BTreeMap<String, String>, tokens: Vec<[u8; 32]>) -> Result<Self, Problem> {
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(Problem::Invalid(format!(
                    "basic_auth_users: {user:?}: a user name cannot hold a colon (basic auth \
                     splits user:password at the first)"
                )));
            }
            let parts: bcrypt::HashParts = hash.parse().map_err(|e: bcrypt::BcryptError| {
                Problem::NotBcrypt { user: user.clone(), reason: e.to_string() }
            })?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err(Problem::NotBcrypt {
                    user: user.clone(),
                    reason: format!("cost {} is outside 4..=31", parts.get_cost()),
                });
            }
        }
        Ok(Self { users, tokens, ..Self::default() })
    }

    /// Whether any credential is asked for.
    pub fn required(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// The `WWW-Authenticate` challenges a 401 carries (RFC 9110 11.6.1): one a scheme.
    pub fn challenges(&self) -> Vec<HeaderValue> {
        let mut c = Vec::new();
        if !self.users.is_empty() {
            c.push(HeaderValue::from_static("Basic realm=\"observer\", charset=\"UTF-8\""));
        }
        if !self.tokens.is_empty() {
            c.push(HeaderValue::from_static("Bearer realm=\"observer\""));
        }
        c
    }

    /// Whether a request with this `Authorization` header may read.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Denied> {
        if !self.required() {
            return Ok(());
        }
        match authorization.and_then(Credentials::parse) {
            Some(Credentials::Bearer(token)) if self.token_matches(&token) => Ok(()),
            Some(Credentials::Basic { user, password }) => {
                self.password_matches(user, password).await
            }
            _ => Err(Denied::Unauthorized),
        }
    }

    /// Against every token, without an early return.
    fn token_matches(&self, token: &str) -> bool {
        let presented = digest(token.as_bytes());
        let mut found = subtle::Choice::from(0);
        for t in &self.tokens {
            found |= t.ct_eq(&presented);
        }
        found.into()
    }

    async fn password_matches(&self, user: String, password: Vec<u8>) -> Result<(), Denied> {
        // An unknown user costs a check all the same (against a configured hash, result
        // unused), so timing does not tell which users exist.
        let (known, hash) = match self.users.get(&user) {
            Some(h) => (true, h.clone()),
            None => (false, self.users.values().next().ok_or(Denied::Unauthorized)?.clone()),
        };
        let key = digest(&[user.as_bytes(), b"\0", hash.as_bytes(), b"\0", &password].concat());
        if known && self.lock_passed().contains(&key) {
            return Ok(());
        }
        let _waiting = Waiting::enter(&self.waiting).ok_or(Denied::Busy)?;
        let permit = self.bcrypt.clone().acquire_owned().await.map_err(|_| Denied::Busy)?;
        // bcrypt is CPU work: off the async workers the event pipeline runs on. The permit
        // goes with it, so a client that hangs up does not let a second one start.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(ok && known) {
            return Err(Denied::Unauthorized);
        }
        let mut passed = self.lock_passed();
        if passed.len() >= CACHE_SIZE {
            passed.clear();
        }
        passed.insert(key);
        Ok(())
    }

    fn lock_passed(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.passed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Connections refused before a handler ran, for the metrics.
#[derive(Debug, Default)]
pub struct Rejected {
    /// 401: no credentials, malformed or wrong ones.
    pub unauthorized: AtomicU64,
    /// 429: too many password checks waiting.
    pub busy: AtomicU64,
    /// TLS handshakes that failed: plain HTTP on the TLS port, a client certificate missing
    /// or not signed by the CA, a protocol the config refuses, a timeout.
    pub tls_handshake: AtomicU64,
    /// Connections closed before their handshake: too many handshakes in progress.
    pub tls_overflow: AtomicU64,
}

/// A TLS handshake taking longer than this is dropped: a client that connects and sends
/// nothing holds a task and a socket, not the listener.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; a connection past this is closed at once (counted).
const MAX_HANDSHAKES: usize = 64;

/// Accepts TCP connections and hands axum only those whose TLS handshake completed; the
/// handshakes run concurrently, so a slow or silent client delays nobody else.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<(SocketAddr, std::io::Result<TlsStream<TcpStream>>)>,
    rejected: Arc<Rejected>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, rejected: Arc<Rejected>) -> Self {
        Self { tcp, acceptor: TlsAcceptor::from(config), handshakes: JoinSet::new(), rejected }
    }

    fn failed(&self, addr: SocketAddr, e: &std::io::Error) {
        let n = self.rejected.tls_handshake.fetch_add(1, Ordering::Relaxed) + 1;
        // The first, then every 100th: a port scanner does not flood the log.
        if n == 1 || n.is_multiple_of(100) {
            log::warn!("TLS handshake with {addr} failed: {e} ({n} so far)");
        } else {
            log::debug!("TLS handshake with {addr} failed: {e}");
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        if self.handshakes.len() >= MAX_HANDSHAKES {
                            self.rejected.tls_overflow.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let handshake = self.acceptor.accept(stream);
                        self.handshakes.spawn(async move {
                            let r = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                                Ok(r) => r,
                                Err(_) => Err(std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "no handshake within 10 s",
                                )),
                            };
                            (addr, r)
                        });
                    }
                    // As axum's own TcpListener: a connection that went away is nothing; else
                    // (EMFILE) wait a second for descriptors to come back.
                    Err(e) if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) => {}
                    Err(e) => {
                        log::error!("accept error: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => match done {
                    Ok((addr, Ok(stream))) => return (stream, addr),
                    Ok((addr, Err(e))) => self.failed(addr, &e),
                    Err(e) => log::error!("TLS handshake task: {e}"),
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "observer-web-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A CA, a server certificate and key it signs (for 127.0.0.1), in `dir`.
    fn pki(dir: &Dir) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        dir.write("ca.pem", &ca_cert.pem());
        dir.write("server.pem", &cert.pem());
        dir.write("server.key", &key.serialize_pem());
        dir.write("other.key", &rcgen::KeyPair::generate().unwrap().serialize_pem());
    }

    fn hash(password: &str) -> String {
        // `$2y$`, as htpasswd writes them; cost 4, the least, to keep tests quick.
        bcrypt::hash_with_result(password, 4).unwrap().format_for_version(bcrypt::Version::TwoY)
    }

    fn load(dir: &Dir, yaml: &str) -> Result<WebConfig, String> {
        let path = dir.write("web.yml", yaml);
        WebConfig::load(&path).map_err(|e| {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("web config file {}: ", path.display())), "{msg}");
            msg
        })
    }

    #[test]
    fn a_full_file_loads_with_paths_relative_to_it() {
        let dir = Dir::new();
        pki(&dir);
        dir.write("tokens", "# rotated monthly\n\nfirst-token\n  second-token  \n");
        let yaml = format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: {}\n  client_auth_type: \
             RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n\
             http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{}'\nbearer_tokens_file: tokens\n",
            dir.0.join("server.key").display(),
            hash("secret")
        );
        let web = load(&dir, &yaml).unwrap();
        assert_eq!(web.scheme(), "https");
        assert_eq!(web.client_certs, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(web.auth.users.len(), 1);
        assert_eq!(web.auth.tokens, [digest(b"first-token"), digest(b"second-token")]);
        assert_eq!(web.headers.len(), 1);
        assert_eq!(
            web.describe(),
            "TLS (RequireAndVerifyClientCert), basic auth for 1 user, bearer tokens: 2"
        );
        let tls = web.tls.unwrap();
        assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn no_file_and_an_empty_file_secure_nothing() {
        let none = WebArgs::default().load().unwrap();
        assert!(none.tls.is_none() && !none.auth.required());
        assert_eq!(none.describe(), "plain HTTP, no auth");
        let dir = Dir::new();
        let empty = load(&dir, "\n# nothing yet\n").unwrap();
        assert!(empty.tls.is_none() && !empty.auth.required());
    }

    #[test]
    fn inline_pem_is_the_same_as_files() {
        let dir = Dir::new();
        pki(&dir);
        let indent =
            |f: &str| std::fs::read_to_string(dir.0.join(f)).unwrap().replace('\n', "\n    ");
        let yaml = format!(
            "tls_server_config:\n  cert: |\n    {}\n  key: |\n    {}\n",
            indent("server.pem"),
            indent("server.key")
        );
        assert!(load(&dir, &yaml).unwrap().tls.is_some());
    }

    #[test]
    fn bad_files_say_which_key_and_what() {
        let dir = Dir::new();
        pki(&dir);
        let err = |yaml: &str| load(&dir, yaml).unwrap_err();
        let tls = |rest: &str| {
            err(&format!(
                "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{rest}"
            ))
        };
        let missing = WebConfig::load(&dir.0.join("nope.yml")).unwrap_err().to_string();
        assert!(missing.contains("nope.yml: cannot read it: No such file"), "{missing}");
        assert!(err("basic_auth_users: [a").contains("line 1"), "{}", err("basic_auth_users: [a"));
        let unknown = err("tls_server_config:\n  certfile: x\n");
        assert!(unknown.contains("unknown field `certfile`"), "{unknown}");
        assert!(err("tls: {}\n").contains("unknown field `tls`"));
        assert!(err("rate_limit:\n  burst: 3\n").contains("rate_limit is not supported"));
        assert!(tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
            .contains("cipher_suites is not supported"));
        assert!(
            tls("  client_allowed_sans: [a]\n").contains("client_allowed_sans is not supported")
        );
        assert!(tls("  min_version: TLS10\n").contains("TLS10: observer speaks TLS12 and TLS13"));
        assert!(tls("  max_version: TLS99\n").contains("unknown TLS version \"TLS99\""));
        assert!(tls("  min_version: TLS13\n  max_version: TLS12\n").contains("above max_version"));
        assert!(tls("  client_auth_type: Sometimes\n").contains("unknown policy \"Sometimes\""));
        assert!(tls("  client_auth_type: RequireAnyClientCert\n").contains("nobody verifies"));
        assert!(tls("  client_auth_type: RequireAndVerifyClientCert\n")
            .contains("needs client_ca_file"));
        assert!(tls("  client_ca_file: ca.pem\n").contains("NoClientCert"));
        let no_ca =
            tls("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: gone.pem\n");
        assert!(
            no_ca.contains("client_ca_file: cannot read") && no_ca.contains("gone.pem"),
            "{no_ca}"
        );
        assert!(err("tls_server_config:\n  key_file: server.key\n")
            .contains("missing one of cert or cert_file"));
        assert!(err("tls_server_config:\n  cert_file: server.pem\n")
            .contains("missing one of key or key_file"));
        let both =
            err("tls_server_config:\n  cert: x\n  cert_file: server.pem\n  key_file: server.key\n");
        assert!(both.contains("one of cert and cert_file"), "{both}");

        // Certificates and keys that do not load.
        dir.write("garbage.pem", "not a certificate\n");
        let g = err("tls_server_config:\n  cert_file: garbage.pem\n  key_file: server.key\n");
        assert!(g.contains("cert_file: no CERTIFICATE in it"), "{g}");
        let k = err("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n");
        assert!(k.contains("key_file: no private key in it"), "{k}");
        let wrong = err("tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n");
        assert!(wrong.contains("key_file: not the key of the certificate in"), "{wrong}");
        dir.write(
            "bad-der.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        );
        let der = err("tls_server_config:\n  cert_file: bad-der.pem\n  key_file: server.key\n");
        assert!(der.contains("cert_file: not a usable certificate"), "{der}");
        let gone = err("tls_server_config:\n  cert_file: server.pem\n  key_file: absent.key\n");
        assert!(gone.contains("key_file: cannot read") && gone.contains("absent.key"), "{gone}");

        // Users and tokens.
        let plain = err("basic_auth_users:\n  alice: hunter2\n");
        assert!(plain.contains("\"alice\": not a bcrypt hash"), "{plain}");
        assert!(plain.contains("htpasswd"), "{plain}");
        let colon = err(&format!("basic_auth_users:\n  'a:b': '{}'\n", hash("x")));
        assert!(colon.contains("cannot hold a colon"), "{colon}");
        dir.write("empty-tokens", "# none\n\n");
        assert!(err("bearer_tokens_file: empty-tokens\n").contains("no token in"));
        assert!(err("bearer_tokens_file: absent\n").contains("bearer_tokens_file: cannot read"));
        let h = err("http_server_config:\n  headers:\n    X-Powered-By: me\n");
        assert!(h.contains("\"X-Powered-By\" can not be configured"), "{h}");
        let v = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(v.contains("invalid value for X-Frame-Options"), "{v}");
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {b64}")).unwrap()
    }

    fn auth() -> Auth {
        let users = BTreeMap::from([
            ("prometheus".to_string(), hash("pa:ss word")),
            ("grafana".to_string(), hash("other")),
        ]);
        Auth::new(users, vec![digest(b"tok-1"), digest(b"tok-2")]).unwrap()
    }

    #[test]
    fn credentials_parse_as_the_rfcs_say() {
        let p = |s: &str| Credentials::parse(&HeaderValue::from_str(s).unwrap());
        assert_eq!(
            Credentials::parse(&basic("u", "p:q")),
            Some(Credentials::Basic { user: "u".into(), password: b"p:q".to_vec() })
        );
        assert_eq!(p("bearer  abc "), Some(Credentials::Bearer("abc".into())));
        assert_eq!(
            p("BASIC dTpw"),
            Some(Credentials::Basic { user: "u".into(), password: b"p".to_vec() })
        );
        for bad in ["Basic", "Basic !!!", "Basic dXNlcg==", "Bearer ", "Digest x", "token"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn basic_and_bearer_grant_wrong_or_missing_do_not() {
        let a = auth();
        assert!(a.required());
        assert_eq!(a.check(Some(&basic("prometheus", "pa:ss word"))).await, Ok(()));
        // Cached now: the same answer without bcrypt.
        assert_eq!(a.lock_passed().len(), 1);
        assert_eq!(a.check(Some(&basic("prometheus", "pa:ss word"))).await, Ok(()));
        let denied = Err(Denied::Unauthorized);
        assert_eq!(a.check(Some(&basic("prometheus", "pa:ss"))).await, denied);
        assert_eq!(a.check(Some(&basic("grafana", "pa:ss word"))).await, denied);
        assert_eq!(a.check(Some(&basic("nobody", "pa:ss word"))).await, denied);
        assert_eq!(a.check(None).await, denied);
        let bearer = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        assert_eq!(a.check(Some(&bearer("tok-2"))).await, Ok(()));
        assert_eq!(a.check(Some(&bearer("tok-3"))).await, denied);
        assert_eq!(a.check(Some(&bearer("tok-"))).await, denied);
        assert_eq!(a.lock_passed().len(), 1, "failures are not remembered");
        assert_eq!(a.challenges().len(), 2);
    }

    #[tokio::test]
    async fn tokens_only_refuse_basic_and_nothing_configured_grants_all() {
        let a = Auth::new(BTreeMap::new(), vec![digest(b"t")]).unwrap();
        assert_eq!(a.check(Some(&basic("u", "t"))).await, Err(Denied::Unauthorized));
        assert_eq!(a.challenges(), [HeaderValue::from_static("Bearer realm=\"observer\"")]);
        assert_eq!(Auth::default().check(None).await, Ok(()));
    }

    #[tokio::test]
    async fn a_flood_of_password_checks_is_refused_not_queued() {
        let a = Arc::new(auth());
        // Hold the bcrypt worker, fill the queue: the next check is refused at once.
        let held = a.bcrypt.clone().acquire_owned().await.unwrap();
        let mut queued = JoinSet::new();
        for _ in 0..MAX_WAITING_CHECKS {
            let a = a.clone();
            queued.spawn(async move { a.check(Some(&basic("grafana", "wrong"))).await });
        }
        while a.waiting.load(Ordering::Acquire) < MAX_WAITING_CHECKS {
            tokio::task::yield_now().await;
        }
        assert_eq!(a.check(Some(&basic("grafana", "other"))).await, Err(Denied::Busy));
        drop(held);
        while let Some(r) = queued.join_next().await {
            assert_eq!(r.unwrap(), Err(Denied::Unauthorized));
        }
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
        assert_eq!(a.check(Some(&basic("grafana", "other"))).await, Ok(()));
    }
}
