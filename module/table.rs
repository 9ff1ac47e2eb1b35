// SPDX-License-Identifier: GPL-2.0

//! The key/value table of one network namespace. Safe Rust only: the
//! entries and their tree are [`crate::store`].
//!
//! An entry is one allocation (tree node, reference count, version, key and
//! value), made and filled before the lock is taken ([`PreparedOp::new`], or for a
//! single PUT straight from the caller's buffer).
//! A single PUT or DEL checks everything before it changes the tree
//! ([`Table::put_one`], [`Table::delete_one`]), so it needs no undo. For
//! FLUSH and BATCH, under the lock a write applies its ops in order, each with one descent of
//! the tree, checking each op's conditions and the limits against the table
//! as the earlier ops left it (so ops on the same key see each other without
//! sorting). The write's net growth is then charged to the shared budget;
//! if any op or the charge fails, what was applied is undone in reverse, by
//! steps that cannot fail. A write that fails therefore leaves the table
//! exactly as it was, whatever the reason. Whatever a write displaces, and
//! whatever an undone write had linked, stays in its ops (or the flushed
//! tree) until the caller drops them, after unlocking: nothing is allocated
//! or freed under the lock. Every write reaches lockless readers at once
//! when it ends ([`Tree::publish`](crate::kernel_ext::rbtree::Tree::publish)):
//! GET searches the tree under RCU with no lock ([`NetTable::reader`]);
//! LIST and INFO read it under the lock.
//!
//! An entry may carry a deadline ([`Meta::expires`]): from then on every
//! read, write condition and classifier treats it as absent, though it
//! stays linked (and counted) until the reaper ([`reap`]), the table's
//! delayed work, removes it. The work is armed by the writes that link an
//! entry with a deadline, for the earliest one, and runs at most once per
//! [`REAP_INTERVAL_MS`]; a pass walks the whole table in short steps under
//! the lock, so it costs a walk per batch of expiries, not per entry.
//!
//! Once the namespace has been watched, every change is also logged
//! ([`ChangeLog`]) as it is kept, under the lock, and wakes the watchers
//! waiting on [`Locked::changed`] ([`NetTable::watch`]).

use crate::classifier_abi::{Action, Classifier};
use crate::classify::{self, Classifiers};
use crate::codec::{
    self, Condition, EventHeader, EventKind, ListPageWriter, ListRequest, OpKind, Record, Ttl,
    WatchPageWriter, WatchReplyHeader, WatchRequest,
};
use crate::kernel_ext::clock;
use crate::kernel_ext::work::{self, Delayed, DelayedRun};
use crate::policy::{self, SharedBudget};
use crate::stats::Stats;
use crate::store::{Detached, EntryView, Meta, NewEntry, Reader, Slot, Taken, Tree};
use crate::watch::ChangeLog;
use core::ops::Deref;
use kernel::alloc::Flags;
use kernel::prelude::*;
use kernel::sync::{CondVar, CondVarTimeoutResult, Mutex};
use kernel::time::Jiffies;
use kernel::{new_condvar, new_mutex};

/// How memory is allocated for a caller: charged to the caller's memory
/// cgroup, and sized by the caller, so a failure is the caller's ENOMEM
/// rather than a kernel warning (as `bpf_map_area_alloc` does it).
#[inline]
pub(crate) fn gfp() -> Flags {
    GFP_KERNEL_ACCOUNT | __GFP_NOWARN
}

/// The errors a write's conditions produce.
pub(crate) fn estale() -> Error {
    Error::from_errno(-(kernel::bindings::ESTALE as i32))
}

/// The refusal of a write that would take the table over `max_bytes`.
fn efbig() -> Error {
    Error::from_errno(-(kernel::bindings::EFBIG as i32))
}

/// Limits fixed at module load.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_value_len: usize,
    pub(crate) max_entries: usize,
    /// Most key + value bytes per table.
    pub(crate) max_bytes: u64,
    /// Bytes of a table's change log, made by its first watch.
    pub(crate) watch_log: usize,
}

/// What one op of a write did to the tree, for undoing it.
#[derive(Clone, Copy)]
enum Done {
    Nothing,
    /// Linked its entry where the key was absent.
    Inserted,
    /// Linked its entry in the place of the key's; that one is `retired`.
    Replaced,
    /// Unlinked the key's entry, now `retired`.
    Removed,
}

/// One write of a PUT, DEL or BATCH, with everything it needs allocated.
pub(crate) struct PreparedOp<'k> {
    /// The key, borrowed from the request.
    key: &'k [u8],
    kind: OpKind,
    cond: Condition,
    /// For a put: its entry, until it is linked.
    new: Option<NewEntry>,
    done: Done,
    /// What the op displaced (or, once undone, what it had linked): freed
    /// when the op is dropped, after the lock.
    retired: Option<Detached>,
}

impl<'k> PreparedOp<'k> {
    /// Allocates what batch record `record` needs (a put: its entry, key and
    /// value copied in one piece; a delete: nothing), so applying it cannot
    /// fail for want of memory.
    #[inline]
    pub(crate) fn new(record: &Record<'k>) -> Result<Self> {
        let h = &record.header;
        let new = match h.kind {
            OpKind::Put => Some(NewEntry::new(h.key_len, record.key_value())?),
            OpKind::Del => None,
        };
        Ok(PreparedOp {
            key: record.split().0,
            kind: h.kind,
            cond: h.cond,
            new,
            done: Done::Nothing,
            retired: None,
        })
    }
}

/// Refuses an op whose conditions the key's current state fails (`present`:
/// its version, if it is there).
#[inline]
fn check(kind: OpKind, cond: &Condition, present: Option<u64>) -> Result {
    match (kind, present) {
        (OpKind::Put, Some(_)) if cond.create_only => Err(EEXIST),
        (OpKind::Put, None) if cond.replace_only => Err(ENOENT),
        (_, None) if cond.if_version.is_some() || kind == OpKind::Del => Err(ENOENT),
        (_, Some(v)) if cond.if_version.is_some_and(|want| want != v) => Err(estale()),
        _ => Ok(()),
    }
}

/// What a table holds, as its limits and its budget count it.
#[derive(Clone, Copy, Default)]
struct Usage {
    entries: usize,
    /// Entries with a deadline, expired or not.
    expiring: usize,
    /// Key and value bytes.
    bytes: u64,
    /// What the entries' allocations take, counted only for a table
    /// charged to a shared budget (else 0): its charge.
    charged: u64,
}

impl Usage {
    /// Counts out an entry of share `removed`.
    fn remove(&mut self, removed: Share) {
        self.entries -= 1;
        self.expiring -= removed.expiring;
        self.bytes -= removed.bytes;
        self.charged -= removed.charged;
    }
}

/// One entry's part of a table's [`Usage`].
#[derive(Clone, Copy, Default)]
struct Share {
    bytes: u64,
    charged: u64,
    /// 1 for an entry with a deadline.
    expiring: usize,
}

impl Share {
    /// The share of a new entry, in a table that is `charged` or not (its
    /// deadline is counted once it is known, by [`admit_put`]).
    fn of_new(entry: &NewEntry, charged: bool) -> Self {
        Share {
            bytes: entry.stored_len(),
            charged: if charged { entry.allocated_size() } else { 0 },
            expiring: 0,
        }
    }

    /// The share of a linked entry, in a table that is `charged` or not.
    fn of(entry: &EntryView<'_>, charged: bool) -> Self {
        Share {
            bytes: entry.stored_len(),
            charged: if charged { entry.allocated_size() } else { 0 },
            expiring: usize::from(entry.meta().expires != 0),
        }
    }
}

/// The deadline a put with `ttl` gives its entry at jiffies64 `now` (0:
/// none), before [`admit_put`] sees what it replaces.
#[inline]
fn deadline(now: u64, ttl: &Ttl) -> u64 {
    match ttl.ms {
        Some(ms) => now.saturating_add(clock::ms_to_jiffies(ms)),
        None => 0,
    }
}

/// Whether a put of an entry of share `added` and meta `meta` may replace
/// `present` (or fill its absence) under `cond`, in a table of `usage`
/// (charged to a budget or not) at jiffies64 `now`: its conditions (an
/// expired entry is absent to them, though the put replaces it), then the
/// entry limit (`ENOSPC`) and the byte limit (`EFBIG`). Gives `meta` the
/// live entry's deadline if `cond` keeps it. Returns the usage after.
/// Inlined into each of its two callers (a single put, a batch's op), which
/// know whether a budget is charged.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn admit_put(
    usage: Usage,
    cond: &Condition,
    present: Option<EntryView<'_>>,
    mut added: Share,
    limits: &Limits,
    charged: bool,
    now: u64,
    meta: &mut Meta,
) -> Result<Usage> {
    let live = present
        .as_ref()
        .map(|e| e.meta())
        .filter(|m| !m.expired(now));
    check(OpKind::Put, cond, live.map(|m| m.version))?;
    if let (true, Some(live)) = (cond.ttl.keep, live) {
        meta.expires = live.expires;
    }
    added.expiring = usize::from(meta.expires != 0);
    let (removed, grown) = match present {
        Some(e) => (Share::of(&e, charged), 0),
        None if usage.entries >= limits.max_entries => return Err(ENOSPC),
        None => (Share::default(), 1),
    };
    let bytes = usage.bytes - removed.bytes + added.bytes;
    if bytes > limits.max_bytes {
        return Err(efbig());
    }
    Ok(Usage {
        entries: usage.entries + grown,
        expiring: usage.expiring - removed.expiring + added.expiring,
        bytes,
        charged: usage.charged - removed.charged + added.charged,
    })
}

/// Least time between two passes of the reaper: expired entries are
/// removed at most this long after their deadline (plus a pass).
pub(crate) const REAP_INTERVAL_MS: u32 = 1000;
/// Most expired entries a pass removes under the lock at once.
const REAP_CHUNK: usize = 64;
/// Most entries a pass looks at under the lock at once.
const REAP_VISITS: usize = 1024;

/// When the reaper runs.
struct ReapTimes {
    /// The jiffies64 count its work is armed for; `None`: not armed (idle,
    /// or in a pass, which arms it again when it ends if needed).
    due: Option<u64>,
    /// When the last pass began.
    last: u64,
    /// [`REAP_INTERVAL_MS`] in jiffies.
    interval: u64,
    /// What a write armed the work for, for the caller that holds the
    /// lock to pass on to the work ([`NetTable::write`]).
    arm: Option<u64>,
}

/// Where a pass of the reaper goes on after letting writers in: at the
/// lower bound of `key` (the first key not looked at, or the last key
/// removed); from the first entry until `started`.
struct ReapCursor {
    key: [u8; codec::MAX_KEY_LEN],
    len: usize,
    started: bool,
}

impl ReapCursor {
    fn set(&mut self, key: &[u8]) {
        let len = key.len().min(codec::MAX_KEY_LEN);
        self.key[..len].copy_from_slice(&key[..len]);
        (self.len, self.started) = (len, true);
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.len]
    }
}

/// What [`Table::next_expired`] found.
enum Found {
    /// An expired entry, whose key the cursor holds.
    Expired,
    /// Enough entries looked at for one hold of the lock; the cursor holds
    /// the next key to look at.
    Pause,
    /// The end of the table.
    End,
}

/// The table proper; always used under [`NetTable::table`].
pub(crate) struct Table {
    tree: Tree,
    usage: Usage,
    /// Last version given out; also the table's generation.
    generation: u64,
    /// The shared budget this table is charged to, if any.
    budget: Option<&'static SharedBudget>,
    /// The namespace's classifiers: a write under one's prefix must hold
    /// an action ([`classify::check_value`]).
    guarded: KVec<Classifier>,
    /// What the classifiers are charged to the shared budget.
    classifier_charge: u64,
    reap: ReapTimes,
    /// The change log, from the namespace's first watch on.
    log: Option<ChangeLog>,
    /// What the log is charged to the shared budget.
    log_charge: u64,
    /// Watchers waiting for a change.
    watchers: u32,
}

/// What a write leaves to be freed once the lock is dropped: the entries a
/// flush took out.
pub(crate) type Retired = Option<Taken>;

impl Table {
    /// An empty table, charged to `budget` if given; its versions start
    /// above every version an earlier table gave (see [`policy`]).
    pub(crate) fn new(budget: Option<&'static SharedBudget>) -> Result<Self> {
        Ok(Table {
            tree: Tree::new()?,
            usage: Usage::default(),
            generation: policy::first_generation(),
            budget,
            guarded: KVec::new(),
            classifier_charge: 0,
            reap: ReapTimes {
                due: None,
                last: 0,
                interval: clock::ms_to_jiffies(REAP_INTERVAL_MS),
                arm: None,
            },
            log: None,
            log_charge: 0,
            watchers: 0,
        })
    }

    /// Logs the change of generation `generation`, of a write whose last
    /// change is `last`, if the table keeps a log.
    #[inline]
    fn log(&mut self, generation: u64, last: u64, kind: EventKind, key: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            let h = EventHeader {
                generation,
                last,
                kind,
                key_len: key.len() as u16,
                value_len: None,
            };
            log.append(&h, key);
        }
    }

    /// Logs what committed write `ops` (after a flush, if `flush`) did:
    /// the events of generations up to the table's, as one group.
    fn log_write(&mut self, flush: bool, ops: &[PreparedOp<'_>]) {
        if self.log.is_none() {
            return;
        }
        let last = self.generation;
        let mut g = last - ops.len() as u64 - u64::from(flush);
        if flush {
            g += 1;
            self.log(g, last, EventKind::Flush, &[]);
        }
        for op in ops {
            g += 1;
            let kind = match op.kind {
                OpKind::Put => EventKind::Put,
                OpKind::Del => EventKind::Del,
            };
            self.log(g, last, kind, op.key);
        }
    }

    /// Arms the reaper for an entry that expires at `deadline`, unless it
    /// runs by then anyway; never sooner than [`REAP_INTERVAL_MS`] after
    /// its last pass began.
    fn reap_by(&mut self, deadline: u64) {
        let at = deadline.max(self.reap.last.saturating_add(self.reap.interval));
        if self.reap.due.is_some_and(|due| due <= at) {
            return;
        }
        self.reap.due = Some(at);
        self.reap.arm = Some(at);
    }

    /// Looks at entries from `cursor` on until an expired one (at `now`),
    /// at most [`REAP_VISITS`] counted in `visits`; lowers `earliest` to
    /// the deadlines of the live ones.
    fn next_expired(
        &self,
        now: u64,
        cursor: &mut ReapCursor,
        visits: &mut usize,
        earliest: &mut u64,
    ) -> Found {
        let mut next = if cursor.started {
            self.tree.lower_bound(cursor.key())
        } else {
            self.tree.first()
        };
        while let Some(entry) = next {
            if *visits == REAP_VISITS {
                cursor.set(entry.key());
                return Found::Pause;
            }
            *visits += 1;
            let meta = entry.meta();
            if meta.expired(now) {
                cursor.set(entry.key());
                return Found::Expired;
            }
            if meta.expires != 0 {
                *earliest = (*earliest).min(meta.expires);
            }
            next = entry.next();
        }
        Found::End
    }

    /// One step of a reaper's pass under the lock: removes the entries
    /// expired at `now` from `cursor` on, into `retired` (to be freed after
    /// unlocking), each a write of its own, until `retired` is full or
    /// [`REAP_VISITS`] entries were looked at. Returns whether the pass
    /// reached the end of the table.
    fn reap_step(
        &mut self,
        now: u64,
        cursor: &mut ReapCursor,
        retired: &mut KVec<Detached>,
        earliest: &mut u64,
    ) -> bool {
        let (before, charged) = (self.charge(), self.budget.is_some());
        let mut visits = 0;
        let ended = loop {
            if retired.len() == REAP_CHUNK {
                break false;
            }
            match self.next_expired(now, cursor, &mut visits, earliest) {
                Found::Expired => {}
                Found::Pause => break false,
                Found::End => break true,
            }
            let Slot::Occupied(o) = self.tree.slot(cursor.key()) else {
                // `next_expired` just found it, under the same lock.
                break true;
            };
            self.usage.remove(Share::of(&o.entry(), charged));
            let detached = o.remove();
            self.generation += 1;
            let g = self.generation;
            if let Some(log) = self.log.as_mut() {
                let h = EventHeader {
                    generation: g,
                    last: g,
                    kind: EventKind::Expire,
                    key_len: cursor.len as u16,
                    value_len: None,
                };
                log.append(&h, cursor.key());
            }
            // Within the capacity reserved before locking: cannot fail.
            let _ = retired.push(detached, GFP_NOWAIT);
        };
        self.tree.publish();
        if let Some(budget) = self.budget {
            budget.uncharge(before.saturating_sub(self.charge()));
        }
        ended
    }

    /// Refuses a put of `new` under a classifier's prefix unless its value
    /// is an action.
    #[inline]
    fn check_guarded(&self, new: &NewEntry) -> Result {
        if self.guarded.is_empty() {
            return Ok(());
        }
        classify::check_value(&self.guarded, new.key(), new.value())
    }

    /// Takes on classifier `c`: checks that every live entry under its
    /// prefix holds an action (`EBADMSG`), charges `charge` to the shared budget
    /// (`EDQUOT`), and guards the prefixes of `guarded` from now on, all
    /// at once. Returns the list it replaced, to be freed after unlocking.
    pub(crate) fn admit_classifier(
        &mut self,
        c: &Classifier,
        charge: u64,
        guarded: KVec<Classifier>,
    ) -> Result<KVec<Classifier>> {
        let mut cursor = self.tree.lower_bound(c.prefix());
        let now = clock::jiffies64();
        while let Some(entry) = cursor.filter(|e| c.covers(e.key())) {
            let (key_len, key_value) = entry.key_value();
            // An expired entry is absent, and can never be read again.
            if !entry.meta().expired(now) && Action::parse(&key_value[key_len..]).is_none() {
                return Err(Error::from_errno(-(kernel::bindings::EBADMSG as i32)));
            }
            cursor = entry.next();
        }
        if let Some(budget) = self.budget {
            budget.try_charge(charge)?;
        }
        self.classifier_charge += charge;
        Ok(core::mem::replace(&mut self.guarded, guarded))
    }

    /// Lets a classifier go: gives back its `charge` and guards the
    /// prefixes of `guarded` from now on. Returns the list it replaced.
    pub(crate) fn release_classifier(
        &mut self,
        charge: u64,
        guarded: KVec<Classifier>,
    ) -> KVec<Classifier> {
        if let Some(budget) = self.budget {
            budget.uncharge(charge);
        }
        self.classifier_charge -= charge;
        core::mem::replace(&mut self.guarded, guarded)
    }

    /// The readers' side of the table's tree.
    pub(crate) fn reader(&self) -> Reader {
        self.tree.reader()
    }

    /// What this table is charged to its shared budget (0 without one).
    fn charge(&self) -> u64 {
        self.usage.charged
    }

    /// Entries, key + value bytes and generation.
    pub(crate) fn usage(&self) -> (usize, u64, u64) {
        (self.usage.entries, self.usage.bytes, self.generation)
    }

    /// Whether the table is charged to a shared budget, and its charge
    /// (its entries' and its classifiers').
    pub(crate) fn charged(&self) -> (bool, u64) {
        let classifiers = if self.budget.is_some() {
            self.classifier_charge
        } else {
            0
        };
        (
            self.budget.is_some(),
            self.charge() + classifiers + self.log_charge,
        )
    }

    /// Applies a write all or nothing: an optional flush, then `ops` in order,
    /// each op's conditions and the entry and byte limits checked against the
    /// table as the earlier ops left it; then the whole write's growth is
    /// charged to the shared budget before the write is kept (what it frees
    /// is given back after). On error nothing has changed. Returns the
    /// flushed tree, for the caller to free once the lock is dropped; what
    /// the ops displaced stays in them, for the same.
    pub(crate) fn write(
        &mut self,
        flush: bool,
        ops: &mut [PreparedOp<'_>],
        limits: &Limits,
    ) -> Result<Retired> {
        let written = self.write_unpublished(flush, ops, limits);
        self.tree.publish();
        if written.is_ok() {
            self.log_write(flush, ops);
        }
        written
    }

    /// [`Table::write`] but for publishing it. Out of line, so that the
    /// caller tests its result once, not again on a tail the compiler
    /// shares with the undo of a refused write.
    #[inline(never)]
    fn write_unpublished(
        &mut self,
        flush: bool,
        ops: &mut [PreparedOp<'_>],
        limits: &Limits,
    ) -> Result<Retired> {
        let (budget, before, now) = (self.budget, self.charge(), clock::jiffies64());
        let mut pending = PendingWrite {
            before: (self.usage, self.generation),
            table: self,
            ops,
            flushed: None,
            applied: 0,
            committed: false,
        };
        if flush {
            let table = &mut *pending.table;
            pending.flushed = Some(table.tree.take());
            table.usage = Usage::default();
            table.generation += 1;
        }
        while let Some(op) = pending.ops.get_mut(pending.applied) {
            // On error `pending` is dropped, which undoes the ops before.
            pending.table.apply(op, limits, now)?;
            pending.applied += 1;
        }
        let after = pending.table.charge();
        if let Some(budget) = budget {
            if after > before {
                budget.try_charge(after - before)?;
            }
        }
        let flushed = pending.commit();
        if let Some(budget) = budget {
            if after < before {
                budget.uncharge(before - after);
            }
        }
        Ok(flushed)
    }

    /// Applies one op with one descent at jiffies64 `now`, if its
    /// conditions and the limits allow; otherwise changes nothing.
    fn apply(&mut self, op: &mut PreparedOp<'_>, limits: &Limits, now: u64) -> Result {
        let version = self.generation + 1;
        let (usage, done) = match op.kind {
            OpKind::Del => {
                op.retired = Some(self.unlink(op.key, &op.cond, now)?);
                op.done = Done::Removed;
                return Ok(());
            }
            OpKind::Put => {
                let mut new = op.new.take().ok_or(EINVAL)?;
                if let Err(e) = self.check_guarded(&new) {
                    op.new = Some(new);
                    return Err(e);
                }
                new.set_meta(Meta {
                    version,
                    expires: deadline(now, &op.cond.ttl),
                });
                let (usage, charged) = (self.usage, self.budget.is_some());
                let added = Share::of_new(&new, charged);
                let (mut after, mut expires) = (usage, 0);
                let linked = self.tree.upsert(new, |present, meta| {
                    after = admit_put(usage, &op.cond, present, added, limits, charged, now, meta)?;
                    expires = meta.expires;
                    Ok(())
                });
                if expires != 0 && linked.is_ok() {
                    self.reap_by(expires);
                }
                match linked {
                    Ok(None) => (after, Done::Inserted),
                    Ok(Some(old)) => {
                        op.retired = Some(old);
                        (after, Done::Replaced)
                    }
                    Err((new, e)) => {
                        op.new = Some(new);
                        return Err(e);
                    }
                }
            }
        };
        (self.usage, self.generation) = (usage, version);
        op.done = done;
        Ok(())
    }

    /// A single PUT of `new` under `cond`: [`Table::write`] of one op
    /// without its undo log, since every check (the shared budget's
    /// included) runs before the entry is linked. Returns the entry it
    /// displaced; on refusal nothing changed and `new` comes back with the
    /// error. Either is for the caller to drop once the lock is dropped.
    pub(crate) fn put_one(
        &mut self,
        new: NewEntry,
        cond: &Condition,
        limits: &Limits,
    ) -> core::result::Result<Option<Detached>, (NewEntry, Error)> {
        if self.log.is_none() {
            let put = self.put_unpublished(new, cond, limits);
            self.tree.publish();
            return put;
        }
        let mut key = [0u8; codec::MAX_KEY_LEN];
        let key_len = new.key().len();
        key[..key_len].copy_from_slice(new.key());
        let put = self.put_unpublished(new, cond, limits);
        self.tree.publish();
        if put.is_ok() {
            let g = self.generation;
            self.log(g, g, EventKind::Put, &key[..key_len]);
        }
        put
    }

    /// [`Table::put_one`] but for publishing it.
    fn put_unpublished(
        &mut self,
        mut new: NewEntry,
        cond: &Condition,
        limits: &Limits,
    ) -> core::result::Result<Option<Detached>, (NewEntry, Error)> {
        if let Err(e) = self.check_guarded(&new) {
            return Err((new, e));
        }
        let (version, now) = (self.generation + 1, clock::jiffies64());
        new.set_meta(Meta {
            version,
            expires: deadline(now, &cond.ttl),
        });
        let (usage, budget, before) = (self.usage, self.budget, self.charge());
        let added = Share::of_new(&new, budget.is_some());
        let (mut after, mut expires) = (usage, 0);
        let displaced = self.tree.upsert(new, |present, meta| {
            after = admit_put(
                usage,
                cond,
                present,
                added,
                limits,
                budget.is_some(),
                now,
                meta,
            )?;
            expires = meta.expires;
            match budget {
                Some(budget) if after.charged > before => budget.try_charge(after.charged - before),
                _ => Ok(()),
            }
        })?;
        (self.usage, self.generation) = (after, version);
        if expires != 0 {
            self.reap_by(expires);
        }
        let charge = self.charge();
        if let Some(budget) = budget {
            if charge < before {
                budget.uncharge(before - charge);
            }
        }
        Ok(displaced)
    }

    /// Deletes `key` under `cond` with one descent at jiffies64 `now` (an
    /// expired entry is absent), counting it as one write; otherwise
    /// changes nothing. Returns the unlinked entry.
    fn unlink(&mut self, key: &[u8], cond: &Condition, now: u64) -> Result<Detached> {
        let Slot::Occupied(o) = self.tree.slot(key) else {
            return Err(ENOENT);
        };
        let entry = o.entry();
        let meta = entry.meta();
        if meta.expired(now) {
            return Err(ENOENT);
        }
        check(OpKind::Del, cond, Some(meta.version))?;
        self.usage.remove(Share::of(&entry, self.budget.is_some()));
        let detached = o.remove();
        self.generation += 1;
        Ok(detached)
    }

    /// A single DEL of `key` under `cond`: [`Table::write`] of one op without
    /// its undo log, since the only checks come before the entry is
    /// unlinked (a delete only gives budget back). Returns the entry it
    /// unlinked, for the caller to drop once the lock is dropped; on refusal
    /// nothing changed.
    pub(crate) fn delete_one(&mut self, key: &[u8], cond: &Condition) -> Result<Detached> {
        let before = self.charge();
        let detached = self.unlink(key, cond, clock::jiffies64());
        self.tree.publish();
        if let Some(budget) = self.budget {
            budget.uncharge(before.saturating_sub(self.charge()));
        }
        if detached.is_ok() {
            let g = self.generation;
            self.log(g, g, EventKind::Del, key);
        }
        detached
    }

    /// Undoes what [`Table::apply`] did to the tree for `op`, the last op
    /// applied that is not undone yet (the counters are restored by the
    /// caller). Cannot fail; keeps whatever it unlinks in the op.
    fn unapply(&mut self, op: &mut PreparedOp<'_>) {
        let done = core::mem::replace(&mut op.done, Done::Nothing);
        let unlinked = match (done, self.tree.slot(op.key), op.retired.take()) {
            (Done::Inserted, Slot::Occupied(o), None) => Some(o.remove()),
            (Done::Replaced, Slot::Occupied(o), Some(old)) => {
                Some(o.replace(old).unwrap_or_else(|old| old))
            }
            (Done::Removed, Slot::Vacant(v), Some(old)) => v.insert(old).err(),
            // Nothing was done, or the tree is not as the op left it, which
            // undoing in reverse order rules out.
            (_, _, retired) => retired,
        };
        op.retired = unlinked;
    }

    /// Fills `page` with the entries `req` asks for, in key order. Returns
    /// whether more entries match, and, when the next one did not fit, the
    /// page bytes it needs.
    pub(crate) fn list_page(
        &self,
        req: &ListRequest<'_>,
        page: &mut ListPageWriter<'_>,
    ) -> Result<(bool, Option<usize>)> {
        // Start at the larger of `after` and the prefix; empty means none.
        let start = if req.after > req.prefix {
            req.after
        } else {
            req.prefix
        };
        let mut cursor = if start.is_empty() {
            self.tree.first()
        } else {
            self.tree.lower_bound(start)
        };
        let now = clock::jiffies64();
        // Keys are unique and the walk starts at the lower bound of the
        // larger one: only its first entry can be `after` itself.
        if let Some(first) = cursor {
            if !req.after.is_empty() && first.key() == req.after {
                cursor = first.next();
            }
        }
        while let Some(entry) = cursor {
            cursor = entry.next();
            let (key_len, key_value) = entry.key_value();
            if !req.prefix.is_empty() && !key_value[..key_len].starts_with(req.prefix) {
                return Ok((false, None));
            }
            let meta = entry.meta();
            if meta.expired(now) {
                continue;
            }
            if !page.push(meta.version, meta.ttl_ms(now), key_len, key_value) {
                let needed = codec::LIST_REPLY_SIZE
                    + codec::list_entry_len(key_len, key_value.len() - key_len);
                return Ok((true, Some(needed)));
            }
        }
        Ok((false, None))
    }
}

/// Most logged events one watch call looks at per hold of the lock (those
/// its prefix filters out included).
const WATCH_SCAN_MAX: u64 = 16384;

/// What [`Table::watch_page`] did.
pub(crate) struct WatchScan {
    /// Every event up to this generation is in the page or filtered out.
    covered: u64,
    /// Events after `covered` are logged already.
    more: bool,
    /// The page size the first event needs, when it did not fit.
    needed: Option<usize>,
}

impl Table {
    /// Fills `page` with the logged events after generation `from` that
    /// `req` asks for, in generation order, looking at
    /// [`WATCH_SCAN_MAX`] at most. A put's value is attached if `req`
    /// asks and the entry still holds it (same version, not expired).
    fn watch_page(
        &self,
        req: &WatchRequest<'_>,
        from: u64,
        page: &mut WatchPageWriter<'_>,
    ) -> WatchScan {
        let mut covered = from;
        let Some(log) = self.log.as_ref() else {
            return WatchScan {
                covered,
                more: false,
                needed: None,
            };
        };
        let now = clock::jiffies64();
        let end = self.generation.min(from.saturating_add(WATCH_SCAN_MAX));
        let mut key = [0u8; codec::MAX_KEY_LEN];
        while covered < end {
            let g = covered + 1;
            let Some((h, key_len)) = log.event(g, &mut key) else {
                break;
            };
            let key = &key[..key_len];
            if h.kind != EventKind::Flush && !key.starts_with(req.prefix) {
                covered = g;
                continue;
            }
            let value = match (req.values, h.kind) {
                (true, EventKind::Put) => self.value_of(key, g, now),
                _ => None,
            };
            let h = EventHeader {
                value_len: value.map(|v| v.len() as u32),
                ..h
            };
            if !page.push(&h, key, value.unwrap_or(&[])) {
                let needed = (page.count() == 0).then(|| {
                    codec::WATCH_REPLY_SIZE
                        + codec::event_len(key_len, value.map_or(0, |v| v.len()))
                });
                return WatchScan {
                    covered,
                    more: true,
                    needed,
                };
            }
            covered = g;
        }
        WatchScan {
            covered,
            more: covered < self.generation,
            needed: None,
        }
    }

    /// The value of `key` if its entry has version `version` and is live
    /// at jiffies64 `now`.
    fn value_of(&self, key: &[u8], version: u64, now: u64) -> Option<&[u8]> {
        let entry = self.tree.lower_bound(key).filter(|e| e.key() == key)?;
        let meta = entry.meta();
        if meta.version != version || meta.expired(now) {
            return None;
        }
        let (key_len, key_value) = entry.key_value();
        Some(&key_value[key_len..])
    }
}

/// A write applied under the lock but not yet kept: [`PendingWrite::commit`]
/// keeps it; dropping it undoes it (before the lock is dropped).
struct PendingWrite<'t, 'o, 'k> {
    table: &'t mut Table,
    ops: &'o mut [PreparedOp<'k>],
    /// The table's usage and generation before the write.
    before: (Usage, u64),
    /// The entries a flush took out.
    flushed: Option<Taken>,
    /// Ops applied, from the first.
    applied: usize,
    committed: bool,
}

impl PendingWrite<'_, '_, '_> {
    /// Keeps the write. Returns what a flush took out.
    /// (By reference: moving the guard out would copy it, which TCG runs
    /// as one `rep movsq` iteration per word.)
    fn commit(&mut self) -> Retired {
        self.committed = true;
        self.flushed.take()
    }
}

impl Drop for PendingWrite<'_, '_, '_> {
    #[inline]
    fn drop(&mut self) {
        if !self.committed {
            self.undo();
        }
    }
}

impl PendingWrite<'_, '_, '_> {
    /// Undoes the ops applied, in reverse, and restores the counters.
    #[cold]
    fn undo(&mut self) {
        for op in self.ops[..self.applied].iter_mut().rev() {
            self.table.unapply(op);
        }
        if let Some(flushed) = self.flushed.as_mut() {
            // The tree is empty again; the empty one goes out with `self`.
            self.table.tree.restore(flushed);
        }
        (self.table.usage, self.table.generation) = self.before;
    }
}

impl Drop for Table {
    /// Gives back the table's charge and records how far its versions got.
    fn drop(&mut self) {
        if let Some(budget) = self.budget {
            budget.uncharge(self.charge() + self.classifier_charge + self.log_charge);
        }
        policy::retire_generation(self.generation);
    }
}

/// The table under its lock, with the watchers' wait queue.
#[pin_data]
pub(crate) struct Locked {
    #[pin]
    table: Mutex<Table>,
    /// Where watchers wait for the table's next change.
    #[pin]
    changed: CondVar,
}

impl Deref for Locked {
    type Target = Mutex<Table>;

    fn deref(&self) -> &Mutex<Table> {
        &self.table
    }
}

impl Locked {
    /// Wakes the watchers if `table`, changed since generation `before`,
    /// has any.
    #[inline]
    fn wake_watchers(&self, table: &Table, before: u64) {
        if table.watchers > 0 && table.generation != before {
            self.changed.notify_all();
        }
    }
}

/// Everything nfkv keeps for one network namespace.
#[pin_data]
pub(crate) struct NetTable {
    /// The classifiers, which packets reach through the namespace's hooks.
    #[pin]
    pub(crate) classifiers: Classifiers,
    /// Writers' lock; never held across a user copy. Its work is the
    /// reaper ([`reap`]).
    #[pin]
    pub(crate) table: Delayed<Locked>,
    /// The table's tree for readers that take no lock.
    pub(crate) reader: Reader,
    /// Per-command counters, per CPU: counting a call shares no cache line.
    pub(crate) stats: Stats,
}

impl NetTable {
    /// The state of a new namespace: an empty table, charged to `budget`.
    pub(crate) fn new(budget: Option<&'static SharedBudget>) -> Result<impl PinInit<Self, Error>> {
        let table = Table::new(budget)?;
        let reader = table.reader();
        let stats = Stats::new()?;
        Ok(try_pin_init!(NetTable {
            classifiers <- Classifiers::new(),
            table <- Delayed::new(pin_init!(Locked {
                table <- new_mutex!(table, "nfkv_table"),
                changed <- new_condvar!("nfkv_changed"),
            })),
            reader,
            stats,
        }? Error))
    }
}

impl NetTable {
    /// Runs `write` on the table under its lock, then arms the reaper if
    /// the write asked for it. What `write` returns is for the caller to
    /// drop, after the lock.
    pub(crate) fn write<R>(&self, write: impl FnOnce(&mut Table) -> R) -> R {
        let mut table = self.table.lock();
        let before = table.generation;
        let done = write(&mut table);
        if let Some(at) = table.reap.arm.take() {
            self.table.run_in(at.saturating_sub(clock::jiffies64()));
        }
        self.table.wake_watchers(&table, before);
        done
    }

    /// Gives the table a change log of `bytes` bytes if it has none yet,
    /// charged to its shared budget (`EDQUOT`); from then on every change
    /// is logged.
    pub(crate) fn ensure_log(&self, bytes: usize) -> Result {
        if self.table.lock().log.is_some() {
            return Ok(());
        }
        let log = ChangeLog::new(bytes, 0)?;
        let mut table = self.table.lock();
        if table.log.is_some() {
            // Another watcher made it meanwhile; ours is freed below,
            // after unlocking.
            drop(table);
            drop(log);
            return Ok(());
        }
        let charge = table.budget.map_or(0, |_| log.allocated());
        if let Some(budget) = table.budget {
            budget.try_charge(charge)?;
        }
        let start = table.generation;
        let mut log = log;
        log.restart(start);
        (table.log, table.log_charge) = (Some(log), charge);
        Ok(())
    }

    /// Answers watch request `req` into `page`: the events after
    /// `req.since`, waiting for one at most `req.timeout_ms` if there are
    /// none yet; a gap answer if the log no longer holds them all. A
    /// signal ends the wait with `ERESTARTSYS`, before anything is copied
    /// out. The table must have a log ([`NetTable::ensure_log`]).
    pub(crate) fn watch(&self, req: &WatchRequest<'_>, page: &mut [u8]) -> Result<Watched> {
        let mut wait = clock::ms_to_jiffies(req.timeout_ms);
        let mut table = self.table.lock();
        if req.since > table.generation {
            return Err(EINVAL);
        }
        let mut from = req.since;
        loop {
            let oldest = table.log.as_ref().map_or(table.generation, |l| l.oldest());
            let header = WatchReplyHeader {
                generation: table.generation,
                oldest,
                ..WatchReplyHeader::default()
            };
            let mut writer = WatchPageWriter::new(page)?;
            if from < oldest {
                let gap = WatchReplyHeader {
                    gap: true,
                    ..header
                };
                return Ok(Watched::Page(writer.finish(gap)));
            }
            let scan = table.watch_page(req, from, &mut writer);
            if let Some(needed) = scan.needed {
                let header = WatchReplyHeader {
                    generation: scan.covered,
                    more: true,
                    size: needed as u32,
                    ..header
                };
                return Ok(Watched::NeedsPage(needed, header));
            }
            if writer.count() > 0 || scan.more || wait == 0 {
                let reply = WatchReplyHeader {
                    generation: scan.covered,
                    more: scan.more,
                    ..header
                };
                return Ok(Watched::Page(writer.finish(reply)));
            }
            from = scan.covered;
            table.watchers += 1;
            let jiffies = Jiffies::try_from(wait).unwrap_or(Jiffies::MAX);
            let woke = self
                .table
                .changed
                .wait_interruptible_timeout(&mut table, jiffies);
            table.watchers -= 1;
            wait = match woke {
                CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
                CondVarTimeoutResult::Timeout => 0,
                CondVarTimeoutResult::Woken { jiffies } => jiffies as u64,
            };
        }
    }
}

/// What a watch call found.
pub(crate) enum Watched {
    /// A reply of this many bytes, ready to copy out.
    Page(usize),
    /// Not even the first event fitted: the reply size it needs, and the
    /// reply header telling it.
    NeedsPage(usize, WatchReplyHeader),
}

impl DelayedRun for Locked {
    fn run(this: &Delayed<Self>) {
        reap(this);
    }
}

/// A pass of the reaper: removes every entry expired by the time the walk
/// reaches it, [`REAP_CHUNK`] at most (and [`REAP_VISITS`] entries looked
/// at) per hold of the lock, freeing them after each; then arms itself
/// again for the earliest deadline left, if any. Out of memory for its
/// list of entries to free, it tries again [`REAP_INTERVAL_MS`] later.
fn reap(table: &Delayed<Locked>) {
    let mut cursor = ReapCursor {
        key: [0; codec::MAX_KEY_LEN],
        len: 0,
        started: false,
    };
    let mut earliest = u64::MAX;
    {
        let mut t = table.lock();
        t.reap.due = None;
        t.reap.last = clock::jiffies64();
    }
    loop {
        let retired = KVec::with_capacity(REAP_CHUNK, GFP_KERNEL | __GFP_NOWARN);
        let mut t = table.lock();
        let (now, before) = (clock::jiffies64(), t.generation);
        let (ended, retired) = match retired {
            Ok(mut retired) => (
                t.reap_step(now, &mut cursor, &mut retired, &mut earliest),
                retired,
            ),
            Err(_) => {
                let again = now.saturating_add(t.reap.interval);
                t.reap_by(again);
                (true, KVec::new())
            }
        };
        if ended && t.usage.expiring > 0 {
            // Entries linked behind the walk armed the work themselves.
            let next = if earliest == u64::MAX {
                now.saturating_add(t.reap.interval)
            } else {
                earliest
            };
            t.reap_by(next);
        }
        if let Some(at) = t.reap.arm.take() {
            table.run_in(at.saturating_sub(now));
        }
        table.wake_watchers(&t, before);
        drop(t);
        drop(retired);
        if ended {
            return;
        }
        work::cond_resched();
    }
}
