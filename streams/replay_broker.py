"""The replay scenarios on the real broker: the same files, through running workers.

``shopflow replay --broker FILE`` and tests/streams/test_replay_broker.py run a scenario's steps as
records on the saga's topics (every id prefixed with a run id, the clock real) and judge its Then from
the topics, the tables' changelogs and the dead-letter topics. A crash step is in-process only: on the
broker, killing workers is tests/streams/test_saga_crash.py's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Message

from shopflow.streams.audit import audit
from shopflow.streams.replay import Outcome, _fields
from shopflow.streams.replay_steps import cancel_order, cart_command, list_product, place_order
from shopflow.topologies.catalog import CART_COMMANDS, CART_EVENTS, INVENTORY_EVENTS


def run_on_broker(path: Path, settings, worker_url: str, quiet_s: float = 1.5) -> Outcome:
    """Replay a scenario through running workers: every id prefixed with a run id, the clock real.

    The workers must apply the timeouts the scenario declares (checked on their /saga/config/).
    Records from several topics interleave differently on a broker than in-process, so the emitted
    records are compared as a multiset; states, stock, payments and invariants as in-process.
    """
    import time
    import uuid
    from collections import Counter

    import httpx
    from confluent_kafka import Consumer

    from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader, read_changelog
    from shopflow.tables import CARTS_TABLE, INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE

    doc = yaml.safe_load(path.read_text())
    given, then = doc.get("given") or {}, doc.get("then") or {}
    name = doc.get("name", path.stem)
    declared = {**(given.get("timeouts") or {}),
                **({"cart_idle_s": given["cart_idle_s"]} if "cart_idle_s" in given else {})}
    config = httpx.get(f"{worker_url.rstrip('/')}/saga/config/", timeout=5).json()
    applied = {**config["timeouts"], "cart_idle_s": config.get("cart_idle_s")}
    wrong = {k: (v, applied.get(k)) for k, v in declared.items() if applied.get(k) != v}
    if wrong:
        return Outcome(name, ["the workers run other timeouts than the scenario declares "
                              f"(scenario, workers): {wrong}; "
                              "start them with SHOPFLOW_<NAME>_S set to the scenario's"])

    run = uuid.uuid4().hex[:8]
    rid = lambda x: f"{run}-{x}"  # noqa: E731
    client = SagaClient(settings)
    reader = TopicReader(settings, client.codec, (*SAGA_TOPICS, CART_COMMANDS.name, CART_EVENTS.name,
                                                  INVENTORY_EVENTS.name), from_end=True)
    log: list[tuple[Message, str, dict[str, Any]]] = []

    def mine(value: dict) -> bool:
        return str(value.get("order_id") or value.get("cart_id") or value.get("sku") or "").startswith(run)

    def settle(max_s: float = 60) -> None:
        last, deadline = time.monotonic(), time.monotonic() + max_s
        while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
            batch = [m for m in reader.poll_messages(0.3) if mine(m[2])]
            if batch:
                log.extend(batch)
                last = time.monotonic()

    for sku, units in (given.get("stock") or {}).items():
        if units:
            client.adjust_stock(rid(sku), units)
    client.flush()
    settle()
    seeded = len(log)
    for step in doc.get("when") or []:
        (kind, arg), = step.items()
        now = int(time.time() * 1000)
        if kind == "place":
            spec = {**arg, "order_id": rid(arg["order_id"]), "event_id": str(uuid.uuid4()),
                    "lines": [[rid(sku), q, p] for sku, q, p in arg["lines"]]}
            client.send(place_order(spec, now))
        elif kind == "cancel":
            client.send(cancel_order({**arg, "order_id": rid(arg["order_id"]), "event_id": str(uuid.uuid4())}, now))
        elif kind == "advance":
            time.sleep(float(arg))
        elif kind == "redeliver":
            key = rid(arg["key"])
            matches = [m for m, record, v in log if record == arg["record"] and (m.key() or b"").decode() == key]
            if not matches:
                reader.close()
                client.close()
                return Outcome(name, [f"nothing to redeliver: no {arg['record']} {arg['key']} was sent"])
            msg = matches[arg.get("nth", 1) - 1]
            client.producer.produce(msg.topic(), key=msg.key(), value=msg.value(), headers=msg.headers())
        elif kind == "adjust":
            client.adjust_stock(rid(arg["sku"]), arg["delta"])
        elif kind == "list":
            client.send(list_product({**arg, "sku": rid(arg["sku"]), "event_id": str(uuid.uuid4())}, now))
        elif kind == "crash":
            reader.close()
            client.close()
            return Outcome(name, ["a crash step runs in-process only (shopflow replay without --broker)"])
        elif kind == "cart":
            spec = {**arg, "cart_id": rid(arg["cart_id"]), "event_id": str(uuid.uuid4())}
            for field_name in ("sku", "order_id"):
                if field_name in arg:
                    spec[field_name] = rid(arg[field_name])
            client.send(cart_command(spec, now))
        client.flush()
        settle()
    reader.close()
    client.close()

    strip = lambda key: key[len(run) + 1:]  # noqa: E731
    keep = lambda key: key.startswith(run)  # noqa: E731
    orders = {strip(k): v for k, v in read_changelog(settings, ORDERS_TABLE, keep).items()}
    inventory = read_changelog(settings, INVENTORY_TABLE, keep)
    stock = {strip(k): v for k, v in inventory.items()}
    payments = {strip(k): v for k, v in read_changelog(settings, PAYMENTS_TABLE, keep).items()}
    problems: list[str] = []
    for order_id, want in (then.get("orders") or {}).items():
        problems += _fields(f"order {order_id}", want, orders.get(order_id) or {})
    for sku, want in (then.get("stock") or {}).items():
        have = dict(stock.get(sku) or {"on_hand": 0, "reserved": 0})
        have["available"] = have["on_hand"] - have["reserved"]
        problems += _fields(f"stock {sku}", want, have)
    for order_id, want in (then.get("payments") or {}).items():
        problems += _fields(f"payment {order_id}", want, payments.get(order_id) or {})
    carts = {strip(k): v for k, v in read_changelog(settings, CARTS_TABLE, keep).items()}
    for cart_id, want in (then.get("carts") or {}).items():
        have = dict(carts.get(cart_id) or {})
        have["items"] = {strip(sku): q for sku, q in (have.get("items") or {}).items()}
        if have.get("checked_out_order"):
            have["checked_out_order"] = strip(have["checked_out_order"])
        problems += _fields(f"cart {cart_id}", want, have)
    scenario_log = log[seeded:]
    # A record sent again lands at a new offset here, and how many copies it sets off depends on timing:
    # where a scenario says which records are distinct, those are compared (copies dropped by event id).
    if "distinct" in then or "emitted" in then:
        ids: set[str] = set()
        got: Counter[str] = Counter()
        for m, record, value in scenario_log:
            if "distinct" in then and value.get("event_id") in ids:
                continue
            ids.add(value.get("event_id") or "")
            got[f"{record} {strip((m.key() or b'').decode())}"] += 1
        want = Counter(then["distinct"] if "distinct" in then else then["emitted"])
        if got != want:
            problems.append(f"records emitted differ (as a multiset): missing {dict(want - got)}, "
                            f"extra {dict(got - want)}")
    dlq = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"replay-dlq-{run}",
                    "auto.offset.reset": "earliest", "enable.auto.commit": False})
    dlq.subscribe([f"{t}.dlq" for t in SAGA_TOPICS])
    letters, deadline = 0, time.monotonic() + 3
    while time.monotonic() < deadline:
        for msg in dlq.consume(1000, 0.5):
            if not msg.error() and (msg.key() or b"").decode().startswith(run):
                letters += 1
    dlq.close()
    if letters != then.get("dead_letters", 0):
        problems.append(f"dead letters: expected {then.get('dead_letters', 0)}, got {letters}")
    report = audit(((record, v) for _, record, v in log), inventory, payments,
                   orders={rid(k): v for k, v in orders.items()})
    problems += [f"invariant: {v}" for v in report.violations]
    return Outcome(name, problems)
