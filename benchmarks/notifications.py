"""Notifications: emails per second sent by one sender to the stack's SMTP server (mailpit), and the time
from an OrderConfirmed on the topic to its email accepted by the server (p50/p99) at a steady order rate.

    .venv/bin/python -m benchmarks.notifications [--sends 500] [--rate 50] [--seconds 20]

Needs the stack up (`shopflow stack up`, with the mail server). Everything runs against the real broker,
PostgreSQL and mailpit, on throwaway topics and a throwaway PostgreSQL schema (users, preferences, ledger,
templates), all removed at the end. Part one: ``--sends`` email requests are put on the requests topic,
then one sender (``streams.notifier_loop.serve``, email channel only) is started and timed from its first
email accepted to its last. Part two: the notifications agent and the sender run in threads while OrderConfirmed
records are produced at ``--rate`` per second for ``--seconds``; each order's time runs from its produce
to its email's ``Told`` verdict, which comes right after the SMTP server accepted the message (its
push and SMS requests are recorded skipped: no subscription, no phone).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.db import migrate_database
from shopflow.kafka import producer_config
from shopflow.notify.email import EmailChannel
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.notifications import Channel, NotificationRequested
from shopflow.schemas.orders import OrderConfirmed
from shopflow.schemas.records import Money
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings, get_settings
from shopflow.streams.notifications import run as run_agent
from shopflow.streams.notifier import Told
from shopflow.streams.notifier_loop import serve
from shopflow.topologies.catalog import NOTIFICATIONS, ORDERS

USERS = 50


class SenderThread:
    """The sender in a thread; ``told`` maps an order id (or notification id) to when its email was accepted."""

    def __init__(self, settings: Settings, topic: str, retry_topic: str, key: str):
        self.stop = threading.Event()
        self.told: dict[str, float] = {}
        self.errors: list[BaseException] = []

        def verdict(request: NotificationRequested, outcome: object) -> None:
            if request.channel == Channel.EMAIL and isinstance(outcome, Told) and outcome.sent.delivered:
                at = (request.order_id if key == "order" else None) or request.notification_id
                self.told[at] = time.perf_counter()

        def body() -> None:
            try:
                asyncio.run(serve(settings, self.stop, channels={"EMAIL": EmailChannel.from_settings(settings)},
                                  topic=topic, retry_topic=retry_topic,
                                  group_id=f"bench-notifier-{uuid.uuid4().hex[:8]}",
                                  on_verdict=verdict))
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=body, name="notifier", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


async def make_users(settings: Settings, tag: str) -> list[str]:
    conn = await asyncpg.connect(settings.postgres_dsn, server_settings={"search_path": settings.postgres_schema})
    try:
        ids = [str(uuid.uuid4()) for _ in range(USERS)]
        await conn.executemany("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')",
                               [(u, f"bench-{tag}-{i}@example.test") for i, u in enumerate(ids)])
        return ids
    finally:
        await conn.close()


def wait_for(count: int, told: dict[str, float], sender: SenderThread, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    shown = 0
    with tqdm(total=count, desc=what) as bar:
        while len(told) < count:
            if sender.errors:
                raise RuntimeError(f"the sender died: {sender.errors[0]!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {len(told)} of {count} in {timeout_s:.0f}s; is mailpit up "
                                   "(`shopflow stack status`)?")
            bar.update(len(told) - shown)
            shown = len(told)
            time.sleep(0.1)
        bar.update(count - shown)


def throughput(settings: Settings, codec: AvroCodec, producer: Producer, users: list[str], sends: int,
               topic: str, retry: str) -> float:
    now = datetime.now(UTC)
    for i in range(sends):
        nid = str(uuid.uuid4())
        request = NotificationRequested(event_id=nid, notification_id=nid, user_id=users[i % len(users)],
                                        channel=Channel.EMAIL, template="order_confirmed",
                                        params={"order_id": f"bench-{i}", "total": "19.99 EUR"}, occurred_at=now)
        producer.produce(topic, key=nid.encode(), value=codec.encode(NOTIFICATIONS, request))
    producer.flush(30)
    sender = SenderThread(settings, topic, retry, key="notification")
    try:
        wait_for(sends, sender.told, sender, "emails sent", 60 + sends / 5)
    finally:
        sender.close()
    # From the first email accepted to the last: the group join before the first is not sending.
    return (sends - 1) / (max(sender.told.values()) - min(sender.told.values()))


def end_to_end(settings: Settings, codec: AvroCodec, producer: Producer, users: list[str], rate: float,
               seconds: float, topics: dict[str, str]) -> list[float]:
    agent_stop = threading.Event()
    agent = threading.Thread(target=run_agent, args=(settings, agent_stop), daemon=True, kwargs={
        "topics": [topics["orders"]], "output_topic": topics["requests"],
        "group_id": f"bench-notifications-{uuid.uuid4().hex[:8]}"})
    agent.start()
    sender = SenderThread(settings, topics["requests"], topics["retry"], key="order")
    produced: dict[str, float] = {}
    try:
        time.sleep(5)  # both consumers joined their groups
        count = int(rate * seconds)
        start = time.perf_counter()
        for i in tqdm(range(count), desc=f"orders at {rate:g}/s"):
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            order_id = f"bench-{uuid.uuid4().hex[:10]}"
            event = OrderConfirmed(str(uuid.uuid4()), order_id, users[i % len(users)], Money(1999, "EUR"), "pay",
                                   datetime.now(UTC))
            producer.produce(topics["orders"], key=order_id.encode(), value=codec.encode(ORDERS, event))
            producer.poll(0)
            produced[order_id] = time.perf_counter()
        producer.flush(30)
        wait_for(count, sender.told, sender, "confirmations delivered", 120)
    finally:
        sender.close()
        agent_stop.set()
        agent.join(30)
    return sorted((sender.told[o] - t) * 1000 for o, t in produced.items())


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=500, help="email requests for the throughput part")
    parser.add_argument("--rate", type=float, default=50.0, help="OrderConfirmed per second, end-to-end part")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long orders are produced")
    args = parser.parse_args()
    base = get_settings()
    tag = uuid.uuid4().hex[:8]
    schema = f"bench_notify_{tag}"
    admin = AdminClient({"bootstrap.servers": base.bootstrap_servers})
    topics = {name: f"bench-{name}-{tag}" for name in ("orders", "requests", "retry", "sends", "sends-retry")}
    for f in admin.create_topics([NewTopic(t, 6 if name == "orders" else 3, 1) for name, t in topics.items()]).values():
        f.result(timeout=30)
    asyncio.run(_sql(base, f'CREATE SCHEMA "{schema}"'))
    settings = base.model_copy(update={"postgres_schema": schema})
    registry = SchemaRegistry(settings.registry_url)
    producer = Producer(producer_config(settings.bootstrap_servers, "bench-notifications", **{"linger.ms": 5}))
    try:
        asyncio.run(migrate_database(settings))
        users = asyncio.run(make_users(settings, tag))
        codec = AvroCodec(registry)
        per_s = throughput(settings, codec, producer, users, args.sends, topics["sends"], topics["sends-retry"])
        times = end_to_end(settings, codec, producer, users, args.rate, args.seconds, topics)
    finally:
        producer.flush(10)
        registry.close()
        for f in admin.delete_topics(list(topics.values())).values():
            f.result(timeout=30)
        asyncio.run(_sql(base, f'DROP SCHEMA "{schema}" CASCADE'))
    p50, p99 = percentile(times, 50), percentile(times, 99)
    body = (f"One sender, email only, to mailpit: **{per_s:.0f} emails/s** ({args.sends} requests).\n\n"
            f"OrderConfirmed on the topic -> its email accepted by the SMTP server, {len(times)} orders at "
            f"{args.rate:g}/s (agent + sender, each order also asks for push and SMS, recorded skipped): "
            f"**p50 {p50:.0f} ms, p99 {p99:.0f} ms** (max {times[-1]:.0f} ms, mean {statistics.mean(times):.0f} ms).")
    print(body)
    write_section("notifications (issue 16)", body)


async def _sql(settings: Settings, statement: str) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
