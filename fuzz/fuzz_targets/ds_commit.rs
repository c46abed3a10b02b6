#![no_main]
//! The delivery service's commit check (`rampart_mls::ds::check_commit`) on arbitrary bytes: a
//! GroupInfo that would start a group's public state, a first commit checked against it, and a
//! second commit checked against the state the first one left. Nothing panics; the epoch only
//! moves forward.
//!
//! Input: the registered signature keys of the creator's device and of device 2 of account 2
//! (32 bytes each), the group id (16 bytes), then the GroupInfo and the first commit, each
//! after its length (2 bytes, big-endian), then the second commit.

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rampart_core::{AccountId, DeviceId, GroupId};
use rampart_mls::ds::{GroupStart, Registered, check_commit};

/// The next length-prefixed part of `rest` (shorter if the bytes run out).
fn part<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let Some((len, tail)) = rest.split_first_chunk::<2>() else { return &[] };
    let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
    let (head, tail) = tail.split_at(len);
    *rest = tail;
    head
}

fuzz_target!(|data: &[u8]| {
    let Some((key, rest)) = data.split_first_chunk::<32>() else { return };
    let Some((guest_key, rest)) = rest.split_first_chunk::<32>() else { return };
    let Some((id, rest)) = rest.split_first_chunk::<16>() else { return };
    let Some(group) = GroupId::from_slice(id) else { return };
    let mut rest = rest;
    let group_info = part(&mut rest);
    let first = part(&mut rest);
    let second = rest;
    let creator = DeviceId(group.creator().0);
    let registered = BTreeMap::from([
        (creator, Registered { account: group.creator(), signature_key: *key }),
        (DeviceId(2), Registered { account: AccountId(2), signature_key: *guest_key }),
    ]);
    if let Ok(checked) = check_commit(&group, GroupStart::New { group_info }, first, creator, &registered) {
        assert_eq!(checked.new_epoch, 1);
        for sender in [creator, DeviceId(2)] {
            if let Ok(next) =
                check_commit(&group, GroupStart::Known(&checked.public_state), second, sender, &registered)
            {
                assert_eq!(next.new_epoch, 2);
            }
        }
    }
    let _ = check_commit(&group, GroupStart::Known(group_info), first, creator, &registered);
});
