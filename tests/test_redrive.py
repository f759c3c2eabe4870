"""Redrive (shopflow/redrive.py): what a copy of a dead letter carries back, and the ledger that sends each at
most once, through every crash window, on the real broker and PostgreSQL."""
# ruff: noqa: F811 - the fixtures of redrive_support are imported, then named as test arguments

from __future__ import annotations

import asyncio

import pytest
from redrive_support import copies_on, dead_lettered, dlq_headers, ledger, ledger_settings, run_redrive  # noqa: F401 - fixtures, used as test arguments

from shopflow.dead_letters import Position
from shopflow.redrive import REDRIVE_BY, REDRIVE_OF, copy_of


class DeadLetterMessage:
    """A consumed dead letter as confluent-kafka gives it (only what ``copy_of`` reads)."""

    def __init__(self, headers, key=b"o-1", value=b"\x00\x00\x00\x00\x01body"):
        self._headers, self._key, self._value = headers, key, value

    def headers(self):
        return self._headers

    def key(self):
        return self._key

    def value(self):
        return self._value


def test_a_copy_keeps_key_value_and_original_headers_and_says_where_it_comes_from():
    # Given a dead letter whose original record had a trace header
    here = Position("order-commands.dlq", 0, 7)
    message = DeadLetterMessage([("traceparent", b"00-abc"), *dlq_headers()])

    # When its copy is made
    copy = copy_of(here, message, "ops@example.com")

    # Then it goes to the partition it came from, as it was, marked as a redrive
    assert copy is not None
    assert (copy.source_topic, copy.source_partition) == ("order-commands", 2)
    assert (copy.key, copy.value) == (b"o-1", b"\x00\x00\x00\x00\x01body")
    assert copy.headers == [("traceparent", b"00-abc"), (REDRIVE_OF, b"order-commands.dlq/0/7"),
                            (REDRIVE_BY, b"ops@example.com")]


def test_a_record_dead_lettered_again_after_a_redrive_goes_back_with_fresh_marks_only():
    # Given a copy that failed again: the first redrive's marks, then a second set of dlq headers
    first = [*dlq_headers(offset="41"), (REDRIVE_OF, b"order-commands.dlq/0/7"), (REDRIVE_BY, b"a@example.com")]
    message = DeadLetterMessage([*first, *dlq_headers(offset="97")])

    copy = copy_of(Position("order-commands.dlq", 0, 12), message, "b@example.com")

    assert copy is not None
    assert copy.headers == [(REDRIVE_OF, b"order-commands.dlq/0/12"), (REDRIVE_BY, b"b@example.com")]


@pytest.mark.parametrize("headers", [[], [("dlq.reason", b"x")], dlq_headers(partition="two")])
def test_a_dead_letter_that_does_not_say_where_it_came_from_has_no_copy(headers):
    assert copy_of(Position("x.dlq", 0, 0), DeadLetterMessage(headers), "ops") is None


# -- the ledger on the real broker and PostgreSQL ------------------------------------------------------------


@pytest.mark.integration
def test_a_dead_letter_is_redriven_once_and_a_second_redrive_is_refused(ledger_settings, dead_lettered):
    source, dlq = dead_lettered(1)
    here = [Position(dlq, 0, 0)]

    first = run_redrive(ledger_settings, here, by="ops@example.com")
    again = run_redrive(ledger_settings, here, by="other@example.com")

    assert [o.outcome for o in first] == ["sent"]
    assert [o.outcome for o in again] == ["already-redriven"]
    assert "by ops@example.com" in again[0].message
    [(partition, offset, headers)] = copies_on(ledger_settings, source)
    assert (partition, offset) == (1, first[0].target_offset)
    assert headers[REDRIVE_OF] == f"{dlq}/0/0".encode() and headers["origin"] == b"test"
    assert not any(k.startswith("dlq.") for k in headers)
    [row] = ledger(ledger_settings, "SELECT state, redriven_by, target_offset FROM dead_letter_redrives "
                   "WHERE dlq_topic = $1", dlq)
    assert dict(row) == {"state": "done", "redriven_by": "ops@example.com", "target_offset": offset}


@pytest.mark.integration
def test_a_dry_run_claims_and_sends_nothing(ledger_settings, dead_lettered):
    source, dlq = dead_lettered(2)

    outcomes = run_redrive(ledger_settings, [Position(dlq, 0, 0), Position(dlq, 0, 1)], dry_run=True)

    assert [o.outcome for o in outcomes] == ["would-send", "would-send"]
    assert copies_on(ledger_settings, source) == []
    assert ledger(ledger_settings, "SELECT * FROM dead_letter_redrives WHERE dlq_topic = $1", dlq) == []


@pytest.mark.integration
def test_a_claim_left_pending_before_the_send_is_sent_by_the_next_redrive(ledger_settings, dead_lettered):
    # Given a redriver that claimed the record and died before producing it
    source, dlq = dead_lettered(1)
    ledger(ledger_settings, "INSERT INTO dead_letter_redrives (dlq_topic, dlq_partition, dlq_offset, source_topic, "
           "state, redriven_by, attempted_at) VALUES ($1, 0, 0, $2, 'pending', 'crashed', now() - interval '5 min')",
           dlq, source)

    # When the record is redriven again
    [outcome] = run_redrive(ledger_settings, [Position(dlq, 0, 0)])

    # Then it is not lost: sent now, once
    assert outcome.outcome == "sent"
    assert len(copies_on(ledger_settings, source)) == 1


@pytest.mark.integration
def test_a_claim_left_pending_after_the_send_is_closed_without_sending_again(ledger_settings, dead_lettered, producer):
    # Given a redriver that claimed, produced the copy, and died before recording it done
    source, dlq = dead_lettered(1)
    ledger(ledger_settings, "INSERT INTO dead_letter_redrives (dlq_topic, dlq_partition, dlq_offset, source_topic, "
           "state, redriven_by, attempted_at) VALUES ($1, 0, 0, $2, 'pending', 'crashed', now() - interval '5 min')",
           dlq, source)
    producer.produce(source, key=b"k0", value=b"v0", partition=1,
                     headers=[("origin", b"test"), (REDRIVE_OF, f"{dlq}/0/0".encode()), (REDRIVE_BY, b"crashed")])
    producer.flush(10)

    # When the record is redriven again
    [outcome] = run_redrive(ledger_settings, [Position(dlq, 0, 0)])

    # Then the copy already there is found and recorded; nothing is sent twice
    assert outcome.outcome == "found-sent"
    assert [(p, o) for p, o, _ in copies_on(ledger_settings, source)] == [(1, outcome.target_offset)]
    [row] = ledger(ledger_settings, "SELECT state FROM dead_letter_redrives WHERE dlq_topic = $1", dlq)
    assert row["state"] == "done"


@pytest.mark.integration
def test_a_send_that_may_still_land_is_not_overtaken_by_a_second_copy(ledger_settings, dead_lettered):
    # Given a redriver whose PostgreSQL session dropped while its copy was on the way (its row lock gone)
    source, dlq = dead_lettered(1)
    ledger(ledger_settings, "INSERT INTO dead_letter_redrives (dlq_topic, dlq_partition, dlq_offset, source_topic, "
           "state, redriven_by, attempted_at) VALUES ($1, 0, 0, $2, 'pending', 'dropped', now() - interval '10 s')",
           dlq, source)

    # When someone redrives the record before that send can have landed or failed for good
    [outcome] = run_redrive(ledger_settings, [Position(dlq, 0, 0)])

    # Then nothing is sent: the answer says when to try again
    assert outcome.outcome == "busy" and "run the redrive again in" in outcome.message
    assert copies_on(ledger_settings, source) == []


@pytest.mark.integration
def test_a_record_being_redriven_by_someone_else_is_left_to_them(ledger_settings, dead_lettered):
    from shopflow.db import connect

    source, dlq = dead_lettered(1)

    async def scenario():
        holder = await connect(ledger_settings)
        try:
            await holder.execute("INSERT INTO dead_letter_redrives (dlq_topic, dlq_partition, dlq_offset, "
                                 "source_topic, state, redriven_by) VALUES ($1, 0, 0, $2, 'pending', 'other')",
                                 dlq, source)
            async with holder.transaction():  # the other redriver, holding the row while it sends
                await holder.execute("SELECT 1 FROM dead_letter_redrives WHERE dlq_topic = $1 FOR UPDATE", dlq)
                return await asyncio.to_thread(run_redrive, ledger_settings, [Position(dlq, 0, 0)])
        finally:
            await holder.close()

    [outcome] = asyncio.run(scenario())

    assert outcome.outcome == "busy"
    assert copies_on(ledger_settings, source) == []


@pytest.mark.integration
def test_every_dead_letter_a_filter_matches_is_redriven_and_a_missing_offset_said(ledger_settings, dead_lettered):
    from shopflow.dead_letters import matching

    source, dlq = dead_lettered(3)
    found, _ = matching(ledger_settings, dlq, 'key != "k1"')

    outcomes = run_redrive(ledger_settings, [*found, Position(dlq, 0, 99)])

    assert found == [Position(dlq, 0, 0), Position(dlq, 0, 2)]
    assert [o.outcome for o in outcomes] == ["sent", "sent", "missing"]
    assert sorted(h[REDRIVE_OF] for _, _, h in copies_on(ledger_settings, source)) == [
        f"{dlq}/0/0".encode(), f"{dlq}/0/2".encode()]
