"""The lag statuses (Burrow's rules over a window of samples) and the lag arithmetic, without a broker."""

from __future__ import annotations

import pytest

from shopflow.lag.evaluate import Sample, Status, Window, evaluate, offset_lag, time_lag_s, worst

WINDOW_S = 10.0


def samples(*rows: tuple[int | None, int | None], owned: bool = True, every_s: float = 2.0) -> list[Sample]:
    """A window of samples ``every_s`` apart, from ``(committed, lag)`` rows, oldest first."""
    return [Sample(at=1000.0 + n * every_s, committed=c, lag=lag, owned=owned) for n, (c, lag) in enumerate(rows)]


@pytest.mark.parametrize("given,owned,then", [
    # a consumer that reached 0 lag once in the window is fine, whatever else happened
    ([(10, 0), (10, 5), (10, 9), (10, 12), (10, 15), (10, 20)], True, Status.OK),
    # moving and the lag going down somewhere: OK
    ([(10, 5), (12, 6), (14, 4), (16, 7), (18, 8), (20, 9)], True, Status.OK),
    # moving, the lag never going down across the whole window: WARN
    ([(10, 5), (12, 6), (14, 6), (16, 7), (18, 8), (20, 9)], True, Status.WARN),
    # not moving for the whole window with lag, a member holds it: STALL
    ([(10, 5), (10, 6), (10, 6), (10, 7), (10, 8), (10, 9)], True, Status.STALL),
    # same, and nobody holds it any more: STOP
    ([(10, 5), (10, 6), (10, 6), (10, 7), (10, 8), (10, 9)], False, Status.STOP),
    # not moving and the lag not growing (no new records): still stuck
    ([(10, 5)] * 6, True, Status.STALL),
    # the committed offset went back: REWIND, even before a whole window
    ([(10, 5), (12, 3), (4, 11)], True, Status.REWIND),
    # not moving but for less than a window: too early to say
    ([(10, 5), (10, 6), (10, 7)], True, Status.OK),
    # a group that never committed is not lagging, not stopped
    ([(None, None)] * 6, False, Status.OK),
    # the commit came after a while without one: judged on the samples with a commit
    ([(None, None), (None, None), (10, 5), (10, 6)], True, Status.OK),
])
def test_a_window_of_samples_gets_burrows_status(given, owned, then):
    assert evaluate(samples(*given, owned=owned), WINDOW_S) is then


def test_a_window_keeps_one_sample_older_than_its_length_so_a_full_window_is_judged():
    window = Window(window_s=WINDOW_S)
    statuses = [window.add(s) for s in samples(*[(10, 5)] * 12, every_s=1.0)]

    assert statuses[:10] == [Status.OK] * 10  # 0..9 s: less than a window of history
    assert statuses[10:] == [Status.STALL] * 2
    assert window.samples[-1].at - window.samples[0].at == WINDOW_S


def test_a_stall_ends_when_the_consumer_moves_and_catches_up():
    window = Window(window_s=WINDOW_S)
    for s in samples(*[(10, 5)] * 7):
        window.add(s)

    assert window.add(Sample(1014.0, 15, 0, True)) is Status.OK


def test_a_group_is_its_worst_partition():
    assert worst([Status.OK, Status.STALL, Status.WARN]) is Status.STALL
    assert worst([Status.STOP, Status.ERR]) is Status.ERR
    assert worst([]) is Status.OK


@pytest.mark.parametrize("committed,stable,deliverable,lag", [
    (None, 100, None, None),  # no commit: no lag, never the log end (kafka-lag-exporter #45)
    (100, 100, None, 0),
    (99, 100, False, 0),  # only a transaction marker (or aborted records) left: caught up
    (90, 100, True, 10),
    (90, 100, None, 10),  # could not be told: the distance, an upper bound
    (105, 100, None, 0),  # a read_uncommitted consumer inside an open transaction
])
def test_offset_lag_counts_to_the_last_stable_offset_and_only_deliverable_records(committed, stable, deliverable,
                                                                                   lag):
    assert offset_lag(committed, stable, deliverable) == lag


@pytest.mark.parametrize("next_timestamp_ms,lag,seconds", [
    (None, None, None),  # no commit
    (None, 0, 0.0),  # caught up: 0 however old the last record is
    (40_000, 3, 60.0),  # the age of the next record to process
    (None, 3, None),  # lagging and that record unknown
    (100_500, 1, 0.0),  # a producer's clock a little ahead is not a negative lag
])
def test_time_lag_is_the_age_of_the_next_record(next_timestamp_ms, lag, seconds):
    assert time_lag_s(100_000, next_timestamp_ms, lag) == seconds


@pytest.fixture
def record_clock():
    from shopflow.lag.records import RecordClock

    clock = RecordClock("127.0.0.1:1")  # estimates read no broker
    yield clock
    clock.close()


@pytest.mark.parametrize("offset,stamp", [
    (150, 1_500),  # between two records seen: interpolated
    (100, 1_000),  # a record seen
    (50, 1_000),  # before every record seen: the oldest one's (the age is then a lower bound)
    (500, 3_000),  # past them: the newest one's
])
def test_a_removed_records_timestamp_is_estimated_from_the_records_around_it(record_clock, offset, stamp):
    from shopflow.lag.records import Found

    for seen, ts in ((100, 1_000), (200, 2_000), (300, 3_000)):
        record_clock._remember(("t", 0), seen, Found(seen, ts))

    assert record_clock.estimate(("t", 0), offset) == stamp
    assert record_clock.estimate(("t", 1), offset) is None  # nothing seen on that partition
