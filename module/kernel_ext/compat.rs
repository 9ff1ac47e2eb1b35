// SPDX-License-Identifier: GPL-2.0

//! Every difference between the kernel Rust APIs that nfkv builds against
//! (Linux 6.12 LTS and 7.3), in one place. Each `cfg` is set by Kbuild for
//! the releases that have the newer API (from the first release that has it,
//! so versions in between work too); the comment says what 6.12 and 7.3 have.

use kernel::prelude::*;
use kernel::uaccess::UserPtr;

/// A user-space address as `uaccess` wants it.
///
/// 6.12: `UserPtr` is `usize`. 7.3: a newtype built with `from_addr`.
pub(crate) fn user_ptr(addr: usize) -> UserPtr {
    #[cfg(kext_userptr_struct)]
    {
        UserPtr::from_addr(addr)
    }
    #[cfg(not(kext_userptr_struct))]
    {
        addr
    }
}

/// Initialises `slot` with `init` (the raw step under `KBox::pin_init` and
/// friends, for memory the kernel allocated).
///
/// 6.12: `PinInit::__pinned_init`. 7.3: the method is `PinInit::__init`.
///
/// # Safety
///
/// `PinInit`'s: `slot` is valid for a `T` and uninitialised, it is not
/// touched but to free it when this fails, and it never moves afterwards.
pub(crate) unsafe fn pin_init_at<T, E>(init: impl PinInit<T, E>, slot: *mut T) -> Result<(), E> {
    #[cfg(kext_pin_init_merged)]
    // SAFETY: the caller's contract is `__init`'s.
    let r = unsafe { init.__init(slot) };
    #[cfg(not(kext_pin_init_merged))]
    // SAFETY: the caller's contract is `__pinned_init`'s.
    let r = unsafe { init.__pinned_init(slot) };
    r
}

/// The bytes (without the NUL) of the C string at `ptr`.
///
/// 6.12: `kernel::str::CStr` is the kernel's own type, with an inherent
/// `from_char_ptr`. 7.3: `kernel::str::CStr` is `core::ffi::CStr` and the
/// kernel's clippy wants `CStrExt::from_char_ptr` (its `char` is unsigned)
/// instead of `core::ffi::CStr::from_ptr`.
///
/// # Safety
///
/// `ptr` points to a NUL-terminated string that is valid and unchanged for `'a`.
pub(crate) unsafe fn c_str_bytes<'a>(ptr: *const u8) -> &'a [u8] {
    #[cfg(kext_cstr_ext)]
    // SAFETY: the caller's contract is `from_char_ptr`'s.
    let s = unsafe { <kernel::str::CStr as kernel::str::CStrExt>::from_char_ptr(ptr.cast()) }
        .to_bytes();
    #[cfg(not(kext_cstr_ext))]
    // SAFETY: the caller's contract is `from_char_ptr`'s.
    let s = unsafe { kernel::str::CStr::from_char_ptr(ptr.cast()) }.as_bytes();
    s
}

/// `kernel::module!` with one author.
///
/// 6.12: `author: "..."`. 7.3: `authors: ["..."]` (several allowed).
#[cfg(kext_module_authors)]
macro_rules! kext_module {
    (type: $t:ident, name: $name:tt, author: $author:tt, description: $d:tt, license: $l:tt $(,)?) => {
        ::kernel::prelude::module! { type: $t, name: $name, authors: [$author], description: $d, license: $l, }
    };
}
#[cfg(not(kext_module_authors))]
macro_rules! kext_module {
    (type: $t:ident, name: $name:tt, author: $author:tt, description: $d:tt, license: $l:tt $(,)?) => {
        ::kernel::prelude::module! { type: $t, name: $name, author: $author, description: $d, license: $l, }
    };
}
pub(crate) use kext_module;
