#!/usr/bin/env bash
# Renders a keyfleet HTML report in headless Chromium, saves a screenshot and
# fails if the page logs console errors, references external resources or
# does not render.
#
# Usage: render_check.sh REPORT.html [OUT.png]
#   OUT.png defaults to REPORT.png next to the HTML file.
#   WINDOW=1280,2600 sets the viewport (the screenshot is the viewport).
#
# Needs Debian's `chromium` package (apt-get install -y chromium).
set -euo pipefail

if [[ $# -lt 1 || ! -f $1 ]]; then
  echo "usage: $0 REPORT.html [OUT.png]" >&2
  exit 2
fi
html=$(realpath "$1")
out=${2:-${html%.html}.png}
window=${WINDOW:-1280,2600}

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
  echo "chromium not found (apt-get install -y chromium)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(
  --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --hide-scrollbars --user-data-dir="$work/profile"
)
fail=0

# 1. Static checks: the page must be self-contained and script-free.
if grep -Eqi '<script|<link|<iframe|(src|href)="(https?:)?//|url\((https?:)?//' "$html"; then
  echo "FAIL: external resource or script in $html:" >&2
  grep -Eoi '<script[^>]*>|<link[^>]*>|<iframe[^>]*>|(src|href)="(https?:)?//[^"]*"|url\((https?:)?//[^)]*\)' "$html" | head -5 >&2
  fail=1
fi

# 2. Load the page with console logging; keep the rendered DOM.
timeout 90 "$browser" "${flags[@]}" --enable-logging=stderr --v=0 \
  --virtual-time-budget=2000 --dump-dom "file://$html" \
  >"$work/dom.html" 2>"$work/console.log" || {
  echo "FAIL: chromium exited with an error while loading the page" >&2
  tail -20 "$work/console.log" >&2
  fail=1
}
if grep -E 'CONSOLE' "$work/console.log" | grep -Eiq 'error|uncaught|failed'; then
  echo "FAIL: console errors:" >&2
  grep -E 'CONSOLE' "$work/console.log" >&2
  fail=1
fi
if ! grep -q '</html>' "$work/dom.html" || ! grep -q '<svg' "$work/dom.html"; then
  echo "FAIL: the rendered DOM is empty or has no chart" >&2
  fail=1
fi

# 3. Screenshot.
rm -f "$out"
timeout 90 "$browser" "${flags[@]}" --window-size="$window" \
  --screenshot="$out" "file://$html" >/dev/null 2>"$work/shot.log" || true
if [[ ! -s $out ]]; then
  echo "FAIL: no screenshot written" >&2
  tail -20 "$work/shot.log" >&2
  fail=1
else
  size=$(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); print("%dx%d" % struct.unpack(">II", d[16:24]))' "$out")
  echo "screenshot: $out ($size)"
fi

console_lines=$(grep -c 'CONSOLE' "$work/console.log" || true)
echo "console messages: $console_lines"
if [[ $fail -ne 0 ]]; then
  echo "render check FAILED" >&2
  exit 1
fi
echo "render check passed"
