//! One device's MLS state.
//!
//! Commits follow the delivery service's verdict: [`Engine::add`] and [`Engine::remove`] stage
//! a commit and return its bytes; it takes effect only with [`Engine::commit_accepted`], and is
//! thrown away with [`Engine::commit_rejected`] when another member's commit won the epoch. So a
//! device never moves to an epoch the rest of the group has not, and nobody forks.

use std::collections::HashMap;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    Capabilities, ExtensionType, GroupId as MlsGroupId, KeyPackage, KeyPackageIn, LeafNodeIndex,
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY, MlsGroup, MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn,
    MlsMessageIn, ProcessMessageError, ProcessedMessageContent, ProtocolMessage, ProtocolVersion,
    SenderRatchetConfiguration, StagedCommit, StagedWelcome, WelcomeError,
};
use openmls::prelude::{Member as MlsMember, Sender};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider};
use rampart_core::{AccountId, DeviceId, GroupId};
use rampart_proto::DeviceCertificate;

use crate::identity::{credential_with_key, member_certificate, public_key};
use crate::{CIPHERSUITE, MlsError};

/// Past epochs whose keys are kept, so application messages sent just before a commit still
/// decrypt after it.
const MAX_PAST_EPOCHS: usize = 5;
/// Messages of one sender that may arrive out of order, and how far ahead one may jump.
const OUT_OF_ORDER_TOLERANCE: u32 = 100;
const MAX_FORWARD_DISTANCE: u32 = 2_000;
/// Ciphertexts are padded to a multiple of this, to blur message lengths.
const PADDING: usize = 64;

/// The group configuration every Rampart conversation uses. Commits go out as MLS public
/// messages, signed but not encrypted, so the delivery service can check them against the
/// group's public state (`ds::check_commit`); application messages are always encrypted.
pub fn group_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(PADDING)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(
            OUT_OF_ORDER_TOLERANCE,
            MAX_FORWARD_DISTANCE,
        ))
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(PADDING)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(
            OUT_OF_ORDER_TOLERANCE,
            MAX_FORWARD_DISTANCE,
        ))
        .build()
}

/// openmls' provider: pure-Rust crypto plus the caller's storage.
#[derive(Debug)]
struct Provider<S> {
    crypto: RustCrypto,
    storage: S,
}

impl<S: StorageProvider<CURRENT_VERSION>> OpenMlsProvider for Provider<S> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = S;

    fn storage(&self) -> &S {
        &self.storage
    }
    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }
    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

/// A member device of a conversation, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub account: AccountId,
    pub device: DeviceId,
    pub signature_key: [u8; 32],
    /// The key that certified this device (its own for an account's first device).
    pub signer_key: [u8; 32],
    pub leaf: u32,
}

impl Member {
    pub(crate) fn from_cert(cert: &DeviceCertificate, leaf: u32) -> Self {
        Self {
            account: cert.account,
            device: cert.device,
            signature_key: cert.signature_key,
            signer_key: cert.signer_key,
            leaf,
        }
    }

    pub(crate) fn from_mls(m: &MlsMember) -> Result<Self, MlsError> {
        let cert = member_certificate(&m.credential, &m.signature_key)?;
        Ok(Self::from_cert(&cert, m.index.u32()))
    }
}

/// A staged commit of ours, for the delivery service.
#[derive(Debug, Clone)]
pub struct CommitBundle {
    pub group: GroupId,
    /// The epoch the commit was made in.
    pub epoch: u64,
    pub commit: Vec<u8>,
    pub welcome: Option<Vec<u8>>,
    /// A new group's first commit carries the group as it was before it: the creator's signed
    /// GroupInfo with the ratchet tree, from which the delivery service starts its public state.
    pub group_info: Option<Vec<u8>>,
    pub added: Vec<Member>,
    pub removed: Vec<Member>,
}

/// Someone else's commit, verified but not applied: the caller checks it (who removed whom,
/// whether new devices are trusted) and then applies it with [`Engine::apply_commit`].
#[derive(Debug)]
pub struct IncomingCommit {
    pub group: GroupId,
    pub committer: Member,
    pub added: Vec<Member>,
    pub removed: Vec<Member>,
    /// Leaves the commit renews (its update path, Update proposals): each still the same
    /// account and device, possibly with a new signature key the caller must trust.
    pub updated: Vec<Member>,
    /// This device is among the removed.
    pub removes_us: bool,
    pub new_epoch: u64,
    staged: Box<StagedCommit>,
}

/// What a received MLS message turned out to be.
#[derive(Debug)]
pub enum Processed {
    Application {
        sender: Member,
        plaintext: Vec<u8>,
    },
    Commit(IncomingCommit),
    /// A valid message this client has no use for (a standalone proposal).
    Ignored,
}

/// Who may remove whom. A member may remove devices of its own account; the account that
/// created the group (named in its id) may remove anyone; and anyone may remove a device that
/// has left or been revoked (`departed`), since that device cannot remove itself.
pub fn check_removals(
    group: &GroupId,
    committer: &Member,
    removed: &[Member],
    departed: impl Fn(&Member) -> bool,
) -> Result<(), MlsError> {
    for r in removed {
        let allowed = r.account == committer.account || committer.account == group.creator() || departed(r);
        if !allowed {
            return Err(MlsError::Unauthorized(format!(
                "{} removed {} of {} without authority",
                committer.device, r.device, r.account
            )));
        }
    }
    Ok(())
}

fn state<E: std::fmt::Debug>(e: E) -> MlsError {
    MlsError::State(format!("{e:?}"))
}

fn mls_id(group: &GroupId) -> MlsGroupId {
    MlsGroupId::from_slice(group.as_bytes())
}

/// One device's MLS engine.
pub struct Engine<S: StorageProvider<CURRENT_VERSION>> {
    provider: Provider<S>,
    signer: SignatureKeyPair,
    cert: DeviceCertificate,
    /// Groups loaded from storage; openmls writes every change through to storage itself.
    groups: HashMap<GroupId, MlsGroup>,
    /// Bytes from others handed to `join` or `process` since this engine was opened: what the
    /// consent rules promise to keep at zero for a stranger's request.
    inputs_opened: u64,
}

impl<S: StorageProvider<CURRENT_VERSION>> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("device", &self.cert.device).finish_non_exhaustive()
    }
}

impl<S: StorageProvider<CURRENT_VERSION>> Engine<S> {
    /// An engine for the device that holds `signer` and is certified by `cert`.
    pub fn new(storage: S, signer: SignatureKeyPair, cert: DeviceCertificate) -> Result<Self, MlsError> {
        if public_key(&signer)? != cert.signature_key {
            return Err(MlsError::BadCertificate("certificate is for another key".into()));
        }
        crate::identity::verify_certificate(&cert)?;
        Ok(Self {
            provider: Provider { crypto: RustCrypto::default(), storage },
            signer,
            cert,
            groups: HashMap::new(),
            inputs_opened: 0,
        })
    }

    /// How many Welcomes and group messages this engine was given to open (see `join` and
    /// `process`) since it was created.
    pub fn inputs_opened(&self) -> u64 {
        self.inputs_opened
    }

    pub fn certificate(&self) -> &DeviceCertificate {
        &self.cert
    }

    pub fn storage(&self) -> &S {
        &self.provider.storage
    }

    fn key_package(&self, last_resort: bool) -> Result<Vec<u8>, MlsError> {
        // Every leaf declares it understands the last-resort extension, which a last-resort
        // package carries.
        let capabilities = Capabilities::new(None, None, Some(&[ExtensionType::LastResort]), None, None);
        let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities);
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(CIPHERSUITE, &self.provider, &self.signer, credential_with_key(&self.cert))
            .map_err(state)?;
        bundle.key_package().tls_serialize_detached().map_err(|e| MlsError::Crypto(e.to_string()))
    }

    /// `n` fresh one-time key packages (their private halves stay in storage).
    pub fn key_packages(&self, n: usize) -> Result<Vec<Vec<u8>>, MlsError> {
        (0..n).map(|_| self.key_package(false)).collect()
    }

    /// A last-resort key package, handed out when the one-time ones run out.
    pub fn last_resort_key_package(&self) -> Result<Vec<u8>, MlsError> {
        self.key_package(true)
    }

    fn group(&mut self, group: &GroupId) -> Result<&mut MlsGroup, MlsError> {
        Self::loaded(&mut self.groups, &self.provider, group)
    }

    pub fn has_group(&mut self, group: &GroupId) -> bool {
        self.group(group).is_ok()
    }

    /// A new conversation with this device as its only member, at epoch 0.
    pub fn create_group(&mut self, group: &GroupId) -> Result<(), MlsError> {
        let created = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &group_config(),
            mls_id(group),
            credential_with_key(&self.cert),
        )
        .map_err(state)?;
        self.groups.insert(group.clone(), created);
        Ok(())
    }

    pub fn epoch(&mut self, group: &GroupId) -> Result<u64, MlsError> {
        Ok(self.group(group)?.epoch().as_u64())
    }

    /// Every member device, with its certificate checked.
    pub fn members(&mut self, group: &GroupId) -> Result<Vec<Member>, MlsError> {
        self.group(group)?.members().map(|m| Member::from_mls(&m)).collect()
    }

    /// Check key packages someone handed us: well formed, signed, our ciphersuite, and carrying
    /// a valid certificate for the leaf's own key.
    pub fn validate_key_package(&self, bytes: &[u8]) -> Result<(KeyPackage, Member), MlsError> {
        validate_key_package(&self.provider.crypto, bytes)
    }

    /// Stage a commit adding these devices; send it, then call `commit_accepted` or
    /// `commit_rejected`.
    pub fn add(&mut self, group: &GroupId, key_packages: &[Vec<u8>]) -> Result<CommitBundle, MlsError> {
        let mut packages = Vec::with_capacity(key_packages.len());
        let mut added = Vec::with_capacity(key_packages.len());
        for bytes in key_packages {
            let (kp, member) = validate_key_package(&self.provider.crypto, bytes)?;
            packages.push(kp);
            added.push(member);
        }
        let Self { provider, signer, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        let epoch = g.epoch().as_u64();
        let group_info = founding_group_info(g, provider, signer)?;
        let (commit, welcome, _) = g.add_members(provider, signer, &packages).map_err(state)?;
        Ok(CommitBundle {
            group: group.clone(),
            epoch,
            commit: commit.to_bytes().map_err(state)?,
            welcome: Some(welcome.to_bytes().map_err(state)?),
            group_info,
            added,
            removed: vec![],
        })
    }

    fn loaded<'a>(
        groups: &'a mut HashMap<GroupId, MlsGroup>,
        provider: &Provider<S>,
        group: &GroupId,
    ) -> Result<&'a mut MlsGroup, MlsError> {
        if !groups.contains_key(group) {
            let mut loaded = MlsGroup::load(&provider.storage, &mls_id(group))
                .map_err(|e| MlsError::Storage(format!("{e:?}")))?
                .ok_or(MlsError::UnknownGroup)?;
            // Conversations made before commits went out as public messages take them in too,
            // and send theirs that way from now on.
            if loaded.configuration().wire_format_policy() != MIXED_PLAINTEXT_WIRE_FORMAT_POLICY {
                loaded
                    .set_configuration(&provider.storage, &join_config())
                    .map_err(|e| MlsError::Storage(format!("{e:?}")))?;
            }
            groups.insert(group.clone(), loaded);
        }
        groups.get_mut(group).ok_or(MlsError::UnknownGroup)
    }

    /// Stage a commit removing these devices (members that are not in the group are skipped).
    pub fn remove(&mut self, group: &GroupId, devices: &[DeviceId]) -> Result<CommitBundle, MlsError> {
        let members = self.members(group)?;
        let removed: Vec<Member> = members.into_iter().filter(|m| devices.contains(&m.device)).collect();
        if removed.is_empty() {
            return Err(MlsError::State("none of these devices is a member".into()));
        }
        let leaves: Vec<LeafNodeIndex> = removed.iter().map(|m| LeafNodeIndex::new(m.leaf)).collect();
        let Self { provider, signer, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        let epoch = g.epoch().as_u64();
        let group_info = founding_group_info(g, provider, signer)?;
        let (commit, welcome, _) = g.remove_members(provider, signer, &leaves).map_err(state)?;
        Ok(CommitBundle {
            group: group.clone(),
            epoch,
            commit: commit.to_bytes().map_err(state)?,
            welcome: welcome.map(|w| w.to_bytes()).transpose().map_err(state)?,
            group_info,
            added: vec![],
            removed,
        })
    }

    /// The delivery service accepted our staged commit: move to the next epoch.
    pub fn commit_accepted(&mut self, group: &GroupId) -> Result<u64, MlsError> {
        let Self { provider, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        g.merge_pending_commit(provider).map_err(state)?;
        Ok(g.epoch().as_u64())
    }

    /// Another commit won the epoch: forget ours.
    pub fn commit_rejected(&mut self, group: &GroupId) -> Result<(), MlsError> {
        let Self { provider, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        g.clear_pending_commit(provider.storage()).map_err(state)
    }

    /// Encrypt and sign an application message for the group.
    pub fn encrypt(&mut self, group: &GroupId, plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        let Self { provider, signer, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        let msg = g.create_message(provider, signer, plaintext).map_err(state)?;
        msg.to_bytes().map_err(state)
    }

    /// Join a group from a Welcome. Returns its id and members, every certificate checked;
    /// the caller decides whether it trusts them.
    pub fn join(&mut self, welcome: &[u8]) -> Result<(GroupId, Vec<Member>), MlsError> {
        self.join_checked(welcome, None)
    }

    /// Join as [`Engine::join`] does, but only if the Welcome is for `expected.0` and was sent
    /// by the account and device `expected.1`, as the delivery claimed: what decided that the
    /// Welcome could be opened (consent) must be what it really is.
    pub fn join_as_delivered(
        &mut self,
        welcome: &[u8],
        group: &GroupId,
        sender: (AccountId, DeviceId),
    ) -> Result<(GroupId, Vec<Member>), MlsError> {
        self.join_checked(welcome, Some((group, sender)))
    }

    fn join_checked(
        &mut self,
        welcome: &[u8],
        expected: Option<(&GroupId, (AccountId, DeviceId))>,
    ) -> Result<(GroupId, Vec<Member>), MlsError> {
        self.inputs_opened += 1;
        let msg = parse_message(welcome)?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(MlsError::Malformed("not a Welcome".into()));
        };
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(|e| welcome_error(e, MlsError::Undecryptable))?;
        if let Some((group, (account, device))) = expected {
            if staged.group_context().group_id().as_slice() != group.as_bytes() {
                return Err(MlsError::Unauthorized(
                    "a Welcome into another group than its envelope names".into(),
                ));
            }
            let leaf = staged.welcome_sender().map_err(state)?;
            let cert = member_certificate(leaf.credential(), leaf.signature_key().as_slice())?;
            if (cert.account, cert.device) != (account, device) {
                return Err(MlsError::Unauthorized(format!(
                    "a Welcome the server says {device} of {account} sent, made by {} of {}",
                    cert.device, cert.account
                )));
            }
        }
        let group = staged.into_group(&self.provider).map_err(|e| welcome_error(e, MlsError::State))?;
        let id = GroupId::from_slice(group.group_id().as_slice())
            .ok_or_else(|| MlsError::Malformed("group id of the wrong size".into()))?;
        let members = group.members().map(|m| Member::from_mls(&m)).collect::<Result<Vec<_>, _>>();
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                // A member we cannot identify: do not keep the group.
                let mut group = group;
                let _ = group.delete(self.provider.storage());
                return Err(e);
            }
        };
        self.groups.insert(id.clone(), group);
        Ok((id, members))
    }

    /// Decrypt and verify a commit or application message of `group`.
    pub fn process(&mut self, group: &GroupId, bytes: &[u8]) -> Result<Processed, MlsError> {
        self.inputs_opened += 1;
        let msg = parse_message(bytes)?;
        let protocol: ProtocolMessage = match msg.extract() {
            MlsMessageBodyIn::PrivateMessage(m) => m.into(),
            MlsMessageBodyIn::PublicMessage(m) => m.into(),
            _ => return Err(MlsError::Malformed("not a group message".into())),
        };
        if protocol.group_id().as_slice() != group.as_bytes() {
            return Err(MlsError::Malformed("message names another group".into()));
        }
        let Self { provider, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        let current = g.epoch().as_u64();
        let got = protocol.epoch().as_u64();
        if got > current {
            return Err(MlsError::WrongEpoch { got, current });
        }
        let processed = g.process_message(provider, protocol).map_err(|e| {
            // This device's storage failed: says nothing about the message, which must not be
            // refused (and acknowledged) for it.
            if let ProcessMessageError::StorageError(e) = e {
                return MlsError::Storage(format!("{e:?}"));
            }
            let text = format!("{e:?}");
            if text.contains("SecretReuse") || text.contains("Generation") && text.contains("Reuse") {
                MlsError::Duplicate
            } else if text.contains("WrongEpoch") || text.contains("NoPastEpochData") {
                MlsError::WrongEpoch { got, current }
            } else if text.contains("CannotDecryptOwnMessage") {
                MlsError::Duplicate
            } else {
                MlsError::Undecryptable(text)
            }
        })?;
        let sender_leaf = match processed.sender() {
            Sender::Member(leaf) => *leaf,
            _ => return Ok(Processed::Ignored),
        };
        let sender_cert = member_certificate(processed.credential(), &sender_signature_key(g, sender_leaf)?)?;
        let sender = Member::from_cert(&sender_cert, sender_leaf.u32());
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                Ok(Processed::Application { sender, plaintext: app.into_bytes() })
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let mut added = Vec::new();
                for add in staged.add_proposals() {
                    let leaf = add.add_proposal().key_package().leaf_node();
                    let cert = member_certificate(leaf.credential(), leaf.signature_key().as_slice())?;
                    added.push(Member::from_cert(&cert, u32::MAX));
                }
                let mut removed = Vec::new();
                for rm in staged.remove_proposals() {
                    let leaf = rm.remove_proposal().removed();
                    let m = g
                        .member_at(leaf)
                        .ok_or_else(|| MlsError::Malformed("removal of an empty leaf".into()))?;
                    removed.push(Member::from_mls(&m)?);
                }
                // openmls checks the syntax and signatures of new leaves; whose they are is ours
                // to check (RFC 9420 §5.3.1). A member may renew its own leaf, never turn it into
                // another account's or device's: otherwise it could take the creator's identity
                // and remove anyone.
                let mut updated = Vec::new();
                if let Some(leaf) = staged.update_path_leaf_node() {
                    updated.push(renewal_of(&sender, leaf)?);
                }
                for update in staged.update_proposals() {
                    let Sender::Member(owner_leaf) = update.sender() else {
                        return Err(MlsError::Unauthorized("an update from outside the group".into()));
                    };
                    let owner = g
                        .member_at(*owner_leaf)
                        .ok_or_else(|| MlsError::Malformed("an update of an empty leaf".into()))?;
                    updated
                        .push(renewal_of(&Member::from_mls(&owner)?, update.update_proposal().leaf_node())?);
                }
                Ok(Processed::Commit(IncomingCommit {
                    group: group.clone(),
                    committer: sender,
                    added,
                    removed,
                    updated,
                    removes_us: staged.self_removed(),
                    new_epoch: staged.epoch().as_u64(),
                    staged,
                }))
            }
            _ => Ok(Processed::Ignored),
        }
    }

    /// Apply a commit the caller has checked. If it removed this device, the group is deleted.
    pub fn apply_commit(&mut self, commit: IncomingCommit) -> Result<(), MlsError> {
        let Self { provider, .. } = self;
        let group = commit.group.clone();
        let g = Self::loaded(&mut self.groups, provider, &group)?;
        g.merge_staged_commit(provider, *commit.staged).map_err(state)?;
        if commit.removes_us {
            self.forget_group(&group)?;
        }
        Ok(())
    }

    /// Delete a group's state (after leaving or being removed).
    pub fn forget_group(&mut self, group: &GroupId) -> Result<(), MlsError> {
        let Self { provider, .. } = self;
        if let Ok(g) = Self::loaded(&mut self.groups, provider, group) {
            g.delete(provider.storage()).map_err(|e| MlsError::Storage(format!("{e:?}")))?;
        }
        self.groups.remove(group);
        Ok(())
    }

    /// What a modified client can send and Rampart's never does: a commit whose update path
    /// renews this device's leaf with `cert` and its key, whoever `cert` names. Built with
    /// openmls directly, past every check of ours, and not kept (the pending commit is cleared).
    /// For tests of what members and the delivery service refuse.
    #[cfg(any(test, feature = "test-support"))]
    pub fn forged_leaf_renewal(
        &mut self,
        group: &GroupId,
        key: &SignatureKeyPair,
        cert: &DeviceCertificate,
    ) -> Result<Vec<u8>, MlsError> {
        use openmls::prelude::{LeafNodeParameters, NewSignerBundle};
        let Self { provider, signer, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        let bundle = g
            .self_update_with_new_signer(
                provider,
                &*signer,
                NewSignerBundle { signer: key, credential_with_key: credential_with_key(cert) },
                LeafNodeParameters::default(),
            )
            .map_err(state)?;
        let bytes = bundle.commit().tls_serialize_detached().map_err(|e| MlsError::Crypto(e.to_string()));
        g.clear_pending_commit(provider.storage()).map_err(state)?;
        bytes
    }

    /// A secret derived from the group's current epoch (RFC 9420 §8.5), e.g. for call media.
    pub fn export_secret(
        &mut self,
        group: &GroupId,
        label: &str,
        context: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, MlsError> {
        let Self { provider, .. } = self;
        let g = Self::loaded(&mut self.groups, provider, group)?;
        g.export_secret(provider.crypto(), label, context, len).map_err(state)
    }
}

/// At epoch 0 (a group's first commit), the group as the creator made it, signed, with its
/// ratchet tree: what the delivery service starts the group's public state from.
fn founding_group_info<S: StorageProvider<CURRENT_VERSION>>(
    g: &MlsGroup,
    provider: &Provider<S>,
    signer: &SignatureKeyPair,
) -> Result<Option<Vec<u8>>, MlsError> {
    if g.epoch().as_u64() != 0 {
        return Ok(None);
    }
    let info = g.export_group_info(provider.crypto(), signer, true).map_err(state)?;
    Ok(Some(info.to_bytes().map_err(state)?))
}

/// `owner`'s leaf renewed as `leaf`: the same account and device (a new key is the caller's to
/// trust), or refused.
fn renewal_of(owner: &Member, leaf: &openmls::prelude::LeafNode) -> Result<Member, MlsError> {
    let cert = member_certificate(leaf.credential(), leaf.signature_key().as_slice())?;
    if (cert.account, cert.device) != (owner.account, owner.device) {
        return Err(MlsError::Unauthorized(format!(
            "{} of {} renewed its leaf as {} of {}",
            owner.device, owner.account, cert.device, cert.account
        )));
    }
    Ok(Member::from_cert(&cert, owner.leaf))
}

fn sender_signature_key(g: &MlsGroup, leaf: LeafNodeIndex) -> Result<Vec<u8>, MlsError> {
    g.member_at(leaf)
        .map(|m| m.signature_key)
        .ok_or_else(|| MlsError::Malformed("sender is not a member".into()))
}

fn parse_message(bytes: &[u8]) -> Result<MlsMessageIn, MlsError> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Malformed(e.to_string()))
}

pub(crate) fn validate_key_package(
    crypto: &RustCrypto,
    bytes: &[u8],
) -> Result<(KeyPackage, Member), MlsError> {
    let kp =
        KeyPackageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::BadKeyPackage(e.to_string()))?;
    let kp =
        kp.validate(crypto, ProtocolVersion::Mls10).map_err(|e| MlsError::BadKeyPackage(format!("{e:?}")))?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(MlsError::BadKeyPackage("wrong ciphersuite".into()));
    }
    let leaf = kp.leaf_node();
    let cert = member_certificate(leaf.credential(), leaf.signature_key().as_slice())
        .map_err(|e| MlsError::BadKeyPackage(e.to_string()))?;
    let member = Member::from_cert(&cert, u32::MAX);
    Ok((kp, member))
}

/// An openmls Welcome error as an [`MlsError`]: a failure of this device's storage is
/// `Storage`, anything else is about the Welcome and becomes `about_input`.
fn welcome_error<E: std::fmt::Debug>(e: WelcomeError<E>, about_input: fn(String) -> MlsError) -> MlsError {
    match e {
        WelcomeError::StorageError(e) => MlsError::Storage(format!("{e:?}")),
        other => about_input(format!("{other:?}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::{certify, new_signature_key};
    use openmls_memory_storage::MemoryStorage;

    /// A device whose account and device ids are both `n`, its certificate self-signed.
    pub(crate) fn device(n: u64) -> Engine<MemoryStorage> {
        let key = new_signature_key().unwrap();
        let cert = certify(&key, AccountId(n), DeviceId(n), public_key(&key).unwrap()).unwrap();
        Engine::new(MemoryStorage::default(), key, cert).unwrap()
    }

    /// Alice's group with Bob and Mallory, every device joined.
    fn three(group: &GroupId) -> (Engine<MemoryStorage>, Engine<MemoryStorage>, Engine<MemoryStorage>) {
        let (mut alice, mut bob, mut mallory) = (device(1), device(2), device(3));
        alice.create_group(group).unwrap();
        let packages = [bob.key_packages(1).unwrap().remove(0), mallory.key_packages(1).unwrap().remove(0)];
        let bundle = alice.add(group, &packages).unwrap();
        alice.commit_accepted(group).unwrap();
        let welcome = bundle.welcome.unwrap();
        bob.join(&welcome).unwrap();
        mallory.join(&welcome).unwrap();
        (alice, bob, mallory)
    }

    /// RFC 9420 leaves credential checks of new leaves to the application: a member that
    /// renews its leaf with a certificate naming the creator's account (self-signed, so it
    /// verifies) would become "the creator" and could remove anyone. Refused; an honest renewal
    /// of one's own leaf goes through and is reported for the key check.
    #[test]
    fn a_member_cannot_renew_its_leaf_as_another_account() {
        let group = GroupId::new(AccountId(1), &mut rand::rng());
        let (_alice, mut bob, mut mallory) = three(&group);

        let key = new_signature_key().unwrap();
        let as_alice = certify(&key, AccountId(1), DeviceId(1), public_key(&key).unwrap()).unwrap();
        let forged = mallory.forged_leaf_renewal(&group, &key, &as_alice).unwrap();
        match bob.process(&group, &forged) {
            Err(MlsError::Unauthorized(why)) => assert!(why.contains("renewed its leaf as"), "{why}"),
            other => panic!("a leaf renewed as another account must be refused: {other:?}"),
        }

        let key = new_signature_key().unwrap();
        let as_herself = certify(&key, AccountId(3), DeviceId(3), public_key(&key).unwrap()).unwrap();
        let honest = mallory.forged_leaf_renewal(&group, &key, &as_herself).unwrap();
        match bob.process(&group, &honest).unwrap() {
            Processed::Commit(commit) => {
                assert_eq!(commit.updated.len(), 1);
                assert_eq!(
                    (commit.updated[0].account, commit.updated[0].device),
                    (AccountId(3), DeviceId(3))
                );
                assert_eq!(commit.updated[0].signature_key, as_herself.signature_key);
            }
            other => panic!("{other:?}"),
        }
    }
}
