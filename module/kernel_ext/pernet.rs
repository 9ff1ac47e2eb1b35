// SPDX-License-Identifier: GPL-2.0

//! Per-network-namespace data: [`PernetRegistration<T>`] gives every network
//! namespace its own `T`, created when the namespace is (or when the
//! registration is, for those already there) and dropped when it dies.
//!
//! The kernel allocates a zeroed slot per namespace (`pernet_operations.size`)
//! and `T` is initialised in place there, pinned, next to the namespace's
//! [`NetHooks`], which packets reach `T` through ([`Pernet::set_hooks`]).
//! The callbacks get no context pointer, so each `T` names the static
//! [`PernetId<T>`] where the kernel keeps its slot number: declare it with
//! [`pernet_id!`](crate::kernel_ext::pernet::pernet_id).

use super::bindings as b;
use super::nfhook::{HookSet, NetHook, NetHooks};
use super::registration::{RawOps, Registration};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_uint};
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::bindings;
use kernel::prelude::*;

/// A network namespace, borrowed for the duration of a callback.
#[derive(Clone, Copy)]
pub(crate) struct NetRef<'a> {
    net: NonNull<bindings::net>,
    _life: PhantomData<&'a bindings::net>,
}

impl NetRef<'_> {
    /// # Safety
    ///
    /// `net` points to a live network namespace for the lifetime chosen.
    pub(crate) unsafe fn from_raw(net: NonNull<bindings::net>) -> Self {
        NetRef {
            net,
            _life: PhantomData,
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut bindings::net {
        self.net.as_ptr()
    }

    /// Whether the caller has `cap` over the user namespace owning this
    /// network namespace (`ns_capable(net->user_ns, cap)`).
    pub(crate) fn ns_capable(&self, cap: u32) -> bool {
        // SAFETY: the namespace is live (type invariant); `ns_capable` only
        // reads it and the current task's credentials.
        unsafe { b::kext_net_ns_capable(self.as_ptr(), cap as c_int) }
    }

    /// Whether the initial user namespace owns it (it was not created by an
    /// unprivileged user through a user namespace).
    pub(crate) fn owned_by_init_user_ns(&self) -> bool {
        // SAFETY: the namespace is live; `user_ns` is set for its lifetime.
        unsafe { b::kext_net_owned_by_init_user_ns(self.as_ptr()) }
    }
}

/// The static where the kernel keeps `Self`'s pernet slot number; the
/// callbacks, which get no context pointer, find it here.
///
/// # Safety
///
/// [`HasPernetId::id`] returns the same static every time. Implement it
/// with [`pernet_id!`](crate::kernel_ext::pernet::pernet_id).
pub(crate) unsafe trait HasPernetId: Sized + 'static {
    /// `Self`'s id.
    fn id() -> &'static PernetId<Self>;
}

/// Implements [`HasPernetId`] for a type with a static of its own.
macro_rules! pernet_id {
    ($t:ty) => {
        #[allow(unsafe_code)]
        // SAFETY: `id` returns the one static declared inside it.
        unsafe impl $crate::kernel_ext::pernet::HasPernetId for $t {
            fn id() -> &'static $crate::kernel_ext::pernet::PernetId<Self> {
                static ID: $crate::kernel_ext::pernet::PernetId<$t> =
                    $crate::kernel_ext::pernet::PernetId::new();
                &ID
            }
        }
    };
}
pub(crate) use pernet_id;

/// What each network namespace gets one of.
pub(crate) trait PernetData: HasPernetId + Send + Sync {
    /// Initialises the data of a new namespace (in place, pinned): what
    /// can be made before its place is known, then the initialiser.
    fn init(net: NetRef<'_>) -> Result<impl PinInit<Self, Error>>;
}

/// The slot number the kernel gives `T`'s registration. At most one
/// registration of `T` can exist at a time.
pub(crate) struct PernetId<T> {
    id: UnsafeCell<c_uint>,
    /// Set while a [`PernetRegistration<T>`] exists.
    registered: AtomicBool,
    _t: PhantomData<fn() -> T>,
}

// SAFETY: `id` is written by the kernel only inside `register_pernet_subsys`,
// which runs while `registered` excludes every other registration of `T`, and
// before any reader can see the registration; the rest is atomics.
unsafe impl<T> Sync for PernetId<T> {}

impl<T> PernetId<T> {
    pub(crate) const fn new() -> Self {
        PernetId {
            id: UnsafeCell::new(0),
            registered: AtomicBool::new(false),
            _t: PhantomData,
        }
    }
}

/// What the kernel allocates per namespace for `T`: `T` and the netfilter
/// hooks that reach it. The hooks are dropped first (fields drop in order),
/// so no packet can reach `T` once it is being dropped.
#[pin_data]
struct Slot<T> {
    #[pin]
    hooks: NetHooks,
    #[pin]
    data: T,
}

/// A namespace's `T`, borrowed: derefs to `T`, and attaches netfilter hooks
/// that hand the namespace's packets to it.
pub(crate) struct Pernet<'a, T> {
    slot: &'a Slot<T>,
}

impl<T> Clone for Pernet<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Pernet<'_, T> {}

impl<T> Deref for Pernet<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.slot.data
    }
}

impl<T: NetHook> Pernet<'_, T> {
    /// Makes the namespace's registered netfilter hooks exactly `wanted`,
    /// at `priority`, each handing packets to `T`'s [`NetHook::hook`]; all
    /// or nothing. Sleeps: unregistering waits for the packets in the hooks.
    pub(crate) fn set_hooks(&self, wanted: HookSet, priority: i32) -> Result {
        // SAFETY: `data` is the slot's `T`, dropped after `hooks` (field order), and the same
        // for every call on this slot's hooks.
        unsafe { self.slot.hooks.update(&self.slot.data, wanted, priority) }
    }
}

/// `T` of namespace `net`, or `None` when it has none (the namespace is
/// still being set up).
///
/// # Safety
///
/// A [`PernetRegistration<T>`] exists and stays alive while the result is
/// used, and `net` is live.
pub(super) unsafe fn data<'a, T: PernetData>(net: NetRef<'a>) -> Option<Pernet<'a, T>> {
    // SAFETY: registered (caller), so `id` holds the kernel's slot number
    // and no longer changes.
    let id = unsafe { *T::id().id.get() };
    // SAFETY: `net` is live (caller); `net_generic` reads its slot array.
    let slot = unsafe { b::kext_net_generic(net.as_ptr(), id) };
    // SAFETY: a non-null slot of a registered `T` holds a `Slot<T>` that `net_init`
    // initialised and only `net_exit` (after every user of `net`) drops.
    let slot = unsafe { slot.cast::<Slot<T>>().as_ref() }?;
    Some(Pernet { slot })
}

/// `pernet_operations` for `T`.
pub(crate) struct PernetOps<T>(PhantomData<T>);

impl<T: PernetData> RawOps for PernetOps<T> {
    type Raw = b::pernet_operations;

    unsafe fn register(raw: *mut Self::Raw) -> c_int {
        // SAFETY: the caller's contract is the function's.
        unsafe { b::register_pernet_subsys(raw) }
    }

    unsafe fn unregister(raw: *mut Self::Raw) {
        // SAFETY: the caller's contract is the function's.
        unsafe { b::unregister_pernet_subsys(raw) }
    }
}

/// `pernet_operations.init`: initialises `T` in the zeroed slot.
///
/// # Safety
///
/// Called by the pernet core for a namespace being set up, after it
/// allocated the slot of `size_of::<Slot<T>>()` bytes for `T::id()`.
unsafe extern "C" fn net_init<T: PernetData>(net: *mut bindings::net) -> c_int {
    let Some(net) = NonNull::new(net) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the namespace is live during its init callback.
    let net = unsafe { NetRef::from_raw(net) };
    // SAFETY: the registration is alive while its callbacks run; the id was
    // assigned before the first `init`.
    let id = unsafe { *T::id().id.get() };
    // SAFETY: the slot was allocated for this registration (contract).
    let slot = unsafe { b::kext_net_generic(net.as_ptr(), id) }.cast::<Slot<T>>();
    if slot.is_null() {
        return ENOMEM.to_errno();
    }
    let data = match T::init(net) {
        Ok(init) => init,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: the hooks live in the namespace's slot, dropped by `net_exit` while the
    // namespace is live.
    let hooks = unsafe { NetHooks::new(net.net) };
    let init = try_pin_init!(Slot::<T> {
        hooks <- hooks,
        data <- data,
    }? Error);
    // SAFETY: `slot` holds `size_of::<Slot<T>>()` bytes aligned for it (checked at
    // registration), owned by this namespace and freed only after `net_exit`; it never moves,
    // so it stays pinned; on error the initialiser leaves nothing to drop.
    match unsafe { super::compat::pin_init_at(init, slot) } {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `pernet_operations.exit`: drops `T` of a dying namespace.
///
/// # Safety
///
/// Called by the pernet core once per namespace whose `init` succeeded, when
/// nothing can reach the namespace's data any more.
unsafe extern "C" fn net_exit<T: PernetData>(net: *mut bindings::net) {
    // SAFETY: as in `net_init`.
    let id = unsafe { *T::id().id.get() };
    // SAFETY: the namespace is live during its exit callback.
    let slot = unsafe { b::kext_net_generic(net, id) }.cast::<Slot<T>>();
    if !slot.is_null() {
        // SAFETY: `net_init` initialised a `Slot<T>` there, nobody uses it any more
        // (contract; its hooks, unregistered in `net_pre_exit` a grace period ago, are dropped
        // first), and the pernet core frees the bytes after this returns.
        unsafe { core::ptr::drop_in_place(slot) };
    }
}

/// `pernet_operations.pre_exit`: unregisters the dying namespace's hooks;
/// the pernet core waits for a grace period before `net_exit` frees them.
///
/// # Safety
///
/// Called by the pernet core once per namespace whose `init` succeeded,
/// before its `exit`.
unsafe extern "C" fn net_pre_exit<T: PernetData>(net: *mut bindings::net) {
    // SAFETY: as in `net_init`.
    let id = unsafe { *T::id().id.get() };
    // SAFETY: the namespace is live during its pre_exit callback.
    let slot = unsafe { b::kext_net_generic(net, id) }.cast::<Slot<T>>();
    // SAFETY: `net_init` initialised a `Slot<T>` there, which `net_exit` drops only later.
    if let Some(slot) = unsafe { slot.as_ref() } {
        slot.hooks.unregister_at_exit();
    }
}

/// The registration giving every network namespace a `T`.
pub(crate) struct PernetRegistration<T: PernetData> {
    // Fields drop in order: unregister first, then free the id.
    _reg: Registration<PernetOps<T>>,
    _id: IdClaim<T>,
}

/// `T`'s id claimed by a registration; released when dropped.
struct IdClaim<T: PernetData>(PhantomData<T>);

impl<T: PernetData> Drop for IdClaim<T> {
    fn drop(&mut self) {
        T::id().registered.store(false, Ordering::Release);
    }
}

/// The alignment every kmalloc allocation has at least.
const KMALLOC_MIN_ALIGN: usize = 8;

impl<T: PernetData> PernetRegistration<T> {
    /// Registers `T`: every existing namespace gets its `T` now, every new one
    /// when it is created. `EBUSY` if `T` is registered already.
    pub(crate) fn register() -> Result<Self> {
        const { assert!(core::mem::align_of::<Slot<T>>() <= KMALLOC_MIN_ALIGN) };
        let id = T::id();
        if id.registered.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        let claim = IdClaim::<T>(PhantomData);
        let raw = b::pernet_operations {
            init: Some(net_init::<T>),
            pre_exit: Some(net_pre_exit::<T>),
            exit: Some(net_exit::<T>),
            id: id.id.get(),
            size: core::mem::size_of::<Slot<T>>(),
            ..Default::default()
        };
        // SAFETY: `net_init`/`net_exit` are sound for `T`'s slots: the slot
        // size is `size_of::<Slot<T>>()`, `id` points to a static, and `registered`
        // keeps any other registration of `T` from sharing it.
        let reg = unsafe { Registration::register(raw) }?;
        Ok(PernetRegistration {
            _reg: reg,
            _id: claim,
        })
    }
}
