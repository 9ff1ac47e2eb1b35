//! Network namespaces joined by veth links, and traffic between them, for
//! the classifier suite.
//!
//! A [`Netns`] is a descriptor of the namespace (`/proc/thread-self/ns/net`
//! of the thread that made it), not a name under /run/netns: it needs no
//! writable /run, leaves nothing behind when a test fails half-way, and the
//! namespace dies once the `Netns` and the last socket or thread in it are
//! gone. `ip` runs inside it by `setns` before the exec, one process per
//! batch of commands (under TCG with a debug kernel a process start costs
//! most of a second).
//!
//! Traffic comes from sockets made on a thread that entered the namespace
//! (a socket keeps the namespace it was made in): UDP and TCP through
//! `std::net`, ICMP echo through a raw socket. A negative check sends a few
//! packets and waits [`WAIT`] for any to arrive; a positive one goes through
//! [`eventually`], which retries for up to [`SETTLE`] (links coming up,
//! ARP and neighbour discovery).

use crate::ensure;
use crate::harness::TestResult;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a receiver waits for a datagram or reply after the last send:
/// what a dropped packet costs a check.
pub const WAIT: Duration = Duration::from_millis(300);
/// How long a TCP connect waits for the handshake (one SYN: the first
/// retransmission would come after 1 s).
pub const TCP_WAIT: Duration = Duration::from_millis(600);
/// Datagrams or echo requests one check sends.
pub const SENDS: u64 = 3;
/// How long a positive check may keep failing before it fails the test.
pub const SETTLE: Duration = Duration::from_secs(10);

/// A network namespace of its own, deleted when dropped (once nothing else
/// holds it: sockets made in it, threads that entered it).
pub struct Netns {
    name: String,
    fd: OwnedFd,
}

/// The `ip` binary (iproute2); the guest's PATH may lack the sbin dirs.
fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

/// A namespace's sysctl, as a thread inside it sees /proc/sys/net.
fn sysctl(path: &str, value: &str) -> TestResult {
    let file = format!("/proc/sys/net/{path}");
    std::fs::write(&file, value).map_err(|e| format!("{file} = {value}: {e}"))
}

/// `socket(domain, ty | SOCK_CLOEXEC, proto)`.
fn socket(domain: i32, ty: i32, proto: i32) -> Result<OwnedFd, String> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    ensure!(
        fd >= 0,
        "socket({domain}, {ty}, {proto}): {}",
        io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets IFF_UP on interface `ifname` of the calling thread's namespace.
fn set_up(ifname: &str) -> TestResult {
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: ifreq is plain data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    ensure!(ifname.len() < libc::IFNAMSIZ, "interface name {ifname:?}");
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for both calls; ifru_flags is the
    // member SIOC[GS]IFFLAGS use.
    unsafe {
        ensure!(
            libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) == 0,
            "SIOCGIFFLAGS {ifname}: {}",
            io::Error::last_os_error()
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        ensure!(
            libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) == 0,
            "SIOCSIFFLAGS {ifname}: {}",
            io::Error::last_os_error()
        );
    }
    Ok(())
}

impl Netns {
    /// A fresh namespace called `name` (in messages and in the names of
    /// the links to it: at most 12 bytes) with `lo` up, no DAD (addresses
    /// are usable at once) and no reverse-path filter (a rerouted packet
    /// keeps the source address it was given for another interface).
    pub fn new(name: &str) -> Result<Netns, String> {
        ensure!(
            (1..=12).contains(&name.len()),
            "namespace name {name:?}: 1..12 bytes"
        );
        let fd = std::thread::scope(|s| {
            s.spawn(|| -> Result<OwnedFd, String> {
                crate::harness::unshare(libc::CLONE_NEWNET)?;
                let f = std::fs::File::open("/proc/thread-self/ns/net")
                    .map_err(|e| format!("/proc/thread-self/ns/net: {e}"))?;
                for (path, value) in [
                    ("ipv6/conf/all/accept_dad", "0"),
                    ("ipv6/conf/default/accept_dad", "0"),
                    ("ipv4/conf/all/rp_filter", "0"),
                    ("ipv4/conf/default/rp_filter", "0"),
                ] {
                    sysctl(path, value)?;
                }
                set_up("lo")?;
                Ok(OwnedFd::from(f))
            })
            .join()
            .unwrap_or_else(|_| Err("panicked".into()))
        })
        .map_err(|e| format!("namespace {name}: {e}"))?;
        Ok(Netns {
            name: name.into(),
            fd,
        })
    }

    /// Moves the calling thread into the namespace (for threads a test
    /// spawns itself; [`Netns::run_in`] for a single call).
    pub fn enter(&self) -> TestResult {
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) };
        ensure!(
            rc == 0,
            "setns into {}: {}",
            self.name,
            io::Error::last_os_error()
        );
        Ok(())
    }

    /// Runs `f` on a thread inside the namespace; what it returns (sockets
    /// and `Nfkv` handles made there keep acting on this namespace).
    pub fn run_in<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                f()
            })
            .join()
            .unwrap_or_else(|p| {
                Err(p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()))
            })
        })
        .map_err(|e| format!("in {}: {e}", self.name))
    }

    /// An `nfkv` handle on the namespace's table and classifiers.
    pub fn nfkv(&self) -> Result<nfkv::Nfkv, String> {
        self.run_in(crate::harness::connect)
    }

    /// Runs `ip` commands (each one line of `ip -batch`, such as `route add
    /// 10.9.9.9/32 via 10.0.0.2`) inside the namespace, in one process;
    /// fails at the first that fails.
    pub fn ip<S: AsRef<str>>(&self, cmds: &[S]) -> TestResult {
        self.ip_passing(&[], cmds, None)
    }

    /// [`Netns::ip`] as `ip -6`: for `rule` commands, which are IPv4 ones
    /// otherwise (a `from ::/0` does not make them IPv6).
    pub fn ip6<S: AsRef<str>>(&self, cmds: &[S]) -> TestResult {
        self.ip_passing(&["-6"], cmds, None)
    }

    /// [`Netns::ip`], where `{peer}` in the commands stands for namespace
    /// `peer` (a path to its descriptor, open in the `ip` process).
    fn ip_passing<S: AsRef<str>>(
        &self,
        options: &[&str],
        cmds: &[S],
        peer: Option<&Netns>,
    ) -> TestResult {
        let own = self.fd.as_raw_fd();
        let passed: Option<RawFd> = peer.map(|p| p.fd.as_raw_fd());
        let script: String = cmds
            .iter()
            .map(|c| {
                let c = c.as_ref();
                let line = match passed {
                    Some(fd) => c.replace("{peer}", &format!("/proc/self/fd/{fd}")),
                    None => c.to_string(),
                };
                line + "\n"
            })
            .collect();
        let mut cmd = Command::new(ip_binary());
        cmd.args(options)
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure makes only
        // async-signal-safe syscalls (setns, fcntl) on descriptors the
        // parent keeps open for the whole call.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(own, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The child's copy of the peer's descriptor survives the
                // exec (the parent's keeps its close-on-exec flag).
                if let Some(fd) = passed {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("ip in {}: {e}", self.name))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("ip in {}: writing the commands: {e}", self.name))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("ip in {}: {e}", self.name))?;
        ensure!(
            out.status.success(),
            "ip -batch in {} failed ({}): {}\ncommands:\n{script}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Whether the namespace has an interface called `ifname` (a veth end
    /// disappears when the namespace of its peer is torn down).
    pub fn has_interface(&self, ifname: &str) -> Result<bool, String> {
        let name = std::ffi::CString::new(ifname).map_err(|_| "NUL in a name".to_string())?;
        // SAFETY: a NUL-terminated string valid for the call.
        self.run_in(|| Ok(unsafe { libc::if_nametoindex(name.as_ptr()) } != 0))
    }
}

/// A veth pair between two namespaces.
pub struct Link {
    /// The end in the first namespace: `to-<second's name>` (the other
    /// end is `to-<first's name>`).
    pub a_if: String,
}

impl Link {
    /// A veth pair from `a` to `b`, its ends named after the namespace at
    /// the other end (`to-b` in `a`), addresses `addrs_a` and `addrs_b`
    /// (`10.0.0.1/24`, `fd00::1/64`; IPv6 ones without DAD) and both up.
    pub fn pair(a: &Netns, addrs_a: &[&str], b: &Netns, addrs_b: &[&str]) -> Result<Link, String> {
        let a_if = format!("to-{}", b.name);
        let b_if = format!("to-{}", a.name);
        let addr = |ifname: &str, a: &&str| {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            format!("addr add {a} dev {ifname}{nodad}")
        };
        let mut in_a = vec![format!(
            "link add {a_if} type veth peer name {b_if} netns {{peer}}"
        )];
        in_a.extend(addrs_a.iter().map(|x| addr(&a_if, x)));
        in_a.push(format!("link set {a_if} up"));
        a.ip_passing(&[], &in_a, Some(b))?;
        let mut in_b: Vec<String> = addrs_b.iter().map(|x| addr(&b_if, x)).collect();
        in_b.push(format!("link set {b_if} up"));
        b.ip(&in_b)?;
        Ok(Link { a_if })
    }
}

/// Retries `check` until it passes, for up to [`SETTLE`].
pub fn eventually(what: &str, mut check: impl FnMut() -> Result<bool, String>) -> TestResult {
    let start = Instant::now();
    loop {
        if check()? {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            return Err(format!(
                "{what}: still failing after {} s",
                SETTLE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static TOKENS: AtomicU64 = AtomicU64::new(0);

/// A payload no other check sends: a datagram that arrives late from an
/// earlier check is never taken for this one's.
pub fn token() -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..4].copy_from_slice(b"nfkv");
    t[4..8].copy_from_slice(&std::process::id().to_be_bytes());
    t[8..].copy_from_slice(&TOKENS.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    t
}

/// The unspecified address of `addr`'s family.
pub fn unspecified(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// A UDP socket bound in a namespace, receiving.
pub struct UdpRx {
    sock: UdpSocket,
}

impl UdpRx {
    /// Bound to `addr`:`port` in `ns`.
    pub fn bind(ns: &Netns, addr: IpAddr, port: u16) -> Result<UdpRx, String> {
        let sock = ns.run_in(|| {
            UdpSocket::bind((addr, port)).map_err(|e| format!("bind UDP {addr}:{port}: {e}"))
        })?;
        Ok(UdpRx { sock })
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Whether a datagram carrying `token` arrives within `wait`; other
    /// datagrams are skipped.
    pub fn got(&self, token: &[u8], wait: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == token => return Ok(true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(format!("UDP receive: {e}")),
            }
        }
    }
}

/// A UDP socket made in a namespace, sending.
pub struct UdpTx {
    sock: UdpSocket,
}

/// Whether a send error means a netfilter hook of the sender's own
/// namespace dropped the packet (NF_DROP at output is EPERM).
fn dropped_locally(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPERM)
}

impl UdpTx {
    /// Bound to `src` (port 0; the unspecified address lets routing pick).
    pub fn new(ns: &Netns, src: IpAddr) -> Result<UdpTx, String> {
        let sock =
            ns.run_in(|| UdpSocket::bind((src, 0)).map_err(|e| format!("bind UDP {src}: {e}")))?;
        Ok(UdpTx { sock })
    }

    /// The socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Sets SO_MARK: the mark its packets start with.
    pub fn set_mark(&self, mark: u32) -> TestResult {
        set_mark(self.sock.as_raw_fd(), mark)
    }

    /// Sends `payload` to `dst` [`SENDS`] times; a send refused with EPERM
    /// (dropped at an output hook) is no error.
    pub fn send(&self, dst: SocketAddr, payload: &[u8]) -> TestResult {
        for _ in 0..SENDS {
            match self.sock.send_to(payload, dst) {
                Ok(_) => {}
                Err(e) if dropped_locally(&e) => {}
                Err(e) => return Err(format!("UDP send to {dst}: {e}")),
            }
        }
        Ok(())
    }
}

fn set_mark(fd: RawFd, mark: u32) -> TestResult {
    // SAFETY: the option value is a u32 valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            4,
        )
    };
    ensure!(rc == 0, "SO_MARK {mark:#x}: {}", io::Error::last_os_error());
    Ok(())
}

/// Whether one of [`SENDS`] datagrams from `tx` to `dst` reaches `rx`
/// within [`WAIT`].
pub fn udp_round(tx: &UdpTx, rx: &UdpRx, dst: SocketAddr) -> Result<bool, String> {
    let t = token();
    tx.send(dst, &t)?;
    rx.got(&t, WAIT)
}

/// Whether UDP from `from` reaches a socket bound to `dst`:`port` in `to`
/// (one round: [`SENDS`] datagrams, [`WAIT`]).
pub fn udp_delivers(from: &Netns, to: &Netns, dst: IpAddr, port: u16) -> Result<bool, String> {
    let rx = UdpRx::bind(to, dst, port)?;
    let tx = UdpTx::new(from, unspecified(dst))?;
    udp_round(&tx, &rx, SocketAddr::new(dst, port))
}

/// Whether a TCP connection from `from` to a listener on `dst`:`port` in
/// `to` completes its handshake within [`TCP_WAIT`].
pub fn tcp_connects(from: &Netns, to: &Netns, dst: IpAddr, port: u16) -> Result<bool, String> {
    let _listener = to.run_in(|| {
        TcpListener::bind((dst, port)).map_err(|e| format!("listen TCP {dst}:{port}: {e}"))
    })?;
    let sa = SocketAddr::new(dst, port);
    let r = from.run_in(|| Ok(TcpStream::connect_timeout(&sa, TCP_WAIT)))?;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::TimedOut || dropped_locally(&e) => Ok(false),
        Err(e) => Err(format!("TCP connect to {sa}: {e}")),
    }
}

/// The sockaddr of `addr`.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeros is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The address of a sockaddr the kernel filled in.
fn address_of(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Waits up to `timeout` for `fd` to be readable.
fn readable(fd: RawFd, timeout: Duration) -> Result<bool, String> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => Ok(false),
        _ => Err(format!("poll: {}", io::Error::last_os_error())),
    }
}

/// Whether `dst` answers one of [`SENDS`] ICMP (ICMPv6) echo requests from
/// `from` within [`WAIT`], through a raw socket.
pub fn icmp_echo(from: &Netns, dst: IpAddr) -> Result<bool, String> {
    from.run_in(|| echo(dst))
        .map_err(|e| format!("ICMP echo to {dst}: {e}"))
}

fn echo(dst: IpAddr) -> Result<bool, String> {
    let v6 = dst.is_ipv6();
    let (domain, proto, request, reply) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8)
    };
    let sock = socket(domain, libc::SOCK_RAW, proto)?;
    let t = token();
    let id = (u64::from_be_bytes(t[8..].try_into().expect("8 bytes")) as u16)
        ^ (std::process::id() as u16);
    let (to, to_len) = sockaddr(SocketAddr::new(dst, 0));
    for seq in 0..SENDS as u16 {
        let mut msg = vec![request, 0, 0, 0];
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend_from_slice(&t);
        if !v6 {
            // ICMPv6 raw sockets get their checksum from the kernel.
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: `msg` and `to` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_storage).cast(),
                to_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if !dropped_locally(&e) {
                return Err(format!("sendto: {e}"));
            }
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable(sock.as_raw_fd(), left)? {
            return Ok(false);
        }
        // SAFETY: sockaddr_storage is plain data.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `buf` and `from` are valid for the lengths passed.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("recvfrom: {e}"));
        }
        let pkt = &buf[..n as usize];
        // An IPv4 raw socket reads the IP header too; an IPv6 one does not.
        let icmp = if v6 {
            pkt
        } else {
            let ihl = usize::from(pkt.first().map_or(0, |b| b & 0xf)) * 4;
            pkt.get(ihl..).unwrap_or(&[])
        };
        if icmp.len() >= 8 + t.len()
            && icmp[0] == reply
            && icmp[4..6] == id.to_be_bytes()
            && icmp[8..8 + t.len()] == t
            && address_of(&from) == Some(dst)
        {
            return Ok(true);
        }
    }
}
