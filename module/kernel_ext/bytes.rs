// SPDX-License-Identifier: GPL-2.0

//! [`ByteSource`]: something that fills uninitialised memory with bytes (a
//! slice, a caller's request), so a new object can be filled straight from
//! where its bytes are without zeroing it first.

use core::mem::MaybeUninit;
use core::ptr;
use kernel::prelude::*;

/// Where the bytes filling uninitialised memory come from.
///
/// # Safety
///
/// When [`ByteSource::write_to`] returns `Ok`, it has written every byte of
/// `dst`: callers read `dst` as initialised bytes after it.
pub(crate) unsafe trait ByteSource {
    /// Writes exactly `dst.len()` bytes into `dst`, or fails.
    fn write_to(&mut self, dst: &mut [MaybeUninit<u8>]) -> Result;
}

/// Bytes already in memory, written out whole.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

// SAFETY: `write_to` writes `dst` whole or refuses it.
unsafe impl ByteSource for Bytes<'_> {
    fn write_to(&mut self, dst: &mut [MaybeUninit<u8>]) -> Result {
        let src = self.0;
        if dst.len() != src.len() {
            return Err(EINVAL);
        }
        // SAFETY: `dst` and `src` have the same length (checked above) and do not overlap (`dst`
        // is borrowed mutably); `MaybeUninit<u8>` has `u8`'s layout.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len()) };
        Ok(())
    }
}
