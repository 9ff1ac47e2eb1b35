// SPDX-License-Identifier: GPL-2.0

//! Parsing, validation and encoding of the classifier commands and of the
//! actions their entries hold (`struct nfkv_classifier`, `struct
//! nfkv_action` & co. in `include/nfkv.h`), and the keys a classifier looks
//! up. Compiled into the kernel module and into `nfkv-abi`, like
//! [`crate::codec`]: `core` only, no `unsafe`.

use crate::codec::{get_u32, get_u64, put_u32, put_u64, take, Reject};
use crate::uapi;
use core::mem::{offset_of, size_of};

/// `struct nfkv_classifier` size.
pub const CLASSIFIER_SIZE: usize = size_of::<uapi::nfkv_classifier>();
/// `struct nfkv_classifier_del` size.
pub const DEL_SIZE: usize = size_of::<uapi::nfkv_classifier_del>();
/// `struct nfkv_classifier_list` size.
pub const LIST_HEADER_SIZE: usize = size_of::<uapi::nfkv_classifier_list>();
/// `struct nfkv_classifier_info` size.
pub const INFO_SIZE: usize = size_of::<uapi::nfkv_classifier_info>();
/// `struct nfkv_action` size: the length of every value under a prefix.
pub const ACTION_SIZE: usize = size_of::<uapi::nfkv_action>();
/// Bytes of a name field, NUL padding included.
pub const NAME_LEN: usize = uapi::NFKV_CLS_NAME_LEN as usize;
/// Longest prefix.
pub const PREFIX_MAX: usize = uapi::NFKV_CLS_PREFIX_MAX as usize;
/// Most classifiers per namespace.
pub const MAX_CLASSIFIERS: usize = uapi::NFKV_MAX_CLASSIFIERS as usize;
/// Longest key a classifier builds: its prefix and an IPv6 address.
pub const KEY_MAX: usize = PREFIX_MAX + 16;

/// Which packets a classifier sees (`NFKV_FAMILY_*`, the `NFPROTO_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 and IPv6.
    Inet,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    /// From the ABI value.
    pub fn from_raw(v: u8) -> Option<Self> {
        match u32::from(v) {
            uapi::NFKV_FAMILY_INET => Some(Family::Inet),
            uapi::NFKV_FAMILY_IPV4 => Some(Family::Ipv4),
            uapi::NFKV_FAMILY_IPV6 => Some(Family::Ipv6),
            _ => None,
        }
    }

    /// The ABI value.
    pub fn raw(self) -> u8 {
        (match self {
            Family::Inet => uapi::NFKV_FAMILY_INET,
            Family::Ipv4 => uapi::NFKV_FAMILY_IPV4,
            Family::Ipv6 => uapi::NFKV_FAMILY_IPV6,
        }) as u8
    }

    /// Whether packets of IP version 4 (`false`: 6) are this family's.
    pub fn covers_ipv4(self) -> bool {
        self != Family::Ipv6
    }

    /// Whether IPv6 packets are this family's.
    pub fn covers_ipv6(self) -> bool {
        self != Family::Ipv4
    }
}

/// The netfilter hooks a classifier may be attached to (`NFKV_HOOK_*`, the
/// `NF_INET_*` values).
pub const HOOKS: usize = 5;

/// What a classifier takes from a packet (`NFKV_MATCH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The source address.
    Saddr,
    /// The destination address.
    Daddr,
    /// The transport protocol and destination port.
    ProtoDport,
}

impl Match {
    /// From the ABI value.
    pub fn from_raw(v: u8) -> Option<Self> {
        match u32::from(v) {
            uapi::NFKV_MATCH_SADDR => Some(Match::Saddr),
            uapi::NFKV_MATCH_DADDR => Some(Match::Daddr),
            uapi::NFKV_MATCH_PROTO_DPORT => Some(Match::ProtoDport),
            _ => None,
        }
    }

    /// The ABI value.
    pub fn raw(self) -> u8 {
        (match self {
            Match::Saddr => uapi::NFKV_MATCH_SADDR,
            Match::Daddr => uapi::NFKV_MATCH_DADDR,
            Match::ProtoDport => uapi::NFKV_MATCH_PROTO_DPORT,
        }) as u8
    }
}

/// Whether `name` (the bytes before the NUL padding) is a valid name:
/// 1..15 bytes of `[A-Za-z0-9_.-]`.
pub fn valid_name(name: &[u8]) -> bool {
    (1..NAME_LEN).contains(&name.len())
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A name field: `name` and NUL padding; `Invalid` if `name` is no valid name.
pub fn name_field(name: &[u8]) -> Result<[u8; NAME_LEN], Reject> {
    if !valid_name(name) {
        return Err(Reject::Invalid);
    }
    let mut field = [0u8; NAME_LEN];
    field[..name.len()].copy_from_slice(name);
    Ok(field)
}

/// The name in a name field: the bytes before the first NUL, checked.
fn parse_name(field: &[u8]) -> Result<[u8; NAME_LEN], Reject> {
    let len = field.iter().position(|&c| c == 0).ok_or(Reject::Invalid)?;
    if field[len..].iter().any(|&c| c != 0) {
        return Err(Reject::Invalid);
    }
    name_field(&field[..len])
}

/// `struct nfkv_classifier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classifier {
    /// The name, NUL-padded ([`Classifier::name`] without the padding).
    pub name: [u8; NAME_LEN],
    /// The packets it sees.
    pub family: Family,
    /// The hook, `NF_INET_*` (below [`HOOKS`]).
    pub hook: u8,
    /// What it takes from a packet.
    pub matches: Match,
    /// The key prefix, zero-padded ([`Classifier::prefix`] without it).
    pub prefix: [u8; PREFIX_MAX],
    /// Bytes of `prefix` used: 1..=[`PREFIX_MAX`].
    pub prefix_len: u8,
    /// Lower runs first.
    pub priority: i32,
    /// Address matches: leading bits of an IPv4 address kept in the key
    /// (0: all 32).
    pub ipv4_bits: u8,
    /// Address matches: leading bits of an IPv6 address kept (0: all 128).
    pub ipv6_bits: u8,
}

impl Classifier {
    /// A classifier keying whole addresses; `Invalid` for a bad name, hook
    /// or prefix length. [`Classifier::with_subnets`] sets the address bits.
    pub fn new(
        name: &[u8],
        family: Family,
        hook: u8,
        matches: Match,
        prefix: &[u8],
        priority: i32,
    ) -> Result<Self, Reject> {
        if usize::from(hook) >= HOOKS || !(1..=PREFIX_MAX).contains(&prefix.len()) {
            return Err(Reject::Invalid);
        }
        let mut p = [0u8; PREFIX_MAX];
        p[..prefix.len()].copy_from_slice(prefix);
        Ok(Classifier {
            name: name_field(name)?,
            family,
            hook,
            matches,
            prefix: p,
            prefix_len: prefix.len() as u8,
            priority,
            ipv4_bits: 0,
            ipv6_bits: 0,
        })
    }

    /// The same classifier keying IPv4 addresses by their first `ipv4_bits`
    /// bits and IPv6 ones by their first `ipv6_bits` (0: whole); `Invalid`
    /// beyond 32 and 128, or for a match that keys no address.
    pub fn with_subnets(self, ipv4_bits: u8, ipv6_bits: u8) -> Result<Self, Reject> {
        let any = ipv4_bits != 0 || ipv6_bits != 0;
        if ipv4_bits > 32 || ipv6_bits > 128 || (any && self.matches == Match::ProtoDport) {
            return Err(Reject::Invalid);
        }
        Ok(Classifier {
            ipv4_bits,
            ipv6_bits,
            ..self
        })
    }

    /// What this classifier keys a packet by, from what the packet gives:
    /// an address cut to the classifier's bits.
    #[inline]
    pub fn packet_key(&self, part: PacketKey) -> PacketKey {
        match part {
            PacketKey::V4(a) if self.ipv4_bits != 0 => PacketKey::V4(cut(a, self.ipv4_bits)),
            PacketKey::V6(a) if self.ipv6_bits != 0 => PacketKey::V6(cut(a, self.ipv6_bits)),
            other => other,
        }
    }

    /// The table key of `part` under this classifier.
    #[inline]
    pub fn key(&self, part: PacketKey) -> Key {
        Key::new(self.prefix(), &self.packet_key(part))
    }

    /// The name, without padding.
    pub fn name(&self) -> &[u8] {
        let len = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        &self.name[..len]
    }

    /// The key prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..usize::from(self.prefix_len).min(PREFIX_MAX)]
    }

    /// Whether `key` lies under this classifier's prefix.
    pub fn covers(&self, key: &[u8]) -> bool {
        key.starts_with(self.prefix())
    }

    /// Parses a `NFKV_SO_SET_CLS_ADD` request (or an entry of a list reply),
    /// which must be exactly [`CLASSIFIER_SIZE`] bytes.
    pub fn parse(b: &[u8]) -> Result<Self, Reject> {
        if b.len() != CLASSIFIER_SIZE {
            return Err(Reject::Invalid);
        }
        let name_off = offset_of!(uapi::nfkv_classifier, name);
        let byte = |off: usize| b[off];
        let family = Family::from_raw(byte(offset_of!(uapi::nfkv_classifier, family)));
        let matches = Match::from_raw(byte(offset_of!(uapi::nfkv_classifier, match_)));
        let prefix_len = usize::from(byte(offset_of!(uapi::nfkv_classifier, prefix_len)));
        if prefix_len > PREFIX_MAX {
            return Err(Reject::Invalid);
        }
        let p = offset_of!(uapi::nfkv_classifier, prefix);
        let prefix = b[p..p + PREFIX_MAX].split_at(prefix_len);
        let (Some(family), Some(matches)) = (family, matches) else {
            return Err(Reject::Invalid);
        };
        let reserved = offset_of!(uapi::nfkv_classifier, reserved);
        if get_u32(b, offset_of!(uapi::nfkv_classifier, flags)) != 0
            || b[reserved..reserved + 2] != [0, 0]
            || prefix.1.iter().any(|&c| c != 0)
        {
            return Err(Reject::Invalid);
        }
        let name = parse_name(&b[name_off..name_off + NAME_LEN])?;
        let priority = get_u32(b, offset_of!(uapi::nfkv_classifier, priority)) as i32;
        let hook = byte(offset_of!(uapi::nfkv_classifier, hook));
        let ipv4_bits = byte(offset_of!(uapi::nfkv_classifier, ipv4_bits));
        let ipv6_bits = byte(offset_of!(uapi::nfkv_classifier, ipv6_bits));
        let name_len = name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        Classifier::new(&name[..name_len], family, hook, matches, prefix.0, priority)?
            .with_subnets(ipv4_bits, ipv6_bits)
    }

    /// Encodes it as `struct nfkv_classifier`.
    pub fn encode(&self) -> [u8; CLASSIFIER_SIZE] {
        let mut b = [0u8; CLASSIFIER_SIZE];
        let n = offset_of!(uapi::nfkv_classifier, name);
        b[n..n + NAME_LEN].copy_from_slice(&self.name);
        b[offset_of!(uapi::nfkv_classifier, family)] = self.family.raw();
        b[offset_of!(uapi::nfkv_classifier, hook)] = self.hook;
        b[offset_of!(uapi::nfkv_classifier, match_)] = self.matches.raw();
        b[offset_of!(uapi::nfkv_classifier, prefix_len)] = self.prefix_len;
        b[offset_of!(uapi::nfkv_classifier, ipv4_bits)] = self.ipv4_bits;
        b[offset_of!(uapi::nfkv_classifier, ipv6_bits)] = self.ipv6_bits;
        put_u32(
            &mut b,
            offset_of!(uapi::nfkv_classifier, priority),
            self.priority as u32,
        );
        let p = offset_of!(uapi::nfkv_classifier, prefix);
        b[p..p + PREFIX_MAX].copy_from_slice(&self.prefix);
        b
    }

    /// The order classifiers run in: by priority, then by name.
    pub fn order(&self, other: &Self) -> core::cmp::Ordering {
        (self.priority, &self.name).cmp(&(other.priority, &other.name))
    }
}

/// Parses a `NFKV_SO_SET_CLS_DEL` request: the name field.
pub fn parse_del(b: &[u8]) -> Result<[u8; NAME_LEN], Reject> {
    if b.len() != DEL_SIZE
        || get_u32(b, offset_of!(uapi::nfkv_classifier_del, flags)) != 0
        || get_u32(b, offset_of!(uapi::nfkv_classifier_del, reserved)) != 0
    {
        return Err(Reject::Invalid);
    }
    let n = offset_of!(uapi::nfkv_classifier_del, name);
    parse_name(&b[n..n + NAME_LEN])
}

/// Encodes a `NFKV_SO_SET_CLS_DEL` request; `Invalid` for a bad name.
pub fn encode_del(name: &[u8]) -> Result<[u8; DEL_SIZE], Reject> {
    let mut b = [0u8; DEL_SIZE];
    let n = offset_of!(uapi::nfkv_classifier_del, name);
    b[n..n + NAME_LEN].copy_from_slice(&name_field(name)?);
    Ok(b)
}

/// What an entry under a classifier's prefix tells it to do with a packet
/// (`struct nfkv_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Drop the packet.
    Drop,
    /// Accept it: no later classifier of the hook sees it.
    Accept,
    /// `skb->mark = (skb->mark & !mask) ^ mark`, then go on.
    Mark {
        /// Bits to set, all inside `mask`.
        mark: u32,
        /// Bits replaced; not 0.
        mask: u32,
    },
}

impl Action {
    /// The action a value encodes; `None` unless it is a valid `struct
    /// nfkv_action` of exactly [`ACTION_SIZE`] bytes.
    #[inline]
    pub fn parse(v: &[u8]) -> Option<Self> {
        if v.len() != ACTION_SIZE || get_u32(v, offset_of!(uapi::nfkv_action, reserved)) != 0 {
            return None;
        }
        let mark = get_u32(v, offset_of!(uapi::nfkv_action, mark));
        let mask = get_u32(v, offset_of!(uapi::nfkv_action, mask));
        match get_u32(v, offset_of!(uapi::nfkv_action, action)) {
            uapi::NFKV_ACTION_DROP if mark == 0 && mask == 0 => Some(Action::Drop),
            uapi::NFKV_ACTION_ACCEPT if mark == 0 && mask == 0 => Some(Action::Accept),
            uapi::NFKV_ACTION_MARK if mask != 0 && mark & !mask == 0 => {
                Some(Action::Mark { mark, mask })
            }
            _ => None,
        }
    }

    /// Encodes it as an entry's value.
    pub fn encode(&self) -> [u8; ACTION_SIZE] {
        let (action, mark, mask) = match *self {
            Action::Drop => (uapi::NFKV_ACTION_DROP, 0, 0),
            Action::Accept => (uapi::NFKV_ACTION_ACCEPT, 0, 0),
            Action::Mark { mark, mask } => (uapi::NFKV_ACTION_MARK, mark, mask),
        };
        let mut b = [0u8; ACTION_SIZE];
        put_u32(&mut b, offset_of!(uapi::nfkv_action, action), action);
        put_u32(&mut b, offset_of!(uapi::nfkv_action, mark), mark);
        put_u32(&mut b, offset_of!(uapi::nfkv_action, mask), mask);
        b
    }
}

/// A classifier's counters (`struct nfkv_classifier_info`, after the
/// classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets it saw.
    pub packets: u64,
    /// Of those, packets without a key.
    pub unkeyed: u64,
    /// Hits on a DROP entry.
    pub drop: u64,
    /// Hits on an ACCEPT entry.
    pub accept: u64,
    /// Hits on a MARK entry.
    pub mark: u64,
}

/// Offsets of [`Counters`]' fields in `struct nfkv_classifier_info`, in
/// field order.
const COUNTER_OFFSETS: [usize; 5] = [
    offset_of!(uapi::nfkv_classifier_info, packets),
    offset_of!(uapi::nfkv_classifier_info, unkeyed),
    offset_of!(uapi::nfkv_classifier_info, drop),
    offset_of!(uapi::nfkv_classifier_info, accept),
    offset_of!(uapi::nfkv_classifier_info, mark),
];

impl Counters {
    fn fields(&self) -> [u64; 5] {
        [
            self.packets,
            self.unkeyed,
            self.drop,
            self.accept,
            self.mark,
        ]
    }
}

/// Encodes one entry of a `NFKV_SO_GET_CLS_LIST` reply.
pub fn encode_info(c: &Classifier, counters: &Counters) -> [u8; INFO_SIZE] {
    let mut b = [0u8; INFO_SIZE];
    let o = offset_of!(uapi::nfkv_classifier_info, classifier);
    b[o..o + CLASSIFIER_SIZE].copy_from_slice(&c.encode());
    for (off, v) in COUNTER_OFFSETS.iter().zip(counters.fields()) {
        put_u64(&mut b, *off, v);
    }
    b
}

/// Decodes one entry of a `NFKV_SO_GET_CLS_LIST` reply.
pub fn decode_info(b: &[u8]) -> Result<(Classifier, Counters), Reject> {
    let (b, _) = take(b, INFO_SIZE)?;
    let o = offset_of!(uapi::nfkv_classifier_info, classifier);
    let c = Classifier::parse(&b[o..o + CLASSIFIER_SIZE])?;
    let f = COUNTER_OFFSETS.map(|off| get_u64(b, off));
    let counters = Counters {
        packets: f[0],
        unkeyed: f[1],
        drop: f[2],
        accept: f[3],
        mark: f[4],
    };
    Ok((c, counters))
}

/// Encodes the header of a `NFKV_SO_GET_CLS_LIST` reply.
pub fn encode_list_header(count: u32) -> [u8; LIST_HEADER_SIZE] {
    let mut b = [0u8; LIST_HEADER_SIZE];
    put_u32(&mut b, offset_of!(uapi::nfkv_classifier_list, count), count);
    b
}

/// Decodes the header of a `NFKV_SO_GET_CLS_LIST` reply: the count.
pub fn decode_list_header(b: &[u8]) -> Result<u32, Reject> {
    let (b, _) = take(b, LIST_HEADER_SIZE)?;
    Ok(get_u32(b, offset_of!(uapi::nfkv_classifier_list, count)))
}

/// What a packet gives a classifier's key (see `include/nfkv.h`): an
/// address of 4 or 16 bytes, or a protocol and a port, in network byte
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 address.
    V6([u8; 16]),
    /// Transport protocol and destination port.
    Port(u8, u16),
}

/// `addr` with the bits past its first `bits` cleared.
fn cut<const N: usize>(mut addr: [u8; N], bits: u8) -> [u8; N] {
    let bits = usize::from(bits);
    for (i, byte) in addr.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *byte &= !(0xffu8.checked_shr(keep as u32).unwrap_or(0));
    }
    addr
}

/// A classifier key: prefix and what the packet gives, on the stack.
#[derive(Clone, Copy)]
pub struct Key {
    buf: [u8; KEY_MAX],
    len: usize,
}

impl Key {
    /// `prefix` (at most [`PREFIX_MAX`] bytes, else cut there) followed
    /// by `part`.
    #[inline]
    pub fn new(prefix: &[u8], part: &PacketKey) -> Self {
        Key::prefix(prefix).with(part)
    }

    /// `prefix` alone (at most [`PREFIX_MAX`] bytes, else cut there): what
    /// [`Key::with`] extends, made once per classifier rather than per
    /// packet.
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut buf = [0u8; KEY_MAX];
        let p = prefix.len().min(PREFIX_MAX);
        buf[..p].copy_from_slice(&prefix[..p]);
        Key { buf, len: p }
    }

    /// This key followed by `part`, for a key made by [`Key::prefix`]:
    /// fixed-size copies only.
    #[inline]
    pub fn with(&self, part: &PacketKey) -> Self {
        let mut k = *self;
        let p = self.len.min(PREFIX_MAX);
        let len = match part {
            PacketKey::V4(a) => {
                k.buf[p..p + 4].copy_from_slice(a);
                4
            }
            PacketKey::V6(a) => {
                k.buf[p..p + 16].copy_from_slice(a);
                16
            }
            PacketKey::Port(proto, dport) => {
                k.buf[p] = *proto;
                k.buf[p + 1..p + 3].copy_from_slice(&dport.to_be_bytes());
                3
            }
        };
        k.len = p + len;
        k
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
