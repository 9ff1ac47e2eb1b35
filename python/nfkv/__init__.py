"""The nfkv kernel key/value table from Python.

nfkv.ko keeps a locked key/value table per network namespace and speaks
nf_sockopt (``setsockopt``/``getsockopt`` at ``IPPROTO_IP``). This package
drives it through the nfkv Rust library, the one implementation of that ABI;
every call into the kernel releases the GIL.

>>> import nfkv
>>> with nfkv.open() as t:
...     t["greeting"] = "hello, kernel"
...     t.get("greeting")
b'hello, kernel'

Keys are 1-255 bytes and values 0-``max_value_len`` bytes; both are
:class:`bytes` (a :class:`str` is accepted and UTF-8 encoded). Every call
needs ``CAP_NET_ADMIN`` over the caller's network namespace.

:meth:`Table.add_classifier` and :meth:`Table.add_element` put the table in
the packet path: classifiers drop, accept or mark packets by their address
or port as the table's entries say.

:meth:`Table.put` with ``ttl=`` makes an entry that expires: from then on
it is absent, and the module frees it within about a second.
:meth:`Table.ttl`, :meth:`Table.get_entry` and :meth:`Table.entries` show
the time left.

:meth:`Table.watch` yields the table's changes as they happen
(:class:`Change`).

:meth:`Table.save` and :meth:`Table.restore` write and apply the batch and
save files of the ``nfkv`` CLI (``nfkv save``, ``nfkv restore``), and
:func:`read_batch_file` reads one without a module.
"""

from __future__ import annotations

import builtins
import datetime
import math
import os
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    overload,
)

from . import _native
from ._errors import ConditionError, NoSpaceError, NotLoadedError

__all__ = [
    "ABI_VERSION",
    "DEFAULT_OPTBASE",
    "MAX_KEY_LEN",
    "MAX_TTL",
    "Batch",
    "BatchFile",
    "BatchRecord",
    "BytesLike",
    "Change",
    "ConditionError",
    "Counter",
    "Entry",
    "FileLike",
    "Info",
    "NoSpaceError",
    "NotLoadedError",
    "Restored",
    "Stats",
    "TtlLike",
    "Table",
    "open",
    "read_batch_file",
]
__version__ = "0.1.0"

#: Longest key, in bytes.
MAX_KEY_LEN: int = _native.MAX_KEY_LEN
#: The module's default optname base.
DEFAULT_OPTBASE: int = _native.DEFAULT_OPTBASE
#: The ABI version this package speaks.
ABI_VERSION: int = _native.ABI_VERSION
#: Longest lifetime of an entry, in seconds: 2**32-1 ms, about 49.7 days.
MAX_TTL: float = _native.MAX_TTL_MS / 1000

#: What a ``ttl`` may be given as: seconds (int or float) or a timedelta.
TtlLike = Union[int, float, datetime.timedelta]

#: What keys and values may be given as: bytes-like, or str (UTF-8 encoded).
BytesLike = Union[bytes, bytearray, memoryview, str]

_MISSING = object()
_T = TypeVar("_T")

# Names of the commands in Stats, as the CLI's `nfkv --json stats` shows them.
_SET_COMMANDS: Tuple[str, ...] = tuple(_native.SET_COMMAND_NAMES)
_GET_COMMANDS: Tuple[str, ...] = tuple(_native.GET_COMMAND_NAMES)
# A classifier's counters, as `nfkv --json classifier list` names them.
_COUNTERS: Tuple[str, ...] = ("packets", "unkeyed", "drop", "accept", "mark")

#: What a batch or save file may be given as: its bytes, or a path to it.
FileLike = Union[bytes, bytearray, memoryview, os.PathLike]


def _bytes(data: BytesLike, what: str) -> bytes:
    """``data`` as bytes: str is UTF-8 encoded, other types refused."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


def _version(if_version: Optional[int]) -> Optional[int]:
    """Checks an ``if_version`` argument: None, or an int in 1..2**64-1."""
    if if_version is None:
        return None
    if isinstance(if_version, bool) or not isinstance(if_version, int):
        raise TypeError(f"if_version must be an int, not {type(if_version).__name__}")
    if not 1 <= if_version < 1 << 64:
        raise ValueError(f"if_version must be 1..2**64-1, not {if_version}")
    return if_version


def _file_bytes(data: FileLike) -> bytes:
    """The contents of a batch or save file given as bytes or as a path."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, os.PathLike):
        with builtins.open(data, "rb") as f:
            return f.read()
    raise TypeError(
        f"a batch file must be bytes (its contents) or a path (os.PathLike), not {type(data).__name__}"
    )


def _str(value: object, what: str) -> str:
    """Checks that an argument is a str."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _int_in(what: str, value: object, low: int, high: int) -> int:
    """Checks that an argument is an int in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be {low}..{high}, not {value}")
    return value


def _ttl_ms(ttl: Optional[TtlLike]) -> Optional[int]:
    """A ``ttl`` argument in whole milliseconds, rounded up: None, seconds
    (int or float) or a :class:`datetime.timedelta`, from 1 ms to
    :data:`MAX_TTL` seconds."""
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        micros = (ttl.days * 86400 + ttl.seconds) * 1_000_000 + ttl.microseconds
        ms = -(-micros // 1000)
    elif isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(
            f"ttl must be seconds (int or float) or a datetime.timedelta, not {type(ttl).__name__}"
        )
    elif isinstance(ttl, int):
        ms = ttl * 1000
    else:
        if not math.isfinite(ttl):
            raise ValueError(f"ttl must be a finite number of seconds, not {ttl}")
        # round(): 0.1 * 3 s is 300 ms, not 301; a positive ttl is >= 1 ms.
        ms = math.ceil(round(ttl * 1000, 6))
        if ttl > 0:
            ms = max(ms, 1)
    if ms <= 0:
        raise ValueError(
            f"ttl must be positive (at least 1 ms; None means never expires), not {ttl!r}"
        )
    if ms > _native.MAX_TTL_MS:
        raise ValueError(f"ttl must be at most {MAX_TTL} s (2**32-1 ms), not {ttl!r}")
    return ms


def _timeout(timeout: Optional[TtlLike]) -> Optional[float]:
    """A ``timeout`` argument in seconds: None, seconds (int or float) or a
    :class:`datetime.timedelta`, not negative."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be seconds (int or float) or a datetime.timedelta, not {type(timeout).__name__}"
        )
    else:
        seconds = float(timeout)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"timeout must be a finite number of seconds, at least 0, not {timeout!r}")
    return seconds


def _seconds(ttl_ms: Optional[int]) -> Optional[float]:
    """Time left as the module reports it (ms; None: never) in seconds."""
    return None if ttl_ms is None else ttl_ms / 1000


def _condition(create: bool, replace: bool, if_version: Optional[int]) -> Optional[int]:
    """Checks a put's condition; returns the checked ``if_version``."""
    version = _version(if_version)
    if create and (replace or version is not None):
        raise ValueError("create=True excludes replace and if_version")
    return version


@dataclass(frozen=True)
class Info:
    """The module's limits and this namespace's usage (``NFKV_SO_GET_INFO``)."""

    #: ABI version the module speaks.
    abi_version: int
    #: First optname of the module's range.
    optbase: int
    #: Longest key.
    max_key_len: int
    #: Longest value.
    max_value_len: int
    #: Most entries per network namespace.
    max_entries: int
    #: Most operations in one batch.
    max_batch_ops: int
    #: Entries in this namespace's table.
    entries: int
    #: Key and value bytes stored.
    bytes_used: int
    #: The table's generation: bumped by every successful write.
    generation: int
    #: The module's version string.
    module_version: str
    #: Most key and value bytes per network namespace (``max_bytes_mib``).
    max_bytes: int
    #: Whether this table is charged to the budget shared by unprivileged
    #: namespaces (its namespace's user namespace is not the initial one).
    charged_to_budget: bool
    #: What this table is charged to that budget: the memory its entries'
    #: allocations take (0 when not charged).
    charged: int
    #: What all the tables charged to the shared budget take together.
    budget_used: int
    #: The shared budget's size (``userns_budget_mib``), in bytes.
    budget_size: int


@dataclass(frozen=True)
class Entry:
    """An entry of the table, with the time it has left."""

    key: bytes
    value: bytes
    #: Its version (changes with every write).
    version: int
    #: Seconds left before it expires (to the millisecond, rounded up), or
    #: None if it never expires.
    ttl: Optional[float]


@dataclass(frozen=True)
class Change:
    """One change of the table, as :meth:`Table.watch` yields it."""

    #: The table's generation this change made (a put's is the entry's
    #: version); for ``"resync"``, the snapshot's generation.
    generation: int
    #: The generation of the last change of the same write: the changes of
    #: one batch share it (a single change: ``generation``). The snapshot's
    #: puts after a ``"resync"`` share its generation.
    last: int
    #: ``"put"``, ``"delete"``, ``"expire"`` (the module removed an expired
    #: entry), ``"flush"`` (every entry removed) or ``"resync"`` (see
    #: :meth:`Table.watch`).
    kind: str
    #: The key (``b""`` for a flush or resync).
    key: bytes
    #: A put's value, with ``values=True`` where the entry still held it
    #: (else None: a later change replaced it).
    value: Optional[bytes] = None


@dataclass(frozen=True)
class Restored:
    """What :meth:`Table.restore` did."""

    #: Records of the file applied.
    records: int
    #: Puts of a save left out because their entries expired between the
    #: save and the restore.
    expired: int
    #: Batch requests it took.
    batches: int


@dataclass(frozen=True)
class BatchRecord:
    """One line of a batch or save file: a put or a delete and its conditions."""

    #: ``"put"`` or ``"del"``.
    op: str
    key: bytes
    #: Empty for a delete.
    value: bytes
    create: bool
    replace: bool
    if_version: Optional[int]
    #: The line of the file it is on, from 1.
    line: int
    #: ``--ttl``: seconds the entry lives after the write (in a save: the
    #: time it had left then), or None.
    ttl: Optional[float] = None
    #: ``--keep-ttl``: a present entry's expiry is kept.
    keep_ttl: bool = False


@dataclass(frozen=True)
class BatchFile:
    """A batch or save file, read (:func:`read_batch_file`)."""

    #: The encoding of its keys and values: ``"text"``, ``"hex"`` or ``"base64"``.
    encoding: str
    #: The prefix a save header records (``b""``: the whole table); None
    #: for a file without a save header, or of the first save format.
    prefix: Optional[bytes]
    #: The file starts with ``flush``.
    flush: bool
    records: Tuple[BatchRecord, ...]
    #: When the save was taken (seconds since the Unix epoch, as
    #: :func:`time.time`), if the header records it: the records' TTLs are
    #: the time their entries had left then.
    time: Optional[float] = None


def read_batch_file(data: FileLike, *, encoding: Optional[str] = None) -> BatchFile:
    """Reads a batch or save file (what ``nfkv save`` writes) without
    applying it; no module is needed.

    ``encoding`` (``"text"``, ``"hex"``, ``"base64"``) is that of a file
    without a save header; a header naming another one is then refused.
    None: the header's, else text. A malformed line raises
    :class:`ValueError` naming it.
    """
    enc, prefix, flush, records, time_ms = _native.read_batch_file(_file_bytes(data), encoding)
    return BatchFile(
        encoding=enc,
        prefix=prefix,
        flush=flush,
        records=tuple(
            BatchRecord(
                "put" if is_put else "del",
                key,
                value,
                create,
                replace,
                version,
                line,
                _seconds(ttl_ms),
                keep,
            )
            for (is_put, key, value, create, replace, version, ttl_ms, keep), line in records
        ),
        time=None if time_ms is None else time_ms / 1000,
    )


@dataclass(frozen=True)
class Counter:
    """Outcomes of one command."""

    ok: int
    failed: int


@dataclass(frozen=True)
class Stats:
    """Per-command counters of this namespace (``NFKV_SO_GET_STATS``).

    ``set`` is keyed by ``put``, ``del``, ``flush``, ``batch``; ``get`` by
    ``info``, ``value``, ``list``, ``stats`` (as ``nfkv --json stats``).
    """

    set: Mapping[str, Counter]
    get: Mapping[str, Counter]


class Batch:
    """Puts and deletes applied all or nothing, in order, by one request.

    Made by :meth:`Table.batch`. As a context manager it applies on a
    normal exit and discards everything if the block raises::

        with table.batch() as b:
            b.put("a", "1")
            b.delete("b")

    Each operation's condition sees the earlier ones' effects. If one fails
    (:class:`ConditionError`, :class:`KeyError`, ...) the table is unchanged.
    """

    def __init__(self, conn: _native.Connection) -> None:
        self._conn = conn
        self._ops: List[
            Tuple[bool, bytes, bytes, bool, bool, Optional[int], Optional[int], bool]
        ] = []
        self._flush = False
        self._done = False

    def put(
        self,
        key: BytesLike,
        value: BytesLike,
        *,
        create: bool = False,
        replace: bool = False,
        if_version: Optional[int] = None,
        ttl: Optional[TtlLike] = None,
        keep_ttl: bool = False,
    ) -> None:
        """Adds a put; the conditions and ``ttl``, ``keep_ttl`` are those of
        :meth:`Table.put`. Every TTL of a batch counts from the same moment."""
        version = _condition(create, replace, if_version)
        ttl_ms = _ttl_ms(ttl)
        self._check_open()
        self._ops.append(
            (
                True,
                _bytes(key, "key"),
                _bytes(value, "value"),
                bool(create),
                bool(replace),
                version,
                ttl_ms,
                bool(keep_ttl),
            )
        )

    def delete(self, key: BytesLike, *, if_version: Optional[int] = None) -> None:
        """Adds a delete (the key must exist, with ``if_version`` if given)."""
        version = _version(if_version)
        self._check_open()
        self._ops.append((False, _bytes(key, "key"), b"", False, False, version, None, False))

    def flush(self) -> None:
        """Empties the table before the batch's operations (wherever called)."""
        self._check_open()
        self._flush = True

    def __len__(self) -> int:
        """Number of operations added so far."""
        return len(self._ops)

    def _check_open(self) -> None:
        if self._done:
            raise ValueError("this batch was already applied or discarded")

    def apply(self) -> None:
        """Sends the batch now; the batch is finished afterwards either way."""
        self._check_open()
        self._done = True
        if self._ops or self._flush:
            self._conn.apply(self._ops, self._flush)

    def discard(self) -> None:
        """Drops every operation; nothing is sent."""
        self._done = True
        self._ops.clear()

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None:
            self.apply()
        else:
            self.discard()


class Table:
    """This network namespace's nfkv table, over one socket.

    Made by :func:`open`. Safe to share between threads. Also a mapping of
    bytes to bytes: ``t[k]``, ``t[k] = v``, ``del t[k]``, ``k in t``,
    ``len(t)`` and iteration over the keys (in key order). Use it as a
    context manager to close the socket at the end.
    """

    def __init__(self, conn: _native.Connection) -> None:
        self._conn = conn

    # --- connection -----------------------------------------------------

    @property
    def optbase(self) -> int:
        """The optname base in use."""
        return self._conn.optbase

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._conn.closed

    def close(self) -> None:
        """Closes the socket; later calls raise :class:`ValueError`."""
        self._conn.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"optbase={self.optbase}"
        return f"<nfkv.Table {state}>"

    # --- commands -------------------------------------------------------

    def put(
        self,
        key: BytesLike,
        value: BytesLike,
        *,
        create: bool = False,
        replace: bool = False,
        if_version: Optional[int] = None,
        ttl: Optional[TtlLike] = None,
        keep_ttl: bool = False,
    ) -> None:
        """Stores ``value`` under ``key``.

        ``create=True``: only if the key is absent (else
        :class:`ConditionError`, ``EEXIST``). ``replace=True``: only if present
        (else :class:`KeyError`). ``if_version=N``: only if the entry has
        version ``N`` (else :class:`ConditionError`, ``ESTALE``, or
        :class:`KeyError` when absent). ``create`` excludes the other two.

        ``ttl``: the entry expires that long after the write — seconds (int
        or float) or a :class:`datetime.timedelta`, rounded up to whole
        milliseconds, from 1 ms to :data:`MAX_TTL` (about 49.7 days); from
        then on it is absent (``get`` raises :class:`KeyError`, ``create``
        succeeds). Without it the entry never expires, also where it
        replaces one that would have. ``keep_ttl=True``: where the key is
        present, the entry keeps that one's expiry (or its lack of one);
        ``ttl`` then applies only where the key is absent.
        """
        version = _condition(create, replace, if_version)
        self._conn.put(
            _bytes(key, "key"),
            _bytes(value, "value"),
            bool(create),
            bool(replace),
            version,
            _ttl_ms(ttl),
            bool(keep_ttl),
        )

    @overload
    def get(self, key: BytesLike) -> bytes: ...

    @overload
    def get(self, key: BytesLike, default: _T) -> Union[bytes, _T]: ...

    def get(self, key: BytesLike, default: object = _MISSING) -> object:
        """The value of ``key``; :class:`KeyError` if absent, unless a
        ``default`` is given (then that is returned)."""
        try:
            return self._conn.get(_bytes(key, "key"))[1]
        except KeyError:
            if default is _MISSING:
                raise
            return default

    def get_versioned(self, key: BytesLike) -> Tuple[int, bytes]:
        """``(version, value)`` of ``key``; :class:`KeyError` if absent."""
        version, value, _ttl = self._conn.get(_bytes(key, "key"))
        return version, value

    def get_entry(self, key: BytesLike) -> Entry:
        """The :class:`Entry` of ``key``: value, version and time left;
        :class:`KeyError` if absent (or expired)."""
        data = _bytes(key, "key")
        version, value, ttl_ms = self._conn.get(data)
        return Entry(data, value, version, _seconds(ttl_ms))

    def ttl(self, key: BytesLike) -> Optional[float]:
        """Seconds ``key``'s entry has left (to the millisecond, rounded
        up), or None if it never expires; :class:`KeyError` if absent."""
        return _seconds(self._conn.get(_bytes(key, "key"))[2])

    def delete(self, key: BytesLike, *, if_version: Optional[int] = None) -> None:
        """Removes ``key`` (:class:`KeyError` if absent); with ``if_version``,
        only if the entry has that version (else :class:`ConditionError`)."""
        self._conn.delete(_bytes(key, "key"), _version(if_version))

    def flush(self) -> None:
        """Removes every entry."""
        self._conn.flush()

    def info(self) -> Info:
        """The module's limits and this namespace's usage."""
        fixed, budget = self._conn.info()
        return Info(*fixed, *budget)

    def stats(self) -> Stats:
        """Per-command ok/failed counters of this namespace."""
        set_counters, get_counters = self._conn.stats()

        def named(names: Tuple[str, ...], counters: List[Tuple[int, int]]) -> Mapping[str, Counter]:
            return MappingProxyType({n: Counter(*c) for n, c in zip(names, counters)})

        return Stats(set=named(_SET_COMMANDS, set_counters), get=named(_GET_COMMANDS, get_counters))

    def items(self, prefix: BytesLike = b"", consistent: bool = False) -> Iterator[Tuple[bytes, bytes]]:
        """``(key, value)`` pairs with keys starting with ``prefix``, in key order.

        Lazy: pages are fetched from the module as the iteration reaches
        them, so pages may come from different generations of a changing
        table. ``consistent=True`` reads the whole listing from one
        generation instead (restarting while the table changes) when the
        iteration starts, then yields from it.
        """
        return self._items(_bytes(prefix, "prefix"), bool(consistent))

    def _items(self, prefix: bytes, consistent: bool) -> Iterator[Tuple[bytes, bytes]]:
        for key, value, _version_, _ttl in self._raw_entries(prefix, consistent):
            yield key, value

    def entries(self, prefix: BytesLike = b"", consistent: bool = False) -> Iterator[Entry]:
        """The :class:`Entry` (key, value, version, time left) of each key
        starting with ``prefix``, in key order; lazy or ``consistent`` as
        :meth:`items`."""
        return (
            Entry(key, value, version, _seconds(ttl_ms))
            for key, value, version, ttl_ms in self._raw_entries(
                _bytes(prefix, "prefix"), bool(consistent)
            )
        )

    def _raw_entries(
        self, prefix: bytes, consistent: bool
    ) -> Iterator[Tuple[bytes, bytes, int, Optional[int]]]:
        if consistent:
            _generation, entries = self._conn.snapshot(prefix)
            yield from entries
            return
        after = b""
        while True:
            _generation, entries, more = self._conn.list_page(prefix, after)
            yield from entries
            if not more or not entries:
                return
            after = entries[-1][0]

    def keys(self, prefix: BytesLike = b"", consistent: bool = False) -> Iterator[bytes]:
        """The keys starting with ``prefix``, in key order (as :meth:`items`)."""
        return (key for key, _value in self.items(prefix, consistent))

    def batch(self) -> Batch:
        """A :class:`Batch`; use it as a context manager (see there)."""
        return Batch(self._conn)

    def save(self, prefix: BytesLike = b"", *, encoding: str = "text") -> bytes:
        """The entries with keys starting with ``prefix`` as a save file,
        byte for byte what ``nfkv save`` writes: one consistent snapshot, keys
        and values in ``encoding`` (``"text"``, ``"hex"``, ``"base64"``).
        :meth:`restore` reads it back exactly."""
        return self._conn.save(_bytes(prefix, "prefix"), encoding)

    def restore(
        self, data: FileLike, *, flush: bool = False, encoding: Optional[str] = None
    ) -> Restored:
        """Applies a batch or save file (its bytes, or a path), as ``nfkv
        restore`` does: all or nothing when it fits one batch request, else
        in several, in file order.

        ``flush=True`` empties the table first (for a save of a prefix: only
        the keys under it). ``encoding`` as for :func:`read_batch_file`. A
        file that cannot be read raises :class:`ValueError`; a refused
        request the exception of its cause (:class:`ConditionError`,
        :class:`NoSpaceError`, ...), whose message says which records were
        applied when the restore took several requests.

        A save records each entry's time left and when it was taken: the
        entries get that time less the time since, and those that expired
        in between are left out (counted in the :class:`Restored` returned).
        """
        return Restored(*self._conn.restore(_file_bytes(data), bool(flush), encoding))

    def watch(
        self,
        prefix: BytesLike = b"",
        *,
        since: Optional[int] = None,
        values: bool = False,
        timeout: Optional[TtlLike] = None,
    ) -> Iterator[Change]:
        """The table's changes as they happen, each a :class:`Change`, in
        generation order: puts, deletes, expiries of keys starting with
        ``prefix``, and flushes. Iterating waits for the next change (the
        GIL released); Ctrl-C raises :class:`KeyboardInterrupt` during the
        wait.

        ``since``: start after that generation (default: the table's
        generation when ``watch`` is called, so every later change is
        seen). ``values=True``: each put carries its value where the entry
        still holds it. ``timeout`` (seconds, or a
        :class:`datetime.timedelta`): the iteration ends when no change came
        for that long; None: never.

        The module keeps the latest changes in a log of ``watch_log_kib``
        KiB. When it no longer holds the changes after the watch's
        generation, the iteration yields a ``"resync"`` change at generation
        G, then every entry under ``prefix`` of a snapshot of the table at G
        as a put (values only with ``values=True``), then goes on from G: a
        key under ``prefix`` absent from the snapshot was deleted.
        """
        if since is not None:
            _int_in("since", since, 0, (1 << 64) - 1)
        native = self._conn.watch(_bytes(prefix, "prefix"), since, bool(values), _timeout(timeout))
        return self._changes(native)

    def _changes(self, native: _native.Watch) -> Iterator[Change]:
        while True:
            if self.closed:
                raise ValueError("operation on a closed nfkv table")
            item = native.next()
            if item is None:
                return
            kind, generation, last, key, value = item
            yield Change(generation, last, kind, key, value)

    # --- classifiers ----------------------------------------------------

    def add_classifier(
        self,
        name: str,
        *,
        hook: str,
        match: str,
        prefix: BytesLike,
        family: str = "inet",
        priority: int = 0,
        ipv4_bits: int = 0,
        ipv6_bits: int = 0,
    ) -> None:
        """Adds a classifier: the table in the packet path (README.md,
        "Classifying packets"; docs/ABI.md, "Classifiers").

        At netfilter hook ``hook`` (``"prerouting"``, ``"input"``,
        ``"forward"``, ``"output"``, ``"postrouting"``), for packets of
        ``family`` (``"inet"``: IPv4 and IPv6, ``"ip"``, ``"ip6"``), it looks
        up ``prefix`` followed by what it ``match``-es: ``"saddr"``,
        ``"daddr"`` (the address; with ``ipv4_bits``/``ipv6_bits`` only its
        first bits, one entry per subnet) or ``"dport"`` (the transport
        protocol and destination port), and applies the entry there (see
        :meth:`add_element`). A hook's classifiers run by ascending
        ``priority``, then by name.

        :class:`ConditionError` (``EEXIST``) if one of that name exists,
        :class:`NoSpaceError` (``limit`` ``"NFKV_MAX_CLASSIFIERS"``) if the
        namespace has 16, :class:`ValueError` for a bad argument or if a
        value under ``prefix`` is no action.
        """
        for what, value in (("name", name), ("hook", hook), ("match", match), ("family", family)):
            if not isinstance(value, str):
                raise TypeError(f"{what} must be a str, not {type(value).__name__}")
        _int_in("priority", priority, -(1 << 31), (1 << 31) - 1)
        _int_in("ipv4_bits", ipv4_bits, 0, 32)
        _int_in("ipv6_bits", ipv6_bits, 0, 128)
        self._conn.add_classifier(
            name, family, hook, match, _bytes(prefix, "prefix"), priority, ipv4_bits, ipv6_bits
        )

    def delete_classifier(self, name: str) -> None:
        """Removes classifier ``name`` (its entries stay in the table);
        :class:`KeyError` if there is none."""
        self._conn.delete_classifier(_str(name, "name"))

    def classifiers(self) -> List[Dict[str, Any]]:
        """The classifiers, in the order packets see them: dicts with the
        keys of ``nfkv --json classifier list``: ``name``, ``family``,
        ``hook``, ``match``, ``prefix`` (bytes), ``priority``, ``ipv4_bits``,
        ``ipv6_bits`` and ``counters`` (``packets``, ``unkeyed``, ``drop``,
        ``accept``, ``mark``)."""
        return [
            {
                "name": name,
                "family": family,
                "hook": hook,
                "match": match,
                "prefix": prefix,
                "priority": priority,
                "ipv4_bits": ipv4_bits,
                "ipv6_bits": ipv6_bits,
                "counters": dict(zip(_COUNTERS, counters)),
            }
            for name, family, hook, match, prefix, priority, ipv4_bits, ipv6_bits, counters in (
                self._conn.classifiers()
            )
        ]

    def add_element(
        self,
        name: str,
        target: str,
        action: str,
        *,
        ttl: Optional[TtlLike] = None,
        keep_ttl: bool = False,
    ) -> None:
        """Puts ``action`` for ``target`` under classifier ``name``,
        replacing the target's action if it had one. ``ttl`` and
        ``keep_ttl`` as for :meth:`put`: an element with a ``ttl`` expires,
        as an ipset element with a timeout (``ttl=600`` blocks an address
        for ten minutes).

        ``target``: ``"192.0.2.7"``, ``"2001:db8::1"``, ``"10.1.2.0/24"``
        (the length must be the classifier's ``ipv4_bits``/``ipv6_bits``),
        or for a ``"dport"`` classifier ``"tcp/80"``, ``"udp/53"``,
        ``"sctp/…"``, ``"udplite/…"``, ``"dccp/…"``. ``action``: ``"drop"``,
        ``"accept"``, ``"mark 0x10"`` or ``"mark 0x10/0xff"`` (mark and
        mask; the mark's bits must lie inside the mask). :class:`KeyError`
        if there is no such classifier, :class:`ValueError` for a bad target
        or action.
        """
        self._conn.add_element(
            _str(name, "name"),
            _str(target, "target"),
            _str(action, "action"),
            _ttl_ms(ttl),
            bool(keep_ttl),
        )

    def delete_element(self, name: str, target: str) -> None:
        """Removes ``target``'s entry under classifier ``name``;
        :class:`KeyError` if there is no such classifier or entry."""
        self._conn.delete_element(_str(name, "name"), _str(target, "target"))

    def elements(self, name: str) -> List[Tuple[str, str]]:
        """``(target, action)`` of each entry of classifier ``name``, in key
        order, as text that :meth:`add_element` takes back (a subnet as
        ``"10.1.2.0/24"``, a mark as ``"mark 0x10"`` or ``"mark
        0x10/0xff"``); :class:`KeyError` if there is no such classifier."""
        return self._conn.elements(_str(name, "name"))

    # --- mapping protocol -----------------------------------------------

    def __getitem__(self, key: BytesLike) -> bytes:
        return self.get(key)

    def __setitem__(self, key: BytesLike, value: BytesLike) -> None:
        self.put(key, value)

    def __delitem__(self, key: BytesLike) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray, memoryview, str)):
            return False
        data = _bytes(key, "key")
        if not 1 <= len(data) <= MAX_KEY_LEN:
            return False  # no such key can be stored
        try:
            self._conn.get(data)
        except KeyError:
            return False
        return True

    def __len__(self) -> int:
        return self.info().entries

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()


def open(optbase: Optional[int] = None) -> Table:  # noqa: A001 - the issue's name
    """Opens this network namespace's table.

    ``optbase`` is the module's optname base; None means ``$NFKV_OPTBASE``,
    else ``/sys/module/nfkv/parameters/optbase``, else the default 2048.
    Raises :class:`NotLoadedError` when nothing serves that range,
    :class:`PermissionError` without ``CAP_NET_ADMIN``.
    """
    if optbase is not None and (isinstance(optbase, bool) or not isinstance(optbase, int)):
        raise TypeError(f"optbase must be an int or None, not {type(optbase).__name__}")
    if optbase is not None and not 0 <= optbase < 1 << 31:
        raise ValueError(f"optbase must be 0..2**31-17, not {optbase}")
    return Table(_native.connect(optbase))
