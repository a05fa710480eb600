#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium and saves a screenshot,
# offline (no network, no first-run checks). Not part of CI.
#
#   apt-get install -y chromium            # Debian's package
#   scripts/report/screenshot.sh out/demo/report.html report.png [WIDTH HEIGHT]
#
# The page is self-contained (inline CSS and SVG, no script), so what the
# screenshot shows is the whole report as a reader's browser draws it; a tall
# HEIGHT (default 12000; the demo's page is about 10300 px at 1320 wide) captures
# the page below the fold too.
set -euo pipefail
page=${1:?usage: screenshot.sh REPORT.html OUT.png [WIDTH HEIGHT]}
png=${2:?usage: screenshot.sh REPORT.html OUT.png [WIDTH HEIGHT]}
width=${3:-1320}
height=${4:-12000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium: apt-get install -y chromium" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --no-first-run --user-data-dir="$profile" --hide-scrollbars --window-size="$width,$height" \
  --screenshot="$(realpath -m "$png")" "file://$(realpath "$page")" 2>/dev/null
test -s "$png" || { echo "no screenshot written to $png" >&2; exit 1; }
echo "screenshot: $png (${width}x${height})"
