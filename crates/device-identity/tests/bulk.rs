//! Bulk import files: CSV and JSON, valid files and every per-row error.

mod common;

use base64::Engine as _;
use common::{TestCa, TestDevice};
use device_identity::{
    BulkError, BulkField, IdentityError, MAX_BULK_INPUT_BYTES, MAX_BULK_ROWS, RowError, RowProblem,
    SerialNumber, parse_bulk_csv, parse_bulk_json,
};

fn base64_der(device: &TestDevice) -> String {
    base64::engine::general_purpose::STANDARD.encode(device.der.as_ref())
}

fn escaped_pem(device: &TestDevice) -> String {
    device.pem.trim_end().replace('\n', "\\n")
}

fn row_errors(result: Result<Vec<device_identity::BulkRow>, BulkError>) -> Vec<RowError> {
    match result {
        Err(BulkError::Rows { errors, total }) => {
            assert_eq!(errors.len(), total);
            errors
        }
        other => panic!("expected row errors, got {other:?}"),
    }
}

#[test]
fn csv_accepts_base64_der_and_both_pem_forms() {
    let ca = TestCa::new("Acme Terminals CA");
    let (first, second, third) = (
        ca.device(&[0x01]),
        ca.device(&[0xab, 0xcd]),
        ca.device(&[0x03]),
    );
    let csv = format!(
        "Serial,Certificate\n01,{}\n\"ab:cd\",\"{}\"\n0x3,{}\n",
        base64_der(&first),
        second.pem,
        escaped_pem(&third),
    );
    let rows = parse_bulk_csv(&csv).expect("valid file");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter().map(|row| row.row).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(rows[0].serial.to_string(), "01");
    assert_eq!(rows[0].certificate, first.certificate());
    assert_eq!(rows[1].serial.to_string(), "ABCD");
    assert_eq!(rows[1].certificate, second.certificate());
    assert_eq!(rows[2].certificate, third.certificate());
}

#[test]
fn csv_tolerates_a_byte_order_mark_crlf_blank_lines_and_spaces() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x10]);
    let csv = format!(
        "\u{feff}serial , certificate\r\n\r\n 10 , {} \r\n\r\n",
        base64_der(&device)
    );
    let rows = parse_bulk_csv(&csv).expect("valid file");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].serial, SerialNumber::parse("10").expect("serial"));
}

#[test]
fn csv_header_is_required() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x01]);
    let error = parse_bulk_csv(&format!("01,{}\n", base64_der(&device))).expect_err("no header");
    assert!(matches!(error, BulkError::Header { .. }), "{error}");
    assert!(
        error.to_string().len() < 200,
        "the echoed row is shortened: {error}"
    );
    assert_eq!(
        parse_bulk_csv("serial,certificate,extra\n"),
        Err(BulkError::Header {
            found: "serial,certificate,extra".to_owned()
        })
    );
    assert_eq!(parse_bulk_csv(""), Err(BulkError::Empty));
    assert_eq!(
        parse_bulk_csv("serial,certificate\n"),
        Err(BulkError::Empty)
    );
}

#[test]
fn csv_row_errors_name_the_row_and_the_field() {
    let ca = TestCa::new("Acme Terminals CA");
    let good = ca.device(&[0x01]);
    let other = ca.device(&[0x02]);
    let server_only = ca.device_with(&[0x05], |params| {
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    let csv = format!(
        "serial,certificate\n\
         01,{good}\n\
         99,{other}\n\
         ,{other}\n\
         zz,{other}\n\
         02,not base64!\n\
         02,\n\
         02\n\
         01,{good}\n\
         05,{server_only}\n\
         02,{ca_der}\n",
        good = base64_der(&good),
        other = base64_der(&other),
        server_only = base64_der(&server_only),
        ca_der = base64::engine::general_purpose::STANDARD.encode(ca.der.as_ref()),
    );
    let errors = row_errors(parse_bulk_csv(&csv));
    let summary: Vec<(usize, BulkField)> = errors
        .iter()
        .map(|error| (error.row, error.field))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, BulkField::Serial),
            (3, BulkField::Serial),
            (4, BulkField::Serial),
            (5, BulkField::Certificate),
            (6, BulkField::Certificate),
            (7, BulkField::Row),
            (8, BulkField::Certificate),
            (9, BulkField::Certificate),
            (10, BulkField::Certificate),
        ]
    );
    assert_eq!(
        errors[0].problem,
        RowProblem::SerialMismatch {
            declared: SerialNumber::parse("99").expect("serial"),
            actual: SerialNumber::parse("02").expect("serial"),
        }
    );
    assert_eq!(
        errors[0].to_string(),
        "row 2, serial: is 99, but the certificate's serial is 02"
    );
    assert_eq!(errors[1].problem, RowProblem::Missing);
    assert!(matches!(
        &errors[2].problem,
        RowProblem::Invalid(IdentityError::Malformed {
            field: "serial",
            ..
        })
    ));
    assert!(matches!(errors[3].problem, RowProblem::Encoding(_)));
    assert_eq!(errors[4].problem, RowProblem::Missing);
    assert_eq!(errors[5].problem, RowProblem::Columns(1));
    assert_eq!(errors[6].problem, RowProblem::Duplicate(1));
    assert_eq!(
        errors[7].problem,
        RowProblem::Invalid(IdentityError::NotAClientCertificate)
    );
    assert_eq!(
        errors[8].problem,
        RowProblem::Invalid(IdentityError::NotAnEndEntity)
    );
}

#[test]
fn a_serial_may_repeat_across_manufacturers_but_not_within_one() {
    let acme = TestCa::new("Acme Terminals CA");
    let other = TestCa::new("Other Terminals CA");
    let csv = format!(
        "serial,certificate\n07,{}\n07,{}\n",
        base64_der(&acme.device(&[7])),
        base64_der(&other.device(&[7])),
    );
    assert_eq!(parse_bulk_csv(&csv).expect("valid").len(), 2);
    let csv = format!(
        "serial,certificate\n07,{}\n07,{}\n",
        base64_der(&acme.device(&[7])),
        base64_der(&acme.device(&[7])),
    );
    let errors = row_errors(parse_bulk_csv(&csv));
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].row, errors[0].field), (2, BulkField::Serial));
    assert_eq!(errors[0].problem, RowProblem::Duplicate(1));
}

#[test]
fn json_accepts_pem_and_base64_der() {
    let ca = TestCa::new("Acme Terminals CA");
    let (first, second) = (ca.device(&[0x0a]), ca.device(&[0x0b]));
    let json = serde_json::json!([
        {"serial": "0A", "certificate": first.pem},
        {"serial": "0b", "certificate": base64_der(&second)},
    ])
    .to_string();
    let rows = parse_bulk_json(&json).expect("valid file");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].certificate, first.certificate());
    assert_eq!(rows[1].serial.to_string(), "0B");
}

#[test]
fn json_row_errors_name_the_row_and_the_field() {
    let ca = TestCa::new("Acme Terminals CA");
    let device = ca.device(&[0x01]);
    let json = serde_json::json!([
        {"serial": "01", "certificate": device.pem},
        "not an object",
        {"serial": 1, "certificate": device.pem},
        {"certificate": device.pem},
        {"serial": "01", "certificate": device.pem, "cert": "typo"},
        {"serial": "02", "certificate": null},
        {"serial": "02", "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
    ])
    .to_string();
    let errors = row_errors(parse_bulk_json(&json));
    let summary: Vec<(usize, BulkField, RowProblem)> = errors
        .iter()
        .map(|error| (error.row, error.field, error.problem.clone()))
        .collect();
    assert_eq!(summary[0], (2, BulkField::Row, RowProblem::NotAnObject));
    assert_eq!(summary[1], (3, BulkField::Serial, RowProblem::NotAString));
    assert_eq!(summary[2], (4, BulkField::Serial, RowProblem::Missing));
    assert_eq!(
        summary[3],
        (
            5,
            BulkField::Row,
            RowProblem::UnknownField("cert".to_owned())
        )
    );
    assert_eq!(summary[4], (6, BulkField::Certificate, RowProblem::Missing));
    assert_eq!((summary[5].0, summary[5].1), (7, BulkField::Certificate));
    assert!(matches!(
        summary[5].2,
        RowProblem::Invalid(IdentityError::Malformed { .. })
    ));
    assert_eq!(summary.len(), 6);
}

#[test]
fn json_document_errors() {
    assert!(matches!(parse_bulk_json("{"), Err(BulkError::Json { .. })));
    assert!(matches!(
        parse_bulk_json(r#"{"serial": "01"}"#),
        Err(BulkError::Json { .. })
    ));
    assert_eq!(parse_bulk_json("[]"), Err(BulkError::Empty));
}

#[test]
fn size_and_row_limits() {
    let too_large = " ".repeat(MAX_BULK_INPUT_BYTES + 1);
    assert_eq!(
        parse_bulk_csv(&too_large),
        Err(BulkError::TooLarge {
            size: MAX_BULK_INPUT_BYTES + 1,
            max: MAX_BULK_INPUT_BYTES
        })
    );
    assert!(matches!(
        parse_bulk_json(&too_large),
        Err(BulkError::TooLarge { .. })
    ));

    let many_csv = format!(
        "serial,certificate\n{}",
        "01,AA\n".repeat(MAX_BULK_ROWS + 1)
    );
    assert_eq!(
        parse_bulk_csv(&many_csv),
        Err(BulkError::TooManyRows { max: MAX_BULK_ROWS })
    );
    let many_json = format!("[{}{{}}]", "{},".repeat(MAX_BULK_ROWS));
    assert_eq!(
        parse_bulk_json(&many_json),
        Err(BulkError::TooManyRows { max: MAX_BULK_ROWS })
    );
}

#[test]
fn the_error_list_is_capped_but_the_total_is_kept() {
    let csv = format!("serial,certificate\n{}", ",\n".repeat(800));
    match parse_bulk_csv(&csv) {
        Err(BulkError::Rows { errors, total }) => {
            // Each row misses both fields.
            assert_eq!(total, 1600);
            assert_eq!(errors.len(), device_identity::bulk::MAX_REPORTED_ROW_ERRORS);
        }
        other => panic!("expected row errors, got {other:?}"),
    }
}
