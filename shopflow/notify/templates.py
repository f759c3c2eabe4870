"""Message templates: stored in PostgreSQL per (template, channel, locale), rendered by Jinja2 in a sandbox.

A template is three Jinja2 sources, subject, text and HTML (HTML for email only), filled from the
request's `params` (a map of strings). Rendering is strict: an unknown variable is an error
(StrictUndefined), the sandbox refuses attribute tricks, and the HTML body is autoescaped, so a
customer-supplied value (a display name) can never inject markup. A template that does not render
with its sample parameters is refused when it is saved (`validate`), so sending never meets a broken
template it could have known about. Seeded templates live in migration 0011 and list their
parameters in SAMPLE_PARAMS below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shopflow.notify.channels import ChannelName, RenderedMessage

__all__ = [
    "SAMPLE_PARAMS",
    "StoredTemplate",
    "TemplateError",
    "TemplateStore",
    "TemplateUpdate",
    "render_sources",
    "validate",
]

DEFAULT_LOCALE = "en"

# The parameters each seeded template uses, with sample values: the contract with the agent that
# fills NotificationRequested.params, and the sample data of a preview and of the save-time check.
SAMPLE_PARAMS: Mapping[str, Mapping[str, str]] = {
    "order_confirmed": {"order_id": "ord-1042", "total": "59.90"},
    "order_cancelled": {"order_id": "ord-1042", "reason": "out of stock"},
    "order_refunded": {"order_id": "ord-1042", "amount": "59.90"},
    "welcome": {"display_name": "Ada"},
    "cart_expiring": {"minutes_left": "15"},
    "low_stock": {"sku": "SKU-TEE-M", "available": "3", "threshold": "5"},
}
# A template unknown to SAMPLE_PARAMS (an admin's new one) is checked with these.
GENERIC_SAMPLE: Mapping[str, str] = {"order_id": "ord-1042", "display_name": "Ada"}


class TemplateError(Exception):
    """A template cannot be rendered: unknown template, unknown variable, bad syntax, sandbox refusal."""


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    """One row of notification_templates."""

    template: str
    channel: ChannelName
    locale: str
    subject: str
    text_body: str
    html_body: str | None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TemplateUpdate:
    """The sources an admin saves for one (template, channel, locale)."""

    subject: str
    text_body: str
    html_body: str | None = None


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=autoescape,
                                         keep_trailing_newline=False)


_PLAIN = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


def _render_one(env: ImmutableSandboxedEnvironment, part: str, source: str, params: Mapping[str, Any]) -> str:
    try:
        return env.from_string(source).render(**params)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{part}: syntax error on line {exc.lineno}: {exc.message}") from exc
    except UndefinedError as exc:
        raise TemplateError(f"{part}: {exc.message} (the parameters given are: "
                            f"{', '.join(sorted(params)) or 'none'})") from exc
    except SecurityError as exc:
        raise TemplateError(f"{part}: refused by the sandbox: {exc}") from exc
    except Exception as exc:  # a filter or expression failing on the given values
        raise TemplateError(f"{part}: {type(exc).__name__}: {exc}") from exc


def render_sources(source: TemplateUpdate | StoredTemplate, params: Mapping[str, str]) -> RenderedMessage:
    """Render subject, text and HTML of one template with `params`; TemplateError says which part failed."""
    # One line, whatever the params hold: a line break in a subject would be a header injection.
    subject = " ".join(_render_one(_PLAIN, "subject", source.subject, params).split())
    body = _render_one(_PLAIN, "text", source.text_body, params)
    html = _render_one(_HTML, "html", source.html_body, params) if source.html_body else None
    return RenderedMessage(subject=subject, text=body, html=html)


def sample_params(template: str) -> Mapping[str, str]:
    return SAMPLE_PARAMS.get(template, GENERIC_SAMPLE)


def validate(template: str, channel: ChannelName, update: TemplateUpdate,
             params: Mapping[str, str] | None = None) -> RenderedMessage:
    """Render with sample data (the given `params`, else the template's samples); raise TemplateError.

    Email needs an HTML body (messages are multipart text + HTML); every channel needs a text body."""
    if not update.text_body.strip():
        raise TemplateError("text: the text body is empty")
    if channel == ChannelName.EMAIL and not (update.html_body or "").strip():
        raise TemplateError("html: an email template needs an HTML body (emails are text + HTML)")
    if channel == ChannelName.EMAIL and not update.subject.strip():
        raise TemplateError("subject: an email template needs a subject")
    return render_sources(update, params if params is not None else sample_params(template))


_COLUMNS = "template, channel, locale, subject, text_body, html_body, updated_at"


def _row(record: asyncpg.Record) -> StoredTemplate:
    return StoredTemplate(template=record["template"], channel=ChannelName(record["channel"]),
                          locale=record["locale"], subject=record["subject"], text_body=record["text_body"],
                          html_body=record["html_body"], updated_at=record["updated_at"])


class TemplateStore:
    """notification_templates in PostgreSQL: read, render, list, save (validated)."""

    def __init__(self, default_locale: str = DEFAULT_LOCALE) -> None:
        self.default_locale = default_locale

    async def get(self, conn: asyncpg.Connection, template: str, channel: str,
                  locale: str) -> StoredTemplate | None:
        """The template in `locale`, else in the default locale, else None."""
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM notification_templates WHERE template = $1 AND channel = $2 "
            "AND locale = ANY($3::text[]) ORDER BY locale = $4 DESC LIMIT 1",
            template, str(channel), [locale, self.default_locale], locale)
        return _row(record) if record else None

    async def render(self, conn: asyncpg.Connection, template: str, channel: str, locale: str,
                     params: Mapping[str, str]) -> RenderedMessage:
        """Render the stored template; TemplateError when it is unknown or does not render."""
        stored = await self.get(conn, template, channel, locale)
        if stored is None:
            raise TemplateError(f"no template {template!r} for channel {channel} in locale {locale!r} "
                                f"or {self.default_locale!r}: create it with POST /v1/admin/notification-templates")
        return render_sources(stored, params)

    async def list(self, conn: asyncpg.Connection, *, template: str | None = None,
                   channel: str | None = None) -> list[StoredTemplate]:
        records = await conn.fetch(
            f"SELECT {_COLUMNS} FROM notification_templates "
            "WHERE ($1::text IS NULL OR template = $1) AND ($2::text IS NULL OR channel = $2) "
            "ORDER BY template, channel, locale", template, channel)
        return [_row(r) for r in records]

    async def create(self, conn: asyncpg.Connection, template: str, channel: ChannelName, locale: str,
                     update: TemplateUpdate) -> StoredTemplate | None:
        """Insert a validated template; None when (template, channel, locale) exists already."""
        validate(template, channel, update)
        record = await conn.fetchrow(
            "INSERT INTO notification_templates (template, channel, locale, subject, text_body, html_body) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING "
            f"RETURNING {_COLUMNS}",
            template, channel.value, locale, update.subject, update.text_body, update.html_body)
        return _row(record) if record else None

    async def update(self, conn: asyncpg.Connection, template: str, channel: ChannelName, locale: str,
                     update: TemplateUpdate) -> StoredTemplate | None:
        """Replace a validated template's sources; None when it does not exist."""
        validate(template, channel, update)
        record = await conn.fetchrow(
            "UPDATE notification_templates SET subject = $4, text_body = $5, html_body = $6, updated_at = now() "
            f"WHERE template = $1 AND channel = $2 AND locale = $3 RETURNING {_COLUMNS}",
            template, channel.value, locale, update.subject, update.text_body, update.html_body)
        return _row(record) if record else None
