"""Parsing a tap's start and end options: durations, ISO times and per-partition offsets."""

from __future__ import annotations

import pytest

from shopflow.taps.records import TapError
from shopflow.taps.seek import (
    AtOffset,
    AtTime,
    Beginning,
    End,
    format_offsets,
    iso,
    parse_offsets,
    parse_since,
    parse_time,
    start_of,
)

NOW = 1_800_000_000_000


@pytest.mark.parametrize(("text", "ago_ms"), [
    ("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000), ("1d", 86_400_000), ("1h30m", 5_400_000),
    ("1W", 7 * 86_400_000),
])
def test_since_is_that_long_before_now(text, ago_ms):
    assert parse_since(text, now=NOW) == NOW - ago_ms


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "-5m", "10m garbage", "1.5h"])
def test_a_bad_since_says_how_to_write_one(text):
    with pytest.raises(TapError, match="a number and a unit"):
        parse_since(text, now=NOW)


def test_iso_times_are_utc_unless_they_say_otherwise():
    assert parse_time("2026-12-01T00:00:00Z") == 1_796_083_200_000
    assert parse_time("2026-12-01T00:00:00") == 1_796_083_200_000  # no offset: UTC
    assert parse_time("2026-12-01T01:00:00+01:00") == 1_796_083_200_000
    assert parse_time("2026-12-01") == 1_796_083_200_000
    assert parse_time("2026-12-01T00:00:00.250Z") == 1_796_083_200_250
    assert parse_time("1796083200000") == 1_796_083_200_000  # ms since the epoch as they are


def test_a_bad_time_names_its_option_and_an_example():
    with pytest.raises(TapError, match=r"--until 'yesterday': use an ISO-8601 time such as"):
        parse_time("yesterday", "--until")


def test_iso_is_the_inverse_of_parse_time():
    assert iso(1_796_083_200_250) == "2026-12-01T00:00:00.250Z"
    assert parse_time(iso(1_796_083_200_250)) == 1_796_083_200_250


def test_offsets_for_every_partition_or_per_partition():
    assert parse_offsets("42") == AtOffset(42)
    assert parse_offsets("0:42, 3:17") == AtOffset({0: 42, 3: 17})
    # what a summary prints to continue with reads back as the same positions
    assert parse_offsets(format_offsets({3: 17, 0: 42})) == AtOffset({0: 42, 3: 17})


@pytest.mark.parametrize("text", ["x", "0:", "0:1:2", "a:1"])
def test_bad_offsets_say_both_forms(text):
    with pytest.raises(TapError, match=r"use an offset \(42\) or partition:offset pairs"):
        parse_offsets(text)


@pytest.mark.parametrize(("follow", "from_beginning", "start"), [
    (False, False, Beginning()), (True, False, End()), (True, True, Beginning())])
def test_without_a_start_a_tap_reads_from_the_beginning_and_a_live_tail_from_the_end(follow, from_beginning, start):
    assert start_of(from_beginning, None, None, None, follow) == start


def test_a_start_given_is_parsed_and_two_are_refused():
    assert start_of(False, "0:42", None, None, True) == AtOffset({0: 42})
    assert start_of(False, None, None, "2026-12-01T00:00:00Z", False) == AtTime(1_796_083_200_000)
    with pytest.raises(TapError, match="--from-beginning and --since: give one start at most"):
        start_of(True, None, "10m", None, False)
