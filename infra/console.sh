#!/usr/bin/env bash
# Makes the operator console's browser test runnable (e2e/tests/console.rs): Node.js and npm
# and Debian's Chromium (installed from Debian's packages when missing), and the test
# script's pinned playwright-core (`npm ci` in e2e/console, from its package-lock.json; no
# browser download: the script drives /usr/bin/chromium). Idempotent. Prints the Chromium to
# set MPOS_TEST_CHROMIUM to.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "console: installing ${missing[*]} (Debian packages)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ci again only when the lock file changed since the last install.
lock_sum="$(sha256sum e2e/console/package-lock.json | cut -d' ' -f1)"
stamp=e2e/console/node_modules/.mpos-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  (cd e2e/console && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$lock_sum" > "$stamp"
fi
echo /usr/bin/chromium
