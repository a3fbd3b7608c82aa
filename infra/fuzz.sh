#!/usr/bin/env bash
# Fuzzes the parsers of every crate that has a cargo-fuzz directory (crates/*/fuzz: today
# paycrypto, payshield, device-identity, tms-params, android-attestation, iso8583, mpos-seal and pg-copy): runs each target for a number of seconds and fails if any crashed
# (panic, abort, timeout, OOM).
#
#   infra/fuzz.sh [SECONDS] [TARGET...]     # default: 30 seconds, every target of every crate
#
# Named targets run in whichever crate defines them; a name no crate defines is an error.
#
# Toolchain: stable Rust. libFuzzer's coverage instrumentation (-Cpasses=sancov-module,
# -Cllvm-args=...) works on stable; only the sanitizers (-Zsanitizer) need nightly, so the
# targets run with `--sanitizer none` (`-s none`). paycrypto is #![forbid(unsafe_code)], so
# what a sanitizer would add is small; debug assertions and overflow checks are on (`-a`).
# No RUSTC_BOOTSTRAP is needed.
#
# paycrypto targets (crates/paycrypto/fuzz/fuzz_targets):
#   tr31_header   KeyBlockHeader::parse, and parse(format(h)) == h for whatever parses
#   tr31_unwrap   tr31::unwrap with 16/24/32-byte KBPKs (never panics, never returns a key
#                 without a valid MAC)
#   dukpt_ksn     dukpt::tdes::Ksn, dukpt::aes::Ksn and dukpt::aes::InitialKeyId from hex/bytes
#   pin_block     pin::decode_pin_block (ISO 0/1/3/4, with and without PAN),
#                 pin::decipher_pin_block, Pin::new, Pan::new
#   tr34_key_token  tr34::open_key_token (two-pass and one-pass) with the published TR-34-2019
#                 Annex B PKI (tests/data/tr34); never panics, never returns a key
#   ecdh_unwrap   ecdh::unwrap_on_device (a fixed device key; arbitrary ephemeral key and
#                 key block) and ecdh::p256_public_key; never panics, never returns a key
#   tr34_tokens   tr34::parse_random_token (parse(build(n)) == n), open_credential_token,
#                 open_rebind_token, open_unbind_token, open_ca_rebind_token,
#                 open_ca_unbind_token, verify_certificate_chain, CertificateId::of_certificate
# payshield targets (crates/payshield/fuzz/fuzz_targets):
#   payshield_request     codec::decode_request; whatever decodes re-encodes to the same command
#   payshield_response    codec::decode_response; whatever decodes re-encodes to the same response
#   payshield_framer      framing::Framer over arbitrary streams and chunkings
#   payshield_sim_engine  payshield_sim::Engine::handle (the simulator's command processor)
# device-identity targets (crates/device-identity/fuzz/fuzz_targets):
#   device_identity_der   ManufacturerCa/DeviceCertificate/Crl::from_der and TrustStore::verify
#                         (store: the OpenSSL-made CA and CRL of tests/data); device DER and PEM
#                         round trips
#   device_identity_text  the PEM readers, SerialNumber/Fingerprint::parse (round trips),
#                         parse_bulk_csv, parse_bulk_json
# tms-params targets (crates/tms-params/fuzz/fuzz_targets):
#   tms_params_validate   validate on arbitrary protobuf and JSON RiskParameters; whatever
#                         validates is canonical (validate(to_proto(v)) == v)
#   tms_params_resolve    resolve over up to five fuzzed levels; deterministic, every value
#                         has a source
# android-attestation targets (crates/android-attestation/fuzz/fuzz_targets):
#   android_key_description  KeyDescription::from_der and from_certificate_der (seeds: extension
#                         values and a leaf certificate of the android/keyattestation test data);
#                         never panics, whatever parses round-trips through its JSON; also
#                         RevocationList::from_json and verify_chain (input cut into
#                         certificates at 00 FF 00 FF), PlayIntegrityVerdict::from_json and
#                         play_integrity::check; never panics
# iso8583 targets (crates/iso8583/fuzz/fuzz_targets):
#   iso8583_decode        iso8583::decode under both built-in specs (ascii-1987, bcd-1987);
#                         whatever decodes re-encodes and decodes to the same message
#   iso8583_framer        framing::Framer with every prefix kind, a 0-5 byte header and
#                         arbitrary chunking; framed messages come back unchanged
#   emv_tlv_parse         emv_tlv::parse; whatever parses re-encodes and parses equal
# mpos-seal targets (crates/mpos-seal/fuzz/fuzz_targets):
#   seal_open             Sealer::open of arbitrary bytes as a protobuf Sealed and as a raw
#                         sender key + nonce + ciphertext (never opens: the keys are drawn at
#                         start), and of a genuine sealed field with one changed byte of its
#                         protobuf form (opens only if unchanged); never panics
# Seed inputs (published TR-31 / X9.143 sample blocks, sample host commands etc.) live in
# <crate>/fuzz/seeds/<target>; the growing corpus (fuzz/corpus) and crash artifacts
# (fuzz/artifacts) are git-ignored.
#
# pg-copy targets (crates/pg-copy/fuzz/fuzz_targets):
#   pg_copy_decode        pg_copy::Decoder over arbitrary streams (bare and behind a valid
#                         header) and chunkings; rows have the column count, typed reads never
#                         panic, and the chunking changes neither the rows nor the outcome
# TODO (parsers that do not exist in the crate yet; add a target when they land):
#   - TR-34: a fuzz target that reaches the key block parser behind a valid signature (it
#     needs a harness that signs fuzzed EnvelopedData with a test KDH key; the Annex B seeds
#     stop at the undecryptable published encryptedKey)
#   - EMV / kcv / cvv text inputs if they grow parsers beyond hex decoding
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
requested=("$@")
mapfile -t fuzz_dirs < <(find crates -mindepth 2 -maxdepth 2 -type d -name fuzz | sort)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

root="$(pwd)"
failed=()
summary=()
found=()
for fuzz_dir in "${fuzz_dirs[@]}"; do
    cd "$root/$fuzz_dir"
    mapfile -t available < <(cargo fuzz list)
    if [ "${#requested[@]}" -gt 0 ]; then
        targets=()
        for target in "${requested[@]}"; do
            for candidate in "${available[@]}"; do
                if [ "$candidate" = "$target" ]; then
                    targets+=("$target")
                    found+=("$target")
                fi
            done
        done
    else
        targets=("${available[@]}")
    fi
    if [ "${#targets[@]}" -eq 0 ]; then
        continue
    fi

    echo "== $fuzz_dir: building ${targets[*]} (sanitizer none, debug assertions)"
    cargo fuzz build -s none -a

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
done
cd "$root"

for target in "${requested[@]}"; do
    if [[ ! " ${found[*]} " == *" $target "* ]]; then
        echo "!! no fuzz target named $target in ${fuzz_dirs[*]}"
        exit 1
    fi
done

echo "== summary"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
