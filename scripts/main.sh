#!/usr/bin/env bash
# Install tore_nb with OCR and tables (and Debian's tesseract-ocr when missing), then run the main
# job: incremental processing of the sample PDFs on the embedded default tiers (memory + disk).
# Run it twice: the second run serves every page from the cache, and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
command -v tesseract >/dev/null 2>&1 || apt_install tesseract-ocr
use_python "ocr,tables"
data="${TORE_NB_DATA:-data/pdfs}"
exec "$PY" -m tore_nb.cli process "$@" "$data"/dmca.pdf "$data"/dmca_v2.pdf "$data"/ca-warn-report.pdf \
  "$data"/ca-warn-report_v2.pdf "$data"/Seige_of_Vicksburg_Sample_OCR.pdf \
  "$data"/Seige_of_Vicksburg_Sample_OCR-crazyones-merged.pdf "$data"/dmca_scanned.pdf
