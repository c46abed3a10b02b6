//! `rampart sim`: a population and an attack campaign run against Sentinel, in process and in
//! virtual time.
//!
//! What runs is the server's own Sentinel engine and policy (the same code `rampart serve`
//! runs, fed the same observations its request paths make) and, for every attacker call that
//! rings a target, the callee's call machine from `rampart-core` (the one every Rampart device
//! runs), fed the attacker's junk. What is modelled: people's behaviour, the server's call
//! schema (a malformed set-up is refused and counted as a misfit), and enforcement (a call from
//! an account whose calling is stopped is refused before it rings). Network, storage and
//! cryptography are not in the loop: a campaign of 10,000 users over hours of simulated time
//! then runs in seconds, and every figure is counted, not estimated.

// Indices here are the simulation's own: account numbers and list positions it made itself,
// within sizes `Scenario::check` bounds (at least one user, contact and network; hosting ranges
// only used when there are some). No input from a network reaches them.
#![allow(clippy::indexing_slicing)]

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use rampart_core::call::{
    CallEvent, CallId, CalleeCall, MediaKind, RingNotice, RingPolicy, SealedSignal, SignalKind,
};
use rampart_core::{AccountId, DeviceId};
use rampart_sentinel::investigate::{LinkKey, Seen, clusters};
use rampart_sentinel::{Network, Observation, Policy, Ranges, Sentinel, Subject};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

const MINUTE: u64 = 60_000;
/// Attacker accounts' ids start here (ordinary users and newcomers are below).
const ATTACKER_BASE: u64 = 1_000_000_000;
/// The must-show window: attacker accounts acted on within this long of the campaign's start.
const DETECTION_WINDOW_MS: u64 = 5 * MINUTE;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// A scenario file (TOML); the built-in default scenario (scenarios/default.toml) without it.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// A policy file instead of the built-in policy.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Another seed than the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
}

const DEFAULT_SCENARIO: &str = include_str!("../../../scenarios/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub duration_min: u64,
    #[serde(default)]
    pub hosting_ranges: Vec<String>,
    pub population: Population,
    pub campaign: Campaign,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    pub users: u64,
    pub contacts_per_user: u64,
    pub calls_per_user_per_day: f64,
    pub answer_rate: f64,
    pub decline_rate: f64,
    pub ring_everyone_share: f64,
    pub networks: u64,
    pub hosting_share: f64,
    pub newcomers: u64,
    pub newcomer_calls: u64,
    pub journalists: u64,
    pub journalist_calls: u64,
    pub journalist_answer_rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub start_min: u64,
    pub attackers: u64,
    pub registered_before_min: u64,
    pub networks: u64,
    pub targets: u64,
    pub calls_per_minute: f64,
    pub malformed_share: f64,
    pub blending: u64,
    pub blending_calls_per_hour: f64,
    pub target_answer_rate: f64,
}

impl Scenario {
    fn check(&self) -> Result<(), String> {
        let p = &self.population;
        let c = &self.campaign;
        let shares = [
            p.answer_rate,
            p.decline_rate,
            p.ring_everyone_share,
            p.hosting_share,
            p.journalist_answer_rate,
            c.malformed_share,
            c.target_answer_rate,
        ];
        if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || p.answer_rate + p.decline_rate > 1.0 {
            return Err("rates and shares are between 0 and 1 (answer_rate + decline_rate too)".into());
        }
        if p.users == 0 || p.users > 1_000_000 || c.attackers > 10_000 || c.targets > p.users {
            return Err(
                "1 to 1,000,000 users, at most 10,000 attackers, and no more targets than users".into()
            );
        }
        if p.networks == 0
            || p.networks > 65_536
            || p.contacts_per_user == 0
            || p.contacts_per_user >= p.users
        {
            return Err("1 to 65,536 networks, and at least one contact (fewer than the users)".into());
        }
        if self.duration_min == 0 || self.duration_min > 7 * 24 * 60 || c.start_min >= self.duration_min {
            return Err("a duration of up to a week, with the campaign starting inside it".into());
        }
        if !(0.0..=60.0).contains(&c.calls_per_minute) || !(0.0..=600.0).contains(&c.blending_calls_per_hour)
        {
            return Err("at most 60 calls a minute per attacker".into());
        }
        if c.blending > c.attackers || !(0.0..=1000.0).contains(&p.calls_per_user_per_day) {
            return Err(
                "no more blending attackers than attackers; at most 1,000 calls a day per user".into()
            );
        }
        Ok(())
    }
}

/// What happens, in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// An ordinary user (or a journalist, or a newcomer) calls one of their contacts.
    Call {
        caller: u64,
    },
    /// A newcomer registers.
    Register {
        account: u64,
    },
    /// An attacker account registers (before the campaign) or signs in (at its start).
    AttackerRegister {
        attacker: u64,
    },
    AttackerOnline {
        attacker: u64,
    },
    AttackerCall {
        attacker: u64,
    },
    Answered {
        caller: u64,
        callee: u64,
    },
    Declined {
        caller: u64,
        callee: u64,
    },
    Abandoned {
        caller: u64,
    },
}

struct User {
    contacts: Vec<u64>,
    addr: IpAddr,
    ring_everyone: bool,
}

struct Attacker {
    id: u64,
    addr: IpAddr,
    registered: bool,
    blending: bool,
    targets: Vec<u64>,
    next_target: usize,
}

/// The figures of one run.
#[derive(Debug, Default, serde::Serialize)]
pub struct Figures {
    pub scenario: String,
    pub seed: u64,
    pub users: u64,
    pub attackers: u64,
    pub targets: u64,
    pub simulated_min: u64,
    pub attackers_acted_on: u64,
    pub attackers_acted_on_within_5_min: u64,
    pub attackers_acted_on_before_start: u64,
    /// From the campaign's start to each attacker account's first action (0 when before it).
    pub time_to_detect_median_ms: Option<u64>,
    pub time_to_detect_max_ms: Option<u64>,
    pub ordinary_accounts: u64,
    pub ordinary_acted_on: u64,
    pub precision: f64,
    pub recall: f64,
    pub targets_rang: u64,
    pub targets_processed_attacker_data_before_accept: u64,
    pub targets_answered_attacker: u64,
    pub attacker_calls_tried: u64,
    pub attacker_calls_refused_by_sentinel: u64,
    pub malformed_setups_refused: u64,
    pub networks_blocked: u64,
    /// The operator's investigation at the end: clusters linked to accounts acted on, the
    /// attacker and ordinary accounts in them, and the targets they list for notices.
    pub clusters: u64,
    pub attackers_in_clusters: u64,
    pub ordinary_in_clusters: u64,
    pub targets_to_notify: u64,
    pub ordinary_calls: u64,
    pub ordinary_calls_refused: u64,
    pub observations: u64,
    pub wall_ms: u64,
    pub decisions_by_rule: std::collections::BTreeMap<String, u64>,
}

struct World {
    rng: StdRng,
    scenario: Scenario,
    sentinel: Sentinel,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    users: Vec<User>,
    journalists: HashSet<u64>,
    /// Calls left for newcomers and journalists (others call at their rate forever).
    calls_left: HashMap<u64, u64>,
    attackers: Vec<Attacker>,
    /// Until when each account may not call.
    calls_stopped: HashMap<u64, u64>,
    first_action: HashMap<u64, u64>,
    targets_rang: HashSet<u64>,
    targets_processed: HashSet<u64>,
    targets_answered: HashSet<u64>,
    /// Where each account registered and signed in from, for the investigation.
    seen: Vec<Seen>,
    ranges: Ranges,
    /// Each attacker's targets it tried to call, refused or not.
    aimed: HashMap<u64, HashSet<u64>>,
    figures: Figures,
}

fn residential(n: u64, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (n / 256) as u8, (n % 256) as u8, host))
}

fn exp_delay(rng: &mut StdRng, per_ms: f64) -> u64 {
    if per_ms <= 0.0 {
        return u64::MAX / 4;
    }
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-u.ln() / per_ms) as u64
}

impl World {
    fn new(scenario: Scenario, policy: Policy, seed: u64) -> anyhow::Result<Self> {
        let ranges =
            Ranges::parse(scenario.hosting_ranges.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
        let hosting: Vec<IpAddr> = scenario
            .hosting_ranges
            .iter()
            .filter_map(|r| r.split_once('/').and_then(|(a, _)| a.parse::<IpAddr>().ok()))
            .collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let p = scenario.population.clone();
        let c = scenario.campaign.clone();
        let total = p.users + p.newcomers;
        let host_in = |rng: &mut StdRng, base: IpAddr| match base {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], rng.random_range(1..255)))
            }
            v6 => v6,
        };
        let mut users = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let contacts = (0..p.contacts_per_user).map(|_| rng.random_range(1..=p.users)).collect();
            let addr = if !hosting.is_empty() && rng.random_bool(p.hosting_share) {
                let base = hosting[rng.random_range(0..hosting.len())];
                host_in(&mut rng, base)
            } else {
                residential(rng.random_range(0..p.networks), rng.random_range(1..255))
            };
            users.push(User { contacts, addr, ring_everyone: rng.random_bool(p.ring_everyone_share) });
        }
        // Targets: distinct ordinary users, shared out among the attackers.
        let mut targets: Vec<u64> = {
            let mut chosen = HashSet::new();
            while (chosen.len() as u64) < c.targets {
                chosen.insert(rng.random_range(1..=p.users));
            }
            chosen.into_iter().collect()
        };
        targets.sort_unstable();
        let mut attackers = Vec::new();
        for i in 0..c.attackers {
            let addr = if c.networks > 0 && !hosting.is_empty() {
                let base = hosting[(i % c.networks.min(hosting.len() as u64)) as usize];
                host_in(&mut rng, base)
            } else {
                // A residential network of its own, outside everyone else's.
                IpAddr::V4(Ipv4Addr::new(172, 16 + (i / 256) as u8, (i % 256) as u8, 9))
            };
            let mine =
                targets.iter().copied().skip(i as usize).step_by(c.attackers.max(1) as usize).collect();
            attackers.push(Attacker {
                id: ATTACKER_BASE + i,
                addr,
                registered: false,
                blending: i < c.blending,
                targets: mine,
                next_target: 0,
            });
        }
        let journalists = (1..=p.journalists.min(p.users)).collect();
        let sentinel = Sentinel::new(policy, ranges.clone());
        let mut world = World {
            rng,
            scenario,
            sentinel,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            users,
            journalists,
            calls_left: HashMap::new(),
            attackers,
            calls_stopped: HashMap::new(),
            first_action: HashMap::new(),
            targets_rang: HashSet::new(),
            targets_processed: HashSet::new(),
            targets_answered: HashSet::new(),
            seen: Vec::new(),
            ranges,
            aimed: HashMap::new(),
            figures: Figures::default(),
        };
        world.schedule_start();
        Ok(world)
    }

    fn at(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((time, self.seq, event)));
    }

    fn schedule_start(&mut self) {
        let p = self.scenario.population.clone();
        let c = self.scenario.campaign.clone();
        let duration = self.scenario.duration_min * MINUTE;
        // Everyone already here is online: their devices connect.
        for account in 1..=p.users {
            let addr = self.users[(account - 1) as usize].addr;
            self.observe(Observation::Connected {
                account,
                addr,
                registered_at_ms: None,
                device_registered_at_ms: None,
                unknown_client: None,
            });
        }
        let per_ms = p.calls_per_user_per_day / (24.0 * 60.0 * MINUTE as f64);
        for caller in 1..=p.users {
            if self.journalists.contains(&caller) {
                self.calls_left.insert(caller, p.journalist_calls);
                let gap = duration / p.journalist_calls.max(1);
                let first = self.rng.random_range(0..gap.max(1));
                self.at(first, Event::Call { caller });
            } else {
                let first = exp_delay(&mut self.rng, per_ms);
                self.at(first, Event::Call { caller });
            }
        }
        for i in 0..p.newcomers {
            let account = p.users + 1 + i;
            let when = self.rng.random_range(0..duration);
            self.at(when, Event::Register { account });
        }
        let start = c.start_min * MINUTE;
        for attacker in 0..c.attackers {
            if c.registered_before_min * MINUTE <= start {
                let spread = self.rng.random_range(0..10 * MINUTE);
                self.at(
                    start - c.registered_before_min * MINUTE + spread.min(c.registered_before_min * MINUTE),
                    Event::AttackerRegister { attacker },
                );
            }
            self.at(start, Event::AttackerOnline { attacker });
        }
    }

    fn observe(&mut self, observation: Observation) {
        self.figures.observations += 1;
        // What the server keeps for investigations (its sightings), as it would.
        if let Observation::Registered { account, addr, .. } | Observation::Connected { account, addr, .. } =
            &observation
        {
            let registration = matches!(observation, Observation::Registered { .. });
            let hosting = self.ranges.contains(*addr);
            for key in [LinkKey::Address(addr.to_string()), LinkKey::Network(Network::of(*addr).to_string())]
            {
                self.seen.push(Seen { account: *account, key, at_ms: self.now, registration, hosting });
            }
        }
        for decision in self.sentinel.observe(&observation, self.now) {
            *self.figures.decisions_by_rule.entry(decision.rule.clone()).or_default() += 1;
            match decision.subject {
                Subject::Account(account) => {
                    self.first_action.entry(account).or_insert(self.now);
                    if decision.action.stops_calls() {
                        self.calls_stopped.insert(account, decision.until_ms);
                    }
                }
                Subject::Network(_) => self.figures.networks_blocked += 1,
            }
        }
    }

    fn stopped(&self, account: u64) -> bool {
        self.calls_stopped.get(&account).is_some_and(|until| *until > self.now)
    }

    fn run(&mut self) {
        let end = self.scenario.duration_min * MINUTE;
        while let Some(Reverse((time, _, event))) = self.queue.pop() {
            if time > end {
                break;
            }
            self.now = time;
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        let p = self.scenario.population.clone();
        let c = self.scenario.campaign.clone();
        match event {
            Event::Call { caller } => {
                let journalist = self.journalists.contains(&caller);
                if let Some(left) = self.calls_left.get_mut(&caller) {
                    if *left == 0 {
                        return;
                    }
                    *left -= 1;
                }
                let contacts = &self.users[(caller - 1) as usize].contacts;
                // A journalist calls a new source each time; others call one of their contacts.
                let callee = if journalist {
                    self.rng.random_range(1..=p.users)
                } else {
                    contacts[self.rng.random_range(0..contacts.len())]
                };
                self.figures.ordinary_calls += 1;
                if self.stopped(caller) {
                    self.figures.ordinary_calls_refused += 1;
                } else {
                    self.observe(Observation::CallPlaced { caller, callee });
                    let answer = if journalist { p.journalist_answer_rate } else { p.answer_rate };
                    let roll: f64 = self.rng.random();
                    if roll < answer {
                        self.at(self.now + 8_000, Event::Answered { caller, callee });
                    } else if roll < answer + p.decline_rate {
                        self.at(self.now + 10_000, Event::Declined { caller, callee });
                    } else {
                        self.at(self.now + 40_000, Event::Abandoned { caller });
                    }
                }
                let next = if journalist {
                    self.scenario.duration_min * MINUTE / p.journalist_calls.max(1)
                } else if self.calls_left.contains_key(&caller) {
                    self.rng.random_range(5 * MINUTE..30 * MINUTE)
                } else {
                    exp_delay(&mut self.rng, p.calls_per_user_per_day / (24.0 * 60.0 * MINUTE as f64))
                };
                self.at(self.now.saturating_add(next), Event::Call { caller });
            }
            Event::Register { account } => {
                let addr = self.users[(account - 1) as usize].addr;
                self.observe(Observation::Registered { account, addr, number_prefix: "+1555".into() });
                self.calls_left.insert(account, p.newcomer_calls);
                let first = self.rng.random_range(MINUTE..20 * MINUTE);
                self.at(self.now + first, Event::Call { caller: account });
            }
            Event::AttackerRegister { attacker } => {
                let a = &mut self.attackers[attacker as usize];
                a.registered = true;
                let (account, addr) = (a.id, a.addr);
                self.observe(Observation::Registered { account, addr, number_prefix: "+4477".into() });
            }
            Event::AttackerOnline { attacker } => {
                let (account, addr, blending) = {
                    let a = &self.attackers[attacker as usize];
                    (a.id, a.addr, a.blending)
                };
                // The look-alike gives the official client's name: that much anyone copies.
                self.observe(Observation::Connected {
                    account,
                    addr,
                    registered_at_ms: None,
                    device_registered_at_ms: None,
                    unknown_client: None,
                });
                let first = if blending {
                    exp_delay(&mut self.rng, c.blending_calls_per_hour / (60.0 * MINUTE as f64))
                } else {
                    self.rng.random_range(0..MINUTE)
                };
                self.at(self.now.saturating_add(first), Event::AttackerCall { attacker });
            }
            Event::AttackerCall { attacker } => self.attacker_call(attacker),
            Event::Answered { caller, callee } => self.observe(Observation::CallAnswered { caller, callee }),
            Event::Declined { caller, callee } => self.observe(Observation::CallDeclined { caller, callee }),
            Event::Abandoned { caller } => self.observe(Observation::CallAbandoned { caller }),
        }
    }

    fn attacker_call(&mut self, attacker: u64) {
        let c = self.scenario.campaign.clone();
        let (account, blending, target) = {
            let a = &mut self.attackers[attacker as usize];
            if a.next_target >= a.targets.len() {
                return;
            }
            let target = a.targets[a.next_target];
            (a.id, a.blending, target)
        };
        let rate = if blending { c.blending_calls_per_hour / 60.0 } else { c.calls_per_minute };
        let next = exp_delay(&mut self.rng, rate / MINUTE as f64);
        self.at(self.now.saturating_add(next.max(1_000)), Event::AttackerCall { attacker });
        self.figures.attacker_calls_tried += 1;
        self.aimed.entry(account).or_default().insert(target);
        if self.stopped(account) {
            // Refused by the server before anything reaches the target: the attacker tries
            // the same target again later.
            self.figures.attacker_calls_refused_by_sentinel += 1;
            return;
        }
        self.attackers[attacker as usize].next_target += 1;
        if !blending && self.rng.random_bool(c.malformed_share) {
            // The server's call schema refuses it; nothing is sent to the target.
            self.figures.malformed_setups_refused += 1;
            self.observe(Observation::Misfit { account });
            return;
        }
        self.observe(Observation::CallPlaced { caller: account, callee: target });
        self.ring(account, target);
    }

    /// The call reaches the target's devices: the ring notice the server wrote, then whatever
    /// the attacker sends. The target's call machine decides what is opened.
    fn ring(&mut self, attacker: u64, target: u64) {
        let c = self.scenario.campaign.clone();
        let ring_everyone = self.users[(target - 1) as usize].ring_everyone;
        let policy = if ring_everyone { RingPolicy::Everyone } else { RingPolicy::Contacts };
        let notice = RingNotice {
            call: CallId(self.rng.random()),
            caller: AccountId(attacker),
            caller_device: DeviceId(1),
            media: MediaKind::Audio,
            sent_at_ms: self.now,
        };
        let mut machine = CalleeCall::on_ring(notice, policy, false, self.now);
        // The look-alike client's payloads: a "connect", session updates, an offer and an
        // answer, all junk, sent while the phone rings.
        for kind in [
            SignalKind::Connect,
            SignalKind::Update,
            SignalKind::Offer,
            SignalKind::Answer,
            SignalKind::Candidates,
        ] {
            let junk: Vec<u8> = (0..64).map(|_| self.rng.random()).collect();
            machine.handle_signal(SealedSignal::new(kind, junk));
        }
        let mut rang = false;
        while let Some(event) = machine.poll_event() {
            match event {
                CallEvent::Ring(_) => rang = true,
                // Anything released, fetched or started before accept means the device opened
                // something of the attacker's.
                CallEvent::Released(_)
                | CallEvent::FetchOffer
                | CallEvent::FetchRelayCredentials
                | CallEvent::EnableMedia(_) => {
                    self.targets_processed.insert(target);
                }
                CallEvent::Send(_) | CallEvent::Ended(_) => {}
            }
        }
        if !rang {
            self.at(self.now + 30_000, Event::Abandoned { caller: attacker });
            return;
        }
        self.targets_rang.insert(target);
        if self.rng.random_bool(c.target_answer_rate) {
            // The target picked up: from here the device opens the caller's offer, with the
            // user's consent. Counted apart.
            self.targets_answered.insert(target);
            self.at(self.now + 8_000, Event::Answered { caller: attacker, callee: target });
        } else {
            self.at(self.now + 30_000, Event::Abandoned { caller: attacker });
        }
    }

    fn figures(mut self, wall_ms: u64, seed: u64) -> Figures {
        let p = &self.scenario.population;
        let c = &self.scenario.campaign;
        let start = c.start_min * MINUTE;
        let attacker_ids: HashSet<u64> = self.attackers.iter().map(|a| a.id).collect();
        let mut detect: Vec<u64> = Vec::new();
        let mut before = 0;
        let mut within = 0;
        for id in &attacker_ids {
            if let Some(at) = self.first_action.get(id) {
                detect.push(at.saturating_sub(start));
                before += u64::from(*at < start);
                within += u64::from(*at <= start + DETECTION_WINDOW_MS);
            }
        }
        detect.sort_unstable();
        let ordinary_acted = self.first_action.keys().filter(|a| !attacker_ids.contains(a)).count() as u64;
        let acted = detect.len() as u64;
        let f = &mut self.figures;
        f.scenario = self.scenario.name.clone();
        f.seed = seed;
        f.users = p.users + p.newcomers;
        f.attackers = c.attackers;
        f.targets = c.targets;
        f.simulated_min = self.scenario.duration_min;
        f.attackers_acted_on = acted;
        f.attackers_acted_on_within_5_min = within;
        f.attackers_acted_on_before_start = before;
        f.time_to_detect_median_ms = detect.get(detect.len() / 2).copied();
        f.time_to_detect_max_ms = detect.last().copied();
        f.ordinary_accounts = p.users + p.newcomers;
        f.ordinary_acted_on = ordinary_acted;
        f.precision =
            if acted + ordinary_acted == 0 { 1.0 } else { acted as f64 / (acted + ordinary_acted) as f64 };
        f.recall = if c.attackers == 0 { 1.0 } else { acted as f64 / c.attackers as f64 };
        f.targets_rang = self.targets_rang.len() as u64;
        f.targets_processed_attacker_data_before_accept = self.targets_processed.len() as u64;
        f.targets_answered_attacker = self.targets_answered.len() as u64;
        // The investigation an operator runs at the end, with the server's own grouping rules.
        let seeds: BTreeSet<u64> = self.first_action.keys().copied().collect();
        let aimed_at: BTreeSet<u64> = self.aimed.values().flatten().copied().collect();
        let clusters = clusters(&seeds, &self.seen, &aimed_at);
        let clustered: BTreeSet<u64> = clusters.iter().flatten().copied().collect();
        f.clusters = clusters.len() as u64;
        f.attackers_in_clusters = clustered.iter().filter(|a| attacker_ids.contains(a)).count() as u64;
        f.ordinary_in_clusters = clustered.len() as u64 - f.attackers_in_clusters;
        f.targets_to_notify =
            clustered.iter().filter_map(|a| self.aimed.get(a)).flatten().collect::<BTreeSet<_>>().len()
                as u64;
        f.wall_ms = wall_ms;
        std::mem::take(f)
    }
}

/// Run a scenario and return its figures.
pub fn simulate(scenario: Scenario, policy: Policy, seed: u64) -> anyhow::Result<Figures> {
    scenario.check().map_err(|why| anyhow::anyhow!("the scenario: {why}"))?;
    let started = Instant::now();
    let mut world = World::new(scenario, policy, seed)?;
    world.run();
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(world.figures(wall_ms, seed))
}

fn minutes(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms < MINUTE => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{:.1} min", ms as f64 / MINUTE as f64),
        None => "-".into(),
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.3}%", part as f64 * 100.0 / whole as f64)
}

pub fn run(args: SimArgs, json: bool) -> anyhow::Result<()> {
    let text = match &args.scenario {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => DEFAULT_SCENARIO.to_owned(),
    };
    let scenario: Scenario = toml::from_str(&text).context("the scenario does not parse")?;
    let policy = match &args.policy {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Policy::parse(&text).with_context(|| format!("{} cannot be used", path.display()))?
        }
        None => Policy::default_policy(),
    };
    let seed = args.seed.unwrap_or(scenario.seed);
    let f = simulate(scenario, policy, seed)?;
    if f.observations == 0 {
        anyhow::bail!("the scenario produced no events: nothing was measured");
    }
    if json {
        outln!("{}", serde_json::json!({ "ok": true, "figures": f }));
        return Ok(());
    }
    outln!(
        "Scenario {} (seed {}): {} users, {} attacker accounts, {} targets, {} simulated minutes.",
        f.scenario,
        f.seed,
        f.users,
        f.attackers,
        f.targets,
        f.simulated_min
    );
    outln!(
        "  attacker accounts acted on     {} of {} ({}); within 5 min of the campaign's start: {} ({}); before it: {}",
        f.attackers_acted_on,
        f.attackers,
        percent(f.attackers_acted_on, f.attackers),
        f.attackers_acted_on_within_5_min,
        percent(f.attackers_acted_on_within_5_min, f.attackers),
        f.attackers_acted_on_before_start
    );
    outln!(
        "  time to detect                 median {}, slowest {}",
        minutes(f.time_to_detect_median_ms),
        minutes(f.time_to_detect_max_ms)
    );
    outln!(
        "  ordinary accounts acted on     {} of {} ({})",
        f.ordinary_acted_on,
        f.ordinary_accounts,
        percent(f.ordinary_acted_on, f.ordinary_accounts)
    );
    outln!("  precision, recall              {:.4}, {:.4}", f.precision, f.recall);
    outln!("  targets that rang              {} of {}", f.targets_rang, f.targets);
    outln!(
        "  targets whose device processed attacker data before accept   {}",
        f.targets_processed_attacker_data_before_accept
    );
    outln!("  targets who picked up an attacker's call (opening its offer)  {}", f.targets_answered_attacker);
    outln!(
        "  attacker calls                 {} tried, {} refused by Sentinel, {} malformed set-ups refused by the call schema",
        f.attacker_calls_tried,
        f.attacker_calls_refused_by_sentinel,
        f.malformed_setups_refused
    );
    outln!(
        "  ordinary calls                 {} placed, {} refused",
        f.ordinary_calls,
        f.ordinary_calls_refused
    );
    outln!("  networks blocked               {}", f.networks_blocked);
    outln!(
        "  investigation                  {} clusters holding {} of {} attacker accounts and {} ordinary ones; {} targets listed for notices",
        f.clusters,
        f.attackers_in_clusters,
        f.attackers,
        f.ordinary_in_clusters,
        f.targets_to_notify
    );
    for (rule, n) in &f.decisions_by_rule {
        outln!("  decisions by {rule:<28} {n}");
    }
    outln!(
        "  cost                           {} observations in {} ms of wall time ({:.1} µs each, policy included)",
        f.observations,
        f.wall_ms,
        f.wall_ms as f64 * 1000.0 / f.observations as f64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn small() -> Scenario {
        let mut s: Scenario = toml::from_str(DEFAULT_SCENARIO).unwrap();
        s.population.users = 2_000;
        s.population.newcomers = 40;
        s.campaign.targets = 300;
        s.duration_min = 90;
        s
    }

    #[test]
    fn the_campaign_is_stopped_and_the_population_left_alone() {
        let f = simulate(small(), Policy::default_policy(), 1).unwrap();
        assert_eq!(f.attackers_acted_on, 20, "{f:?}");
        assert_eq!(f.targets_processed_attacker_data_before_accept, 0, "{f:?}");
        assert!(f.ordinary_acted_on <= 2, "{f:?}");
        assert!(f.observations > 2_000, "{f:?}");
        // The investigation finds the campaign's accounts, and lists targets to notify.
        assert_eq!(f.attackers_in_clusters, 20, "{f:?}");
        // Ordinary accounts there: the few acted on by mistake, and newcomers who registered
        // from their networks minutes apart; a handful of 2,040.
        assert!(f.ordinary_in_clusters <= 10, "{f:?}");
        assert!(f.targets_to_notify > 0, "{f:?}");
    }

    #[test]
    fn without_a_policy_nothing_is_stopped_and_the_figures_say_so() {
        let f = simulate(small(), Policy::parse("").unwrap(), 1).unwrap();
        assert_eq!(f.attackers_acted_on, 0);
        assert_eq!(f.attacker_calls_refused_by_sentinel, 0);
        assert!(f.targets_rang > 20, "{f:?}");
        // Still nothing opened before accept: that is the call machine's, not Sentinel's.
        assert_eq!(f.targets_processed_attacker_data_before_accept, 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let a = simulate(small(), Policy::default_policy(), 5).unwrap();
        let b = simulate(small(), Policy::default_policy(), 5).unwrap();
        assert_eq!(
            (a.observations, a.targets_rang, a.ordinary_calls),
            (b.observations, b.targets_rang, b.ordinary_calls)
        );
    }

    #[test]
    fn bad_scenarios_are_refused() {
        let mut s = small();
        s.campaign.targets = s.population.users + 1;
        assert!(simulate(s, Policy::default_policy(), 1).is_err());
        let mut s = small();
        s.population.answer_rate = 1.5;
        assert!(simulate(s, Policy::default_policy(), 1).is_err());
    }
}
