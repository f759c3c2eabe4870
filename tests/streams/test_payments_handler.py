"""The payments agent's handler as a Given/When/Then table: Given the requests an order's charge has met (its
stored state, built by the handler with the simulated gateway), When one request arrives, Then the charge's
status and history, what the gateway did in all (captures, refunds), and the answer ("<type> <key>").

The simulated gateway's outcome follows the card token (streams/payments.py): tok_approve captures,
tok_decline and tok_insufficient fail, tok_timeout never answers. No order is ever charged twice, nor
refunded twice; every row run twice from scratch answers with the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from handler_factories import (
    T0,
    TOTAL,
    CountingGateway,
    as_stored,
    charge,
    emitted,
    emitted_ids,
    payment_after,
    refund,
    stock_reserved,
)

from shopflow.schemas.payments import PaymentFailureReason
from shopflow.streams.payments import PaymentCommand, handle_payment
from shopflow.streams.runtime import Result, Unexpected, derived_event_id
from shopflow.tables.values import encode

NOW = T0 + 1_000
CAPTURE = derived_event_id("o-1", "payment")  # the simulated gateway's payment id for order o-1
CAPTURED = (charge(),)
REFUNDED = (*CAPTURED, refund(CAPTURE))


@dataclass(frozen=True)
class Case:
    id: str
    given: tuple[PaymentCommand, ...]
    when: PaymentCommand
    status: str | None  # the stored charge's status after; None: nothing stored (met before)
    answer: str | None = None  # "<type> <key>"
    answer_fields: Mapping[str, object] = field(default_factory=dict)
    history: tuple[str, ...] = ()  # what the charge's history says, in order (when stored)
    charges: int = 0  # captures the gateway made for the order, Given and When together
    refunds: int = 0
    duplicate: bool = False


CASES = [
    Case("approve", (), charge(), "CAPTURED", "PaymentSucceeded o-1",
         {"payment_id": CAPTURE, "amount": TOTAL}, ("captured",), charges=1),
    Case("payment declined", (), charge("tok_decline"), "FAILED", "PaymentFailed o-1",
         {"reason": PaymentFailureReason.DECLINED}, ("failed",)),
    Case("insufficient funds", (), charge("tok_insufficient"), "FAILED", "PaymentFailed o-1",
         {"reason": PaymentFailureReason.INSUFFICIENT_FUNDS}, ("failed",)),
    Case("gateway timeout: nothing said, the saga's payment timeout decides", (), charge("tok_timeout"),
         "TIMED_OUT", history=("charge timed out",)),
    Case("duplicate request (same id): the outcome again, no charge", CAPTURED, charge(), None,
         "PaymentSucceeded o-1", {"payment_id": CAPTURE}, charges=1, duplicate=True),
    Case("repeated request (new id) after a capture: answered from record", CAPTURED, charge(copy=2), "CAPTURED",
         "PaymentSucceeded o-1", {"payment_id": CAPTURE},
         ("captured", "repeated request answered from record"), charges=1),
    Case("repeated request after a decline: declined again, not charged", (charge("tok_decline"),),
         charge(copy=2), "FAILED", "PaymentFailed o-1", {"reason": PaymentFailureReason.DECLINED},
         ("failed", "repeated request answered from record")),
    Case("repeated request after a timeout: not charged again", (charge("tok_timeout"),), charge(copy=2),
         "TIMED_OUT", history=("charge timed out", "repeated request answered from record")),
    Case("refund a captured charge", CAPTURED, refund(CAPTURE), "REFUNDED", "PaymentRefunded o-1",
         {"payment_id": CAPTURE, "refund_id": derived_event_id(CAPTURE, "refund"), "amount": TOTAL},
         ("captured", "refunded"), charges=1, refunds=1),
    Case("refund redelivered (same id): answered again, refunded once", REFUNDED, refund(CAPTURE), None,
         "PaymentRefunded o-1", {"payment_id": CAPTURE}, charges=1, refunds=1, duplicate=True),
    Case("refund asked again (new id): answered, refunded once", REFUNDED, refund(CAPTURE, copy=2), "REFUNDED",
         "PaymentRefunded o-1", {"payment_id": CAPTURE}, ("captured", "refunded"), charges=1, refunds=1),
    Case("refund of an unknown payment: nothing", (), refund("pay-unknown"), "NEW"),
    Case("refund of a declined charge: nothing", (charge("tok_decline"),), refund("pay-none"), "FAILED",
         history=("failed",)),
    Case("refund of a charge that timed out: nothing", (charge("tok_timeout"),), refund("pay-none"), "TIMED_OUT",
         history=("charge timed out",)),
    Case("repeated request after a refund: the capture's answer, no charge", REFUNDED, charge(copy=2), "REFUNDED",
         "PaymentSucceeded o-1", history=("captured", "refunded", "repeated request answered from record"),
         charges=1, refunds=1),
]


async def run(case: Case) -> tuple[Result, CountingGateway]:
    gateway = CountingGateway()
    state = await payment_after(*case.given, gateway=gateway) if case.given else None
    return await handle_payment(state, case.when, gateway, NOW), gateway


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_given_a_charge_when_a_request_arrives_then_its_status_the_gateway_and_the_answer(case: Case) -> None:
    result, gateway = await run(case)

    assert (result.state.status if result.state else None) == case.status
    assert result.duplicate is case.duplicate
    assert emitted(result) == ([case.answer] if case.answer else [])
    for name, value in case.answer_fields.items():
        assert getattr(result.outputs[0].record, name) == value, name
    assert (gateway.captures.get("o-1", 0), gateway.refunds) == (case.charges, case.refunds)
    if result.state is not None:
        assert tuple(step["what"] for step in result.state.history) == case.history
        assert result.state.charges == case.charges  # the state's own count of captures agrees
        assert result.state.seen(case.when.event_id)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_the_same_request_from_the_same_charge_answers_with_the_same_ids(case: Case) -> None:
    (first, _), (second, _) = await run(case), await run(case)

    assert emitted_ids(second) == emitted_ids(first)


@pytest.mark.parametrize("case", [c for c in CASES if c.status is not None], ids=lambda c: c.id)
async def test_a_request_delivered_again_answers_again_and_charges_nothing(case: Case) -> None:
    first, gateway = await run(case)
    assert first.state is not None
    stored = as_stored(first.state)  # as the worker reads it back
    kept = encode(stored.to_dict())  # the bytes the table holds

    again = await handle_payment(stored, case.when, gateway, NOW + 5)

    assert again.duplicate and again.state is None
    assert emitted_ids(again) == emitted_ids(first)  # answered anew (at its time), under the same ids
    assert (gateway.captures.get("o-1", 0), gateway.refunds) == (case.charges, case.refunds)
    assert encode(stored.to_dict()) == kept


async def test_a_charge_outcome_has_one_id_per_order_whichever_request_asked() -> None:
    first, _ = await run(CASES[0])
    other, _ = await run(Case("another order", (), charge(order_id="o-2"), "CAPTURED"))

    assert emitted_ids(first) == [derived_event_id("o-1", "succeeded")]
    assert emitted_ids(other) == [derived_event_id("o-2", "succeeded")]


async def test_a_record_the_payments_agent_has_no_rule_for_raises_unexpected() -> None:
    with pytest.raises(Unexpected, match="no rule for StockReserved"):
        await handle_payment(None, stock_reserved("SKU-A"), CountingGateway(), NOW)  # type: ignore[arg-type]
