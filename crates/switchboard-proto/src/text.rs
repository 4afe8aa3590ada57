//! [`Text`]: UTF-8 text that shares the buffer it was decoded from.

use bytes::Bytes;

/// An immutable UTF-8 string backed by [`Bytes`], so decoded names and content types
/// borrow the frame's buffer instead of allocating.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Text(Bytes);

/// Hashes as the `str` it is, as `Borrow<str>` requires: a map keyed by `Text` is
/// looked up with `&str`. (`Bytes` hashes as a byte slice, which differs.)
impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Text {
    /// Text from bytes, if they are valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, std::str::Utf8Error> {
        // Names and content types are nearly always ASCII, which is checked a word at a
        // time; the full UTF-8 check is for the rest.
        if !bytes.is_ascii() {
            std::str::from_utf8(&bytes)?;
        }
        Ok(Text(bytes))
    }

    /// Text from a static string, without copying.
    pub const fn from_static(text: &'static str) -> Text {
        Text(Bytes::from_static(text.as_bytes()))
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str` or checks the bytes with
        // `str::from_utf8`, and the bytes are immutable. Checking again on every use cost
        // a measurable share of the publish path (channel names are read several times).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Whether `other` is this very text: the same bytes of the same buffer (then equal
    /// without comparing them, as long as both are held).
    pub fn is_same(&self, other: &Text) -> bool {
        self.0.as_ptr() == other.0.as_ptr() && self.0.len() == other.0.len()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` honours width and alignment, so tables line up.
        f.pad(self.as_str())
    }
}

impl From<String> for Text {
    fn from(value: String) -> Text {
        Text(Bytes::from(value))
    }
}

impl From<&str> for Text {
    fn from(value: &str) -> Text {
        Text(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl From<&String> for Text {
    fn from(value: &String) -> Text {
        Text::from(value.as_str())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_map_keyed_by_text_is_found_by_str() {
        let mut map = HashMap::new();
        map.insert(Text::from("ada"), 1);
        map.insert(
            Text::from_utf8(Bytes::from_static("zoë".as_bytes())).unwrap(),
            2,
        );
        assert_eq!(map.get("ada"), Some(&1));
        assert_eq!(map.get("zoë"), Some(&2));
        assert_eq!(map.get("bob"), None);
    }
}
