//! Source::parse: configuration text to a source, and how sources are shown.

use std::path::PathBuf;

use attestation_trust::{GOOGLE_STATUS_LIST_URL, Source, TrustError};

#[test]
fn parses_builtin_files_and_https_urls() {
    let cases = [
        ("builtin", Source::Builtin),
        ("  BuiltIn \n", Source::Builtin),
        (
            "file:/etc/mpos/roots.pem",
            Source::File(PathBuf::from("/etc/mpos/roots.pem")),
        ),
        (
            "file:///etc/mpos/roots.pem",
            Source::File(PathBuf::from("/etc/mpos/roots.pem")),
        ),
        (
            "FILE:/etc/mpos/roots.pem",
            Source::File(PathBuf::from("/etc/mpos/roots.pem")),
        ),
        (
            "file:relative/roots.pem",
            Source::File(PathBuf::from("relative/roots.pem")),
        ),
        (
            "/var/lib/mpos/status.json",
            Source::File(PathBuf::from("/var/lib/mpos/status.json")),
        ),
        (
            GOOGLE_STATUS_LIST_URL,
            Source::Url(GOOGLE_STATUS_LIST_URL.to_owned()),
        ),
        (
            "HTTPS://mirror.example:8443/status?key=1",
            Source::Url("HTTPS://mirror.example:8443/status?key=1".to_owned()),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Source::parse(text).expect(text), expected, "{text:?}");
    }
}

#[test]
fn refuses_other_schemes_as_not_https() {
    for text in [
        "http://android.googleapis.com/attestation/status",
        "http://127.0.0.1:8080/status",
        "http://localhost/status",
        "ftp://example.com/roots.pem",
    ] {
        assert!(
            matches!(Source::parse(text), Err(TrustError::NotHttps { .. })),
            "{text:?}"
        );
    }
}

#[test]
fn refuses_what_it_does_not_understand() {
    for text in [
        "",
        "   ",
        "relative/roots.pem",
        "roots.pem",
        "file:",
        "file://host/roots.pem",
        "https://",
        "google",
    ] {
        assert!(
            matches!(Source::parse(text), Err(TrustError::InvalidSource { .. })),
            "{text:?}: {:?}",
            Source::parse(text)
        );
    }
}

#[test]
fn display_hides_credentials_and_query() {
    let source =
        Source::parse("https://user:secret@mirror.example/status?token=abc").expect("parses");
    let shown = source.to_string();
    assert_eq!(shown, "https://mirror.example/status?…");
    assert!(!shown.contains("secret") && !shown.contains("abc"));

    let error =
        Source::parse("http://user:secret@mirror.example/status?token=abc").expect_err("http");
    let message = error.to_string();
    assert!(
        !message.contains("secret") && !message.contains("abc"),
        "{message}"
    );

    assert_eq!(Source::Builtin.to_string(), "builtin");
    assert_eq!(
        Source::File(PathBuf::from("/etc/roots.pem")).to_string(),
        "file:/etc/roots.pem"
    );
}
