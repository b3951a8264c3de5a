#!/usr/bin/env bash
# Install tore_nb with OCR and tables (and Debian's tesseract-ocr when missing), then run the main
# job: incremental processing of the sample PDFs on the embedded default tiers (memory + disk).
# Run it twice: the second run serves every page from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tesseract >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q tesseract-ocr >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q tesseract-ocr >/dev/null; }
fi
python3 -m pip install -q --disable-pip-version-check -e ".[ocr,tables]"
data="${TORE_NB_DATA:-../shared/data/pdfs}"
exec tore-nb process "$@" "$data"/dmca.pdf "$data"/dmca_v2.pdf "$data"/ca-warn-report.pdf \
  "$data"/ca-warn-report_v2.pdf "$data"/Seige_of_Vicksburg_Sample_OCR.pdf \
  "$data"/Seige_of_Vicksburg_Sample_OCR-crazyones-merged.pdf "$data"/dmca_scanned.pdf
