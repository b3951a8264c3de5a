#!/usr/bin/env bash
# Install what tests/views/test_browser.py needs from Debian: Chromium (driven by Playwright through
# /usr/bin/chromium; Playwright's own browser download is not used) and a font for screenshots.
# Safe to re-run; does nothing when Chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
pkgs=(chromium fonts-dejavu-core)
echo "installing ${pkgs[*]}"
$SUDO apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${pkgs[@]}" >/dev/null; }
/usr/bin/chromium --version
