//! Classifiers: the table in the packet path. Real traffic (UDP, TCP, ICMP
//! echo) between network namespaces joined by veth pairs meets classifiers
//! at the netfilter hooks, keyed by address, subnet or protocol and port;
//! DROP, ACCEPT and MARK entries act on it, the per-classifier counters
//! count it, a batch swaps what packets see all at once, and writes under a
//! classifier's prefix must hold a valid action.
//!
//! Most tests use a [`Pair`]: namespaces A (10.0.0.1/24, fd00::1/64) and B
//! (10.0.0.2/24, fd00::2/64) on one veth pair, the classifiers in B. Every
//! test makes its own namespaces ([`crate::netns`]); they die with it.

use crate::harness::*;
use crate::netns::*;
use crate::{ensure, tests};
use nfkv::classifier::key_of;
use nfkv::{Action, Batch, Classifier, Condition, Counters, Family, Hook, Match, Nfkv, Target};
use nfkv_abi::uapi;
use std::collections::BTreeSet;
use std::mem::offset_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub fn suite() -> Vec<Test> {
    tests![
        drop_stops_flow_and_counts,
        accept_ends_the_walk,
        mark_steers_with_fwmark,
        ipv6_as_ipv4,
        dport_match,
        subnet_match,
        namespaces_are_isolated,
        batch_swaps_deny_list_atomically,
        bad_values_refused,
        classifiers_go_with_namespace,
    ]
}

pub(crate) const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
pub(crate) const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
pub(crate) const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
pub(crate) const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
/// The port the UDP and TCP checks use unless they test ports.
pub(crate) const PORT: u16 = 4000;

/// Namespaces A and B on one veth pair, traffic passing both ways.
pub(crate) struct Pair {
    pub(crate) a: Netns,
    pub(crate) b: Netns,
    pub(crate) link: Link,
}

impl Pair {
    /// `tag`: at most 10 bytes; the namespaces are `tag-a` and `tag-b`.
    pub(crate) fn new(tag: &str) -> Result<Pair, String> {
        let a = Netns::new(&format!("{tag}-a"))?;
        let b = Netns::new(&format!("{tag}-b"))?;
        let link = Link::pair(
            &a,
            &["10.0.0.1/24", "fd00::1/64"],
            &b,
            &["10.0.0.2/24", "fd00::2/64"],
        )?;
        let p = Pair { a, b, link };
        for dst in [B4, B6] {
            eventually(&format!("{tag}: UDP to {dst} once the link is up"), || {
                p.udp(dst)
            })?;
        }
        Ok(p)
    }

    /// One round of UDP from A to `dst`:[`PORT`] in B.
    pub(crate) fn udp(&self, dst: IpAddr) -> Result<bool, String> {
        udp_delivers(&self.a, &self.b, dst, PORT)
    }

    /// One round of UDP from A to `dst`:`port` in B.
    fn udp_to(&self, dst: IpAddr, port: u16) -> Result<bool, String> {
        udp_delivers(&self.a, &self.b, dst, port)
    }

    /// One TCP handshake from A to `dst`:`port` in B.
    fn tcp(&self, dst: IpAddr, port: u16) -> Result<bool, String> {
        tcp_connects(&self.a, &self.b, dst, port)
    }

    /// One round of ICMP echo from A to `dst`.
    fn ping(&self, dst: IpAddr) -> Result<bool, String> {
        icmp_echo(&self.a, dst)
    }
}

/// A classifier, or the test fails.
pub(crate) fn cls(
    name: &str,
    family: Family,
    hook: Hook,
    matches: Match,
    prefix: &[u8],
    priority: i32,
) -> Result<Classifier, String> {
    nfkv::classifier::new_classifier(name, family, hook, matches, prefix, priority)
        .map_err(|e| format!("classifier {name}: {e}"))
}

/// Sets bits 4..8 of the mark to 0x1: from a socket mark of 0x1f0, 0x110.
const MASKED_MARK: Action = Action::Mark {
    mark: 0x10,
    mask: 0xf0,
};

/// Adds `c` through `kv`.
pub(crate) fn add(kv: &Nfkv, c: &Classifier) -> TestResult {
    let name = String::from_utf8_lossy(c.name()).into_owned();
    ck(&format!("add classifier {name}"), kv.add_classifier(c))
}

/// The counters of classifier `name`.
pub(crate) fn counters(kv: &Nfkv, name: &str) -> Result<Counters, String> {
    Ok(ck(&format!("classifier {name}"), kv.classifier(name))?.1)
}

/// The names of the namespace's classifiers, in the order packets see them.
pub(crate) fn names(kv: &Nfkv) -> Result<Vec<String>, String> {
    Ok(ck("classifiers", kv.classifiers())?
        .iter()
        .map(|(c, _)| String::from_utf8_lossy(c.name()).into_owned())
        .collect())
}

/// Fails if one round of `check` gets a packet through.
pub(crate) fn blocked(what: &str, check: impl FnOnce() -> Result<bool, String>) -> TestResult {
    ensure!(!check()?, "{what}: got through");
    Ok(())
}

/// The bytes of an address, as a key holds them.
fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A value laid out as `struct nfkv_action`, any fields.
fn action_value(action: u32, mark: u32, mask: u32, reserved: u32) -> Vec<u8> {
    let mut v = vec![0u8; std::mem::size_of::<uapi::nfkv_action>()];
    for (off, x) in [
        (offset_of!(uapi::nfkv_action, action), action),
        (offset_of!(uapi::nfkv_action, mark), mark),
        (offset_of!(uapi::nfkv_action, mask), mask),
        (offset_of!(uapi::nfkv_action, reserved), reserved),
    ] {
        v[off..off + 4].copy_from_slice(&x.to_ne_bytes());
    }
    v
}

/// The basic path: a DROP entry keyed by the source address stops UDP,
/// TCP and ICMP from that address at B's input hook, each dropped packet is
/// counted, and deleting the entry lets the flow through again.
fn drop_stops_flow_and_counts() -> TestResult {
    let p = Pair::new("drop")?;
    let kv = p.b.nfkv()?;
    let c = cls("deny", Family::Ipv4, Hook::Input, Match::Saddr, b"t/", 0)?;
    add(&kv, &c)?;
    // A classifier without entries sees every packet and lets it pass.
    eventually("UDP past a classifier without entries", || p.udp(B4))?;
    let c0 = counters(&kv, "deny")?;
    ensure!(
        c0.packets > 0 && c0.unkeyed == 0 && c0.drop == 0 && c0.accept == 0 && c0.mark == 0,
        "after UDP past a classifier without entries: {c0:?}"
    );

    ck(
        "add element",
        kv.add_element("deny", &Target::Addr(A4), Action::Drop),
    )?;
    // The entry is the prefix and the 4 address bytes, holding the action.
    let key = ck("key_of", key_of(&c, &Target::Addr(A4)))?;
    ensure!(
        key == b"t/\x0a\x00\x00\x01",
        "key of {A4} under t/: {key:?}"
    );
    let stored = ck("get", kv.get(&key))?;
    ensure!(
        stored.value == Action::Drop.encode(),
        "stored value {:?}",
        stored.value
    );
    blocked("UDP from a dropped source", || p.udp(B4))?;
    blocked("ICMP echo from a dropped source", || p.ping(B4))?;
    blocked("TCP from a dropped source", || p.tcp(B4, PORT))?;
    let c1 = counters(&kv, "deny")?;
    // Every datagram and echo request reached B (A's ARP entry for B is
    // fresh) and was dropped there: each counts once.
    ensure!(
        c1.drop >= c0.drop + 2 * SENDS,
        "{} UDP datagrams and {} echo requests dropped, but the drop counter went from {} to {}",
        SENDS,
        SENDS,
        c0.drop,
        c1.drop
    );
    ensure!(
        c1.packets - c0.packets >= c1.drop - c0.drop && c1.accept == 0 && c1.mark == 0,
        "counters {c0:?} -> {c1:?}"
    );
    let elements = ck("elements", kv.elements("deny"))?;
    ensure!(
        elements == vec![(Target::Addr(A4), Action::Drop)],
        "elements {elements:?}"
    );

    ck(
        "delete element",
        kv.delete_element("deny", &Target::Addr(A4)),
    )?;
    eventually("UDP after the entry is deleted", || p.udp(B4))?;
    eventually("ICMP echo after the entry is deleted", || p.ping(B4))?;
    eventually("TCP after the entry is deleted", || p.tcp(B4, PORT))?;
    let c2 = counters(&kv, "deny")?;
    ensure!(
        c2.packets > c1.packets,
        "the classifier stopped counting: {c1:?} -> {c2:?}"
    );
    Ok(())
}

/// ACCEPT ends the walk of its hook: a later classifier of the same hook
/// never sees the packet. Classifiers run by priority (signed: -5 before
/// 10) before name, then by name; an ACCEPT at one hook does not spare the
/// packet a later hook (prerouting then input).
fn accept_ends_the_walk() -> TestResult {
    let p = Pair::new("walk")?;
    let kv = p.b.nfkv()?;
    // The accepting one sorts last by name: only its priority puts it first.
    add(
        &kv,
        &cls(
            "zz-accept",
            Family::Ipv4,
            Hook::Input,
            Match::Saddr,
            b"acc/",
            -5,
        )?,
    )?;
    add(
        &kv,
        &cls(
            "aa-drop",
            Family::Ipv4,
            Hook::Input,
            Match::Saddr,
            b"drp/",
            10,
        )?,
    )?;
    ck(
        "accept",
        kv.add_element("zz-accept", &Target::Addr(A4), Action::Accept),
    )?;
    ck(
        "drop",
        kv.add_element("aa-drop", &Target::Addr(A4), Action::Drop),
    )?;
    eventually("UDP accepted before the DROP classifier", || p.udp(B4))?;
    let order = names(&kv)?;
    ensure!(
        order == ["zz-accept", "aa-drop"],
        "list order {order:?}: priority -5 before 10"
    );
    let acc = counters(&kv, "zz-accept")?;
    let drp = counters(&kv, "aa-drop")?;
    ensure!(acc.accept > 0, "zz-accept counted no accept: {acc:?}");
    ensure!(
        drp.packets == 0,
        "aa-drop saw packets that an earlier classifier accepted: {drp:?}"
    );

    ck(
        "delete accept",
        kv.delete_element("zz-accept", &Target::Addr(A4)),
    )?;
    blocked("UDP without the ACCEPT entry", || p.udp(B4))?;
    let drp = counters(&kv, "aa-drop")?;
    ensure!(drp.drop > 0, "aa-drop counted no drop: {drp:?}");

    // Equal priorities run by name: "aa-drop" before "mm-accept"...
    add(
        &kv,
        &cls(
            "mm-accept",
            Family::Ipv4,
            Hook::Input,
            Match::Saddr,
            b"mm/",
            10,
        )?,
    )?;
    ck(
        "accept",
        kv.add_element("mm-accept", &Target::Addr(A4), Action::Accept),
    )?;
    blocked("UDP, DROP named before ACCEPT", || p.udp(B4))?;
    ensure!(
        counters(&kv, "mm-accept")?.packets == 0,
        "mm-accept saw packets dropped by aa-drop, which runs before it"
    );
    // ...and "a0-accept" before "aa-drop" ('0' < 'a').
    add(
        &kv,
        &cls(
            "a0-accept",
            Family::Ipv4,
            Hook::Input,
            Match::Saddr,
            b"a0/",
            10,
        )?,
    )?;
    ck(
        "accept",
        kv.add_element("a0-accept", &Target::Addr(A4), Action::Accept),
    )?;
    eventually("UDP, ACCEPT named before DROP", || p.udp(B4))?;
    let order = names(&kv)?;
    ensure!(
        order == ["zz-accept", "a0-accept", "aa-drop", "mm-accept"],
        "list order {order:?}"
    );

    // An ACCEPT at prerouting ends that hook's walk only: input still drops.
    for name in ["zz-accept", "a0-accept", "mm-accept"] {
        ck("delete", kv.delete_classifier(name))?;
    }
    add(
        &kv,
        &cls(
            "pre-accept",
            Family::Ipv4,
            Hook::Prerouting,
            Match::Saddr,
            b"pre/",
            0,
        )?,
    )?;
    ck(
        "accept",
        kv.add_element("pre-accept", &Target::Addr(A4), Action::Accept),
    )?;
    let before = counters(&kv, "aa-drop")?;
    blocked("UDP accepted at prerouting, dropped at input", || p.udp(B4))?;
    let pre = counters(&kv, "pre-accept")?;
    let after = counters(&kv, "aa-drop")?;
    ensure!(
        pre.accept > 0 && after.drop > before.drop,
        "prerouting {pre:?}, input {before:?} -> {after:?}"
    );
    Ok(())
}

/// Service address of namespaces B and C in `mark_steers_with_fwmark`.
const SVC4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
const SVC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd09, 0, 0, 0, 0, 0, 0, 9));

/// Where one round of datagrams to a service address lands: (in B, in C).
fn lands(tx: &UdpTx, rx_b: &UdpRx, rx_c: &UdpRx, svc: SocketAddr) -> Result<(bool, bool), String> {
    let t = token();
    tx.send(svc, &t)?;
    let in_c = rx_c.got(&t, WAIT)?;
    let in_b = rx_b.got(&t, WAIT)?;
    Ok((in_b, in_c))
}

/// Retries rounds until one lands somewhere (ARP, neighbour discovery);
/// where it landed.
fn lands_somewhere(
    tx: &UdpTx,
    rx_b: &UdpRx,
    rx_c: &UdpRx,
    svc: SocketAddr,
) -> Result<(bool, bool), String> {
    let start = Instant::now();
    loop {
        let r = lands(tx, rx_b, rx_c, svc)?;
        if r != (false, false) {
            return Ok(r);
        }
        ensure!(
            start.elapsed() < SETTLE,
            "UDP to {svc} reached neither B nor C in {} s",
            SETTLE.as_secs()
        );
    }
}

/// A MARK at the output hook reroutes the packet: in A, traffic to a
/// service address that both B and C hold goes to B by the main table and
/// to C by table 100, which `ip rule fwmark` selects. The entry's mark
/// applies over the one the socket gave (SO_MARK) as `skb->mark =
/// (skb->mark & ~mask) ^ mark`, and the walk goes on after a MARK (a later
/// DROP still drops). IPv4 and IPv6.
fn mark_steers_with_fwmark() -> TestResult {
    let a = Netns::new("fw-a")?;
    let b = Netns::new("fw-b")?;
    let c = Netns::new("fw-c")?;
    let ab = Link::pair(
        &a,
        &["10.0.0.1/24", "fd00::1/64"],
        &b,
        &["10.0.0.2/24", "fd00::2/64"],
    )?;
    let ac = Link::pair(
        &a,
        &["10.0.1.1/24", "fd01::1/64"],
        &c,
        &["10.0.1.2/24", "fd01::2/64"],
    )?;
    let (to_b, to_c) = (&ab.a_if, &ac.a_if);
    b.ip(&["addr add 10.9.9.9/32 dev lo", "addr add fd09::9/128 dev lo"])?;
    c.ip(&[
        "addr add 10.9.9.9/32 dev lo",
        "addr add fd09::9/128 dev lo",
        "route add 10.0.0.0/24 via 10.0.1.1",
        "route add fd00::/64 via fd01::1",
    ])?;
    a.ip(&[
        format!("route add 10.9.9.9/32 via 10.0.0.2 dev {to_b}"),
        format!("route add fd09::9/128 via fd00::2 dev {to_b}"),
        format!("route add 10.9.9.9/32 via 10.0.1.2 dev {to_c} table 100"),
        format!("route add fd09::9/128 via fd01::2 dev {to_c} table 100"),
        "rule add fwmark 0x10 lookup 100 priority 100".into(),
    ])?;
    a.ip6(&["rule add fwmark 0x10 lookup 100 priority 100"])?;
    let kv = a.nfkv()?;
    add(
        &kv,
        &cls("steer", Family::Inet, Hook::Output, Match::Daddr, b"m/", 0)?,
    )?;

    let svcs = [SVC4, SVC6];
    let mut ends = Vec::new();
    for svc in svcs {
        ends.push((
            UdpTx::new(&a, unspecified(svc))?,
            UdpRx::bind(&b, svc, PORT)?,
            UdpRx::bind(&c, svc, PORT)?,
            SocketAddr::new(svc, PORT),
        ));
    }
    let expect = |step: &str, want: (bool, bool)| -> TestResult {
        for (tx, rx_b, rx_c, svc) in &ends {
            let got = lands_somewhere(tx, rx_b, rx_c, *svc)?;
            ensure!(
                got == want,
                "{step}: UDP to {svc} landed in (B, C) = {got:?}, expected {want:?}"
            );
        }
        Ok(())
    };
    expect("no entry: main table", (true, false))?;

    for svc in svcs {
        ck(
            "mark",
            kv.add_element(
                "steer",
                &Target::Addr(svc),
                Action::Mark {
                    mark: 0x10,
                    mask: u32::MAX,
                },
            ),
        )?;
    }
    expect("mark 0x10: table 100", (false, true))?;
    let m = counters(&kv, "steer")?;
    ensure!(m.mark >= 2, "steer counted {} marks: {m:?}", m.mark);

    // Over the socket's mark 0x1f0, mark 0x10 / mask 0xf0 gives
    // (0x1f0 & ~0xf0) ^ 0x10 = 0x110, the only mark table 100 now takes:
    // a mark that ignored the mask (0x10), kept the old bits (0x1f0) or
    // toggled them (0x1e0) stays in the main table.
    let swap_rules = [
        "rule del fwmark 0x10 lookup 100 priority 100",
        "rule add fwmark 0x110 lookup 100 priority 100",
    ];
    a.ip(&swap_rules)?;
    a.ip6(&swap_rules)?;
    for (tx, ..) in &ends {
        tx.set_mark(0x1f0)?;
    }
    for svc in svcs {
        ck(
            "masked mark",
            kv.add_element("steer", &Target::Addr(svc), MASKED_MARK),
        )?;
    }
    expect(
        "socket mark 0x1f0, mark 0x10/0xf0: table 100",
        (false, true),
    )?;
    for svc in svcs {
        ck("delete", kv.delete_element("steer", &Target::Addr(svc)))?;
    }
    expect("socket mark 0x1f0, no entry: main table", (true, false))?;

    // A MARK goes on to the next classifier, whose DROP still applies.
    add(
        &kv,
        &cls(
            "after",
            Family::Inet,
            Hook::Output,
            Match::Daddr,
            b"m2/",
            10,
        )?,
    )?;
    for svc in svcs {
        ck(
            "mark",
            kv.add_element("steer", &Target::Addr(svc), MASKED_MARK),
        )?;
        ck(
            "drop",
            kv.add_element("after", &Target::Addr(svc), Action::Drop),
        )?;
    }
    let before = counters(&kv, "steer")?;
    for (tx, rx_b, rx_c, svc) in &ends {
        let got = lands(tx, rx_b, rx_c, *svc)?;
        ensure!(
            got == (false, false),
            "MARK then DROP: UDP to {svc} landed in (B, C) = {got:?}"
        );
    }
    let steer = counters(&kv, "steer")?;
    let after = counters(&kv, "after")?;
    ensure!(
        steer.mark > before.mark && after.drop > 0,
        "MARK then DROP: steer {before:?} -> {steer:?}, after {after:?}"
    );
    Ok(())
}

/// IPv6 takes the IPv4 path: an `inet` classifier keys IPv6 packets by
/// their 16 address bytes and drops, counts and lets go the same way. A
/// classifier of one family never sees the other's packets, even holding
/// an entry under the other family's key.
fn ipv6_as_ipv4() -> TestResult {
    let p = Pair::new("six")?;
    let kv = p.b.nfkv()?;
    let both = cls("both", Family::Inet, Hook::Input, Match::Saddr, b"s/", 0)?;
    add(&kv, &both)?;
    add(
        &kv,
        &cls("only4", Family::Ipv4, Hook::Input, Match::Saddr, b"o4/", 0)?,
    )?;
    add(
        &kv,
        &cls("only6", Family::Ipv6, Hook::Input, Match::Saddr, b"o6/", 0)?,
    )?;
    // DROP entries a classifier of the other family would find, written as
    // raw keys (the library refuses them: no packet gives them).
    let drop = Action::Drop.encode();
    ck(
        "put",
        kv.put(
            &[b"o4/".as_slice(), &octets(A6)].concat(),
            &drop,
            Condition::default(),
        ),
    )?;
    ck(
        "put",
        kv.put(
            &[b"o6/".as_slice(), &octets(A4)].concat(),
            &drop,
            Condition::default(),
        ),
    )?;

    let o4 = counters(&kv, "only4")?;
    let o6 = counters(&kv, "only6")?;
    eventually("UDP over IPv6 past an IPv4 classifier", || p.udp(B6))?;
    eventually("ICMPv6 echo past an IPv4 classifier", || p.ping(B6))?;
    let o4_after = counters(&kv, "only4")?;
    let o6_after = counters(&kv, "only6")?;
    ensure!(
        o4_after.packets == o4.packets,
        "the IPv4 classifier saw IPv6 packets: {o4:?} -> {o4_after:?}"
    );
    ensure!(
        o6_after.packets > o6.packets,
        "the IPv6 classifier saw no IPv6 packet: {o6:?} -> {o6_after:?}"
    );
    eventually("UDP over IPv4 past an IPv6 classifier", || p.udp(B4))?;
    eventually("ICMP echo past an IPv6 classifier", || p.ping(B4))?;
    let o4_v4 = counters(&kv, "only4")?;
    let o6_v4 = counters(&kv, "only6")?;
    ensure!(
        o4_v4.packets > o4_after.packets,
        "the IPv4 classifier saw no IPv4 packet: {o4_after:?} -> {o4_v4:?}"
    );
    // Background IPv6 (neighbour discovery) may reach the IPv6 classifier
    // meanwhile; an IPv4 packet it looked up would have hit its entry.
    ensure!(
        o6_v4.drop == 0 && o4_v4.drop == 0,
        "a classifier dropped by the other family's key: only4 {o4_v4:?}, only6 {o6_v4:?}"
    );

    ck(
        "add element",
        kv.add_element("both", &Target::Addr(A6), Action::Drop),
    )?;
    let key = ck("key_of", key_of(&both, &Target::Addr(A6)))?;
    ensure!(
        key == [b"s/".as_slice(), &octets(A6)].concat(),
        "key of {A6}: {key:?}"
    );
    let before = counters(&kv, "both")?;
    blocked("UDP over IPv6 from a dropped source", || p.udp(B6))?;
    blocked("ICMPv6 echo from a dropped source", || p.ping(B6))?;
    blocked("TCP over IPv6 from a dropped source", || p.tcp(B6, PORT))?;
    eventually("UDP over IPv4 from the same host", || p.udp(B4))?;
    let after = counters(&kv, "both")?;
    ensure!(
        after.drop >= before.drop + SENDS
            && after.packets - before.packets >= after.drop - before.drop,
        "counters {before:?} -> {after:?}"
    );
    ck(
        "delete element",
        kv.delete_element("both", &Target::Addr(A6)),
    )?;
    eventually("UDP over IPv6 after the entry is deleted", || p.udp(B6))?;
    eventually("ICMPv6 echo after the entry is deleted", || p.ping(B6))?;
    Ok(())
}

/// A protocol/port classifier keys packets by protocol (1 byte) and
/// destination port (2 bytes, big-endian): UDP to 5000 drops, UDP to 5001
/// (whose byte-swapped port has an entry) and TCP to 5000 pass, TCP to 5002
/// drops, over both families. ICMP has no port: unkeyed, and passes.
fn dport_match() -> TestResult {
    let p = Pair::new("port")?;
    let kv = p.b.nfkv()?;
    let c = cls(
        "ports",
        Family::Inet,
        Hook::Input,
        Match::ProtoDport,
        b"p/",
        0,
    )?;
    add(&kv, &c)?;
    // UDP/5000 written as raw bytes: the ABI's layout, not the library's.
    let udp5000 = b"p/\x11\x13\x88";
    ck(
        "put",
        kv.put(udp5000, &Action::Drop.encode(), Condition::default()),
    )?;
    let lib_key = ck("key_of", key_of(&c, &Target::Port(17, 5000)))?;
    ensure!(
        lib_key == udp5000,
        "key_of udp/5000 is {lib_key:?}, not {udp5000:?}"
    );
    ck(
        "tcp/5002",
        kv.add_element("ports", &Target::Port(6, 5002), Action::Drop),
    )?;
    ck(
        "udp/5001 byte-swapped",
        kv.add_element(
            "ports",
            &Target::Port(17, 5001u16.swap_bytes()),
            Action::Drop,
        ),
    )?;

    for dst in [B4, B6] {
        eventually(&format!("UDP to {dst} port 5001"), || p.udp_to(dst, 5001))?;
        eventually(&format!("TCP to {dst} port 5000"), || p.tcp(dst, 5000))?;
        blocked(&format!("UDP to {dst} port 5000"), || p.udp_to(dst, 5000))?;
        blocked(&format!("TCP to {dst} port 5002"), || p.tcp(dst, 5002))?;
    }
    let before = counters(&kv, "ports")?;
    ensure!(
        before.drop >= 2 * SENDS,
        "UDP to port 5000 dropped but counted {before:?}"
    );
    eventually("ICMP echo past a port classifier", || p.ping(B4))?;
    let after = counters(&kv, "ports")?;
    ensure!(
        after.unkeyed > before.unkeyed && after.drop == before.drop,
        "ICMP echo: counters {before:?} -> {after:?}, expected unkeyed up and no drop"
    );
    Ok(())
}

/// With ipv4_bits 24 and ipv6_bits 64 a classifier keys the source's
/// subnet: the entry for 10.0.0.0 drops every address of 10.0.0.0/24 (A's
/// two), and the entry for fd00:: all of fd00::/64; entries for the whole
/// addresses, host bits set, never match, nor does another subnet's.
fn subnet_match() -> TestResult {
    let p = Pair::new("net")?;
    let if_a = &p.link.a_if;
    p.a.ip(&[format!("addr add 10.0.0.77/24 dev {if_a}")])?;
    let kv = p.b.nfkv()?;
    let c = cls("nets", Family::Inet, Hook::Input, Match::Saddr, b"n/", 0)?
        .with_subnets(24, 64)
        .map_err(|e| format!("with_subnets: {e:?}"))?;
    add(&kv, &c)?;
    let drop = Action::Drop.encode();
    for host in [A4, A6] {
        ck(
            "put",
            kv.put(
                &[b"n/".as_slice(), &octets(host)].concat(),
                &drop,
                Condition::default(),
            ),
        )?;
    }
    for other in ["10.0.1.0", "fd00:1::"] {
        let other: IpAddr = other.parse().expect("an address");
        ck(
            "other subnet",
            kv.add_element("nets", &Target::Addr(other), Action::Drop),
        )?;
    }
    let rx = UdpRx::bind(&p.b, B4, PORT)?;
    let from77 = UdpTx::new(&p.a, "10.0.0.77".parse().expect("an address"))?;
    // The listener is bound once: the rounds from 10.0.0.1 use it too.
    let from1 = UdpTx::new(&p.a, A4)?;
    let dst = SocketAddr::new(B4, PORT);
    eventually("UDP from 10.0.0.77", || udp_round(&from77, &rx, dst))?;
    eventually("UDP from 10.0.0.1", || udp_round(&from1, &rx, dst))?;
    eventually("UDP from fd00::1", || p.udp(B6))?;
    let c0 = counters(&kv, "nets")?;
    ensure!(
        c0.drop == 0,
        "an entry with host bits or of another subnet matched: {c0:?}"
    );

    ck(
        "10.0.0.0/24",
        kv.add_element(
            "nets",
            &Target::Addr("10.0.0.0".parse().expect("an address")),
            Action::Drop,
        ),
    )?;
    blocked("UDP from 10.0.0.1 in a dropped /24", || {
        udp_round(&from1, &rx, dst)
    })?;
    blocked("UDP from 10.0.0.77 in a dropped /24", || {
        udp_round(&from77, &rx, dst)
    })?;
    eventually("UDP from fd00::1, its /64 not dropped yet", || p.udp(B6))?;
    ck(
        "fd00::/64",
        kv.add_element(
            "nets",
            &Target::Addr("fd00::".parse().expect("an address")),
            Action::Drop,
        ),
    )?;
    blocked("UDP from fd00::1 in a dropped /64", || p.udp(B6))?;
    let c1 = counters(&kv, "nets")?;
    ensure!(
        c1.drop >= 3 * SENDS,
        "three rounds dropped, counters {c1:?}"
    );
    Ok(())
}

/// Classifiers, entries and counters belong to their namespace: a second
/// pair of namespaces with the same addresses and a classifier of the same
/// name, whose DROP entry stops its own traffic, changes nothing for the
/// first pair, and neither pair's traffic moves the other's counters.
fn namespaces_are_isolated() -> TestResult {
    let p = Pair::new("iso1")?;
    let q = Pair::new("iso2")?;
    let kv_p = p.b.nfkv()?;
    let kv_q = q.b.nfkv()?;
    let c = cls("guard", Family::Ipv4, Hook::Input, Match::Saddr, b"g/", 0)?;
    add(&kv_p, &c)?;
    add(&kv_q, &c)?;
    ck(
        "drop in iso2-b",
        kv_q.add_element("guard", &Target::Addr(A4), Action::Drop),
    )?;
    ensure!(
        ck("elements", kv_p.elements("guard"))?.is_empty(),
        "iso1-b's table holds iso2-b's entry"
    );

    let p0 = counters(&kv_p, "guard")?;
    blocked("UDP in iso2", || q.udp(B4))?;
    blocked("ICMP echo in iso2", || q.ping(B4))?;
    let p1 = counters(&kv_p, "guard")?;
    let q1 = counters(&kv_q, "guard")?;
    ensure!(
        p1 == p0,
        "iso2's traffic moved iso1-b's counters: {p0:?} -> {p1:?}"
    );
    ensure!(q1.drop >= SENDS, "iso2-b counted {q1:?}");

    eventually("UDP in iso1", || p.udp(B4))?;
    eventually("ICMP echo in iso1", || p.ping(B4))?;
    let p2 = counters(&kv_p, "guard")?;
    let q2 = counters(&kv_q, "guard")?;
    ensure!(
        p2.packets > p1.packets && p2.drop == 0,
        "iso1-b's classifier: {p1:?} -> {p2:?}"
    );
    ensure!(
        q2 == q1,
        "iso1's traffic moved iso2-b's counters: {q1:?} -> {q2:?}"
    );

    // Deleting one leaves the other; the initial namespace has neither.
    ck("delete", kv_q.delete_classifier("guard"))?;
    ensure!(
        names(&kv_p)? == ["guard"],
        "iso1-b's classifiers after iso2-b deleted its own: {:?}",
        names(&kv_p)?
    );
    eventually("UDP in iso2 without its classifier", || q.udp(B4))?;
    let host = names(&connect()?)?;
    ensure!(
        !host.iter().any(|n| n == "guard"),
        "the initial namespace lists {host:?}"
    );
    Ok(())
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for its size.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    ensure!(
        rc == 0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: reading bits of a valid set.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> TestResult {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes a bit inside it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set)
    };
    ensure!(
        rc == 0,
        "sched_setaffinity({cpu}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// One datagram of a [`race_swaps`] run that arrived.
struct Arrival {
    /// Index of its source address.
    src: usize,
    /// Its number: the sender numbers datagrams in the order it sends them.
    seq: u64,
    /// The swap in progress or last begun when it was received: the table
    /// it passed had at most this many swaps applied.
    latest: u64,
}

/// What a [`race_swaps`] run saw.
struct Race {
    /// `fences[k]`: the first number handed out after swap k returned
    /// (`fences[0]` = 0: the first list was in place before any send).
    fences: Vec<u64>,
    arrivals: Vec<Arrival>,
    send_errors: u64,
}

/// Sends numbered datagrams round-robin from `txs` to `dst`, from one
/// thread pinned to one CPU, while `swap(k)` runs for k = 1..=`swaps`,
/// `dwell` apart, on another CPU where there is one; a receiver on `rx`
/// notes each datagram's number and the swap under way when it came.
fn race_swaps(
    txs: &[UdpTx],
    rx: &UdpRx,
    dst: SocketAddr,
    swaps: u64,
    dwell: Duration,
    swap: impl Fn(u64) -> TestResult + Sync,
) -> Result<Race, String> {
    let cpus = allowed_cpus()?;
    let (send_cpu, swap_cpu) = (cpus[cpus.len() - 1], (cpus.len() > 1).then(|| cpus[0]));
    let seq = AtomicU64::new(1);
    let latest = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let sock = rx.socket();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let (fences, arrivals, send_errors) = std::thread::scope(|s| {
        let sender = s.spawn(|| -> Result<u64, String> {
            // On one CPU the datagrams pass the hooks in the order they are
            // sent (one backlog, first in first out).
            pin(send_cpu)?;
            let mut errors = 0;
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                for j in 0..txs.len() {
                    let i = (round + j) % txs.len();
                    let n = seq.fetch_add(1, Ordering::SeqCst);
                    let mut msg = [0u8; 9];
                    msg[0] = i as u8;
                    msg[1..].copy_from_slice(&n.to_be_bytes());
                    if txs[i].socket().send_to(&msg, dst).is_err() {
                        errors += 1;
                    }
                }
                round += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
            Ok(errors)
        });
        let receiver = s.spawn(|| -> Result<Vec<Arrival>, String> {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((9, from)) => {
                        let at = latest.load(Ordering::SeqCst);
                        let src = usize::from(buf[0]);
                        let sent_from = txs.get(src).and_then(|t| t.socket().local_addr().ok());
                        ensure!(
                            sent_from.map(|a| a.ip()) == Some(from.ip()),
                            "datagram of source {src} from {from}"
                        );
                        let seq = u64::from_be_bytes(buf[1..9].try_into().expect("8 bytes"));
                        got.push(Arrival {
                            src,
                            seq,
                            latest: at,
                        });
                    }
                    // Left over from checks before (tokens, 16 bytes).
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if stop.load(Ordering::SeqCst) {
                            return Ok(got);
                        }
                    }
                    Err(e) => return Err(format!("receive: {e}")),
                }
            }
        });
        let swapper = || -> Result<Vec<u64>, String> {
            let mut fences = vec![0];
            std::thread::sleep(dwell);
            for k in 1..=swaps {
                latest.store(k, Ordering::SeqCst);
                swap(k).map_err(|e| format!("swap {k}: {e}"))?;
                fences.push(seq.load(Ordering::SeqCst));
                std::thread::sleep(dwell);
            }
            Ok(fences)
        };
        let fences = match swap_cpu {
            Some(cpu) => s
                .spawn(move || pin(cpu).and_then(|()| swapper()))
                .join()
                .unwrap_or_else(|_| Err("the swapping thread panicked".into())),
            None => swapper(),
        };
        stop.store(true, Ordering::SeqCst);
        let errors = sender
            .join()
            .unwrap_or_else(|_| Err("sender panicked".into()));
        let arrivals = receiver
            .join()
            .unwrap_or_else(|_| Err("receiver panicked".into()));
        (fences, arrivals, errors)
    });
    Ok(Race {
        fences: fences?,
        arrivals: arrivals?,
        send_errors: send_errors?,
    })
}

/// How a [`Race`] checked out.
struct Judged {
    /// Datagrams received with the list they were numbered under still in
    /// place: their list is known.
    settled: u64,
    /// Datagrams that may have met a swap in progress.
    in_swap: u64,
    /// Lists that had settled datagrams.
    settled_lists: usize,
}

/// Checks every arrival of `race` against the lists it could have passed:
/// list e is in place from swap e's return to swap e+1's start, and
/// `denied(e, src)` says whether it stops source `src`. A datagram passed
/// a list between the one of the last swap that returned before it was
/// numbered and the one of the swap under way when it was received; and,
/// datagrams meeting the hook in the order they were numbered, the lists
/// they passed must not go back. `name(src)` names a source in messages.
fn judge(
    race: &mut Race,
    denied: impl Fn(u64, usize) -> bool,
    name: impl Fn(usize) -> String,
) -> Result<Judged, String> {
    race.arrivals.sort_by_key(|a| a.seq);
    let mut list = 0;
    let (mut settled, mut in_swap) = (0, 0);
    let mut settled_lists = BTreeSet::new();
    for a in &race.arrivals {
        let lb = (race.fences.partition_point(|&f| f <= a.seq) - 1) as u64;
        ensure!(
            (lb..=a.latest).any(|e| !denied(e, a.src)),
            "datagram {} from {} arrived though a list that stops it was in place the whole \
             time: numbered after swap {lb} returned, received before swap {} began",
            a.seq,
            name(a.src),
            a.latest + 1
        );
        if lb == a.latest {
            settled += 1;
            settled_lists.insert(lb);
        } else {
            in_swap += 1;
        }
        let from = list.max(lb);
        match (from..=a.latest).find(|&e| !denied(e, a.src)) {
            Some(e) => list = e,
            None => {
                return Err(format!(
                    "datagram {} from {} (numbered after swap {lb} returned, received during or \
                     after swap {}) arrived, which none of lists {from}..={} lets through, \
                     though an earlier-numbered datagram arrived that only list {list} lets \
                     through: packets saw the lists out of order, a batch half-applied",
                    a.seq,
                    name(a.src),
                    a.latest,
                    a.latest,
                ))
            }
        }
    }
    Ok(Judged {
        settled,
        in_swap,
        settled_lists: settled_lists.len(),
    })
}

/// A deny list of `batch_swaps_deny_list_atomically`: keys of two source
/// addresses, then of 98 addresses no packet has.
struct DenyList {
    own: Vec<Vec<u8>>,
    filler: Vec<Vec<u8>>,
}

impl DenyList {
    /// Its keys, the sources' first.
    fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.own.iter().chain(&self.filler)
    }
}

/// Deny lists of 100 addresses each are swapped by batches of 200 records
/// (delete the old list, put the new one) while a sender in A sends from
/// four source addresses: .10 and .11 on even lists, .12 and .13 on odd
/// ones. Each datagram that arrived must have passed a list that lets it
/// through, in place while it could have met the hook, and in the order
/// the datagrams were sent ([`judge`]): a batch seen half-applied (neither
/// list, or both) breaks that order.
fn batch_swaps_deny_list_atomically() -> TestResult {
    const SWAPS: u64 = 40;
    const SPORT: u16 = 7000;
    let p = Pair::new("swap")?;
    let sources: Vec<Ipv4Addr> = (10..14).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    let if_a = &p.link.a_if;
    let cmds: Vec<String> = sources
        .iter()
        .map(|s| format!("addr add {s}/24 dev {if_a}"))
        .collect();
    p.a.ip(&cmds)?;
    let kv = p.b.nfkv()?;
    let c = cls("deny", Family::Ipv4, Hook::Input, Match::Saddr, b"deny/", 0)?;
    add(&kv, &c)?;
    let key = |a: Ipv4Addr| key_of(&c, &Target::Addr(a.into())).map_err(|e| format!("key_of: {e}"));
    let mut lists: Vec<DenyList> = Vec::new();
    for half in 0..2u8 {
        let own = sources[usize::from(half) * 2..][..2]
            .iter()
            .map(|&a| key(a))
            .collect::<Result<Vec<_>, _>>()?;
        let filler = (0..98u8)
            .map(|i| key(Ipv4Addr::new(10, 1 + half, 0, i)))
            .collect::<Result<Vec<_>, _>>()?;
        lists.push(DenyList { own, filler });
    }
    let drop = Action::Drop.encode();
    let mut first = Batch::new();
    for k in lists[0].keys() {
        first.put(k, &drop, Condition::default());
    }
    ck("first list", kv.apply(&first))?;
    // The batch to list `to`: the sources' deletes first and their puts
    // last, so that a batch applied record by record would let both pairs
    // through (or neither) for most of its length.
    let swap_to = |to: usize| {
        let (old, new) = (&lists[1 - to], &lists[to]);
        let mut b = Batch::new();
        for k in old.keys() {
            b.delete(k, None);
        }
        for k in new.filler.iter().chain(&new.own) {
            b.put(k, &drop, Condition::default());
        }
        b
    };
    let batches = [swap_to(0), swap_to(1)];

    let rx = UdpRx::bind(&p.b, B4, SPORT)?;
    let txs = sources
        .iter()
        .map(|&s| UdpTx::new(&p.a, s.into()))
        .collect::<Result<Vec<_>, _>>()?;
    let dst = SocketAddr::new(B4, SPORT);
    eventually("UDP from 10.0.0.12, not on the first list", || {
        udp_round(&txs[2], &rx, dst)
    })?;
    blocked("UDP from 10.0.0.10, on the first list", || {
        udp_round(&txs[0], &rx, dst)
    })?;

    let mut race = race_swaps(&txs, &rx, dst, SWAPS, Duration::from_millis(100), |k| {
        ck("apply", kv.apply(&batches[(k % 2) as usize]))
    })?;
    let j = judge(
        &mut race,
        |list, src| (src / 2) as u64 == list % 2,
        |src| sources[src].to_string(),
    )?;
    let mut from = [0u64; 4];
    for a in &race.arrivals {
        from[a.src] += 1;
    }
    println!(
        "     classify: {SWAPS} swaps of 200 records, {} datagrams received ({} between swaps, \
         {} maybe during one), per source {from:?}, {} send errors",
        race.arrivals.len(),
        j.settled,
        j.in_swap,
        race.send_errors
    );
    ensure!(
        from.iter().all(|&n| n > 0),
        "some source never got through: {from:?}"
    );
    ensure!(
        j.settled_lists as u64 >= SWAPS / 2,
        "only {} of {} lists had datagrams received while they were in place: too few to judge",
        j.settled_lists,
        SWAPS + 1
    );
    let elements = ck("elements", kv.elements("deny"))?;
    ensure!(
        elements.len() == 100 && elements.iter().all(|(_, a)| *a == Action::Drop),
        "after the swaps: {} elements",
        elements.len()
    );
    let in_table: BTreeSet<Vec<u8>> = elements
        .iter()
        .map(|(t, _)| key_of(&c, t).map_err(|e| format!("key_of: {e}")))
        .collect::<Result<_, _>>()?;
    let want: BTreeSet<Vec<u8>> = lists[(SWAPS % 2) as usize].keys().cloned().collect();
    ensure!(in_table == want, "the table does not hold the last list");
    Ok(())
}

/// Every value written under a classifier's prefix must be exactly a valid
/// `struct nfkv_action` (EBADMSG, table unchanged, a batch refused whole);
/// the same values outside any prefix are ordinary values. A classifier
/// cannot be added over a bad value. Malformed classifier requests are
/// EINVAL, a second of one name EEXIST, a 17th ENOSPC, deleting an absent
/// one ENOENT.
fn bad_values_refused() -> TestResult {
    let ns = Netns::new("bad")?;
    let kv = ns.nfkv()?;
    let c = cls("vals", Family::Inet, Hook::Input, Match::Saddr, b"v/", 0)?;
    add(&kv, &c)?;
    let key = ck("key_of", key_of(&c, &Target::Addr(A4)))?;
    let cond = Condition::default;
    // Valid actions of each kind are stored.
    for (what, v) in [
        ("DROP", Action::Drop),
        ("ACCEPT", Action::Accept),
        ("MARK 1/1", Action::Mark { mark: 1, mask: 1 }),
        (
            "MARK 0/0xff (clears)",
            Action::Mark {
                mark: 0,
                mask: 0xff,
            },
        ),
        (
            "MARK whole",
            Action::Mark {
                mark: u32::MAX,
                mask: u32::MAX,
            },
        ),
    ] {
        ck(what, kv.put(&key, &v.encode(), cond()))?;
    }
    ck("valid", kv.put(&key, &Action::Accept.encode(), cond()))?;

    let drop = Action::Drop.encode();
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("15 bytes", drop[..15].to_vec()),
        ("17 bytes", [drop.as_slice(), &[0]].concat()),
        ("empty", Vec::new()),
        ("action 0", action_value(0, 0, 0, 0)),
        ("unknown action 7", action_value(7, 0, 0, 0)),
        ("DROP with a mark", action_value(1, 1, 0, 0)),
        ("DROP with a mask", action_value(1, 0, 1, 0)),
        ("ACCEPT with a mark", action_value(2, 1, 1, 0)),
        ("MARK with mask 0", action_value(3, 0, 0, 0)),
        ("MARK 1 with mask 0", action_value(3, 1, 0, 0)),
        (
            "MARK with bits outside its mask",
            action_value(3, 0x11, 0x10, 0),
        ),
        ("DROP with reserved not 0", action_value(1, 0, 0, 1)),
        ("MARK with reserved not 0", action_value(3, 1, 1, 1 << 31)),
    ];
    // Keys under the prefix: an entry's (holding a valid action), a new
    // address, the prefix itself, a key no packet gives.
    let keys: [&[u8]; 4] = [&key, b"v/\x0a\x00\x00\x63", b"v/", b"v/not-an-address"];
    for (what, v) in &bad {
        let before = dump(&kv)?;
        for k in keys {
            expect_err(
                &format!("put {what} under {k:?}"),
                kv.put(k, v, cond()),
                libc::EBADMSG,
            )?;
        }
        ensure!(
            dump(&kv)? == before,
            "a refused put ({what}) changed the table"
        );
        // The same bytes outside any prefix are just a value.
        ck(
            &format!("{what} outside any prefix"),
            kv.put(&[b"w/".as_slice(), &key[2..]].concat(), v, cond()),
        )?;
    }

    // A batch with one bad record is refused whole.
    let before = dump(&kv)?;
    let mut b = Batch::new();
    b.put(b"v/\x0a\x00\x00\x02", &drop, cond())
        .put(b"plain", b"x", cond())
        .delete(&key, None)
        .put(b"v/\x0a\x00\x00\x03", &drop[..15], cond())
        .put(b"v/\x0a\x00\x00\x04", &drop, cond());
    expect_err("a batch with one bad record", kv.apply(&b), libc::EBADMSG)?;
    ensure!(dump(&kv)? == before, "a refused batch changed the table");
    let mut b = Batch::new();
    b.flush().put(b"v/\x0a\x00\x00\x02", &[1], cond());
    expect_err(
        "a flushing batch with a bad record",
        kv.apply(&b),
        libc::EBADMSG,
    )?;
    ensure!(
        dump(&kv)? == before,
        "a refused flushing batch changed the table"
    );

    // "w/\x0a\x00\x00\x01" holds a bad value (the last one put): no
    // classifier may cover it, by the same prefix or a shorter or longer
    // one; one whose prefix does not cover it may be added.
    let before_names = names(&kv)?;
    for prefix in [b"w/".as_slice(), b"w", b"w/\x0a"] {
        expect_err(
            &format!("classifier over bad values, prefix {prefix:?}"),
            kv.add_classifier(&cls(
                "over",
                Family::Inet,
                Hook::Input,
                Match::Saddr,
                prefix,
                0,
            )?),
            libc::EBADMSG,
        )?;
    }
    ensure!(
        names(&kv)? == before_names,
        "a refused classifier was added: {:?}",
        names(&kv)?
    );
    add(
        &kv,
        &cls(
            "beside",
            Family::Inet,
            Hook::Input,
            Match::Saddr,
            b"w/\x0b",
            0,
        )?,
    )?;
    ck("delete", kv.delete_classifier("beside"))?;
    // Without its classifier the prefix is ordinary; with a bad value
    // there, the classifier cannot come back.
    ck("delete", kv.delete_classifier("vals"))?;
    ck(
        "bad value, no classifier",
        kv.put(b"v/", &drop[..15], cond()),
    )?;
    expect_err("re-adding vals", kv.add_classifier(&c), libc::EBADMSG)?;
    ck("delete", kv.delete(b"v/", None))?;
    add(&kv, &c)?;

    malformed_classifiers_are_einval(&kv)?;

    // A second classifier of a name, even with another prefix.
    expect_err(
        "a second classifier named vals",
        kv.add_classifier(&cls(
            "vals",
            Family::Ipv4,
            Hook::Output,
            Match::Daddr,
            b"v2/",
            3,
        )?),
        libc::EEXIST,
    )?;
    expect_err(
        "delete an absent classifier",
        kv.delete_classifier("absent"),
        libc::ENOENT,
    )?;
    // At most NFKV_MAX_CLASSIFIERS per namespace.
    let max = nfkv::classifier::MAX_CLASSIFIERS;
    for i in names(&kv)?.len()..max {
        add(
            &kv,
            &cls(
                &format!("n{i}"),
                Family::Inet,
                Hook::Forward,
                Match::Daddr,
                format!("n{i}/").as_bytes(),
                0,
            )?,
        )?;
    }
    expect_err(
        "classifier 17",
        kv.add_classifier(&cls(
            "one-more",
            Family::Inet,
            Hook::Input,
            Match::Saddr,
            b"x/",
            0,
        )?),
        libc::ENOSPC,
    )?;
    ensure!(
        names(&kv)?.len() == max,
        "{} classifiers",
        names(&kv)?.len()
    );
    ck("delete", kv.delete_classifier("vals"))?;
    add(
        &kv,
        &cls(
            "one-more",
            Family::Inet,
            Hook::Input,
            Match::Saddr,
            b"x/",
            0,
        )?,
    )?;
    Ok(())
}

/// Classifier requests the library would not send: each EINVAL, nothing
/// added.
fn malformed_classifiers_are_einval(kv: &Nfkv) -> TestResult {
    use nfkv_abi::classifier::{encode_del, CLASSIFIER_SIZE, DEL_SIZE};
    use nfkv_abi::codec::cmd;
    let base = cls("raw", Family::Ipv4, Hook::Input, Match::Saddr, b"r/", 0)?.encode();
    let name = offset_of!(uapi::nfkv_classifier, name);
    let prefix = offset_of!(uapi::nfkv_classifier, prefix);
    let byte = |field: usize, v: u8| move |b: &mut Vec<u8>| b[field] = v;
    let set_name = |n: &'static [u8]| {
        move |b: &mut Vec<u8>| {
            b[name..name + 16].fill(0);
            b[name..name + n.len()].copy_from_slice(n);
        }
    };
    let u32_at = |field: usize, v: u32| {
        move |b: &mut Vec<u8>| b[field..field + 4].copy_from_slice(&v.to_ne_bytes())
    };
    let family = offset_of!(uapi::nfkv_classifier, family);
    let hook = offset_of!(uapi::nfkv_classifier, hook);
    let matches = offset_of!(uapi::nfkv_classifier, match_);
    let prefix_len = offset_of!(uapi::nfkv_classifier, prefix_len);
    let flags = offset_of!(uapi::nfkv_classifier, flags);
    let v4_bits = offset_of!(uapi::nfkv_classifier, ipv4_bits);
    let v6_bits = offset_of!(uapi::nfkv_classifier, ipv6_bits);
    let reserved = offset_of!(uapi::nfkv_classifier, reserved);
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch)> = vec![
        ("empty name", Box::new(set_name(b""))),
        ("name with a blank", Box::new(set_name(b"a b"))),
        ("name with a slash", Box::new(set_name(b"a/b"))),
        (
            "name of 16 bytes, no NUL",
            Box::new(set_name(b"abcdefghijklmnop")),
        ),
        ("a byte after the name's NUL", Box::new(set_name(b"ab\0c"))),
        ("family 0", Box::new(byte(family, 0))),
        ("family 3 (ARP)", Box::new(byte(family, 3))),
        ("family 7 (bridge)", Box::new(byte(family, 7))),
        ("family 255", Box::new(byte(family, 255))),
        ("hook 5", Box::new(byte(hook, 5))),
        ("hook 255", Box::new(byte(hook, 255))),
        ("match 0", Box::new(byte(matches, 0))),
        ("match 4", Box::new(byte(matches, 4))),
        ("prefix_len 0", Box::new(byte(prefix_len, 0))),
        ("prefix_len 65", Box::new(byte(prefix_len, 65))),
        ("flags 1", Box::new(u32_at(flags, 1))),
        ("flags bit 31", Box::new(u32_at(flags, 1 << 31))),
        ("reserved low byte", Box::new(byte(reserved, 1))),
        ("reserved high byte", Box::new(byte(reserved + 1, 1))),
        (
            "a prefix byte just past prefix_len",
            Box::new(byte(prefix + 2, b'x')),
        ),
        ("the last prefix byte", Box::new(byte(prefix + 63, 1))),
        ("ipv4_bits 33", Box::new(byte(v4_bits, 33))),
        ("ipv6_bits 129", Box::new(byte(v6_bits, 129))),
        (
            "ipv4_bits on a port match",
            Box::new(move |b: &mut Vec<u8>| {
                b[matches] = 3;
                b[v4_bits] = 8;
            }),
        ),
        (
            "one byte short",
            Box::new(|b: &mut Vec<u8>| {
                b.pop();
            }),
        ),
        ("one byte long", Box::new(|b: &mut Vec<u8>| b.push(0))),
    ];
    ensure!(base.len() == CLASSIFIER_SIZE, "classifier size");
    // The unpatched request is fine: each case fails for its patch alone.
    ck_io("the unpatched request", kv.raw_set(cmd::SET_CLS_ADD, &base))?;
    ck("delete raw", kv.delete_classifier("raw"))?;
    let before = names(kv)?;
    for (what, patch) in &cases {
        let mut req = base.to_vec();
        patch(&mut req);
        expect_errno(
            &format!("classifier add, {what}"),
            kv.raw_set(cmd::SET_CLS_ADD, &req),
            libc::EINVAL,
        )?;
    }
    ensure!(
        names(kv)? == before,
        "a refused classifier add changed the list: {:?}",
        names(kv)?
    );

    let del = encode_del(b"vals").map_err(|e| format!("encode_del: {e:?}"))?;
    ensure!(del.len() == DEL_SIZE, "delete size");
    let del_flags = offset_of!(uapi::nfkv_classifier_del, flags);
    let del_reserved = offset_of!(uapi::nfkv_classifier_del, reserved);
    let del_name = offset_of!(uapi::nfkv_classifier_del, name);
    let del_cases: Vec<(&str, Patch)> = vec![
        ("flags 1", Box::new(u32_at(del_flags, 1))),
        ("reserved", Box::new(u32_at(del_reserved, 1))),
        (
            "empty name",
            Box::new(move |b: &mut Vec<u8>| b[del_name..del_name + 16].fill(0)),
        ),
        (
            "a byte after the name's NUL",
            Box::new(move |b: &mut Vec<u8>| b[del_name + 6] = b'x'),
        ),
        (
            "one byte short",
            Box::new(|b: &mut Vec<u8>| {
                b.pop();
            }),
        ),
        ("one byte long", Box::new(|b: &mut Vec<u8>| b.push(0))),
    ];
    for (what, patch) in &del_cases {
        let mut req = del.to_vec();
        patch(&mut req);
        expect_errno(
            &format!("classifier delete, {what}"),
            kv.raw_set(cmd::SET_CLS_DEL, &req),
            libc::EINVAL,
        )?;
    }
    ensure!(names(kv)? == before, "a refused delete changed the list");
    Ok(())
}

/// Maps an io error into a test failure.
fn ck_io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// A namespace with classifiers at every hook dies while traffic flows
/// into it and through them (and while classifiers come and go): its
/// teardown completes (A's end of the veth pair goes with it, so nothing
/// holds the namespace), three times; afterwards classifiers work in a new
/// namespace. The VM runner's dmesg and kmemleak checks catch the rest.
fn classifiers_go_with_namespace() -> TestResult {
    for round in 0..3 {
        let r = (|| -> TestResult {
            let a = Netns::new("gone-a")?;
            let b = Netns::new("gone-b")?;
            let link = Link::pair(
                &a,
                &["10.0.0.1/24", "fd00::1/64"],
                &b,
                &["10.0.0.2/24", "fd00::2/64"],
            )?;
            for dst in [B4, B6] {
                eventually(&format!("UDP to {dst}"), || udp_delivers(&a, &b, dst, PORT))?;
            }
            let kv = b.nfkv()?;
            for (i, hook) in Hook::ALL.iter().enumerate() {
                let m = if i % 2 == 0 {
                    Match::Saddr
                } else {
                    Match::Daddr
                };
                let name = format!("h{i}");
                add(
                    &kv,
                    &cls(
                        &name,
                        Family::Inet,
                        *hook,
                        m,
                        format!("h{i}/").as_bytes(),
                        i as i32,
                    )?,
                )?;
                // Both ends' addresses: source and destination matches
                // both hit, whichever way the packet goes.
                for addr in [A4, A6, B4, B6] {
                    ck(
                        "mark",
                        kv.add_element(
                            &name,
                            &Target::Addr(addr),
                            Action::Mark { mark: 1, mask: 1 },
                        ),
                    )?;
                }
            }
            add(
                &kv,
                &cls(
                    "port",
                    Family::Inet,
                    Hook::Input,
                    Match::ProtoDport,
                    b"port/",
                    0,
                )?,
            )?;
            ck(
                "drop",
                kv.add_element("port", &Target::Port(17, 9), Action::Drop),
            )?;

            let stop = AtomicBool::new(false);
            std::thread::scope(|s| -> TestResult {
                let flood = s.spawn(|| -> TestResult {
                    a.enter()?;
                    let v4 = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
                    let v6 = std::net::UdpSocket::bind("[::]:0").map_err(|e| e.to_string())?;
                    // To a port nobody listens on (B answers port
                    // unreachable: its output hooks run too) and to the
                    // port classifier's dropped port; errors once the link
                    // is gone are expected.
                    while !stop.load(Ordering::SeqCst) {
                        let _ = v4.send_to(b"flood", (B4, PORT));
                        let _ = v6.send_to(b"flood", (B6, PORT));
                        let _ = v4.send_to(b"flood", (B4, 9));
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Ok(())
                });
                let r = (|| -> TestResult {
                    eventually("the flood reaching B's input classifier", || {
                        Ok(counters(&kv, "h1")?.mark > 0 && counters(&kv, "port")?.drop > 0)
                    })?;
                    // Classifiers come and go under traffic, with an
                    // entry that hits.
                    for i in 0..10 {
                        let c = cls(
                            "churn",
                            Family::Inet,
                            Hook::ALL[i % 5],
                            Match::Saddr,
                            b"churn/",
                            -1,
                        )?;
                        let key = ck("key_of", key_of(&c, &Target::Addr(A4)))?;
                        let mark = Action::Mark { mark: 2, mask: 2 }.encode();
                        ck("put", kv.put(&key, &mark, Condition::default()))?;
                        add(&kv, &c)?;
                        std::thread::sleep(Duration::from_millis(20));
                        ck("delete churn", kv.delete_classifier("churn"))?;
                    }
                    Ok(())
                })();
                // B dies with the flood still going: drop everything that
                // holds it, then wait for A's end of the pair to vanish.
                drop(kv);
                drop(b);
                let gone = (|| {
                    let start = Instant::now();
                    while a.has_interface(&link.a_if)? {
                        ensure!(
                            start.elapsed() < Duration::from_secs(30),
                            "B's namespace still alive 30 s after its last reference went \
                             (A still has {})",
                            link.a_if
                        );
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Ok(())
                })();
                stop.store(true, Ordering::SeqCst);
                let flooded = flood
                    .join()
                    .unwrap_or_else(|_| Err("flood panicked".into()));
                r.and(gone).and(flooded)
            })
        })();
        r.map_err(|e| format!("round {round}: {e}"))?;
    }
    // The module still works: a new pair, a DROP that drops.
    let p = Pair::new("after")?;
    let kv = p.b.nfkv()?;
    add(
        &kv,
        &cls("deny", Family::Inet, Hook::Input, Match::Saddr, b"d/", 0)?,
    )?;
    ck(
        "drop",
        kv.add_element("deny", &Target::Addr(A4), Action::Drop),
    )?;
    blocked("UDP in a new namespace after the others died", || p.udp(B4))?;
    ensure!(counters(&kv, "deny")?.drop > 0, "no drop counted");
    ck("info", connect()?.info())?;
    Ok(())
}
