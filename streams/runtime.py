"""What every agent shares: the records it emits and how their event ids are made.

An agent reacting to a record derives the ids of what it emits from that record's id (UUIDv5), so
processing the same record again, after a crash or a redelivery, emits records with the same ids
and the consumers' dedupe by event id drops them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from shopflow.schemas.records import AvroRecord, record_type
from shopflow.topologies.catalog import Topic, topic_of

_NAMESPACE = uuid.UUID("5b0c2d3e-8f61-4c1e-9a57-3f1f0e2b7c10")


def derived_event_id(cause: str, *parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join([cause, *map(str, parts)])))


@dataclass(slots=True)
class Output:
    """One record to produce, on the catalog topic that carries its type, keyed by the topic's key field."""

    record: AvroRecord
    topic: Topic = field(init=False, repr=False)
    # The record as fastavro writes it, made once: the order keeps it (``stored``) and the worker encodes it.
    _avro: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.topic = topic_of(type(self.record))

    @property
    def avro(self) -> dict[str, Any]:
        if self._avro is None:
            self._avro = self.record.to_avro()
        return self._avro

    @property
    def key(self) -> str:
        key: str = getattr(self.record, self.topic.key)
        return key

    @property
    def event_id(self) -> str:
        # Every record a topic carries has one (the shared value types, never emitted alone, do not).
        event_id: str = getattr(self.record, "event_id")  # noqa: B009
        return event_id

    @property
    def short(self) -> str:
        return type(self.record).__name__

    def stored(self) -> list[Any]:
        """As kept in an entity's state, to be emitted again: [topic name, record full name, Avro value]."""
        return [self.topic.name, self.record.AVRO_NAME, self.avro]

    @classmethod
    def restore(cls, stored: list[Any]) -> Output:
        """From ``stored()``'s form; the topic follows from the record's type, as when it was first made."""
        _topic, record, value = stored
        return cls(record_type(record).from_avro(value))


class Unexpected(Exception):
    """A record the entity's state has no rule for: it goes to the dead-letter topic with this reason."""

    reason = "unexpected-record"


@dataclass
class Result:
    """What one record did to one entity: the state to store (None: unchanged) and the records to emit."""

    state: Any | None = None
    outputs: list[Output] = field(default_factory=list)
    transition: tuple[str, str, str] | None = None  # (from, to, trigger) when the saga moved
    duplicate: bool = False  # met before: nothing changed, ``outputs`` are what it caused, emitted again
    writes: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # table key -> value (None: delete)
