"""Entry expiry (TTL): put/batch with ttl= and keep_ttl=, the time left
in get_entry/ttl/entries, and save/restore of entries that expire. The
module counts TTLs in jiffies and reaps expired entries within ~1-2 s;
an expired entry is absent at once."""

from __future__ import annotations

import datetime
import time

import pytest

import nfkv


def test_put_with_ttl_shows_time_left(table: nfkv.Table) -> None:
    table.put(b"k", b"v", ttl=30)
    left = table.ttl(b"k")
    assert left is not None and 29 < left <= 30
    entry = table.get_entry(b"k")
    assert (entry.key, entry.value) == (b"k", b"v")
    assert entry.ttl is not None and 29 < entry.ttl <= 30
    assert entry.version == table.get_versioned(b"k")[0]
    table.put(b"forever", b"v")
    assert table.ttl(b"forever") is None
    assert table.get_entry(b"forever").ttl is None


@pytest.mark.parametrize(
    "ttl, seconds",
    [
        (2, 2.0),
        (1.5, 1.5),
        (0.001, 0.001),
        (0.0001, 0.001),  # rounded up to a whole millisecond
        (datetime.timedelta(minutes=5), 300.0),
        (datetime.timedelta(milliseconds=1500), 1.5),
        (nfkv.MAX_TTL, 4294967.295),
    ],
)
def test_ttl_accepts_seconds_and_timedelta(table: nfkv.Table, ttl: nfkv.TtlLike, seconds: float) -> None:
    table.put(b"k", b"v", ttl=ttl)
    try:
        left = table.ttl(b"k")
    except KeyError:
        # A lifetime of a jiffy or so may end before the read.
        assert seconds < 0.05, "a long-lived entry vanished"
        return
    # The module reports the whole jiffies left after the current one:
    # never over the lifetime given, at least 1 ms.
    assert left is not None and seconds - 0.5 < left <= seconds


@pytest.mark.parametrize(
    "ttl, error, message",
    [
        (0, ValueError, "must be positive"),
        (-1, ValueError, "must be positive"),
        (0.0, ValueError, "must be positive"),
        (datetime.timedelta(0), ValueError, "must be positive"),
        (datetime.timedelta(seconds=-5), ValueError, "must be positive"),
        (float("nan"), ValueError, "finite"),
        (float("inf"), ValueError, "finite"),
        (4294968, ValueError, "at most 4294967.295"),
        (10**30, ValueError, "at most"),
        ("30s", TypeError, "seconds"),
        (True, TypeError, "seconds"),
    ],
)
def test_bad_ttls_are_refused_before_the_module_is_asked(
    table: nfkv.Table, ttl: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        table.put(b"k", b"v", ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        table.batch().put(b"k", b"v", ttl=ttl)  # type: ignore[arg-type]
    assert b"k" not in table


def test_an_entry_is_gone_after_its_ttl(table: nfkv.Table) -> None:
    table.put(b"short", b"v", ttl=0.5)
    table.put(b"long", b"v", ttl=60)
    assert table.get(b"short") == b"v"
    time.sleep(1.0)
    assert b"short" not in table
    with pytest.raises(KeyError):
        table.get(b"short")
    assert [e.key for e in table.entries()] == [b"long"]
    assert list(table.keys()) == [b"long"]
    # Expired is absent: a create succeeds over it at once.
    table.put(b"short", b"again", create=True)
    assert table.ttl(b"short") is None
    # The reaper frees it within ~1-2 s: INFO stops counting it.
    deadline = time.monotonic() + 5
    table.put(b"gone", b"v", ttl=0.1)
    time.sleep(0.2)
    while table.info().entries != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert table.info().entries == 2


def test_a_put_without_ttl_makes_the_entry_permanent(table: nfkv.Table) -> None:
    table.put(b"k", b"1", ttl=60)
    table.put(b"k", b"2")
    assert table.ttl(b"k") is None


def test_keep_ttl_keeps_the_deadline(table: nfkv.Table) -> None:
    table.put(b"k", b"1", ttl=0.8)
    table.put(b"k", b"2", keep_ttl=True)
    left = table.ttl(b"k")
    assert left is not None and left <= 0.8
    # keep_ttl with a ttl: the ttl applies only where the key is absent.
    table.put(b"k", b"3", ttl=60, keep_ttl=True)
    left = table.ttl(b"k")
    assert left is not None and left <= 0.8
    table.put(b"new", b"x", ttl=60, keep_ttl=True)
    left = table.ttl(b"new")
    assert left is not None and 59 < left <= 60
    # keep_ttl of an entry that never expires: it still never expires.
    table.put(b"forever", b"1")
    table.put(b"forever", b"2", ttl=5, keep_ttl=True)
    assert table.ttl(b"forever") is None
    # keep_ttl alone where the key is absent: never expires.
    table.put(b"absent", b"x", keep_ttl=True)
    assert table.ttl(b"absent") is None
    time.sleep(1.0)
    assert b"k" not in table and table.get(b"new") == b"x"


def test_batch_records_carry_their_own_ttl(table: nfkv.Table) -> None:
    table.put(b"kept", b"old", ttl=50)
    with table.batch() as b:
        b.put(b"a", b"1", ttl=30)
        b.put(b"b", b"2")
        b.put(b"kept", b"new", keep_ttl=True)
        b.put(b"c", b"3", ttl=datetime.timedelta(hours=1), create=True)
    left = {e.key: e.ttl for e in table.entries(consistent=True)}
    assert left[b"b"] is None
    assert 29 < (left[b"a"] or 0) <= 30
    assert 49 < (left[b"kept"] or 0) <= 50
    assert 3599 < (left[b"c"] or 0) <= 3600
    assert table.get(b"kept") == b"new"


def test_entries_show_time_left_lazily_and_consistently(table: nfkv.Table) -> None:
    table.put(b"p/1", b"a", ttl=10)
    table.put(b"p/2", b"b")
    table.put(b"q", b"c", ttl=10)
    for consistent in (False, True):
        got = list(table.entries(b"p/", consistent=consistent))
        assert [(e.key, e.value, e.ttl is None) for e in got] == [(b"p/1", b"a", False), (b"p/2", b"b", True)]
    assert dict(table.items()) == {b"p/1": b"a", b"p/2": b"b", b"q": b"c"}


def test_save_records_time_left_and_restore_counts_the_time_since(table: nfkv.Table) -> None:
    table.put(b"short", b"1", ttl=0.5)
    table.put(b"long", b"2", ttl=60)
    table.put(b"forever", b"3")
    saved = table.save()
    header = saved.splitlines()[0]
    assert header.startswith(b"# nfkv save v3 encoding=text prefix= entries=3 ") and b" time_ms=" in header
    file = nfkv.read_batch_file(saved)
    assert file.time is not None and abs(file.time - time.time()) < 5
    ttls = {r.key: r.ttl for r in file.records}
    assert ttls[b"forever"] is None and 0 < (ttls[b"short"] or 0) <= 0.5 and 59 < (ttls[b"long"] or 0) <= 60
    time.sleep(1.0)
    table.flush()
    done = table.restore(saved)
    assert done == nfkv.Restored(records=2, expired=1, batches=1)
    assert b"short" not in table
    left = table.ttl(b"long")
    assert left is not None and 50 < left <= 59.1
    assert table.ttl(b"forever") is None
    # A batch file's TTLs count from the write.
    done = table.restore(b"put --ttl=30s fresh x\nput --keep-ttl long y\n")
    assert done == nfkv.Restored(records=2, expired=0, batches=1)
    left = table.ttl(b"fresh")
    assert left is not None and 29 < left <= 30
    left = table.ttl(b"long")
    assert left is not None and left <= 59.1 and table.get(b"long") == b"y"


def test_a_prefix_restore_deletes_an_entry_whose_save_expired(table: nfkv.Table) -> None:
    table.put(b"p/short", b"saved", ttl=0.5)
    saved = table.save(b"p/")
    time.sleep(1.0)
    table.put(b"p/short", b"written since")
    done = table.restore(saved, flush=True)
    assert done.expired == 1
    assert list(table.keys(b"p/")) == []


def test_old_save_files_restore_without_ttls(table: nfkv.Table) -> None:
    v2 = b"# nfkv save v2 encoding=text prefix= entries=1 generation=4\nput k v\n"
    assert table.restore(v2, flush=True) == nfkv.Restored(records=1, expired=0, batches=1)
    assert table.get_entry(b"k").ttl is None
    assert nfkv.read_batch_file(v2).time is None


def test_read_batch_file_reads_ttl_options() -> None:
    file = nfkv.read_batch_file(b"put --ttl=1m30s a 1\nput --keep-ttl b\nput --ttl=500ms --keep-ttl c\n")
    assert [(r.key, r.ttl, r.keep_ttl) for r in file.records] == [
        (b"a", 90.0, False),
        (b"b", None, True),
        (b"c", 0.5, True),
    ]
    for bad, message in [
        (b"put --ttl=0 k\n", "line 1: .*at least 1ms"),
        (b"put --ttl=5x k\n", "line 1: bad duration \"5x\""),
        (b"del --ttl=5s k\n", "line 1: del takes only --if-version"),
    ]:
        with pytest.raises(ValueError, match=message):
            nfkv.read_batch_file(bad)
