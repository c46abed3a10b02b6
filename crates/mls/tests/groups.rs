#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! MLS conversations between in-memory devices, with the test acting as delivery service.

use openmls_memory_storage::MemoryStorage;
use rampart_core::{AccountId, DeviceId, GroupId};
use rampart_mls::identity::{certify, new_signature_key, public_key};
use rampart_mls::{Engine, MlsError, Processed, check_removals, ds};

type Device = Engine<MemoryStorage>;

fn device(account: u64, device: u64) -> Result<Device, MlsError> {
    let key = new_signature_key()?;
    let cert = certify(&key, AccountId(account), DeviceId(device), public_key(&key)?)?;
    Engine::new(MemoryStorage::default(), key, cert)
}

fn kp(d: &Device) -> Result<Vec<u8>, MlsError> {
    Ok(d.key_packages(1)?.remove(0))
}

/// Deliver a commit to `members` and apply it (as clients do after their own checks).
fn deliver_commit(members: &mut [&mut Device], group: &GroupId, commit: &[u8]) -> Result<(), MlsError> {
    for m in members.iter_mut() {
        match m.process(group, commit)? {
            Processed::Commit(c) => m.apply_commit(c)?,
            other => panic!("expected a commit, got {other:?}"),
        }
    }
    Ok(())
}

fn text(d: &mut Device, group: &GroupId, bytes: &[u8]) -> Result<Vec<u8>, MlsError> {
    match d.process(group, bytes)? {
        Processed::Application { plaintext, .. } => Ok(plaintext),
        other => panic!("expected an application message, got {other:?}"),
    }
}

#[test]
fn one_to_one_with_every_device_of_both_accounts() -> Result<(), MlsError> {
    let mut a1 = device(1, 11)?;
    let mut a2 = device(1, 12)?;
    let mut b1 = device(2, 21)?;
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a1.create_group(&group)?;
    let bundle = a1.add(&group, &[kp(&a2)?, kp(&b1)?])?;
    assert_eq!(bundle.epoch, 0);
    a1.commit_accepted(&group)?;
    let welcome = bundle.welcome.expect("a welcome");
    let (g2, members) = a2.join(&welcome)?;
    assert_eq!(g2, group);
    assert_eq!(members.len(), 3);
    b1.join(&welcome)?;

    let ct = a1.encrypt(&group, b"hello")?;
    assert_eq!(text(&mut a2, &group, &ct)?, b"hello");
    assert_eq!(text(&mut b1, &group, &ct)?, b"hello");
    let ct = b1.encrypt(&group, b"hi back")?;
    assert_eq!(text(&mut a1, &group, &ct)?, b"hi back");
    assert!(!ct.windows(7).any(|w| w == b"hi back"), "ciphertext holds the plaintext");
    Ok(())
}

#[test]
fn a_removed_member_cannot_read_what_follows() -> Result<(), MlsError> {
    let mut a = device(1, 11)?;
    let mut b = device(2, 21)?;
    let mut c = device(3, 31)?;
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group)?;
    let bundle = a.add(&group, &[kp(&b)?, kp(&c)?])?;
    a.commit_accepted(&group)?;
    let welcome = bundle.welcome.expect("a welcome");
    b.join(&welcome)?;
    c.join(&welcome)?;

    let removal = a.remove(&group, &[DeviceId(31)])?;
    assert_eq!(removal.removed.len(), 1);
    a.commit_accepted(&group)?;
    deliver_commit(&mut [&mut b], &group, &removal.commit)?;
    // C processes its own removal and forgets the group.
    match c.process(&group, &removal.commit)? {
        Processed::Commit(commit) => {
            assert!(commit.removes_us);
            c.apply_commit(commit)?;
        }
        other => panic!("{other:?}"),
    }
    let secret = a.encrypt(&group, b"after removal")?;
    assert_eq!(text(&mut b, &group, &secret)?, b"after removal");
    assert!(c.process(&group, &secret).is_err(), "a removed member decrypted a later message");
    Ok(())
}

#[test]
fn concurrent_commits_end_in_the_same_epoch() -> Result<(), MlsError> {
    let mut a = device(1, 11)?;
    let mut b = device(2, 21)?;
    let c = device(3, 31)?;
    let d = device(4, 41)?;
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group)?;
    let bundle = a.add(&group, &[kp(&b)?])?;
    a.commit_accepted(&group)?;
    b.join(&bundle.welcome.expect("welcome"))?;

    // Both commit in epoch 1; the delivery service takes A's and refuses B's as stale.
    let from_a = a.add(&group, &[kp(&c)?])?;
    let from_b = b.add(&group, &[kp(&d)?])?;
    assert_eq!((from_a.epoch, from_b.epoch), (1, 1));
    a.commit_accepted(&group)?;
    b.commit_rejected(&group)?;
    deliver_commit(&mut [&mut b], &group, &from_a.commit)?;
    assert_eq!(a.epoch(&group)?, 2);
    assert_eq!(b.epoch(&group)?, 2);
    // B retries in epoch 2 and everyone follows.
    let retry = b.add(&group, &[kp(&d)?])?;
    assert_eq!(retry.epoch, 2);
    b.commit_accepted(&group)?;
    deliver_commit(&mut [&mut a], &group, &retry.commit)?;
    assert_eq!(a.epoch(&group)?, 3);
    let ct = a.encrypt(&group, b"same epoch")?;
    assert_eq!(text(&mut b, &group, &ct)?, b"same epoch");
    Ok(())
}

#[test]
fn duplicates_garbage_and_unknown_epochs_are_refused_without_harm() -> Result<(), MlsError> {
    let mut a = device(1, 11)?;
    let mut b = device(2, 21)?;
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group)?;
    let bundle = a.add(&group, &[kp(&b)?])?;
    a.commit_accepted(&group)?;
    b.join(&bundle.welcome.expect("welcome"))?;

    let first = a.encrypt(&group, b"one")?;
    let second = a.encrypt(&group, b"two")?;
    // Reordered delivery works; a duplicate is recognised as one.
    assert_eq!(text(&mut b, &group, &second)?, b"two");
    assert_eq!(text(&mut b, &group, &first)?, b"one");
    assert!(matches!(b.process(&group, &first), Err(MlsError::Duplicate)));

    assert!(matches!(b.process(&group, b"garbage"), Err(MlsError::Malformed(_))));
    let mut flipped = a.encrypt(&group, b"three")?;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(b.process(&group, &flipped).is_err());
    let other = GroupId::new(AccountId(1), &mut rand::rng());
    assert!(b.process(&other, &second).is_err());

    // A message from an epoch B has not reached yet.
    let c = device(3, 31)?;
    let ahead = a.add(&group, &[kp(&c)?])?;
    a.commit_accepted(&group)?;
    let future = a.encrypt(&group, b"future")?;
    assert!(matches!(b.process(&group, &future), Err(MlsError::WrongEpoch { got: 2, current: 1 })));
    // ... which decrypts once B has the commit.
    deliver_commit(&mut [&mut b], &group, &ahead.commit)?;
    assert_eq!(text(&mut b, &group, &future)?, b"future");
    Ok(())
}

#[test]
fn removals_without_authority_are_caught() -> Result<(), MlsError> {
    let mut a = device(1, 11)?;
    let mut b = device(2, 21)?;
    let mut c = device(3, 31)?;
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group)?;
    let bundle = a.add(&group, &[kp(&b)?, kp(&c)?])?;
    a.commit_accepted(&group)?;
    let welcome = bundle.welcome.expect("welcome");
    b.join(&welcome)?;
    c.join(&welcome)?;

    // B (not the creator) removes C's device, which has not left.
    let rogue = b.remove(&group, &[DeviceId(31)])?;
    let Processed::Commit(commit) = a.process(&group, &rogue.commit)? else { panic!("not a commit") };
    assert!(check_removals(&group, &commit.committer, &commit.removed, |_| false).is_err());
    // The same removal is fine once C's device has departed, or from the creator.
    assert!(check_removals(&group, &commit.committer, &commit.removed, |_| true).is_ok());
    let by_creator = rampart_mls::Member { account: AccountId(1), ..commit.committer.clone() };
    assert!(check_removals(&group, &by_creator, &commit.removed, |_| false).is_ok());
    let _ = c.epoch(&group)?;
    Ok(())
}

#[test]
fn the_delivery_service_checks_headers_and_key_packages() -> Result<(), MlsError> {
    let mut a = device(1, 11)?;
    let b = device(2, 21)?;
    let group = GroupId::new(AccountId(1), &mut rand::rng());
    a.create_group(&group)?;
    let bundle = a.add(&group, &[kp(&b)?])?;
    assert_eq!(ds::check_group_message(&bundle.commit, &group, ds::Expect::Commit)?, 0);
    assert!(ds::check_group_message(&bundle.commit, &group, ds::Expect::Application).is_err());
    let welcome = bundle.welcome.clone().expect("welcome");
    ds::check_welcome(&welcome)?;
    assert!(ds::check_welcome(&bundle.commit).is_err());
    a.commit_accepted(&group)?;
    let app = a.encrypt(&group, b"x")?;
    assert_eq!(ds::check_group_message(&app, &group, ds::Expect::Application)?, 1);
    let other = GroupId::new(AccountId(1), &mut rand::rng());
    assert!(ds::check_group_message(&app, &other, ds::Expect::Application).is_err());
    assert!(ds::check_group_message(b"\x00\x01junk", &group, ds::Expect::Application).is_err());

    let b_key = b.certificate().signature_key;
    let package = kp(&b)?;
    ds::check_key_package(&package, AccountId(2), DeviceId(21), &b_key, false)?;
    // Uploaded by another device, or into the wrong slot: refused.
    assert!(ds::check_key_package(&package, AccountId(2), DeviceId(22), &b_key, false).is_err());
    assert!(ds::check_key_package(&package, AccountId(3), DeviceId(21), &b_key, false).is_err());
    assert!(ds::check_key_package(&package, AccountId(2), DeviceId(21), &b_key, true).is_err());
    ds::check_key_package(&b.last_resort_key_package()?, AccountId(2), DeviceId(21), &b_key, true)?;
    assert!(ds::check_key_package(b"junk", AccountId(2), DeviceId(21), &b_key, false).is_err());
    Ok(())
}
