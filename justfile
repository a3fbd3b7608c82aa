# Everyday recipes. The README's two commands work without `just` installed.

# The platform on embedded defaults (SQLite, in-process bus).
run:
    cargo run -p mposd

# The whole test suite against real PostgreSQL, NATS and the Kafka-API broker.
test:
    infra/test.sh

# Formatting and lints as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Install (if missing) and start PostgreSQL, NATS JetStream and tansu.
infra-up:
    infra/up.sh

# Benchmarks: figures next to floors measured in the same run.
bench:
    infra/up.sh
    cargo build --release --bins
    cargo run --release -p mpos-bench -- all
