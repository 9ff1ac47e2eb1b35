//! Host tests of the classifier codec the kernel module runs: layout, round
//! trips, and property tests that no input makes a parser panic or accept
//! something it would not encode itself.

use nfkv_abi::classifier::*;
use nfkv_abi::uapi;
use proptest::prelude::*;
use std::mem::offset_of;

#[test]
fn sizes_match_the_abi() {
    assert_eq!(CLASSIFIER_SIZE, 96);
    assert_eq!(DEL_SIZE, 24);
    assert_eq!(LIST_HEADER_SIZE, 8);
    assert_eq!(INFO_SIZE, CLASSIFIER_SIZE + 5 * 8);
    assert_eq!(ACTION_SIZE, 16);
    assert_eq!(NAME_LEN, 16);
    assert_eq!(PREFIX_MAX, 64);
    assert_eq!(KEY_MAX, 80);
}

#[test]
fn a_known_classifier_encodes_field_by_field() {
    let c = Classifier::new(b"bl", Family::Ipv4, 1, Match::Saddr, b"bl/", -7)
        .unwrap()
        .with_subnets(24, 0)
        .unwrap();
    let b = c.encode();
    assert_eq!(&b[..3], b"bl\0");
    assert_eq!(b[offset_of!(uapi::nfkv_classifier, family)], 2);
    assert_eq!(b[offset_of!(uapi::nfkv_classifier, hook)], 1);
    assert_eq!(b[offset_of!(uapi::nfkv_classifier, match_)], 1);
    assert_eq!(b[offset_of!(uapi::nfkv_classifier, prefix_len)], 3);
    let p = offset_of!(uapi::nfkv_classifier, priority);
    assert_eq!(&b[p..p + 4], &(-7i32).to_ne_bytes());
    assert_eq!(b[offset_of!(uapi::nfkv_classifier, ipv4_bits)], 24);
    let prefix = offset_of!(uapi::nfkv_classifier, prefix);
    assert_eq!(&b[prefix..prefix + 4], b"bl/\0");
    assert_eq!(Classifier::parse(&b), Ok(c));
    assert_eq!(c.name(), b"bl");
    assert_eq!(c.prefix(), b"bl/");
}

#[test]
fn invalid_classifiers_are_refused() {
    let c = Classifier::new(b"ok", Family::Inet, 0, Match::Daddr, b"x", 0).unwrap();
    let good = c.encode();
    let patched = |off: usize, v: u8| {
        let mut b = good;
        b[off] = v;
        Classifier::parse(&b)
    };
    assert!(patched(offset_of!(uapi::nfkv_classifier, hook), 5).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, family), 0).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, match_), 4).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, prefix_len), 0).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, prefix_len), 65).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, ipv4_bits), 33).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, ipv6_bits), 129).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, flags), 1).is_err());
    assert!(patched(offset_of!(uapi::nfkv_classifier, reserved), 1).is_err());
    // A prefix byte past prefix_len, a name byte after its NUL, a bad name.
    assert!(patched(offset_of!(uapi::nfkv_classifier, prefix) + 1, 1).is_err());
    assert!(patched(3, b'x').is_err());
    assert!(patched(0, 0).is_err());
    assert!(patched(1, b' ').is_err());
    assert!(Classifier::parse(&good[..CLASSIFIER_SIZE - 1]).is_err());
    assert!(Classifier::parse(&[good.as_slice(), &[0]].concat()).is_err());
    // Subnets of a port match.
    let port = Classifier::new(b"p", Family::Inet, 0, Match::ProtoDport, b"x", 0).unwrap();
    let mut b = port.encode();
    b[offset_of!(uapi::nfkv_classifier, ipv4_bits)] = 8;
    assert!(Classifier::parse(&b).is_err());
    assert!(port.with_subnets(0, 8).is_err());
}

#[test]
fn deletes_encode_and_parse() {
    let req = encode_del(b"steer").unwrap();
    assert_eq!(&parse_del(&req).unwrap()[..6], b"steer\0");
    assert!(encode_del(b"").is_err());
    assert!(encode_del(&[b'a'; 16]).is_err());
    assert!(encode_del(b"a/b").is_err());
    let mut flagged = req;
    flagged[offset_of!(uapi::nfkv_classifier_del, flags)] = 1;
    assert!(parse_del(&flagged).is_err());
    assert!(parse_del(&req[..DEL_SIZE - 1]).is_err());
}

#[test]
fn actions_encode_field_by_field() {
    let b = Action::Mark {
        mark: 0x10,
        mask: 0xff,
    }
    .encode();
    let field = |off: usize| u32::from_ne_bytes(b[off..off + 4].try_into().unwrap());
    assert_eq!(field(offset_of!(uapi::nfkv_action, action)), 3);
    assert_eq!(field(offset_of!(uapi::nfkv_action, mark)), 0x10);
    assert_eq!(field(offset_of!(uapi::nfkv_action, mask)), 0xff);
    assert_eq!(field(offset_of!(uapi::nfkv_action, reserved)), 0);
    assert_eq!(Action::parse(&Action::Drop.encode()[..15]), None);
    assert_eq!(
        Action::parse(&[Action::Drop.encode().as_slice(), &[0]].concat()),
        None
    );
    let mark = |mark: u32, mask: u32| {
        Action::parse(
            &Action::Mark { mark, mask }.encode(), // encode writes what it is given
        )
    };
    assert_eq!(mark(0x10, 0x0f), None);
    assert_eq!(mark(0, 0), None);
    assert_eq!(mark(0, 1), Some(Action::Mark { mark: 0, mask: 1 }));
}

#[test]
fn order_is_priority_then_name() {
    let c = |name: &[u8], priority| {
        Classifier::new(name, Family::Inet, 0, Match::Saddr, b"x", priority).unwrap()
    };
    let mut all = [c(b"b", 0), c(b"a", 0), c(b"z", -1), c(b"ab", 0), c(b"a", 5)];
    all.sort_by(|x, y| x.order(y));
    let names: Vec<_> = all.iter().map(|c| (c.name(), c.priority)).collect();
    assert_eq!(
        names,
        [
            (&b"z"[..], -1),
            (&b"a"[..], 0),
            (&b"ab"[..], 0),
            (&b"b"[..], 0),
            (&b"a"[..], 5)
        ]
    );
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            b'a'..=b'z',
            b'A'..=b'Z',
            b'0'..=b'9',
            Just(b'_'),
            Just(b'.'),
            Just(b'-')
        ],
        1..NAME_LEN,
    )
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::Inet), Just(Family::Ipv4), Just(Family::Ipv6)]
}

fn matches() -> impl Strategy<Value = Match> {
    prop_oneof![
        Just(Match::Saddr),
        Just(Match::Daddr),
        Just(Match::ProtoDport)
    ]
}

/// Any valid classifier.
fn classifier() -> impl Strategy<Value = Classifier> {
    (
        name(),
        family(),
        0..HOOKS as u8,
        matches(),
        proptest::collection::vec(any::<u8>(), 1..=PREFIX_MAX),
        any::<i32>(),
        0..=32u8,
        0..=128u8,
    )
        .prop_map(|(name, family, hook, m, prefix, priority, v4, v6)| {
            let c = Classifier::new(&name, family, hook, m, &prefix, priority).unwrap();
            match m {
                Match::ProtoDport => c,
                _ => c.with_subnets(v4, v6).unwrap(),
            }
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Drop),
        Just(Action::Accept),
        (any::<u32>(), 1..=u32::MAX).prop_map(|(mark, mask)| Action::Mark {
            mark: mark & mask,
            mask
        }),
    ]
}

/// 16-byte values near valid actions: small action codes, marks and masks
/// from a few interesting ones, reserved mostly zero.
fn near_action() -> impl Strategy<Value = [u8; ACTION_SIZE]> {
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0xff),
        Just(0x10),
        Just(u32::MAX),
        any::<u32>()
    ];
    (
        0..5u32,
        word.clone(),
        word,
        prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
    )
        .prop_map(|(action, mark, mask, reserved)| {
            let mut b = [0u8; ACTION_SIZE];
            for (off, v) in [
                (offset_of!(uapi::nfkv_action, action), action),
                (offset_of!(uapi::nfkv_action, mark), mark),
                (offset_of!(uapi::nfkv_action, mask), mask),
                (offset_of!(uapi::nfkv_action, reserved), reserved),
            ] {
                b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            }
            b
        })
}

/// `addr` (big-endian bits) with all but its first `bits` cleared, computed
/// as an integer rather than byte by byte.
fn v4_cut(addr: [u8; 4], bits: u8) -> [u8; 4] {
    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
    (u32::from_be_bytes(addr) & mask).to_be_bytes()
}

fn v6_cut(addr: [u8; 16], bits: u8) -> [u8; 16] {
    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
    (u128::from_be_bytes(addr) & mask).to_be_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn classifiers_round_trip(c in classifier()) {
        let b = c.encode();
        prop_assert_eq!(Classifier::parse(&b), Ok(c));
        let counters = Counters { packets: 1, unkeyed: 2, drop: 3, accept: 4, mark: u64::MAX };
        prop_assert_eq!(decode_info(&encode_info(&c, &counters)), Ok((c, counters)));
        prop_assert_eq!(
            parse_del(&encode_del(c.name()).unwrap()).map(|n| n == c.name),
            Ok(true)
        );
    }

    #[test]
    fn one_changed_byte_is_refused_or_re_encodes_identically(
        c in classifier(),
        at in 0..CLASSIFIER_SIZE,
        v in any::<u8>(),
    ) {
        let mut b = c.encode();
        b[at] = v;
        if let Ok(parsed) = Classifier::parse(&b) {
            prop_assert_eq!(parsed.encode(), b);
        }
    }

    #[test]
    fn any_bytes_parse_without_panicking(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(c) = Classifier::parse(&b) {
            prop_assert_eq!(&c.encode()[..], &b[..]);
        }
        let _ = decode_info(&b);
        let _ = parse_del(&b);
        let _ = decode_list_header(&b);
        let _ = Action::parse(&b);
    }

    #[test]
    fn actions_round_trip(a in action()) {
        prop_assert_eq!(Action::parse(&a.encode()), Some(a));
    }

    #[test]
    fn every_value_is_an_action_that_re_encodes_or_none(
        b in prop_oneof![any::<[u8; ACTION_SIZE]>(), near_action()],
    ) {
        if let Some(a) = Action::parse(&b) {
            prop_assert_eq!(a.encode(), b);
        }
    }

    #[test]
    fn keys_are_the_prefix_then_the_packet_s_bytes(
        prefix in proptest::collection::vec(any::<u8>(), 0..=PREFIX_MAX),
        v4 in any::<[u8; 4]>(),
        v6 in any::<[u8; 16]>(),
        proto in any::<u8>(),
        port in any::<u16>(),
    ) {
        for (part, tail) in [
            (PacketKey::V4(v4), v4.to_vec()),
            (PacketKey::V6(v6), v6.to_vec()),
            (PacketKey::Port(proto, port), [&[proto][..], &port.to_be_bytes()].concat()),
        ] {
            let key = Key::new(&prefix, &part);
            prop_assert_eq!(key.as_bytes(), &[&prefix[..], &tail].concat()[..]);
        }
    }

    #[test]
    fn subnets_are_cut_to_the_classifier_s_bits(
        c in classifier(),
        v4 in any::<[u8; 4]>(),
        v6 in any::<[u8; 16]>(),
        proto in any::<u8>(),
        port in any::<u16>(),
    ) {
        let bits4 = if c.ipv4_bits == 0 { 32 } else { c.ipv4_bits };
        let bits6 = if c.ipv6_bits == 0 { 128 } else { c.ipv6_bits };
        let key = |part| c.key(part).as_bytes().to_vec();
        prop_assert_eq!(key(PacketKey::V4(v4)), [c.prefix(), &v4_cut(v4, bits4)].concat());
        prop_assert_eq!(key(PacketKey::V6(v6)), [c.prefix(), &v6_cut(v6, bits6)].concat());
        prop_assert_eq!(
            key(PacketKey::Port(proto, port)),
            [c.prefix(), &[proto], &port.to_be_bytes()].concat()
        );
        prop_assert!(c.covers(&key(PacketKey::V4(v4))));
        // Cutting twice changes nothing; a cut address is its own key.
        let once = c.packet_key(PacketKey::V6(v6));
        prop_assert_eq!(c.packet_key(once), once);
    }
}
