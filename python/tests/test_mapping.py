"""The mapping protocol of nfkv.Table."""

from __future__ import annotations

import pytest

import nfkv


def test_setitem_getitem(table: nfkv.Table) -> None:
    table[b"k"] = b"v"
    table["s"] = "text"
    assert table[b"k"] == b"v"
    assert table[b"s"] == b"text"


def test_getitem_missing_is_key_error(table: nfkv.Table) -> None:
    with pytest.raises(KeyError):
        table[b"nope"]


def test_delitem(table: nfkv.Table) -> None:
    table[b"k"] = b"v"
    del table[b"k"]
    assert b"k" not in table
    with pytest.raises(KeyError):
        del table[b"k"]


def test_contains(table: nfkv.Table) -> None:
    table[b"k"] = b""
    assert b"k" in table
    assert "k" in table
    assert b"other" not in table
    assert b"" not in table  # no such key can exist
    assert b"x" * 256 not in table
    assert 42 not in table


def test_len(table: nfkv.Table) -> None:
    assert len(table) == 0
    for i in range(7):
        table[f"k{i}"] = b"v"
    assert len(table) == 7
    del table[b"k0"]
    assert len(table) == 6
    assert not table or len(table) == 6


def test_iteration_over_keys(table: nfkv.Table) -> None:
    for key in [b"b", b"a", b"c"]:
        table[key] = key.upper()
    assert list(table) == [b"a", b"b", b"c"]
    assert sorted(table) == list(table)
    assert {k: table[k] for k in table} == {b"a": b"A", b"b": b"B", b"c": b"C"}
    assert dict(table.items()) == {b"a": b"A", b"b": b"B", b"c": b"C"}
