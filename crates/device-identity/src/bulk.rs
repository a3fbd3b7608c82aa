//! Bulk import files: many device certificates with their declared serials.
//!
//! Two formats, each a list of rows of `serial` and `certificate`:
//!
//! * **CSV** (RFC 4180): a header row `serial,certificate` (either case), then one row per
//!   device. `certificate` is either the DER certificate in standard base64 on one line
//!   (whitespace inside is ignored), or a PEM certificate, written either with real line breaks
//!   inside a quoted field or on one line with `\n` escapes.
//! * **JSON**: an array of objects `{"serial": "...", "certificate": "..."}` with no other
//!   fields; `certificate` takes the same two forms (in JSON, PEM line breaks are `\n` anyway).
//!
//! A leading UTF-8 byte order mark is ignored. `serial` is the certificate's serial number in hex, as [`SerialNumber::parse`] reads it,
//! and must equal the serial in the certificate. Rows are numbered from 1 in the order of the
//! data: the CSV header is not a row, the first device is row 1. A file is accepted whole or
//! refused whole, with every invalid row (up to [`MAX_REPORTED_ROW_ERRORS`]) named with its
//! field, so the tenant can fix the file in one go.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;

use crate::x509::MAX_CERTIFICATE_BYTES;
use crate::{DeviceCertificate, Fingerprint, IdentityError, SerialNumber};

/// The most rows a bulk file may hold.
pub const MAX_BULK_ROWS: usize = 10_000;

/// The largest bulk file accepted, in bytes (about 3 KiB a row at the row limit).
pub const MAX_BULK_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// The most row errors a refusal lists (the total is always given).
pub const MAX_REPORTED_ROW_ERRORS: usize = 1_000;

/// One valid row of a bulk file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRow {
    /// The row number, from 1.
    pub row: usize,
    /// The declared serial, equal to the certificate's.
    pub serial: SerialNumber,
    /// The device certificate.
    pub certificate: DeviceCertificate,
}

/// Why a bulk file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// The file is larger than [`MAX_BULK_INPUT_BYTES`].
    #[error("the file is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The file's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The file has more than [`MAX_BULK_ROWS`] rows.
    #[error("the file has more than the {max} rows allowed")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// The file holds no row.
    #[error("the file holds no device")]
    Empty,
    /// The CSV file does not start with the header `serial,certificate`.
    #[error("the first CSV row must be the header `serial,certificate`, found `{found}`")]
    Header {
        /// The first row found (shortened).
        found: String,
    },
    /// The JSON file is not an array.
    #[error("not a JSON array of {{\"serial\", \"certificate\"}} objects: {reason}")]
    Json {
        /// What is wrong.
        reason: String,
    },
    /// Some rows are invalid.
    #[error("{total} invalid rows; the first: {}", first_of(.errors))]
    Rows {
        /// The invalid rows, in file order, at most [`MAX_REPORTED_ROW_ERRORS`].
        errors: Vec<RowError>,
        /// How many errors there are in all.
        total: usize,
    },
}

fn first_of(errors: &[RowError]) -> String {
    errors.first().map(ToString::to_string).unwrap_or_default()
}

/// The field of a row an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BulkField {
    /// The `serial` column.
    Serial,
    /// The `certificate` column.
    Certificate,
    /// The row as a whole (its shape).
    Row,
}

impl BulkField {
    /// The field's name as in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serial => "serial",
            Self::Certificate => "certificate",
            Self::Row => "row",
        }
    }
}

impl fmt::Display for BulkField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with one field of one row.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("row {row}, {field}: {problem}")]
pub struct RowError {
    /// The row number, from 1.
    pub row: usize,
    /// The field.
    pub field: BulkField,
    /// The problem.
    pub problem: RowProblem,
}

/// What is wrong with a field of a row.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// The field is absent or empty.
    #[error("is missing")]
    Missing,
    /// A JSON value that is not a string.
    #[error("must be a string")]
    NotAString,
    /// A JSON row that is not an object.
    #[error("must be an object with `serial` and `certificate`")]
    NotAnObject,
    /// A JSON field other than `serial` and `certificate`.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A CSV row without exactly two columns.
    #[error("must have 2 columns, has {0}")]
    Columns(usize),
    /// A CSV row that cannot be read (e.g. not UTF-8).
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// The certificate is neither base64 DER nor PEM.
    #[error("neither base64 DER nor PEM: {0}")]
    Encoding(String),
    /// The serial or certificate is refused.
    #[error("{0}")]
    Invalid(IdentityError),
    /// The declared serial differs from the certificate's.
    #[error("is {declared}, but the certificate's serial is {actual}")]
    SerialMismatch {
        /// The serial in the file.
        declared: SerialNumber,
        /// The serial in the certificate.
        actual: SerialNumber,
    },
    /// The same certificate (or issuer and serial) is on an earlier row.
    #[error("duplicates row {0}")]
    Duplicate(usize),
}

/// Reads a CSV bulk file (see the [module docs](self)).
pub fn parse_bulk_csv(input: &str) -> Result<Vec<BulkRow>, BulkError> {
    let input = checked_input(input)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => return Err(BulkError::Empty),
        Some(Ok(header)) => header,
        Some(Err(error)) => {
            return Err(BulkError::Header {
                found: shorten(&error.to_string()),
            });
        }
    };
    let header_fields: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    if header_fields != ["serial", "certificate"] {
        return Err(BulkError::Header {
            found: shorten(&header.iter().collect::<Vec<_>>().join(",")),
        });
    }
    let mut collector = Collector::default();
    for (index, record) in records.enumerate() {
        let row = index + 1;
        if row > MAX_BULK_ROWS {
            return Err(BulkError::TooManyRows { max: MAX_BULK_ROWS });
        }
        match record {
            Err(error) => collector.error(
                row,
                BulkField::Row,
                RowProblem::Unreadable(error.to_string()),
            ),
            Ok(record) if record.len() != 2 => {
                collector.error(row, BulkField::Row, RowProblem::Columns(record.len()));
            }
            Ok(record) => collector.row(row, record.get(0), record.get(1)),
        }
    }
    collector.finish()
}

/// Reads a JSON bulk file (see the [module docs](self)).
pub fn parse_bulk_json(input: &str) -> Result<Vec<BulkRow>, BulkError> {
    let input = checked_input(input)?;
    let document: serde_json::Value =
        serde_json::from_str(input).map_err(|error| BulkError::Json {
            reason: error.to_string(),
        })?;
    let serde_json::Value::Array(rows) = document else {
        return Err(BulkError::Json {
            reason: "the top level is not an array".to_owned(),
        });
    };
    if rows.len() > MAX_BULK_ROWS {
        return Err(BulkError::TooManyRows { max: MAX_BULK_ROWS });
    }
    let mut collector = Collector::default();
    for (index, value) in rows.into_iter().enumerate() {
        let row = index + 1;
        let serde_json::Value::Object(object) = value else {
            collector.error(row, BulkField::Row, RowProblem::NotAnObject);
            continue;
        };
        let mut shape_ok = true;
        for key in object.keys() {
            if key != "serial" && key != "certificate" {
                collector.error(row, BulkField::Row, RowProblem::UnknownField(shorten(key)));
                shape_ok = false;
            }
        }
        let serial = json_string(&mut collector, row, BulkField::Serial, object.get("serial"));
        let certificate = json_string(
            &mut collector,
            row,
            BulkField::Certificate,
            object.get("certificate"),
        );
        if let (true, Some(serial), Some(certificate)) = (shape_ok, serial, certificate) {
            collector.row(row, Some(serial), Some(certificate));
        }
    }
    collector.finish()
}

fn json_string<'a>(
    collector: &mut Collector,
    row: usize,
    field: BulkField,
    value: Option<&'a serde_json::Value>,
) -> Option<&'a str> {
    match value {
        None | Some(serde_json::Value::Null) => {
            collector.error(row, field, RowProblem::Missing);
            None
        }
        Some(serde_json::Value::String(text)) => Some(text),
        Some(_) => {
            collector.error(row, field, RowProblem::NotAString);
            None
        }
    }
}

/// Checks the size and drops a leading byte order mark (spreadsheets write one).
fn checked_input(input: &str) -> Result<&str, BulkError> {
    if input.len() > MAX_BULK_INPUT_BYTES {
        return Err(BulkError::TooLarge {
            size: input.len(),
            max: MAX_BULK_INPUT_BYTES,
        });
    }
    Ok(input.strip_prefix('\u{feff}').unwrap_or(input))
}

/// At most 80 characters of `text`, for echoing input in errors.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 80;
    if text.chars().count() <= LIMIT {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(LIMIT).collect();
    short.push('…');
    short
}

/// Reads a certificate field: PEM (with real or `\n`-escaped line breaks) or base64 DER.
fn read_certificate_field(text: &str) -> Result<DeviceCertificate, RowProblem> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        let pem = trimmed.replace("\\n", "\n");
        return DeviceCertificate::from_pem(&pem).map_err(RowProblem::Invalid);
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.len() > 2 * MAX_CERTIFICATE_BYTES {
        return Err(RowProblem::Invalid(IdentityError::TooLarge {
            field: "certificate",
            size: compact.len(),
            max: 2 * MAX_CERTIFICATE_BYTES,
        }));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|error| RowProblem::Encoding(error.to_string()))?;
    DeviceCertificate::from_der(&der).map_err(RowProblem::Invalid)
}

/// Checks rows one by one and keeps the valid ones and the errors.
#[derive(Default)]
struct Collector {
    rows: Vec<BulkRow>,
    errors: Vec<RowError>,
    total_errors: usize,
    /// The row of each certificate fingerprint seen.
    fingerprints: HashMap<Fingerprint, usize>,
    /// The row of each (issuer, serial) seen: serials are unique per issuer only.
    serials: HashMap<(String, SerialNumber), usize>,
}

impl Collector {
    fn error(&mut self, row: usize, field: BulkField, problem: RowProblem) {
        self.total_errors += 1;
        if self.errors.len() < MAX_REPORTED_ROW_ERRORS {
            self.errors.push(RowError {
                row,
                field,
                problem,
            });
        }
    }

    fn row(&mut self, row: usize, serial: Option<&str>, certificate: Option<&str>) {
        let serial = match serial.filter(|text| !text.trim().is_empty()) {
            None => {
                self.error(row, BulkField::Serial, RowProblem::Missing);
                None
            }
            Some(text) => match SerialNumber::parse(text) {
                Ok(serial) => Some(serial),
                Err(error) => {
                    self.error(row, BulkField::Serial, RowProblem::Invalid(error));
                    None
                }
            },
        };
        let certificate = match certificate.filter(|text| !text.trim().is_empty()) {
            None => {
                self.error(row, BulkField::Certificate, RowProblem::Missing);
                None
            }
            Some(text) => match read_certificate_field(text) {
                Ok(certificate) => Some(certificate),
                Err(problem) => {
                    self.error(row, BulkField::Certificate, problem);
                    None
                }
            },
        };
        let (Some(serial), Some(certificate)) = (serial, certificate) else {
            return;
        };
        if serial != *certificate.serial() {
            self.error(
                row,
                BulkField::Serial,
                RowProblem::SerialMismatch {
                    declared: serial,
                    actual: certificate.serial().clone(),
                },
            );
            return;
        }
        if let Some(first) = self.fingerprints.get(&certificate.fingerprint()) {
            let first = *first;
            self.error(row, BulkField::Certificate, RowProblem::Duplicate(first));
            return;
        }
        let issuer_serial = (certificate.issuer().to_owned(), serial.clone());
        if let Some(first) = self.serials.get(&issuer_serial) {
            let first = *first;
            self.error(row, BulkField::Serial, RowProblem::Duplicate(first));
            return;
        }
        self.fingerprints.insert(certificate.fingerprint(), row);
        self.serials.insert(issuer_serial, row);
        self.rows.push(BulkRow {
            row,
            serial,
            certificate,
        });
    }

    fn finish(self) -> Result<Vec<BulkRow>, BulkError> {
        if self.total_errors > 0 {
            return Err(BulkError::Rows {
                errors: self.errors,
                total: self.total_errors,
            });
        }
        if self.rows.is_empty() {
            return Err(BulkError::Empty);
        }
        Ok(self.rows)
    }
}
