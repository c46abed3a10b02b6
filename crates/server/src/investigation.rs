//! Investigations: the clusters of accounts behind what Sentinel acted on, read from the store
//! (its actions and what it saw), for `rampart admin sentinel` and the operator console.
//!
//! The grouping rules are Sentinel's (`rampart_sentinel::investigate`); this module fetches
//! what they need, round by round (the seeds' sightings, then those of the networks and
//! addresses they used, then of the accounts found there), and writes the report an operator
//! reads: accounts, infrastructure, targets, actions and a timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rampart_core::AccountId;
use rampart_sentinel::Ranges;
use rampart_sentinel::investigate::{LinkKey, Seen, clusters};
use rampart_store::{SentinelAction, SentinelSighting, SightingKind, SightingQuery, Store, StoreResult};
use serde::Serialize;

/// Rounds of "who else was there": the seeds, their infrastructure, the accounts met there,
/// and theirs.
const ROUNDS: usize = 4;
/// Sightings read per round, at most.
const SIGHTINGS_PER_ROUND: u32 = 100_000;
/// Actions read, at most (the newest).
const ACTIONS_READ: u32 = 10_000;
/// Timeline entries per cluster, at most (the newest are kept).
const MAX_TIMELINE: usize = 2_000;

/// One cluster of linked accounts and what they did.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// `c` and the cluster's lowest account id: stable while its accounts stay.
    pub id: String,
    pub accounts: Vec<AccountReport>,
    pub infrastructure: Vec<InfrastructureReport>,
    pub targets: Vec<TargetReport>,
    pub actions: Vec<ActionReport>,
    pub timeline: Vec<TimelineEntry>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountReport {
    pub account: u64,
    pub registered_at_ms: Option<u64>,
    /// Sentinel (or an operator) took an action against it.
    pub acted_on: bool,
    pub calls_placed: u64,
    pub calls_answered: u64,
    pub calls_declined: u64,
    /// Requests refused because they did not fit the protocol.
    pub refused: u64,
    /// By how many of the people it called.
    pub blocked_by: u64,
    pub lookups: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InfrastructureReport {
    /// `network`, `address`, `client` (software that is not Rampart's own) or `fingerprint`
    /// (a client's name and behaviour Rampart's client never shows).
    pub kind: &'static str,
    pub value: String,
    /// In the operator's list of hosting ranges.
    pub hosting: bool,
    pub accounts: Vec<u64>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub account: u64,
    /// Calls that rang it.
    pub calls: u64,
    pub answered: u64,
    /// Call set-ups aimed at it that the server refused (they never reached it).
    pub refused: u64,
    /// Conversations the cluster brought it into (first messages, group invitations): message
    /// requests on its devices.
    pub invited: u64,
    pub first_called_ms: u64,
    pub last_called_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub id: u64,
    pub subject: String,
    pub action: String,
    pub rule: String,
    pub reason: String,
    pub created_at_ms: u64,
    pub until_ms: u64,
    pub lifted_at_ms: Option<u64>,
    pub lifted_by: Option<String>,
}

impl From<&SentinelAction> for ActionReport {
    fn from(a: &SentinelAction) -> Self {
        Self {
            id: a.id,
            subject: a.subject.clone(),
            action: a.action.clone(),
            rule: a.rule.clone(),
            reason: a.reason.clone(),
            created_at_ms: a.created_at,
            until_ms: a.until,
            lifted_at_ms: a.lifted_at,
            lifted_by: a.lifted_by.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TimelineEntry {
    pub at_ms: u64,
    pub account: Option<u64>,
    pub what: String,
}

/// What an investigation starts from and reads.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Only what happened since then (the metadata retention keeps nothing older anyway).
    pub since_ms: u64,
    pub hosting: &'a Ranges,
}

/// The clusters behind the actions in the store: each holds at least one account that was
/// acted on, or one that used a network that was.
pub async fn investigate(store: &dyn Store, scope: Scope<'_>) -> StoreResult<Vec<ClusterReport>> {
    let actions: Vec<SentinelAction> = store
        .sentinel_actions(ACTIONS_READ)
        .await?
        .into_iter()
        .filter(|a| a.until >= scope.since_ms || a.created_at >= scope.since_ms)
        .collect();
    let mut seed_accounts = BTreeSet::new();
    let mut seed_networks = BTreeSet::new();
    for action in &actions {
        if let Some(network) = action.subject.strip_prefix("net:") {
            seed_networks.insert(network.to_owned());
        } else if let Some(account) = account_of_subject(&action.subject) {
            seed_accounts.insert(account);
        }
    }
    let sightings = gather(store, scope.since_ms, &seed_accounts, &seed_networks).await?;
    // Accounts seen on an acted-on network are seeds too.
    let mut seeds: BTreeSet<u64> = seed_accounts.iter().map(|a| a.0).collect();
    for s in &sightings {
        if s.network.as_ref().is_some_and(|n| seed_networks.contains(n)) && s.kind == SightingKind::Registered
        {
            seeds.insert(s.account.0);
        }
    }
    Ok(report(&seeds, &sightings, &actions, scope.hosting))
}

/// The account a subject (`a42`) names, if it names one.
pub fn account_of_subject(subject: &str) -> Option<AccountId> {
    // Only the canonical spelling (`a42`, not `a042` or `a+42`): one account, one subject.
    let digits = subject.strip_prefix('a')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok().map(AccountId)
}

/// The seeds' sightings, then those at the keys they used, round by round.
async fn gather(
    store: &dyn Store,
    since_ms: u64,
    seed_accounts: &BTreeSet<AccountId>,
    seed_networks: &BTreeSet<String>,
) -> StoreResult<Vec<SentinelSighting>> {
    let mut asked_accounts: BTreeSet<AccountId> = BTreeSet::new();
    let mut asked_networks: BTreeSet<String> = BTreeSet::new();
    let mut asked_clients: BTreeSet<String> = BTreeSet::new();
    let mut accounts: BTreeSet<AccountId> = seed_accounts.clone();
    let mut networks: BTreeSet<String> = seed_networks.clone();
    let mut clients: BTreeSet<String> = BTreeSet::new();
    let mut all: Vec<SentinelSighting> = Vec::new();
    // A sighting found twice (by its account and by its network) is kept once.
    type Identity = (u64, u64, SightingKind, Option<u64>, Option<String>, Option<String>);
    let mut kept: BTreeSet<Identity> = BTreeSet::new();
    for _ in 0..ROUNDS {
        let new_accounts: Vec<AccountId> =
            accounts.difference(&asked_accounts).copied().take(rampart_store::MAX_SIGHTING_KEYS).collect();
        let new_networks: Vec<String> =
            networks.difference(&asked_networks).take(rampart_store::MAX_SIGHTING_KEYS).cloned().collect();
        let new_clients: Vec<String> =
            clients.difference(&asked_clients).take(rampart_store::MAX_SIGHTING_KEYS).cloned().collect();
        if new_accounts.is_empty() && new_networks.is_empty() && new_clients.is_empty() {
            break;
        }
        asked_accounts.extend(new_accounts.iter().copied());
        asked_networks.extend(new_networks.iter().cloned());
        asked_clients.extend(new_clients.iter().cloned());
        let found = store
            .sentinel_sightings(SightingQuery {
                accounts: new_accounts,
                networks: new_networks,
                clients: new_clients,
                since: since_ms,
                limit: SIGHTINGS_PER_ROUND,
            })
            .await?;
        for s in found {
            let identity =
                (s.at, s.account.0, s.kind, s.peer.map(|p| p.0), s.network.clone(), s.address.clone());
            if !kept.insert(identity) {
                continue;
            }
            if let Some(network) = &s.network {
                networks.insert(network.clone());
            }
            if let Some(client) = &s.client {
                clients.insert(client.clone());
            }
            // Only accounts met on shared infrastructure are followed, not the people called.
            if s.network.is_some() || s.client.is_some() {
                accounts.insert(s.account);
            }
            all.push(s);
        }
    }
    all.sort_by_key(|s| s.at);
    Ok(all)
}

/// Is this network or address in the hosting ranges?
fn is_hosting(value: &str, hosting: &Ranges) -> bool {
    let base = value.split('/').next().unwrap_or(value);
    base.parse::<IpAddr>().is_ok_and(|addr| hosting.contains(addr))
}

/// Group and describe. Pure, so it can be tested without a store.
pub fn report(
    seeds: &BTreeSet<u64>,
    sightings: &[SentinelSighting],
    actions: &[SentinelAction],
    hosting: &Ranges,
) -> Vec<ClusterReport> {
    let called_by = |accounts: &BTreeSet<u64>| -> BTreeSet<u64> {
        sightings
            .iter()
            .filter(|s| {
                // Invitations make targets to tell, not shields: one commit adding every account
                // of a campaign must not take them out of its cluster.
                accounts.contains(&s.account.0)
                    && matches!(s.kind, SightingKind::Called | SightingKind::Attempted)
            })
            .filter_map(|s| s.peer.map(|p| p.0))
            .filter(|p| !seeds.contains(p))
            .collect()
    };
    let mut seen = Vec::new();
    for s in sightings {
        let registration = s.kind == SightingKind::Registered;
        let keys = [
            s.network.as_ref().map(|n| (LinkKey::Network(n.clone()), is_hosting(n, hosting))),
            s.address.as_ref().map(|a| (LinkKey::Address(a.clone()), is_hosting(a, hosting))),
            s.client.as_ref().map(|c| {
                let key = if s.kind == SightingKind::Quirk {
                    LinkKey::Fingerprint(c.clone())
                } else {
                    LinkKey::Client(c.clone())
                };
                (key, false)
            }),
        ];
        for (key, hosting) in keys.into_iter().flatten() {
            seen.push(Seen { account: s.account.0, key, at_ms: s.at, registration, hosting });
        }
    }
    // Whom the members called are targets, never members; members found through links call
    // people too, so grow the targets until they stop growing (each round only adds).
    let mut targets = called_by(seeds);
    let mut groups = clusters(seeds, &seen, &targets);
    for _ in 0..MAX_TARGET_ROUNDS {
        let members: BTreeSet<u64> = groups.iter().flatten().copied().collect();
        let more: BTreeSet<u64> = targets.union(&called_by(&members)).copied().collect();
        if more == targets {
            break;
        }
        targets = more;
        groups = clusters(seeds, &seen, &targets);
    }
    groups.into_iter().map(|members| describe(&members, sightings, actions, hosting)).collect()
}

/// Rounds of growing the targets from the members' calls, at most.
const MAX_TARGET_ROUNDS: usize = 8;

fn describe(
    members: &BTreeSet<u64>,
    sightings: &[SentinelSighting],
    actions: &[SentinelAction],
    hosting: &Ranges,
) -> ClusterReport {
    let mut accounts: BTreeMap<u64, AccountReport> =
        members.iter().map(|&a| (a, AccountReport { account: a, ..Default::default() })).collect();
    let mut infrastructure: BTreeMap<(&'static str, String), InfrastructureReport> = BTreeMap::new();
    let mut targets: BTreeMap<u64, TargetReport> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut infra = |kind: &'static str, value: &String, account: u64, at: u64| {
        let entry = infrastructure.entry((kind, value.clone())).or_insert_with(|| InfrastructureReport {
            kind,
            value: value.clone(),
            hosting: is_hosting(value, hosting),
            accounts: Vec::new(),
            first_seen_ms: at,
            last_seen_ms: at,
        });
        if !entry.accounts.contains(&account) {
            entry.accounts.push(account);
        }
        entry.first_seen_ms = entry.first_seen_ms.min(at);
        entry.last_seen_ms = entry.last_seen_ms.max(at);
    };
    for s in sightings.iter().filter(|s| members.contains(&s.account.0)) {
        let a = s.account.0;
        let Some(report) = accounts.get_mut(&a) else { continue };
        let peer = s.peer.map(|p| format!("a{}", p.0)).unwrap_or_default();
        let from = s.address.clone().or_else(|| s.network.clone()).unwrap_or_default();
        let what = match s.kind {
            SightingKind::Registered => {
                report.registered_at_ms = Some(report.registered_at_ms.map_or(s.at, |r| r.min(s.at)));
                format!("registered from {from}")
            }
            SightingKind::SignedIn => match &s.client {
                Some(client) => {
                    format!("signed in from {from} with a client that is not Rampart's: {client:?}")
                }
                None => format!("signed in from {from}"),
            },
            SightingKind::Called | SightingKind::Attempted | SightingKind::Invited => {
                let rang = s.kind == SightingKind::Called;
                if rang {
                    report.calls_placed += 1;
                }
                // A member calling another member is the campaign at work, not a target.
                if let Some(p) = s.peer.filter(|p| !members.contains(&p.0)) {
                    let t = targets.entry(p.0).or_insert(TargetReport {
                        account: p.0,
                        calls: 0,
                        answered: 0,
                        refused: 0,
                        invited: 0,
                        first_called_ms: s.at,
                        last_called_ms: s.at,
                    });
                    match s.kind {
                        SightingKind::Called => t.calls += 1,
                        SightingKind::Invited => t.invited += 1,
                        _ => t.refused += 1,
                    }
                    t.first_called_ms = t.first_called_ms.min(s.at);
                    t.last_called_ms = t.last_called_ms.max(s.at);
                }
                match s.kind {
                    SightingKind::Called => format!("called {peer}"),
                    SightingKind::Invited => format!("brought {peer} into a conversation"),
                    _ => format!("a call set-up aimed at {peer} was refused"),
                }
            }
            SightingKind::Answered => {
                report.calls_answered += 1;
                if let Some(t) = s.peer.and_then(|p| targets.get_mut(&p.0)) {
                    t.answered += 1;
                }
                format!("call answered by {peer}")
            }
            SightingKind::Declined => {
                report.calls_declined += 1;
                format!("call declined by {peer}")
            }
            SightingKind::Refused => {
                report.refused += 1;
                "a request that did not fit the protocol was refused".to_owned()
            }
            SightingKind::Blocked => {
                report.blocked_by += 1;
                format!("blocked by {peer}")
            }
            SightingKind::Lookup => {
                report.lookups += 1;
                "looked up an account".to_owned()
            }
            SightingKind::Quirk => {
                format!(
                    "set up a call the way Rampart's client never does ({})",
                    s.client.as_deref().unwrap_or("?")
                )
            }
        };
        if let Some(network) = &s.network {
            infra("network", network, a, s.at);
        }
        if let Some(address) = &s.address {
            infra("address", address, a, s.at);
        }
        if let Some(client) = &s.client {
            infra(if s.kind == SightingKind::Quirk { "fingerprint" } else { "client" }, client, a, s.at);
        }
        timeline.push(TimelineEntry { at_ms: s.at, account: Some(a), what });
    }
    let networks: BTreeSet<String> =
        infrastructure.keys().filter(|(k, _)| *k == "network").map(|(_, v)| v.clone()).collect();
    let mine = |subject: &str| {
        account_of_subject(subject).is_some_and(|a| members.contains(&a.0))
            || subject.strip_prefix("net:").is_some_and(|n| networks.contains(n))
    };
    let actions: Vec<ActionReport> =
        actions.iter().filter(|a| mine(&a.subject)).map(ActionReport::from).collect();
    for action in &actions {
        let account = account_of_subject(&action.subject).map(|a| a.0);
        if let Some(report) = account.and_then(|a| accounts.get_mut(&a)) {
            report.acted_on = true;
        }
        timeline.push(TimelineEntry {
            at_ms: action.created_at_ms,
            account,
            what: format!("{} on {} ({}): {}", action.action, action.subject, action.rule, action.reason),
        });
        if let (Some(at), Some(by)) = (action.lifted_at_ms, &action.lifted_by) {
            timeline.push(TimelineEntry {
                at_ms: at,
                account,
                what: format!("{} on {} lifted by {by}", action.action, action.subject),
            });
        }
    }
    timeline.sort();
    if timeline.len() > MAX_TIMELINE {
        timeline.drain(..timeline.len() - MAX_TIMELINE);
    }
    let first_seen_ms = timeline.first().map_or(0, |t| t.at_ms);
    let last_seen_ms = timeline.last().map_or(0, |t| t.at_ms);
    let mut targets: Vec<TargetReport> = targets.into_values().collect();
    targets.sort_by_key(|t| (std::cmp::Reverse(t.calls + t.refused), t.account));
    ClusterReport {
        id: format!("c{}", members.first().copied().unwrap_or(0)),
        accounts: accounts.into_values().collect(),
        infrastructure: infrastructure.into_values().collect(),
        targets,
        actions,
        timeline,
        first_seen_ms,
        last_seen_ms,
    }
}

/// Why a notice cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the notice cannot be sent: {0}")]
    Text(#[from] rampart_proto::DecodeError),
    #[error(transparent)]
    Store(#[from] rampart_store::StoreError),
}

/// Queue a notice from the server's operators for every device of `account`. Returns the
/// copies queued, one a device (none for an account that has no device left), for the caller
/// to push to connected devices when it runs in the server. The text is held to the
/// rules a client checks (bounded, no control characters but newlines) before anything is
/// queued.
pub async fn send_notice(
    store: &dyn Store,
    config: &crate::ServerConfig,
    account: AccountId,
    text: &str,
    now_ms: u64,
) -> Result<Vec<rampart_store::StoredMessage>, NoticeError> {
    use rampart_proto::{Envelope, encode_envelope, server_notice};
    let text = server_notice(text.as_bytes().to_vec())?;
    let devices = store.list_devices(account).await?;
    // The notice is queued as if from the account's own first device: it takes nothing of
    // another sender's share of the queue, and no one else can be named as its author. The
    // client shows it as the server's, whatever the sender fields say.
    let Some(first) = devices.first() else { return Ok(Vec::new()) };
    let limits = rampart_store::QueueLimits {
        per_device: config.limits.max_queue_per_device,
        per_sender: config.limits.max_queue_per_sender,
    };
    // Made before the await: the thread's generator cannot cross it.
    let message_id = rampart_core::MessageId::random(&mut rand::rng());
    let stored = store
        .enqueue(
            rampart_store::NewMessage {
                recipient: account,
                only_device: None,
                sender_account: account,
                sender_device: first.id,
                message_id,
                received_at: now_ms,
                expires_at: now_ms.saturating_add(config.limits.message_ttl_secs.saturating_mul(1000)),
                body: encode_envelope(&Envelope::ServerNotice(text)),
            },
            limits,
        )
        .await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]
    use super::*;

    fn sighting(
        at: u64,
        account: u64,
        kind: SightingKind,
        peer: Option<u64>,
        address: Option<&str>,
    ) -> SentinelSighting {
        SentinelSighting {
            at,
            account: AccountId(account),
            kind,
            peer: peer.map(AccountId),
            network: None,
            address: address.map(str::to_owned),
            client: None,
        }
    }

    #[test]
    fn members_are_never_targets_and_a_linked_members_victim_stays_out() {
        // 1 was acted on; 2 shares 1's address and calls 3 and 1; 3 signed in from that
        // address too (an attacker there to smear it, or a shared exit).
        let seen = [
            sighting(0, 1, SightingKind::SignedIn, None, Some("192.0.2.7")),
            sighting(1, 2, SightingKind::SignedIn, None, Some("192.0.2.7")),
            sighting(2, 3, SightingKind::SignedIn, None, Some("192.0.2.7")),
            sighting(3, 2, SightingKind::Called, Some(3), None),
            sighting(4, 2, SightingKind::Called, Some(1), None),
        ];
        let seeds: BTreeSet<u64> = [1].into();
        let reports = report(&seeds, &seen, &[], &Ranges::default());
        assert_eq!(reports.len(), 1);
        let accounts: Vec<u64> = reports[0].accounts.iter().map(|a| a.account).collect();
        assert_eq!(accounts, vec![1, 2]);
        let targets: Vec<u64> = reports[0].targets.iter().map(|t| t.account).collect();
        assert_eq!(targets, vec![3]);
    }

    #[test]
    fn a_shared_fingerprint_links_and_whom_members_wrote_to_are_targets() {
        // 1 was acted on; 2 runs the same look-alike (copying Rampart's name) from elsewhere;
        // 4 behaved the same way once but runs other software: its fingerprint differs; 6 is
        // software literally named after the fingerprint, which is a name, not behaviour. 2
        // brought 5 and 7 into conversations: 7 is a target to tell; 5 runs the look-alike too,
        // and an invitation does not take it out of the cluster.
        let quirk = |at, account, client: &str| SentinelSighting {
            client: Some(client.to_owned()),
            ..sighting(at, account, SightingKind::Quirk, None, None)
        };
        let seen = [
            quirk(0, 1, "rampart/0.1.0 + set-up without relay"),
            quirk(1, 2, "rampart/0.1.0 + set-up without relay"),
            quirk(2, 4, "other/1.0 + set-up without relay"),
            sighting(3, 2, SightingKind::Invited, Some(5), None),
            quirk(4, 5, "rampart/0.1.0 + set-up without relay"),
            SentinelSighting {
                client: Some("rampart/0.1.0 + set-up without relay".into()),
                ..sighting(5, 6, SightingKind::SignedIn, None, None)
            },
            sighting(6, 2, SightingKind::Invited, Some(7), None),
        ];
        let seeds: BTreeSet<u64> = [1].into();
        let reports = report(&seeds, &seen, &[], &Ranges::default());
        assert_eq!(reports.len(), 1);
        let accounts: Vec<u64> = reports[0].accounts.iter().map(|a| a.account).collect();
        assert_eq!(accounts, vec![1, 2, 5]);
        let targets: Vec<(u64, u64)> = reports[0].targets.iter().map(|t| (t.account, t.invited)).collect();
        assert_eq!(targets, vec![(7, 1)]);
        let fingerprint = reports[0].infrastructure.iter().find(|i| i.kind == "fingerprint").unwrap();
        assert_eq!(fingerprint.value, "rampart/0.1.0 + set-up without relay");
        assert!(reports[0].timeline.iter().any(|t| t.what == "brought a7 into a conversation"));
    }

    #[test]
    fn only_canonical_subjects_name_accounts() {
        assert_eq!(account_of_subject("a42"), Some(AccountId(42)));
        for odd in ["a042", "a+42", "a", "42", "a4 2", "a-1"] {
            assert_eq!(account_of_subject(odd), None, "{odd}");
        }
    }
}
