//! The server as MLS delivery service (RFC 9420 §14): device certificates, the key package
//! directory, and group handshake ordering, every commit checked against the group's public
//! state. It reads certificates, clear MLS headers (group, epoch, content type) and commits,
//! which are signed public messages; application content stays opaque.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rampart_core::limits::{DEFAULT_MAX_GROUP_DEVICES, KEY_PACKAGE_STOCK};
use rampart_core::{AccountId, DeviceId, GroupId, MessageId};
use rampart_mls::{MlsError, ds, identity};
use rampart_proto::{
    AccountDevices, Envelope, ErrorBody, ErrorCode, GroupCommit, Recipient, ResponseBody, encode_envelope,
};
use rampart_store::{AccountKeys, GroupCommitRecord, GroupMessage};
use tracing::{debug, info, warn};

use crate::session::{Answer, Connection, err, store_error};
use crate::state::{Shared, now_ms};

/// The server keeps at most this many one-time key packages per device.
const MAX_STOCK: u32 = 2 * KEY_PACKAGE_STOCK;

fn bad_key(e: impl std::fmt::Display) -> ErrorBody {
    err(ErrorCode::BadKey, e.to_string())
}

fn to_wire(keys: Vec<AccountKeys>) -> Vec<AccountDevices> {
    keys.into_iter()
        .map(|k| AccountDevices {
            account: k.account,
            label: k.label,
            devices: k.devices.into_iter().map(|(d, c)| (d, c.map(Bytes::from))).collect(),
        })
        .collect()
}

impl Connection {
    pub(crate) async fn publish_keys(
        &mut self,
        certificate: Option<Bytes>,
        key_packages: Vec<Bytes>,
        last_resort: Option<Bytes>,
    ) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        let cost = 1 + u32::try_from(key_packages.len()).unwrap_or(u32::MAX);
        self.limit(&shared.limits.keys_per_device, &device, cost, "key uploads")?;
        let store = &shared.store;
        if let Some(bytes) = certificate {
            let cert = identity::parse_certificate(&bytes).map_err(bad_key)?;
            if cert.account != account || cert.device != device {
                return Err(bad_key("the certificate names another device"));
            }
            if cert.signer_key == cert.signature_key {
                // A self-signed certificate makes a device the root of its account: only an
                // account's first certified device may be that. Later devices are certified by
                // the device that approved them (CertifyDevice).
                let keys = store.account_keys(&[account]).await.map_err(store_error)?;
                let others_certified =
                    keys.iter().flat_map(|k| k.devices.iter()).any(|(d, c)| *d != device && c.is_some());
                if others_certified {
                    return Err(err(
                        ErrorCode::Forbidden,
                        "this account already has certified devices: a new device is certified by the device that approves it",
                    ));
                }
            }
            store.set_certificate(device, bytes.to_vec()).await.map_err(store_error)?;
        }
        let Some(cert) = store.device_certificate(device).await.map_err(store_error)? else {
            if key_packages.is_empty() && last_resort.is_none() {
                return Ok(ResponseBody::KeysPublished { one_time_left: 0 });
            }
            return Err(err(
                ErrorCode::WrongState,
                "publish this device's certificate before its key packages",
            ));
        };
        let cert = identity::parse_certificate(&cert).map_err(bad_key)?;
        for kp in &key_packages {
            ds::check_key_package(kp, account, device, &cert.signature_key, false).map_err(bad_key)?;
        }
        if let Some(kp) = &last_resort {
            ds::check_key_package(kp, account, device, &cert.signature_key, true).map_err(bad_key)?;
        }
        let left = store
            .publish_key_packages(
                device,
                key_packages.into_iter().map(|k| k.to_vec()).collect(),
                last_resort.map(|k| k.to_vec()),
                MAX_STOCK,
            )
            .await
            .map_err(store_error)?;
        debug!(device = %device, left, "key packages published");
        Ok(ResponseBody::KeysPublished { one_time_left: left })
    }

    pub(crate) async fn certify_device(&mut self, target: DeviceId, certificate: Bytes) -> Answer {
        let (account, device) = self.identity()?;
        let store = self.shared.store.clone();
        let owner = store.device_auth(target).await.map_err(store_error)?.map(|a| a.account);
        if owner != Some(account) {
            return Err(err(ErrorCode::NoSuchDevice, "no such device on this account"));
        }
        let cert = identity::parse_certificate(&certificate).map_err(bad_key)?;
        if cert.account != account || cert.device != target {
            return Err(bad_key("the certificate names another device"));
        }
        let mine = store.device_certificate(device).await.map_err(store_error)?;
        let mine = mine.ok_or_else(|| err(ErrorCode::WrongState, "this device has no certificate yet"))?;
        let mine = identity::parse_certificate(&mine).map_err(bad_key)?;
        if cert.signer_key != mine.signature_key {
            return Err(bad_key("a device certifies others with its own key"));
        }
        store.set_certificate(target, certificate.to_vec()).await.map_err(store_error)?;
        info!(account = %account, by = %device, certified = %target, "device certified");
        Ok(ResponseBody::Ok)
    }

    pub(crate) async fn lookup_account(&mut self, who: Recipient) -> Answer {
        if let Ok((me, _)) = self.identity() {
            crate::sentinel_service::observe(
                &self.shared,
                rampart_sentinel::Observation::Lookup { account: me.0 },
            );
        }
        let account = self.resolve(&who).await?;
        self.fetch_keys(vec![account]).await
    }

    pub(crate) async fn fetch_keys(&mut self, accounts: Vec<AccountId>) -> Answer {
        let (_, device) = self.identity()?;
        let shared = self.shared.clone();
        let cost = u32::try_from(accounts.len()).unwrap_or(u32::MAX);
        self.limit(&shared.limits.keys_per_device, &device, cost, "key lookups")?;
        let keys = shared.store.account_keys(&accounts).await.map_err(store_error)?;
        Ok(ResponseBody::AccountKeys(to_wire(keys)))
    }

    pub(crate) async fn claim_key_packages(&mut self, devices: Vec<DeviceId>) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        let cost = u32::try_from(devices.len()).unwrap_or(u32::MAX);
        self.limit(&shared.limits.keys_per_device, &device, cost, "key package claims")?;
        crate::sentinel_service::observe(
            &shared,
            rampart_sentinel::Observation::KeyPackagesClaimed { account: account.0, count: cost },
        );
        let packages = shared.store.claim_key_packages(&devices).await.map_err(store_error)?;
        Ok(ResponseBody::KeyPackages(packages.into_iter().map(|(d, k)| (d, Bytes::from(k))).collect()))
    }

    pub(crate) async fn group_commit(&mut self, c: GroupCommit) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        self.limit(&shared.limits.keys_per_device, &device, 1, "commits")?;
        let header_epoch = ds::check_group_message(&c.commit, &c.group, ds::Expect::Commit)
            .map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
        if header_epoch != c.epoch {
            return Err(err(ErrorCode::BadRequest, "the commit's epoch differs from the declared one"));
        }
        if let Some(w) = &c.welcome {
            ds::check_welcome(w).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
        }
        let CheckedCommit { public_state, invited } = check_commit_against_group(&shared, &c, device).await?;
        let now = now_ms();
        let record = GroupCommitRecord {
            group: c.group.clone(),
            sender_account: account,
            sender_device: device,
            epoch: c.epoch,
            added: c.added,
            removed: c.removed,
            message_id: c.message_id,
            commit_body: encode_envelope(&Envelope::Commit { group: c.group.clone(), payload: c.commit }),
            welcome_body: c
                .welcome
                .map(|payload| encode_envelope(&Envelope::Welcome { group: c.group.clone(), payload })),
            received_at: now,
            expires_at: now + shared.config.limits.message_ttl_secs * 1000,
            max_members: DEFAULT_MAX_GROUP_DEVICES,
            public_state,
            max_per_sender: shared.config.limits.queue().per_sender,
        };
        let (epoch, copies) = shared.store.commit_group(record).await.map_err(store_error)?;
        for copy in copies {
            shared.hub.push_message(copy);
        }
        for invitee in invited {
            crate::sentinel_service::observe(
                &shared,
                rampart_sentinel::Observation::Invited { inviter: account.0, invitee: invitee.0 },
            );
        }
        debug!(group = %c.group, epoch, "commit accepted");
        Ok(ResponseBody::CommitAccepted { epoch })
    }

    pub(crate) async fn group_send(&mut self, group: GroupId, message_id: MessageId, body: Bytes) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        self.admit_message(device, body.len())?;
        ds::check_group_message(&body, &group, ds::Expect::Application)
            .map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
        let now = now_ms();
        let msg = GroupMessage {
            group: group.clone(),
            sender_account: account,
            sender_device: device,
            message_id,
            body: encode_envelope(&Envelope::Application { group, payload: body }),
            received_at: now,
            expires_at: now + shared.config.limits.message_ttl_secs * 1000,
        };
        let sent = shared.store.send_group(msg, shared.config.limits.queue()).await.map_err(store_error)?;
        shared.metrics.messages_received.inc();
        let count = u32::try_from(sent.copies.len()).unwrap_or(u32::MAX);
        for copy in sent.copies {
            shared.hub.push_message(copy);
        }
        Ok(ResponseBody::Sent {
            server_timestamp_ms: now,
            recipient_devices: count,
            skipped_devices: sent.skipped,
        })
    }

    pub(crate) async fn leave_group(&mut self, group: GroupId) -> Answer {
        let (account, device) = self.identity()?;
        let shared = self.shared.clone();
        let state = shared.store.group_state(&group).await.map_err(store_error)?;
        let state = state.ok_or_else(|| err(ErrorCode::NoSuchGroup, "no such group"))?;
        // Leaving is per account: all of its devices go.
        let devices: Vec<DeviceId> =
            state.members.iter().filter(|(_, a)| *a == account).map(|(d, _)| *d).collect();
        if !devices.contains(&device) {
            return Err(err(ErrorCode::NotAMember, "this device is not a member of the group"));
        }
        let now = now_ms();
        let notice = GroupMessage {
            group: group.clone(),
            sender_account: account,
            sender_device: device,
            message_id: MessageId::random(&mut rand::rng()),
            body: encode_envelope(&Envelope::MemberLeft { group, devices: devices.clone() }),
            received_at: now,
            expires_at: now + shared.config.limits.message_ttl_secs * 1000,
        };
        let copies = shared.store.leave_group(&devices, notice).await.map_err(store_error)?;
        for copy in copies {
            shared.hub.push_message(copy);
        }
        Ok(ResponseBody::Ok)
    }

    /// Block (or unblock) an account for the caller's whole account. The blocked account is
    /// not told: its sends are accepted and dropped (`Store::enqueue`).
    pub(crate) async fn set_block(&mut self, blocked: AccountId, on: bool) -> Answer {
        let (account, _) = self.identity()?;
        if blocked == account {
            return Err(err(ErrorCode::BadRequest, "an account cannot block itself"));
        }
        self.shared.store.set_block(account, blocked, on, now_ms()).await.map_err(store_error)?;
        if on {
            crate::sentinel_service::observe(
                &self.shared,
                rampart_sentinel::Observation::Blocked { blocked: blocked.0, blocker: account.0 },
            );
        }
        Ok(ResponseBody::Ok)
    }
}

/// Check a commit against the group's public MLS state (or, for a new group, the state
/// its creator's GroupInfo starts): a signed commit of the sending device, valid for the
/// group, bringing in only devices with the keys registered here, and adding and removing
/// exactly the devices the request declares. Returns the public state after it. Groups
/// created before the server kept public state (`None` stored) keep the header checks.
async fn check_commit_against_group(
    shared: &Shared,
    c: &GroupCommit,
    device: DeviceId,
) -> Result<CheckedCommit, ErrorBody> {
    let store = &shared.store;
    let state = store.group_state(&c.group).await.map_err(store_error)?;
    let start = match (&state, &c.group_info) {
        (None, Some(info)) => ds::GroupStart::New { group_info: info },
        (None, None) => {
            return Err(err(
                ErrorCode::BadRequest,
                "a new group's first commit carries its GroupInfo (update the client)",
            ));
        }
        (Some(s), _) if !s.members.iter().any(|(d, _)| *d == device) => {
            return Err(err(ErrorCode::NotAMember, "this device is not a member of the group"));
        }
        (Some(s), _) if s.epoch != c.epoch => {
            return Err(err(ErrorCode::StaleEpoch, format!("the group is at epoch {}", s.epoch)));
        }
        (Some(s), _) => match &s.public_state {
            Some(public) => ds::GroupStart::Known(public),
            None => return Ok(CheckedCommit { public_state: None, invited: BTreeSet::new() }),
        },
    };
    let mut registered = BTreeMap::new();
    for d in std::iter::once(&device).chain(&c.added) {
        if let Some(bytes) = store.device_certificate(*d).await.map_err(store_error)?
            && let Ok(cert) = identity::parse_certificate(&bytes)
            && cert.device == *d
        {
            registered
                .insert(*d, ds::Registered { account: cert.account, signature_key: cert.signature_key });
        }
    }
    let checked = ds::check_commit(&c.group, start, &c.commit, device, &registered).map_err(|e| {
        if matches!(e, MlsError::Storage(_)) {
            warn!(group = %c.group, reason = %e, "a group's stored public state cannot be read");
        } else {
            debug!(group = %c.group, device = %device, reason = %e, "commit refused");
        }
        match e {
            MlsError::WrongEpoch { current, .. } => {
                err(ErrorCode::StaleEpoch, format!("the group is at epoch {current}"))
            }
            MlsError::Unauthorized(why) => err(ErrorCode::Forbidden, format!("commit refused: {why}")),
            // The stored public state did not load: the server's fault, not the commit's.
            MlsError::Storage(_) => {
                err(ErrorCode::Internal, "the group's state cannot be read; try again later")
            }
            other => err(ErrorCode::BadRequest, format!("commit refused: {other}")),
        }
    })?;
    let devices = |members: &[rampart_mls::Member]| members.iter().map(|m| m.device).collect::<BTreeSet<_>>();
    let declared_added: BTreeSet<DeviceId> = c.added.iter().copied().collect();
    let declared_removed: BTreeSet<DeviceId> = c.removed.iter().copied().collect();
    if devices(&checked.added) != declared_added
        || devices(&checked.removed) != declared_removed
        || declared_added.len() != c.added.len()
        || declared_removed.len() != c.removed.len()
    {
        return Err(err(
            ErrorCode::BadRequest,
            "the devices declared added and removed are not the commit's own",
        ));
    }
    // Whom the commit brings in: accounts that had no device in the group before it (a
    // member's new device is not an invitation), as the group stood when it was checked.
    let before: BTreeSet<AccountId> = state.iter().flat_map(|s| s.members.iter().map(|(_, a)| *a)).collect();
    let committer = registered.get(&device).map(|r| r.account);
    let invited = checked
        .added
        .iter()
        .map(|m| m.account)
        .filter(|a| !before.contains(a) && Some(*a) != committer)
        .collect();
    Ok(CheckedCommit { public_state: Some(checked.public_state), invited })
}

/// What the delivery service learnt from checking a commit.
struct CheckedCommit {
    /// The group's public state after the commit (`None` for groups from before it was kept).
    public_state: Option<Vec<u8>>,
    /// Accounts the commit brings into the conversation.
    invited: BTreeSet<AccountId>,
}
