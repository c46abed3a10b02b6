//! How verification codes reach the phone number's owner.
//!
//! The embedded default writes them to an outbox in the store, which the operator reads with
//! `rampart admin outbox`, so a single machine works with no SMS gateway. The webhook verifier
//! posts them to the operator's SMS gateway.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rampart_core::{PhoneNumber, VerificationCode};
use rampart_store::{OutboxEntry, Store, UnixMillis};

use crate::config::VerifierConfig;

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("could not store the code in the outbox: {0}")]
    Outbox(#[from] rampart_store::StoreError),
    #[error("the SMS gateway refused the code: HTTP {0}")]
    GatewayStatus(u16),
    #[error("the SMS gateway is unreachable: {0}")]
    Gateway(String),
}

#[async_trait]
pub trait Verifier: Send + Sync + std::fmt::Debug {
    async fn deliver(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<(), VerifierError>;
}

fn code_text(code: &VerificationCode, ttl: Duration) -> String {
    format!(
        "Your Rampart code is {}. It expires in {} minutes. Never share it with anyone.",
        code.as_str(),
        ttl.as_secs().div_ceil(60)
    )
}

/// Build the verifier the configuration asks for.
pub fn from_config(config: &VerifierConfig, store: Arc<dyn Store>) -> Arc<dyn Verifier> {
    match config {
        VerifierConfig::Outbox => Arc::new(OutboxVerifier { store }),
        VerifierConfig::Webhook { url, bearer_token } => Arc::new(WebhookVerifier {
            url: url.clone(),
            bearer_token: bearer_token.clone(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
        }),
    }
}

pub struct OutboxVerifier {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for OutboxVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxVerifier").field("store", &self.store.backend_name()).finish()
    }
}

#[async_trait]
impl Verifier for OutboxVerifier {
    async fn deliver(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<(), VerifierError> {
        let entry =
            OutboxEntry { phone: phone.as_e164().to_owned(), text: code_text(code, ttl), created_at: now };
        Ok(self.store.outbox_push(entry).await?)
    }
}

pub struct WebhookVerifier {
    url: String,
    bearer_token: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may embed credentials and the token is one: show neither.
        f.debug_struct("WebhookVerifier").finish_non_exhaustive()
    }
}

#[async_trait]
impl Verifier for WebhookVerifier {
    async fn deliver(
        &self,
        phone: &PhoneNumber,
        code: &VerificationCode,
        ttl: Duration,
        _now: UnixMillis,
    ) -> Result<(), VerifierError> {
        let body = serde_json::json!({ "phone": phone.as_e164(), "text": code_text(code, ttl) });
        let mut req = self.client.post(&self.url).json(&body);
        if let Some(token) = &self.bearer_token {
            req = req.bearer_auth(token);
        }
        // reqwest's error text includes the URL; keep only the kind of failure.
        let resp = req.send().await.map_err(|e| {
            VerifierError::Gateway(if e.is_timeout() {
                "timed out".into()
            } else {
                "connection failed".into()
            })
        })?;
        if !resp.status().is_success() {
            return Err(VerifierError::GatewayStatus(resp.status().as_u16()));
        }
        Ok(())
    }
}
