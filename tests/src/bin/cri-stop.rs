//! `cri-stop <socket> <container id> <timeout seconds> [kubelet's flags...]`: one StopContainer
//! call as kubelet makes it, from a process of its own. The flags are not read here: they are in
//! its /proc/<pid>/cmdline for the daemon to read, as it reads a real kubelet's `--config`. The verdict tests run it under the name `kubelet` and kill it
//! in the middle of the call, as a kubelet restart abandons a stop, then run it again. Like
//! kubelet it goes on running after the call: it prints `stopped` (or the error) and waits to
//! be killed.

fn main() -> anyhow::Result<()> {
    // Dies with the test thread that started it, even one that panicked before ending it.
    // SAFETY: prctl(2) with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, container, timeout, ..] = args.as_slice() else {
        anyhow::bail!("usage: cri-stop <socket> <container id> <timeout seconds> [flags...]");
    };
    let timeout: i64 = timeout.parse().map_err(|e| anyhow::anyhow!("timeout {timeout:?}: {e}"))?;
    let result =
        observer_tests::containerd::stop_once(std::path::Path::new(socket), container, timeout);
    match &result {
        Ok(()) => println!("stopped"),
        Err(e) => println!("error: {e:#}"),
    }
    loop {
        std::thread::park();
    }
}
