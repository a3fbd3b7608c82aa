//! The platform's ISO 8583:1987 message profile: domain structs in, messages out, and back.
//!
//! The routing service builds an [`AuthorizationRequest`] and reads an
//! [`AuthorizationResponse`]; it never handles raw fields. The simulator uses the reverse
//! direction ([`request_from_message`], [`response_to_message`]).
//!
//! | request | MTI | field 3 | notes |
//! |---|---|---|---|
//! | [`RequestKind::Purchase`] | 0200 | 000000 | |
//! | [`RequestKind::Refund`] | 0200 | 200000 | |
//! | [`RequestKind::PreAuthorization`] | 0100 | 000000 | |
//! | [`RequestKind::Completion`] | 0220 | 000000 | advice; field 38 (the pre-authorisation's approval code) and 90 |
//! | repeat advice ([`advice_repeat_message`]) | 0221 | 000000 | the 0220 again (same STAN, RRN and field 7, 38, 90) without card data: never fields 2, 14, 23, 35, 52, 55 |
//! | reversal ([`reversal_message_for`]) | 0400, 0401 when repeated | the original's | field 90, the original's RRN, amount, terminal and merchant; field 39 the reason; never fields 2, 14, 23, 35, 52, 55 |
//! | echo, sign-on ([`network_message`]) | 0800 | — | field 70 = 301 (echo), 001 (sign-on), 002 (sign-off) |
//!
//! Fields: 2 PAN, 3 processing code, 4 amount (minor units), 7 transmission date and time
//! (UTC, MMDDhhmmss), 11 STAN, 12/13 local time and date, 14 expiry (YYMM), 18 MCC, 22 POS
//! entry mode, 23 card sequence number, 25 POS condition code (`00`), 32 acquiring
//! institution, 35 track 2, 37 RRN, 38 approval code, 39 response code, 41 terminal, 42
//! merchant, 49 currency, 52 PIN block, 55 ICC data, 70 network management code, 90
//! original data elements; the MAC in 64, or in 128 when the secondary bitmap is present
//! (see [`crate::mac`]).
//!
//! Field 22 (ISO 8583:1987 POS entry mode, n3): positions 1–2 the PAN entry mode (`05`
//! chip, `07` contactless chip, `80` chip card read by magnetic stripe after a chip
//! failure), position 3 the PIN entry capability (`1` can accept PINs, `2` cannot).
//!
//! Dates without a year (fields 7, 12/13, 90) are read back with the year that puts them
//! closest to the time of reading (or to the transmission time, for the local date).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use iso8583::Message;
use paycrypto::pin::Pan;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::LinkError;
use crate::wire;

/// Field numbers of the profile.
pub mod field {
    /// Primary account number.
    pub const PAN: u8 = 2;
    /// Processing code.
    pub const PROCESSING_CODE: u8 = 3;
    /// Amount, transaction.
    pub const AMOUNT: u8 = 4;
    /// Transmission date and time (UTC, MMDDhhmmss).
    pub const TRANSMISSION_DATE_TIME: u8 = 7;
    /// Systems trace audit number.
    pub const STAN: u8 = 11;
    /// Time, local transaction (hhmmss).
    pub const LOCAL_TIME: u8 = 12;
    /// Date, local transaction (MMDD).
    pub const LOCAL_DATE: u8 = 13;
    /// Date, expiration (YYMM).
    pub const EXPIRY: u8 = 14;
    /// Merchant type (MCC).
    pub const MCC: u8 = 18;
    /// Point of service entry mode.
    pub const POS_ENTRY_MODE: u8 = 22;
    /// Card sequence number.
    pub const CARD_SEQUENCE: u8 = 23;
    /// Point of service condition code.
    pub const POS_CONDITION: u8 = 25;
    /// Acquiring institution identification code.
    pub const ACQUIRER_ID: u8 = 32;
    /// Track 2 data.
    pub const TRACK2: u8 = 35;
    /// Retrieval reference number.
    pub const RRN: u8 = 37;
    /// Authorization identification response (approval code).
    pub const AUTH_CODE: u8 = 38;
    /// Response code.
    pub const RESPONSE_CODE: u8 = 39;
    /// Card acceptor terminal identification.
    pub const TERMINAL_ID: u8 = 41;
    /// Card acceptor identification code.
    pub const MERCHANT_ID: u8 = 42;
    /// Currency code, transaction.
    pub const CURRENCY: u8 = 49;
    /// PIN data.
    pub const PIN_BLOCK: u8 = 52;
    /// ICC system related data.
    pub const ICC_DATA: u8 = 55;
    /// Message authentication code (primary bitmap).
    pub const MAC: u8 = 64;
    /// Network management information code.
    pub const NETWORK_CODE: u8 = 70;
    /// Original data elements.
    pub const ORIGINAL_DATA: u8 = 90;
    /// Message authentication code (secondary bitmap).
    pub const MAC_SECONDARY: u8 = 128;
}

/// What the cardholder asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// A sale: 0200, processing code 000000.
    Purchase,
    /// A refund: 0200, processing code 200000.
    Refund,
    /// A pre-authorisation: 0100, processing code 000000.
    PreAuthorization,
    /// The completion of a pre-authorisation: 0220 advice, processing code 000000.
    Completion,
}

impl RequestKind {
    /// The request MTI.
    pub fn mti(self) -> &'static str {
        match self {
            Self::Purchase | Self::Refund => "0200",
            Self::PreAuthorization => "0100",
            Self::Completion => "0220",
        }
    }

    /// Field 3.
    pub fn processing_code(self) -> &'static str {
        match self {
            Self::Refund => "200000",
            Self::Purchase | Self::PreAuthorization | Self::Completion => "000000",
        }
    }

    /// The kind of a request MTI and processing code (account type digits 3–6 ignored).
    pub fn from_mti(mti: &str, processing_code: &str) -> Option<Self> {
        let transaction = processing_code.get(..2)?;
        match (mti, transaction) {
            ("0200" | "0201", "00") => Some(Self::Purchase),
            ("0200" | "0201", "20") => Some(Self::Refund),
            ("0100" | "0101", "00") => Some(Self::PreAuthorization),
            ("0220" | "0221", "00") => Some(Self::Completion),
            _ => None,
        }
    }
}

/// How the card was read (field 22 positions 1–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryMode {
    /// Contact chip: `05`.
    Chip,
    /// Contactless chip: `07`.
    Contactless,
    /// Magnetic stripe after a failed chip read: `80`.
    SwipeFallback,
}

impl EntryMode {
    /// Positions 1–2 of field 22.
    pub fn code(self) -> &'static str {
        match self {
            Self::Chip => "05",
            Self::Contactless => "07",
            Self::SwipeFallback => "80",
        }
    }

    /// Field 22: the entry mode and the PIN entry capability (`1` capable, `2` not).
    pub fn field22(self, pin_capable: bool) -> String {
        format!("{}{}", self.code(), if pin_capable { '1' } else { '2' })
    }

    /// Parses field 22 into the entry mode and whether the terminal can accept PINs.
    pub fn parse_field22(value: &str) -> Option<(Self, bool)> {
        if value.len() != 3 {
            return None;
        }
        let mode = match value.get(..2)? {
            "05" => Self::Chip,
            "07" => Self::Contactless,
            "80" => Self::SwipeFallback,
            _ => return None,
        };
        Some((mode, value.get(2..)? == "1"))
    }
}

/// Track 2 equivalent data (PAN, separator `D` or `=`, expiry, service code, discretionary
/// data). Zeroized on drop; `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Track2Data(String);

impl Track2Data {
    /// Parses track 2 data: at most 37 characters, digits and one separator.
    pub fn new(text: &str) -> Result<Self, LinkError> {
        let value = Self(text.to_ascii_uppercase());
        let separators = value.0.bytes().filter(|b| *b == b'D' || *b == b'=').count();
        if value.0.is_empty()
            || value.0.len() > 37
            || separators != 1
            || !value
                .0
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'D' || b == b'=')
        {
            return Err(LinkError::protocol(
                "track 2 data: at most 37 digits with one separator",
            ));
        }
        Ok(value)
    }

    /// The characters. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The PAN part.
    pub fn pan(&self) -> Result<Pan, LinkError> {
        let digits = self.0.split(['D', '=']).next().unwrap_or_default();
        Pan::new(digits).map_err(|_| LinkError::protocol("track 2 data: bad PAN"))
    }
}

impl fmt::Debug for Track2Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Track2Data(***)")
    }
}

/// An enciphered PIN block (ISO 9564 format 0 under the zone PIN key). Zeroized on drop;
/// `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PinBlock([u8; 8]);

impl PinBlock {
    /// Wraps the 8 enciphered bytes.
    pub fn new(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// The bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Debug for PinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinBlock(***)")
    }
}

/// What a completion or a reversal refers to (field 90).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalData {
    /// The original request's MTI.
    pub mti: String,
    /// Its STAN.
    pub stan: u32,
    /// Its transmission date and time (field 7).
    pub transmitted_at: DateTime<Utc>,
    /// Its acquiring institution (field 32).
    pub acquirer_id: String,
}

impl OriginalData {
    /// Field 90: MTI (4), STAN (6), MMDDhhmmss (10), acquirer (11, zero-filled on the
    /// left), forwarding institution (11 zeros).
    pub fn field90(&self) -> Result<String, LinkError> {
        check_digits("original MTI", &self.mti, 4, 4)?;
        check_stan(self.stan)?;
        check_digits("original acquirer id", &self.acquirer_id, 1, 11)?;
        Ok(format!(
            "{}{:06}{}{:0>11}{}",
            self.mti,
            self.stan,
            self.transmitted_at.format("%m%d%H%M%S"),
            self.acquirer_id,
            "0".repeat(11)
        ))
    }

    /// Parses field 90; the year of the transmission time is the one closest to `now`.
    pub fn parse_field90(value: &str, now: DateTime<Utc>) -> Result<Self, LinkError> {
        if value.len() != 42 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LinkError::protocol("field 90: expected 42 digits"));
        }
        let part = |range: std::ops::Range<usize>| value.get(range).unwrap_or_default();
        let acquirer = part(20..31).trim_start_matches('0');
        Ok(Self {
            mti: part(0..4).to_owned(),
            stan: part(4..10)
                .parse()
                .map_err(|_| LinkError::protocol("field 90: bad STAN"))?,
            transmitted_at: parse_mmddhhmmss(part(10..20), now)
                .ok_or_else(|| LinkError::protocol("field 90: bad date and time"))?,
            acquirer_id: if acquirer.is_empty() {
                "0".to_owned()
            } else {
                acquirer.to_owned()
            },
        })
    }
}

/// An authorisation or financial request, as the routing service sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// What is asked for.
    pub kind: RequestKind,
    /// The card number (field 2). `Debug` shows first six and last four digits.
    pub pan: Pan,
    /// Expiry, YYMM (field 14).
    pub expiry: Option<String>,
    /// Track 2 equivalent data (field 35).
    pub track2: Option<Track2Data>,
    /// Card sequence number, 3 digits (field 23; an EMV PSN `NN` is `0NN`).
    pub pan_sequence: Option<String>,
    /// Amount in minor units of the currency (field 4, 12 digits).
    pub amount_minor: u64,
    /// ISO 4217 numeric currency code, 3 digits (field 49).
    pub currency_numeric: String,
    /// Systems trace audit number, 0–999999 (field 11).
    pub stan: u32,
    /// Retrieval reference number, 12 characters (field 37).
    pub rrn: String,
    /// When the message is sent (field 7, UTC, to the second).
    pub transmitted_at: DateTime<Utc>,
    /// The terminal's local date and time (fields 12 and 13, to the second).
    pub local_at: NaiveDateTime,
    /// Merchant category code, 4 digits (field 18).
    pub mcc: String,
    /// How the card was read (field 22).
    pub entry_mode: EntryMode,
    /// Whether the terminal can accept PINs (field 22 position 3).
    pub pin_capable: bool,
    /// The PIN block under the zone PIN key (field 52).
    pub pin_block: Option<PinBlock>,
    /// ICC data, BER-TLV (field 55).
    pub icc_data: Option<Vec<u8>>,
    /// Card acceptor terminal id, 8 characters (field 41).
    pub terminal_id: String,
    /// Card acceptor id, 15 characters (field 42).
    pub merchant_id: String,
    /// Acquiring institution id, 1–11 digits (field 32).
    pub acquirer_institution_id: String,
    /// The original request of a completion (field 90).
    pub original: Option<OriginalData>,
    /// The pre-authorisation's approval code, for a completion (field 38).
    pub auth_code: Option<String>,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("kind", &self.kind)
            .field("pan", &self.pan)
            .field("expiry", &self.expiry.as_ref().map(|_| "***"))
            .field("track2", &self.track2)
            .field("pan_sequence", &self.pan_sequence)
            .field("amount_minor", &self.amount_minor)
            .field("currency_numeric", &self.currency_numeric)
            .field("stan", &self.stan)
            .field("rrn", &self.rrn)
            .field("transmitted_at", &self.transmitted_at)
            .field("local_at", &self.local_at)
            .field("mcc", &self.mcc)
            .field("entry_mode", &self.entry_mode)
            .field("pin_capable", &self.pin_capable)
            .field("pin_block", &self.pin_block)
            .field("icc_data_len", &self.icc_data.as_ref().map(Vec::len))
            .field("terminal_id", &self.terminal_id)
            .field("merchant_id", &self.merchant_id)
            .field("acquirer_institution_id", &self.acquirer_institution_id)
            .field("original", &self.original)
            .field("auth_code", &self.auth_code)
            .finish()
    }
}

/// Why a transaction is reversed (field 39 of the 0400, ISO 8583:1987 reversal codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReversalReason {
    /// `17`: customer cancellation.
    CustomerCancellation,
    /// `22`: suspected malfunction (e.g. the answer could not be delivered to the terminal).
    SuspectedMalfunction,
    /// `68`: response received too late, or not at all (the acquirer link timed out).
    Timeout,
}

impl ReversalReason {
    /// Field 39 of the reversal.
    pub fn code(self) -> &'static str {
        match self {
            Self::CustomerCancellation => "17",
            Self::SuspectedMalfunction => "22",
            Self::Timeout => "68",
        }
    }

    /// The reason of a field 39 value.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "17" => Some(Self::CustomerCancellation),
            "22" => Some(Self::SuspectedMalfunction),
            "68" => Some(Self::Timeout),
            _ => None,
        }
    }
}

/// A reversal's own data; the rest comes from the original request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reversal {
    /// Why.
    pub reason: ReversalReason,
    /// The reversal's own STAN (field 11); the original's goes into field 90.
    pub stan: u32,
    /// When the reversal is sent (field 7).
    pub transmitted_at: DateTime<Utc>,
    /// A repeat of a reversal that got no answer: MTI 0401 instead of 0400.
    pub repeat: bool,
}

/// What a reversal needs of the request it reverses: no card data at all, so that a reversal
/// can be built (and repeated after a restart) from what the log keeps. The acquirer finds
/// the original by field 90 (MTI, STAN, transmission time, acquirer), field 37 (RRN) and
/// fields 41/42 (terminal, merchant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginalTransaction {
    /// What the original asked for (its MTI and processing code).
    pub kind: RequestKind,
    /// Its amount, minor units (field 4).
    pub amount_minor: u64,
    /// Its ISO 4217 numeric currency (field 49).
    pub currency_numeric: String,
    /// Its STAN (into field 90).
    pub stan: u32,
    /// Its RRN (field 37).
    pub rrn: String,
    /// Its transmission date and time (into field 90).
    pub transmitted_at: DateTime<Utc>,
    /// Its local date and time (fields 12 and 13).
    pub local_at: NaiveDateTime,
    /// Its MCC (field 18); `None` when not known (the field is left out).
    pub mcc: Option<String>,
    /// How its card was read and whether the terminal takes PINs (field 22); `None` when not
    /// known (the field is left out).
    pub entry_mode: Option<(EntryMode, bool)>,
    /// Its terminal (field 41).
    pub terminal_id: String,
    /// Its merchant (field 42).
    pub merchant_id: String,
    /// Its acquiring institution (field 32 and field 90).
    pub acquirer_institution_id: String,
    /// The approval code it got, if any (field 38).
    pub auth_code: Option<String>,
}

impl From<&AuthorizationRequest> for OriginalTransaction {
    fn from(request: &AuthorizationRequest) -> Self {
        Self {
            kind: request.kind,
            amount_minor: request.amount_minor,
            currency_numeric: request.currency_numeric.clone(),
            stan: request.stan,
            rrn: request.rrn.clone(),
            transmitted_at: request.transmitted_at,
            local_at: request.local_at,
            mcc: Some(request.mcc.clone()),
            entry_mode: Some((request.entry_mode, request.pin_capable)),
            terminal_id: request.terminal_id.clone(),
            merchant_id: request.merchant_id.clone(),
            acquirer_institution_id: request.acquirer_institution_id.clone(),
            auth_code: request.auth_code.clone(),
        }
    }
}

/// Network management codes (field 70).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkCode {
    /// `001`: sign-on.
    SignOn,
    /// `002`: sign-off.
    SignOff,
    /// `301`: echo test.
    Echo,
}

impl NetworkCode {
    /// Field 70.
    pub fn code(self) -> &'static str {
        match self {
            Self::SignOn => "001",
            Self::SignOff => "002",
            Self::Echo => "301",
        }
    }

    /// The code of a field 70 value.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "001" => Some(Self::SignOn),
            "002" => Some(Self::SignOff),
            "301" => Some(Self::Echo),
            _ => None,
        }
    }
}

/// A request as the acquirer host receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRequest {
    /// 0100, 0200, 0220 (or the repeats 0101, 0201).
    Authorization(Box<AuthorizationRequest>),
    /// 0221: the repeat of a completion advice, without card data (whatever it carries in
    /// fields 2 and 35 is not read). The host recognises it as the 0220 it repeats by STAN and
    /// RRN, or by field 90.
    AdviceRepeat {
        /// The advice as repeated: its own STAN, RRN and transmission time (the 0220's),
        /// amount, terminal, merchant, approval code (field 38).
        advice: Box<OriginalTransaction>,
        /// Field 90: the pre-authorisation the advice completes.
        original: OriginalData,
    },
    /// 0400 or 0401: the original as carried (no card data; STAN, transmission time and
    /// acquirer from field 90) and the reversal's own data.
    Reversal {
        /// The reversed request.
        original: Box<OriginalTransaction>,
        /// The reversal's own data.
        reversal: Reversal,
    },
    /// 0800.
    Network {
        /// Field 70.
        code: NetworkCode,
        /// Field 11.
        stan: u32,
        /// Field 7.
        transmitted_at: DateTime<Utc>,
    },
}

/// An answer from the acquirer.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationResponse {
    /// The response MTI (0110, 0210, 0230, 0410, 0810).
    pub mti: String,
    /// Field 39, 2 characters.
    pub response_code: String,
    /// Field 38, the approval code.
    pub auth_code: Option<String>,
    /// Field 11.
    pub stan: u32,
    /// Field 37 (empty for network management answers without one).
    pub rrn: String,
    /// Field 55, issuer data (e.g. tag 91, issuer authentication data: ARPC ‖ ARC).
    pub icc_data: Option<Vec<u8>>,
    /// Field 3, echoed.
    pub processing_code: Option<String>,
    /// Field 4, echoed (or the approved amount).
    pub amount_minor: Option<u64>,
    /// Field 49, echoed.
    pub currency_numeric: Option<String>,
    /// Field 7, echoed.
    pub transmitted_at: Option<DateTime<Utc>>,
    /// Field 41, echoed.
    pub terminal_id: Option<String>,
    /// Field 70, for network management answers.
    pub network_code: Option<NetworkCode>,
}

impl fmt::Debug for AuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationResponse")
            .field("mti", &self.mti)
            .field("response_code", &self.response_code)
            .field("auth_code", &self.auth_code)
            .field("stan", &self.stan)
            .field("rrn", &self.rrn)
            .field("icc_data_len", &self.icc_data.as_ref().map(Vec::len))
            .field("processing_code", &self.processing_code)
            .field("amount_minor", &self.amount_minor)
            .field("currency_numeric", &self.currency_numeric)
            .field("transmitted_at", &self.transmitted_at)
            .field("terminal_id", &self.terminal_id)
            .field("network_code", &self.network_code)
            .finish()
    }
}

impl AuthorizationResponse {
    /// Whether the acquirer approved: `00`, `08`, `10` (partial) or `11`.
    pub fn approved(&self) -> bool {
        ResponseCode::parse(&self.response_code).is_some_and(ResponseCode::is_approval)
    }

    /// The known meaning of the response code.
    pub fn code(&self) -> Option<ResponseCode> {
        ResponseCode::parse(&self.response_code)
    }

    /// The answer to `request` with `response_code`, echoing its identifying fields (the
    /// host side).
    pub fn answering(request: &AuthorizationRequest, response_code: &str) -> Self {
        Self {
            mti: response_mti(request.kind.mti()).unwrap_or_default(),
            response_code: response_code.to_owned(),
            auth_code: None,
            stan: request.stan,
            rrn: request.rrn.clone(),
            icc_data: None,
            processing_code: Some(request.kind.processing_code().to_owned()),
            amount_minor: Some(request.amount_minor),
            currency_numeric: Some(request.currency_numeric.clone()),
            transmitted_at: Some(request.transmitted_at),
            terminal_id: Some(request.terminal_id.clone()),
            network_code: None,
        }
    }
}

/// Common ISO 8583:1987 response codes (field 39).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `00` approved or completed successfully.
    Approved,
    /// `01` refer to card issuer.
    ReferToIssuer,
    /// `03` invalid merchant.
    InvalidMerchant,
    /// `04` pick up card.
    PickUp,
    /// `05` do not honour.
    DoNotHonour,
    /// `06` error.
    Error,
    /// `08` honour with identification (an approval).
    HonourWithId,
    /// `10` approved for a partial amount.
    ApprovedPartial,
    /// `11` approved (VIP).
    ApprovedVip,
    /// `12` invalid transaction.
    InvalidTransaction,
    /// `13` invalid amount.
    InvalidAmount,
    /// `14` invalid card number (no such number).
    InvalidCardNumber,
    /// `15` no such issuer.
    NoSuchIssuer,
    /// `30` format error.
    FormatError,
    /// `41` lost card, pick up.
    LostCard,
    /// `43` stolen card, pick up.
    StolenCard,
    /// `51` not sufficient funds.
    InsufficientFunds,
    /// `54` expired card.
    ExpiredCard,
    /// `55` incorrect PIN.
    IncorrectPin,
    /// `57` transaction not permitted to cardholder.
    NotPermittedToCardholder,
    /// `58` transaction not permitted to terminal.
    NotPermittedToTerminal,
    /// `61` exceeds withdrawal amount limit.
    ExceedsAmountLimit,
    /// `62` restricted card.
    RestrictedCard,
    /// `65` exceeds withdrawal frequency limit.
    ExceedsFrequencyLimit,
    /// `68` response received too late.
    ResponseTooLate,
    /// `75` allowable number of PIN tries exceeded.
    PinTriesExceeded,
    /// `91` issuer or switch inoperative.
    IssuerInoperative,
    /// `94` duplicate transmission.
    DuplicateTransmission,
    /// `96` system malfunction.
    SystemMalfunction,
}

impl ResponseCode {
    const ALL: [(Self, &'static str, &'static str); 29] = [
        (Self::Approved, "00", "approved or completed successfully"),
        (Self::ReferToIssuer, "01", "refer to card issuer"),
        (Self::InvalidMerchant, "03", "invalid merchant"),
        (Self::PickUp, "04", "pick up card"),
        (Self::DoNotHonour, "05", "do not honour"),
        (Self::Error, "06", "error"),
        (Self::HonourWithId, "08", "honour with identification"),
        (Self::ApprovedPartial, "10", "approved for partial amount"),
        (Self::ApprovedVip, "11", "approved (vip)"),
        (Self::InvalidTransaction, "12", "invalid transaction"),
        (Self::InvalidAmount, "13", "invalid amount"),
        (
            Self::InvalidCardNumber,
            "14",
            "invalid card number (no such number)",
        ),
        (Self::NoSuchIssuer, "15", "no such issuer"),
        (Self::FormatError, "30", "format error"),
        (Self::LostCard, "41", "lost card, pick up"),
        (Self::StolenCard, "43", "stolen card, pick up"),
        (Self::InsufficientFunds, "51", "not sufficient funds"),
        (Self::ExpiredCard, "54", "expired card"),
        (Self::IncorrectPin, "55", "incorrect pin"),
        (
            Self::NotPermittedToCardholder,
            "57",
            "transaction not permitted to cardholder",
        ),
        (
            Self::NotPermittedToTerminal,
            "58",
            "transaction not permitted to terminal",
        ),
        (
            Self::ExceedsAmountLimit,
            "61",
            "exceeds withdrawal amount limit",
        ),
        (Self::RestrictedCard, "62", "restricted card"),
        (
            Self::ExceedsFrequencyLimit,
            "65",
            "exceeds withdrawal frequency limit",
        ),
        (Self::ResponseTooLate, "68", "response received too late"),
        (
            Self::PinTriesExceeded,
            "75",
            "allowable number of pin tries exceeded",
        ),
        (
            Self::IssuerInoperative,
            "91",
            "issuer or switch inoperative",
        ),
        (Self::DuplicateTransmission, "94", "duplicate transmission"),
        (Self::SystemMalfunction, "96", "system malfunction"),
    ];

    /// The code of a field 39 value, if it is one of the common ones.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, text, _)| *text == code)
            .map(|(value, _, _)| *value)
    }

    /// The two characters of field 39.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(value, _, _)| *value == self)
            .map_or("96", |(_, text, _)| text)
    }

    /// What the code means (ISO 8583:1987).
    pub fn meaning(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(value, _, _)| *value == self)
            .map_or("", |(_, _, meaning)| meaning)
    }

    /// `00`, `08`, `10` and `11` approve.
    pub fn is_approval(self) -> bool {
        matches!(
            self,
            Self::Approved | Self::HonourWithId | Self::ApprovedPartial | Self::ApprovedVip
        )
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The response MTI of a request or advice MTI (`0200` → `0210`, `0401` → `0410`, `0220` →
/// `0230`); `None` for anything else.
pub fn response_mti(request_mti: &str) -> Option<String> {
    let bytes = request_mti.as_bytes();
    if bytes.len() != 4 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Position 3 is the function: 0 request, 2 advice (answered by 1 and 3).
    let function = bytes[2];
    if function != b'0' && function != b'2' {
        return None;
    }
    Some(format!(
        "{}{}{}0",
        char::from(bytes[0]),
        char::from(bytes[1]),
        char::from(function + 1)
    ))
}

fn check_digits(what: &str, value: &str, min: usize, max: usize) -> Result<(), LinkError> {
    if (min..=max).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else if min == max {
        Err(LinkError::protocol(format!(
            "{what}: expected {min} digits"
        )))
    } else {
        Err(LinkError::protocol(format!(
            "{what}: expected {min} to {max} digits"
        )))
    }
}

fn check_stan(stan: u32) -> Result<(), LinkError> {
    if stan <= 999_999 {
        Ok(())
    } else {
        Err(LinkError::protocol("stan: at most 6 digits"))
    }
}

fn check_printable(what: &str, value: &str, len: usize) -> Result<(), LinkError> {
    if value.len() == len && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Ok(())
    } else {
        Err(LinkError::protocol(format!(
            "{what}: expected {len} printable characters"
        )))
    }
}

/// A `MMDDhhmmss` UTC time with the year that puts it closest to `now`.
fn parse_mmddhhmmss(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| value.get(range)?.parse::<u32>().ok();
    let (month, day) = (number(0..2)?, number(2..4)?);
    let (hour, minute, second) = (number(4..6)?, number(6..8)?, number(8..10)?);
    [now.year() - 1, now.year(), now.year() + 1]
        .into_iter()
        .filter_map(|year| {
            NaiveDate::from_ymd_opt(year, month, day)?
                .and_hms_opt(hour, minute, second)
                .map(|naive| Utc.from_utc_datetime(&naive))
        })
        .min_by_key(|candidate| (*candidate - now).num_seconds().abs())
}

/// Local date (MMDD) and time (hhmmss) with the year that puts them closest to `near`.
fn parse_local(date: &str, time: &str, near: NaiveDateTime) -> Option<NaiveDateTime> {
    let stamp = parse_mmddhhmmss(&format!("{date}{time}"), Utc.from_utc_datetime(&near))?;
    Some(stamp.naive_utc())
}

fn required<'a>(message: &'a Message, number: u8, name: &str) -> Result<&'a str, LinkError> {
    wire::text(message, number).ok_or_else(|| LinkError::protocol(format!("missing {name}")))
}

fn parse_stan(value: &str) -> Result<u32, LinkError> {
    check_digits("stan", value, 1, 6)?;
    value
        .parse()
        .map_err(|_| LinkError::protocol("stan: expected 6 digits"))
}

fn parse_amount(value: &str) -> Result<u64, LinkError> {
    check_digits("amount", value, 1, 12)?;
    value
        .parse()
        .map_err(|_| LinkError::protocol("amount: expected 12 digits"))
}

fn amount_text(amount: u64) -> Result<String, LinkError> {
    if amount > 999_999_999_999 {
        return Err(LinkError::protocol("amount: at most 12 digits"));
    }
    Ok(format!("{amount:012}"))
}

/// The fields an authorisation, a completion and a reversal share.
fn set_common(message: &mut Message, request: &AuthorizationRequest) -> Result<(), LinkError> {
    check_digits("currency", &request.currency_numeric, 3, 3)?;
    check_digits("mcc", &request.mcc, 4, 4)?;
    check_digits("acquirer id", &request.acquirer_institution_id, 1, 11)?;
    check_printable("rrn", &request.rrn, 12)?;
    check_printable("terminal id", &request.terminal_id, 8)?;
    check_printable("merchant id", &request.merchant_id, 15)?;
    wire::set_text(message, field::PAN, request.pan.expose());
    wire::set_text(
        message,
        field::PROCESSING_CODE,
        request.kind.processing_code(),
    );
    wire::set_text(message, field::AMOUNT, &amount_text(request.amount_minor)?);
    wire::set_text(
        message,
        field::LOCAL_TIME,
        &request.local_at.format("%H%M%S").to_string(),
    );
    wire::set_text(
        message,
        field::LOCAL_DATE,
        &request.local_at.format("%m%d").to_string(),
    );
    if let Some(expiry) = &request.expiry {
        check_digits("expiry", expiry, 4, 4)?;
        wire::set_text(message, field::EXPIRY, expiry);
    }
    wire::set_text(message, field::MCC, &request.mcc);
    wire::set_text(
        message,
        field::POS_ENTRY_MODE,
        &request.entry_mode.field22(request.pin_capable),
    );
    if let Some(sequence) = &request.pan_sequence {
        check_digits("card sequence number", sequence, 3, 3)?;
        wire::set_text(message, field::CARD_SEQUENCE, sequence);
    }
    wire::set_text(message, field::POS_CONDITION, "00");
    wire::set_text(
        message,
        field::ACQUIRER_ID,
        &request.acquirer_institution_id,
    );
    wire::set_text(message, field::RRN, &request.rrn);
    wire::set_text(message, field::TERMINAL_ID, &request.terminal_id);
    wire::set_text(message, field::MERCHANT_ID, &request.merchant_id);
    wire::set_text(message, field::CURRENCY, &request.currency_numeric);
    Ok(())
}

/// The request message of an authorisation, financial request or completion advice. The
/// MAC field is not set here: the link adds it.
pub fn to_message(request: &AuthorizationRequest) -> Result<Message, LinkError> {
    check_stan(request.stan)?;
    let mut message = wire::new_message(request.kind.mti())?;
    set_common(&mut message, request)?;
    wire::set_text(
        &mut message,
        field::TRANSMISSION_DATE_TIME,
        &request.transmitted_at.format("%m%d%H%M%S").to_string(),
    );
    wire::set_text(&mut message, field::STAN, &format!("{:06}", request.stan));
    if let Some(track2) = &request.track2 {
        wire::set_text(&mut message, field::TRACK2, track2.expose());
    }
    if let Some(pin_block) = &request.pin_block {
        wire::set_bytes(&mut message, field::PIN_BLOCK, pin_block.expose());
    }
    if let Some(icc) = &request.icc_data {
        wire::set_bytes(&mut message, field::ICC_DATA, icc);
    }
    if request.kind == RequestKind::Completion {
        let original = request
            .original
            .as_ref()
            .ok_or_else(|| LinkError::protocol("a completion needs the original data"))?;
        let auth_code = request
            .auth_code
            .as_deref()
            .ok_or_else(|| LinkError::protocol("a completion needs the approval code"))?;
        check_auth_code(auth_code)?;
        wire::set_text(&mut message, field::AUTH_CODE, auth_code);
        wire::set_text(&mut message, field::ORIGINAL_DATA, &original.field90()?);
    }
    Ok(message)
}

fn check_auth_code(code: &str) -> Result<(), LinkError> {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(LinkError::protocol("approval code: 6 letters or digits"))
    }
}

/// The reversal (0400, or 0401 when repeated) of the request `original` (see
/// [`reversal_message_for`]: no card data goes out, whatever the request held).
pub fn reversal_message(
    original: &AuthorizationRequest,
    reversal: &Reversal,
) -> Result<Message, LinkError> {
    reversal_message_for(&OriginalTransaction::from(original), reversal)
}

/// The reversal (0400, or 0401 when repeated) of `original`: no PAN, expiry, card sequence
/// number, track 2, PIN block or ICC data (fields 2, 14, 23, 35, 52, 55); the original's
/// processing code, amount, local time, MCC and entry mode (when known), acquirer, RRN,
/// terminal, merchant, currency and approval code; the reversal's own STAN and transmission
/// time; the reason in field 39 and the original's MTI, STAN, transmission time and acquirer
/// in field 90.
pub fn reversal_message_for(
    original: &OriginalTransaction,
    reversal: &Reversal,
) -> Result<Message, LinkError> {
    let mti = if reversal.repeat { "0401" } else { "0400" };
    let mut message = recorded_message(mti, original, reversal.stan, reversal.transmitted_at)?;
    if let Some(code) = &original.auth_code {
        check_auth_code(code)?;
        wire::set_text(&mut message, field::AUTH_CODE, code);
    }
    wire::set_text(&mut message, field::RESPONSE_CODE, reversal.reason.code());
    let original_data = OriginalData {
        mti: original.kind.mti().to_owned(),
        stan: original.stan,
        transmitted_at: original.transmitted_at,
        acquirer_id: original.acquirer_institution_id.clone(),
    };
    wire::set_text(
        &mut message,
        field::ORIGINAL_DATA,
        &original_data.field90()?,
    );
    Ok(message)
}

/// The repeat (0221) of the completion advice `advice` (a [`RequestKind::Completion`] as
/// recorded when its 0220 went out), which completes the pre-authorisation `original`
/// (field 90). ISO 8583:1987 repeats keep the original's identifiers: the 0221 carries the
/// 0220's STAN (11), RRN (37) and transmission time (7), its processing code, amount, local
/// time, MCC and entry mode (when known), acquirer, terminal, merchant, currency, the
/// pre-authorisation's approval code (38, required) and field 90; and no card data (fields
/// 2, 14, 23, 35, 52, 55), which the platform does not keep: the acquirer matches the repeat
/// by STAN, RRN and field 90, as it matches a reversal. The answer is an 0230. The MAC field
/// is not set here: the link adds it.
pub fn advice_repeat_message(
    advice: &OriginalTransaction,
    original: &OriginalData,
) -> Result<Message, LinkError> {
    if advice.kind != RequestKind::Completion {
        return Err(LinkError::protocol(
            "only a completion advice is repeated as 0221",
        ));
    }
    let auth_code = advice
        .auth_code
        .as_deref()
        .ok_or_else(|| LinkError::protocol("a completion needs the approval code"))?;
    check_auth_code(auth_code)?;
    let field90 = original.field90()?;
    let mut message = recorded_message("0221", advice, advice.stan, advice.transmitted_at)?;
    wire::set_text(&mut message, field::AUTH_CODE, auth_code);
    wire::set_text(&mut message, field::ORIGINAL_DATA, &field90);
    Ok(message)
}

/// The fields a reversal and an advice's repeat both take from the recorded transaction,
/// under `mti` with `stan` and `transmitted_at` (field 7): processing code, amount, local time
/// and date, MCC and entry mode when known, POS condition, acquirer, RRN, terminal, merchant
/// and currency — and no card data.
fn recorded_message(
    mti: &str,
    recorded: &OriginalTransaction,
    stan: u32,
    transmitted_at: DateTime<Utc>,
) -> Result<Message, LinkError> {
    check_stan(stan)?;
    check_digits("currency", &recorded.currency_numeric, 3, 3)?;
    check_digits("acquirer id", &recorded.acquirer_institution_id, 1, 11)?;
    check_printable("rrn", &recorded.rrn, 12)?;
    check_printable("terminal id", &recorded.terminal_id, 8)?;
    check_printable("merchant id", &recorded.merchant_id, 15)?;
    let mut message = wire::new_message(mti)?;
    wire::set_text(
        &mut message,
        field::PROCESSING_CODE,
        recorded.kind.processing_code(),
    );
    wire::set_text(
        &mut message,
        field::AMOUNT,
        &amount_text(recorded.amount_minor)?,
    );
    wire::set_text(
        &mut message,
        field::TRANSMISSION_DATE_TIME,
        &transmitted_at.format("%m%d%H%M%S").to_string(),
    );
    wire::set_text(&mut message, field::STAN, &format!("{stan:06}"));
    wire::set_text(
        &mut message,
        field::LOCAL_TIME,
        &recorded.local_at.format("%H%M%S").to_string(),
    );
    wire::set_text(
        &mut message,
        field::LOCAL_DATE,
        &recorded.local_at.format("%m%d").to_string(),
    );
    if let Some(mcc) = &recorded.mcc {
        check_digits("mcc", mcc, 4, 4)?;
        wire::set_text(&mut message, field::MCC, mcc);
    }
    if let Some((mode, pin_capable)) = recorded.entry_mode {
        wire::set_text(
            &mut message,
            field::POS_ENTRY_MODE,
            &mode.field22(pin_capable),
        );
    }
    wire::set_text(&mut message, field::POS_CONDITION, "00");
    wire::set_text(
        &mut message,
        field::ACQUIRER_ID,
        &recorded.acquirer_institution_id,
    );
    wire::set_text(&mut message, field::RRN, &recorded.rrn);
    wire::set_text(&mut message, field::TERMINAL_ID, &recorded.terminal_id);
    wire::set_text(&mut message, field::MERCHANT_ID, &recorded.merchant_id);
    wire::set_text(&mut message, field::CURRENCY, &recorded.currency_numeric);
    Ok(message)
}

/// Reads the transaction a reversal or a repeated advice carries (the host side): card data
/// is neither needed nor read.
fn original_from_reversal(
    message: &Message,
    kind: RequestKind,
    original_data: OriginalData,
) -> Result<OriginalTransaction, LinkError> {
    let local_at = parse_local(
        required(message, field::LOCAL_DATE, "local date (13)")?,
        required(message, field::LOCAL_TIME, "local time (12)")?,
        original_data.transmitted_at.naive_utc(),
    )
    .ok_or_else(|| LinkError::protocol("local date and time: bad values"))?;
    let entry_mode = match wire::text(message, field::POS_ENTRY_MODE) {
        Some(value) => Some(
            EntryMode::parse_field22(value)
                .ok_or_else(|| LinkError::protocol("pos entry mode: unknown value"))?,
        ),
        None => None,
    };
    let text = |number| wire::text(message, number).map(str::to_owned);
    Ok(OriginalTransaction {
        kind,
        amount_minor: parse_amount(required(message, field::AMOUNT, "amount (4)")?)?,
        currency_numeric: required(message, field::CURRENCY, "currency (49)")?.to_owned(),
        stan: original_data.stan,
        rrn: required(message, field::RRN, "rrn (37)")?.to_owned(),
        transmitted_at: original_data.transmitted_at,
        local_at,
        mcc: text(field::MCC),
        entry_mode,
        terminal_id: required(message, field::TERMINAL_ID, "terminal id (41)")?.to_owned(),
        merchant_id: required(message, field::MERCHANT_ID, "merchant id (42)")?.to_owned(),
        acquirer_institution_id: original_data.acquirer_id,
        auth_code: text(field::AUTH_CODE).map(|code| code.trim().to_owned()),
    })
}

/// A network management request (0800) with field 70 = `code`.
pub fn network_message(
    code: NetworkCode,
    stan: u32,
    transmitted_at: DateTime<Utc>,
) -> Result<Message, LinkError> {
    check_stan(stan)?;
    let mut message = wire::new_message("0800")?;
    wire::set_text(
        &mut message,
        field::TRANSMISSION_DATE_TIME,
        &transmitted_at.format("%m%d%H%M%S").to_string(),
    );
    wire::set_text(&mut message, field::STAN, &format!("{stan:06}"));
    wire::set_text(&mut message, field::NETWORK_CODE, code.code());
    Ok(message)
}

/// An echo test (0800, field 70 = 301).
pub fn echo_message(stan: u32, transmitted_at: DateTime<Utc>) -> Result<Message, LinkError> {
    network_message(NetworkCode::Echo, stan, transmitted_at)
}

/// Reads the answer to a request.
pub fn response_from_message(message: &Message) -> Result<AuthorizationResponse, LinkError> {
    let mti = wire::mti(message);
    if !matches!(mti.get(2..3), Some("1" | "3")) {
        return Err(LinkError::protocol(format!("{mti} is not a response")));
    }
    let response_code = required(message, field::RESPONSE_CODE, "response code (39)")?;
    if response_code.len() != 2 {
        return Err(LinkError::protocol("response code: expected 2 characters"));
    }
    let stan = parse_stan(required(message, field::STAN, "stan (11)")?)?;
    let text = |number| wire::text(message, number).map(str::to_owned);
    let amount_minor = wire::text(message, field::AMOUNT)
        .map(parse_amount)
        .transpose()?;
    let network_code = wire::text(message, field::NETWORK_CODE).and_then(NetworkCode::from_code);
    Ok(AuthorizationResponse {
        mti,
        response_code: response_code.to_owned(),
        auth_code: text(field::AUTH_CODE).map(|code| code.trim().to_owned()),
        stan,
        rrn: text(field::RRN).unwrap_or_default(),
        icc_data: wire::bytes(message, field::ICC_DATA).map(<[u8]>::to_vec),
        processing_code: text(field::PROCESSING_CODE),
        amount_minor,
        currency_numeric: text(field::CURRENCY),
        transmitted_at: wire::text(message, field::TRANSMISSION_DATE_TIME)
            .and_then(|value| parse_mmddhhmmss(value, Utc::now())),
        terminal_id: text(field::TERMINAL_ID),
        network_code,
    })
}

/// The message of an answer (the host side).
pub fn response_to_message(response: &AuthorizationResponse) -> Result<Message, LinkError> {
    check_stan(response.stan)?;
    if response.response_code.len() != 2 {
        return Err(LinkError::protocol("response code: expected 2 characters"));
    }
    let mut message = wire::new_message(&response.mti)?;
    if let Some(code) = &response.processing_code {
        check_digits("processing code", code, 6, 6)?;
        wire::set_text(&mut message, field::PROCESSING_CODE, code);
    }
    if let Some(amount) = response.amount_minor {
        wire::set_text(&mut message, field::AMOUNT, &amount_text(amount)?);
    }
    if let Some(at) = response.transmitted_at {
        wire::set_text(
            &mut message,
            field::TRANSMISSION_DATE_TIME,
            &at.format("%m%d%H%M%S").to_string(),
        );
    }
    wire::set_text(&mut message, field::STAN, &format!("{:06}", response.stan));
    if !response.rrn.is_empty() {
        check_printable("rrn", &response.rrn, 12)?;
        wire::set_text(&mut message, field::RRN, &response.rrn);
    }
    if let Some(code) = &response.auth_code {
        check_auth_code(code)?;
        wire::set_text(&mut message, field::AUTH_CODE, code);
    }
    wire::set_text(&mut message, field::RESPONSE_CODE, &response.response_code);
    if let Some(terminal) = &response.terminal_id {
        check_printable("terminal id", terminal, 8)?;
        wire::set_text(&mut message, field::TERMINAL_ID, terminal);
    }
    if let Some(currency) = &response.currency_numeric {
        check_digits("currency", currency, 3, 3)?;
        wire::set_text(&mut message, field::CURRENCY, currency);
    }
    if let Some(icc) = &response.icc_data {
        wire::set_bytes(&mut message, field::ICC_DATA, icc);
    }
    if let Some(code) = response.network_code {
        wire::set_text(&mut message, field::NETWORK_CODE, code.code());
    }
    Ok(message)
}

/// Reads the fields an authorisation and a reversal share.
fn common_from_message(
    message: &Message,
    kind: RequestKind,
    stan: u32,
    transmitted_at: DateTime<Utc>,
) -> Result<AuthorizationRequest, LinkError> {
    let track2 = wire::text(message, field::TRACK2)
        .map(Track2Data::new)
        .transpose()?;
    let pan = match (wire::text(message, field::PAN), &track2) {
        (Some(pan), _) => Pan::new(pan).map_err(|_| LinkError::protocol("pan: bad digits"))?,
        (None, Some(track2)) => track2.pan()?,
        (None, None) => return Err(LinkError::protocol("missing pan (2 or 35)")),
    };
    let local = parse_local(
        required(message, field::LOCAL_DATE, "local date (13)")?,
        required(message, field::LOCAL_TIME, "local time (12)")?,
        transmitted_at.naive_utc(),
    )
    .ok_or_else(|| LinkError::protocol("local date and time: bad values"))?;
    let (entry_mode, pin_capable) = EntryMode::parse_field22(required(
        message,
        field::POS_ENTRY_MODE,
        "pos entry mode (22)",
    )?)
    .ok_or_else(|| LinkError::protocol("pos entry mode: unknown value"))?;
    let pin_block = match wire::bytes(message, field::PIN_BLOCK) {
        Some(bytes) => {
            Some(PinBlock::new(bytes.try_into().map_err(|_| {
                LinkError::protocol("pin block: expected 8 bytes")
            })?))
        }
        None => None,
    };
    let text = |number| wire::text(message, number).map(str::to_owned);
    let request = AuthorizationRequest {
        kind,
        pan,
        expiry: text(field::EXPIRY),
        track2,
        pan_sequence: text(field::CARD_SEQUENCE),
        amount_minor: parse_amount(required(message, field::AMOUNT, "amount (4)")?)?,
        currency_numeric: required(message, field::CURRENCY, "currency (49)")?.to_owned(),
        stan,
        rrn: required(message, field::RRN, "rrn (37)")?.to_owned(),
        transmitted_at,
        local_at: local,
        mcc: required(message, field::MCC, "mcc (18)")?.to_owned(),
        entry_mode,
        pin_capable,
        pin_block,
        icc_data: wire::bytes(message, field::ICC_DATA).map(<[u8]>::to_vec),
        terminal_id: required(message, field::TERMINAL_ID, "terminal id (41)")?.to_owned(),
        merchant_id: required(message, field::MERCHANT_ID, "merchant id (42)")?.to_owned(),
        acquirer_institution_id: required(message, field::ACQUIRER_ID, "acquirer id (32)")?
            .to_owned(),
        original: None,
        auth_code: text(field::AUTH_CODE).map(|code| code.trim().to_owned()),
    };
    Ok(request)
}

/// Reads a request (the host side); dates without a year are placed near the present.
pub fn request_from_message(message: &Message) -> Result<HostRequest, LinkError> {
    request_from_message_at(message, Utc::now())
}

/// Like [`request_from_message`], with the time the years of fields 7 and 90 are inferred
/// from.
pub fn request_from_message_at(
    message: &Message,
    now: DateTime<Utc>,
) -> Result<HostRequest, LinkError> {
    let mti = wire::mti(message);
    let stan = parse_stan(required(message, field::STAN, "stan (11)")?)?;
    let transmitted_at = parse_mmddhhmmss(
        required(
            message,
            field::TRANSMISSION_DATE_TIME,
            "transmission time (7)",
        )?,
        now,
    )
    .ok_or_else(|| LinkError::protocol("transmission time: bad value"))?;
    match mti.as_str() {
        "0800" | "0801" => {
            let code = NetworkCode::from_code(required(
                message,
                field::NETWORK_CODE,
                "network management code (70)",
            )?)
            .ok_or_else(|| LinkError::protocol("network management code: unknown value"))?;
            Ok(HostRequest::Network {
                code,
                stan,
                transmitted_at,
            })
        }
        "0400" | "0401" => {
            let original_data = OriginalData::parse_field90(
                required(message, field::ORIGINAL_DATA, "original data (90)")?,
                now,
            )?;
            let processing_code = required(message, field::PROCESSING_CODE, "processing code (3)")?;
            let kind = RequestKind::from_mti(&original_data.mti, processing_code)
                .ok_or_else(|| LinkError::protocol("reversal of an unknown request"))?;
            let original = original_from_reversal(message, kind, original_data)?;
            let reason = ReversalReason::from_code(required(
                message,
                field::RESPONSE_CODE,
                "reversal reason (39)",
            )?)
            .ok_or_else(|| LinkError::protocol("reversal reason: unknown value"))?;
            Ok(HostRequest::Reversal {
                original: Box::new(original),
                reversal: Reversal {
                    reason,
                    stan,
                    transmitted_at,
                    repeat: mti == "0401",
                },
            })
        }
        "0221" => {
            let processing_code = required(message, field::PROCESSING_CODE, "processing code (3)")?;
            if RequestKind::from_mti(&mti, processing_code) != Some(RequestKind::Completion) {
                return Err(LinkError::protocol("repeat of an unknown advice"));
            }
            let original = OriginalData::parse_field90(
                required(message, field::ORIGINAL_DATA, "original data (90)")?,
                now,
            )?;
            // The advice's own identifiers: its STAN and field 7 (the 0220's), its acquirer.
            let own = OriginalData {
                mti: RequestKind::Completion.mti().to_owned(),
                stan,
                transmitted_at,
                acquirer_id: required(message, field::ACQUIRER_ID, "acquirer id (32)")?.to_owned(),
            };
            let advice = original_from_reversal(message, RequestKind::Completion, own)?;
            if advice.auth_code.is_none() {
                return Err(LinkError::protocol("missing approval code (38)"));
            }
            Ok(HostRequest::AdviceRepeat {
                advice: Box::new(advice),
                original,
            })
        }
        _ => {
            let processing_code = required(message, field::PROCESSING_CODE, "processing code (3)")?;
            let kind = RequestKind::from_mti(&mti, processing_code)
                .ok_or_else(|| LinkError::protocol(format!("unsupported request {mti}")))?;
            let mut request = common_from_message(message, kind, stan, transmitted_at)?;
            if kind == RequestKind::Completion {
                request.original = Some(OriginalData::parse_field90(
                    required(message, field::ORIGINAL_DATA, "original data (90)")?,
                    now,
                )?);
            }
            Ok(HostRequest::Authorization(Box::new(request)))
        }
    }
}
