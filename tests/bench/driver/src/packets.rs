//! The packet rows: what an nfkv classifier costs a packet, against nft
//! making the same decision (issue 23).
//!
//! Two namespaces joined by a veth pair: A (10.0.0.1 and 10.0.0.3) sends
//! UDP datagrams to B (10.0.0.2), where every packet is dropped at
//! prerouting by whichever rule is active. A veth delivers in the sender's
//! own context (the receive softirq runs when the send leaves its
//! bottom-half section), so timing the sends times the whole path, both
//! stacks and the decision. In B, for the whole phase:
//!
//! - an nfkv classifier (IPv4, prerouting, source address, priority
//!   [`nfkv_abi::uapi::NFKV_HOOK_PRIORITY`] = -150) with a DROP entry for
//!   10.0.0.1 and for `n - 1` other addresses;
//! - an nft table with a hash set (`type ipv4_addr`, no flags: rhash) and a
//!   verdict map holding the same `n` addresses.
//!
//! Each variant makes one rule the first to see the packets, by placing
//! nft's chains on either side of the classifier (`early` at -200, `late`
//! at -100): the rules behind it never see a packet.
//!
//! - `nfkv`: no early chain; the classifier drops (late: the set rule).
//! - `nft set`: early `ip saddr @deny drop`.
//! - `nft vmap`: early `ip saddr vmap @verdicts`.
//! - `floor`: early `drop`: the cheapest decision nft makes there.
//! - `nfkv miss`: from 10.0.0.3, which no entry names: the classifier
//!   looks it up, finds nothing, and late `drop` drops. Against `floor`,
//!   the cost a configured classifier adds to a packet it does not match.
//!
//! Every sample is checked: B's IP counters say that every packet arrived
//! and none was delivered, and the classifier's counters that it decided
//! exactly the packets of its variants and saw none of nft's.

use crate::netns::{Link, Netns};
use crate::{per_op, Variant};
use nfkv::classifier::{key_of, new_classifier, Hook};
use nfkv::{Action, Batch, Condition, Counters, Family, Match, Nfkv, Target};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};

/// The source every listed variant's packets come from: listed.
const LISTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The source of the `nfkv miss` packets: in no entry.
const UNLISTED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// B's end of the link, fixed so that A can have a permanent neighbour
/// entry for it: no ARP during a sample.
const RECEIVER_MAC: &str = "02:00:00:00:00:02";
const PORT: u16 = 9;
/// Datagrams per arrangement (after [`WARMUP`] untimed ones).
const PACKETS: u64 = 2048;
const WARMUP: u64 = 64;
/// Bursts per arrangement, each of [`PACKETS`] / `BURSTS` datagrams.
const BURSTS: u64 = 8;
/// Arrangements per sample.
const PLACEMENTS: usize = 3;
const CLASSIFIER: &str = "bench";
const TABLE: &str = "nfkvbench";

/// The `n` listed addresses: [`LISTED`], then 10.128.0.0 onwards.
fn listed(n: u64) -> impl Iterator<Item = Ipv4Addr> {
    (0..n).map(|i| match i {
        0 => LISTED,
        i => Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i as u32 - 1),
    })
}

/// The `nft` binary; the guest's PATH may lack the sbin dirs.
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft")
}

/// Which rule decides, and which source the packets come from.
#[derive(Clone, Copy)]
pub enum Way {
    Nfkv,
    NftSet,
    NftVmap,
    Floor,
    NfkvMiss,
}

impl Way {
    pub const ALL: [Way; 5] = [
        Way::Nfkv,
        Way::NftSet,
        Way::NftVmap,
        Way::Floor,
        Way::NfkvMiss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Way::Nfkv => "nfkv",
            Way::NftSet => "nft set",
            Way::NftVmap => "nft vmap",
            Way::Floor => "floor",
            Way::NfkvMiss => "nfkv miss",
        }
    }

    /// The rules of nft's early (-200) and late (-100) chains.
    fn chains(self) -> (Option<&'static str>, Option<&'static str>) {
        const SET: &str = "ip saddr @deny drop";
        match self {
            Way::Nfkv => (None, Some(SET)),
            Way::NftSet => (Some(SET), None),
            Way::NftVmap => (Some("ip saddr vmap @verdicts"), None),
            Way::Floor => (Some("drop"), None),
            Way::NfkvMiss => (None, Some("drop")),
        }
    }
}

/// The two namespaces, the link, the classifier and nft's table.
pub struct Path {
    _a: Netns,
    b: Netns,
    _link: Link,
    /// In B.
    kv: Nfkv,
    classifier: nfkv::Classifier,
    /// Made in A, connected to B, bound to [`LISTED`] and [`UNLISTED`].
    listed_tx: UdpSocket,
    unlisted_tx: UdpSocket,
    entries: u64,
}

fn udp_from(ns: &Netns, src: Ipv4Addr) -> UdpSocket {
    let s = ns
        .run_in(|| UdpSocket::bind((src, 0)).map_err(|e| format!("bind UDP {src}: {e}")))
        .expect("sender socket");
    s.connect((RECEIVER, PORT)).expect("connect the sender");
    s
}

/// Runs an nft script inside `ns`.
fn nft(ns: &Netns, script: &str) {
    ns.run_in(|| {
        let mut child = Command::new(nft_binary())
            .args(["-f", "/dev/stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e} (is nftables installed? scripts/setup)"))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: writing the script: {e}"))?;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait().map_err(|e| format!("nft: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            let head: String = script.lines().take(12).collect::<Vec<_>>().join("\n");
            Err(format!(
                "nft -f failed ({status}): {}\nscript:\n{head}",
                err.trim()
            ))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// B's IPv4 packets received and delivered so far (/proc/net/snmp of a
/// thread in B).
fn ip_counts(ns: &Netns) -> (u64, u64) {
    ns.run_in(|| {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")
            .map_err(|e| format!("/proc/thread-self/net/snmp: {e}"))?;
        let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
        let field = |name: &str| -> Result<u64, String> {
            let i = names
                .split_whitespace()
                .position(|n| n == name)
                .ok_or(format!("snmp: no Ip {name}"))?;
            values
                .split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .ok_or(format!("snmp: bad Ip {name}"))
        };
        Ok((field("InReceives")?, field("InDelivers")?))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

impl Path {
    /// The namespaces and link, an empty classifier and nft table.
    pub fn new() -> Path {
        let a = Netns::new("bench-a").expect("namespace A");
        let b = Netns::new("bench-b").expect("namespace B");
        let link = Link::pair(&a, &["10.0.0.1/24", "10.0.0.3/24"], &b, &["10.0.0.2/24"])
            .expect("veth pair");
        b.ip(&[format!("link set to-bench-a address {RECEIVER_MAC}")])
            .expect("B's MAC");
        a.ip(&[format!(
            "neigh replace {RECEIVER} lladdr {RECEIVER_MAC} dev {} nud permanent",
            link.a_if
        )])
        .expect("A's neighbour entry");
        let kv = b.nfkv().expect("nfkv in B");
        let classifier = new_classifier(
            CLASSIFIER,
            Family::Ipv4,
            Hook::Prerouting,
            Match::Saddr,
            b"pkt/",
            0,
        )
        .expect("classifier");
        kv.add_classifier(&classifier).expect("add the classifier");
        nft(
            &b,
            &format!(
                "add table ip {TABLE}\n\
                 add set ip {TABLE} deny {{ type ipv4_addr; }}\n\
                 add map ip {TABLE} verdicts {{ type ipv4_addr : verdict; }}\n"
            ),
        );
        let listed_tx = udp_from(&a, LISTED);
        let unlisted_tx = udp_from(&a, UNLISTED);
        Path {
            _a: a,
            b,
            _link: link,
            kv,
            classifier,
            listed_tx,
            unlisted_tx,
            entries: 0,
        }
    }

    /// Grows the classifier's entries, the set and the map to the first
    /// `n` of [`listed`] (never shrinks them).
    pub fn fill(&mut self, n: u64) {
        let new: Vec<Ipv4Addr> = listed(n).skip(self.entries as usize).collect();
        let drop = Action::Drop.encode();
        for chunk in new.chunks(10_000) {
            let mut batch = Batch::new();
            for &addr in chunk {
                let key = key_of(&self.classifier, &Target::Addr(addr.into())).expect("key");
                batch.put(&key, &drop, Condition::default());
            }
            self.kv.apply(&batch).expect("classifier entries");
            let addrs: Vec<String> = chunk.iter().map(Ipv4Addr::to_string).collect();
            let drops: Vec<String> = addrs.iter().map(|a| format!("{a} : drop")).collect();
            nft(
                &self.b,
                &format!(
                    "add element ip {TABLE} deny {{ {} }}\n\
                     add element ip {TABLE} verdicts {{ {} }}\n",
                    addrs.join(", "),
                    drops.join(", ")
                ),
            );
        }
        self.entries = n;
        let elements = self.kv.elements(CLASSIFIER).expect("list the elements");
        assert_eq!(
            elements.len() as u64,
            n,
            "classifier elements after filling"
        );
    }

    fn counters(&self) -> Counters {
        self.kv
            .classifier(CLASSIFIER)
            .expect("classifier counters")
            .1
    }

    /// Makes `way`'s rule the one that decides.
    fn arrange(&self, way: Way) {
        let chain = |name: &str, prio: i32| {
            format!(
                "add chain ip {TABLE} {name} {{ type filter hook prerouting priority {prio}; }}\n"
            )
        };
        let (early, late) = way.chains();
        // Add then delete: a chain that is not there yet is no error.
        let mut s = chain("early", -200) + &format!("delete chain ip {TABLE} early\n");
        s += &(chain("late", -100) + &format!("delete chain ip {TABLE} late\n"));
        for (name, prio, rule) in [("early", -200, early), ("late", -100, late)] {
            if let Some(rule) = rule {
                s += &chain(name, prio);
                s += &format!("add rule ip {TABLE} {name} {rule}\n");
            }
        }
        nft(&self.b, &s);
    }

    /// `way`'s variant: ns per packet, each packet dropped at B's
    /// prerouting by `way`'s rule (checked). The sample is the fastest of
    /// [`PLACEMENTS`] arrangements of the rules, each timing [`PACKETS`]
    /// datagrams in [`BURSTS`] bursts and keeping the fastest burst.
    ///
    /// Why: under TCG one arrangement of nft's chains (which allocates the
    /// hook entries and chains anew) ran every packet of a sample ~2.5x
    /// slower than the next one did, for every variant alike, in about a
    /// third of the samples: the software TLB's slots, as the notes on the
    /// table rows describe for user buffers. Interference only adds time,
    /// so the fastest placement and burst is the cost of the code.
    pub fn variant(&self, way: Way) -> Variant<'_> {
        crate::variant(
            way.name(),
            || {},
            move || {
                (0..PLACEMENTS)
                    .map(|_| {
                        self.arrange(way);
                        self.time(way)
                    })
                    .fold(f64::INFINITY, f64::min)
            },
        )
    }

    /// ns per packet of the fastest of [`BURSTS`] bursts that together
    /// send [`PACKETS`] datagrams, after [`WARMUP`] untimed ones; checks
    /// that `way`'s rule dropped them all.
    fn time(&self, way: Way) -> f64 {
        let tx = match way {
            Way::NfkvMiss => &self.unlisted_tx,
            _ => &self.listed_tx,
        };
        let payload = [0u8; 16];
        let send = |_| {
            tx.send(&payload).expect("send");
        };
        (0..WARMUP).for_each(send);
        let (c0, (in0, del0)) = (self.counters(), ip_counts(&self.b));
        let ns = (0..BURSTS)
            .map(|_| per_op(PACKETS / BURSTS, send))
            .fold(f64::INFINITY, f64::min);
        let (c1, (in1, del1)) = (self.counters(), ip_counts(&self.b));
        let what = way.name();
        assert!(
            in1 - in0 >= PACKETS,
            "{what}: B received {} of {PACKETS} packets",
            in1 - in0
        );
        assert_eq!(
            del1, del0,
            "{what}: B delivered packets it should have dropped"
        );
        let (want_seen, want_dropped) = match way {
            Way::Nfkv => (PACKETS, PACKETS),
            Way::NfkvMiss => (PACKETS, 0),
            _ => (0, 0),
        };
        assert_eq!(
            (c1.packets - c0.packets, c1.drop - c0.drop),
            (want_seen, want_dropped),
            "{what}: packets the classifier saw and dropped"
        );
        ns
    }
}
