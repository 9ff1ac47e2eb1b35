//! Classifiers: the table in the packet path (`include/nfkv.h`, section
//! "Classifiers"; docs/ABI.md). A classifier is attached to a netfilter
//! hook; for each packet it builds a key, its prefix followed by the
//! packet's address or protocol and port, and applies the entry under that
//! key as an [`Action`]. This module adds and removes classifiers, lists
//! them with their counters, and writes, deletes and lists their entries
//! ("elements": a [`Target`] and its [`Action`]), and has the text forms the
//! CLI and the Python package share.
//!
//! ```no_run
//! use nfkv::classifier::{new_classifier, parse_action, Hook};
//! use nfkv::{Family, Match, Target};
//! let kv = nfkv::Nfkv::open()?;
//! let c = new_classifier("blocklist", Family::Inet, Hook::Input, Match::Saddr, b"bl/", 0)?;
//! kv.add_classifier(&c)?;
//! let target: Target = "192.0.2.7".parse()?;
//! kv.add_element("blocklist", &target, parse_action(&["drop"])?)?;
//! # Ok::<(), nfkv::Error>(())
//! ```

use crate::{Condition, Entry, Error, Limit, Nfkv, Result, Ttl, SNAPSHOT_RETRIES};
use nfkv_abi::classifier::{self as cls, Action, Classifier, Counters, Family, Match, PacketKey};
use nfkv_abi::codec::cmd;
use nfkv_abi::uapi;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

pub use nfkv_abi::classifier::{MAX_CLASSIFIERS, NAME_LEN, PREFIX_MAX};

/// A netfilter hook (`NFKV_HOOK_*`, the `NF_INET_*` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    /// Every hook, in the order of their ABI values.
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];

    /// The ABI value (`struct nfkv_classifier.hook`).
    pub fn raw(self) -> u8 {
        (match self {
            Hook::Prerouting => uapi::NFKV_HOOK_PREROUTING,
            Hook::Input => uapi::NFKV_HOOK_INPUT,
            Hook::Forward => uapi::NFKV_HOOK_FORWARD,
            Hook::Output => uapi::NFKV_HOOK_OUTPUT,
            Hook::Postrouting => uapi::NFKV_HOOK_POSTROUTING,
        }) as u8
    }

    /// The hook of ABI value `v`, if any.
    pub fn from_raw(v: u8) -> Option<Self> {
        Hook::ALL.into_iter().find(|h| h.raw() == v)
    }

    /// Its name, as nft spells it: `prerouting`, `input`, `forward`,
    /// `output`, `postrouting`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

impl FromStr for Hook {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Hook::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown hook {s:?}: prerouting, input, forward, output or postrouting"
                ))
            })
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The hook of classifier `c` (`None` only for a hook value the codec
/// would have refused).
pub fn hook_of(c: &Classifier) -> Option<Hook> {
    Hook::from_raw(c.hook)
}

/// A family by nft's name: `inet` (IPv4 and IPv6), `ip`, `ip6`.
pub fn parse_family(s: &str) -> Result<Family> {
    match s {
        "inet" => Ok(Family::Inet),
        "ip" => Ok(Family::Ipv4),
        "ip6" => Ok(Family::Ipv6),
        _ => Err(invalid(format!("unknown family {s:?}: inet, ip or ip6"))),
    }
}

/// nft's name of a family: `inet`, `ip`, `ip6`.
pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Inet => "inet",
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    }
}

/// What a classifier matches, by name: `saddr`, `daddr`, `dport` (the
/// transport protocol and destination port).
pub fn parse_match(s: &str) -> Result<Match> {
    match s {
        "saddr" => Ok(Match::Saddr),
        "daddr" => Ok(Match::Daddr),
        "dport" => Ok(Match::ProtoDport),
        _ => Err(invalid(format!(
            "unknown match {s:?}: saddr, daddr or dport"
        ))),
    }
}

/// The name of a match: `saddr`, `daddr`, `dport`.
pub fn match_name(m: Match) -> &'static str {
    match m {
        Match::Saddr => "saddr",
        Match::Daddr => "daddr",
        Match::ProtoDport => "dport",
    }
}

/// The name of classifier `c` (always ASCII: the codec checks names).
pub fn name_of(c: &Classifier) -> &str {
    std::str::from_utf8(c.name()).unwrap_or("?")
}

fn invalid(message: String) -> Error {
    Error::Invalid(message)
}

/// Refuses a name no classifier can have.
fn check_name(name: &str) -> Result<()> {
    if cls::valid_name(name.as_bytes()) {
        return Ok(());
    }
    Err(invalid(format!(
        "classifier name {name:?}: must be 1..{} bytes of A-Z a-z 0-9 _ . -",
        NAME_LEN - 1
    )))
}

/// A classifier keying whole addresses (or protocol and port); errors
/// say what is wrong with a bad name or prefix (1..=[`PREFIX_MAX`] bytes).
pub fn new_classifier(
    name: &str,
    family: Family,
    hook: Hook,
    matches: Match,
    prefix: &[u8],
    priority: i32,
) -> Result<Classifier> {
    check_name(name)?;
    if !(1..=PREFIX_MAX).contains(&prefix.len()) {
        return Err(invalid(format!(
            "classifier prefix must be 1..={PREFIX_MAX} bytes, not {}",
            prefix.len()
        )));
    }
    Classifier::new(
        name.as_bytes(),
        family,
        hook.raw(),
        matches,
        prefix,
        priority,
    )
    .map_err(|_| invalid(format!("classifier {name}: refused by the codec")))
}

/// `c` keying IPv4 addresses by their first `ipv4_bits` bits and IPv6 ones
/// by their first `ipv6_bits` (0: the whole address): a subnet per entry.
pub fn with_subnets(c: Classifier, ipv4_bits: u8, ipv6_bits: u8) -> Result<Classifier> {
    if ipv4_bits > 32 || ipv6_bits > 128 {
        return Err(invalid(format!(
            "ipv4_bits must be 0..=32 and ipv6_bits 0..=128, not {ipv4_bits} and {ipv6_bits}"
        )));
    }
    if (ipv4_bits != 0 || ipv6_bits != 0) && c.matches == Match::ProtoDport {
        return Err(invalid(
            "ipv4_bits and ipv6_bits apply to address matches (saddr, daddr), not dport".into(),
        ));
    }
    c.with_subnets(ipv4_bits, ipv6_bits)
        .map_err(|_| invalid("ipv4_bits/ipv6_bits refused by the codec".into()))
}

/// The message for `e`, the failure of a command on classifier `name`:
/// the module's ENOENT and EEXIST are about the classifier there, not a
/// key, and the message says so ("no classifier named X", "a classifier
/// named X exists"); other errors keep their own message.
pub fn describe(e: &Error, name: &str) -> String {
    match e {
        Error::NotFound => format!("no classifier named {name}"),
        Error::Exists => format!("a classifier named {name} exists"),
        e => e.to_string(),
    }
}

/// The transport protocols whose destination port a classifier keys
/// (`NFKV_MATCH_PROTO_DPORT`), with their names.
pub const PORT_PROTOCOLS: [(u8, &str); 5] = [
    (libc::IPPROTO_TCP as u8, "tcp"),
    (libc::IPPROTO_UDP as u8, "udp"),
    (libc::IPPROTO_DCCP as u8, "dccp"),
    (libc::IPPROTO_SCTP as u8, "sctp"),
    (libc::IPPROTO_UDPLITE as u8, "udplite"),
];

fn protocol_name(proto: u8) -> Option<&'static str> {
    PORT_PROTOCOLS
        .iter()
        .find(|(p, _)| *p == proto)
        .map(|(_, n)| *n)
}

/// What an element names: an address (a subnet for classifiers with
/// `ipv4_bits`/`ipv6_bits`: its first address), or a transport protocol
/// (`IPPROTO_*`) and destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Addr(IpAddr),
    Port(u8, u16),
}

/// `s` as an unsigned decimal number no larger than `max`.
fn decimal(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|&v| v <= max)
}

impl Target {
    /// Parses `s` with the prefix length a subnet gives (`10.1.2.0/24`),
    /// if any.
    fn parse_with_len(s: &str) -> Result<(Target, Option<u8>)> {
        let Some((left, right)) = s.split_once('/') else {
            return s.parse::<IpAddr>().map(|a| (Target::Addr(a), None)).map_err(|_| {
                invalid(format!(
                    "target {s:?}: not an address (192.0.2.7, 2001:db8::1), subnet (10.1.2.0/24) or PROTO/PORT (tcp/80)"
                ))
            });
        };
        if let Ok(addr) = left.parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = decimal(right, max).ok_or_else(|| {
                invalid(format!(
                    "target {s:?}: the prefix length of {left} must be 0..={max}"
                ))
            })?;
            return Ok((Target::Addr(addr), Some(len as u8)));
        }
        let proto = PORT_PROTOCOLS
            .iter()
            .find(|(_, n)| *n == left)
            .map(|(p, _)| *p)
            .or_else(|| decimal(left, 255).map(|p| p as u8))
            .ok_or_else(|| {
                invalid(format!(
                    "target {s:?}: unknown protocol {left:?} (tcp, udp, sctp, udplite, dccp, or its number)"
                ))
            })?;
        let port = decimal(right, 65535)
            .ok_or_else(|| invalid(format!("target {s:?}: port must be 0..=65535")))?;
        Ok((Target::Port(proto, port as u16), None))
    }

    /// Parses `s` as an element of classifier `c` and checks that it is
    /// one (see [`key_of`]); a subnet's `/len` must be the classifier's
    /// `ipv4_bits` or `ipv6_bits` (for a classifier keying whole addresses:
    /// 32 or 128, or none).
    pub fn parse_for(s: &str, c: &Classifier) -> Result<Target> {
        let (target, len) = Target::parse_with_len(s)?;
        if let (Target::Addr(a), Some(len)) = (target, len) {
            let (bits, field) = match a {
                IpAddr::V4(_) => (effective_bits(c.ipv4_bits, 32), "ipv4_bits"),
                IpAddr::V6(_) => (effective_bits(c.ipv6_bits, 128), "ipv6_bits"),
            };
            if len != bits {
                return Err(invalid(format!(
                    "target {s}: classifier {} keys {} addresses by their first {bits} bits ({field}), so its elements are /{bits}, not /{len}",
                    name_of(c),
                    if a.is_ipv4() { "IPv4" } else { "IPv6" },
                )));
            }
        }
        key_of(c, &target)?;
        Ok(target)
    }

    /// The target as an element of `c` shows it: an address with the
    /// classifier's subnet length when it keys subnets (`10.1.2.0/24`),
    /// else as [`Display`](fmt::Display).
    pub fn display_with(&self, c: &Classifier) -> String {
        match self {
            Target::Addr(a @ IpAddr::V4(_)) if c.ipv4_bits != 0 => format!("{a}/{}", c.ipv4_bits),
            Target::Addr(a @ IpAddr::V6(_)) if c.ipv6_bits != 0 => format!("{a}/{}", c.ipv6_bits),
            t => t.to_string(),
        }
    }
}

/// The bits of an address a classifier keys: `bits`, 0 meaning all.
fn effective_bits(bits: u8, all: u8) -> u8 {
    if bits == 0 {
        all
    } else {
        bits
    }
}

impl FromStr for Target {
    type Err = Error;

    /// `192.0.2.7`, `2001:db8::1`, `10.1.2.0/24` (the length is checked
    /// against a classifier by [`Target::parse_for`], and dropped here),
    /// `tcp/80`, `udp/53`, `sctp/…`, `udplite/…`, `dccp/…`, `6/80`.
    fn from_str(s: &str) -> Result<Self> {
        Target::parse_with_len(s).map(|(t, _)| t)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Port(p, port) => match protocol_name(*p) {
                Some(name) => write!(f, "{name}/{port}"),
                None => write!(f, "{p}/{port}"),
            },
        }
    }
}

fn ip_of(part: PacketKey) -> Option<IpAddr> {
    match part {
        PacketKey::V4(a) => Some(IpAddr::V4(Ipv4Addr::from(a))),
        PacketKey::V6(a) => Some(IpAddr::V6(Ipv6Addr::from(a))),
        PacketKey::Port(..) => None,
    }
}

/// The table key of `target` under `c`: its prefix, then the address
/// (4 or 16 bytes) or the protocol (1 byte) and port (2 bytes, big-endian).
/// Refused: a port for an address classifier and the reverse, an address
/// of a family the classifier does not see, an address with bits set past
/// the classifier's `ipv4_bits`/`ipv6_bits`, and a protocol whose ports it
/// never reads.
pub fn key_of(c: &Classifier, target: &Target) -> Result<Vec<u8>> {
    let name = name_of(c);
    let part = match (*target, c.matches) {
        (Target::Addr(a), Match::Saddr | Match::Daddr) => {
            let (part, covered, bits, field) = match a {
                IpAddr::V4(v4) => (
                    PacketKey::V4(v4.octets()),
                    c.family.covers_ipv4(),
                    c.ipv4_bits,
                    "ipv4_bits",
                ),
                IpAddr::V6(v6) => (
                    PacketKey::V6(v6.octets()),
                    c.family.covers_ipv6(),
                    c.ipv6_bits,
                    "ipv6_bits",
                ),
            };
            if !covered {
                return Err(invalid(format!(
                    "classifier {name} sees only {} packets (family {}): {a} would never match",
                    if a.is_ipv4() { "IPv6" } else { "IPv4" },
                    family_name(c.family)
                )));
            }
            let cut = c.packet_key(part);
            if cut != part {
                let subnet = ip_of(cut).map_or_else(String::new, |s| s.to_string());
                return Err(invalid(format!(
                    "{a} has bits set past the first {bits} that classifier {name} keys addresses by ({field}): its subnet is {subnet}/{bits}"
                )));
            }
            part
        }
        (Target::Port(proto, port), Match::ProtoDport) => {
            if protocol_name(proto).is_none() {
                return Err(invalid(format!(
                    "protocol {proto}: classifier {name} reads the ports of tcp, udp, udplite, sctp and dccp only"
                )));
            }
            PacketKey::Port(proto, port)
        }
        (Target::Port(..), m) => {
            return Err(invalid(format!(
                "classifier {name} matches addresses ({}): give an address, not {target}",
                match_name(m)
            )))
        }
        (Target::Addr(_), _) => {
            return Err(invalid(format!(
                "classifier {name} matches protocol and destination port (dport): give PROTO/PORT such as tcp/80, not {target}"
            )))
        }
    };
    Ok(c.key(part).as_bytes().to_vec())
}

/// The target whose key under `c` is `key`; `None` for a key no packet
/// ever gives `c` (another length, an address with bits past the
/// classifier's, a family it does not see, a protocol without ports).
pub fn target_of(c: &Classifier, key: &[u8]) -> Option<Target> {
    let tail = key.strip_prefix(c.prefix())?;
    let target = match (c.matches, tail.len()) {
        (Match::Saddr | Match::Daddr, 4) => {
            Target::Addr(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(tail).ok()?)))
        }
        (Match::Saddr | Match::Daddr, 16) => {
            Target::Addr(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(tail).ok()?)))
        }
        (Match::ProtoDport, 3) => Target::Port(tail[0], u16::from_be_bytes([tail[1], tail[2]])),
        _ => return None,
    };
    (key_of(c, &target).ok()?.as_slice() == key).then_some(target)
}

/// `s` as a u32: `0x` hexadecimal or decimal.
fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.len() <= 8 => {
            if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                u32::from_str_radix(hex, 16).ok()
            } else {
                None
            }
        }
        Some(_) => None,
        None => decimal(s, u32::MAX),
    }
}

/// An action from its words: `drop`, `accept`, `mark MARK[/MASK]` (as
/// arguments, `["mark", "0x10/0xff"]`; words holding blanks are split, so
/// `["mark 0x10"]` is the same). MARK and MASK are `0x` hexadecimal or
/// decimal; without a mask the whole mark is set (mask `0xffffffff`).
/// Refused: a mask of 0, mark bits outside the mask, anything else.
pub fn parse_action(words: &[&str]) -> Result<Action> {
    let words: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
    let usage = || "an action is drop, accept, or mark MARK[/MASK] (mark 0x10, mark 0x10/0xff)";
    match words[..] {
        ["drop"] => Ok(Action::Drop),
        ["accept"] => Ok(Action::Accept),
        ["mark", arg] => {
            let (m, k) = match arg.split_once('/') {
                Some((m, k)) => (m, Some(k)),
                None => (arg, None),
            };
            let mark = number(m)
                .ok_or_else(|| invalid(format!("mark {m:?}: not a 32-bit number; {}", usage())))?;
            let mask = match k {
                Some(k) => number(k).ok_or_else(|| {
                    invalid(format!("mask {k:?}: not a 32-bit number; {}", usage()))
                })?,
                None => u32::MAX,
            };
            if mask == 0 {
                return Err(invalid("mark mask 0 would change no bit".into()));
            }
            if mark & !mask != 0 {
                return Err(invalid(format!(
                    "mark {mark:#x} has bits outside its mask {mask:#x} ({:#x}): mark & ~mask must be 0",
                    mark & !mask
                )));
            }
            Ok(Action::Mark { mark, mask })
        }
        [] => Err(invalid(format!("no action given: {}", usage()))),
        _ => Err(invalid(format!(
            "action {:?}: {}",
            words.join(" "),
            usage()
        ))),
    }
}

/// The text of an action, which [`parse_action`] reads back: `drop`,
/// `accept`, `mark 0x10/0xff` (`mark 0x10` for the whole mark).
pub fn action_text(a: &Action) -> String {
    match *a {
        Action::Drop => "drop".into(),
        Action::Accept => "accept".into(),
        Action::Mark {
            mark,
            mask: u32::MAX,
        } => format!("mark {mark:#x}"),
        Action::Mark { mark, mask } => format!("mark {mark:#x}/{mask:#x}"),
    }
}

/// Most entries of a classifier list reply this client accepts: far above
/// [`MAX_CLASSIFIERS`], and bounding the buffer a bad count asks for.
const LIST_COUNT_MAX: usize = 1 << 16;

impl Nfkv {
    /// The error of classifier command `op`: EOPNOTSUPP means the module
    /// predates classifiers, ENOSPC that the namespace has the most.
    fn cls_error(&self, op: &'static str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Error::ClassifiersUnsupported,
            Some(libc::ENOSPC) => Error::NoSpace(Limit::Classifiers),
            _ => self.error(op, e),
        }
    }

    /// Adds classifier `c` to this namespace. `Error::Exists` if one has its
    /// name, `Error::NoSpace(Limit::Classifiers)` if the namespace has
    /// [`MAX_CLASSIFIERS`], `Error::BadAction` if an entry under its prefix
    /// is no valid action.
    pub fn add_classifier(&self, c: &Classifier) -> Result<()> {
        self.raw_set(cmd::SET_CLS_ADD, &c.encode())
            .map_err(|e| self.cls_error("classifier add", e))
    }

    /// Removes classifier `name` (its entries stay in the table);
    /// `Error::NotFound` if there is none.
    pub fn delete_classifier(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let req = cls::encode_del(name.as_bytes())?;
        self.raw_set(cmd::SET_CLS_DEL, &req)
            .map_err(|e| self.cls_error("classifier delete", e))
    }

    /// This namespace's classifiers and their counters, in the order
    /// packets see them.
    pub fn classifiers(&self) -> Result<Vec<(Classifier, Counters)>> {
        let bad = || Error::BadReply("classifier list");
        let mut count = MAX_CLASSIFIERS;
        loop {
            let size = cls::LIST_HEADER_SIZE + count * cls::INFO_SIZE;
            let mut buf = vec![0u8; size];
            match self.raw_get(cmd::GET_CLS_LIST, &mut buf) {
                Ok(n) => return decode_list(buf.get(..n).ok_or_else(bad)?),
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    let needed = cls::decode_list_header(&buf).map_err(|_| bad())? as usize;
                    if needed <= count || needed > LIST_COUNT_MAX {
                        return Err(bad());
                    }
                    count = needed;
                }
                Err(e) => return Err(self.cls_error("classifier list", e)),
            }
        }
    }

    /// Classifier `name` and its counters; `Error::NotFound` if there is
    /// none.
    pub fn classifier(&self, name: &str) -> Result<(Classifier, Counters)> {
        check_name(name)?;
        self.classifiers()?
            .into_iter()
            .find(|(c, _)| c.name() == name.as_bytes())
            .ok_or(Error::NotFound)
    }

    /// Puts `action` for `target` under classifier `name` (looked up for
    /// its prefix, match and bits; `Error::NotFound` if there is none),
    /// replacing the target's action if it had one.
    pub fn add_element(&self, name: &str, target: &Target, action: Action) -> Result<()> {
        self.add_element_with_ttl(name, target, action, Ttl::default())
    }

    /// [`Nfkv::add_element`] with an expiry, as an ipset element with a
    /// timeout: `ttl` as in [`Condition::ttl`] (e.g.
    /// [`expires_after`](crate::expires_after)`(Duration::from_secs(600))?`
    /// blocks an address for ten minutes; `Ttl::default()`: for ever).
    pub fn add_element_with_ttl(
        &self,
        name: &str,
        target: &Target,
        action: Action,
        ttl: Ttl,
    ) -> Result<()> {
        let (c, _) = self.classifier(name)?;
        let cond = Condition {
            ttl,
            ..Default::default()
        };
        self.put(&key_of(&c, target)?, &action.encode(), cond)
    }

    /// Removes `target`'s entry under classifier `name`; `Error::NotFound`
    /// if there is no such classifier or entry.
    pub fn delete_element(&self, name: &str, target: &Target) -> Result<()> {
        let (c, _) = self.classifier(name)?;
        self.delete(&key_of(&c, target)?, None)
    }

    /// The entries of classifier `name` (one consistent snapshot under its
    /// prefix, in key order), decoded. Entries under the prefix whose key no
    /// packet gives this classifier (another classifier's, under a longer
    /// prefix, or written by hand) are left out; a value that is no valid
    /// action, which the module refuses to store, is `Error::BadAction`.
    pub fn elements(&self, name: &str) -> Result<Vec<(Target, Action)>> {
        Ok(self
            .elements_with_ttl(name)?
            .into_iter()
            .map(|e| (e.target, e.action))
            .collect())
    }

    /// [`Nfkv::elements`] with the time each has left.
    pub fn elements_with_ttl(&self, name: &str) -> Result<Vec<Element>> {
        let (c, _) = self.classifier(name)?;
        let (_, entries) = self.snapshot(c.prefix(), SNAPSHOT_RETRIES)?;
        decode_elements_with_ttl(&c, &entries)
    }
}

/// An element of a classifier: its target, its action, and the time its
/// entry has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub target: Target,
    pub action: Action,
    /// As [`Entry::ttl`]; `None`: it never expires.
    pub ttl: Option<Duration>,
}

/// The classifiers of a `NFKV_SO_GET_CLS_LIST` reply of exactly the
/// length the module gave.
pub fn decode_list(reply: &[u8]) -> Result<Vec<(Classifier, Counters)>> {
    let bad = || Error::BadReply("classifier list");
    let count = cls::decode_list_header(reply).map_err(|_| bad())? as usize;
    let entries = &reply[cls::LIST_HEADER_SIZE..];
    if Some(entries.len()) != count.checked_mul(cls::INFO_SIZE) {
        return Err(bad());
    }
    entries
        .chunks_exact(cls::INFO_SIZE)
        .map(|e| cls::decode_info(e).map_err(|_| bad()))
        .collect()
}

/// The elements of `c` among `entries` (see [`Nfkv::elements`]).
pub fn decode_elements(c: &Classifier, entries: &[Entry]) -> Result<Vec<(Target, Action)>> {
    Ok(decode_elements_with_ttl(c, entries)?
        .into_iter()
        .map(|e| (e.target, e.action))
        .collect())
}

/// The elements of `c` among `entries`, with their time left.
pub fn decode_elements_with_ttl(c: &Classifier, entries: &[Entry]) -> Result<Vec<Element>> {
    entries
        .iter()
        .filter_map(|e| target_of(c, &e.key).map(|t| (t, e)))
        .map(|(target, e)| {
            Ok(Element {
                target,
                action: Action::parse(&e.value).ok_or(Error::BadAction)?,
                ttl: e.ttl,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(matches: Match, family: Family, bits: (u8, u8)) -> Classifier {
        let c = new_classifier("c1", family, Hook::Input, matches, b"p/", 0).unwrap();
        with_subnets(c, bits.0, bits.1).unwrap()
    }

    fn msg(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn hooks_parse_print_and_have_their_abi_values() {
        for (i, h) in Hook::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(h.raw()), i);
            assert_eq!(Hook::from_raw(h.raw()), Some(h));
            assert_eq!(h.to_string().parse::<Hook>().unwrap(), h);
        }
        assert_eq!("prerouting".parse::<Hook>().unwrap(), Hook::Prerouting);
        assert_eq!("postrouting".parse::<Hook>().unwrap(), Hook::Postrouting);
        assert_eq!(Hook::from_raw(5), None);
        assert!(msg("ingress".parse::<Hook>()).contains("unknown hook \"ingress\""));
        assert!("Input".parse::<Hook>().is_err());
    }

    #[test]
    fn families_and_matches_by_name() {
        for f in [Family::Inet, Family::Ipv4, Family::Ipv6] {
            assert_eq!(parse_family(family_name(f)).unwrap(), f);
        }
        assert_eq!(parse_family("ip6").unwrap(), Family::Ipv6);
        assert!(parse_family("ipv4").is_err());
        for m in [Match::Saddr, Match::Daddr, Match::ProtoDport] {
            assert_eq!(parse_match(match_name(m)).unwrap(), m);
        }
        assert!(parse_match("sport").is_err());
    }

    #[test]
    fn targets_parse_and_print() {
        let cases = [
            ("192.0.2.7", Target::Addr("192.0.2.7".parse().unwrap())),
            ("2001:db8::1", Target::Addr("2001:db8::1".parse().unwrap())),
            ("tcp/80", Target::Port(6, 80)),
            ("udp/53", Target::Port(17, 53)),
            ("sctp/9", Target::Port(132, 9)),
            ("udplite/1", Target::Port(136, 1)),
            ("dccp/65535", Target::Port(33, 65535)),
            ("47/0", Target::Port(47, 0)),
        ];
        for (s, t) in cases {
            assert_eq!(s.parse::<Target>().unwrap(), t, "{s}");
            assert_eq!(t.to_string(), s);
        }
        assert_eq!("6/80".parse::<Target>().unwrap(), Target::Port(6, 80));
        assert_eq!("6/80".parse::<Target>().unwrap().to_string(), "tcp/80");
        assert_eq!(
            "10.1.2.0/24".parse::<Target>().unwrap(),
            Target::Addr("10.1.2.0".parse().unwrap())
        );
    }

    #[test]
    fn bad_targets_are_refused_with_a_reason() {
        for (s, why) in [
            ("foo", "not an address"),
            ("", "not an address"),
            ("tcp/70000", "port must be 0..=65535"),
            ("tcp/-1", "port must be"),
            ("tcp/", "port must be"),
            ("tcp/0x50", "port must be"),
            ("icmp/1", "unknown protocol \"icmp\""),
            ("256/80", "unknown protocol"),
            ("10.1.2.0/33", "0..=32"),
            ("2001:db8::/129", "0..=128"),
            ("10.1.2.0/", "0..=32"),
            ("10.1.2.0/24/1", "0..=32"),
            ("192.0.2.300", "not an address"),
            ("99999999999999999999/1", "unknown protocol"),
        ] {
            let m = msg(s.parse::<Target>());
            assert!(m.contains(why), "{s:?}: {m}");
        }
    }

    #[test]
    fn keys_are_prefix_then_address_or_protocol_and_port() {
        let c = classifier(Match::Saddr, Family::Inet, (0, 0));
        let t: Target = "192.0.2.7".parse().unwrap();
        assert_eq!(key_of(&c, &t).unwrap(), b"p/\xc0\x00\x02\x07");
        let t6: Target = "2001:db8::1".parse().unwrap();
        let mut want = b"p/".to_vec();
        want.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(key_of(&c, &t6).unwrap(), want);
        let p = classifier(Match::ProtoDport, Family::Inet, (0, 0));
        assert_eq!(
            key_of(&p, &Target::Port(6, 0x1f90)).unwrap(),
            b"p/\x06\x1f\x90"
        );
        for (c, t) in [(&c, t), (&c, t6), (&p, Target::Port(17, 53))] {
            let key = key_of(c, &t).unwrap();
            assert_eq!(target_of(c, &key), Some(t));
        }
    }

    #[test]
    fn keys_refuse_what_the_classifier_never_looks_up() {
        let addr = classifier(Match::Daddr, Family::Inet, (0, 0));
        let port = classifier(Match::ProtoDport, Family::Inet, (0, 0));
        let v4 = classifier(Match::Saddr, Family::Ipv4, (0, 0));
        let v6 = classifier(Match::Saddr, Family::Ipv6, (0, 0));
        let t = |s: &str| s.parse::<Target>().unwrap();
        assert!(msg(key_of(&addr, &t("tcp/80"))).contains("matches addresses (daddr)"));
        assert!(msg(key_of(&port, &t("192.0.2.1"))).contains("PROTO/PORT"));
        assert!(msg(key_of(&v4, &t("2001:db8::1"))).contains("sees only IPv4 packets (family ip)"));
        assert!(msg(key_of(&v6, &t("192.0.2.1"))).contains("sees only IPv6 packets (family ip6)"));
        assert!(msg(key_of(&port, &Target::Port(1, 0))).contains("protocol 1"));
    }

    #[test]
    fn subnets_need_the_bits_past_the_classifier_s_zero() {
        let c = classifier(Match::Saddr, Family::Inet, (24, 64));
        let subnet = Target::parse_for("10.1.2.0/24", &c).unwrap();
        assert_eq!(subnet, Target::Addr("10.1.2.0".parse().unwrap()));
        assert_eq!(key_of(&c, &subnet).unwrap(), b"p/\x0a\x01\x02\x00");
        assert_eq!(subnet.display_with(&c), "10.1.2.0/24");
        // Bits past 24 set: refused when keyed, naming the subnet.
        let m = msg(Target::parse_for("10.1.2.3/24", &c));
        assert!(
            m.contains("bits set past the first 24") && m.contains("10.1.2.0/24"),
            "{m}"
        );
        let m = msg(key_of(&c, &"10.1.2.3".parse().unwrap()));
        assert!(m.contains("ipv4_bits"), "{m}");
        // The length must be the classifier's.
        let m = msg(Target::parse_for("10.1.0.0/16", &c));
        assert!(m.contains("/24, not /16"), "{m}");
        assert!(Target::parse_for("10.1.2.0", &c).is_ok());
        let v6 = Target::parse_for("2001:db8:0:1::/64", &c).unwrap();
        assert_eq!(v6.display_with(&c), "2001:db8:0:1::/64");
        assert!(msg(Target::parse_for("2001:db8:0:1::1/64", &c)).contains("ipv6_bits"));
        // A classifier of whole addresses takes /32 and /128, or no length.
        let whole = classifier(Match::Saddr, Family::Inet, (0, 0));
        assert!(Target::parse_for("192.0.2.7/32", &whole).is_ok());
        assert!(Target::parse_for("2001:db8::1/128", &whole).is_ok());
        assert!(msg(Target::parse_for("192.0.2.0/24", &whole)).contains("/32, not /24"));
        assert_eq!(
            "192.0.2.7".parse::<Target>().unwrap().display_with(&whole),
            "192.0.2.7"
        );
        // Keys of another shape under the prefix are no elements.
        assert_eq!(target_of(&c, b"p/\x0a\x01\x02\x03"), None);
        assert_eq!(target_of(&c, b"p/xx"), None);
        assert_eq!(target_of(&c, b"q/\x0a\x01\x02\x00"), None);
    }

    #[test]
    fn actions_parse_and_print() {
        let m = |mark, mask| Action::Mark { mark, mask };
        for (words, action, text) in [
            (&["drop"][..], Action::Drop, "drop"),
            (&["accept"][..], Action::Accept, "accept"),
            (&["mark", "0x10"][..], m(0x10, u32::MAX), "mark 0x10"),
            (&["mark", "16"][..], m(16, u32::MAX), "mark 0x10"),
            (&["mark", "0x10/0xff"][..], m(0x10, 0xff), "mark 0x10/0xff"),
            (&["mark 0x10/0xff"][..], m(0x10, 0xff), "mark 0x10/0xff"),
            (&["mark", "0/1"][..], m(0, 1), "mark 0x0/0x1"),
            (
                &["mark", "0xFFFFFFFF"][..],
                m(u32::MAX, u32::MAX),
                "mark 0xffffffff",
            ),
        ] {
            assert_eq!(parse_action(words).unwrap(), action, "{words:?}");
            assert_eq!(action_text(&action), text);
            assert_eq!(parse_action(&[text]).unwrap(), action);
        }
    }

    #[test]
    fn bad_actions_are_refused_with_a_reason() {
        for (words, why) in [
            (&["mark", "0x10/0x0f"][..], "bits outside its mask 0xf"),
            (&["mark", "1/0"][..], "mask 0"),
            (&["mark"][..], "an action is drop"),
            (&["mark", "0x"][..], "not a 32-bit number"),
            (&["mark", "0x100000000"][..], "not a 32-bit number"),
            (&["mark", "4294967296"][..], "not a 32-bit number"),
            (&["mark", "-1"][..], "not a 32-bit number"),
            (&["mark", "1/x"][..], "mask \"x\""),
            (&["drop", "now"][..], "action \"drop now\""),
            (&["reject"][..], "an action is drop"),
            (&[][..], "no action given"),
            (&[""][..], "no action given"),
        ] {
            let m = msg(parse_action(words));
            assert!(m.contains(why), "{words:?}: {m}");
        }
    }

    #[test]
    fn names_and_prefixes_are_checked_with_a_reason() {
        let new = |name: &str, prefix: &[u8]| {
            new_classifier(name, Family::Inet, Hook::Input, Match::Saddr, prefix, 0)
        };
        assert!(new("a.b-c_9", b"x").is_ok());
        assert!(new(&"n".repeat(15), &[0; PREFIX_MAX]).is_ok());
        assert!(msg(new(&"n".repeat(16), b"x")).contains("1..15 bytes"));
        assert!(msg(new("", b"x")).contains("1..15 bytes"));
        assert!(msg(new("a b", b"x")).contains("1..15 bytes"));
        assert!(msg(new("ok", b"")).contains("1..=64 bytes, not 0"));
        assert!(msg(new("ok", &[0; PREFIX_MAX + 1])).contains("not 65"));
        let c = new("ok", b"x").unwrap();
        assert!(msg(with_subnets(c, 33, 0)).contains("0..=32"));
        assert!(msg(with_subnets(c, 0, 129)).contains("0..=128"));
        let p = new_classifier("p", Family::Inet, Hook::Input, Match::ProtoDport, b"x", 0).unwrap();
        assert!(msg(with_subnets(p, 24, 0)).contains("not dport"));
        assert!(with_subnets(p, 0, 0).is_ok());
    }

    #[test]
    fn list_replies_decode_exactly() {
        let a = classifier(Match::Saddr, Family::Inet, (24, 0));
        let b =
            new_classifier("b", Family::Ipv6, Hook::Output, Match::ProtoDport, b"q", -5).unwrap();
        let counters = Counters {
            packets: 5,
            unkeyed: 1,
            drop: 2,
            accept: 0,
            mark: 1 << 40,
        };
        let mut reply = cls::encode_list_header(2).to_vec();
        reply.extend_from_slice(&cls::encode_info(&a, &counters));
        reply.extend_from_slice(&cls::encode_info(&b, &Counters::default()));
        let got = decode_list(&reply).unwrap();
        assert_eq!(got, [(a, counters), (b, Counters::default())]);
        assert_eq!(decode_list(&cls::encode_list_header(0)).unwrap(), []);
        // Any other length, or a count that does not fit: a bad reply.
        for bad in [
            &reply[..reply.len() - 1],
            &reply[..cls::LIST_HEADER_SIZE + cls::INFO_SIZE],
            &reply[..3],
            &[][..],
        ] {
            assert!(matches!(decode_list(bad), Err(Error::BadReply(_))));
        }
        // More bytes than the count says: a bad reply too.
        let mut longer = reply.clone();
        longer.push(0);
        assert!(matches!(decode_list(&longer), Err(Error::BadReply(_))));
        let mut fewer = reply.clone();
        fewer[..4].copy_from_slice(&1u32.to_ne_bytes());
        assert!(matches!(decode_list(&fewer), Err(Error::BadReply(_))));
        let mut huge = reply.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(decode_list(&huge), Err(Error::BadReply(_))));
        let mut broken = reply;
        broken[cls::LIST_HEADER_SIZE] = 0; // the first one's name
        assert!(matches!(decode_list(&broken), Err(Error::BadReply(_))));
    }

    #[test]
    fn elements_decode_and_a_bad_value_is_an_error() {
        let c = classifier(Match::Saddr, Family::Inet, (24, 0));
        let entry = |key: &[u8], value: &[u8]| Entry {
            key: key.to_vec(),
            value: value.to_vec(),
            version: 1,
            ttl: None,
        };
        let drop = Action::Drop.encode();
        let entries = [
            entry(b"p/\x0a\x01\x02\x00", &drop),
            entry(b"p/\x0a\x01\x02\x07", &drop), // never looked up: bits past 24
            entry(b"p/other", b"whatever"),
        ];
        assert_eq!(
            decode_elements(&c, &entries).unwrap(),
            [(Target::Addr("10.1.2.0".parse().unwrap()), Action::Drop)]
        );
        let bad = [entry(b"p/\x0a\x01\x02\x00", b"not an action")];
        assert!(matches!(decode_elements(&c, &bad), Err(Error::BadAction)));
        let expiring = [Entry {
            ttl: Some(Duration::from_millis(1500)),
            ..entry(b"p/\x0a\x01\x02\x00", &drop)
        }];
        assert_eq!(
            decode_elements_with_ttl(&c, &expiring).unwrap(),
            [Element {
                target: Target::Addr("10.1.2.0".parse().unwrap()),
                action: Action::Drop,
                ttl: Some(Duration::from_millis(1500)),
            }]
        );
    }

    #[test]
    fn classifier_errors_name_the_classifier() {
        assert_eq!(describe(&Error::NotFound, "bl"), "no classifier named bl");
        assert_eq!(
            describe(&Error::Exists, "bl"),
            "a classifier named bl exists"
        );
        assert_eq!(
            describe(&Error::NoSpace(Limit::Classifiers), "bl"),
            "the namespace has 16 classifiers, the most it may have"
        );
        let e = Error::from_errno("put", libc::EBADMSG, crate::DEFAULT_OPTBASE);
        assert!(matches!(e, Error::BadAction));
        assert_eq!(e.errno(), Some(libc::EBADMSG));
        assert_eq!(
            e.to_string(),
            "value under a classifier's prefix is not a valid action (struct nfkv_action, docs/ABI.md)"
        );
        assert_eq!(
            Error::ClassifiersUnsupported.errno(),
            Some(libc::EOPNOTSUPP)
        );
        assert!(Error::ClassifiersUnsupported
            .to_string()
            .contains("predates classifiers"));
    }
}
