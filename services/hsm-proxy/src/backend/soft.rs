//! `soft://` — a software HSM over `paycrypto`: the embedded default and the test backend.
//!
//! Every key is stored in its own file `<dir>/<handle>.tr31` as a TR-31 version D key block
//! under the local master key (LMK, AES-256, from configuration), so a copy of the directory
//! is useless without the LMK, and the block's header binds the key to its usage. Files are
//! written to a temporary name, synced and renamed, so a crash leaves no half-written key.
//! Unwrapped keys are cached in memory (zeroized on drop). This is not an HSM: no tamper
//! resistance, the LMK lives in process memory. It says so loudly at start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use paycrypto::dukpt::{aes as aes_dukpt, tdes as tdes_dukpt};
use paycrypto::mac::MacAlgorithm;
use paycrypto::pin::PinBlockContext;
use paycrypto::primitives::{
    aes_decrypt_cbc, aes_decrypt_ecb, aes_encrypt_cbc, aes_encrypt_ecb, tdes_decrypt_cbc,
    tdes_decrypt_ecb, tdes_encrypt_cbc, tdes_encrypt_ecb,
};
use paycrypto::tr31::{self, KeyBlockHeader, KeyLengthMasking, Version};
use paycrypto::tr34;
use paycrypto::{CryptoError, SecretBytes, cvv, emv, pinver};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{
    Arpc, Backend, CardValidation, Cipher, CipherMode, Dukpt, KeyRef, Mac, MasterKeyDerivation,
    Operation, Outcome, PinData, PinMethod, StoredKey, Tr31Export, Working, kcv_of,
    url_id_and_site,
};
use crate::error::HsmError;
use crate::spec::{KeyAlgorithm, KeySpec};

/// What a DUKPT working key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Pin,
    Mac,
    Data,
}

/// Clear keys in memory by some key; `None` when caching is off.
type KeyCache<K> = Option<RwLock<HashMap<K, Arc<SecretBytes>>>>;

/// The software HSM.
pub struct SoftBackend {
    id: String,
    site: String,
    dir: PathBuf,
    lmk: SecretBytes,
    /// Unwrapped keys by handle; `None` with `cache=off` (every operation reads the key
    /// file: slower, but the backend is gone the moment its directory is).
    cache: KeyCache<String>,
    /// DUKPT initial keys by (BDK handle, initial KSN / initial key id); bounded.
    initial_keys: KeyCache<(String, Vec<u8>)>,
}

/// At most this many DUKPT initial keys are cached (one per PIN pad); past it the cache
/// starts over.
const MAX_CACHED_INITIAL_KEYS: usize = 100_000;

impl std::fmt::Debug for SoftBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftBackend")
            .field("id", &self.id)
            .field("site", &self.site)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SoftBackend {
    /// Opens (creating if needed) the key directory of `soft://<dir>[?id=x&site=y]`.
    pub async fn open(url: &str, lmk: SecretBytes) -> Result<Self, HsmError> {
        let (path, id, site) = url_id_and_site(url, "soft");
        if path.is_empty() {
            return Err(HsmError::invalid(
                "backend url",
                "soft:// needs a directory",
            ));
        }
        if lmk.len() != 32 {
            return Err(HsmError::invalid(
                "MPOS_HSM_SOFT_LMK",
                "the local master key must be 32 bytes (64 hex digits)",
            ));
        }
        let dir = PathBuf::from(path);
        tokio::fs::create_dir_all(&dir).await.map_err(|error| {
            HsmError::Unavailable(format!("soft backend directory {}: {error}", dir.display()))
        })?;
        tracing::warn!(
            backend = %id,
            dir = %dir.display(),
            "soft:// is a software hsm for development and tests; it is not for production"
        );
        let cache = match super::url_query(url, "cache").as_deref() {
            None | Some("on") => Some(RwLock::new(HashMap::new())),
            Some("off") => None,
            Some(_) => return Err(HsmError::invalid("backend url", "cache must be on or off")),
        };
        let initial_keys = cache.as_ref().map(|_| RwLock::new(HashMap::new()));
        Ok(Self {
            id,
            site,
            dir,
            lmk,
            cache,
            initial_keys,
        })
    }

    fn path_of(&self, handle: &str) -> Result<PathBuf, HsmError> {
        let valid = !handle.is_empty()
            && handle.len() <= 64
            && handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(HsmError::Internal("malformed soft backend handle".into()));
        }
        Ok(self.dir.join(format!("{handle}.tr31")))
    }

    /// Wraps `key` under the LMK and writes it atomically; returns its handle.
    async fn store(&self, spec: &KeySpec, key: &SecretBytes) -> Result<StoredKey, HsmError> {
        let header = KeyBlockHeader::new(
            Version::D,
            spec.usage.clone(),
            spec.algorithm.tr31(),
            spec.mode.clone(),
            spec.exportability,
        );
        let block = tr31::wrap(
            self.lmk.expose(),
            &header,
            key.expose(),
            KeyLengthMasking::AlgorithmMax,
            &mut rand::rngs::OsRng,
        )?;
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let path = self.path_of(&handle)?;
        write_atomically(&path, block.as_bytes()).await?;
        let kcv = kcv_of(spec.algorithm, key)?;
        self.cache_put(&handle, key.clone());
        Ok(StoredKey { handle, kcv })
    }

    /// A device's DUKPT initial key (IPEK / IK) of the BDK `handle`, from the cache or
    /// derived (two block-cipher operations with key schedules saved per transaction). With
    /// `cache=off` nothing is kept.
    fn initial_key(
        &self,
        handle: &str,
        device: &[u8],
        derive: impl FnOnce() -> Result<SecretBytes, CryptoError>,
    ) -> Result<Arc<SecretBytes>, HsmError> {
        let key = (handle.to_owned(), device.to_vec());
        if let Some(found) = self
            .initial_keys
            .as_ref()
            .and_then(|cache| cache.read().ok())
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(found);
        }
        let derived = Arc::new(derive()?);
        if let Some(Ok(mut cache)) = self.initial_keys.as_ref().map(RwLock::write) {
            if cache.len() >= MAX_CACHED_INITIAL_KEYS {
                cache.clear();
            }
            cache.insert(key, derived.clone());
        }
        Ok(derived)
    }

    fn cache_put(&self, handle: &str, key: SecretBytes) {
        if let Some(Ok(mut cache)) = self.cache.as_ref().map(RwLock::write) {
            cache.insert(handle.to_owned(), Arc::new(key));
        }
    }

    /// The clear key of a handle, checked against the spec the registry holds.
    async fn load(&self, key: KeyRef<'_>) -> Result<Arc<SecretBytes>, HsmError> {
        if let Some(found) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.read().ok())
            .and_then(|cache| cache.get(key.handle).cloned())
        {
            return Ok(found);
        }
        let path = self.path_of(key.handle)?;
        let block = match tokio::fs::read_to_string(&path).await {
            Ok(block) => block,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(HsmError::Unavailable(format!(
                    "backend {} does not hold the key",
                    self.id
                )));
            }
            Err(error) => {
                return Err(HsmError::Unavailable(format!(
                    "backend {}: cannot read key: {error}",
                    self.id
                )));
            }
        };
        let (header, clear) = tr31::unwrap(self.lmk.expose(), block.trim()).map_err(|_| {
            HsmError::Internal(format!(
                "backend {}: a stored key does not open under the lmk",
                self.id
            ))
        })?;
        let length_fits =
            key.spec.algorithm.is_asymmetric() || clear.len() == key.spec.algorithm.key_len();
        if header.key_usage != key.spec.usage || !length_fits {
            return Err(HsmError::Internal(format!(
                "backend {}: a stored key does not match its registry entry",
                self.id
            )));
        }
        self.cache_put(key.handle, clear.clone());
        Ok(Arc::new(clear))
    }

    /// The key an operation uses: the stored key, or its DUKPT working key for `purpose`.
    async fn working(
        &self,
        working: &Working<'_>,
        purpose: Purpose,
    ) -> Result<SecretBytes, HsmError> {
        let base = self.load(working.key).await?;
        let Some(dukpt) = &working.dukpt else {
            return Ok((*base).clone());
        };
        Ok(match dukpt {
            Dukpt::Tdes {
                ksn,
                response,
                variant_only,
            } => {
                ksn.check_transaction()?;
                let usage = match (purpose, response) {
                    (Purpose::Pin, _) => tdes_dukpt::KeyUsage::PinEncryption,
                    (Purpose::Mac, false) => tdes_dukpt::KeyUsage::MacRequest,
                    (Purpose::Mac, true) => tdes_dukpt::KeyUsage::MacResponse,
                    (Purpose::Data, false) => tdes_dukpt::KeyUsage::DataRequest,
                    (Purpose::Data, true) => tdes_dukpt::KeyUsage::DataResponse,
                };
                let derivation = if *variant_only {
                    tdes_dukpt::DataKeyDerivation::VariantOnly
                } else {
                    tdes_dukpt::DataKeyDerivation::OneWay
                };
                let initial = ksn.initial();
                let ipek = self.initial_key(working.key.handle, initial.as_bytes(), || {
                    tdes_dukpt::derive_ipek(&base, &initial)
                })?;
                let transaction_key = tdes_dukpt::transaction_key(&ipek, ksn)?;
                tdes_dukpt::working_key(&transaction_key, usage, derivation)?
            }
            Dukpt::Aes {
                ksn,
                response,
                working_key,
            } => {
                let usage = match (purpose, response) {
                    (Purpose::Pin, _) => aes_dukpt::KeyUsage::PinEncryption,
                    (Purpose::Mac, false) => aes_dukpt::KeyUsage::MacGeneration,
                    (Purpose::Mac, true) => aes_dukpt::KeyUsage::MacVerification,
                    (Purpose::Data, false) => aes_dukpt::KeyUsage::DataEncrypt,
                    (Purpose::Data, true) => aes_dukpt::KeyUsage::DataDecrypt,
                };
                ksn.check_transaction()?;
                let id = ksn.initial_key_id();
                let initial_key = self.initial_key(working.key.handle, id.as_bytes(), || {
                    aes_dukpt::derive_initial_key(&base, &id)
                })?;
                aes_dukpt::working_key(&initial_key, ksn, usage, *working_key)?
            }
        })
    }

    async fn cipher(
        &self,
        cipher: &Cipher<'_>,
        encrypt: bool,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let key = self.working(&cipher.key, Purpose::Data).await?;
        let aes = working_is_aes(&cipher.key);
        let out = match (aes, cipher.mode, encrypt) {
            (false, CipherMode::Ecb, true) => tdes_encrypt_ecb(key.expose(), data)?,
            (false, CipherMode::Ecb, false) => tdes_decrypt_ecb(key.expose(), data)?,
            (false, CipherMode::Cbc, true) => {
                tdes_encrypt_cbc(key.expose(), &iv::<8>(&cipher.iv)?, data)?
            }
            (false, CipherMode::Cbc, false) => {
                tdes_decrypt_cbc(key.expose(), &iv::<8>(&cipher.iv)?, data)?
            }
            (true, CipherMode::Ecb, true) => aes_encrypt_ecb(key.expose(), data)?,
            (true, CipherMode::Ecb, false) => aes_decrypt_ecb(key.expose(), data)?,
            (true, CipherMode::Cbc, true) => {
                aes_encrypt_cbc(key.expose(), &iv::<16>(&cipher.iv)?, data)?
            }
            (true, CipherMode::Cbc, false) => {
                aes_decrypt_cbc(key.expose(), &iv::<16>(&cipher.iv)?, data)?
            }
        };
        Ok(out)
    }

    async fn mac(
        &self,
        key: &Working<'_>,
        algorithm: Mac,
        data: &[u8],
        length: usize,
    ) -> Result<Vec<u8>, HsmError> {
        let working = self.working(key, Purpose::Mac).await?;
        let algorithm = mac_algorithm(key, algorithm);
        Ok(algorithm.generate(&working, data, length)?)
    }

    /// The PIN verification key and the clear PIN of a PIN data request (the PIN exists only
    /// inside this call, zeroized on drop).
    async fn pin_and_pvk(
        &self,
        data: &PinData<'_>,
    ) -> Result<(Arc<SecretBytes>, paycrypto::pin::Pin), HsmError> {
        let pvk = self.load(data.verification_key).await?;
        let pin_key = self.working(&data.encryption.key, Purpose::Pin).await?;
        let pin = paycrypto::pin::decrypt_pin_block(
            data.encryption.format,
            &pin_key,
            &data.block,
            Some(&data.pan),
        )?;
        Ok((pvk, pin))
    }

    async fn arqc(&self, request: &super::Arqc<'_>) -> Result<Outcome, HsmError> {
        let imk = self.load(request.key).await?;
        let psn = Some(request.psn.as_str());
        let icc_mk = match request.derivation {
            MasterKeyDerivation::OptionA => emv::derive_icc_mk_option_a(&imk, &request.pan, psn)?,
            MasterKeyDerivation::OptionB => emv::derive_icc_mk_option_b(&imk, &request.pan, psn)?,
        };
        let session_key = emv::derive_ac_session_key(&icc_mk, request.session)?;
        match emv::verify_ac(&session_key, &request.data, request.padding, &request.arqc) {
            Ok(()) => {}
            Err(CryptoError::VerificationFailed(_)) => {
                return Ok(Outcome::Verified {
                    verified: false,
                    arpc: Vec::new(),
                });
            }
            Err(error) => return Err(error.into()),
        }
        let arpc = match &request.arpc {
            Arpc::None => Vec::new(),
            // Method 1 uses the AC session key (the ICC master key itself for CVN 10).
            Arpc::Method1(arc) => emv::arpc_method1(&session_key, &request.arqc, arc)?.to_vec(),
            Arpc::Method2 { csu, proprietary } => {
                emv::arpc_method2(&session_key, &request.arqc, csu, proprietary)?.to_vec()
            }
        };
        Ok(Outcome::Verified {
            verified: true,
            arpc,
        })
    }
}

fn working_is_aes(working: &Working<'_>) -> bool {
    match &working.dukpt {
        None => working.key.spec.algorithm.is_aes(),
        Some(Dukpt::Tdes { .. }) => false,
        Some(Dukpt::Aes { working_key, .. }) => !matches!(
            working_key,
            aes_dukpt::KeyType::Tdes2 | aes_dukpt::KeyType::Tdes3
        ),
    }
}

fn mac_algorithm(key: &Working<'_>, algorithm: Mac) -> MacAlgorithm {
    match algorithm {
        Mac::Alg1(padding) => MacAlgorithm::Iso9797Alg1(padding),
        Mac::Alg3(padding) => MacAlgorithm::Iso9797Alg3(padding),
        Mac::Cmac if working_is_aes(key) => MacAlgorithm::AesCmac,
        Mac::Cmac => MacAlgorithm::TdesCmac,
        Mac::HmacSha256 => MacAlgorithm::HmacSha256,
    }
}

fn iv<const N: usize>(iv: &[u8]) -> Result<[u8; N], HsmError> {
    if iv.is_empty() {
        return Ok([0_u8; N]);
    }
    iv.try_into()
        .map_err(|_| HsmError::invalid("iv", format!("must be {N} bytes for this key")))
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), HsmError> {
    let temporary = path.with_extension("tmp");
    let unavailable = |error: std::io::Error| {
        HsmError::Unavailable(format!("soft backend: cannot store key: {error}"))
    };
    let mut file = tokio::fs::File::create(&temporary)
        .await
        .map_err(unavailable)?;
    tokio::io::AsyncWriteExt::write_all(&mut file, bytes)
        .await
        .map_err(unavailable)?;
    file.sync_all().await.map_err(unavailable)?;
    drop(file);
    tokio::fs::rename(&temporary, path)
        .await
        .map_err(unavailable)?;
    Ok(())
}

fn card_validation(
    key: &SecretBytes,
    kind: &CardValidation,
    pan: &paycrypto::pin::Pan,
    expiry: &str,
) -> Result<Zeroizing<String>, CryptoError> {
    match kind {
        CardValidation::Cvv { service_code } => cvv::generate_cvv(key, pan, expiry, service_code),
        CardValidation::Cvv2 => cvv::generate_cvv2(key, pan, expiry),
        CardValidation::Icvv => cvv::generate_icvv(key, pan, expiry),
    }
}

#[async_trait::async_trait]
impl Backend for SoftBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn site(&self) -> &str {
        &self.site
    }

    fn kind(&self) -> &'static str {
        "soft"
    }

    async fn check(&self) -> Result<(), HsmError> {
        tokio::fs::metadata(&self.dir)
            .await
            .map(|_| ())
            .map_err(|error| HsmError::Unavailable(format!("backend {}: {error}", self.id)))
    }

    async fn generate(&self, spec: &KeySpec) -> Result<StoredKey, HsmError> {
        if spec.algorithm.is_asymmetric() {
            let algorithm = spec.algorithm;
            let private =
                tokio::task::spawn_blocking(move || super::asymmetric::generate(algorithm))
                    .await
                    .map_err(|error| {
                        HsmError::Internal(format!("key generation task: {error}"))
                    })??;
            return self.store(spec, &private).await;
        }
        let mut material = Zeroizing::new(vec![0_u8; spec.algorithm.key_len()]);
        rand::rngs::OsRng.fill_bytes(&mut material);
        if spec.algorithm.is_tdes() {
            set_odd_parity(&mut material);
        }
        self.store(spec, &SecretBytes::from_slice(&material)).await
    }

    async fn import_clear(&self, spec: &KeySpec, key: SecretBytes) -> Result<StoredKey, HsmError> {
        if key.len() != spec.algorithm.key_len() {
            return Err(HsmError::invalid(
                "components",
                format!(
                    "a {:?} key has {} bytes",
                    spec.algorithm,
                    spec.algorithm.key_len()
                ),
            ));
        }
        self.store(spec, &key).await
    }

    async fn import_tr31(
        &self,
        wrapping_key: KeyRef<'_>,
        key_block: &str,
    ) -> Result<(KeyBlockHeader, KeySpec, StoredKey), HsmError> {
        let kbpk = self.load(wrapping_key).await?;
        let (header, key) = tr31::unwrap(kbpk.expose(), key_block.trim())?;
        let algorithm = KeyAlgorithm::from_tr31(&header.algorithm, key.len())?;
        let spec = KeySpec::new(
            algorithm,
            header.key_usage.clone(),
            header.mode_of_use.clone(),
            header.exportability,
        )?;
        let stored = self.store(&spec, &key).await?;
        Ok((header, spec, stored))
    }

    async fn export_tr31(&self, export: Tr31Export<'_>) -> Result<String, HsmError> {
        let kek = self.load(export.wrapping_key).await?;
        let key = self.load(export.key).await?;
        let spec = export.key.spec;
        let version = if export.wrapping_key.spec.algorithm.is_aes() {
            Version::D
        } else {
            Version::B
        };
        let header = KeyBlockHeader::new(
            version,
            spec.usage.clone(),
            spec.algorithm.tr31(),
            spec.mode.clone(),
            export.exportability,
        );
        Ok(tr31::wrap(
            kek.expose(),
            &header,
            key.expose(),
            KeyLengthMasking::AlgorithmMax,
            &mut rand::rngs::OsRng,
        )?)
    }

    async fn export_dukpt_initial_key(
        &self,
        bdk: KeyRef<'_>,
        wrapping_key: KeyRef<'_>,
        dukpt: &Dukpt,
    ) -> Result<(String, String), HsmError> {
        let bdk_key = self.load(bdk).await?;
        let kek = self.load(wrapping_key).await?;
        let version = if wrapping_key.spec.algorithm.is_aes() {
            Version::D
        } else {
            Version::B
        };
        let (initial_key, algorithm, header) = initial_key_block(&bdk_key, bdk, dukpt, version)?;
        let block = tr31::wrap(
            kek.expose(),
            &header,
            initial_key.expose(),
            KeyLengthMasking::AlgorithmMax,
            &mut rand::rngs::OsRng,
        )?;
        Ok((block, kcv_of(algorithm, &initial_key)?))
    }

    async fn export_dukpt_initial_key_ecdh(
        &self,
        bdk: KeyRef<'_>,
        dukpt: &Dukpt,
        device_public_key: &[u8],
    ) -> Result<(paycrypto::ecdh::EcdhDelivery, String), HsmError> {
        let bdk_key = self.load(bdk).await?;
        let (initial_key, algorithm, header) = initial_key_block(&bdk_key, bdk, dukpt, Version::D)?;
        let delivery = paycrypto::ecdh::wrap_for_device(
            &mut rand::rngs::OsRng,
            device_public_key,
            &header,
            &initial_key,
        )
        .map_err(|error| match error {
            CryptoError::InvalidFormat { .. } | CryptoError::InvalidLength { .. } => {
                HsmError::invalid("ecdhDukptInitialKey.deviceCertificate", error.to_string())
            }
            other => HsmError::from(other),
        })?;
        Ok((delivery, kcv_of(algorithm, &initial_key)?))
    }

    async fn export_dukpt_initial_key_tr34(
        &self,
        bdk: KeyRef<'_>,
        kdh: KeyRef<'_>,
        dukpt: &Dukpt,
        kdh_certificate: &[u8],
        krd_certificate: &[u8],
    ) -> Result<(Vec<u8>, String), HsmError> {
        let bdk_key = self.load(bdk).await?;
        let kdh_key = self.load(kdh).await?;
        let (initial_key, algorithm, header) = match dukpt {
            Dukpt::Tdes { ksn, .. } => (
                tdes_dukpt::derive_ipek(&bdk_key, ksn)?,
                KeyAlgorithm::Tdes2,
                "B0000B1TX00N0000",
            ),
            Dukpt::Aes { ksn, .. } => (
                aes_dukpt::derive_initial_key(&bdk_key, &ksn.initial_key_id())?,
                bdk.spec.algorithm,
                "D0000B1AX00N0000",
            ),
        };
        let credential =
            tr34::Credential::from_der(kdh_certificate, &kdh_key).map_err(|error| {
                HsmError::invalid("tr34DukptInitialKey.kdhCertificate", error.to_string())
            })?;
        let signing_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let token = tr34::build_key_token(
            &mut rand::rngs::OsRng,
            &credential,
            krd_certificate,
            &tr34::KeyTokenRequest {
                key: &initial_key,
                header,
                freshness: tr34::Freshness::SigningTime(signing_time),
                key_transport: tr34::KeyTransport::RsaOaepSha256,
                content_encryption: tr34::ContentEncryption::Aes128Cbc,
                signature: tr34::SignatureScheme::Pkcs1v15Sha256,
            },
        )
        .map_err(|error| match error {
            CryptoError::InvalidFormat { .. } | CryptoError::InvalidLength { .. } => {
                HsmError::invalid("tr34DukptInitialKey.krdCertificate", error.to_string())
            }
            other => HsmError::from(other),
        })?;
        Ok((token, kcv_of(algorithm, &initial_key)?))
    }

    async fn kcv(&self, key: KeyRef<'_>) -> Result<String, HsmError> {
        let clear = self.load(key).await?;
        kcv_of(key.spec.algorithm, &clear)
    }

    async fn public_key(&self, key: KeyRef<'_>) -> Result<Vec<u8>, HsmError> {
        let private = self.load(key).await?;
        super::asymmetric::public_key(key.spec.algorithm, &private)
    }

    async fn delete(&self, handle: &str) -> Result<(), HsmError> {
        if let Some(Ok(mut cache)) = self.cache.as_ref().map(RwLock::write) {
            cache.remove(handle);
        }
        if let Some(Ok(mut cache)) = self.initial_keys.as_ref().map(RwLock::write) {
            cache.retain(|(bdk, _), _| bdk != handle);
        }
        match tokio::fs::remove_file(self.path_of(handle)?).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(HsmError::Unavailable(format!(
                "backend {}: {error}",
                self.id
            ))),
        }
    }

    async fn export_replica(&self, key: KeyRef<'_>) -> Result<String, HsmError> {
        let path = self.path_of(key.handle)?;
        tokio::fs::read_to_string(&path)
            .await
            .map_err(|error| HsmError::Unavailable(format!("backend {}: {error}", self.id)))
    }

    async fn import_replica(&self, spec: &KeySpec, replica: &str) -> Result<StoredKey, HsmError> {
        // The replica is a block under the shared LMK: opening it proves the key domain.
        let (header, key) = tr31::unwrap(self.lmk.expose(), replica.trim()).map_err(|_| {
            HsmError::Unavailable(format!(
                "backend {}: the replica does not open under this backend's lmk",
                self.id
            ))
        })?;
        let length_fits = spec.algorithm.is_asymmetric() || key.len() == spec.algorithm.key_len();
        if header.key_usage != spec.usage || !length_fits {
            return Err(HsmError::Internal("replica does not match its key".into()));
        }
        self.store(spec, &key).await
    }

    async fn run(&self, operation: Operation<'_>) -> Result<Outcome, HsmError> {
        match operation {
            Operation::Encrypt { cipher, data } => {
                Ok(Outcome::Bytes(self.cipher(&cipher, true, &data).await?))
            }
            Operation::Decrypt { cipher, data } => {
                Ok(Outcome::Bytes(self.cipher(&cipher, false, &data).await?))
            }
            Operation::ReEncrypt { from, to, data } => {
                let clear = Zeroizing::new(self.cipher(&from, false, &data).await?);
                Ok(Outcome::Bytes(self.cipher(&to, true, &clear).await?))
            }
            Operation::TranslatePin {
                from,
                to,
                block,
                pan,
            } => {
                let from_key = self.working(&from.key, Purpose::Pin).await?;
                let to_key = self.working(&to.key, Purpose::Pin).await?;
                let translated = paycrypto::pin::translate_pin_block(
                    &PinBlockContext {
                        format: from.format,
                        key: &from_key,
                        pan: pan.as_ref(),
                    },
                    &block,
                    &PinBlockContext {
                        format: to.format,
                        key: &to_key,
                        pan: pan.as_ref(),
                    },
                    &mut rand::rngs::OsRng,
                )?;
                Ok(Outcome::Bytes(translated))
            }
            Operation::GenerateMac {
                key,
                algorithm,
                data,
                length,
            } => Ok(Outcome::Bytes(
                self.mac(&key, algorithm, &data, length).await?,
            )),
            Operation::VerifyMac {
                key,
                algorithm,
                data,
                mac,
            } => {
                let working = self.working(&key, Purpose::Mac).await?;
                let verified = match mac_algorithm(&key, algorithm).verify(&working, &data, &mac) {
                    Ok(()) => true,
                    Err(CryptoError::VerificationFailed(_)) => false,
                    Err(error) => return Err(error.into()),
                };
                Ok(Outcome::Verified {
                    verified,
                    arpc: Vec::new(),
                })
            }
            Operation::GenerateCardValidation {
                key,
                kind,
                pan,
                expiry,
            } => {
                let cvk = self.load(key).await?;
                let digits = card_validation(&cvk, &kind, &pan, &expiry)?;
                Ok(Outcome::Digits(digits.to_string()))
            }
            Operation::VerifyCardValidation {
                key,
                kind,
                pan,
                expiry,
                value,
            } => {
                let cvk = self.load(key).await?;
                let service_code = match &kind {
                    CardValidation::Cvv { service_code } => service_code.as_str(),
                    CardValidation::Cvv2 => "000",
                    CardValidation::Icvv => "999",
                };
                let verified = match cvv::verify_cvv(&cvk, &pan, &expiry, service_code, &value) {
                    Ok(()) => true,
                    Err(CryptoError::VerificationFailed(_)) => false,
                    Err(error) => return Err(error.into()),
                };
                Ok(Outcome::Verified {
                    verified,
                    arpc: Vec::new(),
                })
            }
            Operation::VerifyArqc(request) => self.arqc(&request).await,
            Operation::GeneratePinData(data) => {
                let (pvk, pin) = self.pin_and_pvk(&data).await?;
                let value = match &data.method {
                    PinMethod::VisaPvv(pvki) => pinver::generate_pvv(&pvk, &data.pan, *pvki, &pin)?
                        .expose()
                        .to_string(),
                    PinMethod::Ibm3624 {
                        table,
                        validation,
                        check_len,
                    } => {
                        let check_len = if *check_len == 0 {
                            pin.len()
                        } else {
                            *check_len
                        };
                        pinver::generate_ibm3624_offset(&pvk, table, validation, &pin, check_len)?
                            .expose()
                            .to_string()
                    }
                };
                Ok(Outcome::Digits(value))
            }
            Operation::VerifyPinData { data, value } => {
                let (pvk, pin) = self.pin_and_pvk(&data).await?;
                let result = match &data.method {
                    PinMethod::VisaPvv(pvki) => {
                        let pvv = pinver::Pvv::parse(&value)?;
                        pinver::verify_pvv(&pvk, &data.pan, *pvki, &pin, &pvv)
                    }
                    PinMethod::Ibm3624 {
                        table, validation, ..
                    } => {
                        let offset = pinver::PinOffset::parse(&value)?;
                        pinver::verify_ibm3624_offset(&pvk, table, validation, &pin, &offset)
                    }
                };
                let verified = match result {
                    Ok(()) => true,
                    Err(CryptoError::VerificationFailed(_)) => false,
                    Err(error) => return Err(error.into()),
                };
                Ok(Outcome::Verified {
                    verified,
                    arpc: Vec::new(),
                })
            }
        }
    }
}

/// Sets odd parity on every byte (DES keys).
fn set_odd_parity(key: &mut [u8]) {
    for byte in key {
        let ones = (*byte & 0xFE).count_ones();
        *byte = (*byte & 0xFE) | u8::from(ones % 2 == 0);
    }
}

/// A device's DUKPT initial key derived from the BDK, its algorithm, and the TR-31 header it
/// is exported with: key usage B1, mode X (derive), not exportable, the KSN in a `KS` (TDES)
/// or the initial key id in an `IK` (AES) optional block.
fn initial_key_block(
    bdk_key: &SecretBytes,
    bdk: KeyRef<'_>,
    dukpt: &Dukpt,
    version: Version,
) -> Result<(SecretBytes, KeyAlgorithm, KeyBlockHeader), HsmError> {
    let (initial_key, algorithm, optional) = match dukpt {
        Dukpt::Tdes { ksn, .. } => (
            tdes_dukpt::derive_ipek(bdk_key, ksn)?,
            KeyAlgorithm::Tdes2,
            tr31::OptionalBlock::key_set_identifier(ksn.initial().as_bytes())?,
        ),
        Dukpt::Aes { ksn, .. } => {
            let id = ksn.initial_key_id();
            (
                aes_dukpt::derive_initial_key(bdk_key, &id)?,
                bdk.spec.algorithm,
                tr31::OptionalBlock::initial_key_id(id.as_bytes())?,
            )
        }
    };
    let mut header = KeyBlockHeader::new(
        version,
        tr31::KeyUsage::B1,
        algorithm.tr31(),
        tr31::ModeOfUse::Derive,
        tr31::Exportability::NonExportable,
    );
    header.optional_blocks.push(optional);
    Ok((initial_key, algorithm, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_parity() {
        let mut key = [0x00_u8, 0x01, 0xFE, 0xFF, 0x10];
        set_odd_parity(&mut key);
        assert_eq!(key, [0x01, 0x01, 0xFE, 0xFE, 0x10]);
        for byte in key {
            assert_eq!(byte.count_ones() % 2, 1);
        }
    }
}
