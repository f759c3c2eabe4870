"""Who gets in, in a real browser: an ops user signs in through the form and sees the overview with no
console error; a customer account and an anonymous visitor are refused; an action without its CSRF
token is refused (the HTTP-level cases are tests/console/test_auth.py's)."""

from __future__ import annotations

import pytest
from console_ui import ConsoleUI, off_loop

pytestmark = pytest.mark.integration


def test_an_ops_user_signs_in_through_the_form_and_the_overview_loads_with_no_console_error(
        ops_user_factory, ui: ConsoleUI):
    # Given an ops user (granted the ops role with shopflow.access) at the sign-in form
    user = off_loop(ops_user_factory, "ops")
    ui.goto("/login")
    ui.screenshot("login")

    # When they sign in through the form, asked for by the overview
    ui.sign_in(user.email, user.password)

    # Then the overview shows every server of the stack up, and nothing went wrong in the page
    page = ui.page
    assert page.url == ui.url("/")
    assert page.get_by_test_id("page-overview").is_visible()
    servers = page.get_by_test_id("server")
    assert servers.count() >= 7
    assert {servers.nth(i).get_attribute("data-state") for i in range(servers.count())} == {"up"}
    assert page.get_by_test_id("headline").is_visible()
    assert page.get_by_test_id("nav").is_visible()
    ui.screenshot("overview")


def test_a_customer_account_is_refused_every_page(ops_user_factory, ui: ConsoleUI):
    customer = off_loop(ops_user_factory, "customer")

    ui.goto("/login")
    ui.page.get_by_test_id("login-email").fill(customer.email)
    ui.page.get_by_test_id("login-password").fill(customer.password)
    ui.expect_refused("/")  # where the form sends a signed-in user
    with ui.page.expect_navigation():
        ui.page.get_by_test_id("login-submit").click()

    for path in ("/", "/groups", "/connect", "/dead-letters", "/saga", "/shop"):
        ui.goto(path, status=403)
        assert "ops.view" in ui.page.inner_text("main"), path
        assert ui.page.get_by_test_id(f"page-{path.strip('/') or 'overview'}").count() == 0  # none of the page
        assert ui.page.get_by_test_id("nav").count() == 0, path  # nor the console's areas
    ui.screenshot("refused")


def test_an_anonymous_visitor_is_sent_to_the_sign_in_form_and_a_script_gets_401(ui: ConsoleUI):
    for path in ("/", "/groups", "/connect", "/dead-letters/order-commands.dlq", "/saga", "/shop"):
        ui.goto(path)
        assert ui.page.url.startswith(ui.url("/login?next=")), (path, ui.page.url)
        assert ui.page.get_by_test_id("login-form").is_visible()
    answer = ui.page.request.get(ui.url("/connect"), headers={"Accept": "application/json"})
    assert answer.status == 401 and "not signed in" in answer.json()["detail"]


def test_an_action_without_its_csrf_token_is_refused(ops_user_factory, ui: ConsoleUI):
    # Given a signed-in ops user
    user = off_loop(ops_user_factory, "ops")
    ui.sign_in(user.email, user.password)

    # When the sign-out form is posted with its hidden token removed
    ui.page.evaluate("document.querySelector('form.signout input[name=csrf_token]').remove()")
    ui.expect_refused("/logout")
    with ui.page.expect_navigation() as sent:
        ui.page.get_by_test_id("logout").click()

    # Then it is refused with what to do, and the session lives on
    refused = sent.value
    assert refused is not None and refused.status == 403
    assert "CSRF" in ui.page.inner_text("main")
    ui.goto("/")
    assert ui.page.get_by_test_id("whoami").inner_text() == user.email

    # And an action posted by a script with the session's cookie but no token is refused too
    posted = ui.page.request.post(ui.url("/connect/no-such-connector/pause"), headers={"Accept": "application/json"})
    assert posted.status == 403 and "CSRF" in posted.json()["detail"]

    # While the same sign-out form, token in place, signs out
    with ui.page.expect_navigation():
        ui.page.get_by_test_id("logout").click()
    assert ui.page.url == ui.url("/login")
    ui.goto("/groups")
    assert ui.page.url.startswith(ui.url("/login?next="))
