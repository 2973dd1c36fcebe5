#!/usr/bin/env bash
# README's test command (`npm test`): installs what is missing, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec npx vitest run "$@"
