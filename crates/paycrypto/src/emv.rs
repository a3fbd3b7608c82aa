//! EMV: ICC master key derivation (options A and B), session keys, ARQC and ARPC.
