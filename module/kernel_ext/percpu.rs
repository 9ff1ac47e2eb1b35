// SPDX-License-Identifier: GPL-2.0

//! Counters with a copy per CPU: a count is a plain add to the running
//! CPU's copy (`this_cpu_add`: no shared cache line, no atomic
//! read-modify-write, safe in any context), a read sums the copies. The
//! kernel crate has no per-CPU API in 6.12 or 7.3, so this wraps
//! `__alloc_percpu_gfp`, `this_cpu_add` and `per_cpu_ptr` through helpers.

use super::bindings as b;
use core::ptr::NonNull;
use kernel::error::{code::ENOMEM, Result};

/// `N` u64 counters per CPU, zeroed at allocation, freed on drop.
pub(crate) struct PerCpuCounters<const N: usize> {
    /// A `u64 __percpu *` to `N` counters; never dereferenced as a plain pointer.
    counters: NonNull<u64>,
}

// SAFETY: the counters are only changed with `this_cpu_add`, which is safe against preemption
// and interrupts on the CPU it runs on, and read with `READ_ONCE` (a racing add makes a sum
// stale, never unsound); no method hands out a reference to them.
unsafe impl<const N: usize> Send for PerCpuCounters<N> {}
// SAFETY: as for `Send`: any number of CPUs may add and read at once.
unsafe impl<const N: usize> Sync for PerCpuCounters<N> {}

impl<const N: usize> PerCpuCounters<N> {
    /// Allocates the counters (charged to the caller's memory cgroup).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: plain allocation; a null return is handled.
        let p = unsafe { b::kext_alloc_percpu_u64(N) };
        Ok(PerCpuCounters {
            counters: NonNull::new(p).ok_or(ENOMEM)?,
        })
    }

    /// The memory the counters take: `N` u64s on every possible CPU.
    pub(crate) fn footprint() -> usize {
        // SAFETY: reads a count fixed at boot.
        let cpus = unsafe { b::kext_num_possible_cpus() };
        N * core::mem::size_of::<u64>() * cpus as usize
    }

    /// Adds `n` to counter `index` on this CPU (wrapping); an `index` past
    /// `N` counts nothing.
    #[inline]
    pub(crate) fn add(&self, index: usize, n: u64) {
        if index < N {
            // SAFETY: `counters` holds `N` per-CPU counters until drop, and `index < N`.
            unsafe { b::kext_percpu_u64_add(self.counters.as_ptr(), index, n) };
        }
    }

    /// Counter `index` summed over every possible CPU (wrapping); 0 for an
    /// `index` past `N`. Adds that run meanwhile may or may not be in it.
    pub(crate) fn sum(&self, index: usize) -> u64 {
        if index >= N {
            return 0;
        }
        // SAFETY: as in `add`.
        unsafe { b::kext_percpu_u64_sum(self.counters.as_ptr(), index) }
    }
}

impl<const N: usize> Drop for PerCpuCounters<N> {
    fn drop(&mut self) {
        // SAFETY: allocated by `kext_alloc_percpu_u64`, freed once; nothing adds after drop
        // (adding needs a borrow).
        unsafe { b::kext_free_percpu(self.counters.as_ptr().cast()) };
    }
}
