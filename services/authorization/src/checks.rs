//! The checks a payment passes before anything is sent to an acquirer, each a typed decline
//! reason, in the order the service runs them:
//!
//! 1. the terminal ([`check_terminal`]): known, active, its parameters complete, the currency
//!    its own, contactless under the contactless limit, and what the card decided offline
//!    (an AAC declines; a TC above the floor limit declines);
//! 2. SoftPOS: the attestation token (in the service, against the token keys);
//! 3. after the HSM deciphered the card data: the card ([`check_card`]): not expired, its token
//!    not blocked, its BIN not in a blocked range and inside the allow-list if there is one.
//!
//! Pure functions over what the service read; the EMV data it forwards is cut down to an
//! allow-list of tags ([`forwarded_emv_data`]) so no PAN, track data or cardholder name in the
//! terminal's TLV ever reaches a bus or an acquirer link through field 55.

use emv_tlv::{Tag, Tlv};
use mpos_proto::authorization as pb;
use tms_params::{CardToken, Currency, Effective};

use crate::card::CardData;

/// A failed check: the reason code and a message safe to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decline {
    /// The reason.
    pub reason: pb::DeclineReason,
    /// What to tell the merchant; never card data.
    pub message: String,
}

impl Decline {
    /// A decline for `reason`.
    pub fn new(reason: pb::DeclineReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A terminal's lifecycle state as authorization needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalState {
    /// May take payments.
    Active,
    /// Anything else, by name (`bound`, `suspended`, ...).
    Inactive(&'static str),
}

/// What authorization knows of a terminal (from terminal-management's events).
#[derive(Clone, Debug)]
pub struct TerminalContext {
    /// Its state.
    pub state: TerminalState,
    /// The merchant it belongs to.
    pub merchant_id: String,
    /// Its terminal group, if it is in one.
    pub terminal_group_id: String,
    /// Its resolved parameters, or what is missing.
    pub parameters: Result<Effective, String>,
    /// The version of the parameters (the log position of the last change on its path).
    pub parameters_version: u64,
}

/// What the card decided offline (EMV Book 3 §6.5.5.4, cryptogram information data 9F27,
/// bits 8-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cryptogram {
    /// Application authentication cryptogram: the card declined.
    Aac,
    /// Transaction certificate: the card approved offline.
    Tc,
    /// Authorization request cryptogram: the card asks for online authorization.
    Arqc,
}

impl Cryptogram {
    /// From the cryptogram information data byte (9F27): `00` AAC, `40` TC, `80` ARQC, `C0`
    /// reserved (None).
    pub fn from_cid(cid: u8) -> Option<Self> {
        match cid & 0xC0 {
            0x00 => Some(Self::Aac),
            0x40 => Some(Self::Tc),
            0x80 => Some(Self::Arqc),
            _ => None,
        }
    }
}

/// The facts of a payment the terminal checks need.
#[derive(Clone, Debug)]
pub struct PaymentFacts<'a> {
    /// The type.
    pub transaction_type: pb::TransactionType,
    /// Minor units.
    pub amount_minor: u64,
    /// ISO 4217 alphabetic.
    pub currency: &'a str,
    /// How the card was read.
    pub entry_mode: pb::EntryMode,
    /// What the card decided, from the EMV data (None for a swipe).
    pub cryptogram: Option<Cryptogram>,
}

/// Check 1: the terminal and the amount against its parameters.
pub fn check_terminal(
    terminal: Option<&TerminalContext>,
    facts: &PaymentFacts<'_>,
) -> Result<(), Decline> {
    use pb::DeclineReason as R;
    let Some(terminal) = terminal else {
        return Err(Decline::new(R::TerminalUnknown, "terminal unknown"));
    };
    if let TerminalState::Inactive(state) = terminal.state {
        return Err(Decline::new(
            R::TerminalNotActive,
            format!("the terminal is {state}"),
        ));
    }
    let parameters = match &terminal.parameters {
        Ok(parameters) => parameters.values(),
        Err(missing) => {
            return Err(Decline::new(
                R::ParametersMissing,
                format!("the terminal's parameters are incomplete: {missing}"),
            ));
        }
    };
    let Some(currency) = parameters.transaction_currency else {
        return Err(Decline::new(
            R::ParametersMissing,
            "the terminal's parameters are incomplete: transaction_currency",
        ));
    };
    if Currency::from_alpha(facts.currency).ok() != Some(currency) {
        return Err(Decline::new(
            R::CurrencyNotAccepted,
            format!("the terminal takes {currency}, not {}", facts.currency),
        ));
    }
    if facts.entry_mode == pb::EntryMode::Contactless
        && let Some(limit) = parameters.contactless_transaction_limit
        && facts.amount_minor > limit.minor_units()
    {
        return Err(Decline::new(
            R::ContactlessLimitExceeded,
            format!(
                "contactless limit exceeded: {} > {}",
                facts.amount_minor,
                limit.minor_units()
            ),
        ));
    }
    match facts.cryptogram {
        Some(Cryptogram::Aac) => Err(Decline::new(
            R::CardDeclined,
            "the card declined the payment (AAC)",
        )),
        Some(Cryptogram::Tc) => {
            let floor = parameters
                .floor_limits
                .get(&currency)
                .map_or(0, |limit| limit.minor_units());
            if facts.amount_minor > floor {
                Err(Decline::new(
                    R::OverFloorLimit,
                    format!(
                        "approved offline above the floor limit: {} > {floor}",
                        facts.amount_minor
                    ),
                ))
            } else {
                Ok(())
            }
        }
        Some(Cryptogram::Arqc) | None => Ok(()),
    }
}

/// Check 3: the deciphered card. `year`/`month`: today (UTC).
pub fn check_card(
    card: &CardData,
    token: &CardToken,
    parameters: &Effective,
    year: i32,
    month: u32,
) -> Result<(), Decline> {
    use pb::DeclineReason as R;
    if card.expiry().expired_at(year, month) {
        return Err(Decline::new(R::CardExpired, "the card has expired"));
    }
    let values = parameters.values();
    if values.blocked_card_tokens.binary_search(token).is_ok() {
        return Err(Decline::new(R::CardBlocked, "the card is blocked"));
    }
    if values
        .blocked_bin_ranges
        .iter()
        .any(|range| range.contains(card.pan()))
    {
        return Err(Decline::new(R::BinBlocked, "the card's BIN is blocked"));
    }
    if let Some(allowed) = &values.allowed_bin_ranges
        && !allowed.is_empty()
        && !allowed.iter().any(|range| range.contains(card.pan()))
    {
        return Err(Decline::new(
            R::BinNotAllowed,
            "the card's BIN is not accepted by this terminal",
        ));
    }
    Ok(())
}

/// The EMV tags forwarded to the acquirer in field 55: what the issuer needs to verify the
/// ARQC and judge the transaction (EMV Book 4 / scheme host specifications' field 55 sets).
/// Everything else (PAN 5A, track 2 equivalent 57, cardholder name 5F20, track discretionary
/// data 9F1F/9F20, expiry 5F24, ...) is dropped.
pub const FORWARDED_TAGS: [u32; 29] = [
    0x4F,   // application identifier (card)
    0x82,   // application interchange profile
    0x84,   // dedicated file name
    0x95,   // terminal verification results
    0x9A,   // transaction date
    0x9C,   // transaction type
    0x5F2A, // transaction currency code
    0x5F34, // PAN sequence number
    0x9F02, // amount, authorised
    0x9F03, // amount, other
    0x9F06, // application identifier (terminal)
    0x9F07, // application usage control
    0x9F09, // application version number (terminal)
    0x9F10, // issuer application data
    0x9F1A, // terminal country code
    0x9F1E, // interface device serial number
    0x9F21, // transaction time
    0x9F26, // application cryptogram
    0x9F27, // cryptogram information data
    0x9F33, // terminal capabilities
    0x9F34, // CVM results
    0x9F35, // terminal type
    0x9F36, // application transaction counter
    0x9F37, // unpredictable number
    0x9F41, // transaction sequence counter
    0x9F53, // transaction category code
    0x9F6E, // form factor indicator / third party data
    0x9F7C, // customer exclusive data
    0x9F66, // terminal transaction qualifiers
];

/// Why the terminal's EMV data was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("emv_data: {0}")]
pub struct EmvDataError(String);

/// The terminal's EMV data read: the cryptogram decision and the TLV to forward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmvData {
    /// What the card decided (9F27), if it said.
    pub cryptogram: Option<Cryptogram>,
    /// The allow-listed tags, re-encoded, in the terminal's order.
    pub forwarded: Vec<u8>,
}

/// Reads the terminal's BER-TLV EMV data (empty: no chip data). Constructed templates are
/// looked into; only primitive allow-listed tags are forwarded, each once.
pub fn forwarded_emv_data(bytes: &[u8]) -> Result<EmvData, EmvDataError> {
    if bytes.is_empty() {
        return Ok(EmvData::default());
    }
    if bytes.len() > 1024 {
        return Err(EmvDataError("at most 1024 bytes".into()));
    }
    let items = emv_tlv::parse(bytes).map_err(|error| EmvDataError(error.to_string()))?;
    let mut forwarded: Vec<Tlv> = Vec::new();
    collect(&items, &mut forwarded);
    let cryptogram = match emv_tlv::find(&items, Tag(0x9F27)) {
        Some([cid]) => Some(
            Cryptogram::from_cid(*cid)
                .ok_or_else(|| EmvDataError("9F27: reserved cryptogram type".into()))?,
        ),
        Some(_) => return Err(EmvDataError("9F27: must be 1 byte".into())),
        None => None,
    };
    Ok(EmvData {
        cryptogram,
        forwarded: emv_tlv::encode(&forwarded),
    })
}

fn collect(items: &[Tlv], out: &mut Vec<Tlv>) {
    for item in items {
        match item.primitive_value() {
            Some(value) => {
                if FORWARDED_TAGS.contains(&item.tag.0) && !out.iter().any(|t| t.tag == item.tag) {
                    out.push(Tlv::primitive(item.tag, value.to_vec()));
                }
            }
            None => {
                if let emv_tlv::Value::Constructed(children) = &item.value {
                    collect(children, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use emv_tlv::TlvList;
    use tms_params::{Level, LevelKind, RiskParameters};

    use super::*;

    fn parameters(edit: impl FnOnce(&mut RiskParameters)) -> Effective {
        let mut values = RiskParameters {
            transaction_currency: Currency::from_alpha("EUR").ok(),
            contactless_transaction_limit: tms_params::Amount::new(10_000).ok(),
            ..RiskParameters::default()
        };
        values.floor_limits.insert(
            Currency::from_alpha("EUR").expect("eur"),
            tms_params::Amount::new(5_000).expect("amount"),
        );
        edit(&mut values);
        tms_params::resolve(&[Level {
            kind: LevelKind::Tenant,
            node_id: "acme",
            parameters: &values,
        }])
        .expect("resolve")
    }

    fn terminal(state: TerminalState) -> TerminalContext {
        TerminalContext {
            state,
            merchant_id: "m-1".into(),
            terminal_group_id: String::new(),
            parameters: Ok(parameters(|_| {})),
            parameters_version: 7,
        }
    }

    fn facts(
        amount: u64,
        entry: pb::EntryMode,
        cryptogram: Option<Cryptogram>,
    ) -> PaymentFacts<'static> {
        PaymentFacts {
            transaction_type: pb::TransactionType::Purchase,
            amount_minor: amount,
            currency: "EUR",
            entry_mode: entry,
            cryptogram,
        }
    }

    fn reason(result: Result<(), Decline>) -> Option<pb::DeclineReason> {
        result.err().map(|decline| decline.reason)
    }

    #[test]
    fn the_terminal_must_be_known_active_and_configured() {
        let chip = facts(1_000, pb::EntryMode::Chip, Some(Cryptogram::Arqc));
        assert_eq!(
            reason(check_terminal(None, &chip)),
            Some(pb::DeclineReason::TerminalUnknown)
        );
        assert_eq!(
            reason(check_terminal(
                Some(&terminal(TerminalState::Inactive("suspended"))),
                &chip
            )),
            Some(pb::DeclineReason::TerminalNotActive)
        );
        let mut unconfigured = terminal(TerminalState::Active);
        unconfigured.parameters = Err("transaction_currency".into());
        assert_eq!(
            reason(check_terminal(Some(&unconfigured), &chip)),
            Some(pb::DeclineReason::ParametersMissing)
        );
        assert_eq!(
            check_terminal(Some(&terminal(TerminalState::Active)), &chip),
            Ok(())
        );
    }

    #[test]
    fn currency_and_contactless_limit() {
        let active = terminal(TerminalState::Active);
        let mut dollars = facts(1_000, pb::EntryMode::Chip, None);
        dollars.currency = "USD";
        assert_eq!(
            reason(check_terminal(Some(&active), &dollars)),
            Some(pb::DeclineReason::CurrencyNotAccepted)
        );
        assert_eq!(
            check_terminal(
                Some(&active),
                &facts(10_000, pb::EntryMode::Contactless, Some(Cryptogram::Arqc))
            ),
            Ok(())
        );
        assert_eq!(
            reason(check_terminal(
                Some(&active),
                &facts(10_001, pb::EntryMode::Contactless, Some(Cryptogram::Arqc))
            )),
            Some(pb::DeclineReason::ContactlessLimitExceeded)
        );
        // The contactless limit does not apply to a chip payment.
        assert_eq!(
            check_terminal(
                Some(&active),
                &facts(10_001, pb::EntryMode::Chip, Some(Cryptogram::Arqc))
            ),
            Ok(())
        );
    }

    #[test]
    fn offline_decisions_of_the_card() {
        let active = terminal(TerminalState::Active);
        assert_eq!(
            reason(check_terminal(
                Some(&active),
                &facts(100, pb::EntryMode::Chip, Some(Cryptogram::Aac))
            )),
            Some(pb::DeclineReason::CardDeclined)
        );
        assert_eq!(
            check_terminal(
                Some(&active),
                &facts(5_000, pb::EntryMode::Chip, Some(Cryptogram::Tc))
            ),
            Ok(())
        );
        assert_eq!(
            reason(check_terminal(
                Some(&active),
                &facts(5_001, pb::EntryMode::Chip, Some(Cryptogram::Tc))
            )),
            Some(pb::DeclineReason::OverFloorLimit)
        );
        assert_eq!(Cryptogram::from_cid(0xC0), None);
        assert_eq!(Cryptogram::from_cid(0x80), Some(Cryptogram::Arqc));
        assert_eq!(Cryptogram::from_cid(0x41), Some(Cryptogram::Tc));
    }

    fn card(track2: &str) -> CardData {
        CardData::from_plaintext(track2.as_bytes()).expect("card")
    }

    #[test]
    fn card_checks_in_order() {
        let key = tms_params::TokenKey::new(&[7; 32]).expect("key");
        let visa = card("4761739001010119=29122011143804400000");
        let token = CardToken::from_pan(&key, visa.pan());
        let open = parameters(|_| {});
        assert_eq!(check_card(&visa, &token, &open, 2026, 12), Ok(()));
        assert_eq!(
            reason(check_card(&visa, &token, &open, 2030, 1)),
            Some(pb::DeclineReason::CardExpired)
        );
        let blocked_token = parameters(|values| values.blocked_card_tokens = vec![token]);
        assert_eq!(
            reason(check_card(&visa, &token, &blocked_token, 2026, 12)),
            Some(pb::DeclineReason::CardBlocked)
        );
        let blocked_bin = parameters(|values| {
            values.blocked_bin_ranges =
                vec![tms_params::BinRange::parse("476100", "476199").expect("range")];
        });
        assert_eq!(
            reason(check_card(&visa, &token, &blocked_bin, 2026, 12)),
            Some(pb::DeclineReason::BinBlocked)
        );
        let allow_list = parameters(|values| {
            values.allowed_bin_ranges = Some(vec![
                tms_params::BinRange::parse("510000", "559999").expect("range"),
            ]);
        });
        assert_eq!(
            reason(check_card(&visa, &token, &allow_list, 2026, 12)),
            Some(pb::DeclineReason::BinNotAllowed)
        );
    }

    #[test]
    fn only_allow_listed_tags_are_forwarded() {
        let data = TlvList::new()
            .push(Tag(0x5A), [0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x01, 0x19])
            .push(
                Tag(0x57),
                [0x47, 0x61, 0x73, 0x90, 0x01, 0x01, 0x01, 0x19, 0xD2, 0x91],
            )
            .push(Tag(0x9F26), [1, 2, 3, 4, 5, 6, 7, 8])
            .push(Tag(0x9F27), [0x80])
            .push_constructed(
                Tag(0x70),
                TlvList::new()
                    .push(Tag(0x5F20), b"CARDHOLDER/NAME")
                    .push(Tag(0x9F36), [0x00, 0x01]),
            )
            .encode();
        let read = forwarded_emv_data(&data).expect("emv");
        assert_eq!(read.cryptogram, Some(Cryptogram::Arqc));
        let forwarded = emv_tlv::parse(&read.forwarded).expect("tlv");
        let tags: Vec<u32> = forwarded.iter().map(|t| t.tag.0).collect();
        assert_eq!(tags, [0x9F26, 0x9F27, 0x9F36]);
        assert!(forwarded_emv_data(&[0x9F, 0x26, 0x08, 0x01]).is_err());
        assert_eq!(forwarded_emv_data(&[]), Ok(EmvData::default()));
    }
}
