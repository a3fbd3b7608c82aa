//! DER decoding of the extension with asn1-rs (which handles the multi-byte context tags of
//! the AuthorizationList, up to [724]).

use asn1_rs::{Any, Class, Enumerated, FromDer, Null, Tag};

use crate::error::{AttestationError, describe_tag};
use crate::model::{
    AttestationApplicationId, AttestationPackageInfo, AuthorizationList, KeyDescription, Origin,
    RootOfTrust, SecurityLevel, VerifiedBootState,
};

type Result<T> = std::result::Result<T, AttestationError>;

/// At most this many values in a `SET OF INTEGER` field (KeyMint defines far fewer purposes,
/// digests, paddings or block modes).
pub const MAX_SET_VALUES: usize = 32;
/// At most this many `packageInfos` (android/keyattestation's default limit).
pub const MAX_PACKAGES: usize = 32;
/// At most this many `signatureDigests` (android/keyattestation's default limit).
pub const MAX_SIGNATURES: usize = 10;

/// Splits the next DER element off `input`: (its raw bytes, the element, the rest).
fn next<'a>(input: &'a [u8], field: &str) -> Result<(&'a [u8], Any<'a>, &'a [u8])> {
    let (rest, any) = Any::from_der(input).map_err(|e| AttestationError::asn1(field, e))?;
    let consumed = input.len().saturating_sub(rest.len());
    let raw = input
        .get(..consumed)
        .ok_or_else(|| AttestationError::Malformed {
            field: field.to_owned(),
            reason: "element length".to_owned(),
        })?;
    Ok((raw, any, rest))
}

/// Exactly one DER element, nothing after it.
fn single<'a>(input: &'a [u8], field: &str) -> Result<(&'a [u8], Any<'a>)> {
    let (raw, any, rest) = next(input, field)?;
    if !rest.is_empty() {
        return Err(AttestationError::TrailingData {
            field: field.to_owned(),
        });
    }
    Ok((raw, any))
}

/// Decodes one DER value of type `T` that fills `raw` exactly.
fn value<'a, T: FromDer<'a>>(raw: &'a [u8], field: &str) -> Result<T> {
    let (rest, v) = T::from_der(raw).map_err(|e| AttestationError::asn1(field, e))?;
    if !rest.is_empty() {
        return Err(AttestationError::TrailingData {
            field: field.to_owned(),
        });
    }
    Ok(v)
}

/// The content of a universal constructed element (SEQUENCE or SET) that fills `raw`.
fn constructed<'a>(
    raw: &'a [u8],
    tag: Tag,
    expected: &'static str,
    field: &str,
) -> Result<&'a [u8]> {
    let (_, any) = single(raw, field)?;
    if any.class() != Class::Universal || any.tag() != tag || !any.header.is_constructed() {
        return Err(AttestationError::WrongType {
            field: field.to_owned(),
            expected,
            found: found(&any),
        });
    }
    Ok(any.data)
}

fn found(any: &Any<'_>) -> String {
    match any.class() {
        Class::Universal => describe_tag(any.tag()),
        Class::ContextSpecific => format!("context tag [{}]", any.tag().0),
        Class::Application => format!("application tag [{}]", any.tag().0),
        Class::Private => format!("private tag [{}]", any.tag().0),
    }
}

/// The raw elements of a SEQUENCE or SET content, at most `limit` of them.
fn elements<'a>(mut content: &'a [u8], limit: usize, field: &str) -> Result<Vec<&'a [u8]>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        if out.len() == limit {
            return Err(AttestationError::TooManyElements {
                field: field.to_owned(),
                limit,
            });
        }
        let (raw, _, rest) = next(content, field)?;
        out.push(raw);
        content = rest;
    }
    Ok(out)
}

/// The raw elements of a SEQUENCE that fills `raw`; a SEQUENCE of more than `max` elements is
/// a [`AttestationError::WrongElementCount`] (counted without storing the surplus).
fn sequence<'a>(
    raw: &'a [u8],
    max: usize,
    expected: &'static str,
    field: &str,
) -> Result<Vec<&'a [u8]>> {
    let mut content = constructed(raw, Tag::Sequence, "SEQUENCE", field)?;
    let mut out = Vec::new();
    let mut count = 0usize;
    while !content.is_empty() {
        let (element, _, rest) = next(content, field)?;
        if out.len() < max {
            out.push(element);
        }
        count += 1;
        content = rest;
    }
    if count > max {
        return Err(AttestationError::WrongElementCount {
            field: field.to_owned(),
            expected,
            found: count,
        });
    }
    Ok(out)
}

fn set<'a>(raw: &'a [u8], limit: usize, field: &str) -> Result<Vec<&'a [u8]>> {
    let content = constructed(raw, Tag::Set, "SET OF", field)?;
    elements(content, limit, field)
}

fn uint(raw: &[u8], field: &str) -> Result<u64> {
    value::<u64>(raw, field)
}

fn octets(raw: &[u8], field: &str) -> Result<Vec<u8>> {
    value::<&[u8]>(raw, field).map(<[u8]>::to_vec)
}

fn utf8(raw: &[u8], field: &str) -> Result<String> {
    let bytes = value::<&[u8]>(raw, field)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| AttestationError::NotUtf8 {
        field: field.to_owned(),
    })
}

/// A DER BOOLEAN: one content byte, `00` or `FF` (X.690 11.1). Decoded from the generic
/// element rather than with asn1-rs's `Boolean`, whose DER check (0.7.2) indexes the first
/// content byte before checking the length and panics on an empty BOOLEAN (found by the
/// `android_key_description` fuzz target).
fn boolean(raw: &[u8], field: &str) -> Result<bool> {
    let (_, any) = single(raw, field)?;
    if any.class() != Class::Universal || any.tag() != Tag::Boolean || any.header.is_constructed() {
        return Err(AttestationError::WrongType {
            field: field.to_owned(),
            expected: "BOOLEAN",
            found: found(&any),
        });
    }
    match any.data {
        [0x00] => Ok(false),
        [0xFF] => Ok(true),
        [_] => Err(AttestationError::Malformed {
            field: field.to_owned(),
            reason: "a DER BOOLEAN is 00 or FF".to_owned(),
        }),
        _ => Err(AttestationError::Malformed {
            field: field.to_owned(),
            reason: format!("a BOOLEAN has one content byte, not {}", any.data.len()),
        }),
    }
}

fn enumerated(raw: &[u8], field: &str) -> Result<u32> {
    value::<Enumerated>(raw, field).map(|e| e.0)
}

fn null(raw: &[u8], field: &str) -> Result<bool> {
    value::<Null>(raw, field).map(|_| true)
}

fn uint_set(raw: &[u8], field: &str) -> Result<Vec<u64>> {
    set(raw, MAX_SET_VALUES, field)?
        .into_iter()
        .map(|element| uint(element, field))
        .collect()
}

fn security_level(raw: &[u8], field: &str) -> Result<SecurityLevel> {
    let v = enumerated(raw, field)?;
    SecurityLevel::from_value(v).ok_or_else(|| AttestationError::InvalidValue {
        field: field.to_owned(),
        value: v.to_string(),
    })
}

/// Decodes the DER `KeyDescription` SEQUENCE (the extension's OCTET STRING content).
pub(crate) fn key_description(der: &[u8]) -> Result<KeyDescription> {
    let parts = sequence(der, 8, "8", "KeyDescription")?;
    let [
        attestation_version,
        attestation_security_level,
        key_mint_version,
        key_mint_security_level,
        attestation_challenge,
        unique_id,
        software_enforced,
        hardware_enforced,
    ] = parts[..]
    else {
        return Err(AttestationError::WrongElementCount {
            field: "KeyDescription".to_owned(),
            expected: "8",
            found: parts.len(),
        });
    };
    Ok(KeyDescription {
        attestation_version: uint(attestation_version, "attestationVersion")?,
        attestation_security_level: security_level(
            attestation_security_level,
            "attestationSecurityLevel",
        )?,
        key_mint_version: uint(key_mint_version, "keyMintVersion")?,
        key_mint_security_level: security_level(key_mint_security_level, "keyMintSecurityLevel")?,
        attestation_challenge: octets(attestation_challenge, "attestationChallenge")?,
        unique_id: octets(unique_id, "uniqueId")?,
        software_enforced: authorization_list(software_enforced, "softwareEnforced")?,
        hardware_enforced: authorization_list(hardware_enforced, "hardwareEnforced")?,
    })
}

/// The AuthorizationList tags this parser knows, with their JSON names.
const TAGS: &[(u32, &str)] = &[
    (1, "purposes"),
    (2, "algorithms"),
    (3, "keySize"),
    (4, "blockModes"),
    (5, "digests"),
    (6, "paddings"),
    (10, "ecCurve"),
    (11, "mlDsaVariant"),
    (200, "rsaPublicExponent"),
    (203, "rsaOaepMgfDigests"),
    (303, "rollbackResistance"),
    (305, "earlyBootOnly"),
    (400, "activeDateTime"),
    (401, "originationExpireDateTime"),
    (402, "usageExpireDateTime"),
    (405, "usageCountLimit"),
    (503, "noAuthRequired"),
    (504, "userAuthType"),
    (505, "authTimeout"),
    (506, "allowWhileOnBody"),
    (507, "trustedUserPresenceRequired"),
    (508, "trustedConfirmationRequired"),
    (509, "unlockedDeviceRequired"),
    (600, "allApplications"),
    (701, "creationDateTime"),
    (702, "origin"),
    (703, "rollbackResistant"),
    (704, "rootOfTrust"),
    (705, "osVersion"),
    (706, "osPatchLevel"),
    (709, "attestationApplicationId"),
    (710, "attestationIdBrand"),
    (711, "attestationIdDevice"),
    (712, "attestationIdProduct"),
    (713, "attestationIdSerial"),
    (714, "attestationIdImei"),
    (715, "attestationIdMeid"),
    (716, "attestationIdManufacturer"),
    (717, "attestationIdModel"),
    (718, "vendorPatchLevel"),
    (719, "bootPatchLevel"),
    (720, "deviceUniqueAttestation"),
    (723, "attestationIdSecondImei"),
    (724, "moduleHash"),
];

/// The JSON name of a known AuthorizationList tag.
pub(crate) fn tag_json_name(tag: u32) -> Option<&'static str> {
    TAGS.iter().find(|(t, _)| *t == tag).map(|(_, name)| *name)
}

/// Decodes an AuthorizationList: EXPLICIT context-tagged fields in strictly ascending tag
/// order; an unknown tag is an error.
fn authorization_list(raw: &[u8], list: &'static str) -> Result<AuthorizationList> {
    let mut content = constructed(raw, Tag::Sequence, "SEQUENCE", list)?;
    let mut al = AuthorizationList::default();
    let mut previous: Option<u32> = None;
    while !content.is_empty() {
        let (_, field_any, rest) = next(content, list)?;
        content = rest;
        if field_any.class() != Class::ContextSpecific || !field_any.header.is_constructed() {
            return Err(AttestationError::WrongType {
                field: list.to_owned(),
                expected: "an EXPLICIT context-tagged field",
                found: found(&field_any),
            });
        }
        let tag = field_any.tag().0;
        if let Some(previous) = previous
            && tag <= previous
        {
            return Err(AttestationError::TagsNotAscending {
                list,
                previous,
                tag,
            });
        }
        previous = Some(tag);
        let name = tag_json_name(tag).ok_or(AttestationError::UnknownTag { list, tag })?;
        let field = format!("{list}.{name}");
        let (v, _) = single(field_any.data, &field)?;
        let f = field.as_str();
        match tag {
            1 => al.purposes = Some(uint_set(v, f)?),
            2 => al.algorithm = Some(uint(v, f)?),
            3 => al.key_size = Some(uint(v, f)?),
            4 => al.block_modes = Some(uint_set(v, f)?),
            5 => al.digests = Some(uint_set(v, f)?),
            6 => al.paddings = Some(uint_set(v, f)?),
            10 => al.ec_curve = Some(uint(v, f)?),
            11 => al.ml_dsa_variant = Some(uint(v, f)?),
            200 => al.rsa_public_exponent = Some(uint(v, f)?),
            203 => al.mgf_digests = Some(uint_set(v, f)?),
            303 => al.rollback_resistance = null(v, f)?,
            305 => al.early_boot_only = null(v, f)?,
            400 => al.active_date_time = Some(uint(v, f)?),
            401 => al.origination_expire_date_time = Some(uint(v, f)?),
            402 => al.usage_expire_date_time = Some(uint(v, f)?),
            405 => al.usage_count_limit = Some(uint(v, f)?),
            503 => al.no_auth_required = null(v, f)?,
            504 => al.user_auth_type = Some(uint(v, f)?),
            505 => al.auth_timeout = Some(uint(v, f)?),
            506 => al.allow_while_on_body = null(v, f)?,
            507 => al.trusted_user_presence_required = null(v, f)?,
            508 => al.trusted_confirmation_required = null(v, f)?,
            509 => al.unlocked_device_required = null(v, f)?,
            600 => al.all_applications = null(v, f)?,
            701 => al.creation_date_time = Some(uint(v, f)?),
            702 => {
                let n = uint(v, f)?;
                al.origin =
                    Some(
                        Origin::from_value(n).ok_or_else(|| AttestationError::InvalidValue {
                            field: field.clone(),
                            value: n.to_string(),
                        })?,
                    );
            }
            703 => al.rollback_resistant = null(v, f)?,
            704 => al.root_of_trust = Some(root_of_trust(v, f)?),
            705 => al.os_version = Some(uint(v, f)?),
            706 => al.os_patch_level = Some(uint(v, f)?),
            709 => al.attestation_application_id = Some(attestation_application_id(v, f)?),
            710 => al.attestation_id_brand = Some(utf8(v, f)?),
            711 => al.attestation_id_device = Some(utf8(v, f)?),
            712 => al.attestation_id_product = Some(utf8(v, f)?),
            713 => al.attestation_id_serial = Some(utf8(v, f)?),
            714 => al.attestation_id_imei = Some(utf8(v, f)?),
            715 => al.attestation_id_meid = Some(utf8(v, f)?),
            716 => al.attestation_id_manufacturer = Some(utf8(v, f)?),
            717 => al.attestation_id_model = Some(utf8(v, f)?),
            718 => al.vendor_patch_level = Some(uint(v, f)?),
            719 => al.boot_patch_level = Some(uint(v, f)?),
            720 => al.device_unique_attestation = null(v, f)?,
            723 => al.attestation_id_second_imei = Some(utf8(v, f)?),
            724 => al.module_hash = Some(octets(v, f)?),
            _ => return Err(AttestationError::UnknownTag { list, tag }),
        }
    }
    Ok(al)
}

fn root_of_trust(raw: &[u8], field: &str) -> Result<RootOfTrust> {
    let parts = sequence(raw, 4, "3 or 4", field)?;
    let (key, locked, state, hash) = match parts[..] {
        [key, locked, state] => (key, locked, state, None),
        [key, locked, state, hash] => (key, locked, state, Some(hash)),
        _ => {
            return Err(AttestationError::WrongElementCount {
                field: field.to_owned(),
                expected: "3 or 4",
                found: parts.len(),
            });
        }
    };
    let state_field = format!("{field}.verifiedBootState");
    let state_value = enumerated(state, &state_field)?;
    Ok(RootOfTrust {
        verified_boot_key: octets(key, &format!("{field}.verifiedBootKey"))?,
        device_locked: boolean(locked, &format!("{field}.deviceLocked"))?,
        verified_boot_state: VerifiedBootState::from_value(state_value).ok_or_else(|| {
            AttestationError::InvalidValue {
                field: state_field.clone(),
                value: state_value.to_string(),
            }
        })?,
        verified_boot_hash: match hash {
            Some(hash) => Some(octets(hash, &format!("{field}.verifiedBootHash"))?),
            None => None,
        },
    })
}

fn attestation_application_id(raw: &[u8], field: &str) -> Result<AttestationApplicationId> {
    let inner = value::<&[u8]>(raw, field)?;
    let parts = sequence(inner, 2, "2", field)?;
    let [package_infos, signature_digests] = parts[..] else {
        return Err(AttestationError::WrongElementCount {
            field: field.to_owned(),
            expected: "2",
            found: parts.len(),
        });
    };
    let packages_field = format!("{field}.packages");
    let packages = set(package_infos, MAX_PACKAGES, &packages_field)?
        .into_iter()
        .map(|package| {
            let parts = sequence(package, 2, "2", &packages_field)?;
            let [name, version] = parts[..] else {
                return Err(AttestationError::WrongElementCount {
                    field: packages_field.clone(),
                    expected: "2",
                    found: parts.len(),
                });
            };
            Ok(AttestationPackageInfo {
                name: utf8(name, &format!("{packages_field}.name"))?,
                version: value::<i64>(version, &format!("{packages_field}.version"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let signatures_field = format!("{field}.signatures");
    let signatures = set(signature_digests, MAX_SIGNATURES, &signatures_field)?
        .into_iter()
        .map(|digest| octets(digest, &signatures_field))
        .collect::<Result<Vec<_>>>()?;
    Ok(AttestationApplicationId {
        packages,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_one_byte_00_or_ff() {
        assert_eq!(boolean(&[0x01, 0x01, 0x00], "f").ok(), Some(false));
        assert_eq!(boolean(&[0x01, 0x01, 0xFF], "f").ok(), Some(true));
        // Not DER (BER would read it as true).
        assert!(matches!(
            boolean(&[0x01, 0x01, 0x01], "f"),
            Err(AttestationError::Malformed { .. })
        ));
        // No content byte: asn1-rs 0.7.2's own check panics on this one.
        assert!(matches!(
            boolean(&[0x01, 0x00], "f"),
            Err(AttestationError::Malformed { .. })
        ));
        assert!(matches!(
            boolean(&[0x01, 0x02, 0x00, 0x00], "f"),
            Err(AttestationError::Malformed { .. })
        ));
        assert!(matches!(
            boolean(&[0x02, 0x01, 0x00], "f"),
            Err(AttestationError::WrongType { .. })
        ));
        assert!(matches!(
            boolean(&[0x21, 0x00], "f"),
            Err(AttestationError::WrongType { .. })
        ));
    }
}
