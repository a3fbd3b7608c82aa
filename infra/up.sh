#!/usr/bin/env bash
# Brings up the local infrastructure the distributed mode and the tests use:
# PostgreSQL, NATS with JetStream, the Kafka-API broker, SoftHSM2 (the PKCS#11 token the
# hsm-pkcs11 tests use; nothing to start), and Chromium with the console test's Playwright.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
./postgres.sh
./nats.sh
./kafka.sh
./pyiso8583.sh >/dev/null
./console.sh >/dev/null
# Also deletes the tokens earlier hsm-pkcs11 test runs left (labels mt…): SoftHSM2 slows
# down with every token in its directory. Do not run while hsm-pkcs11 tests run.
./softhsm.sh --clean-test-tokens >/dev/null
