"""Admin routes for notification templates (``/v1/admin/notification-templates``): list, create, update,
preview. A template is checked when it is saved: one that does not render with sample data (an unknown
variable, bad syntax, something the sandbox refuses, an email without its HTML part) is refused with 422
saying why, so the sender never meets a broken template it could have known about. Saves are audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from shopflow import access
from shopflow.api.dependencies import AdminUser, EdgeDep
from shopflow.api.errors import errors
from shopflow.api.schemas import _In
from shopflow.notify.channels import ChannelName
from shopflow.notify.templates import (
    DEFAULT_LOCALE,
    StoredTemplate,
    TemplateError,
    TemplateStore,
    TemplateUpdate,
    render_sources,
    sample_params,
    validate,
)

router = APIRouter(prefix="/v1/admin/notification-templates", tags=["notifications"])

TEMPLATE_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
LOCALE_PATTERN = r"^[a-z]{2}(-[A-Z]{2})?$"
TemplateName = Annotated[str, Path(pattern=TEMPLATE_PATTERN, description="Template name, e.g. order_confirmed.")]
LocalePath = Annotated[str, Path(pattern=LOCALE_PATTERN, description="Locale, e.g. en or pt-BR.")]
Source = Annotated[str, Field(max_length=20_000)]
Params = Annotated[dict[str, Annotated[str, Field(max_length=1000)]], Field(max_length=50)]

_store = TemplateStore()


class TemplateSources(_In):
    subject: Annotated[str, Field(max_length=500)] = ""
    text_body: Source
    html_body: Source | None = None

    def update(self) -> TemplateUpdate:
        return TemplateUpdate(subject=self.subject, text_body=self.text_body, html_body=self.html_body)


class TemplateCreate(TemplateSources):
    template: Annotated[str, Field(pattern=TEMPLATE_PATTERN)]
    channel: ChannelName
    locale: Annotated[str, Field(pattern=LOCALE_PATTERN)] = DEFAULT_LOCALE


class TemplateOut(BaseModel):
    template: str
    channel: ChannelName
    locale: str
    subject: str
    text_body: str
    html_body: str | None
    updated_at: str | None

    @classmethod
    def of(cls, t: StoredTemplate) -> TemplateOut:
        return cls(template=t.template, channel=t.channel, locale=t.locale, subject=t.subject,
                   text_body=t.text_body, html_body=t.html_body,
                   updated_at=t.updated_at.isoformat() if t.updated_at else None)


class TemplateList(BaseModel):
    items: list[TemplateOut]


class PreviewRequest(_In):
    template: Annotated[str, Field(pattern=TEMPLATE_PATTERN)]
    channel: ChannelName
    locale: Annotated[str, Field(pattern=LOCALE_PATTERN)] = DEFAULT_LOCALE
    draft: TemplateSources | None = Field(default=None, description="Unsaved sources; the stored ones if absent.")
    params: Params | None = Field(default=None, description="Values to fill in; the template's samples if absent.")


class Preview(BaseModel):
    subject: str
    text: str
    html: str | None
    params: dict[str, str]


def _refused(exc: TemplateError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         f"the template does not render: {exc}; fix it and save again")


def _missing(template: str, channel: ChannelName, locale: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no template {template} for {channel} in locale {locale}: "
                         "create it with POST /v1/admin/notification-templates")


@router.get("", response_model=TemplateList, responses=errors(401, 403, 422, 429))
async def list_templates(
    _admin: AdminUser, edge: EdgeDep,
    template: Annotated[str | None, Query(pattern=TEMPLATE_PATTERN)] = None, channel: ChannelName | None = None,
) -> TemplateList:
    """Every template, or those of one name or channel."""
    async with edge.pool.acquire() as conn:
        rows = await _store.list(conn, template=template, channel=channel.value if channel else None)
    return TemplateList(items=[TemplateOut.of(t) for t in rows])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TemplateOut,
             responses=errors(400, 401, 403, 409, 413, 422, 429))
async def create_template(body: TemplateCreate, admin: AdminUser, edge: EdgeDep) -> TemplateOut:
    """A new template (for a new name, channel or locale); refused with 422 if it does not render."""
    async with edge.pool.acquire() as conn, conn.transaction():
        try:
            saved = await _store.create(conn, body.template, body.channel, body.locale, body.update())
        except TemplateError as exc:
            raise _refused(exc) from None
        if saved is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"template {body.template} for {body.channel} in "
                                f"locale {body.locale} exists: change it with PUT")
        await access.audit(conn, actor=admin.user_id, action="notification_template.create",
                           target=f"{body.template}/{body.channel}/{body.locale}")
    return TemplateOut.of(saved)


@router.put("/{template}/{channel}/{locale}", response_model=TemplateOut,
            responses=errors(400, 401, 403, 404, 413, 422, 429))
async def update_template(template: TemplateName, channel: ChannelName, locale: LocalePath, body: TemplateSources,
                          admin: AdminUser, edge: EdgeDep) -> TemplateOut:
    """Replace a template's sources; refused with 422 (and left unchanged) if they do not render."""
    async with edge.pool.acquire() as conn, conn.transaction():
        try:
            saved = await _store.update(conn, template, channel, locale, body.update())
        except TemplateError as exc:
            raise _refused(exc) from None
        if saved is None:
            raise _missing(template, channel, locale)
        await access.audit(conn, actor=admin.user_id, action="notification_template.update",
                           target=f"{template}/{channel}/{locale}")
    return TemplateOut.of(saved)


@router.post("/preview", response_model=Preview, responses=errors(400, 401, 403, 404, 413, 422, 429))
async def preview_template(body: PreviewRequest, _admin: AdminUser, edge: EdgeDep) -> Preview:
    """Render a stored template or an unsaved draft with sample data (or the params given); nothing is saved."""
    params = dict(body.params if body.params is not None else sample_params(body.template))
    try:
        if body.draft is not None:
            message = validate(body.template, body.channel, body.draft.update(), params)
        else:
            async with edge.pool.acquire() as conn:
                stored = await _store.get(conn, body.template, body.channel, body.locale)
            if stored is None:
                raise _missing(body.template, body.channel, body.locale)
            message = render_sources(stored, params)
    except TemplateError as exc:
        raise _refused(exc) from None
    return Preview(subject=message.subject, text=message.text, html=message.html, params=params)
