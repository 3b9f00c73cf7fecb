//! Who may connect: a client whose password is one of the read tokens (any user name), or,
//! when no tokens are configured, any client on this machine and nobody else.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_DATABASE, METADATA_USER, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::session::{DATABASE, SERVER_VERSION};

/// Checks the read tokens during the startup phase, then tells the client what server it
/// talks to.
pub(super) struct TokenStartupHandler {
    tokens: Arc<[String]>,
    /// TLS is configured, so a connection without it is refused before anything else.
    tls_required: bool,
    /// Where admitted connections are registered, so a cancel request can find them.
    connections: Arc<ConnectionManager>,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
}

impl TokenStartupHandler {
    pub(super) fn new(
        tokens: Arc<[String]>,
        tls_required: bool,
        connections: Arc<ConnectionManager>,
    ) -> TokenStartupHandler {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_owned();
        parameters.default_transaction_read_only = true;
        parameters.is_superuser = false;
        TokenStartupHandler {
            tokens,
            tls_required,
            connections,
            parameters,
            pids: RandomPidSecretKeyGenerator::default(),
        }
    }

    async fn admit<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(database) = client.metadata().get(METADATA_DATABASE)
            && database != DATABASE
        {
            let mut info = fatal("3D000", format!("database \"{database}\" does not exist"));
            info.hint = Some(format!("The database is named {DATABASE}."));
            return Err(PgWireError::UserError(Box::new(info)));
        }
        let (pid, secret_key) = self.pids.generate(client);
        super::cancel::register(&self.connections, client, pid, secret_key.clone());
        client.set_pid_and_secret_key(pid, secret_key);
        finish_authentication(client, &self.parameters).await
    }
}

fn fatal(code: &str, message: String) -> ErrorInfo {
    ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message)
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = expected.len() ^ given.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

fn is_local(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[async_trait]
impl StartupHandler for TokenStartupHandler {
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
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.tls_required && !client.is_secure() {
                    let mut info = fatal(
                        "28000",
                        "this server accepts only TLS connections, and this one is not encrypted"
                            .to_owned(),
                    );
                    info.hint = Some(
                        "Connect with sslmode=require (or verify-full with the server's CA); BI tools call it \"SSL\" or \"secure connection\"."
                            .to_owned(),
                    );
                    return Err(PgWireError::UserError(Box::new(info)));
                }
                if self.tokens.is_empty() {
                    let peer = client.socket_addr().ip();
                    if !is_local(peer) {
                        let mut info = fatal(
                            "28000",
                            format!(
                                "no read tokens are configured, so only connections from this machine are accepted, not from {peer}"
                            ),
                        );
                        info.hint = Some(
                            "Configure read tokens for the SQL endpoint (docs/sql.md, \"Authentication\")."
                                .to_owned(),
                        );
                        return Err(PgWireError::UserError(Box::new(info)));
                    }
                    return self.admit(client).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let given = password.password.as_bytes();
                // Every token is compared, for the same reason as in `same_secret`.
                let known = self.tokens.iter().fold(false, |known, token| {
                    known | same_secret(token.as_bytes(), given)
                });
                if !known {
                    let user = client
                        .metadata()
                        .get(METADATA_USER)
                        .cloned()
                        .unwrap_or_default();
                    let mut info = fatal(
                        "28P01",
                        format!("password authentication failed for user \"{user}\""),
                    );
                    info.detail = Some(
                        "The password must be one of the endpoint's read tokens; the user name is not checked."
                            .to_owned(),
                    );
                    return Err(PgWireError::UserError(Box::new(info)));
                }
                self.admit(client).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"token-1", b"token-1"));
        assert!(!same_secret(b"token-1", b"token-2"));
        assert!(!same_secret(b"token-1", b"token-"));
        assert!(!same_secret(b"token-1", b"token-12"));
        assert!(!same_secret(b"", b"x"));
    }

    #[test]
    fn loopback_includes_mapped_ipv4() {
        assert!(is_local("127.0.0.1".parse().expect("ip")));
        assert!(is_local("::1".parse().expect("ip")));
        assert!(is_local("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!is_local("10.0.0.7".parse().expect("ip")));
    }
}
