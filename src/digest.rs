//! A short, one-way fingerprint of a text: for noticing a change (a role's
//! verifier, a plan's text) and for naming things after settings (an SSH
//! master). Not for secrecy: FNV-1a 64, useless to recover anything.

/// The fingerprint of `s`, 16 hex digits.
pub fn digest(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_fnv1a_64() {
        assert_eq!(digest(""), "cbf29ce484222325");
        assert_eq!(digest("a"), "af63dc4c8601ec8c");
        assert_ne!(
            digest("SCRAM-SHA-256$4096:a"),
            digest("SCRAM-SHA-256$4096:b")
        );
    }
}
