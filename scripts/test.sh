#!/usr/bin/env bash
# Install everything the tests need (system packages + Python extras), then lint, type-check
# and run the test suite. Used by .ci/run; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need[@]}" >/dev/null; }
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
bash scripts/browser-deps.sh  # Debian's Chromium for the browser test

echo "== ruff"; python3 -m ruff check tore_nb tests benchmarks
python3 -m ruff format --check tore_nb tests benchmarks
echo "== mypy"; python3 -m mypy
echo "== pytest"
python3 -m pytest -q "$@"
