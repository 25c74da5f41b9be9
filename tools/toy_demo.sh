#!/usr/bin/env bash
# The main job on the built-in toy AVA data: generate it if absent, train
# EVAD with `mim train`, test the best checkpoint with `mim test`, and print
# `frame-mAP@0.5: <value>` from the test run as the last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
MIM="$VENV/bin/mim"
CONFIG="${CONFIG:-configs/evad_toy_ava.py}"
WORK_DIR="${WORK_DIR:-work_dirs/evad_toy_ava}"
cd "$ROOT"

if [ ! -f data/toy_ava/annotations/train.csv ]; then
    echo "[evad_mm demo] generating toy AVA data in data/toy_ava"
    "$PY" tools/make_toy_ava.py data/toy_ava
fi

echo "[evad_mm demo] training: mim train mmaction $CONFIG --work-dir $WORK_DIR"
"$MIM" train mmaction "$CONFIG" --work-dir "$WORK_DIR" "$@"

BEST="$(ls -t "$WORK_DIR"/best_*.pth 2>/dev/null | head -n 1 || true)"
if [ -z "$BEST" ]; then
    BEST="$WORK_DIR/$(cat "$WORK_DIR/last_checkpoint" | xargs basename)"
fi
echo "[evad_mm demo] testing: mim test mmaction $CONFIG --checkpoint $BEST"
LOG="$(mktemp)"
"$MIM" test mmaction "$CONFIG" --checkpoint "$BEST" --work-dir "$WORK_DIR" 2>&1 | tee "$LOG"
MAP="$(grep -oE 'mAP/overall: [0-9.]+' "$LOG" | tail -n 1 | awk '{print $2}')"
rm -f "$LOG"
if [ -z "$MAP" ]; then
    echo "[evad_mm demo] the test run printed no mAP/overall" >&2
    exit 1
fi
echo "frame-mAP@0.5: $MAP"
