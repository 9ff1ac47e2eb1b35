// SPDX-License-Identifier: GPL-2.0

//! Netfilter hooks of one network namespace: packets at the hooks a
//! namespace's data asks for reach its [`NetHook::hook`].
//!
//! Every namespace's pernet data comes with a [`NetHooks`] that the pernet
//! abstraction owns ([`crate::kernel_ext::pernet::Pernet::set_hooks`]): it
//! registers `nf_hook_ops` whose private pointer is that namespace's data.
//! It unregisters them in the namespace's `pre_exit` and frees them when
//! dropped, before the data, in its `exit`: the pernet core waits for a
//! grace period in between, so for the packets running them
//! (unregistering does not wait). Hooks unregistered while the namespace
//! lives are waited for at once (`synchronize_net`). So the data a hook
//! reads outlives every call, and no hook of an unloaded module can run.
//! The ops are built in C (`kext_nf_hook_ops_new`): their layout differs
//! between kernels.

use super::bindings as b;
use super::rcu::{HeldRcu, RcuGuard};
use core::ffi::{c_uint, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Mutex;

/// What a hook decides for a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Let it go on (`NF_ACCEPT`): the next hook sees it.
    Accept,
    /// Drop it (`NF_DROP`).
    Drop,
}

/// What sees the packets of a namespace's hooks: its pernet data.
pub(crate) trait NetHook: Sync {
    /// Decides `pkt`'s fate; runs in softirq or process context inside
    /// netfilter's RCU read-side section (`rcu`), so it must not sleep.
    fn hook(&self, pkt: &mut Packet<'_>, rcu: &RcuGuard) -> Verdict;
}

/// A packet at a netfilter hook, for the duration of the hook call.
pub(crate) struct Packet<'a> {
    skb: NonNull<bindings::sk_buff>,
    state: NonNull<b::nf_hook_state>,
    /// Whether the hook changed the mark.
    remarked: bool,
    _call: PhantomData<&'a mut bindings::sk_buff>,
}

/// `NFPROTO_IPV4`.
pub(crate) const IPV4: u8 = b::NFPROTO_IPV4 as u8;
/// `NFPROTO_IPV6`.
pub(crate) const IPV6: u8 = b::NFPROTO_IPV6 as u8;
/// `NF_INET_LOCAL_OUT`.
const LOCAL_OUT: u32 = b::NF_INET_LOCAL_OUT;
/// The IPv4 and IPv6 hooks (`NF_INET_PRE_ROUTING` .. `NF_INET_POST_ROUTING`).
pub(crate) const INET_HOOKS: u32 = b::NF_INET_NUMHOOKS;

impl Packet<'_> {
    /// The family of the hook: [`IPV4`] or [`IPV6`].
    #[inline]
    pub(crate) fn pf(&self) -> u8 {
        // SAFETY: the state is live for the call (type invariant).
        unsafe { (*self.state.as_ptr()).pf }
    }

    /// The hook number (`NF_INET_*`).
    #[inline]
    pub(crate) fn hooknum(&self) -> u32 {
        // SAFETY: as in `pf`.
        u32::from(unsafe { (*self.state.as_ptr()).hook })
    }

    /// Addresses, transport protocol and destination port; `None` when the
    /// network header cannot be read.
    #[inline]
    pub(crate) fn flow(&self) -> Option<Flow> {
        let mut flow = b::kext_flow::default();
        // SAFETY: the skb is live for the call and `flow` is ours to fill.
        unsafe { b::kext_skb_flow(self.skb.as_ptr(), self.pf(), &mut flow) }.then_some(Flow(flow))
    }

    /// `skb->mark = (skb->mark & !mask) ^ mark`.
    #[inline]
    pub(crate) fn set_mark(&mut self, mark: u32, mask: u32) {
        // SAFETY: the skb is live for the call and the hook may change its mark (netfilter runs
        // hooks one at a time per packet).
        unsafe {
            let old = b::kext_skb_mark(self.skb.as_ptr());
            let new = (old & !mask) ^ mark;
            if new != old {
                b::kext_skb_set_mark(self.skb.as_ptr(), new);
                self.remarked = true;
            }
        }
    }
}

/// What [`Packet::flow`] read.
pub(crate) struct Flow(b::kext_flow);

impl Flow {
    /// The source address: 4 or 16 bytes.
    #[inline]
    pub(crate) fn saddr(&self) -> &[u8] {
        &self.0.saddr[..usize::from(self.0.addr_len).min(16)]
    }

    /// The destination address: 4 or 16 bytes.
    #[inline]
    pub(crate) fn daddr(&self) -> &[u8] {
        &self.0.daddr[..usize::from(self.0.addr_len).min(16)]
    }

    /// The transport protocol and destination port, when the packet has one.
    #[inline]
    pub(crate) fn port(&self) -> Option<(u8, u16)> {
        (self.0.has_port != 0).then(|| (self.0.proto, u16::from_be_bytes(self.0.dport)))
    }
}

/// `nf_hookfn` for hooks whose private pointer is a `T`.
///
/// # Safety
///
/// `priv_` points to a `T` that outlives the hook's registration and a
/// grace period after it ([`NetHooks`]); `skb` and `state` are live for
/// the call.
unsafe extern "C" fn hook_fn<T: NetHook>(
    priv_: *mut c_void,
    skb: *mut bindings::sk_buff,
    state: *const b::nf_hook_state,
) -> c_uint {
    let (Some(skb), Some(state)) = (NonNull::new(skb), NonNull::new(state.cast_mut())) else {
        return b::NF_ACCEPT;
    };
    // SAFETY: the contract.
    let data = unsafe { &*priv_.cast::<T>() };
    let mut pkt = Packet {
        skb,
        state,
        remarked: false,
        _call: PhantomData,
    };
    // SAFETY: netfilter calls hooks inside an RCU read-side section, which
    // lasts the call: it reaches them through the namespace's hook entries
    // under `rcu_dereference` (nf_hook(), nf_hook_slow_list(), and
    // nf_reinject(), whose callers hold the read lock).
    let rcu = unsafe { HeldRcu::assume() };
    match data.hook(&mut pkt, &rcu) {
        Verdict::Drop => b::NF_DROP,
        // A locally generated packet whose mark changed is routed again, so
        // that policy routing by mark applies (as iptables' mangle table).
        // Its verdict drops the packet when that fails, with the error the
        // sender sees.
        Verdict::Accept if pkt.remarked && pkt.hooknum() == LOCAL_OUT => {
            // SAFETY: the skb and state are live for the call, at LOCAL_OUT.
            unsafe { b::kext_nf_reroute(skb.as_ptr(), state.as_ptr()) }
        }
        Verdict::Accept => b::NF_ACCEPT,
    }
}

/// A set of (family, hook) pairs: [`IPV4`] or [`IPV6`], and a hook below
/// [`INET_HOOKS`].
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HookSet(u16);

/// Most hooks a namespace's data can be attached to.
const SLOTS: usize = 2 * INET_HOOKS as usize;

impl HookSet {
    fn slot(pf: u8, hooknum: u32) -> Option<usize> {
        let family = match pf {
            IPV4 => 0,
            IPV6 => 1,
            _ => return None,
        };
        (hooknum < INET_HOOKS).then(|| family * INET_HOOKS as usize + hooknum as usize)
    }

    /// This set and hook `hooknum` of family `pf`; unchanged for a pair
    /// that is no IPv4 or IPv6 hook.
    pub(crate) fn with(self, pf: u8, hooknum: u32) -> Self {
        match Self::slot(pf, hooknum) {
            Some(i) => HookSet(self.0 | 1 << i),
            None => self,
        }
    }

    fn has(self, slot: usize) -> bool {
        self.0 & (1 << slot) != 0
    }

    /// The family and hook number of slot `i`.
    fn pair(i: usize) -> (u8, u32) {
        let pf = if i < INET_HOOKS as usize { IPV4 } else { IPV6 };
        (pf, (i % INET_HOOKS as usize) as u32)
    }
}

/// Registered ops, built by `kext_nf_hook_ops_new`.
struct Ops(NonNull<c_void>);

// SAFETY: the ops are only read by the kernel and freed by whoever holds them.
unsafe impl Send for Ops {}

/// The netfilter hooks registered for one namespace's data (see the module
/// doc): built and dropped only by the pernet abstraction.
///
/// # Invariants
///
/// `net` is the namespace whose pernet data holds this, live for all of
/// `self`'s life; every `Some` in `ops` is registered in `net`.
#[pin_data(PinnedDrop)]
pub(crate) struct NetHooks {
    net: NonNull<bindings::net>,
    #[pin]
    ops: Mutex<Registered>,
}

/// The ops of a [`NetHooks`].
struct Registered {
    /// Registered, by slot.
    live: [Option<Ops>; SLOTS],
    /// Unregistered by [`NetHooks::unregister_at_exit`], to be freed after
    /// the grace period the namespace's teardown waits for.
    exited: [Option<Ops>; SLOTS],
}

// SAFETY: `net` is only handed to the registration functions, which take their own locks;
// the ops are behind the mutex.
unsafe impl Send for NetHooks {}
// SAFETY: as for `Send`.
unsafe impl Sync for NetHooks {}

impl NetHooks {
    /// Hooks for `net`, none registered.
    ///
    /// # Safety
    ///
    /// `net` stays live for the life of the result: it is dropped in
    /// `net`'s pernet exit at the latest.
    pub(super) unsafe fn new(net: NonNull<bindings::net>) -> impl PinInit<Self> {
        pin_init!(NetHooks {
            net,
            ops <- kernel::new_mutex!(
                Registered {
                    live: [const { None }; SLOTS],
                    exited: [const { None }; SLOTS],
                },
                "kext_net_hooks"
            ),
        })
    }

    /// Registers exactly the hooks in `wanted` (at `priority`), each
    /// calling `data`'s [`NetHook::hook`]: those missing are registered,
    /// then those not wanted unregistered (waiting for the packets that run
    /// them). All or nothing: on error the hooks are as they were.
    ///
    /// # Safety
    ///
    /// `data` outlives `self` (it is the pernet data `self` comes with,
    /// which is dropped after it), and every call on `self` passes the same
    /// `T` and `data`.
    pub(super) unsafe fn update<T: NetHook>(
        &self,
        data: &T,
        wanted: HookSet,
        priority: i32,
    ) -> Result {
        let mut guard = self.ops.lock();
        let ops = &mut guard.live;
        let mut added = HookSet::default();
        for i in 0..SLOTS {
            if !wanted.has(i) || ops[i].is_some() {
                continue;
            }
            let (pf, hooknum) = HookSet::pair(i);
            // SAFETY: `data` outlives `self` and is the same in every call (contract).
            let registered = unsafe { self.register_one(data, pf, hooknum, priority) };
            match registered {
                Ok(r) => {
                    ops[i] = Some(r);
                    added = added.with(pf, hooknum);
                }
                Err(e) => {
                    // Undo what this call registered.
                    self.unregister(ops, added);
                    return Err(e);
                }
            }
        }
        let unwanted = (0..SLOTS)
            .filter(|&i| !wanted.has(i) && ops[i].is_some())
            .fold(HookSet::default(), |s, i| {
                let (pf, hooknum) = HookSet::pair(i);
                s.with(pf, hooknum)
            });
        self.unregister(ops, unwanted);
        Ok(())
    }

    /// Unregisters every hook without waiting for the packets in them: for
    /// the namespace's `pre_exit`, after which the pernet core waits for a
    /// grace period before any `exit` (so before `self` is dropped, which
    /// frees the ops).
    pub(super) fn unregister_at_exit(&self) {
        let mut guard = self.ops.lock();
        let Registered { live, exited } = &mut *guard;
        for (slot, gone) in live.iter_mut().zip(exited.iter_mut()) {
            if let Some(o) = slot.take() {
                // SAFETY: registered in the live `net` (invariant).
                unsafe { b::kext_nf_unregister_net_hook(self.net.as_ptr(), o.0.as_ptr()) };
                *gone = Some(o);
            }
        }
    }

    /// Registers one hook handing packets of family `pf` at `hooknum` to `data`.
    ///
    /// # Safety
    ///
    /// As for [`NetHooks::update`].
    unsafe fn register_one<T: NetHook>(
        &self,
        data: &T,
        pf: u8,
        hooknum: u32,
        priority: i32,
    ) -> Result<Ops> {
        let data = core::ptr::from_ref(data).cast_mut().cast();
        // SAFETY: plain allocation; `hook_fn::<T>` is sound for `data` (contract).
        let raw =
            unsafe { b::kext_nf_hook_ops_new(Some(hook_fn::<T>), data, pf, hooknum, priority) };
        let raw = NonNull::new(raw).ok_or(ENOMEM)?;
        // SAFETY: `net` is live (invariant); the ops are complete, stay allocated until
        // unregistered, and their hook may run until `self` is dropped (contract).
        let rc = unsafe { b::kext_nf_register_net_hook(self.net.as_ptr(), raw.as_ptr()) };
        if rc != 0 {
            // SAFETY: allocated above, never registered.
            unsafe { b::kext_nf_hook_ops_free(raw.as_ptr()) };
            // E2BIG: the namespace has the most hooks the kernel allows at
            // this family and hook number.
            return Err(if rc == E2BIG.to_errno() {
                ENOSPC
            } else {
                Error::from_errno(rc)
            });
        }
        Ok(Ops(raw))
    }

    /// Unregisters the hooks of `which` that are registered, waits for the
    /// packets running them, and frees their ops.
    fn unregister(&self, ops: &mut [Option<Ops>; SLOTS], which: HookSet) {
        let mut gone: [Option<Ops>; SLOTS] = [const { None }; SLOTS];
        for i in (0..SLOTS).filter(|&i| which.has(i)) {
            if let Some(o) = ops[i].take() {
                // SAFETY: registered in the live `net` (invariant).
                unsafe { b::kext_nf_unregister_net_hook(self.net.as_ptr(), o.0.as_ptr()) };
                gone[i] = Some(o);
            }
        }
        if gone.iter().all(Option::is_none) {
            return;
        }
        // SAFETY: process context (registration sleeps too).
        unsafe { b::kext_synchronize_net() };
        for o in gone.into_iter().flatten() {
            // SAFETY: unregistered, and no packet runs it any more.
            unsafe { b::kext_nf_hook_ops_free(o.0.as_ptr()) };
        }
    }
}

#[pinned_drop]
impl PinnedDrop for NetHooks {
    fn drop(self: Pin<&mut Self>) {
        let mut guard = self.ops.lock();
        self.unregister(&mut guard.live, HookSet(u16::MAX));
        for o in guard.exited.iter_mut().filter_map(Option::take) {
            // SAFETY: unregistered by `unregister_at_exit` in the namespace's `pre_exit`; the
            // pernet core waited for a grace period between it and the `exit` that drops
            // `self`, so no packet runs the hook any more.
            unsafe { b::kext_nf_hook_ops_free(o.0.as_ptr()) };
        }
    }
}
