// SPDX-License-Identifier: GPL-2.0

//! The one shape every kernel registration here takes: a C ops structure
//! that the kernel links into its lists, kept at a stable heap address while
//! registered and unregistered on drop (RAII).

use core::ffi::c_int;
use core::marker::PhantomData;
use kernel::error::to_result;
use kernel::prelude::*;
use kernel::types::Opaque;

/// A C registration interface: how to register and unregister `Raw`.
pub(crate) trait RawOps {
    /// The C ops structure (e.g. `struct nf_sockopt_ops`).
    type Raw;

    /// Registers `raw`; 0 or a negative errno.
    ///
    /// # Safety
    ///
    /// `raw` is valid and fully initialised, stays at its address until
    /// [`RawOps::unregister`], and its callbacks are sound for every call the
    /// kernel can make while it is registered.
    unsafe fn register(raw: *mut Self::Raw) -> c_int;

    /// Undoes a successful [`RawOps::register`].
    ///
    /// # Safety
    ///
    /// `raw` was registered by [`RawOps::register`] and not unregistered since.
    unsafe fn unregister(raw: *mut Self::Raw);
}

/// A live registration of `O`; unregistered when dropped.
///
/// # Invariants
///
/// `raw` is registered with the kernel for the whole life of `self`.
pub(crate) struct Registration<O: RawOps> {
    raw: KBox<Opaque<O::Raw>>,
    _ops: PhantomData<O>,
}

impl<O: RawOps> Registration<O> {
    /// Moves `raw` to the heap and registers it.
    ///
    /// # Safety
    ///
    /// The callbacks in `raw` are sound for every call the kernel can make
    /// while the registration lives (the rest of [`RawOps::register`]'s
    /// contract is kept here).
    pub(crate) unsafe fn register(raw: O::Raw) -> Result<Self> {
        let raw = KBox::new(Opaque::new(raw), GFP_KERNEL)?;
        // SAFETY: `raw` is initialised and boxed, so it keeps its address
        // until `drop` unregisters it; the callbacks are the caller's promise.
        to_result(unsafe { O::register(raw.get()) })?;
        // INVARIANT: registered just above.
        Ok(Registration {
            raw,
            _ops: PhantomData,
        })
    }
}

impl<O: RawOps> Drop for Registration<O> {
    fn drop(&mut self) {
        // SAFETY: registered for the whole life of `self` (type invariant).
        unsafe { O::unregister(self.raw.get()) };
    }
}

// SAFETY: a registration only holds the ops the kernel reads; nothing here
// touches them except `drop`, which the kernel serialises with its own locks.
unsafe impl<O: RawOps> Send for Registration<O> {}
// SAFETY: `&Registration` gives no access to the ops at all.
unsafe impl<O: RawOps> Sync for Registration<O> {}
