//! Client library for nfkv, the kernel key/value table behind nf_sockopt:
//! the connection ([`Nfkv`]), batches, listings and snapshots, watching
//! changes ([`watch`]), the text
//! forms of keys and values ([`Encoding`]), batch and save files
//! ([`batchfile`]) and their restore ([`restore`]), and the bare syscalls
//! ([`raw`]). Needs nothing but the ABI crate, libc and thiserror; the `nfkv`
//! command-line tool is the `nfkv-cli` crate.
//!
//! ```no_run
//! use std::time::Duration;
//! let kv = nfkv::Nfkv::open()?;
//! kv.put(b"answer", b"42", nfkv::Condition::default())?;
//! assert_eq!(kv.get(b"answer")?.value, b"42");
//! // An entry that expires (is absent) 30 seconds from now.
//! kv.put_with_ttl(b"session", b"x", Duration::from_secs(30))?;
//! assert!(kv.get(b"session")?.ttl.is_some_and(|left| left <= Duration::from_secs(30)));
//! # Ok::<(), nfkv::Error>(())
//! ```

use nfkv_abi::codec::{self, cmd, ListRequest, Op, OpKind, Reject, ValueHeader};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

pub use nfkv_abi::codec::{
    Condition, Counter, Info, Stats, Ttl, MAX_BATCH_OPS, MAX_KEY_LEN, MAX_REQUEST_LEN, MAX_TTL_MS,
    VALUE_LEN_CAP,
};
pub use nfkv_abi::uapi::{NFKV_ABI_VERSION as ABI_VERSION, NFKV_BASE_CTL as DEFAULT_OPTBASE};

pub mod batchfile;
pub mod classifier;
pub mod duration;
pub mod raw;
pub mod restore;
mod text;
pub mod watch;
pub use classifier::{Element, Hook, Target};
pub use duration::{expires_after, format_duration, parse_duration, DurationError, MAX_TTL};
pub use nfkv_abi::classifier::{Action, Classifier, Counters, Family, Match, PacketKey};
pub use restore::{Restore, RestoreError};
pub use text::{decode_escaped, decode_text, encode_text, Encoding, TextError};
pub use watch::{
    Change, ChangeKind, WatchOptions, WatchReply, WatchSource, Watched, Watcher,
    WATCHER_CALL_TIMEOUT, WATCH_MAX_TIMEOUT,
};

/// Where the module says which optname range it registered.
pub const OPTBASE_PARAM: &str = "/sys/module/nfkv/parameters/optbase";

/// Highest optname base: the module's optnames must stay within a C `int`.
pub const MAX_OPTBASE: u32 = i32::MAX as u32 - cmd::RANGE;

/// Restarts of a consistent listing ([`Nfkv::snapshot`]) before giving up,
/// for every caller that lists a changing table.
pub const SNAPSHOT_RETRIES: usize = 1000;

/// Names of the set commands by offset from the optname base, as `nfkv
/// stats` and the Python package show [`Stats::set`].
pub const SET_COMMAND_NAMES: [&str; codec::SET_COMMANDS] = ["put", "del", "flush", "batch"];
/// Names of the get commands by offset, as for [`Stats::get`].
pub const GET_COMMAND_NAMES: [&str; codec::GET_COMMANDS] = ["info", "value", "list", "stats"];

/// What can go wrong talking to the module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nfkv.ko is not loaded (no handler for optname {optbase}): insmod nfkv.ko")]
    NotLoaded { optbase: u32 },
    #[error(
        "permission denied: nfkv needs CAP_NET_ADMIN in the network namespace's user namespace"
    )]
    PermissionDenied,
    #[error("key not found")]
    NotFound,
    #[error("key exists (--create)")]
    Exists,
    #[error("version mismatch: the entry was changed since (--if-version)")]
    VersionMismatch,
    #[error("{0}")]
    NoSpace(Limit),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("ABI mismatch: module speaks ABI {module}, this client ABI {client}")]
    AbiMismatch { module: u32, client: u32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the module replied with a malformed {0} reply")]
    BadReply(&'static str),
    /// `EBADMSG`: a write put a value that is no `struct nfkv_action` under
    /// a classifier's prefix, or a classifier was added over such a value.
    #[error(
        "value under a classifier's prefix is not a valid action (struct nfkv_action, docs/ABI.md)"
    )]
    BadAction,
    /// `EOPNOTSUPP` from a classifier command: the module has none.
    #[error(
        "the loaded nfkv.ko predates classifiers (EOPNOTSUPP on a classifier command): load a module that has them"
    )]
    ClassifiersUnsupported,
    /// `EINTR`: a signal ended a wait ([`Nfkv::watch_once`]); nothing was
    /// lost, the call may be made again.
    #[error("interrupted by a signal")]
    Interrupted,
    #[error("{op}: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The limit that refused a write (each has its errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The table holds `max_entries` entries (`ENOSPC`).
    Entries,
    /// The table would hold more than `max_bytes_mib` of keys and values
    /// (`EFBIG`).
    Bytes,
    /// The tables of all namespaces owned by non-initial user namespaces
    /// together would take more than `userns_budget_mib` (`EDQUOT`).
    SharedBudget,
    /// The namespace has `NFKV_MAX_CLASSIFIERS` classifiers (`ENOSPC` of a
    /// classifier add).
    Classifiers,
}

impl Limit {
    /// The module parameter that sets the limit (for the fixed number of
    /// classifiers, the header's constant).
    pub fn parameter(self) -> &'static str {
        match self {
            Limit::Entries => "max_entries",
            Limit::Bytes => "max_bytes_mib",
            Limit::SharedBudget => "userns_budget_mib",
            Limit::Classifiers => "NFKV_MAX_CLASSIFIERS",
        }
    }

    /// The errno the module refuses with.
    pub fn errno(self) -> i32 {
        match self {
            Limit::Entries => libc::ENOSPC,
            Limit::Bytes => libc::EFBIG,
            Limit::SharedBudget => libc::EDQUOT,
            Limit::Classifiers => libc::ENOSPC,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Entries => {
                f.write_str("table full: it holds max_entries entries (see `nfkv info`)")
            }
            Limit::Bytes => f.write_str(
                "table full: its keys and values would exceed max_bytes_mib (see `nfkv info`)",
            ),
            Limit::SharedBudget => f.write_str(
                "shared budget full: the tables of all unprivileged namespaces (non-initial \
                 user namespaces) together would exceed userns_budget_mib (see `nfkv info`)",
            ),
            Limit::Classifiers => write!(
                f,
                "the namespace has {} classifiers, the most it may have",
                classifier::MAX_CLASSIFIERS
            ),
        }
    }
}

/// Result of the library's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps the errno of command `op` to a typed error.
    fn from_errno(op: &'static str, errno: i32, optbase: u32) -> Error {
        match errno {
            libc::ENOPROTOOPT => Error::NotLoaded { optbase },
            libc::EPERM | libc::EACCES => Error::PermissionDenied,
            libc::ENOENT => Error::NotFound,
            libc::EEXIST => Error::Exists,
            libc::ESTALE => Error::VersionMismatch,
            libc::ENOSPC => Error::NoSpace(Limit::Entries),
            libc::EFBIG => Error::NoSpace(Limit::Bytes),
            libc::EDQUOT => Error::NoSpace(Limit::SharedBudget),
            libc::E2BIG => Error::TooLarge(format!("{op} refused by the module (E2BIG)")),
            libc::EINVAL => Error::Invalid(format!("{op} refused by the module (EINVAL)")),
            libc::EBADMSG => Error::BadAction,
            libc::EINTR => Error::Interrupted,
            _ => Error::Os {
                op,
                source: io::Error::from_raw_os_error(errno),
            },
        }
    }

    /// The errno behind this error, where there is one.
    pub fn errno(&self) -> Option<i32> {
        Some(match self {
            Error::NotLoaded { .. } => libc::ENOPROTOOPT,
            Error::PermissionDenied => libc::EPERM,
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::VersionMismatch => libc::ESTALE,
            Error::NoSpace(limit) => limit.errno(),
            Error::TooLarge(_) => libc::E2BIG,
            Error::Invalid(_) => libc::EINVAL,
            Error::BadAction => libc::EBADMSG,
            Error::ClassifiersUnsupported => libc::EOPNOTSUPP,
            Error::Interrupted => libc::EINTR,
            Error::Os { source, .. } => return source.raw_os_error(),
            _ => return None,
        })
    }
}

impl From<Reject> for Error {
    fn from(r: Reject) -> Error {
        match r {
            Reject::Invalid => Error::Invalid("malformed request".into()),
            Reject::TooBig => Error::TooLarge("request over the ABI's limits".into()),
        }
    }
}

/// A stored value with its version and the time it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub version: u64,
    pub value: Vec<u8>,
    /// Time left before the entry expires, to the millisecond (rounded up,
    /// so at least 1 ms while it lives); `None`: it never expires.
    pub ttl: Option<Duration>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: u64,
    /// Time left, as in [`Value::ttl`]; `None`: it never expires.
    pub ttl: Option<Duration>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub generation: u64,
    pub entries: Vec<Entry>,
    pub more: bool,
}

/// Bytes of the buffer a LIST call offers the module.
pub const LIST_PAGE_BYTES: usize = 256 << 10;

/// The optname base: `$NFKV_OPTBASE`, else what the loaded module reports
/// in sysfs, else the default.
pub fn discover_optbase() -> u32 {
    if let Some(v) = std::env::var("NFKV_OPTBASE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return v;
    }
    std::fs::read_to_string(OPTBASE_PARAM)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_OPTBASE)
}

/// A connection to the module: a PF_INET socket and the optname base.
#[derive(Debug)]
pub struct Nfkv {
    fd: OwnedFd,
    optbase: u32,
    info: Info,
    page_bytes: usize,
}

impl Nfkv {
    /// Opens a socket at the discovered optname base and checks the ABI.
    pub fn open() -> Result<Self> {
        Self::open_at(discover_optbase())
    }

    /// Opens a socket for the module registered at `optbase`. A raw socket
    /// (as ipvsadm and iptables use) when allowed, else a UDP socket: any
    /// PF_INET socket reaches the module, which checks CAP_NET_ADMIN itself.
    pub fn open_at(optbase: u32) -> Result<Self> {
        let fd = raw::open_socket(libc::SOCK_RAW, libc::IPPROTO_RAW)
            .or_else(|_| raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP))
            .map_err(|source| Error::Os {
                op: "socket",
                source,
            })?;
        Self::from_fd(fd, optbase)
    }

    /// Wraps an existing PF_INET socket; checks the module's ABI version.
    pub fn from_fd(fd: OwnedFd, optbase: u32) -> Result<Self> {
        check_optbase(optbase)?;
        let mut kv = Nfkv {
            fd,
            optbase,
            info: Info::default(),
            page_bytes: LIST_PAGE_BYTES,
        };
        kv.info = kv.info()?;
        if kv.info.abi_version != ABI_VERSION {
            return Err(Error::AbiMismatch {
                module: kv.info.abi_version,
                client: ABI_VERSION,
            });
        }
        Ok(kv)
    }

    /// Sets the buffer size offered to each LIST call (default
    /// [`LIST_PAGE_BYTES`]); smaller buffers mean more, smaller pages.
    pub fn set_page_bytes(&mut self, bytes: usize) {
        self.page_bytes = bytes.max(codec::LIST_REPLY_SIZE);
    }

    /// The socket in use.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The optname base in use.
    pub fn optbase(&self) -> u32 {
        self.optbase
    }

    /// `setsockopt` of set command `cmd` (an offset) with `req`; the errno on failure.
    pub fn raw_set(&self, cmd: u32, req: &[u8]) -> io::Result<()> {
        raw::raw_set(&self.fd, self.optname(cmd)?, req)
    }

    /// `getsockopt` of get command `cmd` (an offset) on `buf`; the reply length.
    pub fn raw_get(&self, cmd: u32, buf: &mut [u8]) -> io::Result<usize> {
        raw::raw_get(&self.fd, self.optname(cmd)?, buf)
    }

    /// The optname of command `cmd`: EINVAL for no command of the range.
    fn optname(&self, cmd: u32) -> io::Result<u32> {
        Some(cmd)
            .filter(|&c| c < cmd::RANGE)
            .and_then(|c| self.optbase.checked_add(c))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    fn set(&self, op: &'static str, cmd: u32, req: &[u8]) -> Result<()> {
        self.raw_set(cmd, req).map_err(|e| self.error(op, e))
    }

    fn get_into(&self, op: &'static str, cmd: u32, buf: &mut [u8]) -> Result<usize> {
        self.raw_get(cmd, buf).map_err(|e| self.error(op, e))
    }

    fn error(&self, op: &'static str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(errno) => Error::from_errno(op, errno, self.optbase),
            None => Error::Os { op, source: e },
        }
    }

    /// The module's limits and this namespace's usage.
    pub fn info(&self) -> Result<Info> {
        let mut buf = [0u8; codec::INFO_SIZE];
        let n = self.get_into("info", cmd::GET_INFO, &mut buf)?;
        Info::decode(&buf[..n]).map_err(|_| match Info::abi_version_of(&buf[..n]) {
            // A module of another ABI, whose reply is shorter.
            Some(module) if module != ABI_VERSION => Error::AbiMismatch {
                module,
                client: ABI_VERSION,
            },
            _ => Error::BadReply("info"),
        })
    }

    /// Limits as read when the connection was opened.
    pub fn limits(&self) -> &Info {
        &self.info
    }

    /// Per-command outcome counters of this namespace.
    pub fn stats(&self) -> Result<Stats> {
        let mut buf = [0u8; codec::STATS_SIZE];
        let n = self.get_into("stats", cmd::GET_STATS, &mut buf)?;
        Stats::decode(&buf[..n]).map_err(|_| Error::BadReply("stats"))
    }

    fn check_key(key: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::Invalid(format!(
                "key must be 1..={MAX_KEY_LEN} bytes, not {}",
                key.len()
            )));
        }
        Ok(())
    }

    /// Stores `value` under `key` if `cond` holds; `cond.ttl` says when the
    /// entry expires (default: never, also where it replaces one that would
    /// have; see [`Ttl`] and [`expires_after`]).
    pub fn put(&self, key: &[u8], value: &[u8], cond: Condition) -> Result<()> {
        self.set("put", cmd::SET_PUT, &put_request(key, value, cond)?)
    }

    /// Stores `value` under `key`, unconditionally, as an entry that expires
    /// `ttl` from now (rounded up to whole milliseconds; 1 ms..=[`MAX_TTL`]).
    pub fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<()> {
        let cond = Condition {
            ttl: expires_after(ttl)?,
            ..Default::default()
        };
        self.put(key, value, cond)
    }

    /// Removes `key`, if its version is `if_version` when given.
    pub fn delete(&self, key: &[u8], if_version: Option<u64>) -> Result<()> {
        Self::check_key(key)?;
        let op = Op {
            kind: OpKind::Del,
            cond: Condition {
                if_version,
                ..Default::default()
            },
            key,
            value: &[],
        };
        self.set("delete", cmd::SET_DEL, &raw::encode_op(&op))
    }

    /// Removes every entry.
    pub fn flush(&self) -> Result<()> {
        self.set("flush", cmd::SET_FLUSH, &[0u8; codec::FLUSH_SIZE])
    }

    /// Applies `batch` all or nothing.
    pub fn apply(&self, batch: &Batch) -> Result<()> {
        self.set("batch", cmd::SET_BATCH, &batch.encode()?)
    }

    /// The value of `key` and its version. Never truncated: a value larger
    /// than the buffer is fetched again with the size the module reports.
    pub fn get(&self, key: &[u8]) -> Result<Value> {
        Self::check_key(key)?;
        let mut size = codec::VALUE_SIZE + self.info.max_value_len as usize;
        loop {
            let mut buf = vec![0u8; size.max(codec::GET_SIZE + key.len())];
            codec::encode_get(&mut buf, key);
            match self.raw_get(cmd::GET_VALUE, &mut buf) {
                Ok(n) => {
                    let h = ValueHeader::decode(&buf[..n]).map_err(|_| Error::BadReply("get"))?;
                    let end = codec::VALUE_SIZE + h.value_len as usize;
                    if end != n {
                        return Err(Error::BadReply("get"));
                    }
                    buf.truncate(end);
                    buf.drain(..codec::VALUE_SIZE);
                    return Ok(Value {
                        version: h.version,
                        value: buf,
                        ttl: duration::time_left(h.ttl_ms),
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    let h = ValueHeader::decode(&buf).map_err(|_| Error::BadReply("get"))?;
                    let needed = codec::VALUE_SIZE + h.value_len as usize;
                    if needed <= size || h.value_len as usize > VALUE_LEN_CAP {
                        return Err(Error::BadReply("get"));
                    }
                    size = needed;
                }
                Err(e) => return Err(self.error("get", e)),
            }
        }
    }

    /// One page of entries with keys starting with `prefix`, after `after`.
    pub fn list_page(&self, prefix: &[u8], after: &[u8]) -> Result<Page> {
        let req = ListRequest { after, prefix };
        if after.len() > MAX_KEY_LEN || prefix.len() > MAX_KEY_LEN {
            return Err(Error::Invalid(format!(
                "prefix and cursor must be at most {MAX_KEY_LEN} bytes, not {} and {}",
                prefix.len(),
                after.len()
            )));
        }
        let mut size = list_buffer_len(self.page_bytes, &req);
        loop {
            let mut buf = vec![0u8; size];
            req.encode(&mut buf);
            match self.raw_get(cmd::GET_LIST, &mut buf) {
                Ok(n) => {
                    let mut entries = Vec::new();
                    let header = codec::decode_list_page(&buf[..n], |e| -> Result<(), Reject> {
                        entries.push(Entry {
                            key: e.key.to_vec(),
                            value: e.value.to_vec(),
                            version: e.version,
                            ttl: duration::time_left(e.ttl_ms),
                        });
                        Ok(())
                    })
                    .map_err(|_| Error::BadReply("list"))?;
                    return Ok(Page {
                        generation: header.generation,
                        entries,
                        more: header.more,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    let h = codec::ListReplyHeader::decode(&buf)
                        .map_err(|_| Error::BadReply("list"))?;
                    if h.size as usize <= size {
                        return Err(Error::BadReply("list"));
                    }
                    size = list_buffer_len(h.size as usize, &req);
                }
                Err(e) => return Err(self.error("list", e)),
            }
        }
    }

    /// Every entry with keys starting with `prefix`, page by page. Pages
    /// may come from different generations; see [`Nfkv::snapshot`].
    pub fn list<'a>(&'a self, prefix: &'a [u8]) -> List<'a> {
        List {
            kv: self,
            prefix,
            after: Vec::new(),
            page: Vec::new().into_iter(),
            done: false,
            generations: Vec::new(),
        }
    }

    /// A consistent snapshot of the entries with keys starting with `prefix`:
    /// every page from one generation, restarting when the table changed
    /// meanwhile (up to `retries` times). Returns the generation too.
    pub fn snapshot(&self, prefix: &[u8], retries: usize) -> Result<(u64, Vec<Entry>)> {
        for _ in 0..=retries {
            let mut entries = Vec::new();
            let mut after = Vec::new();
            let mut generation = None;
            let consistent = loop {
                let page = self.list_page(prefix, &after)?;
                if *generation.get_or_insert(page.generation) != page.generation {
                    break false;
                }
                if let Some(last) = page.entries.last() {
                    after = last.key.clone();
                }
                entries.extend(page.entries);
                if !page.more {
                    break true;
                }
            };
            if consistent {
                return Ok((generation.unwrap_or(0), entries));
            }
        }
        Err(Error::Os {
            op: "snapshot",
            source: io::Error::other("the table kept changing; gave up"),
        })
    }
}

/// Refuses an optname base whose range would leave a C `int`.
fn check_optbase(optbase: u32) -> Result<()> {
    if optbase > MAX_OPTBASE {
        return Err(Error::Invalid(format!(
            "optbase {optbase} is over {MAX_OPTBASE} (its optnames must fit an int)"
        )));
    }
    Ok(())
}

/// Iterator over a listing, fetching pages as it goes.
pub struct List<'a> {
    kv: &'a Nfkv,
    prefix: &'a [u8],
    after: Vec<u8>,
    page: std::vec::IntoIter<Entry>,
    done: bool,
    generations: Vec<u64>,
}

impl List<'_> {
    /// The generation of every page fetched so far.
    pub fn generations(&self) -> &[u64] {
        &self.generations
    }
}

impl Iterator for List<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.page.next() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            match self.kv.list_page(self.prefix, &self.after) {
                Ok(page) => {
                    self.done = !page.more;
                    self.generations.push(page.generation);
                    if let Some(last) = page.entries.last() {
                        self.after = last.key.clone();
                    } else {
                        self.done = true;
                    }
                    self.page = page.entries.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The buffer a LIST call needs: at least `page_bytes`, and always room for
/// the request itself (header, cursor, prefix) and the reply header.
fn list_buffer_len(page_bytes: usize, req: &ListRequest<'_>) -> usize {
    page_bytes.max(req.wire_len()).max(codec::LIST_REPLY_SIZE)
}

/// Checks a put and encodes its request: the key's length, and a value no
/// module accepts (over [`VALUE_LEN_CAP`]) is refused here, before its
/// length could be truncated to the 32 bits of the wire format.
pub fn put_request(key: &[u8], value: &[u8], cond: Condition) -> Result<Vec<u8>> {
    Nfkv::check_key(key)?;
    check_value(value)?;
    check_ttl(&cond.ttl)?;
    Ok(raw::encode_op(&Op {
        kind: OpKind::Put,
        cond,
        key,
        value,
    }))
}

/// Refuses `Ttl { ms: Some(0) }`, which the wire cannot carry (0 there
/// means "no TTL"). Longer than [`MAX_TTL_MS`] does not fit the `u32`.
fn check_ttl(ttl: &Ttl) -> Result<()> {
    if ttl.ms == Some(0) {
        return Err(Error::Invalid(
            "a TTL must be at least 1 ms (Ttl { ms: Some(0) }); None means never".into(),
        ));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > VALUE_LEN_CAP {
        return Err(Error::TooLarge(format!(
            "value of {} bytes (no module accepts more than {VALUE_LEN_CAP})",
            value.len()
        )));
    }
    Ok(())
}

/// A sequence of puts and deletes applied all or nothing by [`Nfkv::apply`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    flush: bool,
    ops: Vec<(OpKind, Condition, Vec<u8>, Vec<u8>)>,
    /// Bytes of the encoded request, header included (once non-empty).
    bytes: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty the table first.
    pub fn flush(&mut self) -> &mut Self {
        self.flush = true;
        self
    }

    /// Adds a put; `cond.ttl` as for [`Nfkv::put`]. Every record of a batch
    /// counts its lifetime from the same moment.
    pub fn put(&mut self, key: &[u8], value: &[u8], cond: Condition) -> &mut Self {
        self.bytes = self.bytes.saturating_add(Self::record_len(key, value));
        self.ops
            .push((OpKind::Put, cond, key.to_vec(), value.to_vec()));
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: &[u8], if_version: Option<u64>) -> &mut Self {
        let cond = Condition {
            if_version,
            ..Default::default()
        };
        self.bytes = self.bytes.saturating_add(Self::record_len(key, b""));
        self.ops.push((OpKind::Del, cond, key.to_vec(), Vec::new()));
        self
    }

    /// Bytes a record of `key` and `value` takes in a batch request.
    pub fn record_len(key: &[u8], value: &[u8]) -> usize {
        (codec::OP_SIZE + key.len())
            .saturating_add(value.len())
            .saturating_add(codec::ALIGN - 1)
            & !(codec::ALIGN - 1)
    }

    /// Bytes of the encoded request ([`Batch::encode`]), header included.
    pub fn encoded_len(&self) -> usize {
        codec::BATCH_SIZE.saturating_add(self.bytes)
    }

    /// Whether the batch empties the table first.
    pub fn flushes(&self) -> bool {
        self.flush
    }

    /// Whether it holds no put or delete (it may still flush).
    pub fn is_empty_of_ops(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is nothing to do (not even a flush).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && !self.flush
    }

    /// The `NFKV_SO_SET_BATCH` request.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let count = u32::try_from(self.ops.len())
            .ok()
            .filter(|&c| c as usize <= codec::MAX_BATCH_OPS)
            .ok_or_else(|| {
                Error::TooLarge(format!(
                    "{} operations in one batch (max {})",
                    self.ops.len(),
                    codec::MAX_BATCH_OPS
                ))
            })?;
        if self.encoded_len() > codec::MAX_REQUEST_LEN {
            return Err(Error::TooLarge(format!(
                "batch of {} bytes (max {})",
                self.encoded_len(),
                codec::MAX_REQUEST_LEN
            )));
        }
        let mut out = codec::encode_batch_header(self.flush, count).to_vec();
        for (kind, cond, key, value) in &self.ops {
            Nfkv::check_key(key)?;
            check_value(value)?;
            check_ttl(&cond.ttl)?;
            let op = Op {
                kind: *kind,
                cond: *cond,
                key,
                value,
            };
            let start = out.len();
            out.extend_from_slice(&raw::encode_op(&op));
            out.resize(start + op.record_len(), 0);
        }
        if out.len() > codec::MAX_REQUEST_LEN {
            return Err(Error::TooLarge(format!(
                "batch of {} bytes (max {})",
                out.len(),
                codec::MAX_REQUEST_LEN
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_has_its_errno_and_names_its_parameter() {
        for (errno, limit, words) in [
            (libc::ENOSPC, Limit::Entries, "max_entries"),
            (libc::EFBIG, Limit::Bytes, "max_bytes_mib"),
            (libc::EDQUOT, Limit::SharedBudget, "userns_budget_mib"),
        ] {
            let e = Error::from_errno("put", errno, DEFAULT_OPTBASE);
            assert!(
                matches!(e, Error::NoSpace(l) if l == limit),
                "{errno}: {e:?}"
            );
            assert_eq!(e.errno(), Some(errno));
            assert_eq!(limit.parameter(), words);
            assert!(e.to_string().contains(words), "{e}");
        }
    }

    /// `len` zero bytes that cost no memory: a private anonymous mapping
    /// with MAP_NORESERVE, never touched (reads would see zeros).
    struct Sparse {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl Sparse {
        fn new(len: usize) -> Sparse {
            // SAFETY: a fresh anonymous mapping, owned by the result.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED, "mmap of {len} bytes");
            Sparse { ptr, len }
        }

        fn bytes(&self) -> &[u8] {
            // SAFETY: the mapping is readable for `len` bytes while `self` lives.
            unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
        }
    }

    impl Drop for Sparse {
        fn drop(&mut self) {
            // SAFETY: unmapping our own mapping.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }

    #[test]
    fn values_of_4_gib_and_more_are_refused_not_truncated() {
        // 2^32 + 5 bytes would go on the wire as value_len 5.
        let huge = Sparse::new((1 << 32) + 5);
        match put_request(b"k", huge.bytes(), Condition::default()) {
            Err(Error::TooLarge(m)) => assert!(m.contains("4294967301 bytes"), "{m}"),
            other => panic!("4 GiB + 5 value: {:?}", other.map(|r| r.len())),
        }
        let over = vec![0u8; VALUE_LEN_CAP + 1];
        assert!(matches!(
            put_request(b"k", &over, Condition::default()),
            Err(Error::TooLarge(_))
        ));
        let mut b = Batch::new();
        b.put(b"k", &over, Condition::default());
        assert!(matches!(b.encode(), Err(Error::TooLarge(_))));
        let max = vec![0u8; VALUE_LEN_CAP];
        assert_eq!(
            put_request(b"k", &max, Condition::default()).unwrap().len(),
            codec::OP_SIZE + 1 + VALUE_LEN_CAP
        );
    }

    #[test]
    fn raw_set_refuses_lengths_optlen_cannot_carry() {
        let fd = raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP).unwrap();
        for len in [1usize << 31, (1 << 32) + 24] {
            let req = Sparse::new(len);
            let e = raw::raw_set(&fd, DEFAULT_OPTBASE, req.bytes()).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::E2BIG), "{len}: {e}");
        }
    }

    #[test]
    fn list_buffers_always_hold_the_request() {
        let key = [b'k'; MAX_KEY_LEN];
        for page_bytes in [0, 1, codec::LIST_REPLY_SIZE, 300, LIST_PAGE_BYTES] {
            for (after, prefix) in [(&key[..], &key[..]), (&key[..1], &key[..0])] {
                let req = ListRequest { after, prefix };
                let mut buf = vec![0u8; list_buffer_len(page_bytes, &req)];
                assert!(buf.len() >= page_bytes && buf.len() >= codec::LIST_REPLY_SIZE);
                let n = req.encode(&mut buf);
                assert_eq!(ListRequest::parse(&buf[..n], buf.len() as i32), Ok(req));
            }
        }
    }

    #[test]
    fn optbases_beyond_an_int_are_refused_not_wrapped() {
        // u32::MAX + GET_INFO would wrap around to optname 3 (IP_TTL).
        for optbase in [MAX_OPTBASE + 1, i32::MAX as u32, u32::MAX] {
            match Nfkv::open_at(optbase) {
                Err(Error::Invalid(m)) => assert!(m.contains("must fit an int"), "{m}"),
                other => panic!("optbase {optbase}: {other:?}"),
            }
            let fd = raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP).unwrap();
            assert!(matches!(Nfkv::from_fd(fd, optbase), Err(Error::Invalid(_))));
        }
    }

    #[test]
    fn command_names_follow_the_command_offsets() {
        let set = [
            (cmd::SET_PUT, "put"),
            (cmd::SET_DEL, "del"),
            (cmd::SET_FLUSH, "flush"),
            (cmd::SET_BATCH, "batch"),
        ];
        let get = [
            (cmd::GET_INFO, "info"),
            (cmd::GET_VALUE, "value"),
            (cmd::GET_LIST, "list"),
            (cmd::GET_STATS, "stats"),
        ];
        for (names, offsets) in [(SET_COMMAND_NAMES, set), (GET_COMMAND_NAMES, get)] {
            for (offset, name) in offsets {
                assert_eq!(names[offset as usize], name);
            }
        }
    }

    #[test]
    fn ttls_go_on_the_wire_and_zero_is_refused_before_it() {
        let ttl = |ms, keep| Condition {
            ttl: Ttl { ms, keep },
            ..Default::default()
        };
        for cond in [
            ttl(Some(1), false),
            ttl(Some(u32::MAX), true),
            ttl(None, true),
        ] {
            let req = put_request(b"k", b"v", cond).unwrap();
            let h: &[u8; codec::OP_SIZE] = req[..codec::OP_SIZE].try_into().unwrap();
            assert_eq!(codec::op_header(h, 10).unwrap().cond, cond);
        }
        let zero = ttl(Some(0), false);
        match put_request(b"k", b"v", zero) {
            Err(Error::Invalid(m)) => assert!(m.contains("at least 1 ms"), "{m}"),
            other => panic!("ttl 0: {other:?}"),
        }
        let mut b = Batch::new();
        b.put(b"k", b"v", ttl(Some(5), false)).put(b"j", b"", zero);
        assert!(matches!(b.encode(), Err(Error::Invalid(_))));
        assert_eq!(ABI_VERSION, 4, "the client speaks the ABI of watch");
    }

    #[test]
    fn batch_lengths_are_exact() {
        let mut b = Batch::new();
        assert_eq!(b.encoded_len(), b.encode().unwrap().len());
        b.put(b"key", b"value", Condition::default())
            .delete(b"k", Some(3))
            .put(&[7; 255], &[1; 1000], Condition::default());
        assert_eq!(b.encoded_len(), b.encode().unwrap().len());
        assert!(!b.flushes() && !b.is_empty_of_ops());
    }
}
