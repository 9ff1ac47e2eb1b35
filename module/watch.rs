// SPDX-License-Identifier: GPL-2.0

//! A table's change log: its latest events, in generation order, for
//! `NFKV_SO_GET_WATCH`. Safe Rust only.
//!
//! Every change moves the table's generation by one, so the log holds the
//! events of a run of consecutive generations, each as its wire header and
//! key (no value: a watcher that wants values reads them from the table).
//! The events lie in a byte ring, oldest overwritten first; a ring of
//! offsets finds event `g` in one step. Both are allocated once, before the
//! table's lock is taken, and appending never allocates.

use crate::codec::{self, EventHeader};
use crate::table::gfp;
use kernel::prelude::*;

/// The shortest event a log holds (a flush: no key), which bounds how many
/// it holds.
const MIN_EVENT: usize = codec::EVENT_SIZE;
/// The longest one.
const MAX_EVENT: usize = codec::EVENT_SIZE + codec::MAX_KEY_LEN + codec::ALIGN;

/// Smallest log, in bytes (`watch_log_kib` = 4).
pub(crate) const MIN_LOG_BYTES: usize = 4096;

pub(crate) struct ChangeLog {
    /// The events' bytes, as a ring.
    data: KVVec<u8>,
    /// The offset in `data` of each event, oldest first, as a ring from
    /// `first_slot`.
    offsets: KVVec<u32>,
    first_slot: usize,
    /// Events held.
    count: usize,
    /// Offset in `data` of the oldest event, and bytes held from it on.
    tail: usize,
    used: usize,
    /// The log holds every event after this generation: events
    /// `start + 1 ..= start + count`.
    start: u64,
}

impl ChangeLog {
    /// An empty log of about `bytes` bytes (at least [`MIN_LOG_BYTES`]),
    /// holding every event after generation `start` once appended.
    pub(crate) fn new(bytes: usize, start: u64) -> Result<Self> {
        let bytes = bytes.max(MIN_LOG_BYTES) / codec::ALIGN * codec::ALIGN;
        Ok(ChangeLog {
            data: KVVec::from_elem(0u8, bytes, gfp())?,
            offsets: KVVec::from_elem(0u32, bytes / MIN_EVENT, gfp())?,
            first_slot: 0,
            count: 0,
            tail: 0,
            used: 0,
            start,
        })
    }

    /// Bytes the log takes: what it is charged.
    pub(crate) fn allocated(&self) -> u64 {
        (self.data.len() + self.offsets.len() * core::mem::size_of::<u32>()) as u64
    }

    /// Empties the log, which holds every event after generation `start`
    /// once appended.
    pub(crate) fn restart(&mut self, start: u64) {
        (self.count, self.used, self.start) = (0, 0, start);
    }

    /// The oldest `since` the log answers: it holds every event after it.
    pub(crate) fn oldest(&self) -> u64 {
        self.start
    }

    /// Appends the event of header `h` (`value_len` ignored) and key `key`,
    /// dropping the oldest events it needs room for. An event that does not
    /// follow the last one (none should) empties the log first, so that it
    /// never claims to hold an event it missed.
    pub(crate) fn append(&mut self, h: &EventHeader, key: &[u8]) {
        let key = &key[..key.len().min(codec::MAX_KEY_LEN)];
        if Some(h.generation) != self.start.checked_add(self.count as u64 + 1) {
            (self.count, self.used) = (0, 0);
            self.start = h.generation.saturating_sub(1);
        }
        let len = codec::event_len(key.len(), 0);
        while self.count > 0
            && (self.used + len > self.data.len() || self.count == self.offsets.len())
        {
            self.drop_oldest();
        }
        let mut bytes = [0u8; MAX_EVENT];
        let header = EventHeader {
            key_len: key.len() as u16,
            value_len: None,
            ..*h
        };
        bytes[..codec::EVENT_SIZE].copy_from_slice(&header.encode());
        bytes[codec::EVENT_SIZE..codec::EVENT_SIZE + key.len()].copy_from_slice(key);
        let head = (self.tail + self.used) % self.data.len();
        write_ring(&mut self.data, head, &bytes[..len]);
        let slot = (self.first_slot + self.count) % self.offsets.len();
        // `data` is at most a few hundred MiB (`watch_log_kib`): fits.
        self.offsets[slot] = head as u32;
        self.count += 1;
        self.used += len;
    }

    /// Forgets the oldest event.
    fn drop_oldest(&mut self) {
        let mut header = [0u8; codec::EVENT_SIZE];
        read_ring(&self.data, self.tail, &mut header);
        let key_len = EventHeader::decode(&header).map_or(0, |h| usize::from(h.key_len));
        let len = codec::event_len(key_len, 0);
        self.tail = (self.tail + len) % self.data.len();
        self.used -= len.min(self.used);
        self.first_slot = (self.first_slot + 1) % self.offsets.len();
        self.count -= 1;
        self.start += 1;
    }

    /// The event of generation `g` with its key copied into `key`, and the
    /// key's length; `None` if the log does not hold it.
    pub(crate) fn event(
        &self,
        g: u64,
        key: &mut [u8; codec::MAX_KEY_LEN],
    ) -> Option<(EventHeader, usize)> {
        let index = usize::try_from(g.checked_sub(self.start + 1)?).ok()?;
        if index >= self.count {
            return None;
        }
        let at = self.offsets[(self.first_slot + index) % self.offsets.len()] as usize;
        let mut header = [0u8; codec::EVENT_SIZE];
        read_ring(&self.data, at, &mut header);
        let h = EventHeader::decode(&header).ok()?;
        let key_len = usize::from(h.key_len);
        read_ring(
            &self.data,
            (at + codec::EVENT_SIZE) % self.data.len(),
            &mut key[..key_len],
        );
        Some((h, key_len))
    }
}

/// Copies `bytes` into ring `ring` from offset `at`, wrapping at its end.
fn write_ring(ring: &mut [u8], at: usize, bytes: &[u8]) {
    let first = (ring.len() - at).min(bytes.len());
    ring[at..at + first].copy_from_slice(&bytes[..first]);
    ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
}

/// Fills `out` from ring `ring` from offset `at`, wrapping at its end.
fn read_ring(ring: &[u8], at: usize, out: &mut [u8]) {
    let first = (ring.len() - at).min(out.len());
    out[..first].copy_from_slice(&ring[at..at + first]);
    let rest = out.len() - first;
    out[first..].copy_from_slice(&ring[..rest]);
}
