//! A secret read from the configuration (an API token, a database token, a webhook's bearer token).
//! It is kept in a [`Secret`] from the moment it is read, so no `Debug` of a struct that holds one,
//! and no `tracing` field at any level, can print it: `{:?}` shows `Secret(***)`.
//!
//! (protocols' `Secret` is the node's: at most 64 bytes, no heap; a database token is longer.)
//!
//! It also checks an HTTP `Authorization` header against itself: the scheme `Bearer` matched without
//! regard to case (RFC 7235 §2.1: "auth-scheme" is case-insensitive; RFC 6750 §2.1 for Bearer), the
//! token compared in constant time, so its length and content do not leak by timing.

use std::fmt;
use std::sync::Arc;

/// A token or password. Cloning shares it; it is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (a header, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `authorization` (an `Authorization` header's value) is `Bearer` with this token.
    pub fn authorizes(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(bearer_token) else {
            return false;
        };
        let token = self.0.as_bytes();
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The token of a `Bearer` credential (`bearer`, `BEARER` ... too), without surrounding blanks.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_matches_in_any_case_and_the_token_exactly() {
        let secret = Secret::new("s3cret-token");
        for header in [
            "Bearer s3cret-token",
            "bearer s3cret-token",
            "BEARER  s3cret-token",
        ] {
            assert!(secret.authorizes(Some(header)), "{header}");
        }
        for header in [
            "Bearer s3cret-tokem",
            "Bearer s3cret-token2",
            "Basic s3cret-token",
            "s3cret-token",
            "Bearer",
        ] {
            assert!(!secret.authorizes(Some(header)), "{header}");
        }
        assert!(!secret.authorizes(None));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", Some(Secret::new("s3cret-token")));
        assert_eq!(shown, "Some(Secret(***))");
    }
}
