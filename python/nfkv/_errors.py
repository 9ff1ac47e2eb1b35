"""The exceptions of :mod:`nfkv` besides Python's own.

A missing key raises :class:`KeyError`, a refused permission
:class:`PermissionError`, a request the library or module refuses as
malformed or too large :class:`ValueError`, and any other failure
:class:`OSError` with its ``errno``. The classes below are the nfkv-specific
ones; each is an :class:`OSError` carrying the module's errno.
"""

from __future__ import annotations

from typing import Optional


class NotLoadedError(OSError):
    """nfkv.ko is not loaded: nothing serves the optnames (``ENOPROTOOPT``)."""


class ConditionError(OSError):
    """A write's condition failed; nothing changed.

    ``errno`` is ``EEXIST`` (``create=True`` on a present key, or
    :meth:`Table.add_classifier` of a name in use) or ``ESTALE``
    (``if_version`` names another version).
    """

    #: The key of the failed single-key write (None for a batch).
    key: Optional[bytes] = None
    #: The version the caller asked for with ``if_version``, if any.
    expected_version: Optional[int] = None
    #: The entry's version read right after the failure, when it was known
    #: (None for a batch, or when the entry was gone by then).
    current_version: Optional[int] = None


class NoSpaceError(OSError):
    """A limit refused the write; nothing changed.

    ``limit`` names the module parameter that refused it, with its errno:
    ``"max_entries"`` (``ENOSPC``: the table is full), ``"max_bytes_mib"``
    (``EFBIG``: the table's keys and values would exceed it) or
    ``"userns_budget_mib"`` (``EDQUOT``: the budget shared by the tables of
    all unprivileged namespaces would be exceeded), or
    ``"NFKV_MAX_CLASSIFIERS"`` (``ENOSPC`` from :meth:`Table.add_classifier`:
    the namespace has 16 classifiers, a fixed limit). :meth:`Table.info`
    shows each table limit and its use.
    """

    #: The module parameter of the limit that refused the write.
    limit: str = ""


__all__ = ["ConditionError", "NoSpaceError", "NotLoadedError"]

# Shown as nfkv.X in tracebacks and reprs: that is where users import them.
for _cls in (NotLoadedError, ConditionError, NoSpaceError):
    _cls.__module__ = "nfkv"
