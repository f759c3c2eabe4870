"""The payments agent's logic: charging and refunding through a gateway, at most once per order.

The gateway is an interface (``PaymentGateway``); ``SimulatedGateway`` is the provider used here,
with outcomes fixed by the card token so scenarios are deterministic:

    tok_approve / anything else -> approved    tok_decline      -> DECLINED
    tok_insufficient            -> INSUFFICIENT_FUNDS              tok_timeout -> no answer in time

``handle_payment`` keeps each order's payment state: a redelivered PaymentRequested answers the
recorded outcome again and never charges twice; a refund is made once and recorded; every step goes
into the order's payment history. A gateway that does not answer in time leaves the charge
TIMED_OUT and emits nothing: the saga's payment timeout cancels the order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from shopflow.schemas.payments import (
    PaymentFailed,
    PaymentFailureReason,
    PaymentRefunded,
    PaymentRequested,
    PaymentSucceeded,
    RefundRequested,
)
from shopflow.schemas.records import Money, datetime_of_ms
from shopflow.streams.runtime import Output, Result, Unexpected, derived_event_id
from shopflow.tables.values import PaymentState

# Everything that reaches the payments agent.
PaymentCommand = PaymentRequested | RefundRequested


class GatewayTimeout(Exception):
    """The provider did not answer in time; whether it charged is unknown until it is asked again."""


@dataclass(frozen=True)
class ChargeOutcome:
    approved: bool
    payment_id: str | None = None
    failure: str | None = None  # PaymentFailureReason symbol
    detail: str | None = None


class PaymentGateway(Protocol):
    async def charge(self, order_id: str, token: str, amount: Money) -> ChargeOutcome: ...
    async def refund(self, payment_id: str, amount: Money) -> str: ...


class SimulatedGateway:
    """A deterministic provider; the order id is its idempotency key, as real providers take one."""

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s
        self.captures: dict[str, int] = {}  # order_id -> captures the provider made (for double-charge checks)

    async def charge(self, order_id: str, token: str, amount: Money) -> ChargeOutcome:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if token == "tok_timeout":
            raise GatewayTimeout(f"no answer for order {order_id}")
        if token == "tok_decline":
            return ChargeOutcome(False, failure="DECLINED", detail="card declined by issuer")
        if token == "tok_insufficient":
            return ChargeOutcome(False, failure="INSUFFICIENT_FUNDS", detail="insufficient funds")
        self.captures[order_id] = self.captures.get(order_id, 0) + 1
        return ChargeOutcome(True, payment_id=derived_event_id(order_id, "payment"))

    async def refund(self, payment_id: str, amount: Money) -> str:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return derived_event_id(payment_id, "refund")


async def handle_payment(
    state: PaymentState | None, command: PaymentCommand, gateway: PaymentGateway, now_ms: int
) -> Result:
    event_id = command.event_id
    if state is not None and state.seen(event_id):
        # Met before: charge nothing, answer again what the charge or refund came to (its answer may
        # have been lost with a crashed worker; the same ids let the orders agent drop a copy).
        again = _outcome(state, now_ms) if isinstance(command, PaymentRequested) else _refunded(state, event_id, now_ms)
        return Result(outputs=again, duplicate=True)
    state = state or PaymentState(order_id=command.order_id)
    outputs: list[Output] = []
    if isinstance(command, PaymentRequested):
        if state.status == "NEW":
            state.amount = command.amount.to_avro()
            try:
                outcome = await gateway.charge(state.order_id, command.payment_token, command.amount)
            except GatewayTimeout as exc:
                state.status = "TIMED_OUT"
                state.history.append({"at": now_ms, "what": "charge timed out", "detail": str(exc)})
                outcome = None
            if outcome is not None and outcome.approved:
                state.status, state.payment_id = "CAPTURED", outcome.payment_id
                state.charges += 1
                state.history.append({"at": now_ms, "what": "captured", "detail": outcome.payment_id})
            elif outcome is not None:
                state.status, state.failure = "FAILED", outcome.failure
                state.history.append({"at": now_ms, "what": "failed", "detail": outcome.detail})
        else:
            state.history.append({"at": now_ms, "what": "repeated request answered from record", "detail": event_id})
        outputs += _outcome(state, now_ms)
    elif isinstance(command, RefundRequested):
        if state.status == "CAPTURED" and state.payment_id is not None:
            state.refund_id = await gateway.refund(state.payment_id, command.amount)
            state.status = "REFUNDED"
            state.history.append({"at": now_ms, "what": "refunded", "detail": state.refund_id})
        outputs += _refunded(state, event_id, now_ms)
    else:
        raise Unexpected(f"the payments agent has no rule for {type(command).__name__}")
    state.remember(event_id)
    return Result(state=state, outputs=outputs)


def _refunded(state: PaymentState, request_id: str, now_ms: int) -> list[Output]:
    if state.status != "REFUNDED":
        return []
    return [Output(PaymentRefunded(
        derived_event_id(request_id, "refunded"), state.order_id, state.payment_id or "", state.refund_id or "",
        Money.of_stored(state.amount), datetime_of_ms(now_ms),
    ))]


def _outcome(state: PaymentState, now_ms: int) -> list[Output]:
    # The id derives from the order, not the request, so a repeated request repeats the same event.
    if state.status in ("CAPTURED", "REFUNDED"):
        return [Output(PaymentSucceeded(
            derived_event_id(state.order_id, "succeeded"), state.order_id, state.payment_id or "",
            Money.of_stored(state.amount),
            datetime_of_ms(now_ms),
        ))]
    if state.status == "FAILED":
        return [Output(PaymentFailed(
            event_id=derived_event_id(state.order_id, "failed"), order_id=state.order_id,
            reason=PaymentFailureReason(state.failure or PaymentFailureReason.GATEWAY_ERROR), detail=None,
            occurred_at=datetime_of_ms(now_ms),
        ))]
    return []  # TIMED_OUT: nothing to say; the saga's payment timeout decides
