"""``shopflow schemas check | register``: the working tree's schemas against what is deployed.

Every record of every catalog topic is one subject (TopicRecordNameStrategy). ``check`` compares
each schema in the working tree with the subject's latest version in the registry, or, with no
registry at hand, with the same file at a git revision; ``register`` sets BACKWARD on each subject
and registers, refusing anything incompatible.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from shopflow import PROJECT_ROOT
from shopflow.schemas import all_schemas, schema_path
from shopflow.schemas.compat import check
from shopflow.schemas.registry import SchemaRegistry
from shopflow.topologies.catalog import TOPICS

COMPATIBILITY = "BACKWARD"


@dataclass(frozen=True)
class Finding:
    subject: str
    problem: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}"


def subjects() -> list[tuple[str, str]]:
    """(subject, record full name) for every record every catalog topic carries."""
    return [(topic.subject(record), record.AVRO_NAME) for topic in TOPICS for record in topic.values]


def check_against_registry(registry: SchemaRegistry, schemas: dict[str, dict] | None = None) -> list[Finding]:
    """Findings for ``schemas`` (default: the working tree's) against each subject's latest version."""
    schemas = schemas or all_schemas()
    findings = []
    for subject, record in subjects():
        latest = registry.latest(subject)
        if latest is None:
            continue
        problems = check(schemas[record], latest["schema"])
        if not problems and not registry.is_compatible(subject, schemas[record]):
            problems = [f"the registry finds it not {COMPATIBILITY} compatible with version {latest['version']}"]
        findings += [Finding(subject, p) for p in problems]
    return findings


def check_against_git(rev: str) -> list[Finding]:
    findings = []
    for record, schema in all_schemas().items():
        rel = schema_path(record).relative_to(PROJECT_ROOT)
        shown = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        if shown.returncode != 0:
            if "exists on disk, but not in" in shown.stderr or "does not exist in" in shown.stderr:
                continue  # a new schema: nothing to be compatible with
            raise RuntimeError(f"git show {rev}:{rel} failed: {shown.stderr.strip()}")
        findings += [Finding(record, p) for p in check(schema, json.loads(shown.stdout))]
    return findings


def register_all(registry: SchemaRegistry) -> list[tuple[str, int]]:
    schemas = all_schemas()
    out = []
    for subject, record in subjects():
        registry.set_compatibility(COMPATIBILITY, subject)
        out.append((subject, registry.register(subject, schemas[record])))
    return out
