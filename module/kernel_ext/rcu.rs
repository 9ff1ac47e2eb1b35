// SPDX-License-Identifier: GPL-2.0

//! An RCU read-side critical section as a guard. 6.12's kernel crate has no
//! RCU API and 7.3's `kernel::sync::rcu::Guard` is not in 6.12, so this
//! wraps `rcu_read_lock`/`rcu_read_unlock` (static inlines) through helpers.

use super::bindings as b;
use core::marker::PhantomData;

/// Holds the RCU read lock until dropped: whatever an RCU reader reached
/// under it is not freed before the guard goes (frees wait for a grace
/// period). No sleeping while it is held.
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

impl Drop for RcuGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `new` entered a section on this task (the guard cannot move to another one),
        // which this ends.
        unsafe { b::kext_rcu_read_unlock() };
    }
}
