//! Account, device and messaging operations on top of a profile and a connection.

use std::time::{Duration, Instant};

use rampart_core::{DeviceId, DeviceSecret, GroupId, LinkCode, PhoneNumber, Username, VerificationCode};
use rampart_proto::{ClientRequest, ContentBody, DeviceInfo, Recipient, ResponseBody, ServerFrame};
use serde::Serialize;

use crate::call_inbox::CallInput;
use crate::clock::now_ms;
use crate::error::{ClientError, Refusal};
use crate::event::Event;
use crate::net::{Connection, ServerAddress};
use crate::recipient::parse_recipient;
use crate::storage::at_rest::{self, ProfileKey, ProfileLock};
use crate::storage::mls::DeviceEngine;
use crate::storage::{Profile, ProfileError};

/// What `rampart verify` shows.
#[derive(Debug, Clone, Serialize)]
pub struct SafetyCheck {
    /// How the other person is shown.
    pub with: String,
    pub account: u64,
    /// 60 digits.
    pub number: String,
    /// Devices in your 1:1 conversation that neither identity certified: each one is a warning.
    pub unexpected_devices: Vec<String>,
    /// `Some(true)`: you verified this identity; `Some(false)`: you verified an earlier one.
    pub verified: Option<bool>,
    #[serde(skip)]
    pub root: [u8; 32],
}

#[derive(Debug, Clone, Serialize)]
pub struct SendReceipt {
    pub message_id: String,
    pub server_timestamp_ms: u64,
    pub recipient_devices: u32,
    /// Devices that had no room for it (a full queue): they will not get it.
    pub missed_devices: u32,
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
    pub(crate) profile: Profile,
    pub(crate) engine: Option<DeviceEngine>,
    /// Messages received but not yet acknowledged to their senders with a delivery receipt.
    pub(crate) unreceipted: std::collections::BTreeMap<GroupId, Vec<rampart_core::MessageId>>,
    /// Ring notices and call signals received, still sealed, for a call driver.
    pub(crate) call_inputs: std::collections::VecDeque<CallInput>,
    /// Conversations whose membership a received delivery asked to bring in line (a member
    /// left). Receiving never commits: `drain` does these once its deliveries are handled,
    /// so receiving is not re-entered from inside a delivery.
    pub(crate) pending_syncs: std::collections::BTreeSet<GroupId>,
    /// What deliveries received while a commit was retried turned into, for the `drain` that
    /// started the commit to hand on.
    pub(crate) received_meanwhile: Vec<Event>,
    /// The conversation whose held deliveries are being opened (`requests::release_requests`):
    /// they go through, not back behind themselves.
    pub(crate) releasing: Option<GroupId>,
    /// Opens the profile's databases when it is encrypted at rest.
    pub(crate) key: Option<std::sync::Arc<ProfileKey>>,
    /// Held shared while the client lives (see `at_rest::ProfileLock`).
    lock: Option<ProfileLock>,
}

impl Client {
    /// Open a profile that is not encrypted at rest (or fail with `Locked`).
    pub fn open(profile_dir: &std::path::Path) -> Result<Self, ClientError> {
        Self::open_with_passphrase(profile_dir, None)
    }

    /// Open a profile; an encrypted one needs its passphrase (a plain one ignores it).
    pub fn open_with_passphrase(
        profile_dir: &std::path::Path,
        passphrase: Option<&str>,
    ) -> Result<Self, ClientError> {
        std::fs::create_dir_all(profile_dir)
            .map_err(|source| ProfileError::Create { path: profile_dir.to_path_buf(), source })?;
        // Finish an interrupted passphrase change only when no other process has the profile
        // open; then hold it shared for as long as this client lives.
        if let Some(_alone) = ProfileLock::try_exclusive(profile_dir)? {
            at_rest::finish_interrupted_change(profile_dir)?;
        }
        let lock = ProfileLock::shared(profile_dir)?;
        let key = if at_rest::is_encrypted(profile_dir) {
            let passphrase = passphrase.ok_or(ProfileError::Locked)?;
            Some(std::sync::Arc::new(at_rest::unlock(profile_dir, passphrase)?))
        } else {
            None
        };
        let profile = Profile::open(profile_dir, key.as_deref())?;
        // Disappearing messages go even when the device is offline.
        for path in profile.purge_expired(now_ms())? {
            let _ = std::fs::remove_file(path);
        }
        Ok(Self {
            profile,
            engine: None,
            unreceipted: Default::default(),
            call_inputs: Default::default(),
            pending_syncs: Default::default(),
            received_meanwhile: Vec::new(),
            releasing: None,
            key,
            lock: Some(lock),
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// True if this profile is encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Encrypt the profile under a new passphrase, change it, or (with `None`) store the
    /// profile in the clear. The client reopens the profile under the new key.
    pub fn set_passphrase(&mut self, new: Option<&str>) -> Result<(), ClientError> {
        let dir = self.profile.dir().to_path_buf();
        // Only with the profile to ourselves: another process (a `rampart chat`) would go on
        // writing to the files this replaces.
        self.lock = None;
        // A moment's grace: a child process between fork and exec still shares our (just
        // dropped) lock for an instant; a real other client holds it for good.
        let mut exclusive = None;
        for _ in 0..20 {
            exclusive = ProfileLock::try_exclusive(&dir)?;
            if exclusive.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let Some(exclusive) = exclusive else {
            self.lock = Some(ProfileLock::shared(&dir)?);
            return Err(ClientError::Input(
                "another rampart process has this profile open (a `rampart chat`?); close it and try again"
                    .into(),
            ));
        };
        // Close every database first: the files are replaced underneath.
        self.engine = None;
        let placeholder = Profile::open_in_memory()?;
        drop(std::mem::replace(&mut self.profile, placeholder));
        let changed = at_rest::change_passphrase(&dir, self.key.as_deref(), new);
        let key = match (&changed, new) {
            (Ok(()), Some(p)) => Some(std::sync::Arc::new(at_rest::unlock(&dir, p)?)),
            (Ok(()), None) => None,
            (Err(_), _) => self.key.clone(),
        };
        drop(exclusive);
        self.lock = Some(ProfileLock::shared(&dir)?);
        self.profile = Profile::open(&dir, key.as_deref())?;
        self.key = key;
        Ok(changed?)
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
            .request(ClientRequest::Authenticate {
                device: creds.device,
                secret: creds.secret.clone(),
                client: CLIENT_NAME.to_owned(),
            })
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
                // Learn the label (how others see us) with a first authentication, and set up
                // this device's end-to-end keys.
                let mut conn = self.connect().await?;
                let keys = self.set_up_first_device(&mut conn).await;
                conn.close().await;
                keys?;
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
        // The key is made first: the code shown carries a check of it.
        let key = self.prepare_linking_key()?;
        match conn
            .request(ClientRequest::BeginLink { device_name: device_name.to_owned(), secret: secret.clone() })
            .await?
        {
            ResponseBody::LinkStarted { code, expires_in_secs } => {
                let key_check = link_key_check(&key);
                Ok(PendingLinkHandle { conn, code, key_check, expires_in_secs, secret })
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
                    let mut conn = self.connect().await?;
                    let keys = self.set_up_linked_device(&mut conn).await;
                    conn.close().await;
                    keys?;
                    return self.identity();
                }
                Some(_) => continue,
                None => return Err(ClientError::Timeout("waiting for the link to be approved")),
            }
        }
    }

    /// Approve the device that shows `shown` (its link code and the check of its key): the
    /// server learns only the link code, and this device certifies only a key with that check.
    pub async fn approve_link(&mut self, shown: &str) -> Result<DeviceId, ClientError> {
        let compact: String = shown
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let total = 8 + LINK_KEY_CHECK_LEN;
        if compact.len() != total || !compact.is_ascii() {
            return Err(ClientError::Input(format!(
                "the code the new device shows has {total} characters (ABCD-EFGH-KKKK-KKKK-KKKK); type all \
                 of it: the last {} check the new device's key",
                LINK_KEY_CHECK_LEN
            )));
        }
        let (code, key_check) = compact.split_at(8);
        let code = LinkCode::parse(code).map_err(|e| ClientError::Input(e.to_string()))?;
        let key_check = key_check.to_owned();
        let mut conn = self.connect().await?;
        let answer = conn.request(ClientRequest::ApproveLink { code }).await;
        let result = match answer {
            Ok(ResponseBody::LinkApproved { device }) => {
                // Certify the new device's key, which it sends once it has its credentials;
                // then bring it into this account's conversations from here.
                match self.certify_linked(&mut conn, device, &key_check).await {
                    Ok(()) => {
                        self.bring_in_linked_device(&mut conn).await;
                        Ok(device)
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(_) => Err(ClientError::Unexpected("approve link")),
            Err(e) => Err(e),
        };
        conn.close().await;
        result
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

    /// Send an end-to-end encrypted text message to `to` (`+E164` or `@username`), in the 1:1
    /// conversation with that account (created on first use).
    pub async fn send_text(&mut self, to: &str, text: &str) -> Result<SendReceipt, ClientError> {
        let to = parse_recipient(to)?;
        let mut conn = self.connect().await?;
        let result = self.send_text_on(&mut conn, to, text).await;
        conn.close().await;
        result
    }

    /// Send on an open connection (the bench and the TUI keep one open).
    pub async fn send_text_on(
        &mut self,
        conn: &mut Connection,
        to: Recipient,
        text: &str,
    ) -> Result<SendReceipt, ClientError> {
        let group = self.direct_with(conn, to).await?;
        self.send_to_group_on(conn, &group, ContentBody::Text { text: text.to_owned(), reply_to: None }).await
    }

    /// Send content to a conversation on an open connection.
    pub async fn send_to_group_on(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
        body: ContentBody,
    ) -> Result<SendReceipt, ClientError> {
        let (message_id, sent) = self.send_content(conn, group, body).await?;
        Ok(SendReceipt {
            message_id: message_id.to_string(),
            server_timestamp_ms: now_ms(),
            recipient_devices: sent.reached,
            missed_devices: sent.missed,
        })
    }

    /// Send content to a conversation named by its id (hex) or its name.
    pub async fn send_to_conversation(
        &mut self,
        conversation: &str,
        body: ContentBody,
    ) -> Result<SendReceipt, ClientError> {
        let group = self.resolve_conversation(conversation)?;
        let mut conn = self.connect().await?;
        let result = self.send_to_group_on(&mut conn, &group, body).await;
        conn.close().await;
        result
    }

    /// The conversation `to` names: a person (`+E164` or `@username`, the 1:1 with them,
    /// created on first use) or a conversation's name or id.
    pub async fn conversation_for(
        &mut self,
        conn: &mut Connection,
        to: &str,
    ) -> Result<GroupId, ClientError> {
        if !(to.starts_with('+') || to.starts_with('@')) {
            return self.resolve_conversation(to);
        }
        self.direct_with(conn, parse_recipient(to)?).await
    }

    /// The 1:1 conversation with a person, created on first use.
    async fn direct_with(&mut self, conn: &mut Connection, to: Recipient) -> Result<GroupId, ClientError> {
        let peer = self.lookup(conn, to).await?;
        if peer.trusted.is_empty() {
            return Err(Refusal::NoKeysYet(peer.label).into());
        }
        self.direct_conversation(conn, &peer).await
    }

    /// Send a file to `to` (a person or a conversation), encrypted end to end.
    pub async fn send_file(
        &mut self,
        to: &str,
        path: &std::path::Path,
        caption: &str,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<String, ClientError> {
        let mut conn = self.connect().await?;
        let result = async {
            let group = self.conversation_for(&mut conn, to).await?;
            self.send_file_on(&mut conn, &group, path, caption, progress).await
        }
        .await;
        conn.close().await;
        result.map(|id| id.to_string())
    }

    /// Download the attachment on history line `seq` into `dest_dir`.
    pub async fn download_attachment(
        &mut self,
        seq: i64,
        dest_dir: &std::path::Path,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<std::path::PathBuf, ClientError> {
        let mut conn = self.connect().await?;
        let result = self.download_attachment_on(&mut conn, seq, dest_dir, progress).await;
        conn.close().await;
        result
    }

    /// A conversation by id (hex, or a unique prefix) or by name (a 1:1 is named after the peer).
    pub fn resolve_conversation(&self, name: &str) -> Result<GroupId, ClientError> {
        self.profile.find_conversation(name)?.ok_or_else(|| ClientError::NoSuchConversation(name.to_owned()))
    }

    /// Encrypt a text for a conversation and return the request that sends it, for callers
    /// that pipeline many sends on one connection (benchmarks). Membership is not re-checked.
    pub fn seal_text(&mut self, group: &GroupId, text: &str) -> Result<ClientRequest, ClientError> {
        let message_id = rampart_core::MessageId::random(&mut rand::rng());
        let plaintext = rampart_proto::encode_content(&rampart_proto::Content {
            message_id,
            sent_at_ms: now_ms(),
            seq: 0,
            body: ContentBody::Text { text: text.to_owned(), reply_to: None },
        });
        let body = self.engine()?.encrypt(group, &plaintext)?;
        Ok(ClientRequest::GroupSend { group: group.clone(), message_id, body: body.into() })
    }

    /// Create a named group with these members (`+E164` or `@username` each).
    pub async fn create_group(&mut self, name: &str, members: &[String]) -> Result<String, ClientError> {
        // The name every member will decode: refused here as it would be there.
        let name =
            &rampart_proto::group_name(name.to_owned()).map_err(|e| ClientError::Input(e.to_string()))?;
        let mut conn = self.connect().await?;
        let result = async {
            let mut accounts = Vec::new();
            for m in members {
                let peer = self.lookup(&mut conn, parse_recipient(m)?).await?;
                accounts.push(peer.account);
            }
            let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
            let group = GroupId::new(me, &mut rand::rng());
            self.engine()?.create_group(&group)?;
            self.profile.save_conversation(&group, None, name)?;
            self.sync_members(&mut conn, &group, &accounts).await?;
            self.send_content(&mut conn, &group, ContentBody::GroupName(name.to_owned())).await?;
            Ok(group.to_hex())
        }
        .await;
        conn.close().await;
        result
    }

    /// Add people to a group (only its creator may).
    pub async fn group_add(&mut self, conversation: &str, members: &[String]) -> Result<(), ClientError> {
        let group = self.resolve_conversation(conversation)?;
        let mut conn = self.connect().await?;
        let result = async {
            self.drain(&mut conn, Duration::from_secs(5), &mut |_| {}).await?;
            let mut accounts = Vec::new();
            for m in members {
                accounts.push(self.lookup(&mut conn, parse_recipient(m)?).await?.account);
            }
            for a in &accounts {
                self.profile.unmark_left(&group, *a)?;
            }
            self.sync_members(&mut conn, &group, &accounts).await
        }
        .await;
        conn.close().await;
        result
    }

    /// Remove people from a group (only its creator may remove others).
    pub async fn group_remove(&mut self, conversation: &str, members: &[String]) -> Result<(), ClientError> {
        let group = self.resolve_conversation(conversation)?;
        let mut conn = self.connect().await?;
        let result = async {
            self.drain(&mut conn, Duration::from_secs(5), &mut |_| {}).await?;
            for m in members {
                let account = self.lookup(&mut conn, parse_recipient(m)?).await?.account;
                self.profile.mark_left(&group, account)?;
            }
            self.sync_members(&mut conn, &group, &[]).await
        }
        .await;
        conn.close().await;
        result
    }

    /// Leave a group: the server stops delivering it to this account's devices and tells the
    /// others, one of whom commits the removal.
    pub async fn group_leave(&mut self, conversation: &str) -> Result<(), ClientError> {
        let group = self.resolve_conversation(conversation)?;
        let mut conn = self.connect().await?;
        let answer = conn.request(ClientRequest::LeaveGroup { group: group.clone() }).await;
        conn.close().await;
        answer?;
        self.engine()?.forget_group(&group)?;
        self.profile.mark_conversation_closed(&group)?;
        Ok(())
    }

    /// The safety number with `who`: from both accounts' identity keys (as this device
    /// pinned them), the same on both sides.
    pub async fn safety_number(&mut self, who: &str) -> Result<(String, String), ClientError> {
        let check = self.check_safety(who).await?;
        Ok((check.with, check.number))
    }

    /// The safety number with `who`, and what the number cannot show: whether your 1:1
    /// conversation holds exactly the devices your two identities certify, and whether `who`'s
    /// identity is still the one you marked verified.
    pub async fn check_safety(&mut self, who: &str) -> Result<SafetyCheck, ClientError> {
        let mut conn = self.connect().await?;
        let result = self.check_safety_on(&mut conn, who).await;
        conn.close().await;
        result
    }

    async fn check_safety_on(
        &mut self,
        conn: &mut Connection,
        who: &str,
    ) -> Result<SafetyCheck, ClientError> {
        use rampart_mls::safety;
        let peer = self.lookup(conn, parse_recipient(who)?).await?;
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
        let mine: Vec<_> =
            self.checked_keys(conn, &[me]).await?.into_iter().flat_map(|a| a.trusted).collect();
        let my_root = safety::root_of(&mine).ok_or(ClientError::NoKeys)?;
        let peer_root =
            safety::root_of(&peer.trusted).ok_or_else(|| Refusal::NoKeysYet(peer.label.clone()))?;
        let number = safety::safety_number(me, &[my_root], peer.account, &[peer_root]);
        let mut unexpected_devices = Vec::new();
        if let Some(group) = self.profile.direct_conversation(peer.account)?
            && self.engine()?.has_group(&group)
        {
            let members = self.engine()?.members(&group)?;
            let certified: Vec<_> = mine.iter().chain(peer.trusted.iter()).cloned().collect();
            unexpected_devices = safety::unexpected_members(&members, &certified)
                .iter()
                .map(|m| format!("device {} of account {}", m.device, m.account))
                .collect();
        }
        let verified = self.profile.verified_root(peer.account)?.map(|(root, _)| root == peer_root);
        Ok(SafetyCheck {
            with: peer.label,
            account: peer.account.0,
            number,
            unexpected_devices,
            verified,
            root: peer_root,
        })
    }

    /// Mark `who` verified after comparing the safety number: if their identity key later
    /// changes, nothing is sent to them until you verify again (or `unverify`).
    pub async fn mark_verified(&mut self, who: &str) -> Result<SafetyCheck, ClientError> {
        let mut check = self.check_safety(who).await?;
        if !check.unexpected_devices.is_empty() {
            return Err(Refusal::UncertifiedDevicesInConversation {
                with: check.with,
                devices: check.unexpected_devices.join(", "),
            }
            .into());
        }
        self.profile.save_verified(rampart_core::AccountId(check.account), &check.root, &check.with)?;
        check.verified = Some(true);
        Ok(check)
    }

    /// Stop treating `who` as verified.
    pub async fn unverify(&mut self, who: &str) -> Result<String, ClientError> {
        let mut conn = self.connect().await?;
        let peer = self.lookup(&mut conn, parse_recipient(who)?).await;
        conn.close().await;
        let peer = peer?;
        self.profile.forget_verified(peer.account)?;
        Ok(peer.label)
    }

    /// Mark a conversation read on an open connection, sending read receipts (unless they
    /// are turned off) for what had not been read.
    pub async fn mark_read_on(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
    ) -> Result<usize, ClientError> {
        let ids = self.profile.mark_read(group)?;
        let n = ids.len();
        if self.receipts_enabled()? {
            self.send_receipt(conn, group, rampart_proto::ReceiptKind::Read, ids).await?;
        }
        Ok(n)
    }

    /// Receive on an open connection until the queue is drained or `wait` passes (the TUI
    /// calls this in its loop). Delivery receipts go out at the end.
    pub async fn pump(&mut self, conn: &mut Connection, wait: Duration) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        self.pump_with(conn, wait, &mut |e| events.push(e.clone())).await?;
        Ok(events)
    }

    /// [`Client::pump`], handing each event to `on_event` as it happens: what was received
    /// and acknowledged is told even when a later step (a receipt, say) fails.
    pub async fn pump_with(
        &mut self,
        conn: &mut Connection,
        wait: Duration,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<(), ClientError> {
        for e in self.release_requests(conn).await? {
            on_event(&e);
        }
        self.drain(conn, wait, on_event).await?;
        self.send_delivery_receipts(conn).await?;
        for path in self.profile.purge_expired(now_ms())? {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    /// Receive queued messages: each is decrypted, checked, stored (deduplicated) and
    /// acknowledged; new ones go to `on_message`. Returns when the queue is drained, or after
    /// `wait` if given.
    pub async fn receive(
        &mut self,
        wait: Option<Duration>,
        mut on_message: impl FnMut(&ReceivedMessage),
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let events = self.receive_events(wait, |_| {}).await?;
        let mut received = Vec::new();
        for e in events {
            if let Event::Message { from, from_account, message_id, text, .. } = e {
                let msg =
                    ReceivedMessage { from, from_account, message_id, server_timestamp_ms: now_ms(), text };
                on_message(&msg);
                received.push(msg);
            }
        }
        Ok(received)
    }

    /// Receive and return every event (messages, joins, membership changes, refusals).
    pub async fn receive_events(
        &mut self,
        wait: Option<Duration>,
        mut on_event: impl FnMut(&Event) + Send,
    ) -> Result<Vec<Event>, ClientError> {
        let mut conn = self.connect().await?;
        let result = async {
            // Top up key packages first, so others can keep adding this device.
            self.top_up_keys(&mut conn).await?;
            // Requests let in since the last receive (their sender became a contact).
            let mut events = self.release_requests(&mut conn).await?;
            events.iter().for_each(&mut on_event);
            events
                .extend(self.drain(&mut conn, wait.unwrap_or(Duration::from_secs(30)), &mut on_event).await?);
            if let Some(w) = wait {
                let started = Instant::now();
                while started.elapsed() < w {
                    let left = w.saturating_sub(started.elapsed());
                    let more = self.drain(&mut conn, left, &mut on_event).await?;
                    if more.is_empty() && left.is_zero() {
                        break;
                    }
                    events.extend(more);
                }
            }
            // Requests answered while receiving (a linked device learning its contacts).
            events.extend(self.release_requests(&mut conn).await?);
            self.send_delivery_receipts(&mut conn).await?;
            // Make sure the last acknowledgements reached the server before closing.
            let _ = conn.request(ClientRequest::Ping).await;
            Ok(events)
        }
        .await;
        conn.close().await;
        result
    }
}

/// A link waiting for approval.
#[derive(Debug)]
pub struct PendingLinkHandle {
    conn: Connection,
    /// The server's part of the code.
    pub code: LinkCode,
    /// The part that checks this device's key; the server never sees it.
    pub key_check: String,
    pub expires_in_secs: u32,
    secret: DeviceSecret,
}

impl PendingLinkHandle {
    /// What the new device shows (and its QR code holds): `ABCD-EFGH-KKKK-KKKK-KKKK`, the
    /// server's link code and the check of this device's key.
    pub fn shown_code(&self) -> String {
        let check: Vec<String> =
            self.key_check.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        format!("{}-{}", self.code.display(), check.join("-"))
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

/// Characters of the link code that check the new device's key: 12 from the link-code
/// alphabet, about 59 bits, so a server that saw the code cannot search for a key of its own
/// with the same check.
pub const LINK_KEY_CHECK_LEN: usize = 12;

/// The software name this client gives the server when it signs in.
pub const CLIENT_NAME: &str = concat!("rampart/", env!("CARGO_PKG_VERSION"));

/// The check of a linking device's key that its link code carries.
pub fn link_key_check(key: &[u8; 32]) -> String {
    use rampart_core::codes::LINK_ALPHABET as ALPHABET;
    use sha2::Digest;
    let digest = sha2::Sha256::digest([&b"rampart link key check v1"[..], &key[..]].concat());
    digest
        .iter()
        .take(LINK_KEY_CHECK_LEN)
        .map(|b| char::from(ALPHABET.get(usize::from(*b) % ALPHABET.len()).copied().unwrap_or(b'A')))
        .collect()
}
