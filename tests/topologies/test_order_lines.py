"""The order-lines rule (``topologies.orders.lines_problem``): one rule for the edge, checkout and the agent."""

from __future__ import annotations

import pytest

from shopflow.api.schemas import MAX_LINES, MAX_QUANTITY
from shopflow.topologies.orders import MAX_LINE_QUANTITY, MAX_ORDER_LINES, lines_problem


def skus(n: int) -> list[tuple[str, int]]:
    return [(f"SKU-{i}", 1) for i in range(n)]


@pytest.mark.parametrize("lines,problem", [
    (skus(1), None),
    (skus(MAX_ORDER_LINES), None),
    ([("A", MAX_LINE_QUANTITY)], None),
    ([("A", 600), ("A", 400)], None),  # one sku in two lines: one line of 1000
    ([], "at least one line"),
    ([("A", 0)], "at least 1"),
    ([("A", -2), ("B", 1)], "A: quantity"),
    (skus(MAX_ORDER_LINES + 1), f"at most {MAX_ORDER_LINES} lines"),
    ([*skus(MAX_ORDER_LINES), ("SKU-0", 5)], None),  # a repeated sku is not another line
    ([("A", MAX_LINE_QUANTITY + 1)], f"at most {MAX_LINE_QUANTITY} units"),
    ([("B", 600), ("A", 1), ("B", 401)], "too many of B"),
])
def test_lines_problem(lines, problem):
    found = lines_problem(lines)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_the_edge_publishes_the_same_limits():
    assert (MAX_LINES, MAX_QUANTITY) == (MAX_ORDER_LINES, MAX_LINE_QUANTITY)
