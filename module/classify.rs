// SPDX-License-Identifier: GPL-2.0

//! Classifiers: the table in the packet path (see `include/nfkv.h`). Safe
//! Rust only; the hooks are [`crate::kernel_ext::nfhook`]'s.
//!
//! A namespace's classifiers are kept twice: under [`Classifiers::control`],
//! the mutex that serialises adding and deleting them, and as the list
//! packets walk, published under RCU ([`Classifiers::active`]) and replaced
//! whole by each change. Their prefixes are also in the table
//! ([`Table::set_guarded`]), so that every write under one is checked
//! against the same list the packets see, under the table's lock. The
//! namespace has a netfilter hook registered for each (family, hook) that
//! some classifier uses, and none when it has no classifier.

use crate::classifier_abi::{self as abi, Action, Classifier, PacketKey};
use crate::kernel_ext::nfhook::{self, Flow, HookSet, NetHook, Packet, Verdict};
use crate::kernel_ext::percpu::PerCpuCounters;
use crate::kernel_ext::pernet::Pernet;
use crate::kernel_ext::rcu::{RcuBox, RcuGuard};
use crate::kernel_ext::sockopt::{GetBuffer, SetRequest};
use crate::table::{gfp, NetTable};
use crate::uapi;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// The counters of a classifier: one outcome per packet it sees (one
/// per-CPU add), `packets` being their sum.
const MISSED: usize = 0;
const UNKEYED: usize = 1;
const HIT_DROP: usize = 2;
const HIT_ACCEPT: usize = 3;
const HIT_MARK: usize = 4;

type Counters = PerCpuCounters<5>;

/// One classifier as packets see it.
struct Active {
    classifier: Classifier,
    /// The classifier's prefix as a key, which packets extend.
    prefix: abi::Key,
    /// Shared by every list the classifier is in: its counts outlive a
    /// republished list.
    counters: Arc<Counters>,
}

impl Active {
    fn clone_ref(&self) -> Self {
        Active {
            classifier: self.classifier,
            prefix: self.prefix,
            counters: self.counters.clone(),
        }
    }

    fn counts(&self) -> abi::Counters {
        let c = &self.counters;
        let outcomes = [MISSED, UNKEYED, HIT_DROP, HIT_ACCEPT, HIT_MARK];
        abi::Counters {
            packets: outcomes.iter().fold(0u64, |n, &i| n.wrapping_add(c.sum(i))),
            unkeyed: c.sum(UNKEYED),
            drop: c.sum(HIT_DROP),
            accept: c.sum(HIT_ACCEPT),
            mark: c.sum(HIT_MARK),
        }
    }

    /// Whether packets of family `pf` at hook `hooknum` reach it.
    #[inline]
    fn sees(&self, pf: u8, hooknum: u32) -> bool {
        let family = &self.classifier.family;
        u32::from(self.classifier.hook) == hooknum
            && match pf {
                nfhook::IPV4 => family.covers_ipv4(),
                nfhook::IPV6 => family.covers_ipv6(),
                _ => false,
            }
    }
}

/// A namespace's classifiers, in the order packets see them.
type List = KVec<Active>;

/// The classifiers of one namespace.
#[pin_data]
pub(crate) struct Classifiers {
    /// The classifiers as configured; adding and deleting hold it.
    #[pin]
    control: Mutex<List>,
    /// The same list, as packets read it.
    active: RcuBox<List>,
}

impl Classifiers {
    /// None.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Classifiers {
            control <- kernel::new_mutex!(KVec::new(), "nfkv_classifiers"),
            active: RcuBox::new(),
        })
    }
}

/// What one classifier is charged to its namespace's budget: its entries
/// in the control and published lists and in the table's guards, its
/// per-CPU counters and a hook's ops.
fn charge() -> u64 {
    let lists = core::mem::size_of::<Active>() * 2 + core::mem::size_of::<Classifier>();
    (lists + Counters::footprint() + 128) as u64
}

fn ebadmsg() -> Error {
    Error::from_errno(-(kernel::bindings::EBADMSG as i32))
}

/// Refuses a value under one of `guarded`'s prefixes that is no action.
#[inline]
pub(crate) fn check_value(guarded: &[Classifier], key: &[u8], value: &[u8]) -> Result {
    if guarded.iter().any(|c| c.covers(key)) && Action::parse(value).is_none() {
        return Err(ebadmsg());
    }
    Ok(())
}

/// The hooks `list` needs.
fn hooks_of(list: &[Active]) -> HookSet {
    list.iter().fold(HookSet::default(), |set, a| {
        let c = &a.classifier;
        let hook = u32::from(c.hook);
        let set = if c.family.covers_ipv4() {
            set.with(nfhook::IPV4, hook)
        } else {
            set
        };
        if c.family.covers_ipv6() {
            set.with(nfhook::IPV6, hook)
        } else {
            set
        }
    })
}

/// `list` (sharing the counters) without its entry at `skip`, with `add`
/// in its place in the order.
fn rebuilt(list: &[Active], skip: Option<usize>, add: Option<&Active>) -> Result<List> {
    let mut out = KVec::with_capacity(list.len() + 1, gfp())?;
    let mut add = add;
    for (i, a) in list.iter().enumerate() {
        if let Some(new) = add.filter(|n| n.classifier.order(&a.classifier).is_lt()) {
            out.push(new.clone_ref(), gfp())?;
            add = None;
        }
        if skip != Some(i) {
            out.push(a.clone_ref(), gfp())?;
        }
    }
    if let Some(new) = add {
        out.push(new.clone_ref(), gfp())?;
    }
    Ok(out)
}

/// The classifiers of `list`, for the table's check of writes.
fn guards_of(list: &[Active]) -> Result<KVec<Classifier>> {
    let mut guards = KVec::with_capacity(list.len(), gfp())?;
    for a in list {
        guards.push(a.classifier, gfp())?;
    }
    Ok(guards)
}

/// Runs classifier set command `cmd`; `None` if `cmd` is no classifier command.
pub(crate) fn set(net: Pernet<'_, NetTable>, cmd: u32, req: &mut SetRequest<'_>) -> Option<Result> {
    Some(match cmd {
        crate::codec::cmd::SET_CLS_ADD => {
            if req.len() != abi::CLASSIFIER_SIZE {
                return Some(Err(EINVAL));
            }
            req.with_rest_on_stack::<{ abi::CLASSIFIER_SIZE }, _>(|b| {
                add(net, &Classifier::parse(b)?)
            })
        }
        crate::codec::cmd::SET_CLS_DEL => {
            if req.len() != abi::DEL_SIZE {
                return Some(Err(EINVAL));
            }
            req.with_rest_on_stack::<{ abi::DEL_SIZE }, _>(|b| delete(net, &abi::parse_del(b)?))
        }
        _ => return None,
    })
}

/// Adds `new`. Its hooks are registered first (they run the old list until
/// the new one is published); then, under the table's lock, the entries
/// already under its prefix are checked, its charge taken and its prefix
/// guarded, so no write slips in between; then packets see it.
fn add(net: Pernet<'_, NetTable>, new: &Classifier) -> Result {
    let mut control = net.classifiers.control.lock();
    if control.iter().any(|a| a.classifier.name == new.name) {
        return Err(EEXIST);
    }
    if control.len() >= abi::MAX_CLASSIFIERS {
        return Err(ENOSPC);
    }
    let new = Active {
        classifier: *new,
        prefix: abi::Key::prefix(new.prefix()),
        counters: Arc::new(Counters::new()?, gfp())?,
    };
    let list = rebuilt(&control, None, Some(&new))?;
    let mut kept = rebuilt(&control, None, Some(&new))?;
    let guards = guards_of(&list)?;
    let published = KBox::new(list, gfp())?;
    net.set_hooks(hooks_of(&published), uapi::NFKV_HOOK_PRIORITY)?;
    let admitted = net
        .table
        .lock()
        .admit_classifier(&new.classifier, charge(), guards);
    let old_guards = match admitted {
        Ok(old) => old,
        Err(e) => {
            // Back to the hooks of the old list: only unregisters, so cannot fail.
            let _ = net.set_hooks(hooks_of(&control), uapi::NFKV_HOOK_PRIORITY);
            return Err(e);
        }
    };
    drop(old_guards);
    core::mem::swap(&mut *control, &mut kept);
    // Freed after a grace period, as the value is dropped here.
    drop(net.classifiers.active.replace(Some(published)));
    Ok(())
}

/// Deletes the classifier named `name`: packets stop seeing it, then its
/// prefix is no longer guarded and its charge given back, then the hooks
/// no other classifier needs are unregistered.
fn delete(net: Pernet<'_, NetTable>, name: &[u8; abi::NAME_LEN]) -> Result {
    let mut control = net.classifiers.control.lock();
    let at = control
        .iter()
        .position(|a| &a.classifier.name == name)
        .ok_or(ENOENT)?;
    let list = rebuilt(&control, Some(at), None)?;
    let mut kept = rebuilt(&control, Some(at), None)?;
    let guards = guards_of(&list)?;
    let wanted = hooks_of(&list);
    let published = KBox::new(list, gfp())?;
    drop(net.classifiers.active.replace(Some(published)));
    let old_guards = net.table.lock().release_classifier(charge(), guards);
    drop(old_guards);
    core::mem::swap(&mut *control, &mut kept);
    // Only unregisters, so cannot fail.
    let _ = net.set_hooks(wanted, uapi::NFKV_HOOK_PRIORITY);
    Ok(())
}

/// `NFKV_SO_GET_CLS_LIST`: the classifiers with their counters.
pub(crate) fn list(net: &NetTable, buf: &GetBuffer<'_>) -> Result<usize> {
    crate::codec::check_get_len(buf.len(), abi::LIST_HEADER_SIZE)?;
    let mut reply = KVVec::new();
    let count = {
        let control = net.classifiers.control.lock();
        let size = abi::LIST_HEADER_SIZE + control.len() * abi::INFO_SIZE;
        if size > buf.len() as usize {
            let header = abi::encode_list_header(control.len() as u32);
            drop(control);
            buf.write_reply(&[&header])?;
            return Err(Error::from_errno(-(kernel::bindings::EMSGSIZE as i32)));
        }
        reply.reserve(size, gfp())?;
        reply.extend_from_slice(&abi::encode_list_header(control.len() as u32), gfp())?;
        for a in control.iter() {
            reply.extend_from_slice(&abi::encode_info(&a.classifier, &a.counts()), gfp())?;
        }
        control.len()
    };
    debug_assert!(count <= abi::MAX_CLASSIFIERS);
    buf.write_reply(&[&reply])?;
    Ok(reply.len())
}

/// What a packet gives `c` to key by, if anything.
#[inline]
fn packet_key(c: &Classifier, flow: &Flow) -> Option<PacketKey> {
    let addr = |a: &[u8]| match a.len() {
        4 => <[u8; 4]>::try_from(a).ok().map(PacketKey::V4),
        _ => <[u8; 16]>::try_from(a).ok().map(PacketKey::V6),
    };
    match c.matches {
        abi::Match::Saddr => addr(flow.saddr()),
        abi::Match::Daddr => addr(flow.daddr()),
        abi::Match::ProtoDport => flow.port().map(|(p, port)| PacketKey::Port(p, port)),
    }
}

impl NetHook for NetTable {
    /// Walks the namespace's classifiers for the packet's family and hook,
    /// in order: a DROP or ACCEPT entry ends the walk, a MARK entry marks
    /// and goes on; no entry (or an expired one) passes to the next.
    fn hook(&self, pkt: &mut Packet<'_>, rcu: &RcuGuard) -> Verdict {
        let Some(list) = self.classifiers.active.get(rcu) else {
            return Verdict::Accept;
        };
        let (pf, hooknum) = (pkt.pf(), pkt.hooknum());
        // Read from the packet once, by the first classifier that sees it.
        let mut flow: Option<Option<Flow>> = None;
        for a in list.iter().filter(|a| a.sees(pf, hooknum)) {
            let flow = flow.get_or_insert_with(|| pkt.flow());
            let Some(part) = flow.as_ref().and_then(|f| packet_key(&a.classifier, f)) else {
                a.counters.add(UNKEYED, 1);
                continue;
            };
            let key = a.prefix.with(&a.classifier.packet_key(part));
            // An expired entry is no entry.
            let Some(entry) = self
                .reader
                .get(rcu, key.as_bytes())
                .filter(|e| !e.meta().expired_now())
            else {
                a.counters.add(MISSED, 1);
                continue;
            };
            // Every value under the prefix was checked when written.
            match Action::parse(entry.value()) {
                Some(Action::Drop) => {
                    a.counters.add(HIT_DROP, 1);
                    return Verdict::Drop;
                }
                Some(Action::Accept) => {
                    a.counters.add(HIT_ACCEPT, 1);
                    return Verdict::Accept;
                }
                Some(Action::Mark { mark, mask }) => {
                    a.counters.add(HIT_MARK, 1);
                    pkt.set_mark(mark, mask);
                }
                None => a.counters.add(MISSED, 1),
            }
        }
        Verdict::Accept
    }
}
