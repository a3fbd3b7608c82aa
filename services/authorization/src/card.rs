//! The card as the payment path holds it: the track 2 equivalent data deciphered inside the
//! HSM, kept only in memory for as long as the payment needs it. [`CardData`] zeroizes on
//! drop and never prints its digits; what leaves it for events and answers is a
//! [`CardSummary`]: BIN, last four digits, length, brand and keyed token.

use std::fmt;

use tms_params::card::{CardToken, Pan, TokenKey};
use zeroize::{Zeroize, Zeroizing};

/// Why deciphered card data was refused. Messages never contain digits of the card.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// Not track 2 equivalent data.
    #[error("card data: {0}")]
    Malformed(&'static str),
    /// The PAN is not 12 to 19 digits with a valid check digit.
    #[error("card data: the card number is not valid")]
    InvalidPan,
}

/// An expiry date, YYMM (the card is valid through the last day of the month).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry {
    /// Two-digit year (20YY).
    pub year: u8,
    /// 1 to 12.
    pub month: u8,
}

impl Expiry {
    /// Parses four digits YYMM.
    pub fn parse(digits: &str) -> Option<Self> {
        if digits.len() != 4 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let year = digits.get(..2)?.parse().ok()?;
        let month = digits.get(2..)?.parse().ok()?;
        (1..=12).contains(&month).then_some(Self { year, month })
    }

    /// Whether the card has expired at `year` (four digits) / `month` (1-12): it is valid
    /// through its expiry month. Years are read in the 2000s.
    pub fn expired_at(&self, year: i32, month: u32) -> bool {
        let card = (2000 + i32::from(self.year)) * 12 + i32::from(self.month);
        let now = year * 12 + i32::try_from(month).unwrap_or(12);
        now > card
    }
}

/// Deciphered track 2 equivalent data: PAN, separator, expiry date (YYMM), service code and
/// discretionary data. Zeroized on drop; `Debug` prints the masked PAN only.
#[derive(Clone)]
pub struct CardData {
    track2: Zeroizing<String>,
    pan: Pan,
    pan_length: usize,
    expiry: Expiry,
    service_code: [u8; 3],
}

impl CardData {
    /// Reads the plaintext `DecryptData` returned: the track 2 equivalent data as ASCII,
    /// zero-padded to the cipher's block size (padding removed here). The separator may be
    /// `=` or `D`; an expiry date and a service code must follow it.
    pub fn from_plaintext(plaintext: &[u8]) -> Result<Self, CardError> {
        let end = plaintext
            .iter()
            .rposition(|byte| *byte != 0)
            .map_or(0, |last| last + 1);
        let text = plaintext.get(..end).unwrap_or_default();
        if text.is_empty() {
            return Err(CardError::Malformed("empty"));
        }
        if text.len() > 37 {
            return Err(CardError::Malformed("longer than 37 characters"));
        }
        let mut track2 = Zeroizing::new(
            std::str::from_utf8(text)
                .map_err(|_| CardError::Malformed("not ASCII"))?
                .to_ascii_uppercase(),
        );
        let separator = track2
            .find(['=', 'D'])
            .ok_or(CardError::Malformed("no separator"))?;
        let (pan_digits, rest) = track2.split_at(separator);
        let rest = rest.get(1..).unwrap_or_default();
        if !rest.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(CardError::Malformed("not digits after the separator"));
        }
        if rest.len() < 7 {
            return Err(CardError::Malformed("no expiry date and service code"));
        }
        let expiry = rest
            .get(..4)
            .and_then(Expiry::parse)
            .ok_or(CardError::Malformed("expiry date is not YYMM"))?;
        let mut service_code = [0_u8; 3];
        service_code.copy_from_slice(rest.as_bytes().get(4..7).unwrap_or(b"000"));
        let pan = Pan::parse(pan_digits).map_err(|_| CardError::InvalidPan)?;
        let pan_length = pan_digits.len();
        // The canonical separator for ISO 8583 field 35 is '='.
        track2.replace_range(separator..=separator, "=");
        Ok(Self {
            track2,
            pan,
            pan_length,
            expiry,
            service_code,
        })
    }

    /// The PAN.
    pub fn pan(&self) -> &Pan {
        &self.pan
    }

    /// The PAN's digits, zeroized when dropped. Keep it short-lived.
    pub fn pan_digits(&self) -> Zeroizing<String> {
        self.pan.expose()
    }

    /// The track 2 equivalent data with `=` as separator, zeroized when dropped.
    pub fn track2(&self) -> Zeroizing<String> {
        self.track2.clone()
    }

    /// The expiry date.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// The expiry date as YYMM.
    pub fn expiry_yymm(&self) -> String {
        format!("{:02}{:02}", self.expiry.year, self.expiry.month)
    }

    /// The three-digit service code.
    pub fn service_code(&self) -> String {
        String::from_utf8_lossy(&self.service_code).into_owned()
    }

    /// The BIN as events and routing see it: the first eight digits of a PAN of 16 digits or
    /// more, else the first six (PCI DSS allows first eight and last four for 16+ digits).
    pub fn bin(&self) -> String {
        let len = if self.pan_length >= 16 { 8 } else { 6 };
        self.track2.get(..len).unwrap_or_default().to_owned()
    }

    /// The last four digits.
    pub fn last_four(&self) -> String {
        self.track2
            .get(self.pan_length.saturating_sub(4)..self.pan_length)
            .unwrap_or_default()
            .to_owned()
    }

    /// The number of PAN digits.
    pub fn pan_length(&self) -> usize {
        self.pan_length
    }

    /// BIN and last four with the digits between masked, for receipts.
    pub fn masked(&self) -> String {
        let bin = self.bin();
        let hidden = self.pan_length.saturating_sub(bin.len() + 4);
        format!("{bin}{}{}", "*".repeat(hidden), self.last_four())
    }

    /// The card's summary under the tenant's token key.
    pub fn summary(&self, key: &TokenKey, brand: &str) -> CardSummary {
        CardSummary {
            bin: self.bin(),
            last_four: self.last_four(),
            pan_length: u32::try_from(self.pan_length).unwrap_or(0),
            token: CardToken::from_pan(key, &self.pan),
            brand: brand.to_owned(),
        }
    }
}

impl Drop for CardData {
    fn drop(&mut self) {
        self.service_code.zeroize();
    }
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardData({})", self.masked())
    }
}

/// What may be kept of a card: no PAN, no expiry, no track data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSummary {
    /// First six or eight digits.
    pub bin: String,
    /// Last four digits.
    pub last_four: String,
    /// Number of PAN digits.
    pub pan_length: u32,
    /// The keyed token.
    pub token: CardToken,
    /// The brand from the BIN.
    pub brand: String,
}

impl CardSummary {
    /// As the events carry it.
    pub fn to_proto(&self) -> mpos_proto::authorization::CardSummary {
        mpos_proto::authorization::CardSummary {
            bin: self.bin.clone(),
            last_four: self.last_four.clone(),
            pan_length: self.pan_length,
            token: self.token.to_string(),
            brand: self.brand.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_padded_track2_and_keeps_only_the_summary_printable() {
        // The X9.24-1 / terminal-sim shape: PAN, D, YYMM, service code, discretionary data.
        let mut plaintext = b"4761739001010119D29122011143804400000".to_vec();
        plaintext.resize(40, 0);
        let card = CardData::from_plaintext(&plaintext).expect("card");
        assert_eq!(card.bin(), "47617390");
        assert_eq!(card.last_four(), "0119");
        assert_eq!(card.pan_length(), 16);
        assert_eq!(card.expiry_yymm(), "2912");
        assert_eq!(card.service_code(), "201");
        assert_eq!(card.masked(), "47617390****0119");
        assert_eq!(
            card.track2().as_str(),
            "4761739001010119=29122011143804400000"
        );
        let printed = format!("{card:?}");
        assert!(!printed.contains("4761739001010119"), "{printed}");
    }

    #[test]
    fn a_short_pan_shows_six_digits() {
        let card = CardData::from_plaintext(b"4012345678909=2512101").expect("card");
        assert_eq!(card.bin(), "401234");
        assert_eq!(card.masked(), "401234***8909");
    }

    #[test]
    fn refuses_what_is_not_track2() {
        assert_eq!(
            CardData::from_plaintext(&[0; 16]).err(),
            Some(CardError::Malformed("empty"))
        );
        assert_eq!(
            CardData::from_plaintext(b"4012345678909").err(),
            Some(CardError::Malformed("no separator"))
        );
        assert_eq!(
            CardData::from_plaintext(b"4012345678909=25").err(),
            Some(CardError::Malformed("no expiry date and service code"))
        );
        assert_eq!(
            CardData::from_plaintext(b"4012345678909=2513101").err(),
            Some(CardError::Malformed("expiry date is not YYMM"))
        );
        assert_eq!(
            CardData::from_plaintext(b"4012345678908=2512101").err(),
            Some(CardError::InvalidPan)
        );
        assert_eq!(
            CardData::from_plaintext(&[0xff, 0x3d, 0x31]).err(),
            Some(CardError::Malformed("not ASCII"))
        );
    }

    #[test]
    fn a_card_is_valid_through_its_expiry_month() {
        let expiry = Expiry::parse("2512").expect("expiry");
        assert!(!expiry.expired_at(2025, 12));
        assert!(expiry.expired_at(2026, 1));
        assert!(!expiry.expired_at(2024, 6));
        assert_eq!(Expiry::parse("2500"), None);
        assert_eq!(Expiry::parse("25x1"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_plaintext(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = CardData::from_plaintext(&bytes);
        }
    }
}
