"""Many entries, threads sharing a table, and an unprivileged caller."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from typing import List

import nfkv

N = 10_000


def test_iteration_over_10k_entries_is_lazy(table: nfkv.Table) -> None:
    with table.batch() as b:
        for i in range(N):
            b.put(b"k%05d" % i, b"value-%05d-" % i + b"x" * 20)
    assert len(table) == N
    it = table.items()
    first = next(it)
    assert first == (b"k00000", b"value-00000-" + b"x" * 20)
    # Sorts after every key: seen only if later pages are fetched later.
    table.put(b"zz-late", b"1")
    rest = list(it)
    keys = [first[0]] + [k for k, _ in rest]
    assert keys == [b"k%05d" % i for i in range(N)] + [b"zz-late"]
    assert all(v.startswith(b"value-" + k[1:] + b"-") for k, v in rest[:-1])
    assert sum(1 for _ in table) == N + 1
    assert sum(1 for _ in table.items(prefix=b"k0", consistent=True)) == N


def test_two_threads_share_one_table(table: nfkv.Table) -> None:
    errors: List[BaseException] = []

    def work(name: str) -> None:
        try:
            for i in range(1000):
                key = f"{name}/{i:04}"
                table[key] = key
                assert table[key] == key.encode()
                if i % 100 == 0:
                    assert sum(1 for _ in table.items(prefix=f"{name}/")) == i + 1
            with table.batch() as b:
                for i in range(0, 1000, 2):
                    b.delete(f"{name}/{i:04}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(table) == 1000
    assert list(table.keys("a/"))[:2] == [b"a/0001", b"a/0003"]


def test_gil_is_released_during_calls(table: nfkv.Table) -> None:
    """Another Python thread runs while this one waits in the kernel.

    The switch interval (1 s) is longer than a whole iteration, so a thread
    waiting for the GIL never forces this one to hand it over between
    `before` and `advanced.append`: the counter thread can only advance
    while the native call has released the GIL. (With a short interval it
    would get the GIL right after the call returns, released or not.)
    """
    with table.batch() as b:
        for i in range(N):
            b.put(b"k%05d" % i, b"x" * 100)
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    counter = threading.Thread(target=count)
    counter.start()
    advanced = []
    try:
        for _ in range(5):
            it = table.items(consistent=True)
            before = ticks
            next(it)  # one native call: the whole snapshot
            advanced.append(ticks - before)
    finally:
        stop.set()
        counter.join()
        sys.setswitchinterval(interval)
    assert all(n > 0 for n in advanced), advanced


def test_permission_error_as_nobody(table: nfkv.Table) -> None:
    """uid 65534 has no CAP_NET_ADMIN: opening and every call give EPERM."""
    table.put(b"secret", b"s")
    child = textwrap.dedent(
        """
        import os, nfkv
        t = nfkv.open()                  # opened as root, used as nobody
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        results = []
        for call in (nfkv.open, lambda: t.get(b"secret"), lambda: t.put(b"k", b"v"),
                     lambda: t.info(), lambda: list(t.items())):
            try:
                call()
                results.append("allowed")
            except PermissionError as e:
                results.append("EPERM" if e.errno == 1 else f"errno {e.errno}")
        print(" ".join(results))
        """
    )
    assert os.geteuid() == 0, "the suite runs as root in the VM"
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["EPERM"] * 5
    assert b"k" not in table


def test_close_while_another_thread_is_inside_a_call() -> None:
    """A call in flight when another thread closes the table finishes on
    its socket (a 65,536-record batch, seconds in the kernel under the test
    VM); later calls raise ValueError."""
    t = nfkv.open()
    t.flush()
    outcome: List[object] = []
    calling = threading.Event()

    def apply() -> None:
        try:
            with t.batch() as b:
                for i in range(65_536):
                    b.put(b"c%05d" % i, b"v")
                calling.set()
            outcome.append("applied")
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome.append(e)

    worker = threading.Thread(target=apply)
    worker.start()
    assert calling.wait(60)
    # The batch is being sent (the context manager's exit applies it).
    worker.join(0.05)
    in_flight = worker.is_alive()
    t.close()
    assert t.closed
    worker.join()
    assert outcome == ["applied"]
    try:
        t.get(b"c00000")
    except ValueError as e:
        assert "closed" in str(e)
    else:
        raise AssertionError("a call on a closed table succeeded")
    with nfkv.open() as check:
        assert len(check) == 65_536
        check.flush()
    # Under the test VM's emulated CPUs the batch spends seconds in the
    # kernel: close() came while it was there.
    assert in_flight, "the batch ended within 50 ms: close() raced nothing"


def test_close_while_another_thread_iterates() -> None:
    """An iteration whose table is closed under it raises ValueError at the
    next page it fetches, after yielding exactly the entries before it."""
    t = nfkv.open()
    t.flush()
    with t.batch() as b:
        for i in range(N):
            b.put(b"k%05d" % i, b"x" * 100)
    seen: List[bytes] = []
    outcome: List[object] = []
    first = threading.Event()
    closed = threading.Event()

    def iterate() -> None:
        try:
            for key, value in t.items():
                assert value == b"x" * 100
                seen.append(key)
                if len(seen) == 1:
                    first.set()
                    assert closed.wait(60)
            outcome.append("finished")
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome.append(e)

    worker = threading.Thread(target=iterate)
    worker.start()
    assert first.wait(60)
    t.close()
    closed.set()
    worker.join()
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    assert "closed" in str(outcome[0])
    # Exactly the first page, in order, then nothing.
    assert 1 < len(seen) < N
    assert seen == [b"k%05d" % i for i in range(len(seen))]
    with nfkv.open() as check:
        check.flush()
