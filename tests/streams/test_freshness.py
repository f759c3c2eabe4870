"""Read-model freshness (streams/freshness.py), no servers: the catalog heartbeat against a stand-in index
on a simulated clock. Given an index that shows a change after some time (or never), When heartbeats run,
Then what the gauge and the histogram say, and how often the index is searched."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from shopflow.streams.freshness import CATALOG_TO_SEARCH, CatalogHeartbeat, Freshness, search_pause_s

NEVER = float("inf")


class SimulatedClock:
    """Wall time that only moves when the heartbeat pauses: ten minutes of an outage in milliseconds."""

    def __init__(self, now_s: float = 1_000.0):
        self.now_s = now_s

    def time(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += seconds


class StandInPipeline:
    """The catalog write and the index search: a version becomes searchable ``delay_s`` after its write."""

    def __init__(self, clock: SimulatedClock, delay_s: float):
        self.clock, self.delay_s = clock, delay_s
        self.versions: list[float] = []  # write time of each version (version n at index n - 1)
        self.searches = 0

    async def update_product(self, sku: str, changes: dict) -> SimpleNamespace:
        self.versions.append(self.clock.now_s)
        return SimpleNamespace(version=len(self.versions))

    async def searchable(self, version: int) -> bool:
        """Whether a version >= ``version`` shows (the index keeps the newest one found by the pipeline)."""
        self.searches += 1
        return any(self.clock.now_s >= written + self.delay_s for written in self.versions[version - 1:])


@pytest.fixture
def heartbeat_of(monkeypatch):
    """``heartbeat_of(delay_s, give_up_s=600)``: (heartbeat, pipeline, freshness, registry, clock), on a
    simulated clock and its pauses."""
    made: list[CatalogHeartbeat] = []

    def make(delay_s: float, give_up_s: float = 600.0):
        clock = SimulatedClock()
        pipeline = StandInPipeline(clock, delay_s)
        freshness = Freshness(clock=clock.time)
        registry = CollectorRegistry()
        registry.register(freshness)
        beat = CatalogHeartbeat(pipeline, "http://index.invalid", freshness, give_up_s=give_up_s,  # type: ignore[arg-type]
                                 pause=clock.sleep)
        monkeypatch.setattr(beat, "_searchable", pipeline.searchable)
        made.append(beat)
        return beat, pipeline, freshness, registry, clock

    yield make
    for beat in made:
        asyncio.run(beat.close())


def last_seconds(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("shopflow_freshness_last_seconds", {"path": CATALOG_TO_SEARCH})


def measurements(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("shopflow_freshness_seconds_count", {"path": CATALOG_TO_SEARCH})


async def test_a_dead_pipeline_shows_as_a_freshness_that_keeps_rising_from_the_oldest_change(heartbeat_of):
    beat, pipeline, _, registry, clock = heartbeat_of(NEVER, give_up_s=60)
    first_commit = clock.now_s

    with pytest.raises(TimeoutError):
        await beat.beat()
    after_one = last_seconds(registry)
    with pytest.raises(TimeoutError):
        await beat.beat()  # a newer version, still not searchable

    assert after_one is not None and after_one >= 60
    assert last_seconds(registry) == pytest.approx(clock.now_s - first_commit)  # from the first, not the second
    assert last_seconds(registry) >= 120
    assert measurements(registry) == 0  # nothing measured: a p99 of the histogram cannot see it


async def test_once_the_pipeline_recovers_the_gauge_falls_back_to_the_measurement(heartbeat_of):
    beat, pipeline, _, registry, _ = heartbeat_of(NEVER, give_up_s=60)
    with pytest.raises(TimeoutError):
        await beat.beat()

    pipeline.delay_s = 0.5
    seconds = await beat.beat()

    assert last_seconds(registry) == pytest.approx(seconds)
    assert 0.5 <= seconds <= 0.55
    assert measurements(registry) == 1


async def test_an_outage_costs_the_index_about_a_search_a_second_not_fifty(heartbeat_of):
    beat, pipeline, _, _, _ = heartbeat_of(NEVER, give_up_s=600)

    with pytest.raises(TimeoutError):
        await beat.beat()

    assert pipeline.searches <= 700  # 600 s at 20 ms a search would be 30,000


@pytest.mark.parametrize("delay_s,within_s", [(0.05, 0.02), (2.0, 0.2), (30.0, 1.0)])
async def test_a_measurement_is_within_a_tenth_of_itself_or_20_ms(heartbeat_of, delay_s, within_s):
    beat, _, _, _, _ = heartbeat_of(delay_s)

    seconds = await beat.beat()

    assert delay_s <= seconds <= delay_s + within_s + 1e-9


def test_the_pause_between_searches_grows_with_the_wait_up_to_a_second():
    assert [search_pause_s(w) for w in (0.0, 0.1, 2.0, 10.0, 600.0)] == pytest.approx([0.02, 0.02, 0.2, 1.0, 1.0])


def test_freshness_shows_the_age_of_a_change_still_awaited_when_it_is_longer():
    freshness = Freshness()
    freshness.measured(CATALOG_TO_SEARCH, 0.8)
    assert freshness.last(CATALOG_TO_SEARCH, now_s=1000.0) == 0.8

    freshness.awaiting(CATALOG_TO_SEARCH, since_s=990.0)

    assert freshness.last(CATALOG_TO_SEARCH, now_s=1000.0) == 10.0
