//! Domain values that validate on construction: once built, a value is valid, so the rest of
//! the crate never checks it again. Every parser is total: it returns an error on any input,
//! never panics.

use std::fmt;

use crate::error::InvalidValue;

/// An amount in minor units of its currency, at most [`Amount::MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

impl Amount {
    /// The largest amount: 12 decimal digits, what EMV numeric amount fields (n12, e.g. tag
    /// 9F02) can carry.
    pub const MAX: u64 = 999_999_999_999;

    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// An amount of `minor_units`; refuses more than [`Amount::MAX`].
    pub fn new(minor_units: u64) -> Result<Self, InvalidValue> {
        if minor_units > Self::MAX {
            return Err(InvalidValue::new(format!(
                "{minor_units} exceeds {}, the largest 12-digit amount",
                Self::MAX
            )));
        }
        Ok(Self(minor_units))
    }

    /// An amount that also fits a 4-byte binary EMV field (terminal floor limit 9F1B, CVM
    /// list amounts X and Y).
    pub fn new_binary4(minor_units: u64) -> Result<Self, InvalidValue> {
        if minor_units > u64::from(u32::MAX) {
            return Err(InvalidValue::new(format!(
                "{minor_units} exceeds {}, the largest value of a 4-byte binary EMV field",
                u32::MAX
            )));
        }
        Self::new(minor_units)
    }

    /// The amount in minor units.
    pub fn minor_units(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One row of the embedded ISO 4217 table.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct CurrencyInfo {
    alpha: &'static str,
    numeric: u16,
    exponent: u8,
}

/// The currencies the platform supports: ISO 4217 alphabetic code, numeric code and minor
/// unit exponent, as published by the ISO 4217 maintenance agency (SIX). Sorted by alpha code.
const CURRENCIES: &[CurrencyInfo] = &[
    CurrencyInfo {
        alpha: "AUD",
        numeric: 36,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "BRL",
        numeric: 986,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "CAD",
        numeric: 124,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "CHF",
        numeric: 756,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "CZK",
        numeric: 203,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "DKK",
        numeric: 208,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "EUR",
        numeric: 978,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "GBP",
        numeric: 826,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "HKD",
        numeric: 344,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "HUF",
        numeric: 348,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "ISK",
        numeric: 352,
        exponent: 0,
    },
    CurrencyInfo {
        alpha: "JPY",
        numeric: 392,
        exponent: 0,
    },
    CurrencyInfo {
        alpha: "KWD",
        numeric: 414,
        exponent: 3,
    },
    CurrencyInfo {
        alpha: "MXN",
        numeric: 484,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "NOK",
        numeric: 578,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "NZD",
        numeric: 554,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "PLN",
        numeric: 985,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "RON",
        numeric: 946,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "SEK",
        numeric: 752,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "SGD",
        numeric: 702,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "USD",
        numeric: 840,
        exponent: 2,
    },
    CurrencyInfo {
        alpha: "ZAR",
        numeric: 710,
        exponent: 2,
    },
];

/// A supported ISO 4217 currency. Ordered by alphabetic code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency(&'static CurrencyInfo);

impl Currency {
    /// Parses an ISO 4217 alphabetic code (three uppercase letters) of a supported currency.
    pub fn from_alpha(code: &str) -> Result<Self, InvalidValue> {
        if code.len() != 3 || !code.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(InvalidValue::new(
                "must be an ISO 4217 alphabetic code of 3 uppercase letters",
            ));
        }
        CURRENCIES
            .binary_search_by(|info| info.alpha.cmp(code))
            .ok()
            .and_then(|index| CURRENCIES.get(index))
            .map(Self)
            .ok_or_else(|| InvalidValue::new(format!("unknown or unsupported currency {code}")))
    }

    /// The supported currency with ISO 4217 numeric code `numeric` (EMV tag 5F2A).
    pub fn from_numeric(numeric: u16) -> Result<Self, InvalidValue> {
        CURRENCIES
            .iter()
            .find(|info| info.numeric == numeric)
            .map(Self)
            .ok_or_else(|| {
                InvalidValue::new(format!(
                    "unknown or unsupported currency number {numeric:03}"
                ))
            })
    }

    /// Every supported currency, by alphabetic code.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(Self)
    }

    /// The alphabetic code, e.g. `EUR`.
    pub fn alpha(self) -> &'static str {
        self.0.alpha
    }

    /// The numeric code, e.g. 978 (EMV tag 5F2A).
    pub fn numeric(self) -> u16 {
        self.0.numeric
    }

    /// The number of minor unit digits, e.g. 2 (EMV tag 5F36).
    pub fn exponent(self) -> u8 {
        self.0.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.alpha)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.alpha)
    }
}

/// Parses exactly `len` ASCII digits into a number; `None` for anything else.
fn parse_digits(text: &str, len: usize) -> Option<u64> {
    if text.len() != len || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An ISO 3166-1 numeric country code, 001 to 999 (EMV tag 9F1A).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode(u16);

impl CountryCode {
    /// Parses three ASCII digits other than `000`, e.g. `276`.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match parse_digits(text, 3).and_then(|number| u16::try_from(number).ok()) {
            Some(0) => Err(InvalidValue::new("000 is not a country")),
            Some(number) => Ok(Self(number)),
            None => Err(InvalidValue::new(
                "must be an ISO 3166-1 numeric code of 3 digits",
            )),
        }
    }

    /// The numeric code.
    pub fn numeric(self) -> u16 {
        self.0
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// A merchant category code, 4 digits (ISO 18245; EMV tag 9F15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mcc(u16);

impl Mcc {
    /// Parses exactly four ASCII digits, e.g. `5411`.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        parse_digits(text, 4)
            .and_then(|number| u16::try_from(number).ok())
            .map(Self)
            .ok_or_else(|| InvalidValue::new("must be 4 digits (ISO 18245)"))
    }

    /// The code as a number.
    pub fn code(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Mcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// A terminal action code: a 5-byte mask over the Terminal Verification Results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionCode([u8; 5]);

impl ActionCode {
    /// Parses 10 hexadecimal characters, either case, e.g. `FC50BCA000`.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        if text.len() != 10 {
            return Err(InvalidValue::new(format!(
                "must be 10 hexadecimal characters (5 bytes), got {} characters",
                text.chars().count()
            )));
        }
        let mut bytes = [0_u8; 5];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| InvalidValue::new("must be 10 hexadecimal characters (5 bytes)"))?;
        Ok(Self(bytes))
    }

    /// The mask from its bytes.
    pub fn from_bytes(bytes: [u8; 5]) -> Self {
        Self(bytes)
    }

    /// The mask bytes.
    pub fn bytes(self) -> [u8; 5] {
        self.0
    }
}

impl fmt::Display for ActionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

/// A percentage for random transaction selection, 0 to 99 (EMV Book 3 §10.6.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u8);

impl Percent {
    /// A percentage of 0 to 99.
    pub fn new(value: u32) -> Result<Self, InvalidValue> {
        match u8::try_from(value) {
            Ok(percent) if percent <= 99 => Ok(Self(percent)),
            _ => Err(InvalidValue::new(format!(
                "{value} is not a percentage of 0 to 99"
            ))),
        }
    }

    /// The value, 0 to 99.
    pub fn value(self) -> u8 {
        self.0
    }
}

/// A range of card number prefixes (BINs / IINs), both ends inclusive, 6 to 11 digits each,
/// of equal length. Ordered by length, then low, then high.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BinRange {
    digits: u8,
    low: u64,
    high: u64,
}

impl BinRange {
    /// The fewest digits of a prefix.
    pub const MIN_DIGITS: usize = 6;
    /// The most digits of a prefix (a 12-digit PAN has at least one more digit).
    pub const MAX_DIGITS: usize = 11;

    /// Parses the two ends. Errors name `.low` or `.high` and never echo the input.
    pub fn parse(low: &str, high: &str) -> Result<Self, InvalidValue> {
        let low_number = Self::parse_end(low).map_err(|reason| InvalidValue::at(".low", reason))?;
        let high_number =
            Self::parse_end(high).map_err(|reason| InvalidValue::at(".high", reason))?;
        if low.len() != high.len() {
            return Err(InvalidValue::at(
                ".high",
                format!(
                    "has {} digits, low has {}: both ends must have the same length",
                    high.len(),
                    low.len()
                ),
            ));
        }
        if low_number > high_number {
            return Err(InvalidValue::new("low must not be greater than high"));
        }
        let digits =
            u8::try_from(low.len()).map_err(|_| InvalidValue::at(".low", "too many digits"))?;
        Ok(Self {
            digits,
            low: low_number,
            high: high_number,
        })
    }

    fn parse_end(text: &str) -> Result<u64, String> {
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&text.len()) {
            return Err(format!(
                "must be {} to {} digits, got {} characters",
                Self::MIN_DIGITS,
                Self::MAX_DIGITS,
                text.chars().count()
            ));
        }
        parse_digits(text, text.len()).ok_or_else(|| "must be digits only".to_owned())
    }

    /// The number of digits of each end.
    pub fn digits(self) -> usize {
        usize::from(self.digits)
    }

    /// The low end, zero-padded to [`BinRange::digits`].
    pub fn low(self) -> String {
        format!("{:0width$}", self.low, width = self.digits())
    }

    /// The high end, zero-padded to [`BinRange::digits`].
    pub fn high(self) -> String {
        format!("{:0width$}", self.high, width = self.digits())
    }

    /// Whether the PAN's first [`BinRange::digits`] digits fall in the range.
    pub fn contains(self, pan: &crate::card::Pan) -> bool {
        pan.prefix(self.digits())
            .is_some_and(|prefix| (self.low..=self.high).contains(&prefix))
    }
}

impl fmt::Display for BinRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low(), self.high())
    }
}

impl fmt::Debug for BinRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BinRange({self})")
    }
}

/// The CVM methods of EMV Book 3 Annex C3, Table C-1 (bits b6-b1 of the CVM code).
pub mod cvm_method {
    /// Fail CVM processing.
    pub const FAIL: u8 = 0b00_0000;
    /// Plaintext PIN verification performed by ICC.
    pub const PLAINTEXT_PIN_BY_ICC: u8 = 0b00_0001;
    /// Enciphered PIN verified online.
    pub const ENCIPHERED_PIN_ONLINE: u8 = 0b00_0010;
    /// Plaintext PIN verification performed by ICC and signature (paper).
    pub const PLAINTEXT_PIN_BY_ICC_AND_SIGNATURE: u8 = 0b00_0011;
    /// Enciphered PIN verification performed by ICC.
    pub const ENCIPHERED_PIN_BY_ICC: u8 = 0b00_0100;
    /// Enciphered PIN verification performed by ICC and signature (paper).
    pub const ENCIPHERED_PIN_BY_ICC_AND_SIGNATURE: u8 = 0b00_0101;
    /// Signature (paper).
    pub const SIGNATURE: u8 = 0b01_1110;
    /// No CVM required.
    pub const NO_CVM_REQUIRED: u8 = 0b01_1111;
}

/// One cardholder verification rule: a CVM code and a CVM condition code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CvRule {
    method: u8,
    apply_succeeding_if_unsuccessful: bool,
    condition: u8,
}

impl CvRule {
    /// A rule. `method` is bits b6-b1 of the CVM code: 0-5, 30, 31 ([`cvm_method`]),
    /// 32-47 (payment system) or 48-62 (issuer); 6-29 are RFU and 63 is "not available for
    /// use". `condition` is 0x00-0x09 or 0x80-0xFF (payment system); 0x0A-0x7F are RFU
    /// (Annex C3, Table C-2).
    pub fn new(
        method: u32,
        apply_succeeding_if_unsuccessful: bool,
        condition: u32,
    ) -> Result<Self, InvalidValue> {
        let method = match u8::try_from(method) {
            Ok(method @ (0..=5 | 30..=62)) => method,
            Ok(6..=29) => {
                return Err(InvalidValue::at(
                    ".method",
                    format!("{method} is reserved for future use (EMV Book 3 Annex C3)"),
                ));
            }
            _ => {
                return Err(InvalidValue::at(
                    ".method",
                    format!("{method} is not a CVM method (0 to 62)"),
                ));
            }
        };
        let condition = match u8::try_from(condition) {
            Ok(condition @ (0x00..=0x09 | 0x80..=0xFF)) => condition,
            _ => {
                return Err(InvalidValue::at(
                    ".condition",
                    format!("{condition} is not a CVM condition code (0x00 to 0x09, 0x80 to 0xFF)"),
                ));
            }
        };
        Ok(Self {
            method,
            apply_succeeding_if_unsuccessful,
            condition,
        })
    }

    /// The CVM method (bits b6-b1 of the CVM code).
    pub fn method(self) -> u8 {
        self.method
    }

    /// Whether the succeeding rule applies if this CVM is unsuccessful (bit b7).
    pub fn apply_succeeding_if_unsuccessful(self) -> bool {
        self.apply_succeeding_if_unsuccessful
    }

    /// The CVM condition code.
    pub fn condition(self) -> u8 {
        self.condition
    }

    /// The two EMV bytes: CVM code (b8 RFU 0, b7 the "apply succeeding" bit, b6-b1 the
    /// method) and condition code.
    pub fn to_bytes(self) -> [u8; 2] {
        let succeeding = if self.apply_succeeding_if_unsuccessful {
            0x40
        } else {
            0
        };
        [self.method | succeeding, self.condition]
    }
}

/// A CVM list (EMV Book 3 §10.5, Annex C3): amounts X and Y and at least one rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CvmList {
    amount_x: Amount,
    amount_y: Amount,
    rules: Vec<CvRule>,
}

impl CvmList {
    /// The most rules: a CVM list (tag 8E) is at most 252 bytes, 8 of them the amounts and 2
    /// per rule.
    pub const MAX_RULES: usize = 122;

    /// A list; the amounts are 4-byte binary EMV fields.
    pub fn new(amount_x: u64, amount_y: u64, rules: Vec<CvRule>) -> Result<Self, InvalidValue> {
        let amount_x = Amount::new_binary4(amount_x)
            .map_err(|error| InvalidValue::at(".amount_x", error.reason))?;
        let amount_y = Amount::new_binary4(amount_y)
            .map_err(|error| InvalidValue::at(".amount_y", error.reason))?;
        if rules.is_empty() {
            return Err(InvalidValue::at(".rules", "must hold at least one rule"));
        }
        if rules.len() > Self::MAX_RULES {
            return Err(InvalidValue::at(
                ".rules",
                format!(
                    "{} rules, at most {} fit a CVM list",
                    rules.len(),
                    Self::MAX_RULES
                ),
            ));
        }
        Ok(Self {
            amount_x,
            amount_y,
            rules,
        })
    }

    /// Amount X.
    pub fn amount_x(&self) -> Amount {
        self.amount_x
    }

    /// Amount Y.
    pub fn amount_y(&self) -> Amount {
        self.amount_y
    }

    /// The rules in order of preference.
    pub fn rules(&self) -> &[CvRule] {
        &self.rules
    }

    /// The value of EMV tag 8E: amount X and amount Y (4 bytes big-endian each), then 2
    /// bytes per rule.
    pub fn to_emv_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + 2 * self.rules.len());
        for amount in [self.amount_x, self.amount_y] {
            // new_binary4 guarantees the amounts fit 4 bytes.
            let value = u32::try_from(amount.minor_units()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        for rule in &self.rules {
            bytes.extend_from_slice(&rule.to_bytes());
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_currency_table_is_sorted_unique_and_holds_the_required_currencies() {
        // from_alpha binary-searches the table.
        assert!(
            CURRENCIES
                .windows(2)
                .all(|pair| pair[0].alpha < pair[1].alpha)
        );
        let mut numerics: Vec<u16> = CURRENCIES.iter().map(|info| info.numeric).collect();
        numerics.sort_unstable();
        numerics.dedup();
        assert_eq!(numerics.len(), CURRENCIES.len());
        for code in [
            "EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "JPY", "BRL",
            "AUD", "CAD",
        ] {
            let currency = Currency::from_alpha(code).expect(code);
            assert_eq!(Currency::from_numeric(currency.numeric()), Ok(currency));
        }
        let euro = Currency::from_alpha("EUR").expect("EUR");
        assert_eq!((euro.numeric(), euro.exponent()), (978, 2));
        let yen = Currency::from_alpha("JPY").expect("JPY");
        assert_eq!((yen.numeric(), yen.exponent()), (392, 0));
        assert!(Currency::from_numeric(999).is_err());
    }

    #[test]
    fn a_bin_range_matches_pans_by_prefix() {
        let range = BinRange::parse("40000000", "40000099").expect("range");
        let inside = crate::card::Pan::parse("4000000000000002").expect("pan");
        let outside = crate::card::Pan::parse("4111111111111111").expect("pan");
        assert!(range.contains(&inside));
        assert!(!range.contains(&outside));
        assert_eq!(range.to_string(), "40000000-40000099");
        let leading_zero = BinRange::parse("012345", "012399").expect("range");
        assert_eq!(leading_zero.low(), "012345");
    }

    #[test]
    fn a_cv_rule_encodes_to_the_two_emv_bytes() {
        let rule = CvRule::new(u32::from(cvm_method::SIGNATURE), true, 0x03).expect("rule");
        assert_eq!(rule.to_bytes(), [0x5E, 0x03]);
        let rule = CvRule::new(u32::from(cvm_method::FAIL), false, 0x00).expect("rule");
        assert_eq!(rule.to_bytes(), [0x00, 0x00]);
    }
}
