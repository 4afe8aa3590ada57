//! HMAC-SHA256 frame authentication with a pre-shared key.
//!
//! The tag covers the fixed prefix (with both CRCs), the header block and the content, so
//! nothing in a frame can be altered without the key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::frame::MAC_TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// A pre-shared key, prepared once so that each frame only clones the keyed state.
#[derive(Clone)]
pub struct MacKey {
    keyed: HmacSha256,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    /// A key from raw bytes. Any length is accepted (HMAC hashes long keys).
    pub fn new(key: &[u8]) -> MacKey {
        // HMAC accepts keys of any length, so this constructor cannot fail.
        let keyed = match <HmacSha256 as Mac>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        };
        MacKey { keyed }
    }

    /// The tag over the given parts, in order.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; MAC_TAG_LEN] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag over `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}
