"""What the files tests share besides fixtures: the image agent in a thread, the people and the shop the
module's tests use (conftest.py builds them). Test folders are not packages: ``import files_pipeline``."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from catalog_pipeline import RunningIndexer, unique

from shopflow.settings import Settings

# An upload over this many bytes is refused by the store: small, so the test file that is over it is too.
MAX_BYTES = 2 * 2**20


@dataclass
class RunningAgent:
    """The image agent (``shopflow.streams.files.run``) in a thread, with what it did and how it died."""

    thread: threading.Thread
    stop: threading.Event
    outcomes: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings, *, topic: str, products_topic: str) -> RunningAgent:
        from shopflow.streams.files import run

        running = cls(threading.Thread(), threading.Event())

        def target() -> None:
            try:
                run(settings, running.stop, topic=topic, products_topic=products_topic,
                    group_id=unique("test-images"), on_record=running.outcomes.append)
            except BaseException as exc:  # surfaced by failure() and close()
                running.errors.append(exc)

        running.thread = threading.Thread(target=target, name="image-agent", daemon=True)
        running.thread.start()
        return running

    def failure(self) -> str | None:
        return f"the image agent died: {self.errors[0]!r}" if self.errors else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.errors, self.errors


@dataclass(frozen=True)
class Person:
    user_id: str
    access: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@dataclass
class Shop:
    """The edge's client, its app, the people using it and the pipeline's pieces."""

    client: httpx.AsyncClient
    app: Any
    settings: Settings
    admin: Person
    customer: Person
    agent: RunningAgent
    indexer: RunningIndexer
    made: set[str] = field(default_factory=set)

    def idem(self) -> dict[str, str]:
        return {"Idempotency-Key": str(uuid.uuid4())}

    def give_up(self) -> str | None:
        return self.agent.failure() or self.indexer.failure()
