"""What every agent shares: the records it emits and how their event ids are made.

An agent reacting to a record derives the ids of what it emits from that record's id (UUIDv5), so
processing the same record again, after a crash or a redelivery, emits records with the same ids
and the consumers' dedupe by event id drops them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from shopflow.topologies.catalog import TOPICS, Topic

TOPICS_BY_NAME = {t.name: t for t in TOPICS}

_NAMESPACE = uuid.UUID("5b0c2d3e-8f61-4c1e-9a57-3f1f0e2b7c10")


def derived_event_id(cause: str, *parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join([cause, *map(str, parts)])))


@dataclass(frozen=True)
class Output:
    """One record to produce: topic, key (the entity id), record full name and Avro-ready value."""

    topic: Topic
    record: str
    value: dict

    @property
    def key(self) -> str:
        return self.value[self.topic.key]

    @property
    def short(self) -> str:
        return self.record.rsplit(".", 1)[1]

    def stored(self) -> list:
        """As kept in an entity's state, to be emitted again: [topic name, record, value]."""
        return [self.topic.name, self.record, self.value]

    @classmethod
    def restore(cls, stored: list) -> Output:
        topic, record, value = stored
        return cls(TOPICS_BY_NAME[topic], record, value)


class Unexpected(Exception):
    """A record the entity's state has no rule for: it goes to the dead-letter topic with this reason."""

    reason = "unexpected-record"


@dataclass
class Result:
    """What one record did to one entity: the state to store (None: unchanged) and the records to emit."""

    state: object | None = None
    outputs: list[Output] = field(default_factory=list)
    transition: tuple[str, str, str] | None = None  # (from, to, trigger) when the saga moved
    duplicate: bool = False  # met before: nothing changed, ``outputs`` are what it caused, emitted again
    writes: dict[str, dict | None] = field(default_factory=dict)  # table key -> value to store (None: delete)
