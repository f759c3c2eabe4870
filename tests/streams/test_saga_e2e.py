"""The saga over the real broker: 1,000 random orders through two workers, every invariant kept."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict

import pytest
from polling import eventually, until_quiet

from shopflow.streams.audit import audit
from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader, read_changelog
from shopflow.tables import INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE

pytestmark = pytest.mark.integration

ORDERS = 1000
TERMINAL = {"OrderConfirmed", "OrderCancelled"}


def _collect_until(reader: TopicReader, done, timeout_s: float, quiet_s: float = 3.0) -> list:
    """Read until ``done(events)`` holds and then nothing new arrives for ``quiet_s`` (compensations settle)."""
    events: list = []

    def read() -> int:
        events.extend(reader.poll(0.5))  # the poll waits for records itself: no pause between reads
        return len(events)

    def read_until_done() -> bool:
        read()
        assert done(events), f"not done: {Counter(r for _, r, _, _ in events)}"
        return True

    started = time.monotonic()
    eventually(read_until_done, timeout_s, interval_s=0)
    until_quiet(read, quiet_s, timeout_s - (time.monotonic() - started), interval_s=0,
                what=f"no new record for {quiet_s:g}s")
    return events


def test_a_thousand_random_orders_keep_every_invariant(stack, saga_workers, codec):
    rng = random.Random(20261125)
    run = uuid.uuid4().hex[:8]
    seeded = {f"{run}-SKU-{i:02d}": rng.choice([0, 20, 60, 150, 300]) for i in range(25)}
    client = SagaClient(stack, codec)
    reader = TopicReader(stack, codec, SAGA_TOPICS, from_end=True)
    client.seed_stock(seeded)

    order_ids = []
    for n in range(ORDERS):
        order_id = f"{run}-o{n:04d}"
        skus = rng.sample(sorted(seeded), rng.randint(1, 3))
        token = rng.choices(["tok_approve", "tok_decline", "tok_insufficient"], [8, 1, 1])[0]
        client.place(order_id, [(sku, rng.randint(1, 3), rng.randint(100, 5000)) for sku in skus], token)
        order_ids.append(order_id)
    client.flush()

    def all_terminal(events) -> bool:
        return len({v["order_id"] for _, r, v, _ in events if r in TERMINAL}) >= ORDERS

    events = _collect_until(reader, all_terminal, timeout_s=300)
    reader.close()
    client.close()
    mine = [(r, v) for _, r, v, _ in events if str(v.get("order_id", v.get("sku", ""))).startswith(run)]
    stock = read_changelog(stack, INVENTORY_TABLE, keep=lambda k: k.startswith(run))
    payments = read_changelog(stack, PAYMENTS_TABLE, keep=lambda k: k.startswith(run))

    orders = read_changelog(stack, ORDERS_TABLE, keep=lambda k: k.startswith(run))
    report = audit(mine, stock, payments, now_ms=int(time.time() * 1000), stuck_after_ms=10**9, orders=orders)

    assert report.violations == [], report.render()
    assert sum(report.orders.values()) == ORDERS, report.render()
    assert report.orders["CONFIRMED"] > 0, report.render()
    assert report.orders["CANCELLED(OUT_OF_STOCK)"] > 0, report.render()
    assert report.orders["CANCELLED(PAYMENT_FAILED)"] > 0, report.render()
    # Stock conserved: what is on hand plus what confirmed orders took is what was seeded.
    taken = defaultdict(int)
    confirmed = {v["order_id"] for r, v in mine if r == "OrderConfirmed"}
    for r, v in mine:
        if r == "CommitStock" and v["order_id"] in confirmed:
            taken[v["sku"]] += v["quantity"]
    for sku, units in seeded.items():
        state = stock.get(sku, {"on_hand": 0, "reserved": 0})
        assert state["on_hand"] + taken[sku] == units, (sku, state, taken[sku], units)
        assert state["reserved"] == 0, (sku, state)
    assert all(p["charges"] <= 1 for p in payments.values())
