#!/usr/bin/env bash
# Starts a local NATS server with JetStream on 127.0.0.1:4222 (Debian package, no systemd).
# Idempotent: installs nats-server if missing (also when another server already answers: a test
# starts one of its own), starts it if not running, waits until it answers.
set -euo pipefail

HOST=127.0.0.1
PORT="${MPOS_NATS_PORT:-4222}"
STORE_DIR="${MPOS_NATS_STORE_DIR:-/var/lib/nats-server}"
LOG_FILE="${MPOS_NATS_LOG:-/var/log/nats-server.log}"
NATS_BIN=/usr/sbin/nats-server

answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }

# The binary also when a server already runs: the per-tenant scoping test
# (crates/mpos-bus/tests/tenant_scoping.rs) starts a nats-server of its own.
if [ ! -x "$NATS_BIN" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi

if answers; then
  echo "nats: already running at nats://$HOST:$PORT"
  exit 0
fi

mkdir -p "$STORE_DIR" "$(dirname "$LOG_FILE")"
start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
  -a "$HOST" -p "$PORT" -js -sd "$STORE_DIR" -l "$LOG_FILE"

for _ in $(seq 1 100); do
  if answers; then
    echo "nats: started at nats://$HOST:$PORT (jetstream store $STORE_DIR, log $LOG_FILE)"
    exit 0
  fi
  sleep 0.1
done
echo "nats: did not answer on $HOST:$PORT within 10s; see $LOG_FILE" >&2
exit 1
