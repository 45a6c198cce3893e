//! Compiles observer-ebpf for bpfel-unknown-none (nightly + bpf-linker, via aya-build) and
//! leaves the object in OUT_DIR, where `src/kernel/loader.rs` embeds it with
//! `include_bytes_aligned!`: the release binary carries its probes and runs alone on a node.
//! `cargo xtask` installs the toolchain this needs.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("observer has no parent directory"))?
        .join("observer-ebpf");
    let root = root.to_str().context("non-UTF-8 path to observer-ebpf")?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "observer-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed: run `cargo xtask setup` (nightly rust-src, bpf-linker)",
    )
}
