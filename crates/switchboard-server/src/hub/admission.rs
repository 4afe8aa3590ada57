//! The publish rules: what may be published where, within which limits, and how durable
//! it is once accepted.
//!
//! [`PublishRules::admit`] is the one place that decides it. A channel publish, a group
//! post, a streamed upload before its body arrives and the decision to sync a streamed
//! body all look up their destination and ask it; none of them judges on its own. It
//! runs on every publish, so it takes references and answers with a small `Copy` value.

use switchboard_proto::ErrorCode;
use switchboard_proto::packet::{ChannelOptions, Durability, SlowConsumerPolicy};

use super::channels::effective_options;
use crate::config::ServerConfig;
use crate::error::Refusal;

/// Where a publish goes, as found by whoever looked it up.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A channel that exists, with its options.
    Channel(&'a ChannelOptions),
    /// A channel nobody created yet: publishing creates it with the default options,
    /// unless this server requires channels to be created first.
    NewChannel { name: &'a str },
    /// A group, and whether the sender is one of its members.
    Group {
        name: &'a str,
        sender: &'a str,
        member: bool,
    },
}

/// The body of a publish, as far as the limits look at it.
#[derive(Debug, Clone, Copy)]
pub enum BodyShape<'a> {
    /// In the PUBLISH frame.
    Frame(&'a [u8]),
    /// Streamed in chunks; this long in all.
    Streamed(u64),
}

/// An accepted publish: how it is kept and delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub durability: Durability,
    /// Live deliveries may be dropped, oldest first, for a slow consumer.
    pub drop_oldest: bool,
}

impl Admission {
    /// Whether the message goes to the store.
    pub fn is_stored(self) -> bool {
        self.durability != Durability::Memory
    }

    /// Whether the publish is acknowledged only once the store synced it.
    pub fn must_sync(self) -> bool {
        self.durability == Durability::Always
    }
}

/// The server-wide part of the rules, fixed when the hub is built.
#[derive(Debug)]
pub struct PublishRules {
    max_body: u64,
    require_channel_creation: bool,
    default_durability: Durability,
    /// The options of a channel created by publishing to it, which are also those of
    /// every group; a refusal if this server's configuration does not allow them.
    defaults: Result<ChannelOptions, Refusal>,
}

impl PublishRules {
    /// The rules of a server with this configuration; `durable_store` says whether
    /// anything survives a restart.
    pub fn new(config: &ServerConfig, durable_store: bool) -> PublishRules {
        let default_durability = if durable_store {
            config.sync.durability()
        } else {
            Durability::Memory
        };
        PublishRules {
            max_body: config.max_body,
            require_channel_creation: config.require_channel_creation,
            default_durability,
            defaults: effective_options(&ChannelOptions::default(), config, default_durability),
        }
    }

    /// The durability of channels that ask for none, and of groups: memory only without
    /// a durable store, else the store's sync policy.
    pub fn default_durability(&self) -> Durability {
        self.default_durability
    }

    /// The options a channel gets when nobody asked for any.
    pub fn default_options(&self) -> Result<ChannelOptions, Refusal> {
        self.defaults.clone()
    }

    /// How durable a channel with these options is. Options are complete once a channel
    /// exists, except those restored from a store whose options this server refused:
    /// those channels get the server's default, like any channel that asked for none.
    pub fn durability_of(&self, options: &ChannelOptions) -> Durability {
        options.durability.unwrap_or(self.default_durability)
    }

    /// Decides whether a publish of `body` to `target` is accepted, and how.
    pub fn admit(&self, target: Target<'_>, body: BodyShape<'_>) -> Result<Admission, Refusal> {
        let options = match target {
            Target::Channel(options) => options,
            Target::NewChannel { name } => {
                if self.require_channel_creation {
                    return Err(Refusal::new(
                        ErrorCode::ChannelRequired,
                        format!(
                            "channel {name} does not exist and this server requires channels to be created first"
                        ),
                    ));
                }
                self.defaults_or_refusal()?
            }
            Target::Group {
                name,
                sender,
                member,
            } => {
                if !member {
                    return Err(Refusal::forbidden(format!(
                        "{sender} is not a member of group {name}; join it first"
                    )));
                }
                self.defaults_or_refusal()?
            }
        };
        self.check_body(options, body)?;
        Ok(Admission {
            durability: self.durability_of(options),
            drop_oldest: options.slow_consumer == Some(SlowConsumerPolicy::DropOldest),
        })
    }

    fn defaults_or_refusal(&self) -> Result<&ChannelOptions, Refusal> {
        self.defaults.as_ref().map_err(Refusal::clone)
    }

    /// Checks a body against the server's and the destination's limits.
    fn check_body(&self, options: &ChannelOptions, body: BodyShape<'_>) -> Result<(), Refusal> {
        let len = match body {
            BodyShape::Frame(bytes) => bytes.len() as u64,
            BodyShape::Streamed(len) => len,
        };
        let limit = options
            .max_bytes
            .unwrap_or(self.max_body)
            .min(self.max_body);
        if len > limit {
            return Err(Refusal::new(
                ErrorCode::TooLarge,
                format!("message body of {len} bytes is over the limit of {limit} bytes"),
            ));
        }
        let Some(max_chars) = options.max_chars else {
            return Ok(());
        };
        let BodyShape::Frame(bytes) = body else {
            return Err(Refusal::invalid(
                "this channel limits characters; it takes short text, not streamed bodies",
            ));
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(Refusal::invalid(
                "this channel limits characters, so it takes UTF-8 text only",
            ));
        };
        let chars = text.chars().count() as u64;
        if chars > max_chars {
            return Err(Refusal::new(
                ErrorCode::TooManyCharacters,
                format!("message has {chars} characters; this channel allows {max_chars}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::SyncPolicy;

    /// Where a case publishes to.
    #[derive(Debug, Clone, Copy)]
    enum Dest {
        /// An existing channel created with this durability (`None`: it asked for none).
        Channel(Option<Durability>),
        NewChannel,
        Group,
    }

    /// The rules of a server with a durable store syncing by `sync`, or (`None`) of a
    /// memory-only server.
    fn rules(sync: Option<SyncPolicy>, change: impl FnOnce(&mut ServerConfig)) -> PublishRules {
        let mut config = ServerConfig {
            sync: sync.unwrap_or_default(),
            ..ServerConfig::default()
        };
        change(&mut config);
        PublishRules::new(&config, sync.is_some())
    }

    fn admit(rules: &PublishRules, dest: Dest, body: BodyShape<'_>) -> Result<Admission, Refusal> {
        let options;
        let target = match dest {
            Dest::Channel(durability) => {
                options = ChannelOptions {
                    durability,
                    ..ChannelOptions::default()
                };
                Target::Channel(&options)
            }
            Dest::NewChannel => Target::NewChannel { name: "news" },
            Dest::Group => Target::Group {
                name: "club",
                sender: "ann",
                member: true,
            },
        };
        rules.admit(target, body)
    }

    #[test]
    fn durability_comes_from_the_channel_or_else_from_the_server_for_every_destination_and_body() {
        use Durability::{Always, Interval, Memory, Never};
        let destinations = [
            Dest::Channel(Some(Always)),
            Dest::Channel(Some(Interval)),
            Dest::Channel(Some(Never)),
            Dest::Channel(Some(Memory)),
            Dest::Channel(None),
            Dest::NewChannel,
            Dest::Group,
        ];
        let interval = SyncPolicy::Interval(Duration::from_millis(100));
        #[rustfmt::skip]
        let table = [
            // server's store        channel: always interval never  memory | no option  new channel  group
            (Some(SyncPolicy::Always), [Always, Interval, Never, Memory, Always,   Always,   Always]),
            (Some(interval),           [Always, Interval, Never, Memory, Interval, Interval, Interval]),
            (Some(SyncPolicy::Never),  [Always, Interval, Never, Memory, Never,    Never,    Never]),
            (None,                     [Always, Interval, Never, Memory, Memory,   Memory,   Memory]),
        ];
        let text = b"hello".as_slice();
        for (store, expected) in table {
            let rules = rules(store, |_| {});
            for (dest, durability) in destinations.into_iter().zip(expected) {
                for body in [BodyShape::Frame(text), BodyShape::Streamed(10 << 20)] {
                    assert_eq!(
                        admit(&rules, dest, body),
                        Ok(Admission {
                            durability,
                            drop_oldest: false
                        }),
                        "store {store:?}, {dest:?}, {body:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_always_waits_for_a_sync_and_only_memory_skips_the_store() {
        #[rustfmt::skip]
        let table = [
            // durability         stored  must sync
            (Durability::Always,   true,  true),
            (Durability::Interval, true,  false),
            (Durability::Never,    true,  false),
            (Durability::Memory,   false, false),
        ];
        for (durability, stored, must_sync) in table {
            let admission = Admission {
                durability,
                drop_oldest: false,
            };
            assert_eq!(admission.is_stored(), stored, "{durability:?}");
            assert_eq!(admission.must_sync(), must_sync, "{durability:?}");
        }
    }

    fn code(result: Result<Admission, Refusal>) -> Option<ErrorCode> {
        result.err().map(|refusal| refusal.code)
    }

    #[test]
    fn who_may_publish_where() {
        let rules = rules(None, |_| {});
        let strict = self::rules(None, |config| config.require_channel_creation = true);
        let body = BodyShape::Frame(b"hi");
        let outsider = Target::Group {
            name: "club",
            sender: "bob",
            member: false,
        };
        let new = Target::NewChannel { name: "news" };
        let existing = ChannelOptions::default();
        for body in [body, BodyShape::Streamed(1)] {
            assert_eq!(
                code(rules.admit(outsider, body)),
                Some(ErrorCode::Forbidden)
            );
            assert_eq!(code(rules.admit(new, body)), None);
            assert_eq!(
                code(strict.admit(new, body)),
                Some(ErrorCode::ChannelRequired)
            );
            assert_eq!(code(strict.admit(Target::Channel(&existing), body)), None);
        }
    }

    #[test]
    fn bodies_keep_the_server_and_channel_limits() {
        let rules = rules(None, |config| config.max_body = 1000);
        let small = ChannelOptions {
            max_bytes: Some(10),
            ..ChannelOptions::default()
        };
        let short = ChannelOptions {
            max_chars: Some(3),
            ..ChannelOptions::default()
        };
        let unlimited = ChannelOptions::default();
        #[rustfmt::skip]
        let table: [(&ChannelOptions, BodyShape<'_>, Option<ErrorCode>); 11] = [
            (&unlimited, BodyShape::Frame(&[0; 1000]),     None),
            (&unlimited, BodyShape::Frame(&[0; 1001]),     Some(ErrorCode::TooLarge)),
            (&unlimited, BodyShape::Streamed(1000),        None),
            (&unlimited, BodyShape::Streamed(1001),        Some(ErrorCode::TooLarge)),
            (&small,     BodyShape::Frame(&[0; 10]),       None),
            (&small,     BodyShape::Frame(&[0; 11]),       Some(ErrorCode::TooLarge)),
            (&small,     BodyShape::Streamed(11),          Some(ErrorCode::TooLarge)),
            (&short,     BodyShape::Frame("héé".as_bytes()), None),
            (&short,     BodyShape::Frame(b"four"),        Some(ErrorCode::TooManyCharacters)),
            (&short,     BodyShape::Frame(&[0xff]),        Some(ErrorCode::InvalidArgument)),
            (&short,     BodyShape::Streamed(1),           Some(ErrorCode::InvalidArgument)),
        ];
        for (options, body, expected) in table {
            assert_eq!(
                code(rules.admit(Target::Channel(options), body)),
                expected,
                "{options:?}, {body:?}"
            );
        }
    }

    #[test]
    fn drop_oldest_is_the_channels_choice() {
        let rules = rules(None, |_| {});
        let options = ChannelOptions {
            slow_consumer: Some(SlowConsumerPolicy::DropOldest),
            ..ChannelOptions::default()
        };
        let admission = rules.admit(Target::Channel(&options), BodyShape::Frame(b"x"));
        assert_eq!(admission.map(|a| a.drop_oldest), Ok(true));
    }

    #[test]
    fn defaults_this_server_does_not_allow_refuse_new_channels_and_group_posts_only() {
        let rules = rules(None, |config| config.default_history = 0);
        let body = BodyShape::Frame(b"x");
        let member = Target::Group {
            name: "club",
            sender: "ann",
            member: true,
        };
        let existing = ChannelOptions::default();
        assert_eq!(
            code(rules.admit(Target::NewChannel { name: "news" }, body)),
            Some(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            code(rules.admit(member, body)),
            Some(ErrorCode::InvalidArgument)
        );
        assert_eq!(code(rules.admit(Target::Channel(&existing), body)), None);
    }
}
