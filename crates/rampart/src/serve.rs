//! `rampart serve` and `rampart admin`: configuration from file, environment and flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rampart_server::{Server, ServerConfig};

/// Where settings come from, weakest first: built-in defaults, the TOML file (--config),
/// environment variables (RAMPART_*), flags.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "RAMPART_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database, TLS certificate and keys.
    #[arg(long, env = "RAMPART_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL instead of the embedded store, e.g. postgres://rampart@db.internal/rampart
    #[arg(long, env = "RAMPART_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on for HTTPS and WebSocket.
    #[arg(long, env = "RAMPART_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Your own TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "RAMPART_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key for --tls-cert (PEM).
    #[arg(long, env = "RAMPART_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "RAMPART_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address of the TURN listener, UDP and TCP (default from the config's [calls.relay],
    /// 127.0.0.1:3478). TLS listens on the same IP, port [calls.relay] tls_port (5349; 443
    /// passes nearly every firewall).
    #[arg(long, env = "RAMPART_RELAY_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// The address clients reach relayed ports on, if not the listen address.
    #[arg(long, env = "RAMPART_RELAY_ADVERTISED_IP", value_name = "IP")]
    pub advertised_ip: Option<std::net::IpAddr>,
    /// File holding the secret shared with the signaling server (default DATA_DIR/relay.secret).
    #[arg(long, env = "RAMPART_RELAY_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, env = "RAMPART_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("org", "rampart", "rampart")
        .map(|d| d.data_dir().join("server"))
        .unwrap_or_else(|| PathBuf::from("rampart-data"))
}

pub fn load_config(args: &StoreArgs) -> anyhow::Result<ServerConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut config = ServerConfig::from_toml(&text)
                .with_context(|| format!("invalid configuration in {}", path.display()))?;
            // A file without data_dir means the same default as no file at all.
            let names_data_dir =
                text.parse::<toml::Table>().map(|t| t.contains_key("data_dir")).unwrap_or(false);
            if !names_data_dir {
                config.data_dir = default_data_dir();
            }
            config
        }
        None => ServerConfig { data_dir: default_data_dir(), ..ServerConfig::default() },
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.database_url {
        config.database_url = Some(url.clone());
    }
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // At debug and trace level these libraries log frame and record contents. Whatever
    // RUST_LOG says, they stay at info so logs can never hold message bodies or secrets.
    for quiet in [
        "tungstenite",
        "tokio_tungstenite",
        "rustls",
        "tokio_rustls",
        "hyper",
        "hyper_util",
        "tokio_postgres",
        "reqwest",
    ] {
        if let Ok(d) = format!("{quiet}=info").parse() {
            filter = filter.add_directive(d);
        }
    }
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let mut config = load_config(&args.store)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert.clone();
        config.tls_key = args.tls_key.clone();
    }
    let data_dir = config.data_dir.clone();
    // The relay starts first: the server hands out its addresses with call credentials.
    let mut certificate_created = false;
    let relay = if config.calls.relay.enabled && config.calls.relays.is_empty() {
        let secret =
            rampart_server::load_or_create_relay_secret(&config).context("the relay could not start")?;
        let tls = relay_tls(&config, &mut certificate_created)?;
        let handle = match start_relay(&config.calls.relay, secret, tls.clone()).await {
            Ok(handle) => handle,
            Err(e)
                if config.calls.relay.listen == rampart_server::config::RelaySettings::default().listen =>
            {
                // A default port is taken (often by a coturn on the same machine). Any ports
                // will do: clients learn the relay's addresses from the server.
                let mut settings = config.calls.relay.clone();
                settings.listen.set_port(0);
                eprintln!("note: {e:#}; the relay takes free ports instead");
                let secret = rampart_server::load_or_create_relay_secret(&config)?;
                start_relay(&settings, secret, tls).await?
            }
            Err(e) => return Err(e),
        };
        config.calls.relays = relay_uris(&handle, config.calls.relay.advertised_ip);
        Some(handle)
    } else {
        None
    };
    let relays = config.calls.relays.clone();
    let using_postgres = config.database_url.is_some();
    let outbox = matches!(config.verifier, rampart_server::config::VerifierConfig::Outbox);
    let server = Server::bind(config).await.context("the server could not start")?;
    let reporter =
        relay.as_ref().map(|r| tokio::spawn(report_relay(r.stats_reader(), server.metrics_sink())));
    let addr = server.local_addr().context("no local address")?;
    let id = server.identity();
    let url = format!("https://{addr}");

    outln!("Rampart server {} is running.", env!("CARGO_PKG_VERSION"));
    outln!("  listening     {url}  (WebSocket /v1/ws, health /health, metrics /metrics)");
    outln!("  data          {}", data_dir.display());
    if using_postgres {
        outln!("  storage       PostgreSQL");
    } else {
        outln!("  storage       embedded SQLite: {}", data_dir.join("rampart.db").display());
    }
    outln!("  attachments   {} (ciphertext only)", data_dir.join("attachments").display());
    match (&relay, relays.is_empty()) {
        (Some(handle), _) => outln!("  relay         {} (calls; media relayed only)", describe_relay(handle)),
        (None, false) => outln!("  relay         external: {}", relays.join(", ")),
        (None, true) => outln!("  relay         none: calls are off"),
    }
    let origin = if id.created || certificate_created { "created now (self-signed)" } else { "from" };
    outln!("  certificate   {origin} {}", id.source.display());
    outln!("  fingerprint   {}", id.fingerprint());
    if let Some(key) = server.evidence_public_key() {
        outln!(
            "  evidence      {} (signed by {key}: note this key elsewhere; check the log with rampart admin evidence verify --key {key})",
            rampart_server::evidence_log::evidence_dir(&data_dir).display()
        );
    }
    if let Some(console) = server.console_addr() {
        let operators = rampart_server::console::auth::read_operators(
            &rampart_server::console::auth::operators_path(&data_dir),
        )
        .map(|ops| ops.len())
        .unwrap_or(0);
        if operators == 0 {
            outln!(
                "  console       http://{console} (no operator yet: rampart admin console add-operator NAME --data-dir {})",
                data_dir.display()
            );
        } else {
            outln!("  console       http://{console} ({operators} operators; loopback only)");
        }
    }
    if outbox {
        outln!(
            "  codes         verification codes go to the local outbox: rampart admin outbox --data-dir {}",
            data_dir.display()
        );
    }
    outln!();
    outln!("Clients pin this fingerprint on first contact. Next, on a client:");
    outln!("  rampart account register --server {url} --phone +15551234567");
    outln!("Stop with Ctrl-C; queued messages are kept.");

    server.run(shutdown_signal()).await;
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    Ok(())
}

/// Copy the embedded relay's counters to the server's `/metrics` once a second.
async fn report_relay(relay: rampart_relay::RelayStatsReader, sink: rampart_server::MetricsSink) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let s = relay.stats();
        for (outcome, total) in [
            ("relayed_to_peer", s.relayed_to_peer),
            ("relayed_to_client", s.relayed_to_client),
            ("dropped_malformed_media", s.dropped_malformed),
            ("dropped_over_bandwidth", s.dropped_over_bandwidth),
            ("dropped_no_permission", s.dropped_no_permission),
            ("dropped_garbage", s.dropped_garbage),
            ("rejected_auth", s.rejected_auth),
            ("rejected_quota", s.rejected_quota),
        ] {
            sink.relay_total(outcome, total);
        }
    }
}

/// The TLS configuration of the relay's TURN-over-TLS listener: the server's own certificate
/// (created in the data dir on first start), which clients already pinned.
fn relay_tls(
    config: &rampart_server::ServerConfig,
    created: &mut bool,
) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    if !config.calls.relay.tls {
        return Ok(None);
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let identity = rampart_server::tls::load_or_create(
        &config.data_dir,
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &[],
    )
    .context("the relay's TLS certificate")?;
    *created |= identity.created;
    Ok(Some(identity.relay_rustls_config().context("the relay's TLS configuration")?))
}

/// What the server hands out for a relay it started: the UDP address bare (`host:port`, which
/// every client reads as UDP), then TURN URIs for TCP and TLS.
fn relay_uris(handle: &rampart_relay::RelayHandle, advertised_ip: Option<std::net::IpAddr>) -> Vec<String> {
    use rampart_turn::uri::{RelayTransport, TurnUri};
    let public = |addr: SocketAddr| SocketAddr::new(advertised_ip.unwrap_or(addr.ip()), addr.port());
    let mut uris = vec![public(handle.local_addr()).to_string()];
    for (transport, addr) in
        [(RelayTransport::Tcp, handle.tcp_addr()), (RelayTransport::Tls, handle.tls_addr())]
    {
        if let Some(addr) = addr.map(public) {
            uris.push(TurnUri::new(transport, addr.ip().to_string(), addr.port()).to_string());
        }
    }
    uris
}

/// "TURN over UDP a · TCP b · TLS c" for the first-run output.
fn describe_relay(handle: &rampart_relay::RelayHandle) -> String {
    let mut text = format!("TURN over UDP {}", handle.local_addr());
    if let Some(tcp) = handle.tcp_addr() {
        text.push_str(&format!(" · TCP {tcp}"));
    }
    if let Some(tls) = handle.tls_addr() {
        text.push_str(&format!(" · TLS {tls}"));
    }
    text
}

/// Start the TURN relay with the server's relay settings.
async fn start_relay(
    settings: &rampart_server::config::RelaySettings,
    secret: rampart_turn::credentials::SharedSecret,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> anyhow::Result<rampart_relay::RelayHandle> {
    let relay_ip = settings.listen.ip();
    if relay_ip.is_unspecified() && settings.advertised_ip.is_none() {
        anyhow::bail!(
            "the relay listens on {} but has no advertised_ip: set [calls.relay] advertised_ip to the address clients reach",
            settings.listen
        );
    }
    if settings.min_port > settings.max_port {
        anyhow::bail!("[calls.relay] min_port is above max_port");
    }
    let mut config = rampart_relay::RelayConfig::new(settings.listen, relay_ip, "rampart", secret);
    config.advertised_ip = settings.advertised_ip;
    config.port_range = settings.min_port..=settings.max_port;
    config.max_allocations_per_user = settings.allocations_per_user;
    config.bandwidth_bytes_per_sec = settings.bandwidth_kib_per_sec.saturating_mul(1024);
    config.media_check = settings.media_check;
    // Relayed media goes from one relayed port to another: on a loopback-only relay those
    // peers are loopback addresses, and nothing else can reach it anyway.
    config.allow_loopback_peers = relay_ip.is_loopback();
    // Calls are relay-only: a peer is always a relayed address of this relay (or of another
    // relay of the same deployment).
    let mut peers = vec![settings.advertised_ip.unwrap_or(relay_ip)];
    peers.extend(settings.peer_relays.iter().copied());
    config.peer_ips = Some(peers);
    if settings.tcp {
        config.tcp_listen = Some(settings.listen);
    }
    if let Some(tls) = tls {
        // With port 0 in `listen` (tests, or a taken default) every listener takes a free port.
        let port = if settings.listen.port() == 0 { 0 } else { settings.tls_port };
        config.tls = Some(rampart_relay::TlsListen { listen: SocketAddr::new(relay_ip, port), config: tls });
    }
    rampart_relay::start(config).await.with_context(|| {
        format!(
            "the relay could not start on {} (set [calls.relay] listen and tls_port, or enabled = false)",
            settings.listen
        )
    })
}

/// `rampart relay`: only the TURN relay, for a separate host.
pub async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let mut config = load_config(&args.store)?;
    if let Some(listen) = args.listen {
        config.calls.relay.listen = listen;
    }
    if args.advertised_ip.is_some() {
        config.calls.relay.advertised_ip = args.advertised_ip;
    }
    if args.secret_file.is_some() {
        config.calls.relay_secret_file = args.secret_file.clone();
    }
    let secret =
        rampart_server::load_or_create_relay_secret(&config).context("cannot read the relay secret")?;
    let mut certificate_created = false;
    let tls = relay_tls(&config, &mut certificate_created)?;
    let handle = start_relay(&config.calls.relay, secret, tls).await?;
    let secret_path =
        config.calls.relay_secret_file.clone().unwrap_or_else(|| config.data_dir.join("relay.secret"));
    outln!("Rampart relay {} is running.", env!("CARGO_PKG_VERSION"));
    outln!("  listening     {}", describe_relay(&handle));
    outln!("  ports         {}-{} (relayed media)", config.calls.relay.min_port, config.calls.relay.max_port);
    outln!("  secret        {} (share it with the server: relay_secret_file)", secret_path.display());
    outln!();
    outln!("On the signaling server, set in its configuration:");
    let uris: Vec<String> =
        relay_uris(&handle, config.calls.relay.advertised_ip).iter().map(|u| format!("\"{u}\"")).collect();
    outln!("  [calls]\n  relays = [{}]", uris.join(", "));
    if handle.tls_addr().is_some() {
        outln!("Clients accept TURN over TLS only with the signaling server's certificate: give this");
        outln!("relay the server's tls_cert and tls_key (or set [calls.relay] tls = false).");
    }
    outln!("Stop with Ctrl-C.");
    shutdown_signal().await;
    let stats = handle.stats();
    handle.shutdown().await;
    tracing::info!(?stats, "relay stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn outbox(args: StoreArgs, json: bool) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let store = rampart_server::open_store(&config).await.context("cannot open the server's store")?;
    let entries = store.outbox_list().await?;
    if json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({ "phone": e.phone, "text": e.text, "created_at_ms": e.created_at }))
            .collect();
        outln!("{}", serde_json::json!({ "ok": true, "outbox": list }));
    } else if entries.is_empty() {
        outln!("The outbox is empty (codes expire after 10 minutes).");
    } else {
        for e in entries {
            outln!("{}  {}", e.phone, e.text);
        }
    }
    Ok(())
}

pub async fn call_misfits(args: StoreArgs, json: bool) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let store = rampart_server::open_store(&config).await.context("cannot open the server's store")?;
    let top = store.top_call_misfits(50).await?;
    let mut accounts = Vec::new();
    for (account, total) in top {
        let reasons = store.call_misfits(account).await?;
        let label = store.account_label(account).await?.unwrap_or_default();
        accounts.push((account, label, total, reasons));
    }
    if json {
        let list: Vec<_> = accounts
            .iter()
            .map(|(a, label, total, reasons)| {
                let reasons: serde_json::Map<String, serde_json::Value> =
                    reasons.iter().map(|r| (r.reason.clone(), serde_json::json!(r.count))).collect();
                serde_json::json!({ "account": a.0, "label": label, "misfits": total, "reasons": reasons })
            })
            .collect();
        outln!("{}", serde_json::json!({ "ok": true, "accounts": list }));
    } else if accounts.is_empty() {
        outln!("No call request has been refused for not fitting the call schema.");
    } else {
        for (a, label, total, reasons) in accounts {
            let why: Vec<String> = reasons.iter().map(|r| format!("{} {}", r.reason, r.count)).collect();
            outln!("account {} {label}: {total} refused ({})", a.0, why.join(", "));
        }
    }
    Ok(())
}
