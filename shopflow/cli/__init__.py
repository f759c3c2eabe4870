"""The one ``shopflow`` command: every operation on the project goes through here.

This module has the processes (worker, api, indexer, projection, monitor), the checks (audit, replay) and the
demo; the resources' commands are grouped by what they act on: ``stack.py``, ``contracts.py``
(topics, schemas, topology) and ``stores.py`` (connectors, search, users, db).
"""

from __future__ import annotations

from pathlib import Path

import typer

from shopflow.cli.common import fail
from shopflow.cli.contracts import schemas_app, topics_app, topology_app
from shopflow.cli.dead_letters import dead_letters_app
from shopflow.cli.images import images_app
from shopflow.cli.lag import lag_command
from shopflow.cli.stack import stack_app
from shopflow.cli.stores import connectors_app, db_app, search_app, users_app
from shopflow.cli.tap import tap_command
from shopflow.settings import get_settings

app = typer.Typer(help="ShopFlow: an e-commerce backend on Kafka streams.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(connectors_app, name="connectors")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topology_app, name="topology")
app.add_typer(search_app, name="search")
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(images_app, name="images")
app.command("lag")(lag_command)
app.command("tap")(tap_command)


@app.callback()
def _check_settings() -> None:
    """Settings come from the environment: a bad value stops every command with what to fix."""
    from pydantic import ValidationError

    try:
        get_settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "SHOPFLOW_" + "_".join(str(p) for p in err["loc"]).upper()
            typer.secho(f"error: {name}={err.get('input')!r}: {err['msg']}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command("worker")
def worker(
    web_port: int = typer.Option(None, help="This worker's web port (default SHOPFLOW_WORKER_PORT); one per worker."),
    loglevel: str = typer.Option("info", help="Faust log level."),
) -> None:
    """Run the saga's Faust agents (orders, inventory, payments); start several to share partitions."""
    import sys

    from confluent_kafka.admin import AdminClient

    from shopflow.schemas.check import register_all
    from shopflow.schemas.registry import RegistryError, SchemaRegistry
    from shopflow.streams.app import create_worker
    from shopflow.topologies.apply import apply_topics

    settings = get_settings()
    try:
        # The catalog's topics and schemas first, so agents never meet a missing topic or subject.
        apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers}))
        register_all(SchemaRegistry(settings.registry_url))
    except RegistryError as exc:
        fail(exc)
    w = create_worker(settings, web_port)
    sys.argv = ["shopflow-worker", "worker", "--loglevel", loglevel]
    w.app.main()


@app.command("audit")
def audit_cmd(
    stuck_after: float = typer.Option(60.0, help="Seconds after which an order not yet terminal counts as stuck."),
    prefix: str = typer.Option("", help="Only orders and skus whose id starts with this."),
) -> None:
    """Check design.md's invariants on the live topics and table changelogs; exits 1 on a violation."""
    import time

    from shopflow.streams.audit import audit
    from shopflow.streams.client import SAGA_TOPICS, TopicReader, read_changelog
    from shopflow.tables import INVENTORY_TABLE, ORDERS_TABLE, PAYMENTS_TABLE

    settings = get_settings()
    reader = TopicReader(settings, None, SAGA_TOPICS, from_end=False)
    events = []
    while batch := reader.poll(2.0):
        events += batch
    reader.close()
    keep = lambda key: key.startswith(prefix)  # noqa: E731
    mine = [(r, v) for _, r, v, _ in events if keep(str(v.get("order_id") or v.get("sku") or ""))]
    report = audit(mine, read_changelog(settings, INVENTORY_TABLE, keep),
                   read_changelog(settings, PAYMENTS_TABLE, keep),
                   now_ms=int(time.time() * 1000), stuck_after_ms=int(stuck_after * 1000),
                   orders=read_changelog(settings, ORDERS_TABLE, keep), settle_ms=10_000)
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


@app.command("api")
def api(
    host: str = typer.Option(None, help="Interface to bind (default SHOPFLOW_HOST)."),
    port: int = typer.Option(None, help="Port (default SHOPFLOW_API_PORT)."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes."),
) -> None:
    """Serve the REST edge (FastAPI, OpenAPI at /docs, routes under /v1)."""
    from confluent_kafka.admin import AdminClient

    from shopflow.api.main import serve
    from shopflow.topologies.apply import apply_topics

    settings = get_settings()
    # The edge produces to catalog topics; on a fresh broker nothing else may have created them yet.
    apply_topics(AdminClient({"bootstrap.servers": settings.bootstrap_servers}))
    serve(settings, host, port, workers)


@app.command("ops")
def ops(
    host: str = typer.Option(None, help="Interface to bind (default SHOPFLOW_HOST)."),
    port: int = typer.Option(None, help="Port (default SHOPFLOW_OPS_PORT)."),
) -> None:
    """Serve the ops console: overview, consumer groups, Connect, dead letters, saga, shop (sign in at /login)."""
    from shopflow.console.main import serve

    settings = get_settings()
    typer.echo(f"ops console on http://{host or settings.host}:{port or settings.ops_port}/ "
               "(users with the ops role: `shopflow users grant EMAIL ops`)")
    serve(settings, host, port)


@app.command("indexer")
def indexer() -> None:
    """Keep the search index in step with catalog.products (runs until interrupted)."""
    from shopflow.streams.indexer import main

    main(get_settings())


@app.command("notifications")
def notifications() -> None:
    """Turn order, account and low-stock events into notification requests (runs until interrupted)."""
    from shopflow.streams.notifications import main

    main(get_settings())


@app.command("notifier")
def notifier() -> None:
    """Send notification requests by email, push and SMS, with retries (runs until interrupted)."""
    from shopflow.streams.notifier_loop import main

    main(get_settings())


@app.command("monitor")
def monitor(
    metrics_port: int = typer.Option(None, help="Port of its /metrics (default: any free one; Prometheus finds it)."),
) -> None:
    """Watch the running system (saga health, connectors, dead letters, freshness, lag) as Prometheus metrics."""
    from shopflow.streams.monitor import MonitorError, main

    try:
        main(get_settings(), metrics_port)
    except MonitorError as exc:
        fail(exc)


# A group whose callback runs the projection when no subcommand follows: `shopflow projection` stays the
# process the launcher and the demo start; `shopflow projection rebuild` is the repair.
projection_app = typer.Typer(help="The orders read model (orders_view in PostgreSQL), fed by the orders topic.")
app.add_typer(projection_app, name="projection")


@projection_app.callback(invoke_without_command=True)
def projection(ctx: typer.Context) -> None:
    """Keep the orders read model in PostgreSQL in step with the orders topic (runs until interrupted)."""
    if ctx.invoked_subcommand is None:
        from shopflow.streams.order_projection import main

        main(get_settings())


@projection_app.command("rebuild")
def projection_rebuild(
    keep_expired: bool = typer.Option(False, "--keep-expired", help=(
        "When retention has expired the topic's oldest events: keep those orders as the read model has them.")),
) -> None:
    """Build orders_view again from the orders topic and swap it in; readers and the projection go on."""
    from shopflow.streams.projection_rebuild import RebuildError, main

    try:
        main(get_settings(), keep_expired=keep_expired)
    except RebuildError as exc:
        fail(exc)


@app.command("replay")
def replay(
    files: list[Path] = typer.Argument(..., help="Scenario files (tests/replay/scenarios/*.yaml)."),
    broker: bool = typer.Option(False, "--broker", help="Through the running workers and the real broker."),
    worker_url: str = typer.Option(None, help="A running worker (default http://HOST:SHOPFLOW_WORKER_PORT)."),
) -> None:
    """Replay saga scenarios in-process (no broker, RocksDB tables) or on the broker; a diff for each failure."""
    import asyncio

    import httpx

    from shopflow.streams.replay import run_scenario
    from shopflow.streams.replay_broker import run_on_broker

    settings = get_settings()
    url = worker_url or f"http://{settings.host}:{settings.worker_port}"
    failed = 0
    for path in files:
        try:
            outcome = run_on_broker(path, settings, url) if broker else asyncio.run(run_scenario(path))
        except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
            typer.secho(f"error  {path}: {exc} (for --broker: is a worker running? `shopflow worker`)",
                        fg=typer.colors.RED, err=True)
            failed += 1
            continue
        if outcome.ok:
            typer.secho(f"ok     {outcome.name}", fg=typer.colors.GREEN)
        else:
            failed += 1
            typer.secho(f"FAILED {outcome.name} ({path})", fg=typer.colors.RED)
            for problem in outcome.problems:
                typer.echo("  " + problem.replace("\n", "\n  "))
    if failed:
        raise typer.Exit(1)


@app.command("demo")
def demo() -> None:
    """The main job: run the stack through ShopFlow's contracts and show what happened."""
    from shopflow.demo import run

    try:
        run(get_settings())
    except Exception as exc:  # the demo's own errors already say what to do
        fail(exc)
