//! The endpoint secured by a web config file (exporter-toolkit's format), on the real daemon
//! with real clients: curl verifies the daemon's certificate against a CA the openssl CLI
//! made; plain HTTP gets no answer on the TLS port; basic auth (a `$2y$` bcrypt hash, as
//! htpasswd writes) and bearer tokens admit the right credentials only, with a 401 and its
//! challenges otherwise; /healthz stays open; client certificates are required and verified
//! when the file says so; and a bad file stops the daemon at start, naming the file and the
//! problem.

use std::path::Path;

use observer_tests::web::{curl, make_pki, refused_start, Answer, SecuredDaemon, TempDir};

const PASSWORD: &str = "s3cret: with a colon";
const TOKEN: &str = "token-for-prometheus-0123456789";

/// htpasswd's `-B -C 10`.
fn htpasswd(password: &str) -> String {
    bcrypt::hash_with_result(password, 10).unwrap().format_for_version(bcrypt::Version::TwoY)
}

fn pki() -> TempDir {
    let dir = TempDir::new("observer-web-pki-");
    make_pki(&dir.0).expect("certificates");
    dir
}

/// curl against the daemon, trusting `ca` (a file in `dir`).
fn get(
    d: &SecuredDaemon,
    dir: &Path,
    ca: &str,
    path: &str,
    extra: &[&str],
) -> anyhow::Result<Answer> {
    let ca = dir.join(ca);
    let url = d.https(path);
    let mut args = vec!["--cacert", ca.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

#[test]
fn tls_with_basic_auth_and_bearer_tokens() {
    let dir = pki();
    dir.write("tokens", &format!("# Prometheus' token\n{TOKEN}\n"));
    // Relative paths are the file's directory's; the user list is exporter-toolkit's.
    let config = dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  prometheus: {}\nbearer_tokens_file: tokens\n",
            htpasswd(PASSWORD)
        ),
    );
    let ca = dir.path("ca.pem");
    let d = SecuredDaemon::start(&config, |addr| {
        curl(&["--cacert", ca.to_str().unwrap(), &format!("https://{addr}/healthz")])
    });
    assert!(
        d.log().contains("HTTP endpoint: TLS, basic auth for 1 user, bearer tokens: 1"),
        "{}",
        d.log()
    );
    let get = |path: &str, extra: &[&str]| get(&d, &dir.0, "ca.pem", path, extra);

    // /healthz: open, over TLS curl verified against the CA for 127.0.0.1.
    let health = get("/healthz", &[]).unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"), "{health:?}");
    assert_eq!(health.header("x-content-type-options"), ["nosniff"], "{health:?}");
    // The chain is checked for real: trusting another CA, curl refuses the daemon.
    let untrusted = get_untrusted(&d, &dir.0);
    assert!(untrusted.contains("exit Some(60)"), "{untrusted}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = d.plain_http("/metrics").unwrap();
    assert!(!plain.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&plain));
    assert!(!String::from_utf8_lossy(&plain).contains("observer_"));

    // Without credentials, or with wrong ones: 401 and both challenges.
    let user = format!("prometheus:{PASSWORD}");
    for (path, extra) in [
        ("/metrics", vec![]),
        ("/terminations", vec![]),
        ("/pods", vec![]),
        ("/metrics", vec!["-u", "prometheus:wrong"]),
        ("/metrics", vec!["-u", "grafana:wrong"]),
        ("/metrics", vec!["-H", "Authorization: Bearer not-the-token"]),
        ("/metrics", vec!["-H", "Authorization: Bearer token-for-prometheus"]),
        ("/metrics", vec!["-H", "Authorization: Negotiate abc"]),
    ] {
        let a = get(path, &extra).unwrap();
        assert_eq!((a.status, a.body.as_str()), (401, "unauthorized\n"), "{path} {extra:?}: {a:?}");
        assert_eq!(
            a.header("www-authenticate"),
            ["Basic realm=\"observer\", charset=\"UTF-8\"", "Bearer realm=\"observer\""],
            "{a:?}"
        );
        assert_eq!(a.header("x-content-type-options"), ["nosniff"], "{a:?}");
    }

    // The right password (checked by bcrypt once, then remembered) and the right token.
    for _ in 0..2 {
        let m = get("/metrics", &["-u", &user]).unwrap();
        assert_eq!(m.status, 200, "{m:?}");
        assert!(m.body.contains("# TYPE observer_"), "{}", m.body);
    }
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let t = get("/terminations?limit=5", &["-H", &bearer]).unwrap();
    assert_eq!(t.status, 200, "{t:?}");
    assert!(serde_json::from_str::<serde_json::Value>(&t.body).unwrap().is_array(), "{t:?}");
    let p = get("/pods", &["-H", &bearer]).unwrap();
    assert_eq!(p.status, 200, "{p:?}");
    // A bad query is still answered as before, once admitted.
    let bad = get("/terminations?limit=0", &["-H", &bearer]).unwrap();
    assert_eq!(bad.status, 400, "{bad:?}");
    // What was refused is counted (read at the pipeline's tick): the 8 requests without
    // the right credentials, and the plain HTTP connection's failed handshake.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let m = get("/metrics", &["-u", &user]).unwrap();
    let rejected = |reason: &str| {
        observer_tests::metric_value(&m.body, "observer_http_rejected_total", &[("reason", reason)])
    };
    assert_eq!(rejected("unauthorized"), 8.0, "{}", m.body);
    assert!(rejected("tls_handshake") >= 1.0, "{}", m.body);
    assert_eq!(rejected("busy"), 0.0);
}

/// curl trusting the rogue CA only: its error.
fn get_untrusted(d: &SecuredDaemon, dir: &Path) -> String {
    get(d, dir, "rogue-ca.pem", "/healthz", &[]).unwrap_err().to_string()
}

#[test]
fn client_certificates_are_required_and_verified() {
    let dir = pki();
    let config = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let (ca, cert, key) = (dir.path("ca.pem"), dir.path("client.pem"), dir.path("client.key"));
    let with_cert = |url: &str, cert: &Path, key: &Path| {
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            url,
        ])
    };
    let d = SecuredDaemon::start(&config, |addr| {
        with_cert(&format!("https://{addr}/healthz"), &cert, &key)
    });

    // A certificate the CA signed: every path, no other credential asked.
    for path in ["/healthz", "/metrics", "/terminations"] {
        let a = with_cert(&d.https(path), &cert, &key).unwrap();
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
    // No certificate, or one from a CA the daemon does not trust: the handshake fails, no
    // request is read (so /healthz too needs one in this mode).
    for path in ["/metrics", "/healthz"] {
        let none = get(&d, &dir.0, "ca.pem", path, &[]).unwrap_err().to_string();
        assert!(none.contains("alert") || none.contains("reset"), "{path}: {none}");
        let rogue =
            with_cert(&d.https(path), &dir.path("rogue.pem"), &dir.path("rogue.key")).unwrap_err();
        assert!(rogue.to_string().contains("alert"), "{path}: {rogue}");
    }
    let log = d.log();
    assert!(log.contains("TLS handshake with 127.0.0.1:"), "{log}");
    assert!(log.contains("HTTP endpoint: TLS (RequireAndVerifyClientCert), no auth"), "{log}");
}

#[test]
fn a_bad_web_config_file_stops_the_daemon_at_start() {
    let dir = pki();
    dir.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    let tls = |cert: &str, key: &str| {
        format!("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    };
    let cases = [
        ("missing.yml", None, "cannot read it: No such file or directory"),
        ("yaml.yml", Some("basic_auth_users: [prometheus\n".to_string()), "line "),
        (
            "unknown.yml",
            Some("tls_server_config:\n  certfile: server.pem\n".into()),
            "tls_server_config: unknown field `certfile`",
        ),
        (
            "plain-password.yml",
            Some("basic_auth_users:\n  prometheus: hunter2\n".into()),
            "\"prometheus\": not a bcrypt hash",
        ),
        (
            "no-cert.yml",
            Some(tls("absent.pem", "server.key")),
            "tls_server_config.cert_file: cannot read",
        ),
        (
            "garbage.yml",
            Some(tls("garbage.pem", "server.key")),
            "tls_server_config.cert_file: not a usable certificate",
        ),
        (
            "not-a-key.yml",
            Some(tls("server.pem", "ca.pem")),
            "tls_server_config.key_file: no private key",
        ),
        (
            "wrong-key.yml",
            Some(tls("server.pem", "client.key")),
            "tls_server_config.key_file: not the key of the certificate",
        ),
        (
            "old-tls.yml",
            Some(tls("server.pem", "server.key") + "  min_version: TLS10\n"),
            "TLS10: observer speaks TLS12 and TLS13 only",
        ),
    ];
    for (name, text, problem) in cases {
        let path = match &text {
            Some(t) => dir.write(name, t),
            None => dir.path(name),
        };
        let (status, stderr) = refused_start(&path);
        let status = status.unwrap_or_else(|| panic!("{name}: the daemon started:\n{stderr}"));
        assert_eq!(status.code(), Some(1), "{name}: {stderr}");
        let said = format!("observer: web config file {}: ", path.display());
        assert!(stderr.contains(&said), "{name}: {stderr}");
        assert!(stderr.contains(problem), "{name}: expected {problem:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}
