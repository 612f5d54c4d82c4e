//! OAuth2 for the REST catalog: the client-credentials token endpoint
//! (`POST /v1/oauth/tokens`, RFC 6749 §4.4, what PyIceberg's `credential`
//! and Spark's `credential` property call) and the bearer check on every
//! other route.
//!
//! # Invariants
//! - **Off unless configured.** With no clients configured, every call is
//!   let through (loopback only: `ServeConfig::validate` refuses a public
//!   address without clients).
//! - **Signed by us, stateless.** A token is `payload.signature`: the payload
//!   is base64url JSON `{"sub", "scope", "exp"}`, the signature HMAC-SHA256 of
//!   the payload under the server's key: `ICEFJORD_REST_TOKEN_KEY` (the same on
//!   every replica, so each accepts the others' tokens and a restart keeps
//!   them valid) or else a random key per process. The key is never derived
//!   from client secrets, which clients know. A token is honoured only while
//!   its client is still configured, and `write` only while the client may
//!   still write.
//! - **Scopes.** `read` lets a client list and load; `write` also commits,
//!   creates, renames and drops. A client asking for `catalog` (the clients'
//!   default scope) gets every scope it is allowed. A valid token without
//!   `write` on a write is 403; no token or a bad one is 401.
//! - Secrets and tokens never reach logs or error messages.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::RestError;
use super::model::{OAuthError, TokenRequest, TokenResponse};
use super::RestState;
use crate::config::{RestClient, Secret};

/// How long a token is valid, in seconds.
const TOKEN_LIFETIME_S: u64 = 3600;
const READ: &str = "read";
const WRITE: &str = "write";

/// The configured clients and the key their tokens are signed with.
pub struct TokenAuth {
    clients: Vec<RestClient>,
    key: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    scope: String,
    exp: u64,
}

impl TokenAuth {
    /// `None` when no client is configured (no token is asked). `key`: the
    /// configured signing key (`ICEFJORD_REST_TOKEN_KEY`), else a random one.
    pub fn new(clients: &[RestClient], key: Option<&Secret>) -> Option<Self> {
        if clients.is_empty() {
            return None;
        }
        let mut digest = Sha256::new();
        digest.update(b"icefjord-rest-token-v1");
        match key {
            Some(key) => digest.update(key.expose().as_bytes()),
            // Two v4 UUIDs: 244 bits from the OS's random source.
            None => {
                digest.update(uuid::Uuid::new_v4().as_bytes());
                digest.update(uuid::Uuid::new_v4().as_bytes());
            }
        }
        Some(Self {
            clients: clients.to_vec(),
            key: digest.finalize().into(),
        })
    }

    fn sign(&self, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A token for a client with the scopes it asked for and may have.
    fn issue(&self, request: &TokenRequest) -> Result<TokenResponse, (StatusCode, OAuthError)> {
        let fail = |status, error, text: &str| {
            (
                status,
                OAuthError {
                    error,
                    error_description: text.to_string(),
                },
            )
        };
        if request.grant_type != "client_credentials" {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ));
        }
        let (Some(id), Some(secret)) = (&request.client_id, &request.client_secret) else {
            return Err(fail(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client_id and client_secret are required",
            ));
        };
        // Compare every client so the time taken does not say which id exists.
        let client = self.clients.iter().fold(None, |found, client| {
            let matches = client.secret.matches(secret) & (client.id == *id);
            if matches {
                Some(client)
            } else {
                found
            }
        });
        let client = client.ok_or_else(|| {
            fail(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong secret",
            )
        })?;
        let allowed: &[&str] = if client.write {
            &[READ, WRITE]
        } else {
            &[READ]
        };
        let asked = request.scope.as_deref().unwrap_or("catalog");
        let mut scopes = Vec::new();
        for scope in asked.split_whitespace() {
            match scope {
                "catalog" | "PRINCIPAL_ROLE:ALL" => scopes.extend_from_slice(allowed),
                s if allowed.contains(&s) => scopes.push(s),
                s if s == WRITE => {
                    return Err(fail(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "this client may only read",
                    ))
                }
                _ => {}
            }
        }
        scopes.sort_unstable();
        scopes.dedup();
        if scopes.is_empty() {
            scopes.push(READ);
        }
        let claims = Claims {
            sub: client.id.clone(),
            scope: scopes.join(" "),
            exp: now() + TOKEN_LIFETIME_S,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        Ok(TokenResponse {
            access_token: format!("{payload}.{}", self.sign(&payload)),
            token_type: "bearer",
            expires_in: TOKEN_LIFETIME_S,
            issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
            scope: claims.scope,
        })
    }

    /// The claims of a token we signed that has not expired.
    fn verify(&self, token: &str) -> Option<Claims> {
        let (payload, signature) = token.split_once('.')?;
        if !Secret::new(self.sign(payload)).matches(signature) {
            return None;
        }
        let mut claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let client = self.clients.iter().find(|c| c.id == claims.sub)?;
        if !client.write {
            claims.scope = READ.to_string();
        }
        (claims.exp > now()).then_some(claims)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /v1/oauth/tokens`.
pub async fn token(
    State(state): State<RestState>,
    form: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    let request = match form {
        Ok(Form(request)) => request,
        Err(rejection) => {
            let error = OAuthError {
                error: "invalid_request",
                error_description: format!(
                    "a form-encoded client-credentials request is expected \
                     (grant_type=client_credentials&client_id=…&client_secret=…): {}",
                    rejection.body_text()
                ),
            };
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
    };
    let Some(auth) = &state.auth else {
        // No clients configured: any client may have a token; it is not checked.
        return Json(TokenResponse {
            access_token: "anonymous".into(),
            token_type: "bearer",
            expires_in: TOKEN_LIFETIME_S,
            issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
            scope: format!("{READ} {WRITE}"),
        })
        .into_response();
    };
    match auth.issue(&request) {
        Ok(token) => Json(token).into_response(),
        Err((status, error)) => (status, Json(error)).into_response(),
    }
}

/// Whether a call changes the catalog: everything but GET/HEAD and the
/// metrics report (matched by its route, so a table named `metrics` is not
/// mistaken for it).
fn is_write(method: &Method, route: Option<&str>) -> bool {
    !(method == Method::GET
        || method == Method::HEAD
        || route.is_some_and(|r| r.ends_with("/tables/{table}/metrics")))
}

/// The bearer check (see the module docs).
pub async fn require_token(
    State(state): State<RestState>,
    request: Request,
    next: Next,
) -> Result<Response, RestError> {
    if let Some(auth) = &state.auth {
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let claims = token.and_then(|t| auth.verify(t)).ok_or_else(|| {
            RestError::unauthorized("a valid bearer token is required (POST /v1/oauth/tokens)")
        })?;
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str());
        if is_write(request.method(), route) && !claims.scope.split(' ').any(|s| s == WRITE) {
            return Err(RestError::forbidden(format!(
                "client {} has no write scope",
                claims.sub
            )));
        }
    }
    Ok(next.run(request).await)
}
