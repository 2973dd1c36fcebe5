#!/usr/bin/env bash
# Installs what Kelid needs on Debian/Ubuntu: system packages (apt-get, as root) and npm packages,
# then builds. Used by `npm test`, `npm start`, CI (.ci/run) and docker/Dockerfile alike, so they
# cannot drift. Without root it prints the exact apt-get command instead.
#   scripts/setup.sh [--demo] [--no-browser] [--no-build]
# Default: everything the tests need. --demo (what `npm start` uses): what the agent and the demo need,
# without the tools only tests use (Chromium for the browser tests, tinyproxy); consent pages open in
# the user's own browser. --no-browser: the tests' tools without Chromium (the Docker harness).
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=1
want_test_tools=1
want_build=1
for arg in "$@"; do
  case "$arg" in
    --demo) want_browser=0; want_test_tools=0 ;;
    --no-browser) want_browser=0 ;;
    --no-build) want_build=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

packages=(softhsm2 opensc p11-kit libp11-kit-dev gnutls-bin libnss3-tools openssl python3 make gcc g++ ca-certificates)
# Only the tests use these: tinyproxy, a real forward proxy for the proxied OCSP/CRL/TSA fetches (never
# run as a service); dpkg-dev (dpkg-shlibdeps, strip) for `npm run package` and its test; tpm2-pkcs11
# on a software TPM, the suite's second PKCS#11 implementation (test/helpers/tpm2.ts).
if [ "$want_test_tools" = 1 ]; then
  packages+=(tinyproxy dpkg-dev)
  packages+=(swtpm tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools dbus-daemon)
fi
if [ "$want_browser" = 1 ]; then
  # On Ubuntu the `chromium` package only installs the snap, which needs snapd (absent in containers
  # and CI). The browser tests take any Chromium at /usr/bin/chromium or $KELID_CHROMIUM.
  os_id=$(. "${KELID_OS_RELEASE:-/etc/os-release}" 2>/dev/null && echo "${ID:-}")
  if [ "$os_id" = ubuntu ]; then
    if [ ! -x "${KELID_CHROMIUM:-/usr/bin/chromium}" ]; then
      echo "setup: the browser tests need Chromium; on Ubuntu apt's chromium is a snap. Install one" >&2
      echo "  (e.g. sudo snap install chromium) and set KELID_CHROMIUM=/snap/bin/chromium," >&2
      echo "  or run scripts/setup.sh --no-browser and leave test/e2e/browser out." >&2
    fi
  else
    packages+=(chromium)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js >= 20 is required: https://nodejs.org/ (or: sudo apt-get install -y nodejs npm)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

# A lock out of sync with package.json fails here (and so fails CI), before anything is installed:
# check-lock.mjs compares the lock's root entry offline; `npm ci` then refuses a lock whose tree no
# longer satisfies package.json.
node scripts/check-lock.mjs
stamp=node_modules/.kelid-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "setup: installing npm packages (npm ci)"
  # npm ci installs exactly the lock (it removes node_modules first, the stamp with it), so CI and
  # every machine get the same tree. The stamp makes a second run skip it.
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

if [ "$want_build" = 1 ]; then
  npm run --silent build
fi
