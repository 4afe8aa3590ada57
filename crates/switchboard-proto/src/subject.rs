//! Names and patterns: what a channel or group may be called, how subscription patterns
//! match channels, and how hashtags are found in text.
//!
//! Server and clients share these rules: the server routes a live message to a connection
//! once, and the client hands it to each of its subscriptions that matches, using the
//! same functions.

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

fn check_common(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::BadCharacter);
    }
    Ok(())
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
}
