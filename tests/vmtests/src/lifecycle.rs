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

fn insmod_rmmod_cycles_with_data() -> TestResult {
    let cycles = std::env::var("NFKV_LIFECYCLE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for cycle in 0..cycles {
        reload("").map_err(|e| format!("cycle {cycle}: {e}"))?;
        fill("cycle", 100).map_err(|e| format!("cycle {cycle}: {e}"))?;
        // A second namespace's table must be freed on unload too.
        in_child(|| {
            unshare(libc::CLONE_NEWNET)?;
            fill("ns", 10)
        })?;
    }
    sh("rmmod nfkv")?;
    println!("     lifecycle: {cycles} insmod/rmmod cycles, each with 100 + 10 entries in two namespaces");
    reload("")
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
