"""Whether the stack's data is healthy, apart from whether its servers are up.

A server can answer while what it holds is broken: an index whose primary shard is lost (red), a
catalog topic missing or a partition without a leader, a connector or task FAILED, a schema not
registered, a migration not applied, a registered ShopFlow process that does not answer Prometheus.
Each such finding is a ``Problem`` that names the command that repairs it; ``shopflow stack status``
prints them under its table (and exits 2 when there are any). Only servers that are up are examined:
a down server is ``stack up``'s business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shopflow.deploy.object_store import object_store_problems
from shopflow.settings import Settings


@dataclass(frozen=True)
class Problem:
    server: str
    what: str
    fix: str


def search_problems(settings: Settings) -> list[Problem]:
    from shopflow.catalog.search_index import DEFAULT_INDEX

    url = settings.search_url
    indices = httpx.get(f"{url}/_cluster/health", params={"level": "indices"}, timeout=5).json().get("indices", {})
    red = sorted(name for name, health in indices.items() if health.get("status") == "red")
    if not red:
        return []
    aliases = {index: set(body.get("aliases", {}))
               for index, body in httpx.get(f"{url}/_alias", timeout=5).json().items()}
    problems = []
    for index in red:
        explain = httpx.post(f"{url}/_cluster/allocation/explain", timeout=5,
                             json={"index": index, "shard": 0, "primary": True})
        why = explain.json().get("allocate_explanation", "") if explain.status_code == 200 else ""
        products = index == DEFAULT_INDEX or DEFAULT_INDEX in aliases.get(index, set())
        problems.append(Problem(
            "search", f"index {index} is red (a primary shard is unassigned{': ' + why if why else ''})",
            "`shopflow search rebuild` recreates it from the catalog" if products else
            f"delete it (`curl -X DELETE {url}/{index}`) and recreate it from its source"))
    return problems


def kafka_problems(settings: Settings) -> list[Problem]:
    from confluent_kafka.admin import AdminClient

    from shopflow.topologies.catalog import all_topics

    metadata = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=5)
    problems = [Problem("kafka", f"topic {t.name} is missing", "`shopflow topics apply` creates the catalog's topics")
                for t in all_topics() if t.name not in metadata.topics]
    for name, topic in sorted(metadata.topics.items()):
        offline = sorted(p.id for p in topic.partitions.values() if p.leader < 0)
        if offline:
            problems.append(Problem("kafka", f"topic {name}: partitions {offline} have no leader",
                                    "see .shopflow/logs/kafka.log; a lost log dir means recreating the topic"))
    return problems


def connect_problems(settings: Settings) -> list[Problem]:
    from shopflow.connectors.apply import ConnectClient, declared, headline

    client = ConnectClient(settings.connect_url, timeout=5)
    try:
        present = set(client.names())
        problems = [Problem("connect", f"connector {c.name} is not applied", "`shopflow connectors apply`")
                    for c in declared() if c.name not in present]
        for name in sorted(present):
            status = client.status(name) or {}
            parts = [("connector", status.get("connector", {})),
                     *((f"task {t.get('id')}", t) for t in status.get("tasks", []))]
            for part, state in parts:
                if state.get("state") == "FAILED":
                    problems.append(Problem(
                        "connect", f"connector {name}: {part} FAILED: {headline(state.get('trace', ''))}",
                        f"fix the cause, then `shopflow connectors restart {name}`"))
        return problems
    finally:
        client.close()


def registry_problems(settings: Settings) -> list[Problem]:
    from shopflow.schemas.check import subjects
    from shopflow.schemas.registry import SchemaRegistry

    registry = SchemaRegistry(settings.registry_url, timeout=5)
    try:
        have = set(registry.subjects())
    finally:
        registry.close()
    missing = sorted({subject for subject, _ in subjects()} - have)
    if not missing:
        return []
    return [Problem("registry", f"{len(missing)} subjects not registered (first: {missing[0]})",
                    "`shopflow schemas register`")]


def postgres_problems(settings: Settings) -> list[Problem]:
    from shopflow.db import MIGRATIONS_DIR, connect

    async def applied() -> set[str]:
        conn = await connect(settings)
        try:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return set()
            return {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        finally:
            await conn.close()

    pending = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql") if p.name not in asyncio.run(applied()))
    if not pending:
        return []
    return [Problem("postgres", f"{len(pending)} migrations not applied ({', '.join(pending)})",
                    "`shopflow db migrate`")]


def prometheus_problems(settings: Settings) -> list[Problem]:
    targets = httpx.get(f"{settings.prometheus_url}/api/v1/targets", params={"state": "active"}, timeout=5)
    return [Problem("prometheus", f"{t['labels'].get('job')} at {t['labels'].get('instance')} does not answer its "
                                  f"scrape: {t.get('lastError') or t['health']}",
                    "restart that process; a process killed for good leaves its entry in "
                    f"{settings.targets_dir} until the next ShopFlow process starts")
            for t in targets.json()["data"]["activeTargets"] if t["health"] == "down"]


CHECKS: dict[str, Callable[[Settings], list[Problem]]] = {
    "postgres": postgres_problems,
    "kafka": kafka_problems,
    "registry": registry_problems,
    "connect": connect_problems,
    "search": search_problems,
    "prometheus": prometheus_problems,
    "object_store": object_store_problems,
}


def problems(settings: Settings, up: set[str]) -> list[Problem]:
    """Every problem found on the servers that are up; a check that cannot run is a problem too."""
    found: list[Problem] = []
    for server, check in CHECKS.items():
        if server not in up:
            continue
        try:
            found += check(settings)
        except Exception as exc:  # a check failing must not hide the others' findings
            found.append(Problem(server, f"could not be examined: {type(exc).__name__}: {exc}",
                                 f"see .shopflow/logs/{server}.log"))
    return found
