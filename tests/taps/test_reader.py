"""The engine's pieces that need no broker: projection, bounds, and the summary's sentence."""

from __future__ import annotations

import pytest

from shopflow.taps.access import tap_audit
from shopflow.taps.reader import DEFAULT_MAX_SCANNED, TapRequest, describe, project, request_of
from shopflow.taps.records import TapError, TapSummary
from shopflow.taps.seek import AtTime


def test_fields_keep_the_paths_asked_for_nested_as_they_were():
    value = {"order_id": "o-1", "customer": {"email": "e", "tier": "gold"}, "n": 1}
    assert project(value, ["order_id", "customer.tier", "missing", "n.deeper"]) == {
        "order_id": "o-1", "customer": {"tier": "gold"}}


@pytest.mark.parametrize("value", [None, "text", [1, 2]])
def test_values_that_are_not_maps_are_kept_whole(value):
    assert project(value, ["a"]) is value


def test_the_default_scan_bound_is_off_while_following_but_an_explicit_one_stays():
    assert request_of("t", follow=True).max_scanned is None
    assert request_of("t").max_scanned == DEFAULT_MAX_SCANNED
    assert request_of("t", follow=True, max_scanned=10).max_scanned == 10
    # an explicit bound equal to the default is still an explicit bound
    assert request_of("t", follow=True, max_scanned=DEFAULT_MAX_SCANNED).max_scanned == DEFAULT_MAX_SCANNED


@pytest.mark.parametrize("option", ["count", "max_scanned"])
def test_bounds_below_one_are_refused(option):
    with pytest.raises(TapError, match=f"--{option.replace('_', '-')} must be at least 1"):
        TapRequest("t", **{option: 0}).bounded()


def test_a_bound_that_stopped_the_scan_says_so_and_where_to_go_on():
    summary = TapSummary(scanned=100_000, returned=3, stopped_by="max-scanned", positions={1: 50_000, 0: 50_000})
    message = describe(summary, TapRequest("orders"))
    assert message.startswith("stopped after scanning 100,000 records (--max-scanned)")
    assert "continue with --offset 0:50000,1:50000" in message


def test_filter_errors_and_notes_are_in_the_summary():
    summary = TapSummary(scanned=5, returned=0, stopped_by="end", filter_errors=5)
    message = describe(summary, TapRequest("orders"), ["partition 1: no record at or after ..."],
                       "partition 0 offset 0: no such member")
    assert "partition 1: no record" in message
    assert "could not be evaluated on 5 records" in message and "has(value.field)" in message


def test_options_as_typed_become_the_engines_request():
    request = request_of("orders", partitions=[2], at="2026-12-01T00:00:00Z", until="2026-12-01T01:00:00Z",
                         fields=" order_id, total.currency ,", where="partition == 2", mask=False)

    assert request == TapRequest("orders", partitions=[2], start=AtTime(1_796_083_200_000),
                                 until_ms=1_796_086_800_000, fields=["order_id", "total.currency"],
                                 where="partition == 2", max_scanned=DEFAULT_MAX_SCANNED, mask=False)
    entry = tap_audit(request, "cli")
    assert (entry.action, entry.target, entry.detail["via"], entry.detail["masked"]) == (
        "tap.unmask", "topic:orders", "cli", False)
    assert tap_audit(request_of("orders"), "http").action == "tap.read"


def test_an_end_by_time_and_by_count_together_are_refused():
    with pytest.raises(TapError, match="--until and --count: give one end at most"):
        request_of("orders", until="2026-12-01", count=3)
