// SPDX-License-Identifier: GPL-2.0

//! nfkv's entries: the generic tree of [`crate::kernel_ext::rbtree`] with
//! keys in bytewise order and a version in each entry's meta field. Safe
//! Rust only.

use crate::codec;
use crate::kernel_ext::rbtree::{self, EntryKind};
use core::cmp::Ordering;

/// The kind of nfkv's entries.
pub(crate) struct Versioned;

impl EntryKind for Versioned {
    /// The entry's version.
    type Meta = u64;

    #[inline]
    fn key_order(a: &[u8], b: &[u8]) -> Ordering {
        codec::key_order(a, b)
    }
}

pub(crate) type Tree = rbtree::Tree<Versioned>;
pub(crate) type Reader = rbtree::Reader<Versioned>;
pub(crate) type Taken = rbtree::Taken<Versioned>;
pub(crate) type NewEntry = rbtree::NewEntry<Versioned>;
pub(crate) type Detached = rbtree::Detached<Versioned>;
pub(crate) type EntryView<'a> = rbtree::EntryView<'a, Versioned>;
pub(crate) type Slot<'a, 'k> = rbtree::Slot<'a, 'k, Versioned>;
