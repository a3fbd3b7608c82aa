//! Card brands and their recognition from the leading digits of the card number.
//!
//! # Source of the ranges
//!
//! The issuer identification number (IIN) ranges of the card schemes as tabulated in
//! Wikipedia, "Payment card number", section "Issuer identification number (IIN)"
//! (<https://en.wikipedia.org/wiki/Payment_card_number#Issuer_identification_number_(IIN)>),
//! read through a copy of the table at
//! <https://ldapwiki.com/wiki/Diff.jsp?page=Issuer+Identification+Number&r1=-1>. The table
//! itself cites the schemes' rule books (for the Mastercard 2-series, 2221–2720, the
//! Mastercard Rules).
//!
//! | brand       | prefixes                                 |
//! |-------------|------------------------------------------|
//! | Visa        | 4                                        |
//! | Mastercard  | 51–55, 2221–2720                         |
//! | Amex        | 34, 37                                   |
//! | Discover    | 6011, 644–649, 65                        |
//! | JCB         | 3528–3589                                |
//! | UnionPay    | 62                                       |
//! | Diners Club | 36, 38–39, 300–305, 3095                 |
//! | Maestro     | 50, 56–58, 6 (where no row above claims it) |
//!
//! Choices where revisions of the table differ or rows overlap:
//!
//! - **Overlaps resolve to the most specific (longest) prefix**: `6011…` is Discover and
//!   `62…` UnionPay although Maestro lists all of `6`. No two prefixes of the same length
//!   overlap (a unit test checks it), so the result never depends on table order.
//! - **Maestro**: revisions list `50, 56–69` or `50, 56–58, 6`; later ones narrow it to a
//!   few 4-digit prefixes (5018, 5020, 5038, 5893, 6304, 6759, 6761–6763). We follow
//!   `50, 56–58, 6`, which contains all of those, so a `59…` BIN is [`CardBrand::Unknown`].
//! - **Discover 622126–622925**: the table lists this slice of `62` under Discover as
//!   *UnionPay co-branded* cards, accepted on Discover's network by reciprocal agreement.
//!   Their issuing network is UnionPay, and that is how an acquirer outside the US routes
//!   them, so we keep them [`CardBrand::UnionPay`].
//! - **Diners Club**: revisions list `309` or `3095`; we take the narrower `3095`. The
//!   Diners Club United States & Canada cards in `54`/`55` are processed as Mastercard
//!   (the table's own note), so they stay [`CardBrand::Mastercard`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A card scheme, as far as routing cares. Serialised as its [`CardBrand::as_str`] name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CardBrand {
    /// Visa (`visa`).
    #[serde(rename = "visa")]
    Visa,
    /// Mastercard (`mastercard`).
    #[serde(rename = "mastercard")]
    Mastercard,
    /// American Express (`amex`).
    #[serde(rename = "amex")]
    Amex,
    /// Discover (`discover`).
    #[serde(rename = "discover")]
    Discover,
    /// JCB (`jcb`).
    #[serde(rename = "jcb")]
    Jcb,
    /// UnionPay (`unionpay`).
    #[serde(rename = "unionpay")]
    UnionPay,
    /// Diners Club (`diners_club`).
    #[serde(rename = "diners_club")]
    DinersClub,
    /// Maestro (`maestro`).
    #[serde(rename = "maestro")]
    Maestro,
    /// No range matched, or the BIN was malformed (`unknown`). A rule may name it to route
    /// such cards explicitly.
    #[serde(rename = "unknown")]
    Unknown,
}

/// One row of the range table: prefixes of `digits` digits from `low` to `high` inclusive.
struct Prefixes {
    digits: usize,
    low: u32,
    high: u32,
    brand: CardBrand,
}

const fn prefixes(digits: usize, low: u32, high: u32, brand: CardBrand) -> Prefixes {
    Prefixes {
        digits,
        low,
        high,
        brand,
    }
}

/// The ranges of the module documentation. Order is irrelevant: the longest match wins.
const RANGES: &[Prefixes] = &[
    prefixes(1, 4, 4, CardBrand::Visa),
    prefixes(2, 51, 55, CardBrand::Mastercard),
    prefixes(4, 2221, 2720, CardBrand::Mastercard),
    prefixes(2, 34, 34, CardBrand::Amex),
    prefixes(2, 37, 37, CardBrand::Amex),
    prefixes(4, 6011, 6011, CardBrand::Discover),
    prefixes(3, 644, 649, CardBrand::Discover),
    prefixes(2, 65, 65, CardBrand::Discover),
    prefixes(4, 3528, 3589, CardBrand::Jcb),
    prefixes(2, 62, 62, CardBrand::UnionPay),
    prefixes(2, 36, 36, CardBrand::DinersClub),
    prefixes(2, 38, 39, CardBrand::DinersClub),
    prefixes(3, 300, 305, CardBrand::DinersClub),
    prefixes(4, 3095, 3095, CardBrand::DinersClub),
    prefixes(2, 50, 50, CardBrand::Maestro),
    prefixes(2, 56, 58, CardBrand::Maestro),
    prefixes(1, 6, 6, CardBrand::Maestro),
];

impl CardBrand {
    /// Every brand, [`CardBrand::Unknown`] last.
    pub const ALL: [CardBrand; 9] = [
        CardBrand::Visa,
        CardBrand::Mastercard,
        CardBrand::Amex,
        CardBrand::Discover,
        CardBrand::Jcb,
        CardBrand::UnionPay,
        CardBrand::DinersClub,
        CardBrand::Maestro,
        CardBrand::Unknown,
    ];

    /// The fewest digits [`CardBrand::from_bin`] accepts: a BIN is at least six digits, and
    /// six are more than the longest prefix in the table needs.
    pub const MIN_BIN_DIGITS: usize = 6;
    /// The most digits [`CardBrand::from_bin`] accepts (the longest PAN of ISO/IEC 7812).
    pub const MAX_BIN_DIGITS: usize = 19;

    /// The brand of a BIN (the leading digits of a card number). Anything other than
    /// [`CardBrand::MIN_BIN_DIGITS`] to [`CardBrand::MAX_BIN_DIGITS`] ASCII digits, and any
    /// BIN outside the table, is [`CardBrand::Unknown`]. Overlapping ranges resolve to the
    /// longest prefix (see the module documentation).
    pub fn from_bin(bin: &str) -> CardBrand {
        let bytes = bin.as_bytes();
        if !(Self::MIN_BIN_DIGITS..=Self::MAX_BIN_DIGITS).contains(&bytes.len())
            || !bytes.iter().all(u8::is_ascii_digit)
        {
            return CardBrand::Unknown;
        }
        let mut best: Option<&Prefixes> = None;
        for row in RANGES {
            let prefix = bytes[..row.digits]
                .iter()
                .fold(0u32, |acc, digit| acc * 10 + u32::from(digit - b'0'));
            let longer = best.is_none_or(|current| row.digits > current.digits);
            if (row.low..=row.high).contains(&prefix) && longer {
                best = Some(row);
            }
        }
        best.map_or(CardBrand::Unknown, |row| row.brand)
    }

    /// The lowercase name used in JSON, in rules and in explanations: `visa`, `mastercard`,
    /// `amex`, `discover`, `jcb`, `unionpay`, `diners_club`, `maestro`, `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Discover => "discover",
            CardBrand::Jcb => "jcb",
            CardBrand::UnionPay => "unionpay",
            CardBrand::DinersClub => "diners_club",
            CardBrand::Maestro => "maestro",
            CardBrand::Unknown => "unknown",
        }
    }
}

impl fmt::Display for CardBrand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the [`CardBrand::as_str`] names. The input is not echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a card brand: expected one of visa, mastercard, amex, discover, jcb, unionpay, \
     diners_club, maestro, unknown"
)]
pub struct UnknownBrandName;

impl FromStr for CardBrand {
    type Err = UnknownBrandName;

    /// Parses exactly the [`CardBrand::as_str`] names (case-sensitive, like the JSON form).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CardBrand::ALL
            .into_iter()
            .find(|brand| brand.as_str() == text)
            .ok_or(UnknownBrandName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pads a prefix to a 6-digit BIN with `fill`, so both the lowest and the highest BIN
    /// under a prefix are tried.
    fn bins(prefix: &str) -> [String; 2] {
        [format!("{prefix:0<6}"), format!("{prefix:9<6}")]
    }

    fn assert_brand(prefix: &str, expected: CardBrand) {
        for bin in bins(prefix) {
            assert_eq!(CardBrand::from_bin(&bin), expected, "bin {bin}");
        }
    }

    #[test]
    fn every_range_boundary_and_its_neighbours() {
        use CardBrand::*;
        let cases: &[(&str, CardBrand)] = &[
            // Visa 4, next to Mastercard 2-series (2…) and Diners/Amex/JCB (3…) and 5…
            ("39", DinersClub),
            ("4", Visa),
            ("40", Visa),
            ("49", Visa),
            // Mastercard 51–55
            ("50", Maestro),
            ("51", Mastercard),
            ("55", Mastercard),
            ("56", Maestro),
            // Mastercard 2221–2720
            ("2220", Unknown),
            ("2221", Mastercard),
            ("2720", Mastercard),
            ("2721", Unknown),
            // Amex 34, 37
            ("33", Unknown),
            ("34", Amex),
            ("35", Unknown),
            ("37", Amex),
            // Discover 6011, 644–649, 65 (inside Maestro's 6)
            ("6010", Maestro),
            ("6011", Discover),
            ("6012", Maestro),
            ("643", Maestro),
            ("644", Discover),
            ("649", Discover),
            ("640", Maestro),
            ("65", Discover),
            ("66", Maestro),
            // JCB 3528–3589
            ("3527", Unknown),
            ("3528", Jcb),
            ("3589", Jcb),
            ("3590", Unknown),
            // UnionPay 62, including the Discover co-branded slice 622126–622925
            ("61", Maestro),
            ("62", UnionPay),
            ("622126", UnionPay),
            ("622925", UnionPay),
            ("63", Maestro),
            // Diners Club 36, 38–39, 300–305, 3095
            ("36", DinersClub),
            ("38", DinersClub),
            ("299", Unknown),
            ("300", DinersClub),
            ("305", DinersClub),
            ("306", Unknown),
            ("3094", Unknown),
            ("3095", DinersClub),
            ("3096", Unknown),
            // Maestro 50, 56–58, 6
            ("58", Maestro),
            ("59", Unknown),
            ("6", Maestro),
            ("69", Maestro),
            // Outside every range
            ("0", Unknown),
            ("1", Unknown),
            ("7", Unknown),
            ("8", Unknown),
            ("9", Unknown),
        ];
        for &(prefix, brand) in cases {
            assert_brand(prefix, brand);
        }
    }

    #[test]
    fn from_bin_accepts_6_to_19_digits_and_nothing_else() {
        assert_eq!(CardBrand::from_bin("41111"), CardBrand::Unknown);
        assert_eq!(CardBrand::from_bin("411111"), CardBrand::Visa);
        assert_eq!(CardBrand::from_bin("41111111111"), CardBrand::Visa);
        assert_eq!(
            CardBrand::from_bin("4111111111111111111"),
            CardBrand::Visa,
            "19 digits"
        );
        assert_eq!(
            CardBrand::from_bin("41111111111111111111"),
            CardBrand::Unknown,
            "20 digits"
        );
        for malformed in ["", "4111 11", "41111a", "-41111", "４11111", "411111\n"] {
            assert_eq!(
                CardBrand::from_bin(malformed),
                CardBrand::Unknown,
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn no_two_prefixes_of_the_same_length_overlap() {
        for (i, a) in RANGES.iter().enumerate() {
            assert!(a.low <= a.high);
            for b in &RANGES[i + 1..] {
                if a.digits == b.digits {
                    assert!(
                        a.high < b.low || b.high < a.low,
                        "{}-{} overlaps {}-{}",
                        a.low,
                        a.high,
                        b.low,
                        b.high
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip_through_from_str_display_and_json() {
        for brand in CardBrand::ALL {
            assert_eq!(brand.as_str().parse::<CardBrand>(), Ok(brand));
            assert_eq!(brand.to_string(), brand.as_str());
            let json = serde_json::to_string(&brand).expect("serialise");
            assert_eq!(json, format!("\"{}\"", brand.as_str()));
            let back: CardBrand = serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back, brand);
        }
        assert_eq!("Visa".parse::<CardBrand>(), Err(UnknownBrandName));
        assert_eq!("".parse::<CardBrand>(), Err(UnknownBrandName));
        assert!(serde_json::from_str::<CardBrand>("\"VISA\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn from_bin_never_panics(text in ".{0,25}") {
            let _ = CardBrand::from_bin(&text);
        }

        #[test]
        fn digits_after_the_sixth_never_change_the_brand(
            bin in "[0-9]{6}",
            tail in "[0-9]{0,13}",
        ) {
            let longer = format!("{bin}{tail}");
            proptest::prop_assert_eq!(CardBrand::from_bin(&bin), CardBrand::from_bin(&longer));
        }
    }
}
