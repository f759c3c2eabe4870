"""Who may tap what: the one rule of the CLI, the HTTP tap and the console's tap page."""

from __future__ import annotations

import pytest

from shopflow.access import Permission, Principal, Role
from shopflow.taps.access import NotTappable, missing_permission, tappable


def principal(*permissions: Permission) -> Principal:
    return Principal("u-1", "ann@example.test", frozenset({Role.DATA}), frozenset(permissions))


@pytest.mark.parametrize("topic", ["_schemas", "__consumer_offsets", "connect-configs", "orders.dlq.dlq"])
def test_internal_topics_are_not_tappable(topic):
    with pytest.raises(NotTappable, match="orders.dlq"):
        tappable(topic)


def test_catalog_topics_and_their_dead_letter_topics_are():
    assert tappable("orders").name == "orders" and tappable("orders.dlq").name == "orders.dlq"


def test_a_tap_needs_taps_read_and_unmasked_taps_unmask_too():
    assert missing_permission(principal(), unmask=False) == Permission.TAPS_READ
    assert missing_permission(principal(Permission.TAPS_READ), unmask=False) is None
    assert missing_permission(principal(Permission.TAPS_READ), unmask=True) == Permission.TAPS_UNMASK
    assert missing_permission(principal(Permission.TAPS_UNMASK), unmask=True) == Permission.TAPS_READ
    assert missing_permission(principal(Permission.TAPS_READ, Permission.TAPS_UNMASK), unmask=True) is None
