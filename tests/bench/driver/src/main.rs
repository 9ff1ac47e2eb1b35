//! nfkv-bench: measures nfkv.ko (Rust) against nfkv_cref.ko (the same ABI
//! in C), a BPF hash map driven through bpf(2), and nfkv_floor.ko (the bare
//! channel), side by side in one VM boot. Variants are interleaved (Rust, C,
//! BPF, Rust, C, BPF, … over the rounds), and the driver reloads the modules
//! before each round, nfkv.ko and nfkv_cref.ko in alternating load order
//! (see `modules`); each row reports the median and the spread (min..max)
//! of its rounds. Every timed call checks its result (reply lengths, values,
//! entry counts): a wrong result fails the run. Run by tests/bench/run; see
//! BENCHMARKS.md.
//!
//! Usage: nfkv-bench NFKV_KO CREF_KO FLOOR_KO [ROUNDS]

mod bpf;
mod modules;
mod nf;
mod packets;

/// Namespaces and veth links for the packet rows: the classifier suite's
/// own (tests/vmtests), with what it needs of that crate's harness.
#[path = "../../../vmtests/src/netns.rs"]
#[allow(dead_code)]
mod netns;

mod harness {
    pub type TestResult = Result<(), String>;

    pub fn unshare(flags: i32) -> TestResult {
        // SAFETY: plain syscall.
        let rc = unsafe { libc::unshare(flags) };
        crate::ensure!(rc == 0, "unshare: {}", std::io::Error::last_os_error());
        Ok(())
    }

    pub fn connect() -> Result<nfkv::Nfkv, String> {
        nfkv::Nfkv::open().map_err(|e| format!("open: {e}"))
    }
}

/// Returns an error with a message unless `cond` (as tests/vmtests has it).
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

use bpf::{BpfHash, BPF_ANY};
use modules::{Modules, C_OPTBASE, FLOOR_OPTBASE, RUST_OPTBASE};
use nf::{
    encode_get, encode_op, encode_put_ttl, encode_watch, key, value, Nf, StreamCheck, GET_VALUE,
    SET_BATCH, SET_DEL, SET_PUT, VALUE_SIZE,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 64;
/// Calls per sample for the cheap rows.
const N: u64 = 10_000;
/// Capacity of the BPF map used for timing, as nfkv's max_entries (in-vm).
const BPF_MAX_ENTRIES: u32 = 131_072;

/// The packet rows' entry counts.
const PACKET_ROWS: [(&str, u64); 3] = [("1", 1), ("1k", 1_000), ("100k", 100_000)];

/// Nanoseconds per call of `f`, over `n` calls.
fn per_op(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

/// Order number `k` (modulo `n!`) of `0..n`, for small `n`: every order
/// once over `n!` consecutive `k`.
fn permutation(n: usize, k: usize) -> Vec<usize> {
    let mut left: Vec<usize> = (0..n).collect();
    let mut k = k % (1..=n).product::<usize>();
    let mut order = Vec::with_capacity(n);
    for m in (1..=n).rev() {
        let f: usize = (1..m).product();
        order.push(left.remove(k / f));
        k %= f;
    }
    order
}

/// Order `k` of `0..n` in cycles of `n` rotations, every other cycle
/// reversed: over `2n` consecutive `k`, every element is at every place
/// twice and comes before each other element as often as after it.
fn rotation(n: usize, k: usize) -> Vec<usize> {
    let order = (0..n).map(|i| (i + k) % n);
    if (k / n).is_multiple_of(2) {
        order.collect()
    } else {
        order.rev().collect()
    }
}

/// Median (the mean of the middle two of an even count), min and max.
fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mid = v.len() / 2;
    Stat {
        median: if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        },
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// Copies of `n` buffers (requests or reply buffers) in slots of whole
/// pages, at places picked by a fixed shuffle: buffer `i` in `copies =
/// max(1, 1024 / n)` copies, call `j` using buffer `j % n`, copy
/// `(j / n) % copies`. The PUT, DEL and batch rows send their requests from
/// such buffers, and the single-thread GET rows read their replies into
/// them, the same for Rust and C.
///
/// Why: QEMU's software TLB is direct-mapped, so a user page that shares a
/// slot with a kernel page one module touches on every call (its entry,
/// its data, its stack) slows that module's calls, and not the other's.
/// With one buffer per request, the layout of the boot picked a winner
/// (docs/bench-notes.md: moving one 16 KiB buffer by whole pages flipped either
/// module between ~100 and ~190 us per PUT). Many placements per row
/// average that out for both modules alike.
struct Scattered {
    arena: Vec<u8>,
    /// Bytes from one slot's start to the next's: whole pages.
    slot: usize,
    len: usize,
    n: usize,
    copies: usize,
    /// Slot of copy `c` of buffer `i`: `order[c * n + i]`.
    order: Vec<usize>,
}

impl Scattered {
    const PAGE: usize = 4096;

    /// Copies of `bufs` (at least one, all of one length).
    fn new(bufs: &[Vec<u8>]) -> Scattered {
        let (n, len) = (bufs.len(), bufs[0].len());
        assert!(bufs.iter().all(|b| b.len() == len));
        let copies = (1024 / n).max(1);
        let slot = len.next_multiple_of(Self::PAGE);
        let slots = n * copies;
        // A fixed Fisher-Yates shuffle (xorshift64*): the same pages every run.
        let mut order: Vec<usize> = (0..slots).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for k in (1..slots).rev() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            order.swap(k, (r % (k as u64 + 1)) as usize);
        }
        let mut s = Scattered {
            arena: vec![0u8; slots * slot],
            slot,
            len,
            n,
            copies,
            order,
        };
        for c in 0..copies {
            for (i, b) in bufs.iter().enumerate() {
                let start = s.order[c * n + i] * slot;
                s.arena[start..start + len].copy_from_slice(b);
            }
        }
        s
    }

    /// Copies of `n` zeroed buffers of `len` bytes (for replies).
    fn zeroed(n: usize, len: usize) -> std::cell::RefCell<Scattered> {
        std::cell::RefCell::new(Scattered::new(&vec![vec![0u8; len]; n]))
    }

    fn start(&self, j: u64) -> usize {
        let (n, copies) = (self.n as u64, self.copies as u64);
        let index = (j % n + n * ((j / n) % copies)) as usize;
        self.order[index] * self.slot
    }

    /// The buffer call `j` uses.
    fn get(&self, j: u64) -> &[u8] {
        let start = self.start(j);
        &self.arena[start..start + self.len]
    }

    fn get_mut(&mut self, j: u64) -> &mut [u8] {
        let start = self.start(j);
        &mut self.arena[start..start + self.len]
    }
}

/// One implementation in one row: `setup` (untimed) then `sample` (returns
/// the measurement), once per round.
struct Variant<'a> {
    name: &'static str,
    setup: Box<dyn FnMut() + 'a>,
    sample: Box<dyn FnMut() -> f64 + 'a>,
}

fn variant<'a>(
    name: &'static str,
    setup: impl FnMut() + 'a,
    sample: impl FnMut() -> f64 + 'a,
) -> Variant<'a> {
    Variant {
        name,
        setup: Box::new(setup),
        sample: Box::new(sample),
    }
}

/// Untimed calls before each sample. The modules are reloaded before every
/// round, and QEMU translates a module's code anew the first time it runs
/// after a load: without these, each sample would time the translation of
/// whatever code the setup did not run (for a single PUT or DEL, all of
/// it), which is an emulator cost, and larger for the larger module.
const WARMUP: u64 = 64;

/// A variant timing `iters` calls of `op` per sample, after [`WARMUP`]
/// untimed ones (every timed op leaves the table as it found it, or as the
/// next call expects it).
fn timed<'a>(
    name: &'static str,
    iters: u64,
    setup: impl FnMut() + 'a,
    mut op: impl FnMut(u64) + 'a,
) -> Variant<'a> {
    variant(name, setup, move || {
        (0..WARMUP.min(iters)).for_each(&mut op);
        per_op(iters, &mut op)
    })
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000_000.0 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 100_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

struct Row {
    name: String,
    unit: &'static str,
    results: Vec<(&'static str, Stat)>,
    /// Each variant's samples, in round order.
    samples: Vec<Vec<f64>>,
}

struct Bench {
    /// A multiple of 12 (see [`Bench::row_rounds`]).
    rounds: usize,
    rows: Vec<Row>,
    modules: Modules,
    /// Whether rounds reload the modules (see [`Bench::row_rounds`]).
    reload: bool,
}

impl Bench {
    /// Runs the variants interleaved over the rounds and prints the row.
    fn row(&mut self, name: &str, unit: &'static str, variants: Vec<Variant>) {
        self.row_rounds(name, unit, self.rounds, variants);
    }

    /// [`Bench::row`] with the modules left loaded as they are (for the
    /// packet rows, whose classifier and entries would go with a reload),
    /// over the rounds rounded up to a multiple of twice the variants.
    fn row_loaded(&mut self, name: &str, unit: &'static str, variants: Vec<Variant>) {
        self.reload = false;
        let rounds = self.rounds.next_multiple_of(2 * variants.len());
        self.row_rounds(name, unit, rounds, variants);
        self.reload = true;
    }

    /// [`Bench::row`] over `rounds` rounds. Round `r` runs with nfkv.ko
    /// loaded first when `r` is even, nfkv_cref.ko first when it is odd
    /// (the variants' setup refills the tables after a reload), running
    /// the variants in order number `r / 2` of their `n!` orders. Without
    /// reloads, the variants' order is [`rotation`] `r` instead.
    fn row_rounds(
        &mut self,
        name: &str,
        unit: &'static str,
        rounds: usize,
        mut variants: Vec<Variant>,
    ) {
        let mut samples = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            if self.reload {
                self.modules.arrange(round % 2 == 0);
            }
            // Where a variant runs in its round changes its time under TCG
            // (in one run, insert + delete: ~17 us per pair from either
            // module run first after the reload, 12-13 us run last), so
            // each order of the variants gets as many rounds.
            let order = if self.reload {
                permutation(variants.len(), round / 2)
            } else {
                rotation(variants.len(), round)
            };
            for i in order {
                let v = &mut variants[i];
                (v.setup)();
                samples[i].push((v.sample)());
            }
        }
        if std::env::var_os("NFKV_BENCH_SAMPLES").is_some() {
            let rounds_are = if self.reload {
                "round r: nfkv.ko loaded first when r is even; variants in order number r / 2"
            } else {
                "round r: no reload; variants in rotation r"
            };
            for (v, s) in variants.iter().zip(&samples) {
                let s: Vec<String> = s.iter().map(|x| format!("{x:.0}")).collect();
                println!("  {name} {}: {} ({rounds_are})", v.name, s.join(" "));
            }
        }
        let results: Vec<(&'static str, Stat)> = variants
            .iter()
            .zip(&samples)
            .map(|(v, s)| (v.name, stat(s.clone())))
            .collect();
        let show = |x: f64| {
            if unit.starts_with("ns") {
                fmt_ns(x)
            } else {
                format!("{x:.0} {unit}")
            }
        };
        let line: Vec<String> = results
            .iter()
            .map(|(v, s)| format!("{v} {} [{}..{}]", show(s.median), show(s.min), show(s.max)))
            .collect();
        println!("{name:<26} {}", line.join("   "));
        self.rows.push(Row {
            name: name.to_string(),
            unit,
            results,
            samples,
        });
    }

    /// The median over the rounds of `num`'s sample over `den`'s in the
    /// same round of `row`: both measured back to back, with the same
    /// modules loaded in the same order.
    fn paired(&self, row: &str, num: &str, den: &str) -> Option<f64> {
        self.paired_by(row, num, den, |n, d| n / d)
    }

    /// As [`Bench::paired`], the median of the rounds' differences.
    fn paired_diff(&self, row: &str, num: &str, den: &str) -> Option<f64> {
        self.paired_by(row, num, den, |n, d| n - d)
    }

    /// The median over the rounds of `f(num's sample, den's sample)`.
    fn paired_by(&self, row: &str, num: &str, den: &str, f: fn(f64, f64) -> f64) -> Option<f64> {
        let r = self.rows.iter().find(|r| r.name == row)?;
        let of = |v: &str| {
            r.results
                .iter()
                .position(|(n, _)| *n == v)
                .map(|i| &r.samples[i])
        };
        let (n, d) = (of(num)?, of(den)?);
        Some(stat(n.iter().zip(d).map(|(&n, &d)| f(n, d)).collect()).median)
    }

    fn med(&self, row: &str, variant: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.name == row)
            .and_then(|r| r.results.iter().find(|(v, _)| *v == variant))
            .map(|(_, s)| s.median)
    }
}

/// Kernel memory in use, in bytes: slab (kmalloc, including large kmallocs,
/// which 6.12 counts as unreclaimable slab), vmalloc and percpu pages, from
/// /proc/meminfo after folding the per-CPU counter deltas.
fn kernel_bytes() -> u64 {
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
    let m = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let field = |name: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("/proc/meminfo has no {name}"))
    };
    (field("Slab:") + field("VmallocUsed:") + field("Percpu:")) * 1024
}

/// Waits until kernel memory stops moving (deferred frees done), up to 5 s.
fn settle() -> u64 {
    let mut last = kernel_bytes();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = kernel_bytes();
        if now.abs_diff(last) < 64 * 1024 {
            return now;
        }
        last = now;
    }
    last
}

/// Aggregate ns per GET of `threads` threads, each with its own socket to
/// the module at `base`, each doing `iters` checked GETs over the entries
/// `0..reqs.len()` (64-byte values), from a common start to the last finish.
fn threaded_gets(
    name: &'static str,
    base: u32,
    threads: usize,
    iters: u64,
    reqs: &[Vec<u8>],
) -> f64 {
    let socks: Vec<Nf> = (0..threads).map(|_| Nf::open(name, base)).collect();
    let barrier = Barrier::new(threads + 1);
    let barrier = &barrier;
    std::thread::scope(|s| {
        let handles: Vec<_> = socks
            .into_iter()
            .enumerate()
            .map(|(t, kv)| {
                s.spawn(move || {
                    let mut buf = vec![0u8; VALUE_SIZE + VALUE_LEN];
                    let n = reqs.len() as u64;
                    // Untimed, as in `timed`.
                    for i in 0..WARMUP {
                        kv.get_checked(&reqs[i as usize], &mut buf, i);
                    }
                    barrier.wait();
                    for j in 0..iters {
                        let i = (j + t as u64 * n / 2) % n;
                        kv.get_checked(&reqs[i as usize], &mut buf, i);
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("GET thread");
        }
        start.elapsed().as_nanos() as f64 / (threads as u64 * iters) as f64
    })
}

fn main() {
    const USAGE: &str = "usage: nfkv-bench NFKV_KO CREF_KO FLOOR_KO [ROUNDS]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!((3..=4).contains(&args.len()), "{USAGE}");
    let rounds: usize = args.get(3).map_or(24, |r| r.parse().expect(USAGE));
    // Rounded up to a multiple of 12, so that both load orders, and every
    // order of two or three variants, get as many rounds.
    let rounds = rounds.max(1).next_multiple_of(12);
    let only = std::env::var("NFKV_BENCH_ONLY").ok();
    if let Some(o) = only
        .as_deref()
        .filter(|o| !["packets", "ttl", "watch"].contains(o))
    {
        eprintln!("nfkv-bench: NFKV_BENCH_ONLY={o}: only packets, ttl or watch are known");
        std::process::exit(2);
    }
    let mut modules = Modules::new(&args[0], &args[1], &args[2]);
    modules.arrange(true);
    let rust = Nf::open("rust", RUST_OPTBASE);
    let c = Nf::open("c", C_OPTBASE);
    let floor_base = FLOOR_OPTBASE;
    let nfs = [&rust, &c];
    let map = BpfHash::create(BPF_MAX_ENTRIES, KEY_LEN, VALUE_LEN)
        .expect("bpf: map create (CONFIG_BPF_SYSCALL, root?)");
    let floor_fd = nf::socket();
    let mut b = Bench {
        rounds,
        rows: Vec::new(),
        modules,
        reload: true,
    };
    println!(
        "{} rounds, nfkv.ko and nfkv_cref.ko reloaded before each in alternating order; \
         keys {KEY_LEN} B, values {VALUE_LEN} B unless the row says otherwise; \
         BPF: BPF_MAP_TYPE_HASH, max_entries {BPF_MAX_ENTRIES}, preallocated",
        rounds
    );
    match only.as_deref() {
        Some("packets") => {
            packet_rows(&mut b);
            report(&b);
            b.modules.unload();
            return;
        }
        Some("ttl") => {
            ttl_rows(&mut b, &nfs);
            report(&b);
            b.modules.unload();
            return;
        }
        Some("watch") => {
            watch_rows(&mut b, &nfs);
            report(&b);
            b.modules.unload();
            return;
        }
        _ => {}
    }

    // Floors: the bare getsockopt syscall, and the nf_sockopt channel.
    {
        let put = encode_op(&key(0), Some(&value(0, VALUE_LEN)));
        let mut ty = 0i32;
        let mut buf = [0u8; 256];
        let fd = &floor_fd;
        b.row(
            "floor",
            "ns",
            vec![
                timed(
                    "syscall",
                    N,
                    || {},
                    |_| {
                        let mut len = 4u32;
                        // SAFETY: a valid int buffer and its length.
                        let rc = unsafe {
                            libc::getsockopt(
                                std::os::fd::AsRawFd::as_raw_fd(fd),
                                libc::SOL_SOCKET,
                                libc::SO_TYPE,
                                (&mut ty as *mut i32).cast(),
                                &mut len,
                            )
                        };
                        assert_eq!(rc, 0);
                    },
                ),
                timed(
                    "nf get",
                    N,
                    || {},
                    |_| {
                        nfkv::raw::raw_get(fd, floor_base + GET_VALUE, &mut buf)
                            .expect("floor get");
                    },
                ),
                timed(
                    "nf set",
                    N,
                    || {},
                    |_| {
                        nfkv::raw::raw_set(fd, floor_base + SET_PUT, &put).expect("floor set");
                    },
                ),
            ],
        );
    }

    // GET of present keys (64-byte values) in tables of 1, 1k and 100k
    // entries, cycling over the first 1024 keys.
    let get_reqs: Vec<Vec<u8>> = (0..1024).map(|j| encode_get(&key(j))).collect();
    let bpf_keys: Vec<Vec<u8>> = (0..1024).map(key).collect();
    let replies = Scattered::zeroed(1024, VALUE_SIZE + VALUE_LEN);
    for (label, entries) in [("1", 1u64), ("1k", 1_000), ("100k", 100_000)] {
        let cycle = entries.min(1024);
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let (get_reqs, replies) = (&get_reqs, &replies);
                timed(
                    kv.name,
                    N,
                    move || kv.ensure(entries, VALUE_LEN),
                    move |j| {
                        let i = j % cycle;
                        let mut replies = replies.borrow_mut();
                        kv.get_checked(&get_reqs[i as usize], replies.get_mut(j), i);
                    },
                )
            })
            .collect();
        let mut v = vec![0u8; VALUE_LEN];
        let (map, bpf_keys) = (&map, &bpf_keys);
        vs.push(timed(
            "bpf",
            N,
            move || map.ensure(entries),
            move |j| {
                let i = j % cycle;
                map.lookup(&bpf_keys[i as usize], &mut v)
                    .expect("bpf: lookup");
                assert_eq!(v[..8], i.to_le_bytes(), "bpf: lookup value");
            },
        ));
        b.row(&format!("get hit @{label}"), "ns", vs);
    }

    // PUT over present keys with the values they already have: the only key
    // of a table of 1, and the first 1024 keys of a table of 100k in turn.
    let overwrites = |keys: u64| -> Vec<Vec<u8>> {
        (0..keys)
            .map(|j| encode_op(&key(j), Some(&value(j, VALUE_LEN))))
            .collect()
    };
    let bpf_values: Vec<Vec<u8>> = (0..1024).map(|j| value(j, VALUE_LEN)).collect();
    for (label, entries) in [("1", 1u64), ("100k", 100_000)] {
        let cycle = entries.min(1024);
        let puts = Scattered::new(&overwrites(cycle));
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let puts = &puts;
                timed(
                    kv.name,
                    N,
                    move || kv.ensure(entries, VALUE_LEN),
                    move |j| {
                        kv.set(SET_PUT, puts.get(j)).expect("put");
                    },
                )
            })
            .collect();
        let (map, bpf_keys, bpf_values) = (&map, &bpf_keys, &bpf_values);
        vs.push(timed(
            "bpf",
            N,
            move || map.ensure(entries),
            move |j| {
                let i = (j % cycle) as usize;
                map.update(&bpf_keys[i], &bpf_values[i], BPF_ANY)
                    .expect("bpf: update");
            },
        ));
        b.row(&format!("put overwrite @{label}"), "ns", vs);
    }

    ttl_rows(&mut b, &nfs);
    watch_rows(&mut b, &nfs);

    // Insert of an absent key and its delete, in a table of 1k entries.
    {
        let new_keys: Vec<Vec<u8>> = (0..1024u64)
            .map(|j| format!("new{j:013}").into_bytes())
            .collect();
        let v = value(7, VALUE_LEN);
        let inserts: Vec<Vec<u8>> = new_keys.iter().map(|k| encode_op(k, Some(&v))).collect();
        let deletes: Vec<Vec<u8>> = new_keys.iter().map(|k| encode_op(k, None)).collect();
        let (inserts, deletes) = (Scattered::new(&inserts), Scattered::new(&deletes));
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let (inserts, deletes) = (&inserts, &deletes);
                timed(
                    kv.name,
                    N / 2,
                    move || kv.ensure(1_000, VALUE_LEN),
                    move |j| {
                        kv.set(SET_PUT, inserts.get(j)).expect("insert");
                        kv.set(SET_DEL, deletes.get(j)).expect("delete");
                    },
                )
            })
            .collect();
        let (map, new_keys, v) = (&map, &new_keys, &v);
        vs.push(timed(
            "bpf",
            N / 2,
            move || map.ensure(1_000),
            move |j| {
                let k = &new_keys[(j % 1024) as usize];
                map.update(k, v, BPF_ANY).expect("bpf: insert");
                map.delete(k).expect("bpf: delete");
            },
        ));
        b.row("put insert + delete @1k", "ns", vs);
        for kv in nfs {
            assert_eq!(
                kv.entries(),
                1_000,
                "{}: entries after insert + delete",
                kv.name
            );
        }
    }

    // 64 PUTs over the 64 keys of a 64-entry table: one call each, then one
    // batch (nfkv SET_BATCH, BPF_MAP_UPDATE_BATCH).
    {
        let (ks, vals): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            (0..64).map(|i| (key(i), value(i, VALUE_LEN))).unzip();
        let singles: Vec<Vec<u8>> = ks
            .iter()
            .zip(&vals)
            .map(|(k, v)| encode_op(k, Some(v)))
            .collect();
        let singles = Scattered::new(&singles);
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let singles = &singles;
                timed(
                    kv.name,
                    N / 64,
                    move || kv.ensure(64, VALUE_LEN),
                    move |j| {
                        for i in 0..64 {
                            kv.set(SET_PUT, singles.get(j * 64 + i)).expect("put");
                        }
                    },
                )
            })
            .collect();
        let (map, ks2, vals2) = (&map, &ks, &vals);
        vs.push(timed(
            "bpf",
            N / 64,
            move || map.ensure(64),
            move |_| {
                for (k, v) in ks2.iter().zip(vals2) {
                    map.update(k, v, BPF_ANY).expect("bpf: update");
                }
            },
        ));
        b.row("64 single puts", "ns", vs);

        let (flat_k, flat_v): (Vec<u8>, Vec<u8>) = (ks.concat(), vals.concat());
        let batches = Scattered::new(&[nf::encode_batch(
            ks.iter().zip(&vals).map(|(k, v)| (&k[..], &v[..])),
        )]);
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let batches = &batches;
                timed(
                    kv.name,
                    N / 64,
                    move || kv.ensure(64, VALUE_LEN),
                    move |j| {
                        kv.set(SET_BATCH, batches.get(j)).expect("batch");
                    },
                )
            })
            .collect();
        let (flat_k, flat_v) = (&flat_k, &flat_v);
        vs.push(timed(
            "bpf",
            N / 64,
            move || map.ensure(64),
            move |_| {
                map.update_batch(flat_k, flat_v, BPF_ANY)
                    .expect("bpf: update batch");
            },
        ));
        b.row("batch of 64 puts", "ns", vs);
        for kv in nfs {
            assert_eq!(kv.entries(), 64, "{}: entries after the batches", kv.name);
        }
    }

    // A full listing of 100k entries: nfkv GET_LIST pages of up to 1 MiB,
    // BPF_MAP_LOOKUP_BATCH of 1 MiB of keys and values per call. Checked
    // once in full (every key, once), then by count and value length.
    {
        const ENTRIES: u64 = 100_000;
        let mut want: Vec<Vec<u8>> = (0..ENTRIES).map(key).collect();
        want.sort();
        let mut page = vec![0u8; nf::LIST_PAGE];
        for kv in nfs {
            kv.ensure(ENTRIES, VALUE_LEN);
            let mut got = Vec::new();
            let n = kv.list_all(&mut page, |k, vlen| {
                assert_eq!(vlen, VALUE_LEN);
                got.push(k.to_vec());
            });
            assert_eq!(n, ENTRIES, "{}: listed entries", kv.name);
            assert!(
                got == want,
                "{}: the listing is not the table, in key order",
                kv.name
            );
        }
        let chunk = nf::LIST_PAGE / (KEY_LEN + VALUE_LEN);
        let mut bk = vec![0u8; chunk * KEY_LEN];
        let mut bv = vec![0u8; chunk * VALUE_LEN];
        map.ensure(ENTRIES);
        let mut got = Vec::new();
        let n = map.dump(&mut bk, &mut bv, |k, _| {
            got.extend(k.chunks(KEY_LEN).map(<[u8]>::to_vec))
        });
        got.sort();
        assert_eq!(n, ENTRIES, "bpf: dumped entries");
        assert!(got == want, "bpf: the dump is not the map");

        let pages = std::cell::RefCell::new(page);
        let pages = &pages;
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                timed(
                    kv.name,
                    3,
                    move || kv.ensure(ENTRIES, VALUE_LEN),
                    move |_| {
                        let mut page = pages.borrow_mut();
                        let n = kv.list_all(&mut page, |_, vlen| assert_eq!(vlen, VALUE_LEN));
                        assert_eq!(n, ENTRIES, "{}: listed entries", kv.name);
                    },
                )
            })
            .collect();
        let map = &map;
        vs.push(timed(
            "bpf",
            3,
            move || map.ensure(ENTRIES),
            move |_| {
                let n = map.dump(&mut bk, &mut bv, |_, _| {});
                assert_eq!(n, ENTRIES, "bpf: dumped entries");
            },
        ));
        b.row("list 100k entries", "ns", vs);
    }

    // GET and PUT of larger values, over the 64 entries of a 64-entry table,
    // from user buffers at scattered pages (see `Scattered`), the same
    // buffers for Rust and C.
    for (label, len, iters) in [("1 KiB", 1024usize, N / 2), ("16 KiB", 16_384, N / 8)] {
        let gets: Vec<Vec<u8>> = (0..64).map(|i| encode_get(&key(i))).collect();
        let replies = Scattered::zeroed(64, VALUE_SIZE + len);
        let puts = Scattered::new(
            &(0..64)
                .map(|i| encode_op(&key(i), Some(&value(i, len))))
                .collect::<Vec<_>>(),
        );
        let vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let (gets, replies) = (&gets, &replies);
                timed(
                    kv.name,
                    iters,
                    move || kv.ensure(64, len),
                    move |j| {
                        let i = j % 64;
                        let mut replies = replies.borrow_mut();
                        kv.get_checked(&gets[i as usize], replies.get_mut(j), i);
                    },
                )
            })
            .collect();
        b.row(&format!("get {label} @64"), "ns", vs);
        let vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let puts = &puts;
                timed(
                    kv.name,
                    iters,
                    move || kv.ensure(64, len),
                    move |j| {
                        kv.set(SET_PUT, puts.get(j)).expect("put");
                    },
                )
            })
            .collect();
        b.row(&format!("put {label} @64"), "ns", vs);
    }

    // GETs from one thread, then from two at once (each its own socket), in
    // a table of 1k entries: aggregate ns per GET, wall clock.
    {
        let reqs: Vec<Vec<u8>> = (0..1000).map(|j| encode_get(&key(j))).collect();
        for threads in [1usize, 2] {
            let vs: Vec<Variant> = nfs
                .iter()
                .map(|&kv| {
                    let reqs = &reqs;
                    variant(
                        kv.name,
                        move || kv.ensure(1_000, VALUE_LEN),
                        move || threaded_gets(kv.name, kv.base, threads, N, reqs),
                    )
                })
                .collect();
            let name = if threads == 1 {
                "get @1k, 1 thread"
            } else {
                "get @1k, 2 threads"
            };
            b.row(name, "ns", vs);
        }
    }

    // Kernel memory per entry: slab + vmalloc + percpu growth from an empty
    // table to N entries, over N. BPF (64-byte values only): from before
    // creating a map of exactly N entries to after filling it.
    for (len, entries) in [(VALUE_LEN, 100_000u64), (4096, 10_000)] {
        for kv in nfs {
            kv.flush();
        }
        let mut vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                let before = std::cell::Cell::new(0);
                let before = std::rc::Rc::new(before);
                let b2 = before.clone();
                variant(
                    kv.name,
                    move || {
                        kv.flush();
                        b2.set(settle());
                    },
                    move || {
                        kv.fill(entries, len);
                        let grown = settle().saturating_sub(before.get());
                        kv.flush();
                        grown as f64 / entries as f64
                    },
                )
            })
            .collect();
        if len == VALUE_LEN {
            vs.push(variant(
                "bpf",
                || {},
                move || {
                    let before = settle();
                    let m = BpfHash::create(entries as u32, KEY_LEN, len).expect("bpf: map create");
                    m.ensure(entries);
                    let grown = settle().saturating_sub(before);
                    drop(m);
                    // The map is freed later, from a workqueue: wait until it
                    // is, so that the next variant starts from the same
                    // baseline (and fail rather than skew it).
                    let released = (0..100).any(|_| {
                        std::thread::sleep(Duration::from_millis(100));
                        kernel_bytes() < before + grown / 4
                    });
                    assert!(
                        released,
                        "bpf: the map's memory was not released within 10 s"
                    );
                    grown as f64 / entries as f64
                },
            ));
        }
        let name = if len == VALUE_LEN {
            "memory 64 B x 100k".to_string()
        } else {
            "memory 4 KiB x 10k".to_string()
        };
        // Memory barely varies between rounds: two of them, one per order.
        b.row_rounds(&name, "B/entry", 2, vs);
    }

    packet_rows(&mut b);
    report(&b);
    b.modules.unload();
}

/// The TTL rows take this many times the rounds of the others.
const TTL_ROUNDS: usize = 4;

/// The TTL rows' variants: an entry without a deadline, and with one.
const PLAIN: &str = "plain";
const TTL: &str = "ttl";

/// The TTL rows (issue 24), one row per module so that the two variants
/// of a module run back to back in every round (paired, both orders):
/// - `ttl: put overwrite @1, M`: PUT over the only key of a table of one,
///   as `put overwrite @1`, without a TTL (`plain`) and with
///   `NFKV_F_TTL` of [`nf::TTL_MS`] (`ttl`): an hour, so nothing expires
///   and the reaper, armed for then, never runs. Every sample ends with a
///   GET checking that the entry has (or has not) a deadline.
/// - `ttl: get hit @1k+1k, M`: GET over 1k entries without a deadline
///   (`plain`) or 1k with one (`ttl`), all in one table of 2k; every reply's
///   ttl_ms is checked (0, or 1..=TTL_MS).
///
/// The target (a TTL within 5 % of a put) is as small as the noise of one
/// round (~5-10 % under TCG), and these rows are cheap: they take
/// [`TTL_ROUNDS`] times the rounds.
fn ttl_rows(b: &mut Bench, nfs: &[&Nf]) {
    let rounds = TTL_ROUNDS * b.rounds;
    let get0 = encode_get(&key(0));
    let plain = Scattered::new(&[encode_op(&key(0), Some(&value(0, VALUE_LEN)))]);
    let with_ttl = Scattered::new(&[encode_put_ttl(&key(0), &value(0, VALUE_LEN))]);
    for &kv in nfs {
        let vs: Vec<Variant> = [(PLAIN, &plain, false), (TTL, &with_ttl, true)]
            .into_iter()
            .map(|(name, puts, ttl)| {
                let get0 = &get0;
                variant(
                    name,
                    move || kv.ensure(1, VALUE_LEN),
                    move || {
                        let put = |j| kv.set(SET_PUT, puts.get(j)).expect("put");
                        (0..WARMUP).for_each(put);
                        let ns = per_op(N, put);
                        let mut reply = [0u8; VALUE_SIZE + VALUE_LEN];
                        kv.get_checked(get0, &mut reply, 0);
                        kv.check_ttl(&reply, ttl);
                        ns
                    },
                )
            })
            .collect();
        b.row_rounds(
            &format!("ttl: put overwrite @1, {}", kv.name),
            "ns",
            rounds,
            vs,
        );
    }

    const HALF: u64 = 1_000;
    let reqs: Vec<Vec<u8>> = (0..2 * HALF).map(|j| encode_get(&key(j))).collect();
    let replies = Scattered::zeroed(1024, VALUE_SIZE + VALUE_LEN);
    for &kv in nfs {
        let vs: Vec<Variant> = [(PLAIN, 0, false), (TTL, HALF, true)]
            .into_iter()
            .map(|(name, first, ttl)| {
                let (reqs, replies) = (&reqs, &replies);
                timed(
                    name,
                    N,
                    move || kv.ensure_timed(2 * HALF, VALUE_LEN, HALF),
                    move |j| {
                        let i = first + j % HALF;
                        let mut replies = replies.borrow_mut();
                        let reply = replies.get_mut(j);
                        kv.get_checked(&reqs[i as usize], reply, i);
                        kv.check_ttl(reply, ttl);
                    },
                )
            })
            .collect();
        b.row_rounds(
            &format!("ttl: get hit @1k+1k, {}", kv.name),
            "ns",
            rounds,
            vs,
        );
    }
}

/// Longest wait of the watch rows' GET_WATCH calls: an event that does not
/// come within it fails the run.
const WATCH_WAIT_MS: u32 = 1_000;
/// Timed writes (each woken watcher's reply) per latency sample.
const WATCH_LATENCY_ITERS: u64 = 100;
/// Untimed ones before them (QEMU translates the wait and wake paths anew
/// after each reload).
const WATCH_LATENCY_WARMUP: u64 = 8;
/// Changes per drain sample: fewer than the default log (1 MiB, ~26k
/// events of a 16-byte key) holds, so a slow watcher gets no gap.
const WATCH_DRAIN_EVENTS: u64 = 4_096;
/// The watchers' reply buffer: what a module fills per call at most (a
/// 64 KiB page unless one event needs more).
const WATCH_BUF: usize = 64 << 10;
/// The watch-put rows' variants: a table without a change log, and with one.
const UNLOGGED: &str = "plain";
const LOGGED: &str = "logged";

/// The scheduler state of thread `tid` of this process (`R`, `S`, `D`...).
fn thread_state(tid: i32) -> u8 {
    let stat = std::fs::read(format!("/proc/self/task/{tid}/stat")).expect("/proc thread stat");
    let close = stat.iter().rposition(|&c| c == b')').expect("stat: comm");
    stat[close + 2]
}

/// `gettid()`.
fn gettid() -> i32 {
    // SAFETY: plain syscall, no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Spins until `cond`, failing the run if `thread` ended (it panicked) or
/// after 10 s.
fn spin_until(what: &str, thread: &std::thread::ScopedJoinHandle<'_, ()>, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(!thread.is_finished(), "watch: the watcher ended {what}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "watch: no progress in 10 s {what}"
        );
        std::thread::yield_now();
    }
}

/// One latency sample of `kv`: a watcher thread (its own socket) blocks in
/// GET_WATCH for the event after the table's generation; once /proc shows
/// it asleep there (`S`: nothing else in its loop sleeps), this thread
/// PUTs key 0 (its own value: the table does not change) and the watcher
/// takes the time as its call returns. Per write: the time from before the
/// PUT to the watcher's return; every reply is checked to hold exactly that
/// put. Returns the median over [`WATCH_LATENCY_ITERS`] writes (a sample's
/// mean would be one wake-up's scheduling hiccup).
fn watch_latency(kv: &Nf, put: &Scattered) -> f64 {
    let epoch = Instant::now();
    let since0 = kv.generation();
    let total = WATCH_LATENCY_WARMUP + WATCH_LATENCY_ITERS;
    // The watcher's thread id; the iteration it is about to wait in; the
    // last one it finished, and when (ns after `epoch`).
    let tid = AtomicU64::new(0);
    let waiting = AtomicU64::new(u64::MAX);
    let (done, done_at) = (AtomicU64::new(u64::MAX), AtomicU64::new(0));
    let (name, base) = (kv.name, kv.base);
    let mut lat = Vec::with_capacity(WATCH_LATENCY_ITERS as usize);
    std::thread::scope(|s| {
        let (tid, waiting, done, done_at) = (&tid, &waiting, &done, &done_at);
        let watcher = s.spawn(move || {
            let w = Nf::open(name, base);
            let mut buf = vec![0u8; WATCH_BUF];
            tid.store(gettid() as u64, Ordering::Release);
            for i in 0..total {
                let since = since0 + i;
                let req = encode_watch(since, WATCH_WAIT_MS);
                waiting.store(i, Ordering::Release);
                let n = w.watch(&req, &mut buf);
                let at = epoch.elapsed().as_nanos() as u64;
                let n = n.unwrap_or_else(|e| panic!("{name}: watch: {e}"));
                let mut check = StreamCheck::new(since, 1);
                let h = check
                    .reply(&buf[..n], |_, k| k == key(0))
                    .unwrap_or_else(|e| panic!("{name}: watch since {since}: {e}"));
                assert!(
                    h.count == 1 && !h.more,
                    "{name}: watch since {since}: {} events, more {} (the put's event \
                     did not come within {WATCH_WAIT_MS} ms?)",
                    h.count,
                    h.more
                );
                done_at.store(at, Ordering::Relaxed);
                done.store(i, Ordering::Release);
            }
        });
        spin_until("before it began", &watcher, || {
            tid.load(Ordering::Acquire) != 0
        });
        let tid = tid.load(Ordering::Acquire) as i32;
        for i in 0..total {
            spin_until("before its wait", &watcher, || {
                waiting.load(Ordering::Acquire) == i && thread_state(tid) == b'S'
            });
            let t0 = epoch.elapsed().as_nanos() as u64;
            kv.set(SET_PUT, put.get(i)).expect("put");
            spin_until("before the event", &watcher, || {
                done.load(Ordering::Acquire) == i
            });
            if i >= WATCH_LATENCY_WARMUP {
                lat.push((done_at.load(Ordering::Relaxed) - t0) as f64);
            }
        }
        watcher.join().expect("watcher");
    });
    assert_eq!(
        kv.generation(),
        since0 + total,
        "{}: generation after the puts",
        kv.name
    );
    stat(lat).median
}

/// One drain sample of `kv`: a watcher thread (its own socket) drains the
/// change stream from the table's generation with GET_WATCH calls of
/// [`WATCH_WAIT_MS`] while this thread writes [`WATCH_DRAIN_EVENTS`]
/// changes: PUTs over the 64 keys, one per call (`group` 1) or in batches
/// of `group`. Every reply is checked ([`StreamCheck`]: each generation
/// once, in order, no gap, the writes' keys and grouping). Returns ns per
/// event from the first write to the watcher holding the last event.
fn watch_drain(kv: &Nf, writes: &Scattered, group: u64) -> f64 {
    let since0 = kv.generation();
    let end = since0 + WATCH_DRAIN_EVENTS;
    let keys: Vec<Vec<u8>> = (0..64).map(key).collect();
    let (name, base) = (kv.name, kv.base);
    let ready = Barrier::new(2);
    let (ready, keys) = (&ready, &keys);
    let (start, finish) = std::thread::scope(|s| {
        let watcher = s.spawn(move || {
            let w = Nf::open(name, base);
            let mut buf = vec![0u8; WATCH_BUF];
            let mut check = StreamCheck::new(since0, group);
            ready.wait();
            while check.since < end {
                let since = check.since;
                // The request is built per call, as a client does.
                let n = w
                    .watch(&encode_watch(since, WATCH_WAIT_MS), &mut buf)
                    .unwrap_or_else(|e| panic!("{name}: watch since {since}: {e}"));
                let h = check
                    .reply(&buf[..n], |g, k| {
                        k == keys[((g - since0 - 1) % 64) as usize]
                    })
                    .unwrap_or_else(|e| panic!("{name}: watch since {since}: {e}"));
                assert!(
                    h.count > 0 || h.more,
                    "{name}: watch since {since}: no event within {WATCH_WAIT_MS} ms"
                );
            }
            assert_eq!(check.since, end, "{name}: watched past the writes");
            assert_eq!(check.events, WATCH_DRAIN_EVENTS, "{name}: events seen");
            Instant::now()
        });
        ready.wait();
        let start = Instant::now();
        let cmd = if group == 1 { SET_PUT } else { SET_BATCH };
        for j in 0..WATCH_DRAIN_EVENTS / group {
            kv.set(cmd, writes.get(j)).expect("write");
        }
        (start, watcher.join().expect("watcher"))
    });
    assert_eq!(
        kv.generation(),
        end,
        "{}: generation after the writes",
        kv.name
    );
    finish.duration_since(start).as_nanos() as f64 / WATCH_DRAIN_EVENTS as f64
}

/// Makes `kv`'s table keep a change log (the namespace's first watch makes
/// it, holding every event from then on): one GET_WATCH that answers at
/// once.
fn start_log(kv: &Nf) {
    let mut buf = vec![0u8; WATCH_BUF];
    let since = kv.generation();
    let n = kv
        .watch(&encode_watch(since, 0), &mut buf)
        .unwrap_or_else(|e| panic!("{}: watch: {e}", kv.name));
    let h = StreamCheck::new(since, 1)
        .reply(&buf[..n], |_, _| false)
        .unwrap_or_else(|e| panic!("{}: first watch: {e}", kv.name));
    assert!(
        h.count == 0 && h.oldest <= since,
        "{}: first watch: {h:?}",
        kv.name
    );
}

/// A socket to the module at `base` in a network namespace of its own (the
/// socket keeps it alive), so that its table is not the one other rows use
/// and watch.
fn open_in_new_netns(name: &'static str, base: u32) -> Nf {
    std::thread::spawn(move || {
        harness::unshare(libc::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        Nf::open(name, base)
    })
    .join()
    .expect("netns thread")
}

/// One watch call's answer with every generation made relative to `base`
/// (the modules' tables start at different generations), as text to
/// compare: the errno, or the reply header and each event.
fn watch_answer(
    t: &Nf,
    base: u64,
    since: u64,
    timeout_ms: u32,
    prefix: &[u8],
    values: bool,
    buf_len: usize,
) -> String {
    use nfkv_abi::codec::{decode_watch_page, WatchReplyHeader, WatchRequest};
    let req = WatchRequest {
        since,
        timeout_ms,
        prefix,
        values,
    };
    let mut buf = vec![0u8; buf_len.max(req.wire_len())];
    req.encode(&mut buf);
    let rel = |g: u64| g as i64 - base as i64;
    let show = |h: &WatchReplyHeader| {
        format!(
            "generation {} count {} gap {} more {} size {} oldest {}",
            rel(h.generation),
            h.count,
            h.gap,
            h.more,
            h.size,
            rel(h.oldest)
        )
    };
    match t.get(nf::GET_WATCH, &mut buf[..buf_len]) {
        Ok(n) => {
            let mut events = Vec::new();
            let h = decode_watch_page(&buf[..n], since, |e| {
                events.push(format!(
                    "{} last {} {:?} {:?} {:?}",
                    rel(e.header.generation),
                    rel(e.header.last),
                    e.header.kind,
                    String::from_utf8_lossy(e.key),
                    e.value.map(String::from_utf8_lossy)
                ));
                Ok::<(), nfkv_abi::codec::Reject>(())
            })
            .unwrap_or_else(|e| panic!("{}: watch reply framing: {e:?}", t.name));
            assert_eq!(h.size as usize, n, "{}: watch reply size", t.name);
            format!("{}: {}", show(&h), events.join(", "))
        }
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
            let h = WatchReplyHeader::decode(&buf).expect("EMSGSIZE header");
            format!("EMSGSIZE {}", show(&h))
        }
        Err(e) => format!("error {e}"),
    }
}

/// Checks that the C reference answers NFKV_SO_GET_WATCH as nfkv.ko does:
/// the same writes (before and after the first watch; puts, deletes,
/// batches with and without a flush) in a fresh table of each, in a
/// namespace of its own, then the same watches (a gap, all, a prefix,
/// values, a buffer for one event, one too small, `since` too new, no
/// events with and without a wait), compared reply by reply with
/// generations relative to each table's start.
fn watch_agreement(nfs: &[&Nf]) {
    let (a, b) = (b"a".as_slice(), b"b".as_slice());
    let batch = |flush: bool, ops: &[(&[u8], Option<&[u8]>)]| {
        let mut bt = nfkv::Batch::new();
        if flush {
            bt.flush();
        }
        for &(k, v) in ops {
            match v {
                Some(v) => bt.put(k, v, nfkv::Condition::default()),
                None => bt.delete(k, None),
            };
        }
        bt.encode().expect("a valid batch")
    };
    let answers: Vec<(&str, Vec<String>)> = nfs
        .iter()
        .map(|kv| {
            let t = open_in_new_netns(kv.name, kv.base);
            let base = t.generation();
            let put = |k: &[u8], v: &[u8]| t.set(SET_PUT, &encode_op(k, Some(v))).expect("put");
            put(b"a0", b"before the log");
            let mut out = vec![watch_answer(&t, base, base, 0, b"", false, 4096)];
            put(b"a1", b"v1");
            put(b"b1", b"v1");
            t.set(SET_DEL, &encode_op(b"a1", None)).expect("del");
            t.set(
                SET_BATCH,
                &batch(true, &[(b"a2", Some(b"v2")), (b"b2", Some(b"v2"))]),
            )
            .expect("batch");
            t.set(
                SET_BATCH,
                &batch(
                    false,
                    &[(b"c1", Some(b"v3")), (b"b2", None), (b"a2", Some(b"v4"))],
                ),
            )
            .expect("batch");
            put(b"a3", &[b'x'; 300]);
            let g = t.generation();
            for (since, timeout, prefix, values, len) in [
                (base + 1, 0, b"".as_slice(), false, 4096),
                (base + 1, 0, a, false, 4096),
                (base + 1, 0, b, true, 4096),
                (base + 1, 0, b"", true, 4096),
                (base + 3, 0, b"", false, 64),
                (base + 3, 0, b"", false, 40),
                (g - 1, 0, b"", true, 300),
                (g + 1, 0, b"", false, 4096),
                (g, 0, b"", false, 4096),
                (g, 50, b"", false, 4096),
                (g - 2, 50, b"zz", false, 4096),
            ] {
                out.push(watch_answer(&t, base, since, timeout, prefix, values, len));
            }
            (kv.name, out)
        })
        .collect();
    let (first, rest) = answers.split_first().expect("modules");
    for (name, out) in rest {
        for (i, (x, y)) in first.1.iter().zip(out).enumerate() {
            assert!(
                x == y,
                "watch call {i}: {} answered\n  {x}\n{name} answered\n  {y}",
                first.0
            );
        }
    }
    println!(
        "watch: {} and {} answered {} watch calls alike",
        first.0,
        rest.iter().map(|r| r.0).collect::<Vec<_>>().join(", "),
        first.1.len()
    );
}

/// The watch rows (issue 24 round 2: NFKV_SO_GET_WATCH):
/// - `watch: write-to-event latency`: a watcher blocked in GET_WATCH, one
///   PUT; ns from before the PUT to the watcher's reply ([`watch_latency`]).
/// - `watch: drain singles` / `watch: drain batches of 64`: a writer and a
///   watcher on the two vCPUs; ns per event delivered, every event checked
///   ([`watch_drain`]).
/// - `watch: put overwrite @1, M`: PUT over the only key of a table of one
///   without a change log (`plain`) and with one (`logged`: the namespace
///   was watched once; no watcher waits), each in a namespace of its own,
///   back to back per round, 4× the rounds as the TTL rows: what the log
///   adds to every write once a namespace has been watched. Each logged
///   sample ends with a watch checking that the last put was logged.
///
/// First, untimed: [`watch_agreement`] (the C reference must answer as
/// nfkv.ko does).
fn watch_rows(b: &mut Bench, nfs: &[&Nf]) {
    watch_agreement(nfs);
    let puts = Scattered::new(&[encode_op(&key(0), Some(&value(0, VALUE_LEN)))]);
    let vs: Vec<Variant> = nfs
        .iter()
        .map(|&kv| {
            let puts = &puts;
            variant(
                kv.name,
                move || {
                    kv.ensure(1, VALUE_LEN);
                    start_log(kv);
                },
                move || watch_latency(kv, puts),
            )
        })
        .collect();
    b.row("watch: write-to-event latency", "ns", vs);

    let (ks, vals): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        (0..64).map(|i| (key(i), value(i, VALUE_LEN))).unzip();
    let singles = Scattered::new(
        &ks.iter()
            .zip(&vals)
            .map(|(k, v)| encode_op(k, Some(v)))
            .collect::<Vec<_>>(),
    );
    let batches = Scattered::new(&[nf::encode_batch(
        ks.iter().zip(&vals).map(|(k, v)| (&k[..], &v[..])),
    )]);
    for (label, writes, group) in [("singles", &singles, 1u64), ("batches of 64", &batches, 64)] {
        let vs: Vec<Variant> = nfs
            .iter()
            .map(|&kv| {
                variant(
                    kv.name,
                    move || {
                        kv.ensure(64, VALUE_LEN);
                        start_log(kv);
                    },
                    move || watch_drain(kv, writes, group),
                )
            })
            .collect();
        b.row(&format!("watch: drain {label}"), "ns", vs);
    }

    let get0 = encode_get(&key(0));
    for &kv in nfs {
        let (plain, logged) = (
            open_in_new_netns(kv.name, kv.base),
            open_in_new_netns(kv.name, kv.base),
        );
        let vs: Vec<Variant> = [(UNLOGGED, &plain), (LOGGED, &logged)]
            .into_iter()
            .map(|(name, t)| {
                let (puts, get0) = (&puts, &get0);
                variant(
                    name,
                    move || {
                        t.ensure(1, VALUE_LEN);
                        if name == LOGGED {
                            start_log(t);
                        }
                    },
                    move || {
                        let put = |j| t.set(SET_PUT, puts.get(j)).expect("put");
                        (0..WARMUP).for_each(put);
                        let ns = per_op(N, put);
                        let mut reply = [0u8; VALUE_SIZE + VALUE_LEN];
                        t.get_checked(get0, &mut reply, 0);
                        if name == LOGGED {
                            // The last put is the log's newest event.
                            let mut buf = vec![0u8; WATCH_BUF];
                            let since = t.generation() - 1;
                            let n = t
                                .watch(&encode_watch(since, 0), &mut buf)
                                .unwrap_or_else(|e| panic!("{}: watch: {e}", t.name));
                            let h = StreamCheck::new(since, 1)
                                .reply(&buf[..n], |_, k| k == key(0))
                                .unwrap_or_else(|e| panic!("{}: watch: {e}", t.name));
                            assert_eq!(h.count, 1, "{}: the last put's event", t.name);
                        }
                        ns
                    },
                )
            })
            .collect();
        b.row_rounds(
            &format!("watch: put overwrite @1, {}", kv.name),
            "ns",
            TTL_ROUNDS * b.rounds,
            vs,
        );
    }
}

/// Packets through a veth, dropped at the receiver's prerouting by an nfkv
/// classifier or by nft making the same decision (see `packets`), with 1,
/// 1k and 100k entries. Last: the modules stay loaded as they are.
fn packet_rows(b: &mut Bench) {
    let mut path = packets::Path::new();
    for (label, n) in PACKET_ROWS {
        path.fill(n);
        let vs = packets::Way::ALL.iter().map(|&w| path.variant(w)).collect();
        b.row_loaded(&format!("packet drop @{label}"), "ns/packet", vs);
    }
}

/// The ratio tables (markdown), and the issue's targets with verdicts.
fn report(b: &Bench) {
    let ratio = |row: &str, num: &str, den: &str| b.paired(row, num, den);
    let cell = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    println!();
    println!("Times are medians over the rounds; ratios are medians of the rounds' own ratios.");
    println!();
    println!("| row | rust | c | bpf | C/Rust time | BPF/Rust time | BPF/C time |");
    println!("|---|---|---|---|---|---|---|");
    for r in b.rows.iter().filter(|r| {
        r.unit == "ns"
            && r.name != "floor"
            && !r.name.starts_with("ttl: ")
            && !r.name.starts_with("watch: put ")
    }) {
        let v = |n| b.med(&r.name, n).map_or("-".to_string(), fmt_ns);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            v("rust"),
            v("c"),
            v("bpf"),
            cell(ratio(&r.name, "c", "rust")),
            cell(ratio(&r.name, "bpf", "rust")),
            cell(ratio(&r.name, "bpf", "c")),
        );
    }
    println!();
    println!("| memory | rust B/entry | c B/entry | bpf B/entry | rust overhead | c overhead | bpf overhead |");
    println!("|---|---|---|---|---|---|---|");
    for (row, len) in [
        ("memory 64 B x 100k", VALUE_LEN),
        ("memory 4 KiB x 10k", 4096),
    ] {
        let v = |n| b.med(row, n).map_or("-".to_string(), |x| format!("{x:.0}"));
        let o = |n| {
            b.med(row, n).map_or("-".to_string(), |x| {
                format!("{:.0}", x - (KEY_LEN + len) as f64)
            })
        };
        println!(
            "| {row} | {} | {} | {} | {} | {} | {} |",
            v("rust"),
            v("c"),
            v("bpf"),
            o("rust"),
            o("c"),
            o("bpf")
        );
    }

    println!();
    println!(
        "| packets (ns per packet) | nfkv | nft set | nft vmap | floor | nfkv miss | \
         nft set/nfkv | nft vmap/nfkv | over floor: nfkv | nft set | nft vmap | nfkv miss |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, _) in PACKET_ROWS {
        let row = format!("packet drop @{label}");
        let v = |n| b.med(&row, n).map_or("-".to_string(), fmt_ns);
        let over = |n| {
            b.paired_diff(&row, n, "floor")
                .map_or("-".to_string(), |d| format!("{d:.0} ns"))
        };
        println!(
            "| {row} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v("nfkv"),
            v("nft set"),
            v("nft vmap"),
            v("floor"),
            v("nfkv miss"),
            cell(ratio(&row, "nft set", "nfkv")),
            cell(ratio(&row, "nft vmap", "nfkv")),
            over("nfkv"),
            over("nft set"),
            over("nft vmap"),
            over("nfkv miss"),
        );
    }

    println!();
    println!("| ttl (ns per call) | plain | ttl | ttl/plain |");
    println!("|---|---|---|---|");
    for op in ["put overwrite @1", "get hit @1k+1k"] {
        for v in ["rust", "c"] {
            let row = format!("ttl: {op}, {v}");
            let m = |n| b.med(&row, n).map_or("-".to_string(), fmt_ns);
            println!(
                "| {op}, {v} | {} | {} | {} |",
                m(PLAIN),
                m(TTL),
                cell(ratio(&row, TTL, PLAIN))
            );
        }
    }

    println!();
    println!("| watch: put overwrite @1 (ns per call) | plain | logged | logged/plain |");
    println!("|---|---|---|---|");
    for v in ["rust", "c"] {
        let row = format!("watch: put overwrite @1, {v}");
        let m = |n| b.med(&row, n).map_or("-".to_string(), fmt_ns);
        println!(
            "| {v} | {} | {} | {} |",
            m(UNLOGGED),
            m(LOGGED),
            cell(ratio(&row, LOGGED, UNLOGGED))
        );
    }

    println!();
    println!("| target | value | goal | verdict |");
    println!("|---|---|---|---|");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "missed",
        None => "?",
    };
    let target = |what: String, value: Option<f64>, goal: &str, ok: Option<bool>| {
        println!("| {what} | {} | {goal} | {} |", cell(value), verdict(ok));
    };
    for row in [
        "get hit @1",
        "get hit @1k",
        "get hit @100k",
        "put overwrite @1",
        "put overwrite @100k",
        "put insert + delete @1k",
        "64 single puts",
        "batch of 64 puts",
        "list 100k entries",
        "get 1 KiB @64",
        "put 1 KiB @64",
        "get 16 KiB @64",
        "put 16 KiB @64",
        "get @1k, 2 threads",
    ] {
        let r = ratio(row, "c", "rust");
        target(
            format!("C/Rust time, {row}"),
            r,
            ">= 1.0",
            r.map(|r| r >= 1.0),
        );
    }
    for row in ["memory 64 B x 100k", "memory 4 KiB x 10k"] {
        // Whole bytes per entry: meminfo moves by a few bytes per entry
        // between samples whatever the tables do.
        let bytes = |v| b.med(row, v).map(f64::round);
        let r = bytes("c").zip(bytes("rust")).map(|(c, r)| c / r);
        target(
            format!("C/Rust bytes, {row}"),
            r,
            ">= 1.0",
            r.map(|r| r >= 1.0),
        );
    }
    for (label, _) in PACKET_ROWS {
        let row = format!("packet drop @{label}");
        for nft in ["nft set", "nft vmap"] {
            let r = ratio(&row, nft, "nfkv");
            target(
                format!("{nft}/nfkv time per packet, {row}"),
                r,
                ">= 1.0",
                r.map(|r| r >= 1.0),
            );
        }
    }
    for v in ["rust", "c"] {
        let r = ratio(&format!("ttl: put overwrite @1, {v}"), TTL, PLAIN);
        let (goal, ok) = if v == "rust" {
            ("<= 1.05", r.map(|r| r <= 1.05))
        } else {
            ("-", None)
        };
        target(
            format!("{v} put overwrite @1, with TTL / without"),
            r,
            goal,
            ok,
        );
    }
    for v in ["rust", "c"] {
        let one = b.med("get @1k, 1 thread", v);
        let two = b.med("get @1k, 2 threads", v);
        let s = one.zip(two).map(|(a, b)| a / b);
        target(format!("{v} GET throughput, 2 threads / 1"), s, "-", None);
    }
    // Quotients of two medians (row, variant).
    let q = |a: (&str, &str), d: (&str, &str)| Some(b.med(a.0, a.1)? / b.med(d.0, d.1)?);
    let r = q(("get hit @1", "rust"), ("floor", "nf get"));
    target(
        "Rust get / channel floor (nf get)".into(),
        r,
        "<= 1.2",
        r.map(|r| r <= 1.2),
    );
    let r = q(("put overwrite @1", "rust"), ("floor", "nf set"));
    target(
        "Rust put / channel floor (nf set)".into(),
        r,
        "<= 1.3",
        r.map(|r| r <= 1.3),
    );
    let r = q(
        ("put overwrite @100k", "rust"),
        ("put overwrite @1", "rust"),
    );
    target(
        "Rust put overwrite@100k / @1".into(),
        r,
        "<= 1.3",
        r.map(|r| r <= 1.3),
    );
    let r = q(("floor", "nf get"), ("floor", "syscall"));
    target("channel floor (nf get) / bare syscall".into(), r, "-", None);
    let r = q(("get hit @100k", "rust"), ("get hit @1", "rust"));
    target(
        "Rust get@100k / get@1".into(),
        r,
        "<= 1.5",
        r.map(|r| r <= 1.5),
    );
    for v in ["rust", "c", "bpf"] {
        let r = q(("64 single puts", v), ("batch of 64 puts", v));
        let (goal, ok) = if v == "rust" {
            (">= 10", r.map(|r| r >= 10.0))
        } else {
            ("-", None)
        };
        target(
            format!("{v} batch speed-up (64 singles / batch of 64)"),
            r,
            goal,
            ok,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{permutation, rotation};

    #[test]
    fn rotations_put_every_element_everywhere_alike() {
        for n in 1..=6 {
            let orders: Vec<Vec<usize>> = (0..2 * n).map(|k| rotation(n, k)).collect();
            for e in 0..n {
                for place in 0..n {
                    let times = orders.iter().filter(|o| o[place] == e).count();
                    assert_eq!(times, 2, "n {n}: {e} at {place}");
                }
                for f in (0..n).filter(|&f| f != e) {
                    let pos = |o: &Vec<usize>, x| o.iter().position(|&y| y == x).unwrap();
                    let before = orders.iter().filter(|o| pos(o, e) < pos(o, f)).count();
                    assert_eq!(before, n, "n {n}: {e} before {f}");
                }
            }
        }
    }

    #[test]
    fn permutations_cover_every_order_once() {
        for n in 1..=4 {
            let count: usize = (1..=n).product();
            let mut seen: Vec<Vec<usize>> = (0..count).map(|k| permutation(n, k)).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), count, "n = {n}");
            assert!(seen.iter().all(|p| {
                let mut s = p.clone();
                s.sort();
                s == (0..n).collect::<Vec<_>>()
            }));
            assert_eq!(permutation(n, count), permutation(n, 0));
        }
    }
}
