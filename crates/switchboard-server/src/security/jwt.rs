//! JSON Web Tokens from an identity provider: the signature checked with the configured
//! key under the one algorithm the configuration pins (a token naming another is
//! refused, so an HMAC token cannot pass for one signed with a public key), then `exp`,
//! `nbf`, and `iss` and `aud` when configured. The user is the `sub` claim (or the
//! configured one); the `roles` claim (or the configured one) adds roles.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::config::{JwtAlgorithm, JwtSpec};

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtClaims {
    pub user: String,
    pub roles: Vec<String>,
    /// `exp`, in microseconds since the Unix epoch.
    pub expires_at_us: u64,
}

/// Verifies tokens against one key.
pub(crate) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
    roles_claim: String,
    leeway_us: u64,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("user_claim", &self.user_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Reads the key file; the error says which file and why.
    pub fn new(spec: &JwtSpec) -> Result<JwtVerifier, String> {
        let read = |path: &Option<std::path::PathBuf>, what: &str| {
            let path = path
                .as_ref()
                .ok_or_else(|| format!("{:?} needs {what}", spec.algorithm))?;
            std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
        };
        let (algorithm, key) = match spec.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = read(&spec.secret_file, "secret_file")?;
                let secret = trim_line_end(&secret);
                if secret.len() < 32 {
                    return Err("the HS256 secret must be at least 32 bytes".to_owned());
                }
                (Algorithm::HS256, DecodingKey::from_secret(secret))
            }
            JwtAlgorithm::RS256 => {
                let pem = read(&spec.public_key_file, "public_key_file")?;
                let key = DecodingKey::from_rsa_pem(&pem).map_err(|error| {
                    format!("public_key_file is not an RSA public key in PEM ({error})")
                })?;
                (Algorithm::RS256, key)
            }
            JwtAlgorithm::ES256 => {
                let pem = read(&spec.public_key_file, "public_key_file")?;
                let key = DecodingKey::from_ec_pem(&pem).map_err(|error| {
                    format!("public_key_file is not an EC public key in PEM ({error})")
                })?;
                (Algorithm::ES256, key)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = spec.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECONDS);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &spec.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &spec.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier {
            key,
            leeway_us: validation.leeway.saturating_mul(1_000_000),
            validation,
            user_claim: spec.user_claim.clone().unwrap_or_else(|| "sub".to_owned()),
            roles_claim: spec
                .roles_claim
                .clone()
                .unwrap_or_else(|| "roles".to_owned()),
        })
    }

    /// The claims of a valid token, or why it is refused (said to the client).
    pub fn verify(&self, token: &[u8]) -> Result<JwtClaims, String> {
        let token = std::str::from_utf8(token).map_err(|_| "malformed token".to_owned())?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token.trim(),
            &self.key,
            &self.validation,
        )
        .map_err(|error| refusal(error.kind()))?;
        let claims = data.claims;
        let user = match claims.get(&self.user_claim) {
            Some(Value::String(user)) if !user.is_empty() => user.clone(),
            _ => return Err(format!("the token has no {} claim", self.user_claim)),
        };
        let roles = match claims.get(&self.roles_claim) {
            Some(Value::Array(roles)) => roles
                .iter()
                .filter_map(|role| role.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(roles)) => roles.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(JwtClaims {
            user,
            roles,
            // The session ends when the token would no longer be accepted.
            expires_at_us: exp.saturating_mul(1_000_000).saturating_add(self.leeway_us),
        })
    }
}

/// Clock skew allowed between the identity provider and this server.
pub(crate) const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// A secret file usually ends with a newline that is not part of the secret.
fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

fn refusal(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid".to_owned(),
        ErrorKind::InvalidSignature => "token signature invalid".to_owned(),
        ErrorKind::InvalidAudience => "token audience not accepted".to_owned(),
        ErrorKind::InvalidIssuer => "token issuer not accepted".to_owned(),
        ErrorKind::InvalidAlgorithm => "token algorithm not accepted".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token has no {claim} claim"),
        _ => "malformed token".to_owned(),
    }
}
