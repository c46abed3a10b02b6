//! Linking the accounts of one campaign: which accounts share infrastructure with the accounts
//! Sentinel acted on.
//!
//! Pure: the server (or the simulator) hands in what it saw, this module groups it. A campaign
//! registers its accounts from a few networks it rents, often at once; ordinary people share
//! networks too (a newsroom's office, a mobile carrier's NAT). So not every shared network is a
//! link:
//!
//! - a shared **address** links, and so does a shared **client name** that is not Rampart's
//!   own (the server passes only those: everyone shares the official one), and a shared
//!   **behaviour fingerprint** (a name with something Rampart's client does not do);
//! - a shared **network** links only **registrations close in time**: within
//!   [`HOSTING_LINK_WINDOW_MS`] of each other on a hosting network (the operator's list of
//!   datacenter ranges), within [`REGISTRATION_LINK_WINDOW_MS`] on any other. Signing in from a
//!   network links nothing: people on a VPN or in one office share networks all day;
//! - a key shared by more than [`MAX_LINK_FANOUT`] accounts links nothing (a carrier NAT);
//! - an account the campaign **called** is its target, never its member through shared
//!   infrastructure alone: an attacker who registers from a victim's network must not pull the
//!   victim into its cluster.

use std::collections::{BTreeMap, BTreeSet};

use crate::signals::Account;

/// Registrations from one (non-hosting) network this close in time link their accounts.
pub const REGISTRATION_LINK_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Registrations from one hosting network this close in time link their accounts.
pub const HOSTING_LINK_WINDOW_MS: u64 = 60 * 60 * 1000;
/// A key shared by more accounts than this links none of them.
pub const MAX_LINK_FANOUT: usize = 256;

/// What two accounts can share.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKey {
    Address(String),
    Network(String),
    /// Software that is not Rampart's own, by the name it gave.
    Client(String),
    /// A behaviour fingerprint: the name a device gave and something Rampart's client does not
    /// do. Kept apart from names, so a client that calls itself after a fingerprint links
    /// nothing with it.
    Fingerprint(String),
}

/// One account seen at one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub account: Account,
    pub key: LinkKey,
    pub at_ms: u64,
    /// A registration (its time links), rather than a sign-in.
    pub registration: bool,
    /// The key is (or lies in) a hosting network.
    pub hosting: bool,
}

/// Group the accounts linked to `seeds`, each group with at least one seed, ordered by their
/// lowest account. `targets` are the accounts the seeds called: a target joins a group only as
/// a seed itself.
pub fn clusters(
    seeds: &BTreeSet<Account>,
    seen: &[Seen],
    targets: &BTreeSet<Account>,
) -> Vec<BTreeSet<Account>> {
    let mut by_key: BTreeMap<&LinkKey, Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        if targets.contains(&s.account) && !seeds.contains(&s.account) {
            continue;
        }
        by_key.entry(&s.key).or_default().push(s);
    }
    let mut sets = UnionFind::default();
    for seed in seeds {
        sets.find(*seed);
    }
    for (key, mut at_key) in by_key {
        let distinct: BTreeSet<Account> = at_key.iter().map(|s| s.account).collect();
        if distinct.len() < 2 || distinct.len() > MAX_LINK_FANOUT {
            continue;
        }
        if matches!(key, LinkKey::Address(_) | LinkKey::Client(_) | LinkKey::Fingerprint(_)) {
            let mut accounts = distinct.into_iter();
            if let Some(first) = accounts.next() {
                for other in accounts {
                    sets.union(first, other);
                }
            }
            continue;
        }
        let window = if at_key.iter().any(|s| s.hosting) {
            HOSTING_LINK_WINDOW_MS
        } else {
            REGISTRATION_LINK_WINDOW_MS
        };
        at_key.retain(|s| s.registration);
        at_key.sort_by_key(|s| s.at_ms);
        for pair in at_key.windows(2) {
            if let [a, b] = pair
                && b.at_ms.saturating_sub(a.at_ms) <= window
            {
                sets.union(a.account, b.account);
            }
        }
    }
    let mut groups: BTreeMap<Account, BTreeSet<Account>> = BTreeMap::new();
    let members: Vec<Account> = sets.parent.keys().copied().collect();
    for account in members {
        let root = sets.find(account);
        groups.entry(root).or_default().insert(account);
    }
    let mut out: Vec<BTreeSet<Account>> =
        groups.into_values().filter(|group| group.iter().any(|a| seeds.contains(a))).collect();
    out.sort_by_key(|group| group.first().copied());
    out
}

/// Disjoint sets of accounts, by path halving and union by lower id (so a group's root is
/// stable whatever order links come in).
#[derive(Debug, Default)]
struct UnionFind {
    parent: BTreeMap<Account, Account>,
}

impl UnionFind {
    fn find(&mut self, account: Account) -> Account {
        let mut current = *self.parent.entry(account).or_insert(account);
        let mut node = account;
        while current != node {
            let grandparent = *self.parent.get(&current).unwrap_or(&current);
            self.parent.insert(node, grandparent);
            node = current;
            current = grandparent;
        }
        current
    }

    fn union(&mut self, a: Account, b: Account) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(high, low);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(account: Account, key: LinkKey, at_ms: u64, registration: bool, hosting: bool) -> Seen {
        Seen { account, key, at_ms, registration, hosting }
    }
    fn addr(a: &str) -> LinkKey {
        LinkKey::Address(a.into())
    }
    fn net(n: &str) -> LinkKey {
        LinkKey::Network(n.into())
    }
    fn set(accounts: &[Account]) -> BTreeSet<Account> {
        accounts.iter().copied().collect()
    }

    #[test]
    fn hosting_registrations_and_addresses_link_accounts_to_a_seed() {
        let seen = [
            seen(1, net("203.0.113.0/24"), 0, true, true),
            seen(2, net("203.0.113.0/24"), 50 * 60_000, true, true),
            seen(2, addr("198.51.100.9"), 0, false, false),
            seen(3, addr("198.51.100.9"), 0, false, false),
            // Someone on a VPN in the same datacenter, signing in: not linked.
            seen(5, net("203.0.113.0/24"), 10 * 60_000, false, true),
            // Not linked to anyone.
            seen(4, net("192.0.2.0/24"), 0, true, false),
        ];
        assert_eq!(clusters(&set(&[1]), &seen, &set(&[])), vec![set(&[1, 2, 3])]);
        // No seed, no cluster.
        assert!(clusters(&set(&[4]), &seen, &set(&[])).iter().all(|c| c == &set(&[4])));
    }

    #[test]
    fn other_networks_link_only_registrations_close_in_time() {
        let n = net("192.0.2.0/24");
        let seen = [
            seen(1, n.clone(), 0, true, false),
            seen(2, n.clone(), 5 * 60_000, true, false),
            // Same office, registered a day later: a colleague, not a sock puppet.
            seen(3, n.clone(), 24 * 3_600_000, true, false),
            // Signing in from the office links nothing.
            seen(4, n, 60_000, false, false),
        ];
        assert_eq!(clusters(&set(&[1]), &seen, &set(&[])), vec![set(&[1, 2])]);
    }

    #[test]
    fn a_target_is_not_pulled_in_by_an_attacker_on_its_network() {
        // The attacker registered from the victim's own address to smear it.
        let seen = [seen(1, addr("192.0.2.7"), 0, true, false), seen(9, addr("192.0.2.7"), 0, true, false)];
        assert_eq!(clusters(&set(&[1]), &seen, &set(&[9])), vec![set(&[1])]);
        // Unless the victim itself was acted on.
        assert_eq!(clusters(&set(&[1, 9]), &seen, &set(&[9])), vec![set(&[1, 9])]);
    }

    #[test]
    fn a_look_alike_client_links_accounts_across_networks() {
        let client = LinkKey::Client("wa-lite/2.19".into());
        let seen = [
            seen(1, client.clone(), 0, false, false),
            seen(2, client, 9 * 24 * 3_600_000, false, false),
            seen(2, net("198.51.100.0/24"), 0, true, false),
        ];
        assert_eq!(clusters(&set(&[1]), &seen, &set(&[])), vec![set(&[1, 2])]);
    }

    #[test]
    fn a_key_shared_by_too_many_links_nothing() {
        let nat = addr("100.64.0.1");
        let seen: Vec<Seen> =
            (1..=MAX_LINK_FANOUT as u64 + 1).map(|a| seen(a, nat.clone(), 0, false, false)).collect();
        assert_eq!(clusters(&set(&[1]), &seen, &set(&[])), vec![set(&[1])]);
    }

    #[test]
    fn separate_campaigns_stay_separate_and_ordered() {
        let seen = [
            seen(7, addr("a"), 0, false, false),
            seen(8, addr("a"), 0, false, false),
            seen(2, addr("b"), 0, false, false),
            seen(3, addr("b"), 0, false, false),
        ];
        assert_eq!(clusters(&set(&[8, 3]), &seen, &set(&[])), vec![set(&[2, 3]), set(&[7, 8])]);
    }
}
