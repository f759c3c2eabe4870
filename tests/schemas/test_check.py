"""`shopflow schemas check | register` against the real registry and against git."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from shopflow.schemas import all_schemas
from shopflow.schemas.check import check_against_git, check_against_registry, register_all

pytestmark = pytest.mark.integration

RECORD = "shopflow.orders.OrderPlaced"
SHOPFLOW = [sys.executable, "-m", "shopflow.cli"]


def _tree_with_field(field: dict) -> dict[str, dict]:
    schemas = copy.deepcopy(all_schemas())
    schemas[RECORD]["fields"].append(field)
    return schemas


def test_register_is_idempotent_and_the_tree_checks_clean(registry):
    first = register_all(registry)
    assert register_all(registry) == first
    assert check_against_registry(registry) == []


def test_a_compatible_change_is_accepted_and_a_breaking_one_named(registry):
    register_all(registry)

    coupon = {"name": "coupon", "type": ["null", "string"], "default": None}
    optional = check_against_registry(registry, _tree_with_field(coupon))
    breaking = check_against_registry(registry, _tree_with_field({"name": "coupon", "type": "string"}))

    assert optional == []
    assert [f.subject for f in breaking] == [f"orders-{RECORD}"]
    assert "OrderPlaced.coupon: new field without a default" in breaking[0].problem


def test_the_cli_exits_zero_on_a_clean_tree_against_registry_and_git(stack):
    register = subprocess.run([*SHOPFLOW, "schemas", "register"], capture_output=True, text=True)
    assert register.returncode == 0, register.stderr
    for args in (["schemas", "check"], ["schemas", "check", "--git-rev", "HEAD"]):
        proc = subprocess.run([*SHOPFLOW, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "BACKWARD compatible" in proc.stdout
    assert check_against_git("HEAD") == []


def test_registering_concurrently_from_several_processes_agrees(stack):
    """Workers starting together register every subject at once; none may fail and the ids agree."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from shopflow.schemas.registry import SchemaRegistry

    subject = f"test-race-{uuid.uuid4().hex[:8]}-value"
    clients = [SchemaRegistry(stack.registry_url) for _ in range(4)]

    def register(client: SchemaRegistry) -> int:
        client.set_compatibility("BACKWARD", subject)
        return client.register(subject, all_schemas()[RECORD])

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(register, clients))

    assert len(set(ids)) == 1
