//! The kernel matrix's kernels: Debian bookworm's cloud kernels 6.1 and 6.12, which
//! `tests/tests/kernels.rs` boots under qemu with an initramfs of its own.
//!
//! Each kernel is fetched with `apt-get download` (never installed) and unpacked with
//! `dpkg-deb -x`; only its `boot/vmlinuz-<release>` and `boot/config-<release>` are kept, in
//! `target/vm/kernels/<release>/` as `vmlinuz` and `config`, with `package` (the package and
//! its version) written last, so an interrupted fetch is redone. These kernels need no
//! module for the test: BTF, cgroup2, the BPF ring buffer, tracefs and the 8250 serial port
//! are built in (`CONFIG_DEBUG_INFO_BTF=y`, `CONFIG_BPF_SYSCALL=y`, `CONFIG_SERIAL_8250=y`,
//! `CONFIG_BLK_DEV_INITRD=y` in both packages' `boot/config-*`), so `lib/modules` is dropped.
//!
//! A series already cached is left alone; `target/vm/kernels/<series>` links to its newest
//! cached release, the one the test boots.
//! Otherwise the newest release the archive offers is fetched: package names carry the ABI
//! number (`linux-image-6.1.0-<N>-cloud-amd64-unsigned`) or the patch level
//! (`linux-image-6.12.<N>+deb12-cloud-amd64-unsigned`), and old ones leave the archive, so no
//! release is written down here.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{run, workspace_root};

/// A kernel series of the matrix: the `apt-cache search --names-only` pattern of its
/// packages and the prefix of its release names (`uname -r`).
struct Series {
    name: &'static str,
    pattern: &'static str,
    release_prefix: &'static str,
}

const SERIES: &[Series] = &[
    Series {
        name: "6.1",
        pattern: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
        release_prefix: "6.1.",
    },
    Series {
        name: "6.12",
        pattern: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$",
        release_prefix: "6.12.",
    },
];

/// Where the kernels are cached (`OBSERVER_VM_KERNELS` for the tests).
pub fn kernels_dir() -> PathBuf {
    workspace_root().join("target/vm/kernels")
}

/// The static daemon that `cargo xtask image` builds (`image.rs`: `cargo build --target
/// <host>` with `+crt-static`), which the VMs run: the same binary a node gets in the image.
pub fn static_binary() -> Result<PathBuf> {
    // rustc's host triple on the Linux/glibc hosts this project builds on.
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let bin = workspace_root().join("target").join(triple).join("release/observer");
    let elf = std::fs::read(&bin).with_context(|| {
        format!("the static daemon {} is missing: `cargo xtask image` builds it", bin.display())
    })?;
    if crate::image::needs_interpreter(&elf)? {
        bail!("{} is dynamically linked: a VM's initramfs has no libc", bin.display());
    }
    Ok(bin)
}

/// Fetches the newest kernel of each series that is not cached yet, and points
/// `target/vm/kernels/<series>` (a symlink) at the newest cached release: what the test boots.
pub fn kernels() -> Result<()> {
    for series in SERIES {
        if let Some(dir) = cached(series)?.last() {
            let package = std::fs::read_to_string(dir.join("package")).unwrap_or_default();
            eprintln!(
                "xtask: kernel {} present ({}: {})",
                series.name,
                dir.display(),
                package.trim()
            );
        } else {
            fetch(series)?;
        }
        let newest = cached(series)?.pop().context("no kernel cached after the fetch")?;
        let link = kernels_dir().join(series.name);
        let target = PathBuf::from(newest.file_name().context("release directory name")?);
        if std::fs::read_link(&link).ok() != Some(target.clone()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        }
    }
    Ok(())
}

/// Complete cached releases of a series, oldest first.
fn cached(series: &Series) -> Result<Vec<PathBuf>> {
    let dir = kernels_dir();
    let mut found: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(series.release_prefix))
                    && p.join("package").is_file()
                    && p.join("vmlinuz").is_file()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    found.sort_by_key(|p| version_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    Ok(found)
}

/// Orders names by their numbers, in order: `6.1.0-9-…` before `6.1.0-10-…`.
pub fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

/// The newest package of a series in the apt lists.
fn newest_package(series: &Series) -> Result<Option<String>> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", series.pattern])
        .output()
        .context("apt-cache (Debian's apt) is needed to fetch the matrix's kernels")?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort_by_key(|n| version_key(n));
    Ok(names.pop())
}

fn fetch(series: &Series) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("kernel {} is not cached: run as root so xtask can fetch it with apt", series.name);
    }
    let mut package = newest_package(series)?;
    if package.is_none() {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        package = newest_package(series)?;
    }
    let package = package.with_context(|| {
        format!("no package matches {} in the apt lists (bookworm's archive)", series.pattern)
    })?;
    eprintln!("xtask: fetching kernel {}: {package} (the newest in the apt lists)", series.name);
    let scratch = kernels_dir().join(format!(".fetch-{}", series.name));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    // `apt-get download` writes to its working directory (the scratch one), as root: apt's
    // `_apt` sandbox user cannot write there.
    let download = |pkg: &str| -> Result<()> {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-o", "APT::Sandbox::User=root", "download", pkg]).current_dir(&scratch);
        eprintln!("xtask: $ {} (in {})", crate::display(&cmd), scratch.display());
        let status = cmd.status().context("spawning apt-get download")?;
        if !status.success() {
            bail!("apt-get download {pkg} failed: {status}");
        }
        Ok(())
    };
    if download(&package).is_err() {
        // Stale lists name a version the archive no longer has.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        download(&package)?;
    }
    let deb = std::fs::read_dir(&scratch)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let tree = scratch.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let vmlinuz = std::fs::read_dir(tree.join("boot"))
        .with_context(|| format!("{} has no boot/", deb.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .with_context(|| format!("{} has no boot/vmlinuz-*", deb.display()))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_string_lossy().strip_prefix("vmlinuz-").map(str::to_string))
        .context("vmlinuz name")?;
    let version = deb_version(&deb)?;
    let dest = kernels_dir().join(&release);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::create_dir_all(&dest)?;
    copy(&vmlinuz, &dest.join("vmlinuz"))?;
    copy(&tree.join("boot").join(format!("config-{release}")), &dest.join("config"))?;
    std::fs::write(dest.join("package"), format!("{package} {version}\n"))?;
    std::fs::remove_dir_all(&scratch)?;
    eprintln!(
        "xtask: kernel {} is {release} ({package} {version}) in {}",
        series.name,
        dest.display()
    );
    Ok(())
}

fn deb_version(deb: &Path) -> Result<String> {
    let out = Command::new("dpkg-deb").args(["--field"]).arg(deb).arg("Version").output()?;
    if !out.status.success() {
        bail!("dpkg-deb --field {} Version: {}", deb.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_number_not_by_text() {
        let mut names = [
            "linux-image-6.1.0-10-cloud-amd64-unsigned",
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
        ];
        names.sort_by_key(|n| version_key(n));
        assert_eq!(names.last(), Some(&"linux-image-6.1.0-57-cloud-amd64-unsigned"));
        assert!(
            version_key("6.12.117+deb12-cloud-amd64") > version_key("6.12.99+deb12-cloud-amd64")
        );
    }
}
