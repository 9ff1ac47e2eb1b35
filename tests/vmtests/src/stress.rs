//! Concurrency: threads hammer the table with mixed operations, each checked
//! against a userspace model; consistent listings are never torn; lockless
//! GETs racing batches that swap whole sets of keys see every batch whole,
//! no key missing while it is replaced, and no torn value; rmmod
//! races live clients, which either keep it loaded or see "not loaded"; and
//! rmmod is refused while a 65,536-record batch is inside the module;
//! network namespaces die with calls in flight while rmmod is tried.
//!
//! `NFKV_STRESS_THREADS` (default 8) x `NFKV_STRESS_OPS` (default 100,000).

use crate::ensure;
use crate::harness::*;
use nfkv::{Batch, Condition, Error};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    crate::tests![
        threads_against_a_model,
        lockless_reads_see_whole_batches,
        rmmod_races_live_clients,
        rmmod_is_refused_while_a_full_batch_runs,
        namespaces_die_while_calls_and_rmmod_run
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
