"""Judging a partition's consumer from its recent lag samples, by Burrow's rules, with no threshold to tune.

A sample is what one look at the broker saw for a group's partition: the committed offset, the lag,
whether a live member holds the partition. The window is the samples of the last ``window_s``
seconds; Burrow's rules (linkedin/Burrow, core/internal/evaluator/caching.go), in its order:

- the lag was 0 at some point of the window: OK (a consumer that catches up is well, however slowly);
- the committed offset went backwards between two samples: REWIND;
- the committed offset did not move for a whole window while there was lag: STOP when no member holds
  the partition (the consumer is gone), STALL when one does (it is there and does not progress);
- the offset moves but the lag never went down across a whole window: WARN (a consumer too slow);
- otherwise OK.

Burrow's samples are the group's commits, each with its time; ShopFlow samples the committed offsets
every ``lag_interval_s`` instead (the broker does not say when an offset was committed), so "stopped
committing" is told from "committing the same offset" by membership, and every rule but REWIND waits
for a window of samples: a consumer that commits every few seconds is not STALL between two commits.
A partition the group never committed is neither lagging nor stopped (kafka-lag-exporter #45): OK,
shown as "no commit".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """A partition's or a group's state; a group is its worst partition (listed here best first)."""

    OK = "OK"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"
    # The partition's ends, or the group, could not be read (the broker's reason is shown with it).
    ERR = "ERR"


SEVERITY = {status: rank for rank, status in enumerate(Status)}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=SEVERITY.__getitem__, default=Status.OK)


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the epoch
    committed: int | None  # None: the group has no commit for the partition
    lag: int | None
    owned: bool  # a member of the group holds the partition


def evaluate(window: Sequence[Sample], window_s: float) -> Status:
    """The status of a partition whose samples, oldest first, are ``window``."""
    if not window or window[-1].committed is None:
        return Status.OK
    samples = [s for s in window if s.committed is not None and s.lag is not None]
    if not samples or any(s.lag == 0 for s in samples):
        return Status.OK
    pairs = list(zip(samples, samples[1:], strict=False))
    if any(later.committed < earlier.committed for earlier, later in pairs):  # type: ignore[operator]
        return Status.REWIND
    if samples[-1].at - samples[0].at < window_s:
        return Status.OK  # not a whole window yet: too early to call a consumer stuck or slow
    if all(later.committed == earlier.committed for earlier, later in pairs):
        return Status.STALL if samples[-1].owned else Status.STOP
    if all(later.lag >= earlier.lag for earlier, later in pairs):  # type: ignore[operator]
        return Status.WARN
    return Status.OK


class Window:
    """A partition's samples over the last ``window_s`` seconds, plus the newest older one, so that a
    window spans the whole length as soon as there is history for it."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> Status:
        """Keep ``sample`` and answer the partition's status with it."""
        self.samples.append(sample)
        while len(self.samples) >= 2 and self.samples[1].at <= sample.at - self.window_s:
            self.samples.popleft()
        return evaluate(self.samples, self.window_s)


def offset_lag(committed: int | None, last_stable: int, deliverable_before_stable: bool | None) -> int | None:
    """Records the group has yet to process, counted to the last stable offset.

    A read_committed consumer never gets past the last stable offset, and the transaction markers and
    aborted records below it are never delivered: a group that has read everything commits the offset
    of a marker, one short of the log end forever (librdkafka #2539, #3917). So the distance to the
    last stable offset counts only when a record a read_committed consumer would deliver lies in it
    (``deliverable_before_stable``; None when it could not be told: the distance, an upper bound).
    It is then the whole distance: markers and aborted records in it count too (telling them apart
    would mean reading every record up to the last stable offset at every sample).
    """
    if committed is None:
        return None
    if committed >= last_stable or deliverable_before_stable is False:
        return 0
    return last_stable - committed


def time_lag_s(now_ms: int, next_timestamp_ms: int | None, lag: int | None) -> float | None:
    """How old the group's next record is: 0 when caught up, None when unknown (no commit, unreadable)."""
    if lag is None:
        return None
    if lag == 0:
        return 0.0
    if next_timestamp_ms is None:
        return None
    return max(0.0, (now_ms - next_timestamp_ms) / 1000)
