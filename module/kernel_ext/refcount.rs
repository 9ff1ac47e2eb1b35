// SPDX-License-Identifier: GPL-2.0

//! `refcount_t` with its hot operations inline. Rust reaches C's
//! `refcount_inc` and `refcount_dec_and_test` only through out-of-line
//! helpers (`rust_helper_refcount_*`), a call each; [`Refcount`] is the same
//! algorithm as `include/linux/refcount.h`, with the same checks: an
//! increment from 0 (a use after free), past `i32::MAX`, or a decrement
//! below 1 saturates the count and warns through the kernel's own
//! `refcount_warn_saturate`, so a bug leaks the object instead of freeing
//! it twice or while in use.

use core::sync::atomic::{fence, AtomicI32, Ordering};
use kernel::bindings;

/// A reference count laid out as a `refcount_t`.
#[repr(transparent)]
pub(crate) struct Refcount(AtomicI32);

impl Refcount {
    /// A count of `n` (at least 1: the creator's reference).
    pub(crate) const fn new(n: i32) -> Self {
        Refcount(AtomicI32::new(n))
    }

    /// `refcount_inc`: takes one more reference. Relaxed: taking a
    /// reference on an object already referenced orders nothing.
    #[inline]
    pub(crate) fn inc(&self) {
        let old = self.0.fetch_add(1, Ordering::Relaxed);
        if old == 0 {
            self.saturate(bindings::refcount_saturation_type_REFCOUNT_ADD_UAF);
        } else if old < 0 || old.wrapping_add(1) < 0 {
            self.saturate(bindings::refcount_saturation_type_REFCOUNT_ADD_OVF);
        }
    }

    /// `refcount_inc_not_zero`: takes one more reference unless the count
    /// is 0 (the object is on its way to being freed, which a reader that
    /// found it under RCU may see). Relaxed, as `refcount_inc_not_zero`.
    #[inline]
    #[must_use]
    pub(crate) fn inc_not_zero(&self) -> bool {
        let mut old = self.0.load(Ordering::Relaxed);
        loop {
            if old == 0 {
                return false;
            }
            match self.0.compare_exchange_weak(
                old,
                old.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        if old < 0 || old.wrapping_add(1) < 0 {
            self.saturate(bindings::refcount_saturation_type_REFCOUNT_ADD_NOT_ZERO_OVF);
        }
        true
    }

    /// `refcount_dec_and_test`: drops one reference; true when it was the
    /// last, with every earlier holder's accesses ordered before the
    /// caller's (release, then acquire for the last, as `Arc` does it).
    #[inline]
    #[must_use]
    pub(crate) fn dec_and_test(&self) -> bool {
        let old = self.0.fetch_sub(1, Ordering::Release);
        if old == 1 {
            fence(Ordering::Acquire);
            return true;
        }
        if old <= 0 {
            self.saturate(bindings::refcount_saturation_type_REFCOUNT_SUB_UAF);
        }
        false
    }

    #[cold]
    fn saturate(&self, kind: bindings::refcount_saturation_type) {
        // SAFETY: `Refcount` is a transparent `AtomicI32`, laid out as the `int` inside
        // `refcount_t` (`struct { atomic_t refs; }`, `atomic_t` being `struct { int counter; }`);
        // `refcount_warn_saturate` writes it with `atomic_set`, an atomic store like ours.
        unsafe { bindings::refcount_warn_saturate(self.0.as_ptr().cast(), kind) };
    }
}
