//! Extension points for applications that embed the hub: accept or refuse sessions,
//! accept, reject or rewrite publishes, and learn of disconnects.

use switchboard_proto::packet::Publish;
use uuid::Uuid;

/// What a hook knows of a session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub client_id: u64,
    pub session_id: Uuid,
    pub name: String,
    /// "tcp 127.0.0.1:50312", "tls 127.0.0.1:50312" or "unix".
    pub peer: String,
    pub admin: bool,
}

/// The decision of [`Hooks::on_publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishVerdict {
    /// Store and deliver the (possibly rewritten) message.
    Accept,
    /// Refuse it; the publisher gets ERROR REJECTED with this reason.
    Reject(String),
}

/// Callbacks into an embedding application. They run on the session's task, so they
/// must be quick and must not block; every method has a do-nothing default.
pub trait Hooks: Send + Sync + 'static {
    /// A session is being opened; `Err(reason)` refuses it.
    fn on_connect(&self, _session: &SessionInfo) -> Result<(), String> {
        Ok(())
    }

    /// A TLS session that presented a verified client certificate is being opened, before
    /// [`Hooks::on_connect`]; `certificate_names` are its subject CN, then its DNS and
    /// email alternative names. `Err(reason)` refuses it. (The names are not kept in
    /// [`SessionInfo`]: every session, TLS or not, would carry the room for them.)
    fn on_client_certificate(
        &self,
        _session: &SessionInfo,
        _certificate_names: &[String],
    ) -> Result<(), String> {
        Ok(())
    }

    /// A message is about to be published. The hook may change the channel, content
    /// type, user headers or body in place.
    fn on_publish(&self, _session: &SessionInfo, _publish: &mut Publish) -> PublishVerdict {
        PublishVerdict::Accept
    }

    /// A session has ended, for the given reason.
    fn on_disconnect(&self, _session: &SessionInfo, _reason: &str) {}

    /// Whether these hooks look at sessions once they are open ([`Hooks::on_publish`],
    /// [`Hooks::on_disconnect`]). When false, neither is called and an open session
    /// keeps no [`SessionInfo`]: every idle session would otherwise hold copies of its
    /// name and its peer's description for nothing. True unless overridden.
    fn follows_sessions(&self) -> bool {
        true
    }
}

/// Hooks that accept everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn follows_sessions(&self) -> bool {
        false
    }
}
