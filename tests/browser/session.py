"""What the browser scripts share: Debian's Chromium launched by Playwright
(no browser download), a page that records its console errors, and the
dashboard's login with an API key."""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = os.environ.get("KEYFLEET_CHROMIUM", "/usr/bin/chromium")


def launch(p: Any) -> Any:
    """Chromium; as root in a container it needs --no-sandbox (the pages are
    local and trusted)."""
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


def page_with_errors(browser: Any, errors: list[str]) -> Any:
    """A 1280 x 900 page whose console errors are appended to `errors`."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page


def log_in(page: Any, base: str, api_key: str, run_id: str, errors: list[str]) -> None:
    """Opens the run, logs in on the form it answers with, and forgets the
    console errors so far (the login page is a 401, as it should be)."""
    page.goto(f"{base}/?run={run_id}")
    page.fill("#api_key", api_key)
    with page.expect_navigation():
        page.click("#login-submit")
    errors.clear()
