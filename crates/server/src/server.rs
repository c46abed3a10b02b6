//! The listener: TCP, then TLS, then HTTP/1.1, then (for `/v1/ws`) a WebSocket session.
//!
//! Every stage has a deadline, so a client that connects and sends nothing is dropped: the TLS
//! handshake and the HTTP request head within `timeouts.handshake`, the session's first
//! authentication within `timeouts.anonymous`, then traffic at least every `timeouts.idle`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use rampart_core::limits::MAX_FRAME_BYTES;
use rampart_store::{Store, StoreEvent};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::state::{Shared, now_ms};
use crate::tls::{self, ServerIdentity, TlsError};
use crate::{session, verifier};

/// tungstenite reads in chunks of this size. Its 128 KiB default would cost 128 KiB per idle
/// device; frames larger than this still arrive whole, the buffer grows for them.
const WS_READ_BUFFER: usize = 1024;
/// Frames are gathered up to this size and written together when the session flushes.
const WS_WRITE_BUFFER: usize = 16 * 1024;
/// A client that stops reading gets disconnected once this much is waiting to be written.
const WS_MAX_WRITE_BUFFER: usize = 2 * 1024 * 1024;
/// How often expired messages and codes are purged and queue gauges sampled.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);
/// Maintenance rounds between two evidence retention passes (an hour).
const EVIDENCE_PRUNE_ROUNDS: u64 = 120;
/// How often tallied call misfits go to the store and the log.
const MISFIT_FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot open the database: {0}")]
    Store(#[from] rampart_store::StoreError),
    #[error("cannot open the blob store: {0}")]
    Blobs(#[from] crate::blobs::BlobError),
    #[error("cannot read the relay secret: {0}")]
    RelaySecret(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("Sentinel's policy: {0}")]
    Policy(String),
    #[error("cannot open the evidence log: {0}")]
    Evidence(#[from] crate::evidence_log::EvidenceLogError),
}

/// A bound server, not yet serving. Lets the caller print the address and fingerprint first.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    identity: ServerIdentity,
    /// The operator console and its listener, when it listens.
    console: Option<(Arc<crate::console::Console>, TcpListener)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.local_addr()).finish_non_exhaustive()
    }
}

/// Open the store the configuration names: PostgreSQL if `database_url` is set, else the
/// embedded SQLite file in the data dir.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(rampart_store::postgres::PostgresStore::connect(url).await?),
        None => Arc::new(rampart_store::sqlite::SqliteStore::open(&config.data_dir.join("rampart.db"))?),
    })
}

fn load_or_create_log_key(dir: &Path) -> Result<[u8; 32], ServerError> {
    let path = dir.join("log.key");
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    tls::write_private(&path, &key)?;
    Ok(key)
}

/// The secret shared with the TURN relays: the configured file, else DATA_DIR/relay.secret
/// (created on first start, 32 random bytes as hex, readable by the owner only).
pub fn load_or_create_relay_secret(
    config: &ServerConfig,
) -> Result<rampart_turn::credentials::SharedSecret, ServerError> {
    let secret_error = |e: &dyn std::fmt::Display| ServerError::RelaySecret(e.to_string());
    let path = match &config.calls.relay_secret_file {
        Some(p) => p.clone(),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
            let path = config.data_dir.join("relay.secret");
            if !path.exists() {
                let secret: [u8; 32] = rand::random();
                tls::write_private(&path, hex::encode(secret).as_bytes())?;
            }
            path
        }
    };
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path).map_err(|e| secret_error(&format!("{}: {e}", path.display())))?,
    );
    rampart_turn::credentials::SharedSecret::new(text.trim().as_bytes().to_vec())
        .map_err(|e| secret_error(&e))
}

/// A handle on the server's metrics for components outside the server crate.
#[derive(Clone)]
pub struct MetricsSink {
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSink")
    }
}

impl MetricsSink {
    /// The embedded relay's running total of datagrams with this outcome.
    pub fn relay_total(&self, outcome: &'static str, total: u64) {
        self.metrics.relay_total(outcome, total);
    }
}

impl Server {
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| ServerError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let identity = tls::load_or_create(
            &config.data_dir,
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            &[],
        )?;
        let acceptor = TlsAcceptor::from(identity.rustls_config()?);
        let log_key = load_or_create_log_key(&config.data_dir)?;
        let store = open_store(&config).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        // The console is a convenience beside the service: a taken port is told, not fatal.
        let console_listener = if config.console.enabled {
            match TcpListener::bind(config.console.listen).await {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!(addr = %config.console.listen, error = %e, "the operator console cannot listen; the server runs without it");
                    None
                }
            }
        } else {
            None
        };
        let blobs = crate::blobs::BlobStore::open(&config.data_dir.join("attachments")).await?;
        let verifier = verifier::from_config(&config.verifier, store.clone());
        let relay = if config.calls.relays.is_empty() {
            None
        } else {
            Some(crate::state::RelayAccess {
                secret: load_or_create_relay_secret(&config)?,
                relays: config.calls.relays.clone(),
                ttl_secs: config.calls.credential_ttl_secs,
            })
        };
        let sentinel = if config.sentinel.enabled {
            let (policy, ranges) =
                crate::sentinel_service::load(&config.sentinel).map_err(ServerError::Policy)?;
            Some(crate::sentinel_service::SentinelService::new(policy, ranges))
        } else {
            None
        };
        let evidence =
            crate::evidence_log::EvidenceLog::open(&crate::evidence_log::evidence_dir(&config.data_dir))?;
        let mut shared = Shared::new(config, store, blobs, verifier, log_key);
        shared.relay = relay;
        shared.evidence = Some(Arc::new(std::sync::Mutex::new(evidence)));
        shared.sentinel = sentinel;
        let shared = Arc::new(shared);
        let console = match console_listener {
            Some(listener) => {
                let console = crate::console::Console::new(shared.clone()).map_err(ServerError::Policy)?;
                Some((Arc::new(console), listener))
            }
            None => None,
        };
        Ok(Self { shared, listener, acceptor, identity, console })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Where the operator console listens, when it does.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().and_then(|(_, listener)| listener.local_addr().ok())
    }

    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// Where the binary reports figures of components that run beside the server (the
    /// embedded relay), so that they appear on `/metrics`.
    pub fn metrics_sink(&self) -> MetricsSink {
        MetricsSink { metrics: Arc::clone(&self.shared.metrics) }
    }

    /// The public key that signs the evidence log, in hex (for the first-run output: an
    /// operator keeps it elsewhere to check the log against).
    pub fn evidence_public_key(&self) -> Option<String> {
        let log = self.shared.evidence.as_ref()?;
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        Some(hex::encode(log.public_key().as_bytes()))
    }

    pub fn store_backend(&self) -> &'static str {
        self.shared.store.backend_name()
    }

    /// Serve until `shutdown` resolves, then say goodbye to every connection and return once
    /// they are closed (or the grace period is over). Every message acknowledged to a sender
    /// was durably stored before the acknowledgement, so stopping loses nothing.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { shared, listener, acceptor, console, .. } = self;
        let console =
            console.map(|(console, listener)| tokio::spawn(crate::console::serve(console, listener)));
        let router = router(shared.clone());
        let slots = Arc::new(Semaphore::new(shared.config.limits.max_connections.max(1)));
        let maintenance = tokio::spawn(maintain(shared.clone()));
        let misfits = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(MISFIT_FLUSH_EVERY);
                loop {
                    every.tick().await;
                    crate::call_service::flush_misfits(&shared).await;
                    crate::sentinel_service::note_lifts(&shared).await;
                }
            })
        };
        let sentinel = shared.sentinel.as_ref().and_then(|s| s.take_receivers()).map(|receivers| {
            (
                tokio::spawn(crate::sentinel_service::run(shared.clone(), receivers.decisions)),
                tokio::spawn(crate::sentinel_service::keep_sightings(shared.clone(), receivers.sightings)),
            )
        });
        let events = match shared.store.subscribe().await {
            Ok(Some(events)) => Some(tokio::spawn(relay_store_events(shared.clone(), events))),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "cannot listen for other nodes' events; deliveries from them wait for reconnects");
                None
            }
        };
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, addr) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                shared.metrics.connections_refused.inc();
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let conn = serve_connection(tcp, addr, acceptor.clone(), router.clone(), shared.clone(), permit);
            shared.tasks.spawn(conn);
        }
        info!("shutting down: no new connections; saying goodbye to open ones");
        drop(listener);
        shared.shutdown.cancel();
        shared.tasks.close();
        let grace = Duration::from_secs(shared.config.timeouts.shutdown_grace_secs);
        if tokio::time::timeout(grace, shared.tasks.wait()).await.is_err() {
            warn!("some connections did not close within the grace period");
        }
        maintenance.abort();
        misfits.abort();
        // What the last second counted is evidence too.
        crate::call_service::flush_misfits(&shared).await;
        if let Some(events) = events {
            events.abort();
        }
        if let Some((sentinel, sightings)) = sentinel {
            sightings.abort();
            sentinel.abort();
        }
        if let Some(console) = console {
            console.abort();
        }
        info!("stopped");
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    let handshake = shared.config.timeouts.handshake();
    let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            return;
        }
    };
    // The slot travels with the request into the WebSocket session, so the connection cap
    // counts sessions, not just HTTP exchanges.
    let slot = ConnectionSlot { addr, _permit: Arc::new(permit) };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(slot.clone());
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(handshake).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(tls), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res { debug!(error = %e, "HTTP connection ended with an error"); }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// May this peer read `/metrics`? Loopback peers may; others only with the configured token.
fn metrics_allowed(peer: std::net::IpAddr, token_sha256: Option<&str>, presented: Option<&str>) -> bool {
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    if peer.to_canonical().is_loopback() {
        return true;
    }
    let (Some(expected), Some(token)) = (token_sha256, presented) else { return false };
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    subtle::ConstantTimeEq::ct_eq(hash.as_bytes(), expected.to_ascii_lowercase().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::metrics_allowed;

    #[test]
    fn metrics_answer_loopback_or_the_token() {
        let (home, away) = (std::net::IpAddr::from([127, 0, 0, 1]), std::net::IpAddr::from([10, 1, 2, 3]));
        // sha256("test")
        let hash = Some("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
        assert!(metrics_allowed(home, None, None));
        assert!(!metrics_allowed(away, None, None), "traffic counters to anyone");
        assert!(!metrics_allowed(away, None, Some("test")), "a token when none is configured");
        assert!(!metrics_allowed(away, hash, None));
        assert!(!metrics_allowed(away, hash, Some("tes")));
        assert!(metrics_allowed(away, hash, Some("test")));
        assert!(metrics_allowed(std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), None, None));
        let mapped = std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
        assert!(metrics_allowed(mapped, None, None), "::ffff:127.0.0.1 is loopback");
    }
}

#[derive(Clone, Debug)]
struct ConnectionSlot {
    addr: SocketAddr,
    _permit: Arc<OwnedSemaphorePermit>,
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/ws", get(websocket))
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/", get(|| async { "Rampart server. Talk to it with the `rampart` client.\n" }))
        .with_state(shared)
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    Extension(slot): Extension<ConnectionSlot>,
    upgrade: WebSocketUpgrade,
) -> impl IntoResponse {
    let token = shared.tasks.token();
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let _tracked = token;
            let ip = slot.addr.ip();
            session::run(socket, shared, ip).await;
            drop(slot);
        })
}

/// The counters are traffic data (connections, messages, calls over time): served to loopback
/// peers (a Prometheus on the same host, an SSH tunnel), and to others only with the bearer
/// token whose hash is configured.
async fn metrics(
    State(shared): State<Arc<Shared>>,
    Extension(slot): Extension<ConnectionSlot>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !metrics_allowed(slot.addr.ip(), shared.config.metrics_token_sha256.as_deref(), presented) {
        return (
            axum::http::StatusCode::FORBIDDEN,
            "metrics: loopback only, or configure metrics_token_sha256\n",
        )
            .into_response();
    }
    // Each format under its own content type: OpenMetrics text labelled 0.0.4 makes
    // Prometheus file every counter as untyped.
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
    if crate::metrics::wants_openmetrics(accept) {
        (
            [(axum::http::header::CONTENT_TYPE, crate::metrics::OPENMETRICS_CONTENT_TYPE)],
            shared.metrics.render(),
        )
            .into_response()
    } else {
        (
            [(axum::http::header::CONTENT_TYPE, crate::metrics::PROMETHEUS_CONTENT_TYPE)],
            shared.metrics.render_prometheus(),
        )
            .into_response()
    }
}

/// Apply what other server nodes sharing the database did to this node's connections.
async fn relay_store_events(shared: Arc<Shared>, mut events: tokio::sync::mpsc::Receiver<StoreEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            StoreEvent::Queued(device) => shared.hub.nudge(device),
            StoreEvent::Revoked(device) => shared.hub.revoke(device),
            StoreEvent::Linked { code_hash, account, device } => {
                shared.hub.complete_link(code_hash, account, device);
            }
            StoreEvent::Resync => {
                shared.hub.nudge_all();
                recheck_revocations(&shared).await;
            }
        }
    }
}

/// Notices may have been missed while the listening connection was down, revocations among
/// them: every device connected here is looked up again, and one that is gone is cut off.
async fn recheck_revocations(shared: &Shared) {
    for device in shared.hub.attached_devices() {
        match shared.store.device_auth(device).await {
            Ok(None) => shared.hub.revoke(device),
            Ok(Some(_)) => {}
            Err(error) => warn!(%error, "cannot re-check revocations after a resync"),
        }
    }
}

async fn maintain(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(MAINTENANCE_EVERY);
    let mut rounds: u64 = 0;
    loop {
        every.tick().await;
        // Retention: Sentinel's ended actions every round, the evidence log once an hour
        // (it is read whole) and at start.
        crate::sentinel_service::purge(&shared, rounds.is_multiple_of(EVIDENCE_PRUNE_ROUNDS)).await;
        rounds += 1;
        let outbox_ttl = shared.config.limits.code_ttl_secs * 1000;
        match shared.store.purge_expired(now_ms(), outbox_ttl).await {
            Ok(p) if p != Default::default() => info!(
                messages = p.messages,
                registrations = p.registrations,
                links = p.links,
                outbox = p.outbox,
                "purged expired entries"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "purge failed"),
        }
        if let Ok(n) = shared.store.total_queued().await {
            shared.metrics.queued_messages.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        shared.limits.sweep(Instant::now());
        let ttl = Duration::from_secs(shared.config.limits.attachment_ttl_secs);
        match shared.blobs.sweep(ttl).await {
            Ok(0) => {}
            Ok(n) => info!(blobs = n, "deleted expired attachments"),
            Err(e) => warn!(error = %e, "attachment sweep failed"),
        }
    }
}
