"""The one ``shopflow`` command: every operation on the project goes through here."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from shopflow.deploy import StackError
from shopflow.settings import get_settings

app = typer.Typer(help="ShopFlow: an e-commerce backend on Kafka streams.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack of real servers (Kafka, registry, Connect, PostgreSQL, Redis, OpenSearch).",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")


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


if __name__ == "__main__":
    app()
