//! Bearer tokens (`Authorization: Bearer <token>`), checked on every route
//! behind [`require_token`] when tokens are configured (`ICEFJORD_HTTP_TOKEN`,
//! `ICEFJORD_HTTP_TOKENS_FILE`). Each configured token is compared in full
//! ([`crate::config::Secret::matches`]); the caller is named in the query log
//! by the token's position (`token#2`), never by its text.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::AppState;

/// Who called, for the query log line (a request extension).
#[derive(Clone, Debug)]
pub struct Caller(pub String);

/// Let the request through with a configured token (or when none is
/// configured); else 401.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = if state.tokens.is_empty() {
        Caller("anonymous".into())
    } else {
        let offered = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer)
            .ok_or_else(ApiError::unauthorized)?;
        // Every token is compared, so the time taken does not say which matched.
        let matched = state
            .tokens
            .iter()
            .enumerate()
            .fold(None, |found, (i, token)| {
                if token.matches(offered) {
                    Some(i)
                } else {
                    found
                }
            });
        let index = matched.ok_or_else(ApiError::unauthorized)?;
        Caller(format!("token#{}", index + 1))
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// The token of an `Authorization` header value (`Bearer` in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
