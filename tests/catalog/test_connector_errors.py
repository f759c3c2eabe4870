"""`connectors apply` (connectors/apply.py) on broken declarations: each gives a clear ConnectorError.

The broken connectors are temporary copies of catalog-outbox.json under another name, with their own
slot and publication, so the real connector is never touched; each is deleted afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog_pipeline import drop_replication, unique

from shopflow.connectors.apply import CONNECTORS_DIR, ConnectorError, headline, load


def broken_copy(tmp_path: Path, **overrides: str) -> Path:
    doc = json.loads((CONNECTORS_DIR / "catalog-outbox.json").read_text())
    name = unique("catalog-outbox-broken")
    ident = name.replace("-", "_")
    doc["name"] = name
    doc["config"].update({"slot.name": ident, "publication.name": ident, **overrides})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
async def cleanup(stack, connect_client):
    """Delete the broken connectors and whatever replication slot or publication they got to create."""
    import asyncpg

    paths: list[Path] = []
    yield paths
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        for path in paths:
            connector = load(path)
            connect_client.delete(connector.name)
            await drop_replication(conn, connector.config["slot.name"])
    finally:
        await conn.close()


def test_a_malformed_connector_json_is_refused_before_anything_is_sent(tmp_path):
    path = tmp_path / "catalog-outbox.json"
    path.write_text('{"name": "catalog-outbox", "config": {"connector.class": "x",}}')

    with pytest.raises(ConnectorError, match=r"not valid JSON at line 1 column \d+"):
        load(path)


@pytest.mark.parametrize(("trace", "expected"), [
    ("o.a.k.c.errors.ConnectException: wrapped\n\tat A.run\nCaused by: a.B: middle\n\tat B.run\n"
     "Caused by: c.D: the root\n\tat C.run\n\t... 3 more", "c.D: the root"),
    ("x.Y: alone\n\tat A.run", "x.Y: alone"),
    ("", "(no trace)"),
])
def test_a_trace_is_headed_by_its_root_cause(trace, expected):
    assert headline(trace) == expected


def test_a_connector_declaration_of_the_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "catalog-outbox.json"
    path.write_text('{"name": "catalog-outbox", "config": {"connector.class": "x", "tasks.max": 1}}')

    with pytest.raises(ConnectorError, match="string values only; not strings: tasks.max"):
        load(path)


@pytest.mark.integration
def test_a_connector_pointing_at_a_missing_database_is_refused_with_the_reason(tmp_path, connect_client, cleanup):
    path = broken_copy(tmp_path, **{"database.dbname": "shopflow_no_such_db"})
    cleanup.append(path)

    # Debezium validates the connection when the config is PUT: Connect answers 400 with the cause.
    refused = r'(?s)refused the config \(400\).*database "shopflow_no_such_db" does not exist'
    with pytest.raises(ConnectorError, match=refused):
        connect_client.apply(load(path), timeout_s=30)
    assert connect_client.status(load(path).name) is None


@pytest.mark.integration
def test_a_connector_that_fails_at_start_reports_its_failed_task_and_trace(tmp_path, connect_client, cleanup):
    # Valid config, but PostgreSQL has no "decoderbufs" plugin: the task fails creating its slot.
    path = broken_copy(tmp_path, **{"plugin.name": "decoderbufs"})
    cleanup.append(path)

    with pytest.raises(ConnectorError) as failed:
        connect_client.apply(load(path), timeout_s=60)

    message = str(failed.value)
    # The headline is the root cause (the trace's last "Caused by"), not Debezium's wrapper of it.
    assert f'{load(path).name} FAILED: org.postgresql.util.PSQLException: ERROR: could not access file "decoderbufs"' \
        in message
    assert "io.debezium.DebeziumException: Creation of replication slot failed" in message  # the whole trace follows
    assert "shopflow connectors apply" in message  # and what to do next
