"""Consumer lag on the real broker: throwaway topics and groups, our own consumers (never the saga's workers)."""

from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest
from polling import eventually
from rich.console import Console

from shopflow.cli.lag import EXIT_NOT_OK, exit_code, render
from shopflow.lag import GroupLag, GroupNotFound, LagMonitor, LagReport, PartitionLag, Status
from shopflow.lag.collector import metrics

pytestmark = pytest.mark.integration

INTERVAL_S, WINDOW_S = 0.5, 4.0


@pytest.fixture
def lag_monitor(stack):
    """A monitor with a short window, so statuses settle within seconds."""
    monitor = LagMonitor(stack.model_copy(update={"lag_interval_s": INTERVAL_S, "lag_window_s": WINDOW_S}))
    yield monitor
    monitor.close()


def commit_at(consumer, topic: str, offset: int, partition: int = 0) -> None:
    from confluent_kafka import TopicPartition

    consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)


def sampled(monitor: LagMonitor, group: str, check) -> tuple[LagReport, GroupLag]:
    """Samples every INTERVAL_S until ``check(group_lag)`` holds; the report and the group's lag."""

    def look():
        try:
            report = monitor.sample(group)
        except GroupNotFound as exc:  # not joined yet: wait for it as for the rest
            raise AssertionError(str(exc)) from None
        assert check(report.groups[0]), report.groups[0]
        return report, report.groups[0]

    return eventually(look, timeout_s=30, interval_s=INTERVAL_S)


def only(group: GroupLag) -> PartitionLag:
    assert len(group.partitions) == 1, group.partitions
    return group.partitions[0]


def show(title: str, report: LagReport) -> None:
    """What `shopflow lag` prints at this moment (kept in the run's output for the closing note)."""
    out = Console(file=sys.stdout, width=160, highlight=False)
    out.rule(f"shopflow lag: {title}")
    out.print(render(report))


class PacedProducer:
    """Writes a record every ``every_s`` until stopped: orders flowing while the consumer is watched."""

    def __init__(self, producer, topic: str, every_s: float = 0.1):
        self.producer, self.topic, self.every_s = producer, topic, every_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.producer.produce(self.topic, b"order")
            self.producer.poll(0)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.producer.flush(10)


class CommittingConsumer:
    """Consumes and commits each record in a thread of its own; ``pause()`` stops it without leaving the
    group (a stuck consumer), ``close()`` leaves (a stopped one)."""

    def __init__(self, consumer, topic: str):
        self.consumer, self.running = consumer, threading.Event()
        self.closed = threading.Event()
        consumer.subscribe([topic])
        self.running.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.closed.is_set():
            if not self.running.wait(0.1):
                continue
            msg = self.consumer.poll(0.1)
            if msg is not None and not msg.error():
                self.consumer.commit(message=msg, asynchronous=False)

    def pause(self) -> None:
        self.running.clear()

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        self.consumer.close()


def test_a_consumer_that_stops_while_records_flow_turns_stall_then_stop_and_back_to_ok(
        lag_monitor, group_factory, topic_factory, producer):
    new_group, consumer = group_factory
    topic, group = topic_factory("lag-stop"), new_group()
    flow = PacedProducer(producer, topic)
    worker = CommittingConsumer(consumer(group), topic)
    try:
        # Given a consumer keeping up with the flow
        report, g = sampled(lag_monitor, group, lambda g: g.members and only(g).lag is not None)
        assert g.status is Status.OK

        # When it stops processing but stays in the group
        worker.pause()
        paused_at = time.time()

        # Then the lag grows in records and in seconds, and the partition is STALL after a window
        report, g = sampled(lag_monitor, group, lambda g: only(g).status is Status.STALL)
        stalled = only(g)
        assert stalled.lag is not None and stalled.lag > 10
        assert stalled.lag_s is not None and stalled.lag_s >= WINDOW_S - 1
        assert stalled.lag_s <= time.time() - paused_at + 1
        assert not stalled.estimated and stalled.member is not None
        assert exit_code(report) == EXIT_NOT_OK
        show("consumer paused (still a member)", report)

        # When it leaves the group: STOP, and the lag keeps growing
        worker.close()
        report, g = sampled(lag_monitor, group, lambda g: only(g).status is Status.STOP)
        assert not g.members and only(g).lag > stalled.lag and only(g).lag_s > stalled.lag_s
        show("consumer gone", report)

        # When a consumer of the group starts again: it catches up and the group is OK
        worker = CommittingConsumer(consumer(group), topic)
        report, g = sampled(lag_monitor, group, lambda g: only(g).status is Status.OK and only(g).lag_s < 1)
        show("consumer back", report)
        assert exit_code(report) == 0
    finally:
        worker.close()
        flow.stop()


def test_a_group_that_never_committed_is_no_commit_not_a_huge_lag(lag_monitor, group_factory, topic_factory,
                                                                    producer):
    new_group, consumer = group_factory
    topic, group = topic_factory("lag-nocommit"), new_group()
    for n in range(500):
        producer.produce(topic, f"{n}".encode())
    producer.flush(10)
    # Given a member that reads and never commits
    reader = consumer(group)
    reader.subscribe([topic])
    eventually(lambda: reader.poll(0.5) is not None, interval_s=0, what="a record read")

    # When its lag is sampled
    report, g = sampled(lag_monitor, group, lambda g: g.members)

    # Then its partition is "no commit": no lag, no age, not a problem, and no lag series in the metrics
    p = only(g)
    assert (p.committed, p.lag, p.lag_s, p.status) == (None, None, None, Status.OK)
    assert (p.end, p.member is not None) == (500, True)
    series = {(s.name, s.labels.get("group")) for fam in metrics(report) for s in fam.samples}
    assert ("shopflow_consumer_lag", group) not in series
    assert ("shopflow_consumer_group_members", group) in series


def test_transaction_markers_and_aborted_records_leave_no_lag(lag_monitor, group_factory, topic_factory, stack):
    from confluent_kafka import Producer

    new_group, consumer = group_factory
    topic = topic_factory("lag-tx")
    tx = Producer({"bootstrap.servers": stack.bootstrap_servers, "transactional.id": f"test-lag-{uuid.uuid4()}"})
    tx.init_transactions(30)
    for records, commit in ((5, True), (3, False), (2, True), (4, False)):
        tx.begin_transaction()
        for n in range(records):
            tx.produce(topic, f"{n}".encode())
        tx.flush(10)  # on the log before the abort: else the client drops them and there is nothing to abort
        tx.commit_transaction(30) if commit else tx.abort_transaction(30)

    # Given a read_committed consumer that processed every committed record (7) and committed
    caught_up = new_group()
    reader = consumer(caught_up)
    reader.subscribe([topic])
    read = []

    def read_all() -> bool:
        msg = reader.poll(0.5)
        if msg is not None and not msg.error():
            read.append(msg)
        return len(read) == 7

    eventually(read_all, interval_s=0, what="the 7 committed records")
    reader.commit(asynchronous=False)
    # and a group committed in the middle, before the second transaction's records
    behind = new_group()
    commit_at(consumer(behind), topic, 5)

    # When their lag is sampled over a whole window
    statuses = []

    def settled(g: GroupLag) -> bool:
        statuses.append(only(g).status)
        return len(statuses) * INTERVAL_S > WINDOW_S

    _, g = sampled(lag_monitor, caught_up, settled)

    # Then the markers and the aborted records past the last commit are no lag
    p = only(g)
    # 5 records, marker, 3 aborted, marker, 2 records, marker (the commit's offset), 4 aborted, marker
    assert (p.committed, p.end, p.stable) == (12, 18, 18), p
    assert (p.lag, p.lag_s, p.status) == (0, 0.0, Status.OK)
    assert set(statuses) == {Status.OK}
    # while the group behind them has the distance to the last stable offset, from a record it would get
    _, g = sampled(lag_monitor, behind, lambda g: True)
    assert only(g).lag == only(g).stable - 5 and only(g).lag_s is not None and only(g).lag_s >= 0

    # When a transaction is left open: its records are past the last stable offset, still no lag
    tx.begin_transaction()
    tx.produce(topic, b"open")
    tx.flush(10)
    _, g = sampled(lag_monitor, caught_up, lambda g: only(g).end > only(g).stable)
    assert only(g).lag == 0
    tx.abort_transaction(30)


def test_time_lag_is_the_age_of_the_oldest_unprocessed_record(lag_monitor, group_factory, topic_factory, producer,
                                                              admin):
    from confluent_kafka import TopicPartition

    new_group, consumer = group_factory
    topic, group = topic_factory("lag-time"), new_group()
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - age_s * 1000 for age_s in (60, 30, 10)]
    for stamp in stamps:
        producer.produce(topic, b"r", timestamp=stamp)
    producer.flush(10)
    committer = consumer(group)

    def age_s(report: LagReport, offset: int) -> float:
        return report.at - stamps[offset] / 1000

    # Given the group at the first record: the age of that record
    commit_at(committer, topic, 0)
    report, g = sampled(lag_monitor, group, lambda g: only(g).lag == 3)
    assert only(g).lag_s == pytest.approx(age_s(report, 0), abs=0.5) and not only(g).estimated
    # at the second: the second's
    commit_at(committer, topic, 1)
    report, g = sampled(lag_monitor, group, lambda g: only(g).lag == 2)
    assert only(g).lag_s == pytest.approx(age_s(report, 1), abs=0.5)
    # caught up: 0, however old the last record is
    commit_at(committer, topic, 3)
    _, g = sampled(lag_monitor, group, lambda g: only(g).lag == 0)
    assert only(g).lag_s == 0

    # When retention removed the record at the committed offset: estimated from what was read before
    commit_at(committer, topic, 1)
    for deleted in admin.delete_records([TopicPartition(topic, 0, 2)]).values():
        deleted.result(timeout=30)
    report, g = sampled(lag_monitor, group, lambda g: only(g).estimated)
    assert only(g).lag_s == pytest.approx(age_s(report, 1), abs=0.5)
