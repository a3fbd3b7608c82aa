//! AES DUKPT (ANSI X9.24-3-2017) tests. Every expected value is published; the source is cited
//! next to it. Nothing here is computed by this crate to serve as an expected value.
//!
//! Main source: the ANSI X9.24-3-2017 supplement test vectors published by ASC X9
//! (x9.org, "X9.24 Part 3 Test Vectors"): BDK FEDCBA9876543210F1F1F1F1F1F1F1F1 (AES-128) and
//! FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1 (AES-256), initial key ID
//! 1234567890123456, as transcribed in the openemv/dukpt project (Leon Lynch),
//! test/dukpt_aes128_test.c and test/dukpt_aes256_test.c (page references there).

use paycrypto::dukpt::aes::{
    Device, InitialKeyId, KeyType, KeyUsage, Ksn, LAST_COUNTER, UPDATE_KEY_COUNTER,
    derivation_data, derivation_key, derive_initial_key, host_derivation_key_any_counter,
    host_update_key, host_working_key, is_valid_counter, next_counter, update_key, working_key,
};
use paycrypto::primitives::aes_encrypt_ecb;
use paycrypto::{CryptoError, SecretBytes};
use proptest::prelude::*;

const BDK128: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1";
const BDK256: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1";
const INITIAL_KEY_ID: &str = "1234567890123456";
/// X9.24-3-2017 supplement: initial key from the AES-128 BDK.
const IK128: &str = "1273671EA26AC29AFA4D1084127652A1";
/// X9.24-3-2017 supplement: initial key from the AES-256 BDK.
const IK256: &str = "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F";
/// X9.24-3-2017 supplement, "Calculation of AES PIN Block Format 4" (page 31): plaintext PIN
/// field (PIN 1234, random fill 2F69ADDE2E9E7ACE) and PAN field (PAN 4111111111111111).
const PIN_FIELD: &str = "441234AAAAAAAAAA2F69ADDE2E9E7ACE";
const PAN_FIELD: &str = "44111111111111111000000000000000";

// X9.24-3-2017 supplement: first eight KSNs; per KSN the intermediate derivation
// ("transaction") key and the PIN (1000), MAC generation (2000) and data encryption (3000)
// working keys; the encrypted format 4 PIN blocks (page 31); KSNs around the 16-one-bit
// rollover (counter 1FFFF is skipped) and the last four KSNs with their derivation keys.
const KSNS: [&str; 8] = [
    "123456789012345600000001",
    "123456789012345600000002",
    "123456789012345600000003",
    "123456789012345600000004",
    "123456789012345600000005",
    "123456789012345600000006",
    "123456789012345600000007",
    "123456789012345600000008",
];
const AES128_DERIVATION_KEYS: [&str; 8] = [
    "4F21B565BAD9835E112B6465635EAE44",
    "2F34D68DE10F68D38091A73B9E7C437C",
    "031504E530365CF81264238540518318",
    "0EEFC7ADA628BA68878DA9165A8A1887",
    "C2A7AC328A5DA2D6002D62465BFC028B",
    "D30F7D9351DA58448A2F5E92B4EE3B7D",
    "A8253CEED9AC042C54F75D35C8352278",
    "718EE6CF0B27E53D5F7AF99C4D8146A2",
];
const AES128_PIN_KEYS: [&str; 8] = [
    "AF8CB133A78F8DC2D1359F18527593FB",
    "D30BDC73EC9714B000BEC66BDB7B6D09",
    "7D69F01F3B45449F62C7816ECE723268",
    "91A0588318EC2673214271F70137896E",
    "35A43BC9EFEB09C756204B57E3FB7D4D",
    "02DCC6CD1201A3A2CA7099559C862123",
    "6ECF912F3B18CA11A7A27BB60705FD09",
    "4D9DF3FBEE3448FC3E676D04320A90F5",
];
const AES128_ENCRYPTED_PIN_BLOCKS: [&str; 8] = [
    "A912150391AB65A67E52883D81CE2D15",
    "52A00503BD34BA1383F6A7EE9FE2547F",
    "A5A27E82B43A9A866A93D7ABE89CEF93",
    "71B3D0528669498777555A8BE6698E44",
    "881A7F77A2E04E5BEA985E342FD0B628",
    "BDC1C3871AFB0B340AA5B5CEFD08695E",
    "4A8E6B8C7DBEE6CBA6DC774F0CB83396",
    "8308BB857C17F390369F761F8EB358FA",
];
const AES128_MAC_KEYS: [&str; 8] = [
    "A2DC23DE6FDE0824A2BC321E08E4B8B7",
    "484C3B06E8562704528CD5B46FB12FB6",
    "A5DF7D9D800CA769766F0C77CA4E6E6C",
    "E6E4679647D8A9057C1FC15537CB4C4E",
    "0588185FE1FF8C7E22FAD78C1C61F065",
    "7B60F72A5639C0EE7EB2100FA80BB793",
    "BAA08CA263C69525BC6B1BA8F4275D69",
    "6FD572E5D59E618875F193484F9178FB",
];
const AES128_DATA_KEYS: [&str; 8] = [
    "A35C412EFD41FDB98B69797C02DCD08F",
    "D639514AA33AC43AD9229E433D6D4E5B",
    "EF17F6AB45B4820C93A3DCB21BC491AD",
    "B3BD44C08BB6BA27C3BB4711D7D70387",
    "CA02DF6F30B39E14BD0B4A30E460920F",
    "C9B8A7C4E486180B2229115164F0B293",
    "0FA8F1F0A2DD7B1005A862D77CDED698",
    "650F34204ABD4E57764D61AC3D266FB1",
];
const KSNS_ROLLOVER: [&str; 3] = [
    "12345678901234560001FFFE",
    "123456789012345600020000",
    "123456789012345600020001",
];
const AES128_ROLLOVER_KEYS: [&str; 3] = [
    "E21E8C8D347F8561A2BE752DAA85A111",
    "F7AE9025468A25D37B7249CFFED224C8",
    "692C8EA4013645135B36497131DF9D2C",
];
const KSNS_LAST: [&str; 4] = [
    "1234567890123456FFFE2000",
    "1234567890123456FFFE4000",
    "1234567890123456FFFE8000",
    "1234567890123456FFFF0000",
];
const AES128_LAST_KEYS: [&str; 4] = [
    "48E585B694EB0B18D5C35443E163C0BA",
    "396C2C7CA1EA701C03B86B7D41F0C562",
    "0387625F189B58AE03EF0E8CCA41105E",
    "F6BA59389BD14A9855BE9727E7C52E3C",
];
const AES256_DERIVATION_KEYS: [&str; 8] = [
    "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3",
    "5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97",
    "8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171",
    "C18CBED570B3B89ECADA7CEC9C224CD5A86ECF3DE377D3EFAB720F8C4D76B9D0",
    "6B3C3C93307151C25DC2309456F01C5C3108DAD571C321899A9B7E0C009FD2EB",
    "B8BB61AE3E2D5CD8C699E0C578FB2C7B89B0C0CF02DBAB60864D8049C986C844",
    "88D0ACA287B3066F5DE0C93396337D4C2DA8D92C1F720A576D62CEB4C979E01E",
    "20A796D5077D51B8E7613893A4F095B134E02917DC84BD391F3661D0873FF308",
];
const AES256_PIN_KEYS_AES128: [&str; 8] = [
    "09C9C432966811D6B2C3336BAC1B1202",
    "D632226A80795D13A80AFE66A3E97B01",
    "C2CBD3D766B16F9F82F4EE3F74478918",
    "58A3779C1E24B3EDAF068609E7E56D59",
    "97504C8BB0FD4D4A88D605143BF00025",
    "BF281141609E6CAE7DF10DFA47A8D03D",
    "B7C6BB187134E9D429C3E8B7CCBD8477",
    "53C1C60A65532313141A102AD720E967",
];
const AES256_PIN_KEYS_AES256: [&str; 8] = [
    "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502",
    "3583D6CD02FC38822CC71A8D7678E04F4A8556335E6CC66863D3DADC5AEE2C62",
    "96A1AB5D37CB7CF81DDE64F66C46E0389B833E7AD5F4E44C791F04FAFDA6DA0E",
    "420AA584BF215C4777E93009B56D08DE80687021D07ED96349FF71379CE5636D",
    "B1E9E3D918952E6E5F67917F0FE77060F865AE27DCAD5742DDF90F61453B98BA",
    "8714EB94E3BFD3018EC99D0434D9C94F071AF2EEBF4332FB14F5179793AA582C",
    "693C893A1E81D280302E0A47E7E634337B9A9B26E7CC6064D807E08FF911AFAC",
    "173A45284262A3E292D86D08FD6DE9167963214450D1D48F6103BD2EB08E61B5",
];
const AES256_MAC_KEYS_AES128: [&str; 8] = [
    "F04A1FABD4176E15490CEC82E217A96D",
    "DD99D77B4E2AB538B26BB6A8B3FB0BE3",
    "5A742A4A0403B3D7BB30842DAFBB5972",
    "C531F7E08514858C445D5F54BFE7DA8E",
    "E2E25AA7FE6E5DD6042C632A5DFED945",
    "07B215929C5DB4262DECEE4A0336DD4F",
    "3AC9CC5159F96E10FCC5EB64015AC76A",
    "6E94A9283EA9AEB7EAA77C3FF55FF2D1",
];
const AES256_MAC_KEYS_AES256: [&str; 8] = [
    "61DABDF4B340CF461EE860B1D1AB55357142BD2D6977306859CF49AEFE8F1549",
    "4417356219B2F93CE3F2671623DDCAB58A8B85AD80662A8D628024000956D426",
    "35BD00A46F2A2BD127F565FBF2974B735AE3BB70242C0A415857CF69B2C2691A",
    "D80617C3C5869A8DCF0DA5383D032A0D6E6C51C0BF649BE992BE84AA191AE326",
    "8B047E32C476C0A0AF90A9B8D1C247C433E3D4C1DF1C7FC52E8CB1DC4C8FB275",
    "A2FF6FFB37CB8042B8C9B2F94C90C83D94DD5BECCD9951CFAB0BE7BD865CA403",
    "E8A57085DBE804B8C2767F9F77D54854861E99633A062C700B4E50A865153150",
    "949A3FEF12DBD273DD25BB60E29BBE313C872A9DE3BE03A7E29626ACA0A42880",
];
const AES256_DATA_KEYS_AES128: [&str; 8] = [
    "616D59AE91F8CC7016F89FDA29605FA4",
    "07B79D9BFF3633C07A9FDDF132070B30",
    "706E4E629E466BED956548E7B0D90C3D",
    "CF3A4D9CA7E962E4023A84A2FE47DC80",
    "94C28455AEAD970555F326298557FA81",
    "408D3B9A7D1AF109E2F689514BF79AC7",
    "DC2915BF421D617E7725E63A7DACB18D",
    "8950DD50C254C60E26737CA9229F0F18",
];
const AES256_DATA_KEYS_AES256: [&str; 8] = [
    "71EB36C9A6B7F801D1D1700C29741FC5A5C4E9B45D742DA7AF6992B8AA29AF58",
    "D0AC9F71F875FFFF3A83778F72F39EBB0924A5A526617AF669665E0A19725465",
    "8E70D5DF53F48ED2F2A0B54FC4F45C844579BE96F6F161222CDD50193E2F737F",
    "41D23F7D78E22A978D726BC71D266374263120EE49146CE5C1291FD0EE7DDD31",
    "813D156C142E5BB8F136427EBD0A1AC4DC9B2B5963C481F5E0A58F4BF33BD185",
    "F1FB0591AA2E45E1CE4C5D970C7396C4A87E53E5900C4A6D95C174140CC0AC9C",
    "69BC5C9AFB2C93CC30C3F7529360B34D7B64B7206E0F0940D8654378C54824F2",
    "0BF8789A21D068410A16C9F7FCBF65A7B4FF73203ADC0F1B4B5E5BF8050E4284",
];
const AES256_ROLLOVER_KEYS: [&str; 3] = [
    "A289508CBF1228452CD86AB77B15CB35577AC828C18BB66681E5A16D6C9CCED3",
    "D62DDA94A47D7DA5D763443B4ECB15EA8DD62E0E4F915958BA459591F8312E37",
    "44110A1102748D4A3AC326F53D8CAC650212590CA7126D54546DDE0F20E89CEE",
];
const AES256_LAST_KEYS: [&str; 4] = [
    "4625EB06E4886D4AFCC9AE37ED4F4E4E1653C9E60E3F24742A87A26AA96AB7A6",
    "FF20E1BB575539ACCB44E3111BE8757F83AE8549A2DD71B441A4A424F7FFD4B1",
    "630535C9C53E1EC6524016930B56F6728909C45403536B419AEBCB25B7351C07",
    "6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE",
];

// X9.24-3-2017 supplement values for counter 0001FFFF (17 one-bits, never used by a device)
// and for the DUKPT update key (counter FFFFFFFF), as transcribed in openemv/dukpt (Leon
// Lynch), commit 1d01ddafa9dac103f4eee2ad1b20483596d83012, where the 0001FFFF rows are
// present but commented out ("more than the allowed 16 set bits").
const KSN_1FFFF: &str = "12345678901234560001FFFF";
/// AES-128 BDK, intermediate derivation key for 0001FFFF (supplement page 5;
/// test/dukpt_aes128_test.c, `txn_key_verify2`, second row).
const AES128_DERIVATION_KEY_1FFFF: &str = "1FE368988089CDD76DA18A3458E113BA";
/// AES-256 BDK, intermediate derivation key for 0001FFFF (supplement middle of page 10;
/// test/dukpt_aes256_test.c, `txn_key_verify2`, second row).
const AES256_DERIVATION_KEY_1FFFF: &str =
    "7C1F24BC33C5B146E1D3015126F4AC2E0C48AC080DC9234137B82890E8E91FB8";
/// AES-128 BDK, AES-128 update key (supplement bottom of page 7;
/// test/dukpt_aes128_update_key_test.c, `update_key_aes128_verify`).
const AES128_UPDATE_KEY_AES128: &str = "9A9770AEE1ACD1B13473D0463A1883B9";
/// AES-256 BDK, AES-128 update key (supplement middle of page 12;
/// test/dukpt_aes256_update_key_test.c, `update_key_aes128_verify`).
const AES256_UPDATE_KEY_AES128: &str = "90E54E4A70160C7E085C09D2B241D343";
/// AES-256 BDK, AES-256 update key (supplement bottom of page 18;
/// test/dukpt_aes256_update_key_test.c, `update_key_aes256_verify`).
const AES256_UPDATE_KEY_AES256: &str =
    "AEFB210C136278A1279F7C8815F446DB8EBE2AA910B157AA4E6484D8DE9C4807";

fn secret(text: &str) -> SecretBytes {
    SecretBytes::from_hex("test key", text).expect("hex")
}

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

fn ksn(text: &str) -> Ksn {
    Ksn::from_hex(text).expect("ksn")
}

fn ikid() -> InitialKeyId {
    InitialKeyId::from_hex(INITIAL_KEY_ID).expect("ikid")
}

/// X9.24-3-2017 supplement: initial keys of the AES-128 and AES-256 BDKs.
#[test]
fn initial_keys_x9_24_3_supplement() {
    assert_eq!(
        derive_initial_key(&secret(BDK128), &ikid())
            .expect("ik")
            .to_hex_upper(),
        IK128
    );
    assert_eq!(
        derive_initial_key(&secret(BDK256), &ikid())
            .expect("ik")
            .to_hex_upper(),
        IK256
    );
}

/// X9.24-3-2017 supplement, AES-128 BDK (page 2): derivation keys and AES-128 PIN, MAC
/// generation and data encryption keys for the first eight KSNs, host side from the initial
/// key and from the BDK.
#[test]
fn aes128_host_first_eight_ksns() {
    let ik = secret(IK128);
    for i in 0..8 {
        let k = ksn(KSNS[i]);
        assert_eq!(
            derivation_key(&ik, &k).expect("dk").to_hex_upper(),
            AES128_DERIVATION_KEYS[i],
            "{}",
            KSNS[i]
        );
        assert_eq!(
            working_key(&ik, &k, KeyUsage::PinEncryption, KeyType::Aes128)
                .expect("pin")
                .to_hex_upper(),
            AES128_PIN_KEYS[i]
        );
        assert_eq!(
            working_key(&ik, &k, KeyUsage::MacGeneration, KeyType::Aes128)
                .expect("mac")
                .to_hex_upper(),
            AES128_MAC_KEYS[i]
        );
        assert_eq!(
            working_key(&ik, &k, KeyUsage::DataEncrypt, KeyType::Aes128)
                .expect("data")
                .to_hex_upper(),
            AES128_DATA_KEYS[i]
        );
        assert_eq!(
            host_working_key(
                &secret(BDK128),
                &k,
                KeyUsage::PinEncryption,
                KeyType::Aes128
            )
            .expect("pin")
            .to_hex_upper(),
            AES128_PIN_KEYS[i]
        );
    }
}

/// X9.24-3-2017 supplement, page 31: the ISO 9564 format 4 PIN blocks encrypted under the
/// derived AES-128 PIN keys (encrypt the PIN field, XOR the PAN field, encrypt again).
#[test]
fn aes128_encrypted_pin_blocks_page_31() {
    let ik = secret(IK128);
    for i in 0..8 {
        let pin_key =
            working_key(&ik, &ksn(KSNS[i]), KeyUsage::PinEncryption, KeyType::Aes128).expect("pin");
        let mut intermediate = aes_encrypt_ecb(pin_key.expose(), &h(PIN_FIELD)).expect("encrypt");
        for (byte, pan) in intermediate.iter_mut().zip(h(PAN_FIELD)) {
            *byte ^= pan;
        }
        assert_eq!(
            aes_encrypt_ecb(pin_key.expose(), &intermediate).expect("encrypt"),
            h(AES128_ENCRYPTED_PIN_BLOCKS[i])
        );
    }
}

/// X9.24-3-2017 supplement, AES-128 BDK (pages 5 and 6): derivation keys around the
/// rollover (0001FFFE, 00020000, 00020001) and for the last four counters.
#[test]
fn aes128_rollover_and_last_counters() {
    let ik = secret(IK128);
    for (text, expected) in KSNS_ROLLOVER
        .iter()
        .zip(AES128_ROLLOVER_KEYS)
        .chain(KSNS_LAST.iter().zip(AES128_LAST_KEYS))
    {
        assert_eq!(
            derivation_key(&ik, &ksn(text)).expect("dk").to_hex_upper(),
            expected,
            "{text}"
        );
    }
}

/// X9.24-3-2017 supplement, AES-256 BDK (pages 7 to 13): derivation keys and AES-128 /
/// AES-256 PIN, MAC generation and data encryption keys for the first eight KSNs.
#[test]
fn aes256_host_first_eight_ksns() {
    let ik = secret(IK256);
    for i in 0..8 {
        let k = ksn(KSNS[i]);
        assert_eq!(
            derivation_key(&ik, &k).expect("dk").to_hex_upper(),
            AES256_DERIVATION_KEYS[i],
            "{}",
            KSNS[i]
        );
        let cases = [
            (
                KeyUsage::PinEncryption,
                KeyType::Aes128,
                AES256_PIN_KEYS_AES128[i],
            ),
            (
                KeyUsage::PinEncryption,
                KeyType::Aes256,
                AES256_PIN_KEYS_AES256[i],
            ),
            (
                KeyUsage::MacGeneration,
                KeyType::Aes128,
                AES256_MAC_KEYS_AES128[i],
            ),
            (
                KeyUsage::MacGeneration,
                KeyType::Aes256,
                AES256_MAC_KEYS_AES256[i],
            ),
            (
                KeyUsage::DataEncrypt,
                KeyType::Aes128,
                AES256_DATA_KEYS_AES128[i],
            ),
            (
                KeyUsage::DataEncrypt,
                KeyType::Aes256,
                AES256_DATA_KEYS_AES256[i],
            ),
        ];
        for (usage, key_type, expected) in cases {
            assert_eq!(
                working_key(&ik, &k, usage, key_type)
                    .expect("wk")
                    .to_hex_upper(),
                expected,
                "{usage:?} {key_type:?}"
            );
        }
    }
}

/// X9.24-3-2017 supplement, AES-256 BDK (pages 10 and 12): rollover and last counters.
#[test]
fn aes256_rollover_and_last_counters() {
    let ik = secret(IK256);
    for (text, expected) in KSNS_ROLLOVER
        .iter()
        .zip(AES256_ROLLOVER_KEYS)
        .chain(KSNS_LAST.iter().zip(AES256_LAST_KEYS))
    {
        assert_eq!(
            derivation_key(&ik, &ksn(text)).expect("dk").to_hex_upper(),
            expected,
            "{text}"
        );
    }
}

/// X9.24-3-2017 supplement (pages 5 and 10): host-side derivation keys for counter 0001FFFF
/// (17 one-bits), which the transaction API rejects.
#[test]
fn host_derivation_key_any_counter_1ffff() {
    let k = ksn(KSN_1FFFF);
    for (ik, expected) in [
        (IK128, AES128_DERIVATION_KEY_1FFFF),
        (IK256, AES256_DERIVATION_KEY_1FFFF),
    ] {
        let ik = secret(ik);
        assert_eq!(
            host_derivation_key_any_counter(&ik, &k)
                .expect("dk")
                .to_hex_upper(),
            expected
        );
        // The device rule still applies to the transaction API.
        assert!(matches!(
            derivation_key(&ik, &k),
            Err(CryptoError::OutOfRange { .. })
        ));
    }
}

/// The any-counter derivation agrees with the published derivation keys of valid counters
/// (first eight, rollover and last four KSNs, AES-128 and AES-256 BDKs).
#[test]
fn host_derivation_key_any_counter_matches_published_valid_counters() {
    let cases = [
        (IK128, &KSNS[..], &AES128_DERIVATION_KEYS[..]),
        (IK128, &KSNS_ROLLOVER[..], &AES128_ROLLOVER_KEYS[..]),
        (IK128, &KSNS_LAST[..], &AES128_LAST_KEYS[..]),
        (IK256, &KSNS[..], &AES256_DERIVATION_KEYS[..]),
        (IK256, &KSNS_ROLLOVER[..], &AES256_ROLLOVER_KEYS[..]),
        (IK256, &KSNS_LAST[..], &AES256_LAST_KEYS[..]),
    ];
    for (ik, ksns, keys) in cases {
        let ik = secret(ik);
        for (text, expected) in ksns.iter().zip(keys) {
            assert_eq!(
                host_derivation_key_any_counter(&ik, &ksn(text))
                    .expect("dk")
                    .to_hex_upper(),
                *expected,
                "{text}"
            );
        }
    }
    // Counter 0: the initial key itself.
    assert_eq!(
        host_derivation_key_any_counter(&secret(IK128), &ikid().ksn(0))
            .expect("dk")
            .to_hex_upper(),
        IK128
    );
}

/// X9.24-3-2017 supplement (pages 7, 12 and 18): DUKPT update keys (counter FFFFFFFF), from the
/// initial key and from the BDK.
#[test]
fn update_keys_x9_24_3_supplement() {
    assert_eq!(UPDATE_KEY_COUNTER, 0xFFFF_FFFF);
    let cases = [
        (IK128, BDK128, KeyType::Aes128, AES128_UPDATE_KEY_AES128),
        (IK256, BDK256, KeyType::Aes128, AES256_UPDATE_KEY_AES128),
        (IK256, BDK256, KeyType::Aes256, AES256_UPDATE_KEY_AES256),
    ];
    for (ik, bdk, key_type, expected) in cases {
        assert_eq!(
            update_key(&secret(ik), &ikid(), key_type)
                .expect("update key")
                .to_hex_upper(),
            expected,
            "{key_type:?}"
        );
        assert_eq!(
            host_update_key(&secret(bdk), &ikid(), key_type)
                .expect("update key")
                .to_hex_upper(),
            expected,
            "{key_type:?}"
        );
    }
}

/// Update keys are AES and no stronger than the initial key.
#[test]
fn update_key_rejects_tdes_and_stronger_types() {
    for (ik, key_type) in [
        (IK128, KeyType::Tdes2),
        (IK128, KeyType::Tdes3),
        (IK128, KeyType::Aes192),
        (IK128, KeyType::Aes256),
        (IK256, KeyType::Tdes2),
    ] {
        assert!(
            matches!(
                update_key(&secret(ik), &ikid(), key_type),
                Err(CryptoError::OutOfRange { .. })
            ),
            "{key_type:?}"
        );
    }
    assert!(matches!(
        update_key(&secret("00"), &ikid(), KeyType::Aes128),
        Err(CryptoError::InvalidLength { .. })
    ));
}

/// AES-128 BDK PIN encryption keys at counters 00020000 and 00845FED, as published in the test
/// suite of a public CyberChef fork ("DUKPT Derive AES Key: PIN Encryption key, counter 131072"
/// and "… counter 8675309"), which cites the X9.24-3 test vectors.
#[test]
fn aes128_pin_keys_published_by_cyberchef_fork() {
    let bdk = secret(BDK128);
    assert_eq!(
        host_working_key(
            &bdk,
            &ksn("123456789012345600020000"),
            KeyUsage::PinEncryption,
            KeyType::Aes128
        )
        .expect("pin")
        .to_hex_upper(),
        "AB828BE7B58C7EC5D5ED0D5D320A0C9D"
    );
    assert_eq!(
        host_working_key(
            &bdk,
            &ksn("123456789012345600845FED"),
            KeyUsage::PinEncryption,
            KeyType::Aes128
        )
        .expect("pin")
        .to_hex_upper(),
        "D1DDA386AA4A556AF0119FDCB5D132C6"
    );
}

/// AES-128 BDK, KSN 123456789012345600000001: the AES-128 working key of every key usage of
/// X9.24-3-2017 (the Annex B / supplement counter-1 values). Published in the test suite of the
/// `paysec-dukpt` crate 0.2.0 on crates.io (tests/test_working_key.rs,
/// `test_all_working_key_usages_aes_128_counter_1`); the MAC verification, MAC both-ways, data
/// decryption and data both-ways keys also appear, labelled "Annex B", in the public .NET
/// CryptoScript test suite (CryptoScriptUnitTest, `DukptAesWorkingKeyTests`), and the key
/// encryption key in a public payment-cryptography knowledge base that reproduces the X9
/// supplement ("reference_vectors_AES128_from_AES128_BDK"). The PIN, MAC generation and data
/// encryption keys are the supplement values already checked above.
#[test]
fn aes128_every_usage_counter_1() {
    let ik = secret(IK128);
    let k = ksn(KSNS[0]);
    let cases = [
        (
            KeyUsage::KeyEncryptionKey,
            "36A724B7BEFA5A25F5E7B5782A4554A2",
        ),
        (KeyUsage::PinEncryption, AES128_PIN_KEYS[0]),
        (KeyUsage::MacGeneration, AES128_MAC_KEYS[0]),
        (
            KeyUsage::MacVerification,
            "DBB463945B286C07CD3AD82EE96FD9C9",
        ),
        (KeyUsage::MacBoth, "85675439D18D7F1158BD8E3EAA3D502B"),
        (KeyUsage::DataEncrypt, AES128_DATA_KEYS[0]),
        (KeyUsage::DataDecrypt, "16292C6EA8F64C5420A0584BFBC577BE"),
        (KeyUsage::DataBoth, "A308E080DD15A1B741F1721BF67DE11C"),
        (KeyUsage::KeyDerivation, "30E54D3C69B22501A7FC43969D81D5C0"),
    ];
    let mut device = Device::load_initial_key(&ik, &ikid()).expect("load");
    let transaction = device.next_transaction().expect("transaction");
    for (usage, expected) in cases {
        assert_eq!(
            working_key(&ik, &k, usage, KeyType::Aes128)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{usage:?}"
        );
        assert_eq!(
            host_working_key(&secret(BDK128), &k, usage, KeyType::Aes128)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{usage:?} from the BDK"
        );
        assert_eq!(
            transaction
                .working_key(usage, KeyType::Aes128)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{usage:?} on the device"
        );
    }
}

/// AES-128 BDK, KSN 123456789012345600000001: 2TDEA and 3TDEA working keys (X9.24-3-2017
/// supplement, "2TDEA / 3TDEA keys from AES-128 BDK"). The PIN encryption keys are published,
/// labelled "Annex B", in the public .NET CryptoScript test suite (CryptoScriptUnitTest,
/// `DukptAesWorkingKeyTests.AnnexBVectorsCoverTdeaWorkingKeyTypes`: TDEA-2
/// 630C706D9546E47D4449313F61C4D4AB, TDEA-3 EA8B3F37…35766F6A); the same PIN keys and the MAC
/// generation and data encryption keys are listed in a public payment-cryptography knowledge
/// base that reproduces the X9 supplement ("reference_vectors_2TDEA_from_AES128_BDK",
/// "reference_vectors_3TDEA_from_AES128_BDK"). The 2TDEA and 3TDEA derivation data use the
/// same intermediate derivation key as the AES-128 keys (4F21B565…).
#[test]
fn tdea_working_keys_from_aes128_bdk_counter_1() {
    let ik = secret(IK128);
    let k = ksn(KSNS[0]);
    let cases = [
        (
            KeyUsage::PinEncryption,
            KeyType::Tdes2,
            "630C706D9546E47D4449313F61C4D4AB",
        ),
        (
            KeyUsage::MacGeneration,
            KeyType::Tdes2,
            "5D8FD787E8A796D07035FFCA9B5800BB",
        ),
        (
            KeyUsage::DataEncrypt,
            KeyType::Tdes2,
            "BD44121C223F831446A01EE3A4CB58D2",
        ),
        (
            KeyUsage::PinEncryption,
            KeyType::Tdes3,
            "EA8B3F37EB9B15831167EF2977FD8762D9B5913F35766F6A",
        ),
        (
            KeyUsage::MacGeneration,
            KeyType::Tdes3,
            "2A1061A6EAC2C14FAC3758EA07B3648A624B24E942785BF1",
        ),
        (
            KeyUsage::DataEncrypt,
            KeyType::Tdes3,
            "F716DFBC6B2D2D5825B694EEEE181A013F2F1C09380BBE0C",
        ),
    ];
    for (usage, key_type, expected) in cases {
        assert_eq!(
            working_key(&ik, &k, usage, key_type)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{usage:?} {key_type:?}"
        );
        assert_eq!(
            host_working_key(&secret(BDK128), &k, usage, key_type)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{usage:?} {key_type:?} from the BDK"
        );
    }
}

/// AES-192 BDK FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210 (the AES-192 BDK of the X9
/// reference Python source), initial key ID 1234567890123456.
///
/// Not in the X9 supplement PDF itself: these values were generated with the ASC X9 reference
/// algorithm and published in the test suite of the `paysec-dukpt` crate 0.2.0 on crates.io
/// (tests/test_initial_key.rs `test_derive_initial_key_aes_192`, tests/test_working_key.rs
/// `AES_192_TO_AES_128_VECTORS` and `AES_192_TO_AES_192_VECTORS`). The initial key
/// 5B6DEE2B…5131E584 also appears, independently, as `DUKPT_AES_PIN_KEY_192` beside the Annex B
/// AES-128 and AES-256 initial keys in a public Android payment-terminal key-injection demo
/// (`KeyConstants`). paysec also lists counter 0001FFFF, which this crate refuses (17 one-bits;
/// never used by a device), so only counters 1 and 3 are checked.
#[test]
fn aes192_bdk_initial_and_working_keys() {
    const BDK192: &str = "FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210";
    const IK192: &str = "5B6DEE2B5B7FABFFA32591F35BF8F23DD9329AE85131E584";
    let bdk = secret(BDK192);
    let ik = derive_initial_key(&bdk, &ikid()).expect("ik");
    assert_eq!(ik.to_hex_upper(), IK192);
    // (counter, usage, key type, expected)
    let cases = [
        (
            1,
            KeyUsage::PinEncryption,
            KeyType::Aes128,
            "3C318CDBF08322279557201E98DBB3F3",
        ),
        (
            1,
            KeyUsage::MacGeneration,
            KeyType::Aes128,
            "3E7009C74E8166BC9059D3D92D36B487",
        ),
        (
            1,
            KeyUsage::DataEncrypt,
            KeyType::Aes128,
            "04C5C3926A8B9B2B833F33D4C6E581EE",
        ),
        (
            3,
            KeyUsage::PinEncryption,
            KeyType::Aes128,
            "6DE9A0A37D6927280B7E223C4BE7580F",
        ),
        (
            3,
            KeyUsage::MacGeneration,
            KeyType::Aes128,
            "D2D13AF44E71EB6E8539FFDA3C37A5D6",
        ),
        (
            3,
            KeyUsage::DataEncrypt,
            KeyType::Aes128,
            "FDCB88BEA1EFE48EAEE83A48513FF515",
        ),
        (
            1,
            KeyUsage::PinEncryption,
            KeyType::Aes192,
            "C5043EDC7F2C001097974D40FF82A050B64A1AB27879F3DB",
        ),
        (
            1,
            KeyUsage::MacGeneration,
            KeyType::Aes192,
            "7FB32FB0F68F0E4A2594765F9EB1C472727EE305A5EE35E1",
        ),
        (
            1,
            KeyUsage::DataEncrypt,
            KeyType::Aes192,
            "C1D4541AE0E33949DD03F2A10B5E5486BBCAC1C520320E0C",
        ),
        (
            3,
            KeyUsage::PinEncryption,
            KeyType::Aes192,
            "64AE12F5E0FB2001B22520CED9C5CF1A8AA45AAA3F264882",
        ),
        (
            3,
            KeyUsage::MacGeneration,
            KeyType::Aes192,
            "29A29A9C943EAA03D2F5CAD146BA765094C2CF0343C53D1A",
        ),
        (
            3,
            KeyUsage::DataEncrypt,
            KeyType::Aes192,
            "A5DDCE36A4ECC8781C466C2270BA499EC4654AA166392EFC",
        ),
    ];
    let mut device = Device::load_initial_key(&ik, &ikid()).expect("load");
    assert_eq!(device.key_type(), KeyType::Aes192);
    let transactions: Vec<_> = (0..3)
        .map(|_| device.next_transaction().expect("transaction"))
        .collect();
    for (counter, usage, key_type, expected) in cases {
        let k = ikid().ksn(counter);
        assert_eq!(
            host_working_key(&bdk, &k, usage, key_type)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{counter} {usage:?} {key_type:?}"
        );
        let transaction = &transactions[counter as usize - 1];
        assert_eq!(transaction.ksn(), k);
        assert_eq!(
            transaction
                .working_key(usage, key_type)
                .expect("wk")
                .to_hex_upper(),
            expected,
            "{counter} {usage:?} {key_type:?} on the device"
        );
    }
}

/// Device side: loaded with the published initial keys, the device produces the published
/// KSNs and keys for its first eight transactions (AES-128 and AES-256 BDKs).
#[test]
fn device_first_eight_transactions() {
    let mut device128 = Device::load_initial_key(&secret(IK128), &ikid()).expect("load");
    let mut device256 = Device::load_initial_key(&secret(IK256), &ikid()).expect("load");
    assert_eq!(device128.key_type(), KeyType::Aes128);
    assert_eq!(device256.key_type(), KeyType::Aes256);
    for i in 0..8 {
        let t128 = device128.next_transaction().expect("transaction");
        assert_eq!(t128.ksn().to_hex(), KSNS[i]);
        assert_eq!(
            t128.derivation_key().to_hex_upper(),
            AES128_DERIVATION_KEYS[i]
        );
        assert_eq!(
            t128.working_key(KeyUsage::PinEncryption, KeyType::Aes128)
                .expect("pin")
                .to_hex_upper(),
            AES128_PIN_KEYS[i]
        );
        assert_eq!(
            t128.working_key(KeyUsage::MacGeneration, KeyType::Aes128)
                .expect("mac")
                .to_hex_upper(),
            AES128_MAC_KEYS[i]
        );
        assert_eq!(
            t128.working_key(KeyUsage::DataEncrypt, KeyType::Aes128)
                .expect("data")
                .to_hex_upper(),
            AES128_DATA_KEYS[i]
        );
        let t256 = device256.next_transaction().expect("transaction");
        assert_eq!(t256.ksn().to_hex(), KSNS[i]);
        assert_eq!(
            t256.derivation_key().to_hex_upper(),
            AES256_DERIVATION_KEYS[i]
        );
        assert_eq!(
            t256.working_key(KeyUsage::PinEncryption, KeyType::Aes256)
                .expect("pin")
                .to_hex_upper(),
            AES256_PIN_KEYS_AES256[i]
        );
    }
}

/// Device side across the rollover: resumed at 0001FFFE, the device skips 0001FFFF (17
/// one-bits) and produces the published 00020000 and 00020001 keys; resumed at FFFE2000 it
/// produces the published last four keys, then is exhausted.
#[test]
fn device_rollover_and_end_of_life() {
    let mut device = Device::resume(&secret(IK128), &ksn(KSNS_ROLLOVER[0])).expect("resume");
    for (text, expected) in KSNS_ROLLOVER.iter().zip(AES128_ROLLOVER_KEYS) {
        let t = device.next_transaction().expect("transaction");
        assert_eq!(t.ksn().to_hex(), *text);
        assert_eq!(t.derivation_key().to_hex_upper(), expected);
    }
    let mut device = Device::resume(&secret(IK256), &ksn(KSNS_LAST[0])).expect("resume");
    for (text, expected) in KSNS_LAST.iter().zip(AES256_LAST_KEYS) {
        let t = device.next_transaction().expect("transaction");
        assert_eq!(t.ksn().to_hex(), *text);
        assert_eq!(t.derivation_key().to_hex_upper(), expected);
    }
    assert_eq!(ksn(KSNS_LAST[3]).counter(), LAST_COUNTER);
    assert!(device.is_exhausted());
    let exhausted = CryptoError::Exhausted("AES DUKPT device");
    assert_eq!(
        device.next_transaction().map(|t| t.ksn()),
        Err(exhausted.clone())
    );
    assert_eq!(device.current_ksn(), Err(exhausted.clone()));
    assert_eq!(
        device.next_transaction().map(|t| t.ksn()),
        Err(exhausted.clone())
    );
    assert_eq!(ksn(KSNS_LAST[3]).next(), Err(exhausted.clone()));
    assert_eq!(next_counter(LAST_COUNTER), None);
    assert_eq!(exhausted.code(), "bad_request");
    assert_eq!(
        exhausted.to_string(),
        "AES DUKPT device: exhausted, its last transaction counter has been used"
    );
    // The skip rule on the KSN alone, on the published sequences.
    assert_eq!(
        ksn(KSNS_ROLLOVER[0]).next().expect("next").to_hex(),
        KSNS_ROLLOVER[1]
    );
    assert_eq!(
        ksn(KSNS_LAST[0]).next().expect("next").to_hex(),
        KSNS_LAST[1]
    );
    assert_eq!(
        ksn(KSNS_LAST[2]).next().expect("next").to_hex(),
        KSNS_LAST[3]
    );
}

/// X9.24-3-2017 derivation data layout and indicators (the standard's tables of key usage
/// indicators, algorithm indicators and lengths).
#[test]
fn derivation_data_layout() {
    let id = ikid();
    assert_eq!(
        derivation_data(KeyUsage::KeyDerivationInitialKey, KeyType::Aes128, &id, 0).to_vec(),
        h("0101 8001 0002 0080 1234567890123456")
    );
    assert_eq!(
        derivation_data(KeyUsage::PinEncryption, KeyType::Aes256, &id, 5).to_vec(),
        h("0101 1000 0004 0100 90123456 00000005")
    );
    assert_eq!(
        derivation_data(KeyUsage::KeyDerivation, KeyType::Tdes3, &id, 0x1234).to_vec(),
        h("0101 8000 0001 00C0 90123456 00001234")
    );
    let indicators: Vec<u16> = KeyUsage::ALL.iter().map(|u| u.indicator()).collect();
    assert_eq!(
        indicators,
        [
            0x0002, 0x1000, 0x2000, 0x2001, 0x2002, 0x3000, 0x3001, 0x3002, 0x8000, 0x8001
        ]
    );
    let algorithms: Vec<(u16, u16)> = KeyType::ALL
        .iter()
        .map(|t| (t.algorithm_indicator(), t.length_bits()))
        .collect();
    assert_eq!(
        algorithms,
        [(0, 128), (1, 192), (2, 128), (3, 192), (4, 256)]
    );
}

#[test]
fn every_usage_and_key_type_has_the_right_length() {
    let ik = secret(IK128);
    let k = ksn(KSNS[0]);
    for usage in KeyUsage::ALL {
        for key_type in KeyType::ALL {
            assert_eq!(
                working_key(&ik, &k, usage, key_type).expect("wk").len(),
                key_type.key_len()
            );
        }
    }
}

#[test]
fn identifiers_parse_and_errors() {
    let id = ikid();
    assert_eq!(id.bdk_id(), [0x12, 0x34, 0x56, 0x78]);
    assert_eq!(id.derivation_id(), [0x90, 0x12, 0x34, 0x56]);
    assert_eq!(
        InitialKeyId::from_parts([0x12, 0x34, 0x56, 0x78], [0x90, 0x12, 0x34, 0x56]),
        id
    );
    assert_eq!(id.ksn(1).to_hex(), KSNS[0]);
    assert_eq!(format!("{id:?}"), "InitialKeyId(1234567890123456)");
    let k = ksn("123456789012345600000001");
    assert_eq!(k.initial_key_id(), id);
    assert_eq!(k.counter(), 1);
    assert_eq!(k.to_string(), "123456789012345600000001");
    assert_eq!("123456789012345600000001".parse::<Ksn>().expect("parse"), k);
    assert!(matches!(
        Ksn::from_hex("1234567890123456000001"),
        Err(CryptoError::InvalidLength { actual: 11, .. })
    ));
    assert_eq!(
        Ksn::from_hex("12345678901234560000000G"),
        Err(CryptoError::InvalidHex("AES DUKPT KSN"))
    );
    assert!(matches!(
        InitialKeyId::from_hex("123456789012345600"),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(matches!(
        Ksn::from_bytes(&[0; 10]),
        Err(CryptoError::InvalidLength { .. })
    ));

    let zero = id.ksn(0);
    assert!(!zero.is_valid_for_transaction());
    assert!(matches!(
        derivation_key(&secret(IK128), &zero),
        Err(CryptoError::OutOfRange { .. })
    ));
    let seventeen = id.ksn(0x0001_FFFF);
    assert!(matches!(
        seventeen.check_transaction(),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(matches!(
        host_working_key(
            &secret(BDK128),
            &seventeen,
            KeyUsage::PinEncryption,
            KeyType::Aes128
        ),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(matches!(
        Device::resume(&secret(IK128), &seventeen),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(matches!(
        derive_initial_key(&secret("0123456789ABCDEFFEDCBA98765432"), &id),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(matches!(
        Device::load_initial_key(&SecretBytes::new(vec![0; 20]), &id),
        Err(CryptoError::InvalidLength { .. })
    ));
}

#[test]
fn device_debug_shows_no_key_bytes() {
    let device = Device::load_initial_key(&secret(IK128), &ikid()).expect("load");
    let printed = format!("{device:?}");
    assert!(!printed.contains("1273671E") && !printed.contains("1273671e"));
}

fn valid_counter() -> impl Strategy<Value = u32> {
    any::<u32>().prop_filter("valid", |c| is_valid_counter(*c))
}

fn any_bdk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 16),
        proptest::collection::vec(any::<u8>(), 24),
        proptest::collection::vec(any::<u8>(), 32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For random BDKs (128/192/256), devices and counters, a device resumed at the counter
    /// and the host agree on every working key of every usage and type.
    #[test]
    fn device_and_host_agree(bdk in any_bdk(), id in any::<[u8; 8]>(), counter in valid_counter(), steps in 1_usize..3) {
        let bdk = SecretBytes::new(bdk);
        let id = InitialKeyId::from_bytes(&id).expect("id");
        let ik = derive_initial_key(&bdk, &id).expect("ik");
        let mut device = Device::resume(&ik, &id.ksn(counter)).expect("resume");
        for _ in 0..steps {
            let Ok(t) = device.next_transaction() else { break };
            for usage in KeyUsage::ALL {
                for key_type in KeyType::ALL {
                    prop_assert_eq!(
                        t.working_key(usage, key_type).expect("device"),
                        host_working_key(&bdk, &t.ksn(), usage, key_type).expect("host")
                    );
                }
            }
        }
    }

    /// A device stepped from its initial key matches a device resumed at the same KSN.
    #[test]
    fn stepping_equals_resuming(ik in proptest::collection::vec(any::<u8>(), 16), n in 1_usize..200) {
        let ik = SecretBytes::new(ik);
        let mut stepped = Device::load_initial_key(&ik, &ikid()).expect("load");
        for _ in 1..n {
            stepped.next_transaction().expect("transaction");
        }
        let mut resumed = Device::resume(&ik, &stepped.current_ksn().expect("ksn")).expect("resume");
        for _ in 0..20 {
            let a = stepped.next_transaction().expect("stepped");
            let b = resumed.next_transaction().expect("resumed");
            prop_assert_eq!(a.ksn(), b.ksn());
            prop_assert_eq!(a.derivation_key(), b.derivation_key());
        }
    }

    #[test]
    fn ksn_round_trip(bytes in any::<[u8; 12]>()) {
        let k = Ksn::from_bytes(&bytes).expect("ksn");
        prop_assert_eq!(Ksn::from_hex(&k.to_hex()).expect("parse"), k);
        prop_assert_eq!(Ksn::from_hex(&k.to_hex().to_lowercase()).expect("parse"), k);
        prop_assert_eq!(k.initial_key_id().ksn(k.counter()), k);
        prop_assert_eq!(k.as_bytes(), &bytes);
    }

    #[test]
    fn next_counter_stays_valid(counter in valid_counter()) {
        if let Some(next) = next_counter(counter) {
            prop_assert!(next > counter);
            prop_assert!(is_valid_counter(next));
            // No valid counter is skipped.
            prop_assert!((counter + 1..next).all(|c| !is_valid_counter(c)));
        }
    }

    #[test]
    fn parsing_random_input_never_panics(text in ".{0,40}", bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = Ksn::from_hex(&text);
        let _ = InitialKeyId::from_hex(&text);
        if let Ok(k) = Ksn::from_bytes(&bytes) {
            let _ = k.check_transaction();
            let _ = k.next();
            let _ = derivation_key(&SecretBytes::new(vec![7; 16]), &k);
        }
        let _ = derive_initial_key(&SecretBytes::new(bytes.clone()), &ikid());
        let _ = Device::load_initial_key(&SecretBytes::new(bytes), &ikid());
    }
}
