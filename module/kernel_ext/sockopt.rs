// SPDX-License-Identifier: GPL-2.0

//! nf_sockopt: `setsockopt`/`getsockopt` optnames on a protocol family,
//! answered by a [`SockoptHandler`] that the registration owns, with the
//! caller's namespace's data.
//!
//! The kernel calls the callbacks with no context pointer and without its
//! own lock held, from any task that has a socket of the family. They find
//! the handler through the handler type's [`SockoptSlot`], where the
//! registration publishes it, and the namespace's data through
//! [`PernetData`]; a [`SockoptRegistration`] owns the handler and the
//! [`PernetRegistration`] of that data, and frees them only once no callback
//! can reach them.

use super::bindings as b;
use super::bytes::ByteSource;
use super::compat;
use super::pernet::{self, NetRef, Pernet, PernetData, PernetRegistration};
use super::registration::{RawOps, Registration};
use core::ffi::{c_int, c_uint, c_void};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use kernel::bindings;
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

/// The request bytes of one `setsockopt` call: `len` bytes, read in order.
pub(crate) struct SetRequest<'a> {
    arg: bindings::sockptr_t,
    len: usize,
    pos: usize,
    _call: PhantomData<&'a ()>,
}

impl SetRequest<'_> {
    /// The caller's `optlen`.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// Copies the next `out.len()` bytes; `EINVAL` past the end, `EFAULT`
    /// when the caller's buffer is unreadable.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result {
        // SAFETY: `out` is valid for writes of its length.
        unsafe { self.read_raw(out.as_mut_ptr(), out.len()) }
    }

    /// Runs `f` on the unread rest of the request, copied onto the stack in
    /// one piece and never zeroed first; `EINVAL` when it is over `N` bytes.
    pub(crate) fn with_rest_on_stack<const N: usize, R>(
        &mut self,
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let n = self.remaining();
        if n > N {
            return Err(EINVAL);
        }
        let mut buf = MaybeUninit::<[u8; N]>::uninit();
        let dst = buf.as_mut_ptr().cast::<u8>();
        // SAFETY: `buf` has room for `N >= n` bytes.
        unsafe { self.read_raw(dst, n)? };
        // SAFETY: the copy succeeded, so it initialised the first `n` bytes of `buf`, which
        // outlives the borrow (it is dropped at the end of this function, after `f`).
        f(unsafe { core::slice::from_raw_parts(dst, n) })
    }

    /// Copies the next `out.len()` bytes into `out`; `EINVAL` past the end,
    /// `EFAULT` when the caller's buffer is unreadable.
    pub(crate) fn read_uninit(&mut self, out: &mut [MaybeUninit<u8>]) -> Result {
        // SAFETY: `out` is valid for writes of its length.
        unsafe { self.read_raw(out.as_mut_ptr().cast(), out.len()) }
    }

    /// Runs `f` on `header` followed by the unread rest of the request, in
    /// one allocation (kvmalloc, charged to the caller's memory cgroup; not
    /// zeroed, only what is copied in is read).
    pub(crate) fn with_rest_after<R>(
        &mut self,
        header: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let rest = self.remaining();
        let len = header.len().checked_add(rest).ok_or(EINVAL)?;
        let buf = KvBuffer::new(len)?;
        let dst = buf.ptr.as_ptr();
        // SAFETY: `dst` has room for `len` bytes: `header` first, then `rest` bytes read into
        // the space after it.
        unsafe {
            ptr::copy_nonoverlapping(header.as_ptr(), dst, header.len());
            self.read_raw(dst.add(header.len()), rest)?;
        }
        // SAFETY: all `len` bytes were written just above; `buf` outlives the borrow (it is
        // dropped at the end of this function, after `f`).
        f(unsafe { core::slice::from_raw_parts(dst, len) })
    }

    /// # Safety
    ///
    /// `dst` is valid for writes of `n` bytes.
    unsafe fn read_raw(&mut self, dst: *mut u8, n: usize) -> Result {
        if n > self.remaining() {
            return Err(EINVAL);
        }
        // copy_from_sockptr_offset(), without its out-of-line wrapper.
        let copied = if self.arg.is_kernel() {
            // SAFETY: `is_kernel` says `kernel` is the union's member in use.
            let src = unsafe { self.arg.__bindgen_anon_1.kernel }.cast::<u8>();
            // SAFETY: a kernel `arg` is valid for reads of `len >= pos + n` bytes for the call
            // `'a` is bound to (nf_setsockopt's contract); `dst` has room for `n` (caller).
            unsafe { ptr::copy_nonoverlapping(src.add(self.pos), dst, n) };
            true
        } else {
            // SAFETY: `user` is the union's member in use.
            let src = unsafe { self.arg.__bindgen_anon_1.user }.cast::<u8>();
            // The checked copy, as upstream's `UserSliceReader::read_raw` uses for sizes known
            // only at run time: `check_copy_size` lets hardened usercopy refuse a `dst` range
            // that leaves its slab object, vmalloc area or stack frame (a no-op without
            // CONFIG_HARDENED_USERCOPY, as on the bench's kernel).
            // SAFETY: `dst` has room for `n` bytes (caller); `copy_from_user` checks the user
            // range (`access_ok`) and survives faults, zeroing what it could not copy.
            let left = unsafe {
                bindings::copy_from_user(dst.cast(), src.wrapping_add(self.pos).cast(), n)
            };
            left == 0
        };
        if !copied {
            return Err(EFAULT);
        }
        self.pos += n;
        Ok(())
    }
}

// SAFETY: `read_uninit` copies exactly `dst.len()` bytes or fails.
unsafe impl ByteSource for SetRequest<'_> {
    fn write_to(&mut self, dst: &mut [MaybeUninit<u8>]) -> Result {
        self.read_uninit(dst)
    }
}

/// `len > 0` bytes from `kvmalloc`, charged to the caller's memory cgroup;
/// freed on drop.
struct KvBuffer {
    ptr: NonNull<u8>,
}

impl KvBuffer {
    fn new(len: usize) -> Result<Self> {
        // SAFETY: `kext_kvmalloc_account` is `kvmalloc`, callable with any size in process
        // context (nf_sockopt handlers run in the calling task).
        let raw = unsafe { b::kext_kvmalloc_account(len.max(1)) };
        Ok(KvBuffer {
            ptr: NonNull::new(raw.cast()).ok_or(ENOMEM)?,
        })
    }
}

impl Drop for KvBuffer {
    fn drop(&mut self) {
        // SAFETY: `kvmalloc` allocated it (`new`) and nothing uses it after this.
        unsafe { bindings::kvfree(self.ptr.as_ptr().cast()) };
    }
}

/// The buffer of one `getsockopt` call: the request is read from its start
/// and the reply written over it.
pub(crate) struct GetBuffer<'a> {
    ptr: usize,
    len: i32,
    _call: PhantomData<&'a ()>,
}

impl GetBuffer<'_> {
    /// The caller's `optlen`. It may be negative: the IP layer checks the
    /// length it read, but `ip_getsockopt` reads `optlen` from the caller
    /// again before nf_sockopt, so another thread can change it in between.
    /// [`GetBuffer::with_request`] and [`GetBuffer::write_reply`] refuse a
    /// negative one with `EINVAL`.
    pub(crate) fn len(&self) -> i32 {
        self.len
    }

    fn capacity(&self) -> Result<usize> {
        usize::try_from(self.len).map_err(|_| EINVAL)
    }

    /// Runs `f` on the first `min(len, N)` bytes of the buffer (the
    /// request), copied onto the stack and never zeroed first.
    pub(crate) fn with_request<const N: usize, R>(
        &self,
        f: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let n = self.capacity()?.min(N);
        let mut buf = [const { MaybeUninit::<u8>::uninit() }; N];
        UserSlice::new(compat::user_ptr(self.ptr), n)
            .reader()
            .read_raw(&mut buf[..n])?;
        // SAFETY: `read_raw` succeeded, so it initialised the first `n` bytes of `buf`, which
        // outlives the borrow (it is dropped at the end of this function, after `f`).
        f(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) })
    }

    /// Writes `parts` one after the other from the start of the buffer;
    /// `EFAULT` past `len` or when the buffer is unwritable.
    pub(crate) fn write_reply(&self, parts: &[&[u8]]) -> Result {
        let mut writer = UserSlice::new(compat::user_ptr(self.ptr), self.capacity()?).writer();
        for part in parts {
            writer.write_slice(part)?;
        }
        Ok(())
    }

    /// [`GetBuffer::write_reply`] without faulting a page in, so that it can
    /// run where sleeping is not allowed (under RCU): `Ok(false)` when a
    /// page is absent (or the buffer unwritable), for the caller to write
    /// again with [`GetBuffer::write_reply`], which tells the two apart.
    pub(crate) fn write_reply_nofault(&self, parts: &[&[u8]]) -> Result<bool> {
        let capacity = self.capacity()?;
        let mut at = 0usize;
        for part in parts {
            let end = at.checked_add(part.len()).ok_or(EFAULT)?;
            if end > capacity {
                return Err(EFAULT);
            }
            // SAFETY: `part` is readable for its length; the destination is the caller's
            // buffer, which `copy_to_user_nofault` checks (`access_ok`) and writes with page
            // faults disabled, returning an error rather than sleeping.
            let failed = unsafe {
                b::kext_copy_to_user_nofault(
                    self.ptr.wrapping_add(at) as *mut c_void,
                    part.as_ptr().cast(),
                    part.len(),
                )
            };
            if failed != 0 {
                return Ok(false);
            }
            at = end;
        }
        Ok(true)
    }
}

/// Who is calling: the socket's network namespace.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    net: NetRef<'a>,
}

impl Caller<'_> {
    /// CAP_NET_ADMIN over the user namespace owning the socket's network
    /// namespace, as ip_tables and IPVS require.
    pub(crate) fn net_admin(&self) -> bool {
        self.net.ns_capable(bindings::CAP_NET_ADMIN)
    }
}

/// Answers the optnames of a [`SockoptRegistration`], which owns it and
/// hands it to every call, with the caller's namespace's data.
pub(crate) trait SockoptHandler: Send + Sync + Sized + 'static {
    /// What each network namespace holds for the handler.
    type Net: PernetData;

    /// Where a registration publishes the handler for the callbacks, which
    /// get no context pointer: `static SLOT: SockoptSlot<Self> =
    /// SockoptSlot::new();`. Any slot of this type is sound: a registration
    /// remembers the one it claimed.
    fn slot() -> &'static SockoptSlot<Self>;

    /// `setsockopt(fd, level, min + index, req, len)`: 0 or an errno.
    fn set(
        &self,
        data: Pernet<'_, Self::Net>,
        caller: Caller<'_>,
        index: u32,
        req: &mut SetRequest<'_>,
    ) -> Result;

    /// `getsockopt(fd, level, min + index, buf, &len)`: the reply's length
    /// (at most `buf.len()`; the kernel reports it back as `optlen`) or an
    /// errno.
    fn get(
        &self,
        data: Pernet<'_, Self::Net>,
        caller: Caller<'_>,
        index: u32,
        buf: &GetBuffer<'_>,
    ) -> Result<usize>;
}

/// A handler as its registration publishes it.
struct Published<H> {
    handler: H,
    /// The first optname: callbacks pass `optname - min` to the handler.
    min: i32,
}

/// Where a [`SockoptRegistration<H>`] publishes its handler to the
/// callbacks, and counts the callbacks using it. One registration at a time
/// claims a slot.
pub(crate) struct SockoptSlot<H> {
    /// Set while a registration owns the slot.
    claimed: AtomicBool,
    /// The registration's handler; null before it is published and from the
    /// moment its registration starts going away.
    published: AtomicPtr<Published<H>>,
    /// Callbacks between [`Use::enter`] and the end of their call.
    in_flight: AtomicUsize,
}

impl<H> SockoptSlot<H> {
    pub(crate) const fn new() -> Self {
        SockoptSlot {
            claimed: AtomicBool::new(false),
            published: AtomicPtr::new(ptr::null_mut()),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl<H> Default for SockoptSlot<H> {
    fn default() -> Self {
        Self::new()
    }
}

/// A callback's use of the published handler, counted in its slot until
/// dropped.
struct Use<H: 'static> {
    slot: &'static SockoptSlot<H>,
    published: NonNull<Published<H>>,
}

impl<H: SockoptHandler> Use<H> {
    /// `None` when no handler is published (not yet, or no longer).
    fn enter() -> Option<Self> {
        let slot = H::slot();
        // Counted in before looking, both SeqCst: `Open::drop` either sees
        // this count or this load sees its null.
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        match NonNull::new(slot.published.load(Ordering::SeqCst)) {
            Some(published) => Some(Use { slot, published }),
            None => {
                slot.in_flight.fetch_sub(1, Ordering::SeqCst);
                None
            }
        }
    }

    fn published(&self) -> &Published<H> {
        // SAFETY: the registration that published it frees it only after it has cleared the
        // pointer and seen `in_flight` at zero (`Open::drop`), and we are counted in.
        unsafe { self.published.as_ref() }
    }
}

impl<H: 'static> Drop for Use<H> {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The handler's data for the caller's namespace, while `call` is held.
///
/// # Safety
///
/// `sk` is a live socket.
unsafe fn caller_data<'a, H: SockoptHandler>(
    sk: *mut bindings::sock,
    _call: &'a Use<H>,
) -> Option<(Pernet<'a, H::Net>, Caller<'a>)> {
    // SAFETY: `sk` is live (caller), and so is its namespace, which every
    // socket holds a reference on.
    let net = NonNull::new(unsafe { b::kext_sock_net(sk) })?;
    // SAFETY: as above, for the duration of the call `'a` is bound to.
    let net = unsafe { NetRef::from_raw(net) };
    // SAFETY: while a `Use` is held, the registration that published the
    // handler, and with it its `PernetRegistration` of `H::Net`, stays alive
    // (`Open::drop` waits for the use).
    let data = unsafe { pernet::data::<H::Net>(net) }?;
    Some((data, Caller { net }))
}

/// The handler's index for `optname`: the kernel passes only optnames of
/// the registered range `[min, min + count)`.
fn index(published: &Published<impl Sized>, optname: c_int) -> u32 {
    optname.wrapping_sub(published.min) as u32
}

/// `nf_sockopt_ops.set`.
///
/// # Safety
///
/// Called by nf_setsockopt with a live socket and the caller's `sockptr_t`
/// of `len` bytes, valid for the duration of the call.
unsafe extern "C" fn set_callback<H: SockoptHandler>(
    sk: *mut bindings::sock,
    optval: c_int,
    arg: bindings::sockptr_t,
    len: c_uint,
) -> c_int {
    let Some(call) = Use::<H>::enter() else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    // SAFETY: `sk` is live for the call (contract).
    let Some((data, caller)) = (unsafe { caller_data::<H>(sk, &call) }) else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    let mut req = SetRequest {
        arg,
        len: len as usize,
        pos: 0,
        _call: PhantomData,
    };
    let published = call.published();
    let index = index(published, optval);
    match published.handler.set(data, caller, index, &mut req) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `nf_sockopt_ops.get`.
///
/// # Safety
///
/// Called by nf_getsockopt with a live socket, the caller's user buffer and
/// a pointer to the kernel `int` holding its length, which the kernel copies
/// back to the caller's optlen when this returns 0.
unsafe extern "C" fn get_callback<H: SockoptHandler>(
    sk: *mut bindings::sock,
    optval: c_int,
    user: *mut c_void,
    len: *mut c_int,
) -> c_int {
    let Some(call) = Use::<H>::enter() else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    // SAFETY: `sk` is live for the call (contract).
    let Some((data, caller)) = (unsafe { caller_data::<H>(sk, &call) }) else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    // SAFETY: `len` points to nf_getsockopt's caller's local `int` (contract).
    let in_len = unsafe { *len };
    let buf = GetBuffer {
        ptr: user as usize,
        len: in_len,
        _call: PhantomData,
    };
    let published = call.published();
    let index = index(published, optval);
    match published.handler.get(data, caller, index, &buf) {
        Ok(n) if n <= buf.capacity().unwrap_or(0) => {
            // SAFETY: as above; `n` fits in an `int` since it is at most `in_len`.
            unsafe { *len = n as c_int };
            0
        }
        // A reply longer than the buffer would be a handler bug: never
        // report more than the caller gave.
        Ok(_) => -(bindings::EINVAL as c_int),
        Err(e) => e.to_errno(),
    }
}

/// `nf_sockopt_ops` for `H`.
pub(crate) struct SockoptOps<H>(PhantomData<H>);

impl<H: SockoptHandler> RawOps for SockoptOps<H> {
    type Raw = b::nf_sockopt_ops;

    unsafe fn register(raw: *mut Self::Raw) -> c_int {
        // SAFETY: the caller's contract is the function's.
        unsafe { b::nf_register_sockopt(raw) }
    }

    unsafe fn unregister(raw: *mut Self::Raw) {
        // SAFETY: the caller's contract is the function's.
        unsafe { b::nf_unregister_sockopt(raw) }
    }
}

/// A claimed slot with its handler published; when dropped, the handler is
/// withdrawn, every call using it has returned, and it is freed.
struct Open<H: 'static> {
    slot: &'static SockoptSlot<H>,
    /// From `KBox::leak`; freed by `drop`.
    published: NonNull<Published<H>>,
}

// SAFETY: `Open` owns the published handler as a `KBox` would (`H: Send + Sync`, as the handler
// trait requires); the rest is a shared static of atomics.
unsafe impl<H: Send + Sync> Send for Open<H> {}
// SAFETY: `&Open` gives no access to anything.
unsafe impl<H: Send + Sync> Sync for Open<H> {}

impl<H: SockoptHandler> Open<H> {
    /// Claims `H::slot()` and publishes `handler` there; `EBUSY` when
    /// another registration of `H` holds it.
    fn publish(handler: H, min: i32) -> Result<Self> {
        let slot = H::slot();
        if slot.claimed.swap(true, Ordering::AcqRel) {
            return Err(EBUSY);
        }
        let published = match KBox::new(Published { handler, min }, GFP_KERNEL) {
            Ok(published) => NonNull::from(KBox::leak(published)),
            Err(e) => {
                slot.claimed.store(false, Ordering::Release);
                return Err(e.into());
            }
        };
        slot.published.store(published.as_ptr(), Ordering::SeqCst);
        Ok(Open { slot, published })
    }
}

impl<H: 'static> Drop for Open<H> {
    fn drop(&mut self) {
        // Withdraw the handler, then wait for the calls that took it: a
        // call counts itself in before it loads the pointer (`Use::enter`),
        // both SeqCst, so it either sees null or is counted here.
        self.slot.published.store(ptr::null_mut(), Ordering::SeqCst);
        while self.slot.in_flight.load(Ordering::SeqCst) != 0 {
            // SAFETY: `msleep` has no memory-safety requirements (called
            // from atomic context it would only warn; a registration is
            // dropped in process context: module init's error path or exit).
            unsafe { bindings::msleep(1) };
        }
        // SAFETY: `published` came from `KBox::leak` (`publish`) and no call can reach it
        // any more: it is withdrawn and no call that took it is left.
        drop(unsafe { KBox::from_raw(self.published.as_ptr()) });
        self.slot.claimed.store(false, Ordering::Release);
    }
}

/// The optnames `[min, min + count)` of `PF_INET`, answered by a handler it
/// owns with the data of the [`PernetRegistration`] it owns.
///
/// Dropping it unregisters the optnames, withdraws the handler and waits
/// for every call still using it (calls that found the optnames just
/// before), then frees the handler and the per-namespace data. The module
/// reference nf_sockopt takes around each call (`owner`) keeps rmmod from
/// starting while a call runs; the wait is what makes dropping the
/// registration safe while the module stays loaded (e.g. when module init
/// fails after registering).
pub(crate) struct SockoptRegistration<H: SockoptHandler> {
    // Fields drop in order.
    _sockopt: Registration<SockoptOps<H>>,
    _open: Open<H>,
    _pernet: PernetRegistration<H::Net>,
}

impl<H: SockoptHandler> SockoptRegistration<H> {
    /// Registers `count` optnames from `min` for set and get, owned by
    /// `module`, answered by `handler` with the data of `pernet`. `EBUSY`
    /// when another module has any of them, or another registration of `H`
    /// exists.
    pub(crate) fn register(
        module: &'static ThisModule,
        min: i32,
        count: i32,
        handler: H,
        pernet: PernetRegistration<H::Net>,
    ) -> Result<Self> {
        let max = min.checked_add(count).ok_or(EINVAL)?;
        if min < 0 || count <= 0 {
            return Err(EINVAL);
        }
        let open = Open::publish(handler, min)?;
        let raw = b::nf_sockopt_ops {
            pf: bindings::PF_INET as u8,
            set_optmin: min,
            set_optmax: max,
            set: Some(set_callback::<H>),
            get_optmin: min,
            get_optmax: max,
            get: Some(get_callback::<H>),
            owner: module.as_ptr(),
            ..Default::default()
        };
        // SAFETY: the callbacks reach the handler and `H::Net` only through a `Use` of what `open`
        // published; `open` and `pernet` are dropped only after the optnames are unregistered and
        // no `Use` is left; `owner` keeps this module's code loaded while a callback runs.
        let sockopt = unsafe { Registration::register(raw) }?;
        Ok(SockoptRegistration {
            _sockopt: sockopt,
            _open: open,
            _pernet: pernet,
        })
    }
}
