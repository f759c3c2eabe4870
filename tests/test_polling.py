"""The suite's waits (tests/polling.py): they return the first good answer, report the last bad one, and give
up at once when told why waiting longer is pointless."""

from __future__ import annotations

import itertools

import pytest
from polling import eventually, eventually_async, until_quiet


def test_eventually_returns_the_first_truthy_answer():
    answers = iter([None, [], {"status": "ok"}])

    assert eventually(lambda: next(answers), interval_s=0) == {"status": "ok"}


def test_eventually_retries_a_failed_assert_and_raises_the_last_one():
    calls = itertools.count(1)

    def check() -> int:
        n = next(calls)
        assert n > 1_000_000, f"only {n} calls"
        return n

    with pytest.raises(AssertionError, match=r"only \d+ calls"):
        eventually(check, timeout_s=0.3, interval_s=0.05)
    assert next(calls) > 2


def test_eventually_names_what_did_not_happen():
    with pytest.raises(AssertionError, match=r"the order's end not within 0.2s \(last answer False\)"):
        eventually(lambda: False, timeout_s=0.2, interval_s=0.05, what="the order's end")


def test_an_error_other_than_a_failed_assert_fails_at_once():
    calls = itertools.count(1)

    def check() -> bool:
        next(calls)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        eventually(check, timeout_s=30, interval_s=0)
    assert next(calls) == 2  # one call


def test_eventually_gives_up_at_once_when_told_why():
    calls = itertools.count(1)
    died: list[str] = []

    def check() -> bool:
        if next(calls) == 3:
            died.append("the indexer died: ValueError()")
        return False

    with pytest.raises(AssertionError, match=r"gave up waiting for sku searchable: the indexer died"):
        eventually(check, timeout_s=30, interval_s=0, what="sku searchable", give_up=lambda: died[0] if died else None)
    assert next(calls) == 4  # not one check after the reason came


async def test_eventually_async_awaits_the_check():
    answers = iter([0, 0, 7])

    async def check() -> int:
        return next(answers)

    assert await eventually_async(check, interval_s=0) == 7


async def test_eventually_async_awaits_what_a_lambda_returns():
    answers = iter([0, 0, 7])

    async def answer() -> int:
        return next(answers)

    assert await eventually_async(lambda: answer(), interval_s=0) == 7  # a lambda, as the tests write it


async def test_eventually_async_gives_up_too():
    async def check() -> bool:
        return False

    with pytest.raises(AssertionError, match="gave up waiting for the row: gone"):
        await eventually_async(check, timeout_s=30, interval_s=0, what="the row", give_up=lambda: "gone")


def test_until_quiet_returns_once_nothing_changed_for_the_quiet_time():
    growing = itertools.chain([1, 2, 3], itertools.repeat(3))

    until_quiet(lambda: next(growing), quiet_s=0.1, timeout_s=5, interval_s=0.01)
    assert next(growing) == 3


def test_until_quiet_fails_while_it_keeps_changing():
    counter = itertools.count()

    with pytest.raises(AssertionError, match=r"the topics quiet not within 0.3s"):
        until_quiet(lambda: next(counter), quiet_s=0.2, timeout_s=0.3, interval_s=0.01, what="the topics quiet")
