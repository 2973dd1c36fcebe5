#!/usr/bin/env bash
# The long soak of test/e2e/agent/soak.test.ts (the normal suite runs it for 25 s):
#   scripts/soak.sh [minutes, default 10] [report file, default $TMPDIR/kelid-soak-<time>.json]
# Builds the agent, runs the mixed load (list, status, batch signatures with CLI consents, a token
# plugged and unplugged every 5 s) and writes the JSON summary (counts, errors, RSS samples and slope).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
report="${2:-${TMPDIR:-/tmp}/kelid-soak-$(date -u +%Y%m%dT%H%M%SZ).json}"
npm run build
echo "soak: ${minutes} min, report: ${report}"
KELID_SOAK_SECONDS=$((minutes * 60)) KELID_SOAK_REPORT="$(realpath -m "$report")" \
  npx vitest run test/e2e/agent/soak.test.ts
