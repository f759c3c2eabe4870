"""The wiring of the agents: which topics each consumes, which table it owns, what it runs.

``ROUTES`` is the one place that says it; the Faust worker (streams/app.py) and the replay harness
(streams/replay.py) both run records through ``Engine.apply``, so a scenario replayed without a
broker exercises the same code as the workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shopflow.streams.carts import handle_cart
from shopflow.streams.inventory import handle_stock, row_key, stock_for_new_product
from shopflow.streams.orders import handle_order
from shopflow.streams.payments import PaymentGateway, SimulatedGateway, handle_payment
from shopflow.streams.runtime import Result
from shopflow.tables import CARTS_TABLE, INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE, TableSpec
from shopflow.tables.values import CartState, OrderState, PaymentState, Reservation, StockState
from shopflow.topologies.catalog import (
    CART_COMMANDS,
    CART_EVENTS,
    CATALOG_PRODUCTS,
    ORDER_COMMANDS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    STOCK_REQUESTS,
    STOCK_RESULTS,
    Topic,
)


@dataclass(frozen=True)
class Route:
    agent: str
    topics: tuple[Topic, ...]
    table: TableSpec | None
    doc: str


ORDERS_ROUTE = Route("orders", (ORDER_COMMANDS, STOCK_RESULTS, PAYMENT_RESULTS), ORDERS_TABLE,
                     "each order's saga: commands, inventory answers, payment outcomes")
INVENTORY_ROUTE = Route("inventory", (STOCK_REQUESTS,), INVENTORY_TABLE, "each sku's stock, its only writer")
PAYMENTS_ROUTE = Route("payments", (PAYMENT_REQUESTS,), PAYMENTS_TABLE, "charges and refunds through the gateway")
LISTING_ROUTE = Route("new-skus", (CATALOG_PRODUCTS,), None, "a sku new to the catalog gets zero stock")
CARTS_ROUTE = Route("carts", (CART_COMMANDS, CART_EVENTS), CARTS_TABLE, "each cart's items, expiry and checkout")
ROUTES = (ORDERS_ROUTE, INVENTORY_ROUTE, PAYMENTS_ROUTE, LISTING_ROUTE, CARTS_ROUTE)

_STATE_TYPES = {"orders": OrderState, "inventory": StockState, "payments": PaymentState, "carts": CartState}


def route_for(topic_name: str) -> Route | None:
    """The route consuming a topic; None for a topic no agent of the worker consumes."""
    for route in ROUTES:
        if any(t.name == topic_name for t in route.topics):
            return route
    return None


def plain(value):
    """A decoded Avro value with uuids as strings and timestamps as epoch milliseconds, as handlers take them."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


Load = Callable[[str], "dict | None"]


@dataclass
class Engine:
    """Runs one decoded record through its agent's logic, against the state its table holds.

    ``load`` reads the route's table in the record's partition; the result's ``writes`` are the table
    changes to make (key -> value, None to delete), all in that partition, so the worker and the replay
    harness store exactly the same thing.
    """

    timeouts: Mapping[str, float] = field(default_factory=dict)
    gateway: PaymentGateway = field(default_factory=SimulatedGateway)
    cart_idle_s: float = 1800.0

    async def apply(self, route: Route, record: str, value: dict, load: Load, now_ms: int,
                    offset: int | None = None) -> Result:
        """``offset``: the record's offset in its partition, which the inventory keeps to know a record
        delivered again after a crash."""
        key = self.key_of(route, value)
        if route is LISTING_ROUTE:
            return Result(outputs=stock_for_new_product(record, value))
        stored = load(key)
        state = _STATE_TYPES[route.table.name].from_dict(stored) if stored is not None else None
        line = None
        if route is ORDERS_ROUTE:
            result = handle_order(state, record, value, now_ms, self.timeouts)
        elif route is INVENTORY_ROUTE:
            line = row_key(value)
            row = load(line) if line else None
            result = handle_stock(state, Reservation.from_dict(row) if row else None, record, value, now_ms, offset)
        elif route is PAYMENTS_ROUTE:
            result = await handle_payment(state, record, value, self.gateway, now_ms)
        elif route is CARTS_ROUTE:
            result = handle_cart(state, record, value, now_ms, int(self.cart_idle_s * 1000))
        else:
            raise KeyError(route.agent)
        # The entity first, then the row it settled: one changelog partition keeps them in that order.
        if result.state is not None:
            result.writes[key] = result.state.to_dict()
        elif result.duplicate and stored is not None:
            # Met before: its writes may have been lost with a crashed worker (a restarted worker's own
            # store can be ahead of the changelog), so the value it left is written again.
            result.writes[key] = stored
        if line is not None and result.row is not None:
            result.writes[line] = result.row.to_dict()
        return result

    @staticmethod
    def key_of(route: Route, value: dict) -> str | None:
        return value[route.table.key] if route.table else None
