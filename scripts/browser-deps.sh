#!/usr/bin/env bash
# Install what tests/views/test_browser.py needs from Debian: Chromium (driven by Playwright through
# /usr/bin/chromium; Playwright's own browser download is not used) and a font for screenshots.
# Safe to re-run; does nothing when Chromium is already there. scripts/test.sh does the same.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
[ -x /usr/bin/chromium ] || apt_install chromium fonts-dejavu-core
/usr/bin/chromium --version
