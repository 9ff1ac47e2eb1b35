//! The bad-input matrix: every command against malformed lengths, buffers,
//! fields, flags, counts and keys. Every case must end with its documented
//! errno (or succeed, where the ABI says so), and every failing case must
//! leave the table exactly as it was: generation, count, bytes and contents.
//!
//! Each case also says who must answer it, checked through the module's
//! per-command counters: nfkv itself, or the socket layer before nfkv runs.
//! The kernel refuses a negative optlen passed as such (`__sys_setsockopt`
//! for set, `do_ip_getsockopt` for get, both EINVAL). A get length can still
//! reach nfkv negative: `ip_getsockopt` reads `optlen` again after
//! `do_ip_getsockopt` checked it, so a thread flipping it in between gets
//! through; `negative_get_length_race` makes that happen. Set lengths up to
//! INT_MAX, and every get length >= 0, reach nfkv and are checked here.
//!
//! The matrix checks errnos; `get_replies_are_exact_and_end_where_they_say`
//! checks what each get command writes: the reply, the optlen it reports,
//! the EMSGSIZE header, and nothing past the reply (a canary in the rest of
//! the buffer, and a buffer that ends at an unmapped page for the INT_MAX
//! length).

use crate::ensure;
use crate::harness::*;
use nfkv::{Batch, Condition, Nfkv};
use nfkv_abi::codec::{self, cmd, put_u16, put_u32, put_u64, ListRequest, Op, OpKind};
use nfkv_abi::uapi;
use std::io;
use std::mem::offset_of;

pub fn suite() -> Vec<Test> {
    crate::tests![
        matrix,
        get_replies_are_exact_and_end_where_they_say,
        buffers_running_into_an_unmapped_page_fault_cleanly,
        negative_get_length_race
    ]
}

/// What a case sends: a set or get of command `cmd` on `len` bytes at `ptr`.
#[derive(Clone, Copy)]
enum Target {
    /// The case's own bytes (padded with zeros up to `len`).
    Bytes,
    Null,
    Unmapped,
    ReadOnly,
}

/// Overwrites fields of a valid request.
type Patch = Box<dyn Fn(&mut Vec<u8>)>;
/// A named patch and the errno it must produce.
type FieldCase = (&'static str, Patch, Option<i32>);

struct Case {
    name: String,
    set: bool,
    cmd: u32,
    bytes: Vec<u8>,
    /// The length passed (optlen); may exceed `bytes` only for huge values
    /// that the module must refuse before reading.
    len: i64,
    target: Target,
    /// None: must succeed.
    want: Option<i32>,
    /// Who answers: nfkv, or the socket layer before nfkv runs.
    reach: Reach,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reach {
    /// nfkv's handler runs (its counter for the command moves by one).
    Module,
    /// The kernel refuses the call before nf_sockopt calls nfkv.
    SocketLayer,
    /// An unknown command of the range: nfkv runs but keeps no counter.
    Uncounted,
}

const EINVAL: Option<i32> = Some(libc::EINVAL);
const E2BIG: Option<i32> = Some(libc::E2BIG);
const EFAULT: Option<i32> = Some(libc::EFAULT);
const EMSGSIZE: Option<i32> = Some(libc::EMSGSIZE);
const EOPNOTSUPP: Option<i32> = Some(libc::EOPNOTSUPP);

fn case(name: impl Into<String>, set: bool, cmd: u32, bytes: Vec<u8>, want: Option<i32>) -> Case {
    let len = bytes.len() as i64;
    let known = if set {
        cmd::is_set(cmd)
    } else {
        cmd::is_get(cmd)
    };
    Case {
        name: name.into(),
        set,
        cmd,
        bytes,
        len,
        target: Target::Bytes,
        want,
        reach: if known {
            Reach::Module
        } else {
            Reach::Uncounted
        },
    }
}

/// A GET_VALUE request for the baseline's key `key`.
fn get_key_request() -> Vec<u8> {
    let mut req = vec![0u8; codec::GET_SIZE + 3];
    codec::encode_get(&mut req, b"key");
    req
}

/// A LIST request for every key from the first.
fn list_all_request() -> Vec<u8> {
    let mut req = vec![0u8; codec::LIST_SIZE];
    ListRequest {
        after: b"",
        prefix: b"",
    }
    .encode(&mut req);
    req
}

fn op(kind: OpKind, key: &[u8], value: &[u8]) -> Vec<u8> {
    nfkv::raw::encode_op(&Op {
        kind,
        cond: Condition::default(),
        key,
        value,
    })
}

fn batch_of(ops: &[(OpKind, &[u8], &[u8])]) -> Vec<u8> {
    let mut b = Batch::new();
    for (k, key, value) in ops {
        match k {
            OpKind::Put => b.put(key, value, Condition::default()),
            OpKind::Del => b.delete(key, None),
        };
    }
    b.encode().expect("encodable batch")
}

fn patched(mut b: Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    f(&mut b);
    b
}

fn resized(b: &[u8], len: usize) -> Vec<u8> {
    let mut v = b.to_vec();
    v.resize(len, 0);
    v
}

const OP_OP: usize = offset_of!(uapi::nfkv_op, op);
const OP_KEY_LEN: usize = offset_of!(uapi::nfkv_op, key_len);
const OP_FLAGS: usize = offset_of!(uapi::nfkv_op, flags);
const OP_VALUE_LEN: usize = offset_of!(uapi::nfkv_op, value_len);
const OP_TTL: usize = offset_of!(uapi::nfkv_op, ttl_ms);
const OP_VERSION: usize = offset_of!(uapi::nfkv_op, version);

/// The matrix, for a table whose limits are `max_value`.
fn cases(max_value: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let put = op(OpKind::Put, b"key", b"val");
    let del = op(OpKind::Del, b"key", b"");
    let flush = vec![0u8; codec::FLUSH_SIZE];
    let batch = batch_of(&[(OpKind::Put, b"key", b"val"), (OpKind::Del, b"zz", b"")]);
    let huge = codec::MAX_REQUEST_LEN + 1;

    // 1. Set commands x lengths: only the exact length of a valid request works.
    let max_put = codec::OP_SIZE + codec::MAX_KEY_LEN + max_value;
    for (name, c, valid, min) in [
        ("put", cmd::SET_PUT, &put, codec::OP_SIZE + 1),
        ("del", cmd::SET_DEL, &del, codec::OP_SIZE + 1),
        ("flush", cmd::SET_FLUSH, &flush, codec::FLUSH_SIZE),
        ("batch", cmd::SET_BATCH, &batch, codec::BATCH_SIZE),
    ] {
        let exact = valid.len();
        let lens = [
            0,
            1,
            min - 1,
            min,
            min + 1,
            exact - 1,
            exact,
            exact + 1,
            4096,
            max_put,
            max_put + 1,
        ];
        for len in lens {
            let want = if len == exact { None } else { EINVAL };
            cases.push(case(
                format!("set {name} len {len}"),
                true,
                c,
                resized(valid, len),
                want,
            ));
        }
        // Over the request cap, up to INT_MAX: nfkv refuses them before
        // reading anything. An optlen with the top bit set is negative to
        // the socket layer, which refuses it (EINVAL) before nfkv runs.
        for (len, want, reach) in [
            (huge as i64, E2BIG, Reach::Module),
            (i32::MAX as i64, E2BIG, Reach::Module),
            (u32::MAX as i64, EINVAL, Reach::SocketLayer),
            (1i64 << 31, EINVAL, Reach::SocketLayer),
        ] {
            cases.push(Case {
                len,
                reach,
                ..case(
                    format!("set {name} len {len}"),
                    true,
                    c,
                    valid.to_vec(),
                    want,
                )
            });
        }
        // Exactly the request cap: read (a put's header first, a batch
        // whole), then refused for the zeros past the valid request.
        if c == cmd::SET_PUT || c == cmd::SET_BATCH {
            cases.push(case(
                format!("set {name} len {} (the cap)", codec::MAX_REQUEST_LEN),
                true,
                c,
                resized(valid, codec::MAX_REQUEST_LEN),
                EINVAL,
            ));
        }
        let b = valid.to_vec();
        cases.push(Case {
            target: Target::Null,
            ..case(format!("set {name} NULL"), true, c, b.clone(), EFAULT)
        });
        cases.push(Case {
            target: Target::Unmapped,
            ..case(format!("set {name} unmapped"), true, c, b.clone(), EFAULT)
        });
        cases.push(Case {
            target: Target::ReadOnly,
            ..case(format!("set {name} read-only"), true, c, b, None)
        });
    }

    // 2. Get commands x lengths (request and reply share the buffer).
    let (get, list) = (get_key_request(), list_all_request());
    let value_exact = codec::VALUE_SIZE + 3;
    let first_entry = codec::LIST_REPLY_SIZE + codec::list_entry_len(1, 1);
    for (name, c, req, min, fits) in [
        (
            "info",
            cmd::GET_INFO,
            vec![],
            codec::INFO_SIZE,
            codec::INFO_SIZE,
        ),
        (
            "value",
            cmd::GET_VALUE,
            get.clone(),
            codec::VALUE_SIZE,
            value_exact,
        ),
        (
            "list",
            cmd::GET_LIST,
            list.clone(),
            codec::LIST_REPLY_SIZE,
            first_entry,
        ),
        (
            "stats",
            cmd::GET_STATS,
            vec![],
            codec::STATS_SIZE,
            codec::STATS_SIZE,
        ),
    ] {
        for len in [0, 1, min - 1, min, min + 1, fits - 1, fits, fits + 1, 65536] {
            let want = if len < min {
                EINVAL
            } else if len < fits {
                EMSGSIZE
            } else {
                None
            };
            cases.push(case(
                format!("get {name} len {len}"),
                false,
                c,
                resized(&req, len),
                want,
            ));
        }
        // Negative: refused by do_ip_getsockopt before nf_getsockopt.
        for len in [-1i64, i32::MIN as i64] {
            cases.push(Case {
                len,
                reach: Reach::SocketLayer,
                ..case(
                    format!("get {name} len {len}"),
                    false,
                    c,
                    resized(&req, 4096),
                    EINVAL,
                )
            });
        }
        // A length far beyond the real buffer: the module writes only the
        // reply, which fits the real (64 KiB) buffer.
        cases.push(Case {
            len: i32::MAX as i64,
            ..case(
                format!("get {name} len INT_MAX"),
                false,
                c,
                resized(&req, 65536),
                None,
            )
        });
        let b = resized(&req, 4096);
        cases.push(Case {
            target: Target::Null,
            ..case(format!("get {name} NULL"), false, c, b.clone(), EFAULT)
        });
        cases.push(Case {
            target: Target::Unmapped,
            ..case(format!("get {name} unmapped"), false, c, b.clone(), EFAULT)
        });
        cases.push(Case {
            target: Target::ReadOnly,
            ..case(format!("get {name} read-only"), false, c, b, EFAULT)
        });
    }

    // 3. Unknown commands inside the registered range.
    for c in (0..cmd::RANGE).filter(|&c| !cmd::is_set(c)) {
        cases.push(case(
            format!("set unknown +{c}"),
            true,
            c,
            put.clone(),
            EOPNOTSUPP,
        ));
    }
    for c in (0..cmd::RANGE).filter(|&c| !cmd::is_get(c)) {
        cases.push(case(
            format!("get unknown +{c}"),
            false,
            c,
            resized(&get, 4096),
            EOPNOTSUPP,
        ));
    }

    // 4. Fields of struct nfkv_op: reserved, flags, op codes, versions, lengths.
    let field_cases: Vec<FieldCase> = vec![
        (
            "ttl_ms without NFKV_F_TTL",
            Box::new(|b| put_u32(b, OP_TTL, 1)),
            EINVAL,
        ),
        (
            "ttl_ms high bit without NFKV_F_TTL",
            Box::new(|b| put_u32(b, OP_TTL, 1 << 31)),
            EINVAL,
        ),
        (
            "NFKV_F_TTL with ttl_ms 0",
            Box::new(|b| put_u32(b, OP_FLAGS, uapi::NFKV_F_TTL)),
            EINVAL,
        ),
        (
            "flag 0x20",
            Box::new(|b| put_u32(b, OP_FLAGS, 0x20)),
            EINVAL,
        ),
        (
            "flag 0x80000000",
            Box::new(|b| put_u32(b, OP_FLAGS, 1 << 31)),
            EINVAL,
        ),
        (
            "flags all ones",
            Box::new(|b| put_u32(b, OP_FLAGS, u32::MAX)),
            EINVAL,
        ),
        (
            "create+replace",
            Box::new(|b| put_u32(b, OP_FLAGS, 3)),
            EINVAL,
        ),
        (
            "if-version 0",
            Box::new(|b| put_u32(b, OP_FLAGS, 4)),
            EINVAL,
        ),
        (
            "version without flag",
            Box::new(|b| put_u64(b, OP_VERSION, 5)),
            EINVAL,
        ),
        ("op 0", Box::new(|b| put_u16(b, OP_OP, 0)), EINVAL),
        ("op 3", Box::new(|b| put_u16(b, OP_OP, 3)), EINVAL),
        (
            "op 0xffff",
            Box::new(|b| put_u16(b, OP_OP, u16::MAX)),
            EINVAL,
        ),
        ("key_len 0", Box::new(|b| put_u16(b, OP_KEY_LEN, 0)), EINVAL),
        (
            "key_len 256",
            Box::new(|b| put_u16(b, OP_KEY_LEN, 256)),
            EINVAL,
        ),
        (
            "key_len 65535",
            Box::new(|b| put_u16(b, OP_KEY_LEN, u16::MAX)),
            EINVAL,
        ),
        (
            "key_len longer than sent",
            Box::new(|b| put_u16(b, OP_KEY_LEN, 5)),
            EINVAL,
        ),
        (
            "value_len longer than sent",
            Box::new(|b| put_u32(b, OP_VALUE_LEN, 4)),
            EINVAL,
        ),
        (
            "value_len max+1",
            Box::new(move |b| put_u32(b, OP_VALUE_LEN, max_value as u32 + 1)),
            E2BIG,
        ),
        (
            "value_len u32 max",
            Box::new(|b| put_u32(b, OP_VALUE_LEN, u32::MAX)),
            E2BIG,
        ),
        (
            "value_len 2^31",
            Box::new(|b| put_u32(b, OP_VALUE_LEN, 1 << 31)),
            E2BIG,
        ),
    ];
    for (name, f, want) in &field_cases {
        cases.push(case(
            format!("put {name}"),
            true,
            cmd::SET_PUT,
            patched(put.clone(), f),
            *want,
        ));
    }
    cases.push(case(
        "del value_len 1",
        true,
        cmd::SET_DEL,
        patched(del.clone(), |b| put_u32(b, OP_VALUE_LEN, 1)),
        EINVAL,
    ));
    cases.push(case(
        "del ttl_ms",
        true,
        cmd::SET_DEL,
        patched(del.clone(), |b| put_u32(b, OP_TTL, 7)),
        EINVAL,
    ));
    cases.push(case(
        "del with NFKV_F_TTL",
        true,
        cmd::SET_DEL,
        patched(del.clone(), |b| {
            put_u32(b, OP_FLAGS, uapi::NFKV_F_TTL);
            put_u32(b, OP_TTL, 7)
        }),
        EINVAL,
    ));
    cases.push(case(
        "del key_len 0",
        true,
        cmd::SET_DEL,
        patched(del.clone(), |b| put_u16(b, OP_KEY_LEN, 0)),
        EINVAL,
    ));
    cases.push(case(
        "del key_len 256",
        true,
        cmd::SET_DEL,
        patched(del.clone(), |b| put_u16(b, OP_KEY_LEN, 256)),
        EINVAL,
    ));
    cases.push(case(
        "del create flag",
        true,
        cmd::SET_DEL,
        patched(del.clone(), |b| put_u32(b, OP_FLAGS, 1)),
        EINVAL,
    ));
    cases.push(case(
        "flush flags",
        true,
        cmd::SET_FLUSH,
        patched(flush.clone(), |b| put_u32(b, 0, 1)),
        EINVAL,
    ));
    cases.push(case(
        "flush reserved",
        true,
        cmd::SET_FLUSH,
        patched(flush.clone(), |b| put_u32(b, 4, 1)),
        EINVAL,
    ));
    let long_value = op(OpKind::Put, b"key", &vec![1u8; max_value + 1]);
    cases.push(case(
        "put value max+1 sent",
        true,
        cmd::SET_PUT,
        long_value,
        E2BIG,
    ));

    // 5. Get request fields.
    let gres = offset_of!(uapi::nfkv_get, reserved);
    let gres2 = offset_of!(uapi::nfkv_get, reserved2);
    let gkey = offset_of!(uapi::nfkv_get, key_len);
    for (name, f) in [
        (
            "reserved",
            Box::new(move |b: &mut Vec<u8>| put_u16(b, gres, 1)) as Patch,
        ),
        (
            "reserved2",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, gres2, 1)),
        ),
        (
            "key_len 0",
            Box::new(move |b: &mut Vec<u8>| put_u16(b, gkey, 0)),
        ),
        (
            "key_len 256",
            Box::new(move |b: &mut Vec<u8>| put_u16(b, gkey, 256)),
        ),
        (
            "key_len 65535",
            Box::new(move |b: &mut Vec<u8>| put_u16(b, gkey, u16::MAX)),
        ),
    ] {
        cases.push(case(
            format!("get value {name}"),
            false,
            cmd::GET_VALUE,
            patched(resized(&get, 4096), f),
            EINVAL,
        ));
    }
    // A key that reaches past the buffer the caller declared.
    cases.push(case(
        "get value key past len",
        false,
        cmd::GET_VALUE,
        patched(resized(&get, 16), |b| put_u16(b, gkey, 200)),
        EINVAL,
    ));
    let lflags = offset_of!(uapi::nfkv_list, flags);
    let lafter = offset_of!(uapi::nfkv_list, after_len);
    let lprefix = offset_of!(uapi::nfkv_list, prefix_len);
    for (name, off, v, wide) in [
        ("flags 1", lflags, 1u32, true),
        ("flags high", lflags, 1 << 31, true),
        ("after_len 256", lafter, 256, false),
        ("after_len 65535", lafter, 65535, false),
        ("prefix_len 256", lprefix, 256, false),
        ("prefix_len 65535", lprefix, 65535, false),
    ] {
        let b = patched(resized(&list, 4096), |b| {
            if wide {
                put_u32(b, off, v)
            } else {
                put_u16(b, off, v as u16)
            }
        });
        cases.push(case(
            format!("list {name}"),
            false,
            cmd::GET_LIST,
            b,
            EINVAL,
        ));
    }
    let past = patched(resized(&list, codec::LIST_REPLY_SIZE), |b| {
        put_u16(b, lafter, 200);
        put_u16(b, lprefix, 200);
    });
    cases.push(case(
        "list keys past len",
        false,
        cmd::GET_LIST,
        past,
        EINVAL,
    ));

    // 6. Batch headers: flags and counts, including ones that overflow
    // 32-bit size arithmetic if multiplied out.
    let bflags = offset_of!(uapi::nfkv_batch, flags);
    let bcount = offset_of!(uapi::nfkv_batch, count);
    for (name, f, want) in [
        (
            "flags 2",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bflags, 2)) as Patch,
            EINVAL,
        ),
        (
            "flags all ones",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bflags, u32::MAX)),
            EINVAL,
        ),
        (
            "count max+1",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, codec::MAX_BATCH_OPS as u32 + 1)),
            E2BIG,
        ),
        (
            "count u32 max",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, u32::MAX)),
            E2BIG,
        ),
        (
            "count 2^31",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, 1 << 31)),
            E2BIG,
        ),
        (
            "count 2^28+1",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, (1 << 28) + 1)),
            E2BIG,
        ),
        (
            "count max, 2 records",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, codec::MAX_BATCH_OPS as u32)),
            EINVAL,
        ),
        (
            "count 3, 2 records",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, 3)),
            EINVAL,
        ),
        (
            "count 1, 2 records",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, 1)),
            EINVAL,
        ),
        (
            "count 0, 2 records",
            Box::new(move |b: &mut Vec<u8>| put_u32(b, bcount, 0)),
            EINVAL,
        ),
    ] {
        cases.push(case(
            format!("batch {name}"),
            true,
            cmd::SET_BATCH,
            patched(batch.clone(), f),
            want,
        ));
    }

    // 7. A batch whose Nth record is malformed, for every N.
    let five: Vec<(OpKind, &[u8], &[u8])> = vec![
        (OpKind::Put, b"n0", b"v"),
        (OpKind::Put, b"n1", b"vv"),
        (OpKind::Del, b"key", b""),
        (OpKind::Put, b"n3", b"vvv"),
        (OpKind::Put, b"n4", b""),
    ];
    let good = batch_of(&five);
    let mut records = Vec::new();
    let mut off = codec::BATCH_SIZE;
    for (k, key, value) in &five {
        let op = Op {
            kind: *k,
            cond: Condition::default(),
            key,
            value,
        };
        records.push((off, op.wire_len(), *k));
        off += op.record_len();
    }
    let past_end = max_value.min(4000) as u32;
    for (n, &(rec, wire_len, kind)) in records.iter().enumerate() {
        let too_big = if kind == OpKind::Del { EINVAL } else { E2BIG };
        let corruptions: Vec<FieldCase> = vec![
            (
                "key_len 0",
                Box::new(move |b| put_u16(b, rec + OP_KEY_LEN, 0)),
                EINVAL,
            ),
            (
                "key_len 256",
                Box::new(move |b| put_u16(b, rec + OP_KEY_LEN, 256)),
                EINVAL,
            ),
            (
                "op 9",
                Box::new(move |b| put_u16(b, rec + OP_OP, 9)),
                EINVAL,
            ),
            (
                "ttl_ms without NFKV_F_TTL",
                Box::new(move |b| put_u32(b, rec + OP_TTL, 1)),
                EINVAL,
            ),
            (
                "unknown flag",
                Box::new(move |b| put_u32(b, rec + OP_FLAGS, 0x20)),
                EINVAL,
            ),
            (
                "value_len max+1",
                Box::new(move |b| put_u32(b, rec + OP_VALUE_LEN, max_value as u32 + 1)),
                too_big,
            ),
            (
                "value_len past end",
                Box::new(move |b| put_u32(b, rec + OP_VALUE_LEN, past_end)),
                EINVAL,
            ),
            // Every record of this batch has padding after its value.
            (
                "padding not zero",
                Box::new(move |b| b[rec + wire_len] = 0xaa),
                EINVAL,
            ),
        ];
        for (name, f, want) in corruptions {
            cases.push(case(
                format!("batch record {n} {name}"),
                true,
                cmd::SET_BATCH,
                patched(good.clone(), f),
                want,
            ));
        }
    }
    cases
}

/// Maps pages for the NULL/unmapped/read-only targets.
struct Maps {
    unmapped: *mut libc::c_void,
    read_only: *mut libc::c_void,
}

const MAP_LEN: usize = 1 << 20;

impl Maps {
    fn new() -> Result<Self, String> {
        // SAFETY: anonymous mappings owned by this struct.
        unsafe {
            let none = libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            let ro = libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            ensure!(
                none != libc::MAP_FAILED && ro != libc::MAP_FAILED,
                "mmap failed"
            );
            Ok(Maps {
                unmapped: none,
                read_only: ro,
            })
        }
    }

    /// Fills the read-only mapping with `bytes` and seals it read-only.
    fn load_read_only(&self, bytes: &[u8]) -> Result<(), String> {
        // SAFETY: the mapping is MAP_LEN bytes; `bytes` is shorter.
        unsafe {
            ensure!(
                libc::mprotect(self.read_only, MAP_LEN, libc::PROT_READ | libc::PROT_WRITE) == 0,
                "mprotect rw"
            );
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.read_only.cast(),
                bytes.len().min(MAP_LEN),
            );
            ensure!(
                libc::mprotect(self.read_only, MAP_LEN, libc::PROT_READ) == 0,
                "mprotect ro"
            );
        }
        Ok(())
    }
}

fn send(kv: &Nfkv, maps: &Maps, c: &mut Case) -> Result<io::Result<()>, String> {
    let ptr: *mut libc::c_void = match c.target {
        Target::Bytes => c.bytes.as_mut_ptr().cast(),
        Target::Null => std::ptr::null_mut(),
        Target::Unmapped => maps.unmapped,
        Target::ReadOnly => {
            maps.load_read_only(&c.bytes)?;
            maps.read_only
        }
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(kv.fd());
    let optname = (kv.optbase() + c.cmd) as i32;
    // SAFETY: `ptr` is either a buffer we own of at least `len` bytes, or
    // deliberately invalid (NULL, PROT_NONE, read-only) for the kernel to
    // refuse; huge lengths are refused before the kernel reads.
    let rc = unsafe {
        if c.set {
            libc::setsockopt(fd, libc::IPPROTO_IP, optname, ptr, c.len as u32)
        } else {
            let mut len = c.len as u32;
            libc::getsockopt(fd, libc::IPPROTO_IP, optname, ptr, &mut len)
        }
    };
    Ok(if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    })
}

/// The baseline table every case starts from: three entries.
fn baseline(kv: &Nfkv) -> TestResult {
    let mut b = Batch::new();
    b.flush()
        .put(b"a", b"1", Condition::default())
        .put(b"key", b"val", Condition::default())
        .put(b"zz", b"", Condition::default());
    ck("baseline", kv.apply(&b))
}

fn matrix() -> TestResult {
    let kv = connect()?;
    let maps = Maps::new()?;
    let mut seen = std::collections::HashSet::new();
    let mut cases: Vec<Case> = cases(kv.limits().max_value_len as usize)
        .into_iter()
        .filter(|c| seen.insert(c.name.clone()))
        .collect();
    ensure!(cases.len() >= 200, "only {} cases", cases.len());
    baseline(&kv)?;
    let mut failures = Vec::new();
    let mut errors = 0;
    let mut by_socket_layer = 0;
    for c in cases.iter_mut() {
        let before = dump(&kv)?;
        let s0 = ck("stats", kv.stats())?;
        let got = send(&kv, &maps, c)?;
        let s1 = ck("stats", kv.stats())?;
        let got_errno = got.as_ref().err().and_then(|e| e.raw_os_error());
        if got_errno != c.want {
            failures.push(format!(
                "{}: got {:?}, want {:?}",
                c.name, got_errno, c.want
            ));
        }
        if c.reach != Reach::Uncounted {
            let calls = |s: &nfkv::Stats| {
                let n = if c.set {
                    s.set[c.cmd as usize]
                } else {
                    s.get[c.cmd as usize]
                };
                n.ok + n.failed
            };
            // The first stats call is counted by the second one.
            let own = u64::from(!c.set && c.cmd == cmd::GET_STATS);
            let reached = calls(&s1) - calls(&s0) - own == 1;
            if reached != (c.reach == Reach::Module) {
                failures.push(format!(
                    "{}: expected to be answered by {:?}, but nfkv {} run",
                    c.name,
                    c.reach,
                    if reached { "did" } else { "did not" }
                ));
            }
            by_socket_layer += usize::from(!reached);
        }
        if got.is_err() {
            errors += 1;
            if dump(&kv)? != before {
                failures.push(format!("{}: failed but changed the table", c.name));
            }
        } else if c.set {
            baseline(&kv)?;
        }
    }
    println!(
        "     badinput: {} cases, {} refused, {} accepted; {by_socket_layer} answered by the socket layer before nfkv ran (negative lengths), the others by nfkv",
        cases.len(),
        errors,
        cases.len() - errors
    );
    ensure!(
        failures.is_empty(),
        "{} of {} cases wrong:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// A thread flips a GET_INFO's `optlen` between -1 and a valid length while
/// the calls run: some calls reach nfkv with -1 (see the module doc), and
/// nfkv must refuse each with EINVAL, writing nothing. The GET_INFO
/// counter tells nfkv's refusals from the IP layer's: the test runs until
/// nfkv has refused at least one (or fails after 60 s).
fn negative_get_length_race() -> TestResult {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    const CANARY: u8 = 0xa5;
    let kv = connect()?;
    let fd = kv.fd().as_raw_fd();
    let optname = (kv.optbase() + cmd::GET_INFO) as i32;
    let info_len = size_of::<uapi::nfkv_info>() as i32;
    let optlen = AtomicI32::new(info_len);
    let stop = AtomicBool::new(false);
    let refused_by = |s: &nfkv::Stats| s.get[cmd::GET_INFO as usize].failed;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut calls, mut ok, mut einval, mut by_nfkv) = (0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let s0 = ck("stats", kv.stats())?;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                optlen.store(-1, Ordering::Relaxed);
                optlen.store(info_len, Ordering::Relaxed);
            }
        });
        while by_nfkv == 0 && failures.is_empty() && std::time::Instant::now() < deadline {
            for _ in 0..1000 {
                let mut buf = [CANARY; 256];
                // SAFETY: `buf` is larger than any length `optlen` holds.
                let rc = unsafe { getsockopt_racing_len(fd, optname, &mut buf, &optlen) };
                calls += 1;
                if rc == 0 {
                    ok += 1;
                    continue;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINVAL) if buf.iter().all(|&b| b == CANARY) => einval += 1,
                    Some(libc::EINVAL) => {
                        failures.push("an EINVAL call wrote its buffer".to_string())
                    }
                    e => failures.push(format!("errno {e:?}, want EINVAL or success")),
                }
                if !failures.is_empty() {
                    break;
                }
            }
            match kv.stats() {
                Ok(s1) => by_nfkv = refused_by(&s1) - refused_by(&s0),
                Err(e) => failures.push(format!("stats: {e}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!(
        "     negative length race: {calls} calls, {ok} answered, {einval} EINVAL: {by_nfkv} by nfkv, {} by the IP layer",
        einval - by_nfkv
    );
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    ensure!(
        by_nfkv > 0,
        "no call reached nfkv with a negative length in 60 s ({calls} calls)"
    );
    Ok(())
}

/// A buffer of up to 64 KiB that ends where an inaccessible page begins:
/// a write one byte past it faults.
struct GuardedBuffer {
    map: *mut u8,
}

const GUARDED_LEN: usize = 64 << 10;
const PAGE: usize = 4096;
/// What the bytes past a reply hold before the call and must hold after it.
const CANARY: u8 = 0xa5;

impl GuardedBuffer {
    fn new() -> Result<Self, String> {
        // SAFETY: a fresh anonymous mapping owned by the returned value; the
        // last page is made inaccessible.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                GUARDED_LEN + PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            ensure!(
                map != libc::MAP_FAILED,
                "mmap: {}",
                io::Error::last_os_error()
            );
            let map = map.cast::<u8>();
            ensure!(
                libc::mprotect(map.add(GUARDED_LEN).cast(), PAGE, libc::PROT_NONE) == 0,
                "mprotect: {}",
                io::Error::last_os_error()
            );
            Ok(GuardedBuffer { map })
        }
    }

    /// The last `len` bytes before the guard page.
    fn tail(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= GUARDED_LEN);
        // SAFETY: the first GUARDED_LEN bytes of the mapping are ours and
        // writable; `self` is borrowed mutably for the slice's life.
        unsafe { std::slice::from_raw_parts_mut(self.map.add(GUARDED_LEN - len), len) }
    }
}

impl Drop for GuardedBuffer {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped; no slice of it outlives `self`.
        unsafe { libc::munmap(self.map.cast(), GUARDED_LEN + PAGE) };
    }
}

/// A get case: command name and offset, request, buffer length, optlen
/// passed, and the reply length expected (None: EMSGSIZE).
type ReplyCase<'a> = (&'a str, u32, &'a [u8], usize, u32, Option<usize>);

/// `getsockopt` of command `c` on `buf` with `optlen`; the call's outcome
/// and the optlen it left.
fn get_raw(kv: &Nfkv, c: u32, buf: &mut [u8], optlen: u32) -> (io::Result<()>, u32) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(kv.fd());
    let mut len = optlen;
    // SAFETY: `buf` is writable for its length; an `optlen` beyond it is
    // passed only where the buffer ends at the guard page, which the
    // kernel's copy faults on rather than writing past.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            (kv.optbase() + c) as i32,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let r = if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    (r, len)
}

/// `setsockopt` of command `c` with `optlen` bytes at `ptr`.
fn set_raw(kv: &Nfkv, c: u32, ptr: *const u8, optlen: usize) -> io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(kv.fd());
    // SAFETY: the kernel reads at most `optlen` bytes at `ptr`; those it
    // cannot read (the guard page) it refuses with EFAULT.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            (kv.optbase() + c) as i32,
            ptr.cast(),
            optlen as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Valid requests whose last bytes lie in an unmapped page (the copy
/// faults part-way: on the stack copy, straight into the entry, into a
/// batch's heap buffer), and replies that run into one, end in EFAULT and
/// change nothing; the same requests mapped whole are stored.
fn buffers_running_into_an_unmapped_page_fault_cleanly() -> TestResult {
    let kv = connect()?;
    baseline(&kv)?;
    let mut g = GuardedBuffer::new()?;
    let value = |n: usize| (0..n).map(|i| (i % 253) as u8).collect::<Vec<u8>>();
    let big_batch = {
        let mut b = Batch::new();
        b.put(b"b1", &value(2000), Condition::default())
            .delete(b"a", None)
            .put(b"b2", &value(4000), Condition::default());
        b.encode().map_err(|e| format!("encode: {e}"))?
    };
    let put = |name, key: &[u8], len| (name, cmd::SET_PUT, op(OpKind::Put, key, &value(len)));
    let small_batch = batch_of(&[(OpKind::Put, b"n1", b"v"), (OpKind::Del, b"a", b"")]);
    let sets: Vec<(&str, u32, Vec<u8>)> = vec![
        put("put, 100 bytes", b"new", 80),
        put("put, 600 bytes", b"new", 580),
        put("put, over a page", b"new", 4090),
        put("overwrite, 4000 bytes", b"key", 4000),
        ("batch, small", cmd::SET_BATCH, small_batch),
        ("batch, 6 KiB", cmd::SET_BATCH, big_batch),
    ];
    let mut faulted = 0;
    for (name, c, req) in &sets {
        let len = req.len();
        for cut in [1, 8, len / 2, len - 1] {
            let before = dump(&kv)?;
            let mapped = len - cut;
            g.tail(mapped).copy_from_slice(&req[..mapped]);
            let ptr = g.tail(mapped).as_ptr();
            expect_errno(
                &format!("set {name}, the last {cut} of {len} bytes unmapped"),
                set_raw(&kv, *c, ptr, len),
                libc::EFAULT,
            )?;
            ensure!(
                dump(&kv)? == before,
                "set {name}, the last {cut} bytes unmapped: refused but changed the table"
            );
            faulted += 1;
        }
        // Whole, the same request is stored.
        g.tail(len).copy_from_slice(req);
        let ptr = g.tail(len).as_ptr();
        set_raw(&kv, *c, ptr, len).map_err(|e| format!("set {name}, mapped whole: {e}"))?;
        baseline(&kv)?;
    }

    // A DEL is never over 512 bytes: a longer one is refused by its
    // length, before a byte of it is read.
    let unmapped = g.tail(0).as_ptr();
    for len in [513, 4096] {
        expect_errno(
            &format!("set del, {len} bytes, all unmapped"),
            set_raw(&kv, cmd::SET_DEL, unmapped, len),
            libc::EINVAL,
        )?;
    }

    // Replies: a 4000-byte value, and a LIST page of the table, into
    // buffers that hold the request but end before the reply does.
    ck("put", kv.put(b"key", &value(4000), Condition::default()))?;
    let before = dump(&kv)?;
    let get = get_key_request();
    let list = list_all_request();
    let list_reply = codec::LIST_REPLY_SIZE
        + codec::list_entry_len(1, 1)
        + codec::list_entry_len(3, 4000)
        + codec::list_entry_len(2, 0);
    for (name, c, req, reply) in [
        ("get", cmd::GET_VALUE, &get, codec::VALUE_SIZE + 4000),
        ("list", cmd::GET_LIST, &list, list_reply),
    ] {
        for mapped in [codec::LIST_REQUEST_MAX, reply - 1] {
            let buf = g.tail(mapped);
            buf[..req.len()].copy_from_slice(req);
            // An optlen with room for the reply: the copy runs into the
            // guard page, after `mapped` bytes.
            let (r, _) = get_raw(&kv, c, buf, 16 << 10);
            expect_errno(
                &format!("{name} of a {reply}-byte reply with {mapped} bytes mapped"),
                r,
                libc::EFAULT,
            )?;
            faulted += 1;
        }
    }
    ensure!(
        dump(&kv)? == before,
        "replies that faulted changed the table"
    );
    println!("     badinput: {faulted} copies ran into the guard page part-way, each EFAULT");
    baseline(&kv)
}

fn get_replies_are_exact_and_end_where_they_say() -> TestResult {
    let kv = connect()?;
    baseline(&kv)?;
    let table = dump(&kv)?;
    let mut guarded = GuardedBuffer::new()?;
    let (get_req, list_req) = (get_key_request(), list_all_request());
    let first_entry = codec::LIST_REPLY_SIZE + codec::list_entry_len(1, 1);
    let whole_list = table
        .contents
        .iter()
        .map(|e| codec::list_entry_len(e.key.len(), e.value.len()))
        .sum::<usize>()
        + codec::LIST_REPLY_SIZE;
    let value_len = codec::VALUE_SIZE + 3;
    let int_max = i32::MAX as u32;
    // (command, request, buffer length, optlen passed, reply expected (or
    // EMSGSIZE: None)). The buffer always ends at the guard page. With
    // optlen INT_MAX it is as short as the call may use: the reply, or the
    // most a request can take (GET_VALUE and LIST read up to that much of
    // the buffer as their request, whatever its own lengths say).
    let cases: Vec<ReplyCase<'_>> = vec![
        (
            "info",
            cmd::GET_INFO,
            &[],
            codec::INFO_SIZE,
            codec::INFO_SIZE as u32,
            Some(codec::INFO_SIZE),
        ),
        (
            "info",
            cmd::GET_INFO,
            &[],
            4096,
            4096,
            Some(codec::INFO_SIZE),
        ),
        (
            "info",
            cmd::GET_INFO,
            &[],
            codec::INFO_SIZE,
            int_max,
            Some(codec::INFO_SIZE),
        ),
        (
            "stats",
            cmd::GET_STATS,
            &[],
            codec::STATS_SIZE,
            codec::STATS_SIZE as u32,
            Some(codec::STATS_SIZE),
        ),
        (
            "stats",
            cmd::GET_STATS,
            &[],
            4096,
            4096,
            Some(codec::STATS_SIZE),
        ),
        (
            "stats",
            cmd::GET_STATS,
            &[],
            codec::STATS_SIZE,
            int_max,
            Some(codec::STATS_SIZE),
        ),
        (
            "value",
            cmd::GET_VALUE,
            &get_req,
            value_len,
            value_len as u32,
            Some(value_len),
        ),
        (
            "value",
            cmd::GET_VALUE,
            &get_req,
            65536,
            65536,
            Some(value_len),
        ),
        (
            "value",
            cmd::GET_VALUE,
            &get_req,
            codec::GET_REQUEST_MAX,
            int_max,
            Some(value_len),
        ),
        (
            "value",
            cmd::GET_VALUE,
            &get_req,
            value_len - 1,
            value_len as u32 - 1,
            None,
        ),
        (
            "value",
            cmd::GET_VALUE,
            &get_req,
            codec::VALUE_SIZE,
            codec::VALUE_SIZE as u32,
            None,
        ),
        (
            "list",
            cmd::GET_LIST,
            &list_req,
            first_entry,
            first_entry as u32,
            Some(first_entry),
        ),
        (
            "list",
            cmd::GET_LIST,
            &list_req,
            whole_list - 1,
            whole_list as u32 - 1,
            Some(whole_list - codec::list_entry_len(2, 0)),
        ),
        (
            "list",
            cmd::GET_LIST,
            &list_req,
            65536,
            65536,
            Some(whole_list),
        ),
        (
            "list",
            cmd::GET_LIST,
            &list_req,
            codec::LIST_REQUEST_MAX,
            int_max,
            Some(whole_list),
        ),
        (
            "list",
            cmd::GET_LIST,
            &list_req,
            first_entry - 1,
            first_entry as u32 - 1,
            None,
        ),
        (
            "list",
            cmd::GET_LIST,
            &list_req,
            codec::LIST_REPLY_SIZE,
            codec::LIST_REPLY_SIZE as u32,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, c, req, buf_len, optlen, reply) in cases {
        let what = format!("get {name}, {buf_len}-byte buffer, optlen {optlen}");
        let buf = guarded.tail(buf_len);
        buf.fill(CANARY);
        buf[..req.len()].copy_from_slice(req);
        let (r, len_out) = get_raw(&kv, c, buf, optlen);
        let written = match (reply, &r) {
            (Some(n), Ok(())) if len_out as usize == n => n,
            (Some(n), _) => {
                failures.push(format!(
                    "{what}: {r:?}, optlen {len_out}; want a {n}-byte reply"
                ));
                continue;
            }
            (None, Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) && len_out == optlen => {
                if c == cmd::GET_VALUE {
                    codec::VALUE_SIZE
                } else {
                    codec::LIST_REPLY_SIZE
                }
            }
            (None, _) => {
                failures.push(format!(
                    "{what}: {r:?}, optlen {len_out}; want EMSGSIZE, optlen unchanged"
                ));
                continue;
            }
        };
        if let Some(i) = buf[written..].iter().position(|&b| b != CANARY) {
            failures.push(format!(
                "{what}: byte {} past the {written}-byte reply was written",
                written + i
            ));
        }
        if let Err(e) = check_reply(c, &buf[..written], reply.is_some(), &table, kv.limits()) {
            failures.push(format!("{what}: {e}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n  "));
    Ok(())
}

/// What reply `r` of command `c` must say about the baseline `table`:
/// whole (`complete`) or the EMSGSIZE header.
fn check_reply(
    c: u32,
    r: &[u8],
    complete: bool,
    table: &Dump,
    limits: &nfkv::Info,
) -> Result<(), String> {
    let bad = |e| format!("undecodable reply: {e:?}");
    match c {
        cmd::GET_INFO => {
            let info = codec::Info::decode(r).map_err(bad)?;
            let want = codec::Info {
                entries: table.entries,
                bytes_used: table.bytes_used,
                generation: table.generation,
                budget_used: info.budget_used,
                ..*limits
            };
            ensure!(info == want, "info {info:?}, want {want:?}");
        }
        cmd::GET_STATS => {
            let stats = codec::Stats::decode(r).map_err(bad)?;
            ensure!(
                stats.get[cmd::GET_INFO as usize].ok > 0,
                "stats do not count the info calls made: {stats:?}"
            );
        }
        cmd::GET_VALUE => {
            let h = codec::ValueHeader::decode(r).map_err(bad)?;
            let entry = table
                .contents
                .iter()
                .find(|e| e.key == b"key")
                .ok_or("no key")?;
            ensure!(
                h.version == entry.version && h.value_len == 3,
                "value header {h:?}, want version {} and length 3",
                entry.version
            );
            ensure!(
                !complete || &r[codec::VALUE_SIZE..] == b"val",
                "value {:?}",
                &r[codec::VALUE_SIZE..]
            );
        }
        _ => {
            let h = codec::ListReplyHeader::decode(r).map_err(bad)?;
            ensure!(
                h.generation == table.generation,
                "list generation {}, want {}",
                h.generation,
                table.generation
            );
            if !complete {
                let first = codec::LIST_REPLY_SIZE + codec::list_entry_len(1, 1);
                ensure!(
                    h.count == 0 && h.more && h.size as usize == first,
                    "EMSGSIZE header {h:?}, want count 0, more, size {first}"
                );
                return Ok(());
            }
            let mut listed = Vec::new();
            codec::decode_list_page::<codec::Reject>(r, |e| {
                listed.push((e.key.to_vec(), e.value.to_vec(), e.version));
                Ok(())
            })
            .map_err(bad)?;
            let want: Vec<_> = table
                .contents
                .iter()
                .take(listed.len())
                .map(|e| (e.key.clone(), e.value.clone(), e.version))
                .collect();
            ensure!(
                !listed.is_empty() && listed == want && h.count as usize == listed.len(),
                "listed {listed:?} (header {h:?}), want the first entries of {:?}",
                table.contents
            );
            ensure!(
                h.more == (listed.len() < table.contents.len()),
                "more = {} with {} of {} entries",
                h.more,
                listed.len(),
                table.contents.len()
            );
        }
    }
    Ok(())
}
