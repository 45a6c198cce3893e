//! Idempotent setup of everything a fresh machine lacks, each step saying what it does:
//! nightly rust-src (for -Z build-std=core), bpf-linker built against the nightly toolchain's
//! own LLVM, the Debian packages the integration tests drive, Debian's kubectl 1.20 unpacked
//! (the oldest kustomize the deploy overlays support), and the kernels the kernel matrix
//! boots (`vm.rs`).

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::run;

/// The bpf-linker release that builds with LLVM 22 and rustc 1.95 here.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests use: OCI runtimes, containerd with its CRI plugin,
/// a static busybox for container root filesystems, util-linux's unshare; protoc, which the
/// k8s-cri crate's build script needs to generate the CRI client; for the deploy
/// path: Prometheus and promtool, umoci and skopeo (the image, without a Docker engine), the
/// glibc static libraries and binutils' strip (a static daemon on a scratch image), python3-venv
/// (manifest checks); qemu-system-x86 (the kernel matrix boots Debian's 6.1 and 6.12 kernels
/// under it: `tests/tests/kernels.rs`); real programs run as containers' main processes by the
/// identity tests (`tests/tests/identity.rs`: servers, init wrappers and an interpreter with
/// signal code of their own, unlike busybox).
const PACKAGES: &[&str] = &[
    "runc",
    "crun",
    "containerd",
    "busybox-static",
    "util-linux",
    "protobuf-compiler",
    "prometheus",
    "umoci",
    "skopeo",
    "libc6-dev",
    "binutils",
    "python3-venv",
    "qemu-system-x86",
    "redis-server",
    "nginx-light",
    "tini",
    "dumb-init",
    "bpftool",
    // The secured endpoint's tests (`tests/tests/http_security.rs`): certificates made by
    // the openssl CLI, curl as the TLS client.
    "openssl",
    "curl",
    // tests/tests/privileges.rs: every system call the daemon makes (`strace -f -c`) against
    // its seccomp profile.
    "strace",
    // tests/tests/traffic.rs: network namespaces joined by a veth pair (`ip link`, `ip addr`).
    "iproute2",
];

/// The Kubernetes and Prometheus Operator schema checkers and everything they import, pinned,
/// in a venv of the project's own ([`validate_venv`]).
const VALIDATE_REQUIREMENTS: &[&str] = &[
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "attrs==26.1.0",
    "certifi==2026.10.18",
    "cloudcoil==0.6.0",
    "cloudcoil.models.prometheus_operator==0.80.1.0",
    "h11==0.16.0",
    "httpcore==1.0.9",
    "httpx==0.28.1",
    "idna==3.20",
    "importlib_resources==7.1.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "kubernetes-validate==1.37.0",
    "packaging==26.3",
    "pydantic==2.14.3",
    "pydantic_core==2.50.4",
    "PyYAML==6.0.3",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
];

pub fn all() -> Result<()> {
    toolchain()?;
    validate_tools()?;
    debian_kubectl()?;
    crate::vm::kernels()?;
    Ok(())
}

/// What building and the unit tier need: the eBPF toolchain and the Debian packages (installed
/// when root; without root a missing package is an error that says so).
pub fn toolchain() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    packages()
}

/// The venv holding the manifest checkers (the deploy tests find it here).
pub fn validate_venv() -> PathBuf {
    crate::workspace_root().join("target/tools/validate-venv")
}

fn validate_tools() -> Result<()> {
    let venv = validate_venv();
    // Written only once pip succeeded: a failed install is retried.
    let stamp = venv.join("installed.txt");
    let wanted = VALIDATE_REQUIREMENTS.join("\n") + "\n";
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        eprintln!("xtask: manifest checkers present ({})", venv.display());
        return Ok(());
    }
    eprintln!("xtask: installing the manifest checkers into {} (pinned)", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    // Debian's python, whose venv module python3-venv provides (installed above).
    run(Command::new("/usr/bin/python3").arg("-m").arg("venv").arg(&venv))?;
    let requirements = venv.join("requirements.txt");
    std::fs::write(&requirements, &wanted)?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, &wanted)?;
    Ok(())
}

/// Debian bookworm's kubectl 1.20 (package kubernetes-client), unpacked into
/// `target/tools/kubernetes-client/` and never installed, so the system's kubectl stays: its
/// `kubectl kustomize` is kustomize v2.0.3, the oldest the deploy overlays support (that of
/// every kubectl from 1.14 to 1.20). `tests/tests/deploy.rs` renders every overlay with it
/// and with the system's kubectl, if any. Fetched as `vm.rs` fetches kernels: `apt-get
/// download`, `dpkg-deb -x`; the `package` stamp is written last, so a broken fetch is redone.
fn debian_kubectl() -> Result<()> {
    let dir = crate::workspace_root().join("target/tools/kubernetes-client");
    let stamp = dir.join("package");
    if dir.join("usr/bin/kubectl").is_file() && stamp.is_file() {
        let package = std::fs::read_to_string(&stamp)?;
        eprintln!("xtask: Debian's kubectl present ({}: {})", dir.display(), package.trim());
        return Ok(());
    }
    let scratch = crate::workspace_root().join("target/tools/.fetch-kubernetes-client");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    // In the scratch directory (crate::run would run it in the workspace root), as root if
    // root: apt's `_apt` sandbox user cannot write there.
    let download = || -> Result<()> {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-o", "APT::Sandbox::User=root", "download", "kubernetes-client"]);
        eprintln!("xtask: $ {} (in {})", crate::display(&cmd), scratch.display());
        let status = cmd.current_dir(&scratch).status().context("spawning apt-get download")?;
        if !status.success() {
            bail!("apt-get download kubernetes-client failed: {status}");
        }
        Ok(())
    };
    if download().is_err() {
        // Stale lists name a version the archive no longer has.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        download()?;
    }
    let deb = std::fs::read_dir(&scratch)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download kubernetes-client left no .deb")?;
    let version = output(Command::new("dpkg-deb").arg("--field").arg(&deb).arg("Version"))?;
    let _ = std::fs::remove_dir_all(&dir);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    std::fs::write(&stamp, format!("kubernetes-client {}\n", version.trim()))?;
    std::fs::remove_dir_all(&scratch)?;
    eprintln!("xtask: Debian's kubectl {} is in {}", version.trim(), dir.display());
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {}", crate::display(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{}",
            crate::display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rust_src() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("a nightly toolchain is needed to build eBPF (rustup toolchain list)")?;
    let src = PathBuf::from(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.is_dir() {
        eprintln!("xtask: nightly rust-src present");
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the installed nightly (for -Z build-std=core)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
    })
}

fn bpf_linker() -> Result<()> {
    if bpf_linker_works() {
        eprintln!("xtask: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    // bpf-linker links against LLVM; the nightly toolchain ships one (the one rustc's BPF
    // backend uses), but only under its soname. Build an LLVM_PREFIX whose lib/ has both
    // libLLVM.so (for the link) and the soname (for the runtime loader: bpf-linker's RUNPATH
    // is LLVM_PREFIX/lib), both pointing at the toolchain's file.
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV prints no LLVM version")?
        .to_string();
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    );
    let libdir = sysroot.join("lib");
    let llvm = std::fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        .with_context(|| format!("no libLLVM.so.{major}* in {}", libdir.display()))?;
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let prefix = home.join("observer-llvm").join(&llvm);
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so", llvm.as_str()] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(libdir.join(&llvm), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} ({}); takes a few minutes once",
        prefix.display()
    );
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--force"])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` fails: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("xtask: Debian packages present ({})", PACKAGES.join(", "));
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("missing Debian packages {missing:?}: run as root so xtask can apt-get install them");
    }
    eprintln!("xtask: installing Debian packages {}", missing.join(", "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
