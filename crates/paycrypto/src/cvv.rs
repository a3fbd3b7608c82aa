//! Card validation values: CVV/CVC, CVV2, iCVV.
