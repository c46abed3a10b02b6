//! Account, device and messaging operations on top of a profile and a connection.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_core::{DeviceId, DeviceSecret, LinkCode, MessageId, PhoneNumber, Username, VerificationCode};
use rampart_proto::{
    ClientRequest, DecodeError, DeviceInfo, ErrorBody, GoodbyeReason, PlainContent, Recipient, ResponseBody,
    ServerFrame, decode_plain_content, encode_plain_content,
};
use serde::Serialize;

use crate::connection::{Connection, ServerAddress};
use crate::profile::{Profile, ProfileError};

/// Everything that can go wrong, with text meant for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not a server address: {0:?} (expected host:port, e.g. https://chat.example.org:8443)")]
    BadServerAddress(String),
    #[error("{0}")]
    Io(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error(
        "THE SERVER'S CERTIFICATE HAS CHANGED.\n  pinned:    {pinned}\n  presented: {presented}\n\
         Someone may be intercepting this connection, or the operator replaced the certificate.\n\
         Ask the operator for the new fingerprint out of band; if it matches, run\n  \
         rampart account trust {presented}"
    )]
    CertificateChanged { pinned: String, presented: String },
    #[error("the server refused: {}", .0.message)]
    Server(ErrorBody),
    #[error("the server sent an invalid frame: {0}")]
    Protocol(DecodeError),
    #[error("the server closed the connection: {message}")]
    Closed { reason: GoodbyeReason, message: String },
    #[error(
        "this profile has no account yet: run `rampart account register` or `rampart account link` first"
    )]
    NotRegistered,
    #[error("no registration is pending in this profile: run `rampart account register` first")]
    NoPendingRegistration,
    #[error("{0}")]
    Input(String),
    #[error("unexpected answer from the server to {0}")]
    Unexpected(&'static str),
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

impl ClientError {
    /// A stable machine-readable kind for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::BadServerAddress(_) | ClientError::Input(_) => "bad_input",
            ClientError::Io(_) => "network",
            ClientError::Tls(_) => "tls",
            ClientError::Timeout(_) => "timeout",
            ClientError::CertificateChanged { .. } => "certificate_changed",
            ClientError::Server(e) => e.code.as_str(),
            ClientError::Protocol(_) => "protocol",
            ClientError::Closed { .. } => "closed",
            ClientError::NotRegistered => "not_registered",
            ClientError::NoPendingRegistration => "no_pending_registration",
            ClientError::Unexpected(_) => "unexpected",
            ClientError::Profile(_) => "profile",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Parse `+14155550123` or `@name` / `name` as a recipient.
pub fn parse_recipient(to: &str) -> Result<Recipient, ClientError> {
    let to = to.trim();
    if to.starts_with('+') {
        PhoneNumber::parse(to).map(Recipient::Phone).map_err(|e| ClientError::Input(e.to_string()))
    } else {
        Username::parse(to).map(Recipient::Username).map_err(|e| ClientError::Input(e.to_string()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SendReceipt {
    pub message_id: String,
    pub server_timestamp_ms: u64,
    pub recipient_devices: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub from: String,
    pub from_account: u64,
    pub message_id: String,
    pub server_timestamp_ms: u64,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub server: String,
    pub fingerprint: String,
    pub expires_in_secs: u32,
    /// True when this was the first contact with the server and its certificate was pinned now.
    pub pinned_now: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub account_id: u64,
    pub device_id: u64,
    pub label: String,
    pub server: String,
}

/// A client bound to one profile.
#[derive(Debug)]
pub struct Client {
    profile: Profile,
}

impl Client {
    pub fn open(profile_dir: &std::path::Path) -> Result<Self, ClientError> {
        Ok(Self { profile: Profile::open(profile_dir)? })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Open a connection to `addr`, pinning its certificate on first contact.
    async fn connect_to(
        &mut self,
        addr: &ServerAddress,
        trust: Option<String>,
    ) -> Result<(Connection, bool), ClientError> {
        self.profile.set_server(addr)?;
        if let Some(fp) = trust {
            self.profile.set("fingerprint", &normalise_fingerprint(&fp)?)?;
        }
        let pinned = self.profile.get("fingerprint")?;
        let first = pinned.is_none();
        let conn = Connection::open(addr, pinned).await?;
        if first {
            self.profile.set("fingerprint", &conn.fingerprint)?;
        }
        Ok((conn, first))
    }

    /// Open an authenticated connection for this profile's device.
    pub async fn connect(&mut self) -> Result<Connection, ClientError> {
        let creds = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        let mut conn = Connection::open(&creds.server, Some(creds.fingerprint.clone())).await?;
        match conn
            .request(ClientRequest::Authenticate { device: creds.device, secret: creds.secret.clone() })
            .await?
        {
            ResponseBody::Authenticated { label, .. } => {
                if label != creds.label {
                    self.profile.set("label", &label)?;
                }
                Ok(conn)
            }
            _ => Err(ClientError::Unexpected("authenticate")),
        }
    }

    /// Replace the pinned fingerprint (after checking the new one out of band).
    pub fn trust(&mut self, fingerprint: &str) -> Result<(), ClientError> {
        self.profile.set("fingerprint", &normalise_fingerprint(fingerprint)?)?;
        Ok(())
    }

    pub fn identity(&self) -> Result<Identity, ClientError> {
        let c = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        Ok(Identity {
            account_id: c.account.0,
            device_id: c.device.0,
            label: c.label,
            server: c.server.to_url(),
        })
    }

    /// Ask the server to send a verification code to `phone`.
    pub async fn register(
        &mut self,
        addr: &ServerAddress,
        phone: &str,
        username: Option<&str>,
        trust: Option<String>,
    ) -> Result<Registration, ClientError> {
        let phone = PhoneNumber::parse(phone).map_err(|e| ClientError::Input(e.to_string()))?;
        let username =
            username.map(Username::parse).transpose().map_err(|e| ClientError::Input(e.to_string()))?;
        let (mut conn, pinned_now) = self.connect_to(addr, trust).await?;
        let answer = conn.request(ClientRequest::Register { phone: phone.clone(), username }).await;
        let fingerprint = conn.fingerprint.clone();
        conn.close().await;
        match answer? {
            ResponseBody::RegistrationStarted { expires_in_secs } => {
                self.profile.set("pending_phone", phone.as_e164())?;
                Ok(Registration { server: addr.to_url(), fingerprint, expires_in_secs, pinned_now })
            }
            _ => Err(ClientError::Unexpected("register")),
        }
    }

    /// Prove the number with the code and become the account's first device.
    pub async fn verify(&mut self, code: &str, device_name: &str) -> Result<Identity, ClientError> {
        let code = VerificationCode::parse(code).map_err(|e| ClientError::Input(e.to_string()))?;
        let phone = self.profile.get("pending_phone")?.ok_or(ClientError::NoPendingRegistration)?;
        let phone = PhoneNumber::parse(&phone).map_err(|_| ProfileError::Corrupt("pending phone"))?;
        let (addr, pinned) = self.profile.server()?.ok_or(ClientError::NoPendingRegistration)?;
        let secret = DeviceSecret::generate(&mut rand::rng());
        let mut conn = Connection::open(&addr, pinned).await?;
        let answer = conn
            .request(ClientRequest::Verify {
                phone,
                code,
                device_name: device_name.to_owned(),
                secret: secret.clone(),
            })
            .await;
        conn.close().await;
        match answer? {
            ResponseBody::Registered { account, device, .. } => {
                self.profile.save_credentials(account, device, &secret)?;
                self.profile.remove("pending_phone")?;
                // Learn the label (how others see us) with a first authentication.
                let conn = self.connect().await?;
                conn.close().await;
                self.identity()
            }
            _ => Err(ClientError::Unexpected("verify")),
        }
    }

    /// Start linking this (new) profile as a further device: returns the code to approve on
    /// an existing device, and the connection that waits for the approval.
    pub async fn begin_link(
        &mut self,
        addr: &ServerAddress,
        device_name: &str,
        trust: Option<String>,
    ) -> Result<PendingLinkHandle, ClientError> {
        let secret = DeviceSecret::generate(&mut rand::rng());
        let (mut conn, _) = self.connect_to(addr, trust).await?;
        match conn
            .request(ClientRequest::BeginLink { device_name: device_name.to_owned(), secret: secret.clone() })
            .await?
        {
            ResponseBody::LinkStarted { code, expires_in_secs } => {
                Ok(PendingLinkHandle { conn, code, expires_in_secs, secret })
            }
            _ => Err(ClientError::Unexpected("begin link")),
        }
    }

    /// Wait for an existing device to approve the link, then save the credentials.
    pub async fn finish_link(&mut self, mut pending: PendingLinkHandle) -> Result<Identity, ClientError> {
        let wait = Duration::from_secs(u64::from(pending.expires_in_secs) + 5);
        loop {
            match pending.conn.next_frame(wait).await? {
                Some(ServerFrame::LinkCompleted { account, device }) => {
                    self.profile.save_credentials(account, device, &pending.secret)?;
                    pending.conn.close().await;
                    let conn = self.connect().await?;
                    conn.close().await;
                    return self.identity();
                }
                Some(_) => continue,
                None => return Err(ClientError::Timeout("waiting for the link to be approved")),
            }
        }
    }

    pub async fn approve_link(&mut self, code: &str) -> Result<DeviceId, ClientError> {
        let code = LinkCode::parse(code).map_err(|e| ClientError::Input(e.to_string()))?;
        let mut conn = self.connect().await?;
        let answer = conn.request(ClientRequest::ApproveLink { code }).await;
        conn.close().await;
        match answer? {
            ResponseBody::LinkApproved { device } => Ok(device),
            _ => Err(ClientError::Unexpected("approve link")),
        }
    }

    pub async fn devices(&mut self) -> Result<Vec<DeviceInfo>, ClientError> {
        let mut conn = self.connect().await?;
        let answer = conn.request(ClientRequest::ListDevices).await;
        conn.close().await;
        match answer? {
            ResponseBody::Devices(list) => Ok(list),
            _ => Err(ClientError::Unexpected("list devices")),
        }
    }

    pub async fn revoke(&mut self, device: DeviceId) -> Result<(), ClientError> {
        let mut conn = self.connect().await?;
        let answer = conn.request(ClientRequest::RevokeDevice { device }).await;
        conn.close().await;
        answer.map(|_| ())
    }

    pub async fn set_username(&mut self, username: Option<&str>) -> Result<(), ClientError> {
        let username =
            username.map(Username::parse).transpose().map_err(|e| ClientError::Input(e.to_string()))?;
        let mut conn = self.connect().await?;
        let answer = conn.request(ClientRequest::SetUsername { username }).await;
        conn.close().await;
        answer?;
        let conn = self.connect().await?;
        conn.close().await;
        Ok(())
    }

    /// Send a text message to `to` (`+E164` or `@username`).
    pub async fn send_text(&mut self, to: &str, text: &str) -> Result<SendReceipt, ClientError> {
        let to = parse_recipient(to)?;
        let mut conn = self.connect().await?;
        let receipt = send_on(&mut conn, to, text).await;
        conn.close().await;
        receipt
    }

    /// Receive queued messages: store each (deduplicated), acknowledge it, hand new ones to
    /// `on_message`. Returns when the queue is drained, or after `wait` if given.
    pub async fn receive(
        &mut self,
        wait: Option<Duration>,
        mut on_message: impl FnMut(&ReceivedMessage),
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let mut conn = self.connect().await?;
        let started = Instant::now();
        let mut received = Vec::new();
        loop {
            let left = match wait {
                Some(w) => w.saturating_sub(started.elapsed()),
                None => Duration::from_secs(30),
            };
            if wait.is_some() && left.is_zero() {
                break;
            }
            match conn.next_frame(left).await? {
                Some(ServerFrame::Delivery(d)) => {
                    let text = match decode_plain_content(&d.body) {
                        Ok(c) => c.text,
                        Err(_) => "[a message this client cannot read]".to_owned(),
                    };
                    let new = self.profile.store_message(
                        d.sender_account,
                        d.sender_device,
                        &d.sender_label,
                        &d.message_id,
                        d.server_timestamp_ms,
                        &text,
                    )?;
                    // Stored first, acknowledged second: a crash in between means a redelivery,
                    // which the profile's uniqueness check absorbs.
                    conn.send(ClientRequest::Ack { ids: vec![d.server_id] }).await?;
                    if new.is_some() {
                        let msg = ReceivedMessage {
                            from: d.sender_label,
                            from_account: d.sender_account.0,
                            message_id: d.message_id.to_string(),
                            server_timestamp_ms: d.server_timestamp_ms,
                            text,
                        };
                        on_message(&msg);
                        received.push(msg);
                    }
                }
                Some(ServerFrame::QueueDrained) if wait.is_none() => break,
                Some(_) => {}
                None if wait.is_none() => {
                    return Err(ClientError::Timeout("waiting for queued messages"));
                }
                None => break,
            }
        }
        // Make sure the last acknowledgements reached the server before closing.
        let _ = conn.request(ClientRequest::Ping).await;
        conn.close().await;
        Ok(received)
    }
}

/// A link waiting for approval.
#[derive(Debug)]
pub struct PendingLinkHandle {
    conn: Connection,
    pub code: LinkCode,
    pub expires_in_secs: u32,
    secret: DeviceSecret,
}

/// Send one text message on an open, authenticated connection.
pub async fn send_on(conn: &mut Connection, to: Recipient, text: &str) -> Result<SendReceipt, ClientError> {
    let body = encode_plain_content(&PlainContent { text: text.to_owned(), sent_at_ms: now_ms() });
    let message_id = MessageId::random(&mut rand::rng());
    match conn.request(ClientRequest::Send { to, message_id, body: body.into() }).await? {
        ResponseBody::Sent { server_timestamp_ms, recipient_devices } => {
            Ok(SendReceipt { message_id: message_id.to_string(), server_timestamp_ms, recipient_devices })
        }
        _ => Err(ClientError::Unexpected("send")),
    }
}

fn normalise_fingerprint(input: &str) -> Result<String, ClientError> {
    let hexits: String = input.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_uppercase();
    if hexits.len() != 64 || input.chars().any(|c| !(c.is_ascii_hexdigit() || c == ':' || c.is_whitespace()))
    {
        return Err(ClientError::Input("a fingerprint is 32 hex pairs, e.g. AB:CD:...".into()));
    }
    let pairs: Vec<String> =
        hexits.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    Ok(pairs.join(":"))
}
