//! `mposctl sim`: the manufacturer PKI subcommands write PEM files the simulator (and the
//! platform) read back; bad input is a `bad_request`; a terminal run against nothing fails
//! at its first step with a typed error.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use terminal_sim::{DeviceIdentity, DeviceKeyKind, ManufacturerCa};

fn mposctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args(args)
        .output()
        .expect("run mposctl")
}

/// The last JSON line of stdout.
fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("a line");
    serde_json::from_str(line).expect("json")
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn sim_ca_and_device_write_pem_identities_the_simulator_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let output = mposctl(&[
        "sim",
        "ca",
        "--name",
        "CLI Vendor CA",
        "--out",
        text(&ca_dir),
    ]);
    assert!(output.status.success(), "{output:?}");
    let body = last_json(&output);
    assert_eq!(body["step"], "ca");
    assert_eq!(body["kind"], "p256");
    assert!(ca_dir.join("ca.pem").exists() && ca_dir.join("ca.key").exists());
    let ca = ManufacturerCa::load(&ca_dir).expect("load ca");
    assert_eq!(ca.name(), "CLI Vendor CA");
    // No key on stdout.
    assert!(!String::from_utf8_lossy(&output.stdout).contains("PRIVATE KEY"));

    for (kind, serial, expected) in [
        ("ec", "0a01", DeviceKeyKind::P256),
        ("rsa", "0A02", DeviceKeyKind::Rsa2048),
    ] {
        let device_dir = dir.path().join(format!("device-{kind}"));
        let output = mposctl(&[
            "sim",
            "device",
            "--ca",
            text(&ca_dir),
            "--serial",
            serial,
            "--kind",
            kind,
            "--out",
            text(&device_dir),
        ]);
        assert!(output.status.success(), "{output:?}");
        let body = last_json(&output);
        assert_eq!(body["serial"], serial.to_ascii_uppercase());
        assert_eq!(body["issuer"], "CLI Vendor CA");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("PRIVATE KEY"));
        let device = DeviceIdentity::load(&device_dir).expect("load device");
        assert_eq!(device.kind(), expected);
        assert_eq!(
            device.serial().expect("serial"),
            hex::decode(serial).expect("hex")
        );
        // Issued by the CA: the device certificate names the CA's subject as its issuer.
        let issuer = paycrypto::tr34::CertificateId::of_certificate(device.certificate_der())
            .expect("certificate")
            .issuer;
        assert!(issuer.contains("CLI Vendor CA"), "{issuer}");
    }

    // An RSA CA on request.
    let rsa_dir = dir.path().join("rsa-ca");
    let output = mposctl(&[
        "sim",
        "ca",
        "--name",
        "RKI",
        "--kind",
        "rsa",
        "--out",
        text(&rsa_dir),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(last_json(&output)["kind"], "rsa2048");
}

#[test]
fn sim_refuses_bad_input_and_reports_the_failed_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    assert!(
        mposctl(&["sim", "ca", "--name", "V", "--out", text(&ca_dir)])
            .status
            .success()
    );
    let output = mposctl(&[
        "sim",
        "device",
        "--ca",
        text(&ca_dir),
        "--serial",
        "xyz",
        "--kind",
        "ec",
        "--out",
        text(&dir.path().join("d")),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(last_json(&output)["code"], "bad_request");
    // A CA directory without a CA.
    let output = mposctl(&[
        "sim",
        "device",
        "--ca",
        text(&dir.path().join("nothing")),
        "--serial",
        "01",
        "--kind",
        "ec",
        "--out",
        text(&dir.path().join("d")),
    ]);
    assert!(!output.status.success());

    // A terminal run against a closed port stops at activation.
    let device_dir = dir.path().join("device");
    assert!(
        mposctl(&[
            "sim",
            "device",
            "--ca",
            text(&ca_dir),
            "--serial",
            "01",
            "--kind",
            "ec",
            "--out",
            text(&device_dir),
        ])
        .status
        .success()
    );
    let ca_pem = ca_dir.join("ca.pem");
    let output = mposctl(&[
        "sim",
        "terminal",
        "--terminal-id",
        "t-1",
        "--device",
        text(&device_dir),
        "--tms-url",
        "https://127.0.0.1:1",
        "--ki-url",
        "https://127.0.0.1:1",
        "--server-ca",
        text(&ca_pem),
        "--kdh-ca",
        text(&ca_pem),
        "--key-wait-secs",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let body = last_json(&output);
    assert_eq!(body["step"], "activate", "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    // A PAN given on the command line never comes back in full.
    let output = mposctl(&[
        "sim",
        "terminal",
        "--terminal-id",
        "t-1",
        "--device",
        text(&device_dir),
        "--tms-url",
        "https://127.0.0.1:1",
        "--ki-url",
        "https://127.0.0.1:1",
        "--server-ca",
        text(&ca_pem),
        "--kdh-ca",
        text(&ca_pem),
        "--pan",
        "12345",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("12345"));
}
