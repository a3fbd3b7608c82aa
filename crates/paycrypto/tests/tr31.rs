//! TR-31 / ANSI X9.143 key blocks: known-answer tests from published sources, malformed
//! input classes, and property tests.
//!
//! Sources of the known answers (every expected value below is copied from one of these,
//! never computed with this crate):
//! - ASC X9 TR-31:2018 Annex A examples (A.7.2.1, A.7.2.2, A.7.3.1, A.7.3.2, A.7.4) and
//!   ANSI X9.143:2021 section 8 examples (8.1, 8.4.1, 8.4.2, 8.5, 8.6), as reproduced in the
//!   openemv "tr31" library by Leon Lynch, `test/tr31_decrypt_test.c`
//!   (<https://github.com/openemv/tr31>).
//! - Thales payShield 10k generated blocks in the same file (tests 1, 7, 8) and the
//!   header-only blocks of `test/tr31_decode_test.c` (KS, KC, KP blocks).
//! - BP-Tools cryptographic calculator outputs (zero padding) published in
//!   chhil/TR31Keyblock, `src/test/java/org/keyblock/tr31/TR31KeyBlockTest.java`
//!   (<https://github.com/chhil/TR31Keyblock>).
//! - The psec Python library's documentation example for `psec.tr31.unwrap`.
//! - The TR-31:2018 A.7.4 padding bytes `1C2965473CE206BB855B01533782`, as reproduced in a
//!   public Rust TR-31 implementation's `test_tr31_wrap_example_a_7_4`.

use paycrypto::CryptoError;
use paycrypto::tr31::{
    self, Algorithm, Exportability, KcvAlgorithm, KeyBlockHeader, KeyCheckValue, KeyLengthMasking,
    KeyUsage, ModeOfUse, OptionalBlock, Version,
};
use proptest::prelude::*;
use rand::{CryptoRng, RngCore};

fn h(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).expect("hex")
}

/// Yields the given bytes, then zeros: lets a test supply a published padding.
struct FixedRng {
    bytes: Vec<u8>,
    position: usize,
}

impl FixedRng {
    fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, position: 0 }
    }

    fn zeros() -> Self {
        Self::new(Vec::new())
    }
}

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut buf = [0; 4];
        self.fill_bytes(&mut buf);
        u32::from_be_bytes(buf)
    }

    fn next_u64(&mut self) -> u64 {
        let mut buf = [0; 8];
        self.fill_bytes(&mut buf);
        u64::from_be_bytes(buf)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            *byte = self.bytes.get(self.position).copied().unwrap_or(0);
            self.position += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

fn unwrap_ok(kbpk: &str, block: &str) -> (KeyBlockHeader, Vec<u8>) {
    let (header, key) = tr31::unwrap(&h(kbpk), block).expect("unwrap");
    (header, key.expose().to_vec())
}

// ------------------------------------------------------------------------------------------
// Unwrap known answers
// ------------------------------------------------------------------------------------------

/// TR-31:2018 A.7.2.1 (openemv/tr31 test2): version A, 2-key TDES KBPK.
#[test]
fn kat_tr31_2018_a_7_2_1_version_a() {
    let (header, key) = unwrap_ok(
        "89E88CF7931444F334BD7547FC3F380C",
        "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
    );
    assert_eq!(key, h("F039121BEC83D26B169BDCD5B22AAF8F"));
    assert_eq!(header.version, Version::A);
    assert_eq!(header.key_usage, KeyUsage::P0);
    assert_eq!(header.algorithm, Algorithm::Tdes);
    assert_eq!(header.mode_of_use, ModeOfUse::Encrypt);
    assert_eq!(header.key_version, "00");
    assert_eq!(header.exportability, Exportability::Exportable);
    assert!(header.optional_blocks.is_empty());
}

/// TR-31:2018 A.7.2.2 (openemv/tr31 test3): version B, 2-key TDES KBPK.
#[test]
fn kat_tr31_2018_a_7_2_2_version_b() {
    let (header, key) = unwrap_ok(
        "DD7515F2BFC17F85CE48F3CA25CB21F6",
        "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
    );
    assert_eq!(key, h("3F419E1CB7079442AA37474C2EFBF8B8"));
    assert_eq!(header.version, Version::B);
}

/// TR-31:2018 A.7.3.1 (openemv/tr31 test4): version C with a KS optional block (BDK).
#[test]
fn kat_tr31_2018_a_7_3_1_version_c_with_ks() {
    let (header, key) = unwrap_ok(
        "B8ED59E0A279A295E9F5ED7944FD06B9",
        "C0096B0TX12S0100KS1800604B120F9292800000BFB9B689CB567E66FC3FEE5AD5F52161FC6545B9D60989015D02155C",
    );
    assert_eq!(key, h("EDB380DD340BC2620247D445F5B8D678"));
    assert_eq!(header.version, Version::C);
    assert_eq!(header.key_usage, KeyUsage::B0);
    assert_eq!(header.mode_of_use, ModeOfUse::Derive);
    assert_eq!(header.key_version, "12");
    assert_eq!(header.exportability, Exportability::Sensitive);
    assert_eq!(
        header.key_set_identifier().expect("KS"),
        Some(h("00604B120F9292800000"))
    );
}

/// TR-31:2018 A.7.3.2 (openemv/tr31 test5): version B with a KS optional block.
#[test]
fn kat_tr31_2018_a_7_3_2_version_b_with_ks() {
    let (header, key) = unwrap_ok(
        "1D22BF32387C600AD97F9B97A51311AC",
        "B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627",
    );
    assert_eq!(key, h("E8BC63E5479455E26577F715D587FE68"));
    assert_eq!(
        header.key_set_identifier().expect("KS"),
        Some(h("00604B120F9292800000"))
    );
}

/// TR-31:2018 A.7.4 (openemv/tr31 test6): version D, AES-256 KBPK.
#[test]
fn kat_tr31_2018_a_7_4_version_d() {
    let (header, key) = unwrap_ok(
        "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
        "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
    );
    assert_eq!(key, h("3F419E1CB7079442AA37474C2EFBF8B8"));
    assert_eq!(header.version, Version::D);
    assert_eq!(header.algorithm, Algorithm::Aes);
}

/// Thales payShield 10k blocks (openemv/tr31 test1): versions A, B and C of the same key.
#[test]
fn kat_payshield_versions_a_b_c() {
    let kbpk = "EFE0853B256B583D868F251CE99EA1D9";
    for block in [
        "A0072K0TN00N0000F40D5672C6D0EC86F860BA88D44D00F0CA9A8CE8CD2F640287A9A9EB",
        "B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228",
        "C0072K0TN00N0000C9B875FF7A5316BF221C09ED52080DE0B45632A4EA9CE87699CB565E",
    ] {
        let (header, key) = unwrap_ok(kbpk, block);
        assert_eq!(key, h("5DB50B454F8389ADCE573BE50861F2BF"), "{block}");
        assert_eq!(header.key_usage, KeyUsage::K0);
        assert_eq!(header.mode_of_use, ModeOfUse::NoRestrictions);
        assert_eq!(header.exportability, Exportability::NonExportable);
    }
}

/// Thales payShield 10k blocks (openemv/tr31 tests 7 and 8): version D, AES-256 KBPK.
#[test]
fn kat_payshield_version_d() {
    let kbpk = "4141414141414141414141414141414141414141414141414141414141414141";
    let (_, key) = unwrap_ok(
        kbpk,
        "D0112B0TN00N000037DB9B046B7B0048785690759580ABC3B9842AB4BB7717B49E92528E575785D8123559376A2553B27BE94F054F4E971C",
    );
    assert_eq!(key, h("1FA1F7CEC798D91545DA8AE0C7796BD9"));
    let (header, key) = unwrap_ok(
        kbpk,
        "D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF1357178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814",
    );
    assert_eq!(
        key,
        h("BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC")
    );
    assert_eq!(header.key_usage, KeyUsage::D0);
}

/// ANSI X9.143:2021 8.1 (openemv/tr31 test11): version D with key length obfuscation.
#[test]
fn kat_x9_143_8_1_version_d_obfuscated() {
    let (_, key) = unwrap_ok(
        "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
        "D0144P0AE00E00002C77FA3F4A553BED6E88AE5C172A4166E3D4ACA8E2AC71C158A476FAC12C13C3829DE55D3AB54C48F4C4FEF7AC75E90FC47F1B77E7B19A73ED46E64410082557",
    );
    assert_eq!(key, h("3F419E1CB7079442AA37474C2EFBF8B8"));
}

/// ANSI X9.143:2021 8.4.1 and 8.4.2 (openemv/tr31 tests 15 and 16): C and B with KS,
/// key length obfuscated.
#[test]
fn kat_x9_143_8_4_versions_c_and_b_with_ks() {
    let (header, key) = unwrap_ok(
        "B8ED59E0A279A295E9F5ED7944FD06B9",
        "C0112B0TX12S0100KS1800604B120F929280000042B758A2400AB598AE37782823DAF0BA4BDB0DAFF34915345CA169AE1F976A429EB139E5",
    );
    assert_eq!(key, h("EDB380DD340BC2620247D445F5B8D678"));
    assert_eq!(
        header.key_set_identifier().expect("KS"),
        Some(h("00604B120F9292800000"))
    );
    let (_, key) = unwrap_ok(
        "1D22BF32387C600AD97F9B97A51311AC",
        "B0120B0TX12S0100KS1800604B120F929280000015CEB14B76D551F21EC43A75390FA118A98C6CB049E3B9E864A5F4A8B9A5108A6DB5635C95B042D7",
    );
    assert_eq!(key, h("E8BC63E5479455E26577F715D587FE68"));
}

/// ANSI X9.143:2021 8.5 and 8.6 blocks and keys, copied from openemv/tr31
/// `test/tr31_decrypt_test.c` (tests 17 and 18).
const X9143_8_5_BLOCK: &str = "D3776S0RS00N0400CT0004050000MIIDszCCApugAwIBAgIIKpD5FKMfCZEwDQYJKoZIhvcNAQELBQAwLTEXMBUGA1UECgwOQWxwaGEgTWVyY2hhbnQxEjAQBgNVBAMMCVNhbXBsZSBDQTAeFw0yMDA4MTUwMjE0MTBaFw0yMTA4MTUwMjE0MTBaME8xFzAVBgNVBAoMDkFscGhhIE1lcmNoYW50MR8wHQYDVQQLDBZUTFMgQ2xpZW50IENlcnRpZmljYXRlMRMwEQYDVQQDDAoxMjM0NTY3ODkwMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1sRg+wEuje3y14V0tFHpvxxpY/fyrldB0nRctBDn4AvkBfyJuDLG59vqkGXVd8J8YQdwEHZJrVq+7B8rjtM6PMoyH/7QAZZAC7tw740P4cfen1IryubZVviV9QUp+gHToelZfr1rfIsuEGhzo6UhwY70kkS87/rYHCVathZEjMmvUIEdpzg0PZ2+Heg6D35OQ70I+np+BsEQf71Zr+d2iKqVGEd50l8tbn4W3A4rOyUERPTaACwS9rvdF7nlmTqSI5ybN6lmm37a71h77n6M54aaw2KkJYWVo+1stUTyFVsv/YBs9aylbBHQOYqp/U2tB0TxM58QYGzyaWvNqbFzOQIDAQABo4G0MIGxMAkGA1UdEwQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMCMB0GA1UdDgQWBBR837QRAGx5uL9xDnRjr9L9WSBSlzAfBgNVHSMEGDAWgBSlXhVYy9bic9OLnRsxsFgKQQbLmTA/BgNVHR8EODA2MDSgMqAwhi5odHRwOi8vY3JsLmFscGhhLW1lcmNoYW50LmV4YW1wbGUvU2FtcGxlQ0EuY3JsMA0GCSqGSIb3DQEBCwUAA4IBAQCH6JusIBSkRDqzAohaSoJVAEwQGMdcUSQWDfMyJjZqkOep1kT8Sl7LolFmmmVRJdkTWZe4PxBfQUc/eIql9BIx90506B+j9aoVA7212OExAid78GgqKA6JoalhYQKRta9ixY8iolydTYyEYpegA1jFZavMQma4ZGwX/bDJWr4+cJYxJXWaf67g4AMqHaWC8J60MVjrrBe9BZ0ZstuIlNkktQUOZanqxqsrFeqz02ibwTwNHtaHQCztB4KgdTkrTNahkqeq6xjafDoTllNo1EddajnbA/cVzF9ZCNigDtg5chXHWIQbgEK7HmU3sY3/wd2Bh1KdF3+vpN+5iZMRNv7ZKP1001D77F007724TS1320200818221218ZPB0D000000000A7C9F8FA80A4BA3555CA071503CE1A6133649BB18A5A9130492172CA4E7360C060379738A28503230BDB04EED4E9B209643867613F5090A0E0392C21EB74747795B397315AB5D1F49A33693533E73AC0BEDA172FF530BE986F5EC1C25F481F05A69DF8B33624E621AF35FFAEC06C2005F37872923EEBFF38182FB290BFBA2A9FF88AD36278625868FA38A0DC9A53E0202C4D1DEF3B9DACFD249DA85DE3CCF92A8E6C0F8CDF8DE5FD17331BE5D580F210CE4EA1B01F1A0BFD6EFF410A71661234AD363D4B60885F00358729900FF95D7C87D3DE6FB4C83B24C8C7BB5A2E3763E9CBA50A0E3A8C1AF908699952BCB6B038FEA9D13FDE08801DC0573E55B842219DBF6D5DA5F028C73793AA718D01DE93D85AE06E7E08DC94ADB4EAA51B6DDAEA3750D0B77467D2982AC96F3EB28889715CBB81C71E97A60E58D44977C1D8220A422E98E17ACEBF72A8A18D4E7FC1695F442860E6063E8BB6BFF2184F77E635C2F5A02DADE4897A3B1374145C3AD6DF06C0D556F5DE9454CF40C4FC8922DFE245F868E668F1DA5BE0079F9D1D1861CA4B5E6C782F296098C07CB43784D64D8B8557410E5BAFF59333A791FF030EB0661C0590A665B50A3A727217100C4550B2AD9C96C658D6731C09B55DFAE665952E2913A4E090F45DCEB45D6683C3FC15E3A4CA49C7F2E684B3580DB47A53E5BDB228FAD250C584548D5DEDBB45004B5E0E75C37ACE8167CC6D9574A74876718D2F42996622B8EC0B895FF7A6739E4CF64B7F03FABDFBC0A565CB3455736D2B4E2B64D6EC175A569F78DB7ACB331B00804279677F4BFD0C35CBF0A38D646AA9051961123E16075A06B6331A9A30601AF3FD6A89AD9924AE1D9EC2FE0FF3B3A1B3E3E13D09B08B80D91F9EDF51B2E6D8DABD0FEB6C5C1085A11FA6A98CE8CC09E36C8A24D981A74E140EF30912E8CDBBE2A0CBD52B40C72D1958F4BB2F49BCBABBD80116FEF21BC91D219EEAEDA4DC11692C624B0836C3137A3BEE4549DEAB750A9DD5ACA7E3F822084783CDFEEB765EBEB9E3CFF053E8B8D5A1F1854B8AFF6325F10B81C7627D0DA895B1D19FEEF0AE3F3E138E87C4ADDF0BA53CA40ED0D1452044600FF4838D710F6D03474C317AC306DD7DA169B6C918E999E3A50DA1A34DDFCA3899F4469B9E969C0BD144F04B2621AB9E9E18455D526844155309565DA9D1726CD3A7ACC5FEDEF30DED078547CED31CEF84A31A810FA966F303CB950ACC324AE54BFAB9A04FAD93C38CD6239D7FAD2C59A9B71171F5676DA8ED3A3FFB5287DF141C1F5CE972CA26857AD3039B82B625960A7859F19EF0E94F8C4680A33189870942139DDFA64D5095FA46EB49085DB99EFC9C6A3F3A290DB9592F8B76B017113F7D1FEFE52E70FE26574467257CFEEA6D3F2BBD1BAEDDDCE3468827568A78536DE78E7AC872247BDB120A55DDE16A3D0CFBB7D097AD7AD0FA2671390D8D532A3915F5B3163FF1EE23553D83A1109980859C420F754BC74ECD1449B9A60EA252D3F035D715BCBD491485261C51238926E290BD7F0617E90BD6AB8B46443B05C28D61F8BB897417926623AF91B499C661629795165EF56460850F1D4F9CE199C2B9E21F1884A4D14644DAE5FB963B880EC2FFF70021772D524289D068A24F0283C42F0B4779996D2CF60EE6E45C364E2547DB92361B3DBCEDBAA96B9F10A1AAA1AB23CDE1B75F3299D4544787A07F6A9F7127";
const X9143_8_5_KEY: &str = "308204A40201000282010100D6C460FB012E8DEDF2D78574B451E9BF1C6963F7F2AE5741D2745CB410E7E00BE405FC89B832C6E7DBEA9065D577C27C610770107649AD5ABEEC1F2B8ED33A3CCA321FFED00196400BBB70EF8D0FE1C7DE9F522BCAE6D956F895F50529FA01D3A1E9597EBD6B7C8B2E106873A3A521C18EF49244BCEFFAD81C255AB616448CC9AF50811DA738343D9DBE1DE83A0F7E4E43BD08FA7A7E06C1107FBD59AFE77688AA95184779D25F2D6E7E16DC0E2B3B250444F4DA002C12F6BBDD17B9E5993A92239C9B37A9669B7EDAEF587BEE7E8CE7869AC362A4258595A3ED6CB544F2155B2FFD806CF5ACA56C11D0398AA9FD4DAD0744F1339F10606CF2696BCDA9B17339020301000102820101009A6193ED1ACE624BF7D2A1266130B8BC1E2A4C284214BCB89E15F345A519695E62CD42D9A4C52B62241D9B2AF8A61BF1D8B5C602AF650AEE3E6BF184182912A5FC1AC8111D68E69EA75058407AC03DE6B4CB060060DC4CC34DF24DAD269D868EA0C6E3044E1963EF906F4F06414E44D3A4757E67570192E9A261DFB12094AA36476582272EDAB0F56F816D9FA69580B3AB053237135BD1DDDB42AF77E11E1629F5A11B22C5E3E2DB3E8767A90B94414898DCCBB47EFE619F0620AC29C389FB464CE9C5E243963E13B6DA38EFAE1330AEFB54C0D5E2E59B6D7FBE4B3A22EE483F74E74D4A4A25978C65F4AC5829C34260930C85ECEA1FB24DB52A438D4EB2CF6102818100ED003DEEB8013AF4E4EBE172FE474B23FE20128805840C2D277E3E308D5B44527F1ED33C07AF350D5B22B27E082CD101DD2DE54DC8DF8F91D4BA5768EB9EC5F27DB5D358EA5E0DEE08A535677CB3F765789C9DAE56B7421B9E54525EF928AB2885BF098E837999AD0CA3CA6AC642EA9AD1331856B0CCEE5DF01FED1B2F63C3A502818100E7FBDA0A71C926DD51F037206D901A297554A39BBC9239794421F1F54D29766E50E016CA5701BDA79AEC543F5066B3730E053EA4B5872D25C29673CA8457B07390D11AF23F2247A1133FC2522B96CB02DA77D927FEE6661066058D1A4D85FE3C1D3418542F24B3982B4DDFB4192E512EDA1BAAAA59955B50945DD083E26E4D0502818002D4E0E88C3C3F87138119F574C2474C8BC9B84EF5B9E92754F4762BC05499D15E8170C6A3D4DD0E66CB5854972669ECDAC6A499B44FAF786F91366023888716E9979589D76AFE419CCAD4838302E76EC7ED1F1929221161211822CFCDAC45B73B39D81462CFBE1D4A2C5ECBBDC8A8E2E6A2F4A47C82464ACB06A69F8F86629D0281804E98A99AF84A2A7CB992255B3B43A3598083189B5F1C3B94B65CB9D95E373A04CE29DE0ED7C3A339F1E737F3EB8DA026CF0D3FD81618A25734C23CA0D48DD11E9666023728E4B857FE698FB0BF4BEBA41FD8931E55E2419A34B694C3E0981136D4BE1DB007F8EB5016FBDF5AE95D23EC37C13FE54F4CA70F79F4FEFC6FEEE6F1028181008321C2F1E8914C0AE09C418ACFEBB8A7B86A1E7144182F5145FBA90AF104DE3BC7604D86A831AC2F38DA356C99BC60BEA80E26EC8B7FAF8BB84A8661EF564BDC65DA0519F5E3CE81FF491CC71DA0813960048B225E61C56684D3CE01AE28A212C9ACCE946E2AAB80ADD51B00093029C5D52E9AF6C8A3EB861641B00E23636A68";

const X9143_8_6_BLOCK: &str = "D1840S0ES00N0400CT000405CC020002F0MIICLjCCAdSgAwIBAgIIGDrdWBxuNpAwCgYIKoZIzj0EAwIwMTEXMBUGA1UECgwOQWxwaGEgTWVyY2hhbnQxFjAUBgNVBAMMDVNhbXBsZSBFQ0MgQ0EwHhcNMjAwODE1MDIxMDEwWhcNMjEwODE1MDIxMDEwWjBPMRcwFQYDVQQKDA5BbHBoYSBNZXJjaGFudDEfMB0GA1UECwwWVExTIENsaWVudCBDZXJ0aWZpY2F0ZTETMBEGA1UEAwwKMTIzNDU2Nzg5MDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEI/SLrH6fITA9y6Y3BneuoT/5+EHSepZxCYeSstGll2sVvmSDZWWSbN6lh5Fb/zagrDjjQ/gZtWIOTf2wL1vSGjgbcwgbQwCQYDVR0TBAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFHuvP526vFMywEoVoXZ5aXNfhnfeMB8GA1UdIwQYMBaAFI+ZFhOWF+oMtcfYwg15vH5WmWccMEIGA1UdHwQ7MDkwN6A1oDOGMWh0dHA6Ly9jcmwuYWxwaGEtbWVyY2hhbnQuZXhhbXBsZS9TYW1wbGVFQ0NDQS5jcmwwCgYIKoZIzj0EAwIDSAAwRQIhAPuWWvCTmOdvQzUjCUmTX7H4sX4Ebpw+CI+aOQLu1DqwAiA0eR4FdMtvXV4P6+WMz5B10oea5xtLTfSgoBDoTkvKYQ==0002C4MIICDjCCAbOgAwIBAgIIfnOsCbsxHjwwCgYIKoZIzj0EAwIwNjEXMBUGA1UECgwOQWxwaGEgTWVyY2hhbnQxGzAZBgNVBAMMElNhbXBsZSBSb290IEVDQyBDQTAeFw0yMDA4MTUwMjEwMDlaFw0zMDA4MTMwMjEwMDlaMDExFzAVBgNVBAoMDkFscGhhIE1lcmNoYW50MRYwFAYDVQQDDA1TYW1wbGUgRUNDIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHCanM9n+Rji+3EROj+HlogmXMU1Fk1td7N3I/8rfFnre1GwWCUqXSePHxwQ9DRHCV3oht3OUU2kDfitfUIujA6OBrzCBrDASBgNVHRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBhjAdBgNVHQ4EFgQUj5kWE5YX6gy1x9jCDXm8flaZZxwwHwYDVR0jBBgwFoAUvElIifFlt6oeUaopV9Y0lJtyPVQwRgYDVR0fBD8wPTA7oDmgN4Y1aHR0cDovL2NybC5hbHBoYS1tZXJjaGFudC5leGFtcGxlL1NhbXBsZVJvb3RFQ0NDQS5jcmwwCgYIKoZIzj0EAwIDSQAwRgIhALT8+DG+++KuqqUGyBQ4YG4s34fqbujclxZTHxYWVVSNAiEAn3v5Xmct7fkLpkjGexiHsy6D90r0K2LlUqpN/069y5s=KP10012331550BC9TS1320200818004100ZPB11000000000000023806274FDDE312047FA37117320D914DD1CF20705A140E39FF88DF107110F26DDFDB20AD909B4C67987C76907C6518B63C8BB7969A52BA3EE6218C9B29F02C243D23E5DF5F87D4CBC0E587DD619F1F228D3F605316DC39DDD6E9D13BAB633D13A97BE7EF67DBEECADA32FA968E57BDF87EE5AEAA47CDCF427154AE66508B99EF6186011C7BE905F875B24C5D05EA14E";
const X9143_8_6_KEY: &str = "307702010104202D493257A45B34C11B6526A03DB4D8AE16EE87A0C16BDF1BE23C2DD8B164A2D3A00A06082A8648CE3D030107A14403420004423F48BAC7E9F21303DCBA6370677AEA13FF9F841D27A9671098792B2D1A5976B15BE64836565926CDEA587915BFF36A0AC38E343F819B5620E4DFDB02F5BD21";

/// ANSI X9.143:2021 8.5 (openemv/tr31 test17): version D wrapping an RSA private key, with a
/// CT block in the extended length form (`CT` `00` `04` `0500`), KP, TS and PB.
#[test]
fn kat_x9_143_8_5_extended_length_ct_kp_ts_pb() {
    let (header, key) = unwrap_ok("FA36E44278DB3AB5F298F9F7DA8F1F88", X9143_8_5_BLOCK);
    assert_eq!(key, h(X9143_8_5_KEY));
    assert_eq!(header.key_usage, KeyUsage::S0);
    assert_eq!(header.algorithm, Algorithm::Rsa);
    assert_eq!(header.mode_of_use, ModeOfUse::Sign);
    let ids: Vec<&str> = header
        .optional_blocks
        .iter()
        .map(OptionalBlock::id)
        .collect();
    assert_eq!(ids, ["CT", "KP", "TS", "PB"]);
    assert_eq!(header.optional_blocks[0].data().len(), 0x500 - 10);
    assert_eq!(
        header.kbpk_check_value().expect("KP"),
        Some(KeyCheckValue {
            algorithm: KcvAlgorithm::Cmac,
            value: h("D77F007724")
        })
    );
    assert_eq!(header.time_stamp(), Some("20200818221218Z"));
}

/// ANSI X9.143:2021 8.6 (openemv/tr31 test18): version D wrapping an EC private key, CT with
/// extended length (`CT` `00` `04` `05CC`), KP, TS and PB.
#[test]
fn kat_x9_143_8_6_extended_length_ec_key() {
    let (header, key) = unwrap_ok(
        "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
        X9143_8_6_BLOCK,
    );
    assert_eq!(key, h(X9143_8_6_KEY));
    assert_eq!(header.algorithm, Algorithm::Ec);
    assert_eq!(
        header.kbpk_check_value().expect("KP"),
        Some(KeyCheckValue {
            algorithm: KcvAlgorithm::Cmac,
            value: h("2331550BC9")
        })
    );
    assert_eq!(header.time_stamp(), Some("20200818004100Z"));
}

/// psec documentation example for `psec.tr31.unwrap` (ASCII bytes used as keys).
#[test]
fn kat_psec_documentation_version_b() {
    let (_, key) = tr31::unwrap(
        b"FFFFFFFFEEEEEEEE",
        "B0096P0TE00N0000A800A7D1A4C0C1BE762177E1CC59D84844EB67C9F6432B2CA34187AE2E0385EBEE2231697BC5DAE8",
    )
    .expect("unwrap");
    assert_eq!(key.expose(), b"CCCCCCCCDDDDDDDD");
}

/// openemv/tr31 `test/tr31_decode_test.c` tests 1 and 4: header parsing with KS, KC, KP.
#[test]
fn kat_decode_headers_ks_kc_kp() {
    let (header, layout) = KeyBlockHeader::parse(
        "B0104B1TX00S0100KS18820220A0200001E00000B51725B5DD1F18D7A28B3EBD15BA8DE978DC20E5FA695FEAA249855AA226C65F",
    )
    .expect("parse");
    assert_eq!(layout.block_length, 104);
    assert_eq!(layout.header_length, 40);
    assert_eq!(header.key_usage, KeyUsage::B1);
    assert_eq!(
        header.key_set_identifier().expect("KS"),
        Some(h("820220A0200001E00000"))
    );

    let (header, layout) = KeyBlockHeader::parse(
        "B0128B1TX00N0300KS18FFFF00A0200001E00000KC0C000169E3KP0C00ECAD626F9F1A826814AA066D86C8C18BD0E14033E1EBEC75BEDF586E6E325F3AA8C0E5",
    )
    .expect("parse");
    assert_eq!(layout.header_length, 64);
    assert_eq!(
        header.key_set_identifier().expect("KS"),
        Some(h("FFFF00A0200001E00000"))
    );
    assert_eq!(
        header.key_check_value().expect("KC"),
        Some(KeyCheckValue {
            algorithm: KcvAlgorithm::Legacy,
            value: h("0169E3")
        })
    );
    assert_eq!(
        header.kbpk_check_value().expect("KP"),
        Some(KeyCheckValue {
            algorithm: KcvAlgorithm::Legacy,
            value: h("ECAD62")
        })
    );
}

/// openemv/tr31 `src/CMakeLists.txt` export test: header with IK and a zero PB block
/// (`D0144B1AX00N0200IK141234567890123456PB0C00000000`).
#[test]
fn kat_header_with_ik() {
    let text = "D0144B1AX00N0200IK141234567890123456PB0C00000000";
    let (header, layout) = KeyBlockHeader::parse(text).expect("parse");
    assert_eq!(layout.header_length, 48);
    assert_eq!(
        header.initial_key_id().expect("IK"),
        Some(h("1234567890123456"))
    );
    assert_eq!(header.format(144).expect("format"), text);
}

// ------------------------------------------------------------------------------------------
// Wrap known answers (deterministic padding)
// ------------------------------------------------------------------------------------------

fn wrap_kat(kbpk: &str, header: &str, key: &str, padding: &str, expected: &str) {
    assert_eq!(&expected[..16], header, "the published header");
    let (header, _) = KeyBlockHeader::parse(header).expect("header");
    let mut rng = FixedRng::new(h(padding));
    let block =
        tr31::wrap(&h(kbpk), &header, &h(key), KeyLengthMasking::None, &mut rng).expect("wrap");
    assert_eq!(block, expected);
}

/// TR-31:2018 A.7.4 with its published padding.
#[test]
fn wrap_kat_tr31_2018_a_7_4_version_d() {
    wrap_kat(
        "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6",
        "D0112P0AE00E0000",
        "3F419E1CB7079442AA37474C2EFBF8B8",
        "1C2965473CE206BB855B01533782",
        "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34",
    );
}

/// chhil/TR31Keyblock `testKeyBlockTypeA` (BP-Tools, zero padding): version A.
#[test]
fn wrap_kat_bp_tools_version_a() {
    wrap_kat(
        "89E88CF7931444F334BD7547FC3F380C",
        "A0072P0TE00E0000",
        "F039121BEC83D26B169BDCD5B22AAF8F",
        "",
        "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B",
    );
}

/// chhil/TR31Keyblock `test2TDEAKeyBlockTypeC` (BP-Tools, zero padding): version C.
#[test]
fn wrap_kat_bp_tools_version_c() {
    wrap_kat(
        "89E88CF7931444F334BD7547FC3F380C",
        "C0072P0TE00E0000",
        "F03C141BEC83D26B169BDCD5B22AAF8F",
        "",
        "C0072P0TE00E00002B828E2A2249B239404A842BC2DBCB90681D684B8914D4D4BC03C461",
    );
}

/// chhil/TR31Keyblock `test2TDEAKeyBlockTypeB_2`, `test2TDEAKeyBlockTypeB` and
/// `test3TDEAKeyBlockTypeB` (BP-Tools, zero padding): version B with 2- and 3-key KBPKs.
#[test]
fn wrap_kat_bp_tools_version_b() {
    wrap_kat(
        "DD7515F2BFC17F85CE48F3CA25CB21F6",
        "B0080P0TE00E0000",
        "3F419E1CB7079442AA37474C2EFBF8B8",
        "",
        "B0080P0TE00E0000A2C7F59BE6B748A73A56D613E9DAFCAB38FD56EB5496120F0E16D23DF31E7CD8",
    );
    wrap_kat(
        "F039121BEC83D26B169BDCD5B22AAF8FF039121BEC83D26B",
        "B0096P0TB00E0000",
        "260892192061C8760BDF235E1619B057B334FED0EFA74F32",
        "",
        "B0096P0TB00E0000362D6B7B5D73969D3560CB6EE142206A34C9A0D5736619868843D35054F36B11C1BFFAA30E1EFB5D",
    );
    wrap_kat(
        "260892192061C8760BDF235E1619B057B334FED0EFA74F32",
        "B0080P0TE00E0000",
        "F039121BEC83D26B169BDCD5B22AAF8F",
        "",
        "B0080P0TE00E00009AFD3EC2FB89B35F6CAE8889D7777611DFE04DA850A298BFD07667601FC01825",
    );
}

/// Obfuscation lengths match the published X9.143 8.1 block: a 16-byte AES key padded as a
/// 32-byte one gives a 144-character block.
#[test]
fn algorithm_max_masking_matches_published_length() {
    let (header, _) = KeyBlockHeader::parse("D0112P0AE00E0000").expect("header");
    let block = tr31::wrap(
        &h("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"),
        &header,
        &h("3F419E1CB7079442AA37474C2EFBF8B8"),
        KeyLengthMasking::AlgorithmMax,
        &mut FixedRng::zeros(),
    )
    .expect("wrap");
    assert!(block.starts_with("D0144P0AE00E0000"), "{block}");
}

/// A header whose optional blocks are not a multiple of the cipher block gets a PB block.
#[test]
fn wrap_adds_padding_block() {
    let mut header = KeyBlockHeader::new(
        Version::B,
        KeyUsage::B1,
        Algorithm::Tdes,
        ModeOfUse::Derive,
        Exportability::Sensitive,
    );
    header
        .optional_blocks
        .push(OptionalBlock::key_set_identifier(&h("FFFF00A0200001E00000")).expect("KS"));
    header.optional_blocks.push(
        OptionalBlock::key_check_value(&KeyCheckValue {
            algorithm: KcvAlgorithm::Legacy,
            value: h("0169E3"),
        })
        .expect("KC"),
    );
    header
        .optional_blocks
        .push(OptionalBlock::time_stamp("20200818221218Z").expect("TS"));
    let kbpk = h("1D22BF32387C600AD97F9B97A51311AC");
    let key = h("E8BC63E5479455E26577F715D587FE68");
    let block = tr31::wrap(
        &kbpk,
        &header,
        &key,
        KeyLengthMasking::AlgorithmMax,
        &mut rand::thread_rng(),
    )
    .expect("wrap");
    let (parsed, key_back) = tr31::unwrap(&kbpk, &block).expect("unwrap");
    assert_eq!(key_back.expose(), key.as_slice());
    assert_eq!(
        parsed.optional_blocks.last().map(OptionalBlock::id),
        Some("PB")
    );
    assert_eq!(parsed.optional_blocks.len(), 4);
    assert_eq!(parsed.time_stamp(), Some("20200818221218Z"));
}

// ------------------------------------------------------------------------------------------
// Malformed input
// ------------------------------------------------------------------------------------------

const A_7_4_KBPK: &str = "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6";
const A_7_4_BLOCK: &str = "D0112P0AE00E0000B82679114F470F540165EDFBF7E250FCEA43F810D215F8D207E2E417C07156A27E8E31DA05F7425509593D03A457DC34";

fn unwrap_err(block: &str) -> CryptoError {
    tr31::unwrap(&h(A_7_4_KBPK), block).expect_err("must fail")
}

fn is_format(error: &CryptoError) -> bool {
    matches!(error, CryptoError::InvalidFormat { .. })
}

#[test]
fn bad_length_field() {
    // Not digits.
    assert!(is_format(&unwrap_err(
        &A_7_4_BLOCK.replacen("0112", "01X2", 1)
    )));
    // Digits, but not the block's length.
    assert!(is_format(&unwrap_err(
        &A_7_4_BLOCK.replacen("0112", "0128", 1)
    )));
    // Shorter than the header itself.
    assert!(is_format(&unwrap_err(
        &A_7_4_BLOCK.replacen("0112", "0008", 1)
    )));
    // Truncated block.
    assert!(is_format(&unwrap_err(&A_7_4_BLOCK[..100])));
    // Shorter than a header.
    assert!(matches!(
        unwrap_err("D0112P0AE"),
        CryptoError::InvalidLength { .. }
    ));
}

#[test]
fn bad_version() {
    assert!(matches!(
        unwrap_err(&A_7_4_BLOCK.replacen('D', "E", 1)),
        CryptoError::Unsupported(_)
    ));
    assert!(is_format(&unwrap_err(&A_7_4_BLOCK.replacen('D', "*", 1))));
}

#[test]
fn unknown_usage_and_fields() {
    // Not a usage code at all.
    assert!(is_format(&unwrap_err(&A_7_4_BLOCK.replacen("P0", "p!", 1))));
    // A well-formed but unknown usage parses as Other (and then fails the MAC).
    let (header, _) = KeyBlockHeader::parse(&A_7_4_BLOCK.replacen("P0", "Z9", 1)).expect("parse");
    assert_eq!(header.key_usage, KeyUsage::Other("Z9".to_owned()));
    assert_eq!(
        unwrap_err(&A_7_4_BLOCK.replacen("P0", "Z9", 1)),
        CryptoError::VerificationFailed("TR-31 key block MAC")
    );
    // Bad exportability, bad optional block count, non-ASCII.
    assert!(is_format(&unwrap_err(
        &A_7_4_BLOCK.replacen("AE00E00", "AE00X00", 1)
    )));
    assert!(is_format(&unwrap_err(
        &A_7_4_BLOCK.replacen("E0000", "E0A00", 1)
    )));
    assert!(is_format(&unwrap_err(&format!("{}é", &A_7_4_BLOCK[..20]))));
}

#[test]
fn truncated_optional_block() {
    // The count says one block, the block's length runs past the text.
    let error = KeyBlockHeader::parse("B0104B0TX12S0100KS1800604B12").expect_err("truncated");
    assert!(is_format(&error), "{error:?}");
    // The count says two blocks, only one is there (the rest is not a block header).
    let error = KeyBlockHeader::parse(
        "B0104B0TX12S0200KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627",
    )
    .expect_err("count");
    assert!(is_format(&error), "{error:?}");
    // Block length shorter than its own header, non-hex length, bad extended length.
    assert!(is_format(
        &KeyBlockHeader::parse("B0104B0TX12S0100KS0300").expect_err("short")
    ));
    assert!(is_format(
        &KeyBlockHeader::parse("B0104B0TX12S0100KSZZ00").expect_err("hex")
    ));
    assert!(is_format(
        &KeyBlockHeader::parse("B0104B0TX12S0100KS0009FFFFFFFFF").expect_err("ext")
    ));
    assert!(is_format(
        &KeyBlockHeader::parse("B0104B0TX12S0100KS000405").expect_err("ext cut")
    ));
    // KS that is not hex (the invalid ANSI X9.143:2021 8.2 example, per openemv/tr31).
    assert!(is_format(
        &KeyBlockHeader::parse("D0192C0AVA1N0300KS08VM9ATS1A2018-06-18T20:42:39.22PB0E0000000000")
            .expect_err("KS")
    ));
}

#[test]
fn mac_mismatch_is_verification_failed() {
    let expected = CryptoError::VerificationFailed("TR-31 key block MAC");
    // Last MAC digit flipped.
    let mut tampered = A_7_4_BLOCK.to_owned();
    tampered.replace_range(111..112, "5");
    assert_eq!(unwrap_err(&tampered), expected);
    // Header field changed (mode of use E -> D).
    assert_eq!(
        unwrap_err(&A_7_4_BLOCK.replacen("P0AE", "P0AD", 1)),
        expected
    );
    // Ciphertext changed.
    let mut tampered = A_7_4_BLOCK.to_owned();
    tampered.replace_range(16..17, "C");
    assert_eq!(unwrap_err(&tampered), expected);
    // Wrong KBPK, each version.
    let wrong = h("00112233445566778899AABBCCDDEEFF");
    for block in [
        "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701",
        "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E",
        "C0072K0TN00N0000C9B875FF7A5316BF221C09ED52080DE0B45632A4EA9CE87699CB565E",
        A_7_4_BLOCK,
    ] {
        assert_eq!(
            tr31::unwrap(&wrong, block).expect_err("wrong key"),
            expected,
            "{block}"
        );
    }
}

/// The claimed key length is only read after the MAC verified: a tampered length field
/// (inside the ciphertext) fails verification. (The "claims more than the payload holds" case
/// needs a validly MACed bad payload; it is a unit test in `src/tr31.rs`.)
#[test]
fn tampered_key_length_fails_the_mac() {
    let kbpk = h("1D22BF32387C600AD97F9B97A51311AC");
    let (header, _) = KeyBlockHeader::parse("B0080P0TE00E0000").expect("header");
    let block = tr31::wrap(
        &kbpk,
        &header,
        &[0x11; 16],
        KeyLengthMasking::None,
        &mut FixedRng::zeros(),
    )
    .expect("wrap");
    let mut tampered = block.clone();
    tampered.replace_range(16..18, if &block[16..18] == "FF" { "EE" } else { "FF" });
    assert_eq!(
        tr31::unwrap(&kbpk, &tampered).expect_err("tampered"),
        CryptoError::VerificationFailed("TR-31 key block MAC")
    );
}

#[test]
fn bad_kbpk_and_body() {
    assert!(matches!(
        tr31::unwrap(&[0; 15], A_7_4_BLOCK),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(matches!(
        tr31::unwrap(
            &[0; 32],
            "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701"
        ),
        Err(CryptoError::InvalidLength { .. })
    ));
    // Non-hex body of the right length.
    let mut body = A_7_4_BLOCK.to_owned();
    body.replace_range(20..21, "G");
    assert_eq!(
        unwrap_err(&body),
        CryptoError::InvalidHex("TR-31 key block")
    );
    // Header not a multiple of the AES block: one 8-character optional block.
    let odd = format!("D0080P0AE00E0100PB080000{}", "0".repeat(56));
    assert!(is_format(&unwrap_err(&odd)));
    // Body without a whole ciphertext block.
    assert!(is_format(&unwrap_err(&format!(
        "D0048P0AE00E0000{}",
        "0".repeat(32)
    ))));
}

#[test]
fn wrap_rejects_bad_input() {
    let header = KeyBlockHeader::new(
        Version::D,
        KeyUsage::P0,
        Algorithm::Aes,
        ModeOfUse::Encrypt,
        Exportability::Exportable,
    );
    let kbpk = [0x41; 32];
    assert!(matches!(
        tr31::wrap(
            &kbpk,
            &header,
            &[],
            KeyLengthMasking::None,
            &mut FixedRng::zeros()
        ),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(matches!(
        tr31::wrap(
            &kbpk[..20],
            &header,
            &[1; 16],
            KeyLengthMasking::None,
            &mut FixedRng::zeros()
        ),
        Err(CryptoError::InvalidLength { .. })
    ));
    assert!(matches!(
        tr31::wrap(
            &kbpk,
            &header,
            &[1; 5000],
            KeyLengthMasking::None,
            &mut FixedRng::zeros()
        ),
        Err(CryptoError::OutOfRange { .. })
    ));
    assert!(matches!(
        tr31::wrap(
            &kbpk,
            &header,
            &[1; 16],
            KeyLengthMasking::AtLeast(usize::MAX),
            &mut FixedRng::zeros()
        ),
        Err(CryptoError::OutOfRange { .. })
    ));
    let mut bad = header.clone();
    bad.key_version = "0".to_owned();
    assert!(
        tr31::wrap(
            &kbpk,
            &bad,
            &[1; 16],
            KeyLengthMasking::None,
            &mut FixedRng::zeros()
        )
        .is_err()
    );
    assert!(OptionalBlock::new("K", "00").is_err());
    assert!(OptionalBlock::new("IK", "1234").is_err());
    assert!(OptionalBlock::new("KC", "02ABCDEF").is_err());
    assert!(OptionalBlock::new("ZZ", "tab\tinside").is_err());
}

#[test]
fn long_optional_block_uses_extended_length() {
    let mut header = KeyBlockHeader::new(
        Version::D,
        KeyUsage::D0,
        Algorithm::Aes,
        ModeOfUse::Both,
        Exportability::NonExportable,
    );
    header
        .optional_blocks
        .push(OptionalBlock::new("LB", &"x".repeat(300)).expect("LB"));
    let text = header.format(9000).expect("format");
    assert!(
        text.contains(&format!("LB0004{:04X}x", 300 + 10)),
        "{}",
        &text[..32]
    );
    let (parsed, layout) = KeyBlockHeader::parse(&text).expect("parse");
    assert_eq!(parsed, header);
    assert_eq!(layout.header_length, text.len());
}

// ------------------------------------------------------------------------------------------
// Properties
// ------------------------------------------------------------------------------------------

fn code_strategy(len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Z0-9]{{{len}}}")).expect("regex")
}

fn optional_block_strategy() -> impl Strategy<Value = OptionalBlock> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..12)
            .prop_map(|ksn| OptionalBlock::key_set_identifier(&ksn).expect("KS")),
        proptest::collection::vec(any::<u8>(), 8..=8)
            .prop_map(|ik| OptionalBlock::initial_key_id(&ik).expect("IK")),
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 1..6)).prop_map(|(cmac, value)| {
            let algorithm = if cmac {
                KcvAlgorithm::Cmac
            } else {
                KcvAlgorithm::Legacy
            };
            OptionalBlock::key_check_value(&KeyCheckValue { algorithm, value }).expect("KC")
        }),
        "[0-9]{14}Z".prop_map(|ts| OptionalBlock::time_stamp(&ts).expect("TS")),
        ("[A-Z][A-Z0-9]", "[ -~]{0,300}")
            .prop_filter("validated IDs have their own strategies", |(id, _)| {
                !["KS", "IK", "KC", "KP", "TS"].contains(&id.as_str())
            })
            .prop_map(|(id, data)| OptionalBlock::new(&id, &data).expect("block")),
    ]
}

fn header_strategy(version: Version) -> impl Strategy<Value = KeyBlockHeader> {
    (
        code_strategy(2),
        code_strategy(1),
        code_strategy(1),
        "[0-9A-Za-z]{2}",
        prop_oneof![
            Just(Exportability::Exportable),
            Just(Exportability::NonExportable),
            Just(Exportability::Sensitive)
        ],
        proptest::collection::vec(optional_block_strategy(), 0..4),
    )
        .prop_map(
            move |(usage, algorithm, mode, key_version, exportability, optional_blocks)| {
                KeyBlockHeader {
                    version,
                    key_usage: KeyUsage::from_code(&usage).expect("usage"),
                    algorithm: Algorithm::from_code(&algorithm).expect("algorithm"),
                    mode_of_use: ModeOfUse::from_code(&mode).expect("mode"),
                    key_version,
                    exportability,
                    reserved: "00".to_owned(),
                    optional_blocks,
                }
            },
        )
}

fn version_strategy() -> impl Strategy<Value = Version> {
    prop_oneof![
        Just(Version::A),
        Just(Version::B),
        Just(Version::C),
        Just(Version::D)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn wrap_then_unwrap_returns_the_key(
        (version, header) in version_strategy().prop_flat_map(|v| (Just(v), header_strategy(v))),
        kbpk_seed in any::<[u8; 32]>(),
        kbpk_choice in 0_usize..3,
        key in proptest::collection::vec(any::<u8>(), 1..48),
        masking in prop_oneof![Just(KeyLengthMasking::None), Just(KeyLengthMasking::AlgorithmMax), (0_usize..64).prop_map(KeyLengthMasking::AtLeast)],
        rng_seed in any::<u64>(),
    ) {
        let kbpk_len = match (version, kbpk_choice) {
            (Version::D, 0) => 16,
            (Version::D, 1) => 24,
            (Version::D, _) => 32,
            (_, 0 | 1) => 16,
            _ => 24,
        };
        let kbpk = &kbpk_seed[..kbpk_len];
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(rng_seed);
        let block = tr31::wrap(kbpk, &header, &key, masking, &mut rng).expect("wrap");
        let (parsed, key_back) = tr31::unwrap(kbpk, &block).expect("unwrap");
        prop_assert_eq!(key_back.expose(), key.as_slice());
        let mut without_pb = parsed.clone();
        without_pb.optional_blocks.retain(|b| b.id() != "PB");
        let mut expected = header.clone();
        expected.optional_blocks.retain(|b| b.id() != "PB");
        prop_assert_eq!(without_pb, expected);
        prop_assert_eq!(parsed.formatted_len() % version.block_size(), 0);
    }

    #[test]
    fn parse_format_round_trip(
        header in version_strategy().prop_flat_map(header_strategy),
        extra in 0_usize..100,
    ) {
        let length = header.formatted_len() + extra;
        let text = header.format(length).expect("format");
        let (parsed, layout) = KeyBlockHeader::parse(&text).expect("parse");
        prop_assert_eq!(parsed, header);
        prop_assert_eq!(layout.block_length, length);
        prop_assert_eq!(layout.header_length, text.len());
    }

    #[test]
    fn unwrapping_random_strings_never_panics(text in "[ -~]{0,200}", kbpk_len in 0_usize..40) {
        let kbpk = vec![0x5A; kbpk_len];
        let _ = tr31::unwrap(&kbpk, &text);
        let _ = KeyBlockHeader::parse(&text);
    }

    #[test]
    fn unwrapping_plausible_blocks_never_panics(
        version in "[ABCD]",
        body in "[0-9A-F]{0,160}",
        opt in "(KS[0-9A-F]{2}[0-9A-F]{0,20}|PB0[0-9A-F]0{0,8}|CT0004[0-9A-F]{4}){0,2}",
        count in 0_usize..3,
    ) {
        let header = format!("{version}XXXXP0TE00E{count:02}00{opt}");
        let total = header.len() + body.len();
        let text = format!("{version}{total:04}{}{body}", &header[5..]);
        let _ = tr31::unwrap(&[0x11; 16], &text);
        let _ = tr31::unwrap(&[0x11; 32], &text);
    }
}
