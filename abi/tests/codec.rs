//! Host tests of the codec the kernel module runs: exact edges, round
//! trips, and property tests that no input makes a parser panic or accept
//! something malformed.

use nfkv_abi::codec::*;
use nfkv_abi::uapi;
use proptest::prelude::*;
use std::mem::offset_of;

const MAX_VALUE: usize = 4096;

fn encode(op: &Op<'_>) -> Vec<u8> {
    let mut v = op.encode_header().to_vec();
    v.extend_from_slice(op.key);
    v.extend_from_slice(op.value);
    v
}

fn put<'a>(key: &'a [u8], value: &'a [u8]) -> Op<'a> {
    Op {
        kind: OpKind::Put,
        cond: Condition::default(),
        key,
        value,
    }
}

#[test]
fn header_sizes_match_the_abi() {
    assert_eq!(OP_SIZE, 24);
    assert_eq!(BATCH_SIZE, 8);
    assert_eq!(FLUSH_SIZE, 8);
    assert_eq!(LIST_REPLY_SIZE, 24);
    assert_eq!(LIST_ENTRY_SIZE, 24);
    assert_eq!(VALUE_SIZE, 16);
    assert_eq!(STATS_SIZE, 16 * (SET_COMMANDS + GET_COMMANDS));
    assert_eq!(INFO_SIZE % 8, 0);
}

#[test]
fn key_length_edges() {
    assert!(parse_single(OpKind::Put, &encode(&put(&[1], b"")), MAX_VALUE).is_ok());
    assert!(parse_single(OpKind::Put, &encode(&put(&[1; 255], b"")), MAX_VALUE).is_ok());
    let mut zero = encode(&put(&[1], b""));
    zero[offset_of!(uapi::nfkv_op, key_len)] = 0;
    zero.pop();
    assert_eq!(
        parse_single(OpKind::Put, &zero, MAX_VALUE),
        Err(Reject::Invalid)
    );
    let mut long = encode(&put(&[1; 255], b""));
    long[offset_of!(uapi::nfkv_op, key_len)..][..2].copy_from_slice(&256u16.to_ne_bytes());
    long.push(1);
    assert_eq!(
        parse_single(OpKind::Put, &long, MAX_VALUE),
        Err(Reject::Invalid)
    );
}

#[test]
fn value_length_edges() {
    assert!(parse_single(OpKind::Put, &encode(&put(b"k", &[0; MAX_VALUE])), MAX_VALUE).is_ok());
    assert_eq!(
        parse_single(
            OpKind::Put,
            &encode(&put(b"k", &[0; MAX_VALUE + 1])),
            MAX_VALUE
        ),
        Err(Reject::TooBig)
    );
}

#[test]
fn exact_length_is_required() {
    let req = encode(&put(b"key", b"value"));
    assert!(parse_single(OpKind::Put, &req, MAX_VALUE).is_ok());
    assert_eq!(
        parse_single(OpKind::Put, &req[..req.len() - 1], MAX_VALUE),
        Err(Reject::Invalid)
    );
    let mut longer = req.clone();
    longer.push(0);
    assert_eq!(
        parse_single(OpKind::Put, &longer, MAX_VALUE),
        Err(Reject::Invalid)
    );
    assert_eq!(
        parse_single(OpKind::Del, &req, MAX_VALUE),
        Err(Reject::Invalid)
    );
}

#[test]
fn conditions_must_be_consistent() {
    let at = |flags: u32, version: u64| {
        let mut req = encode(&put(b"k", b"v"));
        req[offset_of!(uapi::nfkv_op, flags)..][..4].copy_from_slice(&flags.to_ne_bytes());
        req[offset_of!(uapi::nfkv_op, version)..][..8].copy_from_slice(&version.to_ne_bytes());
        parse_single(OpKind::Put, &req, MAX_VALUE).map(|op| op.cond)
    };
    assert_eq!(at(0, 0), Ok(Condition::default()));
    assert!(at(uapi::NFKV_F_CREATE, 0).unwrap().create_only);
    assert_eq!(at(uapi::NFKV_F_IF_VERSION, 9).unwrap().if_version, Some(9));
    for (flags, version) in [(3, 0), (5, 1), (4, 0), (0, 1), (0x20, 0), (u32::MAX, 1)] {
        assert_eq!(
            at(flags, version),
            Err(Reject::Invalid),
            "flags {flags:#x} version {version}"
        );
    }
}

#[test]
fn a_lifetime_goes_with_its_flag() {
    let at = |kind: OpKind, flags: u32, ttl_ms: u32| {
        let op = Op {
            kind,
            ..put(b"k", b"")
        };
        let mut req = encode(&op);
        req[offset_of!(uapi::nfkv_op, flags)..][..4].copy_from_slice(&flags.to_ne_bytes());
        req[offset_of!(uapi::nfkv_op, ttl_ms)..][..4].copy_from_slice(&ttl_ms.to_ne_bytes());
        parse_single(kind, &req, MAX_VALUE).map(|op| op.cond.ttl)
    };
    let (ttl, keep) = (uapi::NFKV_F_TTL, uapi::NFKV_F_KEEP_TTL);
    assert_eq!(at(OpKind::Put, 0, 0), Ok(Ttl::default()));
    let expect = |ms, keep| Ok(Ttl { ms, keep });
    assert_eq!(at(OpKind::Put, ttl, 1), expect(Some(1), false));
    assert_eq!(
        at(OpKind::Put, ttl, MAX_TTL_MS),
        expect(Some(MAX_TTL_MS), false)
    );
    assert_eq!(at(OpKind::Put, keep, 0), expect(None, true));
    assert_eq!(at(OpKind::Put, ttl | keep, 5), expect(Some(5), true));
    // A lifetime without its flag, the flag without a lifetime, or either
    // on a delete: malformed.
    for (kind, flags, ms) in [
        (OpKind::Put, 0, 1),
        (OpKind::Put, keep, 1),
        (OpKind::Put, ttl, 0),
        (OpKind::Del, ttl, 1),
        (OpKind::Del, keep, 0),
        (OpKind::Del, 0, 1),
    ] {
        assert_eq!(
            at(kind, flags, ms),
            Err(Reject::Invalid),
            "{kind:?} {flags:#x} {ms}"
        );
    }
}

#[test]
fn flush_must_be_all_zero() {
    assert_eq!(parse_flush(&[0; 8]), Ok(()));
    assert_eq!(parse_flush(&[0; 7]), Err(Reject::Invalid));
    assert_eq!(parse_flush(&[0, 0, 0, 0, 1, 0, 0, 0]), Err(Reject::Invalid));
}

#[test]
fn batch_counts_that_cannot_fit_are_refused_early() {
    let mut h = encode_batch_header(false, u32::MAX).to_vec();
    assert_eq!(Batch::parse(&h, MAX_VALUE).err(), Some(Reject::TooBig));
    h = encode_batch_header(false, MAX_BATCH_OPS as u32).to_vec();
    assert_eq!(Batch::parse(&h, MAX_VALUE).err(), Some(Reject::Invalid));
    h = encode_batch_header(true, 0).to_vec();
    let b = Batch::parse(&h, MAX_VALUE).unwrap();
    assert!(b.flush && b.count == 0);
}

#[test]
fn get_and_list_requests_need_room_for_the_reply() {
    let mut buf = [0u8; 64];
    let n = encode_get(&mut buf, b"key");
    assert_eq!(parse_get(&buf[..n], VALUE_SIZE as i32), Ok(&b"key"[..]));
    assert_eq!(
        parse_get(&buf[..n], VALUE_SIZE as i32 - 1),
        Err(Reject::Invalid)
    );
    assert_eq!(parse_get(&buf[..n], -1), Err(Reject::Invalid));
    let req = ListRequest {
        after: b"a",
        prefix: b"b",
    };
    let n = req.encode(&mut buf);
    assert_eq!(
        ListRequest::parse(&buf[..n], LIST_REPLY_SIZE as i32),
        Ok(req)
    );
    assert_eq!(
        ListRequest::parse(&buf[..n], LIST_REPLY_SIZE as i32 - 1),
        Err(Reject::Invalid)
    );
    // Negative lengths never come from userspace (the socket layer refuses
    // them first, see badinput::matrix); an in-kernel caller's are refused.
    for len in [-1, i32::MIN] {
        assert_eq!(ListRequest::parse(&buf[..n], len), Err(Reject::Invalid));
        assert_eq!(parse_get(&buf[..n], len), Err(Reject::Invalid));
    }
}

fn arb_cond() -> impl Strategy<Value = Condition> {
    prop_oneof![
        Just(Condition::default()),
        Just(Condition {
            create_only: true,
            ..Default::default()
        }),
        Just(Condition {
            replace_only: true,
            ..Default::default()
        }),
        (1u64..u64::MAX).prop_map(|v| Condition {
            if_version: Some(v),
            ..Default::default()
        }),
        (1u64..u64::MAX).prop_map(|v| Condition {
            replace_only: true,
            if_version: Some(v),
            ..Default::default()
        }),
    ]
}

/// A put's conditions with any valid expiry.
fn arb_put_cond() -> impl Strategy<Value = Condition> {
    let ms = prop_oneof![
        Just(None),
        Just(Some(1)),
        Just(Some(MAX_TTL_MS)),
        (1..=MAX_TTL_MS).prop_map(Some)
    ];
    (arb_cond(), ms, any::<bool>()).prop_map(|(cond, ms, keep)| Condition {
        ttl: Ttl { ms, keep },
        ..cond
    })
}

type OwnedOp = (bool, Condition, Vec<u8>, Vec<u8>);

fn arb_op() -> impl Strategy<Value = OwnedOp> {
    (
        any::<bool>(),
        arb_put_cond(),
        prop::collection::vec(any::<u8>(), 1..=255),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(is_put, cond, key, value)| {
            if is_put {
                (true, cond, key, value)
            } else {
                (
                    false,
                    Condition {
                        if_version: cond.if_version,
                        ..Default::default()
                    },
                    key,
                    Vec::new(),
                )
            }
        })
}

/// One change to a valid request: a header field of the op (or batch
/// header) at `start` set to a chosen value, a byte flipped, the request
/// cut or extended.
#[derive(Debug, Clone)]
enum Mutation {
    Field(usize, u8, u64),
    Flip(prop::sample::Index, u8),
    /// A bit of one of the last 8 bytes (a record's padding, if any).
    FlipTail(usize, u8),
    Truncate(prop::sample::Index),
    Extend(Vec<u8>),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let edge = prop_oneof![
        0u64..8,
        Just(255),
        Just(256),
        Just(MAX_VALUE as u64),
        Just(MAX_VALUE as u64 + 1),
        Just(u16::MAX as u64),
        Just(u32::MAX as u64),
        Just(1 << 31),
        any::<u64>(),
    ];
    // Fields of struct nfkv_op: (offset, width).
    let field = prop::sample::select(vec![
        (offset_of!(uapi::nfkv_op, op), 2u8),
        (offset_of!(uapi::nfkv_op, key_len), 2),
        (offset_of!(uapi::nfkv_op, flags), 4),
        (offset_of!(uapi::nfkv_op, value_len), 4),
        (offset_of!(uapi::nfkv_op, ttl_ms), 4),
        (offset_of!(uapi::nfkv_op, version), 8),
    ]);
    prop_oneof![
        4 => (field, edge).prop_map(|((off, w), v)| Mutation::Field(off, w, v)),
        2 => (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => (0usize..8, 0u8..8).prop_map(|(i, b)| Mutation::FlipTail(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..12).prop_map(Mutation::Extend),
    ]
}

impl Mutation {
    /// Applies the mutation to the part `start..start + len` of `req`
    /// (fields are relative to `start`; a batch header is mutated as the
    /// first 8 bytes of an op would be).
    fn apply(&self, req: &mut Vec<u8>, start: usize, len: usize) {
        match self {
            Mutation::Field(off, width, v) => {
                let at = start + off;
                let w = usize::from(*width);
                if at + w <= req.len() {
                    req[at..at + w].copy_from_slice(&v.to_ne_bytes()[..w]);
                }
            }
            Mutation::Flip(i, bit) if len > 0 => req[start + i.index(len)] ^= 1 << bit,
            Mutation::FlipTail(i, bit) if *i < len => req[start + len - 1 - i] ^= 1 << bit,
            Mutation::Truncate(i) => req.truncate(i.index(req.len().max(1))),
            Mutation::Extend(extra) => req.extend_from_slice(extra),
            _ => {}
        }
    }
}

/// What every accepted op must satisfy.
fn check_accepted(op: &Op<'_>) -> Result<(), TestCaseError> {
    prop_assert!((1..=MAX_KEY_LEN).contains(&op.key.len()));
    prop_assert!(op.value.len() <= MAX_VALUE);
    let c = op.cond;
    prop_assert!(!(c.create_only && (c.replace_only || c.if_version.is_some())));
    prop_assert!(c.if_version != Some(0));
    prop_assert!(c.ttl.ms != Some(0));
    if op.kind == OpKind::Del {
        prop_assert!(!c.create_only && !c.replace_only && op.value.is_empty());
        prop_assert_eq!(c.ttl, Ttl::default());
    }
    Ok(())
}

/// A batch request of `ops` and the (start, length) of its header and of
/// each record, padding included.
fn encode_batch(ops: &[OwnedOp], flush: bool) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut req = encode_batch_header(flush, ops.len() as u32).to_vec();
    let mut spans = vec![(0, BATCH_SIZE)];
    for o in ops {
        let op = as_op(o);
        let start = req.len();
        req.extend_from_slice(&encode(&op));
        req.resize(start + op.record_len(), 0);
        spans.push((start, op.record_len()));
    }
    (req, spans)
}

fn as_op(o: &OwnedOp) -> Op<'_> {
    Op {
        kind: if o.0 { OpKind::Put } else { OpKind::Del },
        cond: o.1,
        key: &o.2,
        value: &o.3,
    }
}

proptest! {
    #[test]
    fn single_ops_round_trip(o in arb_op()) {
        let op = as_op(&o);
        let req = encode(&op);
        prop_assert_eq!(parse_single(op.kind, &req, MAX_VALUE), Ok(op));
    }

    #[test]
    fn batches_round_trip(ops in prop::collection::vec(arb_op(), 0..20), flush in any::<bool>()) {
        let mut req = encode_batch_header(flush, ops.len() as u32).to_vec();
        for o in &ops {
            let op = as_op(o);
            let start = req.len();
            req.extend_from_slice(&encode(&op));
            req.resize(start + op.record_len(), 0);
            prop_assert_eq!(op.record_len() % ALIGN, 0);
        }
        let batch = Batch::parse(&req, MAX_VALUE).unwrap();
        prop_assert_eq!(batch.flush, flush);
        let mut seen = Vec::new();
        batch.for_each(|i, rec| -> Result<(), Reject> { seen.push((i, rec.op())); Ok(()) }).unwrap();
        prop_assert_eq!(seen.len(), ops.len());
        for ((i, op), o) in seen.iter().zip(&ops) {
            prop_assert_eq!(*op, as_op(o), "record {}", i);
        }
        // Any truncation or extension is malformed.
        if !req.is_empty() {
            let short = &req[..req.len() - 1];
            let r = Batch::parse(short, MAX_VALUE).and_then(|b| b.for_each(|_, _| -> Result<(), Reject> { Ok(()) }));
            prop_assert!(r.is_err());
        }
    }

    /// Random bytes: no parser panics. (Random bytes almost never form a
    /// valid request; what an accepted request looks like is checked by the
    /// mutation tests below, which start from valid ones.)
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), len in any::<i32>()) {
        let _ = parse_single(OpKind::Put, &bytes, MAX_VALUE);
        let _ = parse_single(OpKind::Del, &bytes, MAX_VALUE);
        let _ = parse_flush(&bytes);
        if let Ok(b) = Batch::parse(&bytes, MAX_VALUE) {
            let _ = b.for_each(|_, _| -> Result<(), Reject> { Ok(()) });
        }
        let _ = parse_get(&bytes, len);
        let _ = ListRequest::parse(&bytes, len);
        let _ = decode_list_page(&bytes, |_| -> Result<(), Reject> { Ok(()) });
        let _ = Info::decode(&bytes);
        let _ = Stats::decode(&bytes);
        let _ = ValueHeader::decode(&bytes);
    }

    /// A valid op, then one mutation: the unmutated request must be
    /// accepted, and whatever the mutated one parses to must respect every
    /// limit and be exactly the canonical encoding of what was parsed.
    #[test]
    fn accepted_ops_respect_every_limit(o in arb_op(), m in arb_mutation()) {
        let op = as_op(&o);
        let valid = encode(&op);
        prop_assert_eq!(parse_single(op.kind, &valid, MAX_VALUE), Ok(op));
        let mut bytes = valid.clone();
        m.apply(&mut bytes, 0, op.wire_len());
        for kind in [OpKind::Put, OpKind::Del] {
            if let Ok(got) = parse_single(kind, &bytes, MAX_VALUE) {
                check_accepted(&got)?;
                prop_assert_eq!(got.kind, kind);
                prop_assert_eq!(&encode(&got), &bytes, "accepted a non-canonical request");
            }
        }
    }

    /// The same for batches: a valid batch is accepted whole; a batch with
    /// one mutation is either refused or every record it yields respects
    /// every limit and re-encodes to exactly the bytes sent.
    #[test]
    fn accepted_batches_respect_every_limit(ops in prop::collection::vec(arb_op(), 0..8), flush in any::<bool>(), m in arb_mutation(), at in any::<prop::sample::Index>()) {
        let (valid, spans) = encode_batch(&ops, flush);
        let parsed = Batch::parse(&valid, MAX_VALUE);
        prop_assert!(parsed.is_ok());
        let mut seen = 0;
        let all = parsed.unwrap().for_each(|_, _| -> Result<(), Reject> { seen += 1; Ok(()) });
        prop_assert_eq!(all, Ok(()));
        prop_assert_eq!(seen, ops.len());
        // Mutate the header or one record (padding included).
        let (start, len) = spans[at.index(spans.len())];
        let mut bytes = valid.clone();
        m.apply(&mut bytes, start, len);
        if let Ok(b) = Batch::parse(&bytes, MAX_VALUE) {
            let mut got = Vec::new();
            if b.for_each(|_, rec| -> Result<(), Reject> { got.push(rec.op()); Ok(()) }).is_ok() {
                prop_assert_eq!(got.len(), b.count);
                for op in &got {
                    check_accepted(op)?;
                }
                let owned: Vec<OwnedOp> = got.iter().map(|op| (op.kind == OpKind::Put, op.cond, op.key.to_vec(), op.value.to_vec())).collect();
                prop_assert_eq!(&encode_batch(&owned, b.flush).0, &bytes, "accepted a non-canonical batch");
            }
        }
    }

    #[test]
    fn list_pages_round_trip(entries in prop::collection::vec((any::<u64>(), any::<u32>(), prop::collection::vec(any::<u8>(), 1..40), prop::collection::vec(any::<u8>(), 0..100)), 0..30), room in 24usize..4096, generation in any::<u64>()) {
        // Not zeroed: the writer must write every byte it returns.
        let mut page = vec![0xa5u8; room];
        let mut w = ListPageWriter::new(&mut page).unwrap();
        let mut written = 0;
        for (v, ttl, k, val) in &entries {
            if !w.push(*v, *ttl, k.len(), &[&k[..], &val[..]].concat()) { break; }
            written += 1;
        }
        let more = written < entries.len();
        let used = w.finish(generation, more);
        prop_assert!(used <= room);
        let mut back = Vec::new();
        let h = decode_list_page(&page[..used], |e| -> Result<(), Reject> { back.push((e.version, e.ttl_ms, e.key.to_vec(), e.value.to_vec())); Ok(()) }).unwrap();
        prop_assert_eq!(h.generation, generation);
        prop_assert_eq!(h.more, more);
        prop_assert_eq!(h.count as usize, written);
        prop_assert_eq!(&back[..], &entries[..written]);
        // Byte for byte as the header describes them: reserved and padding zero.
        let mut want = Vec::new();
        for (v, ttl, k, val) in &entries[..written] {
            want.extend_from_slice(&v.to_ne_bytes());
            want.extend_from_slice(&(k.len() as u16).to_ne_bytes());
            want.extend_from_slice(&[0, 0]);
            want.extend_from_slice(&(val.len() as u32).to_ne_bytes());
            want.extend_from_slice(&ttl.to_ne_bytes());
            want.extend_from_slice(&[0; 4]);
            want.extend_from_slice(k);
            want.extend_from_slice(val);
            want.resize(want.len().next_multiple_of(8), 0);
        }
        prop_assert_eq!(&page[LIST_REPLY_SIZE..used], &want[..]);
    }

    #[test]
    fn info_and_stats_round_trip(a in any::<[u32; 8]>(), b in any::<[u64; 6]>(), s in any::<[u64; 16]>()) {
        let info = Info { abi_version: a[0], optbase: a[1], max_key_len: a[2], max_value_len: a[3], max_entries: a[4], max_batch_ops: a[5], entries: a[6], flags: a[7], bytes_used: b[0], generation: b[1], module_version: *b"0.1.0\0\0\0\0\0\0\0\0\0\0\0", max_bytes: b[2], charged: b[3], budget_used: b[4], budget_size: b[5] };
        let encoded = info.encode();
        prop_assert_eq!(Info::decode(&encoded), Ok(info));
        // Any reply that holds the first field names its ABI, whatever its length.
        prop_assert_eq!(Info::abi_version_of(&encoded[..4]), Some(a[0]));
        prop_assert_eq!(Info::abi_version_of(&encoded[..3]), None);
        prop_assert_eq!(info.charged_to_budget(), a[7] & INFO_F_BUDGET != 0);
        let mut stats = Stats::default();
        for (i, c) in stats.set.iter_mut().chain(stats.get.iter_mut()).enumerate() {
            c.ok = s[2 * i % 16];
            c.failed = s[(2 * i + 1) % 16];
        }
        prop_assert_eq!(Stats::decode(&stats.encode()), Ok(stats));
    }
}

/// The mutation tests exercise both outcomes: over a fixed number of cases,
/// a good share of mutated requests is still accepted (so the acceptance
/// assertions run) and a good share is refused.
#[test]
fn mutations_exercise_acceptance_and_refusal() {
    /// Runs `accepts` on 2000 cases of `strategy`; panics unless at least
    /// 200 are accepted and 200 refused.
    fn both_outcomes<S: Strategy>(what: &str, strategy: S, accepts: impl Fn(S::Value) -> bool) {
        use proptest::test_runner::{Config, TestRunner};
        use std::cell::Cell;
        let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            ..Config::default()
        });
        runner
            .run(&strategy, |v| {
                let c = if accepts(v) { &accepted } else { &refused };
                c.set(c.get() + 1);
                Ok(())
            })
            .unwrap();
        let (accepted, refused) = (accepted.get(), refused.get());
        assert!(
            accepted >= 200 && refused >= 200,
            "{accepted} mutated {what} accepted, {refused} refused"
        );
    }
    both_outcomes("requests", (arb_op(), arb_mutation()), |(o, m)| {
        let op = as_op(&o);
        let mut bytes = encode(&op);
        m.apply(&mut bytes, 0, op.wire_len());
        parse_single(op.kind, &bytes, MAX_VALUE).is_ok()
    });
    // Batches, mutated as `accepted_batches_respect_every_limit` mutates
    // them: accepted means parsed and every record yielded.
    let batches = (
        prop::collection::vec(arb_op(), 0..8),
        any::<bool>(),
        arb_mutation(),
        any::<prop::sample::Index>(),
    );
    both_outcomes("batches", batches, |(ops, flush, m, at)| {
        let (mut bytes, spans) = encode_batch(&ops, flush);
        let (start, len) = spans[at.index(spans.len())];
        m.apply(&mut bytes, start, len);
        Batch::parse(&bytes, MAX_VALUE)
            .is_ok_and(|b| b.for_each(|_, _| -> Result<(), Reject> { Ok(()) }).is_ok())
    });
}

#[test]
fn key_order_edges() {
    use std::cmp::Ordering::*;
    let cases: &[(&[u8], &[u8], std::cmp::Ordering)] = &[
        (b"", b"", Equal),
        (b"a", b"", Greater),
        (b"abcdefgh", b"abcdefgh", Equal),
        (b"abcdefgh", b"abcdefghi", Less),
        (b"abcdefgh\x00", b"abcdefgh", Greater),
        (b"abcdefgx", b"abcdefgh", Greater),
        (b"\x01bcdefgh", b"\xffbcdefgh", Less),
        // The first differing byte decides, not the last one.
        (b"\x02\0\0\0\0\0\0\0", b"\x01\0\0\0\0\0\0\x09", Greater),
        (b"0123456789abcdef", b"0123456789abcdeg", Less),
        (b"0123456789abcdef", b"0123456789abcd", Greater),
        (b"0123456789abcdefXYZ", b"0123456789abcdefXYz", Less),
    ];
    for &(a, b, want) in cases {
        assert_eq!(key_order(a, b), want, "{a:?} vs {b:?}");
        assert_eq!(key_order(b, a), want.reverse(), "{b:?} vs {a:?}");
    }
}

proptest! {
    #[test]
    fn key_order_is_bytewise(a in prop::collection::vec(any::<u8>(), 0..40),
                             b in prop::collection::vec(any::<u8>(), 0..40)) {
        prop_assert_eq!(key_order(&a, &b), a.cmp(&b));
    }

    /// Keys that share a prefix of any length, so the words that differ
    /// (or the tails, or the lengths) decide, not the first byte.
    #[test]
    fn key_order_after_a_shared_prefix(prefix in prop::collection::vec(any::<u8>(), 0..33),
                                       a in prop::collection::vec(any::<u8>(), 0..12),
                                       b in prop::collection::vec(any::<u8>(), 0..12)) {
        let a = [&prefix[..], &a[..]].concat();
        let b = [&prefix[..], &b[..]].concat();
        prop_assert_eq!(key_order(&a, &b), a.cmp(&b));
        prop_assert_eq!(key_order(&a, &a), std::cmp::Ordering::Equal);
    }
}

#[test]
fn value_headers_carry_the_time_left() {
    let h = ValueHeader {
        version: 7,
        value_len: 3,
        ttl_ms: 1500,
    };
    let bytes = h.encode();
    assert_eq!(
        bytes[offset_of!(uapi::nfkv_value, ttl_ms)..][..4],
        1500u32.to_ne_bytes()
    );
    assert_eq!(ValueHeader::decode(&bytes), Ok(h));
}

#[test]
fn watch_sizes_match_the_abi() {
    assert_eq!(WATCH_SIZE, 16);
    assert_eq!(WATCH_REPLY_SIZE, 32);
    assert_eq!(EVENT_SIZE, 24);
}

#[test]
fn watch_requests_are_checked() {
    let req = WatchRequest {
        since: 7,
        timeout_ms: WATCH_MAX_TIMEOUT_MS,
        prefix: b"pre",
        values: true,
    };
    let mut buf = vec![0u8; 64];
    let n = req.encode(&mut buf);
    assert_eq!(n, WATCH_SIZE + 3);
    assert_eq!(WatchRequest::parse(&buf[..n], 64), Ok(req));
    // The buffer must hold the reply header, and the request its prefix.
    assert_eq!(WatchRequest::parse(&buf[..n], 31), Err(Reject::Invalid));
    assert_eq!(WatchRequest::parse(&buf[..n - 1], 64), Err(Reject::Invalid));
    // Too long a wait, an unknown flag, too long a prefix.
    let over = WatchRequest {
        timeout_ms: WATCH_MAX_TIMEOUT_MS + 1,
        ..req
    };
    over.encode(&mut buf);
    assert_eq!(WatchRequest::parse(&buf[..n], 64), Err(Reject::Invalid));
    req.encode(&mut buf);
    buf[offset_of!(uapi::nfkv_watch, flags)] |= 0x2;
    assert_eq!(WatchRequest::parse(&buf[..n], 64), Err(Reject::Invalid));
    req.encode(&mut buf);
    buf[offset_of!(uapi::nfkv_watch, prefix_len)..][..2]
        .copy_from_slice(&((MAX_KEY_LEN + 1) as u16).to_ne_bytes());
    assert_eq!(WatchRequest::parse(&buf, 1024), Err(Reject::Invalid));
}

fn arb_event() -> impl Strategy<Value = (EventKind, Vec<u8>, Option<Vec<u8>>, u64)> {
    prop_oneof![
        Just(EventKind::Put),
        Just(EventKind::Del),
        Just(EventKind::Flush),
        Just(EventKind::Expire)
    ]
    .prop_flat_map(|kind| {
        let key = if kind == EventKind::Flush {
            Just(Vec::new()).boxed()
        } else {
            prop::collection::vec(any::<u8>(), 1..40).boxed()
        };
        let value = if kind == EventKind::Put {
            prop::option::of(prop::collection::vec(any::<u8>(), 0..100)).boxed()
        } else {
            Just(None).boxed()
        };
        (Just(kind), key, value, 0u64..3)
    })
}

proptest! {
    /// Events written by the module's page writer decode to what was
    /// written, in order, byte for byte as the header says.
    #[test]
    fn watch_pages_round_trip(events in prop::collection::vec(arb_event(), 0..30), room in 32usize..4096, since in 0u64..1 << 60) {
        let mut page = vec![0xa5u8; room];
        let mut w = WatchPageWriter::new(&mut page).unwrap();
        let mut written = Vec::new();
        let mut g = since;
        for (kind, key, value, group) in &events {
            g += 1;
            let h = EventHeader { generation: g, last: g + group, kind: *kind, key_len: key.len() as u16, value_len: value.as_ref().map(|v| v.len() as u32) };
            if !w.push(&h, key, value.as_deref().unwrap_or(&[])) { break; }
            written.push((h, key.clone(), value.clone()));
        }
        let more = written.len() < events.len();
        let used = w.finish(WatchReplyHeader { generation: g, more, oldest: since, ..Default::default() });
        prop_assert!(used <= room);
        let mut back = Vec::new();
        let h = decode_watch_page(&page[..used], since, |e| -> Result<(), Reject> { back.push((e.header, e.key.to_vec(), e.value.map(<[u8]>::to_vec))); Ok(()) }).unwrap();
        prop_assert_eq!(h.count as usize, written.len());
        prop_assert_eq!((h.generation, h.more, h.gap, h.oldest), (g, more, false, since));
        prop_assert_eq!(&back, &written);
        let mut want = Vec::new();
        for (h, key, value) in &written {
            want.extend_from_slice(&h.generation.to_ne_bytes());
            want.extend_from_slice(&h.last.to_ne_bytes());
            want.push(h.kind.wire());
            want.push(u8::from(value.is_some()));
            want.extend_from_slice(&h.key_len.to_ne_bytes());
            want.extend_from_slice(&(value.as_ref().map_or(0, Vec::len) as u32).to_ne_bytes());
            want.extend_from_slice(key);
            want.extend_from_slice(value.as_deref().unwrap_or(&[]));
            want.resize(want.len().next_multiple_of(8), 0);
        }
        prop_assert_eq!(&page[WATCH_REPLY_SIZE..used], &want[..]);
    }

    /// A valid reply with one byte changed: the decoder either refuses it or
    /// yields events that keep every promise (order after `since`, within
    /// the reply's generation, lengths inside the page); never panics.
    #[test]
    fn mutated_watch_replies_keep_their_promises(events in prop::collection::vec(arb_event(), 1..10), at in any::<prop::sample::Index>(), byte in any::<u8>(), since in 0u64..1 << 60) {
        let mut page = vec![0u8; 8192];
        let mut w = WatchPageWriter::new(&mut page).unwrap();
        let mut g = since;
        for (kind, key, value, group) in &events {
            g += 1;
            let h = EventHeader { generation: g, last: g + group, kind: *kind, key_len: key.len() as u16, value_len: value.as_ref().map(|v| v.len() as u32) };
            prop_assert!(w.push(&h, key, value.as_deref().unwrap_or(&[])));
        }
        let used = w.finish(WatchReplyHeader { generation: g, ..Default::default() });
        let mut bytes = page[..used].to_vec();
        let i = at.index(used);
        bytes[i] = byte;
        let mut last = since;
        let decoded = decode_watch_page(&bytes, since, |e| -> Result<(), Reject> {
            if e.header.generation <= last || e.header.last < e.header.generation
                || (e.header.kind == EventKind::Flush) != e.key.is_empty()
                || (e.value.is_some() && e.header.kind != EventKind::Put) {
                return Err(Reject::TooBig);
            }
            last = e.header.generation;
            Ok(())
        });
        prop_assert_ne!(decoded, Err(Reject::TooBig));
        if let Ok(h) = decoded {
            prop_assert!(last <= h.generation);
            prop_assert!(!h.gap || h.count == 0);
        }
    }

    #[test]
    fn watch_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), len in any::<i32>(), since in any::<u64>()) {
        let _ = WatchRequest::parse(&bytes, len);
        let _ = WatchReplyHeader::decode(&bytes);
        let _ = EventHeader::decode(&bytes);
        let _ = decode_watch_page(&bytes, since, |_| -> Result<(), Reject> { Ok(()) });
    }
}

#[test]
fn watch_replies_out_of_order_are_refused() {
    let page_of = |gens: &[u64], reply_generation: u64| {
        let mut page = vec![0u8; 1024];
        let mut w = WatchPageWriter::new(&mut page).unwrap();
        for &g in gens {
            let h = EventHeader {
                generation: g,
                last: g,
                kind: EventKind::Del,
                key_len: 1,
                value_len: None,
            };
            assert!(w.push(&h, b"k", &[]));
        }
        let used = w.finish(WatchReplyHeader {
            generation: reply_generation,
            ..Default::default()
        });
        page.truncate(used);
        page
    };
    let ok =
        |p: &[u8], since| decode_watch_page(p, since, |_| -> Result<(), Reject> { Ok(()) }).is_ok();
    assert!(ok(&page_of(&[11, 12, 14], 15), 10));
    // A repeated generation, one going back, one not after `since`, one
    // past the reply's generation, a reply generation before `since`.
    assert!(!ok(&page_of(&[11, 11], 12), 10));
    assert!(!ok(&page_of(&[12, 11], 12), 10));
    assert!(!ok(&page_of(&[10], 12), 10));
    assert!(!ok(&page_of(&[11, 13], 12), 10));
    assert!(!ok(&page_of(&[], 9), 10));
}
