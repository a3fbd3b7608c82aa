//! The process-wide PKCS#11 module registry and token provisioning.
//!
//! `C_Initialize` is process-global: a module may be initialised once per process. This
//! registry loads each module path once, initialises it with `CKF_OS_LOCKING_OK` (the module
//! may be called from many threads), treats `CKR_CRYPTOKI_ALREADY_INITIALIZED` (someone else in
//! the process got there first) as success, and never finalises it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use secrecy::SecretString;

use crate::Error;
use crate::config::MAX_TOKEN_LABEL;
use crate::error::rv_of;

/// A token in this process: module path and slot id.
type TokenKey = (PathBuf, u64);

fn registry() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    MODULES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The initialised module at `path`, loading it on first use.
pub(crate) fn module(path: &Path) -> Result<Pkcs11, Error> {
    let mut modules = registry().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let failed = |reason: String| Error::Module {
        module: path.display().to_string(),
        reason,
    };
    let ctx = Pkcs11::new(path).map_err(|e| failed(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => tracing::info!(module = %path.display(), "pkcs11 module initialised"),
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {
            tracing::debug!(module = %path.display(), "pkcs11 module already initialised in this process");
        }
        Err(e) => return Err(failed(e.to_string())),
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

/// PINs of the logins this process made, per module and slot. PKCS#11 login state is shared by
/// all sessions of an application on a slot, so a second `C_Login` answers
/// `CKR_USER_ALREADY_LOGGED_IN` without checking the PIN; the PIN is compared with the one that
/// did log in instead, so a wrong PIN never opens a token.
fn logins() -> &'static Mutex<HashMap<TokenKey, SecretString>> {
    static LOGINS: OnceLock<Mutex<HashMap<TokenKey, SecretString>>> = OnceLock::new();
    LOGINS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Records the PIN of a successful `C_Login`.
pub(crate) fn remember_login(module: &Path, slot: Slot, pin: &SecretString) {
    logins()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((module.to_owned(), slot.id()), pin.clone());
}

/// Whether `pin` matches the PIN this process logged in with (true when the login was made
/// by someone else in the process: nothing to compare with).
pub(crate) fn same_login(module: &Path, slot: Slot, pin: &SecretString) -> bool {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let logins = logins().lock().unwrap_or_else(PoisonError::into_inner);
    match logins.get(&(module.to_owned(), slot.id())) {
        None => true,
        Some(known) => bool::from(
            known
                .expose_secret()
                .as_bytes()
                .ct_eq(pin.expose_secret().as_bytes()),
        ),
    }
}

/// The lock that orders key creation and destruction against every other call on one token
/// (module and slot), shared by all [`crate::Token`]s of the process on that token.
///
/// SoftHSM2's file object store is not safe for a token-object write running while other
/// sessions of the same process read objects: under load, `C_GenerateKey` then fails with
/// `CKR_GENERAL_ERROR` or `CKR_TEMPLATE_INCONSISTENT` (its file locks are per process, not per
/// thread). Writes (rare) take the lock exclusively; everything else shares it.
pub(crate) fn token_lock(module: &Path, slot: Slot) -> Arc<RwLock<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<TokenKey, Arc<RwLock<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry((module.to_owned(), slot.id())).or_default())
}

/// Held while this process reads the slot list or initialises a token. SoftHSM2 adds the
/// tokens it finds on disk to its slot table whenever the slot list is read; a read racing a
/// token's initialisation in another thread of the process inserted the new token twice and
/// aborted the process (`SlotManager::insertToken: Assertion 'result.second' failed`, seen in
/// a CI run of the hsm-pkcs11 tests).
static SLOT_LIST: Mutex<()> = Mutex::new(());

/// The slot holding the initialised token labelled `label` (blank padding ignored).
pub(crate) fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, Error> {
    let _slot_list = SLOT_LIST.lock().unwrap_or_else(PoisonError::into_inner);
    find_slot_unlocked(ctx, label)
}

fn find_slot_unlocked(ctx: &Pkcs11, label: &str) -> Result<Slot, Error> {
    for slot in ctx.get_slots_with_initialized_token()? {
        let info = ctx.get_token_info(slot)?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(Error::TokenNotFound(label.to_owned()))
}

/// Initialises a new token labelled `label` in the first free slot (one whose token is not yet
/// initialised) and sets its user PIN. For development and test tokens (SoftHSM2 always offers
/// one free slot); production tokens are provisioned by their own tooling.
///
/// Fails with [`Error::InvalidInput`] when a token with this label exists already, and
/// [`Error::Unsupported`] when no free slot is left.
pub fn init_token(
    module_path: &Path,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<(), Error> {
    let _one_at_a_time = SLOT_LIST.lock().unwrap_or_else(PoisonError::into_inner);

    if label.trim().is_empty() || label.len() > MAX_TOKEN_LABEL {
        return Err(Error::InvalidInput {
            what: "token label",
            reason: "1 to 32 bytes".into(),
        });
    }
    let ctx = module(module_path)?;
    if find_slot_unlocked(&ctx, label).is_ok() {
        return Err(Error::InvalidInput {
            what: "token label",
            reason: format!("a token labelled {label:?} exists already"),
        });
    }
    let mut free = None;
    for slot in ctx.get_slots_with_token()? {
        if !ctx.get_token_info(slot)?.token_initialized() {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or_else(|| Error::Unsupported("no free slot for a new token".into()))?;
    ctx.init_token(slot, so_pin, label)?;
    let session = ctx.open_rw_session(slot)?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(|e| Error::Login(format!("security officer: {e}")))?;
    session.init_pin(user_pin)?;
    session.logout()?;
    tracing::info!(token = label, slot = slot.id(), "token initialised");
    Ok(())
}
