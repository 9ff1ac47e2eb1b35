// SPDX-License-Identifier: GPL-2.0

//! A value with a delayed work item that runs a function on it. 6.12's
//! kernel crate has no delayed work and 7.3's `DelayedWork` cannot be
//! cancelled, which a value that may be freed while its work is pending
//! needs; so this wraps `struct delayed_work` through helpers
//! (`INIT_DELAYED_WORK` and `mod_delayed_work` are macros and inlines).

use super::bindings as b;
use core::ffi::c_ulong;
use core::mem::offset_of;
use core::ops::Deref;
use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

/// What a [`Delayed`] value does when its work runs.
pub(crate) trait DelayedRun: Send + Sync + Sized {
    /// Runs in process context (a workqueue worker; it may sleep), never
    /// twice at once for the same value, and never after the value's drop
    /// began. `this` may re-arm itself ([`Delayed::run_in`]).
    fn run(this: &Delayed<Self>);
}

/// `data` with a delayed work item that runs [`DelayedRun::run`] on it,
/// from the system's unbound workqueue, when armed.
///
/// # Invariants
///
/// `work` was initialised by [`Delayed::new`] to run [`Delayed::run_raw`]
/// of this `T`; `self` is pinned from then on, and its drop cancels the
/// work and waits for a run in progress before anything is freed.
#[pin_data(PinnedDrop)]
pub(crate) struct Delayed<T: DelayedRun> {
    #[pin]
    work: Opaque<bindings::delayed_work>,
    #[pin]
    data: T,
}

// SAFETY: the work item is only touched through the workqueue functions, which take its
// owner's locks; `data` is `Send` and `Sync` (`DelayedRun`).
unsafe impl<T: DelayedRun> Send for Delayed<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: DelayedRun> Sync for Delayed<T> {}

impl<T: DelayedRun> Delayed<T> {
    /// `data`, with its work not armed.
    pub(crate) fn new<E: From<core::convert::Infallible>>(
        data: impl PinInit<T, E>,
    ) -> impl PinInit<Self, E> {
        try_pin_init!(Self {
            // SAFETY: `slot` is valid for a `delayed_work` and pinned with `self`; the helper
            // initialises it whole (`INIT_DELAYED_WORK`).
            work <- Opaque::ffi_init(|slot| unsafe {
                b::kext_init_delayed_work(slot, Some(Self::run_raw))
            }),
            data <- data,
        }? E)
    }

    /// Arms the work to run `delay` jiffies from now (0: at once), or moves
    /// a pending run there; a run in progress is followed by another.
    pub(crate) fn run_in(&self, delay: u64) {
        let delay = c_ulong::try_from(delay).unwrap_or(c_ulong::MAX);
        // SAFETY: `work` was initialised by `new` and is pinned (invariant); arming it from any
        // context is allowed (`mod_delayed_work` takes the work's own lock).
        unsafe { b::kext_mod_delayed_work(self.work.get(), delay) };
    }

    /// The work function of every `Delayed<T>`.
    ///
    /// # Safety
    ///
    /// Called by the workqueue for a work item initialised by [`Delayed::new`].
    unsafe extern "C" fn run_raw(work: *mut bindings::work_struct) {
        // `work` is the first field of a `delayed_work`, itself the `work` field of a `Delayed`
        // (type invariant: only `new` installs this function). `Opaque` is transparent.
        let dwork = work.cast::<bindings::delayed_work>().cast::<u8>();
        // SAFETY: `dwork` lies `offset_of!(Self, work)` bytes into a `Delayed<T>`, so stepping
        // back stays inside it.
        let this = unsafe { dwork.sub(offset_of!(Self, work)) }.cast::<Self>();
        // SAFETY: the `Delayed` is live and pinned while its work can run: its drop cancels the
        // work and waits for this run to end before anything is freed (type invariant).
        T::run(unsafe { &*this });
    }
}

impl<T: DelayedRun> Deref for Delayed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

#[pinned_drop]
impl<T: DelayedRun> PinnedDrop for Delayed<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `work` was initialised by `new` (invariant); cancelling waits for a run in
        // progress and keeps one that re-arms itself from running again, so `run_raw` never
        // sees `self` after this returns.
        unsafe { bindings::cancel_delayed_work_sync(self.work.get()) };
    }
}

/// Gives other tasks the CPU if one is waiting (`cond_resched`), between
/// the steps of a long walk in process context.
pub(crate) fn cond_resched() {
    // SAFETY: called in process context with no lock held (callers' duty: a spinning lock
    // held here would be a bug, which the debug kernels report; a mutex is allowed).
    unsafe { b::kext_cond_resched() };
}
