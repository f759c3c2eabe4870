"""What the worker relies on in faust-streaming beyond its documented API (pinned in pyproject.toml).

An upgrade that moves any of it fails here, not in a crash under load: the worker writes a table's
store partition and its changelog itself (a batch has no current event, faust-streaming #497), reads
its consumer's commit state for /health/, and relies on take_events acking a batch only after the
agent is done with it.
"""

from __future__ import annotations

import inspect

import pytest
from faust.stores.rocksdb import Store
from faust.streams import Stream
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from shopflow.streams import faust_fixes


def test_the_rocksdb_store_keeps_a_database_per_partition_and_a_key_index():
    assert callable(Store._db_for_partition)
    assert "self._key_index" in inspect.getsource(Store.__init__)
    assert "self._key_index[key]" in inspect.getsource(Store._get_bucket_for_key)


def test_a_changelog_record_can_name_its_partition():
    params = list(inspect.signature(Collection.send_changelog).parameters)
    assert params[:4] == ["self", "partition", "key", "value"]
    # ... and once the broker has it, the store's persisted offset follows (what recovery starts from).
    assert "set_persisted_offset" in inspect.getsource(Collection._on_changelog_sent)


def test_take_events_acks_a_batch_after_the_agent_is_done_with_it():
    source = inspect.getsource(Stream.take_events)
    after_yield = source[source.index("yield list(events)"):]
    assert "await self.ack(event)" in after_yield and "self.enable_acks = False" in source


def test_offsets_are_committed_only_after_the_producer_is_flushed():
    source = inspect.getsource(Consumer._commit_offsets)
    assert source.index("producer.flush()") < source.index("self._commit(")


def test_the_consumer_state_the_health_page_reads():
    init = inspect.getsource(Consumer.__init__)
    assert "self._acked = " in init and "self._committed_offset = " in init
    assert "self.tp_last_committed_at = {}" in inspect.getsource(AIOKafkaConsumerThread.__post_init__)


class _Commits:
    """The commit state ``Consumer._new_offset`` reads, for one partition."""

    def __init__(self, acked: list[int], committed: int | None):
        from collections import defaultdict

        from intervaltree import IntervalTree

        self._acked = {TP_: list(acked)}
        self._acked_index = {TP_: set(acked)}
        self._committed_offset = {TP_: committed}
        self._gap = defaultdict(IntervalTree)


TP_ = TP("order-commands", 3)


@pytest.mark.parametrize("acked,committed,expected", [
    ([10, 11, 12], 10, 13),   # the records from the committed offset on: all committed
    ([11, 12], 10, None),     # offset 10 never processed: Faust 0.15.3 committed 13, losing it
    ([12, 13], 10, None),     # a longer hole: held (Faust holds this one too)
    ([10, 11, 13], 10, 12),   # a hole further on: committed up to it
    ([0, 1], None, 2),        # nothing committed yet
])
def test_no_offset_is_committed_past_a_record_not_processed(acked, committed, expected):
    """Given acknowledged offsets and the committed one, Then the commit never passes an unprocessed record."""
    faust_fixes.hold_commits_at_holes()
    faust_fixes.HOLES.clear()
    assert Consumer._new_offset(_Commits(acked, committed), TP_) == expected
    assert (TP_ in faust_fixes.HOLES) == (expected is None)
