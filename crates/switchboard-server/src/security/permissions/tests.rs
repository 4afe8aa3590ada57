//! The rules as a whole: roles compiled from their configuration, decisions across
//! several roles, the subset rule for wildcard subscriptions, and properties that must
//! hold for any pattern.

use std::sync::Arc;

use proptest::prelude::*;
use switchboard_proto::subject::Pattern;

use super::*;
use crate::security::{AuthMethod, Identity, Policy, RoleSpec, SecurityConfig};

fn rule(allow: &[&str], deny: &[&str]) -> Rule {
    Rule {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    }
}

fn role(publish: Rule, subscribe: Rule) -> RoleSpec {
    RoleSpec {
        publish,
        subscribe,
        ..RoleSpec::default()
    }
}

fn grants(roles: &[RoleSpec], user: Option<&str>) -> Grants {
    let compiled = roles
        .iter()
        .enumerate()
        .map(|(i, spec)| Arc::new(CompiledRole::compile(&format!("r{i}"), spec).unwrap()))
        .collect();
    Grants::of_roles(compiled, user)
}

fn user(name: Option<&str>, roles: &[&str]) -> Identity {
    Identity {
        user: name.map(str::to_owned),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        method: if name.is_some() {
            AuthMethod::Password
        } else {
            AuthMethod::Anonymous
        },
        admin: false,
        expires_at_us: None,
        token_sha256: None,
    }
}

/// Roles, user, operation, subject, and whether it is allowed.
type Case<'a> = (
    &'a [&'a RoleSpec],
    Option<&'a str>,
    Operation,
    &'a str,
    bool,
);

#[test]
fn decisions_across_roles_deny_wins() {
    let reader = role(
        rule(&["chat.>"], &[]),
        rule(&["chat.>", "#*"], &["#secret"]),
    );
    let restricted = role(rule(&[], &["chat.admin"]), rule(&[], &["chat.admin"]));
    let inbox = role(rule(&["inbox.{user}"], &[]), rule(&["inbox.{user}"], &[]));
    let cases: &[Case<'_>] = &[
        (&[&reader], None, Operation::Publish, "chat.rust", true),
        (&[&reader], None, Operation::Publish, "chat.admin", true),
        (
            &[&reader, &restricted],
            None,
            Operation::Publish,
            "chat.admin",
            false,
        ),
        (
            &[&restricted, &reader],
            None,
            Operation::Publish,
            "chat.admin",
            false,
        ),
        (
            &[&reader, &restricted],
            None,
            Operation::Publish,
            "chat.go",
            true,
        ),
        (&[&restricted], None, Operation::Publish, "chat.go", false),
        (&[&reader], None, Operation::Publish, "news.today", false),
        (&[&reader], None, Operation::History, "chat.rust", false),
        (
            &[&inbox],
            Some("ada"),
            Operation::Publish,
            "inbox.ada",
            true,
        ),
        (
            &[&inbox],
            Some("ada"),
            Operation::Publish,
            "inbox.bob",
            false,
        ),
        (&[&inbox], None, Operation::Publish, "inbox.ada", false),
        (
            &[&inbox],
            Some("a.b"),
            Operation::Publish,
            "inbox.a.b",
            false,
        ),
        (&[], Some("ada"), Operation::Publish, "inbox.ada", false),
    ];
    for (index, &(roles, user, operation, subject, expected)) in cases.iter().enumerate() {
        let specs: Vec<RoleSpec> = roles.iter().map(|r| (*r).clone()).collect();
        assert_eq!(
            grants(&specs, user).allows(operation, subject),
            expected,
            "case {index}: {operation:?} {subject} as {user:?}"
        );
    }
    let tags = grants(&[reader], None);
    assert!(tags.allows_tag(Operation::Subscribe, "rust"));
    assert!(!tags.allows_tag(Operation::Subscribe, "secret"));
    assert!(!tags.allows_tag(Operation::Publish, "rust"));
}

#[test]
fn wildcard_subscriptions_follow_the_subset_rule() {
    let spec = role(
        Rule::default(),
        rule(
            &["chat.>", "news.*", "#*"],
            &["chat.admin", "chat.secret.>", "#hidden"],
        ),
    );
    let grants = grants(&[spec], None);
    let cases = [
        ("chat.rust", Coverage::Allowed),
        ("chat.admin", Coverage::Denied),
        ("chat.*", Coverage::Filtered),
        ("chat.>", Coverage::Filtered),
        ("chat.rust.>", Coverage::Allowed),
        ("chat.secret.>", Coverage::Denied),
        ("chat.secret.*", Coverage::Denied),
        ("news.*", Coverage::Allowed),
        ("news.>", Coverage::Denied),
        (">", Coverage::Denied),
        ("*.rust", Coverage::Denied),
        ("#rust", Coverage::Filtered),
        ("#hidden", Coverage::Denied),
    ];
    for (pattern, expected) in cases {
        let parsed = Pattern::parse(pattern).unwrap();
        assert_eq!(
            grants.coverage(Operation::Subscribe, &parsed),
            expected,
            "{pattern}"
        );
    }
}

#[test]
fn everything_grants_answer_without_rules() {
    let open = Grants::Everything { admin: false };
    assert!(open.allows(Operation::Publish, "anything"));
    assert!(open.may_admin(AdminOperation::Stats));
    assert!(open.may_admin(AdminOperation::Clients));
    assert!(!open.may_admin(AdminOperation::Stop));
    assert!(!open.may_admin(AdminOperation::Reload));
    let admin = Grants::Everything { admin: true };
    assert!(admin.may_admin(AdminOperation::Stop));
    assert!(admin.may_admin(AdminOperation::Reload));
    assert_eq!(
        admin.coverage(Operation::Subscribe, &Pattern::parse(">").unwrap()),
        Coverage::Allowed
    );
}

#[test]
fn admin_operations_relay_reach_and_channel_caps() {
    let operator = RoleSpec {
        admin: vec![AdminOperation::Stats],
        receive_relay: false,
        create_channel: ChannelRule {
            allow: vec!["team.>".into()],
            deny: vec![],
            max_history: Some(100),
            max_body: Some(1024),
        },
        ..RoleSpec::default()
    };
    let wider = RoleSpec {
        create_channel: ChannelRule {
            allow: vec!["team.big".into()],
            deny: vec![],
            max_history: Some(5000),
            max_body: None,
        },
        ..RoleSpec::default()
    };
    let one = grants(std::slice::from_ref(&operator), None);
    assert!(one.may_admin(AdminOperation::Stats));
    assert!(!one.may_admin(AdminOperation::Stop));
    assert!(!one.receives_relay());
    assert_eq!(one.channel_caps("team.a"), (Some(100), Some(1024)));
    assert_eq!(one.channel_caps("other"), (None, None));
    let both = grants(&[operator, wider], None);
    assert_eq!(both.channel_caps("team.big"), (Some(5000), None));
    assert_eq!(both.channel_caps("team.a"), (Some(100), Some(1024)));
}

#[test]
fn the_policy_gives_open_admin_and_role_grants() {
    let mut config = SecurityConfig::default();
    config.roles.insert(
        "reader".into(),
        role(rule(&["chat.>"], &[]), Rule::default()),
    );
    let policy = Policy::new(config);
    assert!(policy.grants(&Identity::open(false)).is_everything());
    let mut admin = user(Some("root"), &[]);
    admin.admin = true;
    assert!(policy.grants(&admin).is_everything());
    let reader = policy.grants(&user(Some("ada"), &["reader", "missing"]));
    assert!(reader.allows(Operation::Publish, "chat.x"));
    assert!(!reader.allows(Operation::Publish, "news"));
    let nobody = policy.grants(&user(Some("bob"), &["missing"]));
    assert!(!nobody.allows(Operation::Publish, "chat.x"));

    // Users without any role configured on the hub are not restricted.
    let no_roles = Policy::new(SecurityConfig::default());
    assert!(no_roles.grants(&user(Some("ada"), &[])).is_everything());
}

#[test]
fn user_rules_follow_the_identity() {
    let mut config = SecurityConfig::default();
    config.roles.insert(
        "member".into(),
        role(
            rule(&["inbox.{user}"], &[]),
            rule(&["inbox.{user}", "{user}.>"], &["{user}.private"]),
        ),
    );
    let policy = Policy::new(config);
    let ada = policy.grants(&user(Some("ada"), &["member"]));
    assert!(ada.allows(Operation::Publish, "inbox.ada"));
    assert!(!ada.allows(Operation::Publish, "inbox.bob"));
    let coverage = |grants: &Grants, pattern: &str| {
        grants.coverage(Operation::Subscribe, &Pattern::parse(pattern).unwrap())
    };
    assert_eq!(coverage(&ada, "inbox.ada"), Coverage::Allowed);
    assert_eq!(coverage(&ada, "inbox.*"), Coverage::Denied);
    assert_eq!(coverage(&ada, "ada.>"), Coverage::Filtered);
    assert_eq!(coverage(&ada, "ada.private"), Coverage::Denied);
    assert_eq!(coverage(&ada, "bob.>"), Coverage::Denied);
    // An anonymous session under the same role has no user: nothing with {user} applies.
    let anonymous = policy.grants(&user(None, &["member"]));
    assert!(!anonymous.allows(Operation::Publish, "inbox.anonymous"));
    assert_eq!(coverage(&anonymous, "inbox.*"), Coverage::Denied);
}

#[test]
fn validation_names_the_role_key_and_pattern() {
    let mut config = SecurityConfig::default();
    config
        .roles
        .insert("bad".into(), role(rule(&["chat..x"], &[]), Rule::default()));
    let error = crate::security::validate(&config).unwrap_err().to_string();
    assert!(
        error.contains("\"bad\"") && error.contains("publish.allow"),
        "{error}"
    );
    assert!(error.contains("chat..x"), "{error}");

    config.roles.insert(
        "bad".into(),
        role(Rule::default(), rule(&[], &["inbox.x{user}"])),
    );
    let error = crate::security::validate(&config).unwrap_err().to_string();
    assert!(
        error.contains("subscribe.deny") && error.contains("whole token"),
        "{error}"
    );

    config.roles.clear();
    config.anonymous_role = Some("guest".into());
    let error = crate::security::validate(&config).unwrap_err().to_string();
    assert!(error.contains("guest"), "{error}");
}

/// A bad rule never widens what a session may do: a role that does not compile is never
/// put in force, at start or by a reload.
#[test]
fn a_role_that_fails_to_compile_is_never_put_in_force() {
    let mut config = SecurityConfig::default();
    config.roles.insert(
        "bad".into(),
        role(rule(&[">"], &["a..b"]), rule(&[">"], &[])),
    );
    let built = Policy::build(config, crate::security::limits::LimitSettings::default());
    let Err(error) = built else {
        panic!("a role that does not compile was built");
    };
    assert!(error.to_string().contains("a..b"), "{error}");
}

#[test]
fn the_cache_is_bounded_and_forgets_on_replace() {
    let spec = role(rule(&["chat.>"], &[]), Rule::default());
    let permissions = SessionPermissions::new(grants(&[spec], None), None);
    for index in 0..CACHE_CAPACITY * 3 {
        assert!(permissions.allows(Operation::Publish, &format!("chat.{index}")));
    }
    assert!(permissions.cached() <= CACHE_CAPACITY);
    assert!(!permissions.allows(Operation::Publish, "news"));
    permissions.replace(grants(&[role(rule(&["news"], &[]), Rule::default())], None));
    assert_eq!(permissions.cached(), 0);
    assert!(permissions.allows(Operation::Publish, "news"));
    assert!(!permissions.allows(Operation::Publish, "chat.1"));
}

/// Tokens drawn from a small alphabet, so that patterns and subjects meet often.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("ada")].prop_map(str::to_owned)
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..5).prop_map(|tokens| tokens.join("."))
}

/// A rule pattern: literals, `*`, `{user}`, and maybe a trailing `>`.
fn rule_pattern() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => token(),
        2 => Just("*".to_owned()),
        1 => Just(USER_PLACEHOLDER.to_owned()),
    ];
    (prop::collection::vec(part, 0..4), any::<bool>()).prop_filter_map(
        "a pattern has a token",
        |(mut parts, rest)| {
            if rest {
                parts.push(">".to_owned());
            }
            (!parts.is_empty()).then(|| parts.join("."))
        },
    )
}

/// A subscription pattern: literals, `*`, and maybe a trailing `>`.
fn subscription() -> impl Strategy<Value = String> {
    let part = prop_oneof![3 => token(), 1 => Just("*".to_owned())];
    (prop::collection::vec(part, 0..4), any::<bool>()).prop_filter_map(
        "a pattern has a token",
        |(mut parts, rest)| {
            if rest {
                parts.push(">".to_owned());
            }
            (!parts.is_empty()).then(|| parts.join("."))
        },
    )
}

fn spec(allow: &[String], deny: &[String]) -> RoleSpec {
    let rule = Rule {
        allow: allow.to_vec(),
        deny: deny.to_vec(),
    };
    role(rule.clone(), rule)
}

proptest! {
    /// A subject matched by a deny pattern is never allowed, whichever role denies it
    /// and whatever the others allow.
    #[test]
    fn deny_wins(
        allow in prop::collection::vec(rule_pattern(), 0..4),
        deny in prop::collection::vec(rule_pattern(), 1..3),
        subject in subject(),
        user in prop::option::of(Just("ada")),
    ) {
        let denier = spec(&[], &deny);
        let allower = spec(&allow, &[]);
        let both = grants(&[allower, denier], user);
        let user_token = user;
        let denied = deny
            .iter()
            .any(|d| RulePattern::parse(d).unwrap().matches(&subject, user_token));
        if denied {
            prop_assert!(!both.allows(Operation::Publish, &subject));
        }
    }

    /// `{user}` stands for the session's user and for nothing else: without a user, a
    /// pattern holding it matches nothing; with one, it matches what the pattern with
    /// the user written in matches.
    #[test]
    fn user_stands_for_the_session_user(pattern in rule_pattern(), subject in subject()) {
        let compiled = RulePattern::parse(&pattern).unwrap();
        if compiled.has_user() {
            prop_assert!(!compiled.matches(&subject, None));
        }
        let written = RulePattern::parse(&pattern.replace(USER_PLACEHOLDER, "ada")).unwrap();
        prop_assert_eq!(compiled.matches(&subject, Some("ada")), written.matches(&subject, None));
    }

    /// Whenever a wildcard subscription is allowed, every concrete subject it matches is
    /// allowed; when it is filtered, delivery checks each subject, so nothing denied
    /// gets through; and when it is denied, none of its subjects is allowed through it.
    #[test]
    fn allowed_wildcards_only_match_allowed_subjects(
        allow in prop::collection::vec(rule_pattern(), 1..4),
        deny in prop::collection::vec(rule_pattern(), 0..3),
        sub in subscription(),
        subject in subject(),
        user in prop::option::of(Just("ada")),
    ) {
        let grants = grants(&[spec(&allow, &deny)], user);
        let pattern = Pattern::parse(&sub).unwrap();
        let coverage = grants.coverage(Operation::Subscribe, &pattern);
        if pattern.matches_channel(&subject) && coverage == Coverage::Allowed {
            prop_assert!(
                grants.allows(Operation::Subscribe, &subject),
                "{} allowed but {} is not", sub, subject
            );
        }
        // An allowed wildcard must be covered by one allow pattern.
        if coverage != Coverage::Denied && pattern.matches_channel(&subject) {
            let covered = allow.iter().any(|a| {
                let a = RulePattern::parse(a).unwrap();
                match &pattern {
                    Pattern::Wildcard(tokens) => a.covers(tokens, user),
                    Pattern::Exact(name) => a.matches(name, user),
                    Pattern::Tag(_) => false,
                }
            });
            prop_assert!(covered);
        }
    }

    /// `covers` and `overlaps` agree with matching on concrete subjects: a rule that
    /// covers a subscription matches every subject the subscription matches, and one
    /// that matches a subject the subscription matches overlaps it.
    #[test]
    fn covers_and_overlaps_agree_with_matching(
        rule in rule_pattern(),
        sub in subscription(),
        subject in subject(),
        user in prop::option::of(Just("ada")),
    ) {
        let rule = RulePattern::parse(&rule).unwrap();
        let pattern = Pattern::parse(&sub).unwrap();
        let tokens = match &pattern {
            Pattern::Wildcard(tokens) => tokens.clone(),
            Pattern::Exact(name) => name
                .split('.')
                .map(|t| switchboard_proto::subject::PatternToken::Literal(t.to_owned()))
                .collect(),
            Pattern::Tag(_) => unreachable!(),
        };
        if pattern.matches_channel(&subject) {
            if rule.covers(&tokens, user) {
                prop_assert!(rule.matches(&subject, user));
            }
            if rule.matches(&subject, user) {
                prop_assert!(rule.overlaps(&tokens, user));
            }
        }
    }
}
