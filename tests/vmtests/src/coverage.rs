//! Coverage-guided fuzzing of the set and get handlers, with the kernel's
//! KCOV. The debug test kernels have `CONFIG_KCOV` without
//! `KCOV_INSTRUMENT_ALL`, and the module's Kbuild instruments nfkv.ko (C and
//! Rust) on such a kernel: every edge of the module calls
//! `__sanitizer_cov_trace_pc`, and KCOV records where each call returns to,
//! for the calls of the thread that enabled it. The module's edges are read
//! from nfkv.ko itself (each relocation against that function), placed at
//! the addresses `/sys/module/nfkv/sections` gives (the debug kernels have
//! no KASLR, so KCOV's PCs are those addresses).
//!
//! An input is a few calls (set or get, command, reply buffer size,
//! request bytes) run against an emptied table, with the module loaded
//! with small limits ([`LIMITS`]) and [`seeds`] replayed first. The corpus in
//! `tests/fuzz/corpus` (one input a file) is replayed by `make check`: each
//! call must end as the ABI allows (the errnos of [`crate::fuzz`]), and the
//! corpus must reach at least [`COVERAGE_FLOOR_PERCENT`] of the module's
//! edges, in the initial namespace and in an unprivileged user's namespace
//! (whose writes are charged to the shared budget). `make fuzz` grows the
//! corpus: it mutates inputs (structure-aware: valid requests of each
//! command, boundary lengths, spliced calls) and keeps each input that
//! reaches an edge none reached before. Besides the corpus, the run traces
//! what no input can carry: kernel-pointer requests ([`kernel_callers`]),
//! a request over the cap ([`oversized_request`]), calls without
//! CAP_NET_ADMIN and a namespace's creation ([`replay_budgeted`]), races
//! on one key ([`races`]), negative reply lengths ([`negative_lengths`])
//! and a LIST page that cannot be allocated ([`list_page_fails`]).
//!
//! `NFKV_COVERAGE_SECONDS` (default 0: replay only) bounds the growing,
//! `NFKV_COVERAGE_SEED` replays it, `NFKV_CORPUS` names the corpus
//! directory, and `NFKV_COVERAGE_REPORT` names a file that gets one line per
//! function of the module: edges reached, edges, symbol.

use crate::core::enter_user_and_net_namespace_as_nobody;
use crate::ensure;
use crate::fuzz::{errno_allowed, mutate, valid_request};
use crate::harness::*;
use nfkv::Nfkv;
use nfkv_abi::classifier::{self, Action, Classifier, Family, Match, PacketKey};
use nfkv_abi::codec::{self, cmd, ListRequest, Op, OpKind};
use nfkv_abi::uapi;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    crate::tests![corpus_reaches_the_handlers]
}

/// The share of the module's edges (those past loading, namespace
/// teardown and delayed work) the corpus must reach: what it reached when
/// it was grown (44.5% of 3,146 with classifiers, whose packet path runs
/// mostly in softirq, which KCOV does not trace: the corpus reaches the
/// output hook only; before them 45.3% of 1,936), less a margin for races
/// that reach an edge or not and for code that moves edges between
/// functions. With expiry (3,712 edges), seeded but not grown again,
/// 42.1-42.2%; with watch (4,249 edges), seeded but not grown again, 41.0%
/// (one run: 1,741 edges).
const COVERAGE_FLOOR_PERCENT: f64 = 40.5;

/// Calls of one input at most.
const MAX_CALLS: usize = 12;

/// The module's parameters for the run: limits a few calls can reach, so
/// that the refusals of a full table (`ENOSPC`), of its bytes (`EFBIG`) and
/// of the shared budget (`EDQUOT`, in the unprivileged replay) are edges a
/// fuzzer finds; values up to the largest `max_value_len`.
/// A change log of the smallest size, which a seed's few writes overflow
/// (its gap answers and the wrapping of its rings).
const LIMITS: &str =
    "max_value_len=65536 max_entries=16 max_bytes_mib=1 userns_budget_mib=1 watch_log_kib=4";

/// The largest value [`LIMITS`] allows.
const MAX_VALUE_LEN: usize = 65536;

/// Bytes of a reply buffer, and of a request, at most.
const MAX_BUFFER: usize = (1 << 20) + 4096;

// <linux/kcov.h>
const KCOV_INIT_TRACE: libc::c_ulong = 0x8008_6301; // _IOR('c', 1, unsigned long)
const KCOV_ENABLE: libc::c_ulong = 0x6364; // _IO('c', 100)
const KCOV_DISABLE: libc::c_ulong = 0x6365; // _IO('c', 101)
const KCOV_TRACE_PC: libc::c_ulong = 0;

/// PCs one call may record (KCOV drops those past the end).
const KCOV_WORDS: usize = 1 << 20;

/// KCOV enabled for the calling thread; the PCs of one call at a time.
struct Kcov {
    fd: OwnedFd,
    area: *mut u64,
}

impl Kcov {
    /// `None` when the kernel has no KCOV.
    fn open() -> Result<Option<Kcov>, String> {
        let path = c"/sys/kernel/debug/kcov";
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(format!("open {path:?}: {e}")),
            };
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let bytes = KCOV_WORDS * 8;
        // SAFETY: KCOV's ioctls on its own descriptor; the mapping is
        // checked before use and unmapped by Drop.
        let area = unsafe {
            if libc::ioctl(fd.as_raw_fd(), KCOV_INIT_TRACE, KCOV_WORDS as libc::c_ulong) != 0 {
                return Err(format!("KCOV_INIT_TRACE: {}", io::Error::last_os_error()));
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            );
            if p == libc::MAP_FAILED {
                return Err(format!("mmap kcov: {}", io::Error::last_os_error()));
            }
            if libc::ioctl(fd.as_raw_fd(), KCOV_ENABLE, KCOV_TRACE_PC) != 0 {
                let e = io::Error::last_os_error();
                libc::munmap(p, bytes);
                return Err(format!("KCOV_ENABLE: {e}"));
            }
            p.cast::<u64>()
        };
        Ok(Some(Kcov { fd, area }))
    }

    /// Runs `f` and passes the PCs it reached to `each`.
    fn collect<T>(&self, f: impl FnOnce() -> T, mut each: impl FnMut(u64)) -> T {
        // SAFETY: `area` maps KCOV_WORDS words; word 0 is the count, which
        // only this thread's system calls move.
        unsafe { std::ptr::write_volatile(self.area, 0) };
        let r = f();
        // SAFETY: as above; KCOV never counts past the mapping.
        let n = unsafe { std::ptr::read_volatile(self.area) } as usize;
        for i in 1..=n.min(KCOV_WORDS - 1) {
            // SAFETY: inside the mapping.
            each(unsafe { std::ptr::read_volatile(self.area.add(i)) });
        }
        r
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        // SAFETY: our descriptor and mapping, unused after this.
        unsafe {
            libc::ioctl(self.fd.as_raw_fd(), KCOV_DISABLE, 0);
            libc::munmap(self.area.cast(), KCOV_WORDS * 8);
        }
    }
}

/// One edge of the module: where its `__sanitizer_cov_trace_pc` call
/// returns to.
struct Site {
    section: String,
    offset: u64,
    function: String,
    /// In a global function nothing refers to.
    uncalled: bool,
}

/// Every edge of the loaded module, by the PC KCOV reports for it.
struct Sites {
    sites: Vec<Site>,
    by_pc: HashMap<u64, usize>,
    /// Sites no request can reach: those of insmod and rmmod
    /// (`.init.text`, `.exit.text`), and those of global functions nothing
    /// in the module refers to (out-of-line copies of functions every
    /// caller inlined, kept because they are global).
    unreachable: Vec<bool>,
    /// How many of those are the uncalled copies'.
    uncalled: usize,
    /// How many are of the namespace teardown and delayed work ([`cleanup_worker_only`]).
    worker: usize,
}

fn rd<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], String> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("nfkv.ko: truncated at {at}"))
}
fn u16_at(b: &[u8], at: usize) -> Result<u64, String> {
    Ok(u64::from(u16::from_le_bytes(rd(b, at)?)))
}
fn u32_at(b: &[u8], at: usize) -> Result<u64, String> {
    Ok(u64::from(u32::from_le_bytes(rd(b, at)?)))
}
fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    Ok(u64::from_le_bytes(rd(b, at)?))
}
fn cstr_at(b: &[u8], at: usize) -> String {
    let s = b.get(at..).unwrap_or_default();
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

/// A section header of an ELF64 file.
struct Shdr {
    name: String,
    kind: u64,
    flags: u64,
    offset: u64,
    size: u64,
    link: u64,
    info: u64,
}

const SHT_SYMTAB: u64 = 2;
const SHT_RELA: u64 = 4;
const SHF_EXECINSTR: u64 = 4;
const STT_FUNC: u8 = 2;
const STB_LOCAL: u8 = 0;
const R_X86_64_PC32: u64 = 2;
const R_X86_64_PLT32: u64 = 4;

impl Sites {
    /// Reads the edges of `ko`, placed where the loaded module's sections
    /// are.
    fn load(ko: &Path) -> Result<Sites, String> {
        let b = std::fs::read(ko).map_err(|e| format!("{}: {e}", ko.display()))?;
        ensure!(
            b.starts_with(b"\x7fELF\x02\x01"),
            "{}: not a little-endian ELF64 file",
            ko.display()
        );
        let shoff = u64_at(&b, 0x28)? as usize;
        let shentsize = u16_at(&b, 0x3a)? as usize;
        let shnum = u16_at(&b, 0x3c)? as usize;
        let shstrndx = u16_at(&b, 0x3e)? as usize;
        let mut raw = Vec::new();
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            raw.push((
                u32_at(&b, h)?,
                Shdr {
                    name: String::new(),
                    kind: u32_at(&b, h + 4)?,
                    flags: u64_at(&b, h + 8)?,
                    offset: u64_at(&b, h + 24)?,
                    size: u64_at(&b, h + 32)?,
                    link: u32_at(&b, h + 40)?,
                    info: u32_at(&b, h + 44)?,
                },
            ));
        }
        let strtab_off = raw
            .get(shstrndx)
            .ok_or("nfkv.ko: no section names")?
            .1
            .offset as usize;
        let shdrs: Vec<Shdr> = raw
            .into_iter()
            .map(|(name, mut s)| {
                s.name = cstr_at(&b, strtab_off + name as usize);
                s
            })
            .collect();
        let symtab = shdrs
            .iter()
            .find(|s| s.kind == SHT_SYMTAB)
            .ok_or("nfkv.ko: no symbol table")?;
        let strs = shdrs
            .get(symtab.link as usize)
            .ok_or("nfkv.ko: no string table")?
            .offset as usize;
        // (name, section, value, size, is a function, is global) of every
        // symbol.
        let mut syms = Vec::new();
        for i in 0..(symtab.size / 24) as usize {
            let s = symtab.offset as usize + i * 24;
            let info = rd::<1>(&b, s + 4)?[0];
            syms.push((
                cstr_at(&b, strs + u32_at(&b, s)? as usize),
                u16_at(&b, s + 6)? as usize,
                u64_at(&b, s + 8)?,
                u64_at(&b, s + 16)?,
                info & 0xf == STT_FUNC,
                info >> 4 != STB_LOCAL,
            ));
        }
        // Symbols some relocation refers to: a global function none refers
        // to is never called (calls to local functions need no relocation,
        // but the compiler drops local functions nothing calls).
        let mut referenced = std::collections::HashSet::new();
        for rela in shdrs.iter().filter(|s| s.kind == SHT_RELA) {
            for i in 0..(rela.size / 24) as usize {
                referenced.insert(u64_at(&b, rela.offset as usize + i * 24 + 8)? >> 32);
            }
        }
        let trace_pc = syms
            .iter()
            .position(|s| s.0 == "__sanitizer_cov_trace_pc")
            .ok_or("nfkv.ko has no coverage instrumentation (no __sanitizer_cov_trace_pc)")?
            as u64;

        let mut sites = Vec::new();
        for rela in shdrs.iter().filter(|s| s.kind == SHT_RELA) {
            let target = rela.info as usize;
            let Some(text) = shdrs.get(target).filter(|s| s.flags & SHF_EXECINSTR != 0) else {
                continue;
            };
            for i in 0..(rela.size / 24) as usize {
                let r = rela.offset as usize + i * 24;
                let info = u64_at(&b, r + 8)?;
                if info >> 32 != trace_pc
                    || !matches!(info & 0xffff_ffff, R_X86_64_PC32 | R_X86_64_PLT32)
                {
                    continue;
                }
                // The call's 4-byte displacement ends the instruction:
                // the call returns just past it.
                let offset = u64_at(&b, r)? + 4;
                let owner = syms
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.4 && s.1 == target && s.2 <= offset && offset <= s.2 + s.3);
                let function = owner
                    .map(|(_, s)| s.0.clone())
                    .unwrap_or_else(|| format!("{}+{offset:#x}", text.name));
                let uncalled = owner.is_some_and(|(i, s)| s.5 && !referenced.contains(&(i as u64)));
                sites.push(Site {
                    section: text.name.clone(),
                    offset,
                    function,
                    uncalled,
                });
            }
        }
        ensure!(
            !sites.is_empty(),
            "nfkv.ko: no calls to __sanitizer_cov_trace_pc"
        );

        let mut bases = HashMap::new();
        let mut by_pc = HashMap::new();
        let mut unreachable = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let only = s.section.starts_with(".init") || s.section.starts_with(".exit");
            unreachable.push(only || s.uncalled || cleanup_worker_only(&s.function));
            if !bases.contains_key(&s.section) {
                let path = format!("/sys/module/nfkv/sections/{}", s.section);
                let base = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok());
                ensure!(
                    base.is_some() || only,
                    "{path}: no address for a section with coverage"
                );
                bases.insert(s.section.clone(), base);
            }
            if let Some(base) = bases[&s.section] {
                by_pc.insert(base + s.offset, i);
            }
        }
        let uncalled = sites.iter().filter(|s| s.uncalled).count();
        let worker = sites
            .iter()
            .filter(|s| !s.uncalled && cleanup_worker_only(&s.function))
            .count();
        Ok(Sites {
            worker,
            sites,
            by_pc,
            unreachable,
            uncalled,
        })
    }

    /// Edges a request can reach.
    fn reachable(&self) -> usize {
        self.unreachable.iter().filter(|&&u| !u).count()
    }
}

/// Whether `function` (a symbol) runs only in the kernel's netns cleanup
/// worker, whose calls KCOV does not trace (it traces the thread that
/// enabled it): a namespace's pre_exit and exit, with the hooks'
/// unregistering and the table's drop inlined into them; and delayed work
/// (`kernel_ext::work::Delayed`'s `run_raw`, the table's reaper inlined
/// into it), which a kworker runs.
fn cleanup_worker_only(function: &str) -> bool {
    function.contains("net_pre_exit")
        || function.contains("net_exit")
        || function.contains("7run_raw")
}

/// One call of an input.
#[derive(Clone, Debug, PartialEq)]
struct Call {
    set: bool,
    cmd: u32,
    /// Bytes of the get buffer (the request is copied to its start).
    reply: u32,
    /// Fault point of the call to fail (`/proc/thread-self/fail-nth`: a
    /// slab or page allocation, or a user copy), or 0.
    fail_nth: u32,
    req: Vec<u8>,
}

/// Fault points a call may be given to fail, at most (the largest command
/// of an input has fewer).
const MAX_FAIL_NTH: u32 = 16;

/// An input: calls run in order against an emptied table.
type Input = Vec<Call>;

/// Encodes an input: per call `set` (bit 0) and `fail_nth` (bits 8 and
/// up), command, reply size, request length (u32 each, little-endian), then
/// the request.
fn encode(input: &Input) -> Vec<u8> {
    let mut out = Vec::new();
    for c in input {
        let first = u32::from(c.set) | c.fail_nth << 8;
        for v in [first, c.cmd, c.reply, c.req.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&c.req);
    }
    out
}

fn decode(mut b: &[u8]) -> Option<Input> {
    let mut input = Vec::new();
    while !b.is_empty() {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        let (first, c, reply, len) = (word(0)?, word(1)?, word(2)?, word(3)? as usize);
        let (set, fail_nth) = (first & 0xff, first >> 8);
        if set > 1
            || fail_nth > MAX_FAIL_NTH
            || c >= cmd::RANGE
            || reply as usize > MAX_BUFFER
            || len > MAX_BUFFER
        {
            return None;
        }
        let req = b.get(16..16 + len)?.to_vec();
        input.push(Call {
            set: set == 1,
            cmd: c,
            reply,
            fail_nth,
            req,
        });
        b = &b[16 + len..];
    }
    (input.len() <= MAX_CALLS).then_some(input)
}

/// A file name for an input: its FNV-1a hash.
fn name_of(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Reply sizes at the edges the handlers check.
fn reply_size(rng: &mut Rng, req: &[u8]) -> u32 {
    let sizes = [
        0,
        1,
        4,
        codec::INFO_SIZE - 1,
        codec::INFO_SIZE,
        codec::STATS_SIZE - 1,
        codec::STATS_SIZE,
        codec::VALUE_SIZE - 1,
        codec::VALUE_SIZE,
        codec::LIST_REPLY_SIZE - 1,
        codec::LIST_REPLY_SIZE,
        classifier::LIST_HEADER_SIZE + classifier::INFO_SIZE,
        req.len().saturating_sub(1),
        req.len(),
        511,
        512,
        513,
        4096,
        65536 + codec::VALUE_SIZE,
        1 << 20,
        MAX_BUFFER,
    ];
    let base = sizes[rng.below(sizes.len() as u64) as usize];
    let jitter = if rng.below(4) == 0 {
        rng.below(64) as usize
    } else {
        0
    };
    (base + jitter).min(MAX_BUFFER) as u32
}

/// Keys calls share, so that one call meets what another stored.
const KEYS: [&[u8]; 5] = [b"a", b"k", b"k1", b"k2", b"kz"];

/// A key: mostly one of [`KEYS`], sometimes random or at the length limit.
fn key(rng: &mut Rng) -> Vec<u8> {
    match rng.below(16) {
        0 => rng.blob(1, 8),
        1 => vec![b'm'; codec::MAX_KEY_LEN],
        _ => KEYS[rng.below(KEYS.len() as u64) as usize].to_vec(),
    }
}

/// A value of a length at an edge: empty, small, either side of the stack
/// copy, of a page and of [`MAX_VALUE_LEN`], or random.
fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1 => 480 + rng.below(64) as usize,
        2 => [4095, 4096, 4097][rng.below(3) as usize],
        3 => rng.below(4096) as usize,
        4 => MAX_VALUE_LEN - 1 + rng.below(3) as usize,
        5 => rng.below(MAX_VALUE_LEN as u64) as usize,
        _ => rng.below(16) as usize,
    };
    vec![rng.next() as u8; len]
}

/// A condition; `if_version: Some(1)` stands for the key's current version
/// (see [`with_current_versions`]), `Some(2)` for a stale one.
fn condition(rng: &mut Rng) -> nfkv::Condition {
    let mut c = nfkv::Condition::default();
    match rng.below(6) {
        0 => c.create_only = true,
        1 => c.replace_only = true,
        2 | 3 => c.if_version = Some(1),
        4 => c.if_version = Some(2),
        _ => {}
    }
    c
}

/// A valid request of command `c` over the shared keys.
fn request(rng: &mut Rng, set: bool, c: u32) -> Vec<u8> {
    let op = |rng: &mut Rng, kind| {
        let cond = condition(rng);
        let cond = match kind {
            OpKind::Del => nfkv::Condition {
                if_version: cond.if_version,
                ..Default::default()
            },
            OpKind::Put => cond,
        };
        let (k, v) = (
            key(rng),
            if kind == OpKind::Put {
                value(rng)
            } else {
                Vec::new()
            },
        );
        nfkv::raw::encode_op(&Op {
            kind,
            cond,
            key: &k,
            value: &v,
        })
    };
    match (set, c) {
        (true, cmd::SET_PUT) => op(rng, OpKind::Put),
        (true, cmd::SET_DEL) => op(rng, OpKind::Del),
        (true, cmd::SET_BATCH) => {
            let mut b = nfkv::Batch::new();
            if rng.below(4) == 0 {
                b.flush();
            }
            for _ in 0..rng.below(6) {
                let cond = condition(rng);
                if rng.below(3) == 0 {
                    b.delete(&key(rng), cond.if_version);
                } else {
                    b.put(&key(rng), &value(rng), cond);
                }
            }
            b.encode().unwrap_or_default()
        }
        (false, cmd::GET_VALUE) => {
            let k = key(rng);
            let mut buf = vec![0u8; codec::GET_SIZE + k.len()];
            codec::encode_get(&mut buf, &k);
            buf
        }
        (false, cmd::GET_LIST) => {
            let after = if rng.below(2) == 0 {
                key(rng)
            } else {
                Vec::new()
            };
            let prefix: &[u8] = [&b""[..], b"k", b"k1", b"z"][rng.below(4) as usize];
            let req = ListRequest {
                after: &after,
                prefix,
            };
            let mut buf = vec![0u8; req.wire_len()];
            req.encode(&mut buf);
            buf
        }
        _ => valid_request(rng, set, c),
    }
}

const OP_KEY_LEN: usize = std::mem::offset_of!(uapi::nfkv_op, key_len);
const OP_FLAGS: usize = std::mem::offset_of!(uapi::nfkv_op, flags);
const OP_VALUE_LEN: usize = std::mem::offset_of!(uapi::nfkv_op, value_len);
const OP_VERSION: usize = std::mem::offset_of!(uapi::nfkv_op, version);

/// `req` (a set request of command `c`) with each IF_VERSION of 1 replaced
/// by its key's current version: versions come from the clock, so an input
/// cannot hold a real one.
fn with_current_versions(kv: &Nfkv, c: u32, req: &[u8]) -> Vec<u8> {
    let mut out = req.to_vec();
    let mut at = match c {
        cmd::SET_PUT | cmd::SET_DEL => 0,
        cmd::SET_BATCH => codec::BATCH_SIZE,
        _ => return out,
    };
    while at + codec::OP_SIZE <= out.len() {
        let field = |o: usize, n: usize| -> u64 {
            out[at + o..at + o + n]
                .iter()
                .rev()
                .fold(0, |v, &b| (v << 8) | u64::from(b))
        };
        let (key_len, value_len) = (
            field(OP_KEY_LEN, 2) as usize,
            field(OP_VALUE_LEN, 4) as usize,
        );
        let key_at = at + codec::OP_SIZE;
        let Some(key) = out.get(key_at..key_at + key_len) else {
            break;
        };
        if field(OP_FLAGS, 4) & u64::from(uapi::NFKV_F_IF_VERSION) != 0 && field(OP_VERSION, 8) == 1
        {
            if let Ok(v) = kv.get(key) {
                out[at + OP_VERSION..at + OP_VERSION + 8].copy_from_slice(&v.version.to_le_bytes());
            }
        }
        if c != cmd::SET_BATCH {
            break;
        }
        at = codec::align_up(key_at + key_len + value_len).unwrap_or(usize::MAX);
    }
    out
}

/// `req` (a get request of command `c`) made fit to replay: a watch's
/// `since` under 2^16 counts back from the table's generation (an input
/// cannot hold a real one: generations come from the clock), and its
/// timeout is cut to 20 ms at most (a watch at the table's generation
/// waits it out; timeouts past the maximum stay, to be refused).
fn with_current_generation(kv: &Nfkv, c: u32, req: &[u8]) -> Vec<u8> {
    let mut out = req.to_vec();
    if c != cmd::GET_WATCH {
        return out;
    }
    crate::fuzz::short_watch(c, &mut out, 20);
    let at = std::mem::offset_of!(uapi::nfkv_watch, since);
    if let Some(field) = out.get_mut(at..at + 8) {
        let since = u64::from_ne_bytes(field.try_into().unwrap_or_default());
        if since < 1 << 16 {
            if let Ok(info) = kv.info() {
                field.copy_from_slice(&info.generation.saturating_sub(since).to_ne_bytes());
            }
        }
    }
    out
}

/// A valid call of a random command (sometimes one of the range's unknown
/// ones).
fn random_call(rng: &mut Rng) -> Call {
    let set = rng.below(2) == 0;
    let c = if rng.below(16) == 0 {
        rng.below(u64::from(cmd::RANGE)) as u32
    } else {
        crate::fuzz::command(rng, set)
    };
    let req = request(rng, set, c);
    let reply = reply_size(rng, &req);
    let fail_nth = if rng.below(8) == 0 {
        1 + rng.below(u64::from(MAX_FAIL_NTH)) as u32
    } else {
        0
    };
    Call {
        set,
        cmd: c,
        reply,
        fail_nth,
        req,
    }
}

/// Inputs the mutator starts from besides the corpus, replayed before it:
/// a table filled to [`LIMITS`]' `max_entries` and to its `max_bytes_mib`,
/// then refused a put and a batch (undone past its first records) and
/// relieved by a delete and a shrinking overwrite. Random mutation would
/// not find 16 distinct keys or a MiB of values; these are code, so they
/// cost the corpus nothing.
fn seeds() -> Vec<(String, Input)> {
    let call = |set: bool, c: u32, req: Vec<u8>| Call {
        set,
        cmd: c,
        reply: MAX_BUFFER as u32,
        fail_nth: 0,
        req,
    };
    let batch = |keys: std::ops::Range<u32>, value_len: usize, extra: &[&[u8]]| {
        let mut b = nfkv::Batch::new();
        for i in keys {
            let value = vec![i as u8; value_len];
            b.put(format!("f{i}").as_bytes(), &value, Default::default());
        }
        for k in extra {
            b.put(k, b"v", Default::default());
        }
        call(true, cmd::SET_BATCH, b.encode().unwrap_or_default())
    };
    let put = |k: &[u8], v: &[u8]| {
        let op = Op {
            kind: OpKind::Put,
            cond: Default::default(),
            key: k,
            value: v,
        };
        call(true, cmd::SET_PUT, nfkv::raw::encode_op(&op))
    };
    let del = |k: &[u8]| {
        let op = Op {
            kind: OpKind::Del,
            cond: Default::default(),
            key: k,
            value: &[],
        };
        call(true, cmd::SET_DEL, nfkv::raw::encode_op(&op))
    };
    let entries = vec![
        batch(0..16, 1, &[]),
        put(b"a", b"v"),
        batch(0..0, 1, &[b"f1", b"f2", b"a"]),
        del(b"f0"),
        put(b"a", b"v"),
    ];
    // Over the byte limit (1 MiB; 65,538 bytes an entry of a 64 KiB value
    // and a 2-byte key) by a batch's inserts, then, with 15 such entries
    // and f0's small value, by a put and a batch that grow f0, and by a put
    // that inserts it after its delete: each way the limit is checked.
    let big = vec![b'b'; MAX_VALUE_LEN];
    let bytes = vec![
        batch(0..8, MAX_VALUE_LEN, &[]),
        batch(8..16, MAX_VALUE_LEN, &[]),
        put(b"f0", b"v"),
        batch(8..16, MAX_VALUE_LEN, &[]),
        put(b"f0", &big),
        batch(0..1, MAX_VALUE_LEN, &[]),
        del(b"f0"),
        put(b"f0", &big),
    ];
    // The shared budget charges what an allocation costs, 128 KiB for a
    // 64 KiB value: in the unprivileged replay six fit its MiB, three more
    // are refused by a batch's charge, two fill it, and one more by a put's;
    // last, a batch that shrinks f1 gives back a charge.
    let budget = vec![
        batch(0..6, MAX_VALUE_LEN, &[]),
        batch(6..9, MAX_VALUE_LEN, &[]),
        batch(6..8, MAX_VALUE_LEN, &[]),
        put(b"a", &big),
        put(b"f0", b"v"),
        put(b"a", &big),
        batch(0..0, 1, &[b"f1"]),
    ];
    // LIST into a page over the stack's and under a page, failing each of
    // its first fault points (the IP layer's and nfkv's copies; the page's
    // allocation is retried, so one fault cannot fail it: see
    // `list_page_fails`).
    let mut list = vec![put(b"a", &[b'l'; 1000])];
    for fail_nth in 1..=4 {
        let all = ListRequest {
            after: b"",
            prefix: b"",
        };
        let mut req = vec![0u8; all.wire_len()];
        all.encode(&mut req);
        list.push(Call {
            fail_nth,
            reply: 4096,
            ..call(false, cmd::GET_LIST, req)
        });
    }
    // A batch of two puts failing each of its first fault points in turn
    // (its copies in, its ops' vector, each entry's allocation).
    let batch_faults = (1..=6)
        .map(|fail_nth| Call {
            fail_nth,
            ..batch(0..2, 100, &[])
        })
        .collect();
    // Classifiers: as many as an input's calls allow at hooks of each
    // number (the namespace's limit of 16 is past them: the classify suite
    // reaches it), a listing too small for them, writes under a prefix with
    // and without an action (a batch's too), a classifier over a prefix
    // holding a value that is no action, deletes.
    let add = |name: &str, prefix: &[u8], hook: u8| {
        let c = Classifier::new(name.as_bytes(), Family::Inet, hook, Match::Saddr, prefix, 0);
        call(
            true,
            cmd::SET_CLS_ADD,
            c.map(|c| c.encode().to_vec()).unwrap_or_default(),
        )
    };
    let delete = |name: &str| {
        let req = classifier::encode_del(name.as_bytes()).unwrap_or([0; classifier::DEL_SIZE]);
        call(true, cmd::SET_CLS_DEL, req.to_vec())
    };
    let cls_list = |reply: usize| Call {
        reply: reply as u32,
        ..call(false, cmd::GET_CLS_LIST, Vec::new())
    };
    let drop_action = Action::Drop.encode();
    let mut many: Input = (0..MAX_CALLS - 2)
        .map(|i| add(&format!("m{i}"), format!("m{i}").as_bytes(), (i % 5) as u8))
        .collect();
    many.push(cls_list(
        classifier::LIST_HEADER_SIZE + classifier::INFO_SIZE,
    ));
    many.push(cls_list(MAX_BUFFER));
    let guarded = vec![
        add("c0", b"k", 1),
        add("c0", b"z", 1),
        put(b"k1", b"not an action"),
        put(b"k1", &drop_action),
        put(b"z1", b"v"),
        batch(0..0, 1, &[b"k2"]),
        add("c1", b"z", 3),
        delete("c0"),
        delete("c0"),
        put(b"k1", b"not an action"),
        cls_list(MAX_BUFFER),
    ];
    // Lifetimes: a put with one, an overwrite keeping it, reads of it; an
    // entry of 1 ms, expired by the calls after it (a GET, a LIST, a
    // CREATE and a DEL see it absent; under TCG a call takes longer than
    // a jiffy), a batch of records with and without.
    let ttl_put = |k: &[u8], ms: Option<u32>, keep: bool, create: bool| {
        let op = Op {
            kind: OpKind::Put,
            cond: codec::Condition {
                create_only: create,
                ttl: codec::Ttl { ms, keep },
                ..Default::default()
            },
            key: k,
            value: b"v",
        };
        call(true, cmd::SET_PUT, nfkv::raw::encode_op(&op))
    };
    let get = |k: &[u8]| {
        let mut req = vec![0u8; codec::GET_SIZE + k.len()];
        codec::encode_get(&mut req, k);
        call(false, cmd::GET_VALUE, req)
    };
    let list_all = {
        let all = ListRequest {
            after: b"",
            prefix: b"",
        };
        let mut req = vec![0u8; all.wire_len()];
        all.encode(&mut req);
        call(false, cmd::GET_LIST, req)
    };
    let mut ttl_batch = nfkv::Batch::new();
    let hour = codec::Condition {
        ttl: codec::Ttl {
            ms: Some(3_600_000),
            keep: false,
        },
        ..Default::default()
    };
    ttl_batch.put(b"b1", b"v", hour);
    ttl_batch.put(b"b2", b"v", Default::default());
    let ttl = vec![
        ttl_put(b"t", Some(3_600_000), false, false),
        ttl_put(b"t", None, true, false),
        get(b"t"),
        ttl_put(b"e", Some(1), false, false),
        list_all.clone(),
        get(b"e"),
        ttl_put(b"e", Some(1), true, true),
        del(b"t"),
        call(true, cmd::SET_BATCH, ttl_batch.encode().unwrap_or_default()),
        list_all,
        del(b"e"),
    ];
    // The same through a batch, whose ops check each record on their own
    // path: a 1 ms entry, then (expired by then) records that create over
    // it, keep its lifetime, replace and delete it; and a put over 512
    // bytes (filled from the caller's buffer) with a lifetime.
    let mut expiring = nfkv::Batch::new();
    let ms = |ms, keep| codec::Condition {
        ttl: codec::Ttl { ms, keep },
        ..Default::default()
    };
    expiring.put(b"x", b"v", ms(Some(1), false));
    let mut over_expired = nfkv::Batch::new();
    over_expired.put(
        b"x",
        b"v",
        codec::Condition {
            create_only: true,
            ..ms(Some(1), true)
        },
    );
    over_expired.put(b"y", b"v", ms(Some(1), false));
    let mut after_expiry = nfkv::Batch::new();
    after_expiry.put(b"t2", b"v", ms(None, true));
    after_expiry.delete(b"y", None);
    let big_ttl = {
        let op = Op {
            kind: OpKind::Put,
            cond: ms(Some(3_600_000), false),
            key: b"big",
            value: &[b'b'; 600],
        };
        call(true, cmd::SET_PUT, nfkv::raw::encode_op(&op))
    };
    let encoded = |b: &nfkv::Batch| call(true, cmd::SET_BATCH, b.encode().unwrap_or_default());
    let ttl_batches = vec![
        encoded(&expiring),
        get(b"x"),
        encoded(&over_expired),
        get(b"x"),
        get(b"y"),
        encoded(&after_expiry),
        big_ttl,
        get(b"big"),
    ];
    // Watches (a `since` under 2^16 counts back from the table's
    // generation, see `with_current_generation`). First, before any other
    // input has made the namespace's change log, the first watch failing
    // each of its first fault points (the log's allocation), then one
    // making it.
    let watch = |back: u64, timeout_ms: u32, prefix: &[u8], values: bool| {
        call(
            false,
            cmd::GET_WATCH,
            crate::watch::request(back, timeout_ms, prefix, values),
        )
    };
    let flagged = |flags: u16| {
        let mut req = crate::watch::request(1, 0, b"", false);
        let at = std::mem::offset_of!(uapi::nfkv_watch, flags);
        req[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
        call(false, cmd::GET_WATCH, req)
    };
    let mut watch_faults: Input = (1..=4)
        .map(|fail_nth| Call {
            fail_nth,
            ..watch(0, 0, b"", false)
        })
        .collect();
    watch_faults.push(watch(0, 0, b"", false));
    // Events of every kind, read with and without values and a prefix,
    // into a buffer for one event (MORE) and one for none (EMSGSIZE); a
    // wait that times out; refused requests; a gap answer.
    let mut flush_batch = nfkv::Batch::new();
    flush_batch.flush();
    flush_batch.put(b"k", b"v", Default::default());
    flush_batch.put(b"k2", b"v", Default::default());
    let events = vec![
        watch(0, 0, b"", true),
        put(b"k1", b"v"),
        call(
            true,
            cmd::SET_BATCH,
            flush_batch.encode().unwrap_or_default(),
        ),
        del(b"k"),
        watch(5, 0, b"", true),
        watch(5, 0, b"k1", false),
        Call {
            reply: (codec::WATCH_REPLY_SIZE + codec::event_len(2, 0)) as u32,
            ..watch(5, 0, b"", true)
        },
        Call {
            reply: (codec::WATCH_REPLY_SIZE + 8) as u32,
            ..watch(1, 0, b"", true)
        },
        watch(0, 5, b"", false),
        watch(60_000, 0, b"", false),
        flagged(0x2),
        call(
            false,
            cmd::GET_WATCH,
            crate::watch::request(u64::MAX, 0, b"", false),
        ),
    ];
    // Past the 4 KiB log of LIMITS (128 events of a short key): 144 puts,
    // then a watch from before the oldest (the gap answer) and one from
    // within the wrapped rings.
    let mut overflow = vec![watch(0, 0, b"", false)];
    overflow.extend((0..9).map(|_| batch(0..16, 1, &[])));
    overflow.push(watch(200, 0, b"", false));
    overflow.push(watch(100, 0, b"f1", true));
    vec![
        ("seed-watch-faults".into(), watch_faults),
        ("seed-watch-events".into(), events),
        ("seed-watch-overflow".into(), overflow),
        ("seed-ttl".into(), ttl),
        ("seed-ttl-batches".into(), ttl_batches),
        ("seed-classifiers-many".into(), many),
        ("seed-classifiers-guarded".into(), guarded),
        ("seed-full-entries".into(), entries),
        ("seed-batch-faults".into(), batch_faults),
        ("seed-full-bytes".into(), bytes),
        ("seed-full-budget".into(), budget),
        ("seed-list-faults".into(), list),
    ]
}

/// Reaches the packet path, which no call does: classifiers at the output
/// hook for each match, family and action, and datagrams (and an ICMP echo,
/// which has no port) sent on the loopback by this thread, which runs the
/// output hook itself. Returns the edges it reached first.
fn packets(r: &mut Runner) -> Result<usize, String> {
    const OUTPUT: u8 = 3;
    let kv = connect()?;
    clear_classifiers(&kv)?;
    ck("flush", kv.flush())?;
    let v4 = |last: u8| PacketKey::V4([127, 0, 0, last]);
    let mark = Action::Mark {
        mark: 0x10,
        mask: 0xff,
    };
    let classifiers = [
        ("pd4", Family::Ipv4, Match::Daddr, &b"pd"[..], (0, 0)),
        ("p6", Family::Inet, Match::Daddr, b"p6", (24, 64)),
        ("pp", Family::Inet, Match::ProtoDport, b"pp", (0, 0)),
        ("ps", Family::Ipv6, Match::Saddr, b"ps", (0, 0)),
    ];
    let mut made = Vec::new();
    for (name, family, matches, prefix, (b4, b6)) in classifiers {
        let c = Classifier::new(name.as_bytes(), family, OUTPUT, matches, prefix, 0)
            .and_then(|c| c.with_subnets(b4, b6))
            .map_err(|e| format!("classifier {name}: {e:?}"))?;
        ck("add classifier", kv.add_classifier(&c))?;
        made.push(c);
    }
    let entries = [
        (made[0].key(v4(2)), Action::Drop),
        (made[0].key(v4(3)), Action::Accept),
        (made[0].key(v4(4)), mark),
        (made[1].key(PacketKey::V6([0; 16])), mark),
        (
            made[2].key(PacketKey::Port(libc::IPPROTO_UDP as u8, 7)),
            Action::Drop,
        ),
    ];
    for (key, action) in &entries {
        ck(
            "put",
            kv.put(key.as_bytes(), &action.encode(), Default::default()),
        )?;
    }
    let udp4 = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let udp6 = std::net::UdpSocket::bind("[::1]:0").map_err(|e| format!("bind ::1: {e}"))?;
    // SAFETY: plain socket creation; the descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    ensure!(raw >= 0, "raw ICMP socket: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor, owned once.
    let raw = unsafe { OwnedFd::from_raw_fd(raw) };
    let (sent, new) = r.traced(|| {
        let mut sent = 0;
        for (addr, port) in [
            ("127.0.0.2", 9),
            ("127.0.0.3", 9),
            ("127.0.0.4", 9),
            ("127.0.0.1", 7),
        ] {
            sent += usize::from(udp4.send_to(b"x", (addr, port)).is_ok());
        }
        sent += usize::from(udp6.send_to(b"x", ("::1", 9)).is_ok());
        sent += usize::from(udp6.send_to(b"x", ("::1", 7)).is_ok());
        let echo = [8u8, 0, 0xf7, 0xff, 0, 0, 0, 0];
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `echo` and `to` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                raw.as_raw_fd(),
                echo.as_ptr().cast(),
                echo.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                std::mem::size_of_val(&to) as libc::socklen_t,
            )
        };
        // A TCP SYN (a port key with no entry) and a later fragment of a
        // UDP datagram (no port), neither counted in `sent`.
        let _ = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], 7)),
            std::time::Duration::from_millis(200),
        );
        let _ = send_later_fragment(&to);
        sent + usize::from(rc >= 0)
    });
    let counts = ck("classifier", kv.classifier("pd4"))?.1;
    clear_classifiers(&kv)?;
    ck("flush", kv.flush())?;
    // Dropped at the output hook: the three sends to a DROP entry fail
    // (to 127.0.0.2 and to UDP port 7 over both families).
    ensure!(sent == 4, "{sent} of 7 sends succeeded, not 4 (3 dropped)");
    ensure!(
        counts.drop == 1 && counts.accept == 1 && counts.mark == 1,
        "the IPv4 classifier counted {counts:?}"
    );
    Ok(new)
}

/// Sends an IPv4 packet to `to` that is a later fragment of a UDP
/// datagram (its own IP header, through a raw socket).
fn send_later_fragment(to: &libc::sockaddr_in) -> io::Result<()> {
    // SAFETY: plain socket creation; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor, owned once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut packet = [0u8; 28];
    packet[0] = 0x45; // IPv4, a 20-byte header
    packet[2..4].copy_from_slice(&28u16.to_be_bytes());
    packet[6..8].copy_from_slice(&1u16.to_be_bytes()); // offset 8 bytes: a later fragment
    packet[8] = 64;
    packet[9] = libc::IPPROTO_UDP as u8;
    packet[12..16].copy_from_slice(&[127, 0, 0, 1]);
    packet[16..20].copy_from_slice(&[127, 0, 0, 1]);
    // SAFETY: `packet` and `to` are valid for the lengths given.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::from_ref(to).cast(),
            std::mem::size_of_val(to) as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaches the refusal of a request over the 64 MiB cap, which no input
/// can carry: a PUT whose length says 64 MiB + 1 (refused before any
/// copy). Returns the edges it reached first.
fn oversized_request(r: &mut Runner) -> Result<usize, String> {
    let optname = (r.kv.optbase() + cmd::SET_PUT) as libc::c_int;
    let byte = 0u8;
    let socket =
        nfkv::raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP).map_err(|e| e.to_string())?;
    let fd = socket.as_raw_fd();
    let (rc, new) = r.traced(|| {
        // SAFETY: the kernel refuses the length before it reads the
        // buffer; a read would fault cleanly (EFAULT), not overrun.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                optname,
                std::ptr::from_ref(&byte).cast(),
                (codec::MAX_REQUEST_LEN + 1) as libc::socklen_t,
            )
        }
    });
    let errno = io::Error::last_os_error().raw_os_error();
    ensure!(
        rc == -1 && errno == Some(libc::E2BIG),
        "a PUT of 64 MiB + 1 bytes ended in {rc} ({errno:?}), not E2BIG"
    );
    Ok(new)
}

/// Lengths at the edges of the request paths.
fn boundary_len(rng: &mut Rng, len: usize) -> usize {
    let lens = [
        0,
        1,
        codec::OP_SIZE,
        codec::BATCH_SIZE,
        codec::GET_SIZE,
        codec::LIST_SIZE,
        511,
        512,
        513,
        codec::OP_SIZE + codec::MAX_KEY_LEN + 1,
        codec::OP_SIZE + 1 + codec::VALUE_LEN_CAP,
        codec::OP_SIZE + 2 + codec::VALUE_LEN_CAP,
        len + 1,
        len.saturating_sub(1),
        len + codec::ALIGN,
    ];
    lens[rng.below(lens.len() as u64) as usize].min(MAX_BUFFER)
}

/// A mutant of `input`, maybe with a call of `other` spliced in.
fn mutate_input(rng: &mut Rng, input: &Input, other: &Input) -> Input {
    let mut out = input.clone();
    for _ in 0..1 + rng.below(3) {
        let n = out.len() as u64;
        let i = rng.below(n) as usize;
        match rng.below(10) {
            0 => out.insert(rng.below(n + 1) as usize, random_call(rng)),
            9 if n > 0 => {
                // Fail one of its fault points, or none.
                out[i].fail_nth = rng.below(u64::from(MAX_FAIL_NTH) + 1) as u32;
            }
            1 if n > 0 => {
                out.remove(i);
            }
            2 if n > 0 => mutate(rng, &mut out[i].req),
            3 if n > 0 => out[i].reply = reply_size(rng, &out[i].req),
            4 if n > 0 => {
                let len = boundary_len(rng, out[i].req.len());
                let fill = rng.below(2) as u8 * 0xff;
                out[i].req.resize(len, fill);
            }
            5 if !other.is_empty() => {
                let c = other[rng.below(other.len() as u64) as usize].clone();
                out.insert(rng.below(n + 1) as usize, c);
            }
            6 if n > 0 => {
                out[i].cmd = rng.below(u64::from(cmd::RANGE)) as u32;
                out[i].set = rng.below(2) == 0;
            }
            7 if n > 0 => {
                let c = out[i].clone();
                out.insert(i, c);
            }
            8 if n > 0 => {
                // A valid request of the same command, with new contents.
                let c = &mut out[i];
                c.req = request(rng, c.set, c.cmd);
            }
            _ => {}
        }
    }
    out.truncate(MAX_CALLS);
    for c in &mut out {
        c.req.truncate(MAX_BUFFER);
    }
    out
}

/// KCOV for this thread and the module's edges, or neither on a kernel
/// without KCOV.
/// With this thread's fail-nth file, where the kernel injects faults.
type Coverage = (Option<Kcov>, Option<Sites>, Option<std::fs::File>);

/// Opens KCOV, reads the module's edges and opens fail-nth (with the fault
/// knobs of the faults suite): as root (debugfs and
/// `/sys/module/nfkv/sections` are root's), before any change of user.
fn coverage() -> Result<Coverage, String> {
    let Some(kcov) = Kcov::open()? else {
        return Ok((None, None, None));
    };
    let ko = std::env::var("NFKV_KO").map_err(|_| "NFKV_KO is not set".to_string())?;
    let sites = Sites::load(Path::new(&ko))?;
    crate::faults::configure()?;
    let fail_nth = crate::faults::open_fail_nth()?;
    Ok((Some(kcov), Some(sites), Some(fail_nth)))
}

/// Runs inputs with coverage, checking every call's outcome.
struct Runner {
    kv: Nfkv,
    kcov: Option<Kcov>,
    sites: Option<Sites>,
    fail_nth: Option<std::fs::File>,
    reply: Vec<u8>,
    /// Edges reached, by site.
    hit: Vec<bool>,
    /// PCs outside the module's edges (there should be none).
    stray: u64,
    budgeted: bool,
    calls: u64,
    wrong: Vec<String>,
}

impl Runner {
    /// A runner on `coverage` (see [`coverage`]).
    fn new(budgeted: bool, (kcov, sites, fail_nth): Coverage) -> Result<Runner, String> {
        let hit = vec![false; sites.as_ref().map_or(0, |s| s.sites.len())];
        Ok(Runner {
            kv: connect()?,
            kcov,
            sites,
            fail_nth,
            reply: vec![0; MAX_BUFFER],
            hit,
            stray: 0,
            budgeted,
            calls: 0,
            wrong: Vec::new(),
        })
    }

    /// Runs `input` on an emptied table; returns how many edges it reached
    /// first.
    fn run(&mut self, input: &Input) -> Result<usize, String> {
        clear_classifiers(&self.kv)?;
        ck("flush", self.kv.flush())?;
        let mut new = 0;
        for call in input {
            let (kv, reply) = (&self.kv, &mut self.reply);
            let req = if call.set {
                with_current_versions(kv, call.cmd, &call.req)
            } else {
                with_current_generation(kv, call.cmd, &call.req)
            };
            let mut go = || -> io::Result<()> {
                if call.set {
                    kv.raw_set(call.cmd, &req)
                } else {
                    let len = call.reply as usize;
                    let n = req.len().min(len);
                    reply[..n].copy_from_slice(&req[..n]);
                    kv.raw_get(call.cmd, &mut reply[..len]).map(|_| ())
                }
            };
            let injecting = match &self.fail_nth {
                Some(f) if call.fail_nth > 0 => {
                    std::os::unix::fs::FileExt::write_at(
                        f,
                        call.fail_nth.to_string().as_bytes(),
                        0,
                    )
                    .map_err(|e| format!("fail-nth: {e}"))?;
                    true
                }
                _ => false,
            };
            let outcome = match (&self.kcov, &self.sites) {
                (Some(kcov), Some(sites)) => {
                    let (hit, stray) = (&mut self.hit, &mut self.stray);
                    kcov.collect(go, |pc| new += mark_pc(sites, hit, stray, pc))
                }
                _ => go(),
            };
            if let (true, Some(f)) = (injecting, &self.fail_nth) {
                crate::faults::reset(f)?;
            }
            self.calls += 1;
            if let Err(e) = outcome {
                let errno = e.raw_os_error().unwrap_or(0);
                let injected = injecting && [libc::ENOMEM, libc::EFAULT].contains(&errno);
                // A write past LIMITS' max_bytes_mib.
                let too_big = call.set && call.cmd != cmd::SET_FLUSH && errno == libc::EFBIG;
                if !injected
                    && !too_big
                    && !errno_allowed(call.set, call.cmd, false, self.budgeted, errno)
                    && self.wrong.len() < 5
                {
                    self.wrong.push(format!(
                        "{} +{} ({} bytes {:02x?}, reply {}): {e}",
                        if call.set { "set" } else { "get" },
                        call.cmd,
                        call.req.len(),
                        &call.req[..call.req.len().min(48)],
                        call.reply
                    ));
                }
            }
        }
        Ok(new)
    }

    fn reached(&self) -> usize {
        self.hit.iter().filter(|&&h| h).count()
    }

    /// Runs `f` with KCOV on, marking the edges it reaches; returns what
    /// `f` returned and how many edges were new.
    fn traced<T>(&mut self, f: impl FnOnce() -> T) -> (T, usize) {
        let Some(kcov) = &self.kcov else {
            return (f(), 0);
        };
        let mut pcs = Vec::new();
        let out = kcov.collect(f, |pc| pcs.push(pc));
        (out, self.mark(&pcs))
    }

    /// Marks the edges at `pcs` reached; returns how many were new.
    fn mark(&mut self, pcs: &[u64]) -> usize {
        let Some(sites) = &self.sites else {
            return 0;
        };
        pcs.iter()
            .map(|&pc| mark_pc(sites, &mut self.hit, &mut self.stray, pc))
            .sum()
    }
}

/// Marks the edge at `pc` in `hit` (or counts a PC that is no edge in
/// `stray`); 1 if it was not reached before.
fn mark_pc(sites: &Sites, hit: &mut [bool], stray: &mut u64, pc: u64) -> usize {
    match sites.by_pc.get(&pc) {
        Some(&i) => {
            let new = usize::from(!hit[i]);
            hit[i] = true;
            new
        }
        None => {
            *stray += 1;
            0
        }
    }
}

/// The test module whose init calls `nf_setsockopt()` with kernel pointers
/// (tests/gate, built for the debug kernels by tests/run-all and `make fuzz`).
const KCALLER: &str = "tests/gate/nfkv_kcaller.ko";

/// Reaches the set path's kernel-pointer copies, which no system call
/// reaches: loads [`KCALLER`] with KCOV on (its init runs in this thread).
/// Returns the edges it reached first, or None without the module.
fn kernel_callers(r: &mut Runner) -> Result<Option<usize>, String> {
    let Ok(file) = std::fs::File::open(KCALLER) else {
        return Ok(None);
    };
    ck("flush", r.kv.flush())?;
    let (loaded, new) = r.traced(|| {
        // SAFETY: finit_module reads the open descriptor and a
        // NUL-terminated string, both valid for the call.
        unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) }
    });
    ensure!(
        loaded == 0,
        "insmod {KCALLER}: {}",
        io::Error::last_os_error()
    );
    // SAFETY: delete_module reads a NUL-terminated name.
    let r2 = unsafe {
        libc::syscall(
            libc::SYS_delete_module,
            c"nfkv_kcaller".as_ptr(),
            libc::O_NONBLOCK,
        )
    };
    ensure!(
        r2 == 0,
        "rmmod nfkv_kcaller: {}",
        io::Error::last_os_error()
    );
    ensure!(
        ck("info", r.kv.info())?.entries == 4,
        "the kernel caller did not store its 4 entries"
    );
    Ok(Some(new))
}

/// Reaches what only a race reaches: the last reference to an entry
/// dropped by the GET that copied it out, a displaced entry a write cannot
/// free because a GET still holds it, a LIST page sized again because the
/// table grew. Another thread writes (then reads) a key holding 64 KiB
/// while this one, KCOV on, reads (then writes) it. Returns the edges it
/// reached first.
fn races(r: &mut Runner) -> Result<usize, String> {
    const ROUNDS: usize = 2000;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let value = vec![b'r'; MAX_VALUE_LEN];
    let mut get = vec![0u8; codec::GET_SIZE + 4];
    codec::encode_get(&mut get, b"race");
    let (other, this) = (connect()?, connect()?);
    let write = |kv: &Nfkv, round: usize| -> TestResult {
        match round % 3 {
            0 => ck("put", kv.put(b"race", &value, Default::default()))?,
            1 => {
                let _ = kv.delete(b"race", None);
            }
            _ => {
                let mut b = nfkv::Batch::new();
                b.flush().put(b"race", &value, Default::default());
                ck("batch", kv.apply(&b))?;
            }
        }
        Ok(())
    };
    let all = ListRequest {
        after: b"",
        prefix: b"",
    };
    let mut list = vec![0u8; all.wire_len()];
    all.encode(&mut list);
    // A GET, or a LIST of the table (empty but for that key, so a page
    // sized while the key is absent may find it there when filled).
    let read = |kv: &Nfkv, round: usize| {
        let mut buf = vec![0u8; MAX_VALUE_LEN + codec::VALUE_SIZE + 4096];
        let (c, req) = if round.is_multiple_of(2) {
            (cmd::GET_VALUE, &get)
        } else {
            (cmd::GET_LIST, &list)
        };
        buf[..req.len()].copy_from_slice(req);
        let _ = kv.raw_get(c, &mut buf);
    };
    let mut new = 0;
    for this_writes in [false, true] {
        stop.store(false, std::sync::atomic::Ordering::Relaxed);
        new += std::thread::scope(|scope| -> Result<usize, String> {
            let peer = scope.spawn(|| -> TestResult {
                let mut round = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if this_writes {
                        read(&other, round);
                    } else {
                        write(&other, round)?;
                    }
                    round += 1;
                }
                Ok(())
            });
            let mut new = 0;
            for round in 0..ROUNDS {
                let (out, n) = r.traced(|| {
                    if this_writes {
                        write(&this, round)
                    } else {
                        read(&this, round);
                        Ok(())
                    }
                });
                out?;
                new += n;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            peer.join()
                .map_err(|_| "the peer thread panicked".to_string())??;
            Ok(new)
        })?;
    }
    Ok(new)
}

/// Reaches each GET command's refusal of a negative `optlen`, which no
/// input can carry: a thread flips it between -1 and a valid length while
/// the traced thread calls (the IP layer reads it twice; about one call in
/// ten reaches nfkv with -1, see `badinput::negative_get_length_race`).
/// Every call must answer or end in EINVAL (or the GET's ENOENT or
/// EMSGSIZE).
fn negative_lengths(r: &mut Runner) -> Result<usize, String> {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    const CALLS: usize = 300;
    let kv = connect()?;
    let fd = kv.fd().as_raw_fd();
    let mut get = vec![0u8; codec::GET_SIZE + 4];
    codec::encode_get(&mut get, b"race");
    let all = ListRequest {
        after: b"",
        prefix: b"",
    };
    let mut list = vec![0u8; all.wire_len()];
    all.encode(&mut list);
    let mut new = 0;
    for (command, req) in [
        (cmd::GET_INFO, &[][..]),
        (cmd::GET_VALUE, &get[..]),
        (cmd::GET_LIST, &list[..]),
        (cmd::GET_STATS, &[][..]),
    ] {
        let optname = (kv.optbase() + command) as libc::c_int;
        let len = 4096;
        let optlen = AtomicI32::new(len);
        let stop = AtomicBool::new(false);
        new += std::thread::scope(|scope| -> Result<usize, String> {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    optlen.store(-1, Ordering::Relaxed);
                    optlen.store(len, Ordering::Relaxed);
                }
            });
            let mut new = 0;
            let mut outcome = Ok(());
            for _ in 0..CALLS {
                let mut buf = vec![0u8; len as usize];
                buf[..req.len()].copy_from_slice(req);
                let ((rc, errno), n) = r.traced(|| {
                    // SAFETY: `buf` holds `len` bytes, the most `optlen` holds.
                    let rc = unsafe { getsockopt_racing_len(fd, optname, &mut buf, &optlen) };
                    (rc, io::Error::last_os_error().raw_os_error())
                });
                new += n;
                // ENOENT: the GET's key is absent; EMSGSIZE: the races
                // left it with a value over `len`.
                if rc != 0 && !matches!(errno, Some(libc::EINVAL | libc::ENOENT | libc::EMSGSIZE)) {
                    outcome = Err(format!("get {command} with a flipping optlen: {errno:?}"));
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            outcome.map(|()| new)
        })?;
    }
    Ok(new)
}

/// Reaches a LIST's refusal when its page cannot be allocated, which one
/// fault (an input's fail-nth) cannot cause: the kernel's `kvrealloc`
/// retries a failed `krealloc` with `kvmalloc`. So the slab fails this
/// thread's next two allocations (`failslab` with `times` 2, for tasks
/// marked `make-it-fail`), during a LIST whose page is over the stack's
/// and under a page: ENOMEM, and the table answers again after.
fn list_page_fails(r: &mut Runner) -> Result<usize, String> {
    const FAILSLAB: &str = "/sys/kernel/debug/failslab";
    let kv = connect()?;
    ck("flush", kv.flush())?;
    ck("put", kv.put(b"page", &[b'p'; 1000], Default::default()))?;
    let all = ListRequest {
        after: b"",
        prefix: b"",
    };
    let mut buf = vec![0u8; 4096];
    all.encode(&mut buf[..all.wire_len()]);
    let request = buf.clone();
    // Marked through a descriptor opened before: opening a file allocates,
    // which would take the failures meant for the LIST.
    let make_it_fail = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/thread-self/make-it-fail")
        .map_err(|e| format!("make-it-fail: {e}"))?;
    let mark = |on: &str| {
        std::os::unix::fs::FileExt::write_at(&make_it_fail, on.as_bytes(), 0)
            .map_err(|e| format!("make-it-fail: {e}"))
    };
    for (file, value) in [("task-filter", "Y"), ("probability", "100"), ("times", "2")] {
        write_proc(&format!("{FAILSLAB}/{file}"), value)?;
    }
    let marked = mark("1");
    let (out, new) = r.traced(|| marked.is_ok().then(|| kv.raw_get(cmd::GET_LIST, &mut buf)));
    let unmarked = mark("0");
    let restored = [("probability", "0"), ("task-filter", "N"), ("times", "1")]
        .iter()
        .try_for_each(|(file, value)| write_proc(&format!("{FAILSLAB}/{file}"), value));
    marked?;
    unmarked?;
    restored?;
    let errno = out
        .as_ref()
        .and_then(|o| o.as_ref().err())
        .and_then(io::Error::raw_os_error);
    ensure!(
        errno == Some(libc::ENOMEM),
        "a LIST whose page allocation failed ended in {out:?}, not ENOMEM"
    );
    buf.copy_from_slice(&request);
    kv.raw_get(cmd::GET_LIST, &mut buf)
        .map_err(|e| format!("the LIST after: {e}"))?;
    ck("delete", kv.delete(b"page", None))?;
    Ok(new)
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(std::env::var("NFKV_CORPUS").unwrap_or_else(|_| "tests/fuzz/corpus".into()))
}

/// The corpus, by file name.
fn load_corpus(dir: &Path) -> Result<Vec<(String, Input)>, String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| !n.starts_with('.') && n != "README")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).map_err(|e| format!("{n}: {e}"))?;
            let input = decode(&b).ok_or_else(|| format!("{}/{n}: not an input", dir.display()))?;
            Ok((n, input))
        })
        .collect()
}

/// Replays the corpus with `cov`; returns the runner, with the edges it
/// reached.
fn replay(corpus: &[(String, Input)], budgeted: bool, cov: Coverage) -> Result<Runner, String> {
    let mut r = Runner::new(budgeted, cov)?;
    for (_, input) in corpus {
        r.run(input)?;
    }
    ensure!(
        r.wrong.is_empty(),
        "calls ended with an errno the ABI does not allow, e.g.:\n  {}",
        r.wrong.join("\n  ")
    );
    Ok(r)
}

/// A flush and an info request on a new socket: the errno of each.
fn unprivileged_calls() -> (i32, i32) {
    let errno = |r: libc::c_int| {
        if r == 0 {
            0
        } else {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        }
    };
    // SAFETY: plain socket calls on a descriptor this function owns, with
    // buffers valid for the lengths passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let flush = [0u8; codec::FLUSH_SIZE];
        let set = errno(libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            uapi::NFKV_SO_SET_FLUSH as i32,
            flush.as_ptr().cast(),
            flush.len() as libc::socklen_t,
        ));
        let mut info = [0u8; codec::INFO_SIZE];
        let mut len = info.len() as libc::socklen_t;
        let get = errno(libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            uapi::NFKV_SO_GET_INFO as i32,
            info.as_mut_ptr().cast(),
            &mut len,
        ));
        libc::close(fd);
        (set, get)
    }
}

/// Replays the corpus in an unprivileged user's namespace (a forked
/// child); returns the edges reached, by site.
fn replay_budgeted(corpus: &[(String, Input)]) -> Result<Vec<bool>, String> {
    let file = "/tmp/nfkv-coverage-userns";
    let _ = std::fs::remove_file(file);
    in_child(|| {
        // KCOV stays enabled for this task after it drops to an
        // unprivileged user.
        let cov = coverage()?;
        // Calls without CAP_NET_ADMIN over the initial namespace (EPERM),
        // then creating a namespace, which runs the module's pernet init
        // in this thread, the one place it can be traced.
        let mut pcs = Vec::new();
        become_nobody()?;
        match &cov.0 {
            Some(kcov) => {
                let (set, get) = kcov.collect(unprivileged_calls, |pc| pcs.push(pc));
                ensure!(
                    set == libc::EPERM && get == libc::EPERM,
                    "an unprivileged caller's flush and info ended in errnos {set} and {get}, not EPERM"
                );
                kcov.collect(enter_user_and_net_namespace_as_nobody, |pc| pcs.push(pc))?
            }
            None => enter_user_and_net_namespace_as_nobody()?,
        }
        let mut r = replay(corpus, true, cov)?;
        r.mark(&pcs);
        let bits: Vec<u8> = r.hit.iter().map(|&h| u8::from(h)).collect();
        std::fs::write(file, bits).map_err(|e| format!("{file}: {e}"))
    })?;
    let bits = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    Ok(bits.into_iter().map(|b| b == 1).collect())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Grows the corpus for `seconds`: returns how many inputs it added.
fn grow(
    r: &mut Runner,
    corpus: &mut Vec<(String, Input)>,
    dir: &Path,
    seconds: u64,
) -> Result<usize, String> {
    let seed = env_u64("NFKV_COVERAGE_SEED", {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("     coverage: growing for {seconds} s, seed {seed} (NFKV_COVERAGE_SEED)");
    let mut rng = Rng::new(seed);
    if corpus.is_empty() {
        // One valid call of each command to start from.
        for (set, c) in [
            (true, 0),
            (true, 1),
            (true, 2),
            (true, 3),
            (false, 0),
            (false, 1),
            (false, 2),
            (false, 3),
        ] {
            let req = request(&mut rng, set, c);
            let input = vec![Call {
                set,
                cmd: c,
                reply: MAX_BUFFER as u32,
                fail_nth: 0,
                req,
            }];
            corpus.push((name_of(&encode(&input)), input));
        }
        for (name, input) in corpus.iter() {
            r.run(input)?;
            save(dir, name, input)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut added = 0;
    let mut tried = 0u64;
    while Instant::now() < deadline {
        let parent = &corpus[rng.below(corpus.len() as u64) as usize].1;
        let other = &corpus[rng.below(corpus.len() as u64) as usize].1;
        let child = mutate_input(&mut rng, parent, other);
        tried += 1;
        if r.run(&child)? > 0 {
            let name = name_of(&encode(&child));
            save(dir, &name, &child)?;
            corpus.push((name, child));
            added += 1;
        }
        if tried.is_multiple_of(5000) {
            println!(
                "     coverage: {tried} inputs, {} edges, corpus {}",
                r.reached(),
                corpus.len()
            );
        }
    }
    Ok(added)
}

fn save(dir: &Path, name: &str, input: &Input) -> TestResult {
    let path = dir.join(name);
    std::fs::write(&path, encode(input)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes one line per function: edges reached, edges, symbol.
fn report(sites: &Sites, hit: &[bool], path: &str) -> TestResult {
    let mut by_fn: Vec<(String, usize, usize)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in sites.sites.iter().enumerate() {
        if sites.unreachable[i] {
            continue;
        }
        let k = *index.entry(&s.function).or_insert_with(|| {
            by_fn.push((s.function.clone(), 0, 0));
            by_fn.len() - 1
        });
        by_fn[k].1 += usize::from(hit[i]);
        by_fn[k].2 += 1;
    }
    by_fn.sort_by(|a, b| (b.2 - b.1).cmp(&(a.2 - a.1)).then(a.0.cmp(&b.0)));
    let mut text = String::new();
    for (f, reached, total) in by_fn {
        text += &format!("{reached} {total} {f}\n");
    }
    let mut unreached = String::new();
    for (i, s) in sites.sites.iter().enumerate() {
        if !sites.unreachable[i] && !hit[i] {
            unreached += &format!("{}+{:#x} {}\n", s.section, s.offset, s.function);
        }
    }
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
    let edges = format!("{path}.unreached");
    std::fs::write(&edges, unreached).map_err(|e| format!("{edges}: {e}"))
}

fn corpus_reaches_the_handlers() -> TestResult {
    reload(LIMITS)?;
    let r = run_corpus();
    reload("")?;
    r
}

fn run_corpus() -> TestResult {
    let dir = corpus_dir();
    let mut corpus = seeds();
    corpus.extend(load_corpus(&dir)?);
    let seconds = env_u64("NFKV_COVERAGE_SECONDS", 0);
    let start = Instant::now();
    let mut r = replay(&corpus, false, coverage()?)?;
    let replayed = r.calls;
    let replay_secs = start.elapsed().as_secs_f64();
    if r.kcov.is_none() {
        // Debian's kernel has no KCOV: the corpus still runs, and every
        // call must still end as the ABI allows.
        println!("     coverage: no KCOV in this kernel: {} inputs ({replayed} calls) replayed without coverage", corpus.len());
        return Ok(());
    }
    if seconds > 0 {
        let before = r.calls;
        let grow_start = Instant::now();
        let added = grow(&mut r, &mut corpus, &dir, seconds)?;
        println!(
            "     coverage: grew the corpus by {added} inputs: {} calls in {:.0} s ({:.0} calls/s)",
            r.calls - before,
            grow_start.elapsed().as_secs_f64(),
            (r.calls - before) as f64 / grow_start.elapsed().as_secs_f64()
        );
        ensure!(
            r.wrong.is_empty(),
            "calls ended with an errno the ABI does not allow, e.g.:\n  {}",
            r.wrong.join("\n  ")
        );
    }
    match kernel_callers(&mut r)? {
        Some(n) => {
            println!("     coverage: kernel-pointer requests ({KCALLER}) reached {n} more edges")
        }
        None => println!("     coverage: no {KCALLER}: kernel-pointer requests not sent"),
    }
    let packets = packets(&mut r)?;
    println!("     coverage: packets through classifiers at the output hook reached {packets} more edges");
    let oversized = oversized_request(&mut r)?;
    println!("     coverage: a request over the 64 MiB cap reached {oversized} more edges");
    let raced = races(&mut r)?;
    println!("     coverage: GETs and writes racing on one key reached {raced} more edges");
    let page = list_page_fails(&mut r)?;
    println!("     coverage: a LIST whose page could not be allocated reached {page} more edges");
    let negative = negative_lengths(&mut r)?;
    println!(
        "     coverage: GETs whose optlen another thread flips to -1 reached {negative} more edges"
    );
    let host = r.reached();
    let userns = replay_budgeted(&corpus)?;
    let sites = r.sites.as_ref().ok_or("no sites")?;
    let hit: Vec<bool> = r.hit.iter().zip(&userns).map(|(a, b)| *a || *b).collect();
    let reached = hit
        .iter()
        .zip(&sites.unreachable)
        .filter(|(h, l)| **h && !**l)
        .count();
    let reachable = sites.reachable();
    let pct = 100.0 * reached as f64 / reachable as f64;
    println!(
        "     coverage: {} inputs ({replayed} calls in {replay_secs:.1} s, {:.0} calls/s) reach {reached} of the module's {reachable} edges ({pct:.1}%; {host} from the initial namespace alone); not reachable: {} edges of load and unload, {} of uncalled out-of-line copies, {} of namespace teardown and delayed work; {} PCs outside the module",
        corpus.len(),
        replayed as f64 / replay_secs,
        sites.sites.len() - reachable - sites.uncalled - sites.worker,
        sites.uncalled,
        sites.worker,
        r.stray
    );
    if let Ok(path) = std::env::var("NFKV_COVERAGE_REPORT") {
        report(sites, &hit, &path)?;
    }
    ensure!(
        r.stray == 0,
        "KCOV reported {} PCs that are no edge of nfkv.ko",
        r.stray
    );
    if pct < COVERAGE_FLOOR_PERCENT {
        return Err(format!(
            "the corpus reaches {pct:.1}% of the module's edges, under the floor of {COVERAGE_FLOOR_PERCENT}%"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_and_mutants_stay_decodable() {
        let mut rng = Rng::new(7);
        let mut input: Input = (0..5).map(|_| random_call(&mut rng)).collect();
        for _ in 0..2000 {
            let other = input.clone();
            input = mutate_input(&mut rng, &input, &other);
            let bytes = encode(&input);
            assert_eq!(decode(&bytes).as_ref(), Some(&input));
        }
        assert_eq!(decode(&[1, 0, 0]), None);
        assert_eq!(
            decode(&encode(&vec![random_call(&mut rng); MAX_CALLS + 1])),
            None
        );
    }
}
