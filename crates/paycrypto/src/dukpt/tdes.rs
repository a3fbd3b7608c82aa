//! TDES DUKPT (ANSI X9.24-1:2009).
//!
//! * [`Ksn`]: the 10-byte key serial number; its rightmost 21 bits are the transaction counter.
//! * Host side ("transaction receiving"): [`derive_ipek`] (initial PIN encryption key from the
//!   BDK), [`transaction_key`] (the non-reversible key generation process walked over the
//!   counter's one-bits), [`working_key`] (PIN, MAC request/response and data
//!   request/response variants; data keys with or without the X9.24-1:2009 one-way function).
//! * Device side ("transaction originating"): [`Device`], the 21 future-key registers and the
//!   "new key" process, producing the same keys as the host for every transaction and refusing
//!   to work past the end of its life (counter `0x1FF800`).
//!
//! Keys are double-length TDES (16 bytes) throughout, as X9.24-1:2009 specifies.

use std::fmt;

use zeroize::Zeroizing;

use crate::primitives::{des_encrypt_block, tdes_encrypt_ecb, xor_in_place};
use crate::{CryptoError, SecretBytes};

/// Length of a KSN in bytes.
pub const KSN_LEN: usize = 10;
/// Number of transaction counter bits at the right of the KSN.
pub const COUNTER_BITS: u32 = 21;
/// Mask of the transaction counter bits.
pub const COUNTER_MASK: u32 = (1 << COUNTER_BITS) - 1;
/// A transaction counter may have at most this many one-bits.
pub const MAX_COUNTER_ONE_BITS: u32 = 10;
/// The last transaction counter a device uses (ten one-bits, the highest valid value).
pub const LAST_COUNTER: u32 = 0x1F_F800;
/// Length of every DUKPT key here (double-length TDES).
pub const KEY_LEN: usize = 16;

/// The key mask of the IPEK derivation and of the non-reversible key generation process.
const KEY_MASK: [u8; KEY_LEN] = [
    0xC0, 0xC0, 0xC0, 0xC0, 0x00, 0x00, 0x00, 0x00, 0xC0, 0xC0, 0xC0, 0xC0, 0x00, 0x00, 0x00, 0x00,
];

/// A TDES DUKPT key serial number: 59 bits of key set identifier and device ID, then a 21-bit
/// transaction counter. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ksn([u8; KSN_LEN]);

impl Ksn {
    /// Takes 10 bytes; any counter value is accepted here (see [`Ksn::check_transaction`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; KSN_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "TDES DUKPT KSN",
            expected: "10 bytes (20 hex digits)",
            actual: bytes.len(),
        })?;
        Ok(Self(array))
    }

    /// Parses 20 hex digits (either case, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| CryptoError::InvalidHex("TDES DUKPT KSN"))?;
        Self::from_bytes(&bytes)
    }

    /// The 10 bytes.
    pub fn as_bytes(&self) -> &[u8; KSN_LEN] {
        &self.0
    }

    /// Upper-case hex (20 digits).
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// The 21-bit transaction counter.
    pub fn counter(&self) -> u32 {
        (u32::from(self.0[7]) << 16 | u32::from(self.0[8]) << 8 | u32::from(self.0[9]))
            & COUNTER_MASK
    }

    /// The same KSN with the counter set to zero (the initial KSN loaded with the IPEK).
    pub fn initial(&self) -> Self {
        self.with_counter_unchecked(0)
    }

    /// The same key set and device with another counter. Fails with
    /// [`CryptoError::OutOfRange`] if `counter` does not fit in 21 bits (its one-bits are not
    /// checked here).
    pub fn with_counter(&self, counter: u32) -> Result<Self, CryptoError> {
        if counter > COUNTER_MASK {
            return Err(CryptoError::OutOfRange {
                what: "TDES DUKPT transaction counter",
                reason: format!("{counter:#X} does not fit in 21 bits"),
            });
        }
        Ok(self.with_counter_unchecked(counter))
    }

    fn with_counter_unchecked(&self, counter: u32) -> Self {
        let mut bytes = self.0;
        let counter = counter & COUNTER_MASK;
        bytes[7] = (bytes[7] & 0xE0) | (counter >> 16) as u8;
        bytes[8] = (counter >> 8) as u8;
        bytes[9] = counter as u8;
        Self(bytes)
    }

    /// Whether the counter may be used for a transaction: not zero and at most ten one-bits.
    pub fn is_valid_for_transaction(&self) -> bool {
        is_valid_counter(self.counter())
    }

    /// Fails with [`CryptoError::OutOfRange`] unless the counter may be used for a transaction
    /// (counter 0 is the initial KSN; more than ten one-bits is never produced by a device).
    pub fn check_transaction(&self) -> Result<(), CryptoError> {
        check_counter(self.counter())
    }

    /// The KSN of the device's next transaction after this one (counters with more than ten
    /// one-bits are skipped). Fails with [`CryptoError::Exhausted`] after the last counter
    /// ([`LAST_COUNTER`]).
    pub fn next(&self) -> Result<Self, CryptoError> {
        next_counter(self.counter())
            .map(|counter| self.with_counter_unchecked(counter))
            .ok_or_else(exhausted)
    }

    /// The rightmost 8 bytes with the counter replaced (the "KSN register" of the standard).
    fn register(&self, counter: u32) -> [u8; 8] {
        let full = self.with_counter_unchecked(counter).0;
        let mut out = [0_u8; 8];
        out.copy_from_slice(&full[2..]);
        out
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

/// Whether a transaction counter may be used: 21 bits, not zero, at most ten one-bits.
pub fn is_valid_counter(counter: u32) -> bool {
    counter != 0 && counter <= COUNTER_MASK && counter.count_ones() <= MAX_COUNTER_ONE_BITS
}

fn check_counter(counter: u32) -> Result<(), CryptoError> {
    let what = "TDES DUKPT transaction counter";
    if counter == 0 {
        return Err(CryptoError::OutOfRange {
            what,
            reason: "counter 0 is the initial KSN, not a transaction".into(),
        });
    }
    if counter > COUNTER_MASK {
        return Err(CryptoError::OutOfRange {
            what,
            reason: format!("{counter:#X} does not fit in 21 bits"),
        });
    }
    if counter.count_ones() > MAX_COUNTER_ONE_BITS {
        return Err(CryptoError::OutOfRange {
            what,
            reason: format!(
                "{counter:#07X} has {} one-bits; at most 10 allowed",
                counter.count_ones()
            ),
        });
    }
    Ok(())
}

/// The counter a device uses after `counter`: plus one while it has fewer than ten one-bits,
/// otherwise plus its lowest one-bit (skipping counters with more than ten one-bits). `None`
/// when that leaves 21 bits (the device is exhausted).
pub fn next_counter(counter: u32) -> Option<u32> {
    let next = if counter == 0 || counter.count_ones() < MAX_COUNTER_ONE_BITS {
        counter.checked_add(1)?
    } else {
        counter.checked_add(1 << counter.trailing_zeros())?
    };
    (next <= COUNTER_MASK).then_some(next)
}

/// The device (or KSN sequence) has used its last counter, `0x1FF800`.
fn exhausted() -> CryptoError {
    CryptoError::Exhausted("TDES DUKPT device")
}

/// What a working key is for; each selects an X9.24-1:2009 variant mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// PIN encryption: variant `00000000000000FF 00000000000000FF`.
    PinEncryption,
    /// MAC, request (device to host): variant `000000000000FF00 000000000000FF00`.
    MacRequest,
    /// MAC, response (host to device): variant `00000000FF000000 00000000FF000000`.
    MacResponse,
    /// Data encryption, request: variant `0000000000FF0000 0000000000FF0000`.
    DataRequest,
    /// Data encryption, response: variant `000000FF00000000 000000FF00000000`.
    DataResponse,
}

impl KeyUsage {
    /// Every usage, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::PinEncryption,
        Self::MacRequest,
        Self::MacResponse,
        Self::DataRequest,
        Self::DataResponse,
    ];

    /// The 16-byte variant mask XORed into the transaction key.
    pub fn variant_mask(self) -> [u8; KEY_LEN] {
        let position = match self {
            Self::PinEncryption => 7,
            Self::MacRequest => 6,
            Self::MacResponse => 4,
            Self::DataRequest => 5,
            Self::DataResponse => 3,
        };
        let mut mask = [0_u8; KEY_LEN];
        mask[position] = 0xFF;
        mask[position + 8] = 0xFF;
        mask
    }

    fn is_data(self) -> bool {
        matches!(self, Self::DataRequest | Self::DataResponse)
    }
}

/// How a data encryption key is finished after its variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DataKeyDerivation {
    /// ANSI X9.24-1:2009: the variant key encrypts its own left and right halves (TDES-ECB)
    /// and the result is the data key.
    #[default]
    OneWay,
    /// The bare variant (older ANSI X9.24-1:2004 practice, still used by some readers).
    VariantOnly,
}

fn key16(what: &'static str, key: &SecretBytes) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut out = Zeroizing::new([0_u8; KEY_LEN]);
    if key.len() != KEY_LEN {
        return Err(CryptoError::InvalidLength {
            what,
            expected: "16 bytes (double-length TDES)",
            actual: key.len(),
        });
    }
    out.copy_from_slice(key.expose());
    Ok(out)
}

fn xor_mask(key: &[u8; KEY_LEN], mask: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new(*key);
    xor_in_place(out.as_mut_slice(), mask);
    out
}

/// One half of the non-reversible key generation process: `DES(left, data ⊕ right) ⊕ right`.
fn half_step(key: &[u8; KEY_LEN], data: &[u8; 8]) -> [u8; 8] {
    let mut left = Zeroizing::new([0_u8; 8]);
    let mut right = Zeroizing::new([0_u8; 8]);
    left.copy_from_slice(&key[..8]);
    right.copy_from_slice(&key[8..]);
    let mut block = *data;
    xor_in_place(&mut block, right.as_slice());
    let mut out = des_encrypt_block(&left, &block);
    xor_in_place(&mut out, right.as_slice());
    out
}

/// The non-reversible key generation process of X9.24-1:2009 (A.2): the new key's right half
/// from the current key, its left half from the current key XOR `C0C0C0C000000000…`.
fn non_reversible_key_generation(
    key: &[u8; KEY_LEN],
    ksn_register: &[u8; 8],
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0_u8; KEY_LEN]);
    let right = half_step(key, ksn_register);
    let masked = xor_mask(key, &KEY_MASK);
    let left = half_step(&masked, ksn_register);
    out[..8].copy_from_slice(&left);
    out[8..].copy_from_slice(&right);
    out
}

/// The initial PIN encryption key (IPEK, "initial key") for the device of `ksn`, from the
/// double-length BDK. The counter bits of `ksn` are ignored (cleared), as in the standard.
pub fn derive_ipek(bdk: &SecretBytes, ksn: &Ksn) -> Result<SecretBytes, CryptoError> {
    let bdk = key16("TDES DUKPT BDK", bdk)?;
    let initial = ksn.initial();
    let data = &initial.as_bytes()[..8];
    let left = tdes_encrypt_ecb(bdk.as_slice(), data)?;
    let masked = xor_mask(&bdk, &KEY_MASK);
    let right = tdes_encrypt_ecb(masked.as_slice(), data)?;
    let mut ipek = Vec::with_capacity(KEY_LEN);
    ipek.extend_from_slice(&left);
    ipek.extend_from_slice(&right);
    Ok(SecretBytes::new(ipek))
}

/// Host side: the transaction key ("current key", before any variant) of `ksn` from the IPEK,
/// running the non-reversible key generation process for each one-bit of the counter from the
/// left. Fails with [`CryptoError::OutOfRange`] for counter 0 or more than ten one-bits.
pub fn transaction_key(ipek: &SecretBytes, ksn: &Ksn) -> Result<SecretBytes, CryptoError> {
    ksn.check_transaction()?;
    let ipek = key16("TDES DUKPT IPEK", ipek)?;
    let key = key_for_counter(&ipek, ksn, ksn.counter());
    Ok(SecretBytes::from_slice(key.as_slice()))
}

/// The key the non-reversible process reaches for `counter` (IPEK for 0).
fn key_for_counter(ipek: &[u8; KEY_LEN], ksn: &Ksn, counter: u32) -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new(*ipek);
    let mut reached = 0_u32;
    let mut bit = 1_u32 << (COUNTER_BITS - 1);
    while bit != 0 {
        if counter & bit != 0 {
            reached |= bit;
            key = non_reversible_key_generation(&key, &ksn.register(reached));
        }
        bit >>= 1;
    }
    key
}

/// Host side from the BDK: [`derive_ipek`] then [`transaction_key`].
pub fn transaction_key_from_bdk(bdk: &SecretBytes, ksn: &Ksn) -> Result<SecretBytes, CryptoError> {
    ksn.check_transaction()?;
    transaction_key(&derive_ipek(bdk, ksn)?, ksn)
}

/// The bare variant: the transaction key XOR the usage's variant mask (for data usages this is
/// [`DataKeyDerivation::VariantOnly`]).
pub fn variant_key(
    transaction_key: &SecretBytes,
    usage: KeyUsage,
) -> Result<SecretBytes, CryptoError> {
    let key = key16("TDES DUKPT transaction key", transaction_key)?;
    Ok(SecretBytes::from_slice(
        xor_mask(&key, &usage.variant_mask()).as_slice(),
    ))
}

/// The working key for `usage` from a transaction key. PIN and MAC keys are the variant; data
/// keys are the variant, then, with [`DataKeyDerivation::OneWay`], the X9.24-1:2009 one-way
/// function (the variant key TDES-encrypts its own two halves).
pub fn working_key(
    transaction_key: &SecretBytes,
    usage: KeyUsage,
    data: DataKeyDerivation,
) -> Result<SecretBytes, CryptoError> {
    let variant = variant_key(transaction_key, usage)?;
    if usage.is_data() && data == DataKeyDerivation::OneWay {
        let one_way = Zeroizing::new(tdes_encrypt_ecb(variant.expose(), variant.expose())?);
        return Ok(SecretBytes::from_slice(&one_way));
    }
    Ok(variant)
}

/// Host side, all in one: the working key for `usage` of transaction `ksn` under `bdk`.
pub fn host_working_key(
    bdk: &SecretBytes,
    ksn: &Ksn,
    usage: KeyUsage,
    data: DataKeyDerivation,
) -> Result<SecretBytes, CryptoError> {
    working_key(&transaction_key_from_bdk(bdk, ksn)?, usage, data)
}

/// One transaction of a [`Device`]: its KSN (sent with the message) and its transaction key.
#[derive(Clone, Debug)]
pub struct Transaction {
    ksn: Ksn,
    key: SecretBytes,
}

impl Transaction {
    /// The KSN to send with this transaction.
    pub fn ksn(&self) -> Ksn {
        self.ksn
    }

    /// The transaction key (before any variant).
    pub fn transaction_key(&self) -> &SecretBytes {
        &self.key
    }

    /// The working key for `usage` (see [`working_key`]).
    pub fn working_key(
        &self,
        usage: KeyUsage,
        data: DataKeyDerivation,
    ) -> Result<SecretBytes, CryptoError> {
        working_key(&self.key, usage, data)
    }
}

/// Device side of TDES DUKPT (a simulated PIN entry device): 21 future-key registers, one per
/// counter bit, and the encryption counter.
///
/// Register `i` (bit `1 << i`; the standard numbers them from the left, #1 = bit 20) holds the
/// key for the next counter that has bit `i` as its lowest one-bit. Each transaction uses the
/// register of the counter's lowest one-bit, then the "new key" process derives the registers
/// to its right from it (unless the counter already has ten one-bits), erases it and advances
/// the counter. The IPEK is not kept. `Debug` shows no key bytes.
#[derive(Clone, Debug)]
pub struct Device {
    initial_ksn: Ksn,
    counter: u32,
    registers: Vec<Option<SecretBytes>>,
    exhausted: bool,
}

impl Device {
    /// "Load initial key": stores the future keys derived from the IPEK for every counter with
    /// a single one-bit, then discards the IPEK; the first transaction uses counter 1. The
    /// counter bits of `initial_ksn` are ignored.
    pub fn load_initial_key(ipek: &SecretBytes, initial_ksn: &Ksn) -> Result<Self, CryptoError> {
        let ipek = key16("TDES DUKPT IPEK", ipek)?;
        let initial_ksn = initial_ksn.initial();
        let mut registers = vec![None; COUNTER_BITS as usize];
        for (bit, register) in registers.iter_mut().enumerate() {
            let key = non_reversible_key_generation(&ipek, &initial_ksn.register(1 << bit));
            *register = Some(SecretBytes::from_slice(key.as_slice()));
        }
        Ok(Self {
            initial_ksn,
            counter: 1,
            registers,
            exhausted: false,
        })
    }

    /// A device in the state it has just before the transaction `ksn` (as if it had run every
    /// earlier transaction since [`Device::load_initial_key`]). For simulators that persist
    /// only the KSN. Fails with [`CryptoError::OutOfRange`] if `ksn`'s counter is not valid for
    /// a transaction.
    pub fn resume(ipek: &SecretBytes, ksn: &Ksn) -> Result<Self, CryptoError> {
        ksn.check_transaction()?;
        let ipek = key16("TDES DUKPT IPEK", ipek)?;
        let counter = ksn.counter();
        let lowest = counter.trailing_zeros();
        let mut registers = vec![None; COUNTER_BITS as usize];
        for (bit, register) in registers.iter_mut().enumerate() {
            let bit = bit as u32;
            let target = if bit == lowest {
                counter
            } else if bit > lowest && counter & (1 << bit) == 0 {
                (counter >> (bit + 1) << (bit + 1)) | (1 << bit)
            } else {
                continue;
            };
            if target.count_ones() <= MAX_COUNTER_ONE_BITS {
                *register = Some(SecretBytes::from_slice(
                    key_for_counter(&ipek, ksn, target).as_slice(),
                ));
            }
        }
        Ok(Self {
            initial_ksn: ksn.initial(),
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
        Ok(self.initial_ksn.with_counter_unchecked(self.counter))
    }

    /// The encryption counter of the next transaction (meaningless once exhausted).
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// Whether the device has used its last counter (`0x1FF800`) and must cease operation.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Starts the next transaction: returns its KSN and transaction key, then runs the "new
    /// key" process (future keys for the lower registers, erase the current register, advance
    /// the counter). Fails with [`CryptoError::Exhausted`] once the device is exhausted.
    pub fn next_transaction(&mut self) -> Result<Transaction, CryptoError> {
        let ksn = self.current_ksn()?;
        let counter = self.counter;
        let lowest = counter.trailing_zeros() as usize;
        let current = self
            .registers
            .get_mut(lowest)
            .and_then(Option::take)
            .ok_or_else(|| CryptoError::OutOfRange {
                what: "TDES DUKPT future key register",
                reason: format!("register for bit {lowest} is empty at counter {counter:#07X}"),
            })?;
        let current_key = key16("TDES DUKPT future key", &current)?;
        if counter.count_ones() < MAX_COUNTER_ONE_BITS {
            for bit in 0..lowest {
                let key = non_reversible_key_generation(
                    &current_key,
                    &self.initial_ksn.register(counter | 1 << bit),
                );
                self.registers[bit] = Some(SecretBytes::from_slice(key.as_slice()));
            }
        }
        match next_counter(counter) {
            Some(next) => self.counter = next,
            None => self.exhausted = true,
        }
        Ok(Transaction { ksn, key: current })
    }
}
