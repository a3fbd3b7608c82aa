#!/usr/bin/env bash
# Makes pyiso8583 (PyPI, a third-party ISO 8583 implementation) available to the iso8583
# crate's interop test (crates/iso8583/tests/pyiso8583.rs, run when MPOS_TEST_PYTHON is set),
# and the packages of the Python integrator example (examples/integrator-python, run by
# crates/mposctl/tests/python_consumer.rs).
# Idempotent: creates a venv at ${MPOS_INFRA_DIR:-/tmp/mpos-infra}/py when missing (installing
# the Debian package python3-venv if needed), installs the pinned pyiso8583 version into it
# unless already there, and prints the interpreter to set MPOS_TEST_PYTHON to. Python 3.11+
# (the interop script reads the TOML specs with tomllib).
set -euo pipefail

PYISO8583_VERSION=4.0.1
INFRA_DIR="${MPOS_INFRA_DIR:-/tmp/mpos-infra}"
VENV="$INFRA_DIR/py"
PYTHON="$VENV/bin/python"

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "pyiso8583: python3 is $(python3 --version 2>&1); 3.11 or newer is needed" >&2
  exit 1
fi

if [ ! -x "$PYTHON" ]; then
  mkdir -p "$INFRA_DIR"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
fi

installed="$("$PYTHON" -m pip show pyiso8583 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" != "$PYISO8583_VERSION" ]; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "pyiso8583==$PYISO8583_VERSION"
fi

# The integrator example's pinned packages, unless every one is there already.
REQUIREMENTS="$(cd "$(dirname "$0")/.." && pwd)/examples/integrator-python/requirements.txt"
missing=""
while read -r requirement; do
  [ -z "$requirement" ] && continue
  name="${requirement%%==*}"
  version="${requirement##*==}"
  have="$("$PYTHON" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if [ "$have" != "$version" ]; then missing="yes"; fi
done < "$REQUIREMENTS"
if [ -n "$missing" ]; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
fi

echo "$PYTHON"
