"""Batches: all or nothing, applied on exit, discarded on an exception."""

from __future__ import annotations

import errno

import pytest

import nfkv


def test_batch_applies_on_exit(table: nfkv.Table) -> None:
    table.put(b"gone", b"x")
    with table.batch() as b:
        b.put(b"a", b"1")
        b.put("b", "2", create=True)
        b.delete(b"gone")
        assert len(b) == 3
        assert b"a" not in table  # nothing is sent before the exit
    assert dict(table.items()) == {b"a": b"1", b"b": b"2"}


def test_batch_rollback_on_exception(table: nfkv.Table) -> None:
    table.put(b"keep", b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with table.batch() as b:
            b.put(b"keep", b"new")
            b.put(b"added", b"1")
            raise RuntimeError("boom")
    assert dict(table.items()) == {b"keep": b"old"}
    with pytest.raises(ValueError):
        b.put(b"late", b"x")  # a discarded batch is finished


def test_batch_failure_changes_nothing(table: nfkv.Table) -> None:
    table.put(b"exists", b"x")
    with pytest.raises(nfkv.ConditionError) as e:
        with table.batch() as b:
            b.put(b"new", b"1")
            b.put(b"exists", b"2", create=True)
    assert e.value.errno == errno.EEXIST
    assert e.value.current_version is None  # not known for a batch
    assert dict(table.items()) == {b"exists": b"x"}
    with pytest.raises(KeyError):
        with table.batch() as b:
            b.put(b"new", b"1")
            b.delete(b"absent")
    assert dict(table.items()) == {b"exists": b"x"}


def test_batch_sees_its_earlier_operations(table: nfkv.Table) -> None:
    with table.batch() as b:
        b.put(b"k", b"1", create=True)
        b.put(b"k", b"2", replace=True)
        b.delete(b"k")
        b.put(b"k", b"3", create=True)
    assert table[b"k"] == b"3"


def test_batch_if_version(table: nfkv.Table) -> None:
    table.put(b"k", b"v")
    version, _ = table.get_versioned(b"k")
    with pytest.raises(nfkv.ConditionError):
        with table.batch() as b:
            b.put(b"k", b"w", if_version=version + 1)
    with table.batch() as b:
        b.put(b"k", b"w", if_version=version)
    assert table[b"k"] == b"w"


def test_batch_flush(table: nfkv.Table) -> None:
    table.put(b"old", b"x")
    with table.batch() as b:
        b.put(b"new", b"y")
        b.flush()  # applies first, wherever it is called
    assert dict(table.items()) == {b"new": b"y"}


def test_batch_apply_and_discard_explicitly(table: nfkv.Table) -> None:
    b = table.batch()
    b.put(b"k", b"v")
    b.apply()
    assert table[b"k"] == b"v"
    with pytest.raises(ValueError):
        b.apply()
    d = table.batch()
    d.put(b"j", b"v")
    d.discard()
    assert b"j" not in table


def test_empty_batch_is_a_no_op(table: nfkv.Table) -> None:
    generation = table.info().generation
    with table.batch():
        pass
    assert table.info().generation == generation


def test_batch_refuses_bad_arguments_when_added(table: nfkv.Table) -> None:
    b = table.batch()
    with pytest.raises(ValueError):
        b.put(b"k", b"v", create=True, replace=True)
    with pytest.raises(TypeError):
        b.put(1, b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.delete(b"k", if_version=0)
    assert len(b) == 0


def test_batch_with_bad_key_is_value_error(table: nfkv.Table) -> None:
    with pytest.raises(ValueError):
        with table.batch() as b:
            b.put(b"ok", b"v")
            b.put(b"", b"v")
    assert len(table) == 0
