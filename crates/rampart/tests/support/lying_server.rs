//! A lying server for tests: a man in the middle with the real server's TLS key.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rampart_core::call::SignalKind;
use rampart_proto::{
    Delivery, Envelope, ServerFrame, decode_envelope, decode_server_frame, encode_envelope,
    encode_server_frame,
};
use tokio_tungstenite::tungstenite::Message;

use super::TestServer;

/// What the lying server does with each frame the real server sends: the frames to hand the
/// device instead (the same one, others, more, or none).
pub type Rewrite = Arc<dyn Fn(ServerFrame) -> Vec<ServerFrame> + Send + Sync>;

/// A man in the middle holding the server's own TLS key: what a compromised server, or anyone
/// with its key, can do. Devices pointed at it see the server's own certificate (their pins
/// hold); it forwards every client frame to the real server unchanged, and hands the device
/// whatever `rewrite` makes of each server frame. Returns its address.
pub async fn start_with(server: &TestServer, rewrite: Rewrite) -> SocketAddr {
    let identity = rampart_server::tls::load_or_create(&server.data_dir, None, None, &[]).unwrap();
    assert_eq!(identity.fingerprint(), server.fingerprint, "the proxy presents the server's certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.rustls_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (upstream, fingerprint) = (server.addr, server.fingerprint.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, fingerprint, rewrite) = (acceptor.clone(), fingerprint.clone(), rewrite.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(downstream) = tokio_tungstenite::accept_async(tls).await else { return };
                // Upstream: the real server, its certificate pinned as clients pin it.
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let verifier = Arc::new(rampart_client::PinnedCertificate::new(Some(fingerprint), &provider));
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
                let tcp = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from(upstream.ip().to_string()).unwrap();
                let tls =
                    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
                let url = format!("wss://{upstream}/v1/ws");
                let (up, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
                let (mut up_tx, mut up_rx) = up.split();
                let (mut down_tx, mut down_rx) = downstream.split();
                let to_server = async move {
                    while let Some(Ok(m)) = down_rx.next().await {
                        if up_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                    let _ = up_tx.close().await;
                };
                let to_device = async move {
                    while let Some(Ok(m)) = up_rx.next().await {
                        let frames = match &m {
                            Message::Binary(data) => match decode_server_frame(data) {
                                Ok(frame) => rewrite(frame)
                                    .iter()
                                    .map(|f| Message::Binary(encode_server_frame(f).into()))
                                    .collect(),
                                Err(_) => vec![m],
                            },
                            _ => vec![m],
                        };
                        for frame in frames {
                            if down_tx.send(frame).await.is_err() {
                                return;
                            }
                        }
                    }
                    let _ = down_tx.close().await;
                };
                tokio::join!(to_server, to_device);
            });
        }
    });
    addr
}

/// A lying server that, right before it hands a device a ring notice, slips in `forged` call
/// signals for that ringing call, written as the server writes a caller's signals (the real
/// server refuses them before accept: `before_accept`). Returns its address and how many
/// signals it injected.
pub async fn start(
    server: &TestServer,
    group: rampart_core::GroupId,
    forged: Vec<(SignalKind, Bytes)>,
) -> (SocketAddr, Arc<AtomicU64>) {
    let injected = Arc::new(AtomicU64::new(0));
    let counter = injected.clone();
    let rewrite: Rewrite = Arc::new(move |frame: ServerFrame| {
        let mut out = Vec::new();
        if let ServerFrame::Delivery(d) = &frame
            && let Ok(Envelope::Ring(notice)) = decode_envelope(&d.body)
        {
            for (kind, payload) in &forged {
                let envelope = Envelope::CallSignal {
                    call: notice.call,
                    kind: *kind,
                    group: group.clone(),
                    payload: payload.clone(),
                };
                out.push(ServerFrame::Delivery(Delivery {
                    server_id: rampart_core::ServerMessageId(rand::random::<u32>().into()),
                    message_id: rampart_core::MessageId::random(&mut rand::rng()),
                    body: encode_envelope(&envelope).into(),
                    ..d.clone()
                }));
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
        out.push(frame);
        out
    });
    (start_with(server, rewrite).await, injected)
}

/// Point `profile` at the lying server at `addr` (same certificate, so its pin holds).
pub fn point_at(profile: &rampart_client::Profile, addr: SocketAddr, fingerprint: &str) {
    profile
        .set_server(&rampart_client::ServerAddress { host: "127.0.0.1".into(), port: addr.port() })
        .unwrap();
    profile.set("fingerprint", fingerprint).unwrap();
}

/// How many caller signals [`alice_and_bob_behind_it`] has the lying server slip in.
pub const FORGED: usize = 20;

/// Alice and Bob, who wrote to each other (so each may ring the other); [`FORGED`] signals
/// sealed by Alice (real MLS application messages of their conversation, never sent, of every
/// kind a caller might push early: "connect", updates, candidates, answers, offers); and a
/// lying server in front of the real one that Bob's profile now talks to (the same certificate,
/// so his pin holds). Both clients are closed again; returns the count of injected signals.
pub async fn alice_and_bob_behind_it(
    server: &TestServer,
    dir: &std::path::Path,
    alice_phone: &str,
    bob_phone: &str,
) -> Arc<AtomicU64> {
    let mut alice = server.register(dir, "alice", alice_phone, Some("alice")).await;
    let mut bob = server.register(dir, "bob", bob_phone, Some("bob")).await;
    alice.send_text("@bob", "call me?").await.unwrap();
    bob.receive(None, |_| {}).await.unwrap();
    bob.send_text("@alice", "sure").await.unwrap();
    alice.receive(None, |_| {}).await.unwrap();
    let group = alice.resolve_conversation("@bob").unwrap();
    let kinds = [
        SignalKind::Connect,
        SignalKind::Update,
        SignalKind::Candidates,
        SignalKind::Answer,
        SignalKind::Offer,
    ];
    let forged: Vec<(SignalKind, Bytes)> = (0..FORGED)
        .map(|i| {
            let rampart_proto::ClientRequest::GroupSend { body, .. } =
                alice.seal_text(&group, "not a signal").unwrap()
            else {
                panic!("seal_text gives a GroupSend")
            };
            (kinds[i % kinds.len()], body)
        })
        .collect();
    let (proxy, injected) = start(server, group, forged).await;
    let profile = bob.profile();
    profile
        .set_server(&rampart_client::ServerAddress { host: "127.0.0.1".into(), port: proxy.port() })
        .unwrap();
    profile.set("fingerprint", &server.fingerprint).unwrap();
    injected
}
