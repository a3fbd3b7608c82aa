//! The message profile: every request kind round-trips request → message → request; field
//! 22; reversals and network messages; answers; the MAC's placement and a published vector.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use acquirer_link::mac::{self, MacProvider, SoftMac};
use acquirer_link::profile::{
    self, AuthorizationRequest, AuthorizationResponse, EntryMode, HostRequest, NetworkCode,
    OriginalData, OriginalTransaction, PinBlock, RequestKind, ResponseCode, Reversal,
    ReversalReason, Track2Data,
};
use chrono::{DateTime, NaiveDate, SubsecRound, TimeZone, Utc};
use iso8583::Spec;
use paycrypto::SecretBytes;
use paycrypto::mac::{Padding, retail_mac_x919};
use paycrypto::pin::Pan;

fn spec() -> Spec {
    Spec::builtin("ascii-1987").unwrap()
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

fn request(kind: RequestKind) -> AuthorizationRequest {
    let transmitted_at = now();
    AuthorizationRequest {
        kind,
        pan: Pan::new("4761739001010010").unwrap(),
        expiry: Some("2812".into()),
        track2: Some(Track2Data::new("4761739001010010D28122011234567").unwrap()),
        pan_sequence: Some("001".into()),
        amount_minor: 12_345,
        currency_numeric: "978".into(),
        stan: 4_711,
        rrn: "612300004711".into(),
        transmitted_at,
        local_at: transmitted_at.naive_utc(),
        mcc: "5999".into(),
        entry_mode: EntryMode::Chip,
        pin_capable: true,
        pin_block: Some(PinBlock::new([
            0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0,
        ])),
        icc_data: Some(
            hex::decode("9F2608AABBCCDDEEFF00119F360200019F2701809F10070601120390000000").unwrap(),
        ),
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        acquirer_institution_id: "12345678".into(),
        original: (kind == RequestKind::Completion).then(|| OriginalData {
            mti: "0100".into(),
            stan: 4_700,
            transmitted_at: transmitted_at - chrono::Duration::hours(2),
            acquirer_id: "12345678".into(),
        }),
        auth_code: (kind == RequestKind::Completion).then(|| "A1B2C3".into()),
    }
}

/// Encodes and decodes too, so the codec sees the message.
fn through_the_wire(message: &iso8583::Message) -> iso8583::Message {
    let spec = spec();
    let bytes = iso8583::encode(&spec, message).unwrap();
    iso8583::decode(&spec, &bytes).unwrap()
}

#[test]
fn every_kind_round_trips() {
    for (kind, mti, processing_code) in [
        (RequestKind::Purchase, "0200", "000000"),
        (RequestKind::Refund, "0200", "200000"),
        (RequestKind::PreAuthorization, "0100", "000000"),
        (RequestKind::Completion, "0220", "000000"),
    ] {
        let original = request(kind);
        let message = through_the_wire(&profile::to_message(&original).unwrap());
        assert_eq!(message.mti().to_string(), mti);
        assert_eq!(message.get_text(3), Some(processing_code));
        assert_eq!(message.get_text(4), Some("000000012345"));
        assert_eq!(message.get_text(22), Some("051"));
        assert_eq!(message.get_bytes(52).map(<[u8]>::len), Some(8));
        assert_eq!(
            message.get_text(38).is_some(),
            kind == RequestKind::Completion
        );
        assert_eq!(
            message.get_text(90).is_some(),
            kind == RequestKind::Completion
        );
        assert!(message.get_bytes(64).is_none(), "the link adds the MAC");
        let HostRequest::Authorization(back) = profile::request_from_message(&message).unwrap()
        else {
            panic!("{kind:?} did not come back as an authorisation");
        };
        assert_eq!(*back, original, "{kind:?}");
    }
}

#[test]
fn completion_needs_its_original() {
    let mut completion = request(RequestKind::Completion);
    completion.original = None;
    assert!(profile::to_message(&completion).is_err());
    let mut completion = request(RequestKind::Completion);
    completion.auth_code = None;
    assert!(profile::to_message(&completion).is_err());
}

#[test]
fn field_22() {
    for (mode, pin, value) in [
        (EntryMode::Chip, true, "051"),
        (EntryMode::Chip, false, "052"),
        (EntryMode::Contactless, true, "071"),
        (EntryMode::Contactless, false, "072"),
        (EntryMode::SwipeFallback, true, "801"),
        (EntryMode::SwipeFallback, false, "802"),
    ] {
        assert_eq!(mode.field22(pin), value);
        assert_eq!(EntryMode::parse_field22(value), Some((mode, pin)));
        let mut request = request(RequestKind::Purchase);
        request.entry_mode = mode;
        request.pin_capable = pin;
        let message = profile::to_message(&request).unwrap();
        assert_eq!(message.get_text(22), Some(value));
    }
    assert_eq!(EntryMode::parse_field22("021"), None);
    assert_eq!(EntryMode::parse_field22("05"), None);
}

#[test]
fn reversal_carries_field_90_and_no_sensitive_data() {
    let original = request(RequestKind::Purchase);
    for (repeat, mti) in [(false, "0400"), (true, "0401")] {
        let reversal = Reversal {
            reason: ReversalReason::Timeout,
            stan: 4_712,
            transmitted_at: original.transmitted_at + chrono::Duration::seconds(6),
            repeat,
        };
        let message = through_the_wire(&profile::reversal_message(&original, &reversal).unwrap());
        assert_eq!(message.mti().to_string(), mti);
        assert_eq!(message.get_text(11), Some("004712"));
        assert_eq!(message.get_text(37), Some("612300004711"));
        assert_eq!(message.get_text(39), Some("68"));
        let field90 = message.get_text(90).unwrap();
        assert_eq!(field90.len(), 42);
        assert!(field90.starts_with("0200004711"));
        assert!(field90.ends_with("0001234567800000000000"));
        for sensitive in [2_u8, 14, 23, 35, 52, 55] {
            assert!(
                message.get_text(sensitive).is_none() && message.get_bytes(sensitive).is_none()
            );
        }
        let HostRequest::Reversal {
            original: back,
            reversal: back_reversal,
        } = profile::request_from_message(&message).unwrap()
        else {
            panic!("not a reversal");
        };
        assert_eq!(back_reversal, reversal);
        assert_eq!(back.kind, RequestKind::Purchase);
        assert_eq!(back.stan, original.stan);
        assert_eq!(back.transmitted_at, original.transmitted_at);
        assert_eq!(back.rrn, original.rrn);
        assert_eq!(back.amount_minor, original.amount_minor);
        assert_eq!(*back, OriginalTransaction::from(&original));
    }
}

/// A reversal built from what the routing service's log keeps (no card data, no MCC or
/// entry mode): the acquirer still finds the original by field 90, RRN, terminal and
/// merchant, and the message carries no card data at all.
#[test]
fn a_reversal_needs_no_card_data() {
    let transmitted_at = now() - chrono::Duration::minutes(3);
    let original = OriginalTransaction {
        kind: RequestKind::PreAuthorization,
        amount_minor: 9_900,
        currency_numeric: "826".into(),
        stan: 123_456,
        rrn: "512312123456".into(),
        transmitted_at,
        local_at: transmitted_at.naive_utc(),
        mcc: None,
        entry_mode: None,
        terminal_id: "TERM0002".into(),
        merchant_id: "MERCHANT0000002".into(),
        acquirer_institution_id: "4711".into(),
        auth_code: Some("AB12CD".into()),
    };
    let reversal = Reversal {
        reason: ReversalReason::SuspectedMalfunction,
        stan: 123_457,
        transmitted_at: now(),
        repeat: true,
    };
    let message = through_the_wire(&profile::reversal_message_for(&original, &reversal).unwrap());
    assert_eq!(message.mti().to_string(), "0401");
    for absent in [2_u8, 14, 18, 22, 23, 35, 52, 55] {
        assert!(
            message.get_text(absent).is_none() && message.get_bytes(absent).is_none(),
            "field {absent}"
        );
    }
    assert_eq!(message.get_text(38), Some("AB12CD"));
    assert_eq!(message.get_text(39), Some("22"));
    assert_eq!(
        message.get_text(90),
        Some(
            format!(
                "0100123456{}0000000471100000000000",
                transmitted_at.format("%m%d%H%M%S")
            )
            .as_str()
        )
    );
    let HostRequest::Reversal {
        original: back,
        reversal: back_reversal,
    } = profile::request_from_message(&message).unwrap()
    else {
        panic!("not a reversal");
    };
    assert_eq!(*back, original);
    assert_eq!(back_reversal, reversal);
    // A malformed original is refused before anything is built.
    let mut bad = original.clone();
    bad.rrn = "short".into();
    assert!(profile::reversal_message_for(&bad, &reversal).is_err());
    let mut bad = original;
    bad.mcc = Some("59".into());
    assert!(profile::reversal_message_for(&bad, &reversal).is_err());
}

/// The repeat of a completion advice, built from what the routing service records: the
/// 0220's fields and identifiers (STAN, RRN, field 7, 38, 90), MTI 0221, and none of the card
/// data the 0220 carried.
#[test]
fn an_advice_repeat_is_the_advice_again_without_card_data() {
    let completion = request(RequestKind::Completion);
    let advice_message = through_the_wire(&profile::to_message(&completion).unwrap());
    let preauthorization = completion.original.clone().unwrap();
    let recorded = OriginalTransaction::from(&completion);
    let repeat =
        through_the_wire(&profile::advice_repeat_message(&recorded, &preauthorization).unwrap());
    assert_eq!(repeat.mti().to_string(), "0221");
    assert_eq!(
        profile::response_mti("0221").as_deref(),
        Some("0230"),
        "a repeat advice is answered by 0230"
    );
    for same in [
        3_u8, 4, 7, 11, 12, 13, 18, 22, 25, 32, 37, 38, 41, 42, 49, 90,
    ] {
        assert!(repeat.get_text(same).is_some(), "field {same}");
        assert_eq!(
            repeat.get_text(same),
            advice_message.get_text(same),
            "field {same} as in the 0220"
        );
    }
    let card_data = [2_u8, 14, 23, 35, 52, 55];
    for absent in card_data {
        assert!(
            advice_message.contains(absent),
            "the 0220 carried field {absent}"
        );
        assert!(!repeat.contains(absent), "field {absent} in a repeat");
    }
    let present: Vec<u8> = repeat.fields().map(|(number, _)| number).collect();
    let expected: Vec<u8> = advice_message
        .fields()
        .map(|(number, _)| number)
        .filter(|number| !card_data.contains(number))
        .collect();
    assert_eq!(present, expected, "the 0220's fields less the card data");
    let HostRequest::AdviceRepeat {
        advice: back,
        original,
    } = profile::request_from_message(&repeat).unwrap()
    else {
        panic!("not a repeat advice");
    };
    assert_eq!(*back, recorded);
    assert_eq!(original, preauthorization);

    // Recorded before MCC and entry mode were kept: fields 18 and 22 are left out.
    let mut older = recorded.clone();
    older.mcc = None;
    older.entry_mode = None;
    let message = profile::advice_repeat_message(&older, &preauthorization).unwrap();
    assert!(!message.contains(18) && !message.contains(22));
    // Only a completion is an advice; it needs its approval code and a readable original.
    let mut purchase = recorded.clone();
    purchase.kind = RequestKind::Purchase;
    assert!(profile::advice_repeat_message(&purchase, &preauthorization).is_err());
    let mut no_code = recorded.clone();
    no_code.auth_code = None;
    assert!(profile::advice_repeat_message(&no_code, &preauthorization).is_err());
    let mut bad_original = preauthorization;
    bad_original.mti = "01".into();
    assert!(profile::advice_repeat_message(&recorded, &bad_original).is_err());
}

#[test]
fn network_messages() {
    let at = now();
    for code in [NetworkCode::Echo, NetworkCode::SignOn, NetworkCode::SignOff] {
        let message = through_the_wire(&profile::network_message(code, 42, at).unwrap());
        assert_eq!(message.mti().to_string(), "0800");
        assert_eq!(message.get_text(70), Some(code.code()));
        assert_eq!(
            profile::request_from_message(&message).unwrap(),
            HostRequest::Network {
                code,
                stan: 42,
                transmitted_at: at
            }
        );
    }
    assert_eq!(
        profile::echo_message(1, at).unwrap().get_text(70),
        Some("301")
    );
}

#[test]
fn answers_round_trip() {
    let request = request(RequestKind::Purchase);
    let mut response = AuthorizationResponse::answering(&request, "00");
    response.auth_code = Some("123456".into());
    response.icc_data = Some(hex::decode("910A1122334455667788 3030".replace(' ', "")).unwrap());
    let message = through_the_wire(&profile::response_to_message(&response).unwrap());
    assert_eq!(message.mti().to_string(), "0210");
    let back = profile::response_from_message(&message).unwrap();
    assert_eq!(back, response);
    assert!(back.approved());
    for (code, approved) in [
        ("00", true),
        ("08", true),
        ("10", true),
        ("11", true),
        ("05", false),
        ("51", false),
        ("Z3", false),
    ] {
        let mut declined = response.clone();
        declined.response_code = code.into();
        assert_eq!(declined.approved(), approved, "{code}");
    }
    assert_eq!(ResponseCode::parse("55"), Some(ResponseCode::IncorrectPin));
    assert_eq!(ResponseCode::IncorrectPin.meaning(), "incorrect pin");
    assert_eq!(ResponseCode::SystemMalfunction.as_str(), "96");
    assert_eq!(ResponseCode::parse("Z3"), None);
    // Requests are not answers.
    assert!(profile::response_from_message(&profile::to_message(&request).unwrap()).is_err());
}

#[test]
fn response_mtis() {
    for (request, response) in [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0220", "0230"),
        ("0400", "0410"),
        ("0401", "0410"),
        ("0800", "0810"),
    ] {
        assert_eq!(profile::response_mti(request).as_deref(), Some(response));
    }
    assert_eq!(profile::response_mti("0210"), None);
    assert_eq!(profile::response_mti("02x0"), None);
}

#[test]
fn years_are_inferred_near_the_present() {
    let new_year = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 30).unwrap();
    let field90 = OriginalData {
        mti: "0100".into(),
        stan: 1,
        transmitted_at: Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap(),
        acquirer_id: "1".into(),
    }
    .field90()
    .unwrap();
    let back = OriginalData::parse_field90(&field90, new_year).unwrap();
    assert_eq!(
        back.transmitted_at.date_naive(),
        NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
    );
    assert_eq!(back.acquirer_id, "1");
}

#[test]
fn card_data_is_masked_in_debug() {
    let request = request(RequestKind::Purchase);
    let printed = format!("{request:?}");
    assert!(printed.contains("476173******0010"), "{printed}");
    for secret in ["4761739001010010", "D2812", "123456789ABCDEF0", "9F2608"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert_eq!(format!("{:?}", request.pin_block.unwrap()), "PinBlock(***)");
}

fn bc_key() -> SecretBytes {
    SecretBytes::from_hex("mac", "7CA110454A1A6E570131D9619DC1376E").unwrap()
}

/// Bouncy Castle ISO9797Alg3MacTest (also in paycrypto's tests): key
/// 7CA110454A1A6E570131D9619DC1376E, "Hello World !!!!" → F09B856213BAB83B.
#[tokio::test]
async fn soft_mac_known_answer() {
    let provider = SoftMac::new(bc_key()).unwrap();
    let expected: [u8; 8] = hex::decode("F09B856213BAB83B").unwrap().try_into().unwrap();
    assert_eq!(
        provider.generate(b"Hello World !!!!").await.unwrap(),
        expected
    );
    assert!(
        provider
            .verify(b"Hello World !!!!", &expected)
            .await
            .unwrap()
    );
    assert!(
        !provider
            .verify(b"Hello World !!!?", &expected)
            .await
            .unwrap()
    );
    assert!(SoftMac::new(SecretBytes::new(vec![1; 8])).is_err());
}

/// The MAC's bytes as they end the message: raw under bcd-1987, 16 uppercase hex characters
/// under ascii-1987.
fn tail_of(spec: &str, mac: &[u8]) -> Vec<u8> {
    if spec == "ascii-1987" {
        hex::encode_upper(mac).into_bytes()
    } else {
        mac.to_vec()
    }
}

#[tokio::test]
async fn the_mac_is_the_last_field_over_everything_before_it() {
    let provider: Arc<dyn MacProvider> = Arc::new(SoftMac::new(bc_key()).unwrap());
    for (name, width) in [("ascii-1987", 16), ("bcd-1987", 8)] {
        let spec = Spec::builtin(name).unwrap();
        // Primary bitmap only: field 64.
        let message = profile::to_message(&request(RequestKind::Purchase)).unwrap();
        let sealed = mac::seal(&spec, message, Some(&provider)).await.unwrap();
        let (data, tail) = sealed.split_at(sealed.len() - width);
        let expected = retail_mac_x919(&bc_key(), data, Padding::Method1, 8).unwrap();
        assert_eq!(tail, tail_of(name, &expected).as_slice(), "{name}");
        let decoded = iso8583::decode(&spec, &sealed).unwrap();
        assert_eq!(decoded.get_bytes(64), Some(expected.as_slice()));
        assert!(decoded.get_bytes(128).is_none());
        mac::verify(&sealed, &decoded, &provider).await.unwrap();
        // One changed byte before the MAC (a digit of the amount): refused.
        let mut tampered = sealed.clone();
        let at = tampered
            .windows(12)
            .position(|w| w == b"000000012345")
            .map_or_else(
                || {
                    tampered
                        .windows(6)
                        .position(|w| w == [0, 0, 0, 1, 0x23, 0x45])
                        .unwrap()
                        + 5
                },
                |at| at + 11,
            );
        tampered[at] ^= 0x01;
        let decoded = iso8583::decode(&spec, &tampered).unwrap();
        assert!(
            matches!(
                mac::verify(&tampered, &decoded, &provider).await,
                Err(acquirer_link::LinkError::BadMac)
            ),
            "{name}"
        );
        // Secondary bitmap (field 70): field 128.
        let echo = profile::echo_message(9, now()).unwrap();
        let sealed = mac::seal(&spec, echo, Some(&provider)).await.unwrap();
        let decoded = iso8583::decode(&spec, &sealed).unwrap();
        assert!(decoded.get_bytes(64).is_none());
        let (data, tail) = sealed.split_at(sealed.len() - width);
        let expected = retail_mac_x919(&bc_key(), data, Padding::Method1, 8).unwrap();
        assert_eq!(decoded.get_bytes(128), Some(expected.as_slice()));
        assert_eq!(tail, tail_of(name, &expected).as_slice());
        mac::verify(&sealed, &decoded, &provider).await.unwrap();
        // No MAC at all: refused.
        let bare = iso8583::encode(&spec, &profile::echo_message(9, now()).unwrap()).unwrap();
        let decoded = iso8583::decode(&spec, &bare).unwrap();
        assert!(matches!(
            mac::verify(&bare, &decoded, &provider).await,
            Err(acquirer_link::LinkError::BadMac)
        ));
    }
}
