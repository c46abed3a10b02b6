//! One TLS WebSocket connection to a Rampart server, speaking the wire protocol.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use rampart_core::limits::MAX_FRAME_BYTES;
use rampart_proto::{
    ClientFrame, ClientRequest, GoodbyeReason, ResponseBody, ServerFrame, decode_server_frame,
    encode_client_frame,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::ServerAddress;
use super::pin::PinnedCertificate;
use crate::error::ClientError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// An open connection.
#[derive(Debug)]
pub struct Connection {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    next_request: u64,
    /// Frames that arrived while waiting for a response, handed out by [`Connection::next_frame`].
    pending: VecDeque<ServerFrame>,
    /// The fingerprint of the certificate the server presented.
    pub fingerprint: String,
}

/// Where [`pinned_tls_config`] leaves the fingerprint of the certificate the server presented.
pub type PresentedFingerprint = Arc<std::sync::Mutex<Option<String>>>;

/// A TLS client configuration that trusts only the certificate pinned for the server (or, with
/// `None`, learns it: the fingerprint presented is left in the returned slot). TURN over TLS
/// uses it too: a `turns:` relay must present the server's own certificate.
pub fn pinned_tls_config(
    pinned: Option<String>,
) -> Result<(Arc<rustls::ClientConfig>, PresentedFingerprint), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertificate::new(pinned, &provider));
    let presented = verifier.presented.clone();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((Arc::new(config), presented))
}

impl Connection {
    /// Connect, verifying the server certificate against `pinned` (or learning it when `None`).
    pub async fn open(addr: &ServerAddress, pinned: Option<String>) -> Result<Self, ClientError> {
        let (config, presented) = pinned_tls_config(pinned.clone())?;
        let connector = TlsConnector::from(config);
        let server_name = rustls::pki_types::ServerName::try_from(addr.host.clone())
            .map_err(|_| ClientError::BadServerAddress(addr.host.clone()))?;

        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((addr.host.as_str(), addr.port)))
            .await
            .map_err(|_| ClientError::Timeout("connecting"))?
            .map_err(|e| ClientError::Io(format!("cannot reach {}: {e}", addr.to_url())))?;
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp)).await {
            Err(_) => return Err(ClientError::Timeout("TLS handshake")),
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let seen = presented.lock().ok().and_then(|s| s.clone());
                return Err(match (pinned, seen) {
                    (Some(pinned), Some(seen)) if pinned != seen => {
                        ClientError::CertificateChanged { pinned, presented: seen }
                    }
                    _ => ClientError::Tls(e.to_string()),
                });
            }
        };
        let fingerprint = presented.lock().ok().and_then(|s| s.clone()).unwrap_or_default();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let url = format!("wss://{}:{}/v1/ws", addr.host, addr.port);
        let (ws, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config)),
        )
        .await
        .map_err(|_| ClientError::Timeout("WebSocket handshake"))?
        .map_err(|e| ClientError::Io(format!("WebSocket handshake failed: {e}")))?;
        Ok(Self { ws, next_request: 1, pending: VecDeque::new(), fingerprint })
    }

    /// Send a request without waiting for its answer; returns its request id.
    pub async fn send(&mut self, request: ClientRequest) -> Result<u64, ClientError> {
        let id = self.next_request;
        self.next_request += 1;
        let bytes = encode_client_frame(&ClientFrame { request_id: id, request });
        self.ws.send(Message::Binary(bytes.into())).await.map_err(ws_error)?;
        Ok(id)
    }

    /// Queue a request without writing it yet; [`Connection::flush`] writes everything queued
    /// at once (one TLS record, one system call), for pipelining clients.
    pub async fn feed(&mut self, request: ClientRequest) -> Result<u64, ClientError> {
        let id = self.next_request;
        self.next_request += 1;
        let bytes = encode_client_frame(&ClientFrame { request_id: id, request });
        self.ws.feed(Message::Binary(bytes.into())).await.map_err(ws_error)?;
        Ok(id)
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.ws.flush().await.map_err(ws_error)
    }

    /// Send raw bytes as one binary frame. For protocol tests and diagnostic tools: the server
    /// must cope with anything sent this way.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(Message::Binary(bytes.into())).await.map_err(ws_error)
    }

    /// The next frame of any kind, answers included, waiting up to `wait`.
    pub async fn next_any(&mut self, wait: Duration) -> Result<Option<ServerFrame>, ClientError> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        if let Some(f) = self.read_frame().now_or_never() {
            return f.map(Some);
        }
        match tokio::time::timeout(wait, self.read_frame()).await {
            Err(_) => Ok(None),
            Ok(f) => f.map(Some),
        }
    }

    /// Send a request and wait for its answer. Pushed frames that arrive meanwhile are kept.
    pub async fn request(&mut self, request: ClientRequest) -> Result<ResponseBody, ClientError> {
        let id = self.send(request).await?;
        let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.read_frame())
                .await
                .map_err(|_| ClientError::Timeout("waiting for the server's answer"))??;
            match frame {
                ServerFrame::Response { request_id, result } if request_id == id => {
                    return result.map_err(ClientError::Server);
                }
                // An error for request 0 is the server refusing a frame it could not decode.
                ServerFrame::Response { request_id: 0, result: Err(e) } => {
                    return Err(ClientError::Server(e));
                }
                ServerFrame::Response { .. } => {}
                ServerFrame::Goodbye { reason, message } => {
                    return Err(ClientError::Closed { reason, message });
                }
                other => self.pending.push_back(other),
            }
        }
    }

    /// The next pushed frame (delivery, queue drained, link completed), waiting up to `wait`.
    /// Answers to requests sent with [`Connection::send`] are skipped, errors among them
    /// returned. `Ok(None)` on timeout.
    pub async fn next_frame(&mut self, wait: Duration) -> Result<Option<ServerFrame>, ClientError> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // A frame already buffered needs no timer; arming one per frame is costly.
            let ready = self.read_frame().now_or_never();
            let frame = match ready {
                Some(f) => f?,
                None => match tokio::time::timeout_at(deadline, self.read_frame()).await {
                    Err(_) => return Ok(None),
                    Ok(f) => f?,
                },
            };
            match frame {
                ServerFrame::Response { result: Ok(_), .. } => {}
                ServerFrame::Response { result: Err(e), .. } => return Err(ClientError::Server(e)),
                ServerFrame::Goodbye { reason, message } => {
                    return Err(ClientError::Closed { reason, message });
                }
                other => return Ok(Some(other)),
            }
        }
    }

    async fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            let msg = self.ws.next().await.ok_or(ClientError::Closed {
                reason: GoodbyeReason::Unspecified,
                message: "the server closed the connection".into(),
            })?;
            match msg.map_err(ws_error)? {
                Message::Binary(bytes) => {
                    return decode_server_frame(&bytes).map_err(ClientError::Protocol);
                }
                Message::Close(_) => {
                    return Err(ClientError::Closed {
                        reason: GoodbyeReason::Unspecified,
                        message: "the server closed the connection".into(),
                    });
                }
                // tungstenite answers pings itself; text frames are not part of the protocol.
                _ => {}
            }
        }
    }

    /// Close politely.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

fn ws_error(e: tungstenite::Error) -> ClientError {
    ClientError::Io(format!("connection lost: {e}"))
}
