// SPDX-License-Identifier: GPL-2.0

//! Per-command counters of each namespace (`NFKV_SO_GET_STATS`). Safe Rust
//! only.

use crate::codec;
use core::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// Per-command outcome counters.
pub(crate) struct Stats {
    counters: [[AtomicU64; 2]; codec::SET_COMMANDS + codec::GET_COMMANDS],
}

/// Which of the two command families a counter belongs to.
#[derive(Clone, Copy)]
pub(crate) enum Family {
    Set,
    Get,
}

impl Stats {
    pub(crate) const fn new() -> Self {
        Stats {
            counters: [const { [AtomicU64::new(0), AtomicU64::new(0)] };
                codec::SET_COMMANDS + codec::GET_COMMANDS],
        }
    }

    /// Counts one call of command `cmd` (an offset) of `family`; offsets
    /// that are no command are not counted.
    pub(crate) fn count(&self, family: Family, cmd: u32, ok: bool) {
        let (index, commands) = match family {
            Family::Set => (cmd as usize, codec::SET_COMMANDS),
            Family::Get => (codec::SET_COMMANDS + cmd as usize, codec::GET_COMMANDS),
        };
        if (cmd as usize) < commands {
            self.counters[index][usize::from(!ok)].fetch_add(1, AtomicOrdering::Relaxed);
        }
    }

    /// A snapshot for `NFKV_SO_GET_STATS`.
    pub(crate) fn snapshot(&self) -> codec::Stats {
        let mut s = codec::Stats::default();
        for (c, src) in Iterator::chain(s.set.iter_mut(), s.get.iter_mut()).zip(&self.counters) {
            c.ok = src[0].load(AtomicOrdering::Relaxed);
            c.failed = src[1].load(AtomicOrdering::Relaxed);
        }
        s
    }
}
