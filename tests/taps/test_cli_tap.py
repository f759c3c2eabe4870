"""``shopflow tap`` end to end on the real broker: a saga topic, a dead-letter topic, and usage errors.

Throwaway topics stand in for the catalog's (the running saga's topics are not written by tests): one
carries OrderPlaced records as the orders agent writes them, one is named ``<topic>.dlq`` and carries
a dead letter made by ``schemas/deadletter.py`` as every stream makes them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from taprecords import RawMessage
from typer.testing import CliRunner

from shopflow.cli import app
from shopflow.schemas import load_schema
from shopflow.schemas.deadletter import dead_letter
from shopflow.schemas.orders import OrderPlaced
from shopflow.schemas.records import Money, OrderLine

pytestmark = pytest.mark.integration

runner = CliRunner()
SHOPFLOW = Path(sys.executable).with_name("shopflow")


def order_placed(codec, topic: str, order_id: str) -> bytes:
    """An OrderPlaced framed as the orders agent frames it (under ``topic``'s subject for it)."""
    placed = OrderPlaced(str(uuid.uuid4()), order_id, "u-1", (OrderLine("SKU-A", 1, Money(1999, "EUR")),),
                         Money(1999, "EUR"), "tok-secret", datetime.now(UTC))
    return codec.encode_value(f"{topic}-{OrderPlaced.AVRO_NAME}", load_schema(OrderPlaced.AVRO_NAME), placed.to_avro())


@pytest.fixture
def dlq_topic(admin):
    """A throwaway topic whose name ends in ``.dlq``, as dead-letter topics' do; deleted afterwards."""
    from confluent_kafka.admin import NewTopic

    name = f"test-tap-{uuid.uuid4().hex[:8]}.dlq"
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def tap(*args: str):
    return runner.invoke(app, ["tap", *args])


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_a_saga_topic_from_ten_minutes_ago_filtered_by_order_id(stack, topic_factory, producer, codec):
    topic = topic_factory("tap-cli-orders", partitions=3)
    for n in range(5):
        producer.produce(topic, value=order_placed(codec, topic, f"o-{n}"), key=f"o-{n}")
    producer.flush(10)

    result = tap(topic, "--since", "10m", "--where", 'value.order_id == "o-2"')

    assert result.exit_code == 0, result.stderr
    [record] = lines(result.stdout)  # records only on stdout: the summary is on stderr
    assert record["schema"] == OrderPlaced.AVRO_NAME and record["value"]["order_id"] == "o-2"
    assert record["value"]["payment_token"].startswith("payment-token:")  # masked by default
    assert "end: read to the end of" in result.stderr and "5 records scanned, 1 shown" in result.stderr


def test_no_mask_shows_personal_fields_with_a_warning(stack, topic_factory, producer, codec):
    topic = topic_factory("tap-cli-nomask")
    producer.produce(topic, value=order_placed(codec, topic, "o-1"), key="o-1")
    producer.flush(10)

    result = tap(topic, "--no-mask", "--fields", "order_id,payment_token,total.currency")

    assert result.exit_code == 0, result.stderr
    assert lines(result.stdout)[0]["value"] == {"order_id": "o-1", "payment_token": "tok-secret",
                                                "total": {"currency": "EUR"}}
    assert "warning: --no-mask" in result.stderr


def test_an_unmasked_tap_that_cannot_be_audited_is_not_run(stack, topic_factory, producer, codec):
    # Given: a record with a payment token, and PostgreSQL out of reach (nothing listens on port 9)
    topic = topic_factory("tap-cli-noaudit")
    producer.produce(topic, value=order_placed(codec, topic, "o-1"), key="o-1")
    producer.flush(10)

    # When: tapped unmasked
    done = subprocess.run([str(SHOPFLOW), "tap", topic, "--no-mask"], capture_output=True, timeout=60,
                          env={**os.environ, "SHOPFLOW_POSTGRES_PORT": "9", "COLUMNS": "400"})

    # Then: exit 1 saying why, and nothing read
    assert done.returncode == 1, done.stderr.decode()
    assert done.stdout == b"" and "cannot audit tap.unmask topic:" in done.stderr.decode()


def test_a_dead_letter_topic_shows_the_original_record_and_why(stack, dlq_topic, producer, codec):
    original = RawMessage(order_placed(codec, "orders", "o-9"), key_bytes=b"o-9", topic_name="orders",
                          partition_no=4, offset_no=1234)
    letter = dead_letter(original, "handler-failed", "inventory agent raised KeyError: 'SKU-A'")
    producer.produce(dlq_topic, value=letter.value, key=letter.key, headers=letter.headers)
    producer.flush(10)

    result = tap(dlq_topic, "--no-mask")

    assert result.exit_code == 0, result.stderr
    [record] = lines(result.stdout)
    assert record["value"]["order_id"] == "o-9" and record["schema"] == OrderPlaced.AVRO_NAME
    assert record["dead_letter"] == {"reason": "handler-failed", "detail": "inventory agent raised KeyError: 'SKU-A'",
                                     "source_topic": "orders", "source_partition": 4, "source_offset": 1234}


def test_an_unknown_topic_is_a_usage_error_listing_the_catalogs(stack):
    result = tap(f"no-such-topic-{uuid.uuid4().hex[:6]}")
    assert result.exit_code == 2
    assert "The catalog's topics: order-commands, orders" in result.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--where", "value.order_id =="], "syntax error at column"),
    (["--since", "10m", "--at", "2026-12-01T00:00:00Z"], "--since and --at: give one start at most"),
    (["--until", "2026-12-01", "--count", "3"], "--until and --count: give one end at most"),
    (["--since", "ten minutes"], "a number and a unit"),
    (["--count", "0"], "--count must be at least 1"),
])
def test_bad_options_exit_2_with_what_to_write(stack, topic_factory, args, says):
    result = tap(topic_factory("tap-cli-usage"), *args)
    assert result.exit_code == 2 and says in result.stderr


def test_sigterm_ends_a_followed_tap_with_its_summary_as_ctrl_c_does(stack, topic_factory, producer, codec):
    # Given a live tap (a subprocess, as a supervisor runs it) that has shown the topic's 3 records on a pipe
    topic = topic_factory("tap-cli-sigterm")
    for n in range(3):
        producer.produce(topic, value=order_placed(codec, topic, f"o-{n}"), key=f"o-{n}")
    producer.flush(10)
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe, as `| jq` has it
    tail = subprocess.Popen([str(SHOPFLOW), "tap", topic, "--follow", "--from-beginning"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**buffered, "COLUMNS": "400"})
    try:
        shown = b""
        while shown.count(b"\n") < 3 and select.select([tail.stdout], [], [], 60)[0]:
            shown += os.read(tail.stdout.fileno(), 65536)
        assert len(lines(shown.decode())) == 3, f"the tap showed {shown!r} within a minute, not 3 records"

        # When it is sent SIGTERM
        tail.send_signal(signal.SIGTERM)
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()

    # Then it ends as after Ctrl-C: its records written, the summary saying where to continue
    assert tail.returncode == 0, err.decode()
    assert [r["value"]["order_id"] for r in lines(shown.decode())] == ["o-0", "o-1", "o-2"] and out == b""
    assert "interrupted: stopped before the end (3 records scanned, 3 shown); continue with --offset 0:3" in \
        err.decode()
