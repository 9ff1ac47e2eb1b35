//! A seeded, reproducible random fuzzer: random and mutated requests to
//! every set and get command (and the unknown ones of the range), from
//! several threads, then a check that the table's accounting still adds up.
//!
//! `NFKV_FUZZ_SEED` replays a run, `NFKV_FUZZ_ITERATIONS` (default 1,000,000)
//! and `NFKV_FUZZ_SECONDS` (default 900) bound it.

use crate::ensure;
use crate::harness::*;
use nfkv::{Batch, Condition, Nfkv};
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
fn valid_request(rng: &mut Rng, set: bool, c: u32) -> Vec<u8> {
    let key = rng.blob(1, 8);
    let value = rng.blob(0, 64);
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
        nfkv::encode_op(&Op {
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
                    b.put(&k, &rng.blob(0, 32), cond);
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
        _ => Vec::new(),
    }
}

/// Flips, overwrites, truncates or extends a request.
fn mutate(rng: &mut Rng, req: &mut Vec<u8>) {
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

/// One worker: `iterations` requests from `seed`; returns (sent, accepted).
fn worker(
    kv: &Nfkv,
    seed: u64,
    iterations: u64,
    deadline: Instant,
    done: &AtomicU64,
) -> (u64, u64) {
    let mut rng = Rng::new(seed);
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
            rng.below(4) as u32
        };
        let mut req = if rng.below(8) == 0 {
            rng.blob(0, 96)
        } else {
            valid_request(&mut rng, set, c)
        };
        if rng.below(4) != 0 {
            mutate(&mut rng, &mut req);
        }
        let ok = if set {
            kv.raw_set(c, &req).is_ok()
        } else {
            let len = match rng.below(8) {
                0 => rng.below(64) as usize,
                1 => req.len(),
                _ => 64 + rng.below(8128) as usize,
            }
            .max(req.len())
            .min(reply.len());
            reply[..req.len()].copy_from_slice(&req);
            kv.raw_get(c, &mut reply[..len]).is_ok()
        };
        accepted += u64::from(ok);
        sent += 1;
        // Keep the table small enough that LIST pages stay cheap.
        if sent % 20_000 == 0 {
            let _ = kv.flush();
        }
    }
    done.fetch_add(sent, Ordering::Relaxed);
    (sent, accepted)
}

fn random_and_mutated_requests() -> TestResult {
    let seed = env_u64("NFKV_FUZZ_SEED", now_nanos());
    let iterations = env_u64("NFKV_FUZZ_ITERATIONS", 1_000_000);
    let seconds = env_u64("NFKV_FUZZ_SECONDS", 900);
    let threads = 2u64;
    println!("     fuzz: seed {seed} (replay with NFKV_FUZZ_SEED={seed}), {iterations} requests, {threads} threads, at most {seconds} s");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let done = &done;
                s.spawn(move || {
                    let kv = Nfkv::open().expect("open");
                    worker(
                        &kv,
                        seed.wrapping_add(t.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                        iterations / threads,
                        deadline,
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
    let sent: u64 = results.iter().map(|r| r.0).sum();
    let accepted: u64 = results.iter().map(|r| r.1).sum();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "     fuzz: {sent} requests in {secs:.0} s ({:.0}/s), {accepted} accepted",
        sent as f64 / secs
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
        "info says {} entries, listing has {}",
        d.entries,
        d.contents.len()
    );
    ensure!(
        d.bytes_used == bytes,
        "info says {} bytes, listing has {bytes}",
        d.bytes_used
    );
    ck(
        "put after fuzz",
        kv.put(b"after-fuzz", b"ok", Condition::default()),
    )?;
    ensure!(
        ck("get after fuzz", kv.get(b"after-fuzz"))?.value == b"ok",
        "table broken after fuzzing"
    );
    ensure!(
        sent >= iterations,
        "only {sent} of {iterations} requests within {seconds} s"
    );
    Ok(())
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
