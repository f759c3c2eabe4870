"""A small client of the schema registry's Confluent-compatible REST API (Apicurio's ccompat/v7).

Registering, looking up by id, checking and setting compatibility: what the codec and the
``shopflow schemas`` commands need, through httpx, with ids cached (a registered schema's id
never changes).
"""

from __future__ import annotations

import json

import httpx

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    """The registry refused a request or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class IncompatibleSchema(RegistryError):
    """A schema change breaks the subject's compatibility rule (BACKWARD here)."""


class SchemaRegistry:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers={"Content-Type": CONTENT_TYPE})
        self._by_id: dict[int, dict] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"schema registry at {self.url} unreachable ({exc}); start it with `shopflow stack up`"
            ) from None
        return response

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            return response.json().get("message", response.text)
        except ValueError:
            return response.text

    def register(self, subject: str, schema: dict) -> int:
        """Register ``schema`` under ``subject`` (or find it there); return its global id."""
        text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
        key = (subject, text)
        if key in self._ids:
            return self._ids[key]
        for _ in range(3):
            r = self._request("POST", f"/subjects/{subject}/versions", json={"schema": text, "schemaType": "AVRO"})
            # Apicurio answers 409 both for a rule violation and for losing a race with another process
            # registering the same subject at the same moment; only the first is final.
            if r.status_code != 409 or "RuleViolation" in self._message(r) or "ncompatible" in self._message(r):
                break
        if r.status_code == 409:
            raise IncompatibleSchema(f"{subject}: {self._message(r)}", 409)
        if r.status_code >= 400:
            raise RegistryError(f"registering {subject} failed ({r.status_code}): {self._message(r)}", r.status_code)
        schema_id = int(r.json()["id"])
        self._ids[key] = schema_id
        self._by_id.setdefault(schema_id, schema)
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict | None:
        """The schema with this global id, or None when the registry has no such id."""
        if schema_id in self._by_id:
            return self._by_id[schema_id]
        r = self._request("GET", f"/schemas/ids/{schema_id}")
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise RegistryError(f"schema id {schema_id}: {r.status_code} {self._message(r)}", r.status_code)
        schema = json.loads(r.json()["schema"])
        self._by_id[schema_id] = schema
        return schema

    def subjects(self) -> list[str]:
        return list(self._request("GET", "/subjects").json())

    def latest(self, subject: str) -> dict | None:
        """The latest version of ``subject``: {"version", "id", "schema"}, or None."""
        r = self._request("GET", f"/subjects/{subject}/versions/latest")
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise RegistryError(f"{subject}: {r.status_code} {self._message(r)}", r.status_code)
        body = r.json()
        return {"version": body["version"], "id": body["id"], "schema": json.loads(body["schema"])}

    def is_compatible(self, subject: str, schema: dict) -> bool:
        r = self._request(
            "POST", f"/compatibility/subjects/{subject}/versions/latest",
            json={"schema": json.dumps(schema), "schemaType": "AVRO"},
        )
        if r.status_code == 404:
            return True  # nothing registered yet: anything is compatible
        if r.status_code >= 400:
            raise RegistryError(f"{subject}: {r.status_code} {self._message(r)}", r.status_code)
        return bool(r.json().get("is_compatible"))

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        path = f"/config/{subject}" if subject else "/config"
        for _ in range(3):
            r = self._request("PUT", path, json={"compatibility": level})
            # Two processes setting a subject's first rule at once: the loser's create fails with 409
            # ("already exists"), and the same PUT then updates the rule the winner made.
            if r.status_code != 409:
                break
        if r.status_code >= 400:
            raise RegistryError(f"setting {level} on {subject or 'the registry'}: {self._message(r)}", r.status_code)
