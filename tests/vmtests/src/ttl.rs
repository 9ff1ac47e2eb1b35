//! Entries that expire (`NFKV_F_TTL`, `NFKV_F_KEEP_TTL`): the time left
//! that GET and LIST report, an expired entry absent to every command and
//! to the classifiers from the moment it expires (before the reaper has
//! removed it), what overwrites and batch records do to a deadline, the
//! reaper giving back entries, bytes and the shared budget's charge without
//! any read, namespaces, and rmmod with the reaper armed or running.
//!
//! Time: deadlines are jiffies (HZ may be 250: 4 ms a tick) and under TCG a
//! call may stall for long. A check against the clock is made only where
//! it is conclusive ([`Expiry`]: an entry is alive before `earliest` and
//! gone after `latest`); a run of checks that needs an expired entry not
//! yet reaped tells whether it got one ([`Window`]) and is tried again if
//! not. No upper bound on wall time is tighter than a few seconds.

use crate::classify::{add, cls, counters, Pair, B4};
use crate::core::enter_user_and_net_namespace;
use crate::harness::*;
use crate::{ensure, tests};
use nfkv::classifier::key_of;
use nfkv::{Action, Batch, Condition, Family, Hook, Info, Match, Nfkv, Target};
use nfkv_abi::codec::{self, cmd, Op, OpKind, Ttl, ValueHeader, MAX_TTL_MS};
use nfkv_abi::uapi;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    tests![
        time_left_is_reported_and_never_over_the_ttl,
        expired_entries_are_absent_at_once,
        overwrites_set_clear_or_keep_the_deadline,
        batch_records_carry_their_own_ttls,
        batch_records_share_one_now,
        ttl_request_edges,
        ttl_entries_expire_in_their_namespace_only,
        classifier_passes_the_moment_its_entry_expires,
        reaper_gives_back_100k_entries_and_their_budget,
        rmmod_with_the_reaper_armed_or_running,
    ]
}

/// What the clocks may differ by: a jiffy or two (10 ms at HZ=100), the
/// rounding of milliseconds to jiffies, and the guest's two clocks, whose
/// jiffies fell over 45 ms behind its monotonic clock under TCG on a busy
/// host (two VMs at once).
const SLACK: Duration = Duration::from_millis(100);

/// Conclusive scenarios tried before a test gives up (each try is
/// inconclusive only when the VM stalled for hundreds of milliseconds, or
/// the reaper ran in the middle of the checks).
const TRIES: usize = 3;

/// A put expiring after `ms`.
pub(crate) fn ttl(ms: u32) -> Condition {
    Condition {
        ttl: Ttl {
            ms: Some(ms),
            keep: false,
        },
        ..Default::default()
    }
}

/// A put keeping a present entry's expiry; where absent, `ms` (if any).
pub(crate) fn keep(ms: Option<u32>) -> Condition {
    Condition {
        ttl: Ttl { ms, keep: true },
        ..Default::default()
    }
}

/// When an entry written between `before` and `after` (the instants around
/// the call) with a lifetime of `ms` expires: not before `earliest`, not
/// after `latest`.
#[derive(Debug, Clone, Copy)]
struct Expiry {
    ms: u32,
    earliest: Instant,
    latest: Instant,
}

impl Expiry {
    fn of(ms: u32, before: Instant, after: Instant) -> Self {
        let ttl = Duration::from_millis(ms.into());
        Expiry {
            ms,
            earliest: (before + ttl).checked_sub(SLACK).unwrap_or(before),
            latest: after + ttl + SLACK,
        }
    }

    /// Whether a call that ended at `t` surely ran before the expiry.
    fn surely_alive_at(&self, t: Instant) -> bool {
        t < self.earliest
    }
}

/// Runs `f`; its result and the instants before and after it.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Instant, Instant) {
    let before = Instant::now();
    let r = f();
    (r, before, Instant::now())
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// An entry as GET reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    version: u64,
    ttl_ms: u32,
    value: Vec<u8>,
}

/// A GET on the wire (the library's `Value` has no time left): the entry,
/// or the errno.
fn get_raw(kv: &Nfkv, key: &[u8]) -> Result<Result<Got, i32>, String> {
    let mut buf = vec![
        0u8;
        (codec::VALUE_SIZE + kv.limits().max_value_len as usize)
            .max(codec::GET_SIZE + key.len())
    ];
    codec::encode_get(&mut buf, key);
    match kv.raw_get(cmd::GET_VALUE, &mut buf) {
        Ok(n) => {
            let h = ValueHeader::decode(&buf[..n]).map_err(|e| format!("get reply: {e:?}"))?;
            ensure!(
                n == codec::VALUE_SIZE + h.value_len as usize,
                "get {key:?}: a reply of {n} bytes for a value of {}",
                h.value_len
            );
            Ok(Ok(Got {
                version: h.version,
                ttl_ms: h.ttl_ms,
                value: buf[codec::VALUE_SIZE..n].to_vec(),
            }))
        }
        Err(e) => match e.raw_os_error() {
            Some(errno) => Ok(Err(errno)),
            None => Err(format!("get {key:?}: {e}")),
        },
    }
}

/// The entry of `key`, which must be present.
fn present(kv: &Nfkv, key: &[u8], what: &str) -> Result<Got, String> {
    match get_raw(kv, key)? {
        Ok(g) => Ok(g),
        Err(errno) => Err(format!(
            "{what}: GET {}: {}, expected the entry",
            String::from_utf8_lossy(key),
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

/// GET of `key` must be ENOENT.
fn absent(kv: &Nfkv, key: &[u8], what: &str) -> TestResult {
    match get_raw(kv, key)? {
        Err(libc::ENOENT) => Ok(()),
        r => Err(format!(
            "{what}: GET {}: {r:?}, expected ENOENT",
            String::from_utf8_lossy(key)
        )),
    }
}

/// An entry as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) value: Vec<u8>,
    pub(crate) version: u64,
    pub(crate) ttl_ms: u32,
}

/// Every entry under `prefix`, by key, through LIST on the wire (the
/// library's `Entry` has no time left), page after page.
pub(crate) fn list_raw(kv: &Nfkv, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Listed>, String> {
    let mut out = BTreeMap::new();
    let mut after = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let req = codec::ListRequest {
            after: &after,
            prefix,
        };
        req.encode(&mut buf);
        let n = kv
            .raw_get(cmd::GET_LIST, &mut buf)
            .map_err(|e| format!("list {prefix:?}: {e}"))?;
        let mut last = None;
        let h = codec::decode_list_page(&buf[..n], |e| -> Result<(), codec::Reject> {
            out.insert(
                e.key.to_vec(),
                Listed {
                    value: e.value.to_vec(),
                    version: e.version,
                    ttl_ms: e.ttl_ms,
                },
            );
            last = Some(e.key.to_vec());
            Ok(())
        })
        .map_err(|e| format!("list reply of {n} bytes: {e:?}"))?;
        match last {
            Some(k) if h.more => after = k,
            _ => return Ok(out),
        }
    }
}

fn keys(m: &BTreeMap<Vec<u8>, Listed>) -> Vec<String> {
    m.keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// A reported time left `left` of an entry of [`Expiry`] `exp`, read by a
/// call between `before` and `after`: in (0, ttl], and no more or less than
/// the clock allows.
fn check_left(what: &str, left: u32, exp: &Expiry, before: Instant, after: Instant) -> TestResult {
    ensure!(
        left > 0 && left <= exp.ms,
        "{what}: ttl_ms {left}, not in (0, {}]",
        exp.ms
    );
    let most = exp.latest.saturating_duration_since(before).as_millis() + 1;
    let least = exp.earliest.saturating_duration_since(after).as_millis();
    ensure!(
        (least..=most).contains(&u128::from(left)),
        "{what}: ttl_ms {left} of a ttl of {} ms, but between {least} and {most} ms were left",
        exp.ms
    );
    Ok(())
}

fn info(kv: &Nfkv) -> Result<Info, String> {
    ck("info", kv.info())
}

/// Polls INFO (nothing else: no read that might meet an expired entry)
/// every 50 ms until `done`, for up to `limit`; the last INFO and how long
/// it took.
fn poll_info(
    kv: &Nfkv,
    limit: Duration,
    what: &str,
    done: impl Fn(&Info) -> bool,
) -> Result<(Info, Duration), String> {
    let start = Instant::now();
    loop {
        let i = info(kv)?;
        if done(&i) {
            return Ok((i, start.elapsed()));
        }
        ensure!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}: entries {}, bytes_used {}, charged {}, budget_used {}",
            i.entries,
            i.bytes_used,
            i.charged,
            i.budget_used
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the reaper has left exactly `live` entries, for up to 10 s
/// (it runs about once a second); then the generation must have moved by
/// one for each entry it removed since `from`.
fn reaped_to(kv: &Nfkv, from: &Info, live: u32, what: &str) -> TestResult {
    let (end, _) = poll_info(kv, Duration::from_secs(10), what, |i| i.entries == live)?;
    let removed = u64::from(from.entries - live);
    ensure!(
        end.generation - from.generation == removed,
        "{what}: the reaper removed {removed} entries but the generation moved by {}",
        end.generation - from.generation
    );
    Ok(())
}

/// Tries a timing-dependent scenario until one try is conclusive (`Ok(true)`).
fn conclusive(what: &str, mut attempt: impl FnMut(usize) -> Result<bool, String>) -> TestResult {
    for n in 0..TRIES {
        if attempt(n)? {
            return Ok(());
        }
        println!(
            "     {what}: try {} inconclusive (the VM stalled or the reaper ran mid-check), again",
            n + 1
        );
    }
    Err(format!(
        "{what}: no conclusive try in {TRIES}: the checks never ran before the expiry, or the \
         reaper always removed expired entries before they were done"
    ))
}

/// GET and LIST report the time left, rounded up, never more than the
/// lifetime asked (also where the lifetime is no whole number of jiffies,
/// and at the edges of the jiffies conversion: 2^31 - 1, 2^31 and
/// NFKV_MAX_TTL_MS), and 0 for an entry that never expires; the time left
/// goes down as time passes.
fn time_left_is_reported_and_never_over_the_ttl() -> TestResult {
    let kv = fresh()?;
    ck("put", kv.put(b"forever", b"v", Condition::default()))?;
    let ttls = [
        1001u32,
        4999,
        12_345,
        86_400_001,
        0x7fff_ffff,
        0x8000_0000,
        MAX_TTL_MS - 1,
        MAX_TTL_MS,
    ];
    // Every lifetime is checked, and every violation reported together.
    let mut wrong = Vec::new();
    let mut exps = Vec::new();
    for ms in ttls {
        let key = format!("k{ms}");
        let (r, t0, t1) = timed(|| kv.put(key.as_bytes(), b"v", ttl(ms)));
        ck(&format!("put with ttl {ms}"), r)?;
        let exp = Expiry::of(ms, t0, t1);
        let (g, g0, g1) = timed(|| present(&kv, key.as_bytes(), "right after the put"));
        if let Err(e) = check_left(&format!("GET of ttl {ms}"), g?.ttl_ms, &exp, g0, g1) {
            wrong.push(e);
        }
        exps.push((key, exp));
    }
    ensure!(
        present(&kv, b"forever", "plain entry")?.ttl_ms == 0,
        "an entry that never expires reports a time left"
    );
    let (listed, l0, l1) = timed(|| list_raw(&kv, b""));
    let listed = listed?;
    ensure!(
        listed.get(&b"forever"[..]).map(|e| e.ttl_ms) == Some(0),
        "LIST reports a time left for an entry that never expires: {:?}",
        listed.get(&b"forever"[..])
    );
    for (key, exp) in &exps {
        let e = listed
            .get(key.as_bytes())
            .ok_or_else(|| format!("LIST lacks {key}"))?;
        if let Err(e) = check_left(&format!("LIST of {key}"), e.ttl_ms, exp, l0, l1) {
            wrong.push(e);
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    // Later, less is left: at least 300 ms less, whatever the clock.
    let first = present(&kv, b"k12345", "ttl 12345")?.ttl_ms;
    std::thread::sleep(Duration::from_millis(300));
    let (g, g0, g1) = timed(|| present(&kv, b"k12345", "ttl 12345, 300 ms on"));
    let later = g?.ttl_ms;
    check_left("GET of ttl 12345, 300 ms on", later, &exps[2].1, g0, g1)?;
    ensure!(
        later + 290 <= first,
        "300 ms on, ttl_ms went from {first} to {later}"
    );
    ck("flush", kv.flush())
}

/// The keys of [`expired_entries_are_absent_at_once`], all with one
/// deadline.
const TARGETS: [&str; 10] = [
    "t-get",
    "t-replace",
    "t-ifver",
    "t-del",
    "t-bdel",
    "t-bcreate",
    "t-create",
    "t-keep",
    "t-keep0",
    "t-witness",
];
/// Of those, the ones no check writes over: they stay expired until reaped.
const UNTOUCHED: u32 = 6;

/// An expired entry is absent to every command at once, before the reaper
/// removes it: GET is ENOENT, LIST skips it, CREATE succeeds over it
/// (also in a batch), REPLACE, IF_VERSION and DEL get ENOENT (a batch
/// with such a record fails whole), and a KEEP_TTL put over it is a put
/// over an absent key (NFKV_F_TTL applies, or it never expires). To meet
/// the entries expired but not reaped, a decoy entry expires first: the
/// reaper runs for it and then not again for about a second, in which the
/// targets expire and the checks run; INFO (which counts entries until
/// they are reaped) then tells whether they were still there. Once reaped,
/// the generation has moved by one per entry removed.
fn expired_entries_are_absent_at_once() -> TestResult {
    const DECOY_MS: u32 = 300;
    const TARGET_MS: u32 = 600;
    let kv = fresh()?;
    conclusive("expired entries before the reaper", |_| {
        ck("flush", kv.flush())?;
        ck("put", kv.put(b"p-forever", b"p", Condition::default()))?;
        let mut b = Batch::new();
        b.put(b"decoy", b"d", ttl(DECOY_MS));
        for k in TARGETS {
            b.put(k.as_bytes(), b"old", ttl(TARGET_MS));
        }
        let (r, t0, t1) = timed(|| kv.apply(&b));
        ck("batch of expiring entries", r)?;
        let exp = Expiry::of(TARGET_MS, t0, t1);
        // Alive before: every target listed with its time left.
        let (listed, l0, l1) = timed(|| list_raw(&kv, b"t-"));
        let listed = listed?;
        if !exp.surely_alive_at(l1) {
            return Ok(false);
        }
        ensure!(
            listed.len() == TARGETS.len(),
            "before the deadline LIST shows {:?}",
            keys(&listed)
        );
        for (k, e) in &listed {
            check_left(&format!("LIST of {k:?}"), e.ttl_ms, &exp, l0, l1)?;
        }
        let ifver = listed[&b"t-ifver"[..]].version;

        sleep_until(exp.latest);
        let what = "after the deadline";
        absent(&kv, b"t-get", what)?;
        let all = list_raw(&kv, b"")?;
        ensure!(
            keys(&all) == ["p-forever"],
            "{what}: LIST shows {:?}",
            keys(&all)
        );
        let replace = Condition {
            replace_only: true,
            ..Default::default()
        };
        expect_err(
            "REPLACE of an expired key",
            kv.put(b"t-replace", b"new", replace),
            libc::ENOENT,
        )?;
        let if_version = Condition {
            if_version: Some(ifver),
            ..Default::default()
        };
        expect_err(
            "IF_VERSION put of an expired key, its version",
            kv.put(b"t-ifver", b"new", if_version),
            libc::ENOENT,
        )?;
        expect_err(
            "IF_VERSION delete of an expired key, its version",
            kv.delete(b"t-ifver", Some(ifver)),
            libc::ENOENT,
        )?;
        expect_err(
            "delete of an expired key",
            kv.delete(b"t-del", None),
            libc::ENOENT,
        )?;
        let create = Condition {
            create_only: true,
            ..Default::default()
        };
        let mut b = Batch::new();
        b.put(b"t-bcreate", b"new", create).delete(b"t-bdel", None);
        expect_err(
            "batch creating over one expired key and deleting another",
            kv.apply(&b),
            libc::ENOENT,
        )?;
        ck(
            "CREATE over an expired key",
            kv.put(b"t-create", b"new", create),
        )?;
        ck(
            "KEEP_TTL|TTL 60 s over an expired key",
            kv.put(b"t-keep", b"new", keep(Some(60_000))),
        )?;
        let (r, k0, k1) = timed(|| kv.put(b"t-keep0", b"new", keep(None)));
        ck("KEEP_TTL over an expired key", r)?;
        let mut b = Batch::new();
        b.put(b"t-bcreate", b"new", create);
        ck("batch creating over an expired key", kv.apply(&b))?;
        let end = info(&kv)?;
        // Were the untouched targets still unreaped? (The decoy may be.)
        let live = 5;
        let unreaped = end.entries - live;
        if unreaped != UNTOUCHED && unreaped != UNTOUCHED + 1 {
            ensure!(
                unreaped < UNTOUCHED,
                "INFO counts {} entries, more than the live and expired ones",
                end.entries
            );
            return Ok(false);
        }

        // What the writes over expired keys made.
        for k in ["t-create", "t-bcreate", "t-keep0"] {
            let g = present(&kv, k.as_bytes(), "written over an expired key")?;
            ensure!(
                g.value == b"new" && g.ttl_ms == 0,
                "{k} written over an expired key: {g:?}, expected \"new\" never expiring"
            );
        }
        let (g, g0, g1) = timed(|| present(&kv, b"t-keep", "KEEP_TTL|TTL over an expired key"));
        check_left(
            "KEEP_TTL|TTL 60000 over an expired key (a fresh lifetime)",
            g?.ttl_ms,
            &Expiry::of(60_000, k0, k1),
            g0,
            g1,
        )?;
        ensure!(
            present(&kv, b"t-create", "created")?.version > ifver,
            "a created entry's version is not above the expired one's"
        );
        // Reaped: only the live entries left, the generation moved by one
        // per expired entry, INFO and LIST agree.
        reaped_to(&kv, &end, live, "reaping the expired entries")?;
        let all = list_raw(&kv, b"")?;
        ensure!(
            keys(&all) == ["p-forever", "t-bcreate", "t-create", "t-keep", "t-keep0"],
            "after the reaper, LIST shows {:?}",
            keys(&all)
        );
        Ok(true)
    })?;
    ck("flush", kv.flush())
}

/// A put without TTL flags makes an entry that never expires, also over
/// one that would have; a put with NFKV_F_TTL sets a new deadline; a
/// KEEP_TTL put keeps the present entry's deadline (its time left is not
/// reset, whatever NFKV_F_TTL asks, and it expires at the old deadline) or
/// its lack of one; over an absent key KEEP_TTL gives NFKV_F_TTL's
/// lifetime, or none.
fn overwrites_set_clear_or_keep_the_deadline() -> TestResult {
    const MS: u32 = 600;
    let kv = fresh()?;
    conclusive("overwrites of expiring entries", |_| {
        ck("flush", kv.flush())?;
        ck("put e", kv.put(b"e", b"old", Condition::default()))?;
        let mut b = Batch::new();
        for k in ["a", "b", "c", "d", "f"] {
            b.put(k.as_bytes(), b"old", ttl(MS));
        }
        let (r, t0, t1) = timed(|| kv.apply(&b));
        ck("batch", r)?;
        let exp = Expiry::of(MS, t0, t1);
        let version_f = present(&kv, b"f", "f")?.version;
        // Some time on, so a reset deadline would show.
        std::thread::sleep(Duration::from_millis(200));
        let (r, w0, w1) = timed(|| -> nfkv::Result<()> {
            kv.put(b"a", b"new", Condition::default())?;
            kv.put(b"b", b"new", ttl(5000))?;
            kv.put(b"c", b"new", keep(None))?;
            kv.put(b"d", b"new", keep(Some(5000)))?;
            kv.put(b"e", b"new", keep(Some(MS)))?;
            kv.put(
                b"f",
                b"new",
                Condition {
                    if_version: Some(version_f),
                    ttl: Ttl {
                        ms: None,
                        keep: true,
                    },
                    ..Default::default()
                },
            )?;
            kv.put(b"g", b"new", keep(Some(MS)))?;
            kv.put(b"h", b"new", keep(None))
        });
        ck("overwrites", r)?;
        let exp_b = Expiry::of(5000, w0, w1);
        let exp_g = Expiry::of(MS, w0, w1);
        let (listed, l0, l1) = timed(|| list_raw(&kv, b""));
        let listed = listed?;
        if !exp.surely_alive_at(l1) {
            return Ok(false);
        }
        ensure!(
            listed.len() == 8 && listed.values().all(|e| e.value == b"new"),
            "after the overwrites: {listed:?}"
        );
        let left = |k: &[u8]| listed[k].ttl_ms;
        ensure!(
            left(b"a") == 0,
            "a plain overwrite left ttl_ms {}",
            left(b"a")
        );
        check_left("TTL 5000 overwrite", left(b"b"), &exp_b, l0, l1)?;
        for k in ["c", "d", "f"] {
            check_left(
                &format!("KEEP_TTL overwrite of {k} (the old deadline)"),
                left(k.as_bytes()),
                &exp,
                l0,
                l1,
            )?;
        }
        ensure!(
            left(b"e") == 0,
            "KEEP_TTL|TTL over an entry that never expires left ttl_ms {}",
            left(b"e")
        );
        check_left(
            "KEEP_TTL|TTL over an absent key",
            left(b"g"),
            &exp_g,
            l0,
            l1,
        )?;
        ensure!(
            left(b"h") == 0,
            "KEEP_TTL over an absent key left ttl_ms {}",
            left(b"h")
        );

        sleep_until(exp.latest.max(exp_g.latest));
        let what = "after the first deadline";
        for k in ["c", "d", "f", "g"] {
            absent(&kv, k.as_bytes(), what)?;
        }
        let (all, _, l1) = timed(|| list_raw(&kv, b""));
        let all = all?;
        if !Expiry::of(5000, w0, w1).surely_alive_at(l1) {
            return Ok(false);
        }
        ensure!(
            keys(&all) == ["a", "b", "e", "h"],
            "{what}: LIST shows {:?}",
            keys(&all)
        );
        Ok(true)
    })?;
    ck("flush", kv.flush())
}

/// Every record of a batch carries its own TTL flags, and later records
/// of a key see the deadline the earlier ones left.
fn batch_records_carry_their_own_ttls() -> TestResult {
    const MS: u32 = 600;
    let kv = fresh()?;
    conclusive("a batch of mixed TTLs", |_| {
        ck("flush", kv.flush())?;
        ck("put", kv.put(b"x-plain", b"old", Condition::default()))?;
        let (r, p0, p1) = timed(|| kv.put(b"x-ttl", b"old", ttl(MS)));
        ck("put", r)?;
        let exp_x = Expiry::of(MS, p0, p1);
        let mut b = Batch::new();
        b.put(b"b-plain", b"new", Condition::default())
            .put(b"b-short", b"new", ttl(MS))
            .put(b"b-long", b"new", ttl(60_000))
            .put(b"b-twice", b"new", ttl(MS))
            .put(b"b-twice", b"new", Condition::default())
            .put(b"b-twice2", b"new", Condition::default())
            .put(b"b-twice2", b"new", ttl(MS))
            .put(b"b-keepnew", b"new", ttl(MS))
            .put(b"b-keepnew", b"new", keep(Some(60_000)))
            .put(b"x-ttl", b"new", keep(None))
            .put(b"x-plain", b"new", keep(Some(MS)))
            .put(b"b-keepabsent", b"new", keep(Some(MS)))
            .put(b"b-keepabsent0", b"new", keep(None))
            .put(b"b-del", b"new", ttl(MS))
            .delete(b"b-del", None);
        let (r, t0, t1) = timed(|| kv.apply(&b));
        ck("batch", r)?;
        let exp = Expiry::of(MS, t0, t1);
        let (listed, l0, l1) = timed(|| list_raw(&kv, b""));
        let listed = listed?;
        if !exp_x.surely_alive_at(l1) {
            return Ok(false);
        }
        ensure!(
            keys(&listed)
                == [
                    "b-keepabsent",
                    "b-keepabsent0",
                    "b-keepnew",
                    "b-long",
                    "b-plain",
                    "b-short",
                    "b-twice",
                    "b-twice2",
                    "x-plain",
                    "x-ttl"
                ]
                && listed.values().all(|e| e.value == b"new"),
            "after the batch: {listed:?}"
        );
        let left = |k: &str| listed[k.as_bytes()].ttl_ms;
        for k in ["b-plain", "b-twice", "x-plain", "b-keepabsent0"] {
            ensure!(left(k) == 0, "{k}: ttl_ms {}, expected 0", left(k));
        }
        for k in ["b-short", "b-twice2", "b-keepnew", "b-keepabsent"] {
            check_left(k, left(k), &exp, l0, l1)?;
        }
        check_left(
            "b-long",
            left("b-long"),
            &Expiry::of(60_000, t0, t1),
            l0,
            l1,
        )?;
        check_left("x-ttl (kept)", left("x-ttl"), &exp_x, l0, l1)?;

        sleep_until(exp.latest);
        let all = list_raw(&kv, b"")?;
        ensure!(
            keys(&all) == ["b-keepabsent0", "b-long", "b-plain", "b-twice", "x-plain"],
            "after the deadline LIST shows {:?}",
            keys(&all)
        );
        for k in ["b-short", "b-twice2", "b-keepnew", "b-keepabsent", "x-ttl"] {
            absent(&kv, k.as_bytes(), "after the deadline")?;
        }
        Ok(true)
    })?;
    ck("flush", kv.flush())
}

/// All records of one batch see the same "now": the first and the last
/// record of a batch of 4096 (which takes many jiffies under TCG: about
/// 0.7 s) get the same deadline, so one LIST reports the same time left
/// for both.
fn batch_records_share_one_now() -> TestResult {
    const MS: u32 = 600_000;
    const RECORDS: usize = 4096;
    let kv = fresh()?;
    let mut b = Batch::new();
    b.put(b"a-first", b"", ttl(MS));
    for i in 0..(RECORDS - 2) {
        b.put(format!("b-{i:05}").as_bytes(), b"", ttl(MS));
    }
    b.put(b"a-last", b"", ttl(MS));
    let (r, t0, t1) = timed(|| kv.apply(&b));
    ck("batch", r)?;
    let took = t1 - t0;
    let listed = list_raw(&kv, b"a-")?;
    let left = |k: &[u8]| {
        listed
            .get(k)
            .map(|e| e.ttl_ms)
            .ok_or_else(|| format!("LIST lacks {k:?}: {:?}", keys(&listed)))
    };
    let (first, last) = (left(b"a-first")?, left(b"a-last")?);
    // One LIST may straddle a tick between two entries: a jiffy apart.
    ensure!(
        first.abs_diff(last) <= 10,
        "the first and last records of one batch ({took:?}) have ttl_ms {first} and {last}"
    );
    println!(
        "     one now: a batch of {RECORDS} records took {took:?}; first and last record: ttl_ms {first}, {last}"
    );
    if took < Duration::from_millis(40) {
        println!("     one now: the batch was too quick to tell records' nows apart");
    }
    ck("flush", kv.flush())
}

/// Header of a set request with one op of `kind`, flags, ttl_ms.
fn op_request(kind: OpKind, flags: u32, ttl_ms: u32, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut req = nfkv::raw::encode_op(&Op {
        kind,
        cond: Condition::default(),
        key,
        value,
    });
    codec::put_u32(&mut req, std::mem::offset_of!(uapi::nfkv_op, flags), flags);
    codec::put_u32(
        &mut req,
        std::mem::offset_of!(uapi::nfkv_op, ttl_ms),
        ttl_ms,
    );
    req
}

/// A batch of one record of [`op_request`]'s form, padded.
fn batch_request(record: &[u8]) -> Vec<u8> {
    let mut req = codec::encode_batch_header(false, 1).to_vec();
    req.extend_from_slice(record);
    req.resize(
        codec::BATCH_SIZE + codec::align_up(record.len()).unwrap_or(0),
        0,
    );
    req
}

/// TTL flags badinput's matrix leaves out: KEEP_TTL on a delete (alone and
/// with NFKV_F_TTL), KEEP_TTL with a ttl_ms but no NFKV_F_TTL, NFKV_F_TTL
/// with ttl_ms 0, each as a single request and as a batch record, all
/// EINVAL with the table untouched; NFKV_F_TTL with NFKV_MAX_TTL_MS and
/// with 1 ms accepted, also with CREATE.
fn ttl_request_edges() -> TestResult {
    let kv = fresh()?;
    ck("put", kv.put(b"k", b"v", ttl(3_600_000)))?;
    let before = dump(&kv)?;
    let (t, keep_f) = (uapi::NFKV_F_TTL, uapi::NFKV_F_KEEP_TTL);
    let refused: [(&str, Vec<u8>); 6] = [
        (
            "del with KEEP_TTL",
            op_request(OpKind::Del, keep_f, 0, b"k", b""),
        ),
        (
            "del with KEEP_TTL|TTL",
            op_request(OpKind::Del, keep_f | t, 100, b"k", b""),
        ),
        (
            "del with IF_VERSION|KEEP_TTL",
            op_request(OpKind::Del, uapi::NFKV_F_IF_VERSION | keep_f, 0, b"k", b""),
        ),
        (
            "put with KEEP_TTL and ttl_ms but no NFKV_F_TTL",
            op_request(OpKind::Put, keep_f, 100, b"k", b"x"),
        ),
        (
            "put with KEEP_TTL|TTL and ttl_ms 0",
            op_request(OpKind::Put, keep_f | t, 0, b"k", b"x"),
        ),
        (
            "put with TTL and ttl_ms 0",
            op_request(OpKind::Put, t, 0, b"new", b"x"),
        ),
    ];
    for (what, req) in &refused {
        let c = if what.starts_with("del") {
            cmd::SET_DEL
        } else {
            cmd::SET_PUT
        };
        expect_errno(what, kv.raw_set(c, req), libc::EINVAL)?;
        expect_errno(
            &format!("batch record: {what}"),
            kv.raw_set(cmd::SET_BATCH, &batch_request(req)),
            libc::EINVAL,
        )?;
    }
    let after = dump(&kv)?;
    ensure!(
        after == before,
        "refused TTL requests changed the table: {before:?} became {after:?}"
    );
    // The longest lifetime is accepted, as a single put and in a batch,
    // with CREATE too; so is the shortest.
    let req = op_request(
        OpKind::Put,
        t | uapi::NFKV_F_CREATE,
        MAX_TTL_MS,
        b"max",
        b"x",
    );
    ck(
        "put of ttl NFKV_MAX_TTL_MS",
        kv.put(b"max1", b"x", ttl(MAX_TTL_MS)),
    )?;
    kv.raw_set(cmd::SET_PUT, &req)
        .map_err(|e| format!("CREATE|TTL with NFKV_MAX_TTL_MS: {e}"))?;
    let mut b = Batch::new();
    b.put(b"max2", b"x", ttl(MAX_TTL_MS))
        .put(b"min", b"x", ttl(1));
    ck("batch of ttls NFKV_MAX_TTL_MS and 1", kv.apply(&b))?;
    for k in ["max", "max1", "max2"] {
        let left = present(&kv, k.as_bytes(), "NFKV_MAX_TTL_MS")?.ttl_ms;
        ensure!(
            left > MAX_TTL_MS - 600_000,
            "{k} of ttl NFKV_MAX_TTL_MS reports ttl_ms {left}"
        );
    }
    ck("flush", kv.flush())
}

/// TTL entries of a namespace owned by an unprivileged user namespace
/// expire there only: the same keys in the initial namespace, one never
/// expiring and one with its own TTL, keep their own fates.
fn ttl_entries_expire_in_their_namespace_only() -> TestResult {
    const MS: u32 = 400;
    let kv = fresh()?;
    let (r, t0, t1) = timed(|| {
        let mut b = Batch::new();
        b.put(b"shared", b"host", Condition::default())
            .put(b"host-ttl", b"host", ttl(MS));
        kv.apply(&b)
    });
    ck("host batch", r)?;
    let host_exp = Expiry::of(MS, t0, t1);
    in_child(|| {
        enter_user_and_net_namespace()?;
        let kv = connect()?;
        ensure!(
            info(&kv)?.charged_to_budget(),
            "not an unprivileged namespace"
        );
        let mut b = Batch::new();
        b.put(b"shared", b"child", ttl(MS))
            .put(b"host-ttl", b"child", Condition::default());
        let (r, t0, t1) = timed(|| kv.apply(&b));
        ck("child batch", r)?;
        let exp = Expiry::of(MS, t0, t1);
        let start = info(&kv)?;
        sleep_until(exp.latest.max(host_exp.latest));
        absent(&kv, b"shared", "the child's expired entry")?;
        let g = present(
            &kv,
            b"host-ttl",
            "the child's entry of a key expired in the host",
        )?;
        ensure!(
            g.value == b"child" && g.ttl_ms == 0,
            "the child's host-ttl: {g:?}"
        );
        reaped_to(&kv, &start, 1, "the child's reaper")?;
        let end = info(&kv)?;
        ensure!(
            end.charged < start.charged,
            "the reaper gave back no charge: {} then {}",
            start.charged,
            end.charged
        );
        Ok(())
    })?;
    sleep_until(host_exp.latest);
    let g = present(
        &kv,
        b"shared",
        "the host's entry of a key expired in the child",
    )?;
    ensure!(
        g.value == b"host" && g.ttl_ms == 0,
        "the host's shared: {g:?}"
    );
    absent(&kv, b"host-ttl", "the host's expired entry")?;
    ck("flush", kv.flush())
}

/// A classifier stops acting on an entry the moment it expires, before the
/// reaper removes it: a DROP entry for A's address with a 1.5 s TTL drops
/// UDP from A before its deadline, and the first datagrams after it pass
/// while INFO still counts the entry (a decoy expiring 300 ms earlier made
/// the reaper run just before, so it waits about a second to run again).
fn classifier_passes_the_moment_its_entry_expires() -> TestResult {
    const DROP_MS: u32 = 1500;
    const DECOY_MS: u32 = 1200;
    let p = Pair::new("ttlcls")?;
    let kv = p.b.nfkv()?;
    let c = cls("deny", Family::Ipv4, Hook::Input, Match::Saddr, b"t/", 0)?;
    add(&kv, &c)?;
    let key = ck("key_of", key_of(&c, &Target::Addr(crate::classify::A4)))?;
    let mut passed_unreaped = 0;
    conclusive("a classifier at its entry's deadline", |n| {
        let mut b = Batch::new();
        b.put(&key, &Action::Drop.encode(), ttl(DROP_MS))
            .put(b"decoy", b"", ttl(DECOY_MS));
        let (r, t0, t1) = timed(|| kv.apply(&b));
        ck("DROP entry with a TTL", r)?;
        let exp = Expiry::of(DROP_MS, t0, t1);
        let c0 = counters(&kv, "deny")?;
        let (through, _, s1) = timed(|| p.udp(B4));
        ensure!(
            !through?,
            "try {n}: UDP from a source with a live DROP entry got through"
        );
        if !exp.surely_alive_at(s1) {
            return Ok(false);
        }
        let c1 = counters(&kv, "deny")?;
        ensure!(
            c1.drop > c0.drop,
            "try {n}: drop counter {} -> {} while dropping",
            c0.drop,
            c1.drop
        );
        sleep_until(exp.latest);
        let got_through = p.udp(B4)?;
        let unreaped = info(&kv)?.entries >= 1;
        match (got_through, unreaped) {
            (true, true) => {
                passed_unreaped += 1;
                Ok(true)
            }
            (false, true) => Err(format!(
                "try {n}: UDP still dropped after the DROP entry's deadline"
            )),
            // Reaped already: says nothing of the lookup; or a loss.
            (_, false) => Ok(false),
        }
    })?;
    let c = counters(&kv, "deny")?;
    println!("     classifier: datagrams passed an expired, unreaped DROP entry; counters {c:?}");
    Ok(())
}

/// Bytes of each reaper-test entry's value.
const REAP_VALUE: &[u8] = b"8 bytes!";

/// The reaper alone, with nothing reading the table but INFO: 100,000
/// entries with a short TTL, in two batches, in a namespace owned by an
/// unprivileged user namespace, are all removed within 30 s of their
/// deadline: entries, bytes_used, the table's charge and the shared
/// budget's use come back to what they were before, and the generation has
/// moved by exactly 200,000 (a version per put, one per entry reaped).
/// Entries that never expire and one with a long TTL stay.
fn reaper_gives_back_100k_entries_and_their_budget() -> TestResult {
    const N: usize = 100_000;
    const MS: u32 = 1500;
    reload("max_entries=200000")?;
    let r = in_child(|| {
        enter_user_and_net_namespace()?;
        let kv = connect()?;
        let mut b = Batch::new();
        b.put(b"forever1", b"v", Condition::default())
            .put(b"forever2", &[1; 300], Condition::default())
            .put(b"long", b"v", ttl(3_600_000));
        ck("baseline", kv.apply(&b))?;
        let base = info(&kv)?;
        ensure!(
            base.charged_to_budget() && base.charged > 0,
            "not charged to the shared budget: {base:?}"
        );
        // Two batches (one holds at most 65,536 records); under TCG with
        // a debug kernel each takes seconds, so the first one's entries may
        // be reaped while the second is written.
        let mut last = None;
        for half in 0..2 {
            let mut b = Batch::new();
            for i in (half * N / 2)..((half + 1) * N / 2) {
                b.put(format!("r-{i:06}").as_bytes(), REAP_VALUE, ttl(MS));
            }
            let (r, t0, t1) = timed(|| kv.apply(&b));
            ck("batch of expiring entries", r)?;
            last = Some(Expiry::of(MS, t0, t1));
        }
        let peak = info(&kv)?;
        let exp = last.ok_or("no batch")?;
        sleep_until(exp.latest);
        let (end, took) = poll_info(
            &kv,
            Duration::from_secs(30),
            "the reaper giving back 100,000 expired entries",
            |i| {
                i.entries == base.entries
                    && i.bytes_used == base.bytes_used
                    && i.charged == base.charged
                    && i.budget_used == base.budget_used
            },
        )?;
        // One version per put, one generation per entry reaped.
        ensure!(
            end.generation - base.generation == 2 * N as u64,
            "{N} puts and as many entries reaped moved the generation by {}",
            end.generation - base.generation
        );
        let all = list_raw(&kv, b"")?;
        ensure!(
            keys(&all) == ["forever1", "forever2", "long"],
            "after the reaper LIST shows {} entries, from {:?}",
            all.len(),
            keys(&all).first()
        );
        println!(
            "     reaper: {N} entries reaped {took:?} after the last deadline ({} entries, {} B charged, when the puts were done)",
            peak.entries - base.entries,
            peak.charged - base.charged
        );
        Ok(())
    });
    reload("")?;
    r
}

/// What in dmesg is a kernel report (as tests/vm/run's gate reads it).
const REPORTS: [&str; 10] = [
    "BUG:",
    "WARNING:",
    "Oops",
    "KASAN:",
    "UBSAN:",
    "general protection fault",
    "Call Trace:",
    "kernel BUG",
    "possible circular locking",
    "suspicious RCU usage",
];

/// Fails on a kernel report in dmesg after `marker`.
fn no_report_after(marker: &str) -> TestResult {
    let log = dmesg_after(marker)?;
    if let Some(l) = log.lines().find(|l| REPORTS.iter().any(|r| l.contains(r))) {
        return Err(format!("kernel report after {marker:?}: {l}"));
    }
    Ok(())
}

/// Fills the calling thread's namespace with `n` entries expiring after
/// `ms` and 10 after an hour, in one batch; returns when they expire.
fn fill_expiring(prefix: &str, n: usize, ms: u32) -> Result<Expiry, String> {
    let kv = connect()?;
    let mut b = Batch::new();
    for i in 0..n {
        b.put(format!("{prefix}{i}").as_bytes(), b"v", ttl(ms));
    }
    for i in 0..10 {
        b.put(format!("{prefix}long{i}").as_bytes(), b"v", ttl(3_600_000));
    }
    let (r, t0, t1) = timed(|| kv.apply(&b));
    ck("fill", r)?;
    Ok(Expiry::of(ms, t0, t1))
}

/// rmmod with TTL entries pending, in the initial namespace, in a
/// namespace that outlives the module and in one that died before, its
/// reaper armed: the module unloads, no reaper runs after it (the deadlines
/// pass with the module gone), nothing leaks (the gate's kmemleak scan),
/// and the module loaded again gives the live namespace a new, empty
/// table. Then rmmod while 10,000 entries are being reaped. No kernel
/// report in between.
fn rmmod_with_the_reaper_armed_or_running() -> TestResult {
    // Long enough for the three fills on a busy host.
    const MS: u32 = 5000;
    let marker = "nfkv-vmtests: ttl rmmod with the reaper armed";
    kmsg_mark(marker)?;
    let r = (|| {
        // Before the first fill: every deadline is later than this plus MS.
        let start = Instant::now();
        let held = hold_in_child(
            || {
                unshare(libc::CLONE_NEWNET)?;
                fill_expiring("held", 100, MS)?;
                connect()
            },
            |old| {
                let d = dump(&connect()?)?;
                ensure!(
                    d.entries == 0,
                    "after rmmod/insmod the live namespace's table is {d:?}"
                );
                ensure!(
                    ck("old socket", old.info())?.entries == 0,
                    "the old socket sees entries"
                );
                Ok(())
            },
        )?;
        in_child(|| {
            unshare(libc::CLONE_NEWNET)?;
            fill_expiring("dead", 100, MS).map(|_| ())
        })?;
        let exp = fill_expiring("init", 1000, MS)?;
        rmmod()?;
        ensure!(
            Instant::now() + SLACK < start + Duration::from_millis(MS.into()),
            "rmmod came after the first deadline: the reapers were not all armed (rerun)"
        );
        // Past every short deadline, with the module gone: a reaper left
        // queued would run now, in freed memory.
        sleep_until(exp.latest + Duration::from_millis(1000));
        insmod("")?;
        held.finish()?;
        ensure!(
            info(&connect()?)?.entries == 0,
            "a reloaded table is not empty"
        );

        // rmmod while the reaper has 10,000 expired entries to remove.
        let kv = connect()?;
        let mut b = Batch::new();
        for i in 0..10_000 {
            b.put(format!("r{i:05}").as_bytes(), b"v", ttl(300));
        }
        let (r, t0, t1) = timed(|| kv.apply(&b));
        ck("batch", r)?;
        let exp = Expiry::of(300, t0, t1);
        let full = info(&kv)?;
        drop(kv);
        sleep_until(exp.latest);
        let kv = connect()?;
        let now = info(&kv)?;
        drop(kv);
        rmmod()?;
        println!(
            "     rmmod: with the reaper armed in 3 namespaces; then with {} of {} expired entries left to reap",
            now.entries, full.entries
        );
        std::thread::sleep(Duration::from_millis(1500));
        insmod("")
    })();
    if !loaded() {
        insmod("")?;
    }
    r?;
    no_report_after(marker)
}
