"""Auto-pipelining on the real Redis: concurrent calls share batches yet each gets its own reply or error,
a dropped connection fails only the calls in flight, and a flushed script is loaded again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from shopflow.api.autopipeline import AutoPipeline, auto_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(stack):
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:autopipe:{uuid.uuid4().hex[:8]}"


async def test_concurrent_callers_each_get_their_own_replies(redis: Redis, prefix: str):
    pipeline = auto_pipeline(redis)
    assert auto_pipeline(redis) is pipeline  # one per client: everyone's calls share the batches

    async def caller(i: int) -> list[int]:
        return [await pipeline.execute("INCRBY", f"{prefix}:{i}", i) for _ in range(5)]

    results = await asyncio.gather(*(caller(i) for i in range(1, 101)))
    assert results == [[i * n for n in range(1, 6)] for i in range(1, 101)]
    assert int(await redis.get(f"{prefix}:37")) == 37 * 5


async def test_an_error_reply_fails_only_its_own_call(redis: Redis, prefix: str):
    pipeline = AutoPipeline(redis)
    await redis.set(f"{prefix}:text", "not a number")
    ok, bad, after = await asyncio.gather(
        pipeline.execute("SET", f"{prefix}:a", "1"),
        pipeline.execute("INCR", f"{prefix}:text"),
        pipeline.execute("GET", f"{prefix}:a"),
        return_exceptions=True,
    )
    assert ok is True or ok == b"OK"
    assert isinstance(bad, ResponseError) and "not an integer" in str(bad)
    assert after == b"1"


async def test_a_killed_connection_fails_the_calls_in_flight_and_the_next_call_reconnects(stack, redis: Redis,
                                                                                         prefix: str):
    pipeline = AutoPipeline(redis)
    first_id = await pipeline.execute("CLIENT", "ID")
    killer = Redis.from_url(stack.redis_url)  # not the pool the pipeline borrows from (Redis skips the caller)
    try:
        assert await killer.execute_command("CLIENT", "KILL", "ID", first_id) in (True, 1, b"OK")
    finally:
        await killer.aclose()

    outcomes = []
    for _ in range(3):  # the dead connection is noticed on the first use, at the latest
        try:
            outcomes.append(await pipeline.execute("CLIENT", "ID"))
        except RedisError as exc:
            outcomes.append(exc)
    assert all(isinstance(o, (int, RedisError)) for o in outcomes)
    assert isinstance(outcomes[-1], int) and outcomes[-1] != first_id  # a new connection
    assert await pipeline.execute("SET", f"{prefix}:after", "x") in (True, b"OK")


async def test_a_flushed_script_is_loaded_again(redis: Redis, prefix: str):
    pipeline = AutoPipeline(redis)
    script = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await pipeline.script(script, [f"{prefix}:n"], [2]) == 2
    await redis.script_flush()
    assert await pipeline.script(script, [f"{prefix}:n"], [3]) == 5


async def test_a_cancelled_caller_leaves_the_others_their_replies(redis: Redis, prefix: str):
    pipeline = AutoPipeline(redis)
    doomed = asyncio.ensure_future(pipeline.execute("SET", f"{prefix}:doomed", "1"))
    others = [asyncio.ensure_future(pipeline.execute("INCR", f"{prefix}:c")) for _ in range(10)]
    doomed.cancel()
    assert sorted(await asyncio.gather(*others)) == list(range(1, 11))
    assert doomed.cancelled()
    assert await pipeline.execute("GET", f"{prefix}:c") == b"10"
