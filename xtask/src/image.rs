//! `cargo xtask image`: the daemon's OCI image, built without a Docker engine.
//!
//! The daemon is linked statically (glibc's static libraries, `+crt-static`) and is the only
//! file of a scratch image: no shell, no libc, no package manager to patch. umoci writes the
//! OCI layout (`target/image/oci`, tag = the crate version) and skopeo packs it into an OCI
//! archive (`target/image/observer.oci.tar`) that `ctr images import` or any registry client
//! takes. Nothing is pulled from a registry: the only input is what this workspace builds.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{run, workspace_root};

/// Image name for `ctr images import` and the DaemonSet (deploy/kubernetes/base/daemonset.yaml).
pub const NAME: &str = "localhost/observer";
/// Where the daemon sits in the image (the DaemonSet's `command`).
pub const BINARY: &str = "/usr/bin/observer";

/// What `cargo xtask image` built.
#[derive(Debug)]
pub struct Image {
    pub layout: PathBuf,
    pub tag: String,
    pub archive: PathBuf,
    /// Manifest digest (`sha256:...`), the image's identity.
    pub digest: String,
    /// Manifest + config + layers as stored (what a node downloads).
    pub stored_bytes: u64,
    /// The (stripped) binary, uncompressed (what the node unpacks).
    pub binary_bytes: u64,
}

pub fn tag() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The OCI layout the tests unpack.
pub fn layout_dir() -> PathBuf {
    workspace_root().join("target/image/oci")
}

pub fn build() -> Result<Image> {
    let host = host_triple()?;
    let binary = static_binary(&host)?;
    let dir = workspace_root().join("target/image");
    let layout = layout_dir();
    let tag = tag();
    let image = format!("{}:{tag}", layout.display());
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(&dir)?;

    // The root filesystem: one file. umoci records its mode and owner from the tree.
    let rootfs = dir.join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    let dest = rootfs.join(BINARY.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().expect("BINARY has a directory"))?;
    std::fs::copy(&binary, &dest)
        .with_context(|| format!("copying {} into the image tree", binary.display()))?;
    // Symbols only serve a debugger, which a scratch image has not: 2/3 of the file.
    run(Command::new("strip").arg("--strip-all").arg(&dest))?;

    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci")
        .args(["insert", "--image", &image, "--history.created_by", "cargo xtask image"])
        .arg(rootfs.join("usr"))
        .arg("/usr"))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--architecture",
        oci_arch(&host)?,
        "--os",
        "linux",
        "--config.user",
        "0:0",
        "--config.entrypoint",
        BINARY,
        "--config.cmd",
        "run",
        "--config.env",
        "OBSERVER_LISTEN=0.0.0.0:9464",
        "--config.exposedports",
        "9464/tcp",
        "--config.stopsignal",
        "SIGTERM",
        "--config.label",
        "org.opencontainers.image.title=observer",
        "--config.label",
        &format!("org.opencontainers.image.version={tag}"),
        "--config.label",
        "org.opencontainers.image.description=Watches how Kubernetes containers die (eBPF node daemon)",
        "--history.created_by",
        "cargo xtask image",
    ]))?;
    run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;

    let archive = dir.join("observer.oci.tar");
    let _ = std::fs::remove_file(&archive);
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{image}"))
        .arg(format!("oci-archive:{}:{NAME}:{tag}", archive.display())))?;

    let (digest, stored_bytes) = manifest_of(&layout, &tag)?;
    let binary_bytes = std::fs::metadata(&dest)?.len();
    let _ = std::fs::remove_dir_all(&rootfs);
    Ok(Image { layout, tag, archive, digest, stored_bytes, binary_bytes })
}

pub fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV prints no host triple")
}

fn oci_arch(triple: &str) -> Result<&'static str> {
    Ok(match triple.split('-').next() {
        Some("x86_64") => "amd64",
        Some("aarch64") => "arm64",
        other => bail!("no OCI architecture name for {other:?}"),
    })
}

/// Builds the daemon with the C runtime linked in: it then runs on an empty root filesystem.
/// A target of its own (`target/<host>/release`), so the dynamic build beside it is untouched.
/// `cargo <args> --release --target <host>` with glibc linked statically: the one release
/// configuration this project builds, so the daemon, the image, the kernel matrix and the
/// fuzz step share one set of release artefacts (`target/<host>/release`).
pub fn static_cargo(host: &str, args: &[&str]) -> std::process::Command {
    let var = format!("CARGO_TARGET_{}_RUSTFLAGS", host.to_uppercase().replace('-', "_"));
    let mut cmd = crate::cargo();
    cmd.args(args).args(["--release", "--target", host]).env(var, "-C target-feature=+crt-static");
    cmd
}

/// Builds the static daemon and returns its path.
pub fn static_binary(host: &str) -> Result<PathBuf> {
    run(&mut static_cargo(host, &["build", "--package", "observer"]))?;
    let bin = workspace_root().join("target").join(host).join("release/observer");
    let elf = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if needs_interpreter(&elf)? {
        bail!("{} is dynamically linked: it cannot run on a scratch image", bin.display());
    }
    Ok(bin)
}

/// True when an ELF64 little-endian executable names a program interpreter (PT_INTERP): it
/// then needs ld.so and shared libraries at run time. A static-pie has none.
pub fn needs_interpreter(elf: &[u8]) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not an ELF64 little-endian file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .filter(|a| a.checked_add(phentsize.max(4)).is_some_and(|end| end <= elf.len()))
            .context("program header outside the file")?;
        if u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The tagged manifest's digest and the bytes it references (manifest, config, layers).
fn manifest_of(layout: &Path, tag: &str) -> Result<(String, u64)> {
    let read_json = |p: PathBuf| -> Result<Value> {
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    };
    let index = read_json(layout.join("index.json"))?;
    let desc = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .with_context(|| format!("no manifest tagged {tag} in {}", layout.display()))?;
    let digest = desc["digest"].as_str().context("manifest descriptor without digest")?;
    let blob = |d: &str| layout.join("blobs").join(d.replacen(':', "/", 1));
    let manifest = read_json(blob(digest))?;
    let size = |v: &Value| v["size"].as_u64().unwrap_or(0);
    let layers: u64 = manifest["layers"].as_array().into_iter().flatten().map(size).sum();
    Ok((digest.to_string(), size(desc) + size(&manifest["config"]) + layers))
}

pub fn print(image: &Image) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!("xtask: image {NAME}:{}", image.tag);
    println!("digest  {}", image.digest);
    println!(
        "size    {:.2} MiB stored (manifest + config + layer), {:.2} MiB unpacked",
        mib(image.stored_bytes),
        mib(image.binary_bytes)
    );
    println!("layout  {}:{}", image.layout.display(), image.tag);
    println!("archive {}", image.archive.display());
    println!(
        "import  ctr -n k8s.io images import {}   # named {NAME}:{}",
        image.archive.display(),
        image.tag
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with(ptypes: &[u32]) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56 * ptypes.len()];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&(ptypes.len() as u16).to_le_bytes());
        for (i, t) in ptypes.iter().enumerate() {
            e[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        e
    }

    #[test]
    fn interpreter_is_found_only_when_present() {
        assert!(needs_interpreter(&elf_with(&[6, 3, 1])).unwrap());
        assert!(!needs_interpreter(&elf_with(&[6, 1, 2])).unwrap());
    }

    #[test]
    fn truncated_or_foreign_files_are_errors_not_panics() {
        let mut e = elf_with(&[3]);
        e.truncate(80);
        assert!(needs_interpreter(&e).is_err());
        assert!(needs_interpreter(b"#!/bin/sh\n").is_err());
        let mut huge = elf_with(&[]);
        huge[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        huge[56..58].copy_from_slice(&1u16.to_le_bytes());
        assert!(needs_interpreter(&huge).is_err());
    }

    #[test]
    fn this_xtask_binary_is_dynamic() {
        // The test binary itself is a dynamic glibc executable: the check sees PT_INTERP.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(needs_interpreter(&me).unwrap());
    }
}
