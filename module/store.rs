// SPDX-License-Identifier: GPL-2.0

//! nfkv's entries: the generic tree of [`crate::kernel_ext::rbtree`] with
//! keys in bytewise order and, in each entry's meta field, its version and
//! when it expires. Safe Rust only.

use crate::codec;
use crate::kernel_ext::clock;
use crate::kernel_ext::rbtree::{self, EntryKind};
use core::cmp::Ordering;

/// The kind of nfkv's entries.
pub(crate) struct Versioned;

/// What an entry carries besides its key and value.
#[derive(Clone, Copy, Default)]
pub(crate) struct Meta {
    /// The entry's version.
    pub(crate) version: u64,
    /// The jiffies64 count at which it expires; 0: never.
    pub(crate) expires: u64,
}

impl Meta {
    /// Whether the entry has expired at jiffies64 `now`.
    #[inline]
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires != 0 && now >= self.expires
    }

    /// Whether the entry has expired now (reads the clock only for an
    /// entry that expires at all).
    #[inline]
    pub(crate) fn expired_now(&self) -> bool {
        self.expires != 0 && clock::jiffies64() >= self.expires
    }

    /// What `struct nfkv_value.ttl_ms` says of the entry now, or `None`
    /// once it has expired (reads the clock only for an entry that expires
    /// at all).
    #[inline]
    pub(crate) fn time_left(&self) -> Option<u32> {
        if self.expires == 0 {
            return Some(0);
        }
        let now = clock::jiffies64();
        (!self.expired(now)).then(|| self.ttl_ms(now))
    }

    /// Milliseconds the entry has left at jiffies64 `now`, at least 1
    /// while it lives (`struct nfkv_value.ttl_ms`); 0 for an entry that
    /// never expires. Part of the current jiffy has gone by: the whole
    /// jiffies left after it are what it surely has, never more than its
    /// lifetime.
    pub(crate) fn ttl_ms(&self, now: u64) -> u32 {
        if self.expires == 0 {
            return 0;
        }
        let after_this_jiffy = self.expires.saturating_sub(now).saturating_sub(1);
        let left = clock::jiffies_to_ms(after_this_jiffy);
        u32::try_from(left).unwrap_or(u32::MAX).max(1)
    }
}

impl EntryKind for Versioned {
    type Meta = Meta;

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
