"""Table.watch: the table's changes as they happen (NFKV_SO_GET_WATCH):
order, kinds (put, delete, expire, flush, resync), prefix, values, batches,
the timeout, signals during the wait, and the resync when the module's
change log no longer holds the changes asked for."""

from __future__ import annotations

import datetime
import signal
import threading
import time
from typing import Callable, List

import pytest

import nfkv


def watched(table: nfkv.Table) -> int:
    """Makes sure the namespace's change log exists (its first watch makes
    it: changes before that are not logged), then returns the table's
    generation: changes after it are all in the log."""
    assert list(table.watch(timeout=0)) == []
    return table.info().generation


def later(seconds: float, action: Callable[[], None]) -> threading.Thread:
    """Runs ``action`` in a thread after ``seconds``."""

    def run() -> None:
        # Signals sent to the process go to the main thread, waiting in
        # the watch, not to this one.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGINT})
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def summary(changes: List[nfkv.Change]) -> List[tuple]:
    return [(c.kind, c.key, c.value) for c in changes]


def test_changes_come_in_generation_order(table: nfkv.Table) -> None:
    since = watched(table)
    table.put(b"a", b"1")
    table.put(b"b", b"2")
    table.put(b"a", b"3")
    table.delete(b"b")
    changes = list(table.watch(since=since, timeout=0.5))
    assert summary(changes) == [
        ("put", b"a", None),
        ("put", b"b", None),
        ("put", b"a", None),
        ("delete", b"b", None),
    ]
    assert [c.generation for c in changes] == list(range(since + 1, since + 5))
    assert all(c.last == c.generation for c in changes), "single writes: last is their own"
    # A put's generation is the version it gave the entry.
    assert changes[2].generation == table.get_versioned(b"a")[0]


def test_a_watch_starts_at_the_generation_when_it_is_called(table: nfkv.Table) -> None:
    watched(table)
    table.put(b"before", b"x")
    changes = table.watch(timeout=0.5)
    table.put(b"after", b"y")
    assert summary(list(changes)) == [("put", b"after", None)]


def test_prefix_filters_keys_but_never_flushes(table: nfkv.Table) -> None:
    since = watched(table)
    table.put(b"p/1", b"x")
    table.put(b"q/1", b"x")
    table.flush()
    table.put(b"p/2", b"x")
    table.delete(b"p/2")
    changes = list(table.watch(b"p/", since=since, timeout=0.5))
    assert summary(changes) == [
        ("put", b"p/1", None),
        ("flush", b"", None),
        ("put", b"p/2", None),
        ("delete", b"p/2", None),
    ]
    assert [c.generation - since for c in changes] == [1, 3, 4, 5]


def test_values_come_with_puts_whose_entry_still_holds_them(table: nfkv.Table) -> None:
    since = watched(table)
    table.put(b"k", b"old")
    table.put(b"k", b"new")
    table.put(b"e", b"")
    table.put(b"gone", b"v")
    table.delete(b"gone")
    with_values = list(table.watch(since=since, values=True, timeout=0.5))
    # The first put's entry was replaced since: no value, the second has it.
    assert summary(with_values) == [
        ("put", b"k", None),
        ("put", b"k", b"new"),
        ("put", b"e", b""),
        ("put", b"gone", None),
        ("delete", b"gone", None),
    ]
    without = list(table.watch(since=since, timeout=0.5))
    assert [c.value for c in without] == [None] * 5


def test_a_batch_s_changes_share_last_and_its_flush_comes_first(table: nfkv.Table) -> None:
    table.put(b"x", b"1")
    since = watched(table)
    with table.batch() as b:
        b.put(b"a", b"1")
        b.flush()
        b.put(b"b", b"2")
    table.put(b"c", b"3")
    changes = list(table.watch(since=since, timeout=0.5))
    assert summary(changes) == [
        ("flush", b"", None),
        ("put", b"a", None),
        ("put", b"b", None),
        ("put", b"c", None),
    ]
    assert [c.last for c in changes] == [since + 3] * 3 + [since + 4]
    assert [c.generation for c in changes] == [since + 1, since + 2, since + 3, since + 4]


def test_expired_entries_show_as_expire(table: nfkv.Table) -> None:
    since = watched(table)
    table.put(b"long", b"v", ttl=60)
    table.put(b"short", b"v", ttl=0.2)
    changes = []
    # The reaper removes it within a second or two of its deadline.
    for change in table.watch(since=since, timeout=5):
        changes.append(change)
        if change.kind == "expire":
            break
    assert summary(changes) == [("put", b"long", None), ("put", b"short", None), ("expire", b"short", None)]
    assert changes[2].last == changes[2].generation


def test_the_timeout_ends_the_iteration_and_waits_for_the_first_change(table: nfkv.Table) -> None:
    watched(table)
    start = time.monotonic()
    assert list(table.watch(timeout=datetime.timedelta(milliseconds=300))) == []
    took = time.monotonic() - start
    assert 0.3 <= took < 5, took
    # The wait ends at the change, made by another thread meanwhile: the
    # GIL is released while waiting.
    changes = table.watch(timeout=20)
    later(0.3, lambda: table.put(b"late", b"v"))
    start = time.monotonic()
    change = next(changes)
    assert (change.kind, change.key) == ("put", b"late")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"timeout": -1}, ValueError, "at least 0"),
        ({"timeout": float("nan")}, ValueError, "finite"),
        ({"timeout": "5s"}, TypeError, "seconds"),
        ({"since": -1}, ValueError, "since"),
        ({"since": "3"}, TypeError, "since"),
    ],
)
def test_bad_arguments_are_refused(table: nfkv.Table, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        table.watch(**kwargs)


def test_since_past_the_table_s_generation_is_refused(table: nfkv.Table) -> None:
    generation = watched(table)
    with pytest.raises(ValueError, match="EINVAL"):
        next(table.watch(since=generation + 1000, timeout=0))


def test_ctrl_c_interrupts_the_wait(table: nfkv.Table) -> None:
    watched(table)
    main = threading.get_ident()
    later(0.3, lambda: signal.pthread_kill(main, signal.SIGINT))
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(table.watch(timeout=30))
    assert time.monotonic() - start < 10


def test_a_signal_whose_handler_returns_does_not_end_the_wait(table: nfkv.Table) -> None:
    watched(table)
    seen = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    try:
        changes = table.watch(timeout=20)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        later(0.8, lambda: table.put(b"k", b"v"))
        change = next(changes)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen == [signal.SIGALRM]
    assert (change.kind, change.key) == ("put", b"k")


def test_a_closed_table_ends_its_watch(table: nfkv.Table) -> None:
    with nfkv.open() as other:
        changes = other.watch(timeout=0)
    with pytest.raises(ValueError, match="closed"):
        next(changes)


def test_a_gap_resyncs_from_a_snapshot(table: nfkv.Table) -> None:
    since = watched(table)
    table.put(b"r/a", b"1")
    table.put(b"r/b", b"2")
    # More changes than the log holds (watch_log_kib, 1024 KiB by default):
    # 20000 puts of 240-byte keys.
    for n in range(20):
        with table.batch() as b:
            for i in range(1000):
                b.put(b"big/%04d/" % (n * 1000 + i) + b"k" * 230, b"")
    table.delete(b"r/b")
    generation = table.info().generation
    changes = table.watch(b"r/", since=since, values=True, timeout=3)
    resync = next(changes)
    assert (resync.kind, resync.generation, resync.last, resync.key) == ("resync", generation, generation, b"")
    snap = next(changes)
    assert (snap.kind, snap.key, snap.value, snap.last) == ("put", b"r/a", b"1", generation)
    assert snap.generation == table.get_versioned(b"r/a")[0]
    # Then on from the snapshot's generation.
    later(0.3, lambda: table.put(b"r/c", b"3"))
    after = list(changes)
    assert summary(after) == [("put", b"r/c", b"3")]
    assert after[0].generation == generation + 1
