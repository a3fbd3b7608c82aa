//! The token: a logged-in session pool and the key and data operations.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::mechanism::ekdf::AesCbcDeriveParams;
use cryptoki::mechanism::misc::KeyDerivationStringData;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use paycrypto::SecretBytes;
use paycrypto::kcv::{Kcv, KcvMethod};
use paycrypto::mac::Padding;
use secrecy::SecretString;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::config::Pkcs11Config;
use crate::error::{key_op_error, rv_of};
use crate::key::{KeyFamily, KeyInfo, KeyKind, KeyUses, check_id, check_label};
use crate::{Error, module};

/// Block cipher mode for [`Token::encrypt`] and [`Token::decrypt`]. No padding: data must be a
/// non-empty multiple of the block size (8 for TDES, 16 for AES).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CipherMode {
    /// ECB (`CKM_DES3_ECB`, `CKM_AES_ECB`).
    Ecb,
    /// CBC with this IV (8 bytes for TDES, 16 for AES) (`CKM_DES3_CBC`, `CKM_AES_CBC`).
    Cbc(Vec<u8>),
}

/// MAC algorithms for [`Token::mac`] and [`Token::verify_mac`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacAlgorithm {
    /// AES-CMAC (`CKM_AES_CMAC`, NIST SP 800-38B / RFC 4493), 16-byte MAC; key needs SIGN
    /// (generate) or VERIFY (full-length verify).
    AesCmac,
    /// TDES-CMAC (`CKM_DES3_CMAC`). SoftHSM2 implements it, but the cryptoki 0.12 binding has no
    /// `MechanismType` for it and cannot build one, so this backend reports
    /// [`Error::Unsupported`]; see the crate docs.
    TdesCmac,
    /// HMAC-SHA-256 (`CKM_SHA256_HMAC`), 32-byte MAC, on an HMAC key.
    HmacSha256,
    /// ISO 9797-1 MAC algorithm 1 with TDES: CBC encryption (`CKM_DES3_CBC`, zero IV) of the
    /// padded data, last block. Computed by the token's *encryption* function, so the key needs
    /// ENCRYPT (a PKCS#11 token has no CBC-MAC mechanism for TDES).
    Iso9797Alg1(Padding),
}

impl MacAlgorithm {
    /// Untruncated MAC length in bytes.
    pub fn full_len(self) -> usize {
        match self {
            Self::AesCmac => 16,
            Self::TdesCmac | Self::Iso9797Alg1(_) => 8,
            Self::HmacSha256 => 32,
        }
    }
}

/// Wrapping mechanisms for [`Token::wrap_key`] and [`Token::unwrap_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WrapMechanism {
    /// AES key wrap (`CKM_AES_KEY_WRAP`, RFC 3394 / NIST SP 800-38F KW); key length a multiple
    /// of 8 bytes.
    AesKeyWrap,
    /// AES key wrap with padding (`CKM_AES_KEY_WRAP_PAD`, RFC 5649 / SP 800-38F KWP).
    AesKeyWrapPad,
    /// TDES-CBC encryption of the key value under a TDES KEK (`CKM_DES3_CBC`) with this 8-byte
    /// IV. SoftHSM2 2.6 flags the mechanism with `CKF_WRAP` but refuses it in `C_WrapKey` and
    /// `C_UnwrapKey` ([`Error::Unsupported`]); other tokens may accept it.
    Des3Cbc([u8; 8]),
    /// TDES-ECB encryption of the key value (`CKM_DES3_ECB`, the legacy payment form).
    /// SoftHSM2 refuses it for wrapping and unwrapping ([`Error::Unsupported`]).
    Des3Ecb,
}

/// Key derivation by encryption for [`Token::derive_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Derivation {
    /// `CKM_AES_CBC_ENCRYPT_DATA`: the new key's value is the AES-CBC encryption of `data` under
    /// the base key with `iv`. With a zero IV and one block of data it equals
    /// `CKM_AES_ECB_ENCRYPT_DATA`.
    AesCbcEncryptData {
        /// The IV.
        iv: [u8; 16],
        /// The data, a multiple of 16 bytes.
        data: Vec<u8>,
    },
    /// `CKM_AES_ECB_ENCRYPT_DATA`: offered by SoftHSM2, not expressible in cryptoki 0.12
    /// ([`Error::Unsupported`]).
    AesEcbEncryptData(Vec<u8>),
    /// `CKM_DES3_ECB_ENCRYPT_DATA`: offered by SoftHSM2, not expressible in cryptoki 0.12
    /// ([`Error::Unsupported`]).
    Des3EcbEncryptData(Vec<u8>),
    /// `CKM_XOR_BASE_AND_DATA`: the new key is base XOR data (what DUKPT and the key variants
    /// need). SoftHSM2 does not implement it ([`Error::Unsupported`] from the token).
    XorBaseAndData(Vec<u8>),
}

/// A key check value and the method the token could use for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCheck {
    /// The 3-byte KCV.
    pub kcv: Kcv,
    /// How it was computed.
    pub method: KcvMethod,
}

/// A logged-in PKCS#11 token. Cheap to clone (shared pool).
///
/// Every method is `async` and runs the blocking PKCS#11 call on
/// [`tokio::task::spawn_blocking`], so it never blocks the async runtime; a Tokio runtime must
/// be running. At most `sessions` calls run at once; further calls wait for a free session.
#[derive(Clone)]
pub struct Token {
    inner: Arc<Inner>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.inner.label)
            .field("slot", &self.inner.slot.id())
            .field("max_sessions", &self.inner.max_sessions)
            .finish()
    }
}

struct Inner {
    ctx: Pkcs11,
    module: std::path::PathBuf,
    slot: Slot,
    label: String,
    user_pin: SecretString,
    max_sessions: usize,
    pool: Mutex<Pool>,
    freed: Condvar,
    /// Key creation and destruction take it exclusively, everything else shared (see
    /// [`module::token_lock`]); it also closes the gap between the "id not yet used" check
    /// and the creation.
    lifecycle: Arc<RwLock<()>>,
}

struct Pool {
    idle: Vec<Session>,
    open: usize,
}

/// Return values after which a session is not put back into the pool.
fn session_is_broken(e: &Error) -> bool {
    matches!(e.rv(), Some(rv) if [
        "SessionHandleInvalid",
        "SessionClosed",
        "DeviceRemoved",
        "DeviceError",
        "TokenNotPresent",
        "UserNotLoggedIn",
    ]
    .contains(&rv))
}

impl Inner {
    fn open_session(&self) -> Result<Session, Error> {
        let session = self.ctx.open_rw_session(self.slot)?;
        match session.login(UserType::User, Some(&self.user_pin)) {
            Ok(()) => {
                module::remember_login(&self.module, self.slot, &self.user_pin);
                tracing::debug!(token = %self.label, "logged in");
            }
            Err(e) if rv_of(&e) == Some(RvError::UserAlreadyLoggedIn) => {
                if !module::same_login(&self.module, self.slot, &self.user_pin) {
                    return Err(Error::Login(
                        "token already logged in by this process with a different PIN".into(),
                    ));
                }
            }
            Err(e) => return Err(Error::Login(e.to_string())),
        }
        Ok(session)
    }

    fn acquire(&self) -> Result<Session, Error> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(session) = pool.idle.pop() {
                return Ok(session);
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                drop(pool);
                return self.open_session().inspect_err(|_| {
                    let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
                    pool.open -= 1;
                    self.freed.notify_one();
                });
            }
            pool = self
                .freed
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn release(&self, session: Session, keep: bool) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if keep {
            pool.idle.push(session);
        } else {
            pool.open -= 1;
            drop(session);
        }
        self.freed.notify_one();
    }

    /// Runs `f` on a pooled session while no key is being created or destroyed.
    fn with_session<R>(&self, f: impl FnOnce(&Session) -> Result<R, Error>) -> Result<R, Error> {
        let _shared = self
            .lifecycle
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.on_session(f)
    }

    /// Runs a key creation or destruction alone on the token.
    fn with_lifecycle<R>(&self, f: impl FnOnce(&Session) -> Result<R, Error>) -> Result<R, Error> {
        let _exclusive = self
            .lifecycle
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.on_session(f)
    }

    fn on_session<R>(&self, f: impl FnOnce(&Session) -> Result<R, Error>) -> Result<R, Error> {
        let session = self.acquire()?;
        let result = f(&session);
        let keep = !matches!(&result, Err(e) if session_is_broken(e));
        self.release(session, keep);
        result
    }
}

fn id_attr(id: &str) -> Attribute {
    Attribute::Id(id.as_bytes().to_vec())
}

fn find_key(s: &Session, id: &str) -> Result<ObjectHandle, Error> {
    check_id(id)?;
    let found = s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), id_attr(id)])?;
    match found.as_slice() {
        [] => Err(Error::KeyNotFound(id.to_owned())),
        [one] => Ok(*one),
        _ => Err(Error::AmbiguousKey(id.to_owned())),
    }
}

fn ensure_absent(s: &Session, id: &str) -> Result<(), Error> {
    match find_key(s, id) {
        Err(Error::KeyNotFound(_)) => Ok(()),
        Ok(_) | Err(Error::AmbiguousKey(_)) => Err(Error::KeyExists(id.to_owned())),
        Err(e) => Err(e),
    }
}

fn key_info(s: &Session, id: &str, key: ObjectHandle) -> Result<KeyInfo, Error> {
    let attrs = s.get_attributes(
        key,
        &[
            AttributeType::KeyType,
            AttributeType::ValueLen,
            AttributeType::Label,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Sign,
            AttributeType::Verify,
            AttributeType::Wrap,
            AttributeType::Unwrap,
            AttributeType::Derive,
            AttributeType::Extractable,
            AttributeType::Sensitive,
            AttributeType::Local,
        ],
    )?;
    let mut key_type = None;
    let mut value_len = None;
    let mut label = String::new();
    let mut uses = KeyUses::NONE;
    let (mut sensitive, mut extractable, mut local) = (false, false, false);
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::ValueLen(n) => value_len = Some(usize::from(n)),
            Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Encrypt(true) => uses |= KeyUses::ENCRYPT,
            Attribute::Decrypt(true) => uses |= KeyUses::DECRYPT,
            Attribute::Sign(true) => uses |= KeyUses::SIGN,
            Attribute::Verify(true) => uses |= KeyUses::VERIFY,
            Attribute::Wrap(true) => uses |= KeyUses::WRAP,
            Attribute::Unwrap(true) => uses |= KeyUses::UNWRAP,
            Attribute::Derive(true) => uses |= KeyUses::DERIVE,
            Attribute::Extractable(b) => {
                extractable = b;
                if b {
                    uses |= KeyUses::EXPORT;
                }
            }
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Local(b) => local = b,
            _ => {}
        }
    }
    let key_type = key_type.ok_or_else(|| Error::Token {
        function: "GetAttributeValue".into(),
        rv: "no CKA_KEY_TYPE".into(),
    })?;
    let family = KeyKind::family_from_token(key_type).ok_or_else(|| {
        Error::Unsupported(format!(
            "key {id:?} is of a type this backend does not handle"
        ))
    })?;
    let kind = KeyKind::from_token(key_type, value_len);
    Ok(KeyInfo {
        id: id.to_owned(),
        label,
        family,
        kind,
        uses,
        sensitive,
        extractable,
        local,
    })
}

/// How a new key comes into the token; decides two attributes of its template.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Generate,
    Create,
    Unwrap,
    Derive,
}

/// The template of every new key: token object, private, sensitive, extractable only with
/// [`KeyUses::EXPORT`], usage attributes exactly `uses`.
///
/// * `CKA_MODIFIABLE = false` for generated and imported keys. SoftHSM2 refuses it in
///   `C_UnwrapKey` and `C_DeriveKey` templates (`CKR_ATTRIBUTE_READ_ONLY`), so unwrapped and
///   derived keys keep the default (modifiable); their sensitivity and non-extractability are
///   still one-way in PKCS#11 (`CKA_SENSITIVE` cannot go back to false, `CKA_EXTRACTABLE` not
///   back to true).
/// * `CKA_CHECK_VALUE` is left empty on derived keys (SoftHSM2 computes a wrong one there).
/// * `CKA_VALUE_LEN` is required for AES and generic secret keys when the token makes the value
///   (generate, derive, unwrap), must be absent from `C_CreateObject` and for DES keys.
fn key_template(
    id: &str,
    label: &str,
    kind: KeyKind,
    uses: KeyUses,
    origin: Origin,
) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(kind.key_type()),
        Attribute::Id(id.as_bytes().to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(uses.contains(KeyUses::EXPORT)),
        Attribute::Encrypt(uses.contains(KeyUses::ENCRYPT)),
        Attribute::Decrypt(uses.contains(KeyUses::DECRYPT)),
        Attribute::Sign(uses.contains(KeyUses::SIGN)),
        Attribute::Verify(uses.contains(KeyUses::VERIFY)),
        Attribute::Wrap(uses.contains(KeyUses::WRAP)),
        Attribute::Unwrap(uses.contains(KeyUses::UNWRAP)),
        Attribute::Derive(uses.contains(KeyUses::DERIVE)),
    ];
    if matches!(origin, Origin::Generate | Origin::Create) {
        template.push(Attribute::Modifiable(false));
    }
    if origin == Origin::Derive {
        // SoftHSM2 2.6 stores a wrong CKA_CHECK_VALUE on derived keys (tested); an empty one
        // tells the token not to compute it, so `kcv` never reports a wrong value.
        template.push(Attribute::CheckValue(Vec::new()));
    }
    if !matches!(origin, Origin::Create | Origin::Unwrap) && kind.family() != KeyFamily::Tdes {
        template.push(Attribute::ValueLen(cryptoki::types::Ulong::from(
            kind.len() as u64,
        )));
    }
    template
}

fn check_new_key(id: &str, label: &str, kind: KeyKind) -> Result<(), Error> {
    check_id(id)?;
    check_label(label)?;
    kind.validate()
}

fn wrong_kind(id: &str, operation: &'static str, expected: &'static str, key: &KeyInfo) -> Error {
    Error::WrongKeyKind {
        id: id.to_owned(),
        operation,
        expected,
        actual: key.describe(),
    }
}

fn cipher_mechanism<'a>(
    id: &str,
    key: &KeyInfo,
    mode: &CipherMode,
    data_len: usize,
    operation: &'static str,
) -> Result<Mechanism<'a>, Error> {
    let family = key.family;
    if family == KeyFamily::Hmac {
        return Err(wrong_kind(id, operation, "a TDES or AES key", key));
    }
    let block = family.block_size();
    if data_len == 0 || !data_len.is_multiple_of(block) {
        return Err(Error::InvalidInput {
            what: "data length",
            reason: format!("{data_len} bytes; a non-empty multiple of {block} needed"),
        });
    }
    let bad_iv = |len: usize| Error::InvalidInput {
        what: "IV",
        reason: format!("{len} bytes; {block} needed"),
    };
    Ok(match (family, mode) {
        (KeyFamily::Tdes, CipherMode::Ecb) => Mechanism::Des3Ecb,
        (KeyFamily::Aes, CipherMode::Ecb) => Mechanism::AesEcb,
        (KeyFamily::Tdes, CipherMode::Cbc(iv)) => {
            Mechanism::Des3Cbc(iv.as_slice().try_into().map_err(|_| bad_iv(iv.len()))?)
        }
        (KeyFamily::Aes, CipherMode::Cbc(iv)) => {
            Mechanism::AesCbc(iv.as_slice().try_into().map_err(|_| bad_iv(iv.len()))?)
        }
        (KeyFamily::Hmac, _) => return Err(wrong_kind(id, operation, "a TDES or AES key", key)),
    })
}

/// Zeroizes the clear value inside a template after use.
fn scrub(template: &mut [Attribute]) {
    for attr in template {
        if let Attribute::Value(v) = attr {
            v.zeroize();
        }
    }
}

/// The token cannot say how long an unwrapped key is (SoftHSM2 leaves `CKA_VALUE_LEN = 0`),
/// so the wrapped length is checked against the kind the caller expects before unwrapping.
fn check_wrapped_len(
    mechanism: &WrapMechanism,
    wrapped: usize,
    kind: KeyKind,
) -> Result<(), Error> {
    let key = kind.len();
    let ok = match mechanism {
        // RFC 3394: n 64-bit blocks of key data give n + 1 blocks.
        WrapMechanism::AesKeyWrap => key.is_multiple_of(8) && wrapped == key + 8,
        // RFC 5649: the key is padded to a multiple of 8 bytes, plus the 8-byte AIV.
        WrapMechanism::AesKeyWrapPad => wrapped == key.div_ceil(8) * 8 + 8,
        // Plain block encryption of the value.
        WrapMechanism::Des3Cbc(_) | WrapMechanism::Des3Ecb => wrapped == key.div_ceil(8) * 8,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "wrapped key",
            reason: format!("{wrapped} bytes cannot hold a {kind} key with this mechanism"),
        })
    }
}

fn des3_cmac_unsupported() -> Error {
    Error::Unsupported(
        "CKM_DES3_CMAC: SoftHSM2 implements it, but the cryptoki 0.12 binding cannot name the mechanism"
            .into(),
    )
}

impl Inner {
    fn kind_of(&self, s: &Session, id: &str) -> Result<(ObjectHandle, KeyInfo), Error> {
        let key = find_key(s, id)?;
        let info = key_info(s, id, key)?;
        Ok((key, info))
    }

    fn generate_key(
        &self,
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
    ) -> Result<KeyInfo, Error> {
        check_new_key(id, label, kind)?;
        if let KeyKind::Hmac { bytes } = kind
            && bytes < crate::key::MIN_HMAC_KEY
        {
            return Err(Error::InvalidInput {
                what: "HMAC key length",
                reason: "generated HMAC keys are 32 to 512 bytes".into(),
            });
        }
        let mechanism = match kind {
            KeyKind::Tdes2 => Mechanism::Des2KeyGen,
            KeyKind::Tdes3 => Mechanism::Des3KeyGen,
            KeyKind::Aes128 | KeyKind::Aes192 | KeyKind::Aes256 => Mechanism::AesKeyGen,
            KeyKind::Hmac { .. } => Mechanism::GenericSecretKeyGen,
        };
        let template = key_template(id, label, kind, uses, Origin::Generate);
        self.with_lifecycle(|s| {
            ensure_absent(s, id)?;
            let key = s.generate_key(&mechanism, &template)?;
            tracing::info!(key_id = id, %kind, ?uses, "key generated in token");
            key_info(s, id, key)
        })
    }

    fn import_clear_key(
        &self,
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
        value: &SecretBytes,
    ) -> Result<KeyInfo, Error> {
        check_new_key(id, label, kind)?;
        if value.len() != kind.len() {
            return Err(Error::InvalidInput {
                what: "key value length",
                reason: format!("{} bytes for a {kind} key", value.len()),
            });
        }
        let mut template = key_template(id, label, kind, uses, Origin::Create);
        template.push(Attribute::Value(value.expose().to_vec()));
        let result = self.with_lifecycle(|s| {
            ensure_absent(s, id)?;
            let key = s.create_object(&template)?;
            tracing::info!(key_id = id, %kind, ?uses, "clear key imported into token");
            key_info(s, id, key)
        });
        scrub(&mut template);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn unwrap_key(
        &self,
        kek_id: &str,
        mechanism: &WrapMechanism,
        wrapped: &[u8],
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
    ) -> Result<KeyInfo, Error> {
        check_new_key(id, label, kind)?;
        check_wrapped_len(mechanism, wrapped.len(), kind)?;
        let template = key_template(id, label, kind, uses, Origin::Unwrap);
        self.with_lifecycle(|s| {
            ensure_absent(s, id)?;
            let (kek, kek_kind) = self.kind_of(s, kek_id)?;
            let mech = wrap_mechanism(kek_id, &kek_kind, mechanism)?;
            let key =
                s.unwrap_key(&mech, kek, wrapped, &template)
                    .map_err(|e| match rv_of(&e) {
                        Some(
                            RvError::WrappedKeyInvalid
                            | RvError::WrappedKeyLenRange
                            | RvError::EncryptedDataInvalid,
                        ) => Error::InvalidInput {
                            what: "wrapped key",
                            reason: "the token rejected it (integrity check or length)".into(),
                        },
                        _ => key_op_error(e, kek_id, "unwrap"),
                    })?;
            tracing::info!(key_id = id, kek_id, %kind, ?uses, "key unwrapped into token");
            let mut info = key_info(s, id, key)?;
            // The wrapped length was checked against `kind` above.
            info.kind = info.kind.or(Some(kind));
            Ok(info)
        })
    }

    fn wrap_key(
        &self,
        kek_id: &str,
        mechanism: &WrapMechanism,
        id: &str,
    ) -> Result<Vec<u8>, Error> {
        self.with_session(|s| {
            let (kek, kek_kind) = self.kind_of(s, kek_id)?;
            let key = find_key(s, id)?;
            let info = key_info(s, id, key)?;
            if !info.extractable {
                return Err(Error::NotExportable(id.to_owned()));
            }
            if kek_kind.family == KeyFamily::Tdes && info.family != KeyFamily::Tdes {
                return Err(Error::InvalidInput {
                    what: "KEK",
                    reason: "a TDES KEK may only wrap TDES keys".into(),
                });
            }
            let mech = wrap_mechanism(kek_id, &kek_kind, mechanism)?;
            let wrapped = s.wrap_key(&mech, kek, key).map_err(|e| match rv_of(&e) {
                Some(RvError::KeyUnextractable) | Some(RvError::KeyNotWrappable) => {
                    Error::NotExportable(id.to_owned())
                }
                _ => key_op_error(e, kek_id, "wrap"),
            })?;
            tracing::info!(key_id = id, kek_id, "key exported wrapped");
            Ok(wrapped)
        })
    }

    fn find(&self, id: &str) -> Result<KeyInfo, Error> {
        self.with_session(|s| {
            let key = find_key(s, id)?;
            key_info(s, id, key)
        })
    }

    fn destroy(&self, id: &str) -> Result<(), Error> {
        self.with_lifecycle(|s| {
            let key = find_key(s, id)?;
            s.destroy_object(key)?;
            tracing::info!(key_id = id, "key destroyed");
            Ok(())
        })
    }

    fn kcv(&self, id: &str) -> Result<KeyCheck, Error> {
        let cmac_available = self.has_mechanism(MechanismType::AES_CMAC)?;
        self.with_session(|s| {
            let key = find_key(s, id)?;
            let info = key_info(s, id, key)?;
            let family = info.family;
            let (block, method) = if family == KeyFamily::Aes
                && cmac_available
                && info.uses.contains(KeyUses::SIGN)
            {
                let mac = s
                    .sign(&Mechanism::AesCMac, key, &[0_u8; 16])
                    .map_err(|e| key_op_error(e, id, "compute a KCV"))?;
                (mac, KcvMethod::Cmac)
            } else if family != KeyFamily::Hmac && info.uses.contains(KeyUses::ENCRYPT) {
                let (mech, zeros) = match family {
                    KeyFamily::Tdes => (Mechanism::Des3Ecb, vec![0_u8; 8]),
                    _ => (Mechanism::AesEcb, vec![0_u8; 16]),
                };
                let block = s
                    .encrypt(&mech, key, &zeros)
                    .map_err(|e| key_op_error(e, id, "compute a KCV"))?;
                (block, KcvMethod::EncryptZeros)
            } else {
                // PKCS#11 CKA_CHECK_VALUE: the token's own encrypt-zeros KCV (v2.40+/3.0).
                let attrs = s.get_attributes(key, &[AttributeType::CheckValue])?;
                let value = attrs.into_iter().find_map(|a| match a {
                    Attribute::CheckValue(v) => Some(v),
                    _ => None,
                });
                match value {
                    Some(v) if family != KeyFamily::Hmac && v.len() >= 3 => {
                        (v, KcvMethod::EncryptZeros)
                    }
                    _ => {
                        return Err(Error::KeyUseNotPermitted {
                            id: id.to_owned(),
                            operation: "compute a KCV (it needs ENCRYPT, or SIGN for AES-CMAC, \
                                        and the token holds no check value for it)",
                        });
                    }
                }
            };
            let bytes: [u8; 3] =
                block
                    .get(..3)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::Token {
                        function: "kcv".into(),
                        rv: "short check value".into(),
                    })?;
            Ok(KeyCheck {
                kcv: Kcv::new(bytes),
                method,
            })
        })
    }

    fn has_mechanism(&self, mechanism: MechanismType) -> Result<bool, Error> {
        Ok(self.ctx.get_mechanism_list(self.slot)?.contains(&mechanism))
    }

    fn mechanisms(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .ctx
            .get_mechanism_list(self.slot)?
            .into_iter()
            .map(|m| m.to_string())
            .collect())
    }

    fn check(&self) -> Result<(), Error> {
        self.with_session(|s| {
            let info = s.get_session_info()?;
            if info.slot_id() != self.slot {
                return Err(Error::Token {
                    function: "GetSessionInfo".into(),
                    rv: "session on another slot".into(),
                });
            }
            Ok(())
        })
    }

    fn encrypt(&self, id: &str, mode: &CipherMode, data: &[u8]) -> Result<Vec<u8>, Error> {
        self.with_session(|s| {
            let (key, kind) = self.kind_of(s, id)?;
            let mech = cipher_mechanism(id, &kind, mode, data.len(), "encrypt")?;
            s.encrypt(&mech, key, data)
                .map_err(|e| key_op_error(e, id, "encrypt"))
        })
    }

    fn decrypt(&self, id: &str, mode: &CipherMode, data: &[u8]) -> Result<SecretBytes, Error> {
        self.with_session(|s| {
            let (key, kind) = self.kind_of(s, id)?;
            let mech = cipher_mechanism(id, &kind, mode, data.len(), "decrypt")?;
            s.decrypt(&mech, key, data)
                .map(SecretBytes::new)
                .map_err(|e| key_op_error(e, id, "decrypt"))
        })
    }

    fn mac(&self, id: &str, algorithm: MacAlgorithm, data: &[u8]) -> Result<Vec<u8>, Error> {
        self.with_session(|s| {
            let (key, kind) = self.kind_of(s, id)?;
            mac_in_session(s, id, key, &kind, algorithm, data)
        })
    }

    fn verify_mac(
        &self,
        id: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<(), Error> {
        if mac.len() < paycrypto::mac::MIN_MAC_LEN || mac.len() > algorithm.full_len() {
            return Err(Error::InvalidInput {
                what: "MAC length",
                reason: format!(
                    "{} bytes; 4 to {} accepted",
                    mac.len(),
                    algorithm.full_len()
                ),
            });
        }
        self.with_session(|s| {
            let (key, kind) = self.kind_of(s, id)?;
            let full_verify = mac.len() == algorithm.full_len()
                && matches!(algorithm, MacAlgorithm::AesCmac | MacAlgorithm::HmacSha256);
            if full_verify {
                let mech = mac_mechanism(id, &kind, algorithm)?;
                return match s.verify(&mech, key, data, mac) {
                    Ok(()) => Ok(()),
                    Err(e) if rv_of(&e) == Some(RvError::SignatureInvalid) => {
                        Err(Error::VerificationFailed)
                    }
                    Err(e) => Err(key_op_error(e, id, "verify a MAC")),
                };
            }
            // Truncated MACs and ISO 9797-1 algorithm 1: recompute and compare in constant time.
            let expected = mac_in_session(s, id, key, &kind, algorithm, data)?;
            let prefix = expected.get(..mac.len()).ok_or(Error::VerificationFailed)?;
            if bool::from(prefix.ct_eq(mac)) {
                Ok(())
            } else {
                Err(Error::VerificationFailed)
            }
        })
    }

    fn derive_key(
        &self,
        base_id: &str,
        derivation: &Derivation,
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
    ) -> Result<KeyInfo, Error> {
        check_new_key(id, label, kind)?;
        let template = key_template(id, label, kind, uses, Origin::Derive);
        let mech = match derivation {
            Derivation::AesCbcEncryptData { iv, data } => {
                if data.is_empty() || !data.len().is_multiple_of(16) || data.len() < kind.len() {
                    return Err(Error::InvalidInput {
                        what: "derivation data",
                        reason: format!(
                            "{} bytes; a multiple of 16 and at least the new key's {} bytes needed",
                            data.len(),
                            kind.len()
                        ),
                    });
                }
                Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new(*iv, data))
            }
            Derivation::AesEcbEncryptData(_) => {
                return Err(Error::Unsupported(
                    "CKM_AES_ECB_ENCRYPT_DATA: SoftHSM2 implements it, but the cryptoki 0.12 binding cannot name the mechanism".into(),
                ));
            }
            Derivation::Des3EcbEncryptData(_) => {
                return Err(Error::Unsupported(
                    "CKM_DES3_ECB_ENCRYPT_DATA: SoftHSM2 implements it, but the cryptoki 0.12 binding cannot name the mechanism".into(),
                ));
            }
            Derivation::XorBaseAndData(data) => {
                Mechanism::XorBaseAndData(KeyDerivationStringData::new(data))
            }
        };
        self.with_lifecycle(|s| {
            ensure_absent(s, id)?;
            let (base, base_kind) = self.kind_of(s, base_id)?;
            if matches!(derivation, Derivation::AesCbcEncryptData { .. })
                && base_kind.family != KeyFamily::Aes
            {
                return Err(wrong_kind(
                    base_id,
                    "derive with AES encryption",
                    "an AES key",
                    &base_kind,
                ));
            }
            let key = s
                .derive_key(&mech, base, &template)
                .map_err(|e| key_op_error(e, base_id, "derive"))?;
            tracing::info!(key_id = id, base_id, %kind, ?uses, "key derived in token");
            key_info(s, id, key)
        })
    }
}

fn mac_mechanism<'a>(
    id: &str,
    key: &KeyInfo,
    algorithm: MacAlgorithm,
) -> Result<Mechanism<'a>, Error> {
    match algorithm {
        MacAlgorithm::AesCmac if key.family == KeyFamily::Aes => Ok(Mechanism::AesCMac),
        MacAlgorithm::AesCmac => Err(wrong_kind(id, "AES-CMAC", "an AES key", key)),
        MacAlgorithm::HmacSha256 if key.family == KeyFamily::Hmac => Ok(Mechanism::Sha256Hmac),
        MacAlgorithm::HmacSha256 => Err(wrong_kind(id, "HMAC-SHA-256", "an HMAC key", key)),
        MacAlgorithm::TdesCmac => Err(des3_cmac_unsupported()),
        MacAlgorithm::Iso9797Alg1(_) => Err(wrong_kind(id, "ISO 9797-1 MAC 1", "a TDES key", key)),
    }
}

fn mac_in_session(
    s: &Session,
    id: &str,
    key: ObjectHandle,
    info: &KeyInfo,
    algorithm: MacAlgorithm,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    match algorithm {
        MacAlgorithm::Iso9797Alg1(padding) => {
            if info.family != KeyFamily::Tdes {
                return Err(wrong_kind(id, "ISO 9797-1 MAC 1", "a TDES key", info));
            }
            let padded =
                paycrypto::mac::pad(data, 8, padding).map_err(|e| Error::InvalidInput {
                    what: "MAC data",
                    reason: e.to_string(),
                })?;
            let out = s
                .encrypt(&Mechanism::Des3Cbc([0; 8]), key, &padded)
                .map_err(|e| key_op_error(e, id, "compute a CBC-MAC (needs ENCRYPT)"))?;
            let last = out.len().saturating_sub(8);
            Ok(out[last..].to_vec())
        }
        _ => {
            let mech = mac_mechanism(id, info, algorithm)?;
            s.sign(&mech, key, data)
                .map_err(|e| key_op_error(e, id, "generate a MAC"))
        }
    }
}

fn wrap_mechanism<'a>(
    kek_id: &str,
    kek: &KeyInfo,
    mechanism: &WrapMechanism,
) -> Result<Mechanism<'a>, Error> {
    match (mechanism, kek.family) {
        (WrapMechanism::AesKeyWrap, KeyFamily::Aes) => Ok(Mechanism::AesKeyWrap),
        (WrapMechanism::AesKeyWrapPad, KeyFamily::Aes) => Ok(Mechanism::AesKeyWrapPad),
        (WrapMechanism::Des3Cbc(iv), KeyFamily::Tdes) => Ok(Mechanism::Des3Cbc(*iv)),
        (WrapMechanism::Des3Ecb, KeyFamily::Tdes) => Ok(Mechanism::Des3Ecb),
        (WrapMechanism::AesKeyWrap | WrapMechanism::AesKeyWrapPad, _) => {
            Err(wrong_kind(kek_id, "AES key wrap", "an AES KEK", kek))
        }
        _ => Err(wrong_kind(kek_id, "TDES key wrap", "a TDES KEK", kek)),
    }
}

impl Token {
    /// Loads the module (once per process), finds the token by label, logs in as the user and
    /// opens the first session of the pool.
    pub async fn open(config: Pkcs11Config) -> Result<Self, Error> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    fn open_blocking(config: Pkcs11Config) -> Result<Self, Error> {
        let ctx = module::module(&config.module)?;
        let slot = module::find_slot(&ctx, &config.token_label)?;
        let inner = Inner {
            ctx,
            module: config.module.clone(),
            slot,
            label: config.token_label,
            user_pin: config.user_pin,
            max_sessions: config.sessions.max(1),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            lifecycle: module::token_lock(&config.module, slot),
        };
        // Log in now so that a wrong PIN fails here, not on the first operation.
        let first = inner.acquire()?;
        inner.release(first, true);
        tracing::info!(token = %inner.label, slot = slot.id(), "token opened");
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Generates a key inside the token: a token object, private, `CKA_SENSITIVE = true`,
    /// `CKA_EXTRACTABLE` only with [`KeyUses::EXPORT`], usage attributes exactly `uses`.
    pub async fn generate_key(
        &self,
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
    ) -> Result<KeyInfo, Error> {
        let (id, label) = (id.to_owned(), label.to_owned());
        self.run(move |t| t.generate_key(&id, &label, kind, uses))
            .await
    }

    /// Imports a clear key value (e.g. components combined outside) with `C_CreateObject`, with
    /// the same attributes as [`Token::generate_key`]. The template copy of the value is zeroized.
    pub async fn import_clear_key(
        &self,
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
        value: &SecretBytes,
    ) -> Result<KeyInfo, Error> {
        let (id, label, value) = (id.to_owned(), label.to_owned(), value.clone());
        self.run(move |t| t.import_clear_key(&id, &label, kind, uses, &value))
            .await
    }

    /// Unwraps `wrapped` under the KEK `kek_id` into a new token key `id` (same attributes as
    /// generated keys). A bad wrapped value is [`Error::InvalidInput`].
    #[allow(clippy::too_many_arguments)]
    pub async fn unwrap_key(
        &self,
        kek_id: &str,
        mechanism: WrapMechanism,
        wrapped: &[u8],
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
    ) -> Result<KeyInfo, Error> {
        let (kek_id, wrapped, id, label) = (
            kek_id.to_owned(),
            wrapped.to_vec(),
            id.to_owned(),
            label.to_owned(),
        );
        self.run(move |t| t.unwrap_key(&kek_id, &mechanism, &wrapped, &id, &label, kind, uses))
            .await
    }

    /// Exports key `id` wrapped under KEK `kek_id`. Policy: only keys created with
    /// [`KeyUses::EXPORT`] (`CKA_EXTRACTABLE = true`) leave the token, only wrapped, only under
    /// a KEK that has [`KeyUses::WRAP`], and a TDES KEK wraps only TDES keys. Anything else is
    /// [`Error::NotExportable`], [`Error::KeyUseNotPermitted`] or [`Error::InvalidInput`].
    pub async fn wrap_key(
        &self,
        kek_id: &str,
        mechanism: WrapMechanism,
        id: &str,
    ) -> Result<Vec<u8>, Error> {
        let (kek_id, id) = (kek_id.to_owned(), id.to_owned());
        self.run(move |t| t.wrap_key(&kek_id, &mechanism, &id))
            .await
    }

    /// Looks a key up by id: its kind, uses and protection attributes (never its value).
    pub async fn find(&self, id: &str) -> Result<KeyInfo, Error> {
        let id = id.to_owned();
        self.run(move |t| t.find(&id)).await
    }

    /// Destroys key `id`.
    pub async fn destroy(&self, id: &str) -> Result<(), Error> {
        let id = id.to_owned();
        self.run(move |t| t.destroy(&id)).await
    }

    /// The key check value, computed inside the token:
    /// * AES key with SIGN on a token with `CKM_AES_CMAC`: CMAC of 16 zero bytes
    ///   ([`KcvMethod::Cmac`], X9.24-1:2017);
    /// * otherwise a TDES or AES key with ENCRYPT: ECB encryption of one zero block
    ///   ([`KcvMethod::EncryptZeros`]);
    /// * otherwise the token's `CKA_CHECK_VALUE` attribute, which PKCS#11 defines as the
    ///   encrypt-zeros KCV (so generated or imported KEKs, which may neither encrypt nor sign,
    ///   still have one). SoftHSM2 holds none for unwrapped keys and this backend suppresses its
    ///   wrong value on derived keys: such keys without ENCRYPT or SIGN get
    ///   [`Error::KeyUseNotPermitted`], never a wrong KCV.
    ///
    /// The first 3 bytes are returned with the method used.
    pub async fn kcv(&self, id: &str) -> Result<KeyCheck, Error> {
        let id = id.to_owned();
        self.run(move |t| t.kcv(&id)).await
    }

    /// Health check: a cheap `C_GetSessionInfo` on a pooled (logged-in) session.
    pub async fn check(&self) -> Result<(), Error> {
        self.run(|t| t.check()).await
    }

    /// The mechanisms the token lists (`C_GetMechanismList`) as `CKM_` names. Mechanisms the
    /// cryptoki binding cannot name are left out by the binding.
    pub async fn mechanisms(&self) -> Result<Vec<String>, Error> {
        self.run(|t| t.mechanisms()).await
    }

    /// Encrypts `data` (no padding) under key `id` (needs ENCRYPT).
    pub async fn encrypt(&self, id: &str, mode: CipherMode, data: &[u8]) -> Result<Vec<u8>, Error> {
        let (id, data) = (id.to_owned(), data.to_vec());
        self.run(move |t| t.encrypt(&id, &mode, &data)).await
    }

    /// Decrypts `data` (no padding) under key `id` (needs DECRYPT). The clear result is secret.
    pub async fn decrypt(
        &self,
        id: &str,
        mode: CipherMode,
        data: &[u8],
    ) -> Result<SecretBytes, Error> {
        let (id, data) = (id.to_owned(), data.to_vec());
        self.run(move |t| t.decrypt(&id, &mode, &data)).await
    }

    /// The full-length MAC of `data` under key `id` (truncate it yourself).
    pub async fn mac(
        &self,
        id: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (id, data) = (id.to_owned(), data.to_vec());
        self.run(move |t| t.mac(&id, algorithm, &data)).await
    }

    /// Verifies a MAC of 4 bytes up to the full length. A full-length CMAC or HMAC is checked
    /// by the token (`C_Verify`, needs VERIFY); a truncated one, and ISO 9797-1 MAC 1, are
    /// recomputed by the token and compared here in constant time (needs SIGN, resp. ENCRYPT).
    /// A mismatch is [`Error::VerificationFailed`].
    pub async fn verify_mac(
        &self,
        id: &str,
        algorithm: MacAlgorithm,
        data: &[u8],
        mac: &[u8],
    ) -> Result<(), Error> {
        let (id, data, mac) = (id.to_owned(), data.to_vec(), mac.to_vec());
        self.run(move |t| t.verify_mac(&id, algorithm, &data, &mac))
            .await
    }

    /// Derives a new non-extractable token key `id` from base key `base_id` (needs DERIVE).
    pub async fn derive_key(
        &self,
        base_id: &str,
        derivation: Derivation,
        id: &str,
        label: &str,
        kind: KeyKind,
        uses: KeyUses,
    ) -> Result<KeyInfo, Error> {
        let (base_id, id, label) = (base_id.to_owned(), id.to_owned(), label.to_owned());
        self.run(move |t| t.derive_key(&base_id, &derivation, &id, &label, kind, uses))
            .await
    }

    /// Whether the token would hand out key `id`'s clear value (`CKA_VALUE`). Always `false`
    /// for keys this backend makes (they are `CKA_SENSITIVE`); an audit and test hook. The
    /// value itself is never returned: if a token does reveal it, it is zeroized at once.
    pub async fn value_readable(&self, id: &str) -> Result<bool, Error> {
        let id = id.to_owned();
        self.run(move |t| {
            t.with_session(|s| {
                let key = find_key(s, &id)?;
                match s.get_attributes(key, &[AttributeType::Value]) {
                    Ok(attrs) => {
                        let mut readable = false;
                        for attr in attrs {
                            if let Attribute::Value(mut v) = attr {
                                readable = true;
                                v.zeroize();
                            }
                        }
                        Ok(readable)
                    }
                    Err(e) if rv_of(&e) == Some(RvError::AttributeSensitive) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            })
        })
        .await
    }
}
