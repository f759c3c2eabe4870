"""The notifications agent: turns domain events into ``NotificationRequested``, one per recipient and channel.

A plain confluent-kafka consumer loop (group ``shopflow-notifications``) on ``orders``, ``users`` and
``inventory-events``, off the saga's workers: nothing here can slow the saga down. What each event asks
for (``notices_of``, pure):

- OrderConfirmed: ``order_confirmed`` to the customer, with the total;
- OrderCancelled: ``order_cancelled`` with the reason, or ``order_refunded`` with the amount when the
  charge was refunded (the refund is told on the cancellation: PaymentRefunded names no customer);
- UserRegistered: ``welcome``, by email;
- LowStock: ``low_stock`` to every admin (the users holding shop.admin), by email.

"Cart about to expire" is not asked for: the carts agent emits ``CartExpired`` only after the fact,
and a warning needs a new event before expiry from the carts agent (left for later; the template exists).

Each request's ``notification_id`` derives from the cause's event id, the recipient and the channel
(UUIDv5), so an event consumed again (a crash before the commit, a redelivery) asks for the same
notifications again and the sender, which keeps a ledger by notification_id, sends nothing twice.
Offsets are committed after the batch's requests are flushed: at least once, seen once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from shopflow.db import connect
from shopflow.kafka import producer_config
from shopflow.launch import stop_on_signals
from shopflow.metrics import BatchFeed, expose
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.deadletter import DeadLetter, decode_record_or_dead_letter
from shopflow.schemas.inventory import LowStock
from shopflow.schemas.notifications import Channel, NotificationRequested
from shopflow.schemas.orders import OrderCancelled, OrderConfirmed
from shopflow.schemas.records import AvroRecord, Money
from shopflow.schemas.registry import SchemaRegistry
from shopflow.schemas.users import UserRegistered
from shopflow.settings import Settings
from shopflow.streams.indexer import StopSignal, _commit_offsets, _next_batch
from shopflow.streams.runtime import derived_event_id
from shopflow.topologies.catalog import INVENTORY_EVENTS, NOTIFICATIONS, ORDERS, USERS

log = logging.getLogger(__name__)

GROUP_ID = "shopflow-notifications"
BATCH_SIZE = 200
ADMINS_REFRESH_S = 60.0
# Which channels each kind of message goes through; the sender skips (and records) a channel the user
# turned off or has no address for.
ORDER_CHANNELS = (Channel.EMAIL, Channel.PUSH, Channel.SMS)
ACCOUNT_CHANNELS = (Channel.EMAIL,)
ADMIN_CHANNELS = (Channel.EMAIL,)
CANCEL_REASONS = {
    "OUT_OF_STOCK": "an item was out of stock", "PAYMENT_FAILED": "the payment failed",
    "TIMEOUT": "it could not be completed in time", "BY_CUSTOMER": "you asked us to cancel it",
    "INVALID": "the order was invalid",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """What one domain event asks to tell whom: a template, its parameters, the recipients and channels."""

    cause: AvroRecord
    template: str
    user_ids: tuple[str, ...]
    channels: tuple[Channel, ...]
    params: dict[str, str]
    order_id: str | None = None


def money_text(money: Money) -> str:
    # Two minor digits is right for the shop's currencies (EUR, USD, GBP); the currency code follows.
    return f"{Decimal(money.amount_minor).scaleb(-2):.2f} {money.currency}"


def notices_of(event: object, *, admins: Sequence[str] = (), refund_amount: str | None = None) -> Notice | None:
    """What ``event`` asks to tell (see the module's doc); None for an event no one is told about."""
    if isinstance(event, OrderConfirmed):
        return Notice(event, "order_confirmed", (event.user_id,), ORDER_CHANNELS,
                      {"order_id": event.order_id, "total": money_text(event.total)}, event.order_id)
    if isinstance(event, OrderCancelled) and event.refunded:
        return Notice(event, "order_refunded", (event.user_id,), ORDER_CHANNELS,
                      {"order_id": event.order_id, "amount": refund_amount or "the amount charged"}, event.order_id)
    if isinstance(event, OrderCancelled):
        reason = CANCEL_REASONS.get(event.reason.value, event.reason.value.lower().replace("_", " "))
        return Notice(event, "order_cancelled", (event.user_id,), ORDER_CHANNELS,
                      {"order_id": event.order_id, "reason": reason}, event.order_id)
    if isinstance(event, UserRegistered):
        return Notice(event, "welcome", (event.user_id,), ACCOUNT_CHANNELS,
                      {"display_name": event.display_name or event.email.partition("@")[0]})
    if isinstance(event, LowStock):
        return Notice(event, "low_stock", tuple(admins), ADMIN_CHANNELS,
                      {"sku": event.sku, "available": str(event.available), "threshold": str(event.threshold)})
    return None


def notification_id(cause_event_id: str, user_id: str, channel: Channel) -> str:
    """The same cause, recipient and channel: the same notification, however often it is asked for."""
    return derived_event_id(cause_event_id, "notify", user_id, channel.value)


def requests_of(notice: Notice) -> list[NotificationRequested]:
    cause_id: str = getattr(notice.cause, "event_id")  # noqa: B009 (every event has one)
    occurred_at = getattr(notice.cause, "occurred_at")  # noqa: B009
    out = []
    for user_id in notice.user_ids:
        for channel in notice.channels:
            nid = notification_id(cause_id, user_id, channel)
            out.append(NotificationRequested(
                event_id=nid, notification_id=nid, user_id=user_id, channel=channel, template=notice.template,
                params=dict(notice.params), order_id=notice.order_id, cause_event_id=cause_id,
                occurred_at=occurred_at))
    return out


async def admin_ids(conn: asyncpg.Connection) -> list[str]:
    """The users who hold shop.admin (through any role), the recipients of low-stock alerts."""
    rows = await conn.fetch(
        "SELECT DISTINCT ur.user_id::text AS user_id FROM user_roles ur "
        "JOIN role_permissions rp ON rp.role = ur.role WHERE rp.permission = 'shop.admin' ORDER BY 1")
    return [r["user_id"] for r in rows]


async def order_total(conn: asyncpg.Connection, order_id: str) -> str | None:
    """The order's total as the orders read model has it (the refunded amount), None if not projected yet."""
    row = await conn.fetchrow("SELECT total_minor, currency FROM orders_view WHERE order_id = $1", order_id)
    if row is None or row["total_minor"] is None:
        return None
    return money_text(Money(row["total_minor"], row["currency"] or ""))


class NotificationsAgent:
    """Decodes a batch, asks for its notifications; the database only for admins and refund amounts."""

    def __init__(self, codec: AvroCodec, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop):
        self.codec = codec
        self.conn = conn
        self.loop = loop
        self._admins: list[str] = []
        self._admins_at = float("-inf")

    def admins(self) -> list[str]:
        if self.loop.time() - self._admins_at > ADMINS_REFRESH_S:
            self._admins = self.loop.run_until_complete(admin_ids(self.conn))
            self._admins_at = self.loop.time()
        return self._admins

    def handle(self, record: Message) -> list[NotificationRequested] | DeadLetter:
        event, letter = decode_record_or_dead_letter(self.codec, record)
        if letter is not None:
            return letter
        admins = self.admins() if isinstance(event, LowStock) else ()
        refund = None
        if isinstance(event, OrderCancelled) and event.refunded:
            refund = self.loop.run_until_complete(order_total(self.conn, event.order_id))
        notice = notices_of(event, admins=admins, refund_amount=refund)
        return [] if notice is None else requests_of(notice)


def run(settings: Settings, stop_event: StopSignal, *, topics: Sequence[str] | None = None,
        output_topic: str = NOTIFICATIONS.name, group_id: str = GROUP_ID, from_end: bool = False,
        on_assigned: Callable[[], None] | None = None) -> None:
    """Consume ``topics`` (orders, users, inventory-events) until stopped. Tests give their own output
    topic and group, ``from_end`` (a new group starts at the end, not the beginning, of shared topics)
    and ``on_assigned`` (called once partitions are assigned)."""
    topics = list(topics or (ORDERS.name, USERS.name, INVENTORY_EVENTS.name))
    loop = asyncio.new_event_loop()
    registry = SchemaRegistry(settings.registry_url)
    codec = AvroCodec(registry)
    conn = loop.run_until_complete(connect(settings, application_name="shopflow-notifications"))
    agent = NotificationsAgent(codec, conn, loop)
    producer = Producer(producer_config(settings.bootstrap_servers, GROUP_ID, **{"linger.ms": 5}))
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group_id,
                         "enable.auto.commit": False, "auto.offset.reset": "latest" if from_end else "earliest",
                         "isolation.level": "read_committed"})
    feed = BatchFeed("notifications")

    def assigned(c: Consumer, partitions: list[TopicPartition]) -> None:
        if from_end:  # positions now, so whatever is produced after on_assigned is read
            for p in partitions:
                p.offset = c.get_watermark_offsets(p, timeout=10)[1]
            c.assign(partitions)
        if on_assigned is not None and partitions:
            on_assigned()

    try:
        consumer.subscribe(topics, on_assign=assigned)
        log.info("notifications agent: %s (group %s) -> %s", ", ".join(topics), group_id, output_topic)
        while not stop_event.is_set():
            batch = _next_batch(consumer, BATCH_SIZE)
            if not batch:
                continue
            started = loop.time()
            asked = letters = 0
            for record in batch:
                result = agent.handle(record)
                if isinstance(result, DeadLetter):
                    letters += 1
                    log.warning("dead letter to %s: %s", result.topic, result.detail)
                    producer.produce(result.topic, key=result.key, value=result.value, headers=list(result.headers))
                    continue
                for request in result:
                    asked += 1
                    producer.produce(output_topic, key=request.notification_id.encode(),
                                     value=codec.encode(NOTIFICATIONS, request))
                producer.poll(0)
            if producer.flush(30):
                raise RuntimeError("notification requests not acknowledged by the broker within 30 s; "
                                   "the batch is not committed and will be read again on restart")
            consumer.commit(offsets=_commit_offsets(batch), asynchronous=False)
            feed.batch(loop.time() - started, {"requested": asked, "dead-lettered": letters})
    finally:
        consumer.close()
        producer.flush(10)
        loop.run_until_complete(conn.close())
        loop.close()
        registry.close()


def main(settings: Settings) -> None:
    """The process entry point (``shopflow notifications``): until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    expose(settings, "notifications")
    run(settings, stop)
