//! The connection preface: the first bytes each side sends, before any frame.
//!
//! The client sends `MAGIC` followed by the highest protocol version it speaks (u16,
//! big-endian). The server answers with `MAGIC` and the version the session will use, the
//! lower of the two, or refuses with an ERROR frame if it cannot speak that version. The
//! magic contains a zero byte, CR LF and a non-ASCII byte so that a text protocol, an HTTP
//! request or a line-mangling proxy is caught in the first read.

use crate::error::ProtoError;

/// The 8 bytes that open every Switchboard connection.
pub const MAGIC: [u8; 8] = [0x8A, b'S', b'W', b'B', b'\r', b'\n', 0x00, 0x1A];
/// Length of the preface: magic plus version.
pub const PREFACE_LEN: usize = 10;
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this crate can speak.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// A parsed preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preface {
    pub version: u16,
}

impl Preface {
    /// The preface bytes announcing `version`.
    pub fn encode(version: u16) -> [u8; PREFACE_LEN] {
        let mut out = [0u8; PREFACE_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..].copy_from_slice(&version.to_be_bytes());
        out
    }

    /// Parses a complete preface. An HTTP request gets its own error so that the server
    /// can answer it in HTTP.
    pub fn decode(bytes: &[u8; PREFACE_LEN]) -> Result<Preface, ProtoError> {
        if bytes[..8] != MAGIC {
            if looks_like_http(bytes) {
                return Err(ProtoError::LooksLikeHttp);
            }
            return Err(ProtoError::BadPreface);
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        Ok(Preface { version })
    }

    /// The version a server speaking `MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION` will use
    /// with a client that offered `offered`.
    pub fn negotiate(offered: u16) -> Result<u16, ProtoError> {
        if offered < MIN_PROTOCOL_VERSION {
            return Err(ProtoError::UnsupportedVersion {
                found: offered,
                supported: PROTOCOL_VERSION,
            });
        }
        Ok(offered.min(PROTOCOL_VERSION))
    }
}

fn looks_like_http(bytes: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"PRI ",
    ];
    METHODS.iter().any(|method| bytes.starts_with(method))
}
