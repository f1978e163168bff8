//! Role passwords without sending them in clear: SCRAM-SHA-256 verifiers are
//! computed here, and a stored verifier is checked against the file's
//! password without the server ever returning or logging the password.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A fresh verifier (random salt, 4096 iterations), as `CREATE ROLE ... PASSWORD` accepts it.
pub fn new_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// The most PBKDF2 iterations pgrepl computes to check a stored verifier
/// (PostgreSQL makes 4096 by default; a node could store 2^31, which would
/// take minutes). A verifier above it counts as a mismatch, so the password
/// is set again, with a fresh verifier of the default count.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Whether `stored` (from `pg_authid.rolpassword`) is a verifier of `password`.
/// MD5 verifiers count as a mismatch: scram-sha-256 rules reject them, and
/// so does an iteration count of 0 or above `MAX_ITERATIONS`.
pub fn verifies(stored: &str, password: &str) -> bool {
    let Some(rest) = stored.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((iter_salt, keys)) = rest.split_once('$') else {
        return false;
    };
    let (Some((iter, salt)), Some((stored_key, server_key))) =
        (iter_salt.split_once(':'), keys.split_once(':'))
    else {
        return false;
    };
    let (Ok(iter), Ok(salt), Ok(stored_key), Ok(server_key)) = (
        iter.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(stored_key),
        STANDARD.decode(server_key),
    ) else {
        return false;
    };
    if iter == 0 || iter > MAX_ITERATIONS {
        return false;
    }
    let salted = hi(&normalize(password), &salt, iter);
    let client_key = hmac(&salted, b"Client Key");
    let server = hmac(&salted, b"Server Key");
    let stored = Sha256::digest(client_key);
    stored.as_slice() == stored_key.as_slice() && server.as_slice() == server_key.as_slice()
}

/// SASLprep as PostgreSQL applies it; invalid input is used as raw bytes.
fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one block: RFC 5802's Hi().
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    m.update(salt);
    m.update(&[0, 0, 0, 1]);
    let mut prev: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = prev;
    for _ in 1..iterations {
        prev = hmac(password, &prev);
        for (o, p) in out.iter_mut().zip(prev.iter()) {
            *o ^= p;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_verifier_verifies_its_password_only() {
        for pw in [
            "pw",
            "it's \"quoted\" $(x) \\ ü",
            " leading space",
            "a:b\\c",
        ] {
            let v = new_verifier(pw);
            assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
            assert!(verifies(&v, pw), "{pw}");
            assert!(!verifies(&v, &format!("{pw}x")), "{pw}");
            // (A 2-character password turns up in random base64 about
            // once in 30 verifiers: only longer ones can be checked.)
            assert!(
                pw.len() < 8 || !v.contains(pw),
                "the verifier must not contain the password"
            );
        }
    }

    #[test]
    fn garbage_and_md5_never_verify() {
        for v in [
            "",
            "md5abcdef",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:AA==$AA==:AA==",
            "SCRAM-SHA-256$x:y$z:w",
        ] {
            assert!(!verifies(v, "pw"), "{v}");
        }
    }

    #[test]
    fn a_huge_iteration_count_is_not_computed() {
        // 2^31 - 1 iterations would take minutes: refused at once.
        let v = new_verifier("pw");
        let (head, rest) = v.split_once('$').unwrap();
        let (_, salt_keys) = rest.split_once(':').unwrap();
        let huge = format!("{head}${}:{salt_keys}", i32::MAX);
        let started = std::time::Instant::now();
        assert!(!verifies(&huge, "pw"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let at_limit = format!("{head}${}:{salt_keys}", MAX_ITERATIONS + 1);
        assert!(!verifies(&at_limit, "pw"));
    }
}
