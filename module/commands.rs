// SPDX-License-Identifier: GPL-2.0

//! The commands: from request bytes to table operations and reply bytes.
//! Safe Rust; the caller has checked CAP_NET_ADMIN and copied set requests in.

use crate::codec::{self, cmd, Batch, ListPageWriter, ListRequest, OpKind, Reject};
use crate::table::{self, Limits, NetTable, PreparedOp, GFP};
use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

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

/// Runs set command `cmd` (an offset from optbase) on request `req`.
pub(crate) fn set(net: &NetTable, limits: &Limits, cmd: u32, req: &[u8]) -> Result {
    match cmd {
        cmd::SET_PUT => write_one(net, limits, OpKind::Put, req),
        cmd::SET_DEL => write_one(net, limits, OpKind::Del, req),
        cmd::SET_FLUSH => {
            codec::parse_flush(req)?;
            commit(net, limits, true, &mut [])
        }
        cmd::SET_BATCH => batch(net, limits, req),
        _ => Err(eopnotsupp()),
    }
}

fn write_one(net: &NetTable, limits: &Limits, kind: OpKind, req: &[u8]) -> Result {
    let op = codec::parse_single(kind, req, limits.max_value_len)?;
    commit(net, limits, false, &mut [PreparedOp::new(&op)?])
}

fn batch(net: &NetTable, limits: &Limits, req: &[u8]) -> Result {
    let batch = Batch::parse(req, limits.max_value_len)?;
    let mut ops = KVVec::with_capacity(batch.count, GFP)?;
    batch.for_each(|_, op| -> Result {
        ops.push(PreparedOp::new(&op)?, GFP)?;
        Ok(())
    })?;
    let mut order = KVVec::from_elem(0usize, ops.len(), GFP)?;
    table::link_same_keys(&mut ops, &mut order);
    commit(net, limits, batch.flush, &mut ops)
}

/// Applies a prepared write; what it displaced is freed after the lock.
fn commit(net: &NetTable, limits: &Limits, flush: bool, ops: &mut [PreparedOp]) -> Result {
    let flushed = net.table.lock().write(flush, ops, limits)?;
    drop(flushed);
    Ok(())
}

/// The caller's getsockopt buffer: `len` bytes at `ptr`, request in, reply out.
pub(crate) struct GetBuffer {
    pub(crate) ptr: UserPtr,
    pub(crate) len: i32,
}

impl GetBuffer {
    /// Reads the first `min(len, out.len())` bytes of the buffer.
    fn read_request<'a>(&self, out: &'a mut [u8]) -> Result<&'a [u8]> {
        let n = usize::try_from(self.len)
            .map_err(|_| EINVAL)?
            .min(out.len());
        UserSlice::new(self.ptr, n)
            .reader()
            .read_slice(&mut out[..n])?;
        Ok(&out[..n])
    }

    /// Writes `parts` one after the other from the start of the buffer.
    fn write_reply(&self, parts: &[&[u8]]) -> Result {
        let len = usize::try_from(self.len).map_err(|_| EINVAL)?;
        let mut writer = UserSlice::new(self.ptr, len).writer();
        for part in parts {
            writer.write_slice(part)?;
        }
        Ok(())
    }
}

/// Runs get command `cmd` with buffer `buf`; returns the reply length.
pub(crate) fn get(net: &NetTable, info: &codec::Info, cmd: u32, buf: &GetBuffer) -> Result<usize> {
    match cmd {
        cmd::GET_INFO => {
            codec::check_get_len(buf.len, codec::INFO_SIZE)?;
            let (entries, bytes_used, generation) = net.table.lock().usage();
            let info = codec::Info {
                entries: entries as u32,
                bytes_used,
                generation,
                ..*info
            };
            buf.write_reply(&[&info.encode()])?;
            Ok(codec::INFO_SIZE)
        }
        cmd::GET_VALUE => get_value(net, buf),
        cmd::GET_LIST => list(net, buf),
        cmd::GET_STATS => {
            codec::check_get_len(buf.len, codec::STATS_SIZE)?;
            buf.write_reply(&[&net.stats.snapshot().encode()])?;
            Ok(codec::STATS_SIZE)
        }
        _ => Err(eopnotsupp()),
    }
}

fn get_value(net: &NetTable, buf: &GetBuffer) -> Result<usize> {
    let mut req = [0u8; codec::GET_REQUEST_MAX];
    let key = codec::parse_get(buf.read_request(&mut req)?, buf.len)?;
    let (version, value) = net.table.lock().get(key)?;
    let value = value.as_slice();
    let header = codec::ValueHeader {
        version,
        value_len: value.len() as u32,
    }
    .encode();
    let needed = codec::VALUE_SIZE + value.len();
    if needed > buf.len as usize {
        buf.write_reply(&[&header])?;
        return Err(emsgsize());
    }
    buf.write_reply(&[&header, value])?;
    Ok(needed)
}

fn list(net: &NetTable, buf: &GetBuffer) -> Result<usize> {
    let mut req = [0u8; codec::LIST_REQUEST_MAX];
    let req = ListRequest::parse(buf.read_request(&mut req)?, buf.len)?;
    let mut page = KVVec::from_elem(0u8, (buf.len as usize).min(LIST_PAGE_MAX), GFP)?;
    let mut writer = ListPageWriter::new(&mut page)?;
    let (generation, (more, needed)) = {
        let mut table = net.table.lock();
        let page = table.list_page(&req, &mut writer)?;
        (table.usage().2, page)
    };
    if let (0, Some(needed)) = (writer.count(), needed) {
        let header = codec::ListReplyHeader {
            generation,
            count: 0,
            more,
            size: needed as u32,
        };
        buf.write_reply(&[&header.encode()])?;
        return Err(emsgsize());
    }
    let used = writer.finish(generation, more);
    buf.write_reply(&[&page[..used]])?;
    Ok(used)
}
