"""A user's Web Push subscriptions (``/v1/users/me/push-subscriptions``): the browser asks for the VAPID
public key (``GET /v1/push/application-server-key``), subscribes with its push service, and registers the resulting
``PushSubscription.toJSON()`` here; the push channel sends to every registered subscription and deletes
one whose push service answers 404 or 410.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, Field, field_validator

from shopflow.api.dependencies import CurrentUser, DbDep, SettingsDep
from shopflow.api.errors import errors
from shopflow.api.schemas import _In
from shopflow.notify.push import application_server_key

router = APIRouter(prefix="/v1", tags=["notifications"])
BASE = "/users/me/push-subscriptions"

_B64URL = r"^[A-Za-z0-9_-]+={0,2}$"


class SubscriptionKeys(_In):
    p256dh: Annotated[str, Field(min_length=80, max_length=100, pattern=_B64URL,
                                 description="The browser's P-256 public key (65 bytes, base64url).")]
    auth: Annotated[str, Field(min_length=16, max_length=30, pattern=_B64URL,
                               description="The 16-byte auth secret, base64url.")]


class SubscriptionIn(_In):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    endpoint: Annotated[str, Field(max_length=2000, description="The push service URL for this subscription.")]
    keys: SubscriptionKeys
    expirationTime: int | None = None  # noqa: N815 - the Push API's own field name

    @field_validator("endpoint")
    @classmethod
    def _web_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("the endpoint must be an https URL (http only for a local push service)")
        return value


class SubscriptionOut(BaseModel):
    subscription_id: str
    endpoint: str


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class ServerKey(BaseModel):
    application_server_key: str = Field(description="Pass to pushManager.subscribe({applicationServerKey}).")


@router.get("/push/application-server-key", response_model=ServerKey, responses=errors(401, 429))
async def server_key(_user: CurrentUser, settings: SettingsDep) -> ServerKey:
    """The VAPID public key every subscription must be made with."""
    return ServerKey(application_server_key=application_server_key(settings))


@router.post(BASE, status_code=status.HTTP_201_CREATED, response_model=SubscriptionOut,
             responses=errors(400, 401, 409, 413, 422, 429))
async def register(body: SubscriptionIn, user: CurrentUser, conn: DbDep) -> SubscriptionOut:
    """Register a subscription; the same endpoint registered again by its user is the same subscription."""
    row = await conn.fetchrow(
        "INSERT INTO push_subscriptions (subscription_id, user_id, endpoint, p256dh, auth) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint) DO UPDATE SET p256dh = $4, auth = $5 "
        "WHERE push_subscriptions.user_id = $2 RETURNING subscription_id",
        uuid.uuid4(), user.user_id, body.endpoint, body.keys.p256dh, body.keys.auth)
    if row is None:  # the endpoint is another user's: a browser profile is one user's at a time
        raise HTTPException(status.HTTP_409_CONFLICT, "this endpoint is registered by another account: "
                            "unsubscribe in the browser and subscribe again")
    return SubscriptionOut(subscription_id=str(row["subscription_id"]), endpoint=body.endpoint)


@router.get(BASE, response_model=SubscriptionList, responses=errors(401, 429))
async def list_mine(user: CurrentUser, conn: DbDep) -> SubscriptionList:
    rows = await conn.fetch("SELECT subscription_id, endpoint FROM push_subscriptions WHERE user_id = $1 "
                            "ORDER BY created_at", user.user_id)
    return SubscriptionList(items=[SubscriptionOut(subscription_id=str(r["subscription_id"]),
                                                   endpoint=r["endpoint"]) for r in rows])


@router.delete(BASE + "/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(401, 404, 422, 429))
async def unregister(subscription_id: Annotated[uuid.UUID, Path()], user: CurrentUser, conn: DbDep) -> Response:
    deleted = await conn.execute("DELETE FROM push_subscriptions WHERE subscription_id = $1 AND user_id = $2",
                                 subscription_id, user.user_id)
    if deleted == "DELETE 0":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such subscription of yours")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
