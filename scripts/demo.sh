#!/usr/bin/env bash
# `npm start`: the whole Kelid demo on this machine —
#   the agent (wss://127.0.0.1:17443) with a SoftHSM demo token, the demo CA (OCSP + CRL),
#   the RA console (an `ra` origin) and the signing site (a `site`, after you allow it).
# Installs what is missing first (scripts/setup.sh --demo). Everything lives in ./.kelid-demo/; delete that
# directory to start over. Ctrl-C stops it all.
#
# The demo pages are served as http://localhost:<port>: browsers treat localhost as a secure context,
# and the demo config lists both origins in `devOrigins` (and the RA console in `raOrigins`) so the
# agent accepts them without https. Real pages use https origins.
#
# Environment: KELID_PORT (17443), KELID_DEMO_CA_PORT (17480), KELID_DEMO_RA_PORT (17481),
# KELID_DEMO_SITE_PORT (17482), KELID_DEMO_DIR (.kelid-demo), KELID_DEMO_LAUNCHER (consent launcher,
# default "browser"), KELID_DEMO_NO_SETUP=1 (skip scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

agent_port=${KELID_PORT:-17443}
ca_port=${KELID_DEMO_CA_PORT:-17480}
ra_port=${KELID_DEMO_RA_PORT:-17481}
site_port=${KELID_DEMO_SITE_PORT:-17482}
demo_dir=$(realpath -m "${KELID_DEMO_DIR:-.kelid-demo}")
launcher=${KELID_DEMO_LAUNCHER:-browser}
user_pin=1234
so_pin=12345678

if [ "${KELID_DEMO_NO_SETUP:-0}" != 1 ]; then
  # The demo needs no Chromium (consent pages open in your own browser) and none of the test tools.
  scripts/setup.sh --demo
fi
[ -f dist/kelid.mjs ] && [ -f dist/client/kelid.js ] || npm run --silent build

module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
  /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so \
  /usr/local/lib/softhsm/libsofthsm2.so /opt/homebrew/lib/softhsm/libsofthsm2.so; do
  if [ -f "$m" ]; then module=$m; break; fi
done
if [ -z "$module" ]; then
  echo "demo: SoftHSM2 is not installed (libsofthsm2.so not found); run scripts/setup.sh as root" >&2
  exit 1
fi

# A private SoftHSM token directory: the demo never touches the system's tokens.
mkdir -p "$demo_dir/tokens" "$demo_dir/state"
chmod 700 "$demo_dir" "$demo_dir/state"
softhsm_conf="$demo_dir/softhsm2.conf"
cat >"$softhsm_conf" <<CONF
directories.tokendir = $demo_dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = true
CONF
export SOFTHSM2_CONF="$softhsm_conf"
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*Kelid Demo"; then
  softhsm2-util --init-token --free --label "Kelid Demo" --so-pin "$so_pin" --pin "$user_pin" >/dev/null
  echo "demo: created the SoftHSM token \"Kelid Demo\" (PIN $user_pin, SO-PIN $so_pin) in $demo_dir/tokens"
fi

config="$demo_dir/kelid-demo.config.json"
KELID_DEMO_LAUNCHER="$launcher" node - "$root/demo/kelid-demo.config.json" "$config" <<NODE
const fs = require('node:fs');
const [template, out] = process.argv.slice(2);
const c = JSON.parse(fs.readFileSync(template, 'utf8'));
c.port = $agent_port;
c.modules = [{ id: 'softhsm-demo', path: '$module', env: { SOFTHSM2_CONF: '$softhsm_conf' } }];
c.raOrigins = ['http://localhost:$ra_port'];
c.devOrigins = ['http://localhost:$ra_port', 'http://localhost:$site_port'];
c.sites = [];
c.consent = { ...c.consent, launcher: process.env.KELID_DEMO_LAUNCHER || 'browser' };
fs.writeFileSync(out, JSON.stringify(c, null, 2) + '\n');
NODE

pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "demo: stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  fi
}
stopping=0
trap stop EXIT
trap 'stopping=1' INT TERM

rm -f "$demo_dir/state/agent.json"
node bin/kelid.js serve --config "$config" --state-dir "$demo_dir/state" \
  --log-file "$demo_dir/agent.log" &
pids+=($!)
node demo/server.mjs --dir "$demo_dir" --ca-port "$ca_port" --ra-port "$ra_port" --site-port "$site_port" \
  --agent-url "wss://127.0.0.1:$agent_port/v1" >"$demo_dir/demo-server.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 300); do
  [ "$stopping" = 1 ] && exit 130
  if [ -f "$demo_dir/state/agent.json" ] && grep -q '^KELID_DEMO ' "$demo_dir/demo-server.log" 2>/dev/null; then break; fi
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: a process exited early; see $demo_dir/agent.log and $demo_dir/demo-server.log" >&2
      tail -n 20 "$demo_dir/agent.log" "$demo_dir/demo-server.log" >&2 || true
      exit 1
    fi
  done
  sleep 0.1
done
if [ ! -f "$demo_dir/state/agent.json" ]; then
  echo "demo: the agent did not start; see $demo_dir/agent.log" >&2
  exit 1
fi

cat <<TEXT

Kelid demo is running.

  Agent (WebSocket API)   wss://127.0.0.1:$agent_port/v1
  RA console              http://localhost:$ra_port/          (fa: http://localhost:$ra_port/?lang=fa)
  Signing site            http://localhost:$site_port/        (fa: http://localhost:$site_port/?lang=fa)
  Demo CA (OCSP, CRL)     http://127.0.0.1:$ca_port/
  Token manager           KELID_STATE_DIR=$demo_dir/state npx kelid ui

  SoftHSM token "Kelid Demo": PIN $user_pin, SO-PIN $so_pin (the empty slot next to it is for
  "Initialize token" in the RA console).

First, let your browser trust the agent's local CA (once; restart the browser afterwards):
  KELID_STATE_DIR=$demo_dir/state npx kelid ca install

Consent windows open in the system browser. Without one, answer on the command line:
  KELID_STATE_DIR=$demo_dir/state npx kelid consent list

Logs: $demo_dir/agent.log, $demo_dir/demo-server.log. Press Ctrl-C to stop.
TEXT

wait -n "${pids[@]}" || true
# Ctrl-C reaches the agent and the demo server too; whichever ends first, stop the rest quietly.
sleep 0.2
[ "$stopping" = 1 ] && exit 130
echo "demo: a process stopped; see $demo_dir/agent.log and $demo_dir/demo-server.log" >&2
exit 1
