// SPDX-License-Identifier: GPL-2.0

//! The key/value table of one network namespace. Safe Rust only.
//!
//! Writes are planned before anything changes: every allocation happens
//! before the lock is taken ([`PreparedOp::new`]), the conditions of all ops of
//! a write are checked against the table under the lock, and only then is the
//! write applied, by steps that cannot fail. A write that fails therefore
//! leaves the table exactly as it was, whatever the reason.

use crate::codec::{self, Condition, ListPageWriter, ListRequest, Op, OpKind};
use core::cmp::Ordering;
use core::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use kernel::alloc::Flags;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::Mutex;

/// Memory allocated for a caller is charged to the caller's memory cgroup.
pub(crate) const GFP: Flags = GFP_KERNEL_ACCOUNT;

/// The errors a write's conditions produce.
pub(crate) fn estale() -> Error {
    Error::from_errno(-(kernel::bindings::ESTALE as i32))
}

/// A key, 1..=255 bytes, ordered bytewise; stored entries carry their
/// value in the same allocation, right after the key, so an entry costs one
/// allocation besides its tree node.
pub(crate) struct Key {
    bytes: KVec<u8>,
    key_len: usize,
}

impl Key {
    /// Copies `key` and `value` into one allocation.
    pub(crate) fn with_value(key: &[u8], value: &[u8]) -> Result<Self> {
        let mut bytes = KVec::with_capacity(key.len() + value.len(), GFP)?;
        bytes.extend_from_slice(key, GFP)?;
        bytes.extend_from_slice(value, GFP)?;
        Ok(Key {
            bytes,
            key_len: key.len(),
        })
    }

    /// A reusable key with room for the longest key, for lookups that must
    /// not allocate.
    fn probe() -> Result<Self> {
        Ok(Key {
            bytes: KVec::from_elem(0, codec::MAX_KEY_LEN, GFP)?,
            key_len: 0,
        })
    }

    /// Makes this probe hold `key` (at most `MAX_KEY_LEN` bytes, as the
    /// codec guarantees); the bytes after it are not part of the probe.
    fn set(&mut self, key: &[u8]) -> Result {
        self.bytes
            .get_mut(..key.len())
            .ok_or(EINVAL)?
            .copy_from_slice(key);
        self.key_len = key.len();
        Ok(())
    }

    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    /// The value stored with the key.
    pub(crate) fn value(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }

    /// Key and value bytes together, as `bytes_used` counts them.
    fn stored_len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

/// Values up to this size are copied out of the table onto the stack.
const INLINE_VALUE: usize = 256;

/// A value copied out of the table for a reply: on the stack when small, so
/// reading a small value allocates nothing. (The size difference between the
/// variants is the point: it lives briefly on the stack.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum ValueCopy {
    Inline([u8; INLINE_VALUE], usize),
    Heap(KVec<u8>),
}

impl ValueCopy {
    fn of(value: &[u8]) -> Result<Self> {
        if value.len() <= INLINE_VALUE {
            let mut buf = [0u8; INLINE_VALUE];
            buf[..value.len()].copy_from_slice(value);
            return Ok(ValueCopy::Inline(buf, value.len()));
        }
        let mut v = KVec::with_capacity(value.len(), GFP)?;
        v.extend_from_slice(value, GFP)?;
        Ok(ValueCopy::Heap(v))
    }

    /// The value's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            ValueCopy::Inline(buf, len) => &buf[..*len],
            ValueCopy::Heap(v) => v,
        }
    }
}

/// Limits fixed at module load.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_value_len: usize,
    pub(crate) max_entries: usize,
}

/// One write of a PUT, DEL or BATCH, with everything it needs allocated.
pub(crate) struct PreparedOp {
    kind: OpKind,
    cond: Condition,
    /// The key, and for a put its value.
    key: Key,
    /// For a put: the tree node it will live in.
    node: Option<RBTreeNodeReservation<Key, u64>>,
    /// The previous op of the same write on the same key.
    prev_same_key: Option<usize>,
    /// The planned state of the key after this op: its version, or absent.
    planned: Option<u64>,
    /// What this op displaced, freed after the lock is dropped.
    retired: Option<Key>,
}

impl PreparedOp {
    /// Allocates what `op` needs, so applying it cannot fail.
    pub(crate) fn new(op: &Op<'_>) -> Result<Self> {
        let key = Key::with_value(op.key, op.value)?;
        let node = match op.kind {
            OpKind::Put => Some(RBTreeNodeReservation::new(GFP)?),
            OpKind::Del => None,
        };
        Ok(PreparedOp {
            kind: op.kind,
            cond: op.cond,
            key,
            node,
            prev_same_key: None,
            planned: None,
            retired: None,
        })
    }
}

/// Links every op to the previous op on the same key, so that a write's
/// conditions see the effect of its earlier ops. `order` is scratch space
/// with one slot per op.
pub(crate) fn link_same_keys(ops: &mut [PreparedOp], order: &mut [usize]) {
    for (i, slot) in order.iter_mut().enumerate() {
        *slot = i;
    }
    order.sort_unstable_by(|&a, &b| ops[a].key.cmp(&ops[b].key).then(a.cmp(&b)));
    for pair in order.windows(2) {
        if ops[pair[0]].key == ops[pair[1]].key {
            ops[pair[1]].prev_same_key = Some(pair[0]);
        }
    }
}

/// The table proper; always used under [`NetTable::table`].
pub(crate) struct Table {
    /// Key (with value) -> version.
    tree: RBTree<Key, u64>,
    /// Scratch key for lookups by borrowed bytes.
    probe: Key,
    entries: usize,
    bytes_used: u64,
    /// Last version given out; also the table's generation.
    generation: u64,
}

/// What displaced entries a write leaves to be freed outside the lock.
pub(crate) type Retired = Option<RBTree<Key, u64>>;

impl Table {
    /// An empty table.
    pub(crate) fn new() -> Result<Self> {
        Ok(Table {
            tree: RBTree::new(),
            probe: Key::probe()?,
            entries: 0,
            bytes_used: 0,
            generation: 0,
        })
    }

    /// Entries, key + value bytes and generation.
    pub(crate) fn usage(&self) -> (usize, u64, u64) {
        (self.entries, self.bytes_used, self.generation)
    }

    /// Applies a write all or nothing: an optional flush, then `ops` in order.
    /// On error nothing has changed. Returns the flushed tree, for the caller
    /// to free once the lock is dropped.
    pub(crate) fn write(
        &mut self,
        flush: bool,
        ops: &mut [PreparedOp],
        limits: &Limits,
    ) -> Result<Retired> {
        self.plan(flush, ops, limits)?;
        let retired = if flush {
            self.generation += 1;
            self.bytes_used = 0;
            self.entries = 0;
            Some(core::mem::take(&mut self.tree))
        } else {
            None
        };
        for op in ops.iter_mut() {
            self.generation += 1;
            let old = match op.node.take() {
                Some(reservation) => {
                    let key = core::mem::replace(
                        &mut op.key,
                        Key {
                            bytes: KVec::new(),
                            key_len: 0,
                        },
                    );
                    self.bytes_used += key.stored_len();
                    self.tree
                        .insert(reservation.into_node(key, self.generation))
                }
                None => self.tree.remove_node(&op.key),
            };
            match (&old, op.kind) {
                (None, OpKind::Put) => self.entries += 1,
                (Some(_), OpKind::Del) => self.entries -= 1,
                _ => {}
            }
            if let Some(node) = old {
                let (k, _) = node.to_key_value();
                self.bytes_used -= k.stored_len();
                op.retired = Some(k);
            }
        }
        Ok(retired)
    }

    /// Checks every op's conditions and the entry limit against the table
    /// as the earlier ops of the write will have left it. Changes nothing
    /// but the ops' planning fields.
    fn plan(&self, flush: bool, ops: &mut [PreparedOp], limits: &Limits) -> Result {
        let mut entries = if flush { 0 } else { self.entries };
        let mut version = self.generation + u64::from(flush);
        for i in 0..ops.len() {
            let before = match ops[i].prev_same_key {
                Some(prev) => ops[prev].planned,
                None if flush => None,
                None => self.tree.get(&ops[i].key).copied(),
            };
            let op = &mut ops[i];
            match (op.kind, before) {
                (OpKind::Put, Some(_)) if op.cond.create_only => return Err(EEXIST),
                (OpKind::Put, None) if op.cond.replace_only => return Err(ENOENT),
                (_, None) if op.cond.if_version.is_some() || op.kind == OpKind::Del => {
                    return Err(ENOENT)
                }
                (_, Some(v)) if op.cond.if_version.is_some_and(|want| want != v) => {
                    return Err(estale())
                }
                _ => {}
            }
            version += 1;
            op.planned = match op.kind {
                OpKind::Put => Some(version),
                OpKind::Del => None,
            };
            match (op.kind, before) {
                (OpKind::Put, None) if entries >= limits.max_entries => return Err(ENOSPC),
                (OpKind::Put, None) => entries += 1,
                (OpKind::Del, _) => entries -= 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Copies the value of `key` with its version.
    pub(crate) fn get(&mut self, key: &[u8]) -> Result<(u64, ValueCopy)> {
        self.probe.set(key)?;
        let cursor = self.tree.cursor_lower_bound(&self.probe).ok_or(ENOENT)?;
        let (stored, version) = cursor.current();
        if stored.as_bytes() != key {
            return Err(ENOENT);
        }
        Ok((*version, ValueCopy::of(stored.value())?))
    }

    /// Fills `page` with the entries `req` asks for, in key order. Returns
    /// whether more entries match, and, when the next one did not fit, the
    /// page bytes it needs.
    pub(crate) fn list_page(
        &mut self,
        req: &ListRequest<'_>,
        page: &mut ListPageWriter<'_>,
    ) -> Result<(bool, Option<usize>)> {
        // Start at the larger of `after` and the prefix; empty means none.
        let start = if req.after > req.prefix {
            req.after
        } else {
            req.prefix
        };
        self.probe.set(start)?;
        let mut cursor = if start.is_empty() {
            self.tree.cursor_front()
        } else {
            self.tree.cursor_lower_bound(&self.probe)
        };
        while let Some(c) = cursor {
            let (key, version) = c.current();
            if !req.after.is_empty() && key.as_bytes() == req.after {
                cursor = c.move_next();
                continue;
            }
            if !key.as_bytes().starts_with(req.prefix) {
                return Ok((false, None));
            }
            if !page.push(*version, key.as_bytes(), key.value()) {
                let needed = codec::LIST_REPLY_SIZE
                    + codec::list_entry_len(key.as_bytes().len(), key.value().len());
                return Ok((true, Some(needed)));
            }
            cursor = c.move_next();
        }
        Ok((false, None))
    }
}

/// Per-command outcome counters.
pub(crate) struct Stats {
    counters: [[AtomicU64; 2]; codec::SET_COMMANDS + codec::GET_COMMANDS],
}

/// Which of the two command families a counter belongs to.
#[derive(Clone, Copy)]
pub(crate) enum Family {
    Set,
    Get,
}

impl Stats {
    const fn new() -> Self {
        Stats {
            counters: [const { [AtomicU64::new(0), AtomicU64::new(0)] };
                codec::SET_COMMANDS + codec::GET_COMMANDS],
        }
    }

    /// Counts one call of command `cmd` (an offset) of `family`; offsets
    /// that are no command are not counted.
    pub(crate) fn count(&self, family: Family, cmd: u32, ok: bool) {
        let (index, commands) = match family {
            Family::Set => (cmd as usize, codec::SET_COMMANDS),
            Family::Get => (codec::SET_COMMANDS + cmd as usize, codec::GET_COMMANDS),
        };
        if (cmd as usize) < commands {
            self.counters[index][usize::from(!ok)].fetch_add(1, AtomicOrdering::Relaxed);
        }
    }

    /// A snapshot for `NFKV_SO_GET_STATS`.
    pub(crate) fn snapshot(&self) -> codec::Stats {
        let mut s = codec::Stats::default();
        for (c, src) in Iterator::chain(s.set.iter_mut(), s.get.iter_mut()).zip(&self.counters) {
            c.ok = src[0].load(AtomicOrdering::Relaxed);
            c.failed = src[1].load(AtomicOrdering::Relaxed);
        }
        s
    }
}

/// Everything nfkv keeps for one network namespace.
#[pin_data]
pub(crate) struct NetTable {
    /// Never held across a user copy.
    #[pin]
    pub(crate) table: Mutex<Table>,
    pub(crate) stats: Stats,
}

impl NetTable {
    /// The state of a new namespace: an empty table.
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(NetTable {
            table <- new_mutex!(Table::new()?, "nfkv_table"),
            stats: Stats::new(),
        }? Error)
    }
}
