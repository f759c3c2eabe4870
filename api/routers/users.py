"""The signed-in user's own account (``/v1/users``)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from shopflow.api import users
from shopflow.api.dependencies import CurrentUser, DbDep
from shopflow.api.errors import errors
from shopflow.api.schemas import UserPublic

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/me", response_model=UserPublic, responses=errors(401, 404, 429, 503))
async def me(user: CurrentUser, conn: DbDep) -> UserPublic:
    """The profile of the account the access token belongs to."""
    profile = await users.get_user(conn, user.user_id)
    if profile is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the account of this token no longer exists")
    return profile
