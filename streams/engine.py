"""The wiring of the agents: which topics each consumes, which table it owns, which handler it runs.

``ROUTES`` is the one place that says it; the Faust worker (streams/app.py) and the replay harness
(streams/replay.py) both run typed records through ``Engine.apply``, so a scenario replayed without a
broker exercises the same code as the workers. Each route names its step: the call of its agent's
pure handler with what that handler needs (the engine's settings, a settled row).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shopflow.schemas.records import AvroRecord
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

# Reads the route's table in the record's partition: the stored dict of a key, or None.
Load = Callable[[str], "dict[str, Any] | None"]
# One record through its agent: (engine, the entity's state or None, record, load, now ms, offset).
Step = Callable[["Engine", Any, Any, Load, int, "int | None"], Awaitable[Result]]


async def _orders(engine: Engine, state: OrderState | None, record: Any, load: Load, now_ms: int,
                  offset: int | None) -> Result:
    return handle_order(state, record, now_ms, engine.timeouts)


async def _inventory(engine: Engine, state: StockState | None, record: Any, load: Load, now_ms: int,
                     offset: int | None) -> Result:
    """``offset`` lets the inventory know a record delivered again after a crash; the settled row of the
    request's order line is read here and written after the sku's own value."""
    line = row_key(record)
    stored_row = load(line) if line else None
    result = handle_stock(state, Reservation.from_dict(stored_row) if stored_row else None, record, now_ms, offset,
                          engine.low_stock_threshold)
    if line is not None and result.row is not None:
        result.writes[line] = result.row.to_dict()
    return result


async def _payments(engine: Engine, state: PaymentState | None, record: Any, load: Load, now_ms: int,
                    offset: int | None) -> Result:
    return await handle_payment(state, record, engine.gateway, now_ms)


async def _carts(engine: Engine, state: CartState | None, record: Any, load: Load, now_ms: int,
                 offset: int | None) -> Result:
    return handle_cart(state, record, now_ms, int(engine.cart_idle_s * 1000))


async def _new_skus(engine: Engine, state: None, record: Any, load: Load, now_ms: int,
                    offset: int | None) -> Result:
    return Result(outputs=stock_for_new_product(record))


@dataclass(frozen=True)
class Route:
    agent: str
    topics: tuple[Topic, ...]
    table: TableSpec | None
    doc: str
    step: Step
    state_type: type[OrderState | StockState | PaymentState | CartState] | None = None


ORDERS_ROUTE = Route("orders", (ORDER_COMMANDS, STOCK_RESULTS, PAYMENT_RESULTS), ORDERS_TABLE,
                     "each order's saga: commands, inventory answers, payment outcomes", _orders, OrderState)
INVENTORY_ROUTE = Route("inventory", (STOCK_REQUESTS,), INVENTORY_TABLE, "each sku's stock, its only writer",
                        _inventory, StockState)
PAYMENTS_ROUTE = Route("payments", (PAYMENT_REQUESTS,), PAYMENTS_TABLE, "charges and refunds through the gateway",
                       _payments, PaymentState)
LISTING_ROUTE = Route("new-skus", (CATALOG_PRODUCTS,), None, "a sku new to the catalog gets zero stock", _new_skus)
CARTS_ROUTE = Route("carts", (CART_COMMANDS, CART_EVENTS), CARTS_TABLE, "each cart's items, expiry and checkout",
                    _carts, CartState)
ROUTES = (ORDERS_ROUTE, INVENTORY_ROUTE, PAYMENTS_ROUTE, LISTING_ROUTE, CARTS_ROUTE)


def route_for(topic_name: str) -> Route | None:
    """The route consuming a topic; None for a topic no agent of the worker consumes."""
    for route in ROUTES:
        if any(t.name == topic_name for t in route.topics):
            return route
    return None


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
    low_stock_threshold: int | None = None  # the shop's default (settings); None: no LowStock events

    async def apply(self, route: Route, record: AvroRecord, load: Load | None, now_ms: int,
                    offset: int | None = None) -> Result:
        """``offset``: the record's offset in its partition, which the inventory keeps to know a record
        delivered again after a crash."""
        if route.table is None or route.state_type is None or load is None:
            return await route.step(self, None, record, _no_table, now_ms, offset)
        key = self.key_of(route, record)
        stored = load(key)
        state = route.state_type.from_dict(stored) if stored is not None else None
        result = await route.step(self, state, record, load, now_ms, offset)
        # The entity first, then the rows it settled: one changelog partition keeps them in that order.
        entity: dict[str, dict[str, Any] | None] = {}
        if result.state is not None:
            entity[key] = result.state.to_dict()
        elif result.duplicate and stored is not None:
            # Met before: its writes may have been lost with a crashed worker (a restarted worker's own
            # store can be ahead of the changelog), so the value it left is written again.
            entity[key] = stored
        if entity:
            result.writes = {**entity, **result.writes}
        return result

    @staticmethod
    def key_of(route: Route, record: AvroRecord) -> str:
        """The table key of a record: its field named as the route's table key (its topic's key)."""
        if route.table is None:
            raise KeyError(f"route {route.agent} has no table")
        key: str = getattr(record, route.table.key)
        return key


def _no_table(key: str) -> None:
    raise KeyError(f"a route without a table read {key!r}")
