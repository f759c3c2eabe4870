"""The one topic catalog: every topic ShopFlow uses, with its key, value schemas and settings.

Nothing else in the code writes a topic name: agents, the edge, taps and tests take topics from
here. Topics that carry several record types use Confluent's TopicRecordNameStrategy, so each
record type has its own subject (``<topic>-<record full name>``) and evolves on its own. Every
topic has a dead-letter topic (``<name>.dlq``) for records that cannot be decoded or processed.
Topics keyed by ``order_id`` share one partition count so the orders table is co-partitioned with
each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from shopflow.schemas.carts import AddCartItem, CartExpired, CheckoutCart, ClearCart, RemoveCartItem
from shopflow.schemas.catalog import ProductDeleted, ProductUpserted
from shopflow.schemas.files import FileDeleted, FileUploaded, ImageProcessed
from shopflow.schemas.inventory import (
    CommitStock,
    LowStock,
    ReleaseStock,
    ReserveStock,
    StockAdjusted,
    StockRejected,
    StockReleased,
    StockReserved,
)
from shopflow.schemas.notifications import NotificationRequested, NotificationSent
from shopflow.schemas.orders import CancelOrder, OrderCancelled, OrderConfirmed, OrderPlaced, PlaceOrder, StepTimedOut
from shopflow.schemas.payments import (
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    RefundRequested,
)
from shopflow.schemas.records import AvroRecord
from shopflow.schemas.users import UserRegistered

DAY_MS = 24 * 3600 * 1000
SAGA_PARTITIONS = 6


@dataclass(frozen=True)
class Topic:
    name: str
    key: str  # the field of the value that is the message key
    values: tuple[type[AvroRecord], ...]  # the record classes it carries
    partitions: int
    doc: str
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * DAY_MS

    @property
    def record_names(self) -> tuple[str, ...]:
        """Full names of the records it carries (``shopflow.orders.PlaceOrder``), as the registry knows them."""
        return tuple(r.AVRO_NAME for r in self.values)

    def subject(self, record: type[AvroRecord]) -> str:
        """The registry subject of one of this topic's record types (TopicRecordNameStrategy)."""
        if record not in self.values:
            raise KeyError(f"{self.name} does not carry {record.AVRO_NAME}; it carries {', '.join(self.record_names)}")
        return f"{self.name}-{record.AVRO_NAME}"

    def carries(self, fullname: str) -> type[AvroRecord]:
        """The record class of one of its records, by full name (as a writer schema names it)."""
        for record in self.values:
            if fullname == record.AVRO_NAME:
                return record
        raise KeyError(f"{self.name} does not carry {fullname}; it carries {', '.join(self.record_names)}")

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.dlq"

    @property
    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


ORDER_COMMANDS = Topic(
    "order-commands", "order_id",
    (PlaceOrder, CancelOrder, StepTimedOut),
    SAGA_PARTITIONS, "Commands to the orders agent: from the edge, cart checkout, and its own deadline scanner.",
)
ORDERS = Topic(
    "orders", "order_id",
    (OrderPlaced, OrderConfirmed, OrderCancelled),
    SAGA_PARTITIONS, "The orders agent's events: an order's life from placed to terminal.",
    retention_ms=30 * DAY_MS,
)
STOCK_REQUESTS = Topic(
    "stock-requests", "sku",
    (ReserveStock, ReleaseStock, CommitStock, StockAdjusted),
    SAGA_PARTITIONS, "Requests to the inventory agent, keyed by sku so one partition owns a sku's stock.",
)
STOCK_RESULTS = Topic(
    "stock-results", "order_id",
    (StockReserved, StockRejected, StockReleased),
    SAGA_PARTITIONS, "The inventory agent's answers, re-keyed by order_id back to the orders agent.",
)
PAYMENT_REQUESTS = Topic(
    "payment-requests", "order_id",
    (PaymentRequested, RefundRequested),
    SAGA_PARTITIONS, "Charges and refunds asked of the payments agent.",
)
PAYMENT_RESULTS = Topic(
    "payment-results", "order_id",
    (PaymentSucceeded, PaymentFailed, PaymentRefunded),
    SAGA_PARTITIONS, "The payments agent's outcomes.", retention_ms=30 * DAY_MS,
)
CART_COMMANDS = Topic(
    "cart-commands", "cart_id",
    (AddCartItem, RemoveCartItem, ClearCart, CheckoutCart),
    SAGA_PARTITIONS, "Cart changes from the edge to the carts agent.",
)
CART_EVENTS = Topic(
    "cart-events", "cart_id", (CartExpired,), SAGA_PARTITIONS,
    "What happened to carts on their own (expiry after idle time).",
)
CATALOG_PRODUCTS = Topic(
    "catalog.products", "sku", (ProductUpserted, ProductDeleted),
    3, "Catalog changes leaving PostgreSQL through the outbox and Debezium; the latest per sku is kept.",
    cleanup_policy="compact", retention_ms=-1,
)
USERS = Topic(
    "users", "user_id", (UserRegistered,), 3,
    "Account events, through the outbox.", cleanup_policy="compact", retention_ms=-1,
)
NOTIFICATIONS = Topic(
    "notifications", "notification_id",
    (NotificationRequested, NotificationSent),
    3, "Notifications asked for and their delivery outcomes.",
)
INVENTORY_EVENTS = Topic(
    "inventory-events", "sku", (LowStock,), 3,
    "What the inventory agent tells beyond the saga: low-stock crossings, keyed by sku.",
)
FILES = Topic(
    "files", "sku", (FileUploaded, ImageProcessed, FileDeleted), 3,
    "Product images: uploads confirmed at the edge, what the image agent made of them, deletions; keyed by sku.",
)

TOPICS: tuple[Topic, ...] = (
    ORDER_COMMANDS, ORDERS, STOCK_REQUESTS, STOCK_RESULTS, PAYMENT_REQUESTS, PAYMENT_RESULTS,
    CART_COMMANDS, CART_EVENTS, CATALOG_PRODUCTS, USERS, NOTIFICATIONS, FILES, INVENTORY_EVENTS,
)
# Requests waiting to be tried again (a channel failed for now, or quiet hours): the request's bytes as
# they were, with a not-before header; only the sender reads it. Not in TOPICS: it carries no record type
# of its own (every record type travels on exactly one topic: NotificationRequested's is notifications).
NOTIFICATIONS_RETRY = Topic(
    "notifications.retry", "notification_id", (), 3,
    "Notifications to send again after a delay (header notify.not-before), read by the sender only.",
)


def dead_letter_topics() -> tuple[Topic, ...]:
    """One dead-letter topic per catalog topic: one partition, kept 30 days for inspection and replay."""
    return tuple(
        Topic(t.dead_letter, t.key, (), 1, f"Records of {t.name} that could not be decoded or processed.",
              retention_ms=30 * DAY_MS)
        for t in TOPICS
    )


def all_topics() -> tuple[Topic, ...]:
    return TOPICS + (NOTIFICATIONS_RETRY,) + dead_letter_topics()


_TOPIC_OF: dict[type[AvroRecord], Topic] = {record: topic for topic in TOPICS for record in topic.values}


def topic_of(record: type[AvroRecord]) -> Topic:
    """The one catalog topic a record type travels on (every record type has exactly one)."""
    try:
        return _TOPIC_OF[record]
    except KeyError:
        raise KeyError(f"no catalog topic carries {record.AVRO_NAME}") from None


def by_name(name: str) -> Topic:
    for topic in all_topics():
        if topic.name == name:
            return topic
    raise KeyError(f"no topic {name!r} in the catalog (topologies/catalog.py)")
