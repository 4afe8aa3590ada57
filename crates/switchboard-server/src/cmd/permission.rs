//! The permission checks every request makes before it touches the hub: a denial is an
//! ERROR FORBIDDEN naming the operation and its subject ("publish to chat.admin is not
//! permitted"), counted in `permission_denials`; the session stays open.

use std::sync::Arc;

use switchboard_proto::subject::Pattern;

use super::session::Session;
use crate::error::Refusal;
use crate::hub::Hub;
use crate::hub::stats::Counters;
use crate::security::permissions::{AdminOperation, Coverage, Operation, SessionPermissions};

/// The user name relay rules match a session without a user against.
pub(crate) const ANONYMOUS_USER: &str = "anonymous";

/// A counted FORBIDDEN: "`what` `subject` is not permitted", with `why` after it if
/// given.
pub(super) fn denied(hub: &Hub, what: &str, subject: &str, why: Option<&str>) -> Refusal {
    Counters::add(&hub.counters().permission_denials, 1);
    let mut message = format!("{what} {subject} is not permitted");
    if let Some(why) = why {
        message.push_str(": ");
        message.push_str(why);
    }
    Refusal::forbidden(message)
}

impl Session {
    /// Whether the session may do `operation` on the concrete subject `name`.
    pub(super) fn permit(
        &self,
        hub: &Hub,
        operation: Operation,
        name: &str,
    ) -> Result<(), Refusal> {
        if self.permissions.allows(operation, name) {
            Ok(())
        } else {
            Err(denied(hub, operation.describe(), name, None))
        }
    }

    /// Whether the session may use the admin operation.
    pub(super) fn permit_admin(&self, hub: &Hub, operation: AdminOperation) -> Result<(), Refusal> {
        if self.permissions.grants().may_admin(operation) {
            Ok(())
        } else {
            Err(denied(hub, "admin operation", operation.name(), None))
        }
    }

    /// Whether the session may subscribe to `pattern` (and, with a replay, read what
    /// it replays), and the filter its route needs: every wildcard and hashtag route of
    /// a session that may not do everything is filtered by its permissions, so that a
    /// denied channel never reaches it through a wider pattern, now or after a reload.
    pub(super) fn permit_subscription(
        &self,
        hub: &Hub,
        pattern: &Pattern,
        replay: bool,
    ) -> Result<Option<Arc<SessionPermissions>>, Refusal> {
        let grants = self.permissions.grants();
        if grants.is_everything() {
            return Ok(None);
        }
        let text = pattern.to_string();
        if grants.coverage(Operation::Subscribe, pattern) == Coverage::Denied {
            return Err(denied(hub, Operation::Subscribe.describe(), &text, None));
        }
        if replay && grants.coverage(Operation::History, pattern) == Coverage::Denied {
            return Err(denied(hub, "replay of", &text, None));
        }
        Ok(match pattern {
            Pattern::Exact(_) => None,
            Pattern::Wildcard(_) | Pattern::Tag(_) => Some(self.permissions.clone()),
        })
    }
}
