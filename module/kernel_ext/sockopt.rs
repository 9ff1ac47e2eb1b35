// SPDX-License-Identifier: GPL-2.0

//! nf_sockopt: `setsockopt`/`getsockopt` optnames on a protocol family,
//! answered by a [`SockoptHandler`] with the caller's namespace's data.
//!
//! The kernel calls the handlers with no context pointer and without its own
//! lock held, from any task that has a socket of the family; it keeps the
//! owning module loaded while one runs. The handlers here find the
//! namespace's data through [`PernetData`], and a [`SockoptRegistration`] owns
//! the [`PernetRegistration`] of that data so the data outlives every call.

use super::bindings as b;
use super::compat;
use super::pernet::{self, NetRef, PernetData, PernetRegistration};
use super::rbtree::EntrySource;
use super::registration::{RawOps, Registration};
use core::ffi::{c_int, c_uint, c_void};
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
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
            // SAFETY: `dst` has room for `n` bytes (caller); `_copy_from_user` checks the user
            // range (`access_ok`) and survives faults, zeroing what it could not copy.
            let left = unsafe {
                bindings::_copy_from_user(dst.cast(), src.wrapping_add(self.pos).cast(), n)
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
unsafe impl EntrySource for SetRequest<'_> {
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
    /// The caller's `optlen` (the socket layer refuses negative ones).
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

/// Answers the optnames of a [`SockoptRegistration`].
pub(crate) trait SockoptHandler: 'static {
    /// What each network namespace holds for the handler.
    type Net: PernetData;

    /// `setsockopt(fd, level, optname, req, len)`: 0 or an errno.
    fn set(data: &Self::Net, caller: Caller<'_>, optname: i32, req: &mut SetRequest<'_>) -> Result;

    /// `getsockopt(fd, level, optname, buf, &len)`: the reply's length (at
    /// most `buf.len()`; the kernel reports it back as `optlen`) or an errno.
    fn get(
        data: &Self::Net,
        caller: Caller<'_>,
        optname: i32,
        buf: &GetBuffer<'_>,
    ) -> Result<usize>;
}

/// Marks a callback as using `T` until dropped; see [`SockoptRegistration`].
struct Use<T: PernetData>(PhantomData<T>);

impl<T: PernetData> Use<T> {
    /// `None` once the registration is being torn down.
    fn enter() -> Option<Self> {
        let id = T::id();
        id.in_flight.fetch_add(1, Ordering::SeqCst);
        if id.open.load(Ordering::SeqCst) {
            Some(Use(PhantomData))
        } else {
            id.in_flight.fetch_sub(1, Ordering::SeqCst);
            None
        }
    }
}

impl<T: PernetData> Drop for Use<T> {
    fn drop(&mut self) {
        T::id().in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The handler's data for the caller's namespace, while `_use` is held.
///
/// # Safety
///
/// `sk` is a live socket.
unsafe fn caller_data<'a, H: SockoptHandler>(
    sk: *mut bindings::sock,
    _use: &'a Use<H::Net>,
) -> Option<(&'a H::Net, Caller<'a>)> {
    // SAFETY: `sk` is live (caller), and so is its namespace, which every
    // socket holds a reference on.
    let net = NonNull::new(unsafe { b::kext_sock_net(sk) })?;
    // SAFETY: as above, for the duration of the call `'a` is bound to.
    let net = unsafe { NetRef::from_raw(net) };
    // SAFETY: while a `Use` is held the registration, and with it the
    // `PernetRegistration` of `H::Net`, stays alive (see `Drop` below).
    let data = unsafe { pernet::data::<H::Net>(net) }?;
    Some((data, Caller { net }))
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
    let Some(guard) = Use::<H::Net>::enter() else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    // SAFETY: `sk` is live for the call (contract).
    let Some((data, caller)) = (unsafe { caller_data::<H>(sk, &guard) }) else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    let mut req = SetRequest {
        arg,
        len: len as usize,
        pos: 0,
        _call: PhantomData,
    };
    match H::set(data, caller, optval, &mut req) {
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
    let Some(guard) = Use::<H::Net>::enter() else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    // SAFETY: `sk` is live for the call (contract).
    let Some((data, caller)) = (unsafe { caller_data::<H>(sk, &guard) }) else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    // SAFETY: `len` points to nf_getsockopt's caller's local `int` (contract).
    let in_len = unsafe { *len };
    let buf = GetBuffer {
        ptr: user as usize,
        len: in_len,
        _call: PhantomData,
    };
    match H::get(data, caller, optval, &buf) {
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

/// The optnames `[min, min + count)` of `PF_INET` answered by `H`; when
/// dropped, no call is left running and `H`'s per-namespace data goes too.
pub(crate) struct SockoptRegistration<H: SockoptHandler> {
    // Fields drop in order: the optnames first, then (after `Drop::drop` has
    // waited for the calls in flight) the per-namespace data.
    _sockopt: Registration<SockoptOps<H>>,
    _pernet: PernetRegistration<H::Net>,
}

impl<H: SockoptHandler> SockoptRegistration<H> {
    /// Registers `count` optnames from `min` for set and get, owned by
    /// `module`, answered with the data of `pernet`. `EBUSY` when another
    /// module has any of them.
    pub(crate) fn register(
        module: &'static ThisModule,
        min: i32,
        count: i32,
        pernet: PernetRegistration<H::Net>,
    ) -> Result<Self> {
        let max = min.checked_add(count).ok_or(EINVAL)?;
        if min < 0 || count <= 0 {
            return Err(EINVAL);
        }
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
        H::Net::id().open.store(true, Ordering::SeqCst);
        // SAFETY: the callbacks are sound for any arguments nf_sockopt passes: they reach
        // `H::Net` only while `open` is set and the `PernetRegistration` in `self` lives
        // (`Drop` waits for them); `owner` keeps this module's code loaded while one runs.
        let sockopt = unsafe { Registration::register(raw) };
        match sockopt {
            Ok(sockopt) => Ok(SockoptRegistration {
                _sockopt: sockopt,
                _pernet: pernet,
            }),
            Err(e) => {
                H::Net::id().open.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

impl<H: SockoptHandler> Drop for SockoptRegistration<H> {
    fn drop(&mut self) {
        // A caller may have found the ops before they are unregistered (the
        // fields, after this) and still be on its way in: close the door,
        // then wait for those inside. `Use::enter` checks `open` after
        // counting itself in, both SeqCst, so every caller either sees the
        // door closed or is counted here.
        let id = H::Net::id();
        id.open.store(false, Ordering::SeqCst);
        while id.in_flight.load(Ordering::SeqCst) != 0 {
            // SAFETY: `msleep` has no memory-safety requirements (called
            // from atomic context it would only warn; drop of a registration
            // runs in process context: module init's error path or exit).
            unsafe { bindings::msleep(1) };
        }
    }
}
