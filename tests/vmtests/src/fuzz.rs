//! A seeded, reproducible random fuzzer: random and mutated requests to
//! every set and get command (and the unknown ones of the range), from
//! several threads, then a check that the table's accounting still adds up.
//! Every refusal must carry an errno the ABI documents for that command, and
//! a request sent intact (valid, with a buffer big enough for its reply) may
//! only fail for a semantic reason (ENOENT, EEXIST, ESTALE, ENOSPC, EMSGSIZE,
//! and EDQUOT where the shared budget applies), never as malformed. One
//! request in 16 carries a value of 480 bytes to 4 KiB (or batch records of
//! 256 bytes and more), so requests over 512 bytes (copied straight into
//! the entry, or into a heap buffer) are fuzzed too; a quarter of the
//! requests come from an unprivileged user's namespace charged to a 1 MiB
//! shared budget that another namespace nearly fills, which must refuse
//! some and end up holding exactly the two tables' charges, then nothing
//! once the namespaces are gone.
//!
//! `NFKV_FUZZ_SEED` replays a run, `NFKV_FUZZ_ITERATIONS` (default 1,000,000)
//! and `NFKV_FUZZ_SECONDS` (default 900) bound it.

use crate::core::enter_user_and_net_namespace;
use crate::ensure;
use crate::harness::*;
use nfkv::{Batch, Condition, Nfkv};
use nfkv_abi::classifier::{self, Classifier, Family, Match};
use nfkv_abi::codec::{self, cmd, ListRequest, Op, OpKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    crate::tests![random_and_mutated_requests]
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A valid request of command `c`, for mutation.
pub(crate) fn valid_request(rng: &mut Rng, set: bool, c: u32) -> Vec<u8> {
    let key = rng.blob(1, 8);
    let value = if rng.below(16) == 0 {
        rng.blob(480, 3617)
    } else {
        rng.blob(0, 64)
    };
    let big_records = rng.below(16) == 0;
    let cond = match rng.below(4) {
        0 => Condition {
            create_only: true,
            ..Default::default()
        },
        1 => Condition {
            replace_only: true,
            ..Default::default()
        },
        2 => Condition {
            if_version: Some(1 + rng.below(50)),
            ..Default::default()
        },
        _ => Condition::default(),
    };
    let op = |kind, key: &[u8], value: &[u8], cond: Condition| {
        let cond = if kind == OpKind::Del {
            Condition {
                if_version: cond.if_version,
                ..Default::default()
            }
        } else {
            cond
        };
        nfkv::raw::encode_op(&Op {
            kind,
            cond,
            key,
            value,
        })
    };
    match (set, c) {
        (true, cmd::SET_PUT) => op(OpKind::Put, &key, &value, cond),
        (true, cmd::SET_DEL) => op(OpKind::Del, &key, &[], cond),
        (true, cmd::SET_FLUSH) => vec![0; codec::FLUSH_SIZE],
        (true, cmd::SET_CLS_ADD) => classifier_request(rng).to_vec(),
        (true, cmd::SET_CLS_DEL) => classifier::encode_del(CLASSIFIER_NAMES[rng.below(3) as usize])
            .map(|b| b.to_vec())
            .unwrap_or_default(),
        (true, _) => {
            let mut b = Batch::new();
            if rng.below(8) == 0 {
                b.flush();
            }
            for _ in 0..rng.below(6) {
                let k = rng.blob(1, 4);
                if rng.below(3) == 0 {
                    b.delete(&k, None);
                } else {
                    let v = if big_records {
                        rng.blob(256, 1024)
                    } else {
                        rng.blob(0, 32)
                    };
                    b.put(&k, &v, cond);
                }
            }
            b.encode().unwrap_or_default()
        }
        (false, cmd::GET_VALUE) => {
            let mut buf = vec![0u8; codec::GET_SIZE + key.len()];
            codec::encode_get(&mut buf, &key);
            buf
        }
        (false, cmd::GET_LIST) => {
            let after = rng.blob(0, 3);
            let prefix = rng.blob(0, 2);
            let req = ListRequest {
                after: &after,
                prefix: &prefix,
            };
            let mut buf = vec![0u8; req.wire_len()];
            req.encode(&mut buf);
            buf
        }
        (false, cmd::GET_WATCH) => {
            // From generation 0 (before any table's first): answered at
            // once, with the log's gap answer; a prefix matching a quarter
            // of the keys, values or not.
            let prefix: &[u8] = [&b""[..], b"k", b"\x01"][rng.below(3) as usize];
            crate::watch::request(0, rng.below(4) as u32, prefix, rng.below(2) == 0)
        }
        _ => Vec::new(),
    }
}

/// `req` (a get request of command `c`) with a watch's timeout of up to
/// a minute cut to at most `ms`: a mutated watch from the table's
/// generation would otherwise wait for a write under its prefix that may
/// never come. Timeouts past the maximum stay, to be refused.
pub(crate) fn short_watch(c: u32, req: &mut [u8], ms: u32) {
    let at = std::mem::offset_of!(nfkv_abi::uapi::nfkv_watch, timeout_ms);
    if c != cmd::GET_WATCH || req.len() < at + 4 {
        return;
    }
    let t = u32::from_ne_bytes(req[at..at + 4].try_into().unwrap_or_default());
    if t <= codec::WATCH_MAX_TIMEOUT_MS {
        req[at..at + 4].copy_from_slice(&t.min(ms).to_ne_bytes());
    }
}

/// The names the generated classifier commands use: few, so that adds
/// collide (EEXIST) and deletes find them.
pub(crate) const CLASSIFIER_NAMES: [&[u8]; 3] = [b"c0", b"c1", b"c2"];

/// A valid `NFKV_SO_SET_CLS_ADD` request: one of [`CLASSIFIER_NAMES`], a
/// short prefix that the generated keys share (so writes under it are
/// checked), and any family, hook, match and subnet bits.
pub(crate) fn classifier_request(rng: &mut Rng) -> [u8; classifier::CLASSIFIER_SIZE] {
    let name = CLASSIFIER_NAMES[rng.below(3) as usize];
    let prefix: &[u8] = [&b"k"[..], b"k1", b"z", b"\x01"][rng.below(4) as usize];
    let family = [Family::Inet, Family::Ipv4, Family::Ipv6][rng.below(3) as usize];
    let matches = [Match::Saddr, Match::Daddr, Match::ProtoDport][rng.below(3) as usize];
    let hook = rng.below(classifier::HOOKS as u64) as u8;
    let priority = rng.below(3) as i32 - 1;
    let c = Classifier::new(name, family, hook, matches, prefix, priority);
    let bits = match matches {
        Match::ProtoDport => (0, 0),
        _ => (
            [0, 24, 32][rng.below(3) as usize],
            [0, 64][rng.below(2) as usize],
        ),
    };
    c.and_then(|c| c.with_subnets(bits.0, bits.1))
        .map(|c| c.encode())
        .unwrap_or([0; classifier::CLASSIFIER_SIZE])
}

/// Flips, overwrites, truncates or extends a request.
pub(crate) fn mutate(rng: &mut Rng, req: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            0 if !req.is_empty() => {
                let i = rng.below(req.len() as u64) as usize;
                req[i] ^= 1 << rng.below(8);
            }
            1 if !req.is_empty() => {
                let i = rng.below(req.len() as u64) as usize;
                req[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5) as usize];
            }
            2 if req.len() >= 4 => {
                // A length or count field set to an extreme value.
                let i = (rng.below(req.len() as u64 / 2) * 2) as usize;
                let v: u32 =
                    [0, 1, 255, 256, 65535, 65536, u32::MAX, 1 << 31][rng.below(8) as usize];
                let n = (req.len() - i).min(4);
                req[i..i + n].copy_from_slice(&v.to_ne_bytes()[..n]);
            }
            3 => req.truncate(rng.below(req.len() as u64 + 1) as usize),
            4 => {
                let extra = rng.blob(0, 16);
                req.extend_from_slice(&extra);
            }
            _ => {}
        }
    }
}

/// A command of the family `set` says: mostly the table's, sometimes a
/// classifier one.
pub(crate) fn command(rng: &mut Rng, set: bool) -> u32 {
    match (rng.below(8), set) {
        (0, true) => [cmd::SET_CLS_ADD, cmd::SET_CLS_DEL][rng.below(2) as usize],
        (0, false) => [cmd::GET_CLS_LIST, cmd::GET_WATCH][rng.below(2) as usize],
        _ => rng.below(4) as u32,
    }
}

/// Iterations of each of `threads` workers: together exactly `iterations`.
fn shares(iterations: u64, threads: u64) -> Vec<u64> {
    (0..threads)
        .map(|t| iterations / threads + u64::from(t < iterations % threads))
        .collect()
}

/// The smallest reply buffer command `c` answers without EINVAL, for the
/// intact request `req`.
fn min_reply(c: u32, req: &[u8]) -> usize {
    match c {
        cmd::GET_INFO => codec::INFO_SIZE,
        cmd::GET_STATS => codec::STATS_SIZE,
        cmd::GET_CLS_LIST => classifier::LIST_HEADER_SIZE,
        cmd::GET_WATCH => codec::WATCH_REPLY_SIZE.max(req.len()),
        cmd::GET_VALUE => codec::VALUE_SIZE.max(req.len()),
        _ => codec::LIST_REPLY_SIZE.max(req.len()),
    }
}

/// Errnos a request to a known command may end with: `intact` ones only for
/// semantic reasons (EDQUOT too in a namespace charged to the shared
/// budget: `budgeted`), others also as malformed or over a limit.
pub(crate) fn errno_allowed(set: bool, c: u32, intact: bool, budgeted: bool, errno: i32) -> bool {
    let known = if set { cmd::is_set(c) } else { cmd::is_get(c) };
    if !known {
        return errno == libc::EOPNOTSUPP;
    }
    // EBADMSG: a value under a classifier's prefix that is no action.
    let semantic: &[i32] = match (set, c) {
        (true, cmd::SET_FLUSH) => &[],
        (true, cmd::SET_CLS_ADD) => &[libc::EEXIST, libc::ENOSPC, libc::EBADMSG],
        (true, cmd::SET_CLS_DEL) => &[libc::ENOENT],
        (true, _) => &[
            libc::ENOENT,
            libc::EEXIST,
            libc::ESTALE,
            libc::ENOSPC,
            libc::EBADMSG,
        ],
        (false, cmd::GET_VALUE) => &[libc::ENOENT, libc::EMSGSIZE],
        (false, cmd::GET_LIST | cmd::GET_CLS_LIST | cmd::GET_WATCH) => &[libc::EMSGSIZE],
        (false, _) => &[],
    };
    // A namespace's first watch makes its change log, charged like entries.
    let charged = if set {
        c != cmd::SET_FLUSH && c != cmd::SET_CLS_DEL
    } else {
        c == cmd::GET_WATCH
    };
    let over_budget = budgeted && charged && errno == libc::EDQUOT;
    semantic.contains(&errno)
        || over_budget
        || (!intact && [libc::EINVAL, libc::E2BIG, libc::EMSGSIZE].contains(&errno))
}

/// What a worker saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    intact: u64,
    intact_accepted: u64,
    /// Requests whose outcome the ABI does not allow (first few kept).
    wrong: Vec<String>,
    wrong_count: u64,
    /// Writes the shared budget refused.
    over_budget: u64,
}

/// One worker: `iterations` requests from `seed`.
fn worker(
    kv: &Nfkv,
    seed: u64,
    iterations: u64,
    deadline: Instant,
    budgeted: bool,
    done: &AtomicU64,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let mut accepted = 0;
    let mut sent = 0;
    let mut reply = vec![0u8; 8192];
    while sent < iterations {
        if sent % 1024 == 0 && Instant::now() > deadline {
            break;
        }
        let set = rng.below(2) == 0;
        // Mostly real commands, sometimes the unknown rest of the range.
        let c = if rng.below(16) == 0 {
            rng.below(u64::from(cmd::RANGE)) as u32
        } else {
            command(&mut rng, set)
        };
        let random = rng.below(8) == 0;
        let mut req = if random {
            rng.blob(0, 96)
        } else {
            valid_request(&mut rng, set, c)
        };
        let mut intact = !random;
        if rng.below(4) != 0 {
            mutate(&mut rng, &mut req);
            intact = false;
        }
        let outcome = if set {
            kv.raw_set(c, &req)
        } else {
            let len = match rng.below(8) {
                0 => rng.below(64) as usize,
                1 => req.len(),
                _ => 64 + rng.below(8128) as usize,
            }
            .max(req.len())
            .min(reply.len());
            intact &= len >= min_reply(c, &req);
            short_watch(c, &mut req, 20);
            reply[..req.len()].copy_from_slice(&req);
            kv.raw_get(c, &mut reply[..len]).map(|_| ())
        };
        let ok = outcome.is_ok();
        if let Err(e) = &outcome {
            let errno = e.raw_os_error().unwrap_or(0);
            t.over_budget += u64::from(errno == libc::EDQUOT);
            if !errno_allowed(set, c, intact, budgeted, errno) {
                t.wrong_count += 1;
                if t.wrong.len() < 5 {
                    t.wrong.push(format!(
                        "{} +{c} ({}, {} bytes {:02x?}): {e}",
                        if set { "set" } else { "get" },
                        if intact { "intact" } else { "mutated" },
                        req.len(),
                        &req[..req.len().min(48)]
                    ));
                }
            }
        }
        t.intact += u64::from(intact);
        t.intact_accepted += u64::from(intact && ok);
        accepted += u64::from(ok);
        sent += 1;
        // Keep the table small enough that LIST pages stay cheap.
        if sent % 20_000 == 0 {
            let _ = kv.flush();
        }
    }
    done.fetch_add(sent, Ordering::Relaxed);
    t.sent = sent;
    t.accepted = accepted;
    t
}

fn random_and_mutated_requests() -> TestResult {
    let seed = env_u64("NFKV_FUZZ_SEED", now_nanos());
    let iterations = env_u64("NFKV_FUZZ_ITERATIONS", 1_000_000);
    let seconds = env_u64("NFKV_FUZZ_SECONDS", 900);
    println!("     fuzz: seed {seed} (replay with NFKV_FUZZ_SEED={seed}), {iterations} requests, at most {seconds} s");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    reload("userns_budget_mib=1")?;
    let r = (|| {
        let host = iterations - iterations / 4;
        fuzz_in_this_namespace("host", seed, host, deadline, false)?;
        in_child(|| {
            enter_user_and_net_namespace()?;
            // Another namespace of the same user holds all but 8 KiB of
            // the budget, so the fuzzed table soon meets it (flushes,
            // one request in 8, keep that table small).
            let filler = connect()?;
            let mut i = 0;
            while ck("info", filler.info())?.budget_used < (1 << 20) - (8 << 10) {
                ck(
                    "fill",
                    filler.put(
                        format!("fill{i}").as_bytes(),
                        &[0; 4096],
                        Condition::default(),
                    ),
                )?;
                i += 1;
            }
            unshare(libc::CLONE_NEWNET)?;
            fuzz_in_this_namespace("userns", seed ^ 1, iterations / 4, deadline, true)?;
            // The two namespaces' tables are the only ones charged.
            let info = ck("info", connect()?.info())?;
            let held = ck("info", filler.info())?.charged;
            ensure!(
                info.charged_to_budget() && info.budget_used == info.charged + held,
                "the shared budget holds {} while its two tables hold {} and {held}",
                info.budget_used,
                info.charged
            );
            Ok(())
        })?;
        // Its namespaces gone, the budget must be empty again.
        let kv = connect()?;
        for _ in 0..300 {
            if ck("info", kv.info())?.budget_used == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the shared budget still holds {} after its namespaces died",
            ck("info", kv.info())?.budget_used
        ))
    })();
    reload("")?;
    r
}

/// Fuzzes this namespace's table from two threads: `iterations` requests
/// from `seed`, charged to the shared budget or not (`budgeted`); then its
/// accounting must match its contents.
fn fuzz_in_this_namespace(
    name: &str,
    seed: u64,
    iterations: u64,
    deadline: Instant,
    budgeted: bool,
) -> TestResult {
    let threads = 2u64;
    let done = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = shares(iterations, threads)
            .into_iter()
            .enumerate()
            .map(|(t, share)| {
                let done = &done;
                s.spawn(move || {
                    let kv = Nfkv::open().expect("open");
                    worker(
                        &kv,
                        seed.wrapping_add((t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                        share,
                        deadline,
                        budgeted,
                        done,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fuzz worker"))
            .collect()
    });
    let sum = |f: fn(&Tally) -> u64| -> u64 { results.iter().map(f).sum() };
    let (sent, accepted) = (sum(|t| t.sent), sum(|t| t.accepted));
    let (intact, intact_accepted) = (sum(|t| t.intact), sum(|t| t.intact_accepted));
    let (wrong, over_budget) = (sum(|t| t.wrong_count), sum(|t| t.over_budget));
    let secs = start.elapsed().as_secs_f64();
    println!(
        "     fuzz ({name}): {sent} requests in {secs:.0} s ({:.0}/s), {accepted} accepted; {intact} intact, {intact_accepted} of them accepted; {over_budget} refused by the shared budget; {wrong} with an errno the ABI does not allow",
        sent as f64 / secs
    );
    let examples: Vec<&String> = results.iter().flat_map(|t| &t.wrong).collect();
    ensure!(
        wrong == 0,
        "{name}: {wrong} requests ended with an errno the ABI does not allow, e.g.:\n  {}",
        examples
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    ensure!(
        intact_accepted > 0 && accepted > intact_accepted,
        "{name}: the fuzzer exercised too little: {intact_accepted} intact and {} mutated requests accepted",
        accepted - intact_accepted
    );
    ensure!(
        !budgeted || over_budget > 0,
        "{name}: the shared budget never refused a write: its refusals were not fuzzed"
    );

    // The table must still work and its accounting must match its contents.
    let kv = connect()?;
    let d = dump(&kv)?;
    let bytes: u64 = d
        .contents
        .iter()
        .map(|e| (e.key.len() + e.value.len()) as u64)
        .sum();
    ensure!(
        d.entries as usize == d.contents.len(),
        "{name}: info says {} entries, listing has {}",
        d.entries,
        d.contents.len()
    );
    ensure!(
        d.bytes_used == bytes,
        "{name}: info says {} bytes, listing has {bytes}",
        d.bytes_used
    );
    // Room for the check below, whatever the fuzz left in a full budget.
    ck("flush after fuzz", kv.flush())?;
    ck(
        "put after fuzz",
        kv.put(b"after-fuzz", b"ok", Condition::default()),
    )?;
    ensure!(
        ck("get after fuzz", kv.get(b"after-fuzz"))?.value == b"ok",
        "{name}: table broken after fuzzing"
    );
    ensure!(
        sent >= iterations,
        "{name}: only {sent} of {iterations} requests before the deadline"
    );
    Ok(())
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_for_any_count() {
        for iterations in [0, 1, 2, 3, 999_999, 1_000_001] {
            for threads in [1, 2, 3, 7] {
                let s = shares(iterations, threads);
                assert_eq!(s.len() as u64, threads);
                assert_eq!(s.iter().sum::<u64>(), iterations, "{iterations}/{threads}");
            }
        }
    }

    #[test]
    fn intact_requests_may_not_be_malformed() {
        assert!(errno_allowed(true, cmd::SET_PUT, true, false, libc::EEXIST));
        assert!(!errno_allowed(
            true,
            cmd::SET_PUT,
            true,
            false,
            libc::EINVAL
        ));
        assert!(errno_allowed(
            true,
            cmd::SET_PUT,
            false,
            false,
            libc::EINVAL
        ));
        assert!(!errno_allowed(
            true,
            cmd::SET_FLUSH,
            true,
            false,
            libc::ENOENT
        ));
        assert!(!errno_allowed(
            false,
            cmd::GET_INFO,
            false,
            false,
            libc::EFAULT
        ));
        assert!(errno_allowed(
            false,
            cmd::RANGE - 1,
            false,
            false,
            libc::EOPNOTSUPP
        ));
        assert!(!errno_allowed(
            false,
            cmd::RANGE - 1,
            false,
            false,
            libc::EINVAL
        ));
        // EDQUOT only for writes in a namespace charged to the budget.
        assert!(errno_allowed(
            true,
            cmd::SET_BATCH,
            true,
            true,
            libc::EDQUOT
        ));
        assert!(!errno_allowed(
            true,
            cmd::SET_BATCH,
            true,
            false,
            libc::EDQUOT
        ));
        assert!(!errno_allowed(
            true,
            cmd::SET_FLUSH,
            true,
            true,
            libc::EDQUOT
        ));
        assert!(!errno_allowed(
            false,
            cmd::GET_VALUE,
            true,
            true,
            libc::EDQUOT
        ));
        // A namespace's first watch makes its log, charged to the budget.
        assert!(errno_allowed(
            false,
            cmd::GET_WATCH,
            true,
            true,
            libc::EDQUOT
        ));
        assert!(!errno_allowed(
            false,
            cmd::GET_WATCH,
            true,
            false,
            libc::EDQUOT
        ));
    }
}
