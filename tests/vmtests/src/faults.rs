//! Fault injection, "nothing lost": with /proc/thread-self/fail-nth, fail
//! the 1st, 2nd, ... Nth fault point (slab or page allocation, or user
//! copy) of a command until it runs untouched. Every call that failed must
//! report ENOMEM (allocation) or EFAULT (user copy) and leave the table exactly as
//! it was; a call the kernel recovered from (kvmalloc falling back to
//! vmalloc) must have done the whole write. A GET must allocate nothing,
//! whatever the size of its value: only its user copies may fail. Needs the
//! debug kernel. Besides, every record of a mixed batch is made to fail in
//! turn, to prove the rollback of the records before it, and a namespace's
//! creation (the module's pernet init allocates) fails at each fault point.
//! The writes include puts and batches with lifetimes (NFKV_F_TTL,
//! NFKV_F_KEEP_TTL; the table compared includes whether each entry expires
//! within the hour or later); the TTL reaper, which runs on a kworker where
//! fail-nth cannot reach it, meets failing slab allocations through the
//! kworkers' make-it-fail. A namespace's first watch, which makes its
//! change log, fails at each fault point in turn: the next call works.

use crate::ensure;
use crate::harness::*;
use crate::ttl::{keep, list_raw, ttl};
use nfkv::{Batch, Condition, Nfkv};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub fn suite() -> Vec<Test> {
    crate::tests![
        every_fault_point_of_every_write,
        every_fault_point_with_values_over_a_page,
        every_failing_record_of_a_mixed_batch,
        reaper_under_allocation_failures,
        every_fault_point_of_a_namespace_creation,
        every_fault_point_of_a_first_watch
    ]
}

/// Knobs: inject into sleeping slab and page allocations of every order
/// (fail_page_alloc's defaults skip allocations that may sleep and order 0,
/// so kmalloc over 8 KiB and vmalloc's pages would never fail), and stay
/// quiet (a verbose injection prints a stack trace, which the dmesg gate
/// refuses).
pub(crate) fn configure() -> TestResult {
    let dbg = "/sys/kernel/debug";
    ensure!(
        std::path::Path::new(&format!("{dbg}/failslab")).exists(),
        "no {dbg}/failslab: the fault suite needs the debug kernel (CONFIG_FAILSLAB)"
    );
    for (file, value) in [
        ("failslab/ignore-gfp-wait", "N"),
        ("fail_page_alloc/ignore-gfp-wait", "N"),
        ("fail_page_alloc/min-order", "0"),
        ("failslab/verbose", "0"),
        ("fail_usercopy/verbose", "0"),
        ("fail_page_alloc/verbose", "0"),
    ] {
        let path = format!("{dbg}/{file}");
        if std::path::Path::new(&path).exists() {
            write_proc(&path, value)?;
        }
    }
    Ok(())
}

/// An hour and two, in ms: the lifetimes of the baseline's expiring
/// entries and of the writes' (none expires during the suite, and a write
/// that set its lifetime shows).
const HOUR_MS: u32 = 3_600_000;
const TWO_HOURS_MS: u32 = 7_200_000;

fn baseline(kv: &Nfkv) -> TestResult {
    let mut b = Batch::new();
    b.flush();
    for i in 0..20u32 {
        b.put(
            format!("base{i:02}").as_bytes(),
            &[i as u8; 100],
            Condition::default(),
        );
    }
    for i in 0..2u32 {
        b.put(
            format!("ttl{i:02}").as_bytes(),
            &[i as u8; 60],
            ttl(HOUR_MS),
        );
    }
    ck("baseline", kv.apply(&b))
}

/// Key, value and lifetime class: 0 never expires, 1 an hour or less
/// left, 2 more.
type KeyValue = (Vec<u8>, Vec<u8>, u8);
/// One write under test.
type Write = Box<dyn Fn(&Nfkv) -> nfkv::Result<()>>;

/// Contents without versions and generation, which differ run to run, but
/// with what is left of each entry's life, roughly.
fn contents(kv: &Nfkv) -> Result<Vec<KeyValue>, String> {
    Ok(list_raw(kv, b"")?
        .into_iter()
        .map(|(k, e)| {
            let class = match e.ttl_ms {
                0 => 0,
                t if t <= HOUR_MS => 1,
                _ => 2,
            };
            (k, e.value, class)
        })
        .collect())
}

#[derive(Default, Debug)]
struct Counts {
    injected: u64,
    enomem: u64,
    efault: u64,
    recovered: u64,
    /// Recovered with an entry in vmalloc memory: the kernel's kmalloc
    /// failed and kvmalloc fell back (other recoveries are the kernel's own,
    /// e.g. kmemleak's metadata pool).
    by_vmalloc: u64,
}

/// vmalloc areas nfkv's entries and requests hold now (`/proc/vmallocinfo`
/// names each area's caller, here a function of the module: `... [nfkv]`).
fn vmalloc_areas() -> Result<usize, String> {
    let info = std::fs::read_to_string("/proc/vmallocinfo")
        .map_err(|e| format!("/proc/vmallocinfo: {e}"))?;
    Ok(info.lines().filter(|l| l.contains(" [nfkv]")).count())
}

/// Clears a pending fail-nth. The write's own user copy may be the pending
/// fault point (when the command had fewer): it then fails with EFAULT, which
/// consumes it, and the next write goes through.
pub(crate) fn reset(fail_nth: &File) -> TestResult {
    for _ in 0..3 {
        match fail_nth.write_at(b"0", 0) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => continue,
            Err(e) => return Err(format!("fail-nth reset: {e}")),
        }
    }
    Err("fail-nth reset kept failing".into())
}

/// Fails fault point 1, 2, ... of `write` until it completes untouched.
/// `may_allocate`: false for commands that must allocate nothing, for which
/// an injected ENOMEM is a failure.
fn each_fault_point(
    kv: &Nfkv,
    fail_nth: &File,
    name: &str,
    baseline: &dyn Fn(&Nfkv) -> TestResult,
    write: &dyn Fn(&Nfkv) -> nfkv::Result<()>,
    may_allocate: bool,
    counts: &mut Counts,
) -> TestResult {
    baseline(kv)?;
    write(kv).map_err(|e| format!("{name} without faults: {e}"))?;
    let done = contents(kv)?;
    for n in 1..10_000u32 {
        baseline(kv)?;
        let before = dump(kv)?;
        let before_contents = contents(kv)?;
        fail_nth
            .write_at(n.to_string().as_bytes(), 0)
            .map_err(|e| format!("fail-nth: {e}"))?;
        let result = write(kv);
        let injected = injected(fail_nth)?;
        if !injected {
            ensure!(
                result.is_ok(),
                "{name}: failed without an injected fault: {result:?}"
            );
            ensure!(
                contents(kv)? == done,
                "{name}: untouched run left another table"
            );
            return Ok(());
        }
        counts.injected += 1;
        match result {
            Ok(()) => {
                counts.recovered += 1;
                counts.by_vmalloc += u64::from(vmalloc_areas()? > 0);
                ensure!(
                    contents(kv)? == done,
                    "{name}: fault {n} recovered but the write is incomplete"
                );
            }
            Err(e) => {
                match e.errno() {
                    Some(libc::ENOMEM) if !may_allocate => {
                        return Err(format!(
                            "{name}: fault {n} gave ENOMEM: the command allocated, and must not"
                        ))
                    }
                    Some(libc::ENOMEM) => counts.enomem += 1,
                    Some(libc::EFAULT) => counts.efault += 1,
                    _ => {
                        return Err(format!(
                            "{name}: fault {n}: {e} (expected ENOMEM or EFAULT)"
                        ))
                    }
                }
                ensure!(
                    dump(kv)? == before && contents(kv)? == before_contents,
                    "{name}: fault {n} failed the call but changed the table"
                );
            }
        }
    }
    Err(format!("{name}: still failing after 10000 fault points"))
}

/// Whether the fault point armed in `fail_nth` was failed, then disarms
/// it. If the call had fewer fault points, the read's own user copy may be
/// the armed one: it then fails with EFAULT, and nothing was injected into
/// the call.
fn injected(fail_nth: &File) -> Result<bool, String> {
    let mut left = [0u8; 16];
    let injected = match fail_nth.read_at(&mut left, 0) {
        Ok(k) => String::from_utf8_lossy(&left[..k]).trim() == "0",
        Err(e) if e.raw_os_error() == Some(libc::EFAULT) => false,
        Err(e) => return Err(format!("fail-nth read: {e}")),
    };
    reset(fail_nth)?;
    Ok(injected)
}

pub(crate) fn open_fail_nth() -> Result<File, String> {
    File::options()
        .read(true)
        .write(true)
        .open("/proc/thread-self/fail-nth")
        .map_err(|e| format!("/proc/thread-self/fail-nth: {e}"))
}

/// A GET that counts a hit or ENOENT (`absent`) as success.
fn get(key: &'static [u8], absent: bool) -> Write {
    Box::new(move |kv| match kv.get(key) {
        Err(e) if absent && e.errno() == Some(libc::ENOENT) => Ok(()),
        Ok(_) if absent => Err(nfkv::Error::Invalid("present".into())),
        r => r.map(|_| ()),
    })
}

fn every_fault_point_of_every_write() -> TestResult {
    configure()?;
    let kv = connect()?;
    let fail_nth = open_fail_nth()?;
    let mut counts = Counts::default();
    let big = vec![0x5a; kv.limits().max_value_len as usize];
    let writes: Vec<(&str, Write)> = vec![
        (
            "put insert",
            Box::new(|kv| kv.put(b"new", b"value", Condition::default())),
        ),
        (
            "put overwrite",
            Box::new(|kv| kv.put(b"base07", b"other value", Condition::default())),
        ),
        (
            "put overwrite, largest value",
            Box::new(move |kv| kv.put(b"base03", &big, Condition::default())),
        ),
        (
            "put create",
            Box::new(|kv| {
                kv.put(
                    b"fresh",
                    b"v",
                    Condition {
                        create_only: true,
                        ..Default::default()
                    },
                )
            }),
        ),
        ("delete", Box::new(|kv| kv.delete(b"base11", None))),
        ("flush", Box::new(|kv| kv.flush())),
        (
            "batch",
            Box::new(|kv| {
                let mut b = Batch::new();
                for i in 0..6u32 {
                    b.put(
                        format!("batch{i}").as_bytes(),
                        &[7; 50],
                        Condition::default(),
                    );
                }
                b.put(b"base01", b"overwritten", Condition::default())
                    .delete(b"base02", None)
                    .delete(b"batch0", None);
                kv.apply(&b)
            }),
        ),
        (
            "batch with flush",
            Box::new(|kv| {
                let mut b = Batch::new();
                b.flush().put(b"only", b"1", Condition::default());
                kv.apply(&b)
            }),
        ),
        (
            "put with a ttl",
            Box::new(|kv| kv.put(b"new", b"value", ttl(TWO_HOURS_MS))),
        ),
        (
            "put with a ttl over an entry that never expires",
            Box::new(|kv| kv.put(b"base07", b"other value", ttl(TWO_HOURS_MS))),
        ),
        (
            "put over an expiring entry, clearing its ttl",
            Box::new(|kv| kv.put(b"ttl00", b"other value", Condition::default())),
        ),
        (
            "put keeping an expiring entry's ttl",
            Box::new(|kv| kv.put(b"ttl01", b"other value", keep(Some(TWO_HOURS_MS)))),
        ),
        (
            "batch of mixed ttls",
            Box::new(|kv| {
                let mut b = Batch::new();
                for i in 0..4u32 {
                    b.put(
                        format!("batch{i}").as_bytes(),
                        &[7; 50],
                        ttl(TWO_HOURS_MS + i),
                    );
                }
                b.put(b"ttl00", b"overwritten", keep(Some(TWO_HOURS_MS)))
                    .put(b"ttl01", b"overwritten", ttl(TWO_HOURS_MS))
                    .put(b"base01", b"overwritten", keep(Some(TWO_HOURS_MS)))
                    .put(b"kept", b"new", keep(Some(TWO_HOURS_MS)))
                    .delete(b"batch0", None);
                kv.apply(&b)
            }),
        ),
        ("get", get(b"base05", false)),
        ("get of an expiring entry", get(b"ttl00", false)),
        ("get of an absent key", get(b"absent", true)),
        ("list", Box::new(|kv| kv.list_page(b"", b"").map(|_| ()))),
    ];
    for (name, write) in &writes {
        let may_allocate = !name.starts_with("get");
        each_fault_point(
            &kv,
            &fail_nth,
            name,
            &baseline,
            write.as_ref(),
            may_allocate,
            &mut counts,
        )?;
    }
    println!(
        "     faults: {} injected over {} commands: {} ENOMEM, {} EFAULT, {} recovered by the kernel",
        counts.injected,
        writes.len(),
        counts.enomem,
        counts.efault,
        counts.recovered
    );
    ensure!(counts.enomem > 0, "no allocation failure was ever injected");
    Ok(())
}

/// The baseline plus entries whose values are over a page.
fn big_baseline(kv: &Nfkv) -> TestResult {
    baseline(kv)?;
    let mut b = Batch::new();
    b.put(b"big", &[0xa5; 40000], Condition::default()).put(
        b"big5000",
        &[0x5a; 5000],
        Condition::default(),
    );
    ck("big baseline", kv.apply(&b))
}

/// The same with max_value_len=65536: entries and requests over a page
/// (kvmalloc, which may fall back to vmalloc), and GET and LIST of values
/// over a page.
fn every_fault_point_with_values_over_a_page() -> TestResult {
    configure()?;
    reload("max_value_len=65536")?;
    let r = (|| {
        let kv = connect()?;
        ensure!(
            kv.limits().max_value_len == 65536,
            "max_value_len {}",
            kv.limits().max_value_len
        );
        let fail_nth = open_fail_nth()?;
        let mut counts = Counts::default();
        let commands: Vec<(&str, Write)> = vec![
            (
                "put insert, 16 KiB",
                Box::new(|kv| kv.put(b"new", &[1; 16384], Condition::default())),
            ),
            (
                "put overwrite, 64 KiB",
                Box::new(|kv| kv.put(b"big", &[2; 65536], Condition::default())),
            ),
            (
                "batch of values over a page",
                Box::new(|kv| {
                    let mut b = Batch::new();
                    for i in 0..3u32 {
                        b.put(
                            format!("big{i}").as_bytes(),
                            &[i as u8; 20000],
                            Condition::default(),
                        );
                    }
                    b.put(b"base01", &[9; 8000], Condition::default())
                        .put(b"big5000", b"small now", Condition::default())
                        .delete(b"big", None);
                    kv.apply(&b)
                }),
            ),
            (
                "get of a value over a page (40000 B)",
                Box::new(|kv| match kv.get(b"big") {
                    Ok(v) if v.value.len() != 40000 || v.value.iter().any(|&b| b != 0xa5) => {
                        Err(nfkv::Error::Invalid("wrong value".into()))
                    }
                    r => r.map(|_| ()),
                }),
            ),
            (
                "get of a value over a page (5000 B)",
                get(b"big5000", false),
            ),
            (
                "list of values over a page",
                Box::new(|kv| kv.list_page(b"big", b"").map(|_| ())),
            ),
        ];
        for (name, command) in &commands {
            let may_allocate = !name.starts_with("get");
            let by_vmalloc = counts.by_vmalloc;
            each_fault_point(
                &kv,
                &fail_nth,
                name,
                &big_baseline,
                command.as_ref(),
                may_allocate,
                &mut counts,
            )?;
            // The 64 KiB entry is kmalloc'd from the page allocator (order
            // 5) first: failing that allocation must reach it, and the
            // kernel then recovers with vmalloc.
            ensure!(
                !name.contains("64 KiB") || counts.by_vmalloc > by_vmalloc,
                "{name}: no fault left the entry in vmalloc memory: page allocations are not failed"
            );
        }
        println!(
            "     faults over a page: {} injected over {} commands: {} ENOMEM, {} EFAULT, {} recovered by the kernel ({} into vmalloc)",
            counts.injected,
            commands.len(),
            counts.enomem,
            counts.efault,
            counts.recovered,
            counts.by_vmalloc
        );
        // Failed allocations end as ENOMEM, or in vmalloc memory where
        // kvmalloc recovered (which of the two varies with the slab's state).
        ensure!(
            counts.enomem + counts.by_vmalloc > 0,
            "no allocation failure was ever injected"
        );
        Ok(())
    })();
    reload("")?;
    r
}

/// A batch that overwrites, deletes, inserts, and touches keys twice, made
/// to fail after each of its records in turn (by a delete of an absent key,
/// not a fault): the records before the failing one were applied under the
/// lock and must all be undone, with or without a flush first.
fn every_failing_record_of_a_mixed_batch() -> TestResult {
    let kv = connect()?;
    // (delete?, key, value): the good batch.
    let records: [(bool, &[u8], &[u8]); 9] = [
        (false, b"base01", b"overwritten"),
        (true, b"base02", b""),
        (false, b"fresh1", b"inserted"),
        (false, b"base01", b"overwritten twice"),
        (true, b"fresh1", b""),
        (false, b"base02", b"back again, longer than before"),
        (false, b"fresh2", b"x"),
        (true, b"base03", b""),
        (false, b"base04", b""),
    ];
    for flush in [false, true] {
        for failing in 0..=records.len() {
            baseline(&kv)?;
            let before = dump(&kv)?;
            let mut b = Batch::new();
            if flush {
                b.flush();
            }
            for (i, &(delete, key, value)) in records.iter().enumerate() {
                if i == failing {
                    b.delete(b"never there", None);
                }
                if delete {
                    if flush && key.starts_with(b"base") {
                        // Flushed: put it back first, so the delete works.
                        b.put(key, b"", Condition::default());
                    }
                    b.delete(key, None);
                } else {
                    b.put(key, value, Condition::default());
                }
            }
            if failing == records.len() {
                b.delete(b"never there", None);
            }
            let what = format!("flush {flush}, failing before record {failing}");
            expect_err(&what, kv.apply(&b), libc::ENOENT)?;
            ensure!(
                dump(&kv)? == before,
                "{what}: the failed batch changed the table"
            );
        }
    }
    Ok(())
}

/// How a namespace's creation with one fault point failed ended.
enum Creation {
    /// No fault point was left to fail: it ran untouched.
    Untouched,
    /// A fault was injected and the kernel recovered: the namespace exists.
    Recovered,
    /// A fault was injected and creation failed with this errno: ENOMEM
    /// mostly, but some of the kernel's pernet inits report a failed
    /// allocation otherwise (e.g. EEXIST).
    Failed(i32),
}

/// In this thread (fail-nth and `unshare(CLONE_NEWNET)` are per thread):
/// creates a network namespace with its `n`th fault point failed. A
/// namespace created has a working, empty table of its own.
fn create_namespace_failing(n: u32) -> Result<Creation, String> {
    let fail_nth = open_fail_nth()?;
    fail_nth
        .write_at(n.to_string().as_bytes(), 0)
        .map_err(|e| format!("fail-nth: {e}"))?;
    // SAFETY: plain syscall; it changes only this thread's namespace.
    let created = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
    let errno = std::io::Error::last_os_error();
    let injected = injected(&fail_nth)?;
    if !created {
        ensure!(
            injected,
            "fault {n}: creating a namespace failed with no fault injected: {errno}"
        );
        return Ok(Creation::Failed(errno.raw_os_error().unwrap_or(0)));
    }
    let kv = connect()?;
    let d = dump(&kv)?;
    ensure!(
        d.entries == 0,
        "fault {n}: the new namespace's table is {d:?}"
    );
    ck("put", kv.put(b"k", b"v", Condition::default()))?;
    ensure!(
        ck("get", kv.get(b"k"))?.value == b"v",
        "fault {n}: the new namespace's table lost a put"
    );
    Ok(if injected {
        Creation::Recovered
    } else {
        Creation::Untouched
    })
}

/// Creates a namespace with fault point 1, 2, ... failed until creation
/// runs untouched, each in a thread of its own (which leaves its namespace
/// when it ends): every creation fails or, where the kernel recovered,
/// gives a working table; a failed one leaves nothing behind (the gate's
/// kmemleak scan and reports). The module's pernet init (the allocation of
/// its tree's latch) is among those fault points.
fn every_fault_point_of_a_namespace_creation() -> TestResult {
    configure()?;
    let (mut failed, mut recovered) = (std::collections::BTreeMap::<i32, u32>::new(), 0u32);
    for n in 1..20_000u32 {
        let outcome = std::thread::spawn(move || create_namespace_failing(n))
            .join()
            .map_err(|_| format!("fault {n}: the creating thread panicked"))??;
        match outcome {
            Creation::Untouched => {
                let failed: Vec<String> = failed
                    .iter()
                    .map(|(&errno, count)| {
                        format!("{count} {}", std::io::Error::from_raw_os_error(errno))
                    })
                    .collect();
                println!(
                    "     faults: a namespace's creation has {} fault points: failed with {}; {recovered} recovered by the kernel",
                    n - 1,
                    failed.join(", ")
                );
                ensure!(!failed.is_empty(), "no namespace creation ever failed");
                return Ok(());
            }
            Creation::Recovered => recovered += 1,
            Creation::Failed(errno) => *failed.entry(errno).or_default() += 1,
        }
    }
    Err("a namespace's creation still failing after 20000 fault points".into())
}

/// The kernel's workqueue threads (`kworker/...`), by pid: the reaper runs
/// on one of them.
fn kworkers() -> Result<Vec<u32>, String> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))? {
        let Some(pid) = e
            .ok()
            .and_then(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        else {
            continue;
        };
        // A thread that ended meanwhile has no comm: skipped.
        if std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.starts_with("kworker/"))
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Sets every kworker's `make-it-fail` to `on`; how many were set. A
/// kworker that ended meanwhile is skipped.
fn kworkers_make_it_fail(on: bool) -> Result<usize, String> {
    let mut set = 0;
    for pid in kworkers()? {
        let path = format!("/proc/{pid}/make-it-fail");
        match std::fs::write(&path, if on { "1" } else { "0" }) {
            Ok(()) => set += 1,
            Err(e)
                if e.raw_os_error() == Some(libc::ESRCH)
                    || e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{path}: {e}")),
        }
    }
    Ok(set)
}

/// Whether some kworker has `make-it-fail` off (one made since they were
/// all set).
fn a_kworker_may_not_fail() -> Result<bool, String> {
    for pid in kworkers()? {
        if std::fs::read_to_string(format!("/proc/{pid}/make-it-fail"))
            .is_ok_and(|v| v.trim() == "0")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Slab allocations of the kworkers failing: every one (`interval` 1), or
/// every `interval`th, until dropped.
struct KworkerFaults;

impl KworkerFaults {
    fn start(interval: u32) -> Result<KworkerFaults, String> {
        let dbg = "/sys/kernel/debug/failslab";
        for (file, value) in [
            ("task-filter", "Y".to_string()),
            ("space", "0".into()),
            ("times", "-1".into()),
            ("interval", interval.to_string()),
            ("probability", "100".into()),
        ] {
            write_proc(&format!("{dbg}/{file}"), &value)?;
        }
        let guard = KworkerFaults;
        kworkers_make_it_fail(true)?;
        Ok(guard)
    }
}

impl Drop for KworkerFaults {
    fn drop(&mut self) {
        let dbg = "/sys/kernel/debug/failslab";
        for (file, value) in [
            ("probability", "0"),
            ("interval", "1"),
            ("times", "1"),
            ("task-filter", "N"),
        ] {
            let _ = write_proc(&format!("{dbg}/{file}"), value);
        }
        let _ = kworkers_make_it_fail(false);
    }
}

/// Sleeps until `t`, setting `make-it-fail` on kworkers made meanwhile.
fn sleep_failing_until(t: std::time::Instant) -> TestResult {
    while std::time::Instant::now() < t {
        kworkers_make_it_fail(true)?;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// The reaper's only allocation (its batch of entries to free, made before
/// it locks the table) failing: while every slab allocation of the
/// kworkers fails, expired entries stay (counted, not listed) and nothing
/// breaks; while every third fails, passes remove part of them; once the
/// allocations succeed again, the reaper (which armed itself again after
/// each failure) removes them all, the generation moved by one per entry.
/// Nothing leaks (the gate's kmemleak scan).
fn reaper_under_allocation_failures() -> TestResult {
    use std::time::{Duration, Instant};
    const N: u32 = 600;
    const MS: u32 = 300;
    configure()?;
    let kv = fresh()?;
    for attempt in 1..=3 {
        ck("flush", kv.flush())?;
        let mut b = Batch::new();
        b.put(b"forever", b"v", Condition::default())
            .put(b"long", b"v", ttl(HOUR_MS));
        for i in 0..N {
            b.put(format!("r{i:04}").as_bytes(), b"v", ttl(MS));
        }
        let faults = KworkerFaults::start(1)?;
        let t0 = Instant::now();
        ck("batch", kv.apply(&b))?;
        let start = ck("info", kv.info())?;
        // The reaper runs at the deadline, fails, and tries again a second
        // later, failing again.
        let expired = t0 + Duration::from_millis(MS.into()) + Duration::from_millis(100);
        sleep_failing_until(expired + Duration::from_millis(1300))?;
        let failing = ck("info", kv.info())?;
        ensure!(
            list_raw(&kv, b"")?.len() == 2,
            "expired entries listed while the reaper cannot run"
        );
        if failing.entries != start.entries {
            ensure!(
                a_kworker_may_not_fail()? && attempt < 3,
                "the reaper removed {} entries while every kworker allocation failed",
                start.entries - failing.entries
            );
            println!("     reaper faults: try {attempt}: a new kworker ran the reaper, again");
            continue;
        }
        drop(faults);
        let faults = KworkerFaults::start(3)?;
        sleep_failing_until(Instant::now() + Duration::from_millis(2500))?;
        let partial = ck("info", kv.info())?;
        drop(faults);
        let deadline = Instant::now() + Duration::from_secs(15);
        let end = loop {
            let i = ck("info", kv.info())?;
            if i.entries == 2 {
                break i;
            }
            ensure!(
                Instant::now() < deadline,
                "15 s after the allocations succeed again, {} entries are left",
                i.entries
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        ensure!(
            end.generation - start.generation == u64::from(N) && end.bytes_used < start.bytes_used,
            "the reaper removed {N} entries: generation {} -> {}, bytes {} -> {}",
            start.generation,
            end.generation,
            start.bytes_used,
            end.bytes_used
        );
        println!(
            "     reaper faults: {N} expired entries stayed while its allocations failed, {} were left while every third failed, then all went",
            partial.entries - 2
        );
        return ck("flush", kv.flush());
    }
    Err("unreachable: three tries".into())
}

/// How a namespace's first watch with a fault point failed ended.
enum FirstWatch {
    /// No fault injected: the call answered.
    Untouched,
    /// A fault injected, and the call answered all the same.
    Recovered,
    /// A fault injected, and the call failed with this errno.
    Failed(i32),
}

/// In a new network namespace of this thread: a put, then the namespace's
/// first watch (which makes the change log) with its `n`th fault point
/// failed. It answers (nothing after the put's generation) or fails with
/// ENOMEM or EFAULT; either way the next watch answers, and after one more
/// put the log holds its event.
fn first_watch_failing(n: u32) -> Result<FirstWatch, String> {
    use crate::watch::{call, watch, Outcome};
    unshare(libc::CLONE_NEWNET)?;
    let kv = connect()?;
    ck("put", kv.put(b"k", b"v", Condition::default()))?;
    let g = ck("info", kv.info())?.generation;
    let fail_nth = open_fail_nth()?;
    fail_nth
        .write_at(n.to_string().as_bytes(), 0)
        .map_err(|e| format!("fail-nth: {e}"))?;
    let first = call(&kv, g, 0, b"", true, 4096);
    let injected = injected(&fail_nth)?;
    let outcome = match first? {
        Outcome::Reply(r) => {
            ensure!(
                r.events.is_empty() && r.h.generation == g && !r.h.gap,
                "fault {n}: the first watch answered {:?}",
                r.h
            );
            if injected {
                FirstWatch::Recovered
            } else {
                FirstWatch::Untouched
            }
        }
        Outcome::Failed(errno, _) => {
            ensure!(
                injected && [libc::ENOMEM, libc::EFAULT].contains(&errno),
                "fault {n}: the first watch failed with {} (injected: {injected})",
                std::io::Error::from_raw_os_error(errno)
            );
            FirstWatch::Failed(errno)
        }
    };
    let next =
        watch(&kv, g, 0, b"", true).map_err(|e| format!("fault {n}: the next watch: {e}"))?;
    ensure!(
        next.events.is_empty() && next.h.generation == g && !next.h.gap,
        "fault {n}: the next watch answered {:?}",
        next.h
    );
    ck("put", kv.put(b"k2", b"w", Condition::default()))?;
    let r = watch(&kv, g, 0, b"", true).map_err(|e| format!("fault {n}: {e}"))?;
    let got: Vec<(&[u8], Option<&[u8]>)> = r
        .events
        .iter()
        .map(|e| (&e.key[..], e.value.as_deref()))
        .collect();
    ensure!(
        got == [(&b"k2"[..], Some(&b"w"[..]))] && r.h.generation == g + 1,
        "fault {n}: after a put the log holds {got:?} ({:?})",
        r.h
    );
    Ok(outcome)
}

/// A namespace's first watch, whose change log is allocated then (the
/// smallest log, watch_log_kib=4), with fault point 1, 2, ... failed until
/// it runs untouched, each in a new namespace of a thread of its own: see
/// [`first_watch_failing`]. A failed call leaks nothing (the gate's
/// kmemleak scan). (Seen on 6.12-debug with a log of 4 KiB and of 1 MiB: 10
/// fault points, 3 failing with EFAULT, 7 recovered by the kernel; none
/// failed the log's allocation with ENOMEM.)
fn every_fault_point_of_a_first_watch() -> TestResult {
    configure()?;
    reload("watch_log_kib=4")?;
    let r = first_watch_fault_points();
    reload("")?;
    r
}

fn first_watch_fault_points() -> TestResult {
    let (mut failed, mut recovered) = (std::collections::BTreeMap::<i32, u32>::new(), 0u32);
    for n in 1..1000u32 {
        let outcome = std::thread::spawn(move || first_watch_failing(n))
            .join()
            .map_err(|_| format!("fault {n}: the watching thread panicked"))??;
        match outcome {
            FirstWatch::Untouched => {
                let failed: Vec<String> = failed
                    .iter()
                    .map(|(&errno, count)| {
                        format!("{count} {}", std::io::Error::from_raw_os_error(errno))
                    })
                    .collect();
                println!(
                    "     faults: a first watch has {} fault points: failed with {}; {recovered} recovered by the kernel",
                    n - 1,
                    failed.join(", ")
                );
                ensure!(
                    !failed.is_empty() || recovered > 0,
                    "no fault was ever injected into a first watch"
                );
                return Ok(());
            }
            FirstWatch::Recovered => recovered += 1,
            FirstWatch::Failed(errno) => *failed.entry(errno).or_default() += 1,
        }
    }
    Err("a first watch still failing after 1000 fault points".into())
}
