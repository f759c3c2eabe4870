"""Edge throughput and latency: ``POST /v1/orders`` (acks=all) against bare FastAPI endpoints, same run.

    .venv/bin/python -m benchmarks.edge [--requests 2000] [--concurrency 1 4 16] [--loop asyncio|uvloop|auto]

Needs the stack up (`shopflow stack up`). Three uvicorn servers in subprocesses with the same options
(one worker, the same event loop and HTTP parser):
- the edge, doing all of its work per request: token check, revocation and rate limit in Redis, the
  Idempotency-Key lease, catalog prices (the price book), the Avro encode, the produce with acks=all
  waited for, then the stored response and the accepted-order marker in one Redis call;
- *bare*: the same body parsed by the same model, 202 at once: the framework alone;
- *bare producer*: that plus the PlaceOrder encoded and produced with acks=all through the edge's own
  producer, waited for: the least any command edge does. edge / bare producer is the cost of the
  edge's own work (accounts, idempotency, limits, catalog, markers); edge / bare also counts Kafka.
The load is raw HTTP/1.1 on keep-alive connections from this process (an httpx client costs about as
much CPU per request as the bare endpoint, which would hide the bare endpoint's speed).
Users and products live in a throwaway PostgreSQL schema, and the PlaceOrder commands go to a
throwaway stand-in of ``order-commands`` (same partitions and producer settings), so a worker running
on the shared stack meanwhile is not handed thousands of benchmark orders.
Target: the edge at >= 70% of the bare endpoint's accepted/s, p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from mirakuru import HTTPExecutor

from benchmarks.results import write_section
from shopflow.api.converters import PricedLine, to_place_order
from shopflow.api.main import EVENT_LOOP
from shopflow.api.schemas import OrderCreate
from shopflow.schemas.orders import PlaceOrder
from shopflow.settings import Settings, get_settings
from shopflow.topologies.apply import apply_topics
from shopflow.topologies.catalog import ORDER_COMMANDS, STOCK_REQUESTS, Topic

ROOT = Path(__file__).resolve().parent.parent
SKUS = {f"BENCH-{i}": 1000 + i for i in range(3)}
RUN_VAR = "SHOPFLOW_BENCH_RUN"


def stand_in(topic: Topic, run: str) -> Topic:
    return dataclasses.replace(topic, name=f"bench-{run}-{topic.name}")


def bench_edge():
    """The edge producing to this run's stand-in topics (uvicorn factory; the run id comes from the env)."""
    from shopflow.api.dependencies import EdgeTopics
    from shopflow.api.main import create_app

    run = os.environ[RUN_VAR]
    return create_app(topics=EdgeTopics(stand_in(ORDER_COMMANDS, run), stand_in(STOCK_REQUESTS, run)))

# Baseline 1, the framework alone: the same request model, no I/O.
bare_app = FastAPI()


@bare_app.post("/v1/orders", status_code=202)
async def bare_order(body: OrderCreate, idempotency_key: str = Header(alias="Idempotency-Key")) -> JSONResponse:
    order_id = str(uuid.uuid4())
    return JSONResponse({"order_id": order_id, "status": "ACCEPTED", "location": f"/v1/orders/{order_id}"}, 202,
                        headers={"Location": f"/v1/orders/{order_id}"})


@asynccontextmanager
async def producer_lifespan(app: FastAPI) -> AsyncIterator[None]:
    from shopflow.api.producer import CommandProducer
    from shopflow.schemas.codec import AvroCodec
    from shopflow.schemas.registry import SchemaRegistry

    settings = get_settings()
    registry = SchemaRegistry(settings.registry_url)
    producer = CommandProducer.connect(settings.bootstrap_servers, AvroCodec(registry))
    app.state.topic = stand_in(ORDER_COMMANDS, os.environ[RUN_VAR])
    producer.warm(app.state.topic, PlaceOrder)
    app.state.producer = producer
    yield
    producer.close()
    registry.close()


# Baseline 2, the least a command edge does: the same body and the same producer (Avro encode, acks=all,
# idempotence, the delivery awaited), with no account, no idempotency key store, no rate limit, no
# catalog (fixed prices) and no read-your-writes marker.
bare_producer_app = FastAPI(lifespan=producer_lifespan)


@bare_producer_app.post("/v1/orders", status_code=202)
async def bare_produced_order(body: OrderCreate, request: Request,
                              idempotency_key: str = Header(alias="Idempotency-Key")) -> JSONResponse:
    order_id = str(uuid.uuid4())
    command = to_place_order(order_id=order_id, user_id="bench", currency="EUR",
                             lines=[PricedLine(line.sku, line.quantity, 1000, "EUR") for line in body.lines],
                             payment_token=body.payment_token, shipping_address=body.shipping_address,
                             occurred_at=datetime.now(UTC))
    await request.app.state.producer.send(request.app.state.topic, order_id, command)
    return JSONResponse({"order_id": order_id, "status": "ACCEPTED", "location": f"/v1/orders/{order_id}"}, 202,
                        headers={"Location": f"/v1/orders/{order_id}"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(target: str, port: int, env: dict[str, str], loop: str, factory: bool = False) -> HTTPExecutor:
    """A uvicorn server, started and ready once it serves its OpenAPI document (mirakuru raises if it exits or
    is not ready in 60 s); its warnings go to this terminal."""
    args = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--loop", loop] + (["--factory"] if factory else [])
    server = HTTPExecutor(args, f"http://127.0.0.1:{port}/openapi.json", status=200, method="GET", timeout=60,
                          cwd=str(ROOT), envvars=env, stdin=subprocess.DEVNULL, stdout=None, stderr=None)
    return server.start()


async def prepare_schema(settings: Settings, schema: str) -> None:
    from shopflow.db import connect, migrate

    admin = await asyncpg.connect(settings.postgres_dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    conn = await connect(settings.model_copy(update={"postgres_schema": schema}))
    try:
        await migrate(conn)
        for sku, price in SKUS.items():
            await conn.execute("INSERT INTO products (sku, name, price_minor, currency) VALUES ($1, $1, $2, 'EUR')",
                               sku, price)
    finally:
        await conn.close()


async def drop_schema(settings: Settings, schema: str) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def sign_in(base: str) -> dict[str, str]:
    email, password = f"bench.{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
    async with httpx.AsyncClient(base_url=base) as c:
        (await c.post("/v1/auth/register", json={"email": email, "password": password})).raise_for_status()
        r = await c.post("/v1/auth/login", json={"email": email, "password": password})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


class Connection:
    """A bare HTTP/1.1 keep-alive connection: the load generator must be much cheaper than the servers
    (httpx costs about as much CPU per request as the bare endpoint itself, and stalls at 16 connections)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n{head}\r\n".encode() + body)
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (line.partition(":") for line in lines) if k.lower() == "content-length")
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


async def load(port: int, headers: dict[str, str], requests: int, concurrency: int) -> tuple[float, list[float], int]:
    """(accepted per second, latencies in ms, refused count) for ``requests`` orders at ``concurrency``."""
    body = json.dumps({"lines": [{"sku": sku, "quantity": 1 + i} for i, sku in enumerate(SKUS)],
                       "payment_token": "tok_bench"}).encode()
    latencies: list[float] = []
    refused = 0
    left = requests
    connections = [await Connection.open(port) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal left, refused
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            status = await conn.post("/v1/orders", body, {**headers, "Idempotency-Key": uuid.uuid4().hex})
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 202:
                refused += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - t0
    for c in connections:
        c.close()
    return (len(latencies) - refused) / elapsed, latencies, refused


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


Row = tuple[float, float, float, int]  # accepted/s, p50 ms, p99 ms, non-202 count


async def measure(port: int, headers: dict[str, str], args: argparse.Namespace) -> dict[int, Row]:
    await load(port, headers, args.warmup, 4)
    out = {}
    for c in args.concurrency:
        rate, lat, refused = await load(port, headers, args.requests, c)
        out[c] = (rate, pct(lat, 50), pct(lat, 99), refused)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="orders per measurement")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default=EVENT_LOOP,
                    help=f"uvicorn's event loop for all three servers (default {EVENT_LOOP}, as `shopflow api`)")
    args = ap.parse_args()

    settings = get_settings()
    run = uuid.uuid4().hex[:8]
    schema = f"bench_{run}"
    asyncio.run(prepare_schema(settings, schema))
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    apply_topics(admin)  # the edge's own topics besides the stand-ins (a fresh broker has none)
    topics = [stand_in(t, run) for t in (ORDER_COMMANDS, STOCK_REQUESTS)]
    for future in admin.create_topics([NewTopic(t.name, t.partitions, 1) for t in topics]).values():
        future.result(timeout=30)
    env = {RUN_VAR: run, "SHOPFLOW_POSTGRES_SCHEMA": schema, "SHOPFLOW_RATE_LIMIT_PER_USER": str(10**9),
           "SHOPFLOW_RATE_LIMIT_ANONYMOUS": str(10**9), "SHOPFLOW_JWT_SECRET": secrets.token_urlsafe(48)}
    servers = []
    try:
        ports = {name: free_port() for name in ("edge", "bare", "bare producer")}
        servers.append(start_server("benchmarks.edge:bench_edge", ports["edge"], env, args.loop, factory=True))
        servers.append(start_server("benchmarks.edge:bare_app", ports["bare"], env, args.loop))
        servers.append(start_server("benchmarks.edge:bare_producer_app", ports["bare producer"], env, args.loop))
        headers = asyncio.run(sign_in(f"http://127.0.0.1:{ports['edge']}"))
        results = {name: asyncio.run(measure(port, headers, args)) for name, port in ports.items()}
    finally:
        for server in servers:
            server.stop()
        asyncio.run(drop_schema(settings, schema))
        for future in admin.delete_topics([t.name for t in topics]).values():
            future.result(timeout=30)
        for topic in topics:  # the stand-ins' registry subjects (TopicRecordNameStrategy)
            for record in topic.values:
                for permanent in ("false", "true"):
                    httpx.delete(f"{settings.registry_url}/subjects/{topic.subject(record)}",
                                 params={"permanent": permanent}, timeout=10)

    rows = []
    for c in args.concurrency:
        (br, b50, b99, _), (pr, p50, p99, _) = results["bare"][c], results["bare producer"][c]
        er, e50, e99, refused = results["edge"][c]
        rows.append(f"| {c} | {br:,.0f} | {pr:,.0f} | {er:,.0f} | **{er / pr:.0%}** | {er / br:.0%} | "
                    f"{b50:.1f} / {b99:.1f} | {p50:.1f} / {p99:.1f} | {e50:.1f} / **{e99:.1f}** | {refused} |")
        print(f"concurrency {c}: bare {br:,.0f}/s p50 {b50:.1f} p99 {b99:.1f} ms | "
              f"bare producer {pr:,.0f}/s p50 {p50:.1f} p99 {p99:.1f} ms | "
              f"edge {er:,.0f}/s p50 {e50:.1f} p99 {e99:.1f} ms | edge/producer {er / pr:.0%} "
              f"edge/bare {er / br:.0%} | refused {refused}")
    write_section("edge" if args.loop == EVENT_LOOP else f"edge --loop {args.loop}", (
        f"`POST /v1/orders` (3 lines) through the edge (JWT, revocation check and rate limit in Redis, "
        f"Idempotency-Key lease and stored response in Redis, catalog prices, Avro encode, produce with acks=all + "
        f"idempotence awaited, accepted-order marker) against two bare FastAPI endpoints parsing the same body: "
        f"*bare* answers 202 with no I/O (the framework alone); *bare producer* also encodes a PlaceOrder and "
        f"awaits its produce with acks=all, the least a command edge does. All uvicorn, one worker, in "
        f"subprocesses, event loop `{args.loop}`; load from one process (raw HTTP/1.1 keep-alive connections) "
        f"on the same machine as the whole stack; {args.requests:,} requests per row after {args.warmup} warm-up.\n\n"
        "| concurrency | bare /s | bare producer /s | edge /s | edge / bare producer | edge / bare "
        "| bare p50 / p99 ms | bare producer p50 / p99 ms | edge p50 / p99 ms | edge non-202 |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n\n"
        "Target: edge >= 70% of the bare endpoint's accepted/s, p99 <= 20 ms.\n\n"
        f"Command: `.venv/bin/python -m benchmarks.edge --requests {args.requests} --concurrency "
        f"{' '.join(map(str, args.concurrency))}" + (f" --loop {args.loop}`" if args.loop != EVENT_LOOP else "`")
    ))


if __name__ == "__main__":
    main()
