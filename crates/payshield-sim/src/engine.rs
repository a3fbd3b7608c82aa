//! The simulator's command processor, without I/O: one command message in, one response
//! message out.

use paycrypto::dukpt::tdes::{DataKeyDerivation, KeyUsage as DukptUsage, Ksn, host_working_key};
use paycrypto::emv::{
    SessionKeyDerivation, arpc_method1, derive_ac_session_key, derive_icc_mk_option_a, verify_ac,
};
use paycrypto::kcv::{KcvMethod, KeyAlgorithm, kcv};
use paycrypto::mac::{MacAlgorithm, Padding};
use paycrypto::pin::{Pan, PinBlockFormat, decrypt_pin_block, encrypt_pin_block};
use paycrypto::primitives::{
    aes_decrypt_cbc, aes_decrypt_ecb, aes_encrypt_cbc, aes_encrypt_ecb, aes_encrypt_ecb as aes_ecb,
    tdes_decrypt_cbc, tdes_decrypt_ecb, tdes_encrypt_cbc, tdes_encrypt_ecb,
};
use paycrypto::tr31::{
    self, Algorithm, Exportability, KeyBlockHeader, KeyLengthMasking, KeyUsage, ModeOfUse, Version,
};
use paycrypto::{CryptoError, SecretBytes};
use payshield::codec::{
    self, ArqcRequest, DataRequest, DukptPinTranslation, ErrorCode, ExportKey, ExportTarget,
    GenerateKey, ImportKey, KeyBlockAttributes, KeyField, MacRequest, PinTranslation, Request,
    Response, ResponseMessage, Sensitive,
};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

type Outcome<T> = Result<T, ErrorCode>;

/// Firmware number the simulator reports (NC, NO): 9 characters.
pub const DEFAULT_FIRMWARE: &str = "SIM0-0001";

/// Processes host commands against a local master key.
#[derive(Debug)]
pub struct Engine {
    lmk: SecretBytes,
    header_len: usize,
    firmware: String,
}

/// A key unwrapped from under the LMK.
struct LmkKey {
    header: KeyBlockHeader,
    key: SecretBytes,
}

impl Engine {
    /// An engine with `lmk` (32 bytes: the AES-256 key block protection key that stands in for
    /// the LMK) and `header_len` (the configured message header length).
    pub fn new(lmk: SecretBytes, header_len: usize) -> Result<Self, CryptoError> {
        if lmk.len() != 32 {
            return Err(CryptoError::InvalidLength {
                what: "LMK",
                expected: "32 bytes (AES-256)",
                actual: lmk.len(),
            });
        }
        Ok(Self {
            lmk,
            header_len,
            firmware: DEFAULT_FIRMWARE.to_owned(),
        })
    }

    /// The configured header length.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The LMK check value the simulator reports in NC: the first 8 bytes of
    /// AES-ECB(LMK, 16 zero bytes), 16H. (A real payShield computes its own LMK check value.)
    pub fn lmk_check_value(&self) -> String {
        aes_ecb(self.lmk.expose(), &[0; 16])
            .map(|block| hex::encode_upper(&block[..8]))
            .unwrap_or_else(|_| "0".repeat(16))
    }

    /// Wraps `key` under the LMK as an `S` key block (TR-31 version D) with `header`'s
    /// attributes.
    pub fn wrap_under_lmk(
        &self,
        header: &KeyBlockHeader,
        key: &SecretBytes,
    ) -> Result<KeyField, CryptoError> {
        let mut header = header.clone();
        header.version = Version::D;
        let text = tr31::wrap(
            self.lmk.expose(),
            &header,
            key.expose(),
            KeyLengthMasking::AlgorithmMax,
            &mut StdRng::from_entropy(),
        )?;
        Ok(KeyField::KeyBlock(text))
    }

    /// Handles one command message and returns the response message, or `None` when the
    /// message is too short to carry a header and a command code (nothing to answer to).
    pub fn handle(&self, message: &[u8]) -> Option<Vec<u8>> {
        let raw = codec::split_request(self.header_len, message).ok()?;
        let response_code = codec::response_code_for(raw.code);
        let (error, body) = match codec::decode_request_body(raw.code, raw.body) {
            Ok(request) => match self.process(&request) {
                Ok(body) => (ErrorCode::OK, Some(body)),
                Err(code) => (code, None),
            },
            Err(codec::CodecError::UnknownCommand(_)) => (ErrorCode::COMMAND_DISABLED, None),
            Err(_) => (ErrorCode::INVALID_INPUT, None),
        };
        if !error.is_ok() {
            tracing::debug!(command = %raw.code.escape_ascii(), error = %error, "payshield-sim command refused");
        }
        let response = ResponseMessage {
            header: raw.header.to_vec(),
            response_code,
            error,
            body,
        };
        match codec::encode_response(&response) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                // Should not happen: the engine builds valid fields. Answer "internal error".
                let mut out = raw.header.to_vec();
                out.extend_from_slice(&response_code);
                out.extend_from_slice(b"41");
                Some(out)
            }
        }
    }

    /// Runs one decoded command.
    pub fn process(&self, request: &Request) -> Result<Response, ErrorCode> {
        match request {
            Request::Diagnostics => Ok(Response::Diagnostics {
                lmk_check_value: self.lmk_check_value(),
                firmware: self.firmware.clone(),
            }),
            Request::Status { mode } => {
                if mode != "00" {
                    return Err(ErrorCode::INVALID_INPUT);
                }
                Ok(Response::Status {
                    io_buffer_size: '2',
                    ethernet_type: '1',
                    tcp_sockets: "08".to_owned(),
                    firmware: self.firmware.clone(),
                    extra: String::new(),
                })
            }
            Request::GenerateKey(a0) => self.generate_key(a0),
            Request::ImportKey(a6) => self.import_key(a6),
            Request::ExportKey(a8) => self.export_key(a8),
            Request::TranslatePinTpkToZpk(t) | Request::TranslatePinZpkToZpk(t) => {
                self.translate_pin(t)
            }
            Request::TranslatePinDukpt(t) | Request::TranslatePinDukpt3Des(t) => {
                self.translate_dukpt_pin(t)
            }
            Request::VerifyArqc(kq) => self.verify_arqc(kq),
            Request::GenerateMac(m) => self.mac(m, false),
            Request::VerifyMac(m) => self.mac(m, true),
            Request::EncryptData(d) => self.data(d, true),
            Request::DecryptData(d) => self.data(d, false),
            Request::KeyCheckValue(bu) => {
                if bu.key_type_code != "FF" {
                    // Only key-block keys (their type is in the block).
                    return Err(ErrorCode::INVALID_INPUT);
                }
                let key = self.lmk_key(&bu.key, &[], "")?;
                Ok(Response::KeyCheckValue {
                    check_value: check_value(&key.header, &key.key)?,
                })
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Keys
    // -----------------------------------------------------------------------------------------

    /// Unwraps an `S` key under the LMK and checks its usage and mode of use. (The key block
    /// MAC protects the key, so DES parity is not checked on use.)
    fn lmk_key(&self, field: &KeyField, usages: &[&str], modes: &str) -> Outcome<LmkKey> {
        let KeyField::KeyBlock(text) = field else {
            return Err(ErrorCode::INVALID_KEY_SCHEME);
        };
        let (header, key) = tr31::unwrap(self.lmk.expose(), text).map_err(|e| match e {
            CryptoError::VerificationFailed(_) => ErrorCode::KEY_BLOCK_AUTH,
            _ => ErrorCode::INVALID_INPUT,
        })?;
        if !usages.is_empty() && !usages.contains(&header.key_usage.code()) {
            return Err(ErrorCode::INVALID_KEY_USAGE);
        }
        if !modes.is_empty() && !modes.contains(header.mode_of_use.code()) {
            return Err(ErrorCode::INVALID_MODE_OF_USE);
        }
        Ok(LmkKey { header, key })
    }

    fn generate_key(&self, a0: &GenerateKey) -> Outcome<Response> {
        let (header, len) = header_from_attributes(&a0.attributes)?;
        let mut bytes = vec![0_u8; len];
        StdRng::from_entropy().fill_bytes(&mut bytes);
        if header.algorithm == Algorithm::Tdes {
            set_odd_parity(&mut bytes);
        }
        let key = SecretBytes::new(bytes);
        let key_under_lmk = self
            .wrap_under_lmk(&header, &key)
            .map_err(|_| ErrorCode::INVALID_INPUT)?;
        let key_under_kek = match &a0.export {
            Some(target) => Some(self.export_under(target, &header, &key)?),
            None => None,
        };
        Ok(Response::GenerateKey {
            key_under_lmk,
            key_under_kek,
            check_value: check_value(&header, &key)?,
        })
    }

    fn export_under(
        &self,
        target: &ExportTarget,
        header: &KeyBlockHeader,
        key: &SecretBytes,
    ) -> Outcome<KeyField> {
        let kek = self.lmk_key(&target.kek, &["K0", "K1"], "")?;
        match target.scheme {
            'R' => {
                let mut header = header.clone();
                header.version = if kek.header.algorithm == Algorithm::Aes {
                    Version::D
                } else {
                    Version::B
                };
                let text = tr31::wrap(
                    kek.key.expose(),
                    &header,
                    key.expose(),
                    KeyLengthMasking::AlgorithmMax,
                    &mut StdRng::from_entropy(),
                )
                .map_err(|_| ErrorCode::INCOMPATIBLE_KEY_LENGTH)?;
                Ok(KeyField::Tr31(text))
            }
            'U' | 'T' => {
                let wanted = if target.scheme == 'U' { 16 } else { 24 };
                if header.algorithm != Algorithm::Tdes
                    || kek.header.algorithm != Algorithm::Tdes
                    || key.len() != wanted
                {
                    return Err(ErrorCode::INCOMPATIBLE_KEY_LENGTH);
                }
                let encrypted = tdes_encrypt_ecb(kek.key.expose(), key.expose())
                    .map_err(|_| ErrorCode::INCOMPATIBLE_KEY_LENGTH)?;
                Ok(KeyField::Scheme {
                    scheme: target.scheme,
                    hex: hex::encode_upper(encrypted),
                })
            }
            _ => Err(ErrorCode::INVALID_KEY_SCHEME),
        }
    }

    fn import_key(&self, a6: &ImportKey) -> Outcome<Response> {
        let zmk = self.lmk_key(&a6.zmk, &["K0", "K1"], "")?;
        let (header, key) = match &a6.key {
            KeyField::Tr31(text) => {
                let (block_header, key) =
                    tr31::unwrap(zmk.key.expose(), text).map_err(|e| match e {
                        CryptoError::VerificationFailed(_) => ErrorCode::KEY_BLOCK_AUTH,
                        _ => ErrorCode::INVALID_INPUT,
                    })?;
                let header = match &a6.attributes {
                    Some(attributes) => header_from_attributes(attributes)?.0,
                    None => block_header,
                };
                (header, key)
            }
            KeyField::Scheme { hex: text, .. } => {
                let attributes = a6.attributes.as_ref().ok_or(ErrorCode::INVALID_INPUT)?;
                let (header, len) = header_from_attributes(attributes)?;
                let encrypted = hex::decode(text).map_err(|_| ErrorCode::INVALID_INPUT)?;
                if zmk.header.algorithm != Algorithm::Tdes
                    || header.algorithm != Algorithm::Tdes
                    || encrypted.len() != len
                {
                    return Err(ErrorCode::INCOMPATIBLE_KEY_LENGTH);
                }
                let key = tdes_decrypt_ecb(zmk.key.expose(), &encrypted)
                    .map_err(|_| ErrorCode::INCOMPATIBLE_KEY_LENGTH)?;
                // Without a key block MAC, DES parity is the only check of the result.
                if !odd_parity(&key) {
                    return Err(ErrorCode::SOURCE_KEY_PARITY);
                }
                (header, SecretBytes::new(key))
            }
            _ => return Err(ErrorCode::INVALID_KEY_SCHEME),
        };
        let key_under_lmk = self
            .wrap_under_lmk(&header, &key)
            .map_err(|_| ErrorCode::INVALID_INPUT)?;
        Ok(Response::ImportKey {
            key_under_lmk,
            check_value: check_value(&header, &key)?,
        })
    }

    fn export_key(&self, a8: &ExportKey) -> Outcome<Response> {
        let key = self.lmk_key(&a8.key, &[], "")?;
        if key.header.exportability == Exportability::NonExportable {
            return Err(ErrorCode(*b"29"));
        }
        let key_under_kek = self.export_under(&a8.target, &key.header, &key.key)?;
        Ok(Response::ExportKey {
            key_under_kek,
            check_value: check_value(&key.header, &key.key)?,
        })
    }

    // -----------------------------------------------------------------------------------------
    // PINs
    // -----------------------------------------------------------------------------------------

    fn translate_pin(&self, t: &PinTranslation) -> Outcome<Response> {
        if !(4..=12).contains(&t.max_pin_length) {
            return Err(ErrorCode::INVALID_INPUT);
        }
        let source_format = pin_format(&t.source_format)?;
        let destination_format = pin_format(&t.destination_format)?;
        let source = self.lmk_key(&t.source_key, &["P0"], "BDEN")?;
        let destination = self.lmk_key(&t.destination_key, &["P0"], "BEN")?;
        let pan = account_pan(&t.account.0)?;
        let block = hex::decode(&t.pin_block.0).map_err(|_| ErrorCode::INVALID_INPUT)?;
        let pin = decrypt_pin_block(source_format, &source.key, &block, Some(&pan))
            .map_err(|_| ErrorCode::PIN_BLOCK_ERROR)?;
        if pin.len() > usize::from(t.max_pin_length) {
            return Err(ErrorCode::PIN_LENGTH);
        }
        let out = encrypt_pin_block(
            destination_format,
            &destination.key,
            &pin,
            Some(&pan),
            &mut StdRng::from_entropy(),
        )
        .map_err(|_| ErrorCode::INCOMPATIBLE_KEY_LENGTH)?;
        Ok(Response::TranslatePin {
            pin_length: pin.len() as u8,
            pin_block: Sensitive(hex::encode_upper(out)),
            format: t.destination_format.clone(),
        })
    }

    fn translate_dukpt_pin(&self, t: &DukptPinTranslation) -> Outcome<Response> {
        if let Some(format) = &t.source_format
            && format != "01"
        {
            return Err(ErrorCode::INVALID_PIN_FORMAT);
        }
        let destination_format = pin_format(&t.destination_format)?;
        if destination_format == PinBlockFormat::Iso4 {
            return Err(ErrorCode::INVALID_PIN_FORMAT);
        }
        let bdk = self.lmk_key(&t.bdk, &["B0"], "")?;
        if bdk.key.len() != 16 {
            return Err(ErrorCode::INCOMPATIBLE_KEY_LENGTH);
        }
        let zpk = self.lmk_key(&t.zpk, &["P0"], "BEN")?;
        // A KSN shorter than 20 characters is left-padded with F, as PIN pads send it.
        let ksn_text = format!("{:F>20}", t.ksn);
        let ksn = Ksn::from_hex(&ksn_text).map_err(|_| ErrorCode::INVALID_INPUT)?;
        let pin_key = host_working_key(
            &bdk.key,
            &ksn,
            DukptUsage::PinEncryption,
            DataKeyDerivation::OneWay,
        )
        .map_err(|_| ErrorCode::INVALID_INPUT)?;
        let pan = account_pan(&t.account.0)?;
        let block = hex::decode(&t.pin_block.0).map_err(|_| ErrorCode::INVALID_INPUT)?;
        let pin = decrypt_pin_block(PinBlockFormat::Iso0, &pin_key, &block, Some(&pan))
            .map_err(|_| ErrorCode::PIN_BLOCK_ERROR)?;
        let out = encrypt_pin_block(
            destination_format,
            &zpk.key,
            &pin,
            Some(&pan),
            &mut StdRng::from_entropy(),
        )
        .map_err(|_| ErrorCode::INCOMPATIBLE_KEY_LENGTH)?;
        Ok(Response::TranslatePin {
            pin_length: pin.len() as u8,
            pin_block: Sensitive(hex::encode_upper(out)),
            format: t.destination_format.clone(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // EMV
    // -----------------------------------------------------------------------------------------

    fn verify_arqc(&self, kq: &ArqcRequest) -> Outcome<Response> {
        let imk = self.lmk_key(&kq.mk_ac, &["E0"], "")?;
        if imk.key.len() != 16 {
            return Err(ErrorCode::INCOMPATIBLE_KEY_LENGTH);
        }
        // PAN/PSN is Y: the rightmost 16 digits of PAN ‖ PSN. Option A over a 14-digit "PAN"
        // and the 2-digit PSN yields exactly that Y.
        let y = hex::encode_upper(kq.pan_psn.0);
        if !y.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ErrorCode::INVALID_INPUT);
        }
        let pan = Pan::new(&y[..14]).map_err(|_| ErrorCode::INVALID_INPUT)?;
        let mk = derive_icc_mk_option_a(&imk.key, &pan, Some(&y[14..]))
            .map_err(|_| ErrorCode::INVALID_INPUT)?;
        // Scheme 0 (Visa VSDC): the ICC master key itself; scheme 1 (M/Chip): the session key
        // from ATC and UN. The data is zero-padded (ISO 9797-1 method 1); scheme padding such
        // as a trailing 80 is the host's job, as the public KQ description says.
        let derivation = match kq.scheme {
            '0' => SessionKeyDerivation::None,
            _ => SessionKeyDerivation::MastercardSkd {
                atc: kq.atc,
                un: kq.unpredictable_number,
            },
        };
        if kq.mode != '2' {
            let session_key =
                derive_ac_session_key(&mk, derivation).map_err(|_| ErrorCode::INVALID_INPUT)?;
            verify_ac(
                &session_key,
                &kq.transaction_data,
                Padding::Method1,
                &kq.arqc,
            )
            .map_err(|_| ErrorCode::VERIFICATION_FAILED)?;
        }
        let arpc = match kq.arc {
            Some(arc) if kq.mode != '0' => {
                Some(arpc_method1(&mk, &kq.arqc, &arc).map_err(|_| ErrorCode::INVALID_INPUT)?)
            }
            _ => None,
        };
        Ok(Response::VerifyArqc { arpc })
    }

    // -----------------------------------------------------------------------------------------
    // MACs and data
    // -----------------------------------------------------------------------------------------

    fn mac(&self, m: &MacRequest, verify: bool) -> Outcome<Response> {
        if m.mode != '0' {
            // Multi-block MACing (modes 1–3) is not simulated.
            return Err(ErrorCode::INVALID_INPUT);
        }
        let modes = if verify { "CV" } else { "CG" };
        let key = self.lmk_key(&m.key, &["M0", "M1", "M3"], modes)?;
        if key.header.algorithm != Algorithm::Tdes {
            return Err(ErrorCode::INVALID_ALGORITHM);
        }
        let data = &m.message.0;
        let padding = match m.padding {
            '0' => {
                if data.is_empty() || !data.len().is_multiple_of(8) {
                    return Err(ErrorCode::DATA_LENGTH);
                }
                Padding::Method1
            }
            '1' => Padding::Method1,
            '2' => Padding::Method2,
            '3' => Padding::Method3,
            _ => return Err(ErrorCode::INVALID_INPUT),
        };
        let algorithm = match m.algorithm.as_str() {
            "01" => MacAlgorithm::Iso9797Alg1(padding),
            "03" => {
                if key.key.len() != 16 {
                    return Err(ErrorCode::INCOMPATIBLE_KEY_LENGTH);
                }
                MacAlgorithm::Iso9797Alg3(padding)
            }
            _ => return Err(ErrorCode::INVALID_INPUT),
        };
        if verify {
            let mac_hex = m.mac.as_deref().ok_or(ErrorCode::INVALID_INPUT)?;
            let mac = hex::decode(mac_hex).map_err(|_| ErrorCode::INVALID_INPUT)?;
            algorithm
                .verify(&key.key, data, &mac)
                .map_err(|e| match e {
                    CryptoError::VerificationFailed(_) => ErrorCode::VERIFICATION_FAILED,
                    _ => ErrorCode::INVALID_INPUT,
                })?;
            Ok(Response::VerifyMac)
        } else {
            let mac = algorithm
                .generate(&key.key, data, 8)
                .map_err(|_| ErrorCode::INVALID_INPUT)?;
            Ok(Response::GenerateMac {
                mac: hex::encode_upper(mac),
            })
        }
    }

    fn data(&self, d: &DataRequest, encrypt: bool) -> Outcome<Response> {
        let modes = if encrypt { "BEN" } else { "BDN" };
        let key = self.lmk_key(&d.key, &["D0"], modes)?;
        let aes = match key.header.algorithm {
            Algorithm::Aes => true,
            Algorithm::Tdes => false,
            _ => return Err(ErrorCode::INVALID_ALGORITHM),
        };
        let block = if aes { 16 } else { 8 };
        let data = &d.message.0;
        if data.is_empty() || !data.len().is_multiple_of(block) {
            return Err(ErrorCode::DATA_LENGTH);
        }
        let k = key.key.expose();
        let result = match (&d.iv, aes, encrypt) {
            (None, false, true) => tdes_encrypt_ecb(k, data),
            (None, false, false) => tdes_decrypt_ecb(k, data),
            (None, true, true) => aes_encrypt_ecb(k, data),
            (None, true, false) => aes_decrypt_ecb(k, data),
            (Some(iv), false, _) => {
                let iv: [u8; 8] = hex_array(iv)?;
                if encrypt {
                    tdes_encrypt_cbc(k, &iv, data)
                } else {
                    tdes_decrypt_cbc(k, &iv, data)
                }
            }
            (Some(iv), true, _) => {
                let iv: [u8; 16] = hex_array(iv)?;
                if encrypt {
                    aes_encrypt_cbc(k, &iv, data)
                } else {
                    aes_decrypt_cbc(k, &iv, data)
                }
            }
        }
        .map_err(|_| ErrorCode::INVALID_INPUT)?;
        Ok(Response::Data {
            hex_encoded: d.output_format == '1',
            data: Sensitive(result),
        })
    }
}

fn hex_array<const N: usize>(text: &str) -> Outcome<[u8; N]> {
    let bytes = hex::decode(text).map_err(|_| ErrorCode::INVALID_INPUT)?;
    bytes.try_into().map_err(|_| ErrorCode::INVALID_INPUT)
}

/// payShield PIN block format codes: `01` ISO 0, `05` ISO 1, `47` ISO 3, `48` ISO 4.
fn pin_format(code: &str) -> Outcome<PinBlockFormat> {
    match code {
        "01" => Ok(PinBlockFormat::Iso0),
        "05" => Ok(PinBlockFormat::Iso1),
        "47" => Ok(PinBlockFormat::Iso3),
        "48" => Ok(PinBlockFormat::Iso4),
        _ => Err(ErrorCode::INVALID_PIN_FORMAT),
    }
}

/// A PAN for PIN blocks from the account field: 12 digits (without check digit) get a
/// placeholder check digit, so that "rightmost 12 without check digit" is the field; a longer
/// field is the full PAN (ISO format 4).
fn account_pan(account: &str) -> Outcome<Pan> {
    let digits = if account.len() == 12 {
        format!("{account}0")
    } else {
        account.to_owned()
    };
    Pan::new(&digits).map_err(|_| ErrorCode(*b"22"))
}

fn header_from_attributes(attributes: &KeyBlockAttributes) -> Outcome<(KeyBlockHeader, usize)> {
    let (algorithm, len) = match attributes.algorithm.as_str() {
        "T2" => (Algorithm::Tdes, 16),
        "T3" => (Algorithm::Tdes, 24),
        "A1" => (Algorithm::Aes, 16),
        "A2" => (Algorithm::Aes, 24),
        "A3" => (Algorithm::Aes, 32),
        _ => return Err(ErrorCode::INVALID_ALGORITHM),
    };
    let key_usage =
        KeyUsage::from_code(&attributes.key_usage).map_err(|_| ErrorCode::INVALID_KEY_USAGE)?;
    let mode_of_use = ModeOfUse::from_code(&attributes.mode_of_use.to_string())
        .map_err(|_| ErrorCode::INVALID_MODE_OF_USE)?;
    let exportability =
        Exportability::from_code(attributes.exportability as u8).map_err(|_| ErrorCode(*b"AA"))?;
    let mut header =
        KeyBlockHeader::new(Version::D, key_usage, algorithm, mode_of_use, exportability);
    header.key_version = attributes.key_version.clone();
    Ok((header, len))
}

/// 6H key check value: TDES encrypt-zeros, AES CMAC (X9.24-1:2017).
fn check_value(header: &KeyBlockHeader, key: &SecretBytes) -> Outcome<String> {
    let (algorithm, method) = if header.algorithm == Algorithm::Aes {
        (KeyAlgorithm::Aes, KcvMethod::Cmac)
    } else {
        (KeyAlgorithm::Tdes, KcvMethod::EncryptZeros)
    };
    kcv(key, algorithm, method)
        .map(|k| k.to_hex())
        .map_err(|_| ErrorCode::INCOMPATIBLE_KEY_LENGTH)
}

fn odd_parity(key: &[u8]) -> bool {
    key.iter().all(|b| b.count_ones() % 2 == 1)
}

fn set_odd_parity(key: &mut [u8]) {
    for byte in key {
        let ones = (*byte & 0xFE).count_ones();
        *byte = (*byte & 0xFE) | u8::from(ones.is_multiple_of(2));
    }
}
