#!/usr/bin/env bash
# Creates (once) a SoftHSM token directory with an empty, uninitialized demo slot under $1
# (default ./.kelid-demo/softhsm) and prints the SOFTHSM2_CONF path. Never touches the system's
# tokens. Used by `npm start` (scripts/demo.sh) and docker/Dockerfile.
#   scripts/softhsm-demo-token.sh [dir] [--init <label>]   (--init: initialize it with demo PINs)
set -euo pipefail
dir="${1:-.kelid-demo/softhsm}"
mkdir -p "$dir/tokens"
dir="$(cd "$dir" && pwd)"
conf="$dir/softhsm2.conf"
if [ ! -f "$conf" ]; then
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = true\n' "$dir" > "$conf"
fi
if [ "${2:-}" = "--init" ]; then
  label="${3:-kelid-demo}"
  if ! SOFTHSM2_CONF="$conf" softhsm2-util --show-slots | grep -q "Label:\s*$label\s*$"; then
    # Demo PINs, printed by the demo for the person trying it; never use them for real tokens.
    SOFTHSM2_CONF="$conf" softhsm2-util --init-token --free --label "$label" --so-pin 12345678 --pin 1234 >/dev/null
  fi
fi
echo "$conf"
