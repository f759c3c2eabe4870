"""What the broker says about its consumer groups: members, assignments, committed offsets, log ends.

Every group the broker knows is read (Faust's, the projection's, the indexer's, Connect's sinks, a
tool's), so nothing has to be declared to be watched. A group's partitions are those it committed
and those assigned to its members: a member that has not committed yet still shows its partitions,
as "no commit". Each partition's ends come in three ``ListOffsets`` questions for all of them at
once: the first offset still on the log, the log end (read_uncommitted) and the last stable offset
(read_committed: no open transaction below it).

A group whose description or commits the broker does not give is reported with the broker's reason
(status ERR) and the other groups still are: one group's trouble does not blind the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription, OffsetSpec

from shopflow.lag.records import Partition, kafka_reason

REQUEST_TIMEOUT_S = 10.0
GROUP_GONE = KafkaError.GROUP_ID_NOT_FOUND  # deleted since it was listed: left out, not an error


class LagError(Exception):
    """The lag could not be read; the message says what to do."""


class GroupNotFound(LagError):
    def __init__(self, group: str, known: list[str]):
        self.group, self.known = group, known
        listed = ", ".join(known) if known else "none"
        super().__init__(f"no consumer group {group!r} on the broker; groups: {listed}")


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str


@dataclass(frozen=True)
class Ends:
    first: int  # the first offset still on the log (retention moves it)
    end: int  # the log end (high watermark)
    stable: int  # the last stable offset: nothing before it belongs to an open transaction


@dataclass
class GroupOffsets:
    group: str
    state: str
    members: list[Member]
    committed: dict[Partition, int | None] = field(default_factory=dict)  # None: assigned, never committed
    owners: dict[Partition, Member] = field(default_factory=dict)
    ends: dict[Partition, Ends | str] = field(default_factory=dict)  # str: why they could not be read
    error: str | None = None  # why the group could not be read (nothing else is known of it then)


def _group(group_id: str, described: ConsumerGroupDescription, fetched: ConsumerGroupTopicPartitions) -> GroupOffsets:
    """A group from the broker's description (members, assignments) and its committed offsets."""
    group = GroupOffsets(group_id, described.state.name, [])
    for m in described.members:
        member = Member(m.member_id, m.client_id, m.host)
        group.members.append(member)
        for tp in (m.assignment.topic_partitions if m.assignment else []):
            group.owners[(tp.topic, tp.partition)] = member
            group.committed[(tp.topic, tp.partition)] = None
    for tp in fetched.topic_partitions or []:  # typed optional; the broker always lists them
        if tp.error is None and tp.offset >= 0:
            group.committed[(tp.topic, tp.partition)] = tp.offset
    return group


class Broker:
    """The AdminClient questions a lag sample asks."""

    def __init__(self, bootstrap_servers: str, client_id: str = "shopflow-lag"):
        self.bootstrap_servers = bootstrap_servers
        # librdkafka's own log would repeat each failed connection; LagError says what to do instead.
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers, "client.id": client_id, "log_level": 2})

    def _unreachable(self, exc: Exception) -> LagError:
        reason = kafka_reason(exc) if isinstance(exc, KafkaException) else str(exc)
        return LagError(f"cannot reach Kafka at {self.bootstrap_servers} ({reason}); check `shopflow stack "
                        "status` (start it with `shopflow stack up`)")

    def group_ids(self, ignore: set[str]) -> list[str]:
        try:
            listed = self.admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
        except KafkaException as exc:
            raise self._unreachable(exc) from None
        if listed.errors and not listed.valid:  # how a broker that is down answers: no group, an error
            raise self._unreachable(KafkaException(listed.errors[0]))
        return sorted(g.group_id for g in listed.valid if g.group_id not in ignore)

    def groups(self, ids: list[str]) -> list[GroupOffsets]:
        """Members, assignments and commits of ``ids`` (a group gone since it was listed is left out)."""
        if not ids:
            return []
        try:
            described = self.admin.describe_consumer_groups(ids, request_timeout=REQUEST_TIMEOUT_S)
            # One group per OffsetFetch request in confluent-kafka: all asked at once, then awaited.
            fetches = {g: self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                                 request_timeout=REQUEST_TIMEOUT_S)[g]
                       for g in ids}
        except KafkaException as exc:
            raise self._unreachable(exc) from None
        out = []
        failures = []
        for g in ids:
            try:
                out.append(_group(g, described[g].result(), fetches[g].result()))
            except KafkaException as exc:
                if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == GROUP_GONE:
                    continue
                failures.append(exc)
                out.append(GroupOffsets(g, "UNKNOWN", [], error=kafka_reason(exc)))
        if failures and len(failures) == len(ids):  # not one group answered: the broker is what fails
            raise self._unreachable(failures[0])
        return out

    def ends(self, parts: set[Partition]) -> dict[Partition, Ends | str]:
        """The ends of the partitions of ``parts`` whose topic exists; a partition whose ends cannot be read
        gets the broker's reason instead. A deleted topic's are left out: the commits a group keeps on it
        (for offsets.retention.minutes, a week by default) are leftovers, not a consumer in trouble."""
        try:
            topics = self.admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics
        except KafkaException as exc:
            raise self._unreachable(exc) from None
        parts = {(t, p) for t, p in parts if t in topics and p in topics[t].partitions}
        if not parts:
            return {}
        answers: dict[str, dict[Partition, int]] = {}
        failed: dict[Partition, str] = {}
        questions = {"first": (OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),
                     "end": (OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED),
                     "stable": (OffsetSpec.latest(), IsolationLevel.READ_COMMITTED)}
        try:
            for name, (spec, isolation) in questions.items():
                futures = self.admin.list_offsets({TopicPartition(t, p): spec for t, p in parts},
                                                  isolation_level=isolation, request_timeout=REQUEST_TIMEOUT_S)
                got = answers.setdefault(name, {})
                for tp, future in futures.items():
                    try:
                        got[(tp.topic, tp.partition)] = future.result().offset
                    except KafkaException as exc:  # this partition's (the groups were just read: Kafka is up)
                        failed[(tp.topic, tp.partition)] = kafka_reason(exc)
        except KafkaException as exc:
            raise self._unreachable(exc) from None
        return {part: failed.get(part) or Ends(answers["first"][part], answers["end"][part],
                                                answers["stable"][part]) for part in parts}
