//! Restoring a batch or save file ([`crate::batchfile`]): in one atomic
//! BATCH request when it fits, else in several, in file order, stopping at
//! the first failure with a report of what the table then holds. With
//! `flush`, the table is emptied first — only the keys under the save's
//! prefix, for a save of a prefix. README, "Batch and save files", says
//! which restores are atomic. The entries of a save keep the time they had
//! left at the save, less the time since; those that expired in between
//! are not restored ([`File::expire`]).

use crate::batchfile::{File, Kind};
use crate::text::{encode_text, Encoding};
use crate::{Batch, Error, Nfkv, MAX_BATCH_OPS, MAX_REQUEST_LEN, SNAPSHOT_RETRIES};
use std::borrow::Cow;
use std::time::SystemTime;

/// Restarts of a prefix restore whose deletes raced another writer.
pub const RESTORE_RETRIES: usize = 10;

/// Why a restore did not (fully) happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// `flush` of a file in the first save format, which does not say which
    /// prefix it holds. Nothing was applied.
    #[error("this file is in the first save format, which does not record the prefix it was saved with; restore it without flush (after a flush, if it holds the whole table)")]
    UnknownPrefix,
    /// Reading the table before applying failed. Nothing was applied.
    #[error(transparent)]
    Table(#[from] Error),
    /// The restore was one batch, and the module refused it: nothing was
    /// applied.
    #[error("{error}; nothing was restored (the restore is one atomic batch)")]
    Refused { error: Error },
    /// Batch `failed` (from 0) of several failed; those before it were
    /// applied. `report` says what the table holds.
    #[error("{report}")]
    Stopped {
        error: Error,
        failed: usize,
        batches: usize,
        report: String,
    },
}

impl RestoreError {
    /// The library error behind this one, if any.
    pub fn error(&self) -> Option<&Error> {
        match self {
            RestoreError::UnknownPrefix => None,
            RestoreError::Table(error)
            | RestoreError::Refused { error }
            | RestoreError::Stopped { error, .. } => Some(error),
        }
    }
}

/// A checked restore of `file`, ready to [`run`](Restore::run).
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    file: &'a File,
    flush: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    /// Records of the file applied.
    pub records: usize,
    /// Puts of a save not applied because their entry's TTL ran out
    /// between the save and the restore.
    pub expired: usize,
    /// BATCH requests it took.
    pub batches: usize,
}

impl<'a> Restore<'a> {
    /// A restore of `file`; `flush`: empty the table first (for a save of a
    /// prefix: the keys under it). A file of the first save format cannot
    /// be restored with `flush`, as it does not record its prefix.
    pub fn new(file: &'a File, flush: bool) -> Result<Self, RestoreError> {
        let first_format = file.header.as_ref().is_some_and(|h| h.prefix.is_none());
        if flush && !file.flush && first_format {
            return Err(RestoreError::UnknownPrefix);
        }
        Ok(Restore { file, flush })
    }

    /// Applies the file through `kv`, with the time since the save counted
    /// against its TTLs ([`File::expire`], at the time of the call). A
    /// failure report writes keys in `enc`.
    pub fn run(&self, kv: &Nfkv, enc: Encoding) -> Result<Restored, RestoreError> {
        self.run_at(kv, enc, SystemTime::now())
    }

    /// [`Restore::run`] as if at `now`.
    pub fn run_at(
        &self,
        kv: &Nfkv,
        enc: Encoding,
        now: SystemTime,
    ) -> Result<Restored, RestoreError> {
        let (file, expired) = self.at(now);
        let file = &*file;
        let prefix = file.header.as_ref().and_then(|h| h.prefix.as_deref());
        let max_ops = match kv.limits().max_batch_ops as usize {
            0 => MAX_BATCH_OPS,
            n => n.min(MAX_BATCH_OPS),
        };
        // Restarts only when a prefix flush raced another writer: the batch
        // that deletes the keys under the prefix failed and the table had
        // changed since they were listed.
        let mut attempt = 0;
        'restart: loop {
            let (mode, generation) = match prefix {
                _ if file.flush => (Flush::All, None),
                Some(p) if self.flush && !p.is_empty() => {
                    let (generation, entries) = kv.snapshot(p, SNAPSHOT_RETRIES)?;
                    let keys = entries.into_iter().map(|e| e.key).collect();
                    let deletes = prefix_deletes(file, keys);
                    (Flush::Prefix(p.to_vec(), deletes), Some(generation))
                }
                _ if self.flush => (Flush::All, None),
                _ => (Flush::None, None),
            };
            let steps = plan(file, &mode, max_ops, MAX_REQUEST_LEN);
            for (i, step) in steps.iter().enumerate() {
                let Err(error) = kv.apply(&step.batch) else {
                    continue;
                };
                let raced = i == 0
                    && attempt < RESTORE_RETRIES
                    && generation.is_some_and(|g| kv.info().is_ok_and(|info| info.generation != g));
                if raced {
                    attempt += 1;
                    continue 'restart;
                }
                if steps.len() == 1 {
                    return Err(RestoreError::Refused { error });
                }
                let mut error_text = error.to_string();
                if expired > 0 {
                    error_text += &format!(
                        " ({expired} puts of the file were left out: their entries expired since the save; record numbers count the others)"
                    );
                }
                let report = partial_state(file, &mode, &steps, i, enc, &error_text);
                return Err(RestoreError::Stopped {
                    error,
                    failed: i,
                    batches: steps.len(),
                    report,
                });
            }
            return Ok(Restored {
                records: file.records.len(),
                expired,
                batches: steps.len(),
            });
        }
    }

    /// The file as restored at `now`: the time since the save counted
    /// against its TTLs (a copy only when there is a TTL to change), and
    /// how many puts expired in between.
    fn at(&self, now: SystemTime) -> (Cow<'a, File>, usize) {
        let timed = self.file.header.as_ref().is_some_and(|h| h.time.is_some())
            && self.file.records.iter().any(|r| r.cond.ttl.ms.is_some());
        if !timed {
            return (Cow::Borrowed(self.file), 0);
        }
        let mut file = self.file.clone();
        let expired = file.expire(now);
        (Cow::Owned(file), expired)
    }
}

/// How a restore empties the table first.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Flush {
    /// It does not.
    None,
    /// The whole table (NFKV_BATCH_F_FLUSH in the first batch).
    All,
    /// Only the keys under a prefix: the save was `--prefix`; these keys
    /// (present now, not first written by a plain put of the file) are
    /// deleted before the file's records.
    Prefix(Vec<u8>, Vec<Vec<u8>>),
}

/// One BATCH request of a restore and what it holds.
#[derive(Debug)]
struct Step {
    batch: Batch,
    /// Deletes of keys under the prefix in this batch.
    prefix_deletes: usize,
    /// File records in this batch: indexes `records.start..records.end`.
    records: std::ops::Range<usize>,
}

impl Step {
    /// An empty step whose records start at file record `start`.
    fn at(start: usize) -> Step {
        Step {
            batch: Batch::new(),
            prefix_deletes: 0,
            records: start..start,
        }
    }
}

/// Splits a restore into BATCH requests of at most `max_ops` records and
/// `max_bytes` bytes each: the flush (or prefix deletes) first, then the
/// file's records in order.
fn plan(file: &File, flush: &Flush, max_ops: usize, max_bytes: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut cur = Step::at(0);
    if *flush == Flush::All {
        cur.batch.flush();
    }
    let fits = |s: &Step, key: &[u8], value: &[u8]| {
        s.batch.is_empty_of_ops()
            || (s.batch.len() < max_ops
                && s.batch.encoded_len() + Batch::record_len(key, value) <= max_bytes)
    };
    let deletes: &[Vec<u8>] = match flush {
        Flush::Prefix(_, keys) => keys,
        _ => &[],
    };
    for key in deletes {
        if !fits(&cur, key, b"") {
            let start = cur.records.end;
            steps.push(std::mem::replace(&mut cur, Step::at(start)));
        }
        cur.batch.delete(key, None);
        cur.prefix_deletes += 1;
    }
    for (i, r) in file.records.iter().enumerate() {
        if !fits(&cur, &r.key, &r.value) {
            steps.push(std::mem::replace(&mut cur, Step::at(i)));
        }
        r.add_to(&mut cur.batch);
        cur.records.end = i + 1;
    }
    steps.push(cur);
    steps
}

/// The keys a prefix restore must delete: those of `current` that no plain
/// put of the file writes first (a plain put overwrites them anyway, with
/// or without a TTL; one that keeps the present entry's TTL does not count).
fn prefix_deletes(file: &File, current: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut first: std::collections::HashMap<&[u8], bool> = std::collections::HashMap::new();
    for r in &file.records {
        let c = r.cond;
        let plain = r.kind == Kind::Put
            && !c.create_only
            && !c.replace_only
            && c.if_version.is_none()
            && !c.ttl.keep;
        first.entry(&r.key).or_insert(plain);
    }
    current
        .into_iter()
        .filter(|k| first.get(k.as_slice()) != Some(&true))
        .collect()
}

/// Says what state the table is in after step `failed` of `steps` failed
/// (steps before it applied, it and later ones not).
fn partial_state(
    file: &File,
    flush: &Flush,
    steps: &[Step],
    failed: usize,
    enc: Encoding,
    error: &str,
) -> String {
    let total = file.records.len();
    let line_of = |i: usize| file.records.get(i).map_or(0, |r| r.line);
    let where_ = match steps.get(failed).map(|s| &s.records) {
        Some(records) if !records.is_empty() => format!(
            "at batch {} of {} (records {}..{} of {}, lines {}..{})",
            failed + 1,
            steps.len(),
            records.start + 1,
            records.end,
            total,
            line_of(records.start),
            line_of(records.end - 1)
        ),
        _ => format!(
            "in batch {} of {} (deleting keys under the prefix)",
            failed + 1,
            steps.len()
        ),
    };
    let applied = steps.get(..failed).unwrap_or(steps);
    let done = applied.last().map_or(0, |p| p.records.end);
    let deleted: usize = applied.iter().map(|p| p.prefix_deletes).sum();
    let written = if done == 0 {
        "no record of the file".to_string()
    } else {
        format!("records 1..{done} of the file")
    };
    let state = match flush {
        Flush::All if failed > 0 => {
            format!("the table was flushed and holds {written} and nothing else")
        }
        Flush::Prefix(p, keys) if failed > 0 => format!(
            "{deleted} of the {} keys under prefix {} to delete were deleted; the table holds {written} besides what it held before",
            keys.len(),
            encode_text(p, enc)
        ),
        _ if failed > 0 => format!("the table holds {written} besides what it held before"),
        _ => "the table is unchanged".to_string(),
    };
    format!("restore stopped {where_}: {error}; {state}; nothing of the failed batch was applied")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batchfile::tests::parse;
    use crate::batchfile::Record;
    use proptest::prelude::*;

    fn file_of(n: usize, value_len: usize) -> File {
        File {
            header: None,
            flush: false,
            records: (0..n)
                .map(|i| Record {
                    line: i + 2,
                    kind: Kind::Put,
                    cond: crate::Condition::default(),
                    key: format!("k{i:06}").into_bytes(),
                    value: vec![b'v'; value_len],
                })
                .collect(),
        }
    }

    #[test]
    fn plans_respect_both_caps_and_keep_order() {
        let file = file_of(10, 100);
        let one = plan(&file, &Flush::All, 100, 1 << 20);
        assert_eq!(one.len(), 1);
        assert!(one[0].batch.flushes() && one[0].records == (0..10));
        let by_ops = plan(&file, &Flush::All, 4, 1 << 20);
        assert_eq!(
            by_ops.iter().map(|s| s.records.clone()).collect::<Vec<_>>(),
            vec![0..4, 4..8, 8..10]
        );
        assert!(by_ops[0].batch.flushes() && !by_ops[1].batch.flushes());
        let rec = Batch::record_len(b"k000000", &[0; 100]);
        let by_bytes = plan(&file, &Flush::None, 100, 8 + 3 * rec);
        assert_eq!(by_bytes.len(), 4);
        for s in &by_bytes {
            assert!(s.batch.encode().unwrap().len() <= 8 + 3 * rec);
        }
        let deletes = vec![b"p1".to_vec(), b"p2".to_vec(), b"p3".to_vec()];
        let p = plan(&file, &Flush::Prefix(b"p".to_vec(), deletes), 4, 1 << 20);
        assert_eq!(
            p.iter()
                .map(|s| (s.prefix_deletes, s.records.clone()))
                .collect::<Vec<_>>(),
            vec![(3, 0..1), (0, 1..5), (0, 5..9), (0, 9..10)]
        );
    }

    #[test]
    fn partial_state_says_what_the_table_holds() {
        let file = file_of(10, 1);
        let steps = plan(&file, &Flush::All, 4, 1 << 20);
        let m = partial_state(&file, &Flush::All, &steps, 2, Encoding::Text, "table full");
        assert_eq!(m, "restore stopped at batch 3 of 3 (records 9..10 of 10, lines 10..11): table full; the table was flushed and holds records 1..8 of the file and nothing else; nothing of the failed batch was applied");
        let m = partial_state(&file, &Flush::None, &steps, 0, Encoding::Text, "e");
        assert!(m.contains("the table is unchanged"), "{m}");
        let deletes = (0..5).map(|i| vec![b'p', i]).collect();
        let prefix = Flush::Prefix(b"p ".to_vec(), deletes);
        let steps = plan(&file, &prefix, 4, 1 << 20);
        let m = partial_state(&file, &prefix, &steps, 0, Encoding::Text, "e");
        assert!(
            m.contains(
                "in batch 1 of 4 (deleting keys under the prefix): e; the table is unchanged"
            ),
            "{m}"
        );
        let m = partial_state(&file, &prefix, &steps, 1, Encoding::Hex, "e");
        assert!(
            m.contains("at batch 2 of 4 (records 1..3 of 10, lines 2..4)")
                && m.contains("4 of the 5 keys under prefix 7020 to delete were deleted; the table holds no record of the file besides"),
            "{m}"
        );
    }

    #[test]
    fn prefix_deletes_skip_keys_the_file_overwrites() {
        let f =
            parse("put a 1\nput --create b 2\ndel c\nput --ttl=5s e\nput --keep-ttl f\n").unwrap();
        let current = [&b"a"[..], b"b", b"c", b"d", b"e", b"f"].map(|k| k.to_vec());
        assert_eq!(
            prefix_deletes(&f, current.to_vec()),
            [&b"b"[..], b"c", b"d", b"f"].map(|k| k.to_vec())
        );
    }

    #[test]
    fn a_restore_leaves_out_what_expired_since_the_save() {
        let text = "# nfkv save v3 encoding=text prefix= entries=2 generation=1 time_ms=1000000\nput --ttl=300ms a\nput --ttl=5s b\nput c\n";
        let f = parse(text).unwrap();
        let r = Restore::new(&f, true).unwrap();
        let saved = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let (file, expired) = r.at(saved + std::time::Duration::from_secs(1));
        assert_eq!(expired, 1);
        assert!(matches!(file, Cow::Owned(_)));
        let keys: Vec<(&[u8], Option<u32>)> = file
            .records
            .iter()
            .map(|r| (&r.key[..], r.cond.ttl.ms))
            .collect();
        assert_eq!(keys, [(&b"b"[..], Some(4000)), (b"c", None)]);
        // The deletes of a prefix restore then include "a": its entry, if
        // still there, is not the saved one.
        assert_eq!(prefix_deletes(&file, vec![b"a".to_vec()]), [b"a".to_vec()]);
        // Without a TTL, or a save time, nothing is copied.
        let plain = parse("put --ttl=300ms a\n").unwrap();
        let r = Restore::new(&plain, false).unwrap();
        assert!(matches!(r.at(SystemTime::now()), (Cow::Borrowed(_), 0)));
    }

    #[test]
    fn flush_needs_a_file_that_records_its_prefix() {
        let v1 = parse("# nfkv save: 1 entries, generation 9, encoding text\nput k v\n").unwrap();
        assert!(matches!(
            Restore::new(&v1, true),
            Err(RestoreError::UnknownPrefix)
        ));
        assert!(Restore::new(&v1, false).is_ok());
        let v2 = parse("# nfkv save v2 encoding=text prefix= entries=1\nput k v\n").unwrap();
        assert!(Restore::new(&v2, true).is_ok());
        let flushing = parse("flush\nput k v\n").unwrap();
        assert!(Restore::new(&flushing, true).is_ok());
    }

    proptest! {
        #[test]
        fn plans_cover_every_record_once_within_the_caps(n in 0usize..60, value_len in 0usize..300, max_ops in 1usize..10, room in 0usize..2000) {
            let file = file_of(n, value_len);
            let max_bytes = 8 + Batch::record_len(b"k000000", &vec![0; value_len]) + room;
            let steps = plan(&file, &Flush::All, max_ops, max_bytes);
            let mut next = 0;
            for (i, s) in steps.iter().enumerate() {
                prop_assert_eq!(s.records.start, next);
                next = s.records.end;
                prop_assert!(s.batch.len() <= max_ops);
                prop_assert!(s.batch.encode().unwrap().len() <= max_bytes);
                prop_assert_eq!(s.batch.flushes(), i == 0);
            }
            prop_assert_eq!(next, n);
        }
    }
}
