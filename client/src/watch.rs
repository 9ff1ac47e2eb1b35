//! Watching the table's changes (`NFKV_SO_GET_WATCH`): one call
//! ([`Nfkv::watch_once`]) and the [`Watcher`] iterator, which waits for
//! changes call after call and resynchronises from a snapshot when the
//! module's change log no longer holds the events it needs.

use crate::{Entry, Error, Nfkv, Result, MAX_KEY_LEN, SNAPSHOT_RETRIES};
use nfkv_abi::codec::{self, cmd, EventKind, Reject, WatchRequest};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest wait of one `NFKV_SO_GET_WATCH` call.
pub const WATCH_MAX_TIMEOUT: Duration = Duration::from_millis(codec::WATCH_MAX_TIMEOUT_MS as u64);

/// Longest wait of one call a [`Watcher`] makes: an idle watcher returns to
/// userspace (and releases its hold on the module) at least this often.
pub const WATCHER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of the buffer a watch call offers first; a reply whose first
/// event needs more is fetched again with the size the module reports.
pub const WATCH_PAGE_BYTES: usize = 256 << 10;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// An entry written (created or replaced).
    Put,
    /// An entry deleted.
    Delete,
    /// Every entry removed.
    Flush,
    /// An expired entry removed by the module's reaper.
    Expire,
}

impl ChangeKind {
    /// Its name in `nfkv watch` output: `put`, `delete`, `flush`, `expire`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
            ChangeKind::Flush => "flush",
            ChangeKind::Expire => "expire",
        }
    }
}

impl From<EventKind> for ChangeKind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Put => ChangeKind::Put,
            EventKind::Del => ChangeKind::Delete,
            EventKind::Flush => ChangeKind::Flush,
            EventKind::Expire => ChangeKind::Expire,
        }
    }
}

/// One change of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The table's generation this change made (a put's entry version).
    pub generation: u64,
    /// The generation of the last change of the same write: the changes of
    /// one batch share it; equal to `generation` for a single change.
    pub last: u64,
    pub kind: ChangeKind,
    /// The key (empty for a flush).
    pub key: Vec<u8>,
    /// A put's value, when asked for and the entry still held it (same
    /// version, not expired); `None` otherwise.
    pub value: Option<Vec<u8>>,
}

/// The reply of one watch call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchReply {
    /// Every change up to this generation is in `changes` or did not match
    /// the prefix: the next call's `since`.
    pub generation: u64,
    /// The log no longer holds every change after `since` (`changes` is
    /// then empty): read the table afresh ([`Nfkv::snapshot`]) and watch
    /// from the snapshot's generation.
    pub gap: bool,
    /// More changes are logged already: call again at once.
    pub more: bool,
    /// The oldest `since` the log answers.
    pub oldest: u64,
    pub changes: Vec<Change>,
}

/// Decodes a watch reply to a call with `since`.
pub fn decode_reply(page: &[u8], since: u64) -> Result<WatchReply> {
    let mut changes = Vec::new();
    let h = codec::decode_watch_page(page, since, |e| -> Result<(), Reject> {
        changes.push(Change {
            generation: e.header.generation,
            last: e.header.last,
            kind: e.header.kind.into(),
            key: e.key.to_vec(),
            value: e.value.map(<[u8]>::to_vec),
        });
        Ok(())
    })
    .map_err(|_| Error::BadReply("watch"))?;
    Ok(WatchReply {
        generation: h.generation,
        gap: h.gap,
        more: h.more,
        oldest: h.oldest,
        changes,
    })
}

/// The buffer a watch call needs: at least `page_bytes`, and always room
/// for the request and the reply header.
fn watch_buffer_len(page_bytes: usize, req: &WatchRequest<'_>) -> usize {
    page_bytes.max(req.wire_len()).max(codec::WATCH_REPLY_SIZE)
}

/// Milliseconds of a wait, rounded up; over [`WATCH_MAX_TIMEOUT`] refused.
fn timeout_ms(timeout: Duration) -> Result<u32> {
    if timeout > WATCH_MAX_TIMEOUT {
        return Err(Error::Invalid(format!(
            "a watch call waits at most {} ms, not {timeout:?}",
            codec::WATCH_MAX_TIMEOUT_MS
        )));
    }
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    Ok(ms as u32)
}

impl Nfkv {
    /// One `NFKV_SO_GET_WATCH` call: the changes after generation `since`
    /// to keys starting with `prefix` (flushes always), waiting up to
    /// `timeout` (at most [`WATCH_MAX_TIMEOUT`]) for the first if there is
    /// none yet; with `values`, each put's value where the entry still
    /// holds it. A signal during the wait fails it with
    /// [`Error::Interrupted`], nothing lost: call again.
    pub fn watch_once(
        &self,
        since: u64,
        prefix: &[u8],
        timeout: Duration,
        values: bool,
    ) -> Result<WatchReply> {
        if prefix.len() > MAX_KEY_LEN {
            return Err(Error::Invalid(format!(
                "prefix must be at most {MAX_KEY_LEN} bytes, not {}",
                prefix.len()
            )));
        }
        let req = WatchRequest {
            since,
            timeout_ms: timeout_ms(timeout)?,
            prefix,
            values,
        };
        let mut size = watch_buffer_len(WATCH_PAGE_BYTES, &req);
        loop {
            let mut buf = vec![0u8; size];
            req.encode(&mut buf);
            match self.raw_get(cmd::GET_WATCH, &mut buf) {
                Ok(n) => return decode_reply(&buf[..n], since),
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    let h = codec::WatchReplyHeader::decode(&buf)
                        .map_err(|_| Error::BadReply("watch"))?;
                    if h.size as usize <= size {
                        return Err(Error::BadReply("watch"));
                    }
                    size = watch_buffer_len(h.size as usize, &req);
                }
                Err(e) => return Err(self.error("watch", e)),
            }
        }
    }

    /// A [`Watcher`] of this table's changes as `options` say.
    pub fn watch(&self, options: WatchOptions) -> Watcher<&Nfkv> {
        Watcher::new(self, options)
    }
}

/// What a [`Watcher`] reads from: the table (an [`Nfkv`], or a reference or
/// `Arc` of one), or a stand-in in tests.
pub trait WatchSource {
    /// The table's current generation.
    fn current_generation(&self) -> Result<u64>;
    /// One watch call, as [`Nfkv::watch_once`].
    fn watch_once(
        &self,
        since: u64,
        prefix: &[u8],
        timeout: Duration,
        values: bool,
    ) -> Result<WatchReply>;
    /// A consistent snapshot of the entries under `prefix` and its
    /// generation, as [`Nfkv::snapshot`].
    fn resync_snapshot(&self, prefix: &[u8]) -> Result<(u64, Vec<Entry>)>;
}

impl WatchSource for Nfkv {
    fn current_generation(&self) -> Result<u64> {
        Ok(self.info()?.generation)
    }

    fn watch_once(
        &self,
        since: u64,
        prefix: &[u8],
        timeout: Duration,
        values: bool,
    ) -> Result<WatchReply> {
        Nfkv::watch_once(self, since, prefix, timeout, values)
    }

    fn resync_snapshot(&self, prefix: &[u8]) -> Result<(u64, Vec<Entry>)> {
        Nfkv::snapshot(self, prefix, SNAPSHOT_RETRIES)
    }
}

impl<T: WatchSource + ?Sized> WatchSource for &T {
    fn current_generation(&self) -> Result<u64> {
        (**self).current_generation()
    }

    fn watch_once(&self, s: u64, p: &[u8], t: Duration, v: bool) -> Result<WatchReply> {
        (**self).watch_once(s, p, t, v)
    }

    fn resync_snapshot(&self, prefix: &[u8]) -> Result<(u64, Vec<Entry>)> {
        (**self).resync_snapshot(prefix)
    }
}

impl<T: WatchSource + ?Sized> WatchSource for std::sync::Arc<T> {
    fn current_generation(&self) -> Result<u64> {
        (**self).current_generation()
    }

    fn watch_once(&self, s: u64, p: &[u8], t: Duration, v: bool) -> Result<WatchReply> {
        (**self).watch_once(s, p, t, v)
    }

    fn resync_snapshot(&self, prefix: &[u8]) -> Result<(u64, Vec<Entry>)> {
        (**self).resync_snapshot(prefix)
    }
}

/// What a [`Watcher`] watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Only changes to keys starting with this (flushes always).
    pub prefix: Vec<u8>,
    /// The generation to watch from; `None`: the table's current one.
    pub since: Option<u64>,
    /// Attach each put's value where the entry still holds it.
    pub values: bool,
    /// End the iteration when no change came for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// An item of a [`Watcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// A change.
    Change(Change),
    /// The log no longer held the changes after the watcher's generation:
    /// what follows until the next change of the log are the entries of a
    /// snapshot of the table at this generation, as puts (each with its
    /// entry's version as `generation` and this generation as `last`; a
    /// value only where asked for). Keys under the prefix that are absent
    /// from it were deleted meanwhile. `after`: the generation the watcher
    /// had seen up to.
    Resync { after: u64, generation: u64 },
}

/// The table's changes one by one, from [`WatchOptions::since`] on: calls
/// `NFKV_SO_GET_WATCH` (each waiting at most [`WATCHER_CALL_TIMEOUT`]) for
/// as long as it is iterated, and resynchronises transparently when the
/// module's log no longer holds the changes it needs ([`Watched::Resync`]).
///
/// Ends after [`WatchOptions::idle_timeout`] without a change, and after
/// any error but [`Error::Interrupted`] (a signal during a wait), after
/// which iterating again goes on where it was.
pub struct Watcher<S> {
    source: S,
    options: WatchOptions,
    /// The generation seen up to (`None`: not read yet).
    since: Option<u64>,
    pending: VecDeque<Watched>,
    /// When the idle timeout runs out (set at the first call).
    deadline: Option<Instant>,
    /// Longest wait of one call.
    call_timeout: Duration,
    done: bool,
}

impl<S: WatchSource> Watcher<S> {
    /// A watcher of `source`; nothing is asked before the first item.
    pub fn new(source: S, options: WatchOptions) -> Self {
        Watcher {
            since: options.since,
            source,
            options,
            pending: VecDeque::new(),
            deadline: None,
            call_timeout: WATCHER_CALL_TIMEOUT,
            done: false,
        }
    }

    /// Sets the longest wait of one call (default [`WATCHER_CALL_TIMEOUT`],
    /// at most [`WATCH_MAX_TIMEOUT`]).
    pub fn set_call_timeout(&mut self, timeout: Duration) {
        self.call_timeout = timeout.min(WATCH_MAX_TIMEOUT);
    }

    /// The generation every item so far brings the watcher up to (`None`
    /// before the first call).
    pub fn generation(&self) -> Option<u64> {
        self.since
    }

    /// The source watched.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn reset_deadline(&mut self) {
        self.deadline = self.options.idle_timeout.map(|d| Instant::now() + d);
    }

    /// Calls until there are items, the idle timeout ran out (`Ok(false)`)
    /// or a call failed.
    fn fill(&mut self) -> Result<bool> {
        let since = match self.since {
            Some(s) => s,
            None => {
                let g = self.source.current_generation()?;
                self.since = Some(g);
                g
            }
        };
        if self.deadline.is_none() {
            self.reset_deadline();
        }
        let mut since = since;
        loop {
            let wait = match self.deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(self.call_timeout),
                None => self.call_timeout,
            };
            let reply =
                self.source
                    .watch_once(since, &self.options.prefix, wait, self.options.values)?;
            if reply.gap {
                let (generation, entries) = self.source.resync_snapshot(&self.options.prefix)?;
                self.pending.push_back(Watched::Resync {
                    after: since,
                    generation,
                });
                let values = self.options.values;
                self.pending.extend(entries.into_iter().map(|e| {
                    Watched::Change(Change {
                        generation: e.version,
                        last: generation,
                        kind: ChangeKind::Put,
                        key: e.key,
                        value: values.then_some(e.value),
                    })
                }));
                self.since = Some(generation);
                self.reset_deadline();
                return Ok(true);
            }
            since = reply.generation;
            self.since = Some(since);
            if !reply.changes.is_empty() {
                self.pending
                    .extend(reply.changes.into_iter().map(Watched::Change));
                self.reset_deadline();
                return Ok(true);
            }
            if reply.more {
                continue;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }
}

impl<S: WatchSource> Iterator for Watcher<S> {
    type Item = Result<Watched>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(w) = self.pending.pop_front() {
            return Some(Ok(w));
        }
        if self.done {
            return None;
        }
        match self.fill() {
            Ok(true) => self.pending.pop_front().map(Ok),
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e @ Error::Interrupted) => Some(Err(e)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::{EventHeader, WatchPageWriter, WatchReplyHeader};
    use std::cell::RefCell;

    fn event(
        generation: u64,
        last: u64,
        kind: EventKind,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> (EventHeader, Vec<u8>, Vec<u8>) {
        let h = EventHeader {
            generation,
            last,
            kind,
            key_len: key.len() as u16,
            value_len: value.map(|v| v.len() as u32),
        };
        (h, key.to_vec(), value.unwrap_or_default().to_vec())
    }

    fn page(header: WatchReplyHeader, events: &[(EventHeader, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut buf = vec![0xa5u8; 4096];
        let mut w = WatchPageWriter::new(&mut buf).unwrap();
        for (h, k, v) in events {
            assert!(w.push(h, k, v));
        }
        let n = w.finish(header);
        buf.truncate(n);
        buf
    }

    #[test]
    fn replies_decode_to_changes() {
        let events = [
            event(5, 5, EventKind::Put, b"a", Some(b"1")),
            event(6, 8, EventKind::Flush, b"", None),
            event(7, 8, EventKind::Put, b"b", None),
            event(8, 8, EventKind::Del, b"c", None),
            event(9, 9, EventKind::Expire, b"d", None),
            event(10, 10, EventKind::Put, b"e", Some(b"")),
        ];
        let header = WatchReplyHeader {
            generation: 11,
            more: true,
            oldest: 2,
            ..Default::default()
        };
        let reply = decode_reply(&page(header, &events), 4).unwrap();
        assert_eq!(
            (reply.generation, reply.gap, reply.more, reply.oldest),
            (11, false, true, 2)
        );
        let got: Vec<_> = reply
            .changes
            .iter()
            .map(|c| {
                (
                    c.generation,
                    c.last,
                    c.kind.name(),
                    &c.key[..],
                    c.value.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (5, 5, "put", &b"a"[..], Some(&b"1"[..])),
                (6, 8, "flush", b"", None),
                (7, 8, "put", b"b", None),
                (8, 8, "delete", b"c", None),
                (9, 9, "expire", b"d", None),
                (10, 10, "put", b"e", Some(b"")),
            ]
        );
        // A gap: no events, oldest says from where the log answers.
        let gap = WatchReplyHeader {
            generation: 40,
            gap: true,
            oldest: 30,
            ..Default::default()
        };
        let reply = decode_reply(&page(gap, &[]), 3).unwrap();
        assert!(reply.gap && reply.changes.is_empty() && reply.oldest == 30);
    }

    #[test]
    fn malformed_replies_are_refused() {
        let header = WatchReplyHeader {
            generation: 9,
            ..Default::default()
        };
        let ok = page(header, &[event(6, 6, EventKind::Put, b"a", None)]);
        assert!(decode_reply(&ok, 5).is_ok());
        // An event at or before `since`, or after the reply's generation.
        assert!(matches!(
            decode_reply(&ok, 6),
            Err(Error::BadReply("watch"))
        ));
        let past = page(
            WatchReplyHeader {
                generation: 5,
                ..Default::default()
            },
            &[event(6, 6, EventKind::Put, b"a", None)],
        );
        assert!(matches!(
            decode_reply(&past, 4),
            Err(Error::BadReply("watch"))
        ));
        // Truncated: the header's size past the bytes.
        assert!(matches!(
            decode_reply(&ok[..ok.len() - 8], 5),
            Err(Error::BadReply(_))
        ));
        assert!(matches!(decode_reply(&ok[..8], 5), Err(Error::BadReply(_))));
    }

    #[test]
    fn timeouts_round_up_and_the_maximum_is_kept() {
        assert_eq!(timeout_ms(Duration::ZERO).unwrap(), 0);
        assert_eq!(timeout_ms(Duration::from_micros(1)).unwrap(), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1500)).unwrap(), 2);
        assert_eq!(timeout_ms(WATCH_MAX_TIMEOUT).unwrap(), 60_000);
        assert!(matches!(
            timeout_ms(WATCH_MAX_TIMEOUT + Duration::from_nanos(1)),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn buffers_always_hold_the_request() {
        let prefix = [b'p'; MAX_KEY_LEN];
        for page_bytes in [0, 1, codec::WATCH_REPLY_SIZE, WATCH_PAGE_BYTES] {
            let req = WatchRequest {
                since: 3,
                timeout_ms: 7,
                prefix: &prefix,
                values: true,
            };
            let mut buf = vec![0u8; watch_buffer_len(page_bytes, &req)];
            assert!(buf.len() >= page_bytes);
            let n = req.encode(&mut buf);
            assert_eq!(WatchRequest::parse(&buf[..n], buf.len() as i32), Ok(req));
        }
    }

    /// A call's `(since, prefix, timeout, values)`.
    type Call = (u64, Vec<u8>, Duration, bool);

    /// A table stand-in: answers each call with the next scripted reply
    /// and records the calls.
    #[derive(Default)]
    struct Script {
        generation: u64,
        replies: RefCell<VecDeque<Result<WatchReply>>>,
        snapshot: (u64, Vec<Entry>),
        calls: RefCell<Vec<Call>>,
        snapshots: RefCell<usize>,
    }

    impl WatchSource for Script {
        fn current_generation(&self) -> Result<u64> {
            Ok(self.generation)
        }

        fn watch_once(&self, s: u64, p: &[u8], t: Duration, v: bool) -> Result<WatchReply> {
            self.calls.borrow_mut().push((s, p.to_vec(), t, v));
            self.replies.borrow_mut().pop_front().unwrap_or_else(|| {
                Ok(WatchReply {
                    generation: s,
                    ..Default::default()
                })
            })
        }

        fn resync_snapshot(&self, _prefix: &[u8]) -> Result<(u64, Vec<Entry>)> {
            *self.snapshots.borrow_mut() += 1;
            Ok(self.snapshot.clone())
        }
    }

    fn put(generation: u64, last: u64, key: &[u8]) -> Change {
        Change {
            generation,
            last,
            kind: ChangeKind::Put,
            key: key.to_vec(),
            value: None,
        }
    }

    fn reply(generation: u64, changes: Vec<Change>) -> Result<WatchReply> {
        Ok(WatchReply {
            generation,
            changes,
            ..Default::default()
        })
    }

    #[test]
    fn a_watcher_starts_at_the_table_s_generation_and_follows_replies() {
        let script = Script {
            generation: 7,
            replies: RefCell::new(VecDeque::from([
                reply(9, vec![put(8, 9, b"a"), put(9, 9, b"b")]),
                // Filtered out: nothing to yield, the generation moves on.
                reply(12, vec![]),
                reply(13, vec![put(13, 13, b"c")]),
            ])),
            ..Default::default()
        };
        let options = WatchOptions {
            prefix: b"p".to_vec(),
            values: true,
            ..Default::default()
        };
        let mut w = Watcher::new(&script, options);
        let got: Vec<_> = w.by_ref().take(3).map(|r| r.unwrap()).collect();
        assert_eq!(
            got,
            [
                Watched::Change(put(8, 9, b"a")),
                Watched::Change(put(9, 9, b"b")),
                Watched::Change(put(13, 13, b"c")),
            ]
        );
        assert_eq!(w.generation(), Some(13));
        let calls = script.calls.borrow();
        let sinces: Vec<u64> = calls.iter().map(|c| c.0).collect();
        assert_eq!(sinces, [7, 9, 12]);
        assert!(calls
            .iter()
            .all(|c| c.1 == b"p" && c.2 == WATCHER_CALL_TIMEOUT && c.3));
    }

    #[test]
    fn a_gap_resyncs_from_a_snapshot_and_watches_on_from_it() {
        let entry = |key: &[u8], version| Entry {
            key: key.to_vec(),
            value: b"v".to_vec(),
            version,
            ttl: None,
        };
        let gap = WatchReply {
            generation: 50,
            gap: true,
            oldest: 40,
            ..Default::default()
        };
        for values in [false, true] {
            let script = Script {
                replies: RefCell::new(VecDeque::from([
                    Ok(gap.clone()),
                    reply(61, vec![put(61, 61, b"z")]),
                ])),
                snapshot: (60, vec![entry(b"a", 12), entry(b"b", 59)]),
                ..Default::default()
            };
            let options = WatchOptions {
                since: Some(3),
                values,
                ..Default::default()
            };
            let got: Vec<_> = Watcher::new(&script, options)
                .take(4)
                .map(|r| r.unwrap())
                .collect();
            let value = values.then(|| b"v".to_vec());
            let snap = |generation, key: &[u8]| {
                Watched::Change(Change {
                    value: value.clone(),
                    ..put(generation, 60, key)
                })
            };
            assert_eq!(
                got,
                [
                    Watched::Resync {
                        after: 3,
                        generation: 60
                    },
                    snap(12, b"a"),
                    snap(59, b"b"),
                    Watched::Change(put(61, 61, b"z")),
                ]
            );
            let sinces: Vec<u64> = script.calls.borrow().iter().map(|c| c.0).collect();
            assert_eq!(sinces, [3, 60], "watches on from the snapshot");
            assert_eq!(*script.snapshots.borrow(), 1);
        }
    }

    #[test]
    fn the_idle_timeout_ends_the_iteration_and_bounds_each_wait() {
        let script = Script {
            generation: 4,
            replies: RefCell::new(VecDeque::from([reply(5, vec![put(5, 5, b"a")])])),
            ..Default::default()
        };
        let options = WatchOptions {
            idle_timeout: Some(Duration::from_millis(30)),
            ..Default::default()
        };
        let mut w = Watcher::new(&script, options);
        assert_eq!(w.next().unwrap().unwrap(), Watched::Change(put(5, 5, b"a")));
        assert!(w.next().is_none(), "no change within the idle timeout");
        assert!(w.next().is_none(), "and it stays ended");
        let calls = script.calls.borrow();
        assert!(calls.len() >= 2);
        assert!(calls.iter().all(|c| c.2 <= Duration::from_millis(30)));
        // A zero timeout: one call that does not wait, then the end.
        let script = Script::default();
        let options = WatchOptions {
            idle_timeout: Some(Duration::ZERO),
            ..Default::default()
        };
        assert_eq!(Watcher::new(&script, options).count(), 0);
        assert_eq!(script.calls.borrow().len(), 1);
        assert_eq!(script.calls.borrow()[0].2, Duration::ZERO);
    }

    #[test]
    fn an_interrupted_wait_is_retried_and_other_errors_end_the_iteration() {
        let script = Script {
            generation: 2,
            replies: RefCell::new(VecDeque::from([
                Err(Error::Interrupted),
                reply(3, vec![put(3, 3, b"a")]),
                Err(Error::PermissionDenied),
            ])),
            ..Default::default()
        };
        let mut w = Watcher::new(&script, WatchOptions::default());
        assert!(matches!(w.next(), Some(Err(Error::Interrupted))));
        assert_eq!(w.next().unwrap().unwrap(), Watched::Change(put(3, 3, b"a")));
        assert!(matches!(w.next(), Some(Err(Error::PermissionDenied))));
        assert!(w.next().is_none());
        let sinces: Vec<u64> = script.calls.borrow().iter().map(|c| c.0).collect();
        assert_eq!(sinces, [2, 2, 3], "the interrupted call is made again");
    }

    #[test]
    fn eintr_is_its_own_error() {
        let e = Error::from_errno("watch", libc::EINTR, crate::DEFAULT_OPTBASE);
        assert!(matches!(e, Error::Interrupted), "{e:?}");
        assert_eq!(e.errno(), Some(libc::EINTR));
    }
}
