"""Where a tap starts and ends on each partition: the seek rules, and parsing of times and offsets.

Starts: the beginning, an offset (clamped, with a note, into what the log still holds), a time (the
first offset at or after it per partition, by the broker's time index), or the end. Ends: each
partition's last stable offset when the tap starts (read_committed: what consumers see), or the first
offset after ``until`` (kcat's ``-o e@ms``), or open when following. The Kafka UI seek bugs this avoids
(provectus/kafka-ui #2633, #2856, #3317, #3573): a partition with no record after the time is started at
its end, never its beginning; an empty partition is done before it is read, never waited on; offsets
are per partition, never one offset spread over all.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from shopflow.taps.records import TapError, TapUnavailable


@dataclass(frozen=True)
class Beginning:
    pass


@dataclass(frozen=True)
class End:
    """Only what arrives from now on (a live tail)."""


@dataclass(frozen=True)
class AtOffset:
    """One offset for every partition read, or ``{partition: offset}`` (what a summary says to continue with)."""

    offset: int | Mapping[int, int]


@dataclass(frozen=True)
class AtTime:
    ms: int


Start = Beginning | End | AtOffset | AtTime

RETRY_S = 5.0  # how long offsets are asked again while a new topic's partitions get their leader

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_SINCE = re.compile(r"(\d+)([smhdw])")


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_since(text: str, now: int | None = None) -> int:
    """``10m``, ``2h``, ``1d``, ``1h30m`` (s, m, h, d, w) -> the time that long ago, ms since the epoch."""
    spec = text.strip().lower()
    parts = _SINCE.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise TapError(f"--since {text!r}: use a number and a unit, e.g. 30s, 10m, 2h, 1d or 1h30m")
    ago = sum(int(n) * _UNITS_MS[u] for n, u in parts)
    return (now_ms() if now is None else now) - ago


def parse_time(text: str, option: str = "--at") -> int:
    """An ISO-8601 time (``2026-12-01T23:00:00Z``, an offset, or none: UTC; a date alone: its midnight UTC)
    or ms since the epoch -> ms since the epoch."""
    spec = text.strip()
    if spec.isdigit():
        return int(spec)
    try:
        when = dt.datetime.fromisoformat(spec)
    except ValueError:
        raise TapError(f"{option} {text!r}: use an ISO-8601 time such as 2026-12-01T23:00:00Z "
                       "(UTC unless it has an offset) or milliseconds since the epoch") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def start_of(from_beginning: bool, offset: str | None, since: str | None, at: str | None, follow: bool) -> Start:
    """The start the options ask for (``shopflow tap`` and ``GET /v1/taps`` alike); at most one of them.
    None given: the beginning, or the end when following (a live tail shows what arrives, like ``tail -f``)."""
    given = [name for name, value in (("--from-beginning", from_beginning), ("--offset", offset),
                                      ("--since", since), ("--at", at)) if value]
    if len(given) > 1:
        raise TapError(f"{' and '.join(given)}: give one start at most")
    if offset is not None:
        return parse_offsets(offset)
    if since is not None:
        return AtTime(parse_since(since))
    if at is not None:
        return AtTime(parse_time(at))
    return End() if follow and not from_beginning else Beginning()


def parse_offsets(text: str) -> AtOffset:
    """``--offset 42`` (every partition) or ``--offset 0:42,3:17`` (per partition, as a summary prints)."""
    spec = text.replace(" ", "")
    try:
        if ":" not in spec:
            return AtOffset(int(spec))
        pairs = (item.split(":") for item in spec.split(",") if item)
        return AtOffset({int(p): int(o) for p, o in pairs})
    except ValueError:
        raise TapError(f"--offset {text!r}: use an offset (42) or partition:offset pairs (0:42,3:17)") from None


def format_offsets(positions: Mapping[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class PartitionRange:
    """One partition's part of a tap: ``position`` (next offset) moves from ``start`` towards ``end``
    (exclusive; None: open, following)."""

    start: int
    end: int | None
    position: int
    done: bool = False
    # at the partition's end when last heard of (an end-of-partition event, no record since)
    at_end: bool = False


class Offsets:
    """Offset look-ups on the broker, read_committed (ends are last stable offsets), on an admin
    connection of its own so they do not queue behind a consumer's fetches."""

    def __init__(self, admin: AdminClient, topic: str, bootstrap_servers: str):
        self.admin, self.topic, self.bootstrap_servers = admin, topic, bootstrap_servers

    def ask(self, specs: Mapping[int, OffsetSpec]) -> dict[int, int]:
        asked = {TopicPartition(self.topic, p): spec for p, spec in specs.items()}
        if not asked:
            return {}
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                answers = self.admin.list_offsets(asked, isolation_level=IsolationLevel.READ_COMMITTED,
                                                  request_timeout=10)
                return {tp.partition: future.result().offset for tp, future in answers.items()}
            except KafkaException as exc:
                # a topic created a moment ago has no leader yet for a while: asked again, briefly
                if _retriable(exc) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise TapUnavailable(f"Kafka at {self.bootstrap_servers} did not answer offsets for {self.topic} "
                                     f"({exc}); check `shopflow stack status`") from None

    def every(self, partitions: list[int], spec: OffsetSpec) -> dict[int, int]:
        return self.ask({p: spec for p in partitions})


# What a partition answers while its leader is being elected (a topic created a moment ago); the
# client does not mark these retriable in list_offsets' answers.
_LEADERLESS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                         KafkaError.UNKNOWN_TOPIC_OR_PART})


def _retriable(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in _LEADERLESS)


def plan(offsets: Offsets, partitions: list[int], start: Start, until_ms: int | None,
         follow: bool) -> tuple[dict[int, PartitionRange], list[str]]:
    """Each partition's range, and notes for the summary (offsets clamped, partitions with nothing)."""
    notes: list[str] = []
    lows = offsets.every(partitions, OffsetSpec.earliest())
    highs = offsets.every(partitions, OffsetSpec.latest())
    starts = _starts(offsets, partitions, start, lows, highs, notes)
    ends: dict[int, int | None] = {p: None if follow else highs[p] for p in partitions}
    if until_ms is not None:
        after = offsets.every(partitions, OffsetSpec.for_timestamp(until_ms + 1))
        for p in partitions:
            if after[p] >= 0:  # the first record after `until`: the end, following or not
                ends[p] = after[p] if follow else min(after[p], highs[p])
    ranges = {}
    for p in partitions:
        end = ends[p]
        begin = starts[p] if end is None else min(starts[p], end)
        ranges[p] = PartitionRange(start=begin, end=end, position=begin, done=end is not None and begin >= end)
    return ranges, notes


def _starts(offsets: Offsets, partitions: list[int], start: Start, lows: dict[int, int], highs: dict[int, int],
            notes: list[str]) -> dict[int, int]:
    if isinstance(start, Beginning):
        return dict(lows)
    if isinstance(start, End):
        return dict(highs)
    if isinstance(start, AtTime):
        found = offsets.every(partitions, OffsetSpec.for_timestamp(start.ms))
        empty = [p for p in partitions if found[p] < 0]
        if empty:
            notes.append(f"partition{'s' if len(empty) > 1 else ''} {_list(empty)}: no record at or after "
                         f"{iso(start.ms)}, read from the end")
        # -1: no record that recent on the partition: start at its end, not its beginning (kafka-ui #3317)
        return {p: found[p] if found[p] >= 0 else highs[p] for p in partitions}
    asked = start.offset
    if isinstance(asked, Mapping):
        unknown = sorted(set(asked) - set(partitions))
        if unknown:
            raise TapError(f"--offset names partition{'s' if len(unknown) > 1 else ''} {_list(unknown)}, not "
                           f"read by this tap (partitions {_list(partitions)})")
        wanted = {p: asked.get(p, lows[p]) for p in partitions}  # the reader reads the named ones only
    else:
        wanted = {p: asked for p in partitions}
    result = {}
    for p in partitions:
        if wanted[p] < lows[p]:
            notes.append(f"partition {p}: offset {wanted[p]} is no longer on the log (retention); read from "
                         f"{lows[p]}, the first it holds")
        elif wanted[p] > highs[p]:
            notes.append(f"partition {p}: offset {wanted[p]} is past its end {highs[p]}; read from the end")
        result[p] = min(max(wanted[p], lows[p]), highs[p])
    return result


def _list(items: list[int]) -> str:
    return ", ".join(str(i) for i in items)
