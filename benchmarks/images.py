"""Product images: thumbnails per second for a 12-megapixel JPEG (one agent), and an admin's presigned upload
until its thumbnails are in the product's search hit (p50/p99).

    .venv/bin/python -m benchmarks.images [--images 20] [--uploads 20]

Needs the stack up (`shopflow stack up`, with the object store) and the outbox connector applied (`shopflow
connectors apply`). The photo is a 4000x3000 JPEG made here (a gradient with fine detail, ~2-4 MB, EXIF
rotated). "One agent" is ``ImageAgent.upload`` on one thread against the real store and PostgreSQL: read the
upload, check, clean and thumbnail it, write the original and its thumbnails, settle it in the catalog (one
transaction with its outbox rows), remove the upload; the pure ``process()`` time is given beside it.
The end-to-end part runs the edge in-process, the indexer and the image agent in threads, on throwaway topics
and index: each upload in turn is issued, POSTed to the store, confirmed, and timed until ``/v1/search``
shows it. Everything it made (products, objects, topics, index, users schema) is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import secrets
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from confluent_kafka.admin import AdminClient, NewTopic
from PIL import Image

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.catalog import Catalog, NotFound, ProductInput
from shopflow.catalog.images import ProductImages
from shopflow.files import Keys, ObjectStore
from shopflow.images import THUMBNAIL_SIZES, process
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.files import FileUploaded
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings, get_settings
from shopflow.streams.files import ImageAgent, limits_of
from shopflow.topologies.catalog import CATALOG_PRODUCTS, FILES


def twelve_megapixels() -> bytes:
    """A 4000x3000 JPEG with detail everywhere (a flat image would compress to nothing and decode too fast)."""
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    noise = Image.effect_noise((4000, 3000), 40)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


async def one_agent(settings: Settings, photo: bytes, count: int, products_topic: str,
                    files_topic: str) -> dict[str, float]:
    registry = SchemaRegistry(settings.registry_url)
    codec = AvroCodec(registry)
    catalog = await Catalog.open(settings, codec, topic=products_topic, cache=False, pool_size=2)
    images = ProductImages(catalog, files_topic=files_topic)
    await images.warm()
    store = ObjectStore(settings)
    sku = f"BENCH-IMG-{uuid.uuid4().hex[:8].upper()}"
    await catalog.create_product(ProductInput(sku=sku, name="Benchmark camera", price_minor=100, currency="EUR"))
    try:
        started = time.perf_counter()
        for _ in range(3):
            process(photo, limits_of(settings))
        process_s = (time.perf_counter() - started) / 3
        events = []
        for _ in tqdm(range(count), desc="uploads staged"):
            upload = await images.issue(sku, content_type="image/jpeg", max_bytes=settings.image_max_bytes,
                                        actor="cli:benchmark", ttl=timedelta(minutes=10))
            store.write(Keys.incoming(upload.upload_id), photo, "image/jpeg")
            await images.confirm(sku, upload.upload_id, key=Keys.incoming(upload.upload_id), size_bytes=len(photo),
                                 actor="cli:benchmark")
            events.append(FileUploaded(str(uuid.uuid4()), sku, upload.upload_id, Keys.incoming(upload.upload_id),
                                       "image/jpeg", len(photo), "benchmark", datetime.now(UTC)))
        loop = asyncio.get_running_loop()

        def agent_run() -> float:
            # The agent runs its catalog calls on the event loop it is given: here, this one, from a thread.
            agent = ImageAgent(settings, store, codec, images,
                               lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result())
            began = time.perf_counter()
            for event in tqdm(events, desc="images processed (one agent)"):
                outcome = agent.upload(event)
                assert outcome.kind == "ready", outcome
            return time.perf_counter() - began

        elapsed = await asyncio.to_thread(agent_run)
        return {"images_per_s": count / elapsed, "thumbnails_per_s": count * len(THUMBNAIL_SIZES) / elapsed,
                "per_image_ms": elapsed / count * 1000, "process_ms": process_s * 1000, "bytes": len(photo)}
    finally:
        await catalog.delete_product(sku)
        await asyncio.to_thread(store.delete_prefix, f"images/{sku}/")
        await catalog.close()
        registry.close()


async def end_to_end(settings: Settings, photo: bytes, count: int, products_topic: str, files_topic: str,
                     index: str) -> list[float]:
    from shopflow.api.dependencies import EdgeTopics
    from shopflow.api.main import create_app
    from shopflow.api.users import make_admin
    from shopflow.streams import files, indexer

    stop = threading.Event()
    threads = [threading.Thread(target=indexer.run, args=(settings, stop), daemon=True,
                                kwargs={"topic": products_topic, "index": index, "group_id": f"bench-{index}"}),
               threading.Thread(target=files.run, args=(settings, stop), daemon=True,
                                kwargs={"topic": files_topic, "products_topic": products_topic,
                                        "group_id": f"bench-images-{index}"})]
    for t in threads:
        t.start()
    topics = EdgeTopics(catalog_products=dataclasses.replace(CATALOG_PRODUCTS, name=products_topic),
                        files=dataclasses.replace(FILES, name=files_topic))
    app = create_app(settings, topics, search_index=index)
    latencies: list[float] = []
    sku = f"BENCH-E2E-{uuid.uuid4().hex[:8].upper()}"
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://edge", timeout=30) as edge, \
                httpx.AsyncClient(timeout=60) as direct:
            email, password = f"bench-{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
            async with app.state.edge.pool.acquire() as conn:
                await make_admin(conn, app.state.edge.codec, email=email, password=password)
            token = (await edge.post("/v1/auth/login", json={"email": email, "password": password})).json()
            auth = {"Authorization": f"Bearer {token['access_token']}"}

            def idem() -> dict[str, str]:
                return {**auth, "Idempotency-Key": str(uuid.uuid4())}

            made = await edge.post("/v1/products", headers=idem(), json={
                "sku": sku, "name": f"Benchmark camera {sku}", "price": {"amount_minor": 100, "currency": "EUR"}})
            assert made.status_code == 201, made.text
            for i in tqdm(range(count), desc="uploads until searchable"):
                began = time.perf_counter()
                issued = (await edge.post(f"/v1/admin/products/{sku}/images", headers=idem(),
                                          json={"content_type": "image/jpeg"})).json()
                sent = await direct.post(issued["upload"]["url"], data=issued["upload"]["fields"],
                                         files={"file": ("photo.jpg", photo, "image/jpeg")})
                assert sent.status_code == 204, sent.text
                confirmed = await edge.post(issued["confirm"], headers=idem())
                assert confirmed.status_code == 202, confirmed.text
                while True:
                    hits = (await edge.get("/v1/search", params={"q": f"Benchmark camera {sku}"})).json()["hits"]
                    if any(h["sku"] == sku and len(h["images"]) == i + 1 for h in hits):
                        break
                    if time.perf_counter() - began > 120 or not all(t.is_alive() for t in threads):
                        raise RuntimeError(f"upload {i} not in search after 120 s (or a thread died)")
                    await asyncio.sleep(0.02)
                latencies.append(time.perf_counter() - began)
            with contextlib.suppress(NotFound):
                await app.state.edge.catalog.delete_product(sku)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        await asyncio.to_thread(ObjectStore(settings).delete_prefix, f"images/{sku}/")
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def drain_and_drop(settings: Settings, admin: AdminClient, topics: list[str], index: str) -> None:
    from shopflow.catalog.search_index import ProductSearch
    from shopflow.schemas.deadletter import header_pairs
    from shopflow.streams.client import iter_topic

    async def pending() -> set[str]:
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            rows = await conn.fetch("SELECT id::text, aggregatetype FROM outbox WHERE aggregatetype = ANY($1)",
                                    topics)
            return {r["id"] for r in rows}
        finally:
            await conn.close()

    # The shared connector must not keep sending to a deleted topic: wait until every row is on its topic.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        on_topics = {v.decode().strip('"') for t in topics for m in iter_topic(settings.bootstrap_servers, t)
                     for k, v in header_pairs(m) if k == "event_id" and v is not None}
        if await pending() <= on_topics:
            break
        await asyncio.sleep(1)
    for f in admin.delete_topics(topics + [f"{t}.dlq" for t in topics]).values():
        with contextlib.suppress(Exception):  # a dlq never made
            f.result(timeout=30)
    search = ProductSearch.connect(settings, index)
    search.delete_index()
    search.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="12-megapixel JPEGs through one agent")
    parser.add_argument("--uploads", type=int, default=20, help="presigned uploads timed until searchable")
    args = parser.parse_args()
    settings = get_settings()
    photo = twelve_megapixels()
    tag = uuid.uuid4().hex[:8]
    products_topic, files_topic, index = f"bench-products-{tag}", f"bench-files-{tag}", f"bench-products-{tag}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    made = [products_topic, files_topic, f"{products_topic}.dlq", f"{files_topic}.dlq"]
    for f in admin.create_topics([NewTopic(t, 3 if "dlq" not in t else 1, 1) for t in made]).values():
        f.result(timeout=30)
    schema = f"bench_images_{tag}"
    conn = await asyncpg.connect(settings.postgres_dsn)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.close()
    edge_settings = settings.model_copy(update={"postgres_schema": schema, "rate_limit_per_user": 100_000})
    try:
        agent = await one_agent(settings, photo, args.images, products_topic, files_topic)
        latencies = await end_to_end(edge_settings, photo, args.uploads, products_topic, files_topic, index)
    finally:
        await drain_and_drop(settings, admin, [products_topic, files_topic], index)
        conn = await asyncpg.connect(settings.postgres_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
    body = (
        f"One agent, {args.images} 12-megapixel JPEGs (4000x3000, {agent['bytes'] / 2**20:.1f} MB, EXIF-rotated): "
        f"**{agent['thumbnails_per_s']:.1f} thumbnails/s** ({agent['images_per_s']:.2f} images/s, "
        f"{len(THUMBNAIL_SIZES)} sizes each, {agent['per_image_ms']:.0f} ms per image: read, check, clean, "
        f"thumbnail, write 4 objects, settle; `process()` alone {agent['process_ms']:.0f} ms).\n\n"
        f"Presigned upload -> thumbnails in the product's search hit, {len(latencies)} uploads one after another "
        f"(issue, POST to the store, confirm, Debezium, agent, outbox, Debezium, indexer, search): "
        f"**p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s** "
        f"(min {min(latencies):.2f} s, mean {statistics.mean(latencies):.2f} s)."
    )
    print(body)
    write_section("images (issue 17)", body)


if __name__ == "__main__":
    asyncio.run(main())
