//! What one role's sessions may use: rates with bursts, counts and sizes.

use serde::Deserialize;

/// `[roles.NAME.limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {}
