//! Client commands: one module per area, each connecting, doing one thing and printing.

pub mod channel;
pub mod group;
pub mod publish;
pub mod relay;
pub mod session;
pub mod subscribe;
pub mod transfer;

use anyhow::{Context as _, Result};
use switchboard_client::{Client, ClientConfig};

/// What every client command knows from the global options.
#[derive(Debug, Clone)]
pub struct Context {
    pub server: String,
    pub name: Option<String>,
    pub json: bool,
    pub token: Option<String>,
    /// `--user`, and its password.
    pub user: Option<String>,
    pub password: Option<Vec<u8>>,
    pub jwt: Option<Vec<u8>>,
    pub hmac_key: Option<Vec<u8>>,
    /// TLS options from --tls, --ca-file, --cert/--key and --tls-server-name.
    pub tls: Option<switchboard_client::TlsOptions>,
}

impl Context {
    /// The client name: --name, else the login name, else "switchboard-cli".
    pub fn name(&self) -> String {
        self.name
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("USERNAME").ok())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "switchboard-cli".to_owned())
    }

    pub fn config_for(&self, server: &str) -> ClientConfig {
        let mut config = ClientConfig::new(server, self.name());
        if let Some(token) = &self.token {
            config = config.with_credentials(token.clone().into_bytes());
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            config = config.with_password(user.clone(), password.clone());
        }
        if let Some(jwt) = &self.jwt {
            config = config.with_jwt(jwt.clone());
        }
        if let Some(key) = &self.hmac_key {
            config = config.with_hmac_key(key.clone());
        }
        if let Some(tls) = &self.tls {
            config = config.with_tls(tls.clone());
        }
        config
    }

    pub async fn connect_to(&self, server: &str) -> Result<Client> {
        Client::connect(self.config_for(server))
            .await
            .with_context(|| format!("cannot connect to {server}"))
    }

    pub async fn connect(&self) -> Result<Client> {
        self.connect_to(&self.server).await
    }
}
