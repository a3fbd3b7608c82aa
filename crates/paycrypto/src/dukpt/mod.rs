//! DUKPT: TDES (ANSI X9.24-1:2009) and AES (ANSI X9.24-3-2017), host and device sides.

pub mod aes;
pub mod tdes;
