//! TR-31 / ANSI X9.143 key blocks, versions A, B, C and D.
