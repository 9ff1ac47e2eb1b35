// SPDX-License-Identifier: GPL-2.0

//! The commands: from request bytes to table operations and reply bytes.
//! Safe Rust; the caller has checked CAP_NET_ADMIN.

use crate::classify;
use crate::codec::{
    self, cmd, Batch, Condition, ListPageWriter, ListRequest, OpKind, Reject, WatchRequest,
};
use crate::kernel_ext::pernet::Pernet;
use crate::kernel_ext::rcu::RcuGuard;
use crate::kernel_ext::sockopt::{GetBuffer, SetRequest};
use crate::policy;
use crate::store::NewEntry;
use crate::table::{gfp, Limits, NetTable, PreparedOp, Watched};
use kernel::prelude::*;

/// Most bytes one LIST call fills; a page always fits the largest entry.
const LIST_PAGE_MAX: usize = 1 << 20;

impl From<Reject> for Error {
    fn from(r: Reject) -> Error {
        match r {
            Reject::Invalid => EINVAL,
            Reject::TooBig => E2BIG,
        }
    }
}

fn errno(code: u32) -> Error {
    Error::from_errno(-(code as i32))
}

/// An optname inside our range that is no command.
pub(crate) fn eopnotsupp() -> Error {
    errno(kernel::bindings::EOPNOTSUPP)
}

fn emsgsize() -> Error {
    errno(kernel::bindings::EMSGSIZE)
}

/// Set requests up to this size are copied onto the stack, in one piece.
const SMALL_REQUEST: usize = 512;

/// Runs set command `cmd` (an offset from optbase) on request `req`. The
/// command and the length it allows are checked before anything is copied;
/// a request over [`SMALL_REQUEST`] bytes also has its fixed header checked
/// before anything past it is allocated or copied.
pub(crate) fn set(
    net: Pernet<'_, NetTable>,
    limits: &Limits,
    cmd: u32,
    req: &mut SetRequest<'_>,
) -> Result {
    if !cmd::is_set(cmd) {
        return Err(eopnotsupp());
    }
    if req.len() > codec::MAX_REQUEST_LEN {
        return Err(E2BIG);
    }
    if let Some(done) = classify::set(net, cmd, req) {
        return done;
    }
    let net = &*net;
    match cmd {
        cmd::SET_PUT => put(net, limits, req),
        cmd::SET_DEL => delete(net, limits, req),
        cmd::SET_FLUSH => {
            if req.len() != codec::FLUSH_SIZE {
                return Err(EINVAL);
            }
            req.with_rest_on_stack::<{ codec::FLUSH_SIZE }, _>(|flush| {
                codec::parse_flush(flush)?;
                commit(net, limits, true, &mut [])
            })
        }
        _ => batch(net, limits, req),
    }
}

/// Whether a request of `len` bytes, at least `header` long, is copied onto
/// the stack whole.
fn small(len: usize, header: usize) -> bool {
    (header..=SMALL_REQUEST).contains(&len)
}

/// Reads the fixed header of size `N` at the start of `req`; `EINVAL` when
/// the request is shorter.
fn read_header<const N: usize>(req: &mut SetRequest<'_>) -> Result<[u8; N]> {
    let mut header = [0u8; N];
    if req.len() < N {
        return Err(EINVAL);
    }
    req.read(&mut header)?;
    Ok(header)
}

/// A PUT. Up to [`SMALL_REQUEST`] bytes, the request is copied onto the
/// stack in one piece and the entry filled from there (one user copy, as
/// the C reference does); above, the header is read and checked, then key
/// and value are copied from the caller's buffer straight into the new
/// entry (no request buffer). Either way the entry is linked with no undo
/// log.
fn put(net: &NetTable, limits: &Limits, req: &mut SetRequest<'_>) -> Result {
    if small(req.len(), codec::OP_SIZE) {
        return req.with_rest_on_stack::<SMALL_REQUEST, _>(|bytes| {
            let record = codec::parse_single_record(OpKind::Put, bytes, limits.max_value_len)?;
            let new = NewEntry::new(record.header.key_len, record.key_value())?;
            link(net, limits, new, &record.header.cond)
        });
    }
    let (_, op) = single_op_header(req, limits, OpKind::Put)?;
    let new = NewEntry::filled(op.key_len, op.value_len, req)?;
    link(net, limits, new, &op.cond)
}

/// Links a PUT's entry under `cond`.
fn link(net: &NetTable, limits: &Limits, new: NewEntry, cond: &Condition) -> Result {
    // What the put displaced, or the refused entry, is freed below, after
    // unlocking.
    let done = net.write(|table| table.put_one(new, cond, limits));
    done.map(drop).map_err(|(_refused, e)| e)
}

/// Reads and checks the `struct nfkv_op` header of a PUT or DEL request of
/// `kind`, whose length must be exactly what the header says.
fn single_op_header(
    req: &mut SetRequest<'_>,
    limits: &Limits,
    kind: OpKind,
) -> Result<([u8; codec::OP_SIZE], codec::OpHeader)> {
    let header = read_header::<{ codec::OP_SIZE }>(req)?;
    let op = codec::op_header(&header, limits.max_value_len)?;
    if op.kind != kind || op.wire_len() != req.len() {
        return Err(EINVAL);
    }
    Ok((header, op))
}

/// A DEL: one descent under the lock, no undo log (see
/// [`Table::delete_one`](crate::table::Table::delete_one)). A DEL is a
/// header and a key, never over 512 bytes: a longer one is malformed, and
/// refused before anything is copied.
fn delete(net: &NetTable, limits: &Limits, req: &mut SetRequest<'_>) -> Result {
    const _: () = assert!(codec::OP_SIZE + codec::MAX_KEY_LEN <= SMALL_REQUEST);
    if !small(req.len(), codec::OP_SIZE) {
        return Err(EINVAL);
    }
    req.with_rest_on_stack::<SMALL_REQUEST, _>(|bytes| {
        let op = codec::parse_single(OpKind::Del, bytes, limits.max_value_len)?;
        // The entry is freed below, after unlocking.
        let removed = net.write(|table| table.delete_one(op.key, &op.cond));
        removed.map(drop)
    })
}

fn batch(net: &NetTable, limits: &Limits, req: &mut SetRequest<'_>) -> Result {
    let apply = |bytes: &[u8]| {
        let batch = Batch::parse(bytes, limits.max_value_len)?;
        let mut ops = KVVec::with_capacity(batch.count, gfp())?;
        batch.for_each(|_, record| -> Result {
            ops.push(PreparedOp::new(&record)?, gfp())?;
            Ok(())
        })?;
        commit(net, limits, batch.flush, &mut ops)
    };
    if small(req.len(), codec::BATCH_SIZE) {
        return req.with_rest_on_stack::<SMALL_REQUEST, _>(apply);
    }
    let header = read_header::<{ codec::BATCH_SIZE }>(req)?;
    Batch::check_header(&header, req.len())?;
    req.with_rest_after(&header, apply)
}

/// Applies a prepared write. What it displaced (in `ops`, and what a flush
/// took out) is freed after the lock is dropped, here and by the caller.
fn commit(net: &NetTable, limits: &Limits, flush: bool, ops: &mut [PreparedOp<'_>]) -> Result {
    // Unlocked before the drop.
    let flushed = net.write(|table| table.write(flush, ops, limits))?;
    drop(flushed);
    Ok(())
}

/// Runs get command `cmd` with buffer `buf`; returns the reply length.
/// `info` gives the fixed part of `NFKV_SO_GET_INFO`'s reply.
pub(crate) fn get(
    net: &NetTable,
    limits: &Limits,
    info: impl FnOnce() -> codec::Info,
    cmd: u32,
    buf: &GetBuffer<'_>,
) -> Result<usize> {
    match cmd {
        cmd::GET_INFO => {
            codec::check_get_len(buf.len(), codec::INFO_SIZE)?;
            let ((entries, bytes_used, generation), (budgeted, charged)) = {
                let table = net.table.lock();
                (table.usage(), table.charged())
            };
            let info = codec::Info {
                entries: entries as u32,
                bytes_used,
                generation,
                flags: if budgeted { codec::INFO_F_BUDGET } else { 0 },
                charged,
                budget_used: policy::USERNS_BUDGET.used(),
                ..info()
            };
            buf.write_reply(&[&info.encode()])?;
            Ok(codec::INFO_SIZE)
        }
        cmd::GET_VALUE => get_value(net, buf),
        cmd::GET_LIST => list(net, buf),
        cmd::GET_CLS_LIST => classify::list(net, buf),
        cmd::GET_WATCH => watch(net, limits, buf),
        cmd::GET_STATS => {
            codec::check_get_len(buf.len(), codec::STATS_SIZE)?;
            buf.write_reply(&[&net.stats.snapshot().encode()])?;
            Ok(codec::STATS_SIZE)
        }
        _ => Err(eopnotsupp()),
    }
}

/// A GET: no lock. The key is searched under RCU and the reply copied out
/// from the entry before leaving it, with page faults disabled; if the
/// caller's buffer needs a page faulted in, a reference is taken instead
/// and the copy made after leaving RCU (an entry never changes once
/// linked). Only then is the entry's count touched. An expired entry is
/// absent.
fn get_value(net: &NetTable, buf: &GetBuffer<'_>) -> Result<usize> {
    buf.with_request::<{ codec::GET_REQUEST_MAX }, _>(|req| {
        let key = codec::parse_get(req, buf.len())?;
        loop {
            let rcu = RcuGuard::new();
            let entry = net.reader.get(&rcu, key).ok_or(ENOENT)?;
            let meta = entry.meta();
            let ttl_ms = meta.time_left().ok_or(ENOENT)?;
            let reply = value_reply(buf, meta.version, ttl_ms, entry.value(), |parts| {
                buf.write_reply_nofault(parts)
            })?;
            if let Some(len) = reply {
                return Ok(len);
            }
            // None: a write since took the entry out and dropped it; search again.
            let Some(entry) = entry.to_ref() else {
                continue;
            };
            drop(rcu);
            let reply = value_reply(buf, meta.version, ttl_ms, entry.value(), |parts| {
                buf.write_reply(parts).map(|()| true)
            })?;
            return reply.ok_or(EFAULT);
        }
    })
}

/// Writes GET's reply (`struct nfkv_value` and the value) with `write`;
/// `EMSGSIZE` with the header alone when the value does not fit. `None`
/// when `write` could not write without faulting.
fn value_reply(
    buf: &GetBuffer<'_>,
    version: u64,
    ttl_ms: u32,
    value: &[u8],
    write: impl Fn(&[&[u8]]) -> Result<bool>,
) -> Result<Option<usize>> {
    let header = codec::ValueHeader {
        version,
        value_len: value.len() as u32,
        ttl_ms,
    }
    .encode();
    let needed = codec::VALUE_SIZE + value.len();
    if needed > buf.len() as usize {
        return match write(&[&header])? {
            true => Err(emsgsize()),
            false => Ok(None),
        };
    }
    Ok(write(&[&header, value])?.then_some(needed))
}

/// LIST pages up to this size are built on the stack.
const SMALL_PAGE: usize = 512;

fn list(net: &NetTable, buf: &GetBuffer<'_>) -> Result<usize> {
    buf.with_request::<{ codec::LIST_REQUEST_MAX }, _>(|req| {
        list_request(net, buf, &ListRequest::parse(req, buf.len())?)
    })
}

fn list_request(net: &NetTable, buf: &GetBuffer<'_>, req: &ListRequest<'_>) -> Result<usize> {
    let limit = (buf.len() as usize).min(LIST_PAGE_MAX);
    // Size the page by what the table can put in it: every entry padded,
    // after the header; never more than the caller's buffer.
    let (entries, bytes_used, _) = net.table.lock().usage();
    let bound = entries
        .saturating_mul(codec::LIST_ENTRY_SIZE + codec::ALIGN - 1)
        .saturating_add(usize::try_from(bytes_used).unwrap_or(usize::MAX))
        .saturating_add(codec::LIST_REPLY_SIZE);
    let mut size = bound.min(limit);
    loop {
        let mut small = [0u8; SMALL_PAGE];
        let mut large;
        let page: &mut [u8] = if size <= SMALL_PAGE {
            &mut small[..size]
        } else {
            large = KVVec::from_elem(0u8, size, gfp())?;
            &mut large
        };
        match list_into(net, req, page)? {
            // The table grew since it was sized and the first entry did not
            // fit this page, though it fits the caller's: size again.
            Listed::NeedsPage(needed, _) if needed <= limit && size < needed => size = needed,
            Listed::NeedsPage(needed, generation) => {
                let header = codec::ListReplyHeader {
                    generation,
                    count: 0,
                    more: true,
                    size: needed as u32,
                };
                buf.write_reply(&[&header.encode()])?;
                return Err(emsgsize());
            }
            Listed::Page(used) => {
                buf.write_reply(&[&page[..used]])?;
                return Ok(used);
            }
        }
    }
}

/// What one pass over the table gave.
enum Listed {
    /// A page of this many bytes, ready to copy out.
    Page(usize),
    /// Not even the first entry fitted: the page size it needs, and the
    /// generation it was seen at.
    NeedsPage(usize, u64),
}

fn list_into(net: &NetTable, req: &ListRequest<'_>, page: &mut [u8]) -> Result<Listed> {
    let mut writer = ListPageWriter::new(page)?;
    let (generation, (more, needed)) = {
        let table = net.table.lock();
        let page = table.list_page(req, &mut writer)?;
        (table.usage().2, page)
    };
    if let (0, Some(needed)) = (writer.count(), needed) {
        return Ok(Listed::NeedsPage(needed, generation));
    }
    Ok(Listed::Page(writer.finish(generation, more)))
}

/// Most bytes one WATCH call fills; a reply always fits the largest event.
const WATCH_PAGE_MAX: usize = 1 << 20;
/// Bytes of a WATCH reply built before the events are seen; a larger
/// buffer is used only for an event that does not fit it.
const WATCH_PAGE: usize = 64 << 10;

/// A WATCH: makes the table's change log on the namespace's first one,
/// then waits for events (sleeping with the lock dropped) and copies the
/// reply out once the lock is dropped.
fn watch(net: &NetTable, limits: &Limits, buf: &GetBuffer<'_>) -> Result<usize> {
    buf.with_request::<{ codec::WATCH_REQUEST_MAX }, _>(|req| {
        let req = WatchRequest::parse(req, buf.len())?;
        net.ensure_log(limits.watch_log)?;
        let limit = (buf.len() as usize).min(WATCH_PAGE_MAX);
        let mut size = limit.min(WATCH_PAGE);
        loop {
            let mut page = KVVec::from_elem(0u8, size, gfp())?;
            match net.watch(&req, &mut page)? {
                Watched::Page(used) => {
                    buf.write_reply(&[&page[..used]])?;
                    return Ok(used);
                }
                // The first event fits the caller's buffer, not this page.
                Watched::NeedsPage(needed, _) if needed <= limit && size < needed => {
                    size = needed;
                }
                Watched::NeedsPage(_, header) => {
                    buf.write_reply(&[&header.encode()])?;
                    return Err(emsgsize());
                }
            }
        }
    })
}
