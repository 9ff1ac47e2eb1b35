"""Every method of nfkv.Table, with the values and errors it gives."""

from __future__ import annotations

import dataclasses
import errno

import pytest

import nfkv


def test_put_get_bytes(table: nfkv.Table) -> None:
    table.put(b"k", b"v\x00\xff")
    assert table.get(b"k") == b"v\x00\xff"


def test_str_is_utf8_encoded(table: nfkv.Table) -> None:
    table.put("ключ", "значение")
    assert table.get("ключ".encode()) == "значение".encode()
    assert table.get("ключ") == "значение".encode()


def test_bytes_like_accepted(table: nfkv.Table) -> None:
    table.put(bytearray(b"ba"), memoryview(b"mv"))
    assert table.get(memoryview(b"ba")) == b"mv"


def test_empty_and_largest_values(table: nfkv.Table) -> None:
    limit = table.info().max_value_len
    table.put(b"empty", b"")
    table.put(b"full", b"x" * limit)
    assert table.get(b"empty") == b""
    assert table.get(b"full") == b"x" * limit


def test_other_types_are_type_errors(table: nfkv.Table) -> None:
    with pytest.raises(TypeError):
        table.put(1, b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        table.put(b"k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        table.get(3.5)  # type: ignore[call-overload]


def test_get_missing_is_key_error(table: nfkv.Table) -> None:
    with pytest.raises(KeyError) as e:
        table.get(b"nope")
    assert e.value.args == (b"nope",)


def test_get_default(table: nfkv.Table) -> None:
    assert table.get(b"nope", None) is None
    table.put(b"k", b"v")
    assert table.get(b"k", None) == b"v"


def test_get_versioned(table: nfkv.Table) -> None:
    table.put(b"k", b"one")
    v1, value = table.get_versioned(b"k")
    assert value == b"one"
    assert v1 == table.info().generation
    table.put(b"k", b"two")
    v2, value = table.get_versioned("k")
    assert (value, v2 > v1) == (b"two", True)
    with pytest.raises(KeyError):
        table.get_versioned(b"nope")


def test_put_create(table: nfkv.Table) -> None:
    table.put(b"k", b"first", create=True)
    version, _ = table.get_versioned(b"k")
    with pytest.raises(nfkv.ConditionError) as e:
        table.put(b"k", b"second", create=True)
    assert e.value.errno == errno.EEXIST
    assert isinstance(e.value, OSError)
    assert e.value.key == b"k"
    assert e.value.current_version == version
    assert table.get(b"k") == b"first"


def test_put_replace(table: nfkv.Table) -> None:
    with pytest.raises(KeyError):
        table.put(b"k", b"v", replace=True)
    assert b"k" not in table
    table.put(b"k", b"v")
    table.put(b"k", b"w", replace=True)
    assert table.get(b"k") == b"w"


def test_put_if_version(table: nfkv.Table) -> None:
    table.put(b"k", b"v")
    version, _ = table.get_versioned(b"k")
    table.put(b"k", b"w", if_version=version)
    current, _ = table.get_versioned(b"k")
    with pytest.raises(nfkv.ConditionError) as e:
        table.put(b"k", b"x", if_version=version)
    assert e.value.errno == errno.ESTALE
    assert (e.value.expected_version, e.value.current_version) == (version, current)
    assert table.get(b"k") == b"w"
    with pytest.raises(KeyError):
        table.put(b"absent", b"x", if_version=version)


def test_contradictory_conditions_are_refused_before_sending(table: nfkv.Table) -> None:
    before = table.stats().set["put"]
    with pytest.raises(ValueError):
        table.put(b"k", b"v", create=True, replace=True)
    with pytest.raises(ValueError):
        table.put(b"k", b"v", create=True, if_version=1)
    assert table.stats().set["put"] == before


@pytest.mark.parametrize("bad", [0, -1, 1 << 64])
def test_bad_if_version_is_value_error(table: nfkv.Table, bad: int) -> None:
    with pytest.raises(ValueError):
        table.put(b"k", b"v", if_version=bad)
    with pytest.raises(ValueError):
        table.delete(b"k", if_version=bad)


def test_non_int_if_version_is_type_error(table: nfkv.Table) -> None:
    with pytest.raises(TypeError):
        table.put(b"k", b"v", if_version="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        table.delete(b"k", if_version=True)


def test_delete(table: nfkv.Table) -> None:
    table.put(b"k", b"v")
    table.delete(b"k")
    assert b"k" not in table
    with pytest.raises(KeyError) as e:
        table.delete(b"k")
    assert e.value.args == (b"k",)


def test_delete_if_version(table: nfkv.Table) -> None:
    table.put(b"k", b"v")
    version, _ = table.get_versioned(b"k")
    with pytest.raises(nfkv.ConditionError) as e:
        table.delete(b"k", if_version=version + 1000)
    assert e.value.errno == errno.ESTALE
    assert e.value.current_version == version
    table.delete(b"k", if_version=version)
    assert len(table) == 0


def test_flush(table: nfkv.Table) -> None:
    for i in range(10):
        table.put(f"k{i}", b"v")
    assert len(table) == 10
    table.flush()
    assert len(table) == 0
    assert list(table.items()) == []


def test_info(table: nfkv.Table) -> None:
    table.put(b"ab", b"cde")
    info = table.info()
    assert isinstance(info, nfkv.Info)
    assert info.abi_version == nfkv.ABI_VERSION
    assert info.optbase == table.optbase == nfkv.DEFAULT_OPTBASE
    assert info.max_key_len == nfkv.MAX_KEY_LEN
    assert (info.entries, info.bytes_used) == (1, 5)
    assert info.max_value_len > 0 and info.max_entries > 0 and info.max_batch_ops > 0
    assert info.module_version
    assert dataclasses.asdict(info)["entries"] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.entries = 7  # type: ignore[misc]


def test_stats(table: nfkv.Table) -> None:
    before = table.stats()
    table.put(b"k", b"v")
    with pytest.raises(KeyError):
        table.get(b"nope")
    after = table.stats()
    assert isinstance(after, nfkv.Stats)
    assert set(after.set) == {"put", "del", "flush", "batch"}
    assert set(after.get) == {"info", "value", "list", "stats"}
    assert after.set["put"] == nfkv.Counter(before.set["put"].ok + 1, before.set["put"].failed)
    assert after.get["value"].failed == before.get["value"].failed + 1


def test_items_in_key_order_with_prefix(table: nfkv.Table) -> None:
    for key in [b"b/2", b"a/1", b"b/1", b"c", b"b/10"]:
        table.put(key, key + b"!")
    assert list(table.items()) == [
        (b"a/1", b"a/1!"), (b"b/1", b"b/1!"), (b"b/10", b"b/10!"), (b"b/2", b"b/2!"), (b"c", b"c!"),
    ]
    assert [k for k, _ in table.items(prefix=b"b/")] == [b"b/1", b"b/10", b"b/2"]
    assert [k for k, _ in table.items(prefix="b/1")] == [b"b/1", b"b/10"]
    assert list(table.items(prefix=b"zz")) == []
    assert list(table.keys("b/")) == [b"b/1", b"b/10", b"b/2"]


def test_items_consistent(table: nfkv.Table) -> None:
    for i in range(100):
        table.put(f"k{i:03}", str(i))
    assert list(table.items(consistent=True)) == list(table.items())
    assert list(table.items(prefix=b"k05", consistent=True)) == [
        (f"k05{i}".encode(), str(50 + i).encode()) for i in range(10)
    ]


def test_items_is_lazy(table: nfkv.Table) -> None:
    it = table.items()
    table.put(b"late", b"1")  # before the first page is fetched
    assert list(it) == [(b"late", b"1")]


def test_key_length_is_value_error(table: nfkv.Table) -> None:
    with pytest.raises(ValueError):
        table.put(b"", b"v")
    with pytest.raises(ValueError):
        table.put(b"k" * (nfkv.MAX_KEY_LEN + 1), b"v")
    table.put(b"k" * nfkv.MAX_KEY_LEN, b"v")
    with pytest.raises(ValueError):
        table.get(b"")
    with pytest.raises(ValueError):
        table.delete(b"k" * 300)
    with pytest.raises(ValueError):
        list(table.items(prefix=b"p" * 300))


def test_value_too_long_is_value_error(table: nfkv.Table) -> None:
    with pytest.raises(ValueError):
        table.put(b"k", b"x" * (table.info().max_value_len + 1))
    assert b"k" not in table


def test_no_space_error(table: nfkv.Table) -> None:
    info = table.info()
    assert info.max_entries <= info.max_batch_ops, "fill the table in one batch"
    with table.batch() as b:
        for i in range(info.max_entries):
            b.put(b"%08d" % i, b"")
    assert len(table) == info.max_entries
    with pytest.raises(nfkv.NoSpaceError) as e:
        table.put(b"one-more", b"")
    assert e.value.errno == errno.ENOSPC
    assert e.value.limit == "max_entries"
    assert "max_entries" in str(e.value)
    assert isinstance(e.value, OSError)
    table.put(b"%08d" % 5, b"replacing is fine")


def test_info_shows_each_limit_and_the_shared_budget(table: nfkv.Table) -> None:
    def param(name: str) -> int:
        with open(f"/sys/module/nfkv/parameters/{name}") as f:
            return int(f.read())

    table.put(b"k", b"v" * 100)
    info = table.info()
    assert (info.entries, info.bytes_used) == (1, 101)
    assert info.max_bytes == param("max_bytes_mib") << 20
    assert info.budget_size == param("userns_budget_mib") << 20
    # The initial user namespace's tables are never charged to the budget.
    assert (info.charged_to_budget, info.charged) == (False, 0)
    assert 0 <= info.budget_used <= info.budget_size


def test_not_loaded_error() -> None:
    # No module serves optnames 20000..20015: as if nfkv.ko were not loaded.
    with pytest.raises(nfkv.NotLoadedError) as e:
        nfkv.open(optbase=20000)
    assert e.value.errno == errno.ENOPROTOOPT
    assert isinstance(e.value, OSError)
    assert "insmod" in str(e.value)


def test_other_failures_are_os_errors_with_errno() -> None:
    # optbase 2 puts GET_INFO on IP_TTL, whose 4-byte reply is no nfkv_info.
    with pytest.raises(OSError) as e:
        nfkv.open(optbase=2)
    assert type(e.value) is OSError
    assert e.value.errno == errno.EPROTO


@pytest.mark.parametrize("bad", [-1, 1 << 31, 1 << 70])
def test_bad_optbase_is_value_error(bad: int) -> None:
    with pytest.raises(ValueError):
        nfkv.open(optbase=bad)


def test_optbase_type_error() -> None:
    with pytest.raises(TypeError):
        nfkv.open(optbase="2048")  # type: ignore[arg-type]


def test_context_manager_closes() -> None:
    with nfkv.open() as t:
        assert not t.closed
        t.put(b"k", b"v")
    assert t.closed
    assert "closed" in repr(t)
    with pytest.raises(ValueError):
        t.get(b"k")
    t.close()  # idempotent
    with nfkv.open() as t2:
        assert t2.get(b"k") == b"v"
        t2.flush()


def test_odd_input_never_panics(table: nfkv.Table) -> None:
    """Whatever the input, only the documented exceptions: never a Rust panic."""
    odd: list[nfkv.BytesLike] = [b"", b"\x00", b"k" * 255, b"k" * 256, b"k" * 70000, "", "\udcff", bytearray(300)]
    for key in odd:
        for value in [b"", b"v" * 5000, b"v" * 70000]:
            for call in (
                lambda: table.put(key, value),
                lambda: table.put(key, value, create=True),
                lambda: table.put(key, value, if_version=(1 << 64) - 1),
                lambda: table.get(key),
                lambda: table.delete(key, if_version=1),
                lambda: list(table.items(prefix=key)),
                lambda: key in table,
            ):
                try:
                    call()
                except (KeyError, ValueError, nfkv.ConditionError):
                    pass  # UnicodeEncodeError is a ValueError
