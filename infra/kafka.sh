#!/usr/bin/env bash
# Starts a local Kafka-API broker (tansu, from crates.io) on 127.0.0.1:9092 with in-memory storage.
# Idempotent: installs tansu if missing, starts it if not running, waits until it answers.
# State lives in ${MPOS_INFRA_DIR:-/tmp/mpos-infra}: tansu.log and tansu.pid.
set -euo pipefail

HOST=127.0.0.1
PORT="${MPOS_KAFKA_PORT:-9092}"
INFRA_DIR="${MPOS_INFRA_DIR:-/tmp/mpos-infra}"
TANSU_VERSION=0.6.0
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
TANSU="$CARGO_BIN/tansu"
LOG_FILE="$INFRA_DIR/tansu.log"
PID_FILE="$INFRA_DIR/tansu.pid"
INSTALL_LOG="$INFRA_DIR/tansu-install.log"

answers() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null; }

if answers; then
  echo "kafka: already running at kafka://$HOST:$PORT"
  exit 0
fi

mkdir -p "$INFRA_DIR"

installed() { [ -x "$TANSU" ] && "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; }

if ! installed; then
  # Another `cargo install tansu` may be running (it takes ~15 minutes): wait for it instead of
  # starting a second build.
  while pgrep -f "cargo install tansu" >/dev/null 2>&1; do
    echo "kafka: waiting for a running 'cargo install tansu' to finish..." >&2
    sleep 15
  done
  if ! installed; then
    echo "kafka: installing tansu $TANSU_VERSION (takes ~15 minutes; log $INSTALL_LOG)" >&2
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,postgres \
      >"$INSTALL_LOG" 2>&1
  fi
fi

# A stale pid file from a broker that died: start a new one.
if [ -f "$PID_FILE" ] && ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  rm -f "$PID_FILE"
fi

if [ ! -f "$PID_FILE" ]; then
  setsid nohup "$TANSU" broker \
    --cluster-id mpos-local \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine memory://tansu/ \
    >>"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
fi

for _ in $(seq 1 150); do
  if answers; then
    echo "kafka: started tansu at kafka://$HOST:$PORT (pid $(cat "$PID_FILE"), log $LOG_FILE)"
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    rm -f "$PID_FILE"
    echo "kafka: tansu exited; see $LOG_FILE" >&2
    tail -n 20 "$LOG_FILE" >&2 || true
    exit 1
  fi
  sleep 0.2
done
echo "kafka: tansu did not answer on $HOST:$PORT within 30s; see $LOG_FILE" >&2
exit 1
