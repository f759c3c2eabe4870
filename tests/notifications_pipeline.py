"""What the notifications tests share besides fixtures: the agent and the sender in threads, with what they
did and how they died. Test folders are not packages: ``import notifications_pipeline``."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shopflow.settings import Settings


@dataclass
class Running:
    """A process body in a thread: ``stop`` ends it, ``errors`` holds what killed it."""

    thread: threading.Thread
    stop: threading.Event
    verdicts: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @classmethod
    def start(cls, name: str, body: Callable[[Running], None]) -> Running:
        running = cls(threading.Thread(), threading.Event())

        def target() -> None:
            try:
                body(running)
            except BaseException as exc:  # surfaced by failure() and close()
                running.errors.append(exc)

        running.thread = threading.Thread(target=target, name=name, daemon=True)
        running.thread.start()
        return running

    def failure(self) -> str | None:
        return f"{self.thread.name} died: {self.errors[0]!r}" if self.errors else None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.errors, self.errors


def start_sender(settings: Settings, *, topic: str, retry_topic: str, **options: Any) -> Running:
    """``shopflow notifier`` on throwaway topics; ``verdicts`` collects (request, verdict) pairs."""
    from shopflow.streams.notifier_loop import serve

    def body(running: Running) -> None:
        asyncio.run(serve(settings, running.stop, topic=topic, retry_topic=retry_topic,
                          group_id=f"test-notifier-{uuid.uuid4().hex[:8]}",
                          on_verdict=lambda request, verdict: running.verdicts.append((request, verdict)),
                          **options))

    return Running.start("notifier", body)


def start_agent(settings: Settings, *, topics: list[str], output_topic: str, from_end: bool = False) -> Running:
    """The notifications agent on ``topics``; ``from_end``: only what arrives after it is assigned."""
    from shopflow.streams.notifications import run

    def body(running: Running) -> None:
        run(settings, running.stop, topics=topics, output_topic=output_topic,
            group_id=f"test-notifications-{uuid.uuid4().hex[:8]}", from_end=from_end,
            on_assigned=lambda: running.verdicts.append("assigned"))

    return Running.start("notifications-agent", body)


async def add_user(settings: Settings, email: str) -> str:
    """An account row (as the edge writes one), in the settings' schema; its id."""
    from shopflow.db import connect

    user_id = str(uuid.uuid4())
    conn = await connect(settings)
    try:
        await conn.execute("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')", user_id, email)
    finally:
        await conn.close()
    return user_id
