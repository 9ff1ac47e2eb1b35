// SPDX-License-Identifier: GPL-2.0

//! An intrusive red-black tree of byte-keyed, reference-counted entries over
//! the kernel's `rb_node` (`lib/rbtree.c`): an entry is ONE allocation
//! holding the tree node, a reference count, the key and value lengths, a
//! small fixed-size field of the user's ([`EntryKind::Meta`], e.g. a
//! version), the key and the value, sized to what it holds. Keys sort by
//! [`EntryKind::key_order`].
//!
//! The types keep the tree's invariants, so that their users are safe Rust:
//!
//! - [`NewEntry`]: an entry being built, owned by nobody else and in no tree;
//!   the only form whose [`EntryKind::Meta`] can be set.
//! - [`Tree`]: keeps its entries in key order without duplicates,
//!   and owns one reference on each.
//! - [`Detached`]: the tree's reference on an entry just taken out of a tree;
//!   it can be linked again (undo) or dropped.
//! - [`EntryRef`]: a counted reference for reading an entry with no lock
//!   held; an entry is immutable once linked, so readers need nothing else.
//! - [`EntryView`]: an entry of a tree, borrowed with the tree; also the
//!   tree's cursor ([`EntryView::next`]).
//! - [`Slot`] ([`Occupied`], [`Vacant`]): where a key is or would be, found
//!   by one descent, so a write walks the tree once.
//!
//! At most one of a tree link, a [`NewEntry`] and a [`Detached`] exists per
//! entry at any time, so an entry is never in two trees. An entry is freed
//! when its last reference goes; nothing here allocates or frees except
//! [`NewEntry::new`] and the drop of [`NewEntry`], [`Detached`], [`EntryRef`]
//! and [`Tree`], so a user that drops those after unlocking never allocates
//! or frees under its lock.

use super::bindings as b;
use super::bytes::{ByteSource, Bytes};
use super::refcount::Refcount;
use core::cmp::Ordering;
use core::marker::PhantomData;
use core::mem::{size_of, ManuallyDrop, MaybeUninit};
use core::ptr::{self, addr_of, addr_of_mut, NonNull};
use kernel::bindings;
use kernel::prelude::*;

/// What the entries of a [`Tree`] carry besides key and value, and how their
/// keys sort.
pub(crate) trait EntryKind: 'static {
    /// A small fixed-size field of every entry (e.g. a version): set while
    /// the entry is a [`NewEntry`], read-only once it is linked.
    type Meta: Copy + Default + Send + Sync;

    /// The order of keys in a tree (e.g. bytewise).
    fn key_order(a: &[u8], b: &[u8]) -> Ordering;
}

/// The start of every entry; the key and then the value follow it. Only
/// this file reads or writes it (its fields are private).
#[repr(C)]
pub(crate) struct Header<M> {
    /// Linked into at most one [`Tree`] (only while that tree owns a
    /// reference); written only through the tree holding it.
    node: bindings::rb_node,
    /// References: the tree's while linked, one per [`NewEntry`],
    /// [`Detached`] or [`EntryRef`]. A `refcount_t` with its checks (a
    /// count gone wrong saturates and warns), taken and dropped inline.
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

/// Drops one reference on the entry at `h`, freeing it if that was the last.
///
/// # Safety
///
/// The caller owns one reference on the live entry at `h` and gives it up.
/// While an entry is linked into a tree, that tree holds a reference: so
/// either the caller is not it, or the caller is that tree being dropped,
/// which never reads the entry's node again.
unsafe fn release<K: EntryKind>(h: NonNull<Header<K::Meta>>) {
    // SAFETY: the entry is live and the caller's reference keeps it so until
    // this decrement.
    let refcount = unsafe { &(*h.as_ptr()).refcount };
    // Our uses of the entry happen before whoever frees it (the one that
    // takes the count to zero), which `dec_and_test` orders.
    if !refcount.dec_and_test() {
        return;
    }
    // SAFETY: that was the last reference, and no tree links the entry (the tree would hold
    // a reference).
    unsafe { free::<K>(h) };
}

/// Frees the entry at `h`.
///
/// # Safety
///
/// The entry is live, the caller holds its only reference, no tree links it,
/// and nothing reads it again.
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

/// The entry containing the tree node `node`.
fn entry_of<M>(node: NonNull<bindings::rb_node>) -> NonNull<Header<M>> {
    // `node` is the first field of the `#[repr(C)]` header.
    node.cast()
}

/// The tree node of the entry at `h`.
fn node_of<M>(h: NonNull<Header<M>>) -> NonNull<bindings::rb_node> {
    // `node` is the first field of the `#[repr(C)]` header.
    h.cast()
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
                node: bindings::rb_node::default(),
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

    fn live(&self) -> Live<'_, K> {
        // SAFETY: our reference keeps the entry alive as long as `self`, and
        // only `&mut self` writes its meta field.
        unsafe { Live::new(self.ptr) }
    }

    /// The key.
    pub(crate) fn key(&self) -> &[u8] {
        self.live().data().0
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

/// The reference a tree held on an entry it no longer links: the entry can
/// be linked again (into one tree), read, or dropped. Other references
/// ([`EntryRef`]) may exist, so the entry is read-only.
pub(crate) struct Detached<K: EntryKind> {
    ptr: NonNull<Header<K::Meta>>,
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
        // SAFETY: our reference; the entry is in no tree (we would be that
        // tree's reference).
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
/// the tree's, and which is in no tree now ([`NewEntry`] or [`Detached`]).
pub(crate) trait Link<K: EntryKind>: private::Sealed<K::Meta> {
    /// The entry's key.
    fn link_key(&self) -> &[u8];
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

    /// The meta field.
    pub(crate) fn meta(&self) -> K::Meta {
        self.live().meta()
    }
}

impl<K: EntryKind> Drop for EntryRef<K> {
    fn drop(&mut self) {
        // SAFETY: our own reference, which is never a tree's.
        unsafe { release::<K>(self.ptr) };
    }
}

/// An entry of a tree, borrowed with the tree (so it stays linked and alive).
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
    /// The entry of `node`, a node of a tree borrowed for `'a`.
    ///
    /// # Safety
    ///
    /// `node` is linked into a tree borrowed (shared or unique) for `'a`.
    unsafe fn of(node: NonNull<bindings::rb_node>) -> Self {
        EntryView {
            // SAFETY: the tree holds a reference on the entry for `'a` (caller), and a
            // linked entry is no `NewEntry`.
            entry: unsafe { Live::new(entry_of(node)) },
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

    /// A counted reference on this entry, to read it after the tree's lock
    /// is dropped. Allocates nothing.
    pub(crate) fn to_ref(self) -> EntryRef<K> {
        // SAFETY: the entry is alive: the tree holds a reference, so the count is at least
        // one and stays so while the tree is borrowed.
        let refcount = unsafe { &(*self.entry.h.as_ptr()).refcount };
        refcount.inc();
        EntryRef { ptr: self.entry.h }
    }

    /// The next entry of the tree in key order.
    pub(crate) fn next(self) -> Option<EntryView<'a, K>> {
        // SAFETY: the entry is linked into the tree borrowed for `'a`, which
        // nobody changes meanwhile (that takes `&mut Tree`).
        let next = unsafe { bindings::rb_next(addr_of!((*self.entry.h.as_ptr()).node)) };
        // SAFETY: `next` is a node of the same tree.
        NonNull::new(next).map(|n| unsafe { EntryView::of(n) })
    }
}

/// A tree of entries in [`EntryKind::key_order`], at most one per key. It
/// owns a reference on each of its entries, released when it is dropped.
pub(crate) struct Tree<K: EntryKind> {
    root: bindings::rb_root,
    _kind: PhantomData<K>,
}

// SAFETY: the tree owns references on its entries, whose shared fields are immutable or
// atomic (`Meta` is `Send + Sync`); its nodes are changed only through `&mut Tree`, so it may
// move to another thread.
unsafe impl<K: EntryKind> Send for Tree<K> {}

impl<K: EntryKind> Default for Tree<K> {
    fn default() -> Self {
        Tree::new()
    }
}

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

impl<K: EntryKind> Tree<K> {
    /// An empty tree.
    pub(crate) const fn new() -> Self {
        Tree {
            root: bindings::rb_root {
                rb_node: ptr::null_mut(),
            },
            _kind: PhantomData,
        }
    }

    /// Takes every entry out, leaving the tree empty.
    pub(crate) fn take(&mut self) -> Tree<K> {
        core::mem::take(self)
    }

    /// One descent towards `key`: the entry with that key, or the last node
    /// visited and the side of it where `key` belongs (none: the root).
    #[allow(clippy::type_complexity)]
    fn descend(
        &self,
        key: &[u8],
    ) -> Result<EntryView<'_, K>, (Option<EntryView<'_, K>>, Ordering)> {
        let mut node = self.root.rb_node;
        let mut last = (None, Ordering::Equal);
        while let Some(n) = NonNull::new(node) {
            // SAFETY: `n` is linked into this tree, borrowed for the call.
            let e = unsafe { EntryView::of(n) };
            let ord = K::key_order(key, e.key());
            if ord == Ordering::Equal {
                return Ok(e);
            }
            last = (Some(e), ord);
            // SAFETY: `n` is linked into this tree, borrowed for the call,
            // so its links stay as they are.
            node = unsafe { child(n, ord) };
        }
        Err(last)
    }

    /// The entry with key `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<EntryView<'_, K>> {
        self.descend(key).ok()
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
        // SAFETY: `root` is this tree's root, read through a shared borrow.
        let node = unsafe { bindings::rb_first(&self.root) };
        // SAFETY: `node` is a node of this tree, borrowed for `'_`.
        NonNull::new(node).map(|n| unsafe { EntryView::of(n) })
    }

    /// Where `key` is, or would be linked: one descent.
    pub(crate) fn slot<'a, 'k>(&'a mut self, key: &'k [u8]) -> Slot<'a, 'k, K> {
        let found = match self.descend(key) {
            Ok(e) => Ok(node_of(e.entry.h)),
            Err((parent, ord)) => Err((parent.map(|p| node_of(p.entry.h)), ord)),
        };
        match found {
            Ok(node) => Slot::Occupied(Occupied {
                tree: self,
                node,
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
        // Postorder: children before their parent, so releasing an entry
        // never frees a node the walk still has to read.
        // SAFETY: `root` is this tree's root, which we own uniquely.
        let mut node = unsafe { bindings::rb_first_postorder(&self.root) };
        while let Some(n) = NonNull::new(node) {
            // SAFETY: `n` is linked and alive; its postorder successor, found before `n` may
            // be freed, reads only `n`'s parent and nodes not yet released.
            node = unsafe { bindings::rb_next_postorder(n.as_ptr()) };
            // SAFETY: the tree's reference on the entry at `n`, given up: the
            // tree is going away, and nothing will read its links again.
            unsafe { release::<K>(entry_of(n)) };
        }
    }
}

/// Where a key is in a tree, or would be linked.
pub(crate) enum Slot<'a, 'k, K: EntryKind> {
    /// The key is present.
    Occupied(Occupied<'a, 'k, K>),
    /// The key is absent.
    Vacant(Vacant<'a, 'k, K>),
}

/// A present key, found by [`Tree::slot`].
pub(crate) struct Occupied<'a, 'k, K: EntryKind> {
    tree: &'a mut Tree<K>,
    /// A node of `tree`, holding `key`.
    node: NonNull<bindings::rb_node>,
    key: &'k [u8],
}

impl<K: EntryKind> Occupied<'_, '_, K> {
    /// The entry present.
    pub(crate) fn entry(&self) -> EntryView<'_, K> {
        // SAFETY: `self.node` is linked into the tree borrowed with `self`.
        unsafe { EntryView::of(self.node) }
    }

    /// The tree's reference on the present entry, once it is unlinked.
    fn detached(&self) -> Detached<K> {
        Detached {
            ptr: entry_of(self.node),
        }
    }

    /// Puts `new` in the place of the present entry, which is returned;
    /// `Err(new)` if `new` has another key. No descent, cannot fail
    /// otherwise.
    pub(crate) fn replace<L: Link<K>>(self, new: L) -> core::result::Result<Detached<K>, L> {
        if new.link_key() != self.key {
            return Err(new);
        }
        // SAFETY: `self.node` is linked into the uniquely borrowed tree and holds `self.key`,
        // which is `new`'s key.
        Ok(unsafe { self.tree.replace_node(self.node, new) })
    }

    /// Unlinks the present entry and returns the tree's reference on it.
    pub(crate) fn remove(self) -> Detached<K> {
        // SAFETY: `self.node` is linked into `self.tree`, borrowed uniquely.
        unsafe { bindings::rb_erase(self.node.as_ptr(), &mut self.tree.root) };
        self.detached()
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
    /// Links `new` here; `Err(new)` if `new` has another key. No descent,
    /// cannot fail otherwise.
    pub(crate) fn insert<L: Link<K>>(self, new: L) -> core::result::Result<(), L> {
        if new.link_key() != self.key {
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
    /// and may refuse: then the tree is unchanged and `new` comes back with
    /// the error. Returns the entry `new` displaced.
    pub(crate) fn upsert<L: Link<K>, E>(
        &mut self,
        new: L,
        check: impl FnOnce(Option<EntryView<'_, K>>) -> core::result::Result<(), E>,
    ) -> core::result::Result<Option<Detached<K>>, (L, E)> {
        let found = match self.descend(new.link_key()) {
            Ok(e) => Ok(node_of(e.entry.h)),
            Err((parent, ord)) => Err((parent.map(|p| node_of(p.entry.h)), ord)),
        };
        // SAFETY: a found node is linked into this tree, which nothing changes while `check`
        // runs (we hold it uniquely and `check` cannot reach it); `check` takes the view for
        // any lifetime, so it cannot keep it past the call.
        let present = found.ok().map(|node| unsafe { EntryView::of(node) });
        if let Err(e) = check(present) {
            return Err((new, e));
        }
        match found {
            // SAFETY: `node` is linked into this tree (unchanged since the descent) and holds
            // the key `new` was looked up with: its own.
            Ok(node) => Ok(Some(unsafe { self.replace_node(node, new) })),
            Err((parent, ord)) => {
                // SAFETY: the descent for `new`'s key ended at this empty link, and the tree
                // is unchanged since.
                unsafe { self.link_at(parent, ord == Ordering::Less, new) };
                Ok(None)
            }
        }
    }

    /// Puts `new` in the place of the entry at `node`, which is returned.
    ///
    /// # Safety
    ///
    /// `node` is linked into this tree and holds `new`'s key.
    unsafe fn replace_node<L: Link<K>>(
        &mut self,
        node: NonNull<bindings::rb_node>,
        new: L,
    ) -> Detached<K> {
        let new = node_of(new.into_raw()).as_ptr();
        // SAFETY: `node` is linked into this uniquely borrowed tree (caller); `new` (same key,
        // in no tree: `Link`) takes its place and colour; the tree's references swap: the old
        // entry's goes out with the `Detached`, `new`'s becomes the tree's.
        unsafe { bindings::rb_replace_node(node.as_ptr(), new, &mut self.root) };
        Detached {
            ptr: entry_of(node),
        }
    }

    /// Links `new` as the left (`left`) or right child of `parent`, or as the
    /// root when there is none.
    ///
    /// # Safety
    ///
    /// That link is empty, and `new`'s key belongs there: a descent for it
    /// ended there and the tree has not changed since.
    unsafe fn link_at<L: Link<K>>(
        &mut self,
        parent: Option<NonNull<bindings::rb_node>>,
        left: bool,
        new: L,
    ) {
        let new = node_of(new.into_raw()).as_ptr();
        let root: *mut bindings::rb_root = &mut self.root;
        let parent_ptr = parent.map_or(ptr::null_mut(), NonNull::as_ptr);
        // SAFETY: that link of `parent` (or the root) is empty and `new`'s key belongs there
        // (caller); `new` is in no tree (`Link`); its reference becomes the tree's.
        unsafe {
            let link = match parent {
                None => addr_of_mut!((*root).rb_node),
                Some(_) if left => addr_of_mut!((*parent_ptr).rb_left),
                Some(_) => addr_of_mut!((*parent_ptr).rb_right),
            };
            // rb_link_node(new, parent, link), a static inline.
            (*new).__rb_parent_color = parent_ptr as usize;
            (*new).rb_left = ptr::null_mut();
            (*new).rb_right = ptr::null_mut();
            *link = new;
            bindings::rb_insert_color(new, root);
        }
    }
}
