//! The nfkv ABI at the wire level, for the benchmark: raw setsockopt and
//! getsockopt (`nfkv::raw`) on requests prebuilt with the ABI codec
//! (`nfkv_abi::codec`, the module's own), so that the timed paths do no
//! encoding. Used for nfkv.ko, nfkv_cref.ko and the floor alike.

use nfkv::raw::{self, open_socket};
use nfkv::{Batch, Condition, Ttl};
use nfkv_abi::codec::{
    self, EventKind, Info, ListRequest, Op, OpKind, Reject, ValueHeader, WatchReplyHeader,
    WatchRequest,
};
use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;

pub use nfkv_abi::codec::cmd::{
    GET_INFO, GET_LIST, GET_VALUE, GET_WATCH, SET_BATCH, SET_DEL, SET_FLUSH, SET_PUT,
};
pub use nfkv_abi::codec::VALUE_SIZE;

/// Buffer offered to each LIST call: the most a module fills per call.
pub const LIST_PAGE: usize = 1 << 20;

/// Lifetime of the entries the TTL rows write: an hour, so that none
/// expires during a run (and the reaper, armed for then, never runs).
pub const TTL_MS: u32 = 3_600_000;

/// `struct nfkv_op` + key + value: a PUT (`value` given) or a DEL.
pub fn encode_op(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    raw::encode_op(&Op {
        kind: if value.is_some() {
            OpKind::Put
        } else {
            OpKind::Del
        },
        cond: Condition::default(),
        key,
        value: value.unwrap_or_default(),
    })
}

/// What a PUT with `ttl` set asks: `NFKV_F_TTL` with [`TTL_MS`]; else none.
fn ttl_cond(ttl: bool) -> Condition {
    Condition {
        ttl: Ttl {
            ms: ttl.then_some(TTL_MS),
            keep: false,
        },
        ..Default::default()
    }
}

/// An unconditional PUT whose entry expires after [`TTL_MS`] (`NFKV_F_TTL`).
pub fn encode_put_ttl(key: &[u8], value: &[u8]) -> Vec<u8> {
    raw::encode_op(&Op {
        kind: OpKind::Put,
        cond: ttl_cond(true),
        key,
        value,
    })
}

/// `struct nfkv_batch` + PUT records (unconditional), each padded to 8.
pub fn encode_batch<'a>(puts: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    encode_batch_ttl(puts, false)
}

/// [`encode_batch`], each record with `NFKV_F_TTL` ([`TTL_MS`]) if `ttl`.
fn encode_batch_ttl<'a>(
    puts: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ttl: bool,
) -> Vec<u8> {
    let mut b = Batch::new();
    for (k, v) in puts {
        b.put(k, v, ttl_cond(ttl));
    }
    b.encode().expect("a batch within the ABI's limits")
}

/// `struct nfkv_get` + key: the start of a GET_VALUE buffer.
pub fn encode_get(key: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; codec::GET_SIZE + key.len()];
    codec::encode_get(&mut r, key);
    r
}

/// The batches that put entries `0..n` with values of `len` bytes, the
/// last `timed` of them expiring after [`TTL_MS`]: at most about 1 MiB
/// each, and each all timed or all not.
fn fill_batches(n: u64, len: usize, timed: u64) -> Vec<Vec<u8>> {
    assert!(timed <= n, "{timed} timed entries of {n}");
    let chunk = ((1 << 20) / (len + 48)).clamp(1, 4096) as u64;
    let mut batches = Vec::new();
    let mut i = 0;
    while i < n {
        let ttl = i >= n - timed;
        let stop = if ttl { n } else { n - timed };
        let end = stop.min(i + chunk);
        let kv: Vec<(Vec<u8>, Vec<u8>)> = (i..end).map(|j| (key(j), value(j, len))).collect();
        batches.push(encode_batch_ttl(
            kv.iter().map(|(k, v)| (&k[..], &v[..])),
            ttl,
        ));
        i = end;
    }
    batches
}

/// `struct nfkv_watch` for the events after `since` (every key, no
/// values), waiting at most `timeout_ms`.
pub fn encode_watch(since: u64, timeout_ms: u32) -> Vec<u8> {
    let req = WatchRequest {
        since,
        timeout_ms,
        prefix: b"",
        values: false,
    };
    let mut out = vec![0u8; req.wire_len()];
    req.encode(&mut out);
    out
}

/// Checks a stream of watch replies against what a writer did: every
/// generation after `since` once, in order, none left out (no gap), each a
/// put of a key `expect` accepts, and `last` grouping them as the writes
/// did (writes of `group` changes each, starting right after `since`).
pub struct StreamCheck {
    /// Every event up to it has been seen (the next call's `since`).
    pub since: u64,
    /// The first generation of the stream.
    start: u64,
    group: u64,
    /// Events seen.
    pub events: u64,
}

impl StreamCheck {
    pub fn new(since: u64, group: u64) -> StreamCheck {
        assert!(group > 0);
        StreamCheck {
            since,
            start: since,
            group,
            events: 0,
        }
    }

    /// Checks one reply (`page`, as the module returned it) of a call made
    /// with `self.since`, and moves on past it. `key_ok` checks an event's
    /// key against its generation.
    pub fn reply(
        &mut self,
        page: &[u8],
        mut key_ok: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<WatchReplyHeader, String> {
        let mut next = self.since + 1;
        let (start, group) = (self.start, self.group);
        let header = codec::decode_watch_page(page, self.since, |e| {
            let h = e.header;
            let g = h.generation;
            let wrong = |what: String| Err(Wrong(format!("event {g}: {what}")));
            if g != next {
                return wrong(format!("{next} was due"));
            }
            if h.kind != EventKind::Put || h.value_len.is_some() {
                return wrong(format!("{:?}, value {:?}", h.kind, h.value_len));
            }
            let last = start + (g - start).div_ceil(group) * group;
            if h.last != last {
                return wrong(format!("last {} (want {last})", h.last));
            }
            if !key_ok(g, e.key) {
                return wrong(format!("key {:?}", String::from_utf8_lossy(e.key)));
            }
            next += 1;
            Ok(())
        })
        .map_err(|Wrong(e)| e)?;
        if header.size as usize != page.len() {
            return Err(format!(
                "reply of {} bytes says size {}",
                page.len(),
                header.size
            ));
        }
        if header.gap {
            return Err(format!(
                "gap after {} (oldest {})",
                self.since, header.oldest
            ));
        }
        // No prefix: every event up to the reply's generation is in it.
        if header.generation != next - 1 {
            return Err(format!(
                "reply generation {} after events up to {}",
                header.generation,
                next - 1
            ));
        }
        self.events += u64::from(header.count);
        self.since = header.generation;
        Ok(header)
    }
}

/// What [`StreamCheck::reply`] found wrong.
struct Wrong(String);

impl From<Reject> for Wrong {
    fn from(r: Reject) -> Wrong {
        Wrong(format!("watch reply framing: {r:?}"))
    }
}

/// A PF_INET raw socket, as ipvsadm and iptables use.
pub fn socket() -> OwnedFd {
    open_socket(libc::SOCK_RAW, libc::IPPROTO_RAW).expect("socket")
}

/// The key of entry `i`: 16 bytes, spread over the key space.
pub fn key(i: u64) -> Vec<u8> {
    format!("k{:015}", i.wrapping_mul(0x9e37_79b9) % 1_000_000_000_000).into_bytes()
}

/// The value of entry `i`: `len` bytes, the first 8 of them `i`.
pub fn value(i: u64, len: usize) -> Vec<u8> {
    let mut v = vec![b'v'; len];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// One module (nfkv.ko or nfkv_cref.ko) through one socket.
pub struct Nf {
    pub name: &'static str,
    pub base: u32,
    fd: OwnedFd,
    /// (entries, value length, entries with a deadline) as last filled by
    /// [`Nf::fill_timed`].
    filled: Cell<Option<(u64, usize, u64)>>,
}

impl Nf {
    pub fn open(name: &'static str, base: u32) -> Nf {
        let nf = Nf {
            name,
            base,
            fd: socket(),
            filled: Cell::new(None),
        };
        let info = nf
            .info()
            .unwrap_or_else(|e| panic!("{name}: info at optbase {base}: {e}"));
        assert_eq!(info.abi_version, nfkv::ABI_VERSION, "{name}: ABI version");
        nf
    }

    #[inline]
    pub fn set(&self, cmd: u32, req: &[u8]) -> io::Result<()> {
        raw::raw_set(&self.fd, self.base + cmd, req)
    }

    #[inline]
    pub fn get(&self, cmd: u32, buf: &mut [u8]) -> io::Result<usize> {
        raw::raw_get(&self.fd, self.base + cmd, buf)
    }

    /// GET_INFO, whole.
    fn info(&self) -> io::Result<Info> {
        let mut info = [0u8; codec::INFO_SIZE];
        let n = self.get(GET_INFO, &mut info)?;
        Info::decode(&info[..n]).map_err(|_| io::Error::other("short info reply"))
    }

    /// The table's generation, from GET_INFO.
    pub fn generation(&self) -> u64 {
        self.info().expect("info").generation
    }

    /// One GET_WATCH of request `req` (as [`encode_watch`] makes it) into
    /// `buf`; returns the reply's length.
    #[inline]
    pub fn watch(&self, req: &[u8], buf: &mut [u8]) -> io::Result<usize> {
        buf[..req.len()].copy_from_slice(req);
        self.get(GET_WATCH, buf)
    }

    /// Entries in the table, from GET_INFO.
    pub fn entries(&self) -> u64 {
        self.info().expect("info").entries.into()
    }

    pub fn flush(&self) {
        self.set(SET_FLUSH, &[0u8; codec::FLUSH_SIZE])
            .expect("flush");
        self.filled.set(Some((0, 0, 0)));
        assert_eq!(self.entries(), 0, "{}: entries after flush", self.name);
    }

    /// Empties the table and puts entries `0..n` with values of `len` bytes,
    /// in batches of at most about 1 MiB.
    pub fn fill(&self, n: u64, len: usize) {
        self.fill_timed(n, len, 0);
    }

    /// [`Nf::fill`], the last `timed` entries (`n - timed..n`) expiring
    /// after [`TTL_MS`], the others never.
    pub fn fill_timed(&self, n: u64, len: usize, timed: u64) {
        self.flush();
        for req in fill_batches(n, len, timed) {
            self.set(SET_BATCH, &req)
                .unwrap_or_else(|e| panic!("{}: fill: {e}", self.name));
        }
        assert_eq!(self.entries(), n, "{}: entries after fill", self.name);
        self.filled.set(Some((n, len, timed)));
    }

    /// [`Nf::fill`] unless the table already holds what it would.
    pub fn ensure(&self, n: u64, len: usize) {
        self.ensure_timed(n, len, 0);
    }

    /// [`Nf::fill_timed`] unless the table already holds what it would.
    pub fn ensure_timed(&self, n: u64, len: usize, timed: u64) {
        if self.filled.get() != Some((n, len, timed)) || self.entries() != n {
            self.fill_timed(n, len, timed);
        }
    }

    /// The ttl_ms of a GET_VALUE reply in `buf` (as [`Nf::get_checked`]
    /// leaves it), checked: 0 for an entry that never expires (`!timed`),
    /// else 1..=[`TTL_MS`].
    #[inline]
    pub fn check_ttl(&self, buf: &[u8], timed: bool) -> u32 {
        let h = ValueHeader::decode(&buf[..VALUE_SIZE])
            .unwrap_or_else(|_| panic!("{}: GET reply header", self.name));
        let ok = if timed {
            (1..=TTL_MS).contains(&h.ttl_ms)
        } else {
            h.ttl_ms == 0
        };
        assert!(
            ok,
            "{}: GET ttl_ms {} (timed: {timed})",
            self.name, h.ttl_ms
        );
        h.ttl_ms
    }

    /// GET_VALUE of the prebuilt request `req` into `buf` (exactly the
    /// reply's size); checks the reply's length and that the value is entry
    /// `index`'s.
    #[inline]
    pub fn get_checked(&self, req: &[u8], buf: &mut [u8], index: u64) {
        buf[..req.len()].copy_from_slice(req);
        let n = self
            .get(GET_VALUE, buf)
            .unwrap_or_else(|e| panic!("{}: get: {e}", self.name));
        assert_eq!(n, buf.len(), "{}: GET reply length", self.name);
        assert_eq!(
            buf[VALUE_SIZE..VALUE_SIZE + 8],
            index.to_le_bytes(),
            "{}: GET value",
            self.name
        );
    }

    /// Lists the whole table page by page into `buf` (at least
    /// [`LIST_PAGE`] bytes), calling `visit` with each entry's key and value
    /// length; returns the number of entries. Checks every page's framing.
    #[inline]
    pub fn list_all(&self, buf: &mut [u8], mut visit: impl FnMut(&[u8], usize)) -> u64 {
        let mut after = [0u8; nfkv::MAX_KEY_LEN];
        let mut after_len = 0usize;
        let mut total = 0u64;
        loop {
            ListRequest {
                after: &after[..after_len],
                prefix: b"",
            }
            .encode(buf);
            let n = self
                .get(GET_LIST, buf)
                .unwrap_or_else(|e| panic!("{}: list: {e}", self.name));
            let page = codec::decode_list_page(&buf[..n], |e| {
                visit(e.key, e.value.len());
                after[..e.key.len()].copy_from_slice(e.key);
                after_len = e.key.len();
                Ok::<(), Reject>(())
            })
            .unwrap_or_else(|_| panic!("{}: list page framing", self.name));
            assert_eq!(page.size as usize, n, "{}: list reply size", self.name);
            total += u64::from(page.count);
            if !page.more {
                return total;
            }
            assert!(page.count > 0, "{}: empty page with MORE", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TTL of a PUT request's header.
    fn ttl_of(req: &[u8]) -> Ttl {
        let h: &[u8; codec::OP_SIZE] = req[..codec::OP_SIZE].try_into().unwrap();
        codec::op_header(h, 1 << 16)
            .expect("a valid header")
            .cond
            .ttl
    }

    #[test]
    fn ttl_puts_carry_the_lifetime_and_plain_ones_none() {
        let ttl = Ttl {
            ms: Some(TTL_MS),
            keep: false,
        };
        assert_eq!(ttl_of(&encode_put_ttl(b"k", b"v")), ttl);
        assert_eq!(ttl_of(&encode_op(b"k", Some(b"v"))), Ttl::default());
    }

    #[test]
    fn watch_requests_ask_for_every_key_from_since() {
        let req = encode_watch(41, 1_000);
        let mut buf = req.clone();
        buf.resize(codec::WATCH_REPLY_SIZE, 0);
        let parsed = WatchRequest::parse(&req, buf.len() as i32).expect("a valid request");
        assert_eq!(
            parsed,
            WatchRequest {
                since: 41,
                timeout_ms: 1_000,
                prefix: b"",
                values: false
            }
        );
    }

    /// A reply page of the puts of generations `gens` (key "k{g}", `last`
    /// as the writes of `group` after `start` make it), claiming
    /// `generation` and `gap`.
    fn page(gens: &[u64], start: u64, group: u64, generation: u64, gap: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = codec::WatchPageWriter::new(&mut buf).unwrap();
        for &g in gens {
            let k = format!("k{g}");
            let h = codec::EventHeader {
                generation: g,
                last: start + (g - start).div_ceil(group) * group,
                kind: EventKind::Put,
                key_len: k.len() as u16,
                value_len: None,
            };
            assert!(w.push(&h, k.as_bytes(), b""));
        }
        let n = w.finish(WatchReplyHeader {
            generation,
            gap,
            oldest: start,
            ..Default::default()
        });
        buf.truncate(n);
        buf
    }

    #[test]
    fn stream_checks_pass_whole_streams_and_catch_what_is_missing() {
        let key_ok = |g: u64, k: &[u8]| k == format!("k{g}").as_bytes();
        // Batches of 4 after generation 10, over two replies.
        let mut c = StreamCheck::new(10, 4);
        c.reply(&page(&[11, 12, 13], 10, 4, 13, false), key_ok)
            .unwrap();
        c.reply(&page(&[14, 15, 16, 17, 18], 10, 4, 18, false), key_ok)
            .unwrap();
        assert_eq!((c.since, c.events), (18, 8));
        // An empty reply (the wait ran out) moves nothing.
        c.reply(&page(&[], 10, 4, 18, false), key_ok).unwrap();
        assert_eq!((c.since, c.events), (18, 8));

        let check = |p: Vec<u8>, group| StreamCheck::new(10, group).reply(&p, key_ok);
        // An event left out, a gap, a reply claiming more than it holds.
        assert!(check(page(&[11, 13], 10, 1, 13, false), 1).is_err());
        assert!(check(page(&[], 10, 1, 13, true), 1).is_err());
        assert!(check(page(&[11], 10, 1, 12, false), 1).is_err());
        // Singles read as batches, and the other way round.
        assert!(check(page(&[11, 12], 10, 1, 12, false), 2).is_err());
        assert!(check(page(&[11, 12], 10, 2, 12, false), 1).is_err());
        // A wrong key; a truncated reply.
        assert!(StreamCheck::new(10, 1)
            .reply(&page(&[11], 10, 1, 11, false), |_, _| false)
            .is_err());
        let p = page(&[11, 12], 10, 1, 12, false);
        assert!(check(p[..p.len() - 8].to_vec(), 1).is_err());
    }

    #[test]
    fn fills_put_every_key_once_and_time_only_the_last() {
        for (n, len, timed) in [(0, 64, 0), (1, 64, 1), (2_000, 64, 1_000), (5_000, 64, 0)] {
            let mut got = Vec::new();
            for req in fill_batches(n, len, timed) {
                let b = codec::Batch::parse(&req, 1 << 16).expect("a valid batch");
                b.for_each(|_, r| {
                    got.push((r.split().0.to_vec(), r.header.cond.ttl.ms));
                    Ok::<(), Reject>(())
                })
                .expect("valid records");
            }
            let want: Vec<(Vec<u8>, Option<u32>)> = (0..n)
                .map(|j| (key(j), (j >= n - timed).then_some(TTL_MS)))
                .collect();
            assert!(got == want, "n {n}, timed {timed}");
        }
    }
}
