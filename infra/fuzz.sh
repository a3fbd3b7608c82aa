#!/usr/bin/env bash
# Fuzzes paycrypto's parsers: runs every cargo-fuzz target in crates/paycrypto/fuzz for a
# number of seconds each and fails on the first crash (panic, abort, timeout, OOM).
#
#   infra/fuzz.sh [SECONDS] [TARGET...]     # default: 30 seconds, every target
#
# Toolchain: stable Rust. libFuzzer's coverage instrumentation (-Cpasses=sancov-module,
# -Cllvm-args=...) works on stable; only the sanitizers (-Zsanitizer) need nightly, so the
# targets run with `--sanitizer none` (`-s none`). paycrypto is #![forbid(unsafe_code)], so
# what a sanitizer would add is small; debug assertions and overflow checks are on (`-a`).
# No RUSTC_BOOTSTRAP is needed.
#
# Targets (crates/paycrypto/fuzz/fuzz_targets):
#   tr31_header   KeyBlockHeader::parse, and parse(format(h)) == h for whatever parses
#   tr31_unwrap   tr31::unwrap with 16/24/32-byte KBPKs (never panics, never returns a key
#                 without a valid MAC)
#   dukpt_ksn     dukpt::tdes::Ksn, dukpt::aes::Ksn and dukpt::aes::InitialKeyId from hex/bytes
#   pin_block     pin::decode_pin_block (ISO 0/1/3/4, with and without PAN),
#                 pin::decipher_pin_block, Pin::new, Pan::new
#   tr34_key_token  tr34::open_key_token (two-pass and one-pass) with the published TR-34-2019
#                 Annex B PKI (tests/data/tr34); never panics, never returns a key
#   tr34_tokens   tr34::parse_random_token (parse(build(n)) == n), open_credential_token,
#                 open_rebind_token, open_unbind_token, open_ca_rebind_token,
#                 open_ca_unbind_token, verify_certificate_chain, CertificateId::of_certificate
# Seed inputs (published TR-31 / X9.143 sample blocks etc.) live in fuzz/seeds/<target>; the
# growing corpus (fuzz/corpus) and crash artifacts (fuzz/artifacts) are git-ignored.
#
# TODO (parsers that do not exist in the crate yet; add a target when they land):
#   - TR-34: a fuzz target that reaches the key block parser behind a valid signature (it
#     needs a harness that signs fuzzed EnvelopedData with a test KDH key; the Annex B seeds
#     stop at the undecryptable published encryptedKey)
#   - EMV / kcv / cvv text inputs if they grow parsers beyond hex decoding
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
fuzz_dir=crates/paycrypto/fuzz

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$fuzz_dir"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${targets[*]} (sanitizer none, debug assertions)"
cargo fuzz build -s none -a

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "artifacts/$target"
    if [ -d "seeds/$target" ]; then
        cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    fi
    log="$(mktemp "${TMPDIR:-/tmp}/fuzz-$target.XXXXXX.log")"
    echo "== fuzzing $target for ${seconds}s (log: $log)"
    set +e
    cargo fuzz run -s none -a "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    runs="$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log" | tail -1)"
    if [ "$status" -ne 0 ]; then
        tail -40 "$log"
        echo "!! $target: crash (exit $status); artifacts in $fuzz_dir/artifacts/$target"
        failed+=("$target")
        summary+=("$target: CRASH after ${runs:-?} executions")
    else
        summary+=("$target: ok, ${runs:-?} executions in ${seconds}s")
    fi
done

echo "== summary"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
