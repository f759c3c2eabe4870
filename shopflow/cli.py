"""The one ``shopflow`` command: every operation on the project goes through here."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from shopflow.deploy import StackError
from shopflow.settings import get_settings

app = typer.Typer(help="ShopFlow: an e-commerce backend on Kafka streams.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack of real servers (Kafka, registry, Connect, PostgreSQL, Redis, OpenSearch).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
connectors_app = typer.Typer(help="Kafka Connect connectors declared in connectors/*.json.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")
topics_app = typer.Typer(help="The topic catalog (topologies/catalog.py) on the broker.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
schemas_app = typer.Typer(help="Avro schemas in schemas/: compatibility and registration.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
topology_app = typer.Typer(help="The order saga declared as data (topologies/saga.py).", no_args_is_help=True)
app.add_typer(topology_app, name="topology")
search_app = typer.Typer(help="The product search index (OpenSearch).", no_args_is_help=True)
app.add_typer(search_app, name="search")
users_app = typer.Typer(help="Accounts on the edge.", no_args_is_help=True)
app.add_typer(users_app, name="users")
db_app = typer.Typer(help="The PostgreSQL database: migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _stack():
    from shopflow.deploy.stack import Stack

    return Stack(get_settings(), progress=lambda line: typer.echo(line, err=True))


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Download every server's jars into .shopflow/cache (reused when present)."""
    try:
        _stack().fetch()
    except StackError as exc:
        _fail(exc)


@stack_app.command("up")
def stack_up() -> None:
    """Start every server in dependency order and wait until each is ready (idempotent)."""
    import time

    t0 = time.monotonic()
    try:
        started = _stack().up()
    except StackError as exc:
        _fail(exc)
    typer.echo(f"stack up in {time.monotonic() - t0:.1f}s ({len(started)} started)", err=True)


@stack_app.command("down")
def stack_down() -> None:
    """Stop every server of the stack; leaves no process behind."""
    _stack().down()


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON.")) -> None:
    """One row per server: name, version, port, pid, up/down, RSS. Exits 1 if any is down."""
    rows = _stack().status()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        typer.echo(f"{'server':<10} {'version':<28} {'port':>5} {'pid':>8}  {'state':<5} {'rss':>9}")
        for r in rows:
            typer.echo(f"{r.name:<10} {r.version:<28} {r.port:>5} {r.pid or '-':>8}  "
                       f"{'up' if r.up else 'down':<5} {r.rss_mb:>7.0f}MB")
        typer.echo(f"{'total':<10} {'':<28} {'':>5} {'':>8}  {'':<5} {sum(r.rss_mb for r in rows):>7.0f}MB")
    if not all(r.up for r in rows):
        raise typer.Exit(1)


@schemas_app.command("check")
def schemas_check(
    git_rev: str = typer.Option(None, "--git-rev", help="Compare with the schemas at this git revision instead of the registry."),
) -> None:
    """Check every schema for BACKWARD compatibility; exits 1 naming each offending field."""
    from shopflow.schemas.check import check_against_git, check_against_registry
    from shopflow.schemas.registry import RegistryError, SchemaRegistry

    try:
        if git_rev:
            findings, against = check_against_git(git_rev), f"git revision {git_rev}"
        else:
            findings, against = check_against_registry(SchemaRegistry(get_settings().registry_url)), "the registry"
    except (RegistryError, RuntimeError) as exc:
        _fail(exc)
    for finding in findings:
        typer.secho(f"incompatible: {finding}", fg=typer.colors.RED, err=True)
    if findings:
        typer.echo(f"{len(findings)} incompatible change(s) against {against}: fix them, or add defaults/aliases", err=True)
        raise typer.Exit(1)
    typer.echo(f"all schemas are BACKWARD compatible with {against}")


@schemas_app.command("register")
def schemas_register() -> None:
    """Set BACKWARD on every subject and register every schema; refuses incompatible changes."""
    from shopflow.schemas.check import register_all
    from shopflow.schemas.registry import RegistryError, SchemaRegistry

    try:
        for subject, schema_id in register_all(SchemaRegistry(get_settings().registry_url)):
            typer.echo(f"{subject}: id {schema_id}")
    except RegistryError as exc:
        _fail(exc)


@topology_app.command("check")
def topology_check() -> None:
    """Prove from the saga's data that every state ends and every effect is compensated; exits 1 if not."""
    from shopflow.topologies.saga import ORDER_SAGA, check

    problems = check(ORDER_SAGA)
    for problem in problems:
        typer.secho(f"problem: {problem}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{ORDER_SAGA.name}: every state reaches a terminal state, every effect has a compensation")


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
        _fail(exc)
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
    report = audit(mine, read_changelog(settings, INVENTORY_TABLE, keep), read_changelog(settings, PAYMENTS_TABLE, keep),
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


@app.command("indexer")
def indexer() -> None:
    """Keep the search index in step with catalog.products (runs until interrupted)."""
    from shopflow.streams.indexer import main

    main(get_settings())


@app.command("projection")
def projection() -> None:
    """Keep the orders read model in PostgreSQL in step with the orders topic (runs until interrupted)."""
    from shopflow.streams.order_projection import main

    main(get_settings())


@search_app.command("ensure-index")
def search_ensure_index() -> None:
    """Create the product index from shopflow/search_index.json unless it exists."""
    from shopflow.search import ProductSearch

    created = ProductSearch.connect(get_settings()).ensure_index()
    typer.echo("index created" if created else "index already there")


@users_app.command("create-admin")
def users_create_admin(
    email: str,
    display_name: str = typer.Option(None, help="Shown name."),
    promote: bool = typer.Option(False, help="Make an existing account an admin instead of failing."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
) -> None:
    """Create an admin account (the first admin cannot sign up through the edge)."""
    import sys

    from shopflow.api.users import EmailTaken, create_admin

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_admin(get_settings(), email, password, display_name, promote)
    except EmailTaken:
        _fail(RuntimeError(f"{email} already has an account; add --promote to make it an admin"))
    except ValueError as exc:
        _fail(exc)
    typer.echo(f"admin {user.email} ({user.id})")


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


@topology_app.command("draw")
def topology_draw() -> None:
    """Print the saga as a Mermaid state diagram."""
    from shopflow.topologies.saga import ORDER_SAGA, mermaid

    typer.echo(mermaid(ORDER_SAGA))


@topics_app.command("apply")
def topics_apply() -> None:
    """Create or update every catalog topic (and its dead-letter topic); prints what changed."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from shopflow.topologies.apply import apply_topics

    admin = AdminClient({"bootstrap.servers": get_settings().bootstrap_servers})
    try:
        changes = apply_topics(admin)
    except KafkaException as exc:
        _fail(RuntimeError(f"topics apply failed: {exc}; is Kafka up (`shopflow stack status`)?"))
    for line in changes or ["nothing to change: the broker matches the catalog"]:
        typer.echo(line)


@topics_app.command("list")
def topics_list() -> None:
    """The catalog: name, key, partitions, cleanup policy, retention, value records."""
    from shopflow.topologies.catalog import all_topics

    for t in all_topics():
        typer.echo(f"{t.name:<26} key={t.key:<16} p={t.partitions:<2} {t.cleanup_policy:<8} "
                   f"retention={t.retention_ms:<11} {', '.join(v.rsplit('.', 1)[1] for v in t.values)}")


def _connect_client():
    from shopflow.connectors.apply import ConnectClient

    return ConnectClient(get_settings().connect_url)


@connectors_app.command("apply")
def connectors_apply(
    files: list[Path] = typer.Argument(None, help="Connector JSON files (default: every connectors/*.json)."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for RUNNING."),
) -> None:
    """Create or update each connector (idempotent PUT) and wait until it and its tasks run."""
    from shopflow.connectors.apply import ConnectorError, declared, load

    client = _connect_client()
    try:
        connectors = [load(f) for f in files] if files else declared()
        for connector in connectors:
            typer.echo(f"{connector.name}: {client.apply(connector, timeout)}, RUNNING")
    except ConnectorError as exc:
        _fail(exc)


@connectors_app.command("status")
def connectors_status() -> None:
    """The state of every connector on the worker and of its tasks."""
    from shopflow.connectors.apply import ConnectorError

    client = _connect_client()
    try:
        for name in client.names():
            st = client.status(name) or {}
            tasks = ", ".join(f"task {t['id']} {t['state']}" for t in st.get("tasks", []))
            typer.echo(f"{name}: {st.get('connector', {}).get('state', '?')} ({tasks or 'no tasks'})")
    except ConnectorError as exc:
        _fail(exc)


@connectors_app.command("delete")
def connectors_delete(name: str) -> None:
    """Delete a connector from the worker (its declaration stays in connectors/)."""
    from shopflow.connectors.apply import ConnectorError

    try:
        if not _connect_client().delete(name):
            _fail(ConnectorError(f"no connector named {name}; `shopflow connectors status` lists them"))
    except ConnectorError as exc:
        _fail(exc)
    typer.echo(f"{name}: deleted")


@app.command("demo")
def demo() -> None:
    """The main job: run the stack through ShopFlow's contracts and show what happened."""
    from shopflow.demo import run

    try:
        run(get_settings())
    except Exception as exc:  # the demo's own errors already say what to do
        _fail(exc)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the PostgreSQL migrations not yet applied."""
    import asyncio

    import asyncpg

    from shopflow.db import migrate

    async def run() -> list[str]:
        conn = await asyncpg.connect(get_settings().postgres_dsn)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        _fail(RuntimeError(f"migrations failed: {exc}; is PostgreSQL up (`shopflow stack status`)?"))
    typer.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


if __name__ == "__main__":
    app()
