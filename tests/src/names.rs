//! Names unique to a test: prefixes for namespaces and directories, and ids shaped like
//! Kubernetes' (64-hex container ids, pod uids as UUIDs).

use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A stable 64-hex id (a container id's shape) from `seed`.
pub fn hex64(seed: &str) -> String {
    // Not cryptographic: a stable 64-hex id from the seed (FNV-1a, repeated).
    let mut out = String::new();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < 64 {
        for b in seed.bytes().chain(out.clone().bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(64);
    out
}

/// A stable UUID-shaped id (a pod uid's shape) from `seed`.
pub fn uuid(seed: &str) -> String {
    let h = hex64(&format!("uid{seed}"));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_kubernetes_ids() {
        let id = hex64("a");
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let u = uuid("a");
        assert_eq!(u.len(), 36);
        assert_ne!(hex64("a"), hex64("b"));
    }
}
