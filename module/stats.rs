// SPDX-License-Identifier: GPL-2.0

//! Per-command counters of each namespace (`NFKV_SO_GET_STATS`). Safe Rust
//! only.

use crate::codec;
use crate::kernel_ext::percpu::PerCpuCounters;
use kernel::error::Result;

/// Counters: an ok and a failed one per command of both families.
const COUNTERS: usize = 2 * (codec::SET_COMMANDS + codec::GET_COMMANDS);

/// Per-command outcome counters, per CPU (a GET from any CPU counts itself
/// without touching a line another CPU writes).
pub(crate) struct Stats {
    counters: PerCpuCounters<COUNTERS>,
}

/// Which of the two command families a counter belongs to.
#[derive(Clone, Copy)]
pub(crate) enum Family {
    Set,
    Get,
}

impl Stats {
    pub(crate) fn new() -> Result<Self> {
        Ok(Stats {
            counters: PerCpuCounters::new()?,
        })
    }

    /// Counts one call of command `cmd` (an offset) of `family`; offsets
    /// that are no command are not counted.
    pub(crate) fn count(&self, family: Family, cmd: u32, ok: bool) {
        let (first, commands) = match family {
            Family::Set => (0, codec::SET_COMMANDS),
            Family::Get => (codec::SET_COMMANDS, codec::GET_COMMANDS),
        };
        if (cmd as usize) < commands {
            self.counters
                .add(2 * (first + cmd as usize) + usize::from(!ok), 1);
        }
    }

    /// A snapshot for `NFKV_SO_GET_STATS`.
    pub(crate) fn snapshot(&self) -> codec::Stats {
        let mut s = codec::Stats::default();
        for (i, c) in Iterator::chain(s.set.iter_mut(), s.get.iter_mut()).enumerate() {
            c.ok = self.counters.sum(2 * i);
            c.failed = self.counters.sum(2 * i + 1);
        }
        s
    }
}
