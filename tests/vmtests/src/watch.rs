//! Watch (`NFKV_SO_GET_WATCH`), on the wire through the shared codec: the
//! change stream of concurrent writers without a gap or a duplicate, the
//! events of a batch, a flush and an expiry, values attached only while
//! current, the prefix filter, the change log's gap answer, the wait (its
//! timeout, its wakeup, signals with and without SA_RESTART, rmmod during
//! it), namespaces and refused requests.
//!
//! Time: under TCG with the debug kernel a call may stall for long, so
//! waits are checked against generous bounds only (a wait is never shorter
//! than asked, and a wakeup comes well before the timeout).

use crate::core::enter_user_and_net_namespace;
use crate::harness::*;
use crate::ttl::ttl;
use crate::{ensure, tests};
use nfkv::{Batch, Condition, Nfkv};
use nfkv_abi::codec::{self, cmd, EventKind, WatchReplyHeader, WatchRequest};
use nfkv_abi::uapi;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    tests![
        eight_writers_no_gap_no_dup,
        batch_is_one_group,
        flush_is_an_event,
        expiry_is_an_event,
        values_attached_only_when_current,
        prefix_filters_and_generation_advances,
        gap_under_tiny_log,
        timeout_and_wakeup,
        signal_during_wait,
        rmmod_while_waiting,
        unprivileged_namespace_sees_only_its_own_table,
        bad_requests,
    ]
}

/// A reply buffer that holds any reply of these tests.
const BUF: usize = 256 << 10;

/// One event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ev {
    pub(crate) generation: u64,
    pub(crate) last: u64,
    pub(crate) kind: EventKind,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

impl Ev {
    fn show(&self) -> String {
        format!(
            "{}:{:?}({}{})/last+{}",
            self.generation,
            self.kind,
            String::from_utf8_lossy(&self.key),
            match &self.value {
                Some(v) => format!("={}", String::from_utf8_lossy(v)),
                None => String::new(),
            },
            self.last - self.generation
        )
    }
}

fn show(evs: &[Ev]) -> String {
    let shown: Vec<String> = evs.iter().take(12).map(Ev::show).collect();
    format!(
        "[{}{}]",
        shown.join(", "),
        if evs.len() > 12 { ", ..." } else { "" }
    )
}

/// A decoded reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) h: WatchReplyHeader,
    pub(crate) events: Vec<Ev>,
}

/// What one call ended with.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply(Reply),
    /// The errno, and the buffer as the call left it.
    Failed(i32, Vec<u8>),
}

/// The request bytes of a watch.
pub(crate) fn request(since: u64, timeout_ms: u32, prefix: &[u8], values: bool) -> Vec<u8> {
    let req = WatchRequest {
        since,
        timeout_ms,
        prefix,
        values,
    };
    let mut out = vec![0u8; req.wire_len()];
    req.encode(&mut out);
    out
}

/// `req` with its flags field set to `flags`.
fn with_flags(mut req: Vec<u8>, flags: u16) -> Vec<u8> {
    let at = std::mem::offset_of!(uapi::nfkv_watch, flags);
    req[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
    req
}

/// One `NFKV_SO_GET_WATCH` of request bytes `req` (with `since`, for the
/// decoder's order check) in a buffer of `len` bytes.
fn call_bytes(kv: &Nfkv, req: &[u8], since: u64, len: usize) -> Result<Outcome, String> {
    let mut buf = vec![0u8; len.max(req.len())];
    buf[..req.len()].copy_from_slice(req);
    buf.truncate(len);
    match kv.raw_get(cmd::GET_WATCH, &mut buf) {
        Ok(n) => {
            let mut events = Vec::new();
            let h = codec::decode_watch_page(&buf[..n], since, |e| -> Result<(), codec::Reject> {
                events.push(Ev {
                    generation: e.header.generation,
                    last: e.header.last,
                    kind: e.header.kind,
                    key: e.key.to_vec(),
                    value: e.value.map(<[u8]>::to_vec),
                });
                Ok(())
            })
            .map_err(|e| format!("watch since {since}: a reply of {n} bytes: {e:?}"))?;
            ensure!(
                h.size as usize == n,
                "watch since {since}: optlen {n} but the header's size is {}",
                h.size
            );
            Ok(Outcome::Reply(Reply { h, events }))
        }
        Err(e) => match e.raw_os_error() {
            Some(errno) => Ok(Outcome::Failed(errno, buf)),
            None => Err(format!("watch since {since}: {e}")),
        },
    }
}

/// One watch call in a buffer of `len` bytes.
pub(crate) fn call(
    kv: &Nfkv,
    since: u64,
    timeout_ms: u32,
    prefix: &[u8],
    values: bool,
    len: usize,
) -> Result<Outcome, String> {
    call_bytes(kv, &request(since, timeout_ms, prefix, values), since, len)
}

/// One watch call that must succeed.
pub(crate) fn watch(
    kv: &Nfkv,
    since: u64,
    timeout_ms: u32,
    prefix: &[u8],
    values: bool,
) -> Result<Reply, String> {
    match call(kv, since, timeout_ms, prefix, values, BUF)? {
        Outcome::Reply(r) => Ok(r),
        Outcome::Failed(errno, _) => Err(format!(
            "watch since {since} (timeout {timeout_ms} ms, prefix {prefix:?}): {}",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

/// A call that must fail with `want`.
fn refused(what: &str, o: Outcome, want: i32) -> TestResult {
    match o {
        Outcome::Failed(errno, _) if errno == want => Ok(()),
        Outcome::Failed(errno, _) => Err(format!(
            "{what}: {}, expected {}",
            std::io::Error::from_raw_os_error(errno),
            std::io::Error::from_raw_os_error(want)
        )),
        Outcome::Reply(r) => Err(format!(
            "{what}: answered {:?} with {}, expected {}",
            r.h,
            show(&r.events),
            std::io::Error::from_raw_os_error(want)
        )),
    }
}

/// Every event after `since` up to generation `until` (at least), call
/// after call; no gap allowed.
fn collect(
    kv: &Nfkv,
    since: u64,
    until: u64,
    prefix: &[u8],
    values: bool,
) -> Result<Vec<Ev>, String> {
    let mut out = Vec::new();
    let mut since = since;
    let start = Instant::now();
    while since < until {
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "watch reached generation {since}, not {until}, in 20 s"
        );
        let r = watch(kv, since, 1000, prefix, values)?;
        ensure!(!r.h.gap, "gap answer since {since}: {:?}", r.h);
        since = r.h.generation;
        out.extend(r.events);
    }
    Ok(out)
}

fn generation(kv: &Nfkv) -> Result<u64, String> {
    Ok(ck("info", kv.info())?.generation)
}

/// The table's generation, after a watch from it (which makes the
/// namespace's change log if none is made yet: the events before it are
/// not logged) has answered no events.
fn start(kv: &Nfkv) -> Result<u64, String> {
    let g = generation(kv)?;
    let r = watch(kv, g, 0, b"", false)?;
    ensure!(
        r.events.is_empty() && !r.h.gap && r.h.generation == g,
        "a watch at the table's generation {g}: {:?} {}",
        r.h,
        show(&r.events)
    );
    Ok(g)
}

/// Events must be of generations `from + 1`, `from + 2`, ... in order.
fn consecutive(what: &str, evs: &[Ev], from: u64) -> TestResult {
    for (i, e) in evs.iter().enumerate() {
        ensure!(
            e.generation == from + 1 + i as u64,
            "{what}: event {i} is of generation {} (expected {}): {}",
            e.generation,
            from + 1 + i as u64,
            show(&evs[i.saturating_sub(2)..(i + 3).min(evs.len())])
        );
    }
    Ok(())
}

/// (kind, key, value attached) of each event, for comparisons.
type Brief = (EventKind, Vec<u8>, Option<Vec<u8>>);

fn brief(evs: &[Ev]) -> Vec<Brief> {
    evs.iter()
        .map(|e| (e.kind, e.key.clone(), e.value.clone()))
        .collect()
}

fn b(kind: EventKind, key: &[u8], value: Option<&[u8]>) -> Brief {
    (kind, key.to_vec(), value.map(<[u8]>::to_vec))
}

/// One change a writer made.
#[derive(Debug, Clone)]
struct Change {
    kind: EventKind,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// One successful write: a single put or delete, or a batch.
#[derive(Debug, Clone)]
struct Write {
    changes: Vec<Change>,
    batch: bool,
}

const WRITERS: usize = 8;
const OPS: usize = 250;
const KEYS_PER_WRITER: u64 = 24;

/// Writer `t`: OPS puts, deletes and batches of 2 to 5 changes over its own
/// keys (`w{t}-{n}`), deleting only keys it holds; its writes, in order.
fn writer(t: usize, start: &Barrier) -> Result<Vec<Write>, String> {
    let kv = connect()?;
    let mut rng = Rng::new(0x5eed_0000 + t as u64);
    let mut live = std::collections::BTreeSet::new();
    let mut writes = Vec::new();
    let key = |n: u64| format!("w{t}-{n:02}").into_bytes();
    start.wait();
    for i in 0..OPS {
        let r = rng.below(10);
        let value = format!("{t}.{i}").into_bytes();
        if r < 5 || (r < 7 && live.is_empty()) {
            let k = key(rng.below(KEYS_PER_WRITER));
            ck("put", kv.put(&k, &value, Condition::default()))?;
            live.insert(k.clone());
            writes.push(Write {
                changes: vec![Change {
                    kind: EventKind::Put,
                    key: k,
                    value,
                }],
                batch: false,
            });
        } else if r < 7 {
            let k = live
                .iter()
                .nth(rng.below(live.len() as u64) as usize)
                .cloned()
                .ok_or("no live key")?;
            ck("delete", kv.delete(&k, None))?;
            live.remove(&k);
            writes.push(Write {
                changes: vec![Change {
                    kind: EventKind::Del,
                    key: k,
                    value: Vec::new(),
                }],
                batch: false,
            });
        } else {
            let mut batch = Batch::new();
            let mut changes = Vec::new();
            for j in 0..2 + rng.below(4) {
                let value = format!("{t}.{i}.{j}").into_bytes();
                if rng.below(3) == 0 && !live.is_empty() {
                    let k = live
                        .iter()
                        .nth(rng.below(live.len() as u64) as usize)
                        .cloned()
                        .ok_or("no live key")?;
                    batch.delete(&k, None);
                    live.remove(&k);
                    changes.push(Change {
                        kind: EventKind::Del,
                        key: k,
                        value: Vec::new(),
                    });
                } else {
                    let k = key(rng.below(KEYS_PER_WRITER));
                    batch.put(&k, &value, Condition::default());
                    live.insert(k.clone());
                    changes.push(Change {
                        kind: EventKind::Put,
                        key: k,
                        value,
                    });
                }
            }
            ck("batch", kv.apply(&batch))?;
            writes.push(Write {
                changes,
                batch: true,
            });
        }
    }
    Ok(writes)
}

/// Eight writers at once, a watcher (with values) from the generation
/// before them: the events are of consecutive generations, one per change,
/// and each writer's events are its writes in order (a batch's consecutive,
/// sharing `last`, the generation of its last change; a single change's
/// `last` its own generation); an attached value is the one that put wrote.
fn eight_writers_no_gap_no_dup() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    let target = Arc::new(AtomicU64::new(0));
    let watcher = {
        let target = target.clone();
        std::thread::spawn(move || -> Result<(Vec<Ev>, usize), String> {
            let kv = connect()?;
            let (mut since, mut evs, mut calls) = (g0, Vec::new(), 0);
            let start = Instant::now();
            loop {
                let t = target.load(Ordering::Acquire);
                if t != 0 && since >= t {
                    return Ok((evs, calls));
                }
                ensure!(
                    start.elapsed() < Duration::from_secs(90),
                    "the watcher is at generation {since} after 90 s (target {t})"
                );
                let r = watch(&kv, since, 500, b"", true)?;
                calls += 1;
                ensure!(!r.h.gap, "gap answer since {since}: {:?}", r.h);
                ensure!(
                    r.h.generation >= since,
                    "reply generation {} before since {since}",
                    r.h.generation
                );
                since = r.h.generation;
                evs.extend(r.events);
            }
        })
    };
    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let start = start.clone();
            std::thread::spawn(move || writer(t, &start))
        })
        .collect();
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (t, w) in writers.into_iter().enumerate() {
        match w.join() {
            Ok(Ok(w)) => written.push(w),
            Ok(Err(e)) => failed.push(format!("writer {t}: {e}")),
            Err(_) => failed.push(format!("writer {t} panicked")),
        }
    }
    let gf = generation(&kv)?;
    target.store(gf.max(g0 + 1), Ordering::Release);
    let (evs, calls) = watcher.join().map_err(|_| "watcher panicked")??;
    ensure!(failed.is_empty(), "{}", failed.join("; "));
    let changes: usize = written.iter().flatten().map(|w| w.changes.len()).sum();
    ensure!(
        gf - g0 == changes as u64,
        "{changes} changes moved the generation by {}",
        gf - g0
    );
    ensure!(
        evs.len() as u64 == gf - g0,
        "{} events for a generation delta of {}",
        evs.len(),
        gf - g0
    );
    consecutive("the stream", &evs, g0)?;
    // Each writer's events, in order, with their index in the stream.
    let mut by_writer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, e) in evs.iter().enumerate() {
        let t = std::str::from_utf8(&e.key)
            .ok()
            .and_then(|k| k.strip_prefix('w'))
            .and_then(|k| k.split('-').next())
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&t| t < WRITERS)
            .ok_or_else(|| format!("an event of no writer: {}", e.show()))?;
        by_writer.entry(t).or_default().push(i);
    }
    let mut with_value = 0;
    for (t, writes) in written.iter().enumerate() {
        let mine = by_writer.remove(&t).unwrap_or_default();
        let n: usize = writes.iter().map(|w| w.changes.len()).sum();
        ensure!(
            mine.len() == n,
            "writer {t} made {n} changes but {} events have its keys",
            mine.len()
        );
        let mut at = 0;
        for (wi, w) in writes.iter().enumerate() {
            let group = &mine[at..at + w.changes.len()];
            at += w.changes.len();
            let last = evs[*group.last().ok_or("empty write")?].generation;
            for (j, (&i, c)) in group.iter().zip(&w.changes).enumerate() {
                let e = &evs[i];
                let what = format!("writer {t} write {wi} change {j}");
                ensure!(
                    e.kind == c.kind && e.key == c.key,
                    "{what}: expected {:?} {}, event {}",
                    c.kind,
                    String::from_utf8_lossy(&c.key),
                    e.show()
                );
                ensure!(
                    e.last == last,
                    "{what}: event {} but the write's last change is {last}",
                    e.show()
                );
                if j > 0 {
                    ensure!(
                        i == group[j - 1] + 1,
                        "{what}: the batch's events are not consecutive: {} after {}",
                        e.show(),
                        evs[group[j - 1]].show()
                    );
                }
                if let Some(v) = &e.value {
                    ensure!(
                        c.kind == EventKind::Put && *v == c.value,
                        "{what}: event {} carries a value that change did not write ({:?})",
                        e.show(),
                        String::from_utf8_lossy(&c.value)
                    );
                    with_value += 1;
                }
            }
            ensure!(
                w.batch || w.changes.len() == 1,
                "writer {t} write {wi}: a single write of several changes"
            );
        }
    }
    ensure!(
        by_writer.is_empty(),
        "events of unknown writers: {:?}",
        by_writer.keys()
    );
    println!(
        "     watch: {WRITERS} writers, {changes} changes, {} events in {calls} calls, {with_value} with their value",
        evs.len()
    );
    Ok(())
}

/// A batch's events share `last` (its last change's generation) and are
/// consecutive, in the batch's order; a single put's `last` is its own.
fn batch_is_one_group() -> TestResult {
    let kv = fresh()?;
    ck("put", kv.put(b"old", b"o", Condition::default()))?;
    let g0 = start(&kv)?;
    let mut bt = Batch::new();
    bt.put(b"a", b"1", Condition::default())
        .put(b"b", b"2", Condition::default())
        .delete(b"a", None)
        .delete(b"old", None);
    ck("batch", kv.apply(&bt))?;
    ck("put", kv.put(b"c", b"3", Condition::default()))?;
    let g1 = generation(&kv)?;
    ensure!(
        g1 == g0 + 5,
        "4 changes and a put moved the generation by {}",
        g1 - g0
    );
    let evs = collect(&kv, g0, g1, b"", false)?;
    consecutive("batch", &evs, g0)?;
    ensure!(
        brief(&evs)
            == [
                b(EventKind::Put, b"a", None),
                b(EventKind::Put, b"b", None),
                b(EventKind::Del, b"a", None),
                b(EventKind::Del, b"old", None),
                b(EventKind::Put, b"c", None),
            ],
        "events {}",
        show(&evs)
    );
    let lasts: Vec<u64> = evs.iter().map(|e| e.last).collect();
    ensure!(
        lasts == [g0 + 4, g0 + 4, g0 + 4, g0 + 4, g0 + 5],
        "the events' last: {lasts:?} (g0 {g0}): {}",
        show(&evs)
    );
    ck("flush", kv.flush())
}

/// A FLUSH is one event without a key; a batch with the flush flag is a
/// FLUSH event first, then its records, all sharing `last`.
fn flush_is_an_event() -> TestResult {
    let kv = fresh()?;
    ck("put", kv.put(b"x", b"1", Condition::default()))?;
    let g0 = start(&kv)?;
    ck("flush", kv.flush())?;
    ck("put", kv.put(b"y", b"2", Condition::default()))?;
    let mut bt = Batch::new();
    bt.flush()
        .put(b"z", b"3", Condition::default())
        .put(b"w", b"4", Condition::default());
    ck("batch with flush", kv.apply(&bt))?;
    let g1 = generation(&kv)?;
    ensure!(
        g1 == g0 + 5,
        "the flushes and puts moved the generation by {}",
        g1 - g0
    );
    let evs = collect(&kv, g0, g1, b"", true)?;
    consecutive("flushes", &evs, g0)?;
    ensure!(
        brief(&evs)
            == [
                b(EventKind::Flush, b"", None),
                b(EventKind::Put, b"y", None),
                b(EventKind::Flush, b"", None),
                b(EventKind::Put, b"z", Some(b"3")),
                b(EventKind::Put, b"w", Some(b"4")),
            ],
        "events {}",
        show(&evs)
    );
    let lasts: Vec<u64> = evs.iter().map(|e| e.last).collect();
    ensure!(
        lasts == [g0 + 1, g0 + 2, g0 + 5, g0 + 5, g0 + 5],
        "the events' last: {lasts:?} (g0 {g0})"
    );
    ck("flush", kv.flush())
}

/// An entry put with a 100 ms lifetime: its EXPIRE event arrives within a
/// few seconds, with nothing but the watch reading the table.
fn expiry_is_an_event() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    let start = Instant::now();
    ck("put with ttl", kv.put(b"short", b"v", ttl(100)))?;
    let first = watch(&kv, g0, 0, b"", true)?;
    ensure!(
        brief(&first.events) == [b(EventKind::Put, b"short", None)]
            || brief(&first.events) == [b(EventKind::Put, b"short", Some(b"v"))],
        "the put: {}",
        show(&first.events)
    );
    ensure!(first.h.generation == g0 + 1, "reply {:?}", first.h);
    let mut since = first.h.generation;
    let mut evs = Vec::new();
    while evs.is_empty() {
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "no expiry event within 10 s"
        );
        let r = watch(&kv, since, 2000, b"", true)?;
        since = r.h.generation;
        evs.extend(r.events);
    }
    let took = start.elapsed();
    consecutive("expiry", &evs, g0 + 1)?;
    ensure!(
        brief(&evs) == [b(EventKind::Expire, b"short", None)] && evs[0].last == evs[0].generation,
        "after the deadline: {}",
        show(&evs)
    );
    ensure!(
        took >= Duration::from_millis(90),
        "the expiry came {took:?} after the put of a 100 ms lifetime"
    );
    ensure!(
        ck("info", kv.info())?.entries == 0,
        "the expired entry is still counted"
    );
    println!("     watch: the expiry event of a 100 ms entry came after {took:?}");
    Ok(())
}

/// With NFKV_WATCH_F_VALUES a put carries its value only while the entry
/// still holds it: of two puts of one key only the second, of a key since
/// deleted none. Without the flag no event carries one.
fn values_attached_only_when_current() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    ck("put", kv.put(b"k", b"v1", Condition::default()))?;
    ck("put", kv.put(b"k", b"v2", Condition::default()))?;
    ck("put", kv.put(b"d", b"gone", Condition::default()))?;
    ck("delete", kv.delete(b"d", None))?;
    ck("put", kv.put(b"e", b"", Condition::default()))?;
    let g1 = generation(&kv)?;
    let evs = collect(&kv, g0, g1, b"", true)?;
    consecutive("values", &evs, g0)?;
    ensure!(
        brief(&evs)
            == [
                b(EventKind::Put, b"k", None),
                b(EventKind::Put, b"k", Some(b"v2")),
                b(EventKind::Put, b"d", None),
                b(EventKind::Del, b"d", None),
                b(EventKind::Put, b"e", Some(b"")),
            ],
        "with values: {}",
        show(&evs)
    );
    let plain = collect(&kv, g0, g1, b"", false)?;
    ensure!(
        plain.iter().all(|e| e.value.is_none()) && plain.len() == evs.len(),
        "without NFKV_WATCH_F_VALUES: {}",
        show(&plain)
    );
    ck("flush", kv.flush())
}

/// Events of keys outside the prefix are skipped (a flush always matches)
/// and the reply's generation still moves past them: a call with only
/// others' events after `since` answers none, at the table's generation.
fn prefix_filters_and_generation_advances() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    for k in ["a1", "b1", "a2", "b2", "ab"] {
        ck("put", kv.put(k.as_bytes(), b"v", Condition::default()))?;
    }
    let g1 = generation(&kv)?;
    let r = watch(&kv, g0, 0, b"a", false)?;
    ensure!(
        brief(&r.events)
            == [
                b(EventKind::Put, b"a1", None),
                b(EventKind::Put, b"a2", None),
                b(EventKind::Put, b"ab", None),
            ],
        "prefix a: {}",
        show(&r.events)
    );
    ensure!(
        r.h.generation == g1 && !r.h.more && !r.h.gap,
        "prefix a: reply {:?}, table at {g1}",
        r.h
    );
    let gens: Vec<u64> = r.events.iter().map(|e| e.generation).collect();
    ensure!(
        gens == [g0 + 1, g0 + 3, g0 + 5],
        "generations {gens:?} (g0 {g0})"
    );
    // Only others' events since: none, and the generation moves on.
    ck("put", kv.put(b"b3", b"v", Condition::default()))?;
    ck("delete", kv.delete(b"b1", None))?;
    let g2 = generation(&kv)?;
    let r = watch(&kv, g1, 0, b"a", false)?;
    ensure!(
        r.events.is_empty() && r.h.generation == g2 && !r.h.gap,
        "after others' events only: {:?} {}, table at {g2}",
        r.h,
        show(&r.events)
    );
    // Waiting, others' writes do not end the wait with an event of theirs.
    let r = watch(&kv, g2, 0, b"ab", false)?;
    ensure!(
        r.events.is_empty() && r.h.generation == g2,
        "at the head: {:?}",
        r.h
    );
    // A flush matches any prefix.
    ck("flush", kv.flush())?;
    let r = watch(&kv, g2, 0, b"zz", false)?;
    ensure!(
        brief(&r.events) == [b(EventKind::Flush, b"", None)] && r.h.generation == g2 + 1,
        "a flush under prefix zz: {:?} {}",
        r.h,
        show(&r.events)
    );
    Ok(())
}

/// With watch_log_kib=4: the first watch makes the log; 400 events later
/// the log no longer holds the first ones: a watch from before them gets a
/// gap answer (no events, `oldest` past `since`), and from `oldest` on the
/// events are consecutive up to the table's generation.
fn gap_under_tiny_log() -> TestResult {
    reload("watch_log_kib=4")?;
    let r = (|| {
        let kv = fresh()?;
        // The first watch: it makes the log.
        let g0 = start(&kv)?;
        for chunk in 0..4 {
            let mut bt = Batch::new();
            for i in 0..100 {
                bt.put(
                    format!("gap-{chunk}-{i:03}").as_bytes(),
                    b"v",
                    Condition::default(),
                );
            }
            ck("batch", kv.apply(&bt))?;
        }
        let g1 = generation(&kv)?;
        ensure!(
            g1 == g0 + 400,
            "400 puts moved the generation by {}",
            g1 - g0
        );
        let r = watch(&kv, g0, 0, b"", false)?;
        ensure!(
            r.h.gap && r.h.count == 0 && r.events.is_empty() && r.h.oldest > g0 && r.h.oldest < g1,
            "watch since {g0} after 400 events in a 4 KiB log: {:?}",
            r.h
        );
        let oldest = r.h.oldest;
        let evs = collect(&kv, oldest, g1, b"", false)?;
        consecutive("from the oldest", &evs, oldest)?;
        ensure!(
            evs.last().map(|e| e.generation) == Some(g1),
            "from the oldest: {}",
            show(&evs)
        );
        println!(
            "     watch: a 4 KiB log holds the last {} of 400 events",
            g1 - oldest
        );
        Ok(())
    })();
    reload("")?;
    r
}

/// A wait of 200 ms with nothing written answers no events, at the same
/// generation, no sooner than asked; a wait of 10 s answers soon after
/// another thread's write.
fn timeout_and_wakeup() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    let t0 = Instant::now();
    let r = watch(&kv, g0, 200, b"", false)?;
    let waited = t0.elapsed();
    ensure!(
        r.events.is_empty() && r.h.generation == g0 && !r.h.gap && !r.h.more,
        "an idle wait: {:?}",
        r.h
    );
    ensure!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(5),
        "a wait of 200 ms took {waited:?}"
    );
    let writer = std::thread::spawn(move || -> Result<Instant, String> {
        std::thread::sleep(Duration::from_millis(300));
        let kv = connect()?;
        ck("put", kv.put(b"wake", b"up", Condition::default()))?;
        Ok(Instant::now())
    });
    let t0 = Instant::now();
    let r = watch(&kv, g0, 10_000, b"", true);
    let woke = Instant::now();
    let put_at = writer.join().map_err(|_| "writer panicked")??;
    let r = r?;
    ensure!(
        brief(&r.events) == [b(EventKind::Put, b"wake", Some(b"up"))] && r.h.generation == g0 + 1,
        "woken: {:?} {}",
        r.h,
        show(&r.events)
    );
    let after = woke.saturating_duration_since(put_at);
    ensure!(
        woke - t0 < Duration::from_secs(8),
        "a wait of 10 s ended {:?} after its start, {after:?} after the write",
        woke - t0
    );
    println!("     watch: a 200 ms wait took {waited:?}; a wakeup came {after:?} after the write");
    ck("flush", kv.flush())
}

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs [`on_signal`] for SIGUSR1, with SA_RESTART or without; the
/// action it replaced.
fn handle_sigusr1(restart: bool) -> Result<libc::sigaction, String> {
    // SAFETY: plain sigaction on zeroed (valid) structures; the handler only
    // touches an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        ensure!(
            libc::sigaction(libc::SIGUSR1, &sa, &mut old) == 0,
            "sigaction: {}",
            std::io::Error::last_os_error()
        );
        Ok(old)
    }
}

fn restore_sigusr1(old: &libc::sigaction) {
    // SAFETY: restoring an action sigaction returned.
    unsafe { libc::sigaction(libc::SIGUSR1, old, std::ptr::null_mut()) };
}

/// Whether thread `tid` of this process sleeps (state S in its stat).
fn sleeping(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('S')))
        .unwrap_or(false)
}

fn gettid() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn signal_thread(tid: i32) -> TestResult {
    // SAFETY: plain syscall to a thread of this process.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
    ensure!(r == 0, "tgkill: {}", std::io::Error::last_os_error());
    Ok(())
}

/// A thread waiting in a watch (10 s), its thread id and whether it is done.
struct Waiter {
    tid: Arc<AtomicI32>,
    done: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Result<(Outcome, Duration), String>>,
}

fn spawn_waiter(since: u64, timeout_ms: u32) -> Waiter {
    let (tid, done) = (
        Arc::new(AtomicI32::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let handle = {
        let (tid, done) = (tid.clone(), done.clone());
        std::thread::spawn(move || {
            let kv = connect();
            tid.store(gettid(), Ordering::Release);
            let r = kv.and_then(|kv| {
                let t0 = Instant::now();
                call(&kv, since, timeout_ms, b"", true, BUF).map(|o| (o, t0.elapsed()))
            });
            done.store(true, Ordering::Release);
            r
        })
    };
    Waiter { tid, done, handle }
}

impl Waiter {
    /// Waits until the thread sleeps in its call (up to 5 s).
    fn asleep(&self) -> Result<i32, String> {
        let start = Instant::now();
        loop {
            let tid = self.tid.load(Ordering::Acquire);
            if tid != 0 && sleeping(tid) && !self.done.load(Ordering::Acquire) {
                return Ok(tid);
            }
            ensure!(
                !self.done.load(Ordering::Acquire),
                "the watch returned before it was signalled"
            );
            ensure!(
                start.elapsed() < Duration::from_secs(5),
                "the watching thread never slept"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join(self) -> Result<(Outcome, Duration), String> {
        self.handle
            .join()
            .map_err(|_| "the watching thread panicked")?
    }
}

/// A signal whose handler lacks SA_RESTART ends a wait of 10 s with EINTR
/// at once; with SA_RESTART the call goes on waiting (signalled thrice)
/// and answers the event written after the signals: nothing lost.
fn signal_during_wait() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    let old = handle_sigusr1(false)?;
    let r = (|| -> TestResult {
        // Without SA_RESTART. The signal is sent again while the thread
        // still sleeps, in case the first came before the wait began.
        SIGNALS.store(0, Ordering::SeqCst);
        let w = spawn_waiter(g0, 10_000);
        let start = Instant::now();
        while !w.done.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(8) {
            if let Ok(tid) = w.asleep() {
                signal_thread(tid)?;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (o, took) = w.join()?;
        refused("a watch signalled without SA_RESTART", o, libc::EINTR)?;
        ensure!(
            took < Duration::from_secs(8),
            "EINTR after {took:?} of a 10 s wait"
        );
        let intr = took;

        // With SA_RESTART.
        handle_sigusr1(true)?;
        SIGNALS.store(0, Ordering::SeqCst);
        let w = spawn_waiter(g0, 10_000);
        for n in 0..4 {
            // The handler ran, and the call is waiting again.
            let tid = match w.asleep() {
                Ok(tid) => tid,
                Err(e) => {
                    let o = w.join();
                    return Err(format!("with SA_RESTART, after {n} signals: {e}: {o:?}"));
                }
            };
            if n == 3 {
                break;
            }
            signal_thread(tid)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        let handled = SIGNALS.load(Ordering::SeqCst);
        ensure!(
            handled == 3,
            "the handler ran {handled} times for 3 signals"
        );
        ck("put", kv.put(b"after-signals", b"v", Condition::default()))?;
        let (o, took) = w.join()?;
        match o {
            Outcome::Reply(r) => ensure!(
                brief(&r.events) == [b(EventKind::Put, b"after-signals", Some(b"v"))]
                    && r.h.generation == g0 + 1,
                "the restarted watch: {:?} {}",
                r.h,
                show(&r.events)
            ),
            Outcome::Failed(errno, _) => {
                return Err(format!(
                    "the watch with SA_RESTART: {}",
                    std::io::Error::from_raw_os_error(errno)
                ))
            }
        }
        ensure!(
            took < Duration::from_secs(9),
            "the restarted watch answered after {took:?}"
        );
        println!("     watch: EINTR {intr:?} into a wait; with SA_RESTART the write's event after {took:?}");
        Ok(())
    })();
    restore_sigusr1(&old);
    r?;
    ck("flush", kv.flush())
}

/// `delete_module("nfkv", O_NONBLOCK)`: its errno if it failed.
fn try_rmmod() -> Option<i32> {
    let name = c"nfkv";
    // SAFETY: delete_module reads a NUL-terminated name; the pointer is valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    (r != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// While a watch waits (3 s) the module is held: rmmod fails with
/// EWOULDBLOCK (or EBUSY); once the watch has answered (no events, after
/// its timeout) rmmod succeeds. The module is loaded again.
fn rmmod_while_waiting() -> TestResult {
    let kv = fresh()?;
    let g0 = start(&kv)?;
    drop(kv);
    let r = (|| -> TestResult {
        let w = spawn_waiter(g0, 3000);
        w.asleep()?;
        let during = try_rmmod();
        let still = w.done.load(Ordering::Acquire);
        let (o, took) = w.join()?;
        ensure!(
            matches!(during, Some(libc::EWOULDBLOCK) | Some(libc::EBUSY)),
            "rmmod during a watch's wait: {}",
            match during {
                None => "succeeded".to_string(),
                Some(e) => std::io::Error::from_raw_os_error(e).to_string(),
            }
        );
        ensure!(!still, "the watch answered before rmmod was tried (rerun)");
        match o {
            Outcome::Reply(r) => ensure!(
                r.events.is_empty() && r.h.generation == g0 && !r.h.gap,
                "the waiting watch answered {:?} {}",
                r.h,
                show(&r.events)
            ),
            Outcome::Failed(errno, _) => {
                return Err(format!(
                    "the waiting watch: {}",
                    std::io::Error::from_raw_os_error(errno)
                ))
            }
        }
        ensure!(
            took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
            "a wait of 3 s took {took:?}"
        );
        match try_rmmod() {
            None => Ok(()),
            Some(e) => Err(format!(
                "rmmod after the watch answered: {}",
                std::io::Error::from_raw_os_error(e)
            )),
        }
    })();
    if !loaded() {
        insmod("")?;
    }
    r
}

/// A watcher in a namespace owned by an unprivileged user namespace sees
/// its own table's writes only; the initial namespace's watcher sees none
/// of them.
fn unprivileged_namespace_sees_only_its_own_table() -> TestResult {
    let kv = fresh()?;
    let gh = start(&kv)?;
    let held = hold_in_child(
        || {
            enter_user_and_net_namespace()?;
            let kv = connect()?;
            ensure!(
                ck("info", kv.info())?.charged_to_budget(),
                "not an unprivileged namespace"
            );
            // The first watch (it makes the log), then a write of its own.
            let gc = start(&kv)?;
            ck("put", kv.put(b"child-key", b"c", Condition::default()))?;
            Ok((kv, gc))
        },
        |(kv, gc)| {
            // The host wrote meanwhile: not seen here.
            let r = watch(&kv, gc, 0, b"", true)?;
            ensure!(
                brief(&r.events) == [b(EventKind::Put, b"child-key", Some(b"c"))]
                    && r.h.generation == gc + 1,
                "the namespace's watch: {:?} {}",
                r.h,
                show(&r.events)
            );
            // Nor does a wait end for the host's writes.
            let r = watch(&kv, gc + 1, 500, b"", true)?;
            ensure!(
                r.events.is_empty() && r.h.generation == gc + 1,
                "the namespace's wait: {:?} {}",
                r.h,
                show(&r.events)
            );
            Ok(())
        },
    )?;
    ck("put", kv.put(b"host-key", b"h", Condition::default()))?;
    let waker = std::thread::spawn(|| -> TestResult {
        std::thread::sleep(Duration::from_millis(100));
        let kv = connect()?;
        ck("put", kv.put(b"host-key2", b"h", Condition::default()))
    });
    let child = held.finish();
    waker.join().map_err(|_| "writer panicked")??;
    child?;
    let evs = collect(&kv, gh, gh + 2, b"", true)?;
    ensure!(
        brief(&evs)
            == [
                b(EventKind::Put, b"host-key", Some(b"h")),
                b(EventKind::Put, b"host-key2", Some(b"h")),
            ]
            && generation(&kv)? == gh + 2,
        "the host's watch: {}",
        show(&evs)
    );
    ck("flush", kv.flush())
}

/// EINVAL for `since` past the generation, a timeout over 60000 ms, an
/// unknown flag, a buffer under the reply header or the request; EMSGSIZE
/// with the size needed in the header for an event that does not fit
/// (which then fits a buffer of that size); EPERM without CAP_NET_ADMIN.
/// The longest timeout is accepted.
fn bad_requests() -> TestResult {
    let kv = fresh()?;
    start(&kv)?;
    let big = vec![b'B'; 3000];
    ck("put", kv.put(b"big", &big, Condition::default()))?;
    let g = generation(&kv)?;
    refused(
        "since past the generation",
        call(&kv, g + 1, 0, b"", false, BUF)?,
        libc::EINVAL,
    )?;
    refused(
        "since u64::MAX",
        call(&kv, u64::MAX, 0, b"", false, BUF)?,
        libc::EINVAL,
    )?;
    refused(
        "timeout 60001",
        call(&kv, g - 1, 60_001, b"", false, BUF)?,
        libc::EINVAL,
    )?;
    refused(
        "timeout u32::MAX",
        call(&kv, g - 1, u32::MAX, b"", false, BUF)?,
        libc::EINVAL,
    )?;
    for flag in [0x2u16, 0x4, 0x100, 0x8000] {
        refused(
            &format!("flag {flag:#x}"),
            call_bytes(
                &kv,
                &with_flags(request(g - 1, 0, b"", false), flag),
                g - 1,
                BUF,
            )?,
            libc::EINVAL,
        )?;
    }
    refused(
        "a buffer of 31 bytes",
        call(&kv, g - 1, 0, b"", false, codec::WATCH_REPLY_SIZE - 1)?,
        libc::EINVAL,
    )?;
    let prefix = [b'p'; 100];
    refused(
        "a buffer under the request",
        call(
            &kv,
            g - 1,
            0,
            &prefix,
            false,
            codec::WATCH_SIZE + prefix.len() - 1,
        )?,
        libc::EINVAL,
    )?;
    // The longest timeout, answered at once (an event is there).
    let r = watch(&kv, g - 1, codec::WATCH_MAX_TIMEOUT_MS, b"", false)?;
    ensure!(
        r.events.len() == 1 && r.h.generation == g,
        "timeout 60000: {:?}",
        r.h
    );
    // The smallest buffers: the header alone answers an empty reply; an
    // event without its value fits where its value does not.
    let need_plain = codec::WATCH_REPLY_SIZE + codec::event_len(3, 0);
    let need = codec::WATCH_REPLY_SIZE + codec::event_len(3, big.len());
    match call(&kv, g, 0, b"", true, codec::WATCH_REPLY_SIZE)? {
        Outcome::Reply(r) => ensure!(
            r.events.is_empty()
                && r.h.generation == g
                && r.h.size as usize == codec::WATCH_REPLY_SIZE,
            "a header-sized buffer at the head: {:?}",
            r.h
        ),
        o => return Err(format!("a header-sized buffer at the head: {o:?}")),
    }
    match call(&kv, g - 1, 0, b"", false, need_plain)? {
        Outcome::Reply(r) => ensure!(
            brief(&r.events) == [b(EventKind::Put, b"big", None)],
            "without values in {need_plain} bytes: {}",
            show(&r.events)
        ),
        o => return Err(format!("without values in {need_plain} bytes: {o:?}")),
    }
    match call(&kv, g - 1, 0, b"", true, 512)? {
        Outcome::Failed(libc::EMSGSIZE, buf) => {
            let h = WatchReplyHeader::decode(&buf)
                .map_err(|e| format!("the EMSGSIZE header: {e:?}"))?;
            ensure!(
                h.size as usize == need && h.count == 0,
                "EMSGSIZE header {h:?}, expected size {need}"
            );
        }
        o => return Err(format!("a 3000-byte value in 512 bytes: {o:?}")),
    }
    refused(
        "a buffer one byte short",
        call(&kv, g - 1, 0, b"", true, need - 1)?,
        libc::EMSGSIZE,
    )?;
    match call(&kv, g - 1, 0, b"", true, need)? {
        Outcome::Reply(r) => ensure!(
            brief(&r.events) == [(EventKind::Put, b"big".to_vec(), Some(big.clone()))]
                && r.h.size as usize == need,
            "in {need} bytes: {:?} {}",
            r.h,
            show(&r.events)
        ),
        o => return Err(format!("in the size the header asked for: {o:?}")),
    }
    // Without CAP_NET_ADMIN.
    let optbase = kv.optbase();
    in_child(|| {
        let raw =
            nfkv::raw::open_socket(libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| e.to_string())?;
        become_nobody()?;
        let udp = nfkv::raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP)
            .map_err(|e| e.to_string())?;
        for fd in [&raw, &udp] {
            let mut buf = vec![0u8; 4096];
            let req = request(g - 1, 1000, b"", true);
            buf[..req.len()].copy_from_slice(&req);
            expect_errno(
                &format!("watch as nobody on fd {}", fd_no(fd)),
                nfkv::raw::raw_get(fd, optbase + cmd::GET_WATCH, &mut buf),
                libc::EPERM,
            )?;
        }
        Ok(())
    })?;
    ck("flush", kv.flush())
}
