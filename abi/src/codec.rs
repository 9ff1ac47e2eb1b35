// SPDX-License-Identifier: GPL-2.0

//! Parsing, validation and encoding of nfkv requests and replies.
//!
//! This one file is compiled twice: into the kernel module (as `crate::codec`)
//! and into the host crate `nfkv-abi` used by the client, its tests and its
//! fuzz target. It therefore needs nothing but `core`, has no `unsafe`, and
//! takes every layout fact (sizes, offsets, limits) from the bindgen view of
//! `include/nfkv.h` in `crate::uapi`.
//!
//! Every parser checks lengths before reading, with overflow-free arithmetic,
//! and rejects non-zero reserved fields and unknown flags, so a request that
//! passes it is well-formed; the table only decides semantic outcomes.

use crate::uapi;
use core::mem::{offset_of, size_of};

/// Why a request was refused before it reached the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Malformed: lengths, reserved fields, flags, op codes (EINVAL).
    Invalid,
    /// Over a size limit: value, batch or request length (E2BIG).
    TooBig,
}

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = uapi::NFKV_MAX_KEY_LEN as usize;
/// Largest value the module may be configured to accept.
pub const VALUE_LEN_CAP: usize = uapi::NFKV_VALUE_LEN_CAP as usize;
/// Most records in one batch.
pub const MAX_BATCH_OPS: usize = uapi::NFKV_MAX_BATCH_OPS as usize;
/// Longest set request, in bytes.
pub const MAX_REQUEST_LEN: usize = uapi::NFKV_MAX_REQUEST_LEN as usize;
/// Alignment of batch records and list entries.
pub const ALIGN: usize = uapi::NFKV_ALIGN as usize;
/// Number of set commands.
pub const SET_COMMANDS: usize = uapi::NFKV_SET_COMMANDS as usize;
/// Number of get commands.
pub const GET_COMMANDS: usize = uapi::NFKV_GET_COMMANDS as usize;

/// `struct nfkv_op` size.
pub const OP_SIZE: usize = size_of::<uapi::nfkv_op>();
/// `struct nfkv_batch` size.
pub const BATCH_SIZE: usize = size_of::<uapi::nfkv_batch>();
/// `struct nfkv_flush` size.
pub const FLUSH_SIZE: usize = size_of::<uapi::nfkv_flush>();
/// `struct nfkv_get` size.
pub const GET_SIZE: usize = size_of::<uapi::nfkv_get>();
/// `struct nfkv_value` size.
pub const VALUE_SIZE: usize = size_of::<uapi::nfkv_value>();
/// `struct nfkv_list` size.
pub const LIST_SIZE: usize = size_of::<uapi::nfkv_list>();
/// `struct nfkv_list_reply` size.
pub const LIST_REPLY_SIZE: usize = size_of::<uapi::nfkv_list_reply>();
/// `struct nfkv_list_entry` size.
pub const LIST_ENTRY_SIZE: usize = size_of::<uapi::nfkv_list_entry>();
/// `struct nfkv_info` size.
pub const INFO_SIZE: usize = size_of::<uapi::nfkv_info>();
/// `struct nfkv_stats` size.
pub const STATS_SIZE: usize = size_of::<uapi::nfkv_stats>();
/// Longest GET_VALUE request region: header and the longest key.
pub const GET_REQUEST_MAX: usize = GET_SIZE + MAX_KEY_LEN;
/// Longest LIST request region: header, `after` and prefix.
pub const LIST_REQUEST_MAX: usize = LIST_SIZE + 2 * MAX_KEY_LEN;
/// `sizeof(struct nfkv_watch)`.
pub const WATCH_SIZE: usize = size_of::<uapi::nfkv_watch>();
/// `sizeof(struct nfkv_watch_reply)`.
pub const WATCH_REPLY_SIZE: usize = size_of::<uapi::nfkv_watch_reply>();
/// `sizeof(struct nfkv_event)`.
pub const EVENT_SIZE: usize = size_of::<uapi::nfkv_event>();
/// Longest request region of `NFKV_SO_GET_WATCH`.
pub const WATCH_REQUEST_MAX: usize = WATCH_SIZE + MAX_KEY_LEN;
/// Longest wait of one `NFKV_SO_GET_WATCH` call.
pub const WATCH_MAX_TIMEOUT_MS: u32 = uapi::NFKV_WATCH_MAX_TIMEOUT_MS;

/// Command offsets from the optname base.
pub mod cmd {
    use crate::uapi;
    const BASE: u32 = uapi::NFKV_BASE_CTL;
    /// `NFKV_SO_SET_PUT` offset.
    pub const SET_PUT: u32 = uapi::NFKV_SO_SET_PUT - BASE;
    /// `NFKV_SO_SET_DEL` offset.
    pub const SET_DEL: u32 = uapi::NFKV_SO_SET_DEL - BASE;
    /// `NFKV_SO_SET_FLUSH` offset.
    pub const SET_FLUSH: u32 = uapi::NFKV_SO_SET_FLUSH - BASE;
    /// `NFKV_SO_SET_BATCH` offset.
    pub const SET_BATCH: u32 = uapi::NFKV_SO_SET_BATCH - BASE;
    /// `NFKV_SO_GET_INFO` offset.
    pub const GET_INFO: u32 = uapi::NFKV_SO_GET_INFO - BASE;
    /// `NFKV_SO_GET_VALUE` offset.
    pub const GET_VALUE: u32 = uapi::NFKV_SO_GET_VALUE - BASE;
    /// `NFKV_SO_GET_LIST` offset.
    pub const GET_LIST: u32 = uapi::NFKV_SO_GET_LIST - BASE;
    /// `NFKV_SO_GET_STATS` offset.
    pub const GET_STATS: u32 = uapi::NFKV_SO_GET_STATS - BASE;
    /// `NFKV_SO_SET_CLS_ADD` offset.
    pub const SET_CLS_ADD: u32 = uapi::NFKV_SO_SET_CLS_ADD - BASE;
    /// `NFKV_SO_SET_CLS_DEL` offset.
    pub const SET_CLS_DEL: u32 = uapi::NFKV_SO_SET_CLS_DEL - BASE;
    /// `NFKV_SO_GET_CLS_LIST` offset.
    pub const GET_CLS_LIST: u32 = uapi::NFKV_SO_GET_CLS_LIST - BASE;
    /// `NFKV_SO_GET_WATCH` offset.
    pub const GET_WATCH: u32 = uapi::NFKV_SO_GET_WATCH - BASE;
    /// Width of the registered optname range.
    pub const RANGE: u32 = uapi::NFKV_SO_RANGE;

    /// Whether set offset `c` is a command (the others in the range are
    /// refused with `EOPNOTSUPP`).
    pub const fn is_set(c: u32) -> bool {
        c <= SET_BATCH || c == SET_CLS_ADD || c == SET_CLS_DEL
    }

    /// Whether get offset `c` is a command.
    pub const fn is_get(c: u32) -> bool {
        c <= GET_STATS || c == GET_CLS_LIST || c == GET_WATCH
    }
}

/// `len` rounded up to [`ALIGN`]; `None` on overflow.
pub const fn align_up(len: usize) -> Option<usize> {
    match len.checked_add(ALIGN - 1) {
        Some(v) => Some(v & !(ALIGN - 1)),
        None => None,
    }
}

/// `len` rounded up to [`ALIGN`], for lengths bounded far below overflow
/// (a header plus bounded key and value lengths).
const fn padded(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

// Field access by offset, in host byte order. The writers are public so
// that tests patching one field of a request use them rather than copies.
// The codec passes slices whose length it checked against the struct size,
// so its indexing never fails; other callers must do the same (a field
// beyond the slice panics).

pub(crate) fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(v)
}

/// Writes the 2-byte field at `off` of `b`.
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
}

/// Writes the 4-byte field at `off` of `b`.
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Writes the 8-byte field at `off` of `b`.
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Splits `len` bytes off the front of `buf`, or fails as malformed.
pub(crate) fn take(buf: &[u8], len: usize) -> Result<(&[u8], &[u8]), Reject> {
    if buf.len() < len {
        return Err(Reject::Invalid);
    }
    Ok(buf.split_at(len))
}

/// The order of keys: bytewise, a key before any longer key it begins
/// (`memcmp` order, as `<[u8]>::cmp`). Compares eight bytes at a time inline,
/// so the short keys a table holds are ordered without a call per compare.
/// The word loop runs over both keys cut to the shorter length, so it has
/// one bound and one index (as short as the C reference's loop); the last
/// bytes are compared one by one.
#[inline]
pub fn key_order(a: &[u8], b: &[u8]) -> core::cmp::Ordering {
    let n = a.len().min(b.len());
    for (x, y) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
        // Chunks of exactly eight bytes: the conversions cannot fail (and
        // would give the slices' own order if they did).
        let (Ok(x), Ok(y)) = (<[u8; 8]>::try_from(x), <[u8; 8]>::try_from(y)) else {
            return a.cmp(b);
        };
        // Big-endian: the first byte that differs decides, as bytewise.
        let (x, y) = (u64::from_be_bytes(x), u64::from_be_bytes(y));
        if x != y {
            return x.cmp(&y);
        }
    }
    // Fewer than eight bytes left in one of them. `get` never fails
    // (`n & !7 <= n`); taken this way, not as the chunks' remainders whose
    // length the compiler knows to be under 8, the loop is not unrolled into
    // a branch per byte at each of the many places the order is inlined.
    let words = n & !7;
    let (a_tail, b_tail) = (
        a.get(words..).unwrap_or_default(),
        b.get(words..).unwrap_or_default(),
    );
    for (x, y) in a_tail.iter().zip(b_tail) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

fn check_key_len(len: usize) -> Result<(), Reject> {
    if len == 0 || len > MAX_KEY_LEN {
        return Err(Reject::Invalid);
    }
    Ok(())
}

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Insert or overwrite.
    Put,
    /// Remove.
    Del,
}

/// Longest lifetime of an entry, in milliseconds.
pub const MAX_TTL_MS: u32 = uapi::NFKV_MAX_TTL_MS;

/// What a put does to its entry's expiry (`NFKV_F_TTL`, `NFKV_F_KEEP_TTL`).
/// The default: the entry never expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ttl {
    /// The entry expires this many milliseconds (1..=[`MAX_TTL_MS`]) after
    /// the write (`NFKV_F_TTL`); `None`: it never expires.
    pub ms: Option<u32>,
    /// Where the key is present, the entry keeps that one's expiry (or its
    /// lack of one) instead (`NFKV_F_KEEP_TTL`).
    pub keep: bool,
}

/// What the flags of a write (`NFKV_F_*`) ask: its conditions and its
/// entry's expiry, already checked for consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Condition {
    /// The key must be absent (`NFKV_F_CREATE`).
    pub create_only: bool,
    /// The key must be present (`NFKV_F_REPLACE`).
    pub replace_only: bool,
    /// The entry must have this version (`NFKV_F_IF_VERSION`).
    pub if_version: Option<u64>,
    /// A put's expiry.
    pub ttl: Ttl,
}

impl Condition {
    fn from_wire(kind: OpKind, flags: u32, version: u64, ttl_ms: u32) -> Result<Self, Reject> {
        if flags & !uapi::NFKV_F_ALL != 0 {
            return Err(Reject::Invalid);
        }
        let cond = Condition {
            create_only: flags & uapi::NFKV_F_CREATE != 0,
            replace_only: flags & uapi::NFKV_F_REPLACE != 0,
            if_version: (flags & uapi::NFKV_F_IF_VERSION != 0).then_some(version),
            ttl: Ttl {
                ms: (flags & uapi::NFKV_F_TTL != 0).then_some(ttl_ms),
                keep: flags & uapi::NFKV_F_KEEP_TTL != 0,
            },
        };
        let contradictory = cond.create_only && (cond.replace_only || cond.if_version.is_some());
        let del_with_put_flags = kind == OpKind::Del
            && (cond.create_only || cond.replace_only || cond.ttl != Ttl::default());
        if contradictory
            || del_with_put_flags
            || cond.if_version == Some(0)
            || (cond.if_version.is_none() && version != 0)
            || cond.ttl.ms == Some(0)
            || (cond.ttl.ms.is_none() && ttl_ms != 0)
        {
            return Err(Reject::Invalid);
        }
        Ok(cond)
    }

    /// The flags, expected version and lifetime fields of `struct nfkv_op`.
    fn to_wire(self) -> (u32, u64, u32) {
        let mut flags = 0;
        if self.create_only {
            flags |= uapi::NFKV_F_CREATE;
        }
        if self.replace_only {
            flags |= uapi::NFKV_F_REPLACE;
        }
        if self.if_version.is_some() {
            flags |= uapi::NFKV_F_IF_VERSION;
        }
        if self.ttl.ms.is_some() {
            flags |= uapi::NFKV_F_TTL;
        }
        if self.ttl.keep {
            flags |= uapi::NFKV_F_KEEP_TTL;
        }
        (
            flags,
            self.if_version.unwrap_or(0),
            self.ttl.ms.unwrap_or(0),
        )
    }
}

/// One validated write, borrowing key and value from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    /// Put or delete.
    pub kind: OpKind,
    /// Its conditions.
    pub cond: Condition,
    /// 1..=[`MAX_KEY_LEN`] bytes.
    pub key: &'a [u8],
    /// Empty for a delete.
    pub value: &'a [u8],
}

impl<'a> Op<'a> {
    /// Bytes of `struct nfkv_op` + key + value.
    pub fn wire_len(&self) -> usize {
        OP_SIZE + self.key.len() + self.value.len()
    }

    /// Bytes of this op as a batch record, padding included.
    pub fn record_len(&self) -> usize {
        // Key and value lengths are bounded, so this cannot overflow.
        padded(self.wire_len())
    }

    /// The `struct nfkv_op` header of this op.
    pub fn encode_header(&self) -> [u8; OP_SIZE] {
        let mut h = [0u8; OP_SIZE];
        let op = match self.kind {
            OpKind::Put => uapi::NFKV_OP_PUT,
            OpKind::Del => uapi::NFKV_OP_DEL,
        };
        let (flags, version, ttl_ms) = self.cond.to_wire();
        put_u16(&mut h, offset_of!(uapi::nfkv_op, op), op as u16);
        put_u16(
            &mut h,
            offset_of!(uapi::nfkv_op, key_len),
            self.key.len() as u16,
        );
        put_u32(&mut h, offset_of!(uapi::nfkv_op, flags), flags);
        put_u32(
            &mut h,
            offset_of!(uapi::nfkv_op, value_len),
            self.value.len() as u32,
        );
        put_u32(&mut h, offset_of!(uapi::nfkv_op, ttl_ms), ttl_ms);
        put_u64(&mut h, offset_of!(uapi::nfkv_op, version), version);
        h
    }
}

/// The checked fixed part of one op.
#[derive(Debug, Clone, Copy)]
pub struct OpHeader {
    /// Put or delete.
    pub kind: OpKind,
    /// Its conditions.
    pub cond: Condition,
    /// Key bytes after the header.
    pub key_len: usize,
    /// Value bytes after the key.
    pub value_len: usize,
}

impl OpHeader {
    /// Header, key and value: the op's length without padding.
    pub fn wire_len(&self) -> usize {
        OP_SIZE + self.key_len + self.value_len
    }
}

/// Checks the fixed part of an op (everything but the key and value bytes),
/// refusing with the errno the whole op would get.
#[inline]
pub fn op_header(h: &[u8; OP_SIZE], max_value_len: usize) -> Result<OpHeader, Reject> {
    let kind = match u32::from(get_u16(h, offset_of!(uapi::nfkv_op, op))) {
        uapi::NFKV_OP_PUT => OpKind::Put,
        uapi::NFKV_OP_DEL => OpKind::Del,
        _ => return Err(Reject::Invalid),
    };
    let key_len = usize::from(get_u16(h, offset_of!(uapi::nfkv_op, key_len)));
    let flags = get_u32(h, offset_of!(uapi::nfkv_op, flags));
    let value_len = get_u32(h, offset_of!(uapi::nfkv_op, value_len)) as usize;
    let ttl_ms = get_u32(h, offset_of!(uapi::nfkv_op, ttl_ms));
    let version = get_u64(h, offset_of!(uapi::nfkv_op, version));
    check_key_len(key_len)?;
    let cond = Condition::from_wire(kind, flags, version, ttl_ms)?;
    match kind {
        OpKind::Del if value_len != 0 => return Err(Reject::Invalid),
        OpKind::Put if value_len > max_value_len => return Err(Reject::TooBig),
        _ => {}
    }
    Ok(OpHeader {
        kind,
        cond,
        key_len,
        value_len,
    })
}

/// One op as it lies in a request: its checked header, then its key and
/// value back to back (so an entry can take both in one copy).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The op's fixed part.
    pub header: OpHeader,
    /// `header.key_len` key bytes, then `header.value_len` value bytes.
    key_value: &'a [u8],
}

impl<'a> Record<'a> {
    /// The key, then the value.
    pub fn key_value(&self) -> &'a [u8] {
        self.key_value
    }

    /// The key and the value.
    pub fn split(&self) -> (&'a [u8], &'a [u8]) {
        // `parse_record` took `key_len + value_len` bytes: the `min` only
        // spares a bounds check.
        self.key_value
            .split_at(self.header.key_len.min(self.key_value.len()))
    }

    /// The op this record holds.
    pub fn op(&self) -> Op<'a> {
        let (key, value) = self.split();
        Op {
            kind: self.header.kind,
            cond: self.header.cond,
            key,
            value,
        }
    }
}

/// Parses one `struct nfkv_op` with its key and value from the front of
/// `buf`; returns it and the bytes after the value.
#[inline]
fn parse_record(buf: &[u8], max_value_len: usize) -> Result<(Record<'_>, &[u8]), Reject> {
    let (h, rest) = take(buf, OP_SIZE)?;
    let h: &[u8; OP_SIZE] = h.try_into().map_err(|_| Reject::Invalid)?;
    let header = op_header(h, max_value_len)?;
    let (key_value, rest) = take(rest, header.key_len + header.value_len)?;
    Ok((Record { header, key_value }, rest))
}

/// Parses a whole `NFKV_SO_SET_PUT` (`kind` Put) or `NFKV_SO_SET_DEL` (`kind`
/// Del) request: exactly one op of that kind and nothing after it.
pub fn parse_single(kind: OpKind, buf: &[u8], max_value_len: usize) -> Result<Op<'_>, Reject> {
    parse_single_record(kind, buf, max_value_len).map(|record| record.op())
}

/// [`parse_single`], as the record (key and value in one slice).
#[inline]
pub fn parse_single_record(
    kind: OpKind,
    buf: &[u8],
    max_value_len: usize,
) -> Result<Record<'_>, Reject> {
    let (record, rest) = parse_record(buf, max_value_len)?;
    if record.header.kind != kind || !rest.is_empty() {
        return Err(Reject::Invalid);
    }
    Ok(record)
}

/// Parses an `NFKV_SO_SET_FLUSH` request.
pub fn parse_flush(buf: &[u8]) -> Result<(), Reject> {
    if buf.len() != FLUSH_SIZE || buf.iter().any(|&b| b != 0) {
        return Err(Reject::Invalid);
    }
    Ok(())
}

const MIN_RECORD_LEN: usize = padded(OP_SIZE + 1);

/// An `NFKV_SO_SET_BATCH` request whose header was checked.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Empty the table before the first record.
    pub flush: bool,
    /// Number of records.
    pub count: usize,
    records: &'a [u8],
    max_value_len: usize,
}

impl<'a> Batch<'a> {
    /// Checks the header of a batch request.
    pub fn parse(buf: &'a [u8], max_value_len: usize) -> Result<Self, Reject> {
        let (h, records) = take(buf, BATCH_SIZE)?;
        let h: &[u8; BATCH_SIZE] = h.try_into().map_err(|_| Reject::Invalid)?;
        let (flush, count) = Self::check_header(h, buf.len())?;
        Ok(Batch {
            flush,
            count,
            records,
            max_value_len,
        })
    }

    /// Checks the header of a batch request of `len` bytes in all (before
    /// the records are read); returns its flush flag and record count.
    pub fn check_header(h: &[u8; BATCH_SIZE], len: usize) -> Result<(bool, usize), Reject> {
        let flags = get_u32(h, offset_of!(uapi::nfkv_batch, flags));
        let count = get_u32(h, offset_of!(uapi::nfkv_batch, count)) as usize;
        if flags & !uapi::NFKV_BATCH_F_FLUSH != 0 {
            return Err(Reject::Invalid);
        }
        if count > MAX_BATCH_OPS {
            return Err(Reject::TooBig);
        }
        // Every record takes at least a header and a one-byte key, padded:
        // a count that cannot fit is refused before anyone sizes by it.
        if len.saturating_sub(BATCH_SIZE) / MIN_RECORD_LEN < count {
            return Err(Reject::Invalid);
        }
        Ok((flags & uapi::NFKV_BATCH_F_FLUSH != 0, count))
    }

    /// Visits every record in order. Stops at the first malformed record or
    /// the first error of `visit`; a batch whose records do not end exactly
    /// at the end of the request is malformed too.
    pub fn for_each<E: From<Reject>>(
        &self,
        mut visit: impl FnMut(usize, Record<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = self.records;
        for index in 0..self.count {
            let (record, after) = parse_record(rest, self.max_value_len)?;
            let wire_len = record.header.wire_len();
            let (pad, after) = take(after, padded(wire_len) - wire_len)?;
            if pad.iter().any(|&b| b != 0) {
                return Err(Reject::Invalid.into());
            }
            visit(index, record)?;
            rest = after;
        }
        if !rest.is_empty() {
            return Err(Reject::Invalid.into());
        }
        Ok(())
    }
}

/// The header of a batch request.
pub fn encode_batch_header(flush: bool, count: u32) -> [u8; BATCH_SIZE] {
    let mut h = [0u8; BATCH_SIZE];
    let flags = if flush { uapi::NFKV_BATCH_F_FLUSH } else { 0 };
    put_u32(&mut h, offset_of!(uapi::nfkv_batch, flags), flags);
    put_u32(&mut h, offset_of!(uapi::nfkv_batch, count), count);
    h
}

/// Checks a getsockopt length: non-negative and at least `min`.
pub fn check_get_len(len: i32, min: usize) -> Result<usize, Reject> {
    match usize::try_from(len) {
        Ok(len) if len >= min => Ok(len),
        _ => Err(Reject::Invalid),
    }
}

/// Parses the request region of `NFKV_SO_GET_VALUE`. `req` holds the first
/// `min(len, GET_REQUEST_MAX)` bytes of the caller's buffer of `len` bytes.
/// Returns the key.
pub fn parse_get(req: &[u8], len: i32) -> Result<&[u8], Reject> {
    check_get_len(len, VALUE_SIZE.max(GET_SIZE))?;
    let (h, rest) = take(req, GET_SIZE)?;
    let key_len = usize::from(get_u16(h, offset_of!(uapi::nfkv_get, key_len)));
    if get_u16(h, offset_of!(uapi::nfkv_get, reserved)) != 0
        || get_u32(h, offset_of!(uapi::nfkv_get, reserved2)) != 0
    {
        return Err(Reject::Invalid);
    }
    check_key_len(key_len)?;
    Ok(take(rest, key_len)?.0)
}

/// Encodes a `NFKV_SO_GET_VALUE` request for `key` into `out`, which must be
/// at least `GET_SIZE + key.len()` bytes; returns the bytes used.
pub fn encode_get(out: &mut [u8], key: &[u8]) -> usize {
    out[..GET_SIZE].fill(0);
    put_u16(out, offset_of!(uapi::nfkv_get, key_len), key.len() as u16);
    out[GET_SIZE..GET_SIZE + key.len()].copy_from_slice(key);
    GET_SIZE + key.len()
}

/// The `struct nfkv_value` reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader {
    /// The entry's version.
    pub version: u64,
    /// The value's full length.
    pub value_len: u32,
    /// Milliseconds left before the entry expires (whole jiffies after the
    /// current one), at least 1; 0: never.
    pub ttl_ms: u32,
}

impl ValueHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; VALUE_SIZE] {
        let mut h = [0u8; VALUE_SIZE];
        put_u64(&mut h, offset_of!(uapi::nfkv_value, version), self.version);
        put_u32(
            &mut h,
            offset_of!(uapi::nfkv_value, value_len),
            self.value_len,
        );
        put_u32(&mut h, offset_of!(uapi::nfkv_value, ttl_ms), self.ttl_ms);
        h
    }

    /// Decodes the header at the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, Reject> {
        let (h, _) = take(buf, VALUE_SIZE)?;
        Ok(ValueHeader {
            version: get_u64(h, offset_of!(uapi::nfkv_value, version)),
            value_len: get_u32(h, offset_of!(uapi::nfkv_value, value_len)),
            ttl_ms: get_u32(h, offset_of!(uapi::nfkv_value, ttl_ms)),
        })
    }
}

/// A checked `NFKV_SO_GET_LIST` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRequest<'a> {
    /// Resume strictly after this key; empty: from the first key.
    pub after: &'a [u8],
    /// Only keys starting with this; empty: all keys.
    pub prefix: &'a [u8],
}

impl<'a> ListRequest<'a> {
    /// Parses the request region of `NFKV_SO_GET_LIST`; `req` holds the first
    /// `min(len, LIST_REQUEST_MAX)` bytes of the caller's buffer of `len`.
    pub fn parse(req: &'a [u8], len: i32) -> Result<Self, Reject> {
        check_get_len(len, LIST_REPLY_SIZE.max(LIST_SIZE))?;
        let (h, rest) = take(req, LIST_SIZE)?;
        let after_len = usize::from(get_u16(h, offset_of!(uapi::nfkv_list, after_len)));
        let prefix_len = usize::from(get_u16(h, offset_of!(uapi::nfkv_list, prefix_len)));
        if get_u32(h, offset_of!(uapi::nfkv_list, flags)) != 0
            || after_len > MAX_KEY_LEN
            || prefix_len > MAX_KEY_LEN
        {
            return Err(Reject::Invalid);
        }
        let (after, rest) = take(rest, after_len)?;
        let (prefix, _) = take(rest, prefix_len)?;
        Ok(ListRequest { after, prefix })
    }

    /// Bytes of the encoded request.
    pub fn wire_len(&self) -> usize {
        LIST_SIZE + self.after.len() + self.prefix.len()
    }

    /// Encodes the request into `out` (at least [`Self::wire_len`] bytes).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        out[..LIST_SIZE].fill(0);
        put_u16(
            out,
            offset_of!(uapi::nfkv_list, after_len),
            self.after.len() as u16,
        );
        put_u16(
            out,
            offset_of!(uapi::nfkv_list, prefix_len),
            self.prefix.len() as u16,
        );
        let a = LIST_SIZE + self.after.len();
        out[LIST_SIZE..a].copy_from_slice(self.after);
        out[a..a + self.prefix.len()].copy_from_slice(self.prefix);
        self.wire_len()
    }
}

/// Bytes one list entry takes in a reply, padding included.
pub fn list_entry_len(key_len: usize, value_len: usize) -> usize {
    // Both lengths are bounded by the table's limits: no overflow.
    padded(LIST_ENTRY_SIZE + key_len + value_len)
}

/// The `struct nfkv_list_reply` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListReplyHeader {
    /// The table's generation when the page was taken.
    pub generation: u64,
    /// Entries in the page.
    pub count: u32,
    /// More matching entries follow.
    pub more: bool,
    /// Bytes used, header included; on EMSGSIZE the size needed.
    pub size: u32,
}

impl ListReplyHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; LIST_REPLY_SIZE] {
        let mut h = [0u8; LIST_REPLY_SIZE];
        let flags = if self.more { uapi::NFKV_LIST_F_MORE } else { 0 };
        put_u64(
            &mut h,
            offset_of!(uapi::nfkv_list_reply, generation),
            self.generation,
        );
        put_u32(&mut h, offset_of!(uapi::nfkv_list_reply, count), self.count);
        put_u32(&mut h, offset_of!(uapi::nfkv_list_reply, flags), flags);
        put_u32(&mut h, offset_of!(uapi::nfkv_list_reply, size), self.size);
        h
    }

    /// Decodes the header at the front of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, Reject> {
        let (h, _) = take(buf, LIST_REPLY_SIZE)?;
        let flags = get_u32(h, offset_of!(uapi::nfkv_list_reply, flags));
        Ok(ListReplyHeader {
            generation: get_u64(h, offset_of!(uapi::nfkv_list_reply, generation)),
            count: get_u32(h, offset_of!(uapi::nfkv_list_reply, count)),
            more: flags & uapi::NFKV_LIST_F_MORE != 0,
            size: get_u32(h, offset_of!(uapi::nfkv_list_reply, size)),
        })
    }
}

/// Appends list entries to a page buffer after room for the reply header.
pub struct ListPageWriter<'b> {
    buf: &'b mut [u8],
    used: usize,
    count: u32,
}

impl<'b> ListPageWriter<'b> {
    /// A writer over `buf`, which must hold at least the reply header.
    pub fn new(buf: &'b mut [u8]) -> Result<Self, Reject> {
        if buf.len() < LIST_REPLY_SIZE {
            return Err(Reject::Invalid);
        }
        buf[..LIST_REPLY_SIZE].fill(0);
        Ok(ListPageWriter {
            buf,
            used: LIST_REPLY_SIZE,
            count: 0,
        })
    }

    /// Appends an entry (its key the first `key_len` bytes of `key_value`,
    /// `ttl_ms` left to live, 0 for ever) if it fits whole; returns whether
    /// it did. Writes every byte of the entry, padding included: the page
    /// need not be zeroed first.
    pub fn push(&mut self, version: u64, ttl_ms: u32, key_len: usize, key_value: &[u8]) -> bool {
        let data = LIST_ENTRY_SIZE + key_value.len();
        let len = padded(data);
        let Some(e) = self
            .buf
            .get_mut(self.used..)
            .and_then(|rest| rest.get_mut(..len))
        else {
            return false;
        };
        let key_len = key_len.min(key_value.len());
        let mut header = [0u8; LIST_ENTRY_SIZE];
        put_u64(
            &mut header,
            offset_of!(uapi::nfkv_list_entry, version),
            version,
        );
        put_u16(
            &mut header,
            offset_of!(uapi::nfkv_list_entry, key_len),
            key_len as u16,
        );
        put_u32(
            &mut header,
            offset_of!(uapi::nfkv_list_entry, value_len),
            (key_value.len() - key_len) as u32,
        );
        put_u32(
            &mut header,
            offset_of!(uapi::nfkv_list_entry, ttl_ms),
            ttl_ms,
        );
        // The padding lies in the last ALIGN bytes (len >= header > ALIGN):
        // zero them as one word, then write over the rest.
        e[len - ALIGN..].fill(0);
        e[..LIST_ENTRY_SIZE].copy_from_slice(&header);
        e[LIST_ENTRY_SIZE..data].copy_from_slice(key_value);
        self.used += len;
        self.count += 1;
        true
    }

    /// Entries pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Writes the header; returns the bytes of the page.
    pub fn finish(self, generation: u64, more: bool) -> usize {
        let header = ListReplyHeader {
            generation,
            count: self.count,
            more,
            size: self.used as u32,
        };
        self.buf[..LIST_REPLY_SIZE].copy_from_slice(&header.encode());
        self.used
    }
}

/// One entry of a list reply, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry<'a> {
    /// The entry's version.
    pub version: u64,
    /// Milliseconds it has left, as [`ValueHeader::ttl_ms`]; 0: never.
    pub ttl_ms: u32,
    /// Its key.
    pub key: &'a [u8],
    /// Its value.
    pub value: &'a [u8],
}

/// Decodes a list reply page: its header and entries, checking that they
/// fill exactly `size` bytes.
pub fn decode_list_page<E: From<Reject>>(
    page: &[u8],
    mut visit: impl FnMut(ListEntry<'_>) -> Result<(), E>,
) -> Result<ListReplyHeader, E> {
    let header = ListReplyHeader::decode(page)?;
    let size = header.size as usize;
    if size > page.len() || size < LIST_REPLY_SIZE {
        return Err(Reject::Invalid.into());
    }
    let mut rest = &page[LIST_REPLY_SIZE..size];
    for _ in 0..header.count {
        let (h, _) = take(rest, LIST_ENTRY_SIZE)?;
        let key_len = usize::from(get_u16(h, offset_of!(uapi::nfkv_list_entry, key_len)));
        let value_len = get_u32(h, offset_of!(uapi::nfkv_list_entry, value_len)) as usize;
        let version = get_u64(h, offset_of!(uapi::nfkv_list_entry, version));
        let ttl_ms = get_u32(h, offset_of!(uapi::nfkv_list_entry, ttl_ms));
        let len = list_entry_len(key_len, value_len);
        let (entry, after) = take(rest, len)?;
        let key = &entry[LIST_ENTRY_SIZE..LIST_ENTRY_SIZE + key_len];
        let value = &entry[LIST_ENTRY_SIZE + key_len..LIST_ENTRY_SIZE + key_len + value_len];
        visit(ListEntry {
            version,
            ttl_ms,
            key,
            value,
        })?;
        rest = after;
    }
    if !rest.is_empty() {
        return Err(Reject::Invalid.into());
    }
    Ok(header)
}

/// `struct nfkv_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Info {
    /// The module's ABI version.
    pub abi_version: u32,
    /// First optname of the module's range.
    pub optbase: u32,
    /// Longest key.
    pub max_key_len: u32,
    /// Longest value.
    pub max_value_len: u32,
    /// Most entries per namespace.
    pub max_entries: u32,
    /// Most records per batch.
    pub max_batch_ops: u32,
    /// Entries in the table.
    pub entries: u32,
    /// `NFKV_INFO_F_*`: [`Info::charged_to_budget`].
    pub flags: u32,
    /// Key and value bytes stored.
    pub bytes_used: u64,
    /// The table's generation.
    pub generation: u64,
    /// NUL-terminated module version.
    pub module_version: [u8; 16],
    /// Most key and value bytes per namespace.
    pub max_bytes: u64,
    /// What the table's entries are charged to the shared budget.
    pub charged: u64,
    /// What all the shared budget's tables are charged.
    pub budget_used: u64,
    /// The shared budget's size.
    pub budget_size: u64,
}

/// `struct nfkv_info.flags`: the table is charged to the shared budget.
pub const INFO_F_BUDGET: u32 = uapi::NFKV_INFO_F_BUDGET;

impl Info {
    /// Encodes the reply.
    pub fn encode(&self) -> [u8; INFO_SIZE] {
        let mut b = [0u8; INFO_SIZE];
        put_u32(
            &mut b,
            offset_of!(uapi::nfkv_info, abi_version),
            self.abi_version,
        );
        put_u32(&mut b, offset_of!(uapi::nfkv_info, optbase), self.optbase);
        put_u32(
            &mut b,
            offset_of!(uapi::nfkv_info, max_key_len),
            self.max_key_len,
        );
        put_u32(
            &mut b,
            offset_of!(uapi::nfkv_info, max_value_len),
            self.max_value_len,
        );
        put_u32(
            &mut b,
            offset_of!(uapi::nfkv_info, max_entries),
            self.max_entries,
        );
        put_u32(
            &mut b,
            offset_of!(uapi::nfkv_info, max_batch_ops),
            self.max_batch_ops,
        );
        put_u32(&mut b, offset_of!(uapi::nfkv_info, entries), self.entries);
        put_u64(
            &mut b,
            offset_of!(uapi::nfkv_info, bytes_used),
            self.bytes_used,
        );
        put_u64(
            &mut b,
            offset_of!(uapi::nfkv_info, generation),
            self.generation,
        );
        let v = offset_of!(uapi::nfkv_info, module_version);
        b[v..v + 16].copy_from_slice(&self.module_version);
        put_u32(&mut b, offset_of!(uapi::nfkv_info, flags), self.flags);
        for (off, v) in [
            (offset_of!(uapi::nfkv_info, max_bytes), self.max_bytes),
            (offset_of!(uapi::nfkv_info, charged), self.charged),
            (offset_of!(uapi::nfkv_info, budget_used), self.budget_used),
            (offset_of!(uapi::nfkv_info, budget_size), self.budget_size),
        ] {
            put_u64(&mut b, off, v);
        }
        b
    }

    /// Decodes the reply.
    pub fn decode(buf: &[u8]) -> Result<Self, Reject> {
        let (b, _) = take(buf, INFO_SIZE)?;
        let v = offset_of!(uapi::nfkv_info, module_version);
        let mut module_version = [0u8; 16];
        module_version.copy_from_slice(&b[v..v + 16]);
        Ok(Info {
            abi_version: get_u32(b, offset_of!(uapi::nfkv_info, abi_version)),
            optbase: get_u32(b, offset_of!(uapi::nfkv_info, optbase)),
            max_key_len: get_u32(b, offset_of!(uapi::nfkv_info, max_key_len)),
            max_value_len: get_u32(b, offset_of!(uapi::nfkv_info, max_value_len)),
            max_entries: get_u32(b, offset_of!(uapi::nfkv_info, max_entries)),
            max_batch_ops: get_u32(b, offset_of!(uapi::nfkv_info, max_batch_ops)),
            entries: get_u32(b, offset_of!(uapi::nfkv_info, entries)),
            bytes_used: get_u64(b, offset_of!(uapi::nfkv_info, bytes_used)),
            generation: get_u64(b, offset_of!(uapi::nfkv_info, generation)),
            module_version,
            flags: get_u32(b, offset_of!(uapi::nfkv_info, flags)),
            max_bytes: get_u64(b, offset_of!(uapi::nfkv_info, max_bytes)),
            charged: get_u64(b, offset_of!(uapi::nfkv_info, charged)),
            budget_used: get_u64(b, offset_of!(uapi::nfkv_info, budget_used)),
            budget_size: get_u64(b, offset_of!(uapi::nfkv_info, budget_size)),
        })
    }

    /// The ABI version of a reply of any length that holds at least its
    /// first field: how a client names a module of another ABI, whose
    /// `struct nfkv_info` may be shorter or longer.
    pub fn abi_version_of(buf: &[u8]) -> Option<u32> {
        let off = offset_of!(uapi::nfkv_info, abi_version);
        buf.get(off..off + 4).map(|_| get_u32(buf, off))
    }

    /// Whether the table is charged to the shared budget (its namespace is
    /// owned by a non-initial user namespace).
    pub fn charged_to_budget(&self) -> bool {
        self.flags & INFO_F_BUDGET != 0
    }

    /// The module version as text (up to the first NUL).
    pub fn module_version_str(&self) -> &str {
        let end = self
            .module_version
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(16);
        core::str::from_utf8(&self.module_version[..end]).unwrap_or("?")
    }
}

/// One command's outcome counts (`struct nfkv_counter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    /// Successful calls.
    pub ok: u64,
    /// Failed calls.
    pub failed: u64,
}

/// `struct nfkv_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Set commands, by offset.
    pub set: [Counter; SET_COMMANDS],
    /// Get commands, by offset.
    pub get: [Counter; GET_COMMANDS],
}

const COUNTER_SIZE: usize = size_of::<uapi::nfkv_counter>();

/// Offset of counter `i` of `set` followed by `get` in `struct nfkv_stats`.
fn counter_offset(i: usize) -> usize {
    if i < SET_COMMANDS {
        offset_of!(uapi::nfkv_stats, set) + i * COUNTER_SIZE
    } else {
        offset_of!(uapi::nfkv_stats, get) + (i - SET_COMMANDS) * COUNTER_SIZE
    }
}

impl Stats {
    /// Encodes the reply.
    pub fn encode(&self) -> [u8; STATS_SIZE] {
        let mut b = [0u8; STATS_SIZE];
        for (i, c) in self.set.iter().chain(self.get.iter()).enumerate() {
            let off = counter_offset(i);
            put_u64(&mut b, off + offset_of!(uapi::nfkv_counter, ok), c.ok);
            put_u64(
                &mut b,
                off + offset_of!(uapi::nfkv_counter, failed),
                c.failed,
            );
        }
        b
    }

    /// Decodes the reply.
    pub fn decode(buf: &[u8]) -> Result<Self, Reject> {
        let (b, _) = take(buf, STATS_SIZE)?;
        let mut stats = Stats::default();
        for (i, c) in stats.set.iter_mut().chain(stats.get.iter_mut()).enumerate() {
            let off = counter_offset(i);
            c.ok = get_u64(b, off + offset_of!(uapi::nfkv_counter, ok));
            c.failed = get_u64(b, off + offset_of!(uapi::nfkv_counter, failed));
        }
        Ok(stats)
    }
}

/// A checked `NFKV_SO_GET_WATCH` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchRequest<'a> {
    /// The generation the caller has seen up to.
    pub since: u64,
    /// Longest wait, in milliseconds.
    pub timeout_ms: u32,
    /// Only events of keys starting with this (flushes always).
    pub prefix: &'a [u8],
    /// Attach the values of puts.
    pub values: bool,
}

impl<'a> WatchRequest<'a> {
    /// Parses the request region of `NFKV_SO_GET_WATCH`; `req` holds the
    /// first `min(len, WATCH_REQUEST_MAX)` bytes of the caller's buffer of
    /// `len`.
    pub fn parse(req: &'a [u8], len: i32) -> Result<Self, Reject> {
        check_get_len(len, WATCH_REPLY_SIZE.max(WATCH_SIZE))?;
        let (h, rest) = take(req, WATCH_SIZE)?;
        let prefix_len = usize::from(get_u16(h, offset_of!(uapi::nfkv_watch, prefix_len)));
        let flags = u32::from(get_u16(h, offset_of!(uapi::nfkv_watch, flags)));
        let timeout_ms = get_u32(h, offset_of!(uapi::nfkv_watch, timeout_ms));
        if flags & !uapi::NFKV_WATCH_F_VALUES != 0
            || prefix_len > MAX_KEY_LEN
            || timeout_ms > WATCH_MAX_TIMEOUT_MS
        {
            return Err(Reject::Invalid);
        }
        let (prefix, _) = take(rest, prefix_len)?;
        Ok(WatchRequest {
            since: get_u64(h, offset_of!(uapi::nfkv_watch, since)),
            timeout_ms,
            prefix,
            values: flags & uapi::NFKV_WATCH_F_VALUES != 0,
        })
    }

    /// Bytes of the encoded request.
    pub fn wire_len(&self) -> usize {
        WATCH_SIZE + self.prefix.len()
    }

    /// Encodes the request into `out` (at least [`Self::wire_len`] bytes).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        out[..WATCH_SIZE].fill(0);
        put_u64(out, offset_of!(uapi::nfkv_watch, since), self.since);
        put_u32(
            out,
            offset_of!(uapi::nfkv_watch, timeout_ms),
            self.timeout_ms,
        );
        put_u16(
            out,
            offset_of!(uapi::nfkv_watch, prefix_len),
            self.prefix.len() as u16,
        );
        let flags = if self.values {
            uapi::NFKV_WATCH_F_VALUES
        } else {
            0
        };
        put_u16(out, offset_of!(uapi::nfkv_watch, flags), flags as u16);
        out[WATCH_SIZE..self.wire_len()].copy_from_slice(self.prefix);
        self.wire_len()
    }
}

/// The `struct nfkv_watch_reply` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchReplyHeader {
    /// Every event up to this generation is in the reply or filtered out:
    /// the next call's `since`.
    pub generation: u64,
    /// Events in the reply.
    pub count: u32,
    /// The log no longer holds every event after `since`.
    pub gap: bool,
    /// More events are logged already.
    pub more: bool,
    /// Bytes used, header included; on EMSGSIZE the size needed.
    pub size: u32,
    /// The oldest `since` the log answers.
    pub oldest: u64,
}

impl WatchReplyHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; WATCH_REPLY_SIZE] {
        let mut h = [0u8; WATCH_REPLY_SIZE];
        let flags = if self.gap { uapi::NFKV_WATCH_F_GAP } else { 0 }
            | if self.more {
                uapi::NFKV_WATCH_F_MORE
            } else {
                0
            };
        put_u64(
            &mut h,
            offset_of!(uapi::nfkv_watch_reply, generation),
            self.generation,
        );
        put_u32(
            &mut h,
            offset_of!(uapi::nfkv_watch_reply, count),
            self.count,
        );
        put_u32(&mut h, offset_of!(uapi::nfkv_watch_reply, flags), flags);
        put_u32(&mut h, offset_of!(uapi::nfkv_watch_reply, size), self.size);
        put_u64(
            &mut h,
            offset_of!(uapi::nfkv_watch_reply, oldest),
            self.oldest,
        );
        h
    }

    /// Decodes the header at the front of `buf`; unknown flags or a
    /// non-zero reserved field are refused.
    pub fn decode(buf: &[u8]) -> Result<Self, Reject> {
        let (h, _) = take(buf, WATCH_REPLY_SIZE)?;
        let flags = get_u32(h, offset_of!(uapi::nfkv_watch_reply, flags));
        if flags & !(uapi::NFKV_WATCH_F_GAP | uapi::NFKV_WATCH_F_MORE) != 0
            || get_u32(h, offset_of!(uapi::nfkv_watch_reply, reserved)) != 0
        {
            return Err(Reject::Invalid);
        }
        Ok(WatchReplyHeader {
            generation: get_u64(h, offset_of!(uapi::nfkv_watch_reply, generation)),
            count: get_u32(h, offset_of!(uapi::nfkv_watch_reply, count)),
            gap: flags & uapi::NFKV_WATCH_F_GAP != 0,
            more: flags & uapi::NFKV_WATCH_F_MORE != 0,
            size: get_u32(h, offset_of!(uapi::nfkv_watch_reply, size)),
            oldest: get_u64(h, offset_of!(uapi::nfkv_watch_reply, oldest)),
        })
    }
}

/// What changed, in a `struct nfkv_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An entry written.
    Put,
    /// An entry deleted.
    Del,
    /// Every entry removed.
    Flush,
    /// An expired entry removed.
    Expire,
}

impl EventKind {
    /// The `NFKV_EVENT_*` value.
    pub const fn wire(self) -> u8 {
        (match self {
            EventKind::Put => uapi::NFKV_EVENT_PUT,
            EventKind::Del => uapi::NFKV_EVENT_DEL,
            EventKind::Flush => uapi::NFKV_EVENT_FLUSH,
            EventKind::Expire => uapi::NFKV_EVENT_EXPIRE,
        }) as u8
    }

    /// The kind of `NFKV_EVENT_*` value `v`.
    pub const fn from_wire(v: u8) -> Option<Self> {
        match v as u32 {
            uapi::NFKV_EVENT_PUT => Some(EventKind::Put),
            uapi::NFKV_EVENT_DEL => Some(EventKind::Del),
            uapi::NFKV_EVENT_FLUSH => Some(EventKind::Flush),
            uapi::NFKV_EVENT_EXPIRE => Some(EventKind::Expire),
            _ => None,
        }
    }
}

/// The fixed part of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    /// Generation of the change (a put's entry version).
    pub generation: u64,
    /// Generation of the last change of the same write.
    pub last: u64,
    /// What changed.
    pub kind: EventKind,
    /// Bytes of key (0 for a flush).
    pub key_len: u16,
    /// Bytes of value attached; `None`: none attached.
    pub value_len: Option<u32>,
}

impl EventHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; EVENT_SIZE] {
        let mut h = [0u8; EVENT_SIZE];
        put_u64(
            &mut h,
            offset_of!(uapi::nfkv_event, generation),
            self.generation,
        );
        put_u64(&mut h, offset_of!(uapi::nfkv_event, last), self.last);
        h[offset_of!(uapi::nfkv_event, type_)] = self.kind.wire();
        if let Some(len) = self.value_len {
            h[offset_of!(uapi::nfkv_event, flags)] = uapi::NFKV_EVENT_F_VALUE as u8;
            put_u32(&mut h, offset_of!(uapi::nfkv_event, value_len), len);
        }
        put_u16(&mut h, offset_of!(uapi::nfkv_event, key_len), self.key_len);
        h
    }

    /// Decodes the header at the front of `buf`, checking its fields.
    pub fn decode(buf: &[u8]) -> Result<Self, Reject> {
        let (h, _) = take(buf, EVENT_SIZE)?;
        let kind =
            EventKind::from_wire(h[offset_of!(uapi::nfkv_event, type_)]).ok_or(Reject::Invalid)?;
        let flags = u32::from(h[offset_of!(uapi::nfkv_event, flags)]);
        let value_len = get_u32(h, offset_of!(uapi::nfkv_event, value_len));
        let key_len = get_u16(h, offset_of!(uapi::nfkv_event, key_len));
        let (generation, last) = (
            get_u64(h, offset_of!(uapi::nfkv_event, generation)),
            get_u64(h, offset_of!(uapi::nfkv_event, last)),
        );
        let value_len = match flags {
            0 if value_len == 0 => None,
            uapi::NFKV_EVENT_F_VALUE if kind == EventKind::Put => Some(value_len),
            _ => return Err(Reject::Invalid),
        };
        if (kind == EventKind::Flush) != (key_len == 0)
            || usize::from(key_len) > MAX_KEY_LEN
            || last < generation
        {
            return Err(Reject::Invalid);
        }
        Ok(EventHeader {
            generation,
            last,
            kind,
            key_len,
            value_len,
        })
    }
}

/// Bytes one event takes in a reply, padding included.
pub fn event_len(key_len: usize, value_len: usize) -> usize {
    // Both lengths are bounded by the table's limits: no overflow.
    padded(EVENT_SIZE + key_len + value_len)
}

/// Appends events to a watch reply after room for its header.
pub struct WatchPageWriter<'b> {
    buf: &'b mut [u8],
    used: usize,
    count: u32,
}

impl<'b> WatchPageWriter<'b> {
    /// A writer over `buf`, which must hold at least the reply header.
    pub fn new(buf: &'b mut [u8]) -> Result<Self, Reject> {
        if buf.len() < WATCH_REPLY_SIZE {
            return Err(Reject::Invalid);
        }
        buf[..WATCH_REPLY_SIZE].fill(0);
        Ok(WatchPageWriter {
            buf,
            used: WATCH_REPLY_SIZE,
            count: 0,
        })
    }

    /// Appends an event of header `h`, key `key` and attached value `value`
    /// (whose length must be `h.value_len`'s) if it fits whole; returns
    /// whether it did. Writes every byte, padding included.
    pub fn push(&mut self, h: &EventHeader, key: &[u8], value: &[u8]) -> bool {
        let data = EVENT_SIZE + key.len() + value.len();
        let len = padded(data);
        let Some(e) = self
            .buf
            .get_mut(self.used..)
            .and_then(|rest| rest.get_mut(..len))
        else {
            return false;
        };
        e[len - ALIGN..].fill(0);
        e[..EVENT_SIZE].copy_from_slice(&h.encode());
        e[EVENT_SIZE..EVENT_SIZE + key.len()].copy_from_slice(key);
        e[EVENT_SIZE + key.len()..data].copy_from_slice(value);
        self.used += len;
        self.count += 1;
        true
    }

    /// Events pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes used so far, header included.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Writes the header (`count` and `size` from what was pushed); returns
    /// the bytes of the page.
    pub fn finish(self, header: WatchReplyHeader) -> usize {
        let header = WatchReplyHeader {
            count: self.count,
            size: self.used as u32,
            ..header
        };
        self.buf[..WATCH_REPLY_SIZE].copy_from_slice(&header.encode());
        self.used
    }
}

/// One event of a watch reply, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Its fixed part.
    pub header: EventHeader,
    /// Its key (empty for a flush).
    pub key: &'a [u8],
    /// Its value, if attached.
    pub value: Option<&'a [u8]>,
}

/// Decodes a watch reply: its header and events, checking that they fill
/// exactly `size` bytes, are in generation order after `since`, and end at
/// or before the reply's generation.
pub fn decode_watch_page<E: From<Reject>>(
    page: &[u8],
    since: u64,
    mut visit: impl FnMut(Event<'_>) -> Result<(), E>,
) -> Result<WatchReplyHeader, E> {
    let header = WatchReplyHeader::decode(page)?;
    let size = header.size as usize;
    if size > page.len() || size < WATCH_REPLY_SIZE || (header.gap && header.count != 0) {
        return Err(Reject::Invalid.into());
    }
    let mut rest = &page[WATCH_REPLY_SIZE..size];
    let mut after = since;
    for _ in 0..header.count {
        let h = EventHeader::decode(rest)?;
        let key_len = usize::from(h.key_len);
        let value_len = h.value_len.unwrap_or(0) as usize;
        let (event, tail) = take(rest, event_len(key_len, value_len))?;
        if h.generation <= after || h.generation > header.generation {
            return Err(Reject::Invalid.into());
        }
        after = h.generation;
        let key = &event[EVENT_SIZE..EVENT_SIZE + key_len];
        let value = h
            .value_len
            .map(|_| &event[EVENT_SIZE + key_len..EVENT_SIZE + key_len + value_len]);
        visit(Event {
            header: h,
            key,
            value,
        })?;
        rest = tail;
    }
    if !rest.is_empty() || (!header.gap && header.generation < since) {
        return Err(Reject::Invalid.into());
    }
    Ok(header)
}
