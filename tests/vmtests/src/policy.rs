//! The module's resource and identity policy: which optbases it refuses,
//! versions that never repeat, and the memory it lets namespaces pin.

use crate::core::enter_user_and_net_namespace;
use crate::harness::*;
use crate::{ensure, tests};
use nfkv::{Batch, Condition, Nfkv};

pub fn suite() -> Vec<Test> {
    tests![
        optbases_the_ip_layer_keeps_are_refused,
        version_string_fits_the_info_field,
        versions_never_repeat_across_flush_reload_and_namespaces,
        per_namespace_byte_limit,
        unprivileged_namespaces_share_a_budget,
        budget_charges_what_allocations_take_and_gives_it_back,
    ]
}

/// `insmod` with `params` must fail and log, after a fresh marker, a line
/// containing `want`: that case's own message, not an earlier one.
fn refused_with(params: &str, want: &str) -> TestResult {
    let marker = format!("nfkv-vmtests: policy insmod nfkv {params}");
    kmsg_mark(&marker)?;
    ensure!(reload(params).is_err(), "insmod with {params} succeeded");
    let log = dmesg_after(&marker)?;
    ensure!(
        log.lines()
            .any(|l| l.contains("nfkv: ") && l.contains(want)),
        "insmod {params}: no dmesg line with {want:?} after the marker:{log}"
    );
    Ok(())
}

fn optbases_the_ip_layer_keeps_are_refused() -> TestResult {
    let r = (|| {
        for (params, want) in [
            // IP_TOS: a PUT would set the socket's TOS and store nothing.
            ("optbase=1", "optbase=1: optnames 1..16 overlap 0..63"),
            ("optbase=50", "optbase=50: optnames 50..65 overlap 0..63"),
            // MRT_INIT and friends (200..212).
            (
                "optbase=190",
                "optbase=190: optnames 190..205 overlap 200..255",
            ),
            (
                "optbase=255",
                "optbase=255: optnames 255..270 overlap 200..255",
            ),
            ("optbase=0", "overlap 0..63"),
            ("optbase=2147483647", "optbase=2147483647 is out of range"),
            // The edges: one optname into a reserved range, one past the
            // largest range an int holds.
            ("optbase=63", "optbase=63: optnames 63..78 overlap 0..63"),
            (
                "optbase=185",
                "optbase=185: optnames 185..200 overlap 200..255",
            ),
            (
                "optbase=2147483632",
                "optbase=2147483632 is out of range 64..2147483631",
            ),
        ] {
            refused_with(params, want)?;
        }
        // Just past each reserved range is fine, up to the largest.
        for ok in [
            "optbase=64",
            "optbase=184",
            "optbase=256",
            "optbase=4096",
            "optbase=2147483631",
        ] {
            reload(ok)?;
            ck("info", connect()?.info())?;
        }
        Ok(())
    })();
    reload("")?;
    r
}

fn version_string_fits_the_info_field() -> TestResult {
    let kv = connect()?;
    let info = ck("info", kv.info())?;
    let v = info.module_version_str();
    ensure!(
        !v.is_empty() && v.len() < 16,
        "module version {v:?} (the build refuses 16 bytes or more)"
    );
    Ok(())
}

fn version_of(kv: &Nfkv, key: &[u8]) -> Result<u64, String> {
    Ok(ck("get", kv.get(key))?.version)
}

fn versions_never_repeat_across_flush_reload_and_namespaces() -> TestResult {
    let kv = fresh()?;
    ck("put", kv.put(b"k", b"1", Condition::default()))?;
    let v1 = version_of(&kv, b"k")?;
    ck("flush", kv.flush())?;
    ck("put", kv.put(b"k", b"2", Condition::default()))?;
    let v2 = version_of(&kv, b"k")?;
    ensure!(v2 > v1, "after a flush: version {v2} not above {v1}");

    reload("")?;
    let kv = connect()?;
    let start = ck("info", kv.info())?.generation;
    ensure!(
        start > v2,
        "a reloaded table starts at {start}, not above {v2}"
    );
    ck("put", kv.put(b"k", b"3", Condition::default()))?;
    let v3 = version_of(&kv, b"k")?;
    ensure!(v3 > v2, "after rmmod/insmod: version {v3} not above {v2}");
    for stale in [v1, v2] {
        expect_err(
            "IF_VERSION from before the reload",
            kv.put(
                b"k",
                b"x",
                Condition {
                    if_version: Some(stale),
                    ..Default::default()
                },
            ),
            libc::ESTALE,
        )?;
    }
    in_child(|| {
        unshare(libc::CLONE_NEWNET)?;
        let kv = connect()?;
        ck("put", kv.put(b"k", b"4", Condition::default()))?;
        let v4 = version_of(&kv, b"k")?;
        ensure!(v4 > v3, "a new namespace's version {v4} not above {v3}");
        Ok(())
    })
}

/// Puts `value` under keys `prefix0`, `prefix1`, ... until a put fails;
/// returns how many were stored and the errno that stopped it.
fn fill(kv: &Nfkv, prefix: &str, value: &[u8], most: usize) -> Result<(usize, i32), String> {
    for i in 0..most {
        let key = format!("{prefix}{i}");
        if let Err(e) = kv.put(key.as_bytes(), value, Condition::default()) {
            return Ok((i, e.errno().unwrap_or(0)));
        }
    }
    Err(format!(
        "{most} puts of {} bytes all succeeded",
        value.len()
    ))
}

fn per_namespace_byte_limit() -> TestResult {
    reload("max_value_len=65536 max_bytes_mib=1")?;
    let r = (|| {
        let kv = fresh()?;
        let value = vec![7u8; 65536];
        let (stored, errno) = fill(&kv, "k", &value, 64)?;
        ensure!(errno == libc::EFBIG, "stopped by errno {errno}, not EFBIG");
        ensure!(
            ck("info", kv.info())?.max_bytes == 1 << 20,
            "info does not show max_bytes_mib=1"
        );
        // 1 MiB of keys and values: 15 full entries (16 would be over).
        ensure!(stored == 15, "{stored} entries of 64 KiB fit in 1 MiB");
        let before = dump(&kv)?;
        ensure!(
            before.bytes_used <= 1 << 20,
            "bytes_used {}",
            before.bytes_used
        );
        // Refused whole, also inside a batch, and overwrites that grow count.
        let mut b = Batch::new();
        b.delete(b"k0", None)
            .put(b"k0", &value, Condition::default());
        b.put(b"new", &value, Condition::default());
        expect_err("batch over the limit", kv.apply(&b), libc::EFBIG)?;
        ensure!(dump(&kv)? == before, "a refused write changed the table");
        // Smaller values still fit; freeing makes room again.
        ck("small", kv.put(b"small", b"v", Condition::default()))?;
        ck("del", kv.delete(b"k1", None))?;
        ck("room again", kv.put(b"k1", &value, Condition::default()))?;
        Ok(())
    })();
    reload("")?;
    r
}

fn unprivileged_namespaces_share_a_budget() -> TestResult {
    reload("max_value_len=65536 userns_budget_mib=1")?;
    let r = (|| {
        in_child(|| {
            enter_user_and_net_namespace()?;
            // Four namespaces of one unprivileged user, alive at once (each
            // socket holds its namespace).
            let mut tables = Vec::new();
            for n in 0..4 {
                if n > 0 {
                    unshare(libc::CLONE_NEWNET)?;
                }
                tables.push(connect()?);
            }
            let value = vec![1u8; 65536];
            let mut total = 0;
            for (n, kv) in tables.iter().enumerate() {
                let (stored, errno) = fill(kv, &format!("ns{n}-"), &value, 64)?;
                total += stored;
                if n == 0 {
                    ensure!(errno == libc::EDQUOT, "stopped by errno {errno}");
                }
                let before = dump(kv)?;
                expect_err(
                    "over the budget",
                    kv.put(b"one-more", &value, Condition::default()),
                    libc::EDQUOT,
                )?;
                ensure!(dump(kv)? == before, "a refused put changed the table");
            }
            // 1 MiB shared; a 64 KiB value's entry (64 KiB + header + key)
            // is a 128 KiB allocation (kmalloc's next power of two), charged
            // as such: exactly 8 entries in all four namespaces together.
            ensure!(
                total == 8,
                "{total} entries of 64 KiB stored across namespaces sharing 1 MiB, not 8"
            );
            // A delete gives its charge back to the whole group: room
            // again, in another namespace.
            ck("delete", tables[0].delete(b"ns0-0", None))?;
            ck(
                "a put in another namespace after a delete",
                tables[3].put(b"after-delete", &value, Condition::default()),
            )?;
            Ok(())
        })?;
        // The initial namespace is never charged to that budget.
        let kv = fresh()?;
        let value = vec![2u8; 65536];
        for i in 0..40 {
            ck(
                "the initial namespace next to a full budget",
                kv.put(format!("host{i}").as_bytes(), &value, Condition::default()),
            )?;
        }
        ck("flush", kv.flush())
    })();
    reload("")?;
    r
}

/// Bytes a 4 KiB value's entry takes: header (40) + key + 4096 is just over
/// 4 KiB, so kmalloc serves it from its 8 KiB slab.
const ENTRY_OF_4K: u64 = 8192;

/// The shared budget's use, as one of its namespaces' info shows it.
fn budget_used(kv: &Nfkv) -> Result<u64, String> {
    Ok(ck("info", kv.info())?.budget_used)
}

/// Waits until `kv`'s info shows the shared budget at `want` (a dead
/// namespace's table is freed by the kernel's cleanup work, later).
fn budget_reaches(kv: &Nfkv, want: u64, what: &str) -> TestResult {
    let mut used = budget_used(kv)?;
    for _ in 0..300 {
        if used == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        used = budget_used(kv)?;
    }
    Err(format!(
        "{what}: the shared budget holds {used}, not {want}"
    ))
}

/// The shared budget charges each entry what its allocation takes (its
/// size class, so a 4 KiB value costs 8 KiB), shows it in `info`, refuses
/// with EDQUOT, and gives back exactly what deletes, smaller overwrites,
/// flushes, batches and a dying namespace free.
fn budget_charges_what_allocations_take_and_gives_it_back() -> TestResult {
    reload("userns_budget_mib=1")?;
    let r = in_child(|| {
        enter_user_and_net_namespace()?;
        let mut tables = Vec::new();
        for n in 0..3 {
            if n > 0 {
                unshare(libc::CLONE_NEWNET)?;
            }
            tables.push(connect()?);
        }
        let value = vec![4u8; 4096];
        // Batches are charged whole: 20 records, 20 entries' classes.
        let mut b = Batch::new();
        for i in 0..20 {
            b.put(
                format!("batch{i:02}").as_bytes(),
                &value,
                Condition::default(),
            );
        }
        ck("batch", tables[1].apply(&b))?;
        let info = ck("info", tables[1].info())?;
        ensure!(
            info.charged_to_budget() && info.charged == 20 * ENTRY_OF_4K,
            "after a batch of 20 puts of 4 KiB: charged {} ({:?}), not {}",
            info.charged,
            info.flags,
            20 * ENTRY_OF_4K
        );
        ensure!(
            info.budget_size == 1 << 20,
            "budget_size {} with userns_budget_mib=1",
            info.budget_size
        );
        let (stored, errno) = fill(&tables[0], "k", &value, 1000)?;
        ensure!(
            errno == libc::EDQUOT,
            "stopped by errno {errno}, not EDQUOT"
        );
        // 1 MiB in 8 KiB charges: 128 entries in all, not the 250 that
        // key + value + 64 bytes each would allow.
        ensure!(
            stored as u64 + 20 == (1 << 20) / ENTRY_OF_4K,
            "{stored} + 20 entries of 4 KiB fit in a 1 MiB budget, not 128"
        );
        let full = budget_used(&tables[2])?;
        ensure!(full == 1 << 20, "a full budget shows {full} used");
        let mut sum = 0;
        for kv in &tables {
            sum += ck("info", kv.info())?.charged;
        }
        ensure!(
            sum == full,
            "the tables' charges add up to {sum}, not {full}"
        );
        // A batch that does not fit is refused whole, charging nothing.
        let mut b = Batch::new();
        b.delete(b"k0", None)
            .put(b"x1", &value, Condition::default())
            .put(b"x2", &value, Condition::default());
        let before = dump(&tables[0])?;
        expect_err("batch over the budget", tables[0].apply(&b), libc::EDQUOT)?;
        ensure!(
            dump(&tables[0])? == before,
            "a refused batch changed the table"
        );
        ensure!(
            budget_used(&tables[0])? == full,
            "a refused batch moved the budget"
        );
        // A delete gives back its entry's class...
        ck("delete", tables[0].delete(b"k0", None))?;
        ensure!(
            budget_used(&tables[2])? == full - ENTRY_OF_4K,
            "a delete gave back other than {ENTRY_OF_4K}"
        );
        // ...a smaller overwrite the difference (a 1-byte value with a
        // 2-byte key and the 72-byte header: kmalloc's 96-byte class)...
        ck("shrink", tables[0].put(b"k1", b"v", Condition::default()))?;
        ensure!(
            budget_used(&tables[2])? == full - 2 * ENTRY_OF_4K + 96,
            "overwriting 4 KiB with 1 byte left the budget at {}",
            budget_used(&tables[2])?
        );
        // ...a flush the whole table's charge...
        let charged1 = ck("info", tables[1].info())?.charged;
        let before_flush = budget_used(&tables[2])?;
        ck("flush", tables[1].flush())?;
        ensure!(
            budget_used(&tables[2])? == before_flush - charged1,
            "a flush of {charged1} charged bytes gave back other"
        );
        // ...and a namespace that dies (its socket was its last
        // reference) its table's.
        let charged0 = ck("info", tables[0].info())?.charged;
        ensure!(charged0 > 0, "namespace 0 holds nothing");
        let before_death = budget_used(&tables[2])?;
        drop(tables.remove(0));
        budget_reaches(
            &tables[1],
            before_death - charged0,
            "after namespace 0 died",
        )
    });
    reload("")?;
    r
}
