//! The engine: observations in, decisions out, as events happen.
//!
//! [`Sentinel::observe`] updates the signals of the accounts an observation touches, runs the
//! policy on them, and returns the decisions that are new: an action already decided on a
//! subject is not decided again until it expires. What a decision does (refusing calls, a
//! sign-in, a registration), where it is kept and how an operator lifts it is the server's.

use std::collections::HashMap;
use std::fmt;

use crate::policy::{Action, Policy};
use crate::signals::{Account, Network, Observation, Ranges, Signals, Snapshot};

/// Who an action is taken against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Account(Account),
    Network(Network),
}

impl fmt::Display for Subject {
    /// `a42` for an account (as the server's logs name accounts), `net:203.0.113.0/24` for a
    /// network: the text the store and the evidence log keep.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Account(a) => write!(f, "a{a}"),
            Subject::Network(n) => write!(f, "net:{n}"),
        }
    }
}

/// A new decision of the policy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub subject: Subject,
    /// The account whose signals triggered it (for a network, one account registered there).
    pub account: Account,
    pub action: Action,
    pub rule: String,
    pub reason: String,
    pub until_ms: u64,
    /// The account's signals when the rule matched.
    pub signals: Snapshot,
}

/// Decisions remembered at once, at most (they expire; beyond it the oldest go).
const MAX_DECIDED: usize = 100_000;

#[derive(Debug)]
pub struct Sentinel {
    signals: Signals,
    policy: Policy,
    /// Until when each (subject, action) was decided.
    decided: HashMap<(Subject, Action), u64>,
    observations: u64,
}

impl Sentinel {
    pub fn new(policy: Policy, hosting: Ranges) -> Self {
        Self { signals: Signals::new(hosting), policy, decided: HashMap::new(), observations: 0 }
    }

    /// Take one observation at `now_ms`; returns the new decisions.
    pub fn observe(&mut self, observation: &Observation, now_ms: u64) -> Vec<Decision> {
        self.observations += 1;
        let mut decisions = Vec::new();
        for account in self.signals.observe(observation, now_ms) {
            let snapshot = self.signals.snapshot(account, now_ms);
            for verdict in self.policy.evaluate(&snapshot) {
                let subject = match verdict.action {
                    Action::BlockNetwork => match self.signals.registered_from(account) {
                        Some(network) => Subject::Network(network),
                        None => continue,
                    },
                    _ => Subject::Account(account),
                };
                let key = (subject, verdict.action);
                if self.decided.get(&key).is_some_and(|until| *until > now_ms) {
                    continue;
                }
                if self.decided.len() >= MAX_DECIDED {
                    self.decided.retain(|_, until| *until > now_ms);
                    // Still full: the decision that ends soonest makes room (a new decision is
                    // never dropped for lack of it).
                    if self.decided.len() >= MAX_DECIDED
                        && let Some(soonest) =
                            self.decided.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k)
                    {
                        self.decided.remove(&soonest);
                    }
                }
                let until_ms = now_ms.saturating_add(verdict.duration_ms);
                self.decided.insert(key, until_ms);
                decisions.push(Decision {
                    subject,
                    account,
                    action: verdict.action,
                    rule: verdict.rule,
                    reason: verdict.reason,
                    until_ms,
                    signals: snapshot.clone(),
                });
            }
        }
        decisions
    }

    /// An operator lifted the actions on `subject`: they may be decided again later (the
    /// server keeps the pardon that stops that happening at once).
    pub fn lifted(&mut self, subject: Subject) {
        self.decided.retain(|(s, _), _| *s != subject);
    }

    /// A decision could not be carried out (kept): it may be taken again.
    pub fn not_taken(&mut self, subject: Subject, action: crate::policy::Action) {
        self.decided.remove(&(subject, action));
    }

    /// Forget signals older than every window (see [`Signals::sweep`]).
    pub fn sweep(&mut self, now_ms: u64) {
        self.signals.sweep(now_ms);
        self.decided.retain(|_, until| *until > now_ms);
    }

    /// [`Sentinel::lifted`] for a subject given as text (as the store keeps it).
    pub fn lifted_text(&mut self, subject: &str) {
        self.decided.retain(|(s, _), _| s.to_string() != subject);
    }

    /// The signals of one account now (for the operator).
    pub fn snapshot(&self, account: Account, now_ms: u64) -> Snapshot {
        self.signals.snapshot(account, now_ms)
    }

    pub fn observations(&self) -> u64 {
        self.observations
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn addr(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_prober_is_suspended_once_and_an_innocent_callee_is_not() {
        let mut s = Sentinel::new(Policy::default_policy(), Ranges::default());
        let mut decisions = Vec::new();
        for i in 0..10 {
            decisions.extend(s.observe(&Observation::Misfit { account: 7 }, 1_000 + i));
            // The victim is called again and again: that is not the victim's behaviour.
            decisions.extend(s.observe(&Observation::CallPlaced { caller: 7, callee: 99 }, 1_000 + i));
        }
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0].subject, Subject::Account(7));
        assert_eq!(decisions[0].action, Action::SuspendCalling);
        assert_eq!(decisions[0].rule, "probing_call_setup");
        assert!(decisions[0].signals.misfits_10m >= 3);
        assert_eq!(s.snapshot(99, 2_000), Snapshot::default());
        // Decided again only after it expired, or after a lift.
        s.lifted(Subject::Account(7));
        assert_eq!(s.observe(&Observation::Misfit { account: 7 }, 3_000).len(), 1);
    }

    #[test]
    fn a_registration_burst_from_a_hosting_network_blocks_that_network() {
        let mut s = Sentinel::new(Policy::default_policy(), Ranges::parse(["198.51.100.0/24"]).unwrap());
        let mut decisions = Vec::new();
        for a in 0..12 {
            let obs = Observation::Registered {
                account: a,
                addr: addr("198.51.100.20"),
                number_prefix: "+1".into(),
            };
            decisions.extend(s.observe(&obs, 1_000 + a));
        }
        let blocks: Vec<_> = decisions.iter().filter(|d| d.action == Action::BlockNetwork).collect();
        assert_eq!(blocks.len(), 1, "{decisions:?}");
        assert_eq!(blocks[0].subject.to_string(), "net:198.51.100.0/24");
        // And every account of the burst, the first four too, waits for an operator to call.
        let held: std::collections::BTreeSet<u64> =
            decisions.iter().filter(|d| d.action == Action::RequireOperator).map(|d| d.account).collect();
        assert_eq!(held, (0..12).collect(), "{decisions:?}");
        // Not from a hosting range: a conference's Wi-Fi registering many people is fine.
        let mut s = Sentinel::new(Policy::default_policy(), Ranges::default());
        for a in 0..12 {
            let obs =
                Observation::Registered { account: a, addr: addr("192.0.2.20"), number_prefix: "+1".into() };
            assert!(s.observe(&obs, 1_000 + a).is_empty());
        }
    }
}
