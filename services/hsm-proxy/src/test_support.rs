//! What tests of the hsm-proxy's callers and the end-to-end fixture do the same way (cargo
//! feature `test-support`, off in the services' own builds): entering a clear *test* key as
//! clear components. A real key is never whole in one place; this is only for published or
//! generated test keys.

use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;

use crate::error::HsmError;

/// Every byte of the first of the two components [`components`] splits a key into.
pub const FIRST_COMPONENT: u8 = 0x11;

/// Key attributes: the algorithm and the TR-31 key usage, mode of use and exportability.
pub fn attributes(
    algorithm: pb::KeyAlgorithm,
    usage: &str,
    mode: &str,
    exportability: &str,
) -> pb::KeyAttributes {
    pb::KeyAttributes {
        algorithm: algorithm.into(),
        key_usage: usage.into(),
        mode_of_use: mode.into(),
        exportability: exportability.into(),
    }
}

/// Two clear components whose XOR is `key`: the first all [`FIRST_COMPONENT`] bytes, the
/// second `key` XOR that.
pub fn components(key: &[u8]) -> [Vec<u8>; 2] {
    let first = vec![FIRST_COMPONENT; key.len()];
    let second = key.iter().zip(&first).map(|(a, b)| a ^ b).collect();
    [first, second]
}

/// The KCV the registry shows for a clear symmetric key of `algorithm`, computed here with
/// paycrypto's published-vector-tested functions (TDES encrypt-zeros, AES CMAC, the first 3
/// bytes of HMAC-SHA-256 over 16 zero bytes) and not with the hsm-proxy's own
/// [`kcv_of`](crate::backend::kcv_of), so that the hsm-proxy's tests check that one.
pub fn kcv(algorithm: pb::KeyAlgorithm, key: &[u8]) -> Result<String, HsmError> {
    use pb::KeyAlgorithm::{Aes128, Aes192, Aes256, HmacSha256, Tdes2key, Tdes3key};
    let key = SecretBytes::from_slice(key);
    Ok(match algorithm {
        Tdes2key | Tdes3key => paycrypto::kcv::tdes_kcv(&key)?.to_hex(),
        Aes128 | Aes192 | Aes256 => paycrypto::kcv::aes_kcv_cmac(&key)?.to_hex(),
        HmacSha256 => {
            let mac = paycrypto::mac::MacAlgorithm::HmacSha256.generate(&key, &[0_u8; 16], 32)?;
            hex::encode_upper(&mac[..3])
        }
        other => {
            return Err(HsmError::invalid(
                "attributes.algorithm",
                format!("{} is not entered as components", other.as_str_name()),
            ));
        }
    })
}

/// An `ImportKey` request entering the clear test key `key` for `tenant` under `alias` as its
/// two [`components`], each with its [`kcv`] and with the key's.
pub fn components_import(
    tenant: &str,
    alias: &str,
    attributes: pb::KeyAttributes,
    key: &[u8],
) -> Result<pb::ImportKeyRequest, HsmError> {
    let algorithm = pb::KeyAlgorithm::try_from(attributes.algorithm)
        .map_err(|_| HsmError::invalid("attributes.algorithm", "not a key algorithm"))?;
    let kcv = |bytes: &[u8]| kcv(algorithm, bytes);
    let components = components(key)
        .into_iter()
        .map(|component| {
            Ok(pb::KeyComponent {
                kcv: kcv(&component)?,
                value: hex::encode_upper(&component),
            })
        })
        .collect::<Result<_, HsmError>>()?;
    Ok(pb::ImportKeyRequest {
        tenant_id: tenant.into(),
        alias: alias.into(),
        material: Some(pb::import_key_request::Material::Components(
            pb::ComponentsImport {
                attributes: Some(attributes),
                components,
                kcv: kcv(key)?,
            },
        )),
    })
}
