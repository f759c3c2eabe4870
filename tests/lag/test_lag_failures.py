"""Lag sampling when something fails, without a broker: the sampler thread survives any error, a stale
report is not served as healthy lag, one group the broker does not describe is ERR while the others
still count, and a failed read of next records leaves their ages estimated instead of failing the sample."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from polling import eventually

from shopflow.lag import GroupLag, LagError, LagMonitor, LagReport, PartitionLag, Status
from shopflow.lag.collector import SAMPLED_AT, LagCollector, metrics
from shopflow.lag.offsets import Broker, Ends, GroupOffsets
from shopflow.lag.records import RecordClock
from shopflow.settings import Settings, get_settings

INTERVAL_S = 0.05


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Port 1: nothing answers, and nothing here should ask.
    return get_settings().model_copy(update={"home": tmp_path, "kafka_port": 1, "lag_interval_s": INTERVAL_S})


@pytest.fixture
def collector(settings: Settings):
    made = LagCollector(settings, start=False)
    yield made
    made.close()


def a_report(at: float, lag: int = 7) -> LagReport:
    partition = PartitionLag("orders", 0, 10, 17, 17, lag, 3.0, False, Status.OK, None)
    return LagReport(at, 20.0, True, [GroupLag("shopflow", "STABLE", Status.OK, [], [partition])])


def served(collector: LagCollector) -> set[str]:
    """The names of the series a scrape gets."""
    return {s.name for family in collector.collect() for s in family.samples}


def kafka_error(code: int, reason: str) -> KafkaException:
    return KafkaException(KafkaError(code, reason))


def test_the_sampler_survives_an_error_it_did_not_foresee_and_samples_again(collector: LagCollector):
    # Given a sample that fails with something other than LagError, then succeeds
    outcomes: list[Exception | LagReport] = [RuntimeError("a bug"), a_report(time.time())]

    def sample() -> LagReport:
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    collector.monitor.sample = sample  # type: ignore[method-assign]

    # When the sampler runs
    collector._thread.start()

    # Then it is still sampling after the error
    eventually(lambda: collector.report is not None, timeout_s=5, interval_s=INTERVAL_S,
               what="a report after the failed sample")
    assert collector._thread.is_alive()
    assert collector.error is None


def test_a_stale_report_serves_only_its_time(collector: LagCollector):
    collector.report = a_report(time.time() - collector.stale_after_s + 5)
    assert {SAMPLED_AT, "shopflow_consumer_lag", "shopflow_consumer_group_status"} <= served(collector)

    collector.report = a_report(time.time() - collector.stale_after_s - 1)

    assert served(collector) == {SAMPLED_AT}


def test_the_lag_help_does_not_claim_markers_are_left_out():
    family = next(f for f in metrics(None) if f.name == "shopflow_consumer_lag")

    assert "excluded" not in family.documentation
    assert "aborted records among them count too" in family.documentation


# --- the broker's answers, one group at a time ------------------------------------------------------

def _answered(value: object) -> Future:
    future: Future = Future()
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)
    return future


def _described(member_topic: str) -> SimpleNamespace:
    assignment = SimpleNamespace(topic_partitions=[TopicPartition(member_topic, 0)])
    member = SimpleNamespace(member_id="m-1", client_id="worker-1", host="/127.0.0.1", assignment=assignment)
    return SimpleNamespace(state=SimpleNamespace(name="STABLE"), members=[member])


class FakeAdmin:
    """Answers describe and offset fetch per group: a description, or the exception given for it."""

    def __init__(self, answers: dict[str, object]):
        self.answers = answers

    def describe_consumer_groups(self, ids: list[str], request_timeout: float) -> dict[str, Future]:
        return {g: _answered(self.answers[g]) for g in ids}

    def list_consumer_group_offsets(self, asked: list, request_timeout: float) -> dict[str, Future]:
        g = asked[0].group_id
        answer = self.answers[g]
        committed = SimpleNamespace(topic_partitions=[TopicPartition("orders", 0, 10)])
        return {g: _answered(answer if isinstance(answer, BaseException) else committed)}


@pytest.fixture
def broker() -> Broker:
    return Broker("127.0.0.1:1")


def test_a_group_the_broker_does_not_describe_is_reported_with_its_reason_and_the_others_still_are(broker):
    denied = kafka_error(KafkaError.GROUP_AUTHORIZATION_FAILED, "not authorized for group secret")
    broker.admin = FakeAdmin({"secret": denied, "shopflow": _described("orders")})  # type: ignore[assignment]

    groups = broker.groups(["secret", "shopflow"])

    assert [(g.group, g.error) for g in groups] == [("secret", "not authorized for group secret"), ("shopflow", None)]
    assert groups[1].committed == {("orders", 0): 10}


def test_a_group_deleted_since_it_was_listed_is_left_out(broker):
    gone = kafka_error(KafkaError.GROUP_ID_NOT_FOUND, "no such group")
    broker.admin = FakeAdmin({"gone": gone, "shopflow": _described("orders")})  # type: ignore[assignment]

    assert [g.group for g in broker.groups(["gone", "shopflow"])] == ["shopflow"]


def test_no_group_answering_is_the_broker_unreachable(broker):
    down = kafka_error(KafkaError._TRANSPORT, "connection refused")
    broker.admin = FakeAdmin({"a": down, "b": down})  # type: ignore[assignment]

    with pytest.raises(LagError, match="cannot reach Kafka .*shopflow stack status"):
        broker.groups(["a", "b"])


class FakeBroker:
    """Two groups caught up on orders[0]; ``failing`` names one the broker does not describe."""

    def __init__(self) -> None:
        self.failing: str | None = None

    def group_ids(self, ignore: set[str]) -> list[str]:
        return ["indexer", "shopflow"]

    def groups(self, ids: list[str]) -> list[GroupOffsets]:
        return [GroupOffsets(g, "UNKNOWN", [], error="timed out") if g == self.failing
                else GroupOffsets(g, "STABLE", [], committed={("orders", 0): 17}) for g in ids]

    def ends(self, parts: set) -> dict:
        return {part: Ends(0, 17, 17) for part in parts}


def test_a_group_not_described_is_err_with_its_reason_and_keeps_its_window(settings: Settings):
    monitor = LagMonitor(settings)
    fake = FakeBroker()
    monitor.broker = fake  # type: ignore[assignment]
    try:
        monitor.sample()
        fake.failing = "indexer"

        report = monitor.sample()
    finally:
        monitor.close()

    indexer, shopflow = report.groups
    assert (indexer.status, indexer.error, indexer.partitions) == (Status.ERR, "timed out", [])
    assert shopflow.status is Status.OK and len(shopflow.partitions) == 1
    assert len(monitor.windows[("indexer", "orders", 0)].samples) == 1  # its history survives the outage


def test_a_failed_read_of_next_records_leaves_their_ages_estimated_not_the_sample_failed():
    clock = RecordClock("127.0.0.1:1")
    clock.close()

    def assign(partitions: list) -> None:
        raise kafka_error(KafkaError._STATE, "consumer in a bad state")

    clock.consumer = SimpleNamespace(assign=assign)  # type: ignore[assignment]

    answers = clock.next_records({("orders", 0): (10, 0, 20)})

    next_record = answers[("orders", 0)]
    assert (next_record.known, next_record.estimated) == (False, True)
