"""Waiting in tests for something to happen: poll a condition until it holds, never sleep a guessed time.

``eventually(check)`` asks ``check()`` again (tenacity) until it answers something truthy without
failing an assert, and returns that answer; ``eventually_async`` is the same for a coroutine function.
At the timeout the check's last AssertionError is raised as it was, or one naming ``what`` with the
last answer. ``give_up`` ends a wait at once when waiting longer is pointless (the process that would
make the condition true has died): it answers why, or None to go on. ``until_quiet`` waits for
something to stop changing (the compensations that follow an order's end).

A plain module (tests/ is on ``sys.path``, as for any folder holding a rootdir conftest):
``from polling import eventually``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_fixed

T = TypeVar("T")
GiveUp = Callable[[], str | None]

__all__ = ["eventually", "eventually_async", "until_quiet"]


class _stop_if(stop_base):
    """Stop when ``give_up()`` has a reason."""

    def __init__(self, give_up: GiveUp) -> None:
        self.give_up = give_up

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.give_up() is not None


def _policy(timeout_s: float, interval_s: float, give_up: GiveUp | None) -> dict[str, Any]:
    """Try again while the check fails an assert or answers falsy; any other exception fails at once."""
    stop = stop_after_delay(timeout_s) if give_up is None else stop_after_delay(timeout_s) | _stop_if(give_up)
    return dict(stop=stop, wait=wait_fixed(interval_s),
                retry=retry_if_exception_type(AssertionError) | retry_if_result(lambda answer: not answer))


def _not_met(exc: RetryError, what: str, timeout_s: float, give_up: GiveUp | None) -> BaseException:
    reason = give_up() if give_up is not None else None
    if reason is not None:
        return AssertionError(f"gave up waiting for {what or 'the condition'}: {reason}")
    last = exc.last_attempt
    if last.failed:
        error = last.exception()
        assert error is not None
        return error  # the check's own assert says best what was wrong
    return AssertionError(f"{what or 'the condition'} not within {timeout_s:g}s (last answer {last.result()!r})")


def eventually(check: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.2, what: str = "",
               give_up: GiveUp | None = None) -> T:
    """``check()`` again and again until it returns something truthy without failing an assert; that value."""
    try:
        return Retrying(**_policy(timeout_s, interval_s, give_up))(check)
    except RetryError as exc:
        raise _not_met(exc, what, timeout_s, give_up) from None


async def eventually_async(check: Callable[[], Awaitable[T]], timeout_s: float = 30.0, interval_s: float = 0.2,
                           what: str = "", give_up: GiveUp | None = None) -> T:
    """``eventually`` for a coroutine function: ``await eventually_async(lambda: client.get(...))``."""

    async def attempt() -> T:
        # Awaited here: tenacity would take a lambda returning a coroutine for a plain function, and the
        # coroutine object itself (truthy) for the answer.
        return await check()

    try:
        return await AsyncRetrying(**_policy(timeout_s, interval_s, give_up))(attempt)
    except RetryError as exc:
        raise _not_met(exc, what, timeout_s, give_up) from None


def until_quiet(observe: Callable[[], object], quiet_s: float, timeout_s: float = 60.0, interval_s: float = 0.2,
                what: str = "") -> None:
    """Until ``observe()`` has answered the same for ``quiet_s`` (each call may itself block, e.g. a consumer's
    poll: then ``interval_s=0``); fails if it is still changing at the timeout."""
    last, since = observe(), time.monotonic()

    def quiet_long_enough() -> bool:
        nonlocal last, since
        now = observe()
        if now != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= quiet_s

    eventually(quiet_long_enough, timeout_s, interval_s, what=what or f"no change for {quiet_s:g}s")
