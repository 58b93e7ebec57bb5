"""Real headless Chromium (Debian's `chromium` package) driven by playwright's Python package.

`playwright install` cannot download browsers here, so playwright launches the system
chromium. Without it (or without playwright) these tests skip saying why, except in CI
(CI=true, as `.ci/run` runs), where a missing browser fails the run: `make test` installs
chromium first when it can (`make browser`). Screenshots go to test-output/browser/ under
the project (DEVMETRICS_TEST_OUTPUT moves it); the path is printed by each test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.services.conftest import stack  # noqa: F401 (the four services on a seeded database)

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_executable() -> str:
    """The system chromium; skips (fails in CI) naming what is missing."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright's Python package is not installed (make install)"
    executable = shutil.which("chromium")
    if executable is None:
        problem = "Debian's chromium is not installed (`make browser` installs it, as root)"
    if problem is not None:
        if in_ci():
            pytest.fail(f"browser tests cannot run in CI: {problem}", pytrace=False)
        pytest.skip(problem)
    return executable


@pytest.fixture(scope="session")
def browser():
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = Path(os.environ.get("DEVMETRICS_TEST_OUTPUT") or ROOT / "test-output") / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser):
    """A fresh browser profile (no cookies) with every console error and uncaught exception
    collected in `page.problems`."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.problems = []
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and page.problems.append(f"console: {message.text} ({message.location.get('url')})")
        ),
    )
    page.on("pageerror", lambda error: page.problems.append(f"uncaught: {error}"))
    yield page
    context.close()
