"""Consumer lag of every group on the broker, sample after sample: the one engine behind ``shopflow lag``,
the monitor's metrics (``LagCollector``) and the ops console.

A ``LagMonitor`` keeps each partition's window of samples, so calling ``sample()`` every
``settings.lag_interval_s`` lets the statuses evolve (see ``evaluate``); a single call gives the
offsets and lags of the moment, with statuses that need a window still OK.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from shopflow.lag.evaluate import Sample, Status, Window, offset_lag, time_lag_s, worst
from shopflow.lag.offsets import Broker, Ends, GroupNotFound, GroupOffsets, Member
from shopflow.lag.records import NextRecord, Partition, RecordClock
from shopflow.settings import Settings

CLIENT_ID = "shopflow-lag"


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed this partition ("no commit")
    end: int | None  # the log end; None with ``error``
    stable: int | None  # the last stable offset
    lag: int | None  # records to process; None when there is no commit
    lag_s: float | None  # age of the next record to process; 0 when caught up
    estimated: bool  # lag_s is an estimate (that record is gone or could not be read)
    status: Status
    member: Member | None  # who holds the partition now
    error: str | None = None


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str  # the broker's: STABLE, EMPTY, PREPARING_REBALANCE, ...
    status: Status  # the worst of its partitions'
    members: list[Member]
    partitions: list[PartitionLag]
    error: str | None = None  # why the broker did not describe the group (its status is then ERR)

    @property
    def lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    @property
    def lag_s(self) -> float | None:
        return max((p.lag_s for p in self.partitions if p.lag_s is not None), default=None)


@dataclass(frozen=True)
class LagReport:
    at: float  # seconds since the epoch
    window_s: float
    complete: bool  # a whole window of samples is behind the statuses
    groups: list[GroupLag]

    @property
    def ok(self) -> bool:
        return all(g.status is Status.OK for g in self.groups)

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class LagMonitor:
    """Samples the broker's groups and judges each partition over its window. Not thread-safe: one
    sampler at a time (``LagCollector`` runs one in its own thread)."""

    def __init__(self, settings: Settings, client_id: str = CLIENT_ID):
        self.window_s = settings.lag_window_s
        self.broker = Broker(settings.bootstrap_servers, client_id)
        self.clock = RecordClock(settings.bootstrap_servers, client_id)
        # Its own reader group never joins or commits, but is left out should a broker ever list it.
        self.ignore = {f"{client_id}-reader"}
        self.windows: dict[tuple[str, str, int], Window] = {}
        self.first_sample: float | None = None

    def close(self) -> None:
        self.clock.close()

    def group_ids(self) -> list[str]:
        return self.broker.group_ids(self.ignore)

    def sample(self, group: str | None = None) -> LagReport:
        """One look at every group (or only ``group``: GroupNotFound lists the others)."""
        ids = self.group_ids()
        if group is not None:
            if group not in ids:
                raise GroupNotFound(group, ids)
            ids = [group]
        groups = self.broker.groups(ids)
        all_ends = self.broker.ends({part for g in groups for part in g.committed})
        now = time.time()
        behind = {}
        for g in groups:
            g.committed = {part: c for part, c in g.committed.items() if part in all_ends}
            g.ends = {part: all_ends[part] for part in g.committed}
            for part, committed in g.committed.items():
                ends = g.ends[part]
                if committed is not None and isinstance(ends, Ends) and committed < ends.stable:
                    # Two groups at one offset of a partition ask one question.
                    behind[part, committed] = (committed, ends.first, ends.stable)
        nexts = self._next_records(behind)
        report = [self._group(g, nexts, now) for g in groups]
        self._forget(report, whole=group is None)
        if self.first_sample is None:
            self.first_sample = now
        return LagReport(now, self.window_s, now - self.first_sample >= self.window_s, report)

    def _next_records(self, behind: dict[tuple[Partition, int], tuple[int, int, int]]
                      ) -> dict[tuple[Partition, int], NextRecord]:
        """The clock reads one offset per partition at a time; groups at other offsets wait a round."""
        answers: dict[tuple[Partition, int], NextRecord] = {}
        pending = dict(behind)
        while pending:
            batch: dict[Partition, tuple[int, int, int]] = {}
            for (part, committed), asked in list(pending.items()):
                if part not in batch:
                    batch[part] = asked
                    del pending[part, committed]
            for part, next_record in self.clock.next_records(batch).items():
                answers[part, batch[part][0]] = next_record
        return answers

    def _group(self, g: GroupOffsets, nexts: dict[tuple[Partition, int], NextRecord], now: float) -> GroupLag:
        if g.error is not None:
            return GroupLag(g.group, g.state, Status.ERR, [], [], error=g.error)
        partitions = []
        for (topic, p), committed in sorted(g.committed.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            ends, owner = g.ends[(topic, p)], g.owners.get((topic, p))
            window = self.windows.setdefault((g.group, topic, p), Window(self.window_s))
            if isinstance(ends, str):
                partitions.append(PartitionLag(topic, p, committed, None, None, None, None, False, Status.ERR,
                                               owner, error=ends))
                continue
            nxt = nexts.get(((topic, p), committed)) if committed is not None else None
            deliverable = None if nxt is None or not nxt.known else nxt.deliverable_before is not None
            lag = offset_lag(committed, ends.stable, deliverable)
            lag_s = time_lag_s(int(now * 1000), nxt.timestamp_ms if nxt else None, lag)
            estimated = bool(nxt and nxt.estimated and lag)
            status = window.add(Sample(now, committed, lag, owner is not None))
            partitions.append(PartitionLag(topic, p, committed, ends.end, ends.stable, lag, lag_s, estimated,
                                           status, owner))
        return GroupLag(g.group, g.state, worst(p.status for p in partitions), g.members, partitions)

    def _forget(self, report: list[GroupLag], whole: bool) -> None:
        """Drop the windows of partitions no longer reported (a group deleted, a topic gone); a group the
        broker did not describe this time keeps its windows."""
        seen = {(g.group, p.topic, p.partition) for g in report for p in g.partitions}
        groups = {g.group for g in report if g.error is None}
        unread = {g.group for g in report if g.error is not None}
        for key in list(self.windows):
            if key not in seen and key[0] not in unread and (whole or key[0] in groups):
                del self.windows[key]
