"""The ``shopflow.personal`` field property: valid kinds, no effect on compatibility, kept by the registry."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from shopflow.schemas import all_schemas
from shopflow.schemas.compat import check
from shopflow.taps.masking import KINDS, PERSONAL, marks_of


def without_marks(schema: dict) -> dict:
    """``schema`` as it was before any field was marked personal."""
    return json.loads(json.dumps(schema), object_hook=lambda node: {k: v for k, v in node.items() if k != PERSONAL})


@pytest.mark.parametrize("record", sorted(all_schemas()))
def test_every_mark_has_a_known_kind_and_changes_no_compatibility(record):
    schema = all_schemas()[record]

    assert set(marks_of(schema, record).values()) <= KINDS
    assert check(schema, without_marks(schema)) == []
    assert check(without_marks(schema), schema) == []


@pytest.mark.integration
def test_the_registry_keeps_the_mark_in_a_new_compatible_version_and_the_old_id_still_resolves(registry):
    # Given a subject whose first version has no mark
    subject = f"test-personal-{uuid.uuid4().hex[:8]}-value"
    marked = all_schemas()["shopflow.users.UserRegistered"]
    registry.set_compatibility("BACKWARD", subject)
    old_id = registry.register(subject, without_marks(marked))
    try:
        # When the marked schema is registered
        assert registry.is_compatible(subject, marked)
        new_id = registry.register(subject, marked)

        # Then it is a new version with a new id, the mark kept; the old id still gives the unmarked schema
        latest = registry.latest(subject)
        assert (latest["version"], latest["id"]) == (2, new_id) and new_id != old_id
        assert marks_of(latest["schema"]) == marks_of(marked)
        assert marks_of(json.loads(httpx.get(f"{registry.url}/schemas/ids/{old_id}").json()["schema"])) == {}
    finally:
        httpx.delete(f"{registry.url}/subjects/{subject}")
        httpx.delete(f"{registry.url}/subjects/{subject}", params={"permanent": "true"})
