//! A small test runner and the helpers the suites share.

use nfkv::{Entry, Nfkv};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

/// Outcome of one test.
pub type TestResult = Result<(), String>;

/// A named test.
pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// Declares a list of tests from functions.
#[macro_export]
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::harness::Test { name: stringify!($f), run: $f }),*]
    };
}

/// Fails the test with a message unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs `tests` of suite `suite`, printing one line each; returns (passed, failed).
pub fn run_suite(suite: &str, tests: &[Test], filter: Option<&str>) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for t in tests {
        let name = format!("{suite}::{}", t.name);
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let start = std::time::Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(t.run)).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()))
        });
        let ms = start.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("ok   {name} ({ms} ms)");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name} ({ms} ms): {e}");
            }
        }
    }
    (passed, failed)
}

/// `getsockopt(fd, IPPROTO_IP, optname)` into `buf`, its length read from
/// `optlen`, which another thread may change during the call (the races on
/// the length the IP layer reads twice).
///
/// # Safety
///
/// `optlen` never holds more than `buf.len()` during the call.
pub unsafe fn getsockopt_racing_len(
    fd: std::os::fd::RawFd,
    optname: libc::c_int,
    buf: &mut [u8],
    optlen: &std::sync::atomic::AtomicI32,
) -> libc::c_int {
    // SAFETY: `buf` is valid for any length `optlen` holds (caller); the
    // kernel reads and writes `optlen` as a plain int, which the other
    // thread's atomic stores cannot tear on x86.
    unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            optname,
            buf.as_mut_ptr().cast(),
            optlen.as_ptr().cast(),
        )
    }
}

/// A connection to the module, or the test fails.
pub fn connect() -> Result<Nfkv, String> {
    Nfkv::open().map_err(|e| format!("open: {e}"))
}

/// A connection to an empty table.
pub fn fresh() -> Result<Nfkv, String> {
    let kv = connect()?;
    kv.flush().map_err(|e| format!("flush: {e}"))?;
    Ok(kv)
}

/// Everything observable about a table: generation, entry count, bytes and contents.
#[derive(Debug)]
pub struct Dump {
    pub generation: u64,
    pub entries: u32,
    pub bytes_used: u64,
    pub contents: Vec<Entry>,
}

/// Two dumps are equal in all but the time their entries have left, which
/// passes between them (the TTL suite compares lifetimes itself).
impl PartialEq for Dump {
    fn eq(&self, other: &Self) -> bool {
        let stored = |d: &Dump| -> Vec<(Vec<u8>, Vec<u8>, u64)> {
            d.contents
                .iter()
                .map(|e| (e.key.clone(), e.value.clone(), e.version))
                .collect()
        };
        (self.generation, self.entries, self.bytes_used)
            == (other.generation, other.entries, other.bytes_used)
            && stored(self) == stored(other)
    }
}

impl Eq for Dump {}

/// Reads the whole table consistently.
pub fn dump(kv: &Nfkv) -> Result<Dump, String> {
    let info = kv.info().map_err(|e| format!("info: {e}"))?;
    let (generation, contents) = kv.snapshot(b"", 10).map_err(|e| format!("snapshot: {e}"))?;
    ensure!(
        generation == info.generation,
        "generation moved under a quiet table"
    );
    Ok(Dump {
        generation,
        entries: info.entries,
        bytes_used: info.bytes_used,
        contents,
    })
}

/// The errno of a failed call, or a message if it succeeded.
pub fn errno_of<T>(r: io::Result<T>) -> Result<i32, String> {
    match r {
        Ok(_) => Err("call succeeded but should have failed".into()),
        Err(e) => e.raw_os_error().ok_or_else(|| format!("no errno: {e}")),
    }
}

/// Checks that `r` failed with `want`.
pub fn expect_errno<T>(what: &str, r: io::Result<T>, want: i32) -> TestResult {
    let got = errno_of(r).map_err(|e| format!("{what}: {e}"))?;
    ensure!(
        got == want,
        "{what}: errno {got} ({}), expected {want} ({})",
        io::Error::from_raw_os_error(got),
        io::Error::from_raw_os_error(want)
    );
    Ok(())
}

/// Checks that a library call failed with an error of errno `want`.
pub fn expect_err<T: std::fmt::Debug>(what: &str, r: nfkv::Result<T>, want: i32) -> TestResult {
    match r {
        Ok(v) => Err(format!("{what}: succeeded ({v:?}), expected errno {want}")),
        Err(e) if e.errno() == Some(want) => Ok(()),
        Err(e) => Err(format!("{what}: {e}, expected errno {want}")),
    }
}

/// Deletes every classifier of `kv`'s namespace, whose prefixes would
/// otherwise refuse the next test's writes.
pub fn clear_classifiers(kv: &Nfkv) -> TestResult {
    for (c, _) in ck("list classifiers", kv.classifiers())? {
        let name = String::from_utf8_lossy(c.name()).into_owned();
        ck("delete classifier", kv.delete_classifier(&name))?;
    }
    Ok(())
}

/// Maps a library error into a test failure.
pub fn ck<T>(what: &str, r: nfkv::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// Runs `f` in a forked child (for setuid, unshare, setns); its result
/// comes back through a pipe.
pub fn in_child(f: impl FnOnce() -> TestResult) -> TestResult {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: the suites run single-threaded when they fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(fds[0]) };
        let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err("child panicked".into()));
        let msg = match &r {
            Ok(()) => String::new(),
            Err(e) => e.clone(),
        };
        // SAFETY: writing a buffer we own, then leaving without unwinding.
        unsafe {
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(i32::from(r.is_err()));
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        msg.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: closing the read end; reaping our own child.
    let mut status = 0;
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if msg.is_empty() {
        Err(format!("child died with status {status:#x}"))
    } else {
        Err(String::from_utf8_lossy(&msg).into_owned())
    }
}

/// A forked child paused between two steps: `setup` ran (its state kept
/// alive in the child, e.g. a network namespace and a socket in it), and
/// `finish` runs when [`Held::finish`] is called. Dropping it unfinished
/// makes the child exit.
pub struct Held {
    pid: libc::pid_t,
    go: i32,
    report: i32,
}

fn read_all(fd: i32, until_newline: bool) -> Vec<u8> {
    let mut msg = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
        if n <= 0 || (until_newline && byte[0] == b'\n') {
            return msg;
        }
        msg.push(byte[0]);
    }
}

/// Forks a child that runs `setup`, then waits for [`Held::finish`] and
/// runs `finish` on what `setup` returned.
pub fn hold_in_child<T>(
    setup: impl FnOnce() -> Result<T, String>,
    finish: impl FnOnce(T) -> TestResult,
) -> Result<Held, String> {
    let (mut go, mut report) = ([0; 2], [0; 2]);
    // SAFETY: each array has room for two descriptors.
    if unsafe { libc::pipe(go.as_mut_ptr()) | libc::pipe(report.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: the suites run single-threaded when they fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: closing the parent's ends in the child.
        unsafe {
            libc::close(go[1]);
            libc::close(report[0]);
        }
        let say = |msg: &str| {
            // SAFETY: writing a buffer we own.
            unsafe { libc::write(report[1], msg.as_ptr().cast(), msg.len()) };
        };
        let r = catch_unwind(AssertUnwindSafe(|| -> TestResult {
            let state = setup().map_err(|e| format!("setup: {e}"))?;
            say("ready\n");
            if read_all(go[0], false) != b"g" {
                return Err("released without finish".into());
            }
            finish(state)
        }))
        .unwrap_or_else(|_| Err("child panicked".into()));
        if let Err(e) = &r {
            say(e.replace('\n', " ").as_str());
        }
        // SAFETY: leaving the child without unwinding into the parent's code.
        unsafe { libc::_exit(i32::from(r.is_err())) };
    }
    // SAFETY: closing the child's ends in the parent.
    unsafe {
        libc::close(go[0]);
        libc::close(report[1]);
    }
    let mut held = Held {
        pid,
        go: go[1],
        report: report[0],
    };
    let first = read_all(held.report, true);
    if first != b"ready" {
        return Err(held.wait(String::from_utf8_lossy(&first).into_owned()));
    }
    Ok(held)
}

impl Held {
    /// Lets the child run its second step; its result.
    pub fn finish(mut self) -> TestResult {
        // SAFETY: writing one byte we own, then closing our end.
        unsafe {
            libc::write(self.go, b"g".as_ptr().cast(), 1);
            libc::close(self.go);
        }
        self.go = -1;
        let msg = String::from_utf8_lossy(&read_all(self.report, false)).into_owned();
        match self.wait(msg) {
            e if e.is_empty() => Ok(()),
            e => Err(e),
        }
    }

    /// Reaps the child; an empty string if it succeeded, else why not.
    fn wait(&mut self, msg: String) -> String {
        let mut status = 0;
        // SAFETY: closing our descriptors and reaping our own child, once.
        unsafe {
            if self.go >= 0 {
                libc::close(self.go);
            }
            libc::close(self.report);
            libc::waitpid(self.pid, &mut status, 0);
        }
        self.pid = -1;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            String::new()
        } else if msg.is_empty() {
            format!("child died with status {status:#x}")
        } else {
            msg
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.pid > 0 {
            self.wait(String::new());
        }
    }
}

/// Everything the kernel logged after `marker` (a line this test wrote to
/// /dev/kmsg), so a check sees only its own case's messages.
pub fn kmsg_mark(marker: &str) -> TestResult {
    std::fs::write("/dev/kmsg", format!("{marker}\n")).map_err(|e| format!("/dev/kmsg: {e}"))
}

/// The kernel log after the last line containing `marker`.
pub fn dmesg_after(marker: &str) -> Result<String, String> {
    let out = Command::new("dmesg")
        .output()
        .map_err(|e| format!("dmesg: {e}"))?;
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = log
        .rfind(marker)
        .ok_or_else(|| format!("marker {marker:?} is not in dmesg"))?;
    Ok(log[at + marker.len()..].to_string())
}

/// Drops every privilege: uid/gid 65534, no capabilities.
pub fn become_nobody() -> TestResult {
    // SAFETY: plain syscalls on this process.
    let rc = unsafe {
        libc::setgroups(0, std::ptr::null())
            | libc::setresgid(65534, 65534, 65534)
            | libc::setresuid(65534, 65534, 65534)
    };
    ensure!(
        rc == 0,
        "dropping privileges: {}",
        io::Error::last_os_error()
    );
    // Changing uid made us non-dumpable, which locks /proc/self/*_map.
    // SAFETY: plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) };
    Ok(())
}

/// `unshare(flags)`.
pub fn unshare(flags: i32) -> TestResult {
    // SAFETY: plain syscall.
    ensure!(
        unsafe { libc::unshare(flags) } == 0,
        "unshare: {}",
        io::Error::last_os_error()
    );
    Ok(())
}

/// Writes a file of /proc (uid_map and friends).
pub fn write_proc(path: &str, data: &str) -> TestResult {
    std::fs::write(path, data).map_err(|e| format!("{path}: {e}"))
}

/// Whether nfkv is loaded.
pub fn loaded() -> bool {
    std::fs::read_to_string("/proc/modules")
        .is_ok_and(|m| m.lines().any(|l| l.starts_with("nfkv ")))
}

/// `rmmod nfkv`, as the syscall (no fork/exec: under TCG with a debug
/// kernel a process start costs most of a second, and the lifecycle suite
/// loads and unloads hundreds of times). Non-blocking like rmmod: EBUSY or
/// EAGAIN while a caller holds the module.
pub fn rmmod() -> TestResult {
    let name = c"nfkv";
    // SAFETY: delete_module reads a NUL-terminated name; the pointer is valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    ensure!(r == 0, "rmmod nfkv: {}", io::Error::last_os_error());
    Ok(())
}

/// `insmod $NFKV_KO PARAMS`, as the syscall (see [`rmmod`]).
pub fn insmod(params: &str) -> TestResult {
    let ko = std::env::var("NFKV_KO").map_err(|_| "NFKV_KO is not set".to_string())?;
    let file = std::fs::File::open(&ko).map_err(|e| format!("{ko}: {e}"))?;
    let args =
        std::ffi::CString::new(params).map_err(|_| format!("params {params:?} hold a NUL"))?;
    // SAFETY: finit_module reads the open descriptor and a NUL-terminated string, both valid
    // for the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), args.as_ptr(), 0) };
    ensure!(
        r == 0,
        "insmod {ko} {params}: {}",
        io::Error::last_os_error()
    );
    Ok(())
}

/// Reloads nfkv.ko (from $NFKV_KO) with module parameters `params`.
pub fn reload(params: &str) -> TestResult {
    if loaded() {
        rmmod()?;
    }
    insmod(params)
}

/// The socket's descriptor number, for error messages.
pub fn fd_no(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}

/// A small deterministic PRNG (xorshift64*), so every run can be replayed
/// from its printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Random bytes, `min + below(span)` of them.
    pub fn blob(&mut self, min: usize, span: u64) -> Vec<u8> {
        let len = min + self.below(span) as usize;
        self.bytes(len)
    }
}
