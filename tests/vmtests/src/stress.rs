//! Concurrency: threads hammer the table with mixed operations, each checked
//! against a userspace model; consistent listings are never torn; lockless
//! GETs racing batches that swap whole sets of keys see every batch whole,
//! no key missing while it is replaced, and no torn value; rmmod
//! races live clients, which either keep it loaded or see "not loaded"; and
//! rmmod is refused while a 65,536-record batch is inside the module;
//! network namespaces die with calls in flight while rmmod is tried; and
//! classifiers take a UDP flood while writers, flushes and classifier
//! churn run in their namespace, which dies under them, or rmmod takes the
//! classifiers away.
//!
//! `NFKV_STRESS_THREADS` (default 8) x `NFKV_STRESS_OPS` (default 100,000).

use crate::ensure;
use crate::harness::*;
use crate::netns::{eventually, udp_delivers, unspecified, Netns, UdpTx};
use nfkv::{Batch, Condition, Error};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    crate::tests![
        threads_against_a_model,
        lockless_reads_see_whole_batches,
        rmmod_races_live_clients,
        rmmod_is_refused_while_a_full_batch_runs,
        namespaces_die_while_calls_and_rmmod_run,
        classifiers_under_flood_writers_flushes_and_rmmod
    ]
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Evidence that the threads ran at the same time on different CPUs: ops
/// per CPU, and how many ops began while a thread on another CPU was inside
/// an op.
struct Concurrency {
    per_cpu: Vec<AtomicU64>,
    inside: Vec<AtomicU32>,
    cross_cpu: AtomicU64,
}

/// One op in progress on `cpu`.
struct InOp<'a> {
    c: &'a Concurrency,
    cpu: usize,
}

impl Concurrency {
    fn new(cpus: usize) -> Self {
        Concurrency {
            per_cpu: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            inside: (0..cpus).map(|_| AtomicU32::new(0)).collect(),
            cross_cpu: AtomicU64::new(0),
        }
    }

    fn enter(&self) -> InOp<'_> {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu =
            usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0) % self.per_cpu.len();
        self.per_cpu[cpu].fetch_add(1, Ordering::Relaxed);
        self.inside[cpu].fetch_add(1, Ordering::SeqCst);
        let others = self
            .inside
            .iter()
            .enumerate()
            .any(|(c, n)| c != cpu && n.load(Ordering::SeqCst) > 0);
        if others {
            self.cross_cpu.fetch_add(1, Ordering::Relaxed);
        }
        InOp { c: self, cpu }
    }
}

impl Drop for InOp<'_> {
    fn drop(&mut self) {
        self.c.inside[self.cpu].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Multi-page consistent listings of the invariant keys taken meanwhile:
/// accepted whole (all the keys, one value), accepted empty (before the
/// first invariant batch), refused (the generation moved between pages),
/// and torn (accepted, yet a key is missing, repeated or out of order, or
/// the values differ: the failure this looks for).
#[derive(Default)]
struct Snapshots {
    whole: AtomicU64,
    empty: AtomicU64,
    refused: AtomicU64,
    torn: AtomicU64,
}

/// The invariant keys, in key order.
fn invariant_keys() -> Vec<Vec<u8>> {
    (0..INVARIANT_KEYS)
        .map(|i| format!("inv/{i}").into_bytes())
        .collect()
}

/// What a thread knows of its own keys: value and, once read, version.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

const INVARIANT_KEYS: usize = 10;

/// Runs `ops` operations of thread `t` on keys `t{t}/...`; returns the
/// thread's model and its successful shared-counter increments.
fn hammer(
    t: usize,
    ops: u64,
    seed: u64,
    snaps: &Snapshots,
    conc: &Concurrency,
) -> Result<(Model, u64), String> {
    let kv = connect()?;
    let mut snap = connect()?;
    snap.set_page_bytes(128); // three entries per page: consistency rests on the generation check
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut increments = 0;
    let prefix = format!("t{t}/").into_bytes();
    let key_of = |i: u64| [prefix.as_slice(), format!("{i:02}").as_bytes()].concat();
    let expect = |what: &str, got: nfkv::Result<()>, ok: bool, err: i32| -> TestResult {
        match (&got, ok) {
            (Ok(()), true) => Ok(()),
            (Err(e), false) if e.errno() == Some(err) => Ok(()),
            _ => Err(format!(
                "thread {t}: {what}: got {got:?}, model expected {}",
                if ok {
                    "success".into()
                } else {
                    format!("errno {err}")
                }
            )),
        }
    };
    for n in 0..ops {
        let _in_op = conc.enter();
        let key = key_of(rng.below(48));
        let known = model.get(&key).cloned();
        match rng.below(100) {
            0..=29 => {
                let value = rng.blob(0, 40);
                let (cond, ok, err) = match (rng.below(4), &known) {
                    (0, k) => (
                        Condition {
                            create_only: true,
                            ..Default::default()
                        },
                        k.is_none(),
                        libc::EEXIST,
                    ),
                    (1, k) => (
                        Condition {
                            replace_only: true,
                            ..Default::default()
                        },
                        k.is_some(),
                        libc::ENOENT,
                    ),
                    (2, Some((_, Some(v)))) => {
                        let stale = rng.below(3) == 0;
                        let want = if stale { v + 1_000_000 } else { *v };
                        (
                            Condition {
                                if_version: Some(want),
                                ..Default::default()
                            },
                            !stale,
                            libc::ESTALE,
                        )
                    }
                    _ => (Condition::default(), true, 0),
                };
                expect("put", kv.put(&key, &value, cond), ok, err)?;
                if ok {
                    model.insert(key, (value, None));
                }
            }
            30..=54 => match (kv.get(&key), known) {
                (Ok(v), Some((value, version))) => {
                    ensure!(
                        v.value == value,
                        "thread {t}: get {key:?}: {:?}, model {:?}",
                        v.value,
                        value
                    );
                    ensure!(
                        version.is_none_or(|old| old == v.version),
                        "thread {t}: version moved without a write"
                    );
                    model.insert(key, (value, Some(v.version)));
                }
                (Err(Error::NotFound), None) => {}
                (got, want) => {
                    return Err(format!("thread {t}: get {key:?}: {got:?}, model {want:?}"))
                }
            },
            55..=69 => {
                let cas = match &known {
                    Some((_, Some(v))) if rng.below(2) == 0 => Some(*v),
                    _ => None,
                };
                expect(
                    "delete",
                    kv.delete(&key, cas),
                    known.is_some(),
                    libc::ENOENT,
                )?;
                model.remove(&key);
            }
            70..=79 => {
                // A batch on own keys, predicted by replaying it on a copy.
                let mut b = Batch::new();
                let mut after = model.clone();
                let mut fails = None;
                for _ in 0..1 + rng.below(6) {
                    let k = key_of(rng.below(48));
                    if rng.below(3) == 0 {
                        b.delete(&k, None);
                        if after.remove(&k).is_none() && fails.is_none() {
                            fails = Some(libc::ENOENT);
                        }
                    } else {
                        let create = rng.below(4) == 0;
                        let v = rng.blob(0, 24);
                        b.put(
                            &k,
                            &v,
                            Condition {
                                create_only: create,
                                ..Default::default()
                            },
                        );
                        if create && after.contains_key(&k) && fails.is_none() {
                            fails = Some(libc::EEXIST);
                        }
                        after.insert(k, (v, None));
                    }
                }
                expect("batch", kv.apply(&b), fails.is_none(), fails.unwrap_or(0))?;
                if fails.is_none() {
                    model = after;
                }
            }
            80..=87 => {
                let page = ck("list", kv.list_page(&prefix, b""))?;
                let listed: Vec<(&[u8], &[u8])> = page
                    .entries
                    .iter()
                    .map(|e| (e.key.as_slice(), e.value.as_slice()))
                    .collect();
                let modeled: Vec<(&[u8], &[u8])> = model
                    .iter()
                    .map(|(k, (v, _))| (k.as_slice(), v.as_slice()))
                    .collect();
                ensure!(
                    listed == modeled,
                    "thread {t}: listing of own prefix differs from the model"
                );
            }
            88..=92 => loop {
                // Shared counter: compare-and-swap increment.
                let (current, version) = match kv.get(b"shared/counter") {
                    Ok(v) => (
                        String::from_utf8_lossy(&v.value)
                            .parse::<u64>()
                            .unwrap_or(0),
                        Some(v.version),
                    ),
                    Err(Error::NotFound) => (0, None),
                    Err(e) => return Err(format!("counter get: {e}")),
                };
                let next = (current + 1).to_string();
                let cond = match version {
                    Some(v) => Condition {
                        if_version: Some(v),
                        ..Default::default()
                    },
                    None => Condition {
                        create_only: true,
                        ..Default::default()
                    },
                };
                match kv.put(b"shared/counter", next.as_bytes(), cond) {
                    Ok(()) => {
                        increments += 1;
                        break;
                    }
                    Err(Error::VersionMismatch | Error::Exists | Error::NotFound) => continue,
                    Err(e) => return Err(format!("counter put: {e}")),
                }
            },
            93..=95 => {
                let key = key_of(rng.below(48));
                let r = kv.get(&key).map(|_| ());
                ensure!(
                    r.is_ok() == model.contains_key(&key),
                    "thread {t}: get {key:?}: {r:?}"
                );
            }
            _ => {
                if t == 0 && n % 2 == 0 {
                    // The invariant: every inv/ key holds the same value.
                    let mut b = Batch::new();
                    let v = n.to_string();
                    for i in 0..INVARIANT_KEYS {
                        b.put(
                            format!("inv/{i}").as_bytes(),
                            v.as_bytes(),
                            Condition::default(),
                        );
                    }
                    ck("invariant batch", kv.apply(&b))?;
                } else {
                    // One attempt: a listing whose pages carry different
                    // generations is refused by the client (and counted
                    // here); every listing it accepts must be untorn.
                    match snap.snapshot(b"inv/", 0) {
                        Ok((_, entries)) if entries.is_empty() => {
                            snaps.empty.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((_, entries)) => {
                            let keys: Vec<_> = entries.iter().map(|e| e.key.clone()).collect();
                            if keys != invariant_keys()
                                || entries.windows(2).any(|w| w[0].value != w[1].value)
                            {
                                snaps.torn.fetch_add(1, Ordering::Relaxed);
                            } else {
                                snaps.whole.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(Error::Os { op: "snapshot", .. }) => {
                            snaps.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(format!("thread {t}: snapshot: {e}")),
                    }
                }
            }
        }
    }
    Ok((model, increments))
}

fn threads_against_a_model() -> TestResult {
    let kv = fresh()?;
    let threads = env_u64("NFKV_STRESS_THREADS", 8) as usize;
    let ops = env_u64("NFKV_STRESS_OPS", 100_000);
    let seed = env_u64("NFKV_STRESS_SEED", 0x5eed);
    let snaps = Snapshots::default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    ensure!(
        cpus >= 2,
        "the guest runs {cpus} CPU: nothing would run concurrently"
    );
    let conc = Concurrency::new(cpus);
    let start = Instant::now();
    let results: Vec<Result<(Model, u64), String>> = std::thread::scope(|s| {
        let (snaps, conc) = (&snaps, &conc);
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || hammer(t, ops, seed + t as u64, snaps, conc)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut expected = BTreeMap::new();
    let mut increments = 0;
    for r in results {
        let (model, inc) = r?;
        increments += inc;
        expected.extend(model.into_iter().map(|(k, (v, _))| (k, v)));
    }
    println!(
        "     stress: {threads} threads x {ops} ops in {secs:.0} s ({:.0} ops/s), {increments} CAS increments",
        (threads as u64 * ops) as f64 / secs
    );
    let per_cpu: Vec<u64> = conc
        .per_cpu
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let cross = conc.cross_cpu.load(Ordering::Relaxed);
    println!("     stress: ops per CPU {per_cpu:?}; {cross} ops began while another CPU was inside an op");
    ensure!(
        per_cpu.iter().filter(|&&n| n > 0).count() >= 2 && cross > 0,
        "the threads never ran on two CPUs at once (per CPU {per_cpu:?}, overlaps {cross})"
    );
    let (whole, empty, refused, torn) = (
        snaps.whole.load(Ordering::Relaxed),
        snaps.empty.load(Ordering::Relaxed),
        snaps.refused.load(Ordering::Relaxed),
        snaps.torn.load(Ordering::Relaxed),
    );
    println!("     stress: consistent listings: {whole} accepted whole, {empty} empty (before the first invariant batch), {refused} refused as mixed, {torn} torn");
    ensure!(torn == 0, "{torn} torn consistent snapshots");
    ensure!(
        whole > 0,
        "no consistent snapshot of the invariant keys completed: nothing was checked"
    );
    let d = dump(&kv)?;
    let mut actual: BTreeMap<Vec<u8>, Vec<u8>> =
        d.contents.into_iter().map(|e| (e.key, e.value)).collect();
    let counter = actual.remove(&b"shared/counter"[..]).unwrap_or_default();
    ensure!(
        counter == increments.to_string().into_bytes(),
        "counter {:?}, {increments} increments",
        String::from_utf8_lossy(&counter)
    );
    let inv: Vec<Vec<u8>> = (0..INVARIANT_KEYS)
        .filter_map(|i| actual.remove(format!("inv/{i}").as_bytes()))
        .collect();
    ensure!(
        inv.windows(2).all(|w| w[0] == w[1]),
        "invariant keys differ at rest"
    );
    ensure!(
        actual == expected,
        "final table differs from the model ({} vs {} entries)",
        actual.len(),
        expected.len()
    );
    Ok(())
}

/// Keys per set of [`lockless_reads_see_whole_batches`].
const SWAP_KEYS: usize = 16;

/// The value batch `n` writes: `n` (8 bytes, little-endian) repeated, its
/// length depending on `n` (80 to 2,440 bytes, so a value can span pages
/// and readers copy entries of many sizes).
fn swap_value(n: u64) -> Vec<u8> {
    let words = 10 + (n * 37 % 296) as usize;
    n.to_le_bytes().repeat(words)
}

/// Which batch wrote `value`, if it is a whole value of [`swap_value`].
fn swap_batch(value: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    (value == swap_value(n).as_slice()).then_some(n)
}

/// What one reader learnt of the last batch applied when its GET ran.
enum Seen {
    /// Exactly batch n (a key present with batch n's value).
    Exactly(u64),
    /// Some batch of this parity (a key of the set that parity deletes is
    /// absent).
    Parity(u64),
}

/// One writer applies batches while readers GET with no lock. Batch `n`
/// writes `z/i` (always present) and the set `x/i` (n even) or `y/i` (n
/// odd), all with value [`swap_value`]`(n)`, and deletes the other set: so
/// any present key tells exactly which batch was the last one applied when
/// the GET ran, and an absent `x`/`y` key its parity. A reader's GETs are
/// in program order, so what they tell must never go back: a batch seen
/// half applied (a put visible, a delete of the same batch not, or the
/// reverse) shows up as an older batch after a newer one. A `z` key must
/// never be missing (it is only ever replaced) and no value torn. Four
/// readers against one writer for `NFKV_STRESS_SWAP_SECONDS` (default 6).
fn lockless_reads_see_whole_batches() -> TestResult {
    let kv = fresh()?;
    let key = |set: &str, i: usize| format!("{set}/{i}").into_bytes();
    let batch = |n: u64| {
        let mut b = Batch::new();
        let (put, del) = if n.is_multiple_of(2) {
            ("x", "y")
        } else {
            ("y", "x")
        };
        let value = swap_value(n);
        for i in 0..SWAP_KEYS {
            b.put(&key("z", i), &value, Condition::default());
            b.put(&key(put, i), &value, Condition::default());
            if n > 0 {
                b.delete(&key(del, i), None);
            }
        }
        b
    };
    ck("batch 0", kv.apply(&batch(0)))?;
    let seconds = env_u64("NFKV_STRESS_SWAP_SECONDS", 6);
    let stop = AtomicBool::new(false);
    let applied = AtomicU64::new(1);
    let in_batch = AtomicBool::new(false);
    let (reads, during) = (AtomicU64::new(0), AtomicU64::new(0));
    let reader = |seed: u64| -> TestResult {
        let kv = connect()?;
        let mut rng = Rng::new(seed);
        let mut low = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let i = rng.below(SWAP_KEYS as u64) as usize;
            let set = ["z", "x", "y"][rng.below(3) as usize];
            let overlapped = in_batch.load(Ordering::Relaxed);
            let seen = match kv.get(&key(set, i)) {
                Ok(v) => match swap_batch(&v.value) {
                    Some(n) => Seen::Exactly(n),
                    None => {
                        return Err(format!("{set}/{i}: torn value of {} bytes", v.value.len()))
                    }
                },
                Err(e) if e.errno() == Some(libc::ENOENT) && set != "z" => {
                    Seen::Parity(u64::from(set == "x"))
                }
                Err(e) => return Err(format!("get {set}/{i} (last batch seen {low}): {e}")),
            };
            if overlapped || in_batch.load(Ordering::Relaxed) {
                during.fetch_add(1, Ordering::Relaxed);
            }
            reads.fetch_add(1, Ordering::Relaxed);
            low = match seen {
                Seen::Exactly(n) if n < low => {
                    return Err(format!(
                        "{set}/{i} holds batch {n}'s value after a read saw batch {low} applied: a batch seen half applied"
                    ))
                }
                Seen::Exactly(n) => n,
                Seen::Parity(p) if low % 2 == p => low,
                Seen::Parity(_) => low + 1,
            };
        }
        Ok(())
    };
    let start = Instant::now();
    let results: Vec<TestResult> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..4u64)
            .map(|t| s.spawn(move || reader(0x1e55 + t)))
            .collect();
        let mut written = Ok(());
        while start.elapsed() < Duration::from_secs(seconds) {
            let n = applied.load(Ordering::Relaxed);
            let b = batch(n);
            in_batch.store(true, Ordering::Relaxed);
            let r = kv.apply(&b);
            in_batch.store(false, Ordering::Relaxed);
            if let Err(e) = r {
                written = Err(format!("batch {n}: {e}"));
                break;
            }
            applied.store(n + 1, Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        std::iter::once(written)
            .chain(
                readers
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("reader panicked".into()))),
            )
            .collect()
    });
    let (batches, reads, during) = (
        applied.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        during.load(Ordering::Relaxed),
    );
    println!("     stress: {batches} swapping batches of {} ops, {reads} lockless GETs ({during} while a batch was being applied)", 3 * SWAP_KEYS);
    for r in results {
        r?;
    }
    ensure!(
        batches > 10 && during > 100,
        "too little overlap to judge ({batches} batches, {during} GETs during one)"
    );
    Ok(())
}

fn rmmod_races_live_clients() -> TestResult {
    fresh()?;
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    // Workers that have made calls: rmmod starts once all four have (a
    // module unloaded before a client connected races nothing).
    let ready = AtomicU32::new(0);
    let r = std::thread::scope(|s| -> TestResult {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (stop, ops, ready) = (&stop, &ops, &ready);
                s.spawn(move || -> TestResult {
                    let kv = connect()?;
                    let mut unloaded = false;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let key = format!("race{t}/{}", i % 32);
                        let r = if i.is_multiple_of(2) {
                            kv.put(key.as_bytes(), b"v", Condition::default())
                        } else {
                            kv.get(key.as_bytes()).map(|_| ())
                        };
                        match r {
                            Ok(()) | Err(Error::NotFound) if !unloaded => {}
                            Err(Error::NotLoaded { .. }) => unloaded = true,
                            other => {
                                return Err(format!("worker {t} (unloaded: {unloaded}): {other:?}"))
                            }
                        }
                        ops.fetch_add(1, Ordering::Relaxed);
                        if i == 10 {
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                        // On SMP with preemption some worker is inside a
                        // call (holding a module reference) almost all the
                        // time, and rmmod only succeeds when none is: leave
                        // short gaps, as real clients do between calls.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    ensure!(unloaded, "worker {t} never saw the module go");
                    Ok(())
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut refused, mut unloaded) = (0, false);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            if ready.load(Ordering::SeqCst) < 4 {
                continue;
            }
            if rmmod().is_ok() {
                unloaded = true;
                break;
            }
            refused += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().map_err(|_| "worker panicked".to_string())??;
        }
        println!("     rmmod race: {} client ops, rmmod refused {refused} times, then unloaded: {unloaded}", ops.load(Ordering::Relaxed));
        ensure!(
            ready.load(Ordering::SeqCst) == 4,
            "only {} of 4 workers got going",
            ready.load(Ordering::SeqCst)
        );
        ensure!(unloaded, "rmmod never succeeded within 60 s");
        Ok(())
    });
    reload("")?;
    r
}

/// rmmod must be refused while a call is inside the module (nf_sockopt
/// holds a module reference across it), not only when it happens to be: a
/// thread applies a flushing batch of 65,536 records, again and again, and
/// rmmod is tried while one of those calls has been running for 50 ms and
/// is still running after rmmod returns. Then the batches stop, the table
/// holds exactly the batch, and rmmod succeeds.
fn rmmod_is_refused_while_a_full_batch_runs() -> TestResult {
    let kv = fresh()?;
    let mut b = Batch::new();
    b.flush();
    for i in 0..nfkv_abi::codec::MAX_BATCH_OPS {
        b.put(format!("full{i:05}").as_bytes(), b"v", Condition::default());
    }
    let req = ck("encode", b.encode())?;
    let optname = kv.optbase() + nfkv_abi::codec::cmd::SET_BATCH;
    let (started, finished, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let (kv_ref, req) = (&kv, &req);
    let (started, finished, stop) = (&started, &finished, &stop);
    let r = std::thread::scope(|s| -> TestResult {
        let batches = s.spawn(move || -> Result<u64, String> {
            let mut applied = 0;
            while !stop.load(Ordering::SeqCst) {
                started.fetch_add(1, Ordering::SeqCst);
                let r = nfkv::raw::raw_set(kv_ref.fd(), optname, req);
                finished.fetch_add(1, Ordering::SeqCst);
                r.map_err(|e| format!("batch {}: {e}", applied + 1))?;
                applied += 1;
            }
            Ok(applied)
        });
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut met = 0;
        while met == 0 && Instant::now() < deadline {
            let call = started.load(Ordering::SeqCst);
            if finished.load(Ordering::SeqCst) >= call {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
            if finished.load(Ordering::SeqCst) >= call {
                continue;
            }
            let unloaded = rmmod().is_ok();
            let in_flight = finished.load(Ordering::SeqCst) < call;
            match (unloaded, in_flight) {
                (false, _) => met += 1,
                (true, true) => {
                    stop.store(true, Ordering::SeqCst);
                    return Err("rmmod unloaded nfkv while a batch call was inside it".into());
                }
                // The call ended while rmmod ran: nothing shown either way.
                (true, false) => {
                    stop.store(true, Ordering::SeqCst);
                    return Err("rmmod caught the gap between two batches; rerun".into());
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let applied = batches
            .join()
            .map_err(|_| "batch thread panicked".to_string())??;
        println!("     rmmod vs full batches: {applied} batches of 65,536 records, rmmod refused {met} time(s) with one in flight");
        ensure!(met > 0, "no batch call was caught in flight within 300 s");
        Ok(())
    })
    .and_then(|()| {
        let info = ck("info", kv.info())?;
        ensure!(
            info.entries as usize == nfkv_abi::codec::MAX_BATCH_OPS,
            "after the batches the table holds {} entries",
            info.entries
        );
        drop(kv);
        rmmod()
    });
    reload("")?;
    r
}

/// The body of one short-lived namespace: two threads make calls on its
/// table until the process exits under them, after `ms` milliseconds.
/// Exits 0, or 1 (with the first unexpected outcome on stderr).
fn dying_namespace(seed: u64, ms: u64) -> ! {
    let r = (|| -> TestResult {
        unshare(libc::CLONE_NEWNET)?;
        let bad = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        for t in 0..2u64 {
            let bad = bad.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ t);
                let mut kv = None;
                loop {
                    let Some(conn) = kv.as_ref() else {
                        kv = nfkv::Nfkv::open().ok();
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let key = format!("ns{}", rng.below(64));
                    let r = match rng.below(4) {
                        0 => conn.put(key.as_bytes(), &[7; 100], Condition::default()),
                        1 => conn.get(key.as_bytes()).map(|_| ()),
                        2 => conn.snapshot(b"ns", 3).map(|_| ()),
                        _ => {
                            let mut b = Batch::new();
                            b.put(key.as_bytes(), b"b", Condition::default())
                                .delete(b"ns0", None);
                            conn.apply(&b)
                        }
                    };
                    match r {
                        Ok(()) | Err(Error::NotFound) | Err(Error::NotLoaded { .. }) => {}
                        Err(e) => {
                            bad.lock().unwrap().get_or_insert(format!("{e:?}"));
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(ms));
        let seen = bad.lock().unwrap().take();
        match seen {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })();
    if let Err(e) = &r {
        eprintln!("dying namespace: {e}");
    }
    // SAFETY: leaving at once, the threads still inside their calls.
    unsafe { libc::_exit(i32::from(r.is_err())) }
}

/// Network namespaces whose last process exits while its threads are
/// inside calls (the table torn down by the namespace's exit, after or
/// while those calls end), four at a time for 30 s, while rmmod is tried
/// between them (unloading tears down every table left) and the module is
/// loaded again. Every call must end normally or with "not loaded"; the
/// kernel's checkers judge the rest.
fn namespaces_die_while_calls_and_rmmod_run() -> TestResult {
    let mut rng = Rng::new(0x6e73_6469_6521);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut children: Vec<libc::pid_t> = Vec::new();
    let (mut born, mut unloads, mut refused, mut failed) = (0u32, 0u32, 0u32, 0u32);
    let reap = |children: &mut Vec<libc::pid_t>, block: bool, failed: &mut u32| {
        children.retain(|&pid| {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let r =
                unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
            if r == pid {
                *failed += u32::from(!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0));
                false
            } else {
                true
            }
        });
    };
    while Instant::now() < deadline {
        reap(&mut children, false, &mut failed);
        while children.len() < 4 {
            let (seed, ms) = (rng.next(), 5 + rng.below(60));
            // SAFETY: this thread is the process's only one.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                dying_namespace(seed, ms);
            }
            ensure!(pid > 0, "fork: {}", std::io::Error::last_os_error());
            children.push(pid);
            born += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.below(20)));
        if rng.below(3) == 0 {
            if rmmod().is_ok() {
                unloads += 1;
                std::thread::sleep(Duration::from_millis(rng.below(30)));
                insmod("")?;
            } else {
                refused += 1;
            }
        }
    }
    reap(&mut children, true, &mut failed);
    if !loaded() {
        insmod("")?;
    }
    println!("     dying namespaces: {born} namespaces died with calls in flight; rmmod unloaded {unloads} times, refused {refused} times");
    ensure!(failed == 0, "{failed} of {born} namespaces saw a call end otherwise than normally or \"not loaded\" (see stderr)");
    ensure!(
        born >= 40 && unloads > 0,
        "too little happened: {born} namespaces, {unloads} unloads"
    );
    // Teardown is asynchronous (cleanup_net): let it finish, then the
    // module must still work.
    std::thread::sleep(Duration::from_secs(2));
    let kv = fresh()?;
    ck("put", kv.put(b"after", b"ok", Condition::default()))?;
    ensure!(
        ck("get", kv.get(b"after"))?.value == b"ok",
        "table broken afterwards"
    );
    Ok(())
}

/// Prefixes of the classifiers of
/// `classifiers_under_flood_writers_flushes_and_rmmod`: at input keyed by
/// source address, at prerouting by protocol and port, and the one that
/// comes and goes.
const CF_IN: &[u8] = b"in/";
const CF_PRE: &[u8] = b"pre/";
const CF_C3: &[u8] = b"c3/";
/// A key under the input classifier's prefix that only ever gets values
/// that are no action (3 bytes): every such put must fail with EBADMSG.
const CF_PROBE: &[u8] = b"in/probe";
/// Where the flood goes (nobody listens: B answers port unreachable).
const CF_FLOOD_PORT: u16 = 4100;
/// How long flood, writers, flushes and classifier churn run together.
const CF_PHASE: Duration = Duration::from_secs(3);
/// Rounds after the first three start only this soon after the test began.
const CF_BUDGET: Duration = Duration::from_secs(24);

/// How a round of `classifiers_under_flood_writers_flushes_and_rmmod` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CfEnd {
    /// B's namespace is let go while the flood and B's callers run.
    DropB,
    /// B's callers and the flood stop; the classifiers must still work.
    Orderly,
    /// rmmod while the classifiers exist and the flood runs, until it
    /// succeeds; insmod; then as `DropB`.
    Rmmod,
}

const CF_ROUNDS: [CfEnd; 4] = [CfEnd::DropB, CfEnd::Rmmod, CfEnd::Orderly, CfEnd::DropB];

/// Whether nfkv may be out: `out` is set before the first rmmod attempt and
/// cleared once insmod has returned; `epoch` counts the changes.
#[derive(Default)]
struct ModuleWindow {
    out: AtomicBool,
    epoch: AtomicU64,
}

impl ModuleWindow {
    fn now(&self) -> (bool, u64) {
        (
            self.out.load(Ordering::SeqCst),
            self.epoch.load(Ordering::SeqCst),
        )
    }

    fn set_out(&self, out: bool) {
        self.out.store(out, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a call that began at `before` and has returned may have met
    /// the module out ("not loaded" is then a valid outcome).
    fn may_be_out(&self, before: (bool, u64)) -> bool {
        let after = self.now();
        before.0 || after.0 || before.1 != after.1
    }

    /// Whether no rmmod was tried in the round, before or during a call
    /// that began at `before`: the round's classifiers are all there.
    fn untouched(&self, before: (bool, u64)) -> bool {
        before == (false, 0) && self.now() == (false, 0)
    }
}

/// What one round's threads share.
#[derive(Default)]
struct Flood {
    /// Stops the callers in B (writers, flusher, classifier churn).
    stop_b: AtomicBool,
    stop_flood: AtomicBool,
    /// Set while rmmod is tried: B's callers leave gaps between calls.
    pace: AtomicBool,
    /// A thread failed (its message comes with its join).
    failed: AtomicBool,
    window: ModuleWindow,
    ok: AtomicU64,
    refused: AtomicU64,
    not_loaded: AtomicU64,
    flushes: AtomicU64,
    c3_adds: AtomicU64,
    sent: AtomicU64,
}

impl Flood {
    fn pause(&self) {
        if self.pace.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The outcome of a call begun at `before`: success, an errno of
    /// `allowed`, or "not loaded" while the module may have been out; else
    /// the test fails.
    fn judge<T>(
        &self,
        what: &str,
        r: nfkv::Result<T>,
        allowed: &[i32],
        before: (bool, u64),
    ) -> Result<Result<T, i32>, String> {
        match r {
            Ok(v) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Ok(Ok(v))
            }
            Err(e) => match e.errno() {
                Some(n) if allowed.contains(&n) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    Ok(Err(n))
                }
                Some(libc::ENOPROTOOPT) if self.window.may_be_out(before) => {
                    self.not_loaded.fetch_add(1, Ordering::Relaxed);
                    Ok(Err(libc::ENOPROTOOPT))
                }
                n => Err(format!(
                    "{what}: {e} (errno {n:?}); allowed: success{}{}",
                    if allowed.is_empty() {
                        String::new()
                    } else {
                        format!(" or errno {allowed:?}")
                    },
                    if self.window.may_be_out(before) {
                        " or not loaded"
                    } else {
                        ""
                    }
                )),
            },
        }
    }

    /// [`Flood::judge`], when only a failure matters.
    fn check<T>(
        &self,
        what: &str,
        r: nfkv::Result<T>,
        allowed: &[i32],
        before: (bool, u64),
    ) -> TestResult {
        self.judge(what, r, allowed, before).map(|_| ())
    }

    /// `r`, noting a failure for the main thread.
    fn noted(&self, r: TestResult) -> TestResult {
        if r.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Sleeps `d`, less if a thread failed.
    fn wait(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.failed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A valid action: DROP, ACCEPT or a MARK under a random mask.
fn cf_action(rng: &mut Rng) -> nfkv::Action {
    match rng.below(3) {
        0 => nfkv::Action::Drop,
        1 => nfkv::Action::Accept,
        _ => {
            let mask = (rng.next() as u32) | 1;
            nfkv::Action::Mark {
                mark: rng.next() as u32 & mask,
                mask,
            }
        }
    }
}

/// One writer in B: puts (some create-only), deletes and batches of valid
/// actions under the classifiers' prefixes and of any value on plain keys,
/// reads (a value under a prefix must be an action), classifier listings,
/// and puts of a value that is no action under the input prefix (EBADMSG).
fn cf_writer(t: u64, seed: u64, kv: &nfkv::Nfkv, keys: &[Vec<u8>], sh: &Flood) -> TestResult {
    use nfkv::Action;
    let mut rng = Rng::new(seed);
    let plain: Vec<Vec<u8>> = (0..24)
        .map(|i| format!("w{t}/{i}").into_bytes())
        .chain((0..8).map(|i| format!("shared/{i}").into_bytes()))
        .collect();
    // A key: under a prefix (60%) or plain, and a value fit for it.
    let pick = |rng: &mut Rng| -> (usize, bool) {
        if rng.below(5) < 3 {
            (rng.below(keys.len() as u64) as usize, true)
        } else {
            (rng.below(plain.len() as u64) as usize, false)
        }
    };
    let key_at = |(i, under): (usize, bool)| -> &[u8] {
        if under {
            &keys[i]
        } else {
            &plain[i]
        }
    };
    let value = |rng: &mut Rng, under: bool| -> Vec<u8> {
        if under {
            cf_action(rng).encode().to_vec()
        } else {
            rng.blob(0, 48)
        }
    };
    while !sh.stop_b.load(Ordering::Relaxed) {
        sh.pause();
        let at = pick(&mut rng);
        let (key, under) = (key_at(at), at.1);
        let before = sh.window.now();
        match rng.below(100) {
            0..=34 => {
                let v = value(&mut rng, under);
                sh.check("put", kv.put(key, &v, Condition::default()), &[], before)?;
            }
            35..=44 => {
                let v = value(&mut rng, under);
                let create = Condition {
                    create_only: true,
                    ..Default::default()
                };
                sh.check("create", kv.put(key, &v, create), &[libc::EEXIST], before)?;
            }
            45..=64 => {
                sh.check("delete", kv.delete(key, None), &[libc::ENOENT], before)?;
            }
            65..=79 => {
                let mut b = Batch::new();
                let mut deletes = false;
                for _ in 0..1 + rng.below(8) {
                    let at = pick(&mut rng);
                    if rng.below(3) == 0 {
                        b.delete(key_at(at), None);
                        deletes = true;
                    } else {
                        let v = value(&mut rng, at.1);
                        b.put(key_at(at), &v, Condition::default());
                    }
                }
                let allowed: &[i32] = if deletes { &[libc::ENOENT] } else { &[] };
                sh.check("batch", kv.apply(&b), allowed, before)?;
            }
            80..=91 => {
                if let Ok(v) = sh.judge("get", kv.get(key), &[libc::ENOENT], before)? {
                    ensure!(
                        !under || Action::parse(&v.value).is_some(),
                        "writer {t}: get {key:?}: {:?} under a classifier's prefix is no action",
                        v.value
                    );
                }
            }
            92..=96 => {
                if let Ok(list) = sh.judge("classifier list", kv.classifiers(), &[], before)? {
                    let names: Vec<String> = list
                        .iter()
                        .map(|(c, _)| String::from_utf8_lossy(c.name()).into_owned())
                        .collect();
                    ensure!(
                        names
                            .iter()
                            .all(|n| ["in", "pre", "c3"].contains(&n.as_str())),
                        "writer {t}: B lists classifiers {names:?}"
                    );
                    ensure!(
                        !sh.window.untouched(before)
                            || (names.iter().any(|n| n == "in")
                                && names.iter().any(|n| n == "pre")),
                        "writer {t}: B lists classifiers {names:?}: one of the round's went"
                    );
                }
            }
            _ => {
                let r = kv.put(CF_PROBE, &[1, 2, 3], Condition::default());
                if sh.window.untouched(before) {
                    ensure!(
                        matches!(&r, Err(e) if e.errno() == Some(libc::EBADMSG)),
                        "writer {t}: put of 3 bytes under the input classifier's prefix: {r:?}, expected EBADMSG"
                    );
                    sh.refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    // After an rmmod the prefix has no classifier: any value goes.
                    sh.check("put of no action", r, &[libc::EBADMSG], before)?;
                }
            }
        }
    }
    Ok(())
}

/// Flushes B's table, plainly or by a flushing batch, every few ms.
fn cf_flusher(kv: &nfkv::Nfkv, a4_key: &[u8], sh: &Flood) -> TestResult {
    let mut n = 0u64;
    while !sh.stop_b.load(Ordering::Relaxed) {
        sh.pause();
        let before = sh.window.now();
        let (what, r) = if n.is_multiple_of(2) {
            ("flush", kv.flush())
        } else {
            let mut b = Batch::new();
            b.flush()
                .put(a4_key, &nfkv::Action::Drop.encode(), Condition::default());
            ("flushing batch", kv.apply(&b))
        };
        if sh.judge(what, r, &[], before)?.is_ok() {
            sh.flushes.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Adds and deletes classifier c3 in a loop, at each hook in turn. Only
/// this thread touches c3: while it knows whether c3 exists, add and delete
/// must succeed; after the module may have gone, EEXIST and ENOENT teach
/// it.
fn cf_churner(kv: &nfkv::Nfkv, variants: &[nfkv::Classifier], sh: &Flood) -> TestResult {
    let mut present = Some(false);
    let mut epoch = 0;
    let mut i = 0;
    while !sh.stop_b.load(Ordering::Relaxed) {
        sh.pause();
        let before = sh.window.now();
        if before.0 || before.1 != epoch {
            present = None;
            epoch = before.1;
        }
        present = if present != Some(true) {
            let allowed: &[i32] = if present.is_none() {
                &[libc::EEXIST]
            } else {
                &[]
            };
            let c = &variants[i % variants.len()];
            match sh.judge("add classifier c3", kv.add_classifier(c), allowed, before)? {
                Ok(()) => {
                    sh.c3_adds.fetch_add(1, Ordering::Relaxed);
                    Some(true)
                }
                Err(libc::EEXIST) => Some(true),
                Err(_) => None,
            }
        } else {
            match sh.judge(
                "delete classifier c3",
                kv.delete_classifier("c3"),
                &[],
                before,
            )? {
                Ok(()) => Some(false),
                Err(_) => None,
            }
        };
        if sh.window.may_be_out(before) {
            present = None;
        }
        i += 1;
    }
    Ok(())
}

/// Sends UDP from `tx` to `dst` as fast as it can until stopped; errors
/// (EPERM, no route once B is gone, full queues) are expected.
fn cf_flood(tx: &UdpTx, dst: SocketAddr, sh: &Flood) -> TestResult {
    let payload = [0x5a; 32];
    let mut sent = 0;
    while !sh.stop_flood.load(Ordering::Relaxed) {
        if tx.socket().send_to(&payload, dst).is_ok() {
            sent += 1;
        }
    }
    sh.sent.fetch_add(sent, Ordering::Relaxed);
    Ok(())
}

/// Every value under the three classifiers' prefixes is a valid action.
fn cf_values_are_actions(kv: &nfkv::Nfkv) -> TestResult {
    for prefix in [CF_IN, CF_PRE, CF_C3] {
        let page = ck("list", kv.list_page(prefix, b""))?;
        for e in &page.entries {
            ensure!(
                nfkv::Action::parse(&e.value).is_some(),
                "{:?} holds {:?}, no action, under a classifier's prefix",
                e.key,
                e.value
            );
        }
    }
    Ok(())
}

/// One non-blocking `rmmod nfkv`: whether it unloaded. Refused because a
/// caller holds the module (EAGAIN; EBUSY) is `false`, another errno an
/// error.
fn try_rmmod() -> Result<bool, String> {
    // SAFETY: delete_module reads a NUL-terminated name, valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, c"nfkv".as_ptr(), libc::O_NONBLOCK) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY) => Ok(false),
        _ => Err(format!("rmmod nfkv: {e}")),
    }
}

/// Waits (up to 30 s) for A's end of the veth pair to vanish: B's
/// namespace has been torn down.
fn cf_wait_gone(a: &Netns, a_if: &str) -> TestResult {
    let start = Instant::now();
    while a.has_interface(a_if)? {
        ensure!(
            start.elapsed() < Duration::from_secs(30),
            "B's namespace still alive 30 s after its last reference went (A still has {a_if})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Joins `handles`; the first failure.
fn cf_join(handles: &mut Vec<std::thread::ScopedJoinHandle<'_, TestResult>>) -> TestResult {
    let mut r = Ok(());
    for h in handles.drain(..) {
        let x = h.join().unwrap_or_else(|_| Err("a thread panicked".into()));
        if r.is_ok() {
            r = x;
        }
    }
    r
}

/// After the storm, with everything stopped: B holds the round's two
/// classifiers (and maybe c3), only actions under their prefixes, and a
/// DROP entry at input by source and at prerouting by port each stop UDP
/// from A until deleted.
fn cf_quiet_check(a: &Netns, b: &Netns, kv: &nfkv::Nfkv) -> TestResult {
    use crate::classify::{blocked, counters, names, A4, B4, PORT};
    use nfkv::{Action, Target};
    let mut have = names(kv)?;
    have.sort();
    ensure!(
        have == ["in", "pre"] || have == ["c3", "in", "pre"],
        "after the storm B has classifiers {have:?}"
    );
    cf_values_are_actions(kv)?;
    ck("flush", kv.flush())?;
    let udp = || udp_delivers(a, b, B4, PORT);
    eventually("UDP from A once the table is flushed", udp)?;
    ck(
        "drop",
        kv.add_element("in", &Target::Addr(A4), Action::Drop),
    )?;
    blocked("UDP from A with a DROP entry at input", udp)?;
    ck("delete", kv.delete_element("in", &Target::Addr(A4)))?;
    eventually("UDP from A once the input entry is deleted", udp)?;
    let port = Target::Port(libc::IPPROTO_UDP as u8, PORT);
    ck("drop", kv.add_element("pre", &port, Action::Drop))?;
    let before = counters(kv, "pre")?;
    blocked("UDP to a port with a DROP entry at prerouting", udp)?;
    let after = counters(kv, "pre")?;
    ensure!(
        after.drop > before.drop,
        "prerouting dropped but its counters went {before:?} -> {after:?}"
    );
    ck("delete", kv.delete_element("pre", &port))?;
    eventually("UDP once the prerouting entry is deleted", udp)?;
    Ok(())
}

/// One round: namespaces A and B on a veth pair, classifiers in B at input
/// (source address) and prerouting (UDP/TCP port) with entries for A; then
/// for [`CF_PHASE`] a UDP flood from A (IPv4 and IPv6), 8 writers, a
/// flusher and a thread adding and deleting a third classifier, all in B;
/// then the round ends as `end` says.
fn cf_round(round: usize, end: CfEnd) -> TestResult {
    use crate::classify::{add, blocked, cls, counters, names, Pair, A4, A6, B4, B6, PORT};
    use nfkv::classifier::key_of;
    use nfkv::{Action, Family, Hook, Match, Target};
    let p = Pair::new(&format!("cf{round}"))?;
    let kv = p.b.nfkv()?;
    let c_in = cls("in", Family::Inet, Hook::Input, Match::Saddr, CF_IN, 0)?;
    let c_pre = cls(
        "pre",
        Family::Inet,
        Hook::Prerouting,
        Match::ProtoDport,
        CF_PRE,
        0,
    )?;
    add(&kv, &c_in)?;
    add(&kv, &c_pre)?;
    let udp = libc::IPPROTO_UDP as u8;
    let action = [
        Action::Drop,
        Action::Accept,
        Action::Mark {
            mark: 0x100,
            mask: 0xf00,
        },
    ][round % 3];
    for addr in [A4, A6] {
        ck("element", kv.add_element("in", &Target::Addr(addr), action))?;
    }
    ck(
        "element",
        kv.add_element(
            "pre",
            &Target::Port(udp, CF_FLOOD_PORT),
            Action::Mark { mark: 1, mask: 1 },
        ),
    )?;
    if action == Action::Drop {
        blocked("UDP from A with a DROP entry for it", || p.udp(B4))?;
    } else {
        eventually(&format!("UDP from A with an entry {action:?}"), || {
            p.udp(B4)
        })?;
    }

    let variants = Hook::ALL
        .iter()
        .map(|&h| cls("c3", Family::Inet, h, Match::Saddr, CF_C3, -1))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys = Vec::new();
    let others: [IpAddr; 3] = [
        "10.0.0.3".parse().expect("an address"),
        "10.0.0.4".parse().expect("an address"),
        "fd00::3".parse().expect("an address"),
    ];
    for c in [&c_in, &variants[0]] {
        for addr in [A4, A6, B4, B6].into_iter().chain(others) {
            keys.push(ck("key_of", key_of(c, &Target::Addr(addr)))?);
        }
    }
    for port in [CF_FLOOD_PORT, PORT, 53, 443] {
        for proto in [udp, libc::IPPROTO_TCP as u8] {
            keys.push(ck("key_of", key_of(&c_pre, &Target::Port(proto, port)))?);
        }
    }
    let a4_key = ck("key_of", key_of(&c_in, &Target::Addr(A4)))?;
    let writers = (0..8).map(|_| p.b.nfkv()).collect::<Result<Vec<_>, _>>()?;
    let flusher = p.b.nfkv()?;
    let churner = p.b.nfkv()?;
    let txs = [
        (UdpTx::new(&p.a, unspecified(B4))?, B4),
        (UdpTx::new(&p.a, unspecified(B6))?, B6),
    ];
    let in0 = counters(&kv, "in")?;
    let pre0 = counters(&kv, "pre")?;
    let Pair { a, b, link } = p;
    let (mut b, mut kv) = (Some(b), Some(kv));

    let sh = Flood::default();
    let (sh, keys, variants, a4_key) = (&sh, &keys, &variants, &a4_key);
    let start = Instant::now();
    let mut unloads = 0u32;
    let mut refused = 0u32;
    let r = std::thread::scope(|s| -> TestResult {
        let mut floods: Vec<_> = txs
            .iter()
            .map(|(tx, dst)| {
                let dst = SocketAddr::new(*dst, CF_FLOOD_PORT);
                s.spawn(move || sh.noted(cf_flood(tx, dst, sh)))
            })
            .collect();
        let mut in_b: Vec<_> = writers
            .into_iter()
            .enumerate()
            .map(|(t, w)| {
                let seed = 0xc1a5_0000 + (round as u64) * 64 + t as u64;
                s.spawn(move || sh.noted(cf_writer(t as u64, seed, &w, keys, sh)))
            })
            .collect();
        in_b.push(s.spawn(move || sh.noted(cf_flusher(&flusher, a4_key, sh))));
        in_b.push(s.spawn(move || sh.noted(cf_churner(&churner, variants, sh))));

        let r = (|| -> TestResult {
            sh.wait(CF_PHASE);
            ensure!(!sh.failed.load(Ordering::SeqCst), "a thread failed");
            let kv_b = kv.as_ref().expect("B's handle");
            cf_values_are_actions(kv_b)?;
            let (in1, pre1) = (counters(kv_b, "in")?, counters(kv_b, "pre")?);
            ensure!(
                in1.packets > in0.packets && pre1.packets > pre0.packets,
                "the flood did not reach B's classifiers: input {in0:?} -> {in1:?}, \
                 prerouting {pre0:?} -> {pre1:?}"
            );
            if end == CfEnd::Rmmod {
                // rmmod with classifiers in B and the flood on: refused
                // while a call is inside the module, so B's callers leave
                // gaps; if none lets it through in 10 s, they stop, and
                // with no call in flight it must succeed at once.
                sh.pace.store(true, Ordering::SeqCst);
                sh.window.set_out(true);
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut unloaded = false;
                while !unloaded && Instant::now() < deadline && !sh.failed.load(Ordering::SeqCst) {
                    unloaded = try_rmmod()?;
                    if !unloaded {
                        refused += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                ensure!(!sh.failed.load(Ordering::SeqCst), "a thread failed");
                if !unloaded {
                    sh.stop_b.store(true, Ordering::SeqCst);
                    cf_join(&mut in_b)?;
                    ensure!(
                        try_rmmod()?,
                        "rmmod refused with no call in flight (refused {refused} times before, \
                         while B's callers ran): classifiers or the flood hold the module"
                    );
                }
                unloads += 1;
                // The flood meets no hook, the callers "not loaded".
                sh.wait(Duration::from_millis(300));
                reload("")?;
                sh.window.set_out(false);
                let left = names(kv_b)?;
                ensure!(
                    !left.iter().any(|n| n == "in" || n == "pre"),
                    "after rmmod and insmod B still has classifiers {left:?}"
                );
                // The callers go on with the new module.
                sh.wait(Duration::from_millis(500));
                ensure!(!sh.failed.load(Ordering::SeqCst), "a thread failed");
            }
            match end {
                CfEnd::Orderly => {
                    sh.stop_b.store(true, Ordering::SeqCst);
                    cf_join(&mut in_b)?;
                    sh.stop_flood.store(true, Ordering::SeqCst);
                    cf_join(&mut floods)?;
                    let b = b.as_ref().expect("B");
                    cf_quiet_check(&a, b, kv.as_ref().expect("B's handle"))
                }
                CfEnd::DropB | CfEnd::Rmmod => {
                    // B's last references are its callers' sockets: drop
                    // the rest, let them run on a while, then stop them
                    // and wait for B to go, the flood still on.
                    drop(kv.take());
                    drop(b.take());
                    sh.wait(Duration::from_millis(300));
                    sh.stop_b.store(true, Ordering::SeqCst);
                    cf_join(&mut in_b)?;
                    cf_wait_gone(&a, &link.a_if)
                }
            }
        })();
        sh.stop_b.store(true, Ordering::SeqCst);
        let joined_b = cf_join(&mut in_b);
        sh.stop_flood.store(true, Ordering::SeqCst);
        let joined_flood = cf_join(&mut floods);
        joined_b.and(joined_flood).and(r)
    });
    println!(
        "     classifiers under flood: round {round} ({end:?}, entries {action:?}) in {:.1} s: \
         {} calls ok, {} refused as allowed, {} not loaded; {} flushes, c3 added {} times; \
         {} datagrams sent; rmmod refused {refused} times, unloaded {unloads}",
        start.elapsed().as_secs_f64(),
        sh.ok.load(Ordering::Relaxed),
        sh.refused.load(Ordering::Relaxed),
        sh.not_loaded.load(Ordering::Relaxed),
        sh.flushes.load(Ordering::Relaxed),
        sh.c3_adds.load(Ordering::Relaxed),
        sh.sent.load(Ordering::Relaxed),
    );
    r?;
    ensure!(
        sh.ok.load(Ordering::Relaxed) >= 100
            && sh.flushes.load(Ordering::Relaxed) > 0
            && sh.c3_adds.load(Ordering::Relaxed) > 0
            && sh.sent.load(Ordering::Relaxed) > 0,
        "too little happened to judge (see the line above)"
    );
    Ok(())
}

/// Classifiers at input and prerouting in a namespace B take a UDP flood
/// from A while 8 threads in B write valid actions under their prefixes
/// (and plain keys elsewhere), one flushes and one adds and deletes a
/// third classifier. Every call must end with an outcome the ABI gives it
/// (EBADMSG only for a value that is no action; "not loaded" only while
/// the module may be out). Rounds end with B let go while everything runs,
/// with an orderly stop and a check that the classifiers still drop, and
/// with rmmod tried until it succeeds under the flood (refused only while a
/// call is inside the module), then insmod. Afterwards a new pair's DROP
/// entry still drops, and deleting it lets traffic through.
fn classifiers_under_flood_writers_flushes_and_rmmod() -> TestResult {
    use crate::classify::{add, blocked, cls, counters, Pair, A4, B4};
    use nfkv::{Action, Family, Hook, Match, Target};
    connect()?;
    let start = Instant::now();
    let r = (|| -> TestResult {
        for (round, &end) in CF_ROUNDS.iter().enumerate() {
            if round >= 3 && start.elapsed() > CF_BUDGET {
                break;
            }
            cf_round(round, end).map_err(|e| format!("round {round} ({end:?}): {e}"))?;
        }
        let p = Pair::new("cf-after")?;
        let kv = p.b.nfkv()?;
        add(
            &kv,
            &cls("deny", Family::Inet, Hook::Input, Match::Saddr, b"d/", 0)?,
        )?;
        ck(
            "drop",
            kv.add_element("deny", &Target::Addr(A4), Action::Drop),
        )?;
        blocked("UDP from A with a DROP entry, after the rounds", || {
            p.udp(B4)
        })?;
        ensure!(
            counters(&kv, "deny")?.drop > 0,
            "dropped but counted no drop"
        );
        ck("delete", kv.delete_element("deny", &Target::Addr(A4)))?;
        eventually("UDP once the DROP entry is deleted", || p.udp(B4))
    })();
    let restored = if loaded() { Ok(()) } else { insmod("") };
    r.and(restored)
}
