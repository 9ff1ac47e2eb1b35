//! Batch and save files: what `nfkv save` writes and `nfkv batch`/`nfkv
//! restore` read (and [`crate::restore`] applies). One record per line:
//! `put [OPTIONS] KEY [VALUE]`, `del [--if-version=N] KEY`, a first `flush`;
//! `save` puts a header line first. The format is described in full in the
//! README (section "Batch and save files"); this module is its one
//! implementation.

use crate::duration::{parse_duration, ttl_ms};
use crate::text::{decode_text, encode_text, Encoding};
use crate::{Batch, Condition, Entry, Error, Nfkv, Ttl, MAX_KEY_LEN, SNAPSHOT_RETRIES};
use std::io::{self, BufRead, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Version of the format `save` writes: 3 records each entry's time left
/// (`put --ttl=...`) and the header the wall-clock time of the save.
pub const FORMAT_VERSION: u32 = 3;

/// The header line `save` writes; `time`: when the table was read.
pub fn header(
    enc: Encoding,
    prefix: &[u8],
    entries: usize,
    generation: u64,
    time: SystemTime,
) -> String {
    let time_ms = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!(
        "# nfkv save v{FORMAT_VERSION} encoding={} prefix={} entries={entries} generation={generation} time_ms={time_ms}",
        enc.name(),
        encode_text(prefix, enc)
    )
}

/// One record line of `save`: a put, with the entry's time left if it
/// expires (`put --ttl=29500ms KEY VALUE`).
pub fn put_line(key: &[u8], value: &[u8], ttl: Option<Duration>, enc: Encoding) -> String {
    let mut line = String::from("put ");
    if let Some(ttl) = ttl {
        line += &format!("--ttl={}ms ", ttl.as_millis().max(1));
    }
    line += &encode_text(key, enc);
    if !value.is_empty() {
        line.push(' ');
        line += &encode_text(value, enc);
    }
    line
}

/// Writes a save file: the header, then a put line per entry, in order.
/// `entries` are what a snapshot of `prefix` at `generation` returned,
/// read from `time` on (take it before the snapshot: a restore then counts
/// the time since the save generously, and no entry outlives its expiry).
pub fn write_save(
    out: &mut impl Write,
    enc: Encoding,
    prefix: &[u8],
    generation: u64,
    time: SystemTime,
    entries: &[Entry],
) -> io::Result<()> {
    writeln!(
        out,
        "{}",
        header(enc, prefix, entries.len(), generation, time)
    )?;
    for e in entries {
        writeln!(out, "{}", put_line(&e.key, &e.value, e.ttl, enc))?;
    }
    Ok(())
}

/// Saves the entries under `prefix` (one consistent snapshot) to `out`:
/// what `nfkv save` prints.
pub fn save(kv: &Nfkv, out: &mut impl Write, enc: Encoding, prefix: &[u8]) -> Result<(), Error> {
    let time = SystemTime::now();
    let (generation, entries) = kv.snapshot(prefix, SNAPSHOT_RETRIES)?;
    write_save(out, enc, prefix, generation, time, &entries)
        .map_err(|source| Error::Os { op: "save", source })
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
    /// When the table was read (format 3 on): the TTLs of the records are
    /// the time the entries had left then.
    pub time: Option<SystemTime>,
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

/// A line of a file that cannot be read; nothing of the file is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parses a header line (`line` starts with `# nfkv save`).
fn parse_header(line: &str) -> Result<Header, String> {
    let unreadable = || format!("unreadable save header {line:?}");
    if let Some(rest) = line.strip_prefix("# nfkv save:") {
        // Version 1: "# nfkv save: N entries, generation G, encoding E".
        let enc = rest
            .rsplit_once("encoding ")
            .and_then(|(_, e)| Encoding::from_name(e.trim()))
            .ok_or_else(unreadable)?;
        let entries = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        return Ok(Header {
            version: 1,
            encoding: enc,
            prefix: None,
            entries,
            time: None,
        });
    }
    let mut words = line
        .strip_prefix("# nfkv save")
        .ok_or_else(unreadable)?
        .split_whitespace();
    let version = words
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(unreadable)?;
    if !(2..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "the file is in save format v{version}; this nfkv reads v1 to v{FORMAT_VERSION}"
        ));
    }
    let mut encoding = None;
    let mut prefix = None;
    let mut entries = None;
    let mut time = None;
    for w in words {
        match w.split_once('=') {
            Some(("encoding", e)) => {
                encoding =
                    Some(Encoding::from_name(e).ok_or_else(|| format!("unknown encoding {e:?}"))?)
            }
            Some(("prefix", p)) => prefix = Some(p),
            Some(("entries", n)) => entries = n.parse().ok(),
            Some(("time_ms", t)) => {
                let ms = t
                    .parse::<u64>()
                    .map_err(|_| format!("bad time_ms {t:?} in the save header"))?;
                time = UNIX_EPOCH.checked_add(Duration::from_millis(ms));
            }
            // Unknown fields (generation, later additions) are informative.
            _ => {}
        }
    }
    let encoding = encoding.ok_or("the save header names no encoding")?;
    let prefix = decode_text(prefix.unwrap_or(""), encoding)
        .map_err(|e| format!("save header prefix: {e}"))?;
    Ok(Header {
        version,
        encoding,
        prefix: Some(prefix),
        entries,
        time,
    })
}

/// Reads a whole file. `encoding` is the one asked for, if any: tokens are
/// in it (default: text) unless a save header names another, which is then
/// refused rather than followed.
pub fn read(reader: impl BufRead, encoding: Option<Encoding>) -> Result<File, ParseError> {
    let mut file = File::default();
    let mut enc = encoding.unwrap_or_default();
    for (n, line) in reader.split(b'\n').enumerate() {
        let lineno = n + 1;
        let at = |message: String| ParseError {
            line: lineno,
            message,
        };
        let line = line.map_err(|e| at(e.to_string()))?;
        let line = String::from_utf8(line)
            .map_err(|_| at("not UTF-8 text (raw bytes must be written as \\xNN)".into()))?;
        let line = line.trim();
        if lineno == 1 && line.starts_with("# nfkv save") {
            let h = parse_header(line).map_err(at)?;
            if let Some(asked) = encoding.filter(|&e| e != h.encoding) {
                return Err(at(format!(
                    "the file is in encoding {}, but --{} was given",
                    h.encoding.name(),
                    asked.name()
                )));
            }
            enc = h.encoding;
            file.header = Some(h);
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let legacy = file.header.as_ref().is_some_and(|h| h.version == 1);
        parse_line(line, enc, legacy, lineno, &mut file).map_err(at)?;
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
            "--keep-ttl" => cond.ttl.keep = true,
            _ => {
                if let Some(v) = t.strip_prefix("--if-version=") {
                    let v = v
                        .parse::<u64>()
                        .ok()
                        .filter(|&v| v > 0)
                        .ok_or_else(|| format!("bad version in {t}"))?;
                    cond.if_version = Some(v);
                } else if let Some(d) = t.strip_prefix("--ttl=") {
                    let d = parse_duration(d).map_err(|e| e.to_string())?;
                    let ms = ttl_ms(d).map_err(|e| match e {
                        Error::Invalid(m) => m,
                        e => e.to_string(),
                    })?;
                    cond.ttl.ms = Some(ms);
                } else {
                    return Err(format!(
                        "unknown option {t:?} (a key starting with '-' is written \\x2d..., or after --)"
                    ));
                }
            }
        }
    }
    let bytes = |t: &str| decode_text(t, enc).map_err(|e| e.to_string());
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
    if kind == Kind::Del && (cond.create_only || cond.replace_only || cond.ttl != Ttl::default()) {
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
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "key must be 1..={MAX_KEY_LEN} bytes, not {}",
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
    /// Counts the time since the save (the header's `time_ms`) against
    /// the records' TTLs, at `now`: each TTL is what the entry had left at
    /// the save, so it loses the time elapsed since (rounded up to the
    /// millisecond), and a put whose TTL ran out in between is dropped (the
    /// entry would have expired by now). Returns how many were dropped.
    /// Files without a save time (batch files, older saves) are left as
    /// they are: their TTLs count from the write.
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let Some(saved) = self.header.as_ref().and_then(|h| h.time) else {
            return 0;
        };
        // A save "from the future" (the clock went back): nothing elapsed.
        let elapsed = now.duration_since(saved).unwrap_or_default();
        let elapsed = u32::try_from(elapsed.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX);
        let before = self.records.len();
        self.records.retain_mut(|r| match r.cond.ttl.ms {
            Some(ms) if r.kind == Kind::Put => match ms.checked_sub(elapsed) {
                Some(left) if left > 0 => {
                    r.cond.ttl.ms = Some(left);
                    true
                }
                _ => false,
            },
            _ => true,
        });
        before - self.records.len()
    }

    /// The file as one batch (`flush`: empty the table first), for `batch`.
    pub fn to_batch(&self, flush: bool) -> Batch {
        let mut b = Batch::new();
        if flush || self.flush {
            b.flush();
        }
        for r in &self.records {
            r.add_to(&mut b);
        }
        b
    }
}

impl Record {
    /// Adds this record to `b`.
    pub fn add_to(&self, b: &mut Batch) {
        match self.kind {
            Kind::Put => b.put(&self.key, &self.value, self.cond),
            Kind::Del => b.delete(&self.key, self.cond.if_version),
        };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn parse(text: &str) -> Result<File, ParseError> {
        read(text.as_bytes(), None)
    }

    fn save(entries: &[(Vec<u8>, Vec<u8>)], enc: Encoding, prefix: &[u8]) -> String {
        let entries: Vec<Entry> = entries
            .iter()
            .map(|(key, value)| Entry {
                key: key.clone(),
                value: value.clone(),
                version: 1,
                ttl: None,
            })
            .collect();
        let mut out = Vec::new();
        write_save(&mut out, enc, prefix, 7, SystemTime::now(), &entries).unwrap();
        String::from_utf8(out).unwrap()
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
        for enc in Encoding::ALL {
            let file = parse(&save(&entries, enc, b"")).unwrap();
            assert_eq!(puts(&file), entries, "{enc:?}");
            assert!(!file.flush);
        }
    }

    #[test]
    fn options_only_before_the_key() {
        let f = parse(
            "put --create k v\nput --replace --if-version=4 k\ndel --if-version=2 -- k\nput -- \\x2dk v\n",
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
        let e = parse("put k v create\n").unwrap_err();
        assert!(
            e.line == 1 && e.message.contains("options go before the key"),
            "{e:?}"
        );
        assert!(parse("put -k v\n").is_err());
        assert!(parse("del --create k\n").is_err());
        assert!(parse("put --create --replace k\n").is_err());
        assert!(parse("put --if-version=0 k\n").is_err());
        assert!(parse("put k v\nflush\n").is_err());
        assert!(parse("frob k\n").is_err());
        assert!(parse("flush\nput k\n").unwrap().flush);
    }

    #[test]
    fn the_header_encoding_and_prefix_are_honoured() {
        let entries = vec![(b"k\x00".to_vec(), b"\xffv".to_vec())];
        let text = save(&entries, Encoding::Hex, b"k");
        let f = parse(&text).unwrap();
        assert_eq!(puts(&f), entries);
        let h = f.header.unwrap();
        assert_eq!((h.encoding, h.prefix), (Encoding::Hex, Some(b"k".to_vec())));
        let e = read(text.as_bytes(), Some(Encoding::Base64)).unwrap_err();
        assert!(e.message.contains("encoding hex"), "{e:?}");
        assert!(read(text.as_bytes(), Some(Encoding::Hex)).is_ok());
        assert!(parse("# nfkv save v4 encoding=text\n")
            .unwrap_err()
            .message
            .contains("v4"));
        // Saves of format 2 (before TTLs) still read.
        let v2 = parse("# nfkv save v2 encoding=text prefix=a entries=1 generation=3\nput a1 x\n")
            .unwrap();
        let h = v2.header.clone().unwrap();
        assert_eq!(
            (h.version, h.prefix, h.time),
            (2, Some(b"a".to_vec()), None)
        );
        assert_eq!(puts(&v2), vec![(b"a1".to_vec(), b"x".to_vec())]);
    }

    #[test]
    fn version_1_files_read_as_written() {
        let v1 = "# nfkv save: 3 entries, generation 9, encoding text\nput create v1\nput k replace\nput e \n";
        let f = parse(v1).unwrap();
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
        assert_eq!(puts(&parse(hex).unwrap()), vec![(b"k".to_vec(), vec![0])]);
    }

    #[test]
    fn unreadable_input_is_an_error_with_its_line() {
        for (text, line, says) in [
            ("# nfkv save v2 prefix=a\n", 1, "names no encoding"),
            ("# nfkv save v2 encoding=rot13\n", 1, "unknown encoding"),
            (
                "# nfkv save vx encoding=text\n",
                1,
                "unreadable save header",
            ),
            ("# nfkv save: 1 entries\n", 1, "unreadable save header"),
            (
                "# nfkv save v2 encoding=hex prefix=6\n",
                1,
                "save header prefix",
            ),
            ("\n\nput \\x4\n", 3, "truncated"),
            ("put\n", 1, "needs a key"),
            ("del k v\n", 1, "too many fields"),
            ("put --frob k\n", 1, "unknown option"),
            ("put --if-version=x k\n", 1, "bad version"),
            ("flush now\n", 1, "no arguments"),
        ] {
            let e = read(text.as_bytes(), None).unwrap_err();
            assert!(e.line == line && e.message.contains(says), "{text:?}: {e}");
        }
        let e = read(&b"put k\n\xff\n"[..], None).unwrap_err();
        assert!(e.line == 2 && e.message.contains("not UTF-8"), "{e}");
        let long = format!("put {}\n", "k".repeat(MAX_KEY_LEN + 1));
        assert!(parse(&long).unwrap_err().message.contains("key must be"));
    }

    fn ttl_of(ms: Option<u32>, keep: bool) -> Condition {
        Condition {
            ttl: Ttl { ms, keep },
            ..Default::default()
        }
    }

    #[test]
    fn records_take_a_ttl_and_keep_ttl() {
        let f = parse("put --ttl=30s a 1\nput --keep-ttl b 2\nput --ttl=1h30m --keep-ttl --create c\nput --ttl=1.5 d\nput --ttl=500ms -- \\x2de\n").unwrap();
        let conds: Vec<Condition> = f.records.iter().map(|r| r.cond).collect();
        assert_eq!(conds[0], ttl_of(Some(30_000), false));
        assert_eq!(conds[1], ttl_of(None, true));
        assert_eq!(
            conds[2],
            Condition {
                create_only: true,
                ..ttl_of(Some(5_400_000), true)
            }
        );
        assert_eq!(conds[3], ttl_of(Some(1500), false));
        assert_eq!(
            (conds[4], &f.records[4].key[..]),
            (ttl_of(Some(500), false), &b"-e"[..])
        );
        for (text, says) in [
            ("put --ttl=0 k\n", "at least 1ms"),
            ("put --ttl=0s k\n", "at least 1ms"),
            ("put --ttl=50d k\n", "over the longest, 49d17h2m47.295s"),
            ("put --ttl=5x k\n", "bad duration \"5x\": unknown unit"),
            ("put --ttl= k\n", "bad duration \"\": it is empty"),
            ("put --ttl 5s k\n", "unknown option \"--ttl\""),
            ("del --ttl=5s k\n", "del takes only --if-version"),
            ("del --keep-ttl k\n", "del takes only --if-version"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.line == 1 && e.message.contains(says), "{text:?}: {e}");
        }
    }

    fn entry(key: &str, ttl_ms: Option<u64>) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            version: 1,
            ttl: ttl_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn a_save_records_time_left_and_its_time_and_a_restore_counts_the_time_since() {
        let saved = UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let entries = [
            entry("forever", None),
            entry("short", Some(300)),
            entry("long", Some(60_000)),
        ];
        let mut out = Vec::new();
        write_save(&mut out, Encoding::Text, b"", 9, saved, &entries).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# nfkv save v3 encoding=text prefix= entries=3 generation=9 time_ms=1796000000123\n\
             put forever v\nput --ttl=300ms short v\nput --ttl=60000ms long v\n"
        );
        let file = parse(&text).unwrap();
        assert_eq!(file.header.as_ref().unwrap().time, Some(saved));
        // Restored at once: as saved.
        let mut now = file.clone();
        assert_eq!(now.expire(saved), 0);
        assert_eq!(now, file);
        // 1.5 s later: "short" expired in between, "long" has 58.5 s left.
        let mut later = file.clone();
        assert_eq!(later.expire(saved + Duration::from_millis(1500)), 1);
        let left: Vec<(&[u8], Option<u32>)> = later
            .records
            .iter()
            .map(|r| (&r.key[..], r.cond.ttl.ms))
            .collect();
        assert_eq!(left, [(&b"forever"[..], None), (b"long", Some(58_500))]);
        assert_eq!(later.records[1].line, 4, "records keep their lines");
        // Exactly at the deadline: expired; a clock gone back: no time passed.
        assert_eq!(file.clone().expire(saved + Duration::from_millis(300)), 1);
        let mut back = file.clone();
        assert_eq!(back.expire(saved - Duration::from_secs(5)), 0);
        assert_eq!(back, file);
        // Batch files and older saves have no save time: TTLs count from the write.
        let mut batch = parse("put --ttl=300ms k v\n").unwrap();
        assert_eq!(batch.expire(SystemTime::now() + Duration::from_secs(99)), 0);
        assert_eq!(batch.records[0].cond.ttl.ms, Some(300));
        assert!(parse("# nfkv save v3 encoding=text time_ms=x\n")
            .unwrap_err()
            .message
            .contains("bad time_ms"));
    }

    proptest! {
        #[test]
        fn every_save_reads_back_exactly(
            entries in prop::collection::vec((prop::collection::vec(any::<u8>(), 1..40), prop::collection::vec(any::<u8>(), 0..60)), 0..20),
            prefix in prop::collection::vec(any::<u8>(), 0..4),
            enc in prop_oneof![Just(Encoding::Text), Just(Encoding::Hex), Just(Encoding::Base64)],
        ) {
            let file = parse(&save(&entries, enc, &prefix)).unwrap();
            prop_assert_eq!(file.header.clone().unwrap().prefix, Some(prefix));
            prop_assert_eq!(puts(&file), entries);
        }

        /// Any bytes at all: an error or a file, never a panic.
        #[test]
        fn reading_any_bytes_never_panics(text in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&text[..], None);
        }

        /// Lines that look like the format: a verb, options and tokens with
        /// escapes, whole or cut short, after a header or not.
        #[test]
        fn reading_format_like_lines_never_panics(
            header in "(# nfkv save( v[0-9]| ?:)?( [a-z]+=[a-z0-9]*| encoding [a-z]*)*\n)?",
            lines in prop::collection::vec((
                "put|del|flush|frob|#",
                prop::collection::vec("--|--create|--replace|--if-version=[0-9]{0,2}|-x|--keep-ttl|--ttl=[0-9.dhms]{0,4}", 0..3),
                prop::collection::vec("[a-f]{0,2}(\\\\(x[0-9a-g]{0,2}|\\\\)?[a-z]?)?", 0..4),
            ), 0..6),
        ) {
            let mut text = header;
            for (verb, options, args) in lines {
                text += &format!("{verb} {} {}\n", options.join(" "), args.join(" "));
            }
            let _ = read(text.as_bytes(), None);
        }
    }
}
