#!/usr/bin/env bash
# The drift gate as a CI step: record the target's real evaluation (when given), then fail the
# job when a task drifted from its registered prediction or a re-fit moved that prediction.
#
#   TASKLADDER_TRACKING_URI  the registry: sqlite:///path/mlflow.db or a tracking server URL
#   GATE_TARGET              target name, as registered with its prediction (required)
#   GATE_RESULTS             the target's evaluation: lm-eval results (file or folder) or a CSV
#   GATE_TOLERANCE           accuracy points, or "interval" (the prediction's); default 5
#   GATE_MAX_SHIFT           points a re-fit may move a registered prediction; default 2
#   GATE_JSON                where to write the verdict as JSON (optional)
#
# Exit status: 0 every task within tolerance, 1 drift, 2 usage error.
set -euo pipefail
if [[ -z "${GATE_TARGET:-}" ]]; then
    echo "ci/gate.sh: error: set GATE_TARGET to the target's registered name" >&2
    exit 2
fi
args=(gate --target "$GATE_TARGET" --tolerance "${GATE_TOLERANCE:-5}"
      --max-shift "${GATE_MAX_SHIFT:-2}")
if [[ -n "${GATE_RESULTS:-}" ]]; then args+=(--results "$GATE_RESULTS"); fi
if [[ -n "${GATE_JSON:-}" ]]; then args+=(--json "$GATE_JSON"); fi
exec "${TASKLADDER:-taskladder}" "${args[@]}"
