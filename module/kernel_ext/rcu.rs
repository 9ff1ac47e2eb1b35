// SPDX-License-Identifier: GPL-2.0

//! An RCU read-side critical section as a guard. 6.12's kernel crate has no
//! RCU API and 7.3's `kernel::sync::rcu::Guard` is not in 6.12, so this
//! wraps `rcu_read_lock`/`rcu_read_unlock` (static inlines) through helpers.

use super::bindings as b;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::prelude::*;

/// Holds the RCU read lock until dropped: whatever an RCU reader reached
/// under it is not freed before the guard goes (frees wait for a grace
/// period). No sleeping while it is held, and so no waiting for a grace
/// period: dropping a [`Retired`] under a guard is a bug, which the debug
/// kernels' lockdep reports ("Illegal synchronize_rcu() in RCU read-side
/// critical section") and which would free what the guard's reads reached.
pub(crate) struct RcuGuard {
    /// Unlocked on the CPU and task that locked: neither `Send` nor `Sync`.
    _not_send: PhantomData<*mut ()>,
}

impl RcuGuard {
    /// Enters a read-side critical section.
    #[inline]
    pub(crate) fn new() -> Self {
        // SAFETY: `rcu_read_lock` may be called in any context; the guard's drop ends the
        // section on this task.
        unsafe { b::kext_rcu_read_lock() };
        RcuGuard {
            _not_send: PhantomData,
        }
    }
}

/// Proof of a read-side critical section the caller entered itself
/// (netfilter's, around every hook call): an [`RcuGuard`] that does not end
/// the section when dropped. It lives no longer than the call it is made in.
pub(crate) struct HeldRcu(core::mem::ManuallyDrop<RcuGuard>);

impl HeldRcu {
    /// # Safety
    ///
    /// The calling task is in an RCU read-side critical section that lasts
    /// at least as long as the returned value.
    #[inline]
    pub(crate) unsafe fn assume() -> Self {
        HeldRcu(core::mem::ManuallyDrop::new(RcuGuard {
            _not_send: PhantomData,
        }))
    }
}

impl core::ops::Deref for HeldRcu {
    type Target = RcuGuard;

    fn deref(&self) -> &RcuGuard {
        &self.0
    }
}

impl Drop for RcuGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `new` entered a section on this task (the guard cannot move to another one),
        // which this ends.
        unsafe { b::kext_rcu_read_unlock() };
    }
}

/// A pointer to a `T` that readers follow under RCU with no lock while a
/// writer replaces it (`rcu_dereference` / `rcu_assign_pointer`): readers
/// see the old value or the new one, whole. The value a replacement takes
/// out is freed only after a grace period, when no reader can still see it.
pub(crate) struct RcuBox<T> {
    /// A `KBox<T>` turned into a raw pointer, or null.
    ptr: AtomicPtr<T>,
}

// SAFETY: the box owns the `T` (moving the box moves ownership: `T: Send`) and readers on any
// thread get `&T` (`T: Sync`).
unsafe impl<T: Send + Sync> Send for RcuBox<T> {}
// SAFETY: as for `Send`; replacing is one atomic swap, so each value is taken out once.
unsafe impl<T: Send + Sync> Sync for RcuBox<T> {}

impl<T> RcuBox<T> {
    /// An empty pointer.
    pub(crate) const fn new() -> Self {
        RcuBox {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The value, readable while the guard is held.
    #[inline]
    pub(crate) fn get<'g>(&'g self, _rcu: &'g RcuGuard) -> Option<&'g T> {
        // Acquire: the value's contents, written before it was published, are seen.
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from `KBox::into_raw` in `replace`; it is freed only
        // after a grace period that starts once it is taken out (`Retired`), so after the
        // guard's section (which may not drop a `Retired` itself: see `RcuGuard`), or by `drop`
        // of the box, which the `'g` borrow of `self` rules out.
        unsafe { p.as_ref() }
    }

    /// Publishes `new` (or nothing) in the place of the current value, which
    /// is returned to be freed after a grace period.
    pub(crate) fn replace(&self, new: Option<KBox<T>>) -> Retired<T> {
        let new = new.map_or(core::ptr::null_mut(), KBox::into_raw);
        // AcqRel: publishes `new`'s contents (Release) and takes the old value's (Acquire).
        let old = self.ptr.swap(new, Ordering::AcqRel);
        // SAFETY: the swap took `old` out, so only this call owns it; it came from
        // `KBox::into_raw` (or is null).
        Retired(NonNull::new(old).map(|p| unsafe { KBox::from_raw(p.as_ptr()) }))
    }
}

impl<T> Drop for RcuBox<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: owned by the box; no reader holds it: a reader borrows the box for as
            // long as it reads (see `get`), and the box is being dropped.
            drop(unsafe { KBox::from_raw(p) });
        }
    }
}

/// A value taken out of an [`RcuBox`]: dropping it waits for a grace period
/// (`synchronize_rcu`, so process context only), then frees it.
pub(crate) struct Retired<T>(Option<KBox<T>>);

impl<T> Drop for Retired<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            // SAFETY: `synchronize_rcu` has no memory-safety requirement; it sleeps, so it is
            // for process context outside any RCU read-side section (see `RcuGuard`).
            unsafe { b::kext_synchronize_rcu() };
            drop(value);
        }
    }
}
