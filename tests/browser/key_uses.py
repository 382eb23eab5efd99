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
import os
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("KEYFLEET_CHROMIUM", "/usr/bin/chromium")


def main() -> int:
    base, api_key, run_id, account = sys.argv[1:5]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            # As root in a container Chromium needs --no-sandbox; the page is
            # local and trusted.
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/?run={run_id}")
        page.fill("#api_key", api_key)
        with page.expect_navigation():
            page.click("#login-submit")
        # The login page itself was a 401; count the errors after it.
        errors.clear()
        page.goto(f"{base}/?run={run_id}&account={account}")
        places = page.eval_on_selector_all(
            "tr[data-account] ul.used-from li", "els => els.map(e => e.innerText)"
        )
        print(json.dumps({"places": places, "errors": errors}))
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
