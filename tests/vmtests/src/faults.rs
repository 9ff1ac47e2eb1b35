//! Fault injection, "nothing lost": with /proc/thread-self/fail-nth, fail
//! the 1st, 2nd, ... Nth fault point (slab allocation or user copy) of a
//! command until it runs untouched. Every call that failed must report
//! ENOMEM (allocation) or EFAULT (user copy) and leave the table exactly as
//! it was; a call the kernel recovered from (kvmalloc falling back to
//! vmalloc) must have done the whole write. Needs the debug kernel.

use crate::ensure;
use crate::harness::*;
use nfkv::{Batch, Condition, Nfkv};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub fn suite() -> Vec<Test> {
    crate::tests![every_fault_point_of_every_write]
}

/// Knobs: inject into sleeping slab allocations too, and stay quiet
/// (a verbose injection prints a stack trace, which the dmesg gate refuses).
fn configure() -> TestResult {
    let dbg = "/sys/kernel/debug";
    ensure!(
        std::path::Path::new(&format!("{dbg}/failslab")).exists(),
        "no {dbg}/failslab: the fault suite needs the debug kernel (CONFIG_FAILSLAB)"
    );
    for (file, value) in [
        ("failslab/ignore-gfp-wait", "N"),
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
    ck("baseline", kv.apply(&b))
}

type KeyValue = (Vec<u8>, Vec<u8>);
/// One write under test.
type Write = Box<dyn Fn(&Nfkv) -> nfkv::Result<()>>;

/// Contents without versions and generation, which differ run to run.
fn contents(kv: &Nfkv) -> Result<Vec<KeyValue>, String> {
    Ok(dump(kv)?
        .contents
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

#[derive(Default, Debug)]
struct Counts {
    injected: u64,
    enomem: u64,
    efault: u64,
    recovered: u64,
}

/// Clears a pending fail-nth. The write's own user copy may be the pending
/// fault point (when the command had fewer): it then fails with EFAULT, which
/// consumes it, and the next write goes through.
fn reset(fail_nth: &File) -> TestResult {
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
fn each_fault_point(
    kv: &Nfkv,
    fail_nth: &File,
    name: &str,
    write: &dyn Fn(&Nfkv) -> nfkv::Result<()>,
    counts: &mut Counts,
) -> TestResult {
    baseline(kv)?;
    write(kv).map_err(|e| format!("{name} without faults: {e}"))?;
    let done = contents(kv)?;
    for n in 1..10_000u32 {
        baseline(kv)?;
        let before = dump(kv)?;
        fail_nth
            .write_at(n.to_string().as_bytes(), 0)
            .map_err(|e| format!("fail-nth: {e}"))?;
        let result = write(kv);
        let mut left = [0u8; 16];
        // If the command had fewer fault points, the read's own user copy
        // may be the Nth: then it fails with EFAULT, and nothing was injected
        // into the command.
        let injected = match fail_nth.read_at(&mut left, 0) {
            Ok(k) => String::from_utf8_lossy(&left[..k]).trim() == "0",
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => false,
            Err(e) => return Err(format!("fail-nth read: {e}")),
        };
        reset(fail_nth)?;
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
                ensure!(
                    contents(kv)? == done,
                    "{name}: fault {n} recovered but the write is incomplete"
                );
            }
            Err(e) => {
                match e.errno() {
                    Some(libc::ENOMEM) => counts.enomem += 1,
                    Some(libc::EFAULT) => counts.efault += 1,
                    _ => {
                        return Err(format!(
                            "{name}: fault {n}: {e} (expected ENOMEM or EFAULT)"
                        ))
                    }
                }
                ensure!(
                    dump(kv)? == before,
                    "{name}: fault {n} failed the call but changed the table"
                );
            }
        }
    }
    Err(format!("{name}: still failing after 10000 fault points"))
}

fn every_fault_point_of_every_write() -> TestResult {
    configure()?;
    let kv = connect()?;
    let fail_nth = File::options()
        .read(true)
        .write(true)
        .open("/proc/thread-self/fail-nth")
        .map_err(|e| format!("/proc/thread-self/fail-nth: {e}"))?;
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
        ("get", Box::new(|kv| kv.get(b"base05").map(|_| ()))),
        ("list", Box::new(|kv| kv.list_page(b"", b"").map(|_| ()))),
    ];
    for (name, write) in &writes {
        each_fault_point(&kv, &fail_nth, name, write.as_ref(), &mut counts)?;
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
