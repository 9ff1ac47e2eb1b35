//! Lifecycle: load and unload with data in the tables, many times; create,
//! fill and destroy many network namespaces. The VM runner's kmemleak scan
//! afterwards must find nothing.

use crate::ensure;
use crate::harness::*;
use nfkv::{Batch, Condition};

pub fn suite() -> Vec<Test> {
    crate::tests![
        insmod_rmmod_cycles_with_data,
        namespaces_created_filled_destroyed
    ]
}

fn fill(prefix: &str, n: u32) -> TestResult {
    let kv = connect()?;
    let mut b = Batch::new();
    for i in 0..n {
        b.put(
            format!("{prefix}{i}").as_bytes(),
            &[i as u8; 64],
            Condition::default(),
        );
    }
    ck("fill", kv.apply(&b))?;
    ensure!(ck("info", kv.info())?.entries == n, "entries after fill");
    Ok(())
}

/// A child in its own network namespace with `n` entries, kept alive (with
/// an open socket) until finished; then it checks that the module loaded
/// meanwhile gave the namespace a new, empty table, through the old socket
/// and a new one.
fn namespace_held_across_rmmod(n: u32) -> Result<Held, String> {
    hold_in_child(
        || {
            unshare(libc::CLONE_NEWNET)?;
            fill("ns", n)?;
            connect()
        },
        |old| {
            let d = dump(&connect()?)?;
            ensure!(
                d.entries == 0 && d.contents.is_empty(),
                "after rmmod/insmod the live namespace's table is {d:?}"
            );
            let info = ck("old socket", old.info())?;
            ensure!(info.entries == 0, "old socket sees {info:?}");
            Ok(())
        },
    )
}

fn insmod_rmmod_cycles_with_data() -> TestResult {
    let cycles = std::env::var("NFKV_LIFECYCLE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Each cycle's rmmod (in reload) runs while the previous cycle's child
    // namespace is alive with its entries: the module must free the table of
    // a namespace that outlives it, and give that namespace a fresh one when
    // loaded again.
    let mut held: Option<Held> = None;
    for cycle in 0..cycles {
        reload("").map_err(|e| format!("cycle {cycle}: {e}"))?;
        if let Some(h) = held.take() {
            h.finish().map_err(|e| format!("cycle {cycle}: {e}"))?;
        }
        fill("cycle", 100).map_err(|e| format!("cycle {cycle}: {e}"))?;
        held = Some(namespace_held_across_rmmod(10).map_err(|e| format!("cycle {cycle}: {e}"))?);
    }
    rmmod()?;
    reload("")?;
    if let Some(h) = held.take() {
        h.finish().map_err(|e| format!("last cycle: {e}"))?;
    }
    println!("     lifecycle: {cycles} insmod/rmmod cycles, each with 100 entries in the initial namespace and 10 in a live second one");
    Ok(())
}

fn namespaces_created_filled_destroyed() -> TestResult {
    for i in 0..100 {
        in_child(|| {
            unshare(libc::CLONE_NEWNET)?;
            fill("netns", 50)
        })
        .map_err(|e| format!("namespace {i}: {e}"))?;
    }
    // Namespace teardown is asynchronous (cleanup_net runs from a workqueue):
    // give it time before the runner's kmemleak scan.
    std::thread::sleep(std::time::Duration::from_secs(2));
    println!("     lifecycle: 100 network namespaces created, filled with 50 entries, destroyed");
    Ok(())
}
