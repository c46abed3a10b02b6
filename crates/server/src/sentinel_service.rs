//! Sentinel in the server: observations from the request paths go to the engine as they
//! happen; its decisions are kept in the store (shared by every node, lifted by operators),
//! written to the evidence log, and enforced where they apply: placing a call, signing in,
//! registering.
//!
//! Observing is synchronous and cheap (a lock, counters, the policy on one account); what a
//! decision costs (a store write and a synced evidence entry) happens on Sentinel's own task,
//! so no request waits on it. Signals are per node, in memory; actions are shared through the
//! store. Nothing here reads content: the server has none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rampart_core::AccountId;
use rampart_core::challenge::{ChallengeError, ChallengeKey};
use rampart_proto::{ChallengeAnswer, ErrorBody, ErrorCode};
use rampart_sentinel::signals::Observation;
use rampart_sentinel::{Action, Decision, Network, Policy, Quirk, Ranges, Sentinel, Subject};
use rampart_store::{NewSentinelAction, SentinelAction, SentinelSighting, SightingKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::session::err;
use crate::state::{Shared, now_ms};

/// Lifts taken from the store per round, at most.
const LIFTS_PER_ROUND: u32 = 256;

/// Sightings waiting to be written, at most; more are dropped (and counted in the log) rather
/// than held without bound while the store is slow.
const SIGHTINGS_QUEUED: usize = 65_536;
/// Sightings written in one store call, at most.
const SIGHTINGS_PER_WRITE: usize = 1_024;

/// The engine and the way to its tasks.
pub struct SentinelService {
    engine: Mutex<Sentinel>,
    decisions: mpsc::UnboundedSender<Decision>,
    sightings: mpsc::Sender<SentinelSighting>,
    /// Taken by the server's run loop, which starts the tasks that carry decisions out and
    /// keep sightings.
    receivers: Mutex<Option<Receivers>>,
    /// Signs the proof-of-work challenges of `require_challenge`. Per node and per run: a
    /// client answers on the connection it was challenged on, and after a restart it is simply
    /// challenged again.
    challenges: ChallengeKey,
    /// Answered challenges, until they expire: one answer pays for one call.
    spent: Mutex<HashMap<[u8; 16], u64>>,
}

/// Answered challenges remembered at once, at most. Beyond it new answers are refused (the
/// caller is challenged again) rather than an unexpired one forgotten.
const MAX_SPENT: usize = 200_000;
/// The spent set drops expired answers once in this many insertions.
const SPENT_SWEEP_EVERY: usize = 1_024;

pub(crate) struct Receivers {
    pub decisions: mpsc::UnboundedReceiver<Decision>,
    pub sightings: mpsc::Receiver<SentinelSighting>,
}

impl std::fmt::Debug for SentinelService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelService").finish_non_exhaustive()
    }
}

/// The policy and ranges of a configuration, or why they cannot be used.
pub fn load(config: &crate::config::SentinelConfig) -> Result<(Policy, Ranges), String> {
    let policy = match &config.policy {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Policy::parse(&text).map_err(|e| format!("{} {e}", path.display()))?
        }
        None => Policy::default_policy(),
    };
    Ok((policy, hosting_ranges(config)?))
}

/// The operator's hosting ranges alone (what investigations need; no policy file is read).
pub fn hosting_ranges(config: &crate::config::SentinelConfig) -> Result<Ranges, String> {
    Ranges::parse(config.hosting_ranges.iter().map(String::as_str))
        .map_err(|e| format!("[sentinel] hosting_ranges: {e}"))
}

impl SentinelService {
    pub fn new(policy: Policy, ranges: Ranges) -> Self {
        let (decisions, decisions_in) = mpsc::unbounded_channel();
        let (sightings, sightings_in) = mpsc::channel(SIGHTINGS_QUEUED);
        Self {
            engine: Mutex::new(Sentinel::new(policy, ranges)),
            decisions,
            sightings,
            receivers: Mutex::new(Some(Receivers { decisions: decisions_in, sightings: sightings_in })),
            challenges: ChallengeKey::generate(&mut rand::rng()),
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `answer` pays for `caller` calling `callee` now; spends it if so and returns
    /// its id (for [`SentinelService::refund`]).
    fn pay(
        &self,
        caller: AccountId,
        callee: AccountId,
        answer: &ChallengeAnswer,
    ) -> Result<[u8; 16], ChallengeError> {
        let now = now_ms();
        let answered = self.challenges.check(caller, callee, &answer.token, answer.nonce, now)?;
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        // Expired answers go every so often, not only when the set is full.
        if spent.len() >= MAX_SPENT || spent.len() % SPENT_SWEEP_EVERY == SPENT_SWEEP_EVERY - 1 {
            spent.retain(|_, until| *until > now);
        }
        if spent.len() >= MAX_SPENT {
            return Err(ChallengeError::Spent);
        }
        if spent.insert(answered.id, answered.expires_at_ms).is_some() {
            return Err(ChallengeError::Spent);
        }
        Ok(answered.id)
    }

    /// The call an answer paid for was refused after all: the answer may pay again.
    pub(crate) fn refund(&self, id: &[u8; 16]) {
        self.spent.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Take an observation now; decisions go to Sentinel's task, and what was seen to the
    /// store (for investigations).
    pub fn observe(&self, observation: Observation) {
        let now = now_ms();
        let decisions = {
            let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
            engine.observe(&observation, now)
        };
        for decision in decisions {
            // The task is gone only when the server is stopping.
            let _ = self.decisions.send(decision);
        }
        if let Some(sighting) = sighting(&observation, now) {
            self.keep(sighting);
        }
    }

    /// Hand a sighting to the task that writes them.
    fn keep(&self, sighting: SentinelSighting) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sightings.try_send(sighting) {
            warn!("sentinel: the store is behind; a sighting was not kept");
        }
    }

    fn lifted(&self, subject: &str) {
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        engine.lifted_text(subject);
    }

    pub(crate) fn take_receivers(&self) -> Option<Receivers> {
        self.receivers.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What an observation leaves for investigations: who, whom, from where. A call abandoned
/// before ringing names no callee, and the policy has counted it already.
fn sighting(observation: &Observation, at: u64) -> Option<SentinelSighting> {
    let plain = |account: u64, kind, peer: Option<u64>| SentinelSighting {
        at,
        account: AccountId(account),
        kind,
        peer: peer.map(AccountId),
        network: None,
        address: None,
        client: None,
    };
    let from = |account: u64, kind, addr: &std::net::IpAddr| SentinelSighting {
        network: Some(Network::of(*addr).to_string()),
        address: Some(addr.to_canonical().to_string()),
        ..plain(account, kind, None)
    };
    Some(match observation {
        Observation::Registered { account, addr, .. } => from(*account, SightingKind::Registered, addr),
        Observation::Connected { account, addr, unknown_client, .. } => SentinelSighting {
            // A missing name is a signal, not a link: every client that gives none would share it.
            client: unknown_client.clone().filter(|c| !c.is_empty()),
            ..from(*account, SightingKind::SignedIn, addr)
        },
        Observation::CallPlaced { caller, callee } => plain(*caller, SightingKind::Called, Some(*callee)),
        Observation::CallAnswered { caller, callee } => plain(*caller, SightingKind::Answered, Some(*callee)),
        Observation::CallDeclined { caller, callee } => plain(*caller, SightingKind::Declined, Some(*callee)),
        Observation::CallAbandoned { .. } => return None,
        Observation::Misfit { account } => plain(*account, SightingKind::Refused, None),
        Observation::Blocked { blocked, blocker } => plain(*blocked, SightingKind::Blocked, Some(*blocker)),
        Observation::Lookup { account } => plain(*account, SightingKind::Lookup, None),
        Observation::Invited { inviter, invitee } => plain(*inviter, SightingKind::Invited, Some(*invitee)),
        // Kept with the device's client name by `observe_quirk`.
        Observation::Quirk { .. } => return None,
        // Counted; the conversations they lead to are kept as invitations.
        Observation::KeyPackagesClaimed { .. } => return None,
    })
}

/// Write sightings as they come, many to a store call.
pub(crate) async fn keep_sightings(shared: Arc<Shared>, mut sightings: mpsc::Receiver<SentinelSighting>) {
    let mut batch = Vec::with_capacity(SIGHTINGS_PER_WRITE);
    while sightings.recv_many(&mut batch, SIGHTINGS_PER_WRITE).await > 0 {
        let count = batch.len();
        if let Err(e) = shared.store.record_sentinel_sightings(std::mem::take(&mut batch)).await {
            warn!(error = %e, count, "sentinel: cannot keep sightings");
        }
    }
}

/// Observe: counted for the console's charts, and given to Sentinel when it is on.
pub(crate) fn observe(shared: &Shared, observation: Observation) {
    shared.activity.note(&observation, now_ms());
    if let Some(sentinel) = &shared.sentinel {
        sentinel.observe(observation);
    }
}

/// A device behaved unlike Rampart's own client. The policy counts it; a set-up out of order
/// (which Rampart's client never makes) is also kept for investigations with the name the
/// device gave, as a behaviour fingerprint: accounts running one look-alike share it even when
/// it copies Rampart's name.
pub(crate) fn observe_quirk(shared: &Shared, account: AccountId, quirk: Quirk, client: &str) {
    observe(shared, Observation::Quirk { account: account.0, quirk });
    // No name is a signal, not a link: every client that gives none would share it.
    if let (Some(sentinel), Quirk::SetUpWithoutRelay, false) = (&shared.sentinel, quirk, client.is_empty()) {
        sentinel.keep(SentinelSighting {
            at: now_ms(),
            account,
            kind: SightingKind::Quirk,
            peer: None,
            network: None,
            address: None,
            client: Some(fingerprint(client, quirk)),
        });
    }
}

/// A behaviour fingerprint as investigations link it: the client's name (its first 40
/// characters, so the whole fits a sighting's field) and what it did.
pub(crate) fn fingerprint(client: &str, quirk: Quirk) -> String {
    let name: String = client.chars().take(40).collect();
    format!("{name} + {}", quirk.as_str())
}

/// Keep that `caller` aimed a call at `callee` that the server refused (when Sentinel is on).
pub(crate) fn sight_attempt(shared: &Shared, caller: AccountId, callee: AccountId) {
    if let Some(sentinel) = &shared.sentinel {
        sentinel.keep(SentinelSighting {
            at: now_ms(),
            account: caller,
            kind: SightingKind::Attempted,
            peer: Some(callee),
            network: None,
            address: None,
            client: None,
        });
    }
}

/// The account's subject text, as the store keeps it.
pub(crate) fn account_subject(account: AccountId) -> String {
    Subject::Account(account.0).to_string()
}

/// Carry out decisions as they come: keep them, unless an operator lifted the same subject's
/// actions recently (a lift pardons for as long as the action would have lasted).
pub(crate) async fn run(shared: Arc<Shared>, mut decisions: mpsc::UnboundedReceiver<Decision>) {
    while let Some(decision) = decisions.recv().await {
        let subject = decision.subject.to_string();
        let now = now_ms();
        let duration = decision.until_ms.saturating_sub(now);
        match shared.store.last_sentinel_lift(&subject, decision.action.as_str()).await {
            Ok(Some(lifted)) if now.saturating_sub(lifted) < duration => {
                info!(subject = %subject, rule = %decision.rule, "sentinel: pardoned by an operator's lift");
                continue;
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "sentinel: cannot read lifts"),
        }
        let action = NewSentinelAction {
            subject: subject.clone(),
            action: decision.action.as_str().to_owned(),
            rule: decision.rule.clone(),
            reason: decision.reason.clone(),
            created_at: now,
            until: decision.until_ms,
        };
        if let Err(e) = shared.store.record_sentinel_action(action).await {
            error!(error = %e, subject = %subject, "sentinel: cannot keep an action");
            // Not taken: the policy may take it on the next observation.
            if let Some(sentinel) = &shared.sentinel {
                let mut engine = sentinel.engine.lock().unwrap_or_else(|p| p.into_inner());
                engine.not_taken(decision.subject, decision.action);
            }
            continue;
        }
        shared.metrics.sentinel_action(decision.action.as_str());
        warn!(subject = %subject, action = %decision.action, rule = %decision.rule, "sentinel acted");
        let record = rampart_sentinel::Record {
            decision: decision.action.as_str().to_owned(),
            subject: describe(&decision),
            by: format!("rule {}", decision.rule),
            reason: decision.reason.clone(),
            signals: decision
                .signals
                .named()
                .into_iter()
                .filter(|(_, v)| *v != 0)
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            until_ms: Some(decision.until_ms),
        };
        append_evidence(&shared, vec![record]).await;
    }
}

/// What an evidence entry says the subject is.
fn describe(decision: &Decision) -> String {
    match decision.subject {
        Subject::Account(_) => decision.subject.to_string(),
        Subject::Network(_) => format!("{} (registered there: a{})", decision.subject, decision.account),
    }
}

/// Lifts operators made (on any node) since the last round: the engine may decide again
/// later, and each lift goes to the evidence log once.
pub(crate) async fn note_lifts(shared: &Arc<Shared>) {
    let lifts = match shared.store.take_unnoted_sentinel_lifts(LIFTS_PER_ROUND).await {
        Ok(lifts) => lifts,
        Err(e) => return warn!(error = %e, "sentinel: cannot read lifts"),
    };
    if lifts.is_empty() {
        return;
    }
    let mut records = Vec::new();
    for lift in lifts {
        if let Some(sentinel) = &shared.sentinel {
            sentinel.lifted(&lift.subject);
        }
        info!(subject = %lift.subject, action = %lift.action, "sentinel: lifted by an operator");
        records.push(rampart_sentinel::Record {
            decision: "lift".into(),
            subject: lift.subject.clone(),
            by: lift.lifted_by.clone().unwrap_or_else(|| "operator".into()),
            reason: format!("lifted {} (action {}, rule {})", lift.action, lift.id, lift.rule),
            signals: Default::default(),
            until_ms: None,
        });
    }
    append_evidence(shared, records).await;
}

/// Enforce retention: Sentinel's actions that ended, and what it saw, more than
/// `metadata_retention_days` ago go, and (when `evidence` says) evidence older than `evidence_retention_days`.
pub(crate) async fn purge(shared: &Shared, evidence: bool) {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let config = &shared.config.sentinel;
    let now = now_ms();
    if let Some(sentinel) = &shared.sentinel {
        sentinel.engine.lock().unwrap_or_else(|p| p.into_inner()).sweep(now);
    }
    let before = now.saturating_sub(config.metadata_retention_days.saturating_mul(DAY_MS));
    match shared.store.purge_sentinel_actions(before).await {
        Ok(0) => {}
        Ok(n) => info!(actions = n, "sentinel: dropped actions past retention"),
        Err(e) => warn!(error = %e, "sentinel: cannot purge old actions"),
    }
    match shared.store.purge_sentinel_sightings(before).await {
        Ok(0) => {}
        Ok(n) => info!(sightings = n, "sentinel: dropped sightings past retention"),
        Err(e) => warn!(error = %e, "sentinel: cannot purge old sightings"),
    }
    let Some(log) = shared.evidence.clone().filter(|_| evidence) else { return };
    let before = now.saturating_sub(config.evidence_retention_days.saturating_mul(DAY_MS));
    let pruned =
        tokio::task::spawn_blocking(move || log.lock().unwrap_or_else(|p| p.into_inner()).prune(before))
            .await;
    match pruned {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => info!(entries = n, "dropped evidence past retention"),
        Ok(Err(e)) => warn!(error = %e, "cannot apply retention to the evidence log"),
        Err(e) => warn!(error = %e, "the evidence retention pass stopped"),
    }
}

/// Append records to the evidence log, off the async workers (each entry is synced).
pub(crate) async fn append_evidence(shared: &Shared, records: Vec<rampart_sentinel::Record>) {
    let Some(evidence) = shared.evidence.clone() else { return };
    if records.is_empty() {
        return;
    }
    let written = tokio::task::spawn_blocking(move || {
        let mut log = evidence.lock().unwrap_or_else(|p| p.into_inner());
        records.into_iter().try_for_each(|record| log.append(now_ms(), record))
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(error = %e, "cannot write to the evidence log"),
        Err(e) => error!(error = %e, "the evidence log writer stopped"),
    }
}

async fn in_force(shared: &Shared, subject: &str) -> Result<Vec<SentinelAction>, ErrorBody> {
    shared.store.sentinel_actions_in_force(subject, now_ms()).await.map_err(crate::session::store_error)
}

fn until_text(action: &SentinelAction) -> String {
    let minutes = action.until.saturating_sub(now_ms()).div_ceil(60_000);
    format!("for {minutes} more minutes (rule {}; an operator can lift it)", action.rule)
}

/// Refuse a call from an account whose calling Sentinel stopped or slowed down, or that owes
/// proof of work for it (when Sentinel is on: off, nothing it decided earlier is enforced).
/// Returns the id of the answer that paid, if one did.
pub(crate) async fn check_calling(
    shared: &Shared,
    account: AccountId,
    callee: AccountId,
    answer: Option<&ChallengeAnswer>,
) -> Result<Option<[u8; 16]>, ErrorBody> {
    let Some(sentinel) = &shared.sentinel else { return Ok(None) };
    let actions = in_force(shared, &account_subject(account)).await?;
    // The strongest refusal first: a suspended account is told so, not handed work to do.
    let mut challenged = None;
    for action in &actions {
        match Action::parse(&action.action) {
            Some(a) if a.stops_calls() => {
                return Err(err(
                    ErrorCode::Forbidden,
                    format!("calling is suspended for this account {}", until_text(action)),
                ));
            }
            Some(Action::RequireChallenge) => challenged = Some(action),
            _ => {}
        }
    }
    for action in &actions {
        if Action::parse(&action.action) == Some(Action::SlowDown) {
            let placed = shared
                .store
                .calls_placed_since(account, now_ms().saturating_sub(60_000))
                .await
                .map_err(crate::session::store_error)?;
            if placed >= 1 {
                return Err(ErrorBody {
                    code: ErrorCode::RateLimited,
                    message: format!("this account may place one call a minute {}", until_text(action)),
                    retry_after_ms: 60_000,
                    challenge: None,
                });
            }
        }
    }
    let Some(action) = challenged else { return Ok(None) };
    let refused = match answer {
        None => format!("this account proves work for each call {}", until_text(action)),
        Some(answer) => match sentinel.pay(account, callee, answer) {
            Ok(id) => {
                shared.metrics.sentinel_challenge("passed");
                return Ok(Some(id));
            }
            Err(e) => {
                shared.metrics.sentinel_challenge("failed");
                format!("{e}; here is a new challenge")
            }
        },
    };
    shared.metrics.sentinel_challenge("issued");
    let challenge = sentinel.challenges.issue(
        account,
        callee,
        shared.config.sentinel.challenge_bits,
        now_ms(),
        &mut rand::rng(),
    );
    Err(ErrorBody {
        code: ErrorCode::ChallengeRequired,
        message: refused,
        retry_after_ms: 0,
        challenge: Some(challenge),
    })
}

/// Refuse a sign-in to a suspended account.
pub(crate) async fn check_sign_in(shared: &Shared, account: AccountId) -> Result<(), ErrorBody> {
    for action in in_force(shared, &account_subject(account)).await? {
        if Action::parse(&action.action) == Some(Action::SuspendAccount) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("this account is suspended {}", until_text(&action)),
            ));
        }
    }
    Ok(())
}

/// Refuse a registration from a network Sentinel blocked.
pub(crate) async fn check_registration(shared: &Shared, addr: std::net::IpAddr) -> Result<(), ErrorBody> {
    let subject = Subject::Network(Network::of(addr)).to_string();
    for action in in_force(shared, &subject).await? {
        if Action::parse(&action.action) == Some(Action::BlockNetwork) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("registrations from this network are paused {}", until_text(&action)),
            ));
        }
    }
    Ok(())
}
