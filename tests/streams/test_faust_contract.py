"""What the worker relies on in faust-streaming beyond its documented API (pinned in pyproject.toml).

An upgrade that moves any of it fails here, not in a crash under load: the worker writes a table's
store partition and its changelog itself (a batch has no current event, faust-streaming #497), reads
its consumer's commit state for /health/, and relies on take_events acking a batch only after the
agent is done with it.
"""

from __future__ import annotations

import inspect

from faust.stores.rocksdb import Store
from faust.streams import Stream
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread


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
