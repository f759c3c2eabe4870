"""Dead letters as ops see them (shopflow/dead_letters.py) on the real broker: counts per topic, the newest
records decoded with why and where from, and the whole story: a poison record shows up, its cause is
fixed, it is redriven, and the agent processes it as any other record."""
# ruff: noqa: F811 - the fixtures of redrive_support are imported, then named as test arguments

from __future__ import annotations

import asyncio
import uuid

import pytest
from polling import eventually
from redrive_support import dead_lettered, ledger_settings, run_redrive  # noqa: F401 - fixtures

from shopflow.dead_letters import DeadLetterError, Position, check_topic, dead_letter_topics_now, newest


@pytest.mark.parametrize("topic", ["orders", ".dlq", "orders.dlq.x"])
def test_only_a_dead_letter_topic_is_taken(topic):
    with pytest.raises(DeadLetterError, match="is not a dead-letter topic.*order-commands.dlq"):
        check_topic(topic)


@pytest.mark.parametrize(("args", "expected"), [
    (["redrive", "order-commands.dlq"], "exactly one"),
    (["redrive", "order-commands.dlq", "--offset", "3", "--where", "true"], "exactly one"),
    (["redrive", "order-commands.dlq", "--partition", "0", "--pending"], "--partition goes with --offset"),
    (["redrive", "orders", "--offset", "1"], "not a dead-letter topic"),
    (["show", "orders"], "not a dead-letter topic"),
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
