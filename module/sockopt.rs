// SPDX-License-Identifier: GPL-2.0

//! The unsafe edge of nfkv: module parameters, pernet and nf_sockopt
//! registration (RAII: unregistered on drop), and the two C-ABI handlers,
//! which turn raw kernel arguments into safe values and call [`commands`].

use crate::bindings_nf as nf;
use crate::codec;
use crate::commands::{self, GetBuffer};
use crate::table::{Family, Limits, NetTable, Table, GFP};
use core::ffi::{c_int, c_uint, c_void};
use core::mem::MaybeUninit;
use core::ptr;
use kernel::bindings;
use kernel::error::to_result;
use kernel::prelude::*;
use kernel::types::Opaque;

/// The module parameters, validated.
#[derive(Clone, Copy)]
pub(crate) struct Params {
    pub(crate) optbase: i32,
    pub(crate) limits: Limits,
}

/// Reads the module parameters.
pub(crate) fn params() -> Params {
    // SAFETY: the parameters are plain `unsigned int`s defined in shim.c with
    // permission 0444: the module loader writes them before `init` runs and
    // nothing writes them afterwards, so these reads cannot race.
    let (optbase, max_value_len, max_entries) = unsafe {
        (
            nf::nfkv_param_optbase,
            nf::nfkv_param_max_value_len,
            nf::nfkv_param_max_entries,
        )
    };
    Params {
        optbase: optbase as i32,
        limits: Limits {
            max_value_len: max_value_len as usize,
            max_entries: max_entries as usize,
        },
    }
}

impl Params {
    /// Refuses parameter values the ABI cannot express.
    pub(crate) fn check(&self) -> Result {
        let range = codec::cmd::RANGE as i32;
        if self.optbase <= 0 || self.optbase.checked_add(range).is_none() {
            pr_err!(
                "optbase={} is out of range 1..{}\n",
                self.optbase,
                i32::MAX - range
            );
            return Err(EINVAL);
        }
        if self.limits.max_value_len > codec::VALUE_LEN_CAP {
            pr_err!(
                "max_value_len={} is over the cap of {}\n",
                self.limits.max_value_len,
                codec::VALUE_LEN_CAP
            );
            return Err(EINVAL);
        }
        if self.limits.max_entries == 0 || self.limits.max_entries > u32::MAX as usize {
            pr_err!(
                "max_entries={} is out of range 1..{}\n",
                self.limits.max_entries,
                u32::MAX
            );
            return Err(EINVAL);
        }
        Ok(())
    }

    /// The fixed part of `NFKV_SO_GET_INFO`.
    fn info(&self) -> codec::Info {
        let mut module_version = [0u8; 16];
        let v = crate::VERSION.as_bytes();
        module_version[..v.len()].copy_from_slice(v);
        codec::Info {
            abi_version: crate::uapi::NFKV_ABI_VERSION,
            optbase: self.optbase as u32,
            max_key_len: codec::MAX_KEY_LEN as u32,
            max_value_len: self.limits.max_value_len as u32,
            max_entries: self.limits.max_entries as u32,
            max_batch_ops: codec::MAX_BATCH_OPS as u32,
            module_version,
            ..Default::default()
        }
    }
}

/// Set requests up to this size are copied onto the stack.
const SMALL_REQUEST: usize = 512;

/// The table of `sk`'s network namespace.
///
/// # Safety
///
/// `sk` must point to a live socket.
unsafe fn net_table<'a>(sk: *const bindings::sock) -> Option<&'a NetTable> {
    // `net_exit` frees the table only once the namespace is dying, after every
    // user socket in it (each holds a reference on the namespace) is gone.
    // SAFETY: `sk` is live (caller), so its namespace is alive and its pernet
    // slot holds what `net_init` stored: null or a pinned `NetTable`.
    unsafe { (*nf::nfkv_sock_net_slot(sk)).cast::<NetTable>().as_ref() }
}

/// The command offset of `optval`. The kernel only passes optnames inside
/// our registered range, so this is 0..RANGE.
fn command(optval: c_int) -> u32 {
    optval.wrapping_sub(params().optbase) as u32
}

/// `nf_sockopt_ops.set`: `setsockopt(fd, IPPROTO_IP, optval, arg, len)`.
///
/// # Safety
///
/// Called by nf_setsockopt with a live socket and the caller's `sockptr_t`
/// of `len` bytes.
unsafe extern "C" fn set_handler(
    sk: *mut bindings::sock,
    optval: c_int,
    arg: bindings::sockptr_t,
    len: c_uint,
) -> c_int {
    // SAFETY: `sk` is live for the duration of the call (function contract).
    let Some(net) = (unsafe { net_table(sk) }) else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    let cmd = command(optval);
    let result = (|| -> Result {
        // SAFETY: `sk` is a live socket (function contract).
        if !unsafe { nf::nfkv_sock_net_admin(sk) } {
            return Err(EPERM);
        }
        let len = len as usize;
        if len > codec::MAX_REQUEST_LEN {
            return Err(E2BIG);
        }
        // Small requests (every PUT/DEL of a short value) stay on the stack;
        // neither buffer is zeroed first, the copy fills it.
        let mut small = MaybeUninit::<[u8; SMALL_REQUEST]>::uninit();
        let mut large: KVVec<u8>;
        let dst: *mut u8 = if len <= SMALL_REQUEST {
            small.as_mut_ptr().cast()
        } else {
            large = KVVec::with_capacity(len, GFP)?;
            large.as_mut_ptr()
        };
        // The shim copies with copy_from_sockptr(): checked user access for
        // user pointers; kernel pointers are valid for `len` bytes by
        // nf_setsockopt's contract.
        // SAFETY: `dst` has room for `len` bytes (stack buffer or capacity);
        // `arg` is the caller's buffer of `len` bytes.
        to_result(unsafe { nf::nfkv_copy_from_sockptr(dst.cast(), arg, len) })?;
        // SAFETY: the copy succeeded, so the first `len` bytes at `dst` are
        // initialised, and they stay borrowed from `small` or `large` only.
        let req = unsafe { core::slice::from_raw_parts(dst, len) };
        commands::set(net, &params().limits, cmd, req)
    })();
    net.stats.count(Family::Set, cmd, result.is_ok());
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `nf_sockopt_ops.get`: `getsockopt(fd, IPPROTO_IP, optval, user, &len)`.
///
/// # Safety
///
/// Called by nf_getsockopt with a live socket, the caller's user buffer and
/// a pointer to a kernel `int` holding its length.
unsafe extern "C" fn get_handler(
    sk: *mut bindings::sock,
    optval: c_int,
    user: *mut c_void,
    len: *mut c_int,
) -> c_int {
    // SAFETY: `sk` is live for the duration of the call (function contract).
    let Some(net) = (unsafe { net_table(sk) }) else {
        return -(bindings::ENOPROTOOPT as c_int);
    };
    let cmd = command(optval);
    // SAFETY: `len` points to ip_getsockopt's local `int` (function contract).
    let in_len = unsafe { *len };
    let buf = GetBuffer {
        ptr: user as usize,
        len: in_len,
    };
    // SAFETY: `sk` is a live socket (function contract).
    let result = if unsafe { nf::nfkv_sock_net_admin(sk) } {
        commands::get(net, &params().info(), cmd, &buf)
    } else {
        Err(EPERM)
    };
    net.stats.count(Family::Get, cmd, result.is_ok());
    match result {
        Ok(reply_len) => {
            // SAFETY: as above; the kernel copies it back to the caller's
            // optlen because we return 0. Replies never exceed `buf.len`.
            unsafe { *len = reply_len as c_int };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// pernet `init`: gives a new network namespace its empty table.
///
/// # Safety
///
/// Called by the pernet core with a namespace being set up, whose slot of
/// `ops.size` (one pointer) bytes is allocated and zeroed.
unsafe extern "C" fn net_init(net: *mut bindings::net) -> c_int {
    let table = match Table::new().and_then(|t| KBox::pin_init(NetTable::new(t), GFP_KERNEL)) {
        Ok(table) => table,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: the table stays pinned: the raw pointer is only turned back
    // into a pinned box by `net_exit`, and nothing moves out of it.
    let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(table) });
    // SAFETY: `net` is being initialised and its slot is valid (contract).
    unsafe { *nf::nfkv_net_slot(net) = raw.cast() };
    0
}

/// pernet `exit`: frees a dying namespace's table.
///
/// # Safety
///
/// Called by the pernet core once per namespace that `net_init` set up, when
/// no socket of it can reach our handlers any more.
unsafe extern "C" fn net_exit(net: *mut bindings::net) {
    // SAFETY: the slot is valid until the pernet core frees it after `exit`.
    let raw = unsafe { ptr::replace(nf::nfkv_net_slot(net), ptr::null_mut()) }.cast::<NetTable>();
    if !raw.is_null() {
        // SAFETY: `raw` came from `KBox::into_raw` of a pinned box in
        // `net_init` and was just taken out of the slot, so it is unique.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(raw)) });
    }
}

/// nfkv's pernet registration: one [`NetTable`] per network namespace.
pub(crate) struct PernetRegistration {
    ops: KBox<Opaque<nf::pernet_operations>>,
}

impl PernetRegistration {
    /// Registers the pernet operations; every existing namespace gets a table.
    pub(crate) fn register() -> Result<Self> {
        let ops = KBox::new(
            Opaque::new(nf::pernet_operations {
                init: Some(net_init),
                exit: Some(net_exit),
                id: ptr::addr_of_mut!(nf::nfkv_net_id),
                size: core::mem::size_of::<*mut NetTable>(),
                ..Default::default()
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `ops` is fully initialised and stays at its heap address
        // until `drop` unregisters it; the kernel owns its list links meanwhile.
        to_result(unsafe { nf::register_pernet_subsys(ops.get()) })?;
        Ok(PernetRegistration { ops })
    }
}

impl Drop for PernetRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`; this frees every namespace's table.
        unsafe { nf::unregister_pernet_subsys(self.ops.get()) };
    }
}

// SAFETY: the registration only holds the ops the kernel uses; no method
// touches them except `drop`, which the kernel serialises with its own lock.
unsafe impl Sync for PernetRegistration {}
// SAFETY: as above; dropping it from another thread is fine.
unsafe impl Send for PernetRegistration {}

/// nfkv's nf_sockopt registration: the optname range on PF_INET.
pub(crate) struct SockoptRegistration {
    ops: KBox<Opaque<nf::nf_sockopt_ops>>,
}

impl SockoptRegistration {
    /// Registers the range `[optbase, optbase + RANGE)` for set and get.
    pub(crate) fn register(module: &'static ThisModule, optbase: i32) -> Result<Self> {
        let optmax = optbase + codec::cmd::RANGE as i32;
        let ops = KBox::new(
            Opaque::new(nf::nf_sockopt_ops {
                pf: bindings::PF_INET as u8,
                set_optmin: optbase,
                set_optmax: optmax,
                set: Some(set_handler),
                get_optmin: optbase,
                get_optmax: optmax,
                get: Some(get_handler),
                owner: module.as_ptr(),
                ..Default::default()
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `ops` is fully initialised and stays at its heap address
        // until `drop` unregisters it; the handlers are sound for any input,
        // and `owner` keeps the module loaded while one runs.
        to_result(unsafe { nf::nf_register_sockopt(ops.get()) })?;
        Ok(SockoptRegistration { ops })
    }
}

impl Drop for SockoptRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`.
        unsafe { nf::nf_unregister_sockopt(self.ops.get()) };
    }
}

// SAFETY: as for `PernetRegistration`.
unsafe impl Sync for SockoptRegistration {}
// SAFETY: as for `PernetRegistration`.
unsafe impl Send for SockoptRegistration {}
