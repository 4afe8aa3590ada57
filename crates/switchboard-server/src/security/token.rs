//! Named bearer tokens, known to the server only by their SHA-256 and compared in
//! constant time, so that neither the configuration nor the timing of a refusal gives
//! a token away.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a token, as `[[tokens]] sha256` holds it (in hex).
pub fn token_sha256(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Parses a `sha256` value: 64 hex digits.
pub fn parse_sha256(hex_digest: &str) -> Result<[u8; 32], String> {
    let bytes =
        hex::decode(hex_digest.trim()).map_err(|_| "sha256 must be 64 hex digits".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "sha256 must be 64 hex digits".to_owned())
}

/// Whether two secrets are equal, in time that depends only on their lengths.
pub(crate) fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The configured tokens' digests, by index in the configuration.
#[derive(Default)]
pub(crate) struct TokenTable {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for TokenTable {
    // Digests stay out of logs: only how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.digests.len())
            .finish()
    }
}

impl TokenTable {
    pub fn new(digests: Vec<[u8; 32]>) -> TokenTable {
        TokenTable { digests }
    }

    /// The index of the token `presented` is, if any. Every digest is compared, whatever
    /// matches.
    pub fn find(&self, presented: &[u8]) -> Option<usize> {
        let digest = token_sha256(presented);
        let mut found = None;
        for (index, known) in self.digests.iter().enumerate() {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(index);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_digest() {
        let table = TokenTable::new(vec![token_sha256(b"one"), token_sha256(b"two")]);
        assert_eq!(table.find(b"two"), Some(1));
        assert_eq!(table.find(b"three"), None);
        let hex = hex::encode(token_sha256(b"one"));
        assert_eq!(parse_sha256(&hex).unwrap(), token_sha256(b"one"));
        assert!(parse_sha256("abc").is_err());
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }
}
