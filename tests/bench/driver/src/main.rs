//! nfkv-bench: measures nfkv.ko (Rust) against nfkv_cref.ko (the same ABI
//! in C) and nfkv_floor.ko (the bare channel), side by side in one VM run.
//! Variants are interleaved (A/B/A/B, several rounds); each row reports the
//! median and the spread (min..max) of its rounds. Run by tests/bench/run.
//!
//! Usage: nfkv-bench RUST_OPTBASE C_OPTBASE FLOOR_OPTBASE [ROUNDS]

use nfkv::{Batch, Condition, Nfkv};
use nfkv_abi::codec::{self, cmd};
use std::os::fd::AsRawFd;
use std::time::Instant;

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 64;

fn key(i: u64) -> Vec<u8> {
    format!("k{:015}", i.wrapping_mul(0x9e37_79b9) % 1_000_000_000_000).into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![b'v'; VALUE_LEN];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Nanoseconds per call of `f`, over `n` calls.
fn per_op(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn fill(kv: &Nfkv, n: u64) {
    kv.flush().expect("flush");
    let mut i = 0;
    while i < n {
        let mut b = Batch::new();
        for j in i..(i + 4096).min(n) {
            b.put(&key(j), &value(j), Condition::default());
        }
        kv.apply(&b).expect("fill");
        i += 4096;
    }
}

struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stat {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn slab_kb() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    m.lines()
        .find(|l| l.starts_with("Slab:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (rust_base, c_base, floor_base) = (args[0], args[1], args[2]);
    let rounds = args.get(3).copied().unwrap_or(5) as usize;
    let rust = Nfkv::open_at(rust_base).expect("nfkv.ko");
    let c = Nfkv::open_at(c_base).expect("nfkv_cref.ko");
    let variants: [(&str, &Nfkv); 2] = [("rust", &rust), ("c", &c)];
    let floor_fd = nfkv::open_socket(libc::SOCK_RAW, libc::IPPROTO_RAW).expect("socket");
    let n = 20_000;

    let mut rows: Vec<(String, Vec<(String, Stat)>)> = Vec::new();
    let mut row = |name: &str, results: Vec<(String, Stat)>| {
        let line: Vec<String> = results
            .iter()
            .map(|(v, s)| format!("{v} {:.0} ns [{:.0}..{:.0}]", s.median, s.min, s.max))
            .collect();
        println!("{name:<28} {}", line.join("   "));
        rows.push((name.to_string(), results));
    };

    // Floors: the bare getsockopt syscall, and the nf_sockopt channel.
    let mut floors = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let mut ty = 0i32;
        floors[0].push(per_op(n, |_| {
            let mut len = 4u32;
            // SAFETY: a valid int buffer and its length.
            unsafe {
                libc::getsockopt(
                    floor_fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut ty as *mut i32).cast(),
                    &mut len,
                )
            };
        }));
        let mut buf = [0u8; 256];
        floors[1].push(per_op(n, |_| {
            let _ = nfkv::raw_get(&floor_fd, floor_base + cmd::GET_VALUE, &mut buf);
        }));
        let req = nfkv::encode_op(&codec::Op {
            kind: codec::OpKind::Put,
            cond: Condition::default(),
            key: &key(0),
            value: &value(0),
        });
        floors[2].push(per_op(n, |_| {
            let _ = nfkv::raw_set(&floor_fd, floor_base + cmd::SET_PUT, &req);
        }));
    }
    let [syscall, floor_get, floor_set] = [0, 1, 2].map(|i| stat(floors[i].clone()));
    row(
        "floor",
        vec![
            ("syscall".into(), syscall),
            ("nf get".into(), floor_get),
            ("nf set".into(), floor_set),
        ],
    );

    // Interleaved measurement of one operation over both implementations.
    let measure =
        |setup: &dyn Fn(&Nfkv), op: &dyn Fn(&Nfkv, u64), iters: u64| -> Vec<(String, Stat)> {
            let mut samples = vec![Vec::new(); variants.len()];
            for _ in 0..rounds {
                for (i, (_, kv)) in variants.iter().enumerate() {
                    setup(kv);
                    samples[i].push(per_op(iters, |j| op(kv, j)));
                }
            }
            variants
                .iter()
                .zip(samples)
                .map(|((name, _), s)| (name.to_string(), stat(s)))
                .collect()
        };

    // Requests are built before timing and sent raw, so every variant
    // (and the floor) pays the same userspace cost.
    let get_reqs: Vec<Vec<u8>> = (0..1024)
        .map(|j| {
            let mut r = vec![0u8; codec::VALUE_SIZE + VALUE_LEN];
            codec::encode_get(&mut r, &key(j));
            r
        })
        .collect();
    for (label, entries) in [("1", 1u64), ("1k", 1_000), ("100k", 100_000)] {
        let setup = move |kv: &Nfkv| {
            if kv.info().ok().map(|i| i.entries as u64) != Some(entries) {
                fill(kv, entries);
            }
        };
        let mut reply = vec![0u8; codec::VALUE_SIZE + VALUE_LEN];
        let reply = std::cell::RefCell::new(&mut reply);
        let r = measure(
            &setup,
            &|kv, j| {
                let req = &get_reqs[(j % entries.min(1024)) as usize];
                let mut buf = reply.borrow_mut();
                buf.copy_from_slice(&req[..]);
                kv.raw_get(cmd::GET_VALUE, &mut buf[..]).expect("get");
            },
            n,
        );
        row(&format!("get hit @{label}"), r);
    }
    let put_req = nfkv::encode_op(&codec::Op {
        kind: codec::OpKind::Put,
        cond: Condition::default(),
        key: &key(0),
        value: &value(1),
    });
    let r = measure(
        &|kv| fill(kv, 1),
        &|kv, _| kv.raw_set(cmd::SET_PUT, &put_req).expect("put"),
        n,
    );
    row("put overwrite @1", r);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..1024u64)
        .map(|j| {
            let k = format!("new{j:013}").into_bytes();
            let put = nfkv::encode_op(&codec::Op {
                kind: codec::OpKind::Put,
                cond: Condition::default(),
                key: &k,
                value: &value(j),
            });
            let del = nfkv::encode_op(&codec::Op {
                kind: codec::OpKind::Del,
                cond: Condition::default(),
                key: &k,
                value: &[],
            });
            (put, del)
        })
        .collect();
    let r = measure(
        &|kv| fill(kv, 1_000),
        &|kv, j| {
            let (put, del) = &pairs[(j % 1024) as usize];
            kv.raw_set(cmd::SET_PUT, put).expect("insert");
            kv.raw_set(cmd::SET_DEL, del).expect("delete");
        },
        n / 2,
    );
    row("put insert + delete @1k", r);
    let single_reqs: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            nfkv::encode_op(&codec::Op {
                kind: codec::OpKind::Put,
                cond: Condition::default(),
                key: &key(i),
                value: &value(i),
            })
        })
        .collect();
    let singles = measure(
        &|kv| fill(kv, 64),
        &|kv, _| {
            for req in &single_reqs {
                kv.raw_set(cmd::SET_PUT, req).expect("put");
            }
        },
        n / 64,
    );
    row("64 single puts", singles);
    let batch = {
        let mut b = Batch::new();
        for i in 0..64 {
            b.put(&key(i), &value(i), Condition::default());
        }
        b.encode().expect("batch")
    };
    let batched = measure(
        &|kv| fill(kv, 64),
        &|kv, _| kv.raw_set(cmd::SET_BATCH, &batch).expect("batch"),
        n / 64,
    );
    row("batch of 64 puts", batched);
    let lists = measure(
        &|kv| {
            if kv.info().ok().map(|i| i.entries) != Some(100_000) {
                fill(kv, 100_000);
            }
        },
        &|kv, _| {
            let count = kv.list(b"").count();
            assert_eq!(count, 100_000);
        },
        3,
    );
    row("list 100k entries", lists);

    // Memory per entry: slab growth over 100k inserts, minus key + value.
    let mut mem = Vec::new();
    for (name, kv) in variants {
        kv.flush().expect("flush");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let before = slab_kb();
        fill(kv, 100_000);
        let after = slab_kb();
        let per_entry =
            (after.saturating_sub(before) * 1024) as f64 / 100_000.0 - (KEY_LEN + VALUE_LEN) as f64;
        println!(
            "{:<28} {name} {per_entry:.0} B overhead per entry (slab {before} -> {after} kB)",
            "memory"
        );
        mem.push((name, per_entry));
        kv.flush().expect("flush");
    }

    // The ratios the issue asks for.
    let med = |name: &str, variant: &str| -> f64 {
        rows.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, r)| r.iter().find(|(v, _)| v == variant))
            .map(|(_, s)| s.median)
            .unwrap_or(f64::NAN)
    };
    println!();
    println!("| ratio | value | target |");
    println!("|---|---|---|");
    for name in [
        "get hit @1",
        "get hit @1k",
        "get hit @100k",
        "put overwrite @1",
        "put insert + delete @1k",
        "batch of 64 puts",
        "list 100k entries",
    ] {
        println!(
            "| C / Rust time, {name} (>= 1.0: Rust as fast) | {:.2} | >= 1.0 |",
            med(name, "c") / med(name, "rust")
        );
    }
    println!(
        "| Rust get / channel floor (nf get) | {:.2} | <= 1.2 |",
        med("get hit @1", "rust") / med("floor", "nf get")
    );
    println!(
        "| Rust put / channel floor (nf set) | {:.2} | <= 1.3 |",
        med("put overwrite @1", "rust") / med("floor", "nf set")
    );
    println!(
        "| channel floor (nf get) / bare syscall | {:.2} | - |",
        med("floor", "nf get") / med("floor", "syscall")
    );
    println!(
        "| Rust get@100k / get@1 | {:.2} | <= 1.5 |",
        med("get hit @100k", "rust") / med("get hit @1", "rust")
    );
    println!(
        "| Rust batch speed-up (64 singles / batch of 64) | {:.1} | >= 10 |",
        med("64 single puts", "rust") / med("batch of 64 puts", "rust")
    );
    for (name, bytes) in mem {
        println!("| {name} overhead per entry (bytes) | {bytes:.0} | <= 96 |");
    }
}
