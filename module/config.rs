// SPDX-License-Identifier: GPL-2.0

//! The module's configuration: its parameters, checked once at load, and
//! what `NFKV_SO_GET_INFO` reports of them. Safe Rust only.

use crate::codec;
use crate::kernel_ext::params::ModuleParams;
use crate::table::Limits;
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

/// The sizes `watch_log_kib` may take.
const WATCH_LOG_KIB: core::ops::RangeInclusive<u32> = 4..=65536;

/// The module parameters, checked once at load.
#[derive(Clone, Copy)]
pub(crate) struct Config {
    pub(crate) optbase: i32,
    pub(crate) limits: Limits,
    /// Bytes shared by the tables of non-initial user namespaces.
    pub(crate) userns_budget: u64,
}

impl Config {
    /// Reads and checks the module parameters; a refusal says why in dmesg.
    pub(crate) fn load(module: &'static ThisModule) -> Result<Self> {
        let params = ModuleParams::of(module);
        let get = |name: &core::ffi::CStr| params.uint(name).ok_or(EINVAL);
        let optbase = get(c"optbase")?;
        let max_value_len = get(c"max_value_len")? as usize;
        let max_entries = get(c"max_entries")? as usize;
        let max_bytes = u64::from(get(c"max_bytes_mib")?) << 20;
        let userns_budget = u64::from(get(c"userns_budget_mib")?) << 20;
        let watch_log_kib = get(c"watch_log_kib")?;
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
        if !WATCH_LOG_KIB.contains(&watch_log_kib) {
            pr_err!(
                "watch_log_kib={} is out of range {}..{}\n",
                watch_log_kib,
                WATCH_LOG_KIB.start(),
                WATCH_LOG_KIB.end()
            );
            return Err(EINVAL);
        }
        Ok(Config {
            optbase,
            limits: Limits {
                max_value_len,
                max_entries,
                max_bytes,
                watch_log: (watch_log_kib as usize) << 10,
            },
            userns_budget,
        })
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
            max_bytes: self.limits.max_bytes,
            budget_size: self.userns_budget,
            ..Default::default()
        }
    }
}
