//! End-to-end encryption on the client: this device's MLS engine, conversations, and the
//! checks a device runs before it trusts anyone's keys.
//!
//! Trust: a contact's devices are trusted when their certificates chain to a key already
//! trusted for that account. The first time an account is seen, its root (self-signed) key is
//! pinned; a different root later (the number registered again) is accepted but announced in
//! the conversation, and changes the safety number. A device whose certificate does not chain
//! is never added to a conversation, and a commit or Welcome that brings one in is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rampart_core::{AccountId, DeviceId, GroupId, MessageId};
use rampart_mls::identity::{self, certify, new_signature_key, public_key};
use rampart_mls::{Engine, IncomingCommit, Member, MlsError, Processed, SignatureKeyPair, check_removals};
use rampart_proto::{
    AccountDevices, ClientRequest, Content, ContentBody, DeviceCertificate, Envelope, ErrorCode, GroupCommit,
    MAX_RECEIPT_TARGETS, ReceiptKind, Recipient, ResponseBody, ServerFrame, decode_content, decode_envelope,
    encode_certificate, encode_content,
};

use crate::call_inbox::CallInput;
use crate::client::{Client, link_key_check};
use crate::clock::now_ms;
use crate::error::{ClientError, Refusal, is_local_failure};
use crate::event::Event;
use crate::net::Connection;
use crate::recipient::parse_recipient;
use crate::storage::mls::{DeviceEngine, open_storage};
use crate::storage::{MessageKind, NewMessage, ProfileError};
use rampart_mls::trust::{IdentityChange, Question};

/// The profile setting naming the conversation of this account's own devices.
const OWN_CONVERSATION: &str = "own_conversation";

/// One-time key packages kept on the server.
const KEY_PACKAGE_STOCK: usize = rampart_core::limits::KEY_PACKAGE_STOCK as usize;
/// Retries of a commit that lost its epoch to another member's.
const COMMIT_RETRIES: usize = 8;
/// Devices claimed and added per commit (the frame limit bounds a commit's size).
const ADD_BATCH: usize = 100;

/// How many member devices a message was queued for, and how many had no room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reached {
    pub reached: u32,
    pub missed: u32,
}

/// Keys fetched from the server, checked against what this device trusts.
#[derive(Debug, Clone)]
pub(crate) struct CheckedAccount {
    pub account: AccountId,
    pub label: String,
    /// Certified devices whose certificate chains to a trusted key.
    pub trusted: Vec<DeviceCertificate>,
    /// The account's root changed since we pinned it.
    pub root_changed: bool,
}

impl Client {
    /// This device's MLS engine, once it has a certificate.
    pub(crate) fn engine(&mut self) -> Result<&mut DeviceEngine, ClientError> {
        if self.engine.is_none() {
            let cert = self.profile.get("certificate")?.ok_or(ClientError::NoKeys)?;
            let cert = hex::decode(cert).map_err(|_| ProfileError::Corrupt("stored certificate"))?;
            let cert = identity::parse_certificate(&cert)?;
            let storage = open_storage(self.profile.dir(), self.key.as_deref())?;
            let signer = SignatureKeyPair::read(
                &storage,
                &cert.signature_key,
                openmls::prelude::SignatureScheme::ED25519,
            )
            .ok_or(ClientError::NoKeys)?;
            self.engine = Some(Engine::new(storage, signer, cert)?);
        }
        self.engine.as_mut().ok_or(ClientError::NoKeys)
    }

    /// The signature key a linking device made before showing its code (the code commits to
    /// it), or a new one.
    fn linking_key(&mut self) -> Result<SignatureKeyPair, ClientError> {
        let Some(public) = self.profile.get("link_key")? else { return self.new_device_key() };
        let public = hex::decode(public).map_err(|_| ProfileError::Corrupt("link key"))?;
        let storage = open_storage(self.profile.dir(), self.key.as_deref())?;
        SignatureKeyPair::read(&storage, &public, openmls::prelude::SignatureScheme::ED25519)
            .ok_or(ClientError::NoKeys)
    }

    /// Make the key this device will be certified for, before the link code is shown: the
    /// code carries a check of it ([`link_key_check`]).
    pub(crate) fn prepare_linking_key(&mut self) -> Result<[u8; 32], ClientError> {
        let key = self.new_device_key()?;
        let public = public_key(&key)?;
        self.profile.set("link_key", &hex::encode(public))?;
        Ok(public)
    }

    /// A new signature key for this device, kept in the MLS store; returns its public half.
    fn new_device_key(&mut self) -> Result<SignatureKeyPair, ClientError> {
        let key = new_signature_key()?;
        let storage = open_storage(self.profile.dir(), self.key.as_deref())?;
        key.store(&storage).map_err(|e| ClientError::KeyStore(e.to_string()))?;
        Ok(key)
    }

    fn save_certificate(&mut self, cert: &DeviceCertificate) -> Result<(), ClientError> {
        self.profile.set("certificate", &hex::encode(encode_certificate(cert)))?;
        self.profile.trust_key(cert.account, &cert.signature_key)?;
        self.engine = None;
        Ok(())
    }

    /// First device of an account: certify our own key and publish key packages.
    pub(crate) async fn set_up_first_device(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let creds = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        let key = self.new_device_key()?;
        let cert = certify(&key, creds.account, creds.device, public_key(&key)?)?;
        self.save_certificate(&cert)?;
        self.publish_keys(conn, Some(encode_certificate(&cert))).await
    }

    /// Top up the server's stock of one-time key packages when it has run low. Asking costs
    /// one small request; packages are generated (and their private halves stored) only for
    /// the shortfall.
    pub async fn top_up_keys(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let ask = ClientRequest::PublishKeys { certificate: None, key_packages: vec![], last_resort: None };
        let left = match conn.request(ask).await? {
            ResponseBody::KeysPublished { one_time_left } => one_time_left as usize,
            _ => return Err(ClientError::Unexpected("publish keys")),
        };
        if left >= KEY_PACKAGE_STOCK / 2 {
            return Ok(());
        }
        let packages = self.engine()?.key_packages(KEY_PACKAGE_STOCK - left)?;
        conn.request(ClientRequest::PublishKeys {
            certificate: None,
            key_packages: packages.into_iter().map(Into::into).collect(),
            last_resort: None,
        })
        .await?;
        Ok(())
    }

    /// Publish a full stock of key packages and a last-resort one (a device's first time).
    pub(crate) async fn publish_keys(
        &mut self,
        conn: &mut Connection,
        certificate: Option<Vec<u8>>,
    ) -> Result<(), ClientError> {
        let engine = self.engine()?;
        let packages = engine.key_packages(KEY_PACKAGE_STOCK)?;
        let last = engine.last_resort_key_package()?;
        conn.request(ClientRequest::PublishKeys {
            certificate: certificate.map(Into::into),
            key_packages: packages.into_iter().map(Into::into).collect(),
            last_resort: Some(last.into()),
        })
        .await?;
        Ok(())
    }

    /// A linked device: send our key to our own account (the approving device certifies it),
    /// wait for the certificate to appear, then publish key packages.
    pub(crate) async fn set_up_linked_device(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let creds = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        let key = self.linking_key()?;
        let subject = public_key(&key)?;
        // A self-signed request: proves we hold the key.
        let request = certify(&key, creds.account, creds.device, subject)?;
        conn.request(ClientRequest::Send {
            to: self.own_recipient()?,
            message_id: MessageId::random(&mut rand::rng()),
            body: encode_certificate(&request).into(),
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let keys = fetch_keys(conn, &[creds.account]).await?;
            let mine = keys
                .iter()
                .flat_map(|a| a.devices.iter())
                .find(|(d, _)| *d == creds.device)
                .and_then(|(_, c)| c.clone());
            if let Some(bytes) = mine {
                let cert = identity::parse_certificate(&bytes)?;
                if cert.signature_key != subject {
                    return Err(Refusal::ForeignCertificate.into());
                }
                // Trust the signer (our approving device) and the account's other devices.
                self.profile.trust_key(creds.account, &cert.signer_key)?;
                self.save_certificate(&cert)?;
                self.profile.remove("link_key")?;
                self.publish_keys(conn, None).await?;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClientError::Timeout("waiting for the approving device to certify this one"));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// After a link: add the new device to every conversation this account is in, from this
    /// device. Its invitations then come from its own account, which it trusts, instead of from
    /// whichever friend writes first (a friend's invitation would wait as a request on a device
    /// that has no contacts yet). The new device publishes key packages once it sees its
    /// certificate, so a conversation is retried for a while; a failure is left to the next
    /// send there, as before.
    pub(crate) async fn bring_in_linked_device(&mut self, conn: &mut Connection) {
        let groups: Vec<GroupId> = match self.profile.conversations() {
            Ok(list) => list.iter().filter(|c| !c.closed).filter_map(|c| GroupId::from_hex(&c.id)).collect(),
            Err(_) => return,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for group in groups {
            if !self.engine().is_ok_and(|e| e.has_group(&group)) {
                continue;
            }
            self.sync_until_keys(conn, &group, deadline).await;
        }
        // The contacts go over in a conversation of this account's own devices, end to end
        // encrypted like everything else: the server learns nothing it did not know.
        if let Err(e) = self.sync_contacts(conn, deadline).await {
            tracing::warn!(error = %e, "could not send the contacts to the new device");
        }
    }

    /// Tell this account's other devices about new contacts (saved, or a request accepted
    /// here), so they too open those people's conversations. Only where the account's own
    /// conversation exists (it is made when a device is linked); a failure is logged, not
    /// returned: the contact is saved here either way.
    pub(crate) async fn share_contacts(&mut self, conn: &mut Connection, contacts: Vec<(AccountId, String)>) {
        let Ok(Some(own)) = self.profile.get(OWN_CONVERSATION).map(|v| v.and_then(|h| GroupId::from_hex(&h)))
        else {
            return;
        };
        if !self.engine().is_ok_and(|e| e.has_group(&own)) {
            return;
        }
        if let Err(e) = Box::pin(self.send_content(conn, &own, ContentBody::Contacts(contacts))).await {
            tracing::warn!(error = %e, "could not tell this account's other devices about a contact");
        }
    }

    /// `sync_members`, retried while a newly certified device has no key package yet.
    async fn sync_until_keys(&mut self, conn: &mut Connection, group: &GroupId, deadline: Instant) {
        loop {
            match Box::pin(self.sync_members(conn, group, &[])).await {
                Ok(()) => return,
                Err(ClientError::Server(e))
                    if e.code == ErrorCode::NoKeyPackage && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not add the new device to a conversation yet");
                    return;
                }
            }
        }
    }

    /// Send this device's contacts to the account's other devices, in the account's own
    /// conversation (created the first time: later contacts go there too).
    async fn sync_contacts(&mut self, conn: &mut Connection, deadline: Instant) -> Result<(), ClientError> {
        let contacts = self.profile.contact_list()?;
        let own = match self.profile.get(OWN_CONVERSATION)?.and_then(|h| GroupId::from_hex(&h)) {
            Some(g) if self.engine()?.has_group(&g) => g,
            _ => {
                let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
                let group = GroupId::new(me, &mut rand::rng());
                self.engine()?.create_group(&group)?;
                self.profile.save_conversation(&group, None, "note to self")?;
                self.profile.set(OWN_CONVERSATION, &group.to_hex())?;
                group
            }
        };
        self.sync_until_keys(conn, &own, deadline).await;
        // No contacts yet: nothing to send (`chunks` of nothing sends nothing).
        for chunk in contacts.chunks(rampart_proto::MAX_SYNCED_CONTACTS) {
            Box::pin(self.send_content(conn, &own, ContentBody::Contacts(chunk.to_vec()))).await?;
        }
        Ok(())
    }

    fn own_recipient(&self) -> Result<Recipient, ClientError> {
        let label = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.label;
        parse_recipient(&label)
    }

    /// On the approving device: wait for the new device's key request and certify it.
    pub(crate) async fn certify_linked(
        &mut self,
        conn: &mut Connection,
        device: DeviceId,
        key_check: &str,
    ) -> Result<(), ClientError> {
        let creds = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("waiting for the new device's key"));
            }
            let Some(frame) = conn.next_frame(left).await? else { continue };
            let ServerFrame::Delivery(d) = frame else { continue };
            if d.sender_account != creds.account || d.sender_device != device {
                // Leave other messages queued for `recv`.
                continue;
            }
            conn.send(ClientRequest::Ack { ids: vec![d.server_id] }).await?;
            let Ok(Envelope::Direct(body)) = decode_envelope(&d.body) else { continue };
            let Ok(request) = identity::parse_certificate(&body) else { continue };
            if request.account != creds.account
                || request.device != device
                || request.signer_key != request.signature_key
            {
                continue;
            }
            // Only the key the new device showed a check of: the server saw the link code, and
            // could send a key request of its own under the new device's id.
            if link_key_check(&request.signature_key) != key_check {
                tracing::warn!(device = %device, "a key request that does not match the link code; ignored");
                continue;
            }
            let cert = {
                let own = self.engine()?.certificate().clone();
                let storage = open_storage(self.profile.dir(), self.key.as_deref())?;
                let signer = SignatureKeyPair::read(
                    &storage,
                    &own.signature_key,
                    openmls::prelude::SignatureScheme::ED25519,
                )
                .ok_or(ClientError::NoKeys)?;
                certify(&signer, creds.account, device, request.signature_key)?
            };
            conn.request(ClientRequest::CertifyDevice {
                device,
                certificate: encode_certificate(&cert).into(),
            })
            .await?;
            self.profile.trust_key(creds.account, &cert.signature_key)?;
            return Ok(());
        }
    }

    /// Judge the server's answer to `question` against what this device pinned
    /// ([`rampart_mls::trust::judge`]), then carry the verdict out: pin what it says to pin, and say in
    /// the conversation when a known account's identity changed.
    fn check_accounts(
        &mut self,
        question: Question<'_>,
        fetched: Vec<AccountDevices>,
    ) -> Result<Vec<CheckedAccount>, ClientError> {
        let mut pins: BTreeMap<AccountId, BTreeSet<[u8; 32]>> = BTreeMap::new();
        for entry in &fetched {
            if let std::collections::btree_map::Entry::Vacant(slot) = pins.entry(entry.account) {
                slot.insert(self.profile.trusted_keys(entry.account)?.into_iter().collect());
            }
        }
        let verdict =
            rampart_mls::trust::judge(question, fetched, |a| pins.get(&a).cloned().unwrap_or_default());
        for ignored in &verdict.ignored {
            tracing::warn!(?ignored, "the server answered beyond the question; that part is ignored");
        }
        let mut out = Vec::with_capacity(verdict.accounts.len());
        for a in verdict.accounts {
            let root_changed = a.change == Some(IdentityChange::RootChanged);
            if root_changed {
                self.profile.forget_trusted_keys(a.account)?;
                if let Some(group) = self.profile.direct_conversation(a.account)? {
                    let text = format!(
                        "{}'s identity key changed: the safety number is new. If you did not expect this, \
                         compare it again in person (rampart verify {})",
                        a.label, a.label
                    );
                    self.profile.insert_notice(&group, &text, now_ms())?;
                }
            }
            for key in &a.newly_trusted {
                self.profile.trust_key(a.account, key)?;
            }
            out.push(CheckedAccount { account: a.account, label: a.label, trusted: a.trusted, root_changed });
        }
        Ok(out)
    }

    pub(crate) async fn checked_keys(
        &mut self,
        conn: &mut Connection,
        accounts: &[AccountId],
    ) -> Result<Vec<CheckedAccount>, ClientError> {
        let fetched = fetch_keys(conn, accounts).await?;
        self.check_accounts(Question::Keys(accounts), fetched)
    }

    pub(crate) async fn lookup(
        &mut self,
        conn: &mut Connection,
        who: Recipient,
    ) -> Result<CheckedAccount, ClientError> {
        match conn.request(ClientRequest::LookupAccount { who }).await? {
            ResponseBody::AccountKeys(list) => self
                .check_accounts(Question::Lookup, list)?
                .into_iter()
                .next()
                .ok_or(ClientError::Unexpected("lookup")),
            _ => Err(ClientError::Unexpected("lookup")),
        }
    }

    /// The 1:1 conversation with `peer`, created if there is none.
    pub(crate) async fn direct_conversation(
        &mut self,
        conn: &mut Connection,
        peer: &CheckedAccount,
    ) -> Result<GroupId, ClientError> {
        // Writing to someone whose request is open answers it: accept, and write there.
        if self.profile.message_requests()?.iter().any(|r| r.from_account == peer.account.0) {
            self.profile.save_contact(peer.account, &peer.label)?;
            self.profile.accept_requests_from(peer.account)?;
            Box::pin(self.release_requests(conn)).await?;
        }
        if let Some(group) = self.profile.direct_conversation(peer.account)?
            && self.engine()?.has_group(&group)
        {
            return Ok(group);
        }
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
        let group = GroupId::new(me, &mut rand::rng());
        self.engine()?.create_group(&group)?;
        self.profile.save_conversation(&group, Some(peer.account), &peer.label)?;
        self.sync_members(conn, &group, &[peer.account]).await?;
        Ok(group)
    }

    /// Bring the group's devices in line with its accounts' trusted devices: add new ones
    /// (a linked device), remove those no longer listed (a revoked one). `extra` accounts are
    /// being added.
    pub(crate) async fn sync_members(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
        extra: &[AccountId],
    ) -> Result<(), ClientError> {
        for _ in 0..COMMIT_RETRIES {
            let members = self.engine()?.members(group)?;
            let mut accounts: BTreeSet<AccountId> = members.iter().map(|m| m.account).collect();
            accounts.extend(extra.iter().copied());
            for left in self.profile.left_accounts(group)? {
                accounts.remove(&left);
            }
            let accounts: Vec<AccountId> = accounts.into_iter().collect();
            let checked = self.checked_keys(conn, &accounts).await?;
            // A verified person's identity changed: no device of the new identity comes in,
            // and nothing is sent, until the user decides (`rampart verify`).
            for a in &checked {
                if let Some((root, label)) = self.profile.verified_root(a.account)?
                    && !self.profile.trusted_keys(a.account)?.contains(&root)
                {
                    return Err(ClientError::IdentityChanged(label));
                }
            }
            let wanted: BTreeMap<DeviceId, AccountId> =
                checked.iter().flat_map(|a| a.trusted.iter().map(|c| (c.device, c.account))).collect();
            let present: BTreeSet<DeviceId> = members.iter().map(|m| m.device).collect();
            let to_add: Vec<DeviceId> =
                wanted.keys().filter(|d| !present.contains(d)).copied().take(ADD_BATCH).collect();
            let to_remove: Vec<DeviceId> =
                present.iter().filter(|d| !wanted.contains_key(d)).copied().collect();
            let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
            let to_remove: Vec<DeviceId> = to_remove.into_iter().filter(|d| *d != me.device).collect();
            if to_add.is_empty() && to_remove.is_empty() {
                return Ok(());
            }
            let bundle = if !to_remove.is_empty() {
                self.engine()?.remove(group, &to_remove)?
            } else {
                let packages =
                    match conn.request(ClientRequest::ClaimKeyPackages { devices: to_add.clone() }).await {
                        Ok(ResponseBody::KeyPackages(list)) => list,
                        Ok(_) => return Err(ClientError::Unexpected("claim key packages")),
                        Err(e) => return Err(e),
                    };
                let mut valid = Vec::new();
                for (device, kp) in packages {
                    // The package must be for the device we asked for, with a trusted key.
                    let (_, member) = self.engine()?.validate_key_package(&kp)?;
                    let trusted = checked
                        .iter()
                        .flat_map(|a| a.trusted.iter())
                        .any(|c| c.device == device && c.signature_key == member.signature_key);
                    if member.device == device && trusted {
                        valid.push(kp.to_vec());
                    }
                }
                if valid.is_empty() {
                    return Err(Refusal::NoValidKeyPackage.into());
                }
                self.engine()?.add(group, &valid)?
            };
            let request = ClientRequest::GroupCommit(GroupCommit {
                group: group.clone(),
                epoch: bundle.epoch,
                message_id: MessageId::random(&mut rand::rng()),
                commit: bundle.commit.into(),
                welcome: bundle.welcome.map(Into::into),
                group_info: bundle.group_info.map(Into::into),
                added: bundle.added.iter().map(|m| m.device).collect(),
                removed: bundle.removed.iter().map(|m| m.device).collect(),
            });
            match conn.request(request).await {
                Ok(ResponseBody::CommitAccepted { .. }) => {
                    self.engine()?.commit_accepted(group)?;
                }
                Err(ClientError::Server(e)) if e.code == ErrorCode::StaleEpoch => {
                    // Another member's commit won this epoch: take it in, then try again.
                    // What else arrives meanwhile goes to whoever is receiving.
                    self.engine()?.commit_rejected(group)?;
                    let received = self
                        .receive_deliveries(conn, Duration::from_secs(5), Until::Timeout, &mut |_| {})
                        .await?;
                    keep_meanwhile(&mut self.received_meanwhile, received);
                }
                Err(e) => {
                    self.engine()?.commit_rejected(group)?;
                    return Err(e);
                }
                Ok(_) => return Err(ClientError::Unexpected("commit")),
            }
        }
        Err(ClientError::Contended)
    }

    /// Encrypt `body` for the conversation and hand it to the server.
    pub(crate) async fn send_content(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
        body: ContentBody,
    ) -> Result<(MessageId, Reached), ClientError> {
        // Holds everything when a verified person's identity changed (receipts included: they
        // would go to the new identity's devices too).
        self.sync_members(conn, group, &[]).await?;
        let message_id = MessageId::random(&mut rand::rng());
        let creds = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?;
        // Counted only once the server took it: a send that failed leaves no gap behind.
        let seq = self.profile.last_seq(group, creds.device)?.unwrap_or(0).saturating_add(1);
        let content = Content { message_id, sent_at_ms: now_ms(), seq, body };
        let ciphertext = self.engine()?.encrypt(group, &encode_content(&content))?;
        match conn
            .request(ClientRequest::GroupSend { group: group.clone(), message_id, body: ciphertext.into() })
            .await?
        {
            ResponseBody::Sent { recipient_devices, skipped_devices, .. } => {
                self.profile.set_last_seq(group, creds.device, seq)?;
                self.store_content(group, (creds.account, creds.device), &creds.label, &content)?;
                Ok((message_id, Reached { reached: recipient_devices, missed: skipped_devices }))
            }
            _ => Err(ClientError::Unexpected("group send")),
        }
    }

    /// Tell senders their messages arrived: one delivery receipt per conversation for what
    /// was received since the last call. Off when the profile says `receipts = off`.
    pub(crate) async fn send_delivery_receipts(&mut self, conn: &mut Connection) -> Result<(), ClientError> {
        let pending = std::mem::take(&mut self.unreceipted);
        if !self.receipts_enabled()? {
            return Ok(());
        }
        for (group, ids) in pending {
            match self.send_receipt(conn, &group, ReceiptKind::Delivered, ids.clone()).await {
                Ok(()) => {}
                // Receipts wait for the next round rather than fail the receive.
                Err(ClientError::Server(e)) if e.code == ErrorCode::RateLimited => {
                    self.unreceipted.entry(group).or_default().extend(ids);
                }
                // Held with everything else for a verified person whose identity changed.
                Err(ClientError::IdentityChanged(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(crate) fn receipts_enabled(&self) -> Result<bool, ClientError> {
        Ok(self.profile.get("receipts")?.as_deref() != Some("off"))
    }

    pub(crate) async fn send_receipt(
        &mut self,
        conn: &mut Connection,
        group: &GroupId,
        kind: ReceiptKind,
        ids: Vec<MessageId>,
    ) -> Result<(), ClientError> {
        // A conversation we were removed from or left cannot take receipts any more. Receipts
        // go in 1:1 conversations only: an MLS message reaches every member, so in a group
        // every member's receipts would go to every member (traffic growing with the square
        // of the group, filling offline members' queues).
        if ids.is_empty() || !self.engine()?.has_group(group) || !self.profile.is_direct(group)? {
            return Ok(());
        }
        for chunk in ids.chunks(MAX_RECEIPT_TARGETS) {
            let body = ContentBody::Receipt { kind, targets: chunk.to_vec() };
            self.send_content(conn, group, body).await?;
        }
        Ok(())
    }

    /// Receive until the queue is drained (or `wait` passes): each delivery is decrypted,
    /// checked, stored and acknowledged.
    /// Receive for up to `wait` (or until the queue is drained), then do what the deliveries
    /// asked for: membership changes, whose commits may receive more while they retry.
    pub(crate) async fn drain(
        &mut self,
        conn: &mut Connection,
        wait: Duration,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Vec<Event>, ClientError> {
        self.drain_until(conn, wait, Until::Timeout, on_event).await
    }

    /// Receive during a call: like [`Client::pump_with`], but returning as soon as something
    /// arrived for the user or for the call, so that a call signal is taken at once (the
    /// caller's next [`Client::step_call`] handles it). Receipts go out as usual.
    pub async fn receive_news(
        &mut self,
        conn: &mut Connection,
        wait: Duration,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<(), ClientError> {
        self.drain_until(conn, wait, Until::News, on_event).await?;
        self.send_delivery_receipts(conn).await
    }

    /// [`Client::drain`], returning as soon as `until` says.
    pub(crate) async fn drain_until(
        &mut self,
        conn: &mut Connection,
        wait: Duration,
        until: Until,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Vec<Event>, ClientError> {
        let mut events = self.receive_deliveries(conn, wait, until, on_event).await?;
        while let Some(group) = self.pending_syncs.pop_first() {
            // Best effort, as any member may make this commit and one of us will win.
            if let Err(e) = self.sync_members(conn, &group, &[]).await {
                tracing::debug!(error = %e, "could not bring a conversation's members in line");
            }
        }
        for e in std::mem::take(&mut self.received_meanwhile) {
            on_event(&e);
            events.push(e);
        }
        Ok(events)
    }

    /// Handle and acknowledge deliveries for up to `wait`, or until the queue is drained. Never
    /// commits, so it may run inside a commit's retry.
    async fn receive_deliveries(
        &mut self,
        conn: &mut Connection,
        wait: Duration,
        until: Until,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Vec<Event>, ClientError> {
        let started = Instant::now();
        let mut events = Vec::new();
        let call_inputs = self.call_inputs.len();
        loop {
            if until == Until::News && (!events.is_empty() || self.call_inputs.len() != call_inputs) {
                break;
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match conn.next_frame(left).await? {
                Some(ServerFrame::Delivery(d)) => {
                    let new = self.handle_delivery(conn, &d).await?;
                    // Handled (stored or refused) first, acknowledged second: a crash in between
                    // means a redelivery, which deduplication absorbs.
                    conn.send(ClientRequest::Ack { ids: vec![d.server_id] }).await?;
                    for e in new {
                        on_event(&e);
                        events.push(e);
                    }
                }
                Some(ServerFrame::QueueDrained) => break,
                Some(_) => {}
                None => break,
            }
        }
        Ok(events)
    }

    pub(crate) async fn handle_delivery(
        &mut self,
        conn: &mut Connection,
        d: &rampart_proto::Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        let envelope = match decode_envelope(&d.body) {
            Ok(e) => e,
            Err(e) => return Ok(vec![Event::Refused { reason: format!("undecodable delivery: {e}") }]),
        };
        let refused = |e: &dyn std::fmt::Display| vec![Event::Refused { reason: e.to_string() }];
        // Consent first: a conversation a stranger started is kept sealed, not opened.
        if let Some(events) = self.consent(d, &envelope)? {
            return Ok(events);
        }
        match envelope {
            // Only linking uses direct messages (a key request for the approving device).
            Envelope::Direct(_) => Ok(vec![]),
            Envelope::Welcome { .. } => match self.accept_welcome(conn, d).await {
                Ok(events) => Ok(events),
                Err(e) if e.is_refusal() => Ok(refused(&e)),
                Err(e) => Err(e),
            },
            Envelope::Commit { group, payload } => {
                let processed = match self.engine()?.process(&group, &payload) {
                    Ok(p) => p,
                    Err(e) if is_local_failure(&e) => return Err(e.into()),
                    Err(e) => return Ok(refused(&e)),
                };
                match processed {
                    Processed::Commit(commit) => self.accept_commit(conn, commit).await,
                    _ => Ok(refused(&"a commit envelope without a commit")),
                }
            }
            Envelope::Application { group, payload } => {
                let (sender, plaintext) = match self.engine()?.process(&group, &payload) {
                    Ok(Processed::Application { sender, plaintext }) => (sender, plaintext),
                    Ok(_) => return Ok(refused(&"not an application message")),
                    Err(MlsError::Duplicate) => return Ok(vec![]),
                    Err(e) if is_local_failure(&e) => return Err(e.into()),
                    Err(e) => return Ok(refused(&e)),
                };
                if sender.account != d.sender_account || sender.device != d.sender_device {
                    return Ok(refused(&"the server's sender differs from the signed one"));
                }
                let content = match decode_content(&plaintext) {
                    Ok(c) => c,
                    Err(e) => return Ok(refused(&e)),
                };
                let mut events = self.note_missing(&group, sender.device, &d.sender_label, content.seq)?;
                events.extend(self.store_content(
                    &group,
                    (sender.account, sender.device),
                    &d.sender_label,
                    &content,
                )?);
                Ok(events)
            }
            // Calls: queued for a call driver, sealed. Nothing of the caller's is decrypted or
            // parsed here (docs/calls.md).
            Envelope::Ring(notice) => {
                let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
                if notice.caller != d.sender_account || notice.caller_device != d.sender_device {
                    return Ok(refused(&"a ring notice that does not match its delivery"));
                }
                if notice.caller == me {
                    return Ok(vec![]);
                }
                // A server that ignores a block still does not make this device ring.
                if self.profile.is_blocked(notice.caller)? {
                    return Ok(vec![]);
                }
                let rings = self.on_ring_notice(notice, &d.sender_label)?;
                Ok(vec![Event::IncomingCall {
                    call: hex::encode(notice.call.0),
                    from: d.sender_label.clone(),
                    from_account: notice.caller.0,
                    rings,
                }])
            }
            // Written by the server itself (no client can make one: the server wraps what
            // clients send), shown as the server's and nothing more: no link, no action.
            Envelope::ServerNotice(text) => {
                Ok(vec![Event::ServerNotice { text, at_ms: d.server_timestamp_ms }])
            }
            Envelope::CallSignal { .. } if self.profile.is_blocked(d.sender_account)? => Ok(vec![]),
            Envelope::CallSignal { call, kind, group, payload } => {
                self.push_call_input(CallInput::Signal {
                    call,
                    kind,
                    group,
                    payload,
                    from: (d.sender_account, d.sender_device),
                });
                Ok(vec![])
            }
            Envelope::MemberLeft { group, devices } => {
                // The server sends this notice from the leaving account, for its devices.
                if !devices.is_empty() {
                    self.profile.mark_left(&group, d.sender_account)?;
                }
                // Any member may commit the removal of devices that left; one of us will win.
                // Done by `drain` after this delivery, not from inside it.
                if self.engine()?.has_group(&group) {
                    self.pending_syncs.insert(group);
                }
                Ok(vec![])
            }
        }
    }

    /// Apply received content to the history: new lines for texts and attachments, changes
    /// to earlier lines for edits, deletions, reactions and receipts.
    ///
    /// Our own sends go through here too, and so do messages from this account's other
    /// devices: both are "from me" in the history.
    pub(crate) fn store_content(
        &mut self,
        arrived_in: &GroupId,
        sender: (AccountId, DeviceId),
        label: &str,
        content: &Content,
    ) -> Result<Vec<Event>, ClientError> {
        // A 1:1 merged into its twin shows there (`Profile::converge_direct`).
        let shown = self.profile.shown_conversation(arrived_in)?;
        let group = &shown;
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
        let outgoing = sender.0 == me;
        let profile = &self.profile;
        let now = now_ms();
        let insert = |kind: MessageKind, text: &str, reply_to: Option<MessageId>| {
            profile.insert_message(&NewMessage {
                conversation: group,
                sender_account: sender.0,
                sender_device: sender.1,
                sender_label: label,
                message_id: content.message_id,
                sent_at_ms: content.sent_at_ms,
                received_at_ms: now,
                outgoing,
                kind,
                text,
                reply_to,
            })
        };
        let (text, new) = match &content.body {
            ContentBody::Text { text, reply_to } => {
                (text.clone(), insert(MessageKind::Text, text, *reply_to)?)
            }
            ContentBody::Attachment(a) => {
                let seq = insert(MessageKind::Attachment, &a.caption, None)?;
                if let Some(seq) = seq {
                    profile.save_attachment(seq, a)?;
                }
                (format!("[attachment {} ({} bytes)] {}", a.name, a.size, a.caption), seq)
            }
            ContentBody::Reaction { target, emoji } => {
                profile.react(group, sender.0, target, emoji)?;
                return Ok(vec![]);
            }
            ContentBody::Edit { target, text } => {
                profile.edit_message(group, sender.0, target, text)?;
                return Ok(vec![]);
            }
            // Call signals count only on the call path (released by a call machine); one that
            // came as an ordinary message is ignored.
            ContentBody::Call(_) => return Ok(vec![]),
            // Contacts come from this account's own devices only (a linked device learns them
            // so); they answer the requests those people already sent here.
            ContentBody::Contacts(list) => {
                if outgoing {
                    for (account, label) in list {
                        profile.save_contact(*account, label)?;
                        profile.accept_requests_from(*account)?;
                    }
                }
                return Ok(vec![]);
            }
            ContentBody::Delete { target } => {
                if let Some(path) = profile.delete_message(group, sender.0, target)? {
                    let _ = std::fs::remove_file(path);
                }
                return Ok(vec![]);
            }
            ContentBody::Receipt { kind, targets } => {
                if !outgoing {
                    profile.apply_receipt(group, *kind, targets)?;
                }
                return Ok(vec![]);
            }
            ContentBody::Timer { seconds } => {
                profile.set_timer(group, *seconds)?;
                let text = match seconds {
                    0 => format!("{label} turned disappearing messages off"),
                    s => {
                        format!("{label} set disappearing messages to {}", crate::storage::human_duration(*s))
                    }
                };
                profile.insert_notice(group, &text, now)?;
                (text, None)
            }
            ContentBody::GroupName(name) => {
                profile.rename_conversation(group, name)?;
                // Only groups are named, by their creator: a two-person group is not a 1:1. (A
                // name arriving in a 1:1 merged into its twin leaves the kept 1:1 alone.)
                if sender.0 == arrived_in.creator() && arrived_in == group {
                    profile.mark_group(group)?;
                }
                let text = format!("{label} named the group {name}");
                profile.insert_notice(group, &text, now)?;
                (text, None)
            }
        };
        if new.is_none() || outgoing {
            return Ok(vec![]);
        }
        // Receipts go back in the MLS group the message came in.
        self.unreceipted.entry(arrived_in.clone()).or_default().push(content.message_id);
        Ok(new
            .map(|_| Event::Message {
                conversation: group.to_hex(),
                from: label.to_owned(),
                from_account: sender.0.0,
                message_id: content.message_id.to_string(),
                text,
            })
            .into_iter()
            .collect())
    }

    async fn accept_welcome(
        &mut self,
        conn: &mut Connection,
        d: &rampart_proto::Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        let Ok(Envelope::Welcome { group, payload }) = decode_envelope(&d.body) else {
            return Ok(vec![]);
        };
        // Consent looked at the envelope's group and the server's sender: the Welcome must be
        // that group's, made by that device.
        let (group, members) =
            self.engine()?.join_as_delivered(&payload, &group, (d.sender_account, d.sender_device))?;
        let accounts: Vec<AccountId> =
            members.iter().map(|m| m.account).collect::<BTreeSet<_>>().into_iter().collect();
        let checked = self.checked_keys(conn, &accounts).await?;
        let untrusted = members.iter().find(|m| {
            !checked.iter().flat_map(|a| a.trusted.iter()).any(|c| c.signature_key == m.signature_key)
        });
        if let Some(m) = untrusted {
            self.engine()?.forget_group(&group)?;
            return Err(Refusal::UncertifiedMember { device: m.device, account: m.account }.into());
        }
        let me = self.profile.credentials()?.ok_or(ClientError::NotRegistered)?.account;
        let others: Vec<&CheckedAccount> = checked.iter().filter(|a| a.account != me).collect();
        let (peer, label) = match others.as_slice() {
            [one] => (Some(one.account), one.label.clone()),
            [] => (None, "note to self".to_owned()),
            many => (None, many.iter().map(|a| a.label.as_str()).collect::<Vec<_>>().join(", ")),
        };
        // A conversation made by someone else is 1:1 only if it has exactly two accounts and
        // its creator is one of them.
        let direct = peer.filter(|p| group.creator() == *p || group.creator() == me);
        self.profile.save_conversation(&group, direct, &label)?;
        if let Some(peer) = direct {
            self.profile.converge_direct(peer)?;
            // Another device of this account brought this one into a 1:1: the account already
            // talks with that person, so they are a contact here too (a newly linked device
            // starts with none).
            if d.sender_account == me {
                self.profile.save_contact(peer, &label)?;
            }
        }
        self.profile.forget_seqs(&group)?;
        Ok(vec![Event::Joined { conversation: group.to_hex(), members: members.len() }])
    }

    /// Compare a message's count with the last one seen from its device in this conversation:
    /// a jump means messages between were not delivered (a server that drops them, or a queue
    /// that was full), which the conversation then says. The first count seen from a device is
    /// only noted (what it sent before this device could read is not missing), and a count at
    /// or below the last one is a late or repeated message, shown as usual.
    fn note_missing(
        &mut self,
        group: &GroupId,
        device: DeviceId,
        label: &str,
        seq: u64,
    ) -> Result<Vec<Event>, ClientError> {
        // 0 is "not counted"; past what the profile stores (a sender's choice) it is ignored
        // too, rather than failing the delivery it came in.
        if seq == 0 || i64::try_from(seq).is_err() {
            return Ok(vec![]);
        }
        let last = self.profile.last_seq(group, device)?;
        if last.is_some_and(|last| seq <= last) {
            return Ok(vec![]);
        }
        self.profile.set_last_seq(group, device, seq)?;
        let missing = match last {
            Some(last) if seq > last + 1 => seq - last - 1,
            _ => return Ok(vec![]),
        };
        let text = if missing == 1 {
            format!("1 message from {label} did not arrive: the server did not deliver it")
        } else {
            format!("{missing} messages from {label} did not arrive: the server did not deliver them")
        };
        self.profile.insert_notice(group, &text, now_ms())?;
        Ok(vec![Event::MessagesMissing {
            conversation: group.to_hex(),
            from: label.to_owned(),
            count: missing,
        }])
    }

    async fn accept_commit(
        &mut self,
        conn: &mut Connection,
        commit: IncomingCommit,
    ) -> Result<Vec<Event>, ClientError> {
        let group = commit.group.clone();
        let mut accounts: BTreeSet<AccountId> = commit.added.iter().map(|m| m.account).collect();
        accounts.extend(commit.removed.iter().map(|m| m.account));
        accounts.extend(commit.updated.iter().map(|m| m.account));
        let checked = self.checked_keys(conn, &accounts.into_iter().collect::<Vec<_>>()).await?;
        let listed = |m: &Member| {
            checked
                .iter()
                .flat_map(|a| a.trusted.iter())
                .any(|c| c.device == m.device && c.signature_key == m.signature_key)
        };
        // Removals need authority, unless the removed device has left its account.
        let left = self.profile.left_accounts(&group)?;
        if let Err(e) = check_removals(&group, &commit.committer, &commit.removed, |m| {
            !listed(m) || left.contains(&m.account)
        }) {
            return Ok(vec![Event::Refused { reason: e.to_string() }]);
        }
        // A renewed leaf (the engine made sure it is still the same account and device) keeps
        // a key its account certifies.
        if let Some(m) = commit.updated.iter().find(|m| !listed(m)) {
            return Ok(vec![Event::Refused {
                reason: format!(
                    "a commit renewed {} of {} with a key its account does not certify",
                    m.device, m.account
                ),
            }]);
        }
        if let Some(m) = commit.added.iter().find(|m| !listed(m)) {
            return Ok(vec![Event::Refused {
                reason: format!(
                    "a commit added {} of {}, whose key is not certified by its account",
                    m.device, m.account
                ),
            }]);
        }
        let (added, removed) = (commit.added.len(), commit.removed.len());
        let changed: Vec<AccountId> = checked.iter().filter(|a| a.root_changed).map(|a| a.account).collect();
        let accounts_of = |ms: &[Member]| ms.iter().map(|m| m.account).collect::<BTreeSet<_>>();
        let before = accounts_of(&self.engine()?.members(&group)?);
        let (added_accounts, removed_accounts) = (accounts_of(&commit.added), accounts_of(&commit.removed));
        let removes_us = commit.removes_us;
        self.engine()?.apply_commit(commit)?;
        // A group that removed us is gone from the engine.
        let after = if removes_us { BTreeSet::new() } else { accounts_of(&self.engine()?.members(&group)?) };
        // Say in the conversation what changed: people see a new device of a contact (the
        // moment a server-added eavesdropper would show up) next to the messages.
        let label = |a: &AccountId| {
            checked.iter().find(|c| c.account == *a).map_or_else(|| a.to_string(), |c| c.label.clone())
        };
        let mut notices = Vec::new();
        for a in &added_accounts {
            notices.push(if before.contains(a) {
                format!("{} has a new device; the safety number changed", label(a))
            } else {
                format!("{} joined", label(a))
            });
        }
        for a in &removed_accounts {
            notices.push(if after.contains(a) {
                format!("{} removed a device; the safety number changed", label(a))
            } else {
                format!("{} left", label(a))
            });
        }
        for a in &changed {
            notices
                .push(format!("{}'s keys changed (registered again?): verify the safety number", label(a)));
        }
        let now = now_ms();
        for n in notices {
            self.profile.insert_notice(&group, &n, now)?;
        }
        let conversation = group.to_hex();
        let mut events =
            vec![Event::MembershipChanged { conversation: conversation.clone(), added, removed }];
        for account in changed {
            events.push(Event::KeysChanged { conversation: conversation.clone(), account: account.0 });
        }
        if removes_us {
            self.profile.mark_conversation_closed(&group)?;
            events.push(Event::RemovedFromConversation { conversation });
        }
        Ok(events)
    }

    /// What a modified client of this device's owner could send, and Rampart never does: a
    /// commit in `group` that renews this device's leaf with a fresh key under a certificate
    /// naming `as_account`'s `as_device` (self-signed, so it verifies by itself). For tests of
    /// what the server and members refuse (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub fn forged_leaf_renewal(
        &mut self,
        group: &GroupId,
        as_account: AccountId,
        as_device: DeviceId,
    ) -> Result<GroupCommit, ClientError> {
        let key = identity::new_signature_key()?;
        let cert = identity::certify(&key, as_account, as_device, identity::public_key(&key)?)?;
        let engine = self.engine()?;
        let epoch = engine.epoch(group)?;
        let commit = engine.forged_leaf_renewal(group, &key, &cert)?;
        Ok(GroupCommit {
            group: group.clone(),
            epoch,
            message_id: MessageId::random(&mut rand::rng()),
            commit: commit.into(),
            welcome: None,
            group_info: None,
            added: vec![],
            removed: vec![],
        })
    }
}

pub(crate) async fn fetch_keys(
    conn: &mut Connection,
    accounts: &[AccountId],
) -> Result<Vec<AccountDevices>, ClientError> {
    let mut out = Vec::new();
    for chunk in accounts.chunks(rampart_core::limits::MAX_KEY_REQUEST_ITEMS) {
        match conn.request(ClientRequest::FetchKeys { accounts: chunk.to_vec() }).await? {
            ResponseBody::AccountKeys(list) => out.extend(list),
            _ => return Err(ClientError::Unexpected("fetch keys")),
        }
    }
    Ok(out)
}

/// How long a receive goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Until the wait is over (or the server's queue is drained).
    Timeout,
    /// Until something arrived for the user or for a call: a call driver takes a signal at
    /// once instead of at the end of its wait.
    News,
}

/// Events received while a commit was retried, at most this many (the oldest go first: each
/// is in the history already, this only feeds a live display).
const MAX_RECEIVED_MEANWHILE: usize = 4096;

fn keep_meanwhile(kept: &mut Vec<Event>, received: Vec<Event>) {
    kept.extend(received);
    let over = kept.len().saturating_sub(MAX_RECEIVED_MEANWHILE);
    kept.drain(..over);
}
