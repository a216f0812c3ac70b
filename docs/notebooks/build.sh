#!/usr/bin/env bash
# Build the tour's notebooks from their py:percent sources: docs/notebooks/build.sh [OUTPUT_DIR]
# (default: beside the sources). Needs the [notebooks] extra: pip install -e ".[notebooks]".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
for source in "$here"/[0-9][0-9]_*.py; do
    name="$(basename "$source" .py)"
    jupytext --quiet --to ipynb --output "$out/$name.ipynb" "$source"
done
echo "built $(ls "$out"/[0-9][0-9]_*.ipynb | wc -l) notebooks in $out"
