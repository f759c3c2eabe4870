"""``--where``: CEL on key, value, headers and metadata; a syntax error stops the tap, a missing field does not."""

from __future__ import annotations

import datetime as dt

import pytest
from taprecords import probe

from shopflow.taps.filters import FilterEvalError, RecordFilter
from shopflow.taps.records import TapError, TapRecord


def record(**overrides) -> TapRecord:
    """A decoded TapProbe record with thin defaults."""
    fields = dict(topic="orders", partition=2, offset=41, timestamp_ms=1_796_083_200_000, key="o-1",
                  headers=[("trace", "t-9"), ("bin", {"hex": "80"})], value=probe(1, order_id="o-1"),
                  value_format="avro", schema="shopflow.tests.TapProbe", schema_id=3)
    return TapRecord(**{**fields, **overrides})


@pytest.mark.parametrize(("expression", "expected"), [
    ('value.customer.tier == "gold"', True),  # a nested field
    ('value.customer.tier == "silver"', False),
    ('headers["trace"] == "t-9"', True),  # a header
    ('headers["bin"] == "80"', True),  # non-UTF-8 header values as their hex
    ('key == "o-1" && partition == 2 && offset > 40', True),
    ("timestamp >= 1796083200000", True),
    ('value.at >= timestamp("2026-12-01T00:00:00Z")', True),  # Avro times are CEL timestamps
    ('schema.endsWith("TapProbe") && topic == "orders"', True),
    ("has(value.channel)", False),
    ('"trace" in headers', True),
])
def test_expressions_see_key_value_headers_and_metadata(expression, expected):
    assert RecordFilter(expression).matches(record()) is expected


def test_a_missing_field_is_an_evaluation_error_not_a_crash():
    with pytest.raises(FilterEvalError, match="no such member"):
        RecordFilter('value.channel == "web"').matches(record())


def test_a_value_that_is_not_a_map_cannot_be_probed():
    with pytest.raises(FilterEvalError):
        RecordFilter('value.order_id == "o-1"').matches(record(value=None, value_format="tombstone"))


def test_a_non_boolean_result_is_an_evaluation_error():
    with pytest.raises(FilterEvalError, match="not true or false"):
        RecordFilter("offset + 1").matches(record())


def test_a_syntax_error_says_where_and_shows_examples():
    with pytest.raises(TapError) as caught:
        RecordFilter('value.order_id ==')
    message = str(caught.value)
    assert "syntax error at column" in message and "value.order_id ==" in message
    assert "Variables: key, value, headers" in message and "--where 'value.order_id == \"o-1\"'" in message


def test_naive_times_compare_as_utc():
    naive = record(value=probe(1, at=dt.datetime(2026, 12, 1)))  # noqa: DTZ001 - as fastavro could give
    assert RecordFilter('value.at == timestamp("2026-12-01T00:00:00Z")').matches(naive)


@pytest.mark.parametrize("source,says", [
    ("value.n == 1 || " * 70 + "true", "characters long, at most 1,000"),
    ("(" * 21 + "true" + ")" * 21, "nests brackets 21 deep"),
    (" || ".join(f"value.f{i} == {i}" for i in range(40)), "too complex"),
    ("value.l.all(a, value.l.all(b, value.l.all(c, a == b && b == c)))", "3 list macros"),
])
def test_an_expression_past_the_cost_caps_is_refused_before_any_record_is_read(source, says):
    # one user's filter must not stall the taps of others (evaluations share a lock)
    with pytest.raises(TapError, match=says):
        RecordFilter(source)


def test_an_expression_within_the_caps_compiles():
    assert RecordFilter(" || ".join(f"value.f{i} == {i}" for i in range(20))).matches(record(value={"f3": 3}))
