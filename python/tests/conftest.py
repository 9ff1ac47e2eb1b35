"""Fixtures of the nfkv Python suite: runs where nfkv.ko is loaded (the VM)."""

from __future__ import annotations

from typing import Iterator

import pytest

import nfkv


@pytest.fixture
def table() -> Iterator[nfkv.Table]:
    """This namespace's table, emptied before and after the test."""
    with nfkv.open() as t:
        t.flush()
        yield t
        if not t.closed:
            t.flush()
