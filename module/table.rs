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

/// A key: 1..=255 bytes, ordered bytewise.
pub(crate) struct Key(KVec<u8>);

impl Key {
    /// Copies `bytes` into a new key.
    pub(crate) fn copy_from(bytes: &[u8]) -> Result<Self> {
        let mut v = KVec::with_capacity(bytes.len(), GFP)?;
        v.extend_from_slice(bytes, GFP)?;
        Ok(Key(v))
    }

    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
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

/// A stored value and the version its last write gave it.
pub(crate) struct Entry {
    pub(crate) value: KVec<u8>,
    pub(crate) version: u64,
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
    key: Key,
    /// For a put: the value and the tree node it will live in.
    put: Option<(KVec<u8>, RBTreeNodeReservation<Key, Entry>)>,
    /// The previous op of the same write on the same key.
    prev_same_key: Option<usize>,
    /// The planned state of the key after this op: its version, or absent.
    planned: Option<u64>,
    /// What this op displaced, freed after the lock is dropped.
    retired: Option<(Key, Entry)>,
}

impl PreparedOp {
    /// Allocates what `op` needs, so applying it cannot fail.
    pub(crate) fn new(op: &Op<'_>) -> Result<Self> {
        let key = Key::copy_from(op.key)?;
        let put = match op.kind {
            OpKind::Put => {
                let mut value = KVec::with_capacity(op.value.len(), GFP)?;
                value.extend_from_slice(op.value, GFP)?;
                Some((value, RBTreeNodeReservation::new(GFP)?))
            }
            OpKind::Del => None,
        };
        Ok(PreparedOp {
            kind: op.kind,
            cond: op.cond,
            key,
            put,
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
    tree: RBTree<Key, Entry>,
    entries: usize,
    bytes_used: u64,
    /// Last version given out; also the table's generation.
    generation: u64,
}

/// What displaced entries a write leaves to be freed outside the lock.
pub(crate) type Retired = Option<RBTree<Key, Entry>>;

impl Table {
    fn new() -> Self {
        Table {
            tree: RBTree::new(),
            entries: 0,
            bytes_used: 0,
            generation: 0,
        }
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
            let key = core::mem::replace(&mut op.key, Key(KVec::new()));
            let key_len = key.as_bytes().len() as u64;
            let old = match op.put.take() {
                Some((value, reservation)) => {
                    self.bytes_used += key_len + value.len() as u64;
                    let entry = Entry {
                        value,
                        version: self.generation,
                    };
                    self.tree.insert(reservation.into_node(key, entry))
                }
                None => self.tree.remove_node(&key),
            };
            match (&old, op.kind) {
                (None, OpKind::Put) => self.entries += 1,
                (Some(_), OpKind::Del) => self.entries -= 1,
                _ => {}
            }
            if let Some(node) = old {
                let (k, e) = node.to_key_value();
                self.bytes_used -= k.as_bytes().len() as u64 + e.value.len() as u64;
                op.retired = Some((k, e));
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
                None => self.tree.get(&ops[i].key).map(|e| e.version),
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
    pub(crate) fn get(&self, key: &Key) -> Result<(u64, KVec<u8>)> {
        let entry = self.tree.get(key).ok_or(ENOENT)?;
        let mut value = KVec::with_capacity(entry.value.len(), GFP)?;
        value.extend_from_slice(&entry.value, GFP)?;
        Ok((entry.version, value))
    }

    /// Fills `page` with the entries `req` asks for, in key order. `after`
    /// and `prefix` are `req`'s keys, copied. Returns whether more entries
    /// match, and, when the next one did not fit, the page bytes it needs.
    pub(crate) fn list_page(
        &mut self,
        req: &ListRequest<'_>,
        after: Option<&Key>,
        prefix: Option<&Key>,
        page: &mut ListPageWriter<'_>,
    ) -> (bool, Option<usize>) {
        let start = match (after, prefix) {
            (Some(a), Some(p)) => Some(if a >= p { a } else { p }),
            (a, p) => a.or(p),
        };
        let mut cursor = match start {
            Some(k) => self.tree.cursor_lower_bound(k),
            None => self.tree.cursor_front(),
        };
        while let Some(c) = cursor {
            let (key, entry) = c.current();
            if Some(key) == after {
                cursor = c.move_next();
                continue;
            }
            if !key.as_bytes().starts_with(req.prefix) {
                return (false, None);
            }
            if !page.push(entry.version, key.as_bytes(), &entry.value) {
                let needed = codec::LIST_REPLY_SIZE
                    + codec::list_entry_len(key.as_bytes().len(), entry.value.len());
                return (true, Some(needed));
            }
            cursor = c.move_next();
        }
        (false, None)
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
    /// An empty table.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(NetTable {
            table <- new_mutex!(Table::new(), "nfkv_table"),
            stats: Stats::new(),
        })
    }
}
