//! The product's contract: every command and flag, every limit at and past
//! its edge, every documented errno, paging, namespaces and permissions.

use crate::harness::*;
use crate::{ensure, tests};
use nfkv::{Batch, Condition, Nfkv};
use nfkv_abi::codec::{self, cmd, put_u16, put_u32, put_u64, Op, OpKind};
use nfkv_abi::uapi;
use std::collections::BTreeMap;
use std::mem::offset_of;

pub fn suite() -> Vec<Test> {
    tests![
        put_get_round_trip,
        overwrite_gives_new_version_and_accounts_bytes,
        delete_and_missing_keys,
        flush_empties_and_bumps_generation,
        create_only,
        replace_only,
        if_version_on_put_and_delete,
        contradictory_flags_are_einval,
        key_length_edges,
        value_length_edges,
        binary_keys_and_values,
        get_with_small_buffer_reports_needed_size,
        list_pages_over_10k_entries,
        list_prefix_and_cursor,
        list_with_tiny_buffer_reports_needed_size,
        list_page_with_small_buffer_and_long_keys,
        list_over_a_mib_comes_in_pages_of_at_most_a_mib,
        requests_either_side_of_the_stack_copy_are_stored_whole,
        batch_is_all_or_nothing,
        batch_sees_its_own_earlier_ops,
        batch_flush_is_atomic,
        max_entries_gives_enospc,
        max_value_len_parameter,
        bad_module_parameters_refuse_to_load,
        stats_count_outcomes,
        stats_sum_calls_from_every_cpu,
        unknown_command_in_range,
        network_namespaces_are_isolated,
        nobody_gets_eperm_on_every_command,
        user_namespace_root_gets_its_own_table,
        socket_keeps_its_namespace_after_unshare,
        optbase_relocates_the_range,
        rmmod_then_client_reports_not_loaded,
    ]
}

fn put(kv: &Nfkv, k: &[u8], v: &[u8]) -> TestResult {
    ck("put", kv.put(k, v, Condition::default()))
}

/// A LIST reply: its header, entries (key, value) and length.
type RawPage = (codec::ListReplyHeader, Vec<(Vec<u8>, Vec<u8>)>, usize);

/// One LIST reply page of 4 MiB of buffer, after `after`.
fn list_page_raw(kv: &Nfkv, after: &[u8]) -> Result<RawPage, String> {
    let req = codec::ListRequest { after, prefix: b"" };
    let mut buf = vec![0u8; 4 << 20];
    req.encode(&mut buf);
    let n = kv
        .raw_get(cmd::GET_LIST, &mut buf)
        .map_err(|e| format!("list after {after:?}: {e}"))?;
    let mut entries = Vec::new();
    let h = codec::decode_list_page(&buf[..n], |e| -> Result<(), codec::Reject> {
        entries.push((e.key.to_vec(), e.value.to_vec()));
        Ok(())
    })
    .map_err(|e| format!("list reply of {n} bytes: {e:?}"))?;
    Ok((h, entries, n))
}

/// A table holding 1.2 MiB (values of 60,000 bytes, under
/// `max_value_len=65536`): a LIST with a 4 MiB buffer gets a page of at
/// most 1 MiB (the module's page cap) holding as many whole entries as
/// fit, with `more`; the page after its last key holds the rest; the
/// client's paging returns every entry exactly.
fn list_over_a_mib_comes_in_pages_of_at_most_a_mib() -> TestResult {
    reload("max_value_len=65536")?;
    let r = list_over_a_mib();
    reload("")?;
    r
}

fn list_over_a_mib() -> TestResult {
    let kv = fresh()?;
    let value_len = 60_000;
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..21u8)
        .map(|i| (format!("big{i:02}").into_bytes(), vec![i; value_len]))
        .collect();
    for (k, v) in &want {
        put(&kv, k, v)?;
    }
    let entry = codec::list_entry_len(5, value_len);
    let (h1, first, n1) = list_page_raw(&kv, b"")?;
    ensure!(
        h1.more && n1 <= 1 << 20 && n1 + entry > 1 << 20 && h1.size as usize == n1,
        "first page: {n1} bytes (header {h1:?}), want at most 1 MiB, within one entry ({entry} bytes) of it, with more"
    );
    let last = first.last().map(|e| e.0.clone()).unwrap_or_default();
    let (h2, rest, _) = list_page_raw(&kv, &last)?;
    ensure!(!h2.more, "second page says more: {h2:?}");
    let got: Vec<_> = first.into_iter().chain(rest).collect();
    ensure!(
        got == want,
        "the two pages hold {} entries, not the 21 stored (or not exactly)",
        got.len()
    );
    let (_, all) = ck("snapshot", kv.snapshot(b"", 0))?;
    ensure!(
        all.len() == want.len()
            && all
                .iter()
                .zip(&want)
                .all(|(e, (k, v))| &e.key == k && &e.value == v),
        "the client's listing holds {} entries, not the 21 stored (or not exactly)",
        all.len()
    );
    ck("flush", kv.flush())
}

/// Set requests up to 512 bytes are copied onto the stack, longer ones
/// into the entry or a heap buffer: puts and batches of 511, 512 and 513
/// bytes are stored whole; a 513-byte put whose header claims one byte
/// more than it carries is refused and stores nothing.
fn requests_either_side_of_the_stack_copy_are_stored_whole() -> TestResult {
    let kv = fresh()?;
    for total in [511usize, 512, 513] {
        let key = format!("k{total}").into_bytes();
        let value = vec![(total % 251) as u8; total - codec::OP_SIZE - key.len()];
        let req = nfkv::raw::encode_op(&Op {
            kind: OpKind::Put,
            cond: Condition::default(),
            key: &key,
            value: &value,
        });
        ensure!(
            req.len() == total,
            "put request of {} bytes, not {total}",
            req.len()
        );
        kv.raw_set(cmd::SET_PUT, &req)
            .map_err(|e| format!("put of {total} bytes: {e}"))?;
        let got = ck("get", kv.get(&key))?;
        ensure!(
            got.value == value,
            "put of {total} bytes stored {} bytes of value",
            got.value.len()
        );

        // A batch of one put, padded to `total` bytes by its value.
        let bkey = format!("b{total}").into_bytes();
        let mut b = Batch::new();
        b.put(&bkey, b"", Condition::default());
        let empty = b.encode().map_err(|e| format!("encode: {e}"))?.len();
        let mut fill = total.saturating_sub(empty);
        let req = loop {
            let mut b = Batch::new();
            b.put(&bkey, &vec![7u8; fill], Condition::default());
            let req = b.encode().map_err(|e| format!("encode: {e}"))?;
            if req.len() >= total || fill == 0 {
                break req;
            }
            fill += 1;
        };
        kv.raw_set(cmd::SET_BATCH, &req)
            .map_err(|e| format!("batch of {} bytes: {e}", req.len()))?;
        ensure!(
            ck("get", kv.get(&bkey))?.value == vec![7u8; fill],
            "batch of {} bytes stored another value",
            req.len()
        );
    }
    let before = dump(&kv)?;
    let value = vec![1u8; 513 - codec::OP_SIZE - 4];
    let mut req = nfkv::raw::encode_op(&Op {
        kind: OpKind::Put,
        cond: Condition::default(),
        key: b"lost",
        value: &value,
    });
    let at = offset_of!(uapi::nfkv_op, value_len);
    put_u32(&mut req, at, value.len() as u32 + 1);
    expect_errno(
        "a 513-byte put claiming 514",
        kv.raw_set(cmd::SET_PUT, &req),
        libc::EINVAL,
    )?;
    ensure!(
        dump(&kv)? == before,
        "a refused 513-byte put changed the table"
    );
    ck("flush", kv.flush())
}

fn put_get_round_trip() -> TestResult {
    let kv = fresh()?;
    let g0 = ck("info", kv.info())?.generation;
    put(&kv, b"hello", b"world")?;
    let v = ck("get", kv.get(b"hello"))?;
    ensure!(v.value == b"world", "value {:?}", v.value);
    ensure!(
        v.version == g0 + 1,
        "version {} after generation {g0}",
        v.version
    );
    let info = ck("info", kv.info())?;
    ensure!(info.entries == 1 && info.bytes_used == 10, "info {info:?}");
    ensure!(info.generation == g0 + 1, "generation {}", info.generation);
    Ok(())
}

fn overwrite_gives_new_version_and_accounts_bytes() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"k", b"one")?;
    let v1 = ck("get", kv.get(b"k"))?.version;
    put(&kv, b"k", b"three")?;
    let v = ck("get", kv.get(b"k"))?;
    ensure!(
        v.value == b"three" && v.version > v1,
        "{v:?} after version {v1}"
    );
    let info = ck("info", kv.info())?;
    ensure!(info.entries == 1 && info.bytes_used == 6, "info {info:?}");
    Ok(())
}

fn delete_and_missing_keys() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"k", b"v")?;
    ck("delete", kv.delete(b"k", None))?;
    expect_err("get deleted", kv.get(b"k"), libc::ENOENT)?;
    expect_err("delete again", kv.delete(b"k", None), libc::ENOENT)?;
    let info = ck("info", kv.info())?;
    ensure!(info.entries == 0 && info.bytes_used == 0, "info {info:?}");
    Ok(())
}

fn flush_empties_and_bumps_generation() -> TestResult {
    let kv = fresh()?;
    for i in 0..100u32 {
        put(&kv, &i.to_be_bytes(), b"x")?;
    }
    let g = ck("info", kv.info())?.generation;
    ck("flush", kv.flush())?;
    let d = dump(&kv)?;
    ensure!(
        d.entries == 0 && d.bytes_used == 0 && d.contents.is_empty(),
        "{d:?}"
    );
    ensure!(
        d.generation == g + 1,
        "generation {} after {g}",
        d.generation
    );
    Ok(())
}

fn create_only() -> TestResult {
    let kv = fresh()?;
    let create = Condition {
        create_only: true,
        ..Default::default()
    };
    ck("create", kv.put(b"k", b"1", create))?;
    let before = dump(&kv)?;
    expect_err("create existing", kv.put(b"k", b"2", create), libc::EEXIST)?;
    ensure!(dump(&kv)? == before, "failed create changed the table");
    Ok(())
}

fn replace_only() -> TestResult {
    let kv = fresh()?;
    let replace = Condition {
        replace_only: true,
        ..Default::default()
    };
    expect_err("replace absent", kv.put(b"k", b"1", replace), libc::ENOENT)?;
    ensure!(dump(&kv)?.entries == 0, "failed replace created an entry");
    put(&kv, b"k", b"1")?;
    ck("replace present", kv.put(b"k", b"2", replace))?;
    ensure!(
        ck("get", kv.get(b"k"))?.value == b"2",
        "replace did not replace"
    );
    Ok(())
}

fn if_version_on_put_and_delete() -> TestResult {
    let kv = fresh()?;
    let at = |v| Condition {
        if_version: Some(v),
        ..Default::default()
    };
    expect_err(
        "if-version on absent",
        kv.put(b"k", b"x", at(1)),
        libc::ENOENT,
    )?;
    put(&kv, b"k", b"1")?;
    let v = ck("get", kv.get(b"k"))?.version;
    let before = dump(&kv)?;
    expect_err("stale put", kv.put(b"k", b"2", at(v + 1)), libc::ESTALE)?;
    expect_err("stale delete", kv.delete(b"k", Some(v + 7)), libc::ESTALE)?;
    ensure!(dump(&kv)? == before, "stale writes changed the table");
    ck("put at version", kv.put(b"k", b"2", at(v)))?;
    let v2 = ck("get", kv.get(b"k"))?.version;
    expect_err("old version again", kv.put(b"k", b"3", at(v)), libc::ESTALE)?;
    ck("delete at version", kv.delete(b"k", Some(v2)))?;
    expect_err(
        "delete absent at version",
        kv.delete(b"k", Some(v2)),
        libc::ENOENT,
    )?;
    Ok(())
}

/// A PUT/DEL request with a header field overwritten.
fn patched(kind: OpKind, key: &[u8], value: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let op = Op {
        kind,
        cond: Condition::default(),
        key,
        value,
    };
    let mut req = nfkv::raw::encode_op(&op);
    patch(&mut req);
    req
}

fn contradictory_flags_are_einval() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"k", b"v")?;
    let before = dump(&kv)?;
    let flags = offset_of!(uapi::nfkv_op, flags);
    let version = offset_of!(uapi::nfkv_op, version);
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        (
            "create+replace",
            cmd::SET_PUT,
            patched(OpKind::Put, b"k", b"v", |r| put_u32(r, flags, 3)),
        ),
        (
            "create+if-version",
            cmd::SET_PUT,
            patched(OpKind::Put, b"k", b"v", |r| {
                put_u32(r, flags, 5);
                put_u64(r, version, 1);
            }),
        ),
        (
            "if-version 0",
            cmd::SET_PUT,
            patched(OpKind::Put, b"k", b"v", |r| put_u32(r, flags, 4)),
        ),
        (
            "version without flag",
            cmd::SET_PUT,
            patched(OpKind::Put, b"k", b"v", |r| put_u64(r, version, 9)),
        ),
        (
            "unknown flag",
            cmd::SET_PUT,
            patched(OpKind::Put, b"k", b"v", |r| put_u32(r, flags, 8)),
        ),
        (
            "delete with create",
            cmd::SET_DEL,
            patched(OpKind::Del, b"k", b"", |r| put_u32(r, flags, 1)),
        ),
        (
            "delete with replace",
            cmd::SET_DEL,
            patched(OpKind::Del, b"k", b"", |r| put_u32(r, flags, 2)),
        ),
        (
            "del sent to PUT",
            cmd::SET_PUT,
            patched(OpKind::Del, b"k", b"", |_| {}),
        ),
        (
            "put sent to DEL",
            cmd::SET_DEL,
            patched(OpKind::Put, b"k", b"v", |_| {}),
        ),
    ];
    for (name, c, req) in cases {
        expect_errno(name, kv.raw_set(c, &req), libc::EINVAL)?;
    }
    ensure!(dump(&kv)? == before, "invalid requests changed the table");
    Ok(())
}

fn key_length_edges() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"a", b"1")?;
    put(&kv, &[b'k'; 255], b"2")?;
    ensure!(
        ck("get 255", kv.get(&[b'k'; 255]))?.value == b"2",
        "255-byte key"
    );
    let key_len = offset_of!(uapi::nfkv_op, key_len);
    let zero = patched(OpKind::Put, b"a", b"v", |r| {
        put_u16(r, key_len, 0);
        r.remove(codec::OP_SIZE);
    });
    expect_errno(
        "key length 0",
        kv.raw_set(cmd::SET_PUT, &zero),
        libc::EINVAL,
    )?;
    let long = patched(OpKind::Put, &[b'k'; 255], b"v", |r| {
        put_u16(r, key_len, 256);
        r.insert(codec::OP_SIZE, b'k');
    });
    expect_errno(
        "key length 256",
        kv.raw_set(cmd::SET_PUT, &long),
        libc::EINVAL,
    )?;
    expect_err(
        "client refuses 256",
        kv.put(&[b'k'; 256], b"v", Condition::default()),
        libc::EINVAL,
    )?;
    ensure!(dump(&kv)?.entries == 2, "entry count");
    Ok(())
}

fn value_length_edges() -> TestResult {
    let kv = fresh()?;
    let max = ck("info", kv.info())?.max_value_len as usize;
    put(&kv, b"empty", b"")?;
    ensure!(ck("get", kv.get(b"empty"))?.value.is_empty(), "empty value");
    put(&kv, b"max", &vec![7u8; max])?;
    ensure!(
        ck("get", kv.get(b"max"))?.value == vec![7u8; max],
        "max value"
    );
    let before = dump(&kv)?;
    expect_err(
        "max+1",
        kv.put(b"big", &vec![7u8; max + 1], Condition::default()),
        libc::E2BIG,
    )?;
    ensure!(dump(&kv)? == before, "oversized put changed the table");
    Ok(())
}

fn binary_keys_and_values() -> TestResult {
    let kv = fresh()?;
    let all: Vec<u8> = (0..=255).collect();
    put(&kv, &all[..255], &all)?;
    put(&kv, &[0], &[0, 0, 0])?;
    put(&kv, &[0xff], b"\n\r\t")?;
    ensure!(ck("get", kv.get(&all[..255]))?.value == all, "all bytes");
    ensure!(ck("get", kv.get(&[0]))?.value == [0, 0, 0], "nul bytes");
    let keys: Vec<Vec<u8>> = dump(&kv)?.contents.into_iter().map(|e| e.key).collect();
    ensure!(
        keys == vec![vec![0], all[..255].to_vec(), vec![0xff]],
        "bytewise order {keys:?}"
    );
    Ok(())
}

fn get_with_small_buffer_reports_needed_size() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"k", &[1u8; 100])?;
    let mut buf = vec![0u8; codec::VALUE_SIZE + 10];
    codec::encode_get(&mut buf, b"k");
    expect_errno(
        "small buffer",
        kv.raw_get(cmd::GET_VALUE, &mut buf),
        libc::EMSGSIZE,
    )?;
    let h = codec::ValueHeader::decode(&buf).map_err(|_| "header")?;
    ensure!(h.value_len == 100, "reported value_len {}", h.value_len);
    let mut exact = vec![0u8; codec::VALUE_SIZE + 100];
    codec::encode_get(&mut exact, b"k");
    let n = kv
        .raw_get(cmd::GET_VALUE, &mut exact)
        .map_err(|e| format!("exact: {e}"))?;
    ensure!(
        n == codec::VALUE_SIZE + 100 && exact[codec::VALUE_SIZE..] == [1u8; 100],
        "exact buffer"
    );
    let mut tiny = vec![0u8; codec::VALUE_SIZE - 1];
    codec::encode_get(&mut tiny, b"k");
    expect_errno(
        "buffer below header",
        kv.raw_get(cmd::GET_VALUE, &mut tiny),
        libc::EINVAL,
    )?;
    Ok(())
}

fn fill(
    kv: &Nfkv,
    n: u32,
    key: impl Fn(u32) -> Vec<u8>,
    value: impl Fn(u32) -> Vec<u8>,
) -> TestResult {
    let mut i = 0;
    while i < n {
        let mut b = Batch::new();
        for j in i..(i + 1000).min(n) {
            b.put(&key(j), &value(j), Condition::default());
        }
        ck("batch fill", kv.apply(&b))?;
        i += 1000;
    }
    Ok(())
}

fn list_pages_over_10k_entries() -> TestResult {
    let mut kv = fresh()?;
    let n = 12_000u32;
    let key =
        |i: u32| format!("key{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000_007).into_bytes();
    let value = |i: u32| vec![i as u8; (i % 50) as usize];
    fill(&kv, n, key, value)?;
    let model: BTreeMap<Vec<u8>, Vec<u8>> = (0..n).map(|i| (key(i), value(i))).collect();
    kv.set_page_bytes(4096);
    let mut list = kv.list(b"");
    let mut got = Vec::new();
    for e in &mut list {
        let e = ck("list", e)?;
        got.push((e.key, e.value));
    }
    let pages = list.generations().len();
    ensure!(pages > 50, "only {pages} pages with a 4 KiB buffer");
    ensure!(
        list.generations().windows(2).all(|w| w[0] == w[1]),
        "generation moved"
    );
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
    ensure!(
        got.len() == want.len(),
        "listed {} of {}",
        got.len(),
        want.len()
    );
    ensure!(got == want, "listing differs from the model");
    Ok(())
}

fn list_prefix_and_cursor() -> TestResult {
    let kv = fresh()?;
    for k in ["a", "ab", "abc", "abd", "b", "ba", "c"] {
        put(&kv, k.as_bytes(), b"")?;
    }
    let keys = |prefix: &[u8], after: &[u8]| -> Result<Vec<String>, String> {
        let page = ck("list page", kv.list_page(prefix, after))?;
        Ok(page
            .entries
            .into_iter()
            .map(|e| String::from_utf8(e.key).unwrap())
            .collect())
    };
    ensure!(
        keys(b"ab", b"")? == ["ab", "abc", "abd"],
        "prefix ab: {:?}",
        keys(b"ab", b"")?
    );
    ensure!(keys(b"ab", b"abc")? == ["abd"], "prefix ab after abc");
    ensure!(
        keys(b"ab", b"a")? == ["ab", "abc", "abd"],
        "after below prefix"
    );
    ensure!(keys(b"ab", b"b")?.is_empty(), "after beyond prefix");
    ensure!(
        keys(b"", b"b")? == ["ba", "c"],
        "after b: {:?}",
        keys(b"", b"b")?
    );
    ensure!(keys(b"", b"bb")? == ["c"], "after absent key");
    ensure!(keys(b"z", b"")?.is_empty(), "no match");
    ensure!(keys(b"", b"")?.len() == 7, "all");
    Ok(())
}

fn list_with_tiny_buffer_reports_needed_size() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"key", &[9u8; 300])?;
    let mut buf = vec![0u8; codec::LIST_REPLY_SIZE + 16];
    let req = codec::ListRequest {
        after: b"",
        prefix: b"",
    };
    req.encode(&mut buf);
    expect_errno(
        "tiny list buffer",
        kv.raw_get(cmd::GET_LIST, &mut buf),
        libc::EMSGSIZE,
    )?;
    let h = codec::ListReplyHeader::decode(&buf).map_err(|_| "header")?;
    let needed = codec::LIST_REPLY_SIZE + codec::list_entry_len(3, 300);
    ensure!(
        h.size as usize == needed && h.count == 0,
        "reported {h:?}, expected size {needed}"
    );
    let mut exact = vec![0u8; needed];
    req.encode(&mut exact);
    let n = kv
        .raw_get(cmd::GET_LIST, &mut exact)
        .map_err(|e| format!("exact: {e}"))?;
    ensure!(n == needed, "reply {n} bytes");
    let mut below = vec![0u8; codec::LIST_REPLY_SIZE - 1];
    expect_errno(
        "below header",
        kv.raw_get(cmd::GET_LIST, &mut below),
        libc::EINVAL,
    )?;
    Ok(())
}

fn list_page_with_small_buffer_and_long_keys() -> TestResult {
    let mut kv = fresh()?;
    let long = [b'p'; codec::MAX_KEY_LEN];
    put(&kv, &long, &[1; 100])?;
    put(&kv, b"p", b"short")?;
    // A page buffer smaller than the request (header, 255-byte cursor and
    // prefix) must grow, not panic.
    for page_bytes in [0, 1, codec::LIST_REPLY_SIZE, 100] {
        kv.set_page_bytes(page_bytes);
        let page = ck("list", kv.list_page(&long[..200], b""))?;
        ensure!(
            page.entries.len() == 1 && page.entries[0].key == long,
            "page_bytes {page_bytes}: {:?}",
            page.entries.len()
        );
        let after = ck("list after", kv.list_page(&long, &long))?;
        ensure!(after.entries.is_empty(), "after the last key: {after:?}");
        let all: Result<Vec<_>, _> = kv.list(b"p").collect();
        ensure!(
            ck("list all", all)?.len() == 2,
            "listing with page_bytes {page_bytes}"
        );
    }
    Ok(())
}

fn batch_is_all_or_nothing() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"exists", b"old")?;
    let before = dump(&kv)?;
    let create = Condition {
        create_only: true,
        ..Default::default()
    };
    for failing in 0..5 {
        let mut b = Batch::new();
        for i in 0..5 {
            if i == failing {
                b.put(b"exists", b"new", create);
            } else {
                b.put(format!("k{i}").as_bytes(), b"v", Condition::default());
            }
        }
        expect_err(&format!("op {failing} fails"), kv.apply(&b), libc::EEXIST)?;
        ensure!(
            dump(&kv)? == before,
            "failed batch (op {failing}) changed the table"
        );
    }
    let mut ok = Batch::new();
    ok.put(b"a", b"1", Condition::default())
        .delete(b"exists", None)
        .put(b"b", b"2", create);
    ck("good batch", kv.apply(&ok))?;
    let after = dump(&kv)?;
    ensure!(
        after.generation == before.generation + 3,
        "generation {}",
        after.generation
    );
    let keys: Vec<&[u8]> = after.contents.iter().map(|e| e.key.as_slice()).collect();
    ensure!(keys == [b"a" as &[u8], b"b"], "{keys:?}");
    Ok(())
}

fn batch_sees_its_own_earlier_ops() -> TestResult {
    let kv = fresh()?;
    let g = ck("info", kv.info())?.generation;
    let create = Condition {
        create_only: true,
        ..Default::default()
    };
    let at = |v| Condition {
        if_version: Some(v),
        ..Default::default()
    };
    let mut b = Batch::new();
    b.put(b"k", b"1", create)
        .put(b"k", b"2", at(g + 1))
        .delete(b"k", Some(g + 2))
        .put(b"k", b"3", create)
        .put(b"other", b"x", Condition::default())
        .delete(b"other", None);
    ck("sequence", kv.apply(&b))?;
    let v = ck("get", kv.get(b"k"))?;
    ensure!(v.value == b"3" && v.version == g + 4, "{v:?}");
    expect_err("other gone", kv.get(b"other"), libc::ENOENT)?;
    let before = dump(&kv)?;
    let mut bad = Batch::new();
    bad.delete(b"k", None).delete(b"k", None);
    expect_err("double delete", kv.apply(&bad), libc::ENOENT)?;
    ensure!(dump(&kv)? == before, "failed batch changed the table");
    Ok(())
}

fn batch_flush_is_atomic() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"old", b"1")?;
    let before = dump(&kv)?;
    let mut bad = Batch::new();
    bad.flush()
        .put(b"new", b"2", Condition::default())
        .delete(b"old", None);
    expect_err(
        "flush then delete flushed key",
        kv.apply(&bad),
        libc::ENOENT,
    )?;
    ensure!(dump(&kv)? == before, "failed flush batch changed the table");
    let mut good = Batch::new();
    good.flush().put(b"new", b"2", Condition::default());
    ck("flush batch", kv.apply(&good))?;
    let d = dump(&kv)?;
    ensure!(
        d.contents.len() == 1 && d.contents[0].key == b"new",
        "{d:?}"
    );
    ensure!(
        d.generation == before.generation + 2,
        "generation {}",
        d.generation
    );
    Ok(())
}

fn max_entries_gives_enospc() -> TestResult {
    reload("max_entries=100")?;
    let r = (|| {
        let kv = fresh()?;
        fill(&kv, 100, |i| i.to_be_bytes().to_vec(), |_| b"v".to_vec())?;
        let before = dump(&kv)?;
        expect_err(
            "101st",
            kv.put(b"one more", b"", Condition::default()),
            libc::ENOSPC,
        )?;
        let mut b = Batch::new();
        b.delete(&0u32.to_be_bytes(), None)
            .put(b"x", b"", Condition::default())
            .put(b"y", b"", Condition::default());
        expect_err("batch over the limit", kv.apply(&b), libc::ENOSPC)?;
        ensure!(dump(&kv)? == before, "ENOSPC changed the table");
        put(&kv, &5u32.to_be_bytes(), b"overwrite is fine")?;
        let mut swap = Batch::new();
        swap.delete(&0u32.to_be_bytes(), None)
            .put(b"x", b"", Condition::default());
        ck("delete then insert", kv.apply(&swap))?;
        ensure!(ck("info", kv.info())?.entries == 100, "entries");
        Ok(())
    })();
    reload("")?;
    r
}

fn max_value_len_parameter() -> TestResult {
    reload("max_value_len=16")?;
    let r = (|| {
        let kv = fresh()?;
        ensure!(
            kv.limits().max_value_len == 16,
            "info says {}",
            kv.limits().max_value_len
        );
        put(&kv, b"k", &[1; 16])?;
        expect_err(
            "17 bytes",
            kv.put(b"k", &[1; 17], Condition::default()),
            libc::E2BIG,
        )?;
        Ok(())
    })();
    reload("")?;
    r
}

fn bad_module_parameters_refuse_to_load() -> TestResult {
    let r = refuse_each_bad_parameter();
    reload("")?;
    r
}

fn refuse_each_bad_parameter() -> TestResult {
    // Each case's own message, logged after a marker written just before
    // its insmod: an earlier case's line or "unloading" cannot match.
    for (params, says) in [
        (
            "max_value_len=65537",
            "nfkv: max_value_len=65537 is over the cap",
        ),
        ("max_entries=0", "nfkv: max_entries=0 is out of range"),
        ("optbase=0", "nfkv: optbase=0: optnames 0..15 overlap 0..63"),
        (
            "optbase=2147483647",
            "nfkv: optbase=2147483647 is out of range",
        ),
    ] {
        let marker = format!("nfkv-vmtests: insmod nfkv {params}");
        kmsg_mark(&marker)?;
        ensure!(reload(params).is_err(), "insmod with {params} succeeded");
        let log = dmesg_after(&marker)?;
        ensure!(
            log.contains(says),
            "insmod {params}: no {says:?} in dmesg after the marker:{log}"
        );
        ensure!(
            !log.contains(" loaded: "),
            "insmod {params}: the module said it loaded:{log}"
        );
    }
    Ok(())
}

fn stats_count_outcomes() -> TestResult {
    let kv = fresh()?;
    let s0 = ck("stats", kv.stats())?;
    put(&kv, b"k", b"v")?;
    let _ = kv.get(b"missing");
    let _ = kv.delete(b"missing", None);
    let s1 = ck("stats", kv.stats())?;
    let (p, d) = (cmd::SET_PUT as usize, cmd::SET_DEL as usize);
    let g = cmd::GET_VALUE as usize;
    ensure!(
        s1.set[p].ok == s0.set[p].ok + 1,
        "put ok {:?} -> {:?}",
        s0.set[p],
        s1.set[p]
    );
    ensure!(s1.set[d].failed == s0.set[d].failed + 1, "del failed");
    ensure!(s1.get[g].failed == s0.get[g].failed + 1, "get failed");
    ensure!(
        s1.get[cmd::GET_STATS as usize].ok == s0.get[cmd::GET_STATS as usize].ok + 1,
        "stats ok"
    );
    Ok(())
}

/// The counters have a copy per CPU: calls made on each CPU (threads
/// pinned to each one in turn) all show in the snapshot.
fn stats_sum_calls_from_every_cpu() -> TestResult {
    const CALLS: u64 = 200;
    let kv = fresh()?;
    let g = cmd::GET_VALUE as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = ck("stats", kv.stats())?.get[g].failed;
    for cpu in 0..cpus {
        std::thread::scope(|s| {
            s.spawn(|| -> TestResult {
                // SAFETY: a zeroed cpu_set_t with one CPU set, for this thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    ensure!(
                        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0,
                        "sched_setaffinity({cpu}): {}",
                        std::io::Error::last_os_error()
                    );
                }
                for _ in 0..CALLS {
                    expect_err("get missing", kv.get(b"missing"), libc::ENOENT)?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| "thread panicked".to_string())?
        })?;
    }
    let after = ck("stats", kv.stats())?.get[g].failed;
    ensure!(
        after - before == CALLS * cpus as u64,
        "{} failed GETs counted of {} made on {cpus} CPUs",
        after - before,
        CALLS * cpus as u64
    );
    Ok(())
}

fn unknown_command_in_range() -> TestResult {
    let kv = fresh()?;
    let before = dump(&kv)?;
    for c in (0..cmd::RANGE).filter(|&c| !cmd::is_set(c)) {
        expect_errno(
            &format!("set +{c}"),
            kv.raw_set(c, &[0u8; 64]),
            libc::EOPNOTSUPP,
        )?;
    }
    for c in (0..cmd::RANGE).filter(|&c| !cmd::is_get(c)) {
        let mut buf = [0u8; 64];
        expect_errno(
            &format!("get +{c}"),
            kv.raw_get(c, &mut buf),
            libc::EOPNOTSUPP,
        )?;
    }
    ensure!(dump(&kv)? == before, "unknown commands changed the table");
    Ok(())
}

fn network_namespaces_are_isolated() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"host", b"1")?;
    in_child(|| {
        unshare(libc::CLONE_NEWNET)?;
        let kv = connect()?;
        let d = dump(&kv)?;
        ensure!(
            d.entries == 0 && d.contents.is_empty(),
            "new namespace sees {d:?}"
        );
        put(&kv, b"guest", b"2")?;
        ensure!(dump(&kv)?.entries == 1, "guest put");
        Ok(())
    })?;
    let d = dump(&kv)?;
    ensure!(
        d.contents.len() == 1 && d.contents[0].key == b"host",
        "host table {d:?}"
    );
    Ok(())
}

/// Every command, with a well-formed request, through `fd`: all must fail with `want`.
fn every_command_fails(fd: &std::os::fd::OwnedFd, optbase: u32, want: i32) -> TestResult {
    let put = nfkv::raw::encode_op(&Op {
        kind: OpKind::Put,
        cond: Condition::default(),
        key: b"k",
        value: b"v",
    });
    let del = nfkv::raw::encode_op(&Op {
        kind: OpKind::Del,
        cond: Condition::default(),
        key: b"k",
        value: b"",
    });
    let batch = {
        let mut b = Batch::new();
        b.put(b"k", b"v", Condition::default());
        b.encode().map_err(|e| e.to_string())?
    };
    let flush = [0u8; codec::FLUSH_SIZE];
    for (name, c, req) in [
        ("put", cmd::SET_PUT, &put[..]),
        ("del", cmd::SET_DEL, &del[..]),
        ("flush", cmd::SET_FLUSH, &flush[..]),
        ("batch", cmd::SET_BATCH, &batch[..]),
    ] {
        expect_errno(
            &format!("set {name} on fd {}", fd_no(fd)),
            nfkv::raw::raw_set(fd, optbase + c, req),
            want,
        )?;
    }
    for (name, c) in [
        ("info", cmd::GET_INFO),
        ("value", cmd::GET_VALUE),
        ("list", cmd::GET_LIST),
        ("stats", cmd::GET_STATS),
        ("watch", cmd::GET_WATCH),
    ] {
        let mut buf = vec![0u8; 4096];
        codec::encode_get(&mut buf, b"k");
        if c == cmd::GET_WATCH {
            let req = crate::watch::request(0, 1000, b"", true);
            buf[..req.len()].copy_from_slice(&req);
        }
        if c == cmd::GET_LIST {
            codec::ListRequest {
                after: b"",
                prefix: b"",
            }
            .encode(&mut buf);
        }
        expect_errno(
            &format!("get {name} on fd {}", fd_no(fd)),
            nfkv::raw::raw_get(fd, optbase + c, &mut buf),
            want,
        )?;
    }
    Ok(())
}

fn nobody_gets_eperm_on_every_command() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"k", b"v")?;
    let before = dump(&kv)?;
    let optbase = kv.optbase();
    in_child(|| {
        // The raw socket is opened while still root (it needs CAP_NET_RAW);
        // the UDP one after dropping privileges: both must meet the gate.
        let raw =
            nfkv::raw::open_socket(libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| e.to_string())?;
        become_nobody()?;
        let udp = nfkv::raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP)
            .map_err(|e| e.to_string())?;
        every_command_fails(&raw, optbase, libc::EPERM)?;
        every_command_fails(&udp, optbase, libc::EPERM)?;
        match Nfkv::open() {
            Err(nfkv::Error::PermissionDenied) => Ok(()),
            other => Err(format!("client open as nobody: {other:?}")),
        }
    })?;
    ensure!(dump(&kv)? == before, "refused calls changed the table");
    Ok(())
}

pub(crate) fn enter_user_and_net_namespace() -> TestResult {
    become_nobody()?;
    enter_user_and_net_namespace_as_nobody()
}

/// [`enter_user_and_net_namespace`] for a process that is nobody already.
pub(crate) fn enter_user_and_net_namespace_as_nobody() -> TestResult {
    unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET)?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", "0 65534 1")?;
    write_proc("/proc/self/gid_map", "0 65534 1")
}

fn user_namespace_root_gets_its_own_table() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"host-secret", b"1")?;
    let before = dump(&kv)?;
    let optbase = kv.optbase();
    in_child(|| {
        let host_udp = nfkv::raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP)
            .map_err(|e| e.to_string())?;
        enter_user_and_net_namespace()?;
        // Root of the new user namespace: its own empty table...
        let kv = connect()?;
        let d = dump(&kv)?;
        ensure!(d.entries == 0, "userns root sees {d:?}");
        put(&kv, b"mine", b"2")?;
        ck("flush own", kv.flush())?;
        // ...and no way into the initial namespace's table.
        every_command_fails(&host_udp, optbase, libc::EPERM)
    })?;
    ensure!(
        dump(&kv)? == before,
        "the user namespace changed the host table"
    );
    Ok(())
}

fn socket_keeps_its_namespace_after_unshare() -> TestResult {
    let kv = fresh()?;
    let optbase = kv.optbase();
    in_child(|| {
        let old = nfkv::raw::open_socket(libc::SOCK_DGRAM, libc::IPPROTO_UDP)
            .map_err(|e| e.to_string())?;
        unshare(libc::CLONE_NEWNET)?;
        let old = Nfkv::from_fd(old, optbase).map_err(|e| e.to_string())?;
        put(&old, b"via-old-socket", b"1")?;
        let new = connect()?;
        ensure!(
            dump(&new)?.entries == 0,
            "new namespace saw the old socket's write"
        );
        Ok(())
    })?;
    ensure!(
        ck("get", kv.get(b"via-old-socket"))?.value == b"1",
        "write did not land in the socket's namespace"
    );
    Ok(())
}

fn optbase_relocates_the_range() -> TestResult {
    reload("optbase=3000")?;
    let r = (|| {
        let kv = connect()?;
        ensure!(
            kv.optbase() == 3000 && kv.limits().optbase == 3000,
            "optbase {}",
            kv.optbase()
        );
        put(&kv, b"k", b"v")?;
        match Nfkv::open_at(uapi::NFKV_BASE_CTL) {
            Err(nfkv::Error::NotLoaded { .. }) => Ok(()),
            other => Err(format!("old range still answers: {other:?}")),
        }
    })();
    reload("")?;
    r
}

fn rmmod_then_client_reports_not_loaded() -> TestResult {
    let kv = fresh()?;
    put(&kv, b"k", b"v")?;
    rmmod()?;
    let r = match (kv.info(), Nfkv::open()) {
        (Err(nfkv::Error::NotLoaded { .. }), Err(e @ nfkv::Error::NotLoaded { .. })) => {
            ensure!(e.to_string().contains("insmod nfkv.ko"), "message: {e}");
            Ok(())
        }
        other => Err(format!("after rmmod: {other:?}")),
    };
    reload("")?;
    r
}
