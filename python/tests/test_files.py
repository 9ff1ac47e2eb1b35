"""Batch and save files: Table.save writes what `nfkv save` writes,
Table.restore applies a file as `nfkv restore` does, read_batch_file reads
one without a module (those tests run anywhere the package is installed)."""

from __future__ import annotations

import errno
import random
import time
from pathlib import Path
from typing import Dict, List

import pytest

import nfkv
from nfkv import BatchRecord

ENCODINGS = ["text", "hex", "base64"]

#: Bytes that spell options, commands, comments, escapes and blanks.
ODD = [
    b"create", b"--create", b"--if-version=3", b"--", b"-", b"-x", b"flush", b"put", b"del",
    b"#c", b"a\\b", b"\\x41", b"sp ace", b"\x00", bytes(range(256))[:250],
]


def odd_entries() -> Dict[bytes, bytes]:
    values = ODD + [b""]
    return {k + b".%d" % j: values[(i + j) % len(values)] for i, k in enumerate(ODD) for j in range(3)}


def records(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def odd_file(rng: random.Random) -> bytes:
    """A file that looks like the format: maybe a header, then lines of a
    verb, options and tokens, whole, cut short or malformed."""
    headers = [b"", b"# nfkv save v2 encoding=hex prefix=6", b"# nfkv save v2 encoding=base64 prefix=",
               b"# nfkv save: 3 entries, encoding text", b"# nfkv save v9", b"# nfkv save v2 prefix=a"]
    verbs = [b"put", b"del", b"flush", b"frob", b"#", b""]
    options = [b"--", b"--create", b"--replace", b"--if-version=", b"--if-version=7", b"--if-version=" + b"9" * 25, b"-x"]
    tokens = [b"k", b"\\x", b"\\x4", b"\\x41", b"\\", b"\\\\", b"AA==", b"Zh==", b"6b", b"\xff", b"-k", b"=", b""]
    lines = [rng.choice(headers)]
    for _ in range(rng.randrange(5)):
        words = [rng.choice(verbs)] + rng.sample(options, rng.randrange(3)) + rng.sample(tokens, rng.randrange(4))
        lines.append(b" ".join(words))
    return b"\n".join(lines) + rng.choice([b"", b"\n"])


# --- save -------------------------------------------------------------------


def test_save_writes_what_the_cli_writes(table: nfkv.Table) -> None:
    table.put(b"a", b"1")
    table.put(b"b c", b"")
    table.put(b"-d", b"\xff")
    generation = table.info().generation

    def without_time(saved: bytes) -> bytes:
        """The save with the header's time_ms (the time of the save) cut."""
        header, rest = saved.split(b"\n", 1)
        head, time_ms = header.rsplit(b" time_ms=", 1)
        assert time_ms.isdigit() and abs(int(time_ms) / 1000 - time.time()) < 60
        return head + b"\n" + rest

    assert without_time(table.save()) == records(
        b"# nfkv save v3 encoding=text prefix= entries=3 generation=%d" % generation,
        b"put \\x2dd \\xff",
        b"put a 1",
        b"put b\\x20c",
    )
    assert without_time(table.save("b", encoding="hex")) == records(
        b"# nfkv save v3 encoding=hex prefix=62 entries=1 generation=%d" % generation,
        b"put 622063",
    )
    with pytest.raises(ValueError, match="encoding must be"):
        table.save(encoding="rot13")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_save_and_restore_reproduce_every_byte(table: nfkv.Table, encoding: str) -> None:
    entries = odd_entries()
    with table.batch() as b:
        for key, value in entries.items():
            b.put(key, value)
    saved = table.save(encoding=encoding)
    assert saved.startswith(b"# nfkv save v3 encoding=%s prefix= entries=%d " % (encoding.encode(), len(entries)))
    table.put(b"extra", b"x")
    table.delete(next(iter(entries)))
    table.restore(saved, flush=True)
    assert dict(table.items()) == entries
    assert table.save(encoding=encoding).split(b"\n", 1)[1] == saved.split(b"\n", 1)[1]
    file = nfkv.read_batch_file(saved)
    assert (file.encoding, file.prefix, file.flush) == (encoding, b"", False)
    assert {r.key: r.value for r in file.records} == entries


# --- restore ----------------------------------------------------------------


def test_restore_without_flush_adds_and_overwrites(table: nfkv.Table) -> None:
    table.put(b"keep", b"1")
    table.put(b"k", b"old")
    table.restore(records(b"put k new", b"put added 2", b"del keep", b"put keep 3"))
    assert dict(table.items()) == {b"added": b"2", b"k": b"new", b"keep": b"3"}


def test_restore_flush_replaces_the_table(table: nfkv.Table) -> None:
    table.put(b"old", b"1")
    table.restore(records(b"put only one"), flush=True)
    assert dict(table.items()) == {b"only": b"one"}
    table.restore(records(b"flush", b"put other two"))
    assert dict(table.items()) == {b"other": b"two"}


def test_prefix_save_restored_with_flush_keeps_other_keys(table: nfkv.Table) -> None:
    table.restore(records(b"put a/1 1", b"put a/2 2", b"put b/1 3"))
    saved = table.save(b"a/")
    table.put(b"a/3", b"new")
    table.delete(b"a/1")
    table.put(b"a/2", b"changed")
    table.restore(saved, flush=True)
    assert dict(table.items()) == {b"a/1": b"1", b"a/2": b"2", b"b/1": b"3"}


def test_restore_takes_bytes_or_a_path(table: nfkv.Table, tmp_path: Path) -> None:
    table.put("k", "v")
    path = tmp_path / "backup.nfkv"
    path.write_bytes(table.save())
    table.flush()
    table.restore(path)
    table.restore(bytearray(b"put k2 v2\n"))
    table.restore(memoryview(b"put k3 v3\n"))
    assert dict(table.items()) == {b"k": b"v", b"k2": b"v2", b"k3": b"v3"}
    with pytest.raises(TypeError, match="bytes .its contents. or a path"):
        table.restore(str(path))  # type: ignore[arg-type]


def test_headerless_files_take_the_encoding_asked_for(table: nfkv.Table) -> None:
    table.restore(b"put 6b 00ff\n", encoding="hex")
    table.restore(b"put AAE= AP8=\n", encoding="base64")
    assert dict(table.items()) == {b"\x00\x01": b"\x00\xff", b"k": b"\x00\xff"}


def test_one_batch_restore_is_atomic(table: nfkv.Table) -> None:
    table.put(b"exists", b"x")
    before = table.stats().set["batch"]
    with pytest.raises(nfkv.ConditionError) as e:
        # The flush is part of the one batch: undone with the rest.
        table.restore(records(b"put new 1", b"put --create new 2"), flush=True)
    assert e.value.errno == errno.EEXIST
    assert "nothing was restored (the restore is one atomic batch)" in str(e.value)
    assert dict(table.items()) == {b"exists": b"x"}
    after = table.stats().set["batch"]
    assert (after.ok, after.failed) == (before.ok, before.failed + 1)
    with pytest.raises(KeyError):
        table.restore(records(b"put new 1", b"del absent"))
    assert dict(table.items()) == {b"exists": b"x"}


def test_files_that_cannot_be_restored_are_value_errors(table: nfkv.Table) -> None:
    table.put(b"keep", b"1")
    generation = table.info().generation
    with pytest.raises(ValueError, match="line 2: unknown command"):
        table.restore(records(b"put a 1", b"frob b"))
    hex_save = records(b"# nfkv save v2 encoding=hex prefix= entries=1 generation=1", b"put 61 31")
    with pytest.raises(ValueError, match="line 1: the file is in encoding hex"):
        table.restore(hex_save, encoding="base64")
    v1 = records(b"# nfkv save: 1 entries, generation 5, encoding text", b"put create v1")
    with pytest.raises(ValueError, match="first save format"):
        table.restore(v1, flush=True)
    with pytest.raises(ValueError, match="encoding must be"):
        table.restore(b"", encoding="rot13")
    with pytest.raises(ValueError, match="key must be 1..=255 bytes"):
        table.restore(records(b"put " + b"k" * 256))
    assert table.info().generation == generation
    table.restore(v1)  # as written, without flush
    table.restore(hex_save, encoding="hex")
    assert dict(table.items()) == {b"a": b"1", b"create": b"v1", b"keep": b"1"}


def test_restore_larger_than_one_batch_goes_in_file_order(table: nfkv.Table) -> None:
    info = table.info()
    n = info.max_batch_ops
    assert n <= info.max_entries, "the first batch fills at most the table"
    lines = [b"put k%06d %d" % (i, i) for i in range(n)] + [b"del k000000", b"put last x"]
    before = table.stats().set["batch"].ok
    table.put(b"flushed", b"x")
    table.restore(records(*lines), flush=True)
    assert table.stats().set["batch"].ok == before + 2
    assert len(table) == n
    assert b"k000000" not in table and b"flushed" not in table
    assert (table[b"k000001"], table[b"last"]) == (b"1", b"x")


def test_a_failed_batch_of_a_larger_restore_says_what_the_table_holds(table: nfkv.Table) -> None:
    info = table.info()
    n = info.max_batch_ops
    assert n == info.max_entries, "the first batch fills the table, the second overflows it"
    lines = [b"put k%06d" % i for i in range(n)] + [b"del k000000", b"put new1", b"put new2"]
    with pytest.raises(nfkv.NoSpaceError) as e:
        table.restore(records(*lines))
    assert e.value.errno == errno.ENOSPC
    message = str(e.value)
    assert (
        f"restore stopped at batch 2 of 2 (records {n + 1}..{n + 3} of {n + 3}, lines {n + 1}..{n + 3}): table full"
        in message
    ), message
    assert f"the table holds records 1..{n} of the file besides what it held before" in message
    assert "nothing of the failed batch was applied" in message
    assert len(table) == n
    assert b"k000000" in table and b"new1" not in table


def test_odd_files_never_panic(table: nfkv.Table) -> None:
    """Whatever the file, only the documented exceptions: never a Rust panic."""
    rng = random.Random(7)
    for _ in range(300):
        data = odd_file(rng)
        for flush in (False, True):
            try:
                table.restore(data, flush=flush)
            except (ValueError, KeyError, nfkv.ConditionError):
                pass
        table.flush()


# --- read_batch_file (no module needed) ------------------------------------


def test_read_batch_file_reads_what_save_writes() -> None:
    saved = records(b"# nfkv save v2 encoding=hex prefix=6b entries=2 generation=9", b"put 6b31 00ff", b"put 6b32")
    assert nfkv.read_batch_file(saved) == nfkv.BatchFile(
        encoding="hex",
        prefix=b"k",
        flush=False,
        records=(
            BatchRecord("put", b"k1", b"\x00\xff", False, False, None, 2),
            BatchRecord("put", b"k2", b"", False, False, None, 3),
        ),
    )
    b64 = records(b"# nfkv save v2 encoding=base64 prefix= entries=1 generation=1", b"put AAE= AP8=")
    record = nfkv.read_batch_file(b64).records[0]
    assert (record.key, record.value) == (b"\x00\x01", b"\x00\xff")
    v1 = records(b"# nfkv save: 1 entries, generation 5, encoding text", b"put k create")
    first = nfkv.read_batch_file(v1)
    assert (first.prefix, first.records[0].value) == (None, b"create")


def test_read_batch_file_options_flush_and_comments(tmp_path: Path) -> None:
    data = records(b"flush", b"", b"# a comment", b"put --create k v", b"put --replace --if-version=4 -- \\x2dk",
                   b"del --if-version=7 k")
    file = nfkv.read_batch_file(data)
    assert (file.encoding, file.prefix, file.flush) == ("text", None, True)
    assert file.records == (
        BatchRecord("put", b"k", b"v", True, False, None, 4),
        BatchRecord("put", b"-k", b"", False, True, 4, 5),
        BatchRecord("del", b"k", b"", False, False, 7, 6),
    )
    path = tmp_path / "f"
    path.write_bytes(data)
    assert nfkv.read_batch_file(path) == file
    assert nfkv.read_batch_file(b"put 6b\n", encoding="hex").records[0].key == b"k"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"put k v create\n", "line 1: too many fields"),
        (b"put a\n\nfrob b\n", "line 3: unknown command"),
        (b"put k\nflush\n", "line 2: flush must come first"),
        (b"put \\q\n", "line 1: a backslash must start"),
        (b"put k\n\xff\n", "line 2: not UTF-8"),
        (b"# nfkv save v4 encoding=text\n", "line 1: the file is in save format v4"),
        (b"# nfkv save v2 encoding=base64 prefix=\nput Zh==\n", "line 2: bad base64"),
    ],
)
def test_read_batch_file_names_the_bad_line(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nfkv.read_batch_file(data)


def test_read_batch_file_never_panics() -> None:
    rng = random.Random(11)
    results: List[str] = []
    for i in range(2000):
        data = odd_file(rng) if i % 2 else bytes(rng.choice(b"put del-=#\\x0aZ9\n \xff") for _ in range(rng.randrange(40)))
        try:
            nfkv.read_batch_file(data, encoding=rng.choice([None, "text", "hex", "base64"]))
            results.append("ok")
        except ValueError:
            results.append("ValueError")
    assert "ok" in results and "ValueError" in results
    with pytest.raises(TypeError):
        nfkv.read_batch_file("put k v\n")  # type: ignore[arg-type]
