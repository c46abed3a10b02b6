//! Helpers shared by the relay's integration tests: a relay on 127.0.0.1, REST credentials,
//! SRTP-shaped datagrams and a raw STUN client for protocol-level checks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_relay::{RelayConfig, RelayHandle, TurnClient};
use rampart_turn::credentials::{self, SharedSecret};
use rampart_turn::integrity::{IntegrityKey, encode_protected};
use rampart_turn::{Attribute, Class, Message, Method, TransactionId, Username};
use tokio::net::UdpSocket;

pub const SECRET: &[u8] = b"test-shared-secret-0123456789";
pub const REALM: &str = "rampart.test";
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn secret() -> SharedSecret {
    SharedSecret::new(SECRET.to_vec()).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// REST credentials for `id`, valid for an hour.
pub fn creds(id: &str) -> (String, String) {
    let credential = credentials::mint(&secret(), id, now(), 3600).unwrap();
    (credential.username().as_str().to_owned(), credential.password().to_owned())
}

/// A relay on 127.0.0.1 with loopback peers allowed and the defaults otherwise, changed by
/// `tweak`.
pub async fn relay(tweak: impl FnOnce(&mut RelayConfig)) -> RelayHandle {
    let mut config = RelayConfig::new(SocketAddr::new(LOOPBACK, 0), LOOPBACK, REALM, secret());
    config.allow_loopback_peers = true;
    tweak(&mut config);
    rampart_relay::start(config).await.unwrap()
}

pub async fn client(relay: &RelayHandle, id: &str) -> TurnClient {
    let (username, password) = creds(id);
    TurnClient::allocate(relay.local_addr(), &username, &password).await.unwrap()
}

/// An SRTP-shaped datagram: RTP version 2 header, `payload` bytes, a 16-byte tag.
pub fn srtp(sequence: u16, payload: usize) -> Vec<u8> {
    let mut packet = vec![0x80, 111];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&(u32::from(sequence) * 960).to_be_bytes());
    packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    packet.extend((0..payload + 16).map(|i| (i as u8) ^ (sequence as u8)));
    packet
}

/// The next datagram `client` receives within `wait`, if any.
pub async fn recv_within(client: &TurnClient, wait: Duration) -> Option<(SocketAddr, Vec<u8>)> {
    tokio::time::timeout(wait, client.recv_from()).await.ok().map(|r| r.unwrap())
}

/// Counts what `client` receives until nothing arrives for `quiet`.
pub async fn drain(client: &TurnClient, quiet: Duration) -> usize {
    let mut count = 0;
    while recv_within(client, quiet).await.is_some() {
        count += 1;
    }
    count
}

/// A STUN client without any of TurnClient's logic, to send exactly what a test wants.
pub struct Raw {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub key: Option<IntegrityKey>,
    pub nonce: Option<rampart_turn::Nonce>,
    pub username: String,
}

impl Raw {
    pub async fn new(server: SocketAddr, id: &str) -> Raw {
        let socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let (username, password) = creds(id);
        let key = IntegrityKey::long_term(&username, REALM, &password).unwrap();
        Raw { socket, server, key: Some(key), nonce: None, username }
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next STUN message from the server within a second.
    pub async fn receive(&self) -> Option<(Vec<u8>, Message)> {
        let mut buf = vec![0; 65536];
        loop {
            let (len, _) = tokio::time::timeout(Duration::from_secs(1), self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .unwrap();
            if let Ok(decoded) = Message::decode(&buf[..len]) {
                return Some((buf[..len].to_vec(), decoded.message));
            }
        }
    }

    /// Sends `request` unauthenticated and returns the response.
    pub async fn plain(&self, request: &Message) -> Message {
        self.send(&encode_protected(request, None, true).unwrap()).await;
        self.response_to(request.transaction_id).await
    }

    /// The response with this transaction id, skipping anything else.
    pub async fn response_to(&self, transaction_id: TransactionId) -> Message {
        loop {
            let (_, message) = self.receive().await.expect("no response");
            if message.transaction_id == transaction_id {
                return message;
            }
        }
    }

    /// Sends `request` with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY, learning the nonce
    /// from a 401 first if needed.
    pub async fn authed(&mut self, request: Message) -> Message {
        if self.nonce.is_none() {
            let probe = Message::new(Class::Request, Method::Allocate, TransactionId(rand::random()));
            let challenge = self.plain(&probe).await;
            self.nonce = Some(challenge.nonce().unwrap().clone());
        }
        let request = request
            .with(Attribute::Username(Username::new(self.username.clone()).unwrap()))
            .with(Attribute::Realm(rampart_turn::Realm::new(REALM).unwrap()))
            .with(Attribute::Nonce(self.nonce.clone().unwrap()));
        self.send(&encode_protected(&request, self.key.as_ref(), true).unwrap()).await;
        self.response_to(request.transaction_id).await
    }
}

pub fn request(method: Method) -> Message {
    Message::new(Class::Request, method, TransactionId(rand::random()))
}

pub fn code(response: &Message) -> Option<u16> {
    response.error_code().map(|e| e.code())
}

/// A self-signed certificate for "localhost": the relay's TLS configuration, a client
/// configuration that trusts exactly that certificate, and both as PEM (for coturn).
pub struct TestTls {
    pub server: std::sync::Arc<rustls::ServerConfig>,
    pub client: std::sync::Arc<rustls::ClientConfig>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_tls() -> TestTls {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(made.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestTls {
        server: std::sync::Arc::new(server),
        client: std::sync::Arc::new(client),
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
    }
}

/// The server name the certificate of [`test_tls`] is for.
pub fn localhost() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").unwrap()
}
