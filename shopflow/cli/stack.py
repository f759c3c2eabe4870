"""``shopflow stack``: the local stack of real servers (fetch, up, down, status)."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from shopflow.cli.common import fail, print_table
from shopflow.deploy import StackError
from shopflow.settings import get_settings

stack_app = typer.Typer(
    help="The local stack of real servers (Kafka, registry, Connect, PostgreSQL, Redis, OpenSearch).",
    no_args_is_help=True)


def _stack():
    from shopflow.deploy.stack import Stack

    return Stack(get_settings(), progress=lambda line: typer.echo(line, err=True))


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Download every server's jars into .shopflow/cache (reused when present)."""
    try:
        _stack().fetch()
    except StackError as exc:
        fail(exc)


@stack_app.command("up")
def stack_up() -> None:
    """Start every server in dependency order and wait until each is ready (idempotent)."""
    import time

    t0 = time.monotonic()
    try:
        started = _stack().up()
    except StackError as exc:
        fail(exc)
    typer.echo(f"stack up in {time.monotonic() - t0:.1f}s ({len(started)} started)", err=True)


@stack_app.command("down")
def stack_down() -> None:
    """Stop every server of the stack; leaves no process behind."""
    _stack().down()


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json", help="Print servers and problems as JSON.")) -> None:
    """One row per server (version, port, pid, state, RSS), then what is wrong with the data they hold.

    Exits 1 when a server is down, 2 when all are up but a problem was found (each with its repair).
    """
    from shopflow.deploy.health import problems

    st = _stack()
    rows = st.status()
    found = problems(st.settings, {r.name for r in rows if r.up})
    if as_json:
        typer.echo(json.dumps({"servers": [asdict(r) for r in rows], "problems": [asdict(p) for p in found]},
                              indent=2))
    else:
        print_table(["server", "version", ">port", ">pid", "state", ">rss", "note"],
                    [(r.name, r.version, r.port, r.pid, r.state, f"{r.rss_mb:.0f} MB", r.note) for r in rows],
                    footer=["total", "", "", "", "", f"{sum(r.rss_mb for r in rows):.0f} MB", ""])
        for p in found:
            typer.echo(f"problem  {p.server}: {p.what}\n         fix: {p.fix}")
    if not all(r.up for r in rows):
        raise typer.Exit(1)
    if found:
        raise typer.Exit(2)
