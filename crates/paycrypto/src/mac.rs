//! MACs: ISO 9797-1 algorithms 1 and 3 (padding methods 1, 2, 3), AES-CMAC, TDES-CMAC, HMAC-SHA-256.
