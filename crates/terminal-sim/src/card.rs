//! The card data a simulated card presents: track 2 equivalent data.

use std::fmt;

use paycrypto::pin::Pan;
use zeroize::{Zeroize, Zeroizing};

use crate::SimError;

/// Track 2 equivalent data (ISO/IEC 7813 without start and end sentinels and LRC): the PAN,
/// the separator `D` (or `=`), then expiry date, service code and discretionary data as
/// digits. At most 37 characters. `Debug` shows the masked PAN only; zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Track2 {
    text: String,
    pan: Pan,
}

impl Track2 {
    /// Parses track 2 equivalent data, e.g. `4012345678909D987` (the X9.24-1 A.4 message).
    pub fn parse(text: &str) -> Result<Self, SimError> {
        if text.len() > 37 {
            return Err(SimError::InvalidInput(format!(
                "track 2 data: at most 37 characters, got {}",
                text.len()
            )));
        }
        let upper = text.to_ascii_uppercase();
        let (pan, rest) = upper
            .split_once(['D', '='])
            .ok_or_else(|| SimError::InvalidInput("track 2 data: no separator (D or =)".into()))?;
        if !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SimError::InvalidInput(
                "track 2 data: only digits after the separator".into(),
            ));
        }
        let pan = Pan::new(pan)
            .map_err(|error| SimError::InvalidInput(format!("track 2 data: {error}")))?;
        Ok(Self { text: upper, pan })
    }

    /// The PAN.
    pub fn pan(&self) -> &Pan {
        &self.pan
    }

    /// The bytes that are enciphered: the ASCII characters.
    pub(crate) fn expose_ascii(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.text.as_bytes().to_vec())
    }
}

impl Drop for Track2 {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for Track2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Track2({}D***)", self.pan.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let track = Track2::parse("4012345678909D987").expect("track 2");
        assert_eq!(track.pan().masked(), "401234***8909");
        let printed = format!("{track:?}");
        assert!(!printed.contains("4012345678909"), "{printed}");
        assert_eq!(track.expose_ascii().as_slice(), b"4012345678909D987");
        assert_eq!(
            Track2::parse("4012345678909=2512101")
                .expect("=")
                .expose_ascii()
                .as_slice(),
            b"4012345678909=2512101"
        );
    }

    #[test]
    fn refuses_malformed_data_without_echoing_it() {
        for bad in ["4012345678909", "40123D98A", "12D1", &"4".repeat(38)] {
            let error = Track2::parse(bad).expect_err(bad).to_string();
            assert!(!error.contains("4012345678909"), "{error}");
        }
    }
}
