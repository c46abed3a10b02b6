//! What the server, as MLS delivery service, checks on bytes it cannot decrypt: the clear
//! header of group messages (group, epoch, content type), the shape of Welcomes, key packages
//! (signed by the device that uploads them, for the key its certificate names), and every
//! commit against the group's public state ([`check_commit`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    ContentType, GroupId as MlsGroupId, LeafNodeIndex, MlsMessageBodyIn, MlsMessageIn,
    ProcessedMessageContent, Proposal, ProposalStore, ProtocolMessage, PublicGroup, Sender,
};
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use rampart_core::{AccountId, DeviceId, GroupId};

use crate::engine::validate_key_package;
use crate::identity::member_certificate;
use crate::{CIPHERSUITE, Member, MlsError};

/// The largest public state of a group the delivery service reads back: a ratchet tree of a
/// few thousand devices with their certificates is a few MiB.
pub const MAX_PUBLIC_STATE_BYTES: usize = 16 * 1024 * 1024;

/// The kind of group message a request claims to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Application,
    Commit,
}

/// Check a group message's clear header; returns its epoch.
pub fn check_group_message(bytes: &[u8], group: &GroupId, expect: Expect) -> Result<u64, MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Malformed(e.to_string()))?;
    let (group_id, epoch, content_type) = match msg.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => {
            let p: openmls::prelude::ProtocolMessage = m.into();
            (p.group_id().clone(), p.epoch().as_u64(), p.content_type())
        }
        MlsMessageBodyIn::PublicMessage(m) => {
            if expect == Expect::Application {
                return Err(MlsError::Malformed("application messages must be encrypted".into()));
            }
            let p: openmls::prelude::ProtocolMessage = m.into();
            (p.group_id().clone(), p.epoch().as_u64(), p.content_type())
        }
        _ => return Err(MlsError::Malformed("not a group message".into())),
    };
    if group_id.as_slice() != group.as_bytes() {
        return Err(MlsError::Malformed("message names another group".into()));
    }
    let ok = match expect {
        Expect::Application => content_type == ContentType::Application,
        Expect::Commit => content_type == ContentType::Commit,
    };
    if !ok {
        return Err(MlsError::Malformed(format!("expected {expect:?}, got {content_type:?}")));
    }
    Ok(epoch)
}

/// Check that bytes are an MLS Welcome in our ciphersuite.
pub fn check_welcome(bytes: &[u8]) -> Result<(), MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Malformed(e.to_string()))?;
    match msg.extract() {
        MlsMessageBodyIn::Welcome(w) if w.ciphersuite() == CIPHERSUITE => Ok(()),
        MlsMessageBodyIn::Welcome(_) => Err(MlsError::Malformed("wrong ciphersuite".into())),
        _ => Err(MlsError::Malformed("not a Welcome".into())),
    }
}

/// Check a key package a device uploads: valid, ours, and for exactly the uploading device and
/// the key its certificate names. `last_resort` says which slot it is uploaded to.
pub fn check_key_package(
    bytes: &[u8],
    account: AccountId,
    device: DeviceId,
    signature_key: &[u8; 32],
    last_resort: bool,
) -> Result<(), MlsError> {
    let (kp, member) = validate_key_package(&RustCrypto::default(), bytes)?;
    if member.account != account || member.device != device || &member.signature_key != signature_key {
        return Err(MlsError::BadKeyPackage("signed by another device".into()));
    }
    if kp.last_resort() != last_resort {
        return Err(MlsError::BadKeyPackage(if last_resort {
            "not marked last-resort".into()
        } else {
            "a last-resort package among one-time ones".into()
        }));
    }
    Ok(())
}

/// How the delivery service knows a group before a commit: by the public state it kept after
/// the last one, or, for a group's first commit, by the GroupInfo its creator signed.
#[derive(Debug, Clone, Copy)]
pub enum GroupStart<'a> {
    Known(&'a [u8]),
    New { group_info: &'a [u8] },
}

/// A device as the server registered it: its account and the signature key its certificate
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub account: AccountId,
    pub signature_key: [u8; 32],
}

/// A commit the delivery service checked: who it adds and removes (read from the commit
/// itself, never from what the sender declares) and the group's public state after it.
#[derive(Debug)]
pub struct CheckedCommit {
    pub new_epoch: u64,
    pub added: Vec<Member>,
    pub removed: Vec<Member>,
    pub public_state: Vec<u8>,
}

fn refused(e: impl std::fmt::Debug) -> MlsError {
    MlsError::Unauthorized(format!("{e:?}"))
}

/// Check a commit as the group's delivery service (RFC 9420 §14, openmls' `PublicGroup`): it
/// must be an MLS PublicMessage of this group, signed by `committer`'s leaf, valid against the
/// group's public state (epoch, membership, tree, signatures of new leaves), carry only Add and
/// Remove proposals, and every leaf it brings in or renews must be the device key the server
/// registered (`registered`, which must hold the committer and every device the commit adds).
/// A member can therefore neither move the epoch with garbage nor take another device's
/// identity. What the server cannot check is what only members can decrypt (the path secrets).
pub fn check_commit(
    group: &GroupId,
    start: GroupStart<'_>,
    commit: &[u8],
    committer: DeviceId,
    registered: &BTreeMap<DeviceId, Registered>,
) -> Result<CheckedCommit, MlsError> {
    let crypto = RustCrypto::default();
    let (storage, public) = match start {
        GroupStart::Known(state) => {
            let storage = decode_public_state(state)?;
            let public = PublicGroup::load(&storage, &MlsGroupId::from_slice(group.as_bytes()))
                .map_err(|e| MlsError::Storage(format!("{e:?}")))?
                .ok_or_else(|| MlsError::Storage("the group's public state is incomplete".into()))?;
            (storage, public)
        }
        GroupStart::New { group_info } => founding_state(&crypto, group, group_info, committer, registered)?,
    };
    let msg = MlsMessageIn::tls_deserialize_exact(commit).map_err(|e| MlsError::Malformed(e.to_string()))?;
    let MlsMessageBodyIn::PublicMessage(message) = msg.extract() else {
        return Err(MlsError::Malformed(
            "a commit must be an MLS public message, so the delivery service can check it".into(),
        ));
    };
    let message: ProtocolMessage = message.into();
    if message.group_id().as_slice() != group.as_bytes() {
        return Err(MlsError::Malformed("message names another group".into()));
    }
    let current = public.group_context().epoch().as_u64();
    let got = message.epoch().as_u64();
    if got != current {
        return Err(MlsError::WrongEpoch { got, current });
    }
    if message.content_type() != ContentType::Commit {
        return Err(MlsError::Malformed("not a commit".into()));
    }
    let processed = public.process_message(&crypto, message).map_err(refused)?;
    let Sender::Member(sender_leaf) = *processed.sender() else {
        return Err(MlsError::Unauthorized("a commit from outside the group".into()));
    };
    let sender = leaf_member(&public, sender_leaf)?;
    let known = registered.get(&committer);
    if sender.device != committer
        || known != Some(&Registered { account: sender.account, signature_key: sender.signature_key })
    {
        return Err(MlsError::Unauthorized(format!(
            "the commit is signed by {} of {}, not by the device that sent it",
            sender.device, sender.account
        )));
    }
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(MlsError::Malformed("not a commit".into()));
    };
    for queued in staged.queued_proposals() {
        if !matches!(queued.proposal(), Proposal::Add(_) | Proposal::Remove(_)) {
            return Err(MlsError::Unauthorized(format!(
                "a commit may only add and remove devices, not {:?}",
                queued.proposal().proposal_type()
            )));
        }
    }
    let is_registered = |m: &Member| {
        registered.get(&m.device) == Some(&Registered { account: m.account, signature_key: m.signature_key })
    };
    let mut added = Vec::new();
    for add in staged.add_proposals() {
        let leaf = add.add_proposal().key_package().leaf_node();
        let cert = member_certificate(leaf.credential(), leaf.signature_key().as_slice())?;
        let member = Member::from_cert(&cert, u32::MAX);
        if !is_registered(&member) {
            return Err(MlsError::Unauthorized(format!(
                "the commit adds {} of {} with a key the server does not know for it",
                member.device, member.account
            )));
        }
        added.push(member);
    }
    let mut removed = Vec::new();
    for rm in staged.remove_proposals() {
        removed.push(leaf_member(&public, rm.remove_proposal().removed())?);
    }
    if let Some(leaf) = staged.update_path_leaf_node() {
        let cert = member_certificate(leaf.credential(), leaf.signature_key().as_slice())?;
        let renewed = Member::from_cert(&cert, sender.leaf);
        if (renewed.account, renewed.device) != (sender.account, sender.device) || !is_registered(&renewed) {
            return Err(MlsError::Unauthorized(format!(
                "{} of {} renewed its leaf as {} of {}",
                sender.device, sender.account, renewed.device, renewed.account
            )));
        }
    }
    let mut public = public;
    public.merge_commit(&storage, *staged).map_err(|e| MlsError::Storage(format!("{e:?}")))?;
    Ok(CheckedCommit {
        new_epoch: public.group_context().epoch().as_u64(),
        added,
        removed,
        public_state: encode_public_state(&storage)?,
    })
}

/// The public state a new group starts from: the creator's signed GroupInfo with its ratchet
/// tree, at epoch 0, holding the creator's device alone.
fn founding_state(
    crypto: &RustCrypto,
    group: &GroupId,
    group_info: &[u8],
    committer: DeviceId,
    registered: &BTreeMap<DeviceId, Registered>,
) -> Result<(MemoryStorage, PublicGroup), MlsError> {
    let msg =
        MlsMessageIn::tls_deserialize_exact(group_info).map_err(|e| MlsError::Malformed(e.to_string()))?;
    let MlsMessageBodyIn::GroupInfo(info) = msg.extract() else {
        return Err(MlsError::Malformed("not a GroupInfo".into()));
    };
    if info.group_id().as_slice() != group.as_bytes() {
        return Err(MlsError::Malformed("GroupInfo of another group".into()));
    }
    if info.ciphersuite() != CIPHERSUITE {
        return Err(MlsError::Malformed("wrong ciphersuite".into()));
    }
    let tree = info
        .extensions()
        .ratchet_tree()
        .ok_or_else(|| MlsError::Malformed("GroupInfo without its ratchet tree".into()))?
        .ratchet_tree()
        .clone();
    let storage = MemoryStorage::default();
    let (public, _) =
        PublicGroup::from_external(crypto, &storage, tree, info, ProposalStore::new()).map_err(refused)?;
    if public.group_context().epoch().as_u64() != 0 {
        return Err(MlsError::Unauthorized("a new group starts at epoch 0".into()));
    }
    let members: Vec<Member> = public.members().map(|m| Member::from_mls(&m)).collect::<Result<_, _>>()?;
    let founder_ok = match members.as_slice() {
        [only] => {
            only.device == committer
                && only.account == group.creator()
                && registered.get(&committer)
                    == Some(&Registered { account: only.account, signature_key: only.signature_key })
        }
        _ => false,
    };
    if !founder_ok {
        return Err(MlsError::Unauthorized("a new group holds its creator's registered device alone".into()));
    }
    Ok((storage, public))
}

fn leaf_member(public: &PublicGroup, leaf: LeafNodeIndex) -> Result<Member, MlsError> {
    let node = public.leaf(leaf).ok_or_else(|| MlsError::Malformed("an empty leaf".into()))?;
    let cert = member_certificate(node.credential(), node.signature_key().as_slice())?;
    Ok(Member::from_cert(&cert, leaf.u32()))
}

/// The delivery service's state of a group as bytes for the server's store: openmls' entries
/// for it, sorted by key, each length-prefixed.
fn encode_public_state(storage: &MemoryStorage) -> Result<Vec<u8>, MlsError> {
    let values = storage.values.read().map_err(|_| MlsError::Storage("state lock".into()))?;
    let mut entries: Vec<(&Vec<u8>, &Vec<u8>)> = values.iter().collect();
    entries.sort();
    let mut out = Vec::new();
    out.extend_from_slice(
        &u32::try_from(entries.len()).map_err(|_| MlsError::Storage("state".into()))?.to_be_bytes(),
    );
    for (k, v) in entries {
        for part in [k, v] {
            let len = u32::try_from(part.len()).map_err(|_| MlsError::Storage("state".into()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    if out.len() > MAX_PUBLIC_STATE_BYTES {
        return Err(MlsError::Storage("the group's public state outgrew its limit".into()));
    }
    Ok(out)
}

fn decode_public_state(bytes: &[u8]) -> Result<MemoryStorage, MlsError> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], MlsError> {
            if self.0.len() < n {
                return Err(corrupt());
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn len(&mut self) -> Result<usize, MlsError> {
            let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| corrupt())?;
            usize::try_from(u32::from_be_bytes(b)).map_err(|_| corrupt())
        }
        fn part(&mut self) -> Result<Vec<u8>, MlsError> {
            let n = self.len()?;
            Ok(self.take(n)?.to_vec())
        }
    }
    fn corrupt() -> MlsError {
        MlsError::Storage("the group's public state is corrupt".into())
    }
    if bytes.len() > MAX_PUBLIC_STATE_BYTES {
        return Err(corrupt());
    }
    let mut r = Reader(bytes);
    let count = r.len()?;
    let mut values = HashMap::new();
    for _ in 0..count {
        let k = r.part()?;
        let v = r.part()?;
        values.insert(k, v);
    }
    if !r.0.is_empty() {
        return Err(corrupt());
    }
    Ok(MemoryStorage { values: RwLock::new(values) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::Engine;
    use crate::engine::tests::device;
    use crate::identity::{certify, new_signature_key, public_key};

    fn registry(devices: &[&Engine<MemoryStorage>]) -> BTreeMap<DeviceId, Registered> {
        devices
            .iter()
            .map(|e| {
                let c = e.certificate();
                (c.device, Registered { account: c.account, signature_key: c.signature_key })
            })
            .collect()
    }

    struct Group {
        id: GroupId,
        alice: Engine<MemoryStorage>,
        bob: Engine<MemoryStorage>,
        mallory: Engine<MemoryStorage>,
        registered: BTreeMap<DeviceId, Registered>,
        /// The delivery service's public state after Alice's first commit.
        state: Vec<u8>,
    }

    /// Alice makes a group with Bob and Mallory; the delivery service checks the first commit
    /// from her GroupInfo.
    fn group() -> Group {
        let id = GroupId::new(AccountId(1), &mut rand::rng());
        let (mut alice, mut bob, mut mallory) = (device(1), device(2), device(3));
        let registered = registry(&[&alice, &bob, &mallory]);
        alice.create_group(&id).unwrap();
        let packages = [bob.key_packages(1).unwrap().remove(0), mallory.key_packages(1).unwrap().remove(0)];
        let bundle = alice.add(&id, &packages).unwrap();
        let info = bundle.group_info.clone().unwrap();
        let checked = check_commit(
            &id,
            GroupStart::New { group_info: &info },
            &bundle.commit,
            DeviceId(1),
            &registered,
        )
        .unwrap();
        assert_eq!(checked.new_epoch, 1);
        let added: Vec<DeviceId> = checked.added.iter().map(|m| m.device).collect();
        assert_eq!(added, vec![DeviceId(2), DeviceId(3)]);
        assert!(checked.removed.is_empty());
        alice.commit_accepted(&id).unwrap();
        let welcome = bundle.welcome.unwrap();
        bob.join(&welcome).unwrap();
        mallory.join(&welcome).unwrap();
        Group { id, alice, bob, mallory, registered, state: checked.public_state }
    }

    fn refused_with(r: Result<CheckedCommit, MlsError>, needle: &str) {
        match r {
            Err(e) => assert!(e.to_string().contains(needle), "refused, but for another reason: {e}"),
            Ok(c) => panic!("accepted (epoch {}), expected a refusal mentioning {needle:?}", c.new_epoch),
        }
    }

    #[test]
    fn honest_commits_pass_and_the_state_follows_them() {
        let mut g = group();
        let bundle = g.alice.remove(&g.id, &[DeviceId(3)]).unwrap();
        assert!(bundle.group_info.is_none(), "only a group's first commit carries a GroupInfo");
        let checked =
            check_commit(&g.id, GroupStart::Known(&g.state), &bundle.commit, DeviceId(1), &g.registered)
                .unwrap();
        assert_eq!(checked.new_epoch, 2);
        assert_eq!(checked.removed.iter().map(|m| m.device).collect::<Vec<_>>(), vec![DeviceId(3)]);
        g.alice.commit_accepted(&g.id).unwrap();
        match g.bob.process(&g.id, &bundle.commit).unwrap() {
            crate::Processed::Commit(c) => g.bob.apply_commit(c).unwrap(),
            other => panic!("{other:?}"),
        }
        // The next commit is checked against the state after the last one: replaying the old
        // commit is for an epoch that is gone.
        let r = check_commit(
            &g.id,
            GroupStart::Known(&checked.public_state),
            &bundle.commit,
            DeviceId(1),
            &g.registered,
        );
        assert!(matches!(r, Err(MlsError::WrongEpoch { got: 1, current: 2 })), "{r:?}");
    }

    /// Random bytes, and a real commit with one byte of its signature changed, never move the
    /// delivery service's state: before, any bytes with a commit header moved the epoch and froze
    /// the group for everyone.
    #[test]
    fn garbage_and_tampered_commits_are_refused() {
        let mut g = group();
        let r =
            check_commit(&g.id, GroupStart::Known(&g.state), b"\x00\x01garbage", DeviceId(3), &g.registered);
        assert!(matches!(r, Err(MlsError::Malformed(_))), "{r:?}");
        // One byte of the signed content changed (the middle of the commit: its update path).
        let honest = g.alice.remove(&g.id, &[DeviceId(2)]).unwrap().commit;
        let mut tampered = honest.clone();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x01;
        let r = check_commit(&g.id, GroupStart::Known(&g.state), &tampered, DeviceId(1), &g.registered);
        assert!(r.is_err(), "a tampered commit was accepted");
        check_commit(&g.id, GroupStart::Known(&g.state), &honest, DeviceId(1), &g.registered).unwrap();
    }

    /// A member's modified client renews her leaf with a certificate naming the creator
    /// (self-signed, so it verifies): refused by the delivery service, as by every member.
    #[test]
    fn a_credential_rewrite_in_an_update_path_is_refused() {
        let mut g = group();
        let key = new_signature_key().unwrap();
        let as_alice = certify(&key, AccountId(1), DeviceId(1), public_key(&key).unwrap()).unwrap();
        let forged = g.mallory.forged_leaf_renewal(&g.id, &key, &as_alice).unwrap();
        refused_with(
            check_commit(&g.id, GroupStart::Known(&g.state), &forged, DeviceId(3), &g.registered),
            "renewed its leaf as",
        );
        // Her own identity with a key the server never registered for her device: refused too.
        let key = new_signature_key().unwrap();
        let as_herself = certify(&key, AccountId(3), DeviceId(3), public_key(&key).unwrap()).unwrap();
        let renewal = g.mallory.forged_leaf_renewal(&g.id, &key, &as_herself).unwrap();
        refused_with(
            check_commit(&g.id, GroupStart::Known(&g.state), &renewal, DeviceId(3), &g.registered),
            "renewed its leaf as",
        );
    }

    /// A commit is checked as the sending device's: another member's commit, sent by Mallory,
    /// is refused; so is an added device whose key is not the one the server registered.
    #[test]
    fn a_commit_is_the_senders_own_and_adds_only_registered_keys() {
        let mut g = group();
        let alices = g.alice.remove(&g.id, &[DeviceId(2)]).unwrap().commit;
        refused_with(
            check_commit(&g.id, GroupStart::Known(&g.state), &alices, DeviceId(3), &g.registered),
            "not by the device that sent it",
        );
        g.alice.commit_rejected(&g.id).unwrap();
        let carol = device(4);
        let package = carol.key_packages(1).unwrap().remove(0);
        let adds_carol = g.alice.add(&g.id, &[package]).unwrap().commit;
        refused_with(
            check_commit(&g.id, GroupStart::Known(&g.state), &adds_carol, DeviceId(1), &g.registered),
            "a key the server does not know",
        );
        let mut with_carol = g.registered.clone();
        with_carol.extend(registry(&[&carol]));
        check_commit(&g.id, GroupStart::Known(&g.state), &adds_carol, DeviceId(1), &with_carol).unwrap();
    }

    /// A new group's GroupInfo must hold its creator's registered device alone, in the group
    /// the commit names.
    #[test]
    fn a_new_group_starts_from_its_creators_group_info_only() {
        let id = GroupId::new(AccountId(1), &mut rand::rng());
        let (mut alice, bob) = (device(1), device(2));
        let registered = registry(&[&alice, &bob]);
        alice.create_group(&id).unwrap();
        let bundle = alice.add(&id, &[bob.key_packages(1).unwrap().remove(0)]).unwrap();
        let info = bundle.group_info.unwrap();
        // Sent by Bob: the GroupInfo's only member is not the sender.
        refused_with(
            check_commit(
                &id,
                GroupStart::New { group_info: &info },
                &bundle.commit,
                DeviceId(2),
                &registered,
            ),
            "creator's registered device alone",
        );
        // Named as another group.
        let other = GroupId::new(AccountId(1), &mut rand::rng());
        refused_with(
            check_commit(
                &other,
                GroupStart::New { group_info: &info },
                &bundle.commit,
                DeviceId(1),
                &registered,
            ),
            "another group",
        );
        // Alice's key as the server does not know it.
        let mut wrong = registered.clone();
        wrong.insert(DeviceId(1), Registered { account: AccountId(1), signature_key: [7; 32] });
        refused_with(
            check_commit(&id, GroupStart::New { group_info: &info }, &bundle.commit, DeviceId(1), &wrong),
            "creator's registered device alone",
        );
        // Garbage as GroupInfo.
        let r = check_commit(
            &id,
            GroupStart::New { group_info: b"nope" },
            &bundle.commit,
            DeviceId(1),
            &registered,
        );
        assert!(matches!(r, Err(MlsError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn public_state_round_trips_and_corruption_is_an_error() {
        let g = group();
        let storage = decode_public_state(&g.state).unwrap();
        assert_eq!(encode_public_state(&storage).unwrap(), g.state);
        for cut in [0, 3, 4, g.state.len() / 2, g.state.len() - 1] {
            assert!(decode_public_state(&g.state[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = g.state.clone();
        longer.push(0);
        assert!(decode_public_state(&longer).is_err());
        assert!(decode_public_state(&[0xff; 4]).is_err(), "a count the bytes do not hold");
    }
}
