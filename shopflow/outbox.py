"""The one outbox writer: an event committed with the change it announces, in the same transaction.

ShopFlow's PostgreSQL-owned state (the catalog, accounts) never writes to Kafka itself. It inserts
the event, Avro framed by the project's codec, into the ``outbox`` table in the transaction that makes
the change; Debezium's Outbox Event Router carries it from there to the topic named by the row's
``aggregatetype``, keyed by ``aggregateid`` and with ``type`` as its ``event_type`` header. There is
no second write that could fail after the change exists, and no event for a change that rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg
from prometheus_client import Counter

from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.records import AvroRecord
from shopflow.topologies.catalog import Topic

OUTBOX_ROWS = Counter("shopflow_outbox_rows_total", "Outbox rows inserted, by aggregate (the catalog topic the "
                      "events go to); a transaction that rolls back had its rows counted too.", ["aggregate"])


def _row_id(event: AvroRecord) -> uuid.UUID:
    """The event's id, which becomes the row's (and the record's ``event_id`` header)."""
    event_id = getattr(event, "event_id", None)
    if not isinstance(event_id, str):
        raise TypeError(f"{type(event).__name__} has no event_id: only events go through the outbox")
    return uuid.UUID(event_id)


class Outbox:
    """Writes the events of one topic. ``route`` is the rows' ``aggregatetype``, the topic the router
    sends them to: the topic's own name, or a stand-in for it (tests route to throwaway topics)."""

    def __init__(self, codec: AvroCodec, topic: Topic, route: str | None = None):
        self.codec = codec
        self.topic = topic
        self.route = route or topic.name
        # The catalog topic, not the route: a test's throwaway route would make a series per test.
        self._rows = OUTBOX_ROWS.labels(topic.name)

    def encode(self, event: AvroRecord) -> bytes:
        """The row's payload. The first encode of a record type registers its schema (a blocking call):
        do it once before writing inside a transaction (see ``Catalog.warm``)."""
        return self.codec.encode(self.topic, event)

    async def write(self, conn: asyncpg.Connection, events: Iterable[tuple[str, AvroRecord]]) -> None:
        """Insert one row per ``(key, event)`` on ``conn``, which should be in the change's transaction."""
        rows = [(_row_id(event), self.route, key, event.AVRO_NAME.rsplit(".", 1)[1], self.encode(event))
                for key, event in events]
        await conn.executemany(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)", rows)
        self._rows.inc(len(rows))
