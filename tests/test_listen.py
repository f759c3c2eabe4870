"""``shopflow.listen.Listener`` on the real PostgreSQL: notifications arrive, and a killed connection
comes back by itself, with ``on_gap`` told both times (lost, back) that some may have been missed."""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from polling import eventually_async

from shopflow.db import connect
from shopflow.listen import Listener

pytestmark = pytest.mark.integration


async def test_a_killed_listen_connection_comes_back(stack):
    channel = f"shopflow_test_{uuid.uuid4().hex[:8]}"
    heard: list[str] = []
    gaps: list[bool] = []
    listener = Listener(stack, channel, heard.append, on_gap=lambda: gaps.append(listener.listening))
    await listener.start()
    admin = await connect(stack)
    try:
        async def heard_all(*payloads: str) -> bool:
            return heard == list(payloads)

        await admin.execute("SELECT pg_notify($1, 'before')", channel)
        await eventually_async(partial(heard_all, "before"), timeout_s=10)
        assert gaps == [True]  # on connecting

        backend = await admin.fetchval("SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                                       f"shopflow-listen-{channel}")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)

        async def back() -> bool:
            return listener.listening and gaps == [True, False, True]  # lost, then listening again

        await eventually_async(back, timeout_s=20, what="the listener back")
        await admin.execute("SELECT pg_notify($1, 'after')", channel)
        await eventually_async(partial(heard_all, "before", "after"), timeout_s=10)
    finally:
        await listener.close()
        await admin.close()
    assert not listener.listening
