//! AES DUKPT (ANSI X9.24-3-2017).
//!
//! * Identifiers: the 8-byte [`InitialKeyId`] (4-byte BDK ID ‖ 4-byte derivation ID) and the
//!   12-byte [`Ksn`] (initial key ID ‖ 32-bit transaction counter, at most 16 one-bits).
//! * Key derivation: NIST SP 800-108 counter mode with AES-ECB as the PRF over the 16-byte
//!   derivation data of the standard ([`derivation_data`]): version `01`, key block counter,
//!   key usage indicator, algorithm indicator, length in bits, then either the initial key ID
//!   (initial key derivation) or the derivation ID and the transaction counter.
//! * Host side: [`derive_initial_key`], [`derivation_key`] (the intermediate derivation key of
//!   a transaction), [`working_key`] for every [`KeyUsage`] and derived [`KeyType`];
//!   [`host_derivation_key_any_counter`] (any 32-bit counter) and the DUKPT update key
//!   ([`update_key`], [`host_update_key`]).
//! * Device side: [`Device`] with its 32 intermediate derivation key registers.
//!
//! BDKs (and so initial and intermediate keys) are AES-128, AES-192 or AES-256; working keys
//! may be 2TDEA, 3TDEA or AES of any length.

use std::fmt;

use zeroize::Zeroizing;

use crate::primitives::{AES_BLOCK, aes_encrypt_ecb};
use crate::{CryptoError, SecretBytes};

/// Length of a KSN in bytes.
pub const KSN_LEN: usize = 12;
/// Length of an initial key ID in bytes.
pub const INITIAL_KEY_ID_LEN: usize = 8;
/// A transaction counter may have at most this many one-bits.
pub const MAX_COUNTER_ONE_BITS: u32 = 16;
/// Number of intermediate derivation key registers of a device (one per counter bit).
pub const NUM_REGISTERS: usize = 32;
/// The last transaction counter a device uses.
pub const LAST_COUNTER: u32 = 0xFFFF_0000;

/// The type (algorithm and length) of a derived key: the algorithm indicator and length of
/// the derivation data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// Double-length TDES (algorithm `0000`, 128 bits).
    Tdes2,
    /// Triple-length TDES (algorithm `0001`, 192 bits).
    Tdes3,
    /// AES-128 (algorithm `0002`, 128 bits).
    Aes128,
    /// AES-192 (algorithm `0003`, 192 bits).
    Aes192,
    /// AES-256 (algorithm `0004`, 256 bits).
    Aes256,
}

impl KeyType {
    /// Every key type.
    pub const ALL: [Self; 5] = [
        Self::Tdes2,
        Self::Tdes3,
        Self::Aes128,
        Self::Aes192,
        Self::Aes256,
    ];

    /// The algorithm indicator of the derivation data.
    pub fn algorithm_indicator(self) -> u16 {
        match self {
            Self::Tdes2 => 0x0000,
            Self::Tdes3 => 0x0001,
            Self::Aes128 => 0x0002,
            Self::Aes192 => 0x0003,
            Self::Aes256 => 0x0004,
        }
    }

    /// The key length in bits.
    pub fn length_bits(self) -> u16 {
        match self {
            Self::Tdes2 | Self::Aes128 => 128,
            Self::Tdes3 | Self::Aes192 => 192,
            Self::Aes256 => 256,
        }
    }

    /// The key length in bytes.
    pub fn key_len(self) -> usize {
        usize::from(self.length_bits() / 8)
    }

    /// The AES type of a BDK, initial key or intermediate derivation key of `len` bytes.
    pub fn aes_for_len(len: usize) -> Result<Self, CryptoError> {
        match len {
            16 => Ok(Self::Aes128),
            24 => Ok(Self::Aes192),
            32 => Ok(Self::Aes256),
            actual => Err(CryptoError::InvalidLength {
                what: "AES DUKPT derivation key",
                expected: "16, 24 or 32 bytes",
                actual,
            }),
        }
    }
}

/// The key usage indicator of the derivation data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// Key encryption key (`0002`).
    KeyEncryptionKey,
    /// PIN encryption (`1000`).
    PinEncryption,
    /// MAC generation (`2000`).
    MacGeneration,
    /// MAC verification (`2001`).
    MacVerification,
    /// MAC, both ways (`2002`).
    MacBoth,
    /// Data encryption, encrypt (`3000`).
    DataEncrypt,
    /// Data encryption, decrypt (`3001`).
    DataDecrypt,
    /// Data encryption, both ways (`3002`).
    DataBoth,
    /// Key derivation (`8000`): intermediate derivation keys.
    KeyDerivation,
    /// Key derivation, initial key (`8001`): the initial key from the BDK.
    KeyDerivationInitialKey,
}

impl KeyUsage {
    /// Every usage.
    pub const ALL: [Self; 10] = [
        Self::KeyEncryptionKey,
        Self::PinEncryption,
        Self::MacGeneration,
        Self::MacVerification,
        Self::MacBoth,
        Self::DataEncrypt,
        Self::DataDecrypt,
        Self::DataBoth,
        Self::KeyDerivation,
        Self::KeyDerivationInitialKey,
    ];

    /// The key usage indicator of the derivation data.
    pub fn indicator(self) -> u16 {
        match self {
            Self::KeyEncryptionKey => 0x0002,
            Self::PinEncryption => 0x1000,
            Self::MacGeneration => 0x2000,
            Self::MacVerification => 0x2001,
            Self::MacBoth => 0x2002,
            Self::DataEncrypt => 0x3000,
            Self::DataDecrypt => 0x3001,
            Self::DataBoth => 0x3002,
            Self::KeyDerivation => 0x8000,
            Self::KeyDerivationInitialKey => 0x8001,
        }
    }
}

fn parse_hex_array<const N: usize>(
    what: &'static str,
    expected: &'static str,
    text: &str,
) -> Result<[u8; N], CryptoError> {
    let bytes = hex::decode(text.trim()).map_err(|_| CryptoError::InvalidHex(what))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::InvalidLength {
            what,
            expected,
            actual: bytes.len(),
        })
}

/// The initial key ID: BDK ID (4 bytes) ‖ derivation ID (4 bytes). Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InitialKeyId([u8; INITIAL_KEY_ID_LEN]);

impl InitialKeyId {
    /// From the BDK ID and the derivation ID.
    pub fn from_parts(bdk_id: [u8; 4], derivation_id: [u8; 4]) -> Self {
        let mut bytes = [0_u8; INITIAL_KEY_ID_LEN];
        bytes[..4].copy_from_slice(&bdk_id);
        bytes[4..].copy_from_slice(&derivation_id);
        Self(bytes)
    }

    /// Takes 8 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; INITIAL_KEY_ID_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "AES DUKPT initial key ID",
                expected: "8 bytes (16 hex digits)",
                actual: bytes.len(),
            })?;
        Ok(Self(array))
    }

    /// Parses 16 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        parse_hex_array("AES DUKPT initial key ID", "8 bytes (16 hex digits)", text).map(Self)
    }

    /// The 8 bytes.
    pub fn as_bytes(&self) -> &[u8; INITIAL_KEY_ID_LEN] {
        &self.0
    }

    /// The BDK ID (leftmost 4 bytes).
    pub fn bdk_id(&self) -> [u8; 4] {
        [self.0[0], self.0[1], self.0[2], self.0[3]]
    }

    /// The derivation ID (rightmost 4 bytes).
    pub fn derivation_id(&self) -> [u8; 4] {
        [self.0[4], self.0[5], self.0[6], self.0[7]]
    }

    /// Upper-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// The KSN of this device with `counter`.
    pub fn ksn(&self, counter: u32) -> Ksn {
        let mut bytes = [0_u8; KSN_LEN];
        bytes[..INITIAL_KEY_ID_LEN].copy_from_slice(&self.0);
        bytes[INITIAL_KEY_ID_LEN..].copy_from_slice(&counter.to_be_bytes());
        Ksn(bytes)
    }
}

impl fmt::Display for InitialKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InitialKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InitialKeyId({})", self.to_hex())
    }
}

impl std::str::FromStr for InitialKeyId {
    type Err = CryptoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

/// An AES DUKPT key serial number: initial key ID (8 bytes) ‖ transaction counter (4 bytes,
/// big-endian). Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ksn([u8; KSN_LEN]);

impl Ksn {
    /// Takes 12 bytes; any counter is accepted here (see [`Ksn::check_transaction`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KSN_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "AES DUKPT KSN",
            expected: "12 bytes (24 hex digits)",
            actual: bytes.len(),
        })?;
        Ok(Self(array))
    }

    /// Parses 24 hex digits (either case, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        parse_hex_array("AES DUKPT KSN", "12 bytes (24 hex digits)", text).map(Self)
    }

    /// The 12 bytes.
    pub fn as_bytes(&self) -> &[u8; KSN_LEN] {
        &self.0
    }

    /// Upper-case hex (24 digits).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// The initial key ID (leftmost 8 bytes).
    pub fn initial_key_id(&self) -> InitialKeyId {
        let mut bytes = [0_u8; INITIAL_KEY_ID_LEN];
        bytes.copy_from_slice(&self.0[..INITIAL_KEY_ID_LEN]);
        InitialKeyId(bytes)
    }

    /// The 32-bit transaction counter.
    pub fn counter(&self) -> u32 {
        u32::from_be_bytes([self.0[8], self.0[9], self.0[10], self.0[11]])
    }

    /// The same device with another counter.
    pub fn with_counter(&self, counter: u32) -> Self {
        self.initial_key_id().ksn(counter)
    }

    /// Whether the counter may be used for a transaction: not zero, at most 16 one-bits.
    pub fn is_valid_for_transaction(&self) -> bool {
        is_valid_counter(self.counter())
    }

    /// Fails with [`CryptoError::OutOfRange`] unless the counter may be used for a transaction.
    pub fn check_transaction(&self) -> Result<(), CryptoError> {
        let counter = self.counter();
        let what = "AES DUKPT transaction counter";
        if counter == 0 {
            return Err(CryptoError::OutOfRange {
                what,
                reason: "counter 0 is not a transaction".into(),
            });
        }
        if counter.count_ones() > MAX_COUNTER_ONE_BITS {
            return Err(CryptoError::OutOfRange {
                what,
                reason: format!(
                    "{counter:#010X} has {} one-bits; at most 16 allowed",
                    counter.count_ones()
                ),
            });
        }
        Ok(())
    }

    /// The KSN of the device's next transaction (counters with more than 16 one-bits skipped).
    /// Fails with [`CryptoError::Exhausted`] after the last counter ([`LAST_COUNTER`]).
    pub fn next(&self) -> Result<Self, CryptoError> {
        next_counter(self.counter())
            .map(|counter| self.with_counter(counter))
            .ok_or_else(exhausted)
    }
}

impl fmt::Display for Ksn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Ksn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ksn({})", self.to_hex())
    }
}

impl std::str::FromStr for Ksn {
    type Err = CryptoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

/// Whether a transaction counter may be used: not zero, at most 16 one-bits.
pub fn is_valid_counter(counter: u32) -> bool {
    counter != 0 && counter.count_ones() <= MAX_COUNTER_ONE_BITS
}

/// The counter a device uses after `counter`: plus one while it has fewer than 16 one-bits,
/// otherwise plus its lowest one-bit. `None` past `0xFFFF0000` (the device is exhausted).
pub fn next_counter(counter: u32) -> Option<u32> {
    if counter == 0 || counter.count_ones() < MAX_COUNTER_ONE_BITS {
        counter.checked_add(1)
    } else {
        counter.checked_add(1 << counter.trailing_zeros())
    }
}

/// The device (or KSN sequence) has used its last counter, `0xFFFF0000`.
fn exhausted() -> CryptoError {
    CryptoError::Exhausted("AES DUKPT device")
}

/// The 16-byte derivation data of X9.24-3-2017 for key block 1: `01` ‖ key block counter
/// `01` ‖ key usage indicator ‖ algorithm indicator ‖ length in bits ‖ (the initial key ID for
/// [`KeyUsage::KeyDerivationInitialKey`], otherwise the derivation ID ‖ `counter`). Longer keys
/// use the same data with the key block counter 2 for their second block.
pub fn derivation_data(
    usage: KeyUsage,
    key_type: KeyType,
    initial_key_id: &InitialKeyId,
    counter: u32,
) -> [u8; 16] {
    let mut data = [0_u8; 16];
    data[0] = 0x01;
    data[1] = 0x01;
    data[2..4].copy_from_slice(&usage.indicator().to_be_bytes());
    data[4..6].copy_from_slice(&key_type.algorithm_indicator().to_be_bytes());
    data[6..8].copy_from_slice(&key_type.length_bits().to_be_bytes());
    if usage == KeyUsage::KeyDerivationInitialKey {
        data[8..].copy_from_slice(initial_key_id.as_bytes());
    } else {
        data[8..12].copy_from_slice(&initial_key_id.derivation_id());
        data[12..].copy_from_slice(&counter.to_be_bytes());
    }
    data
}

/// SP 800-108 counter mode with AES-ECB: one encryption of the derivation data per 128 bits
/// of output, key block counter 1, 2, …; truncated to the key length.
fn derive(
    derivation_key: &[u8],
    usage: KeyUsage,
    key_type: KeyType,
    initial_key_id: &InitialKeyId,
    counter: u32,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut data = derivation_data(usage, key_type, initial_key_id, counter);
    let length = key_type.key_len();
    let mut out = Zeroizing::new(Vec::with_capacity(length.div_ceil(AES_BLOCK) * AES_BLOCK));
    for block in 1..=length.div_ceil(AES_BLOCK) {
        data[1] = block as u8;
        let encrypted = Zeroizing::new(aes_encrypt_ecb(derivation_key, &data)?);
        out.extend_from_slice(&encrypted);
    }
    out.truncate(length);
    Ok(out)
}

fn aes_key<'a>(
    what: &'static str,
    key: &'a SecretBytes,
) -> Result<(&'a [u8], KeyType), CryptoError> {
    match KeyType::aes_for_len(key.len()) {
        Ok(key_type) => Ok((key.expose(), key_type)),
        Err(_) => Err(CryptoError::InvalidLength {
            what,
            expected: "16, 24 or 32 bytes (AES)",
            actual: key.len(),
        }),
    }
}

/// The initial key of a device from the BDK (AES-128/192/256; the initial key has the BDK's
/// type), by the "key derivation, initial key" usage over the initial key ID.
pub fn derive_initial_key(
    bdk: &SecretBytes,
    initial_key_id: &InitialKeyId,
) -> Result<SecretBytes, CryptoError> {
    let (bdk, bdk_type) = aes_key("AES DUKPT BDK", bdk)?;
    let key = derive(
        bdk,
        KeyUsage::KeyDerivationInitialKey,
        bdk_type,
        initial_key_id,
        0,
    )?;
    Ok(SecretBytes::from_slice(&key))
}

/// The intermediate derivation key for `counter`, walked from the initial key over the
/// counter's one-bits from the left (the initial key itself for counter 0).
fn derivation_key_for_counter(
    initial_key: &[u8],
    key_type: KeyType,
    initial_key_id: &InitialKeyId,
    counter: u32,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut key = Zeroizing::new(initial_key.to_vec());
    let mut reached = 0_u32;
    let mut bit = 1_u32 << 31;
    while bit != 0 {
        if counter & bit != 0 {
            reached |= bit;
            key = derive(
                &key,
                KeyUsage::KeyDerivation,
                key_type,
                initial_key_id,
                reached,
            )?;
        }
        bit >>= 1;
    }
    Ok(key)
}

/// Host side: the intermediate derivation key of transaction `ksn` (the key a device holds for
/// that transaction and derives its working keys from). Fails with
/// [`CryptoError::OutOfRange`] for counter 0 or more than 16 one-bits.
pub fn derivation_key(initial_key: &SecretBytes, ksn: &Ksn) -> Result<SecretBytes, CryptoError> {
    ksn.check_transaction()?;
    let (initial_key, key_type) = aes_key("AES DUKPT initial key", initial_key)?;
    let key =
        derivation_key_for_counter(initial_key, key_type, &ksn.initial_key_id(), ksn.counter())?;
    Ok(SecretBytes::from_slice(&key))
}

/// The transaction counter of the DUKPT update key (all 32 bits set).
pub const UPDATE_KEY_COUNTER: u32 = 0xFFFF_FFFF;

/// **Host side only.** The intermediate derivation key for any 32-bit transaction counter,
/// including counters with more than 16 one-bits (which a device never uses) and
/// [`UPDATE_KEY_COUNTER`]; counter 0 gives the initial key itself.
///
/// This is the standard's host algorithm (X9.24-3-2017, 6.1 and 6.3.1): starting from the
/// initial key, one "key derivation" (`8000`) step per one-bit of the counter, from the most
/// significant bit down. The 16-one-bit limit is a device rule and is not applied here; a KSN
/// received from a device must still be checked with [`Ksn::check_transaction`] (as
/// [`derivation_key`] does) before it is used for a transaction.
pub fn host_derivation_key_any_counter(
    initial_key: &SecretBytes,
    ksn: &Ksn,
) -> Result<SecretBytes, CryptoError> {
    let (initial_key, key_type) = aes_key("AES DUKPT initial key", initial_key)?;
    let key =
        derivation_key_for_counter(initial_key, key_type, &ksn.initial_key_id(), ksn.counter())?;
    Ok(SecretBytes::from_slice(&key))
}

/// **Host side only** (the receiving or key-generating SCD). The DUKPT update key of a device
/// (X9.24-3-2017, 6.5.2 and 6.5.3): the intermediate derivation key for transaction counter
/// [`UPDATE_KEY_COUNTER`] (`FFFFFFFF`), from which a key of `key_type` is derived with the
/// "key encryption key" usage (`0002`) over the derivation ID and counter `FFFFFFFF`.
///
/// `key_type` must be AES and no stronger than the initial key (working keys are as strong as
/// or weaker than the key they come from); otherwise [`CryptoError::OutOfRange`].
pub fn update_key(
    initial_key: &SecretBytes,
    initial_key_id: &InitialKeyId,
    key_type: KeyType,
) -> Result<SecretBytes, CryptoError> {
    let (ik, ik_type) = aes_key("AES DUKPT initial key", initial_key)?;
    if matches!(key_type, KeyType::Tdes2 | KeyType::Tdes3) || key_type.key_len() > ik.len() {
        return Err(CryptoError::OutOfRange {
            what: "AES DUKPT update key type",
            reason: format!(
                "{key_type:?} is not an AES key type no stronger than the {ik_type:?} initial key"
            ),
        });
    }
    let derivation_key =
        derivation_key_for_counter(ik, ik_type, initial_key_id, UPDATE_KEY_COUNTER)?;
    let key = derive(
        &derivation_key,
        KeyUsage::KeyEncryptionKey,
        key_type,
        initial_key_id,
        UPDATE_KEY_COUNTER,
    )?;
    Ok(SecretBytes::from_slice(&key))
}

/// **Host side only.** [`derive_initial_key`] then [`update_key`].
pub fn host_update_key(
    bdk: &SecretBytes,
    initial_key_id: &InitialKeyId,
    key_type: KeyType,
) -> Result<SecretBytes, CryptoError> {
    update_key(
        &derive_initial_key(bdk, initial_key_id)?,
        initial_key_id,
        key_type,
    )
}

/// The working key of `key_type` for `usage` from a transaction's intermediate derivation key.
pub fn working_key_from_derivation_key(
    derivation_key: &SecretBytes,
    ksn: &Ksn,
    usage: KeyUsage,
    key_type: KeyType,
) -> Result<SecretBytes, CryptoError> {
    ksn.check_transaction()?;
    let (derivation_key, _) = aes_key("AES DUKPT derivation key", derivation_key)?;
    let key = derive(
        derivation_key,
        usage,
        key_type,
        &ksn.initial_key_id(),
        ksn.counter(),
    )?;
    Ok(SecretBytes::from_slice(&key))
}

/// Host side from the initial key: the working key of `key_type` for `usage` of `ksn`.
pub fn working_key(
    initial_key: &SecretBytes,
    ksn: &Ksn,
    usage: KeyUsage,
    key_type: KeyType,
) -> Result<SecretBytes, CryptoError> {
    working_key_from_derivation_key(&derivation_key(initial_key, ksn)?, ksn, usage, key_type)
}

/// Host side from the BDK: [`derive_initial_key`] then [`working_key`].
pub fn host_working_key(
    bdk: &SecretBytes,
    ksn: &Ksn,
    usage: KeyUsage,
    key_type: KeyType,
) -> Result<SecretBytes, CryptoError> {
    ksn.check_transaction()?;
    working_key(
        &derive_initial_key(bdk, &ksn.initial_key_id())?,
        ksn,
        usage,
        key_type,
    )
}

/// One transaction of a [`Device`]: its KSN and intermediate derivation key.
#[derive(Clone, Debug)]
pub struct Transaction {
    ksn: Ksn,
    derivation_key: SecretBytes,
}

impl Transaction {
    /// The KSN to send with this transaction.
    pub fn ksn(&self) -> Ksn {
        self.ksn
    }

    /// The intermediate derivation key of this transaction.
    pub fn derivation_key(&self) -> &SecretBytes {
        &self.derivation_key
    }

    /// A working key of this transaction.
    pub fn working_key(
        &self,
        usage: KeyUsage,
        key_type: KeyType,
    ) -> Result<SecretBytes, CryptoError> {
        working_key_from_derivation_key(&self.derivation_key, &self.ksn, usage, key_type)
    }
}

/// Device side of AES DUKPT (a simulated PIN entry device): 32 intermediate derivation key
/// registers, one per counter bit, and the transaction counter.
///
/// Register `i` holds the intermediate derivation key of the next counter whose lowest one-bit
/// is bit `i`. Each transaction uses the register of its counter's lowest one-bit, derives the
/// registers to its right from it (unless the counter already has 16 one-bits), erases it and
/// advances the counter. The initial key is not kept. `Debug` shows no key bytes.
#[derive(Clone, Debug)]
pub struct Device {
    initial_key_id: InitialKeyId,
    key_type: KeyType,
    counter: u32,
    registers: Vec<Option<SecretBytes>>,
    exhausted: bool,
}

impl Device {
    /// Loads the initial key: derives the intermediate derivation key for every counter with a
    /// single one-bit, then discards the initial key; the first transaction uses counter 1.
    pub fn load_initial_key(
        initial_key: &SecretBytes,
        initial_key_id: &InitialKeyId,
    ) -> Result<Self, CryptoError> {
        let (initial_key, key_type) = aes_key("AES DUKPT initial key", initial_key)?;
        let mut registers = Vec::with_capacity(NUM_REGISTERS);
        for bit in 0..NUM_REGISTERS {
            let key = derive(
                initial_key,
                KeyUsage::KeyDerivation,
                key_type,
                initial_key_id,
                1 << bit,
            )?;
            registers.push(Some(SecretBytes::from_slice(&key)));
        }
        Ok(Self {
            initial_key_id: *initial_key_id,
            key_type,
            counter: 1,
            registers,
            exhausted: false,
        })
    }

    /// A device in the state it has just before transaction `ksn`, as if it had run every
    /// earlier transaction (for simulators that persist only the KSN). Fails with
    /// [`CryptoError::OutOfRange`] if `ksn`'s counter is not valid for a transaction.
    pub fn resume(initial_key: &SecretBytes, ksn: &Ksn) -> Result<Self, CryptoError> {
        ksn.check_transaction()?;
        let (initial_key, key_type) = aes_key("AES DUKPT initial key", initial_key)?;
        let initial_key_id = ksn.initial_key_id();
        let counter = ksn.counter();
        let lowest = counter.trailing_zeros();
        let mut registers = vec![None; NUM_REGISTERS];
        for (bit, register) in registers.iter_mut().enumerate() {
            let bit = bit as u32;
            let target = if bit == lowest {
                counter
            } else if bit > lowest && counter & (1 << bit) == 0 {
                let above = if bit == 31 {
                    0
                } else {
                    counter >> (bit + 1) << (bit + 1)
                };
                above | (1 << bit)
            } else {
                continue;
            };
            if target.count_ones() <= MAX_COUNTER_ONE_BITS {
                let key =
                    derivation_key_for_counter(initial_key, key_type, &initial_key_id, target)?;
                *register = Some(SecretBytes::from_slice(&key));
            }
        }
        Ok(Self {
            initial_key_id,
            key_type,
            counter,
            registers,
            exhausted: false,
        })
    }

    /// The KSN the next transaction will use. Fails with [`CryptoError::Exhausted`] once the
    /// device is exhausted.
    pub fn current_ksn(&self) -> Result<Ksn, CryptoError> {
        if self.exhausted {
            return Err(exhausted());
        }
        Ok(self.initial_key_id.ksn(self.counter))
    }

    /// The transaction counter of the next transaction (meaningless once exhausted).
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The type of the device's initial and intermediate derivation keys.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Whether the device has used its last counter (`0xFFFF0000`) and must cease operation.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Starts the next transaction: returns its KSN and intermediate derivation key, then
    /// updates the registers and advances the counter. Fails with [`CryptoError::Exhausted`]
    /// once the device is exhausted.
    pub fn next_transaction(&mut self) -> Result<Transaction, CryptoError> {
        let ksn = self.current_ksn()?;
        let counter = self.counter;
        let lowest = counter.trailing_zeros() as usize;
        let current = self
            .registers
            .get_mut(lowest)
            .and_then(Option::take)
            .ok_or_else(|| CryptoError::OutOfRange {
                what: "AES DUKPT intermediate derivation key register",
                reason: format!("register for bit {lowest} is empty at counter {counter:#010X}"),
            })?;
        if counter.count_ones() < MAX_COUNTER_ONE_BITS {
            for bit in 0..lowest {
                let key = derive(
                    current.expose(),
                    KeyUsage::KeyDerivation,
                    self.key_type,
                    &self.initial_key_id,
                    counter | 1 << bit,
                )?;
                self.registers[bit] = Some(SecretBytes::from_slice(&key));
            }
        }
        match next_counter(counter) {
            Some(next) => self.counter = next,
            None => self.exhausted = true,
        }
        Ok(Transaction {
            ksn,
            derivation_key: current,
        })
    }
}
