//! Which devices of which accounts this device trusts, decided from what it has pinned and what
//! the server answered. Pure: no tokio, no database, no network. The caller reads the pins,
//! asks the server, hands both here, and carries out the verdict (pins the keys it names, shows
//! the notices).
//!
//! The server is an adversary in this decision. It may answer about an account nobody asked
//! about (to slip its own device into a conversation), list an account twice, send several
//! answers to a one-account lookup, or present a new identity for an account this device
//! already knows. The rules:
//! - only the accounts asked about are judged, each once: anything else in the answer is
//!   ignored and reported ([`Ignored`]);
//! - a device is trusted only when its certificate chains to a key pinned for its account;
//! - an account seen for the first time has its identity (its one self-signed root) pinned;
//! - a known account whose answer chains to nothing pinned has a new identity: it is re-pinned
//!   (trust on first use, as in Signal for contacts not marked verified) and reported as
//!   [`IdentityChange::RootChanged`] so that every conversation with it can say so.

use std::collections::BTreeSet;

use crate::identity::parse_certificate;
use rampart_core::AccountId;
use rampart_proto::{AccountDevices, DeviceCertificate};

/// What was asked of the server.
#[derive(Debug, Clone, Copy)]
pub enum Question<'a> {
    /// `FetchKeys` for exactly these accounts.
    Keys(&'a [AccountId]),
    /// `LookupAccount`: one account, whichever the server resolves the number or name to.
    Lookup,
}

/// How an account's identity stands after this answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityChange {
    /// Never seen before: its root is pinned now.
    FirstSeen,
    /// Known, but nothing in the answer chains to what was pinned: a new identity key (a
    /// reinstall, or the server presenting its own). Pinned now, and to be shown.
    RootChanged,
}

/// Parts of the answer that were not judged, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The server answered about an account that was not asked about.
    NotAsked(AccountId),
    /// The server listed this account more than once: none of its entries is trusted.
    Duplicate(AccountId),
    /// A lookup has one answer; this was a further one.
    ExtraLookupAnswer(AccountId),
}

/// One asked-about account, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountVerdict {
    pub account: AccountId,
    pub label: String,
    /// Certified devices whose certificate chains to a pinned key.
    pub trusted: Vec<DeviceCertificate>,
    /// Keys to pin for the account (a first or new root, and keys certified along a chain).
    pub newly_trusted: Vec<[u8; 32]>,
    pub change: Option<IdentityChange>,
}

/// The whole answer, judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub accounts: Vec<AccountVerdict>,
    pub ignored: Vec<Ignored>,
}

/// Judge the server's `answer` to `question`, given the keys pinned for each account.
pub fn judge(
    question: Question<'_>,
    answer: Vec<AccountDevices>,
    pinned: impl Fn(AccountId) -> BTreeSet<[u8; 32]>,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut seen: Vec<AccountId> = Vec::new();
    let mut duplicated: BTreeSet<AccountId> = BTreeSet::new();
    let mut kept: Vec<AccountDevices> = Vec::new();
    for entry in answer {
        let asked = match question {
            Question::Keys(accounts) => accounts.contains(&entry.account),
            Question::Lookup => seen.is_empty() || seen.contains(&entry.account),
        };
        if !asked {
            verdict.ignored.push(match question {
                Question::Keys(_) => Ignored::NotAsked(entry.account),
                Question::Lookup => Ignored::ExtraLookupAnswer(entry.account),
            });
            continue;
        }
        if seen.contains(&entry.account) {
            if duplicated.insert(entry.account) {
                verdict.ignored.push(Ignored::Duplicate(entry.account));
            }
            continue;
        }
        seen.push(entry.account);
        kept.push(entry);
    }
    for entry in kept {
        if duplicated.contains(&entry.account) {
            continue;
        }
        let pins = pinned(entry.account);
        verdict.accounts.push(judge_account(entry, &pins));
    }
    verdict
}

fn judge_account(entry: AccountDevices, pinned: &BTreeSet<[u8; 32]>) -> AccountVerdict {
    // Certificates that verify and name this account and the device they are listed under.
    let certs: Vec<DeviceCertificate> = entry
        .devices
        .iter()
        .filter_map(|(device, bytes)| {
            let cert = parse_certificate(bytes.as_ref()?).ok()?;
            (cert.account == entry.account && cert.device == *device).then_some(cert)
        })
        .collect();
    let roots: BTreeSet<[u8; 32]> =
        certs.iter().filter(|c| c.signer_key == c.signature_key).map(|c| c.signature_key).collect();
    let mut trusted_keys = pinned.clone();
    let mut newly_trusted = Vec::new();
    let chains_to_pins =
        certs.iter().any(|c| pinned.contains(&c.signature_key) || pinned.contains(&c.signer_key));
    let change = if chains_to_pins {
        None
    } else {
        // Nothing this device knows vouches for the answer: take its identity only if it has
        // exactly one (two roots for one account is not an identity, it is a choice).
        match (roots.len(), roots.iter().next()) {
            (1, Some(root)) => {
                trusted_keys.insert(*root);
                newly_trusted.push(*root);
                Some(if pinned.is_empty() { IdentityChange::FirstSeen } else { IdentityChange::RootChanged })
            }
            _ => None,
        }
    };
    // Extend trust along certificate chains until nothing changes.
    loop {
        let before = trusted_keys.len();
        for c in &certs {
            if trusted_keys.contains(&c.signer_key) && trusted_keys.insert(c.signature_key) {
                newly_trusted.push(c.signature_key);
            }
        }
        if trusted_keys.len() == before {
            break;
        }
    }
    let trusted = certs.into_iter().filter(|c| trusted_keys.contains(&c.signature_key)).collect();
    AccountVerdict { account: entry.account, label: entry.label, trusted, newly_trusted, change }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::identity::{certify, new_signature_key, public_key};
    use rampart_core::DeviceId;
    use rampart_proto::encode_certificate;

    /// An account with a root device and `linked` devices certified by the root.
    struct Account {
        id: AccountId,
        certs: Vec<DeviceCertificate>,
    }

    fn account(id: u64, linked: u64) -> Account {
        let root_key = new_signature_key().unwrap();
        let root_public = public_key(&root_key).unwrap();
        let mut certs = vec![certify(&root_key, AccountId(id), DeviceId(id * 100), root_public).unwrap()];
        for i in 1..=linked {
            let key = new_signature_key().unwrap();
            certs.push(
                certify(&root_key, AccountId(id), DeviceId(id * 100 + i), public_key(&key).unwrap()).unwrap(),
            );
        }
        Account { id: AccountId(id), certs }
    }

    fn answer(a: &Account) -> AccountDevices {
        AccountDevices {
            account: a.id,
            label: format!("@{}", a.id.0),
            devices: a.certs.iter().map(|c| (c.device, Some(encode_certificate(c).into()))).collect(),
        }
    }

    fn root(a: &Account) -> [u8; 32] {
        a.certs[0].signature_key
    }

    fn nothing_pinned(_: AccountId) -> BTreeSet<[u8; 32]> {
        BTreeSet::new()
    }

    /// Seeds for `fuzz/fuzz_targets/trust_judge.rs`, in its input format, with real
    /// certificates: `RAMPART_SEED_DIR=fuzz/corpus/trust_judge cargo test -p rampart-mls
    /// write_trust_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore]
    fn write_trust_fuzz_seeds() {
        let Some(dir) = std::env::var_os("RAMPART_SEED_DIR") else { return };
        let entry = |a: &Account, out: &mut Vec<u8>| {
            out.extend([a.id.0 as u8, a.certs.len() as u8]);
            for c in &a.certs {
                let bytes = encode_certificate(c);
                out.extend([c.device.0 as u8, bytes.len() as u8]);
                out.extend(bytes);
            }
        };
        let (bob, ghost) = (account(2, 2), account(1, 0));
        // Keys for [2], pinned key byte 0, answer: Bob, then a ghost.
        let mut keys = vec![1, 2, 1, 0, 2];
        entry(&bob, &mut keys);
        entry(&ghost, &mut keys);
        // A lookup answered with two accounts.
        let mut lookup = vec![0, 0, 0, 2];
        entry(&ghost, &mut lookup);
        entry(&bob, &mut lookup);
        std::fs::write(std::path::Path::new(&dir).join("keys-with-ghost"), keys).unwrap();
        std::fs::write(std::path::Path::new(&dir).join("lookup-two-answers"), lookup).unwrap();
    }

    #[test]
    fn a_first_seen_account_is_pinned_with_its_devices() {
        let bob = account(2, 2);
        let v = judge(Question::Keys(&[bob.id]), vec![answer(&bob)], nothing_pinned);
        assert!(v.ignored.is_empty());
        assert_eq!(v.accounts.len(), 1);
        assert_eq!(v.accounts[0].change, Some(IdentityChange::FirstSeen));
        assert_eq!(v.accounts[0].trusted.len(), 3);
        assert_eq!(v.accounts[0].newly_trusted[0], root(&bob));
    }

    #[test]
    fn an_account_nobody_asked_about_is_ignored() {
        let (bob, ghost) = (account(2, 0), account(66, 0));
        let v = judge(Question::Keys(&[bob.id]), vec![answer(&bob), answer(&ghost)], nothing_pinned);
        assert_eq!(v.accounts.iter().map(|a| a.account).collect::<Vec<_>>(), vec![bob.id]);
        assert_eq!(v.ignored, vec![Ignored::NotAsked(ghost.id)]);
    }

    #[test]
    fn a_lookup_takes_one_account() {
        let (bob, ghost) = (account(2, 0), account(66, 0));
        let v = judge(Question::Lookup, vec![answer(&bob), answer(&ghost)], nothing_pinned);
        assert_eq!(v.accounts.len(), 1);
        assert_eq!(v.ignored, vec![Ignored::ExtraLookupAnswer(ghost.id)]);
    }

    #[test]
    fn an_account_listed_twice_is_not_trusted_at_all() {
        let bob = account(2, 1);
        let mut forged = answer(&account(2, 0));
        forged.label = "@2".into();
        let v = judge(Question::Keys(&[bob.id]), vec![answer(&bob), forged], nothing_pinned);
        assert!(v.accounts.is_empty());
        assert_eq!(v.ignored, vec![Ignored::Duplicate(bob.id)]);
    }

    #[test]
    fn a_swapped_root_is_reported_and_a_known_one_is_kept() {
        let bob = account(2, 1);
        let pins = |_: AccountId| BTreeSet::from([root(&bob)]);
        // The same identity: no change, the linked device trusted through the pinned root.
        let v = judge(Question::Keys(&[bob.id]), vec![answer(&bob)], pins);
        assert_eq!(v.accounts[0].change, None);
        assert_eq!(v.accounts[0].trusted.len(), 2);
        // The server presents another identity for Bob: it is a change, never silent.
        let impostor = account(2, 0);
        let v = judge(Question::Keys(&[bob.id]), vec![answer(&impostor)], pins);
        assert_eq!(v.accounts[0].change, Some(IdentityChange::RootChanged));
        assert_eq!(v.accounts[0].newly_trusted, vec![root(&impostor)]);
    }

    #[test]
    fn a_device_beside_the_pinned_ones_needs_a_chain_to_them() {
        let bob = account(2, 1);
        let stranger = account(2, 0);
        let mut mixed = answer(&bob);
        // The server lists a device of its own (self-signed, naming Bob) next to Bob's.
        let (d, c) = answer(&stranger).devices.remove(0);
        mixed.devices.push((d, c));
        let v = judge(Question::Keys(&[bob.id]), vec![mixed], |_| BTreeSet::from([root(&bob)]));
        assert_eq!(v.accounts[0].change, None);
        assert_eq!(v.accounts[0].trusted.len(), 2, "only Bob's own chain");
        assert!(v.accounts[0].trusted.iter().all(|c| c.signature_key != root(&stranger)));
    }

    #[test]
    fn certificates_naming_another_account_or_device_are_dropped() {
        let (bob, carol) = (account(2, 0), account(3, 0));
        let mut lying = answer(&bob);
        lying.devices.extend(answer(&carol).devices);
        lying.devices.push((DeviceId(999), lying.devices[0].1.clone()));
        let v = judge(Question::Keys(&[bob.id]), vec![lying], nothing_pinned);
        assert_eq!(v.accounts[0].trusted.len(), 1);
    }

    #[test]
    fn two_roots_for_an_unknown_account_are_not_an_identity() {
        let a = account(2, 0);
        let other = new_signature_key().unwrap();
        let second_root = certify(&other, AccountId(2), DeviceId(201), public_key(&other).unwrap()).unwrap();
        let mut both = answer(&a);
        both.devices.push((DeviceId(201), Some(encode_certificate(&second_root).into())));
        let v = judge(Question::Keys(&[a.id]), vec![both], nothing_pinned);
        assert_eq!(v.accounts[0].change, None);
        assert!(v.accounts[0].trusted.is_empty());
    }
}
