"""The console's sign-in sessions, kept server-side in Redis; the browser holds only an opaque id.

A session is created at sign-in (a fresh id every time: an id planted before sign-in is never
promoted), carries the user and a CSRF token for its forms, and expires after
``settings.ops_session_ttl_s`` without a request (each read pushes the expiry back). Redis keys hold
a SHA-256 of the id, not the id: whoever reads a Redis dump cannot replay a cookie from it.
Permissions are not kept here: the console reads them again on each request (``console.auth``), so
a revoked role takes effect at once.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from pydantic import BaseModel
from redis.asyncio import Redis

PREFIX = "shopflow:ops:session"
COOKIE = "shopflow_ops"
# Before sign-in: the double-submit token of the sign-in form (a login CSRF guard).
LOGIN_COOKIE = "shopflow_ops_login"


class Session(BaseModel):
    id: str
    user_id: str
    email: str
    csrf_token: str


def new_token() -> str:
    return secrets.token_urlsafe(32)


class SessionStore:
    def __init__(self, redis: Redis, ttl_s: int):
        self.redis, self.ttl_s = redis, ttl_s

    @staticmethod
    def _key(session_id: str) -> str:
        return f"{PREFIX}:{hashlib.sha256(session_id.encode()).hexdigest()}"

    async def create(self, user_id: str, email: str) -> Session:
        session = Session(id=new_token(), user_id=user_id, email=email, csrf_token=new_token())
        # Stored without its id: the key is all that is needed to find it, and the id is the secret.
        await self.redis.set(self._key(session.id), session.model_dump_json(exclude={"id"}), ex=self.ttl_s)
        return session

    async def get(self, session_id: str | None) -> Session | None:
        """The live session of this id (its expiry pushed back), or None."""
        if not session_id or len(session_id) > 128:
            return None
        raw = await self.redis.getex(self._key(session_id), ex=self.ttl_s)
        if raw is None:
            return None
        return Session.model_validate({**json.loads(raw), "id": session_id})

    async def delete(self, session_id: str) -> None:
        await self.redis.delete(self._key(session_id))
