// SPDX-License-Identifier: GPL-2.0

//! Module parameters declared in C (`module_param_named(..., uint, 0444)`;
//! 6.12's `module!` cannot declare them), read safely from the module's own
//! `struct kernel_param` table.

use super::compat;
use core::ffi::{c_uint, CStr};
use kernel::bindings;
use kernel::prelude::*;

/// The parameters of one module.
pub(crate) struct ModuleParams {
    module: &'static ThisModule,
}

impl ModuleParams {
    pub(crate) fn of(module: &'static ThisModule) -> Self {
        ModuleParams { module }
    }

    /// The value of the `uint` parameter `name`, or `None` when the module
    /// has no such parameter, or it is not a read-only `uint`.
    pub(crate) fn uint(&self, name: &CStr) -> Option<u32> {
        let module = self.module.as_ptr();
        if module.is_null() {
            return None;
        }
        // SAFETY: `module` is this module's `struct module`, live while its code runs. Only the
        // two fields are read, through the raw pointer: the kernel writes other fields (state,
        // reference counts) concurrently, so no reference to the whole struct is made.
        let (kp, num_kp) = unsafe { ((*module).kp, (*module).num_kp) };
        if kp.is_null() {
            return None;
        }
        // SAFETY: `kp`/`num_kp` describe the module's parameter array, which the loader set up
        // before `init` and which lives, unchanged, as long as the module.
        let params = unsafe { core::slice::from_raw_parts(kp, num_kp as usize) };
        let param = params.iter().find(|p| {
            // SAFETY: every parameter has a NUL-terminated static name.
            !p.name.is_null() && unsafe { compat::c_str_bytes(p.name.cast()) } == name.to_bytes()
        })?;
        // Only read-only parameters: nothing writes them after load.
        let writable = (bindings::S_IWUSR | bindings::S_IWGRP | bindings::S_IWOTH) as u16;
        let uint_ops = core::ptr::addr_of!(bindings::param_ops_uint);
        if param.ops != uint_ops || param.perm & writable != 0 {
            return None;
        }
        // SAFETY: a parameter with `param_ops_uint` has `arg` pointing to its
        // `unsigned int`, which the loader wrote before `init` and nothing
        // writes afterwards (read-only, checked above).
        Some(unsafe { *param.__bindgen_anon_1.arg.cast::<c_uint>() })
    }
}
