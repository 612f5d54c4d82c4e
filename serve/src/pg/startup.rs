//! Connection start-up: who may connect and what the server says about itself.
//!
//! - With users configured, a password is asked: SCRAM-SHA-256 (pgwire's SASL
//!   handler) or, when configured, MD5. An unknown user and a wrong password
//!   get the same `28P01` answer, as PostgreSQL gives.
//! - Without users (allowed on loopback only, [`crate::config::ServeConfig::validate`])
//!   every user is trusted, as `trust` in `pg_hba.conf`.
//! - Over the connection limit, start-up ends with `53300 too many clients`.
//! - The server reports itself as PostgreSQL [`SERVER_VERSION`] with
//!   `default_transaction_read_only = on`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::md5pass::{hash_md5_password, Md5PasswordAuthStartupHandler};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth, SCRAM_ITERATIONS};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::sqlstate;
use crate::config::{PasswordMethod, PgUser};
use crate::pg_catalog::SERVER_VERSION;

/// The parameters sent after authentication.
#[derive(Debug)]
pub struct Parameters(DefaultServerParameterProvider);

impl Default for Parameters {
    fn default() -> Self {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = SERVER_VERSION.to_string();
        params.default_transaction_read_only = true;
        params.is_superuser = false;
        Self(params)
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        self.0.server_parameters(client)
    }
}

/// The configured users, as pgwire's authenticators ask for them.
#[derive(Debug)]
pub struct Users {
    users: Vec<PgUser>,
    method: PasswordMethod,
}

impl Users {
    pub fn new(users: Vec<PgUser>, method: PasswordMethod) -> Self {
        Self { users, method }
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        let Some(user) = self.users.iter().find(|u| u.name == name) else {
            return Err(PgWireError::InvalidPassword(name.to_string()));
        };
        let salt: [u8; 16] = rand_salt();
        Ok(match self.method {
            PasswordMethod::ScramSha256 => Password::new(
                Some(salt.to_vec()),
                gen_salted_password(user.password.expose(), &salt, SCRAM_ITERATIONS),
            ),
            PasswordMethod::Md5 => {
                let salt = salt[..4].to_vec();
                let hashed = hash_md5_password(name, user.password.expose(), &salt);
                Password::new(Some(salt), hashed.into_bytes())
            }
        })
    }
}

fn rand_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    let a = uuid::Uuid::new_v4();
    salt.copy_from_slice(a.as_bytes());
    salt
}

/// One connection's start-up handler.
pub enum Startup {
    Trust {
        keys: Arc<dyn PidSecretKeyGenerator>,
        manager: Arc<ConnectionManager>,
        parameters: Arc<Parameters>,
    },
    Scram(SASLAuthStartupHandler<Parameters>),
    Md5(Md5PasswordAuthStartupHandler<Users, Parameters>),
    /// Over the connection limit.
    Refuse,
}

impl Startup {
    /// The handler for a new connection.
    pub fn new(
        users: &Arc<Users>,
        keys: &Arc<dyn PidSecretKeyGenerator>,
        manager: &Arc<ConnectionManager>,
        parameters: &Arc<Parameters>,
    ) -> Self {
        if users.users.is_empty() {
            return Self::Trust {
                keys: keys.clone(),
                manager: manager.clone(),
                parameters: parameters.clone(),
            };
        }
        match users.method {
            PasswordMethod::ScramSha256 => Self::Scram(
                SASLAuthStartupHandler::new(parameters.clone())
                    .with_scram(ScramAuth::new(users.clone()))
                    .with_pid_secret_key_generator(keys.clone())
                    .with_connection_manager(manager.clone()),
            ),
            PasswordMethod::Md5 => Self::Md5(
                Md5PasswordAuthStartupHandler::new(users.clone(), parameters.clone())
                    .with_pid_secret_key_generator(keys.clone())
                    .with_connection_manager(manager.clone()),
            ),
        }
    }
}

/// A connection's start-up: TLS first when the listener has it (as
/// `hostssl` in `pg_hba.conf`: with a certificate configured, a client that
/// did not ask for TLS is refused with `28000` before it can send a
/// password in clear), then [`Startup`].
pub struct Secured {
    pub startup: Startup,
    pub tls_required: bool,
}

#[async_trait]
impl StartupHandler for Secured {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required
            && !client.is_secure()
            && matches!(message, PgWireFrontendMessage::Startup(_))
        {
            return Err(sqlstate::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "this server requires TLS: connect with sslmode=require",
            ));
        }
        self.startup.on_startup(client, message).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Self::Scram(handler) => handler.on_startup(client, message).await,
            Self::Md5(handler) => handler.on_startup(client, message).await,
            Self::Refuse => Err(sqlstate::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            )),
            Self::Trust {
                keys,
                manager,
                parameters,
            } => {
                let PgWireFrontendMessage::Startup(ref startup) = message else {
                    return Ok(());
                };
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let (pid, secret_key) = keys.generate(client);
                client.set_pid_and_secret_key(pid, secret_key.clone());
                let (handle, guard) = manager.register(pid, secret_key);
                client.session_extensions().insert(handle);
                client.session_extensions().insert(guard);
                finish_authentication(client, parameters.as_ref()).await
            }
        }
    }
}
