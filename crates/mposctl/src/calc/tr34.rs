//! `mposctl calc tr34`: TR-34 (ASC X9 TR 34-2019) tokens over `paycrypto::tr34`.
//!
//! Certificates and private keys are given as DER in hex (`--…-hex`) or as files
//! (`--…-file`, PEM or DER); tokens and keys are hex. Private keys are never printed, and no
//! error message contains key bytes or file contents.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use paycrypto::kcv::KeyAlgorithm;
use paycrypto::tr34::{
    self, CertificateId, CertificateRole, ContentEncryption, Credential, ExpectedFreshness,
    Freshness, KdhTrust, KeyTokenRequest, KeyTransport, SignatureScheme,
};
use paycrypto::{CryptoError, SecretBytes};
use rand::RngCore;
use rand::rngs::OsRng;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Result, bytes, hex_upper, kcv_of, secret};
use crate::error::CliError;

/// Length of the nonce `random-token build` draws when none is given.
const DEFAULT_NONCE_LEN: usize = 16;

// ---------------------------------------------------------------------------------------------
// Inputs: certificates and keys as hex or files
// ---------------------------------------------------------------------------------------------

/// One certificate or key: hex on the command line, or a file.
enum Input<'a> {
    Hex(&'static str, &'a str),
    File(&'static str, &'a Path),
}

/// Declares a clap argument group "exactly one of --NAME-hex / --NAME-file" (single value) or
/// "one or more --NAME-hex, or one or more --NAME-file" (a chain, leaf first).
macro_rules! der_input {
    (single $name:ident, $hex:ident, $file:ident, $hex_flag:literal, $file_flag:literal, $what:literal) => {
        #[derive(Debug, Args)]
        #[group(required = true, multiple = false)]
        struct $name {
            #[arg(long, value_name = "HEX", help = concat!($what, ", DER in hex"))]
            $hex: Option<String>,
            #[arg(long, value_name = "PATH", help = concat!($what, ": a PEM or DER file"))]
            $file: Option<PathBuf>,
        }

        impl $name {
            fn input(&self) -> Input<'_> {
                match (&self.$hex, &self.$file) {
                    (Some(hex), _) => Input::Hex($hex_flag, hex),
                    (None, Some(path)) => Input::File($file_flag, path),
                    // clap's group makes one of them required.
                    (None, None) => Input::Hex($hex_flag, ""),
                }
            }
        }
    };
    (chain $name:ident, $hex:ident, $file:ident, $hex_flag:literal, $file_flag:literal, $what:literal) => {
        #[derive(Debug, Args)]
        #[group(required = true, multiple = false)]
        struct $name {
            #[arg(
                long,
                value_name = "HEX",
                help = concat!($what, ", DER in hex; repeat for the chain, leaf first")
            )]
            $hex: Vec<String>,
            #[arg(
                long,
                value_name = "PATH",
                help = concat!(
                    $what,
                    ": PEM or DER files, leaf first (a PEM file may hold several certificates)"
                )
            )]
            $file: Vec<PathBuf>,
        }

        impl $name {
            fn inputs(&self) -> Vec<Input<'_>> {
                if self.$hex.is_empty() {
                    self.$file
                        .iter()
                        .map(|path| Input::File($file_flag, path))
                        .collect()
                } else {
                    self.$hex.iter().map(|hex| Input::Hex($hex_flag, hex)).collect()
                }
            }
        }
    };
}

der_input!(single KdhCert, kdh_cert_hex, kdh_cert_file, "--kdh-cert-hex", "--kdh-cert-file", "KDH certificate");
der_input!(single KdhKey, kdh_key_hex, kdh_key_file, "--kdh-key-hex", "--kdh-key-file", "KDH RSA private key (PKCS #8 or PKCS #1)");
der_input!(single KrdCert, krd_cert_hex, krd_cert_file, "--krd-cert-hex", "--krd-cert-file", "KRD certificate");
der_input!(single KrdKey, krd_key_hex, krd_key_file, "--krd-key-hex", "--krd-key-file", "KRD RSA private key (PKCS #8 or PKCS #1)");
der_input!(single CaCert, ca_cert_hex, ca_cert_file, "--ca-cert-hex", "--ca-cert-file", "CA (root) certificate");
der_input!(chain KdhChain, kdh_cert_hex, kdh_cert_file, "--kdh-cert-hex", "--kdh-cert-file", "KDH certificate and intermediates (not the CA)");
der_input!(chain NewKdhChain, new_kdh_cert_hex, new_kdh_cert_file, "--new-kdh-cert-hex", "--new-kdh-cert-file", "New KDH certificate and intermediates (not the CA)");
der_input!(chain CertChain, cert_hex, cert_file, "--cert-hex", "--cert-file", "Certificate and intermediates (not the CA)");

const CERT_LABELS: &[&str] = &["CERTIFICATE"];
const KEY_LABELS: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY"];

/// Reads a file the operator named; the message names the option, not the path or content.
fn read_file(option: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new).map_err(|err| {
        CliError::bad_request(format!("{option}: cannot read the file ({})", err.kind()))
    })
}

/// The DER documents of a file: each PEM block (whose label must be one of `labels`), or the
/// whole file as one DER document when it holds no PEM block.
fn der_documents(
    option: &'static str,
    data: &[u8],
    labels: &[&str],
) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let text = match std::str::from_utf8(data) {
        Ok(text) if text.contains(BEGIN) => text,
        _ => return Ok(vec![Zeroizing::new(data.to_vec())]),
    };
    let bad = |reason: &str| CliError::bad_request(format!("{option}: {reason}"));
    let mut documents = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let end = block
            .find(END)
            .and_then(|end| {
                let after = end + END.len();
                block[after..]
                    .find("-----")
                    .map(|close| after + close + "-----".len())
            })
            .ok_or_else(|| bad("PEM block without an END line"))?;
        let (label, der) = pem_rfc7468::decode_vec(&block.as_bytes()[..end])
            .map_err(|_| bad("malformed PEM block"))?;
        let der = Zeroizing::new(der);
        if label == "ENCRYPTED PRIVATE KEY" {
            return Err(CliError::from(CryptoError::Unsupported(format!(
                "{option}: encrypted private keys (decrypt to PKCS #8 first)"
            ))));
        }
        if !labels.contains(&label) {
            return Err(bad(&format!("PEM label is not {}", labels.join(" or "))));
        }
        documents.push(der);
        rest = &block[end..];
    }
    Ok(documents)
}

/// Certificates (DER) from one input; a PEM file may hold several.
fn certificates(input: &Input<'_>) -> Result<Vec<Vec<u8>>> {
    match input {
        Input::Hex(option, text) => Ok(vec![bytes(option, text)?]),
        Input::File(option, path) => {
            let data = read_file(option, path)?;
            Ok(der_documents(option, &data, CERT_LABELS)?
                .into_iter()
                .map(|der| der.to_vec())
                .collect())
        }
    }
}

/// Exactly one certificate from one input.
fn certificate(input: &Input<'_>) -> Result<Vec<u8>> {
    let option = match input {
        Input::Hex(option, _) | Input::File(option, _) => *option,
    };
    let mut all = certificates(input)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        count => Err(CliError::bad_request(format!(
            "{option}: expected one certificate, found {count}"
        ))),
    }
}

/// A chain (leaf first) from several inputs.
fn chain(inputs: &[Input<'_>]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for input in inputs {
        out.extend(certificates(input)?);
    }
    Ok(out)
}

/// A private key (PKCS #8 or PKCS #1 DER) from one input.
fn private_key(input: &Input<'_>) -> Result<SecretBytes> {
    match input {
        Input::Hex(option, text) => secret(option, text),
        Input::File(option, path) => {
            let data = read_file(option, path)?;
            let mut documents = der_documents(option, &data, KEY_LABELS)?;
            match documents.len() {
                1 => Ok(SecretBytes::from_slice(&documents.remove(0))),
                _ => Err(CliError::bad_request(format!(
                    "{option}: expected one private key"
                ))),
            }
        }
    }
}

fn credential(cert: &Input<'_>, key: &Input<'_>) -> Result<Credential> {
    Ok(Credential::from_der(
        &certificate(cert)?,
        &private_key(key)?,
    )?)
}

// ---------------------------------------------------------------------------------------------
// Algorithm choices and freshness
// ---------------------------------------------------------------------------------------------

/// RSA transport of the content-encryption key.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    /// RSAES-OAEP, SHA-256, MGF1-SHA-256 (TR-34-2019).
    Oaep,
    /// RSAES-PKCS1-v1_5 (TR-34-2012, legacy devices).
    Pkcs1,
}

impl From<TransportArg> for KeyTransport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::Oaep => Self::RsaOaepSha256,
            TransportArg::Pkcs1 => Self::RsaPkcs1v15,
        }
    }
}

fn transport_name(transport: KeyTransport) -> &'static str {
    match transport {
        KeyTransport::RsaOaepSha256 => "oaep",
        KeyTransport::RsaPkcs1v15 => "pkcs1",
    }
}

/// Content cipher of the key token's EnvelopedData.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CipherArg {
    /// AES-128-CBC (TR-34-2019 default).
    Aes128,
    /// AES-256-CBC.
    Aes256,
    /// Three-key TDES-CBC.
    Tdes,
}

impl From<CipherArg> for ContentEncryption {
    fn from(arg: CipherArg) -> Self {
        match arg {
            CipherArg::Aes128 => Self::Aes128Cbc,
            CipherArg::Aes256 => Self::Aes256Cbc,
            CipherArg::Tdes => Self::TdesCbc,
        }
    }
}

fn cipher_name(cipher: ContentEncryption) -> &'static str {
    match cipher {
        ContentEncryption::Aes128Cbc => "aes128",
        ContentEncryption::Aes256Cbc => "aes256",
        ContentEncryption::TdesCbc => "tdes",
    }
}

/// The KDH's signature scheme.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SignatureArg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Pkcs1,
    /// RSASSA-PSS with SHA-256.
    Pss,
}

impl From<SignatureArg> for SignatureScheme {
    fn from(arg: SignatureArg) -> Self {
        match arg {
            SignatureArg::Pkcs1 => Self::Pkcs1v15Sha256,
            SignatureArg::Pss => Self::PssSha256,
        }
    }
}

/// Role of the leaf certificate of a credential token.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// A KDH (key usage digitalSignature).
    Kdh,
    /// A KRD (key usage keyEncipherment).
    Krd,
}

impl From<RoleArg> for CertificateRole {
    fn from(arg: RoleArg) -> Self {
        match arg {
            RoleArg::Kdh => Self::Kdh,
            RoleArg::Krd => Self::Krd,
        }
    }
}

/// A signing time: `now` or seconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
enum TimeArg {
    Now,
    Unix(u64),
}

fn parse_time(text: &str) -> std::result::Result<TimeArg, String> {
    match text {
        "now" => Ok(TimeArg::Now),
        _ => text
            .parse::<u64>()
            .map(TimeArg::Unix)
            .map_err(|_| "expected now or seconds since the Unix epoch".to_owned()),
    }
}

fn system_now() -> Result<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .map_err(|_| CliError::bad_request("the system clock is before 1970; give --now"))
}

impl TimeArg {
    fn resolve(self) -> Result<u64> {
        match self {
            Self::Now => system_now(),
            Self::Unix(secs) => Ok(secs),
        }
    }
}

fn now_or_clock(now: Option<u64>) -> Result<u64> {
    now.map_or_else(system_now, Ok)
}

fn nonce(text: &str) -> Result<Vec<u8>> {
    bytes("--nonce", text)
}

fn token(text: &str) -> Result<Vec<u8>> {
    bytes("--token", text)
}

fn id_json(id: &CertificateId) -> Value {
    json!({ "issuer": id.issuer, "serial": hex_upper(&id.serial) })
}

fn chain_json(chain: &[Vec<u8>]) -> Result<Value> {
    let entries = chain
        .iter()
        .map(|der| {
            let id = CertificateId::of_certificate(der)?;
            Ok(json!({
                "issuer": id.issuer,
                "serial": hex_upper(&id.serial),
                "certificate": hex_upper(der),
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Value::Array(entries))
}

/// The KCV of a key whose TR-31 style header names its algorithm (byte 7: T, A or D).
fn header_kcv(header: &str, key: &SecretBytes) -> Option<String> {
    let algorithm = match header.as_bytes().get(7) {
        Some(b'T') => KeyAlgorithm::Tdes,
        Some(b'A') => KeyAlgorithm::Aes,
        Some(b'D') => KeyAlgorithm::Des,
        _ => return None,
    };
    kcv_of(key, algorithm).ok()
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// `mposctl calc tr34`.
#[derive(Debug, Args)]
pub(super) struct Tr34Args {
    /// The token and the side.
    #[command(subcommand)]
    op: Tr34Command,
}

/// TR-34 operations.
#[derive(Debug, Subcommand)]
enum Tr34Command {
    /// Key token KT_KDH: build (KDH side) or verify and open (KRD side).
    #[command(subcommand)]
    KeyToken(KeyTokenCommand),
    /// Random number token RT_KRD (the KRD's nonce).
    #[command(subcommand)]
    RandomToken(RandomTokenCommand),
    /// Credential tokens CT_KRD / CT_KDH (certificate chains, unsigned).
    #[command(subcommand)]
    CredentialToken(CredentialTokenCommand),
    /// Rebind token RBT_KDH: the current KDH hands the KRD over to a new KDH.
    #[command(subcommand)]
    Rebind(RebindCommand),
    /// Unbind token UBT_KDH: the current KDH releases the KRD.
    #[command(subcommand)]
    Unbind(UnbindCommand),
}

/// Key token operations.
#[derive(Debug, Subcommand)]
enum KeyTokenCommand {
    /// Builds a key token signed by the KDH for the KRD's certificate.
    Build(BuildKeyTokenArgs),
    /// Verifies a key token (chain, signature, freshness) and decrypts its key.
    Open(OpenKeyTokenArgs),
}

#[derive(Debug, Args)]
struct BuildKeyTokenArgs {
    #[command(flatten)]
    kdh_cert: KdhCert,
    #[command(flatten)]
    kdh_key: KdhKey,
    #[command(flatten)]
    krd_cert: KrdCert,
    /// The key to transport (hex, 1 to 64 bytes).
    #[arg(long)]
    key: String,
    /// The 16-character key block header (TR-31 style, e.g. D0000K1TB00E0000).
    #[arg(long)]
    header: String,
    /// Two-pass: the KRD's random nonce (hex, 8 to 32 bytes).
    #[arg(
        long,
        conflicts_with = "signing_time",
        required_unless_present = "signing_time"
    )]
    nonce: Option<String>,
    /// One-pass: the signing time, `now` or seconds since the Unix epoch.
    #[arg(long, value_parser = parse_time)]
    signing_time: Option<TimeArg>,
    /// RSA transport of the content-encryption key.
    #[arg(long, value_enum, default_value = "oaep")]
    key_transport: TransportArg,
    /// Content cipher.
    #[arg(long, value_enum, default_value = "aes128")]
    content_encryption: CipherArg,
    /// KDH signature scheme.
    #[arg(long, value_enum, default_value = "pkcs1")]
    signature: SignatureArg,
}

#[derive(Debug, Args)]
struct OpenKeyTokenArgs {
    /// The key token (DER, hex).
    #[arg(long)]
    token: String,
    #[command(flatten)]
    ca_cert: CaCert,
    #[command(flatten)]
    kdh_chain: KdhChain,
    #[command(flatten)]
    krd_cert: KrdCert,
    #[command(flatten)]
    krd_key: KrdKey,
    /// Two-pass: the nonce this KRD sent (hex).
    #[arg(
        long,
        conflicts_with = "max_skew",
        required_unless_present = "max_skew"
    )]
    nonce: Option<String>,
    /// One-pass: the largest accepted distance in seconds between the signing time and --now.
    #[arg(long)]
    max_skew: Option<u64>,
    /// The KRD's clock, seconds since the Unix epoch (default: the system clock).
    #[arg(long)]
    now: Option<u64>,
}

/// Random number token operations.
#[derive(Debug, Subcommand)]
enum RandomTokenCommand {
    /// Builds RT_KRD from a nonce (default: 16 random bytes).
    Build {
        /// The nonce (hex, 8 to 32 bytes).
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Reads the nonce of RT_KRD.
    Open {
        /// The random number token (DER, hex).
        #[arg(long)]
        token: String,
    },
}

/// Credential token operations.
#[derive(Debug, Subcommand)]
enum CredentialTokenCommand {
    /// Builds a credential token from a certificate chain.
    Build {
        #[command(flatten)]
        chain: CertChain,
    },
    /// Verifies a credential token's chain to the CA and prints it, leaf first.
    Open {
        /// The credential token (DER, hex).
        #[arg(long)]
        token: String,
        #[command(flatten)]
        ca_cert: CaCert,
        /// The role of the leaf certificate.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Seconds since the Unix epoch for certificate validity (default: the system clock).
        #[arg(long)]
        now: Option<u64>,
    },
}

/// Rebind token operations.
#[derive(Debug, Subcommand)]
enum RebindCommand {
    /// Builds RBT_KDH, signed by the current KDH over the KRD's nonce.
    Build {
        #[command(flatten)]
        kdh_cert: KdhCert,
        #[command(flatten)]
        kdh_key: KdhKey,
        #[command(flatten)]
        krd_cert: KrdCert,
        #[command(flatten)]
        new_kdh: NewKdhChain,
        /// The KRD's random nonce (hex).
        #[arg(long)]
        nonce: String,
        /// KDH signature scheme.
        #[arg(long, value_enum, default_value = "pkcs1")]
        signature: SignatureArg,
    },
    /// Verifies RBT_KDH from the current KDH and prints the new KDH chain.
    Open {
        #[command(flatten)]
        target: BoundTokenArgs,
    },
}

/// Unbind token operations.
#[derive(Debug, Subcommand)]
enum UnbindCommand {
    /// Builds UBT_KDH, signed by the current KDH over the KRD's nonce.
    Build {
        #[command(flatten)]
        kdh_cert: KdhCert,
        #[command(flatten)]
        kdh_key: KdhKey,
        #[command(flatten)]
        krd_cert: KrdCert,
        /// The KRD's random nonce (hex).
        #[arg(long)]
        nonce: String,
        /// KDH signature scheme.
        #[arg(long, value_enum, default_value = "pkcs1")]
        signature: SignatureArg,
    },
    /// Verifies UBT_KDH from the current KDH.
    Open {
        #[command(flatten)]
        target: BoundTokenArgs,
    },
}

/// What a KRD checks a rebind or unbind token against.
#[derive(Debug, Args)]
struct BoundTokenArgs {
    /// The token (DER, hex).
    #[arg(long)]
    token: String,
    #[command(flatten)]
    ca_cert: CaCert,
    #[command(flatten)]
    kdh_chain: KdhChain,
    #[command(flatten)]
    krd_cert: KrdCert,
    /// The nonce this KRD sent (hex).
    #[arg(long)]
    nonce: String,
    /// The KRD's clock, seconds since the Unix epoch (default: the system clock).
    #[arg(long)]
    now: Option<u64>,
}

/// The loaded trust inputs of a KRD.
struct Trust {
    ca: Vec<u8>,
    chain: Vec<Vec<u8>>,
    now: u64,
}

impl Trust {
    fn load(ca: &CaCert, chain_args: &KdhChain, now: Option<u64>) -> Result<Self> {
        Ok(Self {
            ca: certificate(&ca.input())?,
            chain: chain(&chain_args.inputs())?,
            now: now_or_clock(now)?,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&KdhTrust<'_>) -> Result<T>) -> Result<T> {
        let refs: Vec<&[u8]> = self.chain.iter().map(Vec::as_slice).collect();
        f(&KdhTrust {
            ca_certificate: &self.ca,
            kdh_chain: &refs,
            now_unix: self.now,
        })
    }
}

/// Runs one TR-34 operation.
pub(super) fn run(args: Tr34Args) -> Result<Value> {
    match args.op {
        Tr34Command::KeyToken(KeyTokenCommand::Build(args)) => build_key_token(&args),
        Tr34Command::KeyToken(KeyTokenCommand::Open(args)) => open_key_token(&args),
        Tr34Command::RandomToken(RandomTokenCommand::Build { nonce: given }) => {
            let nonce = match given {
                Some(text) => nonce(&text)?,
                None => {
                    let mut fresh = vec![0_u8; DEFAULT_NONCE_LEN];
                    OsRng.fill_bytes(&mut fresh);
                    fresh
                }
            };
            let token = tr34::build_random_token(&nonce)?;
            Ok(json!({ "nonce": hex_upper(&nonce), "token": hex_upper(&token) }))
        }
        Tr34Command::RandomToken(RandomTokenCommand::Open { token: text }) => {
            let nonce = tr34::parse_random_token(&token(&text)?)?;
            Ok(json!({ "nonce": hex_upper(&nonce) }))
        }
        Tr34Command::CredentialToken(CredentialTokenCommand::Build { chain: args }) => {
            let ders = chain(&args.inputs())?;
            let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
            let token = tr34::build_credential_token(&refs)?;
            Ok(json!({ "token": hex_upper(&token) }))
        }
        Tr34Command::CredentialToken(CredentialTokenCommand::Open {
            token: text,
            ca_cert,
            role,
            now,
        }) => {
            let ca = certificate(&ca_cert.input())?;
            let chain =
                tr34::open_credential_token(&token(&text)?, &ca, now_or_clock(now)?, role.into())?;
            Ok(json!({ "valid": true, "chain": chain_json(&chain)? }))
        }
        Tr34Command::Rebind(RebindCommand::Build {
            kdh_cert,
            kdh_key,
            krd_cert,
            new_kdh,
            nonce: text,
            signature,
        }) => {
            let kdh = credential(&kdh_cert.input(), &kdh_key.input())?;
            let krd = certificate(&krd_cert.input())?;
            let new_chain = chain(&new_kdh.inputs())?;
            let refs: Vec<&[u8]> = new_chain.iter().map(Vec::as_slice).collect();
            let token = tr34::build_rebind_token(
                &mut OsRng,
                &kdh,
                &krd,
                &refs,
                &nonce(&text)?,
                signature.into(),
            )?;
            Ok(json!({ "token": hex_upper(&token) }))
        }
        Tr34Command::Rebind(RebindCommand::Open { target }) => {
            let trust = Trust::load(&target.ca_cert, &target.kdh_chain, target.now)?;
            let krd = certificate(&target.krd_cert.input())?;
            let token = token(&target.token)?;
            let nonce = nonce(&target.nonce)?;
            let new_chain =
                trust.with(|trust| Ok(tr34::open_rebind_token(&token, trust, &krd, &nonce)?))?;
            Ok(json!({ "valid": true, "new_kdh_chain": chain_json(&new_chain)? }))
        }
        Tr34Command::Unbind(UnbindCommand::Build {
            kdh_cert,
            kdh_key,
            krd_cert,
            nonce: text,
            signature,
        }) => {
            let kdh = credential(&kdh_cert.input(), &kdh_key.input())?;
            let krd = certificate(&krd_cert.input())?;
            let token =
                tr34::build_unbind_token(&mut OsRng, &kdh, &krd, &nonce(&text)?, signature.into())?;
            Ok(json!({ "token": hex_upper(&token) }))
        }
        Tr34Command::Unbind(UnbindCommand::Open { target }) => {
            let trust = Trust::load(&target.ca_cert, &target.kdh_chain, target.now)?;
            let krd = certificate(&target.krd_cert.input())?;
            let token = token(&target.token)?;
            let nonce = nonce(&target.nonce)?;
            trust.with(|trust| Ok(tr34::open_unbind_token(&token, trust, &krd, &nonce)?))?;
            Ok(json!({ "valid": true }))
        }
    }
}

fn build_key_token(args: &BuildKeyTokenArgs) -> Result<Value> {
    let kdh = credential(&args.kdh_cert.input(), &args.kdh_key.input())?;
    let krd = certificate(&args.krd_cert.input())?;
    let key = secret("--key", &args.key)?;
    let freshness = match (&args.nonce, args.signing_time) {
        (Some(text), None) => Freshness::RandomNonce(nonce(text)?),
        (None, Some(time)) => Freshness::SigningTime(time.resolve()?),
        _ => {
            return Err(CliError::bad_request(
                "give exactly one of --nonce or --signing-time",
            ));
        }
    };
    let header = args.header.trim();
    let request = KeyTokenRequest {
        key: &key,
        header,
        freshness: freshness.clone(),
        key_transport: args.key_transport.into(),
        content_encryption: args.content_encryption.into(),
        signature: args.signature.into(),
    };
    let token = tr34::build_key_token(&mut OsRng, &kdh, &krd, &request)?;
    let mut out = json!({
        "token": hex_upper(&token),
        "header": header,
        "freshness": freshness_json(&freshness),
    });
    if let Some(kcv) = header_kcv(header, &key) {
        out["kcv"] = Value::String(kcv);
    }
    Ok(out)
}

fn freshness_json(freshness: &Freshness) -> Value {
    match freshness {
        Freshness::RandomNonce(nonce) => json!({ "nonce": hex_upper(nonce) }),
        Freshness::SigningTime(secs) => json!({ "signing_time": secs }),
    }
}

fn open_key_token(args: &OpenKeyTokenArgs) -> Result<Value> {
    let trust = Trust::load(&args.ca_cert, &args.kdh_chain, args.now)?;
    let krd = credential(&args.krd_cert.input(), &args.krd_key.input())?;
    let token = token(&args.token)?;
    let expected_nonce = args.nonce.as_deref().map(nonce).transpose()?;
    let expected = match (&expected_nonce, args.max_skew) {
        (Some(nonce), None) => ExpectedFreshness::RandomNonce(nonce),
        (None, Some(max_skew_secs)) => ExpectedFreshness::SigningTime {
            now_unix: trust.now,
            max_skew_secs,
        },
        _ => {
            return Err(CliError::bad_request(
                "give exactly one of --nonce or --max-skew",
            ));
        }
    };
    let received = trust.with(|trust| Ok(tr34::open_key_token(&token, trust, &krd, expected)?))?;
    let mut out = json!({
        "header": received.header,
        "key": received.key.to_hex_upper(),
        "kdh": id_json(&received.kdh),
        "freshness": freshness_json(&received.freshness),
        "key_transport": transport_name(received.key_transport),
        "content_encryption": cipher_name(received.content_encryption),
    });
    if let Some(kcv) = header_kcv(&received.header, &received.key) {
        out["kcv"] = Value::String(kcv);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).expect("pem")
    }

    #[test]
    fn files_are_der_or_pem_blocks_with_the_right_label() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x01];
        let docs = der_documents("--x", &der, CERT_LABELS).expect("der");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].as_slice(), der);

        let two = format!(
            "comment\n{}\n{}",
            pem("CERTIFICATE", &der),
            pem("CERTIFICATE", &[1, 2])
        );
        let docs = der_documents("--x", two.as_bytes(), CERT_LABELS).expect("pem");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].as_slice(), [1, 2]);

        let key = pem("RSA PRIVATE KEY", &[9; 8]);
        let err = der_documents("--k", key.as_bytes(), CERT_LABELS).expect_err("label");
        assert!(
            err.to_json()["message"]
                .as_str()
                .expect("message")
                .contains("PEM label")
        );
        assert!(der_documents("--k", key.as_bytes(), KEY_LABELS).is_ok());

        let encrypted = pem("ENCRYPTED PRIVATE KEY", &[9; 8]);
        let err = der_documents("--k", encrypted.as_bytes(), KEY_LABELS).expect_err("enc");
        assert_eq!(err.to_json()["code"], "unsupported");

        let truncated = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n";
        let err = der_documents("--x", truncated.as_bytes(), CERT_LABELS).expect_err("end");
        assert_eq!(err.exit_status(), 2);
    }

    #[test]
    fn times_are_now_or_unix_seconds() {
        assert!(matches!(parse_time("now"), Ok(TimeArg::Now)));
        assert!(matches!(
            parse_time("1767225600"),
            Ok(TimeArg::Unix(1_767_225_600))
        ));
        let err = parse_time("0123456789ABCDEF").expect_err("bad");
        assert!(!err.contains("0123456789ABCDEF"));
    }

    #[test]
    fn header_kcv_follows_the_algorithm_byte() {
        let key = SecretBytes::from_hex("k", "0123456789ABCDEFFEDCBA9876543210").expect("hex");
        assert_eq!(
            header_kcv("D0000K1TB00E0000", &key).as_deref(),
            Some("08D7B4")
        );
        assert_eq!(header_kcv("D0000K1HB00E0000", &key), None);
        assert_eq!(header_kcv("short", &key), None);
    }
}
