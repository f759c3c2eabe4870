"""Faust table definitions and their value types: orders, inventory and payments state.

Each table is declared once here with the topics that write it; a table is co-partitioned with
every topic that feeds it (same key, same partition count), so the agent that owns a partition of
the topic also owns that partition of the table. Values are stored as JSON dicts
(``tables.values``), on the RocksDB store in the workers and in the replay harness.
"""

from __future__ import annotations

from dataclasses import dataclass

from shopflow.topologies.catalog import (
    CART_COMMANDS,
    CART_EVENTS,
    ORDER_COMMANDS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    STOCK_REQUESTS,
    STOCK_RESULTS,
    Topic,
)

# The Faust app id: the workers' consumer group, and the prefix of the tables' changelog topics.
APP_ID = "shopflow"


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: str
    fed_by: tuple[Topic, ...]
    doc: str

    @property
    def partitions(self) -> int:
        counts = {t.partitions for t in self.fed_by}
        if len(counts) != 1 or any(t.key != self.key for t in self.fed_by):
            raise ValueError(f"table {self.name} is not co-partitioned with {[t.name for t in self.fed_by]}")
        return counts.pop()


ORDERS_TABLE = TableSpec(
    "orders", "order_id", (ORDER_COMMANDS, STOCK_RESULTS, PAYMENT_RESULTS),
    "Each order's saga state (tables.values.OrderState); written only by the orders agent.",
)
INVENTORY_TABLE = TableSpec(
    "inventory", "sku", (STOCK_REQUESTS,),
    "Each sku's stock and reservations (tables.values.StockState); the inventory agent is its only writer.",
)
PAYMENTS_TABLE = TableSpec(
    "payments", "order_id", (PAYMENT_REQUESTS,),
    "Each order's charge, refunds and history (tables.values.PaymentState); written by the payments agent.",
)

CARTS_TABLE = TableSpec(
    "carts", "cart_id", (CART_COMMANDS, CART_EVENTS),
    "Each cart's items and status (tables.values.CartState); written only by the carts agent.",
)

TABLES = (ORDERS_TABLE, INVENTORY_TABLE, PAYMENTS_TABLE, CARTS_TABLE)


def changelog_topic(spec: TableSpec) -> str:
    """Where Faust keeps a table's changelog (``<app id>-<table>-changelog``)."""
    return f"{APP_ID}-{spec.name}-changelog"
