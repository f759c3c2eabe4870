"""The stores around the streams: ``shopflow connectors`` (CDC), ``search``, ``users`` and ``db`` (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from shopflow.cli.common import audit_cli, fail, print_table
from shopflow.settings import get_settings

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")

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
def connectors_status(
    state: list[str] = typer.Option(None, "--state", help="Only connectors with this state on the connector or "
                                    "one of its tasks (repeatable), e.g. --state FAILED."),
    traces: bool = typer.Option(False, "--traces", help="Print the whole trace of every failed connector and task."),
) -> None:
    """Every connector on the worker: its own state and each task's, read now, with the root cause of a failure."""
    from shopflow.connectors.apply import CONNECT_STATES, ConnectorError

    wanted = {s.upper() for s in state or []}
    if unknown := wanted - set(CONNECT_STATES):
        typer.secho(f"error: unknown state {', '.join(sorted(unknown))}; one of {', '.join(CONNECT_STATES)}",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    client = _connect_client()
    try:
        statuses = client.statuses()
    except ConnectorError as exc:
        fail(exc)
    finally:
        client.close()
    shown = [s for s in statuses if not wanted or s.states & wanted]
    failed = sum(s.connector.state == "FAILED" for s in statuses)
    typer.echo(f"{len(statuses)} connectors: {failed} failed, {sum(s.failed_tasks for s in statuses)} failed tasks")
    print_table(["connector", "health", "connector state", "tasks", "cause"],
                [(s.name, s.health, s.connector.state,
                  ", ".join(f"{t.task} {t.state}" for t in s.tasks) or "no tasks", s.cause) for s in shown])
    for s in shown if traces else []:
        for unit in (s.connector, *s.tasks):
            if unit.trace:
                typer.echo(f"\n{s.name} {'connector' if unit.task is None else f'task {unit.task}'}:\n{unit.trace}")


def _act_on_connector(name: str, action: str, wait_running: bool, **options: bool) -> None:
    """``restart``, ``pause`` or ``resume`` a connector through Connect, audited; ``wait_running``: then wait
    until it and its tasks run (a failure says its cause)."""
    from shopflow.connectors.apply import ConnectorError

    client = _connect_client()
    try:
        getattr(client, action)(name, **options)
        audit_cli(f"connector.{action}", f"connector:{name}", options)
        if wait_running:
            client.wait_running(name)
        status = client.connector_status(name)
    except ConnectorError as exc:
        fail(exc)
    finally:
        client.close()
    typer.echo(f"{name}: {action} done, now {status.health if status else 'gone'}")


@connectors_app.command("restart")
def connectors_restart(
    name: str,
    only_failed: bool = typer.Option(False, "--only-failed", help="Restart only the connector or tasks that FAILED."),
) -> None:
    """Restart a connector and its tasks (after fixing what made them FAILED) and wait until RUNNING."""
    _act_on_connector(name, "restart", True, only_failed=only_failed)


@connectors_app.command("pause")
def connectors_pause(name: str) -> None:
    """Pause a connector and its tasks: they stop producing, keep their place, until `connectors resume`."""
    _act_on_connector(name, "pause", False)


@connectors_app.command("resume")
def connectors_resume(name: str) -> None:
    """Resume a paused connector and wait until it and its tasks run."""
    _act_on_connector(name, "resume", True)


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


def _usage_error(message: str) -> NoReturn:
    """Stop with exit status 2: the command was asked something that cannot be (an unknown user or role)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _on_access(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """``work`` on a migrated PostgreSQL connection: an unknown user or role exits 2, a database that
    cannot be reached exits 1, each saying what to do."""
    import asyncio

    import asyncpg

    from shopflow.access import AccessError
    from shopflow.db import connect, migrate

    async def run() -> T:
        conn = await connect(get_settings())
        try:
            await migrate(conn)
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except AccessError as exc:
        _usage_error(str(exc))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(RuntimeError(f"{exc}; is PostgreSQL up (`shopflow stack status`)?"))


@users_app.command("grant")
def users_grant(email: str, role: str) -> None:
    """Give an account a role (ops, data, admin, customer); it takes effect at the user's next login or
    token refresh. Audited."""
    from shopflow.access import cli_actor, grant

    added = _on_access(lambda conn: grant(conn, email=email, role=role, actor=cli_actor()))
    typer.echo(f"{email.lower()}: granted {role}" if added else f"{email.lower()}: already had {role}")


@users_app.command("revoke")
def users_revoke(email: str, role: str) -> None:
    """Take a role from an account: a refresh or login no longer gets it; access tokens already issued
    keep it until they expire (settings.access_token_ttl_s). Audited."""
    from shopflow.access import cli_actor, revoke

    removed = _on_access(lambda conn: revoke(conn, email=email, role=role, actor=cli_actor()))
    typer.echo(f"{email.lower()}: revoked {role}" if removed else f"{email.lower()}: did not have {role}")


@users_app.command("roles")
def users_roles(email: str) -> None:
    """An account's roles, what each permits, who granted it and when."""
    from shopflow.access import grants_of

    grants = _on_access(lambda conn: grants_of(conn, email))
    if grants is None:
        _usage_error(f"no account with e-mail {email.lower()}")
    if not grants:
        typer.echo(f"{email.lower()} has no roles (`shopflow users grant {email.lower()} ROLE` gives one)")
        return
    print_table(["role", "permissions", "granted by", "granted at"],
                [(g.role, ", ".join(g.permissions) or "-", g.granted_by, f"{g.granted_at:%Y-%m-%d %H:%M:%S %Z}")
                 for g in grants])


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
