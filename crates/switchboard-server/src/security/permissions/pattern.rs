//! Rule patterns: the subjects an allow or deny entry names, in the hub's wildcard
//! syntax (`*` one token, `>` one or more tokens at the end, `#tag` a hashtag, `#*` every
//! hashtag) with `{user}` standing for one whole token, the session's user.
//!
//! A rule pattern answers three questions: does it match a concrete subject, does it
//! cover every subject a subscription pattern could match (the subset rule), and could
//! the two match a subject in common (overlap). All three walk the tokens once; nothing
//! allocates.

use switchboard_proto::subject::{self, Pattern, PatternToken};

/// The placeholder a rule uses for the session's user.
pub const USER_PLACEHOLDER: &str = "{user}";

/// Why a rule pattern is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulePatternError {
    #[error("pattern {pattern:?}: {reason}")]
    Syntax { pattern: String, reason: String },
    #[error(
        "pattern {0:?}: {{user}} must be a whole token, as in \"inbox.{{user}}\" or \"{{user}}.>\""
    )]
    UserNotWholeToken(String),
    #[error("pattern {0:?}: {{user}} cannot stand in a hashtag")]
    UserInHashtag(String),
}

/// One token of a compiled rule pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleToken {
    Literal(Box<str>),
    /// `{user}`: the session's user, as one token.
    User,
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens; always last.
    Rest,
}

/// A compiled rule pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulePattern {
    /// A channel, group or user pattern, by tokens separated by dots.
    Tokens(Vec<RuleToken>),
    /// `#tag` (lower-cased), or `#*` (`None`) for every hashtag.
    Tag(Option<Box<str>>),
}

/// Whether `user` can stand for `{user}`: a user name that is one valid token (no dot, no
/// wildcard, no whitespace). Other names never match a `{user}` rule.
pub fn usable_user(user: Option<&str>) -> Option<&str> {
    user.filter(|name| {
        !name.is_empty()
            && !name.contains(['.', '*', '>', '{', '}'])
            && subject::validate_header_name(name).is_ok()
    })
}

impl RulePattern {
    /// Parses a rule pattern.
    pub fn parse(text: &str) -> Result<RulePattern, RulePatternError> {
        let syntax = |reason: String| RulePatternError::Syntax {
            pattern: text.to_owned(),
            reason,
        };
        if let Some(tag) = text.strip_prefix('#') {
            if text.contains(USER_PLACEHOLDER) {
                return Err(RulePatternError::UserInHashtag(text.to_owned()));
            }
            if tag == "*" {
                return Ok(RulePattern::Tag(None));
            }
            return match Pattern::parse(text) {
                Ok(Pattern::Tag(tag)) => Ok(RulePattern::Tag(Some(tag.into()))),
                Ok(_) => Err(syntax("not a hashtag".into())),
                Err(error) => Err(syntax(error.to_string())),
            };
        }
        let parts: Vec<&str> = text.split('.').collect();
        for part in &parts {
            if *part != USER_PLACEHOLDER && part.contains(['{', '}']) {
                return Err(RulePatternError::UserNotWholeToken(text.to_owned()));
            }
        }
        // Checked as a subscription pattern would be, with the user as a plain token.
        let checked: Vec<&str> = parts
            .iter()
            .map(|part| if *part == USER_PLACEHOLDER { "u" } else { part })
            .collect();
        let parsed = Pattern::parse(&checked.join(".")).map_err(|e| syntax(e.to_string()))?;
        let tokens = match parsed {
            Pattern::Exact(_) | Pattern::Wildcard(_) => parts
                .iter()
                .map(|part| match *part {
                    USER_PLACEHOLDER => RuleToken::User,
                    "*" => RuleToken::One,
                    ">" => RuleToken::Rest,
                    literal => RuleToken::Literal(literal.into()),
                })
                .collect(),
            Pattern::Tag(_) => return Err(syntax("not a channel pattern".into())),
        };
        Ok(RulePattern::Tokens(tokens))
    }

    /// Whether the pattern names the session's user.
    pub fn has_user(&self) -> bool {
        matches!(self, RulePattern::Tokens(tokens) if tokens.contains(&RuleToken::User))
    }

    /// Whether the pattern matches the concrete subject `name` (a channel, a group or a
    /// user name), for a session whose user is `user` (already passed through
    /// [`usable_user`]).
    pub fn matches(&self, name: &str, user: Option<&str>) -> bool {
        let RulePattern::Tokens(tokens) = self else {
            return false;
        };
        let mut parts = name.split('.');
        for token in tokens {
            let Some(part) = parts.next() else {
                return false;
            };
            let fits = match token {
                RuleToken::Rest => return true,
                RuleToken::One => true,
                RuleToken::Literal(literal) => **literal == *part,
                RuleToken::User => user == Some(part),
            };
            if !fits {
                return false;
            }
        }
        parts.next().is_none()
    }

    /// Whether the pattern matches the hashtag `tag` (lower-cased, without '#').
    pub fn matches_tag(&self, tag: &str) -> bool {
        match self {
            RulePattern::Tag(None) => true,
            RulePattern::Tag(Some(own)) => **own == *tag,
            RulePattern::Tokens(_) => false,
        }
    }

    /// Whether every channel the subscription pattern `tokens` could match is matched
    /// by this rule.
    pub fn covers(&self, tokens: &[PatternToken], user: Option<&str>) -> bool {
        match self {
            RulePattern::Tokens(rule) => covers(rule, tokens, user),
            RulePattern::Tag(_) => false,
        }
    }

    /// Whether some channel is matched both by this rule and by the subscription
    /// pattern `tokens`.
    pub fn overlaps(&self, tokens: &[PatternToken], user: Option<&str>) -> bool {
        match self {
            RulePattern::Tokens(rule) => overlaps(rule, tokens, user),
            RulePattern::Tag(_) => false,
        }
    }
}

/// A rule token as a literal to compare, `None` for `{user}` without a usable user (it
/// matches nothing).
fn literal<'a>(token: &'a RuleToken, user: Option<&'a str>) -> Option<&'a str> {
    match token {
        RuleToken::Literal(literal) => Some(literal),
        RuleToken::User => user,
        RuleToken::One | RuleToken::Rest => None,
    }
}

fn covers(rule: &[RuleToken], sub: &[PatternToken], user: Option<&str>) -> bool {
    match (rule.split_first(), sub.split_first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        // `>` in the rule takes whatever one or more tokens remain.
        (Some((RuleToken::Rest, _)), rest) => rest.is_some(),
        (Some(_), None) => false,
        // The subscription's `>` matches any number of tokens; only a rule's `>` covers it.
        (Some(_), Some((PatternToken::Rest, _))) => false,
        (Some((RuleToken::One, rule_rest)), Some((_, sub_rest))) => {
            covers(rule_rest, sub_rest, user)
        }
        (Some((token, rule_rest)), Some((PatternToken::Literal(part), sub_rest))) => {
            literal(token, user) == Some(part.as_str()) && covers(rule_rest, sub_rest, user)
        }
        // A literal (or `{user}`) in the rule never covers the subscription's `*`.
        (Some(_), Some((PatternToken::One, _))) => false,
    }
}

fn overlaps(rule: &[RuleToken], sub: &[PatternToken], user: Option<&str>) -> bool {
    match (rule.split_first(), sub.split_first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some((RuleToken::Rest, _)), Some(_)) | (Some(_), Some((PatternToken::Rest, _))) => {
            // Both have at least one token left, and one side takes any tail. A `{user}`
            // with no usable user matches nothing, so it cannot meet anything.
            rule.iter()
                .all(|token| !matches!(token, RuleToken::User) || user.is_some())
        }
        (Some((token, rule_rest)), Some((sub_token, sub_rest))) => {
            let fits = match (token, sub_token) {
                (RuleToken::One, _) => true,
                (token, PatternToken::One) => literal(token, user).is_some(),
                (token, PatternToken::Literal(part)) => literal(token, user) == Some(part.as_str()),
                (_, PatternToken::Rest) => true,
            };
            fits && overlaps(rule_rest, sub_rest, user)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> RulePattern {
        RulePattern::parse(text).unwrap()
    }

    fn sub(text: &str) -> Vec<PatternToken> {
        match Pattern::parse(text).unwrap() {
            Pattern::Exact(name) => name
                .split('.')
                .map(|t| PatternToken::Literal(t.to_owned()))
                .collect(),
            Pattern::Wildcard(tokens) => tokens,
            Pattern::Tag(_) => panic!("not a channel pattern"),
        }
    }

    #[test]
    fn rule_patterns_match_concrete_subjects() {
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("chat.rust", "chat.rust", None, true),
            ("chat.rust", "chat.go", None, false),
            ("chat.*", "chat.rust", None, true),
            ("chat.*", "chat.rust.x", None, false),
            ("chat.*", "chat", None, false),
            ("chat.>", "chat.rust.x", None, true),
            ("chat.>", "chat", None, false),
            (">", "anything.at.all", None, true),
            ("inbox.{user}", "inbox.ada", Some("ada"), true),
            ("inbox.{user}", "inbox.bob", Some("ada"), false),
            ("inbox.{user}", "inbox.ada", None, false),
            ("{user}.>", "ada.notes.x", Some("ada"), true),
            ("{user}.>", "ada", Some("ada"), false),
        ];
        for &(pattern, name, user, expected) in cases {
            assert_eq!(
                rule(pattern).matches(name, user),
                expected,
                "{pattern} against {name} as {user:?}"
            );
        }
    }

    #[test]
    fn covers_is_the_subset_rule() {
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("chat.>", "chat.*", None, true),
            ("chat.>", "chat.>", None, true),
            ("chat.>", "chat.rust.>", None, true),
            ("chat.*", "chat.>", None, false),
            ("chat.*", "chat.*", None, true),
            ("chat.rust", "chat.*", None, false),
            (">", ">", None, true),
            (">", "a.*.c", None, true),
            ("*.c", "a.*", None, false),
            ("a.*", "*.b", None, false),
            ("inbox.{user}", "inbox.ada", Some("ada"), true),
            ("inbox.{user}", "inbox.*", Some("ada"), false),
            ("{user}.>", "ada.>", Some("ada"), true),
            ("{user}.>", "ada.>", None, false),
        ];
        for &(pattern, subscription, user, expected) in cases {
            assert_eq!(
                rule(pattern).covers(&sub(subscription), user),
                expected,
                "{pattern} covers {subscription} as {user:?}"
            );
        }
    }

    #[test]
    fn overlaps_finds_a_common_subject() {
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("chat.admin", "chat.*", None, true),
            ("chat.admin", "chat.>", None, true),
            ("chat.admin", "news.>", None, false),
            ("chat.admin.x", "chat.*", None, false),
            ("*.admin", "chat.>", None, true),
            ("a.>", "*", None, false),
            (">", "a", None, true),
            ("inbox.{user}", "inbox.*", Some("ada"), true),
            ("inbox.{user}", "inbox.*", None, false),
            ("{user}.>", ">", None, false),
            ("{user}.>", ">", Some("ada"), true),
        ];
        for &(pattern, subscription, user, expected) in cases {
            assert_eq!(
                rule(pattern).overlaps(&sub(subscription), user),
                expected,
                "{pattern} overlaps {subscription} as {user:?}"
            );
        }
    }

    #[test]
    fn hashtag_rules() {
        assert!(rule("#*").matches_tag("rust"));
        assert!(rule("#Rust").matches_tag("rust"));
        assert!(!rule("#rust").matches_tag("go"));
        assert!(!rule("chat.>").matches_tag("rust"));
        assert!(!rule("#rust").matches("rust", None));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_pattern() {
        for bad in ["a..b", "a.>.b", "a.b*", "", "@x", "#", "a b"] {
            let error = RulePattern::parse(bad).unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
        assert_eq!(
            RulePattern::parse("inbox-{user}"),
            Err(RulePatternError::UserNotWholeToken("inbox-{user}".into()))
        );
        assert_eq!(
            RulePattern::parse("#{user}"),
            Err(RulePatternError::UserInHashtag("#{user}".into()))
        );
        assert!(rule("inbox.{user}").has_user());
    }

    #[test]
    fn only_single_token_users_stand_for_user() {
        assert_eq!(usable_user(Some("ada")), Some("ada"));
        assert_eq!(usable_user(Some("a.b")), None);
        assert_eq!(usable_user(Some("a*")), None);
        assert_eq!(usable_user(Some("")), None);
        assert_eq!(usable_user(None), None);
    }
}
