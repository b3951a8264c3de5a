#!/usr/bin/env bash
# Install everything the tests need (system packages + Python extras), then lint, type-check
# and run the test suite. Used by .ci/run; safe to re-run (a second run installs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

need=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
[ -x /usr/bin/chromium ] || apt_install chromium fonts-dejavu-core  # the browser test's Chromium
use_python "test"

echo "== ruff"; "$PY" -m ruff check tore_nb tests benchmarks
"$PY" -m ruff format --check tore_nb tests benchmarks
echo "== mypy"; "$PY" -m mypy
echo "== pytest"
"$PY" -m pytest -q "$@"
