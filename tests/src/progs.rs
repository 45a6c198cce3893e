//! The tests' trigger programs (`tests/progs/*.c`), built on first use.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A trigger program of `tests/progs/<name>.c`, compiled with the system's C compiler into
/// `target/test-progs/` the first time a test asks for it (tiny purpose-built programs where
/// no real one behaves as the test needs).
pub fn trigger_program(name: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("progs").join(format!("{name}.c"));
    let out_dir = root.join("../target/test-progs");
    let out = out_dir.join(name);
    let fresh = |o: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(o), m(&src)), (Some(a), Some(b)) if a >= b)
    };
    if !fresh(&out) {
        std::fs::create_dir_all(&out_dir).expect("target/test-progs");
        let tmp = out_dir.join(format!("{name}.{}", std::process::id()));
        let status = Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("cc (gcc) is needed to build the tests' trigger programs: apt-get install gcc");
        assert!(status.success(), "compiling {} failed", src.display());
        std::fs::rename(&tmp, &out).expect("install trigger program");
    }
    out
}
