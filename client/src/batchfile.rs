//! Batch and save files: the format `save` writes and `batch`/`restore`
//! read, and the plan that turns a file into one or more BATCH requests.
//!
//! Format (version 2), one record per line, fields separated by blanks:
//!
//! ```text
//! # nfkv save v2 encoding=text prefix=P entries=N generation=G
//! put [--create | --replace | --if-version=N]... [--] KEY [VALUE]
//! del [--if-version=N] [--] KEY
//! flush
//! ```
//!
//! Options are tokens starting with `-`, and only come between the verb and
//! the key; `--` ends them. KEY and VALUE are single tokens in the file's
//! encoding (no VALUE: the empty value); in the text encoding a key or value
//! never starts with `-` (a leading `-` is written `\x2d`), so no key or
//! value can be read as an option whatever its bytes spell. Blank lines and
//! lines starting with `#` are comments, except a first line starting with
//! `# nfkv save`: the header, whose encoding and prefix the reader honours.
//! `flush` may only come first. Files written by the first `save` (header
//! `# nfkv save: N entries, generation G, encoding E`, lines `put KEY
//! [VALUE]`) are read as they were written: every line a plain put.

use nfkv::{decode_text, encode_text, Batch, Condition, Encoding};
use std::io::BufRead;

/// Version of the format `save` writes.
pub const FORMAT_VERSION: u32 = 2;

/// The header line `save` writes.
pub fn header(enc: Encoding, prefix: &[u8], entries: usize, generation: u64) -> String {
    format!(
        "# nfkv save v{FORMAT_VERSION} encoding={} prefix={} entries={entries} generation={generation}",
        enc.name(),
        encode_text(prefix, enc)
    )
}

/// One record line of `save`: a plain put.
pub fn put_line(key: &[u8], value: &[u8], enc: Encoding) -> String {
    if value.is_empty() {
        format!("put {}", encode_text(key, enc))
    } else {
        format!("put {} {}", encode_text(key, enc), encode_text(value, enc))
    }
}

/// What a save header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version: 1 for the first `save`, else [`FORMAT_VERSION`].
    pub version: u32,
    pub encoding: Encoding,
    /// The `--prefix` of the save; `None` when the format did not record it.
    pub prefix: Option<Vec<u8>>,
    /// Entries announced, when recorded.
    pub entries: Option<u64>,
}

/// What kind of write a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Put,
    Del,
}

/// One record of a file, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub kind: Kind,
    pub cond: Condition,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A whole file, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct File {
    pub header: Option<Header>,
    /// A `flush` line came first.
    pub flush: bool,
    pub records: Vec<Record>,
}

fn encoding_named(name: &str) -> Option<Encoding> {
    [Encoding::Text, Encoding::Hex, Encoding::Base64]
        .into_iter()
        .find(|e| e.name() == name)
}

/// Parses a header line (`line` starts with `# nfkv save`).
fn parse_header(line: &str) -> Result<Header, String> {
    if let Some(rest) = line.strip_prefix("# nfkv save:") {
        // Version 1: "# nfkv save: N entries, generation G, encoding E".
        let enc = rest
            .rsplit_once("encoding ")
            .and_then(|(_, e)| encoding_named(e.trim()))
            .ok_or_else(|| format!("unreadable save header {line:?}"))?;
        let entries = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        return Ok(Header {
            version: 1,
            encoding: enc,
            prefix: None,
            entries,
        });
    }
    let mut words = line["# nfkv save".len()..].split_whitespace();
    let version = words
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| format!("unreadable save header {line:?}"))?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "the file is in save format v{version}; this nfkv reads v1 and v{FORMAT_VERSION}"
        ));
    }
    let mut encoding = None;
    let mut prefix = None;
    let mut entries = None;
    for w in words {
        match w.split_once('=') {
            Some(("encoding", e)) => {
                encoding = Some(encoding_named(e).ok_or_else(|| format!("unknown encoding {e:?}"))?)
            }
            Some(("prefix", p)) => prefix = Some(p.to_string()),
            Some(("entries", n)) => entries = n.parse().ok(),
            // Unknown fields (generation, later additions) are informative.
            _ => {}
        }
    }
    let encoding = encoding.ok_or("the save header names no encoding")?;
    let prefix = decode_text(prefix.as_deref().unwrap_or(""), encoding)
        .map_err(|e| format!("save header prefix: {e}"))?;
    Ok(Header {
        version,
        encoding,
        prefix: Some(prefix),
        entries,
    })
}

/// Reads a whole file. `cli_enc` is the encoding asked for on the command
/// line, `explicit` whether it was asked for (`--hex`, `--base64`): a header
/// naming another encoding is then refused rather than overridden.
pub fn read(
    reader: impl BufRead,
    cli_enc: Encoding,
    explicit: bool,
) -> Result<File, (usize, String)> {
    let mut file = File::default();
    let mut enc = cli_enc;
    for (n, line) in reader.split(b'\n').enumerate() {
        let lineno = n + 1;
        let line = line.map_err(|e| (lineno, e.to_string()))?;
        let line = String::from_utf8(line).map_err(|_| {
            (
                lineno,
                "not UTF-8 text (raw bytes must be written as \\xNN)".to_string(),
            )
        })?;
        let line = line.trim();
        if lineno == 1 && line.starts_with("# nfkv save") {
            let h = parse_header(line).map_err(|e| (lineno, e))?;
            if explicit && h.encoding != cli_enc {
                return Err((
                    lineno,
                    format!(
                        "the file is in encoding {}, but --{} was given",
                        h.encoding.name(),
                        cli_enc.name()
                    ),
                ));
            }
            enc = h.encoding;
            file.header = Some(h);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let legacy = file.header.as_ref().is_some_and(|h| h.version == 1);
        parse_line(line, enc, legacy, lineno, &mut file).map_err(|e| (lineno, e))?;
    }
    Ok(file)
}

/// One record line.
fn parse_line(
    line: &str,
    enc: Encoding,
    legacy: bool,
    lineno: usize,
    file: &mut File,
) -> Result<(), String> {
    let mut tokens = line.split_whitespace();
    let verb = tokens.next().unwrap_or_default();
    let mut cond = Condition::default();
    let mut args = Vec::new();
    let mut options_done = legacy;
    for t in tokens {
        if options_done || !t.starts_with('-') {
            options_done = true;
            args.push(t);
            continue;
        }
        match t {
            "--" => options_done = true,
            "--create" => cond.create_only = true,
            "--replace" => cond.replace_only = true,
            _ => match t.strip_prefix("--if-version=") {
                Some(v) => {
                    let v = v
                        .parse::<u64>()
                        .ok()
                        .filter(|&v| v > 0)
                        .ok_or_else(|| format!("bad version in {t}"))?;
                    cond.if_version = Some(v);
                }
                None => {
                    return Err(format!(
                        "unknown option {t:?} (a key starting with '-' is written \\x2d..., or after --)"
                    ))
                }
            },
        }
    }
    let bytes = |t: &str| decode_text(t, enc);
    let kind = match verb {
        "put" => Kind::Put,
        "del" | "delete" => Kind::Del,
        "flush" if legacy => return Err("a v1 save file holds only put lines".into()),
        "flush" if cond != Condition::default() || !args.is_empty() => {
            return Err("flush takes no arguments".into())
        }
        "flush" if file.flush || !file.records.is_empty() => {
            return Err("flush must come first".into())
        }
        "flush" => {
            file.flush = true;
            return Ok(());
        }
        _ => return Err(format!("unknown command {verb:?} (put, del, flush)")),
    };
    if legacy && kind != Kind::Put {
        return Err("a v1 save file holds only put lines".into());
    }
    if cond.create_only && (cond.replace_only || cond.if_version.is_some()) {
        return Err("--create excludes --replace and --if-version".into());
    }
    if kind == Kind::Del && (cond.create_only || cond.replace_only) {
        return Err("del takes only --if-version".into());
    }
    let (key, value) = match (kind, args.as_slice()) {
        (_, []) => return Err(format!("{verb} needs a key")),
        (Kind::Put, [k]) => (bytes(k)?, Vec::new()),
        (Kind::Put, [k, v]) => (bytes(k)?, bytes(v)?),
        (Kind::Del, [k]) => (bytes(k)?, Vec::new()),
        _ => {
            return Err(format!(
                "too many fields in {line:?}: options go before the key (put --create KEY VALUE)"
            ))
        }
    };
    if key.is_empty() || key.len() > nfkv::MAX_KEY_LEN {
        return Err(format!(
            "key must be 1..={} bytes, not {}",
            nfkv::MAX_KEY_LEN,
            key.len()
        ));
    }
    file.records.push(Record {
        line: lineno,
        kind,
        cond,
        key,
        value,
    });
    Ok(())
}

impl File {
    /// The file as one batch (`flush`: empty the table first), for `batch`.
    pub fn to_batch(&self, flush: bool) -> Batch {
        let mut b = Batch::new();
        if flush || self.flush {
            b.flush();
        }
        for r in &self.records {
            add(&mut b, r);
        }
        b
    }
}

fn add(b: &mut Batch, r: &Record) {
    match r.kind {
        Kind::Put => b.put(&r.key, &r.value, r.cond),
        Kind::Del => b.delete(&r.key, r.cond.if_version),
    };
}

/// How a restore empties the table first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flush {
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
pub struct Step {
    pub batch: Batch,
    /// Deletes of keys under the prefix in this batch.
    pub prefix_deletes: usize,
    /// File records in this batch: indexes `records.start..records.end`.
    pub records: std::ops::Range<usize>,
}

/// Splits a restore into BATCH requests of at most `max_ops` records and
/// `max_bytes` bytes each: the flush (or prefix deletes) first, then the
/// file's records in order.
pub fn plan(file: &File, flush: &Flush, max_ops: usize, max_bytes: usize) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut cur = Step {
        batch: Batch::new(),
        prefix_deletes: 0,
        records: 0..0,
    };
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
            steps.push(std::mem::replace(
                &mut cur,
                Step {
                    batch: Batch::new(),
                    prefix_deletes: 0,
                    records: start..start,
                },
            ));
        }
        cur.batch.delete(key, None);
        cur.prefix_deletes += 1;
    }
    for (i, r) in file.records.iter().enumerate() {
        if !fits(&cur, &r.key, &r.value) {
            steps.push(std::mem::replace(
                &mut cur,
                Step {
                    batch: Batch::new(),
                    prefix_deletes: 0,
                    records: i..i,
                },
            ));
        }
        add(&mut cur.batch, r);
        cur.records.end = i + 1;
    }
    steps.push(cur);
    steps
}

/// The keys a prefix restore must delete: those of `current` that no plain
/// put of the file writes first (a plain put overwrites them anyway).
pub fn prefix_deletes(file: &File, current: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut first: std::collections::HashMap<&[u8], bool> = std::collections::HashMap::new();
    for r in &file.records {
        first
            .entry(&r.key)
            .or_insert(r.kind == Kind::Put && r.cond == Condition::default());
    }
    current
        .into_iter()
        .filter(|k| first.get(k.as_slice()) != Some(&true))
        .collect()
}

/// Says what state the table is in after step `failed` of `steps` failed
/// (steps before it applied, it and later ones not).
pub fn partial_state(
    file: &File,
    flush: &Flush,
    steps: &[Step],
    failed: usize,
    enc: Encoding,
    error: &str,
) -> String {
    let total = file.records.len();
    let s = &steps[failed];
    let line_of = |i: usize| file.records.get(i).map_or(0, |r| r.line);
    let where_ = if s.records.is_empty() {
        format!(
            "in batch {} of {} (deleting keys under the prefix)",
            failed + 1,
            steps.len()
        )
    } else {
        format!(
            "at batch {} of {} (records {}..{} of {}, lines {}..{})",
            failed + 1,
            steps.len(),
            s.records.start + 1,
            s.records.end,
            total,
            line_of(s.records.start),
            line_of(s.records.end - 1)
        )
    };
    let done = steps[..failed].last().map_or(0, |p| p.records.end);
    let deleted: usize = steps[..failed].iter().map(|p| p.prefix_deletes).sum();
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
    use proptest::prelude::*;

    fn parse(text: &str, enc: Encoding) -> Result<File, (usize, String)> {
        read(text.as_bytes(), enc, false)
    }

    fn save(entries: &[(Vec<u8>, Vec<u8>)], enc: Encoding, prefix: &[u8]) -> String {
        let mut s = header(enc, prefix, entries.len(), 7) + "\n";
        for (k, v) in entries {
            s += &put_line(k, v, enc);
            s.push('\n');
        }
        s
    }

    fn puts(file: &File) -> Vec<(Vec<u8>, Vec<u8>)> {
        file.records
            .iter()
            .map(|r| {
                assert_eq!((r.kind, r.cond), (Kind::Put, Condition::default()));
                (r.key.clone(), r.value.clone())
            })
            .collect()
    }

    #[test]
    fn flag_words_are_keys_and_values_in_a_save() {
        let words: Vec<&[u8]> = vec![
            b"create",
            b"replace",
            b"if-version=3",
            b"--create",
            b"--",
            b"-",
            b"flush",
            b"#x",
            b"put",
        ];
        let mut entries = Vec::new();
        for k in &words {
            for v in &words {
                entries.push((k.to_vec(), v.to_vec()));
            }
            entries.push((k.to_vec(), Vec::new()));
        }
        for enc in [Encoding::Text, Encoding::Hex, Encoding::Base64] {
            let file = parse(&save(&entries, enc, b""), Encoding::Text).unwrap();
            assert_eq!(puts(&file), entries, "{enc:?}");
            assert!(!file.flush);
        }
    }

    #[test]
    fn options_only_before_the_key() {
        let f = parse(
            "put --create k v\nput --replace --if-version=4 k\ndel --if-version=2 -- k\nput -- \\x2dk v\n",
            Encoding::Text,
        )
        .unwrap();
        assert!(f.records[0].cond.create_only);
        assert_eq!(f.records[1].cond.if_version, Some(4));
        assert!(f.records[1].cond.replace_only && f.records[1].value.is_empty());
        assert_eq!(
            (f.records[2].kind, f.records[2].cond.if_version),
            (Kind::Del, Some(2))
        );
        assert_eq!(f.records[3].key, b"-k");
        // The old trailing-flag syntax is refused, not misread.
        let e = parse("put k v create\n", Encoding::Text).unwrap_err();
        assert!(
            e.0 == 1 && e.1.contains("options go before the key"),
            "{e:?}"
        );
        assert!(parse("put -k v\n", Encoding::Text).is_err());
        assert!(parse("del --create k\n", Encoding::Text).is_err());
        assert!(parse("put --create --replace k\n", Encoding::Text).is_err());
        assert!(parse("put --if-version=0 k\n", Encoding::Text).is_err());
        assert!(parse("put k v\nflush\n", Encoding::Text).is_err());
        assert!(parse("frob k\n", Encoding::Text).is_err());
        assert!(parse("flush\nput k\n", Encoding::Text).unwrap().flush);
    }

    #[test]
    fn the_header_encoding_and_prefix_are_honoured() {
        let entries = vec![(b"k\x00".to_vec(), b"\xffv".to_vec())];
        let text = save(&entries, Encoding::Hex, b"k");
        let f = parse(&text, Encoding::Text).unwrap();
        assert_eq!(puts(&f), entries);
        let h = f.header.unwrap();
        assert_eq!((h.encoding, h.prefix), (Encoding::Hex, Some(b"k".to_vec())));
        let e = read(text.as_bytes(), Encoding::Base64, true).unwrap_err();
        assert!(e.1.contains("encoding hex"), "{e:?}");
        assert!(read(text.as_bytes(), Encoding::Hex, true).is_ok());
        assert!(parse("# nfkv save v3 encoding=text\n", Encoding::Text)
            .unwrap_err()
            .1
            .contains("v3"));
    }

    #[test]
    fn version_1_files_read_as_written() {
        let v1 = "# nfkv save: 3 entries, generation 9, encoding text\nput create v1\nput k replace\nput e \n";
        let f = parse(v1, Encoding::Text).unwrap();
        let h = f.header.clone().unwrap();
        assert_eq!((h.version, h.prefix, h.entries), (1, None, Some(3)));
        assert_eq!(
            puts(&f),
            vec![
                (b"create".to_vec(), b"v1".to_vec()),
                (b"k".to_vec(), b"replace".to_vec()),
                (b"e".to_vec(), vec![]),
            ]
        );
        let hex = "# nfkv save: 1 entries, generation 9, encoding hex\nput 6b 00\n";
        assert_eq!(
            puts(&parse(hex, Encoding::Text).unwrap()),
            vec![(b"k".to_vec(), vec![0])]
        );
    }

    fn file_of(n: usize, value_len: usize) -> File {
        File {
            header: None,
            flush: false,
            records: (0..n)
                .map(|i| Record {
                    line: i + 2,
                    kind: Kind::Put,
                    cond: Condition::default(),
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
    }

    #[test]
    fn prefix_deletes_skip_keys_the_file_overwrites() {
        let f = parse("put a 1\nput --create b 2\ndel c\n", Encoding::Text).unwrap();
        let current = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()];
        assert_eq!(
            prefix_deletes(&f, current),
            vec![b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
    }

    proptest! {
        #[test]
        fn every_save_reads_back_exactly(
            entries in prop::collection::vec((prop::collection::vec(any::<u8>(), 1..40), prop::collection::vec(any::<u8>(), 0..60)), 0..20),
            prefix in prop::collection::vec(any::<u8>(), 0..4),
            enc in prop_oneof![Just(Encoding::Text), Just(Encoding::Hex), Just(Encoding::Base64)],
        ) {
            let file = parse(&save(&entries, enc, &prefix), Encoding::Text).unwrap();
            prop_assert_eq!(file.header.clone().unwrap().prefix, Some(prefix));
            prop_assert_eq!(puts(&file), entries);
        }

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
