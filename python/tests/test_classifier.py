"""Classifiers and their elements: Table.add_classifier & co."""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import Iterator

import pytest

import nfkv

# struct nfkv_action: action, mark, mask, reserved (host byte order).
DROP = struct.pack("=IIII", 1, 0, 0, 0)
ACCEPT = struct.pack("=IIII", 2, 0, 0, 0)


def _delete_all(t: nfkv.Table) -> None:
    for c in t.classifiers():
        t.delete_classifier(c["name"])


@pytest.fixture
def cls_table(table: nfkv.Table) -> Iterator[nfkv.Table]:
    """The emptied table, with no classifier before and after the test
    (deleted before the table fixture flushes)."""
    _delete_all(table)
    yield table
    if not table.closed:
        _delete_all(table)


def test_add_list_delete(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("bl", hook="input", match="saddr", prefix=b"bl/")
    t.add_classifier(
        "steer", hook="prerouting", match="daddr", prefix="st/", family="ip", priority=-5,
        ipv4_bits=24,
    )
    got = t.classifiers()
    assert sorted(c["name"] for c in got) == ["bl", "steer"]
    by_name = {c["name"]: c for c in got}
    steer, bl = by_name["steer"], by_name["bl"]
    assert {k: v for k, v in steer.items() if k != "counters"} == {
        "name": "steer",
        "family": "ip",
        "hook": "prerouting",
        "match": "daddr",
        "prefix": b"st/",
        "priority": -5,
        "ipv4_bits": 24,
        "ipv6_bits": 0,
    }
    assert (bl["family"], bl["hook"], bl["match"], bl["prefix"]) == ("inet", "input", "saddr", b"bl/")
    for c in got:
        assert sorted(c["counters"]) == ["accept", "drop", "mark", "packets", "unkeyed"]
        assert all(isinstance(v, int) and v >= 0 for v in c["counters"].values())
    t.delete_classifier("steer")
    assert [c["name"] for c in t.classifiers()] == ["bl"]
    with pytest.raises(KeyError, match="no classifier named steer"):
        t.delete_classifier("steer")


def test_order_is_priority_then_name(cls_table: nfkv.Table) -> None:
    for name, priority in [("b", 0), ("a", 0), ("z", -1), ("c", 7)]:
        cls_table.add_classifier(name, hook="input", match="saddr", prefix=name + "/", priority=priority)
    assert [c["name"] for c in cls_table.classifiers()] == ["z", "a", "b", "c"]


def test_a_second_classifier_of_a_name_is_refused(cls_table: nfkv.Table) -> None:
    cls_table.add_classifier("bl", hook="input", match="saddr", prefix="bl/")
    with pytest.raises(nfkv.ConditionError, match="a classifier named bl exists") as e:
        cls_table.add_classifier("bl", hook="output", match="daddr", prefix="other/")
    assert e.value.errno == errno.EEXIST


def test_at_most_16_classifiers(cls_table: nfkv.Table) -> None:
    for i in range(16):
        cls_table.add_classifier(f"c{i}", hook="input", match="saddr", prefix=f"c{i}/")
    with pytest.raises(nfkv.NoSpaceError, match="the namespace has 16 classifiers") as e:
        cls_table.add_classifier("c16", hook="input", match="saddr", prefix="c16/")
    assert e.value.errno == errno.ENOSPC
    assert e.value.limit == "NFKV_MAX_CLASSIFIERS"
    assert len(cls_table.classifiers()) == 16


def test_elements_are_entries_holding_actions(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("bl", hook="input", match="saddr", prefix="bl/")
    t.add_element("bl", "192.0.2.7", "drop")
    t.add_element("bl", "2001:db8::1", "accept")
    assert t.get(b"bl/\xc0\x00\x02\x07") == DROP
    assert t.get(b"bl/" + socket.inet_pton(socket.AF_INET6, "2001:db8::1")) == ACCEPT
    # In key order.
    assert t.elements("bl") == [("2001:db8::1", "accept"), ("192.0.2.7", "drop")]
    t.add_element("bl", "192.0.2.7", "accept")  # replaces
    assert ("192.0.2.7", "accept") in t.elements("bl")
    t.delete_element("bl", "192.0.2.7")
    assert t.elements("bl") == [("2001:db8::1", "accept")]
    with pytest.raises(KeyError, match="classifier bl has no element 192.0.2.7"):
        t.delete_element("bl", "192.0.2.7")
    # A batch changes them all at once; they are listed as elements.
    with t.batch() as b:
        b.put(b"bl/\x0a\x00\x00\x01", DROP)
        b.delete(b"bl/" + socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
    assert t.elements("bl") == [("10.0.0.1", "drop")]


def test_subnets_and_marks(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("steer", hook="prerouting", match="saddr", prefix="st/", ipv4_bits=24, ipv6_bits=64)
    t.add_element("steer", "10.1.2.0/24", "mark 0x10")
    t.add_element("steer", "10.9.0.0", "mark 0x10/0xff")
    t.add_element("steer", "2001:db8:0:1::/64", "mark 1/1")
    assert t.get(b"st/\x0a\x01\x02\x00") == struct.pack("=IIII", 3, 0x10, 0xFFFFFFFF, 0)
    assert t.elements("steer") == [
        ("10.1.2.0/24", "mark 0x10"),
        ("10.9.0.0/24", "mark 0x10/0xff"),
        ("2001:db8:0:1::/64", "mark 0x1/0x1"),
    ]
    with pytest.raises(ValueError, match="bits set past the first 24"):
        t.add_element("steer", "10.1.2.3/24", "drop")
    with pytest.raises(ValueError, match="/24, not /16"):
        t.add_element("steer", "10.1.0.0/16", "drop")


def test_ports(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("ports", hook="input", match="dport", prefix="pt/", family="ip")
    t.add_element("ports", "tcp/80", "drop")
    t.add_element("ports", "17/53", "accept")
    assert t.get(b"pt/\x06\x00\x50") == DROP
    assert t.elements("ports") == [("tcp/80", "drop"), ("udp/53", "accept")]
    with pytest.raises(ValueError, match="PROTO/PORT"):
        t.add_element("ports", "192.0.2.7", "drop")
    with pytest.raises(ValueError, match="0..=65535"):
        t.add_element("ports", "tcp/70000", "drop")
    with pytest.raises(ValueError, match="ipv4_bits and ipv6_bits apply to address matches"):
        t.add_classifier("p2", hook="input", match="dport", prefix="p2/", ipv4_bits=8)


def test_values_under_a_prefix_must_be_actions(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("bl", hook="input", match="saddr", prefix="bl/")
    with pytest.raises(ValueError, match="not a valid action"):
        t.put(b"bl/xxxx", b"somevalue")
    assert b"bl/xxxx" not in t
    with pytest.raises(ValueError, match="not a valid action"):
        with t.batch() as b:
            b.put(b"fine", b"1")
            b.put(b"bl/yyyy", DROP[:15])
    assert b"fine" not in t
    t.put(b"bl/zz", DROP)  # an action, even where no packet key lands
    assert t.elements("bl") == []
    # A classifier over a prefix holding another value is refused alike.
    t.put(b"later/x", b"junk")
    with pytest.raises(ValueError, match="not a valid action"):
        t.add_classifier("later", hook="input", match="saddr", prefix="later/")
    t.delete(b"later/x")
    t.add_classifier("later", hook="input", match="saddr", prefix="later/")


def test_bad_arguments(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("bl", hook="input", match="saddr", prefix="bl/")
    for kwargs, message in [
        (dict(hook="ingress", match="saddr"), 'unknown hook "ingress"'),
        (dict(hook="input", match="sport"), 'unknown match "sport"'),
        (dict(hook="input", match="saddr", family="ipv4"), 'unknown family "ipv4"'),
        (dict(hook="input", match="saddr", ipv4_bits=33), "ipv4_bits must be 0..32"),
    ]:
        with pytest.raises(ValueError, match=message):
            t.add_classifier("x", prefix="x/", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1..15 bytes"):
        t.add_classifier("much-too-long-name", hook="input", match="saddr", prefix="x/")
    with pytest.raises(ValueError, match="1..=64 bytes"):
        t.add_classifier("x", hook="input", match="saddr", prefix=b"")
    with pytest.raises(ValueError, match="not an address"):
        t.add_element("bl", "foo", "drop")
    with pytest.raises(ValueError, match="an action is drop"):
        t.add_element("bl", "192.0.2.8", "reject")
    with pytest.raises(ValueError, match="bits outside its mask"):
        t.add_element("bl", "192.0.2.8", "mark 0x10/0x0f")
    with pytest.raises(ValueError, match="matches addresses"):
        t.add_element("bl", "tcp/80", "drop")
    with pytest.raises(KeyError, match="no classifier named nosuch"):
        t.add_element("nosuch", "192.0.2.8", "drop")
    with pytest.raises(KeyError, match="no classifier named nosuch"):
        t.elements("nosuch")
    with pytest.raises(TypeError):
        t.add_element("bl", b"192.0.2.8", "drop")  # type: ignore[arg-type]
    assert t.elements("bl") == []


def test_a_dropped_packet_is_counted(cls_table: nfkv.Table) -> None:
    """UDP over loopback to a port a dport classifier drops at input."""
    t = cls_table
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(1.0)
        port = rx.getsockname()[1]
        try:
            tx.sendto(b"before", ("127.0.0.1", port))
            assert rx.recv(16) == b"before"
        except OSError as e:
            pytest.skip(f"no loopback here: {e}")
        t.add_classifier("lo", hook="input", match="dport", prefix="lo/", family="ip")
        t.add_element("lo", f"udp/{port}", "drop")
        tx.sendto(b"dropped", ("127.0.0.1", port))
        rx.settimeout(0.5)
        with pytest.raises(socket.timeout):
            rx.recv(16)
        (c,) = t.classifiers()
        assert c["counters"]["drop"] >= 1
        assert c["counters"]["packets"] >= c["counters"]["drop"]
        t.delete_element("lo", f"udp/{port}")
        tx.sendto(b"after", ("127.0.0.1", port))
        rx.settimeout(1.0)
        assert rx.recv(16) == b"after"


def test_elements_that_expire(cls_table: nfkv.Table) -> None:
    t = cls_table
    t.add_classifier("bl", hook="input", match="saddr", prefix="bl/")
    t.add_element("bl", "192.0.2.7", "drop", ttl=600)
    t.add_element("bl", "192.0.2.8", "drop", ttl=0.5)
    key = b"bl/\xc0\x00\x02\x07"
    left = t.ttl(key)
    assert left is not None and 599 < left <= 600
    t.add_element("bl", "192.0.2.7", "accept", keep_ttl=True)
    left = t.ttl(key)
    assert left is not None and 599 < left <= 600 and t.get(key) == ACCEPT
    with pytest.raises(ValueError, match="ttl must be positive"):
        t.add_element("bl", "192.0.2.9", "drop", ttl=0)
    time.sleep(1.0)
    assert t.elements("bl") == [("192.0.2.7", "accept")]
