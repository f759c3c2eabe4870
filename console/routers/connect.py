"""The Kafka Connect page (``/connect``): every connector and task with its state, read fresh from Connect
on every request (``connectors.apply.ConnectClient.statuses``), the root cause of a failure first, failed
counts, a state filter kept in the URL; restart, pause and resume, each confirmed, CSRF-checked, audited.

What other consoles' users hit, and how this page answers it: a connector-level trace not shown
(kafbat/kafka-ui #1318): the connector's own trace is shown beside its tasks'; a RUNNING badge on a
connector whose tasks failed (kafbat #1534): the headline state is FAILED when any part failed, the
connector's own state beside it; no failed counts (provectus #1334): counts at the top; RESTARTING
breaking the page (provectus #4430): a state is shown as Connect names it, whatever it is.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from shopflow.access import Permission, audit
from shopflow.connectors.apply import CONNECT_STATES, ConnectClient, ConnectorError, ConnectorStatus, TaskStatus
from shopflow.console.auth import OpsActor, OpsViewer
from shopflow.console.pages import page, wants_json
from shopflow.console.resources import ConsoleDep
from shopflow.settings import Settings

router = APIRouter()

Action = Literal["restart", "pause", "resume"]
# What each action does, as the confirm step says it.
CONSEQUENCES: dict[str, str] = {
    "restart": "restarts the connector and those of its tasks that FAILED "
               "(Connect's includeTasks=true&onlyFailed=true)",
    "pause": "pauses the connector and its tasks: they stop reading and producing, and keep their place",
    "resume": "resumes the connector and its tasks from where they paused",
}


class UnitView(BaseModel):
    """The connector itself (``task`` None) or one task."""

    task: int | None
    state: str
    worker_id: str | None
    cause: str | None  # the trace's root cause ("Caused by" that matters), when it failed
    trace: str | None


class ConnectorView(BaseModel):
    name: str
    type: str | None
    health: str  # FAILED when the connector or any task failed, never a RUNNING that hides one
    connector: UnitView
    tasks: list[UnitView]
    failed_tasks: int
    cause: str | None

    @classmethod
    def of(cls, s: ConnectorStatus) -> ConnectorView:
        return cls(name=s.name, type=s.type, health=s.health, connector=_unit(s.connector),
                   tasks=[_unit(t) for t in s.tasks], failed_tasks=s.failed_tasks, cause=s.cause)


def _unit(u: TaskStatus) -> UnitView:
    return UnitView(task=u.task, state=u.state, worker_id=u.worker_id, cause=u.cause, trace=u.trace)


class ConnectPage(BaseModel):
    connectors: list[ConnectorView]  # those the filter keeps
    total: int
    failed_connectors: int  # whose own state is FAILED
    failed_tasks: int
    unhealthy: int  # connectors whose headline is not RUNNING
    states: list[str]  # the filter (empty: all)
    known_states: list[str]
    can_act: bool
    notice: str | None = None
    error: str | None = None  # Connect unreachable: what to do


class ConfirmConnectorAction(BaseModel):
    connector: ConnectorView
    action: Action
    consequence: str
    can_act: bool


class ConnectorActionDone(BaseModel):
    connector: str
    action: Action
    status: ConnectorView | None  # as Connect reported it right after


def _client(settings: Settings) -> ConnectClient:
    return ConnectClient(settings.connect_url, timeout=10)


def _statuses(settings: Settings) -> list[ConnectorStatus]:
    client = _client(settings)
    try:
        return client.statuses()
    finally:
        client.close()


def _one(settings: Settings, name: str) -> ConnectorStatus:
    client = _client(settings)
    try:
        found = client.connector_status(name)
    finally:
        client.close()
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no connector named {name}; /connect lists them")
    return found


def _connect_failed(exc: ConnectorError) -> HTTPException:
    """Connect's failure as the page's answer: 404 for a connector it does not have, else 502 with its
    message (which says to check ``shopflow stack status``)."""
    missing = str(exc).startswith("no connector named")
    return HTTPException(status.HTTP_404_NOT_FOUND if missing else status.HTTP_502_BAD_GATEWAY, str(exc))


def _wanted(states: list[str]) -> list[str]:
    wanted = sorted({s.upper() for s in states if s})
    unknown = [s for s in wanted if s not in CONNECT_STATES]
    if unknown:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            f"unknown state {', '.join(unknown)}; the states are {', '.join(CONNECT_STATES)}")
    return wanted


@router.get("/connect", include_in_schema=False)
async def connect_page(request: Request, console: ConsoleDep, principal: OpsViewer,
                       state: Annotated[list[str] | None, Query()] = None, done: str | None = None) -> Response:
    wanted = _wanted(state or [])
    can_act = principal.can(Permission.OPS_ACT)
    try:
        statuses = await asyncio.to_thread(_statuses, console.settings)
    except ConnectorError as exc:
        return page(request, "connect.html", ConnectPage(
            connectors=[], total=0, failed_connectors=0, failed_tasks=0, unhealthy=0, states=wanted,
            known_states=list(CONNECT_STATES), can_act=can_act, error=str(exc)), status_code=503)
    shown = [s for s in statuses if not wanted or s.states & set(wanted)]
    notice = None
    if done and ":" in done:  # after an action (post/redirect/get): which one, in words
        action, _, name = done.partition(":")
        if action in CONSEQUENCES:
            notice = f"{action} of {name} sent to Connect; the states below are read now"
    return page(request, "connect.html", ConnectPage(
        connectors=[ConnectorView.of(s) for s in shown], total=len(statuses),
        failed_connectors=sum(s.connector.state == "FAILED" for s in statuses),
        failed_tasks=sum(s.failed_tasks for s in statuses),
        unhealthy=sum(s.health != "RUNNING" for s in statuses), states=wanted,
        known_states=list(CONNECT_STATES), can_act=can_act, notice=notice))


@router.get("/connect/{name}/{action}", include_in_schema=False)
async def confirm_action(request: Request, name: str, action: Action, console: ConsoleDep,
                         principal: OpsViewer) -> Response:
    """The confirm step: what the action will do to this connector as it is now; the form posts it."""
    try:
        found = await asyncio.to_thread(_one, console.settings, name)
    except ConnectorError as exc:
        raise _connect_failed(exc) from None
    return page(request, "connect_confirm.html", ConfirmConnectorAction(
        connector=ConnectorView.of(found), action=action, consequence=CONSEQUENCES[action],
        can_act=principal.can(Permission.OPS_ACT)))


def _act(settings: Settings, name: str, action: Action) -> ConnectorStatus | None:
    """Do it; the status after: Connect's answer to a restart (what it restarts shows RESTARTING; a status
    read at once may still say FAILED, as the status topic catches up), else a status read now."""
    client = _client(settings)
    try:
        if action == "restart":
            answer = client.restart(name, only_failed=True)
            if answer is not None:
                return answer
        else:
            getattr(client, action)(name)
        return client.connector_status(name)
    finally:
        client.close()


@router.post("/connect/{name}/{action}", include_in_schema=False)
async def do_action(request: Request, name: str, action: Action, console: ConsoleDep, actor: OpsActor) -> Response:
    try:
        after = await asyncio.to_thread(_act, console.settings, name, action)
    except ConnectorError as exc:
        raise _connect_failed(exc) from None
    async with console.pool.acquire() as conn:
        await audit(conn, actor=actor, action=f"connector.{action}", target=f"connector:{name}",
                    detail={"state_after": after.health if after else None})
    if wants_json(request):
        return page(request, "connect.html", ConnectorActionDone(
            connector=name, action=action, status=ConnectorView.of(after) if after else None))
    return RedirectResponse(request.url_for("connect_page").include_query_params(done=f"{action}:{name}"),
                            status.HTTP_303_SEE_OTHER)
