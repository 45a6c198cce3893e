//! observer's eBPF programs. Built for `bpfel-unknown-none` by observer/build.rs (aya-build);
//! on the host this file is an empty stub so `cargo build --workspace` and clippy work.
//!
//! Pipeline, kernel side: every program filters before it reserves ring-buffer space, so a
//! fork/exec/exit or signal storm on the node costs a few instructions per event and no records.
//! See the module docs in `probes/` for what each hook sees and why it is the right hook.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
// BPF_XADD through inline asm (the target has no atomic read-modify-write in core).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod probes;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// bpf_probe_read_kernel and the ring buffer helpers are GPL-only.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
