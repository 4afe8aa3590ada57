//! Passwords, kept as argon2id hashes in PHC form (`$argon2id$v=19$m=...`). Hashing is
//! deliberately slow, so it runs on the blocking pool, never on the async threads.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};

/// Hashes a password with argon2id and a fresh random salt, as `switchboard passwd`
/// prints it.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| PasswordError(error.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| PasswordError(error.to_string()))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError(error.to_string()))
}

/// Checks that `phc` is an argon2id hash this server can verify against.
pub fn check_password_hash(phc: &str) -> Result<(), PasswordError> {
    let hash = PasswordHash::new(phc)
        .map_err(|error| PasswordError(format!("not a PHC password hash ({error})")))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(PasswordError(format!(
            "the hash is {}, not argon2id (make one with `switchboard passwd`)",
            hash.algorithm
        )));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err(PasswordError(
            "the hash has no salt or no output".to_owned(),
        ));
    }
    Argon2::default()
        .verify_password(b"", &hash)
        .or_else(|error| match error {
            argon2::password_hash::Error::Password => Ok(()),
            error => Err(PasswordError(format!("unusable hash ({error})"))),
        })
}

/// A password hash refused, or hashing failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordError(String);

/// Whether `password` matches `phc`. Blocking: call it from the blocking pool.
pub(crate) fn verify_blocking(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, verified for unknown users so that a wrong user costs
/// the same time as a wrong password.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 32];
        let _ = getrandom::fill(&mut secret);
        // Falls back to a fixed hash (of default cost) should hashing ever fail.
        hash_password(&secret).unwrap_or_else(|_| FALLBACK_HASH.to_owned())
    })
}

const FALLBACK_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$o0bZqOVTXbH2PAkYPdRrZw4WAYRqc5S0p3jR9h5/3tE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        check_password_hash(&hash).unwrap();
        assert!(verify_blocking(&hash, b"correct horse"));
        assert!(!verify_blocking(&hash, b"wrong"));
        assert!(!verify_blocking(dummy_hash(), b""));
    }

    #[test]
    fn bad_hashes_are_refused() {
        for bad in [
            "",
            "plaintext",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$o0bZqOVTXbH2PAkYPdRrZw4WAYRqc5S0p3jR9h5/3tE",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
        ] {
            assert!(check_password_hash(bad).is_err(), "{bad}");
        }
        check_password_hash(FALLBACK_HASH).unwrap();
    }
}
