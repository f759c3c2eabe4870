"""The saga under kill -9, on the real broker: two workers, ~2,000 orders, a worker killed at random
moments and restarted on its data dir; judged from the topics and the tables' changelogs.

Given stock over 20 skus (some sold out), orders in seven waves (declined cards, customer cancels,
retried commands, poison records), When a worker is killed -9 while each of six waves is in flight, Then every
order ends exactly once, no unit is left held or lost, nobody is charged twice, no approving order is
cancelled by a timeout, and the poison records are dead letters.

The session's two workers are restarted for this test with the saga's own step timeouts (30 s and
60 s: the suite's are seconds, shorter than a failover), and with the suite's again at the end.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from urllib.parse import urlparse

import pytest
from confluent_kafka import Consumer, Producer
from polling import eventually, until_quiet

from shopflow.streams.audit import audit
from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader, read_changelog
from shopflow.tables import INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE
from shopflow.topologies.catalog import ORDER_COMMANDS

pytestmark = pytest.mark.integration

ORDERS = 2000
KILLS = 6
TERMINAL = {"OrderConfirmed", "OrderCancelled"}


def _place_orders(client: SagaClient, run: str, numbers: range, skus: list[str], rng: random.Random,
                  placed: list) -> list[str]:
    """Orders with mostly approving cards, some declined, retries and cancels among them; their ids."""
    ids = []
    for n in numbers:
        order_id = f"{run}-o{n:04d}"
        token = rng.choices(["tok_approve", "tok_decline", "tok_insufficient"], [8, 1, 1])[0]
        lines = [(sku, rng.randint(1, 3), 1000) for sku in rng.sample(skus, rng.randint(1, 3))]
        client.place(order_id, lines, token)
        placed.append((order_id, token))
        ids.append(order_id)
        if n % 37 == 0:  # a client retrying its command: same order, a new event id
            client.place(order_id, lines, token)
        if n % 23 == 0:
            client.cancel(order_id)
    client.flush()
    return ids


def test_kill_9_at_random_moments_loses_leaks_and_breaks_nothing(stack, worker_factory, saga_workers, codec):
    ports = [urlparse(url).port for url in saga_workers]
    for port in ports:  # the saga's own timeouts: a failover must not cancel anything
        worker_factory.kill(port)
        worker_factory.start(port)
    worker_factory.wait_ready(ports)

    rng = random.Random(20261201)
    run = uuid.uuid4().hex[:8]
    seeded = {f"{run}-SKU-{i:02d}": rng.choice([0, 40, 150, 400]) for i in range(20)}
    client = SagaClient(stack, codec)
    reader = TopicReader(stack, codec, SAGA_TOPICS, from_end=True)
    client.seed_stock(seeded)
    poison = Producer({"bootstrap.servers": stack.bootstrap_servers})
    for i in range(5):
        poison.produce(ORDER_COMMANDS.name, key=f"{run}-poison-{i}".encode(), value=b"\x00\x00\x00\x00not avro")
    poison.flush(10)
    poison.close()

    events, ended, placed, kills = [], set(), [], []

    def read() -> int:
        for _, record, value, _ in (batch := reader.poll(0.2)):  # the poll waits for records itself
            if record in TERMINAL and value["order_id"].startswith(run):
                ended.add(value["order_id"])
        events.extend(batch)
        return len(events)

    def read_until(done, what: str, timeout_s: float = 180) -> None:
        def read_until_done() -> bool:
            if done():
                return True
            read()
            return done()

        eventually(read_until_done, timeout_s, interval_s=0, what=f"{what} (after {len(kills)} kills)")

    try:
        # The orders go in KILLS + 1 waves; while a wave is in flight, once a random share of it has
        # ended, a random worker is killed -9 and restarted on its data dir (the next wave then meets
        # a worker restarting, or the rebalance after it).
        waves = [range(ORDERS * i // (KILLS + 1), ORDERS * (i + 1) // (KILLS + 1)) for i in range(KILLS + 1)]
        for wave in waves:
            ids = _place_orders(client, run, wave, sorted(seeded), rng, placed)
            if len(kills) < KILLS:
                share = rng.uniform(0.05, 0.8)
                read_until(lambda ids=ids, share=share: sum(o in ended for o in ids) >= share * len(ids),
                           f"{share:.0%} of a wave")
                victim = rng.choice(ports)
                worker_factory.kill(victim)
                kills.append((victim, time.time()))
                worker_factory.start(victim)
        worker_factory.wait_ready(ports)
        read_until(lambda: len(ended) >= ORDERS, "every order's end", timeout_s=300)
        # Then until nothing has moved for 5 s: the compensations and settlements that follow an end.
        until_quiet(read, quiet_s=5, timeout_s=120, interval_s=0, what="the saga topics quiet after every end")
    finally:
        reader.close()
        client.close()

    mine = [(r, v) for _, r, v, _ in events if str(v.get("order_id") or v.get("sku") or "").startswith(run)]
    keep = lambda k: k.startswith(run)  # noqa: E731
    stock = read_changelog(stack, INVENTORY_TABLE, keep)
    orders = read_changelog(stack, ORDERS_TABLE, keep)
    payments = read_changelog(stack, PAYMENTS_TABLE, keep)
    report = audit(mine, stock, payments, now_ms=int(time.time() * 1000), stuck_after_ms=1, orders=orders)
    summary = f"{len(kills)} kills; {report.render()}"

    assert len(kills) >= 5
    assert report.violations == [], summary
    assert report.stuck == [] and sum(report.orders.values()) == ORDERS, summary  # nothing lost
    assert report.orders["CONFIRMED"] > 0 and report.orders["CANCELLED(OUT_OF_STOCK)"] > 0, summary
    # No approving order was cancelled because the saga paused for a failover.
    timed_out = {v["order_id"] for r, v in mine if r == "OrderCancelled" and v["reason"] == "TIMEOUT"}
    approving = {o for o, token in placed if token == "tok_approve"}
    assert not timed_out & approving, f"{len(timed_out & approving)} approving orders cancelled by TIMEOUT; {summary}"
    # Units: on hand plus what confirmed orders took is what was seeded; nothing is still held.
    taken, committed = defaultdict(int), set()
    kept = {o for o, s in orders.items() if s["status"] == "CONFIRMED"}
    for r, v in mine:
        if r == "CommitStock" and v["order_id"] in kept and (v["order_id"], v["sku"]) not in committed:
            committed.add((v["order_id"], v["sku"]))
            taken[v["sku"]] += v["quantity"]
    for sku, units in seeded.items():
        state = stock.get(sku, {"on_hand": 0, "reserved": 0})
        assert (state["on_hand"] + taken[sku], state["reserved"]) == (units, 0), (sku, state, taken[sku])
    assert all(p["charges"] <= 1 for p in payments.values()), summary
    # The poison records went to the dead-letter topic and the stream went on.
    dlq = Consumer({"bootstrap.servers": stack.bootstrap_servers, "group.id": f"crash-dlq-{run}",
                    "auto.offset.reset": "earliest", "enable.auto.commit": False})
    dlq.subscribe([ORDER_COMMANDS.dead_letter])
    letters: Counter = Counter()

    def five_letters() -> bool:
        for msg in dlq.consume(1000, 0.5):  # waits for records itself
            if not msg.error() and (msg.key() or b"").startswith(f"{run}-poison".encode()):
                letters[msg.key()] += 1
        assert len(letters) >= 5, letters
        return True

    try:
        eventually(five_letters, timeout_s=20, interval_s=0)
    finally:
        dlq.close()
    assert len(letters) == 5, letters


@pytest.fixture(autouse=True)
def _suite_timeouts_again(worker_factory, saga_workers, suite_timeouts):
    """After the test, the session's workers run the suite's timeouts again, whatever happened."""
    yield
    ports = [urlparse(url).port for url in saga_workers]
    for port in ports:
        worker_factory.kill(port)
        worker_factory.start(port, **suite_timeouts)
    worker_factory.wait_ready(ports)
