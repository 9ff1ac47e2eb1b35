// SPDX-License-Identifier: GPL-2.0

//! Module init and exit, the module parameters, and the glue between the
//! kernel_ext abstractions and nfkv's commands. Safe Rust only.

use crate::codec;
use crate::commands;
use crate::kernel_ext::params::ModuleParams;
use crate::kernel_ext::pernet::{NetRef, PernetData, PernetId, PernetRegistration};
use crate::kernel_ext::sockopt::{
    Caller, GetBuffer, SetRequest, SockoptHandler, SockoptRegistration,
};
use crate::policy;
use crate::table::{Family, Limits, NetTable};
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use kernel::prelude::*;

/// The module's version, shown by `NFKV_SO_GET_INFO` and `modinfo`.
pub(crate) const VERSION: &str = env!("NFKV_VERSION");

// `struct nfkv_info.module_version` is 16 bytes, NUL-terminated.
const _: () = assert!(
    VERSION.len() < 16,
    "the version in Cargo.toml must fit nfkv_info.module_version (15 bytes)"
);

/// optnames below this are the IP layer's own `IP_*` options, which
/// `ip_setsockopt`/`ip_getsockopt` answer before nf_sockopt is asked.
const IP_LAYER_OPTNAMES: core::ops::Range<i32> = 0..64;
/// The multicast routing optnames (`MRT_BASE` 200 up to `MRT_MAX`, with room
/// for new ones), which the IP layer also keeps for itself.
const MRT_OPTNAMES: core::ops::Range<i32> = 200..256;

/// The module parameters, checked once at load.
#[derive(Clone, Copy)]
pub(crate) struct Config {
    pub(crate) optbase: i32,
    pub(crate) limits: Limits,
    /// Bytes shared by the tables of non-initial user namespaces.
    pub(crate) userns_budget: u64,
}

/// The first optname, set at load before the optnames are registered.
static OPTBASE: AtomicI32 = AtomicI32::new(0);
static MAX_VALUE_LEN: AtomicUsize = AtomicUsize::new(0);
static MAX_ENTRIES: AtomicUsize = AtomicUsize::new(0);
static MAX_BYTES: AtomicU64 = AtomicU64::new(0);

impl Config {
    /// Reads and checks the module parameters; a refusal says why in dmesg.
    fn load(module: &'static ThisModule) -> Result<Self> {
        let params = ModuleParams::of(module);
        let get = |name: &core::ffi::CStr| params.uint(name).ok_or(EINVAL);
        let optbase = get(c"optbase")?;
        let max_value_len = get(c"max_value_len")? as usize;
        let max_entries = get(c"max_entries")? as usize;
        let max_bytes = u64::from(get(c"max_bytes_mib")?) << 20;
        let userns_budget = u64::from(get(c"userns_budget_mib")?) << 20;
        let range = codec::cmd::RANGE as i32;
        let optbase = match i32::try_from(optbase) {
            Ok(b) if b.checked_add(range).is_some() => b,
            _ => {
                pr_err!(
                    "optbase={} is out of range 64..{}\n",
                    optbase,
                    i32::MAX - range
                );
                return Err(EINVAL);
            }
        };
        let ours = optbase..optbase + range;
        for (kept, what) in [
            (IP_LAYER_OPTNAMES, "the IP layer's own IP_* options"),
            (MRT_OPTNAMES, "multicast routing (MRT_*)"),
        ] {
            if ours.start < kept.end && kept.start < ours.end {
                pr_err!(
                    "optbase={}: optnames {}..{} overlap {}..{}, which {} answers before nf_sockopt; pick optbase >= 64 outside {}..{}\n",
                    optbase,
                    ours.start,
                    ours.end - 1,
                    kept.start,
                    kept.end - 1,
                    what,
                    MRT_OPTNAMES.start,
                    MRT_OPTNAMES.end - 1
                );
                return Err(EINVAL);
            }
        }
        if max_value_len > codec::VALUE_LEN_CAP {
            pr_err!(
                "max_value_len={} is over the cap of {}\n",
                max_value_len,
                codec::VALUE_LEN_CAP
            );
            return Err(EINVAL);
        }
        if max_entries == 0 || max_entries > u32::MAX as usize {
            pr_err!(
                "max_entries={} is out of range 1..{}\n",
                max_entries,
                u32::MAX
            );
            return Err(EINVAL);
        }
        Ok(Config {
            optbase,
            limits: Limits {
                max_value_len,
                max_entries,
                max_bytes,
            },
            userns_budget,
        })
    }

    /// Makes this the configuration every handler sees.
    fn publish(&self) {
        OPTBASE.store(self.optbase, Ordering::Relaxed);
        MAX_VALUE_LEN.store(self.limits.max_value_len, Ordering::Relaxed);
        MAX_ENTRIES.store(self.limits.max_entries, Ordering::Relaxed);
        MAX_BYTES.store(self.limits.max_bytes, Ordering::Relaxed);
        policy::USERNS_BUDGET.set_limit(self.userns_budget);
    }

    /// The configuration published at load. The registrations that make
    /// handlers reachable happen after `publish`, under kernel locks that
    /// order these reads after its writes.
    pub(crate) fn current() -> Self {
        Config {
            optbase: OPTBASE.load(Ordering::Relaxed),
            limits: Limits {
                max_value_len: MAX_VALUE_LEN.load(Ordering::Relaxed),
                max_entries: MAX_ENTRIES.load(Ordering::Relaxed),
                max_bytes: MAX_BYTES.load(Ordering::Relaxed),
            },
            userns_budget: policy::USERNS_BUDGET.limit(),
        }
    }

    /// The fixed part of `NFKV_SO_GET_INFO`.
    pub(crate) fn info(&self) -> codec::Info {
        let mut module_version = [0u8; 16];
        module_version[..VERSION.len()].copy_from_slice(VERSION.as_bytes());
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

    /// The command offset of `optname`; the kernel only passes optnames of
    /// our range, so this is 0..RANGE.
    fn command(&self, optname: i32) -> u32 {
        optname.wrapping_sub(self.optbase) as u32
    }
}

static NET_ID: PernetId<NetTable> = PernetId::new();

impl PernetData for NetTable {
    fn id() -> &'static PernetId<Self> {
        &NET_ID
    }

    fn init(net: NetRef<'_>) -> impl PinInit<Self, Error> {
        NetTable::new(policy::budget_for(net))
    }
}

/// nfkv's answers to its optnames.
struct Handler;

impl SockoptHandler for Handler {
    type Net = NetTable;

    #[inline]
    fn set(net: &NetTable, caller: Caller<'_>, optname: i32, req: &mut SetRequest<'_>) -> Result {
        let config = Config::current();
        let cmd = config.command(optname);
        let result = if caller.net_admin() {
            commands::set(net, &config.limits, cmd, req)
        } else {
            Err(EPERM)
        };
        net.stats.count(Family::Set, cmd, result.is_ok());
        result
    }

    #[inline]
    fn get(net: &NetTable, caller: Caller<'_>, optname: i32, buf: &GetBuffer<'_>) -> Result<usize> {
        let config = Config::current();
        let cmd = config.command(optname);
        let result = if caller.net_admin() {
            commands::get(net, || config.info(), cmd, buf)
        } else {
            Err(EPERM)
        };
        net.stats.count(Family::Get, cmd, result.is_ok());
        result
    }
}

/// The loaded module: dropping it unregisters the optnames, waits for the
/// calls in flight, then frees every namespace's table.
pub(crate) struct Nfkv {
    _sockopt: SockoptRegistration<Handler>,
}

impl kernel::Module for Nfkv {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let config = Config::load(module)?;
        config.publish();
        let pernet = PernetRegistration::<NetTable>::register().inspect_err(|e| {
            pr_err!(
                "cannot register pernet operations: error {}\n",
                e.to_errno()
            );
        })?;
        let range = codec::cmd::RANGE as i32;
        let last = config.optbase + range - 1;
        let sockopt = SockoptRegistration::<Handler>::register(module, config.optbase, range, pernet)
            .inspect_err(|e| {
                pr_err!(
                    "cannot register PF_INET optnames {}..{} (error {}): another module uses them; load with optbase=N\n",
                    config.optbase,
                    last,
                    e.to_errno()
                );
            })?;
        pr_info!(
            "{} loaded: optnames {}..{}, max_value_len {}, max_entries {}\n",
            VERSION,
            config.optbase,
            last,
            config.limits.max_value_len,
            config.limits.max_entries
        );
        Ok(Nfkv { _sockopt: sockopt })
    }
}

impl Drop for Nfkv {
    fn drop(&mut self) {
        pr_info!("unloading\n");
    }
}
