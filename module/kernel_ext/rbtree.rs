// SPDX-License-Identifier: GPL-2.0

//! An intrusive red-black tree of byte-keyed, reference-counted entries over
//! the kernel's `rb_node` (`lib/rbtree.c`) that writers change under their
//! own lock and readers search with no lock, under RCU. An entry is ONE
//! allocation holding its tree links, a reference count, the key and value
//! lengths, a small fixed-size field of the user's ([`EntryKind::Meta`],
//! e.g. a version), the key and the value, sized to what it holds. Keys
//! sort by [`EntryKind::key_order`].
//!
//! Lockless reads use a latch, as `include/linux/rbtree_latch.h` does: the
//! tree is two trees holding the same entries, each entry linked into both.
//! A sequence count tells readers which tree to search (even: 0, odd: 1). A
//! write first bumps it (readers go to tree 1), changes tree 0 as much as
//! it likes (a whole batch), bumps it again (readers go to tree 0, which
//! now shows the whole write) and brings tree 1 to the same state. A reader
//! searches the tree its count names and searches again if the count moved
//! meanwhile, so it sees the tree as some whole write left it: never half
//! a write, and never a key missing because a rotation moved it. An entry
//! is freed an RCU grace period after its last reference goes, so what a
//! reader reached stays readable until its [`RcuGuard`] is dropped.
//!
//! The types keep the tree's invariants, so that their users are safe Rust:
//!
//! - [`NewEntry`]: an entry being built, owned by nobody else and in no tree;
//!   the only form whose [`EntryKind::Meta`] can be set.
//! - [`Tree`]: the writers' side. Keeps its entries in key order without
//!   duplicates and owns a reference on each per tree that links it; its
//!   changes reach readers at [`Tree::publish`], all at once.
//! - [`Reader`]: the readers' side of a tree, searched under an
//!   [`RcuGuard`], giving [`RcuEntry`]s.
//! - [`Detached`]: tree 0's reference on an entry just taken out of it; it
//!   can be linked again (undo) or dropped.
//! - [`Taken`]: every entry [`Tree::take`] took out of tree 0 at once.
//! - [`EntryRef`]: a counted reference for reading an entry with no lock
//!   held; an entry is immutable once linked, so readers need nothing else.
//! - [`EntryView`]: an entry of tree 0, borrowed with the tree; also the
//!   tree's cursor ([`EntryView::next`]).
//! - [`Slot`] ([`Occupied`], [`Vacant`]): where a key is or would be, found
//!   by one descent, so a write walks the tree once.
//!
//! At most one of a tree-0 link, a [`NewEntry`] and a [`Detached`] exists per
//! entry at any time, so an entry is never in two places of a tree. Nothing
//! here allocates or frees except [`NewEntry::new`], the drop of
//! [`NewEntry`], [`Detached`], [`Taken`], [`EntryRef`] and [`Tree`], and
//! [`Tree::publish`] (when it drops the last reference on an entry a write
//! took out and its user already dropped), so a user that drops those after
//! unlocking never allocates or frees under its lock.

use super::bindings as b;
use super::bytes::{ByteSource, Bytes};
use super::rcu::RcuGuard;
use super::refcount::Refcount;
use core::cell::UnsafeCell;
use core::cmp::Ordering;
use core::marker::PhantomData;
use core::mem::{size_of, ManuallyDrop, MaybeUninit};
use core::ptr::{self, addr_of, addr_of_mut, NonNull};
use core::sync::atomic::{fence, AtomicU32, Ordering as MemOrder};
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Arc;

/// What the entries of a [`Tree`] carry besides key and value, and how their
/// keys sort.
pub(crate) trait EntryKind: 'static {
    /// A small fixed-size field of every entry (e.g. a version): set while
    /// the entry is a [`NewEntry`], read-only once it is linked.
    type Meta: Copy + Default + Send + Sync;

    /// The order of keys in a tree (e.g. bytewise).
    fn key_order(a: &[u8], b: &[u8]) -> Ordering;
}

/// The writers' tree, where every change is made first.
const WRITERS: usize = 0;
/// Its copy, which readers search while the writers' tree changes.
const COPY: usize = 1;

/// The start of every entry; the key and then the value follow it. Only
/// this file reads or writes it (its fields are private).
#[repr(C)]
pub(crate) struct Header<M> {
    /// The entry's node in each of the two trees, linked while that tree
    /// holds a reference on it; written only by the [`Tree`] holding it.
    /// The first field, so that a node's entry is found by subtraction.
    links: [bindings::rb_node; 2],
    /// The next entry on its [`Tree`]'s list of entries changed since the
    /// last [`Tree::publish`] (itself for the last one); null when on no
    /// such list. Only that tree reads or writes it.
    pending: *mut Header<M>,
    /// References: one per tree linking the entry, one while it is on a
    /// tree's pending list, one per [`NewEntry`], [`Detached`] or
    /// [`EntryRef`]. A `refcount_t` with its checks (a count gone wrong
    /// saturates and warns), taken and dropped inline.
    refcount: Refcount,
    /// `value_len | key_len << 24`, fixed at allocation.
    lens: u32,
    /// Written only while the entry is a [`NewEntry`].
    meta: M,
}

/// Bytes before the key of an entry of kind `K`.
const fn header_size<K: EntryKind>() -> usize {
    size_of::<Header<K::Meta>>()
}

/// Longest key an entry can hold.
pub(crate) const MAX_KEY_LEN: usize = 255;
/// Longest value an entry can hold.
pub(crate) const MAX_VALUE_LEN: usize = (1 << 24) - 1;

/// Bytes of the allocation of an entry.
fn entry_size<K: EntryKind>(key_len: usize, value_len: usize) -> usize {
    header_size::<K>() + key_len + value_len
}

/// What the allocation of an entry holding `key_value_len` key and value
/// bytes takes from the allocator: its size class, not its size.
fn allocated_size<K: EntryKind>(key_value_len: u64) -> u64 {
    let size = header_size::<K>() + key_value_len as usize;
    // SAFETY: `kext_kvmalloc_account_size` computes a size; it has no precondition.
    unsafe { b::kext_kvmalloc_account_size(size) as u64 }
}

/// Whether `kext_kvmalloc_account` (kvmalloc) gives an entry of `size`
/// bytes from the slab (one `kmalloc`, freed with `kfree`) rather than
/// possibly from vmalloc (freed with `kvfree`).
fn in_slab(size: usize) -> bool {
    size <= kernel::page::PAGE_SIZE
}

/// An entry known to be live for `'a`: the one place its fields are read.
struct Live<'a, K: EntryKind> {
    h: NonNull<Header<K::Meta>>,
    _life: PhantomData<&'a Header<K::Meta>>,
}

impl<K: EntryKind> Clone for Live<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: EntryKind> Copy for Live<'_, K> {}

impl<'a, K: EntryKind> Live<'a, K> {
    /// # Safety
    ///
    /// `h` points to an entry that stays live for `'a` and is not a
    /// [`NewEntry`] someone else holds (whose meta may be written).
    unsafe fn new(h: NonNull<Header<K::Meta>>) -> Self {
        Live {
            h,
            _life: PhantomData,
        }
    }

    /// Key and value lengths.
    fn lens(self) -> (usize, usize) {
        // SAFETY: the entry is live (invariant); `lens` is never written after
        // `NewEntry::new`, so reading it races with nothing.
        let lens = unsafe { (*self.h.as_ptr()).lens };
        ((lens >> 24) as usize, (lens & 0xff_ffff) as usize)
    }

    /// The key's length, and key and value as the one slice they are stored as.
    fn key_value(self) -> (usize, &'a [u8]) {
        let (key_len, value_len) = self.lens();
        // SAFETY: `NewEntry::filled` allocated `header_size + key_len + value_len` bytes at `h`,
        // filled key and value after the header and never writes them again; the entry
        // outlives `'a`.
        let key_value = unsafe {
            core::slice::from_raw_parts(
                self.h.as_ptr().cast::<u8>().add(header_size::<K>()),
                key_len + value_len,
            )
        };
        (key_len, key_value)
    }

    /// Key and value.
    fn data(self) -> (&'a [u8], &'a [u8]) {
        let (key_len, key_value) = self.key_value();
        key_value.split_at(key_len)
    }

    /// Key and value bytes.
    fn stored_len(self) -> u64 {
        let (key_len, value_len) = self.lens();
        (key_len + value_len) as u64
    }

    /// The meta field.
    fn meta(self) -> K::Meta {
        // SAFETY: live (invariant); only `NewEntry::set_meta` writes it, through
        // `&mut NewEntry`, and no `Live` of that entry exists meanwhile (invariant).
        unsafe { (*self.h.as_ptr()).meta }
    }
}

/// Drops one reference on the entry at `h`; if that was the last, frees the
/// entry once a grace period has passed (a reader may still be on it).
/// May sleep. Out of line, as `Tree::begin`.
///
/// # Safety
///
/// The caller owns one reference on the live entry at `h` and gives it up.
/// While a tree links the entry, that tree holds a reference: so either the
/// caller is not it, or the caller is that tree giving up its link, which
/// never reads the entry's node in that tree again.
#[inline(never)]
unsafe fn release<K: EntryKind>(h: NonNull<Header<K::Meta>>) {
    // SAFETY: the entry is live and the caller's reference keeps it so until
    // this decrement.
    let refcount = unsafe { &(*h.as_ptr()).refcount };
    // Our uses of the entry happen before whoever frees it (the one that
    // takes the count to zero), which `dec_and_test` orders.
    if !refcount.dec_and_test() {
        return;
    }
    // SAFETY: that was the last reference, so no tree links the entry (it would hold one) and
    // nobody but an RCU reader that reached it earlier reads it again; `kext_kvfree_rcu` frees
    // it after those readers (kvfree: slab or vmalloc, as `kext_kvmalloc_account` gave it).
    unsafe { b::kext_kvfree_rcu(h.as_ptr().cast()) };
}

/// Frees the entry at `h` now.
///
/// # Safety
///
/// The entry is live, the caller holds its only reference, it was never
/// linked into a tree (so no reader ever reached it), and nothing reads it
/// again.
unsafe fn free<K: EntryKind>(h: NonNull<Header<K::Meta>>) {
    // SAFETY: live, and ours alone (the caller's contract).
    let (key_len, value_len) = unsafe { Live::<K>::new(h) }.lens();
    let raw = h.as_ptr().cast();
    if in_slab(entry_size::<K>(key_len, value_len)) {
        // SAFETY: `kext_kvmalloc_account` took an entry of this size from the slab; nothing reads
        // it again.
        unsafe { bindings::kfree(raw) };
    } else {
        // SAFETY: `kext_kvmalloc_account` allocated the entry with `kvmalloc`; nothing reads it
        // again.
        unsafe { bindings::kvfree(raw) };
    }
}

/// The entry whose node in tree `tree` is `node`.
fn entry_of<M>(node: NonNull<bindings::rb_node>, tree: usize) -> NonNull<Header<M>> {
    // `links` is the first field of the `#[repr(C)]` header: node `tree` is `tree` nodes into
    // the entry.
    let h = node.as_ptr().wrapping_sub(tree).cast::<Header<M>>();
    // SAFETY: `h` is the start of the entry holding `node`, which is not null.
    unsafe { NonNull::new_unchecked(h) }
}

/// The node of the entry at `h` in tree `tree` (0 or 1).
fn node_of<M>(h: NonNull<Header<M>>, tree: usize) -> NonNull<bindings::rb_node> {
    // `links`, two nodes, is the first field of the `#[repr(C)]` header.
    let node = h.as_ptr().cast::<bindings::rb_node>().wrapping_add(tree);
    // SAFETY: a node inside the entry at `h`, which is not null.
    unsafe { NonNull::new_unchecked(node) }
}

/// An entry being built: allocated and filled before any lock is taken; its
/// only reference is this one, and it is in no tree.
pub(crate) struct NewEntry<K: EntryKind> {
    ptr: NonNull<Header<K::Meta>>,
}

impl<K: EntryKind> NewEntry<K> {
    /// Allocates one entry holding a key of `key_len` bytes and a value,
    /// which follow each other in `key_value` (meta: its default), charged
    /// to the caller's memory cgroup; from the slab up to a page, above that
    /// kvmalloc's (kmalloc without retrying, else vmalloc), so no high-order
    /// contiguous allocation is ever needed. EINVAL for lengths over
    /// [`MAX_KEY_LEN`] or [`MAX_VALUE_LEN`].
    pub(crate) fn new(key_len: usize, key_value: &[u8]) -> Result<Self> {
        let value_len = key_value.len().checked_sub(key_len).ok_or(EINVAL)?;
        Self::filled(key_len, value_len, &mut Bytes(key_value))
    }

    /// Allocates one entry for a key of `key_len` and a value of `value_len`
    /// bytes as [`NewEntry::new`] does, filled, key then value, by `source`
    /// (e.g. straight from a caller's buffer). When `source` fails, the
    /// entry is freed unread.
    pub(crate) fn filled<S: ByteSource + ?Sized>(
        key_len: usize,
        value_len: usize,
        source: &mut S,
    ) -> Result<Self> {
        // kmalloc and vmalloc align every allocation to at least 8 bytes.
        const { assert!(core::mem::align_of::<Header<K::Meta>>() <= 8) };
        if key_len > MAX_KEY_LEN || value_len > MAX_VALUE_LEN {
            return Err(EINVAL);
        }
        // SAFETY: `kext_kvmalloc_account` is `kvmalloc`, callable with any size in process context.
        let raw = unsafe { b::kext_kvmalloc_account(entry_size::<K>(key_len, value_len)) };
        let h = NonNull::new(raw.cast::<Header<K::Meta>>()).ok_or(ENOMEM)?;
        // SAFETY: `h` is a fresh allocation of `header_size + key_len + value_len` bytes, aligned
        // for the header (asserted above), that only we reach; the header is written whole, and
        // the bytes after it are handed out as `MaybeUninit` (never read before being written).
        let data = unsafe {
            h.as_ptr().write(Header {
                links: [bindings::rb_node::default(), bindings::rb_node::default()],
                pending: ptr::null_mut(),
                // One reference, ours.
                refcount: Refcount::new(1),
                lens: value_len as u32 | (key_len as u32) << 24,
                meta: K::Meta::default(),
            });
            core::slice::from_raw_parts_mut(
                h.as_ptr()
                    .cast::<u8>()
                    .add(header_size::<K>())
                    .cast::<MaybeUninit<u8>>(),
                key_len + value_len,
            )
        };
        match source.write_to(data) {
            // `source` wrote every byte (`ByteSource`'s contract): a complete entry.
            Ok(()) => Ok(NewEntry { ptr: h }),
            Err(e) => {
                // SAFETY: allocated just above by `kvmalloc`, never linked nor read.
                unsafe { bindings::kvfree(raw) };
                Err(e)
            }
        }
    }

    /// Sets the meta field the entry will carry once linked.
    pub(crate) fn set_meta(&mut self, meta: K::Meta) {
        // SAFETY: `self` is the only reference and the entry is in no tree,
        // so nothing else reads or writes it.
        unsafe { (*self.ptr.as_ptr()).meta = meta };
    }

    /// The meta field the entry will carry once linked.
    pub(crate) fn meta(&self) -> K::Meta {
        self.live().meta()
    }

    fn live(&self) -> Live<'_, K> {
        // SAFETY: our reference keeps the entry alive as long as `self`, and
        // only `&mut self` writes its meta field.
        unsafe { Live::new(self.ptr) }
    }

    /// The key.
    pub(crate) fn key(&self) -> &[u8] {
        self.live().data().0
    }

    /// The value.
    pub(crate) fn value(&self) -> &[u8] {
        self.live().data().1
    }

    /// Key and value bytes.
    pub(crate) fn stored_len(&self) -> u64 {
        self.live().stored_len()
    }

    /// What the entry's allocation takes: its size class (a 4 KiB value
    /// takes an 8 KiB slab object, a 64 KiB one 128 KiB of pages).
    pub(crate) fn allocated_size(&self) -> u64 {
        allocated_size::<K>(self.stored_len())
    }
}

impl<K: EntryKind> Drop for NewEntry<K> {
    /// Frees the entry without touching its count: no other reference can
    /// exist (one is taken only from a tree), so there is nothing to order.
    fn drop(&mut self) {
        // SAFETY: our reference, the only one (invariant), on an entry in no tree; dropped,
        // it is never read again.
        unsafe { free::<K>(self.ptr) };
    }
}

/// The reference tree 0 held on an entry it no longer links: the entry can
/// be linked again (into one tree), read, or dropped. Other references
/// ([`EntryRef`]) may exist, so the entry is read-only.
pub(crate) struct Detached<K: EntryKind> {
    ptr: NonNull<Header<K::Meta>>,
    /// The tree it came out of: until that tree publishes, the entry may
    /// still be in its tree 1, so it is linked into no other tree.
    origin: *const Latch,
}

impl<K: EntryKind> Detached<K> {
    /// The key.
    pub(crate) fn key(&self) -> &[u8] {
        // SAFETY: our reference keeps the entry alive as long as `self`; it
        // was linked, so it is no `NewEntry`.
        unsafe { Live::<K>::new(self.ptr) }.data().0
    }
}

impl<K: EntryKind> Drop for Detached<K> {
    fn drop(&mut self) {
        // SAFETY: our reference, tree 0's on an entry it no longer links (a link to tree 1 holds
        // a reference of its own).
        unsafe { release::<K>(self.ptr) };
    }
}

mod private {
    /// Only this file's owning references can be linked.
    pub(crate) trait Sealed<M> {
        /// Gives the reference up (to a tree) without releasing it.
        fn into_raw(self) -> core::ptr::NonNull<super::Header<M>>;
    }
}

/// What can be linked into a tree of `K`: an entry whose reference becomes
/// the tree's, and which is in no tree 0 now ([`NewEntry`] or [`Detached`]).
pub(crate) trait Link<K: EntryKind>: private::Sealed<K::Meta> {
    /// The entry's key.
    fn link_key(&self) -> &[u8];

    /// Whether it may be linked into the tree of `latch`: it is in no
    /// other tree's tree 1.
    fn may_join(&self, latch: *const Latch) -> bool;
}

impl<K: EntryKind> private::Sealed<K::Meta> for NewEntry<K> {
    fn into_raw(self) -> NonNull<Header<K::Meta>> {
        ManuallyDrop::new(self).ptr
    }
}

impl<K: EntryKind> Link<K> for NewEntry<K> {
    fn link_key(&self) -> &[u8] {
        self.key()
    }

    fn may_join(&self, _latch: *const Latch) -> bool {
        true
    }
}

impl<K: EntryKind> private::Sealed<K::Meta> for Detached<K> {
    fn into_raw(self) -> NonNull<Header<K::Meta>> {
        ManuallyDrop::new(self).ptr
    }
}

impl<K: EntryKind> Link<K> for Detached<K> {
    fn link_key(&self) -> &[u8] {
        self.key()
    }

    fn may_join(&self, latch: *const Latch) -> bool {
        ptr::eq(self.origin, latch)
    }
}

/// A counted reference on an entry, for reading it with no lock held.
pub(crate) struct EntryRef<K: EntryKind> {
    ptr: NonNull<Header<K::Meta>>,
}

impl<K: EntryKind> EntryRef<K> {
    fn live(&self) -> Live<'_, K> {
        // SAFETY: our reference keeps the entry alive as long as `self`; it
        // was linked, so it is no `NewEntry`.
        unsafe { Live::new(self.ptr) }
    }

    /// The value.
    pub(crate) fn value(&self) -> &[u8] {
        self.live().data().1
    }
}

impl<K: EntryKind> Drop for EntryRef<K> {
    fn drop(&mut self) {
        // SAFETY: our own reference, which is never a tree's.
        unsafe { release::<K>(self.ptr) };
    }
}

/// An entry of tree 0, borrowed with the tree (so it stays linked and alive).
pub(crate) struct EntryView<'a, K: EntryKind> {
    entry: Live<'a, K>,
    _tree: PhantomData<&'a Tree<K>>,
}

impl<K: EntryKind> Clone for EntryView<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: EntryKind> Copy for EntryView<'_, K> {}

impl<'a, K: EntryKind> EntryView<'a, K> {
    /// The entry of `node`, a node of tree 0 of a tree borrowed for `'a`.
    ///
    /// # Safety
    ///
    /// `node` is linked into tree 0 of a [`Tree`] borrowed (shared or unique)
    /// for `'a`.
    unsafe fn of(node: NonNull<bindings::rb_node>) -> Self {
        EntryView {
            // SAFETY: the tree holds a reference on the entry for `'a` (caller), and a
            // linked entry is no `NewEntry`.
            entry: unsafe { Live::new(entry_of(node, WRITERS)) },
            _tree: PhantomData,
        }
    }

    /// The key.
    pub(crate) fn key(&self) -> &'a [u8] {
        self.entry.data().0
    }

    /// The meta field.
    pub(crate) fn meta(&self) -> K::Meta {
        self.entry.meta()
    }

    /// The key's length, and key and value in one slice (as a list entry
    /// carries them).
    pub(crate) fn key_value(&self) -> (usize, &'a [u8]) {
        self.entry.key_value()
    }

    /// Key and value bytes.
    pub(crate) fn stored_len(&self) -> u64 {
        self.entry.stored_len()
    }

    /// What the entry's allocation takes (see [`NewEntry::allocated_size`]).
    pub(crate) fn allocated_size(&self) -> u64 {
        allocated_size::<K>(self.stored_len())
    }

    /// The next entry of the tree in key order.
    pub(crate) fn next(self) -> Option<EntryView<'a, K>> {
        // SAFETY: the entry is linked into tree 0 of the tree borrowed for `'a`, which nobody
        // changes meanwhile (that takes `&mut Tree`).
        let next = unsafe { bindings::rb_next(node_of(self.entry.h, WRITERS).as_ptr()) };
        // SAFETY: `next` is a node of the same tree.
        NonNull::new(next).map(|n| unsafe { EntryView::of(n) })
    }
}

/// What a tree and its readers share: the two trees' roots and the count
/// that tells readers which one to search.
pub(crate) struct Latch {
    roots: [UnsafeCell<bindings::rb_root>; 2],
    /// Even: readers search tree 0; odd: tree 1. Bumped twice per write.
    seq: AtomicU32,
}

// SAFETY: the roots are written only by the one `Tree` owning the latch (through its `&mut`),
// with the ordering lockless readers need (see `Latch::flip`, `publish_link`, and
// `lib/rbtree.c`, which writes links with WRITE_ONCE for lockless lookups); readers only load
// them, with volatile loads. The entries they lead to are shared the same way.
unsafe impl Send for Latch {}
// SAFETY: as for `Send`.
unsafe impl Sync for Latch {}

impl Latch {
    fn root(&self, tree: usize) -> *mut bindings::rb_root {
        self.roots[tree].get()
    }

    /// `raw_write_seqcount_latch`: moves readers to the other tree. The
    /// changes before are seen by any reader that sees the new count; the
    /// new count is seen by any reader that sees a change made after.
    fn flip(&self) {
        fence(MemOrder::Release);
        let seq = self.seq.load(MemOrder::Relaxed);
        self.seq.store(seq.wrapping_add(1), MemOrder::Relaxed);
        fence(MemOrder::Release);
    }
}

/// Stores `node` into the child link (or root) at `link` so that a
/// lockless reader that loads it sees `node`'s own links as written
/// before (`rcu_assign_pointer`).
///
/// # Safety
///
/// `link` is a link of a tree only the caller writes, and `node` is fully
/// linked for that tree but for this store.
unsafe fn publish_link(link: *mut *mut bindings::rb_node, node: *mut bindings::rb_node) {
    fence(MemOrder::Release);
    // SAFETY: `link` is valid and ours to write (caller); volatile, as WRITE_ONCE.
    unsafe { ptr::write_volatile(link, node) };
}

/// Gives up a tree's reference on every entry of the detached tree under
/// `root` (tree `tree`'s links).
///
/// # Safety
///
/// `root` is the root node of a tree of `tree`'s links, taken out of its
/// [`Tree`] (no root leads to it), which holds a reference on each of its
/// entries that the caller gives up.
unsafe fn release_all<K: EntryKind>(root: *mut bindings::rb_node, tree: usize) {
    let root = bindings::rb_root { rb_node: root };
    // Postorder: children before their parent, so releasing an entry never
    // frees a node the walk still has to read (and a free waits for a grace
    // period anyway).
    // SAFETY: a tree of live entries (caller).
    let mut node = unsafe { bindings::rb_first_postorder(&root) };
    while let Some(n) = NonNull::new(node) {
        // SAFETY: `n` is linked and alive; its postorder successor, found before `n` may be
        // released, reads only `n`'s parent and nodes not yet released.
        node = unsafe { bindings::rb_next_postorder(n.as_ptr()) };
        // SAFETY: the tree's reference on the entry at `n`, given up (caller): nothing will
        // read its links in this tree again.
        unsafe { release::<K>(entry_of(n, tree)) };
    }
}

/// The writers' side of a tree of entries in [`EntryKind::key_order`], at
/// most one per key; used under the writers' lock (`&mut`). It owns a
/// reference on each of its entries per tree linking it, released when it
/// is dropped. Changes are made in tree 0 and reach readers at
/// [`Tree::publish`].
pub(crate) struct Tree<K: EntryKind> {
    latch: Arc<Latch>,
    /// The entries changed in tree 0 since the last publish, each holding
    /// a reference, linked through their `pending` field.
    pending: Option<NonNull<Header<K::Meta>>>,
    /// Readers are on tree 1 while tree 0 changes (an odd count).
    writing: bool,
    /// Tree 1 is to be rebuilt whole from tree 0 (after a take or restore).
    rebuild: bool,
    _kind: PhantomData<K>,
}

// SAFETY: the tree owns references on its entries, whose shared fields are immutable or
// atomic (`Meta` is `Send + Sync`); its nodes and pending list are changed only through
// `&mut Tree`, so it may move to another thread.
unsafe impl<K: EntryKind> Send for Tree<K> {}

/// The left child of `node` for `Less`, else the right one.
///
/// # Safety
///
/// `node` is a node of a tree that nobody changes meanwhile.
unsafe fn child(node: NonNull<bindings::rb_node>, ord: Ordering) -> *mut bindings::rb_node {
    // SAFETY: a valid node (caller) whose links are not being written.
    unsafe {
        if ord == Ordering::Less {
            (*node.as_ptr()).rb_left
        } else {
            (*node.as_ptr()).rb_right
        }
    }
}

/// Where one descent of a tree ended: at the key's entry, or at the empty
/// link (the given side of the given node, or the root) where it belongs.
type Descent<M> =
    core::result::Result<NonNull<Header<M>>, (Option<NonNull<bindings::rb_node>>, Ordering)>;

impl<K: EntryKind> Tree<K> {
    /// An empty tree.
    pub(crate) fn new() -> Result<Self> {
        let empty = || {
            UnsafeCell::new(bindings::rb_root {
                rb_node: ptr::null_mut(),
            })
        };
        let latch = Latch {
            roots: [empty(), empty()],
            seq: AtomicU32::new(0),
        };
        Ok(Tree {
            latch: Arc::new(latch, GFP_KERNEL)?,
            pending: None,
            writing: false,
            rebuild: false,
            _kind: PhantomData,
        })
    }

    /// The readers' side of this tree.
    pub(crate) fn reader(&self) -> Reader<K> {
        Reader {
            latch: self.latch.clone(),
            _kind: PhantomData,
        }
    }

    fn root(&self, tree: usize) -> *mut bindings::rb_root {
        self.latch.root(tree)
    }

    /// What tells this tree from others: its latch's address.
    fn id(&self) -> *const Latch {
        &*self.latch
    }

    /// Starts a write, if none is started: readers move to tree 1, which
    /// stays as the last publish left it, so tree 0 may change. Out of line
    /// (like `queue` and `release`): every change of every write calls it,
    /// and one copy keeps the module small.
    #[inline(never)]
    fn begin(&mut self) {
        if !self.writing {
            self.writing = true;
            self.latch.flip();
        }
    }

    /// Puts the entry at `h` on the pending list (with a reference), unless
    /// it is on it.
    #[inline(never)]
    fn queue(&mut self, h: NonNull<Header<K::Meta>>) {
        // SAFETY: the entry is live (the caller just changed its link in tree 0 and holds it
        // through the tree or a `Detached`); only this tree reads or writes `pending`.
        unsafe {
            if !(*h.as_ptr()).pending.is_null() {
                return;
            }
            (*h.as_ptr()).refcount.inc();
            // The last entry of the list points to itself.
            (*h.as_ptr()).pending = self.pending.unwrap_or(h).as_ptr();
        }
        self.pending = Some(h);
    }

    /// Takes the first entry off the pending list, with its reference.
    fn unqueue(&mut self) -> Option<NonNull<Header<K::Meta>>> {
        let h = self.pending?;
        // SAFETY: an entry on the list is live (the list holds a reference); only this tree
        // reads or writes `pending`.
        let next = unsafe { core::mem::replace(&mut (*h.as_ptr()).pending, ptr::null_mut()) };
        self.pending = if next == h.as_ptr() {
            None
        } else {
            NonNull::new(next)
        };
        Some(h)
    }

    /// Makes the write so far visible to readers, all at once: moves them
    /// to tree 0 and brings tree 1 to the same state, so that the next
    /// write can send them there. The references the write's pending list
    /// held become tree 1's links or are dropped (see the module's doc on
    /// when that frees an entry).
    pub(crate) fn publish(&mut self) {
        if !self.writing {
            return;
        }
        self.latch.flip();
        if self.rebuild {
            self.rebuild_copy();
        }
        while let Some(h) = self.unqueue() {
            if !self.rebuild {
                // SAFETY: the list's reference keeps the entry alive until released below; it
                // was linked, so it is no `NewEntry`.
                let key = unsafe { Live::<K>::new(h) }.data().0;
                // SAFETY: `h` came off the pending list with the list's reference.
                if unsafe { self.sync(key, h) } {
                    continue;
                }
            }
            // SAFETY: the pending list's reference, given up; this is not a link.
            unsafe { release::<K>(h) };
        }
        self.rebuild = false;
        self.writing = false;
    }

    /// One descent of tree `tree` towards `key`. Only the writer descends
    /// this way (nobody else changes the trees meanwhile).
    fn descend_in(&self, tree: usize, key: &[u8]) -> Descent<K::Meta> {
        // SAFETY: the root of a tree only we change, read through `&self`.
        let mut node = unsafe { (*self.root(tree)).rb_node };
        let mut last = (None, Ordering::Equal);
        while let Some(n) = NonNull::new(node) {
            let h = entry_of::<K::Meta>(n, tree);
            // SAFETY: `n` is linked into tree `tree`, which holds a reference on its entry while
            // we borrow the tree; a linked entry is no `NewEntry`.
            let ord = K::key_order(key, unsafe { Live::<K>::new(h) }.data().0);
            if ord == Ordering::Equal {
                return Ok(h);
            }
            last = (Some(n), ord);
            // SAFETY: `n` is linked into a tree nobody changes while we borrow it.
            node = unsafe { child(n, ord) };
        }
        Err(last)
    }

    /// Makes tree 1's entry for `key` the one tree 0 has (or none). When
    /// that links `pending` into tree 1, the pending list's reference on it
    /// becomes tree 1's (no count taken and dropped) and this returns true;
    /// otherwise the caller still owns that reference.
    ///
    /// # Safety
    ///
    /// `pending` is live and the caller owns a reference on it (the pending
    /// list's), given to tree 1 when this returns true.
    unsafe fn sync(&mut self, key: &[u8], pending: NonNull<Header<K::Meta>>) -> bool {
        let want = self.descend_in(WRITERS, key).ok();
        let root = self.root(COPY);
        // Tree 1's reference on `h`: the caller's for `pending`, else a new one.
        let take_ref = |h: NonNull<Header<K::Meta>>| {
            if h != pending {
                // SAFETY: `h` is live: tree 0 links it.
                unsafe { (*h.as_ptr()).refcount.inc() };
            }
            h == pending
        };
        match (want, self.descend_in(COPY, key)) {
            (Some(h), Ok(old)) if h == old => false,
            (Some(h), Ok(old)) => {
                let given = take_ref(h);
                // SAFETY: `h` is live (tree 0 links it), has a reference for tree 1 (above), and
                // takes `old`'s place, which has its key (so `h`, keys being unique, is not in
                // tree 1); tree 1's reference on `old` is given up, its link not read again.
                unsafe {
                    bindings::rb_replace_node_rcu(
                        node_of(old, COPY).as_ptr(),
                        node_of(h, COPY).as_ptr(),
                        root,
                    );
                    release::<K>(old);
                }
                given
            }
            (Some(h), Err((parent, ord))) => {
                let given = take_ref(h);
                // SAFETY: `h` is live (tree 0 links it), holds a reference for tree 1 (above),
                // and is not in tree 1 (its key is not); the descent for its key ended at this
                // link.
                unsafe { self.link_in(COPY, parent, ord == Ordering::Less, h) };
                given
            }
            (None, Ok(old)) => {
                // SAFETY: `old` is linked into tree 1, which we change uniquely; tree 1's
                // reference is given up, its link no longer read.
                unsafe {
                    bindings::rb_erase(node_of(old, COPY).as_ptr(), root);
                    release::<K>(old);
                }
                false
            }
            (None, Err(_)) => false,
        }
    }

    /// Rebuilds tree 1 from tree 0: every entry, in order.
    fn rebuild_copy(&mut self) {
        // SAFETY: tree 1's root, which only we write; readers are on tree 0.
        let old =
            unsafe { ptr::replace(addr_of_mut!((*self.root(COPY)).rb_node), ptr::null_mut()) };
        // SAFETY: tree 1, taken out of the tree above; its references given up.
        unsafe { release_all::<K>(old, COPY) };
        let mut last = None;
        // SAFETY: tree 0's root, which only we change.
        let mut node = unsafe { bindings::rb_first(self.root(WRITERS)) };
        while let Some(n) = NonNull::new(node) {
            let h = entry_of::<K::Meta>(n, WRITERS);
            // SAFETY: `h` is live (tree 0 links it) and takes a reference for tree 1, which it
            // is not in (emptied above); it has the largest key linked so far, so it belongs
            // right of the last one linked (whose right link is empty: it is the largest).
            unsafe {
                (*h.as_ptr()).refcount.inc();
                self.link_in(COPY, last, false, h);
            }
            last = Some(node_of(h, COPY));
            // SAFETY: `n` is linked into tree 0, unchanged during the rebuild.
            node = unsafe { bindings::rb_next(n.as_ptr()) };
        }
    }

    /// Links the entry at `h` into tree `tree` as the left (`left`) or right
    /// child of `parent`, or as the root when there is none.
    ///
    /// # Safety
    ///
    /// That link is empty, and `h`'s key belongs there: a descent for it
    /// ended there and tree `tree` has not changed since; `h` is live, in no
    /// tree `tree`, and the caller has given tree `tree` a reference on it.
    unsafe fn link_in(
        &mut self,
        tree: usize,
        parent: Option<NonNull<bindings::rb_node>>,
        left: bool,
        h: NonNull<Header<K::Meta>>,
    ) {
        let new = node_of(h, tree).as_ptr();
        let root = self.root(tree);
        let parent_ptr = parent.map_or(ptr::null_mut(), NonNull::as_ptr);
        // SAFETY: that link of `parent` (or the root) is empty and `h`'s key belongs there
        // (caller); the node is in no tree `tree` (caller), so only we write it.
        unsafe {
            let link = match parent {
                None => addr_of_mut!((*root).rb_node),
                Some(_) if left => addr_of_mut!((*parent_ptr).rb_left),
                Some(_) => addr_of_mut!((*parent_ptr).rb_right),
            };
            // rb_link_node_rcu(new, parent, link), a static inline.
            (*new).__rb_parent_color = parent_ptr as usize;
            (*new).rb_left = ptr::null_mut();
            (*new).rb_right = ptr::null_mut();
            publish_link(link, new);
            bindings::rb_insert_color(new, root);
        }
    }

    /// Takes every entry out of tree 0, leaving it empty; tree 1 follows at
    /// the next publish.
    pub(crate) fn take(&mut self) -> Taken<K> {
        self.begin();
        self.rebuild = true;
        // SAFETY: tree 0's root, which only we write; readers are on tree 1.
        let root =
            unsafe { ptr::replace(addr_of_mut!((*self.root(WRITERS)).rb_node), ptr::null_mut()) };
        Taken {
            root,
            origin: self.id(),
            _kind: PhantomData,
        }
    }

    /// Swaps tree 0 with what `taken` holds (e.g. puts back what
    /// [`Tree::take`] took, once the tree is empty again); tree 1 follows at
    /// the next publish. A `taken` of another tree is left as it is.
    pub(crate) fn restore(&mut self, taken: &mut Taken<K>) {
        if !ptr::eq(taken.origin, self.id()) {
            return;
        }
        self.begin();
        self.rebuild = true;
        // SAFETY: tree 0's root, which only we write (readers are on tree 1); `taken.root` is
        // a tree of tree-0 links holding a reference on each entry, as tree 0 does.
        unsafe {
            let link = addr_of_mut!((*self.root(WRITERS)).rb_node);
            let ours = ptr::read(link);
            publish_link(link, taken.root);
            taken.root = ours;
        }
    }

    /// One descent towards `key` in tree 0: the entry with that key, or the
    /// last node visited and the side of it where `key` belongs (none: the
    /// root).
    #[allow(clippy::type_complexity)]
    fn descend(
        &self,
        key: &[u8],
    ) -> Result<EntryView<'_, K>, (Option<EntryView<'_, K>>, Ordering)> {
        // SAFETY: `view` is given only the descent's nodes, of tree 0, borrowed with the tree
        // for `'_`.
        let view = |n| unsafe { EntryView::of(n) };
        match self.descend_in(WRITERS, key) {
            Ok(h) => Ok(view(node_of(h, WRITERS))),
            Err((last, ord)) => Err((last.map(view), ord)),
        }
    }

    /// The first entry whose key is `key` or after it.
    pub(crate) fn lower_bound(&self, key: &[u8]) -> Option<EntryView<'_, K>> {
        match self.descend(key) {
            Ok(e) => Some(e),
            // `key` belongs left of the last node: that node is the first after it.
            Err((last, Ordering::Less)) => last,
            // Right of it: the first after `key` is the last node's successor.
            Err((last, _)) => last.and_then(EntryView::next),
        }
    }

    /// The entry with the smallest key.
    pub(crate) fn first(&self) -> Option<EntryView<'_, K>> {
        // SAFETY: tree 0's root, read through a shared borrow.
        let node = unsafe { bindings::rb_first(self.root(WRITERS)) };
        // SAFETY: `node` is a node of tree 0, borrowed for `'_`.
        NonNull::new(node).map(|n| unsafe { EntryView::of(n) })
    }

    /// Where `key` is, or would be linked: one descent.
    pub(crate) fn slot<'a, 'k>(&'a mut self, key: &'k [u8]) -> Slot<'a, 'k, K> {
        match self.descend_in(WRITERS, key) {
            Ok(h) => Slot::Occupied(Occupied {
                node: node_of(h, WRITERS),
                tree: self,
                key,
            }),
            Err((parent, ord)) => Slot::Vacant(Vacant {
                tree: self,
                parent,
                left: ord == Ordering::Less,
                key,
            }),
        }
    }
}

impl<K: EntryKind> Drop for Tree<K> {
    fn drop(&mut self) {
        // Readers may outlive the tree: they find both trees empty.
        // SAFETY: the roots, which only we write.
        let (zero, one) = unsafe {
            (
                ptr::replace(addr_of_mut!((*self.root(WRITERS)).rb_node), ptr::null_mut()),
                ptr::replace(addr_of_mut!((*self.root(COPY)).rb_node), ptr::null_mut()),
            )
        };
        // SAFETY: both trees, taken out above; their references given up.
        unsafe {
            release_all::<K>(zero, WRITERS);
            release_all::<K>(one, COPY);
        }
        while let Some(h) = self.unqueue() {
            // SAFETY: the pending list's reference, given up.
            unsafe { release::<K>(h) };
        }
    }
}

/// Entries taken out of tree 0 at once ([`Tree::take`]), with tree 0's
/// reference on each, released when this is dropped.
pub(crate) struct Taken<K: EntryKind> {
    /// The root node of a tree of tree-0 links.
    root: *mut bindings::rb_node,
    /// The tree they came out of (until it publishes, they may be in its
    /// tree 1): the one tree they can be put back into.
    origin: *const Latch,
    _kind: PhantomData<K>,
}

// SAFETY: as for `Tree`: references on entries whose shared fields are immutable or atomic.
unsafe impl<K: EntryKind> Send for Taken<K> {}

impl<K: EntryKind> Drop for Taken<K> {
    fn drop(&mut self) {
        // SAFETY: a tree of tree-0 links no root leads to any more, with a reference on each
        // entry, given up.
        unsafe { release_all::<K>(self.root, WRITERS) };
    }
}

/// The readers' side of a [`Tree`]: searched with no lock, under RCU.
pub(crate) struct Reader<K: EntryKind> {
    latch: Arc<Latch>,
    _kind: PhantomData<K>,
}

/// An entry a [`Reader`] found, readable while the RCU guard it was found
/// under is held.
pub(crate) struct RcuEntry<'g, K: EntryKind> {
    entry: Live<'g, K>,
}

/// How many nodes a search visits at most: more than any red-black tree
/// of addressable entries is high. A search of a tree being changed that
/// goes on longer starts again (the count will have moved).
const MAX_DEPTH: usize = 2 * usize::BITS as usize;

impl<K: EntryKind> Reader<K> {
    /// The entry with key `key` in the tree as some whole write (the last
    /// published) left it.
    pub(crate) fn get<'g>(&self, _rcu: &'g RcuGuard, key: &[u8]) -> Option<RcuEntry<'g, K>> {
        loop {
            // `raw_read_seqcount_latch`.
            let seq = self.latch.seq.load(MemOrder::Acquire);
            let found = self.search((seq & 1) as usize, key);
            // `raw_read_seqcount_latch_retry`.
            fence(MemOrder::Acquire);
            if self.latch.seq.load(MemOrder::Relaxed) != seq {
                continue;
            }
            return found.ok()?.map(|h| RcuEntry {
                // SAFETY: the entry was linked into a tree when the search reached it under the
                // guard; it is freed only a grace period after its last reference goes (after
                // it is unlinked), so it stays live for `'g`; a linked entry is no `NewEntry`.
                entry: unsafe { Live::new(h) },
            });
        }
    }

    /// Searches tree `tree` for `key` while a writer may be changing it:
    /// the entry, none, or `Err` when the search went on too long.
    fn search(
        &self,
        tree: usize,
        key: &[u8],
    ) -> core::result::Result<Option<NonNull<Header<K::Meta>>>, ()> {
        // SAFETY: the root is valid for the latch's life; volatile, as `rcu_dereference_raw`.
        let mut node = unsafe { ptr::read_volatile(addr_of!((*self.latch.root(tree)).rb_node)) };
        for _ in 0..MAX_DEPTH {
            let Some(n) = NonNull::new(node) else {
                return Ok(None);
            };
            let h = entry_of::<K::Meta>(n, tree);
            // SAFETY: `n` was reached from the root under RCU (the caller's guard), so its
            // entry is live until the guard is dropped (entries are freed a grace period
            // after they leave every tree); key and lengths never change once linked.
            let ord = K::key_order(key, unsafe { Live::<K>::new(h) }.data().0);
            node = match ord {
                Ordering::Equal => return Ok(Some(h)),
                // SAFETY: as above; the links may be changing, so they are read once,
                // volatile (`lib/rbtree.c` writes them with WRITE_ONCE for such readers).
                Ordering::Less => unsafe { ptr::read_volatile(addr_of!((*n.as_ptr()).rb_left)) },
                // SAFETY: as above.
                Ordering::Greater => unsafe {
                    ptr::read_volatile(addr_of!((*n.as_ptr()).rb_right))
                },
            };
        }
        Err(())
    }
}

impl<'g, K: EntryKind> RcuEntry<'g, K> {
    /// The value.
    pub(crate) fn value(&self) -> &'g [u8] {
        self.entry.data().1
    }

    /// The meta field.
    pub(crate) fn meta(&self) -> K::Meta {
        self.entry.meta()
    }

    /// A counted reference, to read the entry after the guard is dropped;
    /// none if the entry's last reference is already gone (a write took it
    /// out since it was found).
    pub(crate) fn to_ref(&self) -> Option<EntryRef<K>> {
        // SAFETY: live for `'g` (invariant).
        let refcount = unsafe { &(*self.entry.h.as_ptr()).refcount };
        refcount
            .inc_not_zero()
            .then_some(EntryRef { ptr: self.entry.h })
    }
}

/// Where a key is in tree 0, or would be linked.
pub(crate) enum Slot<'a, 'k, K: EntryKind> {
    /// The key is present.
    Occupied(Occupied<'a, 'k, K>),
    /// The key is absent.
    Vacant(Vacant<'a, 'k, K>),
}

/// A present key, found by [`Tree::slot`].
pub(crate) struct Occupied<'a, 'k, K: EntryKind> {
    tree: &'a mut Tree<K>,
    /// A node of `tree`'s tree 0, holding `key`.
    node: NonNull<bindings::rb_node>,
    key: &'k [u8],
}

impl<K: EntryKind> Occupied<'_, '_, K> {
    /// The entry present.
    pub(crate) fn entry(&self) -> EntryView<'_, K> {
        // SAFETY: `self.node` is linked into tree 0 of the tree borrowed with `self`.
        unsafe { EntryView::of(self.node) }
    }

    /// Puts `new` in the place of the present entry, which is returned;
    /// `Err(new)` if `new` has another key or came out of another tree. No
    /// descent, cannot fail otherwise.
    pub(crate) fn replace<L: Link<K>>(self, new: L) -> core::result::Result<Detached<K>, L> {
        if new.link_key() != self.key || !new.may_join(self.tree.id()) {
            return Err(new);
        }
        // SAFETY: `self.node` is linked into tree 0 of the uniquely borrowed tree and holds
        // `self.key`, which is `new`'s key.
        Ok(unsafe { self.tree.replace_node(self.node, new) })
    }

    /// Unlinks the present entry and returns tree 0's reference on it.
    pub(crate) fn remove(self) -> Detached<K> {
        let h = entry_of(self.node, WRITERS);
        self.tree.begin();
        // SAFETY: `self.node` is linked into tree 0 of `self.tree`, borrowed uniquely; readers
        // are on tree 1.
        unsafe { bindings::rb_erase(self.node.as_ptr(), self.tree.root(WRITERS)) };
        self.tree.queue(h);
        Detached {
            ptr: h,
            origin: self.tree.id(),
        }
    }
}

/// An absent key's place, found by [`Tree::slot`]: the left or right child
/// of `parent`, or the root when there is no parent.
pub(crate) struct Vacant<'a, 'k, K: EntryKind> {
    tree: &'a mut Tree<K>,
    parent: Option<NonNull<bindings::rb_node>>,
    left: bool,
    key: &'k [u8],
}

impl<K: EntryKind> Vacant<'_, '_, K> {
    /// Links `new` here; `Err(new)` if `new` has another key or came out of
    /// another tree. No descent, cannot fail otherwise.
    pub(crate) fn insert<L: Link<K>>(self, new: L) -> core::result::Result<(), L> {
        if new.link_key() != self.key || !new.may_join(self.tree.id()) {
            return Err(new);
        }
        // SAFETY: that link was empty when `Tree::slot` found it for `self.key`, the tree
        // borrowed uniquely since; `new` has that key.
        unsafe { self.tree.link_at(self.parent, self.left, new) };
        Ok(())
    }
}

impl<K: EntryKind> Tree<K> {
    /// Links `new` under its own key with one descent and no second key
    /// comparison. `check` first sees the entry that has that key, if any,
    /// and `new`'s meta field, which it may change (to carry something of
    /// the entry `new` replaces); it may refuse: then the tree is unchanged
    /// and `new` comes back with the error. Returns the entry `new`
    /// displaced.
    pub(crate) fn upsert<E>(
        &mut self,
        mut new: NewEntry<K>,
        check: impl FnOnce(Option<EntryView<'_, K>>, &mut K::Meta) -> core::result::Result<(), E>,
    ) -> core::result::Result<Option<Detached<K>>, (NewEntry<K>, E)> {
        let found = self.descend_in(WRITERS, new.link_key());
        let present = match found {
            // SAFETY: a found node is linked into tree 0, which nothing changes while `check`
            // runs (we hold it uniquely and `check` cannot reach it); `check` takes the view
            // for any lifetime, so it cannot keep it past the call.
            Ok(h) => Some(unsafe { EntryView::of(node_of(h, WRITERS)) }),
            Err(_) => None,
        };
        let mut meta = new.meta();
        if let Err(e) = check(present, &mut meta) {
            return Err((new, e));
        }
        new.set_meta(meta);
        match found {
            // SAFETY: `h` is linked into tree 0 (unchanged since the descent) and holds the
            // key `new` was looked up with: its own.
            Ok(h) => Ok(Some(unsafe { self.replace_node(node_of(h, WRITERS), new) })),
            Err((parent, ord)) => {
                // SAFETY: the descent for `new`'s key ended at this empty link, and the tree
                // is unchanged since.
                unsafe { self.link_at(parent, ord == Ordering::Less, new) };
                Ok(None)
            }
        }
    }

    /// Puts `new` in the place of the entry at `node` in tree 0, which is
    /// returned.
    ///
    /// # Safety
    ///
    /// `node` is linked into tree 0 and holds `new`'s key; `new` may join
    /// this tree ([`Link::may_join`]).
    unsafe fn replace_node<L: Link<K>>(
        &mut self,
        node: NonNull<bindings::rb_node>,
        new: L,
    ) -> Detached<K> {
        self.begin();
        let h = new.into_raw();
        // SAFETY: `node` is in tree 0 of this uniquely borrowed tree (caller); `new` (same key, in
        // no tree 0: `Link`) takes its place, published for lockless readers; the references swap:
        // the old entry's goes out with the `Detached`, `new`'s becomes tree 0's.
        unsafe {
            bindings::rb_replace_node_rcu(
                node.as_ptr(),
                node_of(h, WRITERS).as_ptr(),
                self.root(WRITERS),
            )
        };
        self.queue(h);
        Detached {
            ptr: entry_of(node, WRITERS),
            origin: self.id(),
        }
    }

    /// Links `new` into tree 0 as the left (`left`) or right child of
    /// `parent`, or as the root when there is none.
    ///
    /// # Safety
    ///
    /// That link is empty, and `new`'s key belongs there: a descent for it
    /// ended there and the tree has not changed since; `new` may join this
    /// tree ([`Link::may_join`]).
    unsafe fn link_at<L: Link<K>>(
        &mut self,
        parent: Option<NonNull<bindings::rb_node>>,
        left: bool,
        new: L,
    ) {
        self.begin();
        let h = new.into_raw();
        // SAFETY: the link is empty and `new`'s key belongs there (caller); `new` is in no
        // tree 0 (`Link`) and its reference becomes tree 0's.
        unsafe { self.link_in(WRITERS, parent, left, h) };
        self.queue(h);
    }
}
