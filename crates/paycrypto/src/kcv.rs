//! Key check values (KCV): TDES and AES, "encrypt zeros" and CMAC forms.
