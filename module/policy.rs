// SPDX-License-Identifier: GPL-2.0

//! What a table may cost and where its versions start. Safe Rust only.

use crate::kernel_ext::clock;
use crate::kernel_ext::pernet::NetRef;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// The refusal of a write that does not fit in its shared budget.
pub(crate) fn edquot() -> Error {
    Error::from_errno(-(kernel::bindings::EDQUOT as i32))
}

/// Memory shared by a group of tables: charged before a write grows them,
/// uncharged when entries go. Each entry is charged what its allocation
/// takes (its size class), so the group holds no more than the limit.
pub(crate) struct SharedBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

/// The budget of every table whose namespace is owned by a non-initial
/// user namespace (anything an unprivileged user can create).
pub(crate) static USERNS_BUDGET: SharedBudget = SharedBudget {
    used: AtomicU64::new(0),
    limit: AtomicU64::new(0),
};

impl SharedBudget {
    /// Sets the limit (at module load, before any table exists).
    pub(crate) fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Takes `n` bytes, or fails with `EDQUOT` having taken nothing.
    pub(crate) fn try_charge(&self, n: u64) -> Result {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .map(|_| ())
            .map_err(|_| edquot())
    }

    /// Bytes charged now, by every table of the group.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Gives back `n` bytes taken by [`SharedBudget::try_charge`].
    pub(crate) fn uncharge(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The shared budget a new table of namespace `net` is charged to, if any:
/// the initial user namespace's namespaces are never charged, so no
/// unprivileged user can starve them.
pub(crate) fn budget_for(net: NetRef<'_>) -> Option<&'static SharedBudget> {
    if net.owned_by_init_user_ns() {
        None
    } else {
        Some(&USERNS_BUDGET)
    }
}

/// The highest generation any table of this module reached before it was
/// freed.
static RETIRED_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Where a new table's counter starts: above every version a table freed
/// since the module was loaded gave out, and above the wall clock in ns
/// since the epoch, which carries the guarantee across rmmod/insmod: an old
/// table could only have got past it by averaging more than one write per
/// nanosecond of its life (or by the clock stepping back further than the
/// time between the two loads).
pub(crate) fn first_generation() -> u64 {
    clock::real_ns().max(RETIRED_GENERATION.load(Ordering::Acquire).saturating_add(1))
}

/// Records the last generation of a table being freed.
pub(crate) fn retire_generation(generation: u64) {
    RETIRED_GENERATION.fetch_max(generation, Ordering::AcqRel);
}
