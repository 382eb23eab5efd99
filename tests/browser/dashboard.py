"""The security team's dashboard in a real browser (Debian's Chromium driven by
Playwright, no browser download): log in with an API key, open a run, filter to
one account with the form, and save a screenshot.

Usage: dashboard.py BASE_URL API_KEY RUN_ID ACCOUNT SCREENSHOT.png

Prints one JSON object: the URL after filtering, the account of every user row
shown, the accounts the form offered, and the console errors the page logged.
The caller (cli/tests/it/dashboard.rs) asserts on it.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import sync_playwright
from session import launch, log_in, page_with_errors


def main() -> int:
    base, api_key, run_id, account, shot = sys.argv[1:6]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = page_with_errors(browser, errors)
        log_in(page, base, api_key, run_id, errors)
        page.goto(f"{base}/?run={run_id}")
        offered = page.eval_on_selector_all(
            "select#account option", "els => els.map(e => e.value).filter(v => v)"
        )
        page.select_option("select#account", account)
        with page.expect_navigation():
            page.click("button#apply")
        rows = page.eval_on_selector_all(
            "tr[data-account]", "els => els.map(e => e.getAttribute('data-account'))"
        )
        page.screenshot(path=shot, full_page=True)
        print(json.dumps({"url": page.url, "rows": rows, "offered": offered, "errors": errors}))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
