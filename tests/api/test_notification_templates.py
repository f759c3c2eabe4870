"""Admin routes for notification templates: list the seeded ones, preview with sample data, create and
update, and the refusal at save time of a template that does not render (422 saying why)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration

BASE = "/v1/admin/notification-templates"


async def test_only_admins_reach_the_templates(client, new_account):
    customer = await new_account()

    assert (await client.get(BASE)).status_code == 401
    assert (await client.get(BASE, headers=customer.auth)).status_code == 403


async def test_the_seeded_templates_are_listed_and_preview_with_sample_data(client, new_account):
    admin = await new_account("admin")

    listed = await client.get(BASE, params={"template": "order_cancelled"}, headers=admin.auth)
    assert listed.status_code == 200, listed.text
    assert {t["channel"] for t in listed.json()["items"]} == {"EMAIL", "SMS", "PUSH"}

    preview = await client.post(f"{BASE}/preview", headers=admin.auth,
                                json={"template": "order_cancelled", "channel": "EMAIL"})
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["subject"] == "Your order ord-1042 was cancelled"
    assert "Reason: out of stock." in body["text"] and "<strong>ord-1042</strong>" in body["html"]
    assert body["params"] == {"order_id": "ord-1042", "reason": "out of stock"}


async def test_a_draft_previews_with_the_params_given_escaped_in_html(client, new_account):
    admin = await new_account("admin")
    draft = {"subject": "Hi {{ display_name }}", "text_body": "Hi {{ display_name }}",
             "html_body": "<p>Hi {{ display_name }}</p>"}

    preview = await client.post(f"{BASE}/preview", headers=admin.auth, json={
        "template": "welcome", "channel": "EMAIL", "draft": draft, "params": {"display_name": "<b>Eve</b>"}})

    assert preview.status_code == 200, preview.text
    assert preview.json()["html"] == "<p>Hi &lt;b&gt;Eve&lt;/b&gt;</p>"
    assert preview.json()["text"] == "Hi <b>Eve</b>"


async def test_a_template_is_created_then_updated_and_a_broken_one_is_refused_saying_why(client, new_account):
    admin = await new_account("admin")
    name = f"promo_{uuid.uuid4().hex[:8]}"
    good = {"subject": "Sale for {{ display_name }}", "text_body": "Hello {{ display_name }}",
            "html_body": "<p>Hello {{ display_name }}</p>"}

    # A template using a variable its samples do not have is refused at save time, not at send time
    broken = await client.post(BASE, headers=admin.auth, json={
        "template": name, "channel": "EMAIL", **good, "text_body": "Hello {{ first_name }}"})
    assert broken.status_code == 422, broken.text
    assert "text: 'first_name' is undefined" in broken.json()["detail"]

    created = await client.post(BASE, headers=admin.auth, json={"template": name, "channel": "EMAIL", **good})
    assert created.status_code == 201, created.text
    again = await client.post(BASE, headers=admin.auth, json={"template": name, "channel": "EMAIL", **good})
    assert again.status_code == 409

    # An update with bad syntax is refused and leaves the stored template as it was
    refused = await client.put(f"{BASE}/{name}/EMAIL/en", headers=admin.auth,
                               json={**good, "html_body": "<p>{% if %}</p>"})
    assert refused.status_code == 422 and "html: syntax error" in refused.json()["detail"]
    updated = await client.put(f"{BASE}/{name}/EMAIL/en", headers=admin.auth,
                               json={**good, "subject": "Only for you, {{ display_name }}"})
    assert updated.status_code == 200, updated.text

    [stored] = (await client.get(BASE, params={"template": name}, headers=admin.auth)).json()["items"]
    assert stored["subject"] == "Only for you, {{ display_name }}" and stored["html_body"] == good["html_body"]
    missing = await client.put(f"{BASE}/{name}/SMS/en", headers=admin.auth, json={"text_body": "x"})
    assert missing.status_code == 404
