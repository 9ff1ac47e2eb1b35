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

    ``errno`` is ``EEXIST`` (``create=True`` on a present key) or ``ESTALE``
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
    """The table holds ``max_entries`` entries already (``ENOSPC``)."""


__all__ = ["ConditionError", "NoSpaceError", "NotLoadedError"]

# Shown as nfkv.X in tracebacks and reprs: that is where users import them.
for _cls in (NotLoadedError, ConditionError, NoSpaceError):
    _cls.__module__ = "nfkv"
