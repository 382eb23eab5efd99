"""Where a still-used key is used from, as the dashboard shows it, in a real
browser (Debian's Chromium driven by Playwright): log in with an API key,
open a run filtered to one account, and read the places of use listed under
each key.

Usage: key_uses.py BASE_URL API_KEY RUN_ID ACCOUNT

Prints one JSON object: the text of every `ul.used-from li` on the page and
the console errors the page logged. The caller (cli/tests/it/where_used.rs)
asserts on it.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import sync_playwright
from session import launch, log_in, page_with_errors


def main() -> int:
    base, api_key, run_id, account = sys.argv[1:5]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = page_with_errors(browser, errors)
        log_in(page, base, api_key, run_id, errors)
        page.goto(f"{base}/?run={run_id}&account={account}")
        places = page.eval_on_selector_all(
            "tr[data-account] ul.used-from li", "els => els.map(e => e.innerText)"
        )
        print(json.dumps({"places": places, "errors": errors}))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
