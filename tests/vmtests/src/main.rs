//! nfkv's VM test suites: run as root inside the test VM with nfkv.ko loaded
//! (see tests/vm/run). `nfkv-vmtests [SUITE...] [--filter TEXT]`; prints one
//! line per test and a closing `N passed, N failed`.

mod badinput;
mod classify;
mod core;
mod coverage;
mod faults;
mod fuzz;
mod harness;
mod kcaller;
mod lifecycle;
mod netns;
mod policy;
mod stress;
mod ttl;
mod watch;

use harness::{run_suite, Test};

/// A suite: its name and the function listing its tests.
type Suite = (&'static str, fn() -> Vec<Test>);

fn suites() -> Vec<Suite> {
    vec![
        ("core", core::suite),
        ("badinput", badinput::suite),
        ("fuzz", fuzz::suite),
        ("coverage", coverage::suite),
        ("stress", stress::suite),
        ("faults", faults::suite),
        ("lifecycle", lifecycle::suite),
        ("kcaller", kcaller::suite),
        ("policy", policy::suite),
        ("classify", classify::suite),
        ("ttl", ttl::suite),
        ("watch", watch::suite),
    ]
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().position(|a| a == "--filter").map(|i| {
        let f = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        f
    });
    let all = suites();
    if args.iter().any(|a| a == "--list") {
        for (name, suite) in &all {
            for t in suite() {
                println!("{name}::{}", t.name);
            }
        }
        return;
    }
    // A name that is no suite (say "core,faults": the names are separate
    // arguments) would otherwise run nothing and report success.
    let unknown: Vec<&String> = args
        .iter()
        .filter(|a| !all.iter().any(|(name, _)| name == a))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "nfkv-vmtests: no suite named {unknown:?}; the suites are: {} (one argument each)",
            names.join(" ")
        );
        println!("0 passed, 1 failed");
        std::process::exit(2);
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, suite) in &all {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        let (p, f) = run_suite(name, &suite(), filter.as_deref());
        passed += p;
        failed += f;
    }
    if passed + failed == 0 {
        eprintln!("nfkv-vmtests: no test matched");
        failed = 1;
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}
