//! A one-way fingerprint of a text: for noticing a change (a role's
//! verifier, pg_hba.conf, the cluster file a saved plan was made from) and
//! for naming things after settings (an SSH master). SHA-256, so that no
//! edited text can be made to keep a fingerprint.

use sha2::{Digest, Sha256};

/// The SHA-256 of `s`, 64 lowercase hex digits.
pub fn digest(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_sha256() {
        assert_eq!(
            digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(
            digest("SCRAM-SHA-256$4096:a"),
            digest("SCRAM-SHA-256$4096:b")
        );
    }
}
