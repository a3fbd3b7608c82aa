//! The card data of an `Authorize` request, opened from its sealed field into types that
//! wipe themselves on drop and never print: the PAN's `Debug` shows its first six and last
//! four digits, everything else `***`.

use std::fmt;

use acquirer_link::Track2Data;
use mpos_errors::ServiceError;
use mpos_proto::routing as pb;
use mpos_seal::{Sealed, Sealer};
use paycrypto::pin::Pan;
use prost::Message as _;
use zeroize::Zeroizing;

/// The field name of the sealed card data in its context.
pub const CARD_FIELD: &str = "routing.AuthorizeRequest.card";

/// The context `AuthorizeRequest.sealed_card` is sealed with.
pub fn card_context(payment_id: &str) -> Vec<u8> {
    mpos_seal::context(CARD_FIELD, payment_id)
}

/// One card's data, opened.
pub struct CardData {
    /// The PAN.
    pub pan: Pan,
    /// YYMM, if given.
    pub expiry: Option<Zeroizing<String>>,
    /// Track 2 equivalent data, if given.
    pub track2: Option<Track2Data>,
    /// The card sequence number as field 23 takes it (`0NN`), if given.
    pub pan_sequence: Option<String>,
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardData")
            .field("pan", &self.pan)
            .field("expiry", &self.expiry.as_ref().map(|_| "***"))
            .field("track2", &self.track2)
            .field("pan_sequence", &self.pan_sequence)
            .finish()
    }
}

fn bad(message: &str) -> ServiceError {
    ServiceError::bad_request(format!("sealed_card: {message}"))
}

impl CardData {
    /// Opens `sealed` (sealed to `sealer` for the payment) and checks what it holds. The
    /// errors name the field, never its value.
    pub fn open(
        sealer: &Sealer,
        sealed: Option<&mpos_proto::common::Sealed>,
        payment_id: &str,
    ) -> Result<Self, ServiceError> {
        let sealed = sealed.ok_or_else(|| bad("missing"))?;
        let sealed = Sealed::try_from(sealed).map_err(ServiceError::from)?;
        let plaintext = sealer
            .open(&sealed, &card_context(payment_id))
            .map_err(ServiceError::from)?;
        let mut secrets = pb::CardSecrets::decode(plaintext.as_slice())
            .map_err(|_| bad("does not hold CardSecrets"))?;
        let result = Self::from_secrets(&secrets);
        // The decoded strings are wiped here; the opened data lives on only in `CardData`.
        zeroize::Zeroize::zeroize(&mut secrets.pan);
        zeroize::Zeroize::zeroize(&mut secrets.expiry);
        zeroize::Zeroize::zeroize(&mut secrets.track2);
        result
    }

    /// Reads the card data (the caller wipes `secrets`).
    pub fn from_secrets(secrets: &pb::CardSecrets) -> Result<Self, ServiceError> {
        let track2 = if secrets.track2.is_empty() {
            None
        } else {
            Some(Track2Data::new(&secrets.track2).map_err(|_| bad("track2 is malformed"))?)
        };
        let pan = if secrets.pan.is_empty() {
            track2
                .as_ref()
                .ok_or_else(|| bad("neither pan nor track2"))?
                .pan()
                .map_err(|_| bad("the pan of track2 is malformed"))?
        } else {
            Pan::new(&secrets.pan).map_err(|_| bad("pan: 12 to 19 digits"))?
        };
        let expiry = if secrets.expiry.is_empty() {
            None
        } else if secrets.expiry.len() == 4 && secrets.expiry.bytes().all(|b| b.is_ascii_digit()) {
            Some(Zeroizing::new(secrets.expiry.clone()))
        } else {
            return Err(bad("expiry: YYMM"));
        };
        let pan_sequence = match secrets.pan_sequence_number.len() {
            0 => None,
            2 if secrets
                .pan_sequence_number
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
            {
                Some(format!("0{}", secrets.pan_sequence_number))
            }
            _ => return Err(bad("pan_sequence_number: two digits")),
        };
        Ok(Self {
            pan,
            expiry,
            track2,
            pan_sequence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_card_data_never_prints() {
        let sealer = Sealer::new().expect("sealer");
        let secrets = pb::CardSecrets {
            pan: "4761739001010010".into(),
            expiry: "2812".into(),
            track2: "4761739001010010=28122011234567".into(),
            pan_sequence_number: "01".into(),
        };
        let sealed = sealer
            .seal(
                &sealer.public_key(),
                &card_context("p-1"),
                &secrets.encode_to_vec(),
            )
            .expect("seal");
        let wire = mpos_proto::common::Sealed::from(sealed);
        let card = CardData::open(&sealer, Some(&wire), "p-1").expect("open");
        let shown = format!("{card:?}");
        assert!(!shown.contains("4761739001010010"), "{shown}");
        assert!(!shown.contains("2812"), "{shown}");
        assert_eq!(card.pan_sequence.as_deref(), Some("001"));
        // Another payment's context does not open it.
        assert!(CardData::open(&sealer, Some(&wire), "p-2").is_err());
        assert!(CardData::open(&sealer, None, "p-1").is_err());
    }
}
