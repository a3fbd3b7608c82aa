#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts what it needs
# (PostgreSQL, NATS JetStream, the tansu Kafka-API broker), checks formatting and lints,
# runs every test against the real infrastructure, and fuzzes every parser briefly
# (MPOS_FUZZ_SECONDS per target, default 15; infra/fuzz.sh for longer runs).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== infrastructure"
infra/up.sh

export MPOS_TEST_POSTGRES_URL="${MPOS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export MPOS_TEST_NATS_URL="${MPOS_TEST_NATS_URL:-nats://127.0.0.1:4222}"
export MPOS_TEST_KAFKA_URL="${MPOS_TEST_KAFKA_URL:-kafka://127.0.0.1:9092}"
export MPOS_TEST_PYTHON="${MPOS_TEST_PYTHON:-${MPOS_INFRA_DIR:-/tmp/mpos-infra}/py/bin/python}"
export MPOS_TEST_CHROMIUM="${MPOS_TEST_CHROMIUM:-/usr/bin/chromium}"
# The console test's screenshots, kept for CI as artifacts.
export MPOS_ARTIFACTS_DIR="${MPOS_ARTIFACTS_DIR:-$PWD/artifacts}"

# CI builds once per run: incremental compilation only costs time and disk there, and full
# debug info makes every test binary several times larger (a shared target directory reached
# tens of gigabytes); line tables keep backtraces readable.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"

echo "== format"
cargo fmt --all -- --check

echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== test"
log="${TMPDIR:-/tmp}/mpos-test.log"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

echo "== fuzz (every parser, ${MPOS_FUZZ_SECONDS:-15} s each)"
set +e
infra/fuzz.sh "${MPOS_FUZZ_SECONDS:-15}"
fuzz_status=$?
set -e
if [ "$fuzz_status" -ne 0 ] && [ "$status" -eq 0 ]; then
  status=$fuzz_status
fi

# One closing line for the whole suite, summing every test binary's result line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
