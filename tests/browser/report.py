"""A large run's HTML report in a real browser (Debian's Chromium driven by
Playwright, no browser download): open the summary page from disk, follow an
account's link to its page, and back.

Usage: report.py SUMMARY.html ACCOUNT

Prints one JSON object: how many account pages the summary links, the URL
and heading of the account page reached by clicking ACCOUNT's link, how
many user rows it shows, the URL the way back leads to, and the console
errors the pages logged. The caller (coordinator/tests/it/html_report.rs)
asserts on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright
from session import launch, page_with_errors


def main() -> int:
    summary, account = sys.argv[1:3]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = page_with_errors(browser, errors)
        page.goto(Path(summary).resolve().as_uri())
        linked = page.eval_on_selector_all(
            "#accounts-h ~ table a[href^='accounts/']", "els => els.length"
        )
        with page.expect_navigation():
            page.click(f"#accounts-h ~ table a[href='accounts/{account}.html']")
        reached = page.url
        heading = page.inner_text("h1")
        rows = page.eval_on_selector_all("#users-h ~ table tbody tr", "els => els.length")
        with page.expect_navigation():
            page.click("#summary-link")
        back = page.url
        print(json.dumps({
            "linked": linked,
            "reached": reached,
            "heading": heading,
            "rows": rows,
            "back": back,
            "errors": errors,
        }))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
