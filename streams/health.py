"""A worker's health, for ops and load balancers: ``GET /health/`` on every worker's web port.

200 when the worker can reach the broker, holds its partitions and is not restoring tables; 503
otherwise, with why. It also says, per partition it owns, how many processed records are not
committed yet and how long ago the last commit went out: a worker cut off from the broker keeps its
place (Faust commits an offset only after the producer has flushed what the records caused) and its
uncommitted count grows, which this page shows and the log says once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time

from confluent_kafka import Producer
from faust.web import Request, Response, View

from shopflow.kafka import client_config

log = logging.getLogger("shopflow.worker")

BROKER_CHECK_TIMEOUT_S = 2.0


def broker_reachable(bootstrap_servers: str, timeout_s: float = BROKER_CHECK_TIMEOUT_S) -> str | None:
    """None when the broker answers a metadata request in time; otherwise why not."""
    # A producer, which can be closed: an admin client cannot, and would go on retrying a stopped broker.
    client = Producer(client_config(bootstrap_servers, "shopflow-health"))
    try:
        client.list_topics(timeout=timeout_s)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"the broker at {bootstrap_servers} did not answer in {timeout_s:g}s ({exc})"
    finally:
        client.close()


def report(app, broker_problem: str | None) -> dict:
    consumer = app.consumer
    now = time.monotonic()
    committed_at = consumer._thread.tp_last_committed_at  # the aiokafka thread's, set at each commit
    partitions = {}
    for tp in sorted(consumer.assignment()):
        acked = consumer._acked.get(tp) or []  # processed, not yet committed
        at = committed_at.get(tp)
        partitions[f"{tp.topic}/{tp.partition}"] = {
            "committed": consumer._committed_offset.get(tp),
            "uncommitted": len(acked),
            "last_commit_s_ago": None if at is None else round(now - at, 1),
        }
    problems = [p for p in (
        broker_problem,
        "rebalancing" if app.rebalancing else None,
        "restoring tables from their changelogs" if app.in_recovery else None,
    ) if p]
    return {"status": "ok" if not problems else "unavailable", "problems": problems, "partitions": partitions}


def install(app, bootstrap_servers: str) -> None:
    """The /health/ page, and a warning in the log every minute the broker cannot be reached."""

    class Health(View):
        async def get(self, request: Request) -> Response:
            problem = await asyncio.to_thread(broker_reachable, bootstrap_servers)
            body = report(app, problem)
            return self.json(body, status=200 if body["status"] == "ok" else 503)

    app.page("/health/")(Health)

    @app.timer(interval=60.0)
    async def warn_when_cut_off() -> None:
        problem = await asyncio.to_thread(broker_reachable, bootstrap_servers)
        if problem:
            uncommitted = sum(len(v) for v in app.consumer._acked.values())
            log.warning("%s: no offset is committed until it does (%d processed records wait); "
                        "check the broker and this worker's network", problem, uncommitted)
