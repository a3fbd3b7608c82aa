//! The EMV card against the platform's issuer: the [`EmvCard`] against acquirer-sim's issuer
//! (`ClearIssuer` with the same issuer master key, the field-55 reading
//! `ArqcInput::from_icc` and the tag 91 answer `issuer_authentication_data`, exactly what the
//! simulator runs for a `verify_arqc` rule): approved with an ARPC the card verifies, for
//! every test card; a wrong IMK declines.
//!
//! Payments over the device API (`Terminal::pay`, `resend`, `reverse`, `payment_status`,
//! `SoftPosTerminal` with its token) are tested against the real authorization service in
//! `e2e/tests/payments.rs`.

#![allow(clippy::unwrap_used)]

use acquirer_sim::issuer::{ArqcInput, ClearIssuer, IssuerCrypto as _, issuer_authentication_data};
use paycrypto::SecretBytes;
use paycrypto::pin::Pan;
use terminal_sim::card::TEST_IMK_HEX;
use terminal_sim::{CardDecision, EmvTransaction, test_card, test_cards};

fn key(text: &str) -> SecretBytes {
    SecretBytes::from_hex("test key", text).unwrap()
}

fn issuer(imk: &str) -> ClearIssuer {
    ClearIssuer {
        imk_ac: Some(key(imk)),
        ..ClearIssuer::default()
    }
}

/// What acquirer-sim answers for a `verify_arqc` rule: tag 91 when the ARQC verifies.
async fn issuer_answer(
    issuer: &ClearIssuer,
    pan: &Pan,
    psn: &str,
    icc: &[u8],
    arc: [u8; 2],
) -> Option<Vec<u8>> {
    // Field 23 is 3 digits; acquirer-sim takes the last two.
    let input = ArqcInput::from_icc(pan.clone(), Some(&format!("0{psn}")), icc, arc).unwrap();
    issuer
        .verify_arqc(&input)
        .await
        .unwrap()
        .map(|arpc| issuer_authentication_data(&arpc, arc))
}

#[tokio::test]
async fn every_test_card_is_approved_by_the_acquirer_sim_issuer_and_verifies_its_arpc() {
    let issuer = issuer(TEST_IMK_HEX);
    for card in test_cards() {
        let mut chip = card.emv_card(1);
        let emv = chip
            .generate_ac(
                &EmvTransaction::purchase(4_000, 978, 250, "260115"),
                CardDecision::Arqc,
            )
            .unwrap();
        let psn = chip.psn_digits();
        let tag91 = issuer_answer(&issuer, card.pan(), &psn, &emv.tlv, *b"00")
            .await
            .unwrap_or_else(|| panic!("{}: the issuer declined the ARQC", card.name));
        assert!(chip.verify_arpc(&tag91), "{}", card.name);
        assert_eq!(chip.issuer_response_code(&tag91), Some(*b"00"));
        // A decline is authenticated too (ARC 51), and a flipped ARPC bit is refused.
        let declined = issuer_answer(&issuer, card.pan(), &psn, &emv.tlv, *b"51")
            .await
            .unwrap();
        assert_eq!(chip.issuer_response_code(&declined), Some(*b"51"));
        let mut forged = tag91.clone();
        forged[2] ^= 0x01;
        assert!(!chip.verify_arpc(&forged), "{}", card.name);
        assert!(!chip.verify_arpc(&[]), "{}", card.name);
    }
}

#[tokio::test]
async fn a_wrong_issuer_master_key_declines_and_a_changed_amount_too() {
    let card = test_card("visa").unwrap();
    let mut chip = card.emv_card(41);
    let emv = chip
        .generate_ac(
            &EmvTransaction::purchase_today(1_999, 978, 250),
            CardDecision::Arqc,
        )
        .unwrap();
    let psn = chip.psn_digits();
    let wrong = issuer("00112233445566778899AABBCCDDEEFF");
    assert_eq!(
        issuer_answer(&wrong, card.pan(), &psn, &emv.tlv, *b"00").await,
        None
    );
    // Another PSN is another ICC master key.
    assert_eq!(
        issuer_answer(&issuer(TEST_IMK_HEX), card.pan(), "02", &emv.tlv, *b"00").await,
        None
    );
    // Tampering with a CDOL1 value (the amount) breaks the cryptogram.
    let mut items = emv_tlv::parse(&emv.tlv).unwrap();
    for item in &mut items {
        if item.tag == emv_tlv::Tag(0x9F02) {
            *item = emv_tlv::Tlv::primitive(item.tag, hex::decode("000000000001").unwrap());
        }
    }
    let tampered = emv_tlv::encode(&items);
    assert_eq!(
        issuer_answer(&issuer(TEST_IMK_HEX), card.pan(), &psn, &tampered, *b"00").await,
        None
    );
    assert_eq!(chip.atc, 42);
}
