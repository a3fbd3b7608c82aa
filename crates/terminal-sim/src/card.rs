//! The card data a simulated card presents: track 2 equivalent data; and the named test
//! cards ([`test_cards`]) demos and end-to-end tests pay with.

use std::fmt;

use paycrypto::SecretBytes;
use paycrypto::pin::{Pan, Pin};
use zeroize::{Zeroize, Zeroizing};

use crate::SimError;
use crate::emv::EmvCard;

/// Track 2 equivalent data (ISO/IEC 7813 without start and end sentinels and LRC): the PAN,
/// the separator `D` (or `=`), then expiry date, service code and discretionary data as
/// digits. At most 37 characters. `Debug` shows the masked PAN only; zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Track2 {
    text: String,
    pan: Pan,
}

impl Track2 {
    /// Parses track 2 equivalent data, e.g. `4012345678909D987` (the X9.24-1 A.4 message).
    pub fn parse(text: &str) -> Result<Self, SimError> {
        if text.len() > 37 {
            return Err(SimError::InvalidInput(format!(
                "track 2 data: at most 37 characters, got {}",
                text.len()
            )));
        }
        let upper = text.to_ascii_uppercase();
        let (pan, rest) = upper
            .split_once(['D', '='])
            .ok_or_else(|| SimError::InvalidInput("track 2 data: no separator (D or =)".into()))?;
        if !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SimError::InvalidInput(
                "track 2 data: only digits after the separator".into(),
            ));
        }
        let pan = Pan::new(pan)
            .map_err(|error| SimError::InvalidInput(format!("track 2 data: {error}")))?;
        Ok(Self { text: upper, pan })
    }

    /// The PAN.
    pub fn pan(&self) -> &Pan {
        &self.pan
    }

    /// The bytes that are enciphered: the ASCII characters.
    pub(crate) fn expose_ascii(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.text.as_bytes().to_vec())
    }
}

impl Drop for Track2 {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for Track2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Track2({}D***)", self.pan.masked())
    }
}

/// The issuer master key (application cryptograms) of every test card: pyemv's published
/// test IMK (github.com/knovichikhin/pyemv, tests/test_cvn_hsm.py), the key acquirer-sim's
/// tests and its CVN 18 vector use. Published, so worthless: test cards only.
pub const TEST_IMK_HEX: &str = "0123456789ABCDEFFEDCBA9876543210";

/// The BIN range [`test_cards`]' "blocked-bin" card is in (`400000` to `400099`, the range
/// terminal-management's parameter tests block). It is blocked only where a terminal's
/// parameters list it in `blockedBinRanges`.
pub const BLOCKED_BIN_RANGE: (&str, &str) = ("400000", "400099");

/// A named test card: its track 2 equivalent data, PIN and EMV chip. The PANs pass the Luhn
/// check; none is a real account. `Debug` masks the PAN and shows no PIN or key.
#[derive(Clone, Debug)]
pub struct TestCard {
    /// A short name: `visa`, `mastercard-2-series`, `unionpay-19`, `expired`, `blocked-bin`.
    pub name: &'static str,
    /// The brand, lower case (`visa`, `mastercard`, `unionpay`).
    pub brand: &'static str,
    /// The track 2 equivalent data (PAN, `D`, expiry YYMM, service code 201, discretionary
    /// data).
    pub track2: Track2,
    /// The cardholder's PIN.
    pub pin: Pin,
    /// The expiry date, `YYMM` (the same as in the track).
    pub expiry: &'static str,
    /// The PAN sequence number (5F34).
    pub pan_sequence_number: u8,
    /// The chip application's AID.
    pub aid: Vec<u8>,
    /// The issuer master key for application cryptograms ([`TEST_IMK_HEX`]).
    pub issuer_master_key: SecretBytes,
}

impl TestCard {
    /// The card's PAN.
    pub fn pan(&self) -> &Pan {
        self.track2.pan()
    }

    /// The card's chip at ATC `atc` (each GENERATE AC advances it; start new cards at 1).
    pub fn emv_card(&self, atc: u16) -> EmvCard {
        let mut card = EmvCard::new(
            self.pan().clone(),
            self.pan_sequence_number,
            self.expiry,
            self.issuer_master_key.clone(),
            atc,
        );
        card.aid = self.aid.clone();
        card
    }
}

/// Visa credit.
const AID_VISA: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10];
/// Mastercard credit/debit.
const AID_MASTERCARD: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10];
/// UnionPay debit.
const AID_UNIONPAY: [u8; 8] = [0xA0, 0x00, 0x00, 0x03, 0x33, 0x01, 0x01, 0x01];

/// The named test cards, in this order:
///
/// | name | PAN | expiry | PIN | PSN |
/// |---|---|---|---|---|
/// | `visa` | 4761 7390 0101 0010 (Visa's ADVT test card number, 16 digits) | 12/30 | 1234 | 01 |
/// | `mastercard-2-series` | 2223 0000 4840 0011 (a Mastercard 2-series test number) | 12/30 | 4321 | 00 |
/// | `unionpay-19` | 6250 9410 0652 8599 008 (19 digits) | 12/30 | 123456 | 00 |
/// | `expired` | 4761 7390 0101 0127 | 12/20 (expired) | 1234 | 01 |
/// | `blocked-bin` | 4000 0000 0000 0010 (BIN in [`BLOCKED_BIN_RANGE`]) | 12/30 | 1234 | 00 |
///
/// All with service code 201 (international, IC card), issuer master key [`TEST_IMK_HEX`].
pub fn test_cards() -> Vec<TestCard> {
    [
        (
            "visa",
            "visa",
            "4761739001010010",
            "3012",
            "1234",
            1,
            &AID_VISA[..],
        ),
        (
            "mastercard-2-series",
            "mastercard",
            "2223000048400011",
            "3012",
            "4321",
            0,
            &AID_MASTERCARD[..],
        ),
        (
            "unionpay-19",
            "unionpay",
            "6250941006528599008",
            "3012",
            "123456",
            0,
            &AID_UNIONPAY[..],
        ),
        (
            "expired",
            "visa",
            "4761739001010127",
            "2012",
            "1234",
            1,
            &AID_VISA[..],
        ),
        (
            "blocked-bin",
            "visa",
            "4000000000000010",
            "3012",
            "1234",
            0,
            &AID_VISA[..],
        ),
    ]
    .into_iter()
    .filter_map(|(name, brand, pan, expiry, pin, psn, aid)| {
        // Discretionary data: PVKI 1, a fixed PVV-like 0000, then zeros (fits 37 characters
        // for a 19-digit PAN too).
        let track2 = Track2::parse(&format!("{pan}D{expiry}201100000000")).ok()?;
        Some(TestCard {
            name,
            brand,
            track2,
            pin: Pin::new(pin).ok()?,
            expiry,
            pan_sequence_number: psn,
            aid: aid.to_vec(),
            issuer_master_key: SecretBytes::from_hex("test issuer master key", TEST_IMK_HEX)
                .ok()?,
        })
    })
    .collect()
}

/// The test card named `name` (see [`test_cards`]).
pub fn test_card(name: &str) -> Option<TestCard> {
    test_cards().into_iter().find(|card| card.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_are_named_valid_and_masked() {
        let cards = test_cards();
        let names: Vec<&str> = cards.iter().map(|card| card.name).collect();
        assert_eq!(
            names,
            [
                "visa",
                "mastercard-2-series",
                "unionpay-19",
                "expired",
                "blocked-bin"
            ]
        );
        for card in &cards {
            assert!(card.pan().luhn_valid(), "{}", card.name);
            assert!(card.track2.expose_ascii().len() <= 37, "{}", card.name);
            let text = String::from_utf8(card.track2.expose_ascii().to_vec()).expect("ascii");
            assert!(
                text.contains(&format!("D{}201", card.expiry)),
                "{}",
                card.name
            );
            let printed = format!("{card:?}");
            assert!(!printed.contains(card.pan().expose()), "{printed}");
            assert!(!printed.contains(TEST_IMK_HEX), "{printed}");
            assert!(!printed.contains(card.pin.expose().as_str()), "{printed}");
        }
        assert_eq!(test_card("unionpay-19").expect("19").pan().len(), 19);
        assert!(
            test_card("mastercard-2-series")
                .expect("mc")
                .pan()
                .expose()
                .starts_with('2')
        );
        assert!(test_card("expired").expect("expired").expiry < "2601");
        let blocked = test_card("blocked-bin").expect("blocked");
        let bin = &blocked.pan().expose()[..6];
        assert!(BLOCKED_BIN_RANGE.0 <= bin && bin <= BLOCKED_BIN_RANGE.1);
        assert!(test_card("nope").is_none());
        assert_eq!(
            test_card("visa").expect("visa").emv_card(1).psn_digits(),
            "01"
        );
    }

    #[test]
    fn parses_and_masks() {
        let track = Track2::parse("4012345678909D987").expect("track 2");
        assert_eq!(track.pan().masked(), "401234***8909");
        let printed = format!("{track:?}");
        assert!(!printed.contains("4012345678909"), "{printed}");
        assert_eq!(track.expose_ascii().as_slice(), b"4012345678909D987");
        assert_eq!(
            Track2::parse("4012345678909=2512101")
                .expect("=")
                .expose_ascii()
                .as_slice(),
            b"4012345678909=2512101"
        );
    }

    #[test]
    fn refuses_malformed_data_without_echoing_it() {
        for bad in ["4012345678909", "40123D98A", "12D1", &"4".repeat(38)] {
            let error = Track2::parse(bad).expect_err(bad).to_string();
            assert!(!error.contains("4012345678909"), "{error}");
        }
    }
}
