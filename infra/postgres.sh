#!/usr/bin/env bash
# Starts a local PostgreSQL on 127.0.0.1:5432 (Debian package, no systemd) with trust
# authentication for local connections (test and development machines only).
# Idempotent: installs PostgreSQL if missing, creates and starts a cluster if none runs,
# waits until it answers.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }

if answers; then
  echo "postgres: already running at postgres://postgres@$HOST:$PORT/postgres"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^$VERSION main$"; then
  $SUDO pg_createcluster "$VERSION" main -p "$PORT" >/dev/null
fi

# Trust local TCP connections (development and CI machines only; never in production).
HBA="/etc/postgresql/$VERSION/main/pg_hba.conf"
if ! grep -q "mpos-local-trust" "$HBA"; then
  $SUDO sed -i '1i host all all 127.0.0.1/32 trust # mpos-local-trust\nhost all all ::1/128 trust # mpos-local-trust\nlocal all all trust # mpos-local-trust' "$HBA"
fi

$SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start || true

for _ in $(seq 1 100); do
  if answers; then
    echo "postgres: started $VERSION at postgres://postgres@$HOST:$PORT/postgres"
    exit 0
  fi
  sleep 0.1
done
echo "postgres: did not answer on $HOST:$PORT within 10s; see /var/log/postgresql/" >&2
exit 1
