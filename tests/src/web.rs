//! The secured endpoint under test: certificates made by the openssl CLI (a CA, the daemon's
//! certificate for 127.0.0.1, a client's, and a second CA nobody trusts with a client of its
//! own), a daemon started with `--web-config-file`, and curl as the client (it verifies the
//! daemon's certificate against the CA and presents the client's).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use crate::{free_port, observer_bin, require_root, stop_child, unique};

/// A directory of its own under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `openssl ARGS` (split at whitespace) in `dir`.
fn openssl(dir: &Path, args: &str) -> Result<()> {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("run openssl (Debian's openssl package: `cargo xtask setup`)")?;
    ensure!(
        out.status.success(),
        "openssl {args}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

const CA_CONF: &str = "[req]\ndistinguished_name = dn\n[dn]\n[ca]\n\
    basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
    subjectKeyIdentifier = hash\n";
const SERVER_EXT: &str = "basicConstraints = CA:FALSE\n\
    keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n\
    subjectAltName = IP:127.0.0.1, DNS:localhost\n";
const CLIENT_EXT: &str = "basicConstraints = CA:FALSE\n\
    keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n";

/// The certificates of a test, in `dir`: `ca.pem`; `server.pem` with `server.key` (RSA,
/// PKCS#1 as `openssl genrsa -traditional` writes it), signed by the CA for 127.0.0.1;
/// `client.pem`/`client.key` (EC, SEC1) signed by the CA; `rogue-ca.pem` and
/// `rogue.pem`/`rogue.key`, a client signed by a CA the daemon does not trust.
pub fn make_pki(dir: &Path) -> Result<()> {
    std::fs::write(dir.join("ca.cnf"), CA_CONF)?;
    std::fs::write(dir.join("server.ext"), SERVER_EXT)?;
    std::fs::write(dir.join("client.ext"), CLIENT_EXT)?;
    for ca in ["ca", "rogue-ca"] {
        openssl(
            dir,
            &format!(
                "req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
                 -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN=observer-test-{ca} \
                 -config ca.cnf -extensions ca"
            ),
        )?;
    }
    openssl(dir, "genrsa -traditional -out server.key 2048")?;
    openssl(dir, "ecparam -genkey -name prime256v1 -noout -out client.key")?;
    openssl(dir, "ecparam -genkey -name prime256v1 -noout -out rogue.key")?;
    for (leaf, ca, ext) in [
        ("server", "ca", "server.ext"),
        ("client", "ca", "client.ext"),
        ("rogue", "rogue-ca", "client.ext"),
    ] {
        openssl(
            dir,
            &format!(
                "req -new -key {leaf}.key -subj /CN=observer-test-{leaf} -config ca.cnf \
                 -out {leaf}.csr"
            ),
        )?;
        openssl(
            dir,
            &format!(
                "x509 -req -in {leaf}.csr -CA {ca}.pem -CAkey {ca}.key -set_serial 2 -days 2 \
                 -extfile {ext} -out {leaf}.pem"
            ),
        )?;
    }
    Ok(())
}

/// One HTTP answer as curl got it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header lines (name lower-cased, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// Every value of header `name` (any case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// `curl -sS -i --http1.1 ARGS`: the answer, or the error with curl's exit code and
/// message when there was none (a refused certificate, a connection closed).
pub fn curl(args: &[&str]) -> Result<Answer> {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--http1.1", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run curl (Debian's curl package: `cargo xtask setup`)")?;
    if !out.status.success() {
        bail!(
            "curl {}: exit {:?}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Answer { status, headers, body: body.to_string() })
}

/// A daemon run with `--web-config-file`, on a loopback port and in a directory of its own
/// (journal, kubelet log root, its log), unpinned; ended by PID and removed on drop.
pub struct SecuredDaemon {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: TempDir,
}

impl SecuredDaemon {
    /// Starts the daemon with `config`; returns once `ready` (a client the config admits)
    /// gets 200 from /healthz.
    pub fn start(config: &Path, ready: impl Fn(&str) -> Result<Answer>) -> Self {
        require_root();
        let dir = TempDir::new("observer-web-it-");
        std::fs::create_dir_all(dir.path("logs")).expect("log root");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path("daemon.log")).expect("log file");
        let child = Command::new(observer_bin())
            .args(["run", "--listen", &addr, "--pin-dir", "none", "--journal"])
            .arg(dir.path("journal.jsonl"))
            .arg("--kubelet-log-root")
            .arg(dir.path("logs"))
            .arg("--web-config-file")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn observer");
        let mut d = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match ready(&d.addr) {
                Ok(a) if a.status == 200 => break,
                _ if Instant::now() < deadline && d.child.try_wait().ok().flatten().is_none() => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                last => {
                    let log = d.log();
                    stop_child(&mut d.child);
                    panic!("observer not healthy in 30 s ({last:?}):\n{log}");
                }
            }
        }
        d
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("daemon.log")).unwrap_or_default()
    }

    /// `https://ADDR{path}`.
    pub fn https(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// Sends a plain-HTTP request to the port; returns whatever came back before it closed
    /// (a TLS server may close as soon as the first bytes are not a TLS record).
    pub fn plain_http(&self, path: &str) -> Result<Vec<u8>> {
        let closed = |e: &std::io::Error| {
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        };
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        match s.write_all(request.as_bytes()) {
            Err(e) if !closed(&e) => return Err(e.into()),
            _ => {}
        }
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Err(e) if !closed(&e) => Err(e.into()),
            _ => Ok(got),
        }
    }
}

impl Drop for SecuredDaemon {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// `observer run --web-config-file config`, expected to refuse to start: its exit status
/// and stderr. A daemon that starts after all is ended (by PID) after 30 s: None.
pub fn refused_start(config: &Path) -> (Option<std::process::ExitStatus>, String) {
    require_root();
    let dir = TempDir::new("observer-web-bad-");
    let stderr = std::fs::File::create(dir.path("stderr")).expect("stderr file");
    let mut child = Command::new(observer_bin())
        .args(["run", "--pin-dir", "none", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--journal")
        .arg(dir.path("journal.jsonl"))
        .arg("--web-config-file")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn observer");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match child.try_wait().expect("wait for observer") {
            Some(status) => break Some(status),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                stop_child(&mut child);
                break None;
            }
        }
    };
    (status, std::fs::read_to_string(dir.path("stderr")).unwrap_or_default())
}
