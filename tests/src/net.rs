//! Network namespaces of a test's own, for real TCP traffic to and from containers: a pod's
//! namespace and a client's, joined by a veth pair whose addresses exist only inside them, and
//! connections made from inside a namespace by the test itself. The kernel's monotonic clock,
//! on which the probes stamp what they count, read the same way.
//!
//! Nothing is made on the host's network: each namespace is held by a process of the test's
//! (`unshare --net sleep infinity`), ended by PID on drop, and the veth pair goes with the
//! namespaces. A holder also dies with the test thread that made it (`PR_SET_PDEATHSIG`), so a
//! test killed outright leaves no namespace behind.

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::process::CommandExt as _,
    },
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A network namespace of the test's own, `lo` up.
pub struct Netns {
    holder: Child,
    /// The namespace, open (what [`Netns::connect`] enters).
    ns: File,
}

impl Netns {
    /// A fresh network namespace held by `unshare --net sleep infinity`, `lo` up.
    pub fn spawn() -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl only, between fork and exec; it survives the exec (no setuid).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut holder =
            cmd.spawn().expect("unshare (util-linux) is needed: apt-get install util-linux");
        let pid = holder.id();
        // unshare(2) then exec: once the holder runs `sleep`, its namespace is the new one.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            if Instant::now() > deadline || holder.try_wait().ok().flatten().is_some() {
                let _ = holder.kill();
                let _ = holder.wait();
                panic!("unshare --net did not make a network namespace in 5 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let ns = File::open(format!("/proc/{pid}/ns/net")).expect("open the holder's netns");
        let me = Self { holder, ns };
        assert_ne!(
            std::fs::read_link(me.path()).unwrap(),
            std::fs::read_link("/proc/self/ns/net").unwrap(),
            "the holder has a network namespace of its own"
        );
        me.ip(&["link", "set", "lo", "up"]);
        me
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `/proc/<holder>/ns/net`: what a container joins ([`crate::Spec::join_namespace`]).
    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }

    /// `ip ARGS` inside the namespace; panics with its error when it fails.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .arg("ip")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter (util-linux) is needed: apt-get install util-linux");
        assert!(
            out.status.success(),
            "ip {args:?} in {} (iproute2 is needed: apt-get install iproute2): {}",
            self.path(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A TCP connection to `addr` from inside this namespace: the calling thread enters it
    /// for the socket(2) and connect(2) only (a socket stays in the namespace it was made
    /// in), then returns to its own.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let _inside = Entered::enter(&self.ns)?;
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    }

    /// Like [`Netns::connect`], from the namespace's address `from` (bound before the
    /// connect(2), which std cannot do): a second address of the client's, such as kubelet's
    /// on the host's side of a pod's network. IPv4 only.
    pub fn connect_from(&self, from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
        let SocketAddr::V4(to) = to else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "connect_from: IPv4 only"));
        };
        let _inside = Entered::enter(&self.ns)?;
        let ok = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
        // SAFETY: a plain socket(2); the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd of ours.
        let s = unsafe { OwnedFd::from_raw_fd(fd) };
        // A blocking connect(2) gives up after SO_SNDTIMEO, as connect_timeout's 5 s.
        let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
        let sin = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let (local, peer) = (sin(SocketAddrV4::new(from, 0)), sin(to));
        // SAFETY: our fd; a timeval and sockaddr_ins that outlive the calls, their sizes given.
        unsafe {
            let tv_len = std::mem::size_of_val(&tv) as libc::socklen_t;
            let tv = (&tv as *const libc::timeval).cast();
            ok(libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, tv, tv_len))?;
            ok(libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len))?;
            ok(libc::connect(fd, (&peer as *const libc::sockaddr_in).cast(), len))?;
        }
        Ok(TcpStream::from(s))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Our own child, by pid (Child::kill is kill(2) on it); reaped.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The calling thread inside another network namespace, until dropped.
struct Entered {
    back: File,
}

impl Entered {
    fn enter(ns: &File) -> io::Result<Self> {
        let back = File::open("/proc/thread-self/ns/net")?;
        // SAFETY: setns(2) on fds we own; it changes the calling thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { back })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: as above.
        if unsafe { libc::setns(self.back.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // A test thread left in another namespace would talk to the wrong daemon.
            eprintln!("setns back: {}", io::Error::last_os_error());
            std::process::abort();
        }
    }
}

/// A pod's network namespace and a client's, joined by a veth pair: the server end
/// [`VethPair::SERVER`], the client end [`VethPair::CLIENT`] (a /30 of their own: the
/// addresses exist only inside the two namespaces, so every test may use the same).
pub struct VethPair {
    pub server: Netns,
    pub client: Netns,
}

impl VethPair {
    pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
    pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);

    pub fn spawn() -> Self {
        let (server, client) = (Netns::spawn(), Netns::spawn());
        // Made straight into the two namespaces: never a device on the host's.
        let status = Command::new("ip")
            .args(["link", "add", "srv0", "netns", &server.pid().to_string()])
            .args(["type", "veth", "peer", "name", "cli0", "netns", &client.pid().to_string()])
            .stdin(Stdio::null())
            .status()
            .expect("ip (iproute2) is needed: apt-get install iproute2");
        assert!(status.success(), "ip link add veth pair: {status}");
        for (ns, dev, ip) in [(&server, "srv0", Self::SERVER), (&client, "cli0", Self::CLIENT)] {
            ns.ip(&["addr", "add", &format!("{ip}/30"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        Self { server, client }
    }

    /// `ip` as an address of the client's too (a /32 on its end), routed to from the pod's
    /// side: what [`Netns::connect_from`] connects from.
    pub fn add_client_address(&self, ip: Ipv4Addr) {
        self.client.ip(&["addr", "add", &format!("{ip}/32"), "dev", "cli0"]);
        self.server.ip(&["route", "add", &format!("{ip}/32"), "dev", "srv0"]);
    }
}

/// CLOCK_MONOTONIC in seconds: the clock of the kernel's stamps (`bpf_ktime_get_ns`), of
/// python's `time.monotonic()` and of [`Instant`], shared by every process of the node.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
