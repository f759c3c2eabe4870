"""The contracts as data: ``shopflow topics`` (the topic catalog), ``schemas`` (Avro), ``topology`` (the saga)."""

from __future__ import annotations

import typer

from shopflow.cli.common import fail, print_table
from shopflow.settings import get_settings

topics_app = typer.Typer(help="The topic catalog (topologies/catalog.py) on the broker.", no_args_is_help=True)
schemas_app = typer.Typer(help="Avro schemas in schemas/: compatibility and registration.", no_args_is_help=True)
topology_app = typer.Typer(help="The order saga declared as data (topologies/saga.py).", no_args_is_help=True)


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
        fail(RuntimeError(f"topics apply failed: {exc}; is Kafka up (`shopflow stack status`)?"))
    for line in changes or ["nothing to change: the broker matches the catalog"]:
        typer.echo(line)


@topics_app.command("list")
def topics_list() -> None:
    """The catalog: name, key, partitions, cleanup policy, retention, value records."""
    from shopflow.topologies.catalog import all_topics

    print_table(["topic", "key", ">partitions", "cleanup", ">retention ms", "value records"],
                [(t.name, t.key, t.partitions, t.cleanup_policy, t.retention_ms,
                  ", ".join(v.__name__ for v in t.values))
                 for t in all_topics()])


@schemas_app.command("check")
def schemas_check(
    git_rev: str = typer.Option(None, "--git-rev",
                                help="Compare with the schemas at this git revision instead of the registry."),
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
        fail(exc)
    for finding in findings:
        typer.secho(f"incompatible: {finding}", fg=typer.colors.RED, err=True)
    if findings:
        typer.echo(f"{len(findings)} incompatible change(s) against {against}: fix them, or add defaults/aliases",
                   err=True)
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
        fail(exc)


@topology_app.command("check")
def topology_check() -> None:
    """Prove from the saga's data that every state ends and every effect is compensated; exits 1 if not."""
    from shopflow.topologies.saga import ORDER_SAGA
    from shopflow.topologies.saga_check import check

    problems = check(ORDER_SAGA)
    for problem in problems:
        typer.secho(f"problem: {problem}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{ORDER_SAGA.name}: every state reaches a terminal state, every effect has a compensation")


@topology_app.command("draw")
def topology_draw() -> None:
    """Print the saga as a Mermaid state diagram."""
    from shopflow.topologies.saga import ORDER_SAGA
    from shopflow.topologies.saga_draw import mermaid

    typer.echo(mermaid(ORDER_SAGA))
