#!/usr/bin/env bash
# Makes SoftHSM2 available for the hsm-pkcs11 tests (development and CI machines only).
# Idempotent: installs the Debian package `softhsm2` when `softhsm2-util` is missing, then
# prints the PKCS#11 module path. The tests use the default /etc/softhsm/softhsm2.conf and
# initialise their own token (unique label, free slot, C_InitToken) each, so nothing else is
# needed.
#
#   bash infra/softhsm.sh                      install if needed, print the module path
#   bash infra/softhsm.sh --clean-test-tokens  also delete tokens left by earlier test runs
#                                              (labels starting with "mt"; run when no test runs)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v softhsm2-util >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq softhsm2 >/dev/null
fi

MODULE=""
for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
  if [ -e "$candidate" ]; then MODULE="$candidate"; break; fi
done
if [ -z "$MODULE" ]; then
  echo "softhsm: libsofthsm2.so not found after installing softhsm2" >&2
  exit 1
fi

if [ "${1:-}" = "--clean-test-tokens" ]; then
  softhsm2-util --show-slots 2>/dev/null \
    | sed -n 's/^ *Label: *\(mt[^ ]*\) *$/\1/p' \
    | while read -r label; do
        $SUDO softhsm2-util --delete-token --token "$label" >/dev/null || true
      done
fi

echo "$MODULE"
