#!/usr/bin/env bash
# Brings up the local infrastructure the distributed mode and the tests use:
# PostgreSQL, NATS with JetStream, and the Kafka-API broker. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
./postgres.sh
./nats.sh
./kafka.sh
