"""A browser page on the ops console for the browser tests (fixtures in conftest.py): ``ConsoleUI``, the
steps every test takes (sign in through the form, open a page asserting its status, reload until a
check holds, take a screenshot) and ``Trouble``, what went wrong in the page beyond what a test looks
at: console errors, uncaught script errors, the page's own assets that failed. ``off_loop`` runs code
that needs ``asyncio.run`` while a page is open (playwright's sync API marks its loop as running in
this thread). ``from console_ui import ...`` (this folder is on ``sys.path``, as for tests/).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import ConsoleMessage, Page, Request, Response
from polling import eventually

# What chromium logs for a document answered with an error status; expected where a test asks for one.
LOAD_FAILED = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")

T = TypeVar("T")


def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread with no running event loop (see the module's docstring)."""
    with ThreadPoolExecutor(1, thread_name_prefix="off-loop") as pool:
        return pool.submit(fn, *args, **kwargs).result()


@dataclass
class Trouble:
    """What went wrong in the page, beyond what the test looks at."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_assets: dict[str, str] = field(default_factory=dict)  # URL: why (its status, or no answer)
    # Documents the test asked to be refused (their URL): chromium's console line for them is expected.
    refused_documents: set[str] = field(default_factory=set)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if LOAD_FAILED.search(message.text) and url in self.refused_documents:
            return
        self.console_errors.append(f"{message.text} ({url})")

    def on_response(self, response: Response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.failed_assets.setdefault(response.url, f"{response.status} {response.request.resource_type}")

    def on_request_failed(self, request: Request) -> None:
        if request.resource_type != "document":
            self.failed_assets.setdefault(request.url, f"{request.failure} {request.resource_type}")

    def problems(self) -> list[str]:
        return ([f"console error: {e}" for e in self.console_errors] + [f"page error: {e}" for e in self.page_errors]
                + [f"asset failed: {why} {url}" for url, why in self.failed_assets.items()])


class ConsoleUI:
    """One test's browser page on the console, and the steps every test takes with it."""

    def __init__(self, page: Page, base_url: str, shots: list[Path]):
        self.page, self.base_url, self.shots = page, base_url, shots
        self.trouble = Trouble()
        page.on("console", self.trouble.on_console)
        page.on("pageerror", lambda error: self.trouble.page_errors.append(str(error)))
        page.on("response", self.trouble.on_response)
        page.on("requestfailed", self.trouble.on_request_failed)

    def url(self, path: str) -> str:
        return self.base_url + path

    def expect_refused(self, path: str) -> None:
        """``path`` is to be answered with an error status: chromium's console line for it is no problem."""
        self.trouble.refused_documents.add(self.url(path))

    def goto(self, path: str, status: int = 200) -> Response:
        """Open ``path`` (redirects followed) and assert the final answer's status."""
        if status >= 400:
            self.expect_refused(path)
        response = self.page.goto(self.url(path), wait_until="load")
        assert response is not None, f"no answer for {path}"
        assert response.status == status, f"{path}: {response.status}, not {status}: {self.page.inner_text('main')}"
        return response

    def sign_in(self, email: str, password: str, path: str = "/") -> None:
        """Through the login form, as a person does: open ``path``, be sent to /login, sign in, come back."""
        self.goto(path)
        assert self.page.url.startswith(self.url("/login")), f"not sent to the sign-in form: {self.page.url}"
        self.page.get_by_test_id("login-email").fill(email)
        self.page.get_by_test_id("login-password").fill(password)
        with self.page.expect_navigation(wait_until="load"):
            self.page.get_by_test_id("login-submit").click()
        assert self.page.get_by_test_id("whoami").inner_text() == email, self.page.inner_text("main")

    def reload_until(self, path: str, check: Callable[[Page], T], timeout_s: float, what: str,
                     interval_s: float = 1.0) -> T:
        """Reload ``path`` until ``check(page)`` holds (asserts pass, answer truthy); its answer."""

        def attempt() -> T:
            self.goto(path)
            return check(self.page)

        return eventually(attempt, timeout_s=timeout_s, interval_s=interval_s, what=what)

    def screenshot(self, name: str) -> Path:
        """The viewport as a person sees it, saved as ``<name>.png`` in the artifacts (and the README's) folder."""
        image = self.page.screenshot(type="png", animations="disabled")
        for folder in self.shots:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.png").write_bytes(image)
        return self.shots[0] / f"{name}.png"
