"""Dead letters as ops see them (shopflow/dead_letters.py) on the real broker: counts per topic, the newest
records decoded with why and where from, and the whole story: a poison record shows up, its cause is
fixed, it is redriven, and the agent processes it as any other record."""
# ruff: noqa: F811 - the fixtures of redrive_support are imported, then named as test arguments

from __future__ import annotations

import asyncio
import uuid

import pytest
from polling import eventually
from redrive_support import copies_on, dead_lettered, dlq_headers, ledger_settings, run_redrive  # noqa: F401

from shopflow.dead_letters import DeadLetterError, Position, check_topic, dead_letter_topics_now, newest


@pytest.mark.parametrize("topic", ["orders", ".dlq", "orders.dlq.x"])
def test_only_a_dead_letter_topic_is_taken(topic):
    with pytest.raises(DeadLetterError, match="is not a dead-letter topic.*order-commands.dlq"):
        check_topic(topic)


@pytest.mark.parametrize(("topic", "source"), [
    ("order-commands.dlq", "order-commands"), ("t-1a2b.dlq", "t-1a2b"), ("order-commands", None), (".dlq", None)])
def test_a_dead_letter_topic_names_its_source_topic_by_the_one_naming_rule(topic, source):
    from shopflow.schemas.deadletter import dead_letter_topic, source_topic_of

    assert source_topic_of(topic) == source
    assert source is None or dead_letter_topic(source) == topic


@pytest.mark.parametrize(("args", "expected"), [
    (["redrive", "order-commands.dlq"], "exactly one"),
    (["redrive", "order-commands.dlq", "--offset", "3", "--where", "true"], "exactly one"),
    (["redrive", "order-commands.dlq", "--partition", "0", "--pending"], "--partition goes with --offset"),
    (["redrive", "orders", "--offset", "1"], "not a dead-letter topic"),
    (["show", "orders"], "not a dead-letter topic"),
    (["redrive", "order-commands.dlq", "--offset", "1", "--to", "0:5"], "go with --where"),
    (["redrive", "order-commands.dlq", "--where", "true", "--to", "5"], "partition:offset pairs"),
    (["show", "order-commands.dlq", "--limit", "0"], "--limit is 1..500"),
])
def test_a_usage_error_of_the_command_exits_2_with_what_to_do(args, expected):
    from typer.testing import CliRunner

    from shopflow.cli import app

    result = CliRunner().invoke(app, ["dead-letters", *args])

    assert result.exit_code == 2
    assert expected in result.output


def topics_now(settings, names):
    from shopflow.db import connect

    async def go():
        conn = await connect(settings)
        try:
            return await dead_letter_topics_now(settings, conn, names)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.integration
def test_a_topic_counts_what_it_holds_received_and_had_redriven(ledger_settings, dead_lettered):
    source, dlq = dead_lettered(3)
    run_redrive(ledger_settings, [Position(dlq, 0, 1)])

    [counted, missing] = topics_now(ledger_settings, [dlq, "never-made.dlq"])

    assert (counted.topic, counted.source_topic, counted.held, counted.received) == (dlq, source, 3, 3)
    assert (counted.redriven, counted.pending) == (1, 0)
    assert (missing.exists, missing.held) == (False, 0)


@pytest.mark.integration
def test_a_filter_scan_stopped_by_its_bound_says_so_and_goes_on_from_there(stack, dead_lettered):
    from shopflow.dead_letters import matching, scan_bound

    _, dlq = dead_lettered(4)

    # When a filter every record matches scans at most 3 of the 4
    first, summary = matching(stack, dlq, "true", max_scanned=3)

    # Then it says it stopped at its bound and where, and going on from there finds the rest only
    assert [p.offset for p in first] == [0, 1, 2]
    assert "stopped at its bound of 3 records, at offsets 0:3" in (scan_bound(summary) or "")
    rest, after = matching(stack, dlq, "true", start=summary.positions)
    assert [p.offset for p in rest] == [3]
    assert scan_bound(after) is None and after.positions == {0: 4}


@pytest.mark.integration
def test_the_command_redrives_exactly_what_its_dry_run_listed(ledger_settings, dead_lettered, producer):
    from typer.testing import CliRunner

    from shopflow.cli import app
    from shopflow.redrive import REDRIVE_OF

    source, dlq = dead_lettered(3)
    env = {"SHOPFLOW_POSTGRES_SCHEMA": ledger_settings.postgres_schema}
    where = ["--where", 'key != "k1"']

    # Given a dry run: what matches, up to where it scanned, and how to send exactly that
    dry = CliRunner().invoke(app, ["dead-letters", "redrive", dlq, *where, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "2 records match, scanned up to offsets 0:3" in dry.output and "--to 0:3" in dry.output

    # When a matching dead letter arrives after it, and the redrive is run with the dry run's range
    producer.produce(dlq, key=b"k9", value=b"v9", headers=dlq_headers(source, "1", "9"))
    producer.flush(10)
    done = CliRunner().invoke(app, ["dead-letters", "redrive", dlq, *where, "--to", "0:3", "--yes"], env=env)

    # Then the dry run's two are sent, the newcomer is not
    assert done.exit_code == 0, done.output
    assert "2 records match" in done.output
    assert sorted(h[REDRIVE_OF] for _, _, h in copies_on(ledger_settings, source)) == [
        f"{dlq}/0/0".encode(), f"{dlq}/0/2".encode()]


@pytest.mark.integration
def test_the_newest_dead_letters_come_newest_first_with_reason_and_origin(stack, dead_lettered):
    source, dlq = dead_lettered(5)

    records, summary = newest(stack, dlq, limit=2)

    assert [r.offset for r in records] == [4, 3]
    assert records[0].dead_letter is not None
    assert (records[0].dead_letter.reason, records[0].dead_letter.source_topic) == ("unexpected-record", source)
    assert (records[0].dead_letter.source_partition, records[0].dead_letter.source_offset) == (1, 4)
    assert summary.scanned == 2  # only the last two were read


@pytest.mark.integration
def test_a_filter_keeps_the_newest_matches_of_the_whole_topic(stack, dead_lettered):
    _, dlq = dead_lettered(5)

    records, _ = newest(stack, dlq, limit=2, where='key in ["k0", "k1", "k3"]')

    assert [r.key for r in records] == ["k3", "k1"]


@pytest.mark.integration
def test_a_bad_filter_says_what_is_wrong(stack, dead_lettered):
    _, dlq = dead_lettered(1)

    with pytest.raises(DeadLetterError):
        newest(stack, dlq, where="value.order_id ==")


@pytest.mark.integration
def test_a_cancel_sent_before_its_order_is_dead_lettered_then_redriven_and_processed(
        stack, codec, worker_factory, ledger_settings):
    from shopflow.streams.client import SagaClient, TopicReader

    run = uuid.uuid4().hex[:8]
    order_id, sku = f"{run}-o1", f"{run}-SKU"
    worker_factory(1)
    client = SagaClient(stack, codec)
    orders = TopicReader(stack, codec, ["orders"], from_end=True)
    seen: list[tuple[str, dict]] = []

    def order_event(name: str) -> dict:
        seen.extend((r, v) for _, r, v, _ in orders.poll(0.5) if v.get("order_id") == order_id)
        found = [v for r, v in seen if r == name]
        assert found, f"no {name} for {order_id} yet; seen {[r for r, _ in seen]}"
        return found[0]

    try:
        # Given a CancelOrder that reached the orders agent before its order: the agent has no rule for it
        client.cancel(order_id)
        client.flush()

        # Then it shows under dead letters, with why and where from
        def dead_letter():
            records, _ = newest(stack, "order-commands.dlq", limit=5, where=f'value.order_id == "{order_id}"')
            assert records, f"the CancelOrder of {order_id} is not dead-lettered yet"
            return records[0]

        letter = eventually(dead_letter, timeout_s=60)
        assert letter.dead_letter is not None and letter.dead_letter.reason == "unexpected-record"
        assert "never placed" in letter.dead_letter.detail
        assert letter.dead_letter.source_topic == "order-commands"

        # When the cause is fixed (the order is placed and confirmed) and the dead letter redriven
        client.seed_stock({sku: 5})
        client.place(order_id, [(sku, 1, 1500)])
        client.flush()
        eventually(lambda: order_event("OrderConfirmed"), timeout_s=60, interval_s=0)
        here = [Position(letter.topic, letter.partition, letter.offset)]
        [outcome] = run_redrive(ledger_settings, here, by="ops@example.com")

        # Then the agent processes it as any other cancel after payment: the order is refunded
        assert outcome.outcome == "sent"
        cancelled = eventually(lambda: order_event("OrderCancelled"), timeout_s=60, interval_s=0)
        assert cancelled["refunded"] is True and cancelled["reason"] == "BY_CUSTOMER"
        # and a second redrive is refused: never twice
        [again] = run_redrive(ledger_settings, here, by="ops@example.com")
        assert again.outcome == "already-redriven"
    finally:
        orders.close()
        client.close()
