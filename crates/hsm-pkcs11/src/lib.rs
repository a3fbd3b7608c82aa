//! # hsm-pkcs11: a payment-HSM backend on any PKCS#11 token
//!
//! The hsm-proxy's `pkcs11:` backend. Every key lives inside the token (SoftHSM2 in tests, a
//! general-purpose HSM in production) and is used through the token's own mechanisms via the
//! [`cryptoki`] crate.
//!
//! * Configuration: [`Pkcs11Config::from_url`] parses
//!   `pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=mpos[&sessions=N]`; the user PIN is a
//!   separate [`secrecy::SecretString`] and is never printed.
//! * [`Token::open`] loads and initialises the module once per process (`C_Initialize` is
//!   process-global; "already initialised" is accepted), finds the slot by token label, logs in
//!   and keeps a pool of up to `sessions` read-write sessions.
//! * **Threading:** the API is `async`; every PKCS#11 call runs on
//!   [`tokio::task::spawn_blocking`], so callers just `.await` inside a Tokio runtime.
//! * Keys are addressed by caller-chosen string ids (`CKA_ID`), created by
//!   [`Token::generate_key`], [`Token::import_clear_key`], [`Token::unwrap_key`] or
//!   [`Token::derive_key`], always as token objects with `CKA_SENSITIVE = true`,
//!   `CKA_PRIVATE = true` and exactly the usage attributes of the [`KeyUses`] passed (least
//!   privilege); generated and imported keys also get `CKA_MODIFIABLE = false`.
//! * **Export policy:** `CKA_EXTRACTABLE` is false unless the key is created with
//!   [`KeyUses::EXPORT`]; such a key can leave the token only wrapped under a KEK
//!   ([`Token::wrap_key`]), never in clear, because it stays sensitive.
//! * Results are bytes, or [`paycrypto::SecretBytes`] when they are clear secrets (decryption).
//!
//! ## What SoftHSM2 (2.6) and cryptoki (0.12) can do
//!
//! Proved by the tests in `tests/` against SoftHSM2 2.6.1 (Debian package `softhsm2`):
//!
//! | operation | mechanism | status |
//! | --- | --- | --- |
//! | TDES/AES encrypt, decrypt, ECB and CBC | `CKM_DES3_ECB/CBC`, `CKM_AES_ECB/CBC` | works |
//! | AES-CMAC generate/verify | `CKM_AES_CMAC` | works |
//! | HMAC-SHA-256 generate/verify | `CKM_SHA256_HMAC` (keys of 32 to 512 bytes only) | works |
//! | ISO 9797-1 MAC algorithm 1 (TDES) | `CKM_DES3_CBC` encryption, last block | works (key needs ENCRYPT) |
//! | TDES-CMAC | `CKM_DES3_CMAC` | SoftHSM2 has it; cryptoki 0.12 cannot name it → [`Error::Unsupported`] |
//! | AES key wrap / unwrap | `CKM_AES_KEY_WRAP`, `CKM_AES_KEY_WRAP_PAD` | works |
//! | TDES KEK wrap / unwrap | `CKM_DES3_CBC`, `CKM_DES3_ECB` | refused by SoftHSM2 2.6 (`CKR_MECHANISM_INVALID`, although `CKM_DES3_CBC` carries `CKF_WRAP`) → [`Error::Unsupported`] |
//! | KWP of a key whose length is not a multiple of 8 | `CKM_AES_KEY_WRAP_PAD` | SoftHSM2 unwraps RFC 5649 correctly but zero-pads before wrapping, so its output is not RFC 5649 (TDES/AES keys are unaffected) |
//! | check value of a key that may neither encrypt nor sign | `CKA_CHECK_VALUE` | right for generated and imported keys; empty for unwrapped keys; wrong for derived keys (suppressed) → [`Error::KeyUseNotPermitted`] |
//! | derive by AES encryption | `CKM_AES_CBC_ENCRYPT_DATA` (zero IV, one block = ECB) | works |
//! | derive by ECB encryption | `CKM_AES_ECB_ENCRYPT_DATA`, `CKM_DES3_ECB_ENCRYPT_DATA` | SoftHSM2 has them; cryptoki 0.12 cannot name them → [`Error::Unsupported`] |
//! | derive by XOR | `CKM_XOR_BASE_AND_DATA` | SoftHSM2 lacks it → [`Error::Unsupported`] |
//! | AES-128 DUKPT host derivation | chain of `CKM_AES_CBC_ENCRYPT_DATA` | works (X9.24-3 supplement vectors) |
//!
//! cryptoki 0.12's `MechanismType` has a private value, no constant for `CKM_DES3_CMAC`,
//! `CKM_AES_ECB_ENCRYPT_DATA` or `CKM_DES3_ECB_ENCRYPT_DATA`, refuses codes below
//! `CKM_VENDOR_DEFINED` in `new_vendor_defined`, and its `get_mechanism_list` drops codes it
//! cannot name. Reaching them needs an upstream cryptoki change (or raw FFI, which this crate's
//! `#![forbid(unsafe_code)]` excludes). `pkcs11-tool -M` (OpenSC) shows SoftHSM2 lists them.
//! The list also loses `CKM_DES3_CBC` and `CKM_DES2_KEY_GEN`, which cryptoki can still use.
//!
//! ## What a general-purpose PKCS#11 token cannot do inside its boundary
//!
//! PKCS#11 has no payment mechanisms. For these operations the platform either keeps a clear
//! value in host memory for a moment (marked below) or uses a payment HSM / `paycrypto`:
//!
//! * **ISO 9564 PIN block translation** (format 0 ↔ 4, or key A → key B): needs decrypt →
//!   re-format with the PAN → encrypt. A PKCS#11 token can only decrypt into host memory, so the
//!   clear PIN block is **momentarily in host memory** (held in `SecretBytes`, zeroized, never
//!   logged). PCI PIN forbids this outside a secure cryptographic device: production PIN
//!   translation must use a payment HSM backend, never this one.
//! * **ISO 9797-1 MAC algorithm 3 (ANSI X9.19 retail MAC)**: single-DES CBC under K1 and a final
//!   DES-decrypt/encrypt with K2 need the key halves as separate single-DES keys; PKCS#11
//!   cannot split a `CKK_DES2` key inside the token (`CKM_EXTRACT_KEY_FROM_KEY` is absent from
//!   SoftHSM2). The platform imports the two halves as separate keys only where a key
//!   ceremony allows it, or uses `paycrypto::mac` / a payment HSM.
//! * **DUKPT** (ANSI X9.24): TDES DUKPT (X9.24-1) needs the key XOR constants (`C0C0…`) and
//!   register shifting; `CKM_XOR_BASE_AND_DATA` is absent from SoftHSM2 (tested) and the TDES
//!   `*_ECB_ENCRYPT_DATA` mechanisms are not reachable through cryptoki 0.12, so TDES DUKPT
//!   cannot run inside this token. **AES-128 DUKPT (X9.24-3-2017) can**: every step is one AES
//!   block encryption of derivation data, i.e. `CKM_AES_CBC_ENCRYPT_DATA` with a zero IV, and
//!   `tests/dukpt_in_token.rs` derives the initial key, the intermediate keys and the PIN keys
//!   of the published X9.24-3 supplement vectors inside SoftHSM2 and reproduces their format 4
//!   PIN blocks. Limits: each step creates a token object (this backend makes token objects
//!   only; the caller destroys the intermediates), and AES-192/256 DUKPT keys are two blocks
//!   concatenated, which needs `CKM_CONCATENATE_BASE_AND_KEY` (absent from SoftHSM2). The
//!   platform otherwise runs DUKPT in `paycrypto` with the BDK in a payment HSM.
//! * **EMV session keys** (EMV Book 2 A1.3, option A/B master keys): need ECB encryption of PAN
//!   blocks and XOR with `FF..`; the first half is `*_ECB_ENCRYPT_DATA`, the XOR step has no
//!   SoftHSM2 mechanism. ARQC/ARPC then need ISO 9797-1 MAC 3 (see above).
//! * **CVV/CVV2/iCVV**: decimalisation (digit extraction from the TDES output) and the
//!   two-step single-DES/TDES chain need the clear cipher output in host memory; the CVK halves
//!   must be usable as single-DES keys. Possible only as "encrypt in token, decimalise in host"
//!   with the intermediate block in host memory, which reveals a TDES ciphertext of known data
//!   under the CVK. The platform computes CVVs in a payment HSM or `paycrypto`.
//! * **TR-31 / TR-34 key blocks**: no PKCS#11 mechanism; the key block is built in `paycrypto`
//!   from a clear key, i.e. a key created here with [`KeyUses::EXPORT`] cannot be turned into a
//!   TR-31 block inside the token. Exchange with partners uses AES key wrap instead, or a
//!   payment HSM.
//! * **KCVs of keys that may neither encrypt nor sign** (KEKs, derivation keys): only the
//!   token's `CKA_CHECK_VALUE` can give one. SoftHSM2 2.6 gets it right for generated and
//!   imported keys, leaves it empty for unwrapped keys and computes a wrong one for derived keys
//!   (tested; this backend suppresses it there), so [`Token::kcv`] answers
//!   [`Error::KeyUseNotPermitted`] for such keys rather than a wrong value.
//! * **Concurrency**: SoftHSM2's file store fails token-object writes that run while other
//!   sessions of the process read (`CKR_GENERAL_ERROR`), so key creation and destruction take a
//!   per-token exclusive lock; all other calls share it and run in parallel up to the pool size.
//! * **`CKA_MODIFIABLE`**: SoftHSM2 refuses `CKA_MODIFIABLE = false` in unwrap and derive
//!   templates, so those keys stay modifiable; their usage attributes could be changed by a
//!   holder of the user PIN, but not their sensitivity or non-extractability (one-way in
//!   PKCS#11). Generated and imported keys are unmodifiable.
//! * **`CKA_VALUE_LEN`** is 0 on unwrapped keys in SoftHSM2, so [`KeyInfo::kind`] can be `None`
//!   for them; [`Token::unwrap_key`] checks the wrapped length against the announced kind.
//! * **Same-process login**: PKCS#11 login state is per application and slot, so a second
//!   `C_Login` answers `CKR_USER_ALREADY_LOGGED_IN` without checking the PIN; this backend
//!   compares the PIN with the one that logged in, so a wrong PIN never opens a token.
//!
//! See also `docs/pkcs11.md`.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod key;
pub mod module;
pub mod token;

pub use config::{ConfigError, Pkcs11Config};
pub use error::Error;
pub use key::{KeyFamily, KeyInfo, KeyKind, KeyUses};
pub use module::init_token;
pub use token::{CipherMode, Derivation, KeyCheck, MacAlgorithm, Token, WrapMechanism};

/// Re-exported so callers need no direct `paycrypto` dependency for the common types.
pub use paycrypto::{SecretBytes, kcv::Kcv, kcv::KcvMethod, mac::Padding};
