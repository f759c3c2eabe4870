"""Fixtures of the tap tests: a codec over an in-memory registry for the tests that need no servers.
The records and schemas they share are in ``taprecords`` (imported by name, unlike a conftest, whichever
test directories a run collects)."""

from __future__ import annotations

import pytest
from taprecords import MemoryRegistry

from shopflow.schemas.codec import AvroCodec


@pytest.fixture
def memory_codec() -> AvroCodec:
    return AvroCodec(MemoryRegistry())  # type: ignore[arg-type]
