"""The ops console in a real browser: Debian's chromium driven by playwright-python, on the console the
session started (``ops_console`` of tests/console/conftest.py) and the real stack.

- ``ui``: a fresh chromium (1366x768, a laptop screen) on the console for one test, as
  ``console_ui.ConsoleUI``. It records the page's console errors, uncaught script errors and its own
  assets that failed (4xx/5xx, or no answer); a test that passed with any of them fails
  (``pytest_runtest_call`` below). While it is open, ``asyncio.run`` goes through ``console_ui.off_loop``.

Why a browser per test, not per session: playwright keeps its loop marked running in the main thread
for as long as it lives; the suite's asyncio tests (pytest-asyncio, a session loop) and every
``asyncio.run`` after a browser test would refuse to start. Started and stopped per test (~1.3 s), it
leaves nothing behind, and it is torn down before the fixtures requested before it.

Screenshots go to ``<home>/artifacts/console/`` (``.shopflow/artifacts/console/``), and also to the
folder named by ``SHOPFLOW_SCREENSHOTS`` (``SHOPFLOW_SCREENSHOTS=docs/console``: the README's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_ui import ConsoleUI
from playwright.sync_api import Playwright, sync_playwright

from shopflow.settings import PROJECT_ROOT, Settings

CHROMIUM = Path(os.environ.get("SHOPFLOW_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1366, "height": 768}
# Headless chromium in a container: no sandbox namespaces, a small /dev/shm, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def shot_folders(settings: Settings) -> list[Path]:
    folders = [settings.home / "artifacts" / "console"]
    if extra := os.environ.get("SHOPFLOW_SCREENSHOTS"):
        path = Path(extra)
        folders.append(path if path.is_absolute() else PROJECT_ROOT / path)
    return folders


@pytest.fixture
def chromium() -> Iterator[Playwright]:
    """playwright on Debian's chromium launched by its path (playwright's own browser download fails here)."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `make system-test` installs Debian's "
                    f"(deploy/install-system.sh test), or set SHOPFLOW_CHROMIUM to one", pytrace=False)
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def ui(chromium: Playwright, ops_settings: Settings, ops_console: str) -> Iterator[ConsoleUI]:
    """A fresh browser on the console (no cookie yet); request it last, so it closes before the others."""
    browser = chromium.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    try:
        yield ConsoleUI(context.new_page(), ops_console, shot_folders(ops_settings))
    finally:
        context.close()
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A browser test that passed fails still when its page logged an error or an asset of its failed."""
    result = yield
    ui = getattr(item, "funcargs", {}).get("ui")
    if isinstance(ui, ConsoleUI) and (problems := ui.trouble.problems()):
        pytest.fail("the page had problems:\n" + "\n".join(problems), pytrace=False)
    return result
