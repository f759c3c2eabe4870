"""How Faust agents speak ShopFlow's contracts: raw bytes off the topic, decoded by the one codec.

Agents subscribe with ``value_serializer="raw"`` and decode with ``decode_record_or_dead_letter`` (the
typed record of ``shopflow.schemas``, decoded once at the worker's edge), so a poison record becomes a
dead-letter record (with its topic, partition, offset and reason) and the agent goes on, instead of
Faust's own decode error handling stopping the stream. ``FaustRecord``
lets a Faust message stand where a confluent-kafka message is expected.
"""

from __future__ import annotations

from collections.abc import Mapping

from faust.types.tuples import Message


class FaustRecord:
    """A Faust ``Message`` behind the confluent-kafka ``Message`` accessors (``SourceRecord``)."""

    __slots__ = ("_m",)

    def __init__(self, message: Message):
        self._m = message

    def topic(self) -> str:
        return self._m.topic

    def partition(self) -> int:
        return self._m.partition

    def offset(self) -> int:
        return self._m.offset

    def key(self) -> bytes | None:
        return self._m.key

    def value(self) -> bytes | None:
        return self._m.value

    def headers(self) -> list[tuple[str, bytes]]:
        headers = self._m.headers or []
        return list(headers.items()) if isinstance(headers, Mapping) else list(headers)
