//! Names and patterns: what a channel or group may be called, how subscription patterns
//! match channels, and how hashtags are found in text.
//!
//! Server and clients share these rules: the server routes a live message to a connection
//! once, and the client hands it to each of its subscriptions that matches, using the
//! same functions.
//!
//! Every name (client, channel, group, hashtag pattern, header name) is made of visible
//! characters only: no control character and no invisible or bidirectional formatting
//! character ([`is_invisible`]), so that two names that look the same are the same name.

/// Longest channel or group name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a name or pattern is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {0} bytes, over the limit of 255")]
    TooLong(usize),
    #[error("name contains whitespace or a control character")]
    BadCharacter,
    #[error(
        "name contains the invisible or bidirectional-control character U+{:04X}; names are visible characters only",
        u32::from(*.0)
    )]
    Invisible(char),
    #[error("name has an empty token (two dots in a row, or a dot at an end)")]
    EmptyToken,
    #[error("wildcards '*' and '>' are for subscription patterns, not channel names")]
    Wildcard,
    #[error("'>' may only be the last token of a pattern")]
    TailNotLast,
    #[error("'*' and '>' must be whole tokens")]
    PartialWildcard,
    #[error("names may not start with '#' (hashtags) or '@' (reserved)")]
    ReservedPrefix,
    #[error("a hashtag is '#' followed by letters, digits or '_'")]
    BadHashtag,
}

/// Longest client name (given at SESSION_INIT), in bytes.
pub const MAX_CLIENT_NAME_LEN: usize = 64;

/// Whether `c` is a character a name may not hold because it cannot be seen, or changes
/// how the text around it is displayed: control characters (C0, DEL, C1), the line and
/// paragraph separators, Unicode's format characters (category Cf: zero-width space,
/// joiners, bidirectional marks, embeddings, overrides and isolates, the byte-order mark,
/// tags) and the other default-ignorable code points (variation selectors, fillers).
///
/// The zero-width joiner and non-joiner are refused too: they matter in emoji sequences
/// and some scripts' prose, but a name is an identifier, and `al\u{200d}ice` must not
/// pass for `alice`.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Refuses a name holding an invisible character ([`is_invisible`]); control characters
/// are reported as such.
fn check_visible(name: &str) -> Result<(), NameError> {
    match name.chars().find(|&c| is_invisible(c)) {
        Some(c) if c.is_control() => Err(NameError::BadCharacter),
        Some(c) => Err(NameError::Invisible(c)),
        None => Ok(()),
    }
}

fn check_common(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(NameError::BadCharacter);
    }
    check_visible(name)
}

/// Why a client name (SESSION_INIT) or a header name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientNameError {
    #[error("a client name is 1 to 64 bytes, not {0}")]
    Length(usize),
    #[error("a client name may not start or end with whitespace")]
    EdgeWhitespace,
    #[error("client {0}")]
    Character(NameError),
}

/// Checks a client name: 1 to 64 bytes of visible characters; spaces are allowed inside
/// ("Ada L."), not at either end, where they would make a second "Ada L.".
pub fn validate_client_name(name: &str) -> Result<(), ClientNameError> {
    if name.is_empty() || name.len() > MAX_CLIENT_NAME_LEN {
        return Err(ClientNameError::Length(name.len()));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(ClientNameError::EdgeWhitespace);
    }
    check_visible(name).map_err(ClientNameError::Character)
}

/// Checks the name of a user header: like a group name (1 to 255 bytes, no whitespace,
/// visible characters only), without the reserved prefixes.
pub fn validate_header_name(name: &str) -> Result<(), NameError> {
    check_common(name)
}

/// Checks a channel name: dot-separated non-empty tokens, no wildcards, no whitespace.
pub fn validate_channel(name: &str) -> Result<(), NameError> {
    check_common(name)?;
    if name.starts_with('#') || name.starts_with('@') {
        return Err(NameError::ReservedPrefix);
    }
    if name.contains(['*', '>']) {
        return Err(NameError::Wildcard);
    }
    if name.split('.').any(str::is_empty) {
        return Err(NameError::EmptyToken);
    }
    Ok(())
}

/// Checks a group name: like a channel name, but dots are just characters.
pub fn validate_group(name: &str) -> Result<(), NameError> {
    check_common(name)?;
    if name.starts_with('#') || name.starts_with('@') {
        return Err(NameError::ReservedPrefix);
    }
    if name.contains(['*', '>']) {
        return Err(NameError::Wildcard);
    }
    Ok(())
}

/// Whether `c` may appear in a hashtag after the '#'.
fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Most hashtags one message is indexed under; later ones are not tags.
pub const MAX_HASHTAGS: usize = 64;

/// The hashtags of a text, lower-cased and without '#', in order of first appearance,
/// each once, at most [`MAX_HASHTAGS`]. A '#' counts only at the start or after a character that cannot be part of
/// a word, so "C#" and "a#b" carry no tag.
pub fn hashtags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    // Duplicates are found by hash, not by searching the list: a body full of distinct
    // tags must cost time linear in its length.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let at_word_start = previous.is_none_or(|p| !is_tag_char(p) && p != '#');
        if c == '#' && at_word_start {
            let start = index + 1;
            let mut end = start;
            while let Some(&(next_index, next)) = chars.peek() {
                if !is_tag_char(next) {
                    break;
                }
                end = next_index + next.len_utf8();
                previous = Some(next);
                chars.next();
            }
            if end > start {
                let tag = text[start..end].to_lowercase();
                if tags.len() < MAX_HASHTAGS && seen.insert(tag.clone()) {
                    tags.push(tag);
                }
                continue;
            }
        }
        previous = Some(c);
    }
    tags
}

/// Whether a body of this content type is text, whose hashtags count: the type starts
/// with `text/`, in any case.
pub fn is_text_content(content_type: &str) -> bool {
    content_type
        .get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("text/"))
}

/// The hashtags of a message: those of its body when the content type is text and the
/// body valid UTF-8, none otherwise. Server and clients route by this one rule.
pub fn message_hashtags(content_type: &str, body: &[u8]) -> Vec<String> {
    if !is_text_content(content_type) {
        return Vec::new();
    }
    std::str::from_utf8(body).map_or_else(|_| Vec::new(), hashtags)
}

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// One channel, by name.
    Exact(String),
    /// Tokens with `*` (one token) and a trailing `>` (one or more tokens).
    Wildcard(Vec<PatternToken>),
    /// A hashtag, lower-cased, without '#'.
    Tag(String),
}

/// One token of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternToken {
    Literal(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens; always last.
    Rest,
}

impl Pattern {
    /// Parses a pattern: `#tag`, a channel name, or a name with wildcard tokens.
    pub fn parse(pattern: &str) -> Result<Pattern, NameError> {
        check_common(pattern)?;
        if let Some(tag) = pattern.strip_prefix('#') {
            if tag.is_empty() || !tag.chars().all(is_tag_char) {
                return Err(NameError::BadHashtag);
            }
            return Ok(Pattern::Tag(tag.to_lowercase()));
        }
        if pattern.starts_with('@') {
            return Err(NameError::ReservedPrefix);
        }
        if !pattern.contains(['*', '>']) {
            validate_channel(pattern)?;
            return Ok(Pattern::Exact(pattern.to_owned()));
        }
        let parts: Vec<&str> = pattern.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let token = match *part {
                "" => return Err(NameError::EmptyToken),
                "*" => PatternToken::One,
                ">" if index + 1 == parts.len() => PatternToken::Rest,
                ">" => return Err(NameError::TailNotLast),
                literal if literal.contains(['*', '>']) => {
                    return Err(NameError::PartialWildcard);
                }
                literal => PatternToken::Literal(literal.to_owned()),
            };
            tokens.push(token);
        }
        Ok(Pattern::Wildcard(tokens))
    }

    /// Whether a message published to `channel` matches (tags never match a channel name;
    /// use [`Pattern::matches_message`]).
    pub fn matches_channel(&self, channel: &str) -> bool {
        match self {
            Pattern::Exact(name) => name == channel,
            Pattern::Tag(_) => false,
            Pattern::Wildcard(tokens) => {
                let mut parts = channel.split('.');
                for token in tokens {
                    match token {
                        PatternToken::Rest => return parts.next().is_some(),
                        PatternToken::One => {
                            if parts.next().is_none() {
                                return false;
                            }
                        }
                        PatternToken::Literal(literal) => {
                            if parts.next() != Some(literal.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }

    /// Whether a channel message with the given hashtags matches.
    pub fn matches_message(&self, channel: &str, tags: &[String]) -> bool {
        match self {
            Pattern::Tag(tag) => tags.iter().any(|t| t == tag),
            other => other.matches_channel(channel),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Exact(name) => f.write_str(name),
            Pattern::Tag(tag) => write!(f, "#{tag}"),
            Pattern::Wildcard(tokens) => {
                for (index, token) in tokens.iter().enumerate() {
                    if index > 0 {
                        f.write_str(".")?;
                    }
                    match token {
                        PatternToken::Literal(literal) => f.write_str(literal)?,
                        PatternToken::One => f.write_str("*")?,
                        PatternToken::Rest => f.write_str(">")?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_by_token() {
        let one = Pattern::parse("chat.*").unwrap();
        assert!(one.matches_channel("chat.rust"));
        assert!(!one.matches_channel("chat"));
        assert!(!one.matches_channel("chat.rust.beginners"));
        let rest = Pattern::parse("chat.>").unwrap();
        assert!(rest.matches_channel("chat.rust"));
        assert!(rest.matches_channel("chat.rust.beginners"));
        assert!(!rest.matches_channel("chat"));
        assert!(!rest.matches_channel("chatter.x"));
        let mid = Pattern::parse("a.*.c").unwrap();
        assert!(mid.matches_channel("a.b.c"));
        assert!(!mid.matches_channel("a.b.d"));
        assert_eq!(Pattern::parse("a.>.c"), Err(NameError::TailNotLast));
        assert_eq!(Pattern::parse("a.b*"), Err(NameError::PartialWildcard));
        assert_eq!(Pattern::parse("a..b"), Err(NameError::EmptyToken));
    }

    #[test]
    fn hashtags_are_words_starting_with_hash() {
        assert_eq!(
            hashtags("I love #Rust and #tokio, #rust!"),
            ["rust", "tokio"]
        );
        assert!(hashtags("C# and a#b and # alone").is_empty());
        assert_eq!(hashtags("#über_cool"), ["über_cool"]);
        assert_eq!(hashtags("##double"), Vec::<String>::new());
        let tag = Pattern::parse("#Rust").unwrap();
        assert!(tag.matches_message("any", &hashtags("so #rust")));
        assert!(!tag.matches_channel("rust"));
    }

    #[test]
    fn many_distinct_tags_cost_linear_time_and_are_capped() {
        let text: String = (0..200_000).map(|i| format!("#t{i} ")).collect();
        let started = std::time::Instant::now();
        let tags = hashtags(&text);
        assert_eq!(tags.len(), MAX_HASHTAGS);
        assert_eq!(tags[0], "t0");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn channel_names_are_checked() {
        assert!(validate_channel("chat.rust").is_ok());
        assert_eq!(validate_channel("#x"), Err(NameError::ReservedPrefix));
        assert_eq!(validate_channel("a b"), Err(NameError::BadCharacter));
        assert_eq!(validate_channel("a.*"), Err(NameError::Wildcard));
        assert_eq!(validate_channel(""), Err(NameError::Empty));
        assert!(validate_group("Cool.Group").is_ok());
    }

    #[test]
    fn invisible_and_bidirectional_characters_are_refused_in_every_name() {
        for bad in [
            "alice\u{200b}",
            "\u{feff}alice",
            "al\u{200d}ice",
            "al\u{200c}ice",
            "evil\u{202e}gnp.exe",
            "a\u{2066}b\u{2069}",
            "soft\u{ad}hyphen",
            "tag\u{e0041}",
            "filler\u{3164}",
            "vs\u{fe0f}",
        ] {
            let hidden = bad.chars().find(|&c| is_invisible(c)).unwrap();
            let refused = Err(NameError::Invisible(hidden));
            assert_eq!(validate_channel(bad), refused, "{bad:?}");
            assert_eq!(validate_group(bad), refused, "{bad:?}");
            assert_eq!(Pattern::parse(bad).map(|_| ()), refused, "{bad:?}");
            assert_eq!(validate_header_name(bad), refused, "{bad:?}");
            assert_eq!(
                validate_client_name(bad),
                Err(ClientNameError::Character(NameError::Invisible(hidden))),
                "{bad:?}"
            );
        }
        assert_eq!(
            Pattern::parse("#rust\u{200b}"),
            Err(NameError::Invisible('\u{200b}'))
        );
        let message = validate_client_name("alice\u{200b}")
            .unwrap_err()
            .to_string();
        assert!(message.contains("U+200B"), "{message}");
    }

    #[test]
    fn control_characters_are_refused_in_every_name() {
        for bad in ["a\u{1b}]0;x", "a\u{7f}", "a\u{85}b", "a\u{9b}b"] {
            assert_eq!(validate_channel(bad), Err(NameError::BadCharacter));
            assert_eq!(validate_group(bad), Err(NameError::BadCharacter));
            assert_eq!(validate_header_name(bad), Err(NameError::BadCharacter));
            assert!(validate_client_name(bad).is_err());
        }
    }

    #[test]
    fn visible_names_in_any_script_pass() {
        for good in [
            "alice",
            "zoë",
            "日本語",
            "Ωμέγα",
            "emoji🎉",
            "חדשות",
            "اخبار",
        ] {
            assert_eq!(validate_channel(good), Ok(()), "{good:?}");
            assert_eq!(validate_client_name(good), Ok(()), "{good:?}");
        }
        assert_eq!(validate_client_name("Ada L."), Ok(()));
        assert_eq!(
            validate_client_name("alice "),
            Err(ClientNameError::EdgeWhitespace)
        );
        assert_eq!(validate_client_name(""), Err(ClientNameError::Length(0)));
        assert_eq!(
            validate_client_name(&"x".repeat(65)),
            Err(ClientNameError::Length(65))
        );
    }
}
