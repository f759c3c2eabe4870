"""Templates: strict, sandboxed, autoescaped rendering; the save-time check; the seeded templates all
render with their sample parameters; the PostgreSQL store with its locale fallback."""

from __future__ import annotations

import pytest

from shopflow.notify.channels import ChannelName
from shopflow.notify.templates import (
    SAMPLE_PARAMS,
    TemplateError,
    TemplateStore,
    TemplateUpdate,
    render_sources,
    validate,
)

EMAIL = TemplateUpdate(subject="Order {{ order_id }}", text_body="Hello {{ name }}, order {{ order_id }}.",
                       html_body="<p>Hello {{ name }}, order {{ order_id }}.</p>")


def test_a_template_renders_subject_text_and_html_from_the_params():
    message = render_sources(EMAIL, {"order_id": "ord-7", "name": "Ann"})

    assert message.subject == "Order ord-7"
    assert message.text == "Hello Ann, order ord-7."
    assert message.html == "<p>Hello Ann, order ord-7.</p>"


def test_html_is_escaped_and_text_is_not():
    message = render_sources(EMAIL, {"order_id": "1", "name": "<script>x</script> & co"})

    assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in message.html
    assert "<script>x</script> & co" in message.text


def test_a_subject_is_one_line_whatever_the_params_hold():
    message = render_sources(EMAIL, {"order_id": "7\r\nBcc: eve@example.com", "name": "Ann"})

    assert message.subject == "Order 7 Bcc: eve@example.com"


def test_an_unknown_variable_is_an_error_naming_it_and_the_params_given():
    with pytest.raises(TemplateError, match=r"text: 'name' is undefined \(the parameters given are: order_id\)"):
        render_sources(EMAIL, {"order_id": "1"})


@pytest.mark.parametrize("source, why", [
    ("{{ order_id.__class__.__mro__ }}", "sandbox|undefined"),
    ("{{ ''.__class__ }}", "sandbox|undefined"),
    ("{% for x in %}", "syntax error on line 1"),
])
def test_the_sandbox_and_the_parser_refuse_what_a_template_must_not_do(source, why):
    with pytest.raises(TemplateError, match=why):
        render_sources(TemplateUpdate(subject="s", text_body=source), {"order_id": "1"})


def test_validate_refuses_an_email_template_without_html_or_subject_and_any_without_text():
    with pytest.raises(TemplateError, match="needs an HTML body"):
        validate("t", ChannelName.EMAIL, TemplateUpdate(subject="s", text_body="t"))
    with pytest.raises(TemplateError, match="needs a subject"):
        validate("t", ChannelName.EMAIL, TemplateUpdate(subject=" ", text_body="t", html_body="<p>t</p>"))
    with pytest.raises(TemplateError, match="text body is empty"):
        validate("t", ChannelName.SMS, TemplateUpdate(subject="", text_body="  "))


def test_validate_uses_the_templates_sample_params():
    update = TemplateUpdate(subject="", text_body="{{ sku }}: {{ available }} left")
    assert validate("low_stock", ChannelName.SMS, update).text == "SKU-TEE-M: 3 left"
    with pytest.raises(TemplateError, match="'reason' is undefined"):
        validate("order_confirmed", ChannelName.SMS, TemplateUpdate(subject="", text_body="{{ reason }}"))


# --- the store on the real PostgreSQL -----------------------------------------------------------------------

@pytest.fixture
def schema(pg_schema_factory) -> str:
    return pg_schema_factory("notifytpl")


@pytest.fixture
async def conn(stack, schema):
    from shopflow.db import connect, migrate

    connection = await connect(stack, schema=schema)
    await migrate(connection)
    yield connection
    await connection.close()


@pytest.mark.integration
async def test_every_seeded_template_renders_with_its_sample_params_in_every_channel(conn):
    store = TemplateStore()
    seeded = await store.list(conn)

    assert {(t.template, t.channel) for t in seeded} == {(name, ch) for name in SAMPLE_PARAMS for ch in ChannelName}
    for t in seeded:
        message = await store.render(conn, t.template, t.channel, "en", SAMPLE_PARAMS[t.template])
        assert message.text.strip() and (message.html is not None) == (t.channel == ChannelName.EMAIL), t
    cancelled = await store.render(conn, "order_cancelled", "EMAIL", "en", SAMPLE_PARAMS["order_cancelled"])
    assert "Reason: out of stock" in cancelled.text


@pytest.mark.integration
async def test_a_locale_falls_back_to_english_and_an_unknown_template_is_an_error(conn):
    store = TemplateStore()
    await store.create(conn, "welcome", ChannelName.SMS, "fr",
                       TemplateUpdate(subject="", text_body="Bienvenue, {{ display_name }} !"))

    assert (await store.render(conn, "welcome", "SMS", "fr", {"display_name": "Ada"})).text == "Bienvenue, Ada !"
    assert (await store.render(conn, "welcome", "SMS", "de", {"display_name": "Ada"})).text.startswith("Welcome")
    with pytest.raises(TemplateError, match="no template 'nope' for channel SMS"):
        await store.render(conn, "nope", "SMS", "en", {})


@pytest.mark.integration
async def test_a_broken_update_is_refused_and_the_stored_template_is_unchanged(conn):
    store = TemplateStore()
    before = await store.get(conn, "order_confirmed", "PUSH", "en")

    with pytest.raises(TemplateError, match="'customer' is undefined"):
        await store.update(conn, "order_confirmed", ChannelName.PUSH, "en",
                           TemplateUpdate(subject="Hi {{ customer }}", text_body="x"))

    assert await store.get(conn, "order_confirmed", "PUSH", "en") == before
