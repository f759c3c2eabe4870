"""The stores around the streams: ``shopflow connectors`` (CDC), ``search``, ``users`` and ``db`` (PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import typer

from shopflow.cli.common import fail, print_table
from shopflow.settings import get_settings

connectors_app = typer.Typer(help="Kafka Connect connectors declared in connectors/*.json.", no_args_is_help=True)
search_app = typer.Typer(help="The product search index (OpenSearch).", no_args_is_help=True)
users_app = typer.Typer(help="Accounts on the edge.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL database: migrations.", no_args_is_help=True)


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
        fail(exc)


@connectors_app.command("status")
def connectors_status() -> None:
    """The state of every connector on the worker and of its tasks."""
    from shopflow.connectors.apply import ConnectorError

    client = _connect_client()
    rows = []
    try:
        for name in client.names():
            st = client.status(name) or {}
            tasks = ", ".join(f"task {t['id']} {t['state']}" for t in st.get("tasks", []))
            rows.append((name, st.get("connector", {}).get("state", "?"), tasks or "no tasks"))
    except ConnectorError as exc:
        fail(exc)
    print_table(["connector", "state", "tasks"], rows)


@connectors_app.command("restart")
def connectors_restart(name: str) -> None:
    """Restart a connector and its tasks (after fixing what made them FAILED) and wait until RUNNING."""
    from shopflow.connectors.apply import ConnectorError

    client = _connect_client()
    try:
        client.restart(name)
        client.wait_running(name)
    except ConnectorError as exc:
        fail(exc)
    typer.echo(f"{name}: restarted, RUNNING")


@connectors_app.command("delete")
def connectors_delete(name: str) -> None:
    """Delete a connector from the worker (its declaration stays in connectors/)."""
    from shopflow.connectors.apply import ConnectorError

    try:
        if not _connect_client().delete(name):
            fail(ConnectorError(f"no connector named {name}; `shopflow connectors status` lists them"))
    except ConnectorError as exc:
        fail(exc)
    typer.echo(f"{name}: deleted")


@search_app.command("ensure-index")
def search_ensure_index() -> None:
    """Create the product index from catalog/search_index.json unless it exists."""
    from shopflow.catalog.search_index import ProductSearch

    created = ProductSearch.connect(get_settings()).ensure_index()
    typer.echo("index created" if created else "index already there")


@search_app.command("rebuild")
def search_rebuild(
    alias: str = typer.Option("products", help="The alias readers and the indexer use (tests: a throwaway one)."),
    topic: str = typer.Option("catalog.products", help="The compacted catalog topic to rebuild from."),
    stock_topic: str = typer.Option(None, help="The inventory changelog (default: the inventory table's)."),
) -> None:
    """Recreate the product index from the catalog topic and the stock changelog, then switch the alias to
    it: searches keep answering throughout. Repairs a red index (a lost shard) and a changed mapping."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from shopflow.catalog.search import SearchError
    from shopflow.schemas.registry import RegistryError
    from shopflow.streams.search_rebuild import Rebuild, RebuildError, SwitchedUnfinished, rebuild

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bars:
        tasks: dict[str, TaskID] = {}

        def show(state: Rebuild) -> None:
            for source in (state.products, state.stock):
                task = tasks.get(source.topic)
                if task is None:
                    task = tasks[source.topic] = bars.add_task(source.topic, detail="")
                bars.update(task, description=f"{state.phase:<14} {source.topic}", completed=source.read,
                            total=max(source.end, source.read), detail=(
                                f"indexed {source.indexed:,}  stale {source.stale:,}  skipped {source.skipped:,}"))

        try:
            done = rebuild(get_settings(), alias=alias, topic=topic, stock_topic=stock_topic, on_progress=show)
        except SwitchedUnfinished as exc:
            fail(exc)
        except (RebuildError, SearchError, RegistryError) as exc:
            fail(RuntimeError(f"{exc} (nothing switched: searches still read {alias} as it was)"))
    replaced = done.replaced
    was = ("nothing" if replaced is None or not replaced.indices
           else f"the concrete index {alias} (now deleted)" if replaced.concrete
           else ", ".join(replaced.indices) + " (deleted)")
    typer.echo(f"{alias} -> {done.index} in {done.seconds:.1f}s; it stood for {was}")
    print_table(["source", ">read", ">indexed", ">stale", ">skipped"],
                [(s.topic, f"{s.read:,}", f"{s.indexed:,}", f"{s.stale:,}", f"{s.skipped:,}")
                 for s in (done.products, done.stock)])


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
        fail(RuntimeError(f"{email} already has an account; add --promote to make it an admin"))
    except ValueError as exc:
        fail(exc)
    typer.echo(f"admin {user.email} ({user.id})")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the PostgreSQL migrations not yet applied."""
    import asyncio

    import asyncpg

    from shopflow.db import migrate_database

    try:
        applied = asyncio.run(migrate_database(get_settings()))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(RuntimeError(f"migrations failed: {exc}; is PostgreSQL up (`shopflow stack status`)?"))
    typer.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
