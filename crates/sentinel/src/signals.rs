//! Signals: what the server sees of each account's behaviour, counted online over sliding
//! windows, from metadata only (who called whom and how it went, what was refused, where
//! accounts come from). Never content: the server has none.
//!
//! Everything is in memory and bounded: per account a few windows of counters and a capped
//! set of callees; per network a window of registrations. [`Signals::observe`] takes one
//! [`Observation`] at a time with the time it happened, so the same code runs in the server,
//! in the simulator's virtual time and in tests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

/// A minute, in milliseconds.
pub const MINUTE_MS: u64 = 60_000;
/// Distinct callees are counted exactly up to this many per window, then reported as this.
pub const MAX_DISTINCT: usize = 256;
/// Accounts tracked at once, at most; the least recently seen go first beyond it.
pub const MAX_ACCOUNTS: usize = 1_000_000;

/// An account, by the server's id.
pub type Account = u64;

/// A source network: an IPv4 /24 or an IPv6 /48, the unit a hosting provider hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network(pub [u8; 7]);

impl Network {
    pub fn of(addr: IpAddr) -> Self {
        let mut key = [0u8; 7];
        match addr {
            IpAddr::V4(v4) => {
                key[0] = 4;
                key[1..4].copy_from_slice(&v4.octets()[..3]);
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => return Self::of(IpAddr::V4(v4)),
                None => {
                    key[0] = 6;
                    key[1..7].copy_from_slice(&v6.octets()[..6]);
                }
            },
        }
        Self(key)
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = self.0;
        if k[0] == 4 {
            write!(f, "{}.{}.{}.0/24", k[1], k[2], k[3])
        } else {
            let groups: Vec<String> = k[1..7]
                .chunks_exact(2)
                .map(|c| {
                    format!(
                        "{:x}",
                        u16::from_be_bytes([c.first().copied().unwrap_or(0), c.last().copied().unwrap_or(0)])
                    )
                })
                .collect();
            write!(f, "{}::/48", groups.join(":"))
        }
    }
}

/// One thing the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A new account (its first device verified its number).
    Registered {
        account: Account,
        addr: IpAddr,
        number_prefix: String,
    },
    /// A device of an account signed in from an address. `registered_at_ms` is when the
    /// account was created, as the store keeps it: every node learns an account's age this
    /// way, whoever saw it register, and after a restart.
    Connected {
        account: Account,
        addr: IpAddr,
        registered_at_ms: Option<u64>,
        /// When the device that signed in was registered or linked: a campaign may run on old
        /// accounts (bought, or taken over) from devices linked minutes ago.
        device_registered_at_ms: Option<u64>,
        /// The software name the device gave, when it is not one of Rampart's own (empty when
        /// it gave none); `None` for Rampart's own clients.
        unknown_client: Option<String>,
    },
    CallPlaced {
        caller: Account,
        callee: Account,
    },
    CallAnswered {
        caller: Account,
        callee: Account,
    },
    CallDeclined {
        caller: Account,
        callee: Account,
    },
    /// The caller hung up before anyone answered.
    CallAbandoned {
        caller: Account,
    },
    /// A request of this account's did not fit the protocol (a call set-up that does not fit
    /// the call schema, say).
    Misfit {
        account: Account,
    },
    /// `blocker` blocked `blocked`.
    Blocked {
        blocked: Account,
        blocker: Account,
    },
    /// An account asked who a number or username is.
    Lookup {
        account: Account,
    },
    /// An account claimed key packages of other devices, `count` of them: what starting
    /// conversations with people (and then calling them) takes first.
    KeyPackagesClaimed {
        account: Account,
        count: u32,
    },
    /// `inviter` brought `invitee` into a conversation (a 1:1 or a group) it was not in: on
    /// the invitee's device that is a message request, unless they are contacts.
    Invited {
        inviter: Account,
        invitee: Account,
    },
    /// A device of the account did something Rampart's own client never does: part of a
    /// behaviour fingerprint, from the order and timing of its requests.
    Quirk {
        account: Account,
        quirk: Quirk,
    },
}

/// Behaviour that tells a client apart from Rampart's own, seen by the server without any
/// content: the order and timing of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quirk {
    /// A call set-up for a call the device had not asked relay credentials for: Rampart's
    /// client always asks first (it allocates its relay before it writes the offer). A
    /// look-alike that goes straight to the set-up does not.
    SetUpWithoutRelay,
    /// The caller hung up within [`AT_ONCE_MS`] of placing the call: before a person could
    /// have heard it ring. Scripts do this; people rarely do.
    HungUpAtOnce,
}

/// A hang-up this soon after placing the call is "at once".
pub const AT_ONCE_MS: u64 = 2_000;

impl Quirk {
    pub fn as_str(self) -> &'static str {
        match self {
            Quirk::SetUpWithoutRelay => "set-up without relay",
            Quirk::HungUpAtOnce => "hung up at once",
        }
    }
}

/// Counters over a sliding window made of `N` buckets of `width_ms` each.
#[derive(Debug, Clone)]
struct Window<const N: usize> {
    width_ms: u64,
    /// The bucket index (time / width) of the newest bucket.
    newest: u64,
    counts: [u32; N],
}

impl<const N: usize> Window<N> {
    fn new(width_ms: u64) -> Self {
        Self { width_ms, newest: 0, counts: [0; N] }
    }

    fn advance(&mut self, now_ms: u64) {
        let index = now_ms / self.width_ms;
        if index <= self.newest {
            return;
        }
        let gap = index - self.newest;
        if gap >= N as u64 {
            self.counts = [0; N];
        } else {
            self.counts.rotate_left(gap as usize);
            for c in self.counts.iter_mut().rev().take(gap as usize) {
                *c = 0;
            }
        }
        self.newest = index;
    }

    fn add(&mut self, now_ms: u64, n: u32) {
        self.advance(now_ms);
        if let Some(last) = self.counts.last_mut() {
            *last = last.saturating_add(n);
        }
    }

    fn total(&self, now_ms: u64) -> u64 {
        let index = now_ms / self.width_ms;
        let age = index.saturating_sub(self.newest);
        if age >= N as u64 {
            return 0;
        }
        // Buckets that have fallen out of the window since the last add are skipped.
        self.counts.iter().skip(age as usize).map(|&c| u64::from(c)).sum()
    }
}

/// Ten minutes in one-minute buckets.
type Recent = Window<10>;
/// A day in one-hour buckets.
type Daily = Window<24>;

fn recent() -> Recent {
    Window::new(MINUTE_MS)
}

fn daily() -> Daily {
    Window::new(60 * MINUTE_MS)
}

/// Distinct values seen in a window, counted exactly up to [`MAX_DISTINCT`].
#[derive(Debug, Clone, Default)]
struct Distinct {
    /// (value, when last seen)
    seen: HashMap<Account, u64>,
}

impl Distinct {
    fn add(&mut self, value: Account, now_ms: u64, window_ms: u64) {
        self.seen.retain(|_, at| now_ms.saturating_sub(*at) < window_ms);
        if self.seen.len() < MAX_DISTINCT || self.seen.contains_key(&value) {
            self.seen.insert(value, now_ms);
        }
    }

    fn count(&self, now_ms: u64, window_ms: u64) -> u64 {
        self.seen.values().filter(|at| now_ms.saturating_sub(**at) < window_ms).count() as u64
    }

    /// Whether `value` was seen in the window (1) or not (0).
    fn count_value(&self, value: Account, now_ms: u64, window_ms: u64) -> u64 {
        u64::from(self.seen.get(&value).is_some_and(|at| now_ms.saturating_sub(*at) < window_ms))
    }
}

/// What is kept of one account.
#[derive(Debug, Clone)]
struct AccountState {
    registered_at: Option<u64>,
    /// When the device of its latest sign-in was registered or linked.
    device_registered_at: Option<u64>,
    registered_from: Option<Network>,
    number_prefix: Option<String>,
    last_seen: u64,
    placed: Recent,
    placed_day: Daily,
    answered: Recent,
    answered_day: Daily,
    declined: Recent,
    abandoned: Recent,
    misfits: Recent,
    /// People who blocked the account after it called them.
    blocked_by: Distinct,
    lookups: Recent,
    key_packages: Recent,
    callees: Distinct,
    /// Accounts it brought into conversations (first messages, group invitations).
    invited: Distinct,
    /// Networks the account's devices connected from (a few).
    networks: HashSet<Network>,
    /// Its latest sign-in named software that is not Rampart's own.
    unknown_client: bool,
    setups_out_of_order: Recent,
    hung_up_at_once: Recent,
}

impl AccountState {
    fn new(now_ms: u64) -> Self {
        Self {
            registered_at: None,
            device_registered_at: None,
            registered_from: None,
            number_prefix: None,
            last_seen: now_ms,
            placed: recent(),
            placed_day: daily(),
            answered: recent(),
            answered_day: daily(),
            declined: recent(),
            abandoned: recent(),
            misfits: recent(),
            blocked_by: Distinct::default(),
            lookups: recent(),
            key_packages: recent(),
            callees: Distinct::default(),
            invited: Distinct::default(),
            networks: HashSet::new(),
            unknown_client: false,
            setups_out_of_order: recent(),
            hung_up_at_once: recent(),
        }
    }
}

/// Networks kept per account, at most.
const MAX_NETWORKS: usize = 8;
/// An hour.
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// What a network did: registrations over the last hour, and which accounts came from it.
#[derive(Debug, Clone)]
struct NetworkState {
    registrations: Window<12>,
    accounts: VecDeque<Account>,
}

/// Accounts remembered per network, at most.
const MAX_NETWORK_ACCOUNTS: usize = 64;

/// An account's signals at one moment: what policies are written against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Seconds since the account registered; `None` when it registered before the server
    /// started watching (an old account).
    pub account_age_s: Option<u64>,
    /// Seconds since the device of its latest sign-in was registered or linked (`None` when
    /// unknown).
    pub device_age_s: Option<u64>,
    pub calls_placed_10m: u64,
    pub calls_placed_24h: u64,
    pub calls_answered_10m: u64,
    pub calls_answered_24h: u64,
    pub calls_declined_10m: u64,
    pub calls_abandoned_10m: u64,
    /// Distinct accounts called in the last day (exact up to [`MAX_DISTINCT`]).
    pub distinct_callees_24h: u64,
    pub misfits_10m: u64,
    pub blocked_by_24h: u64,
    pub lookups_10m: u64,
    /// Key packages of other devices it claimed.
    pub key_packages_claimed_10m: u64,
    /// Registrations in the last hour of numbers with the same prefix as the account's (the
    /// country code and the next digits).
    pub prefix_registrations_1h: u64,
    /// Registrations in the last hour from the network the account registered from.
    pub network_registrations_1h: u64,
    /// Whether that network is in the operator's list of hosting and datacenter ranges.
    pub network_is_hosting: bool,
    /// Other accounts seen on the networks this account used.
    pub accounts_sharing_networks: u64,
    /// Its latest sign-in named software that is not Rampart's own (or none): a look-alike
    /// client that does not bother to pretend. A claim, so only ever one signal among others.
    pub client_is_unknown: bool,
    /// Call set-ups not preceded by what Rampart's client always does first ([`Quirk`]).
    pub setups_out_of_order_10m: u64,
    /// Calls hung up within two seconds of placing them ([`Quirk::HungUpAtOnce`]).
    pub calls_hung_up_at_once_10m: u64,
    /// Distinct accounts it brought into conversations in the last day: first messages and
    /// group invitations, which are requests on the other side unless they are contacts.
    pub accounts_invited_24h: u64,
}

impl Snapshot {
    /// The signals by name, as the evidence log records them (and policies read them).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("account_age_s", self.account_age_s.unwrap_or(u64::MAX)),
            ("device_age_s", self.device_age_s.unwrap_or(u64::MAX)),
            ("calls_placed_10m", self.calls_placed_10m),
            ("calls_placed_24h", self.calls_placed_24h),
            ("calls_answered_10m", self.calls_answered_10m),
            ("calls_answered_24h", self.calls_answered_24h),
            ("calls_declined_10m", self.calls_declined_10m),
            ("calls_abandoned_10m", self.calls_abandoned_10m),
            ("distinct_callees_24h", self.distinct_callees_24h),
            ("misfits_10m", self.misfits_10m),
            ("blocked_by_24h", self.blocked_by_24h),
            ("lookups_10m", self.lookups_10m),
            ("key_packages_claimed_10m", self.key_packages_claimed_10m),
            ("prefix_registrations_1h", self.prefix_registrations_1h),
            ("network_registrations_1h", self.network_registrations_1h),
            ("network_is_hosting", u64::from(self.network_is_hosting)),
            ("accounts_sharing_networks", self.accounts_sharing_networks),
            ("client_is_unknown", u64::from(self.client_is_unknown)),
            ("setups_out_of_order_10m", self.setups_out_of_order_10m),
            ("calls_hung_up_at_once_10m", self.calls_hung_up_at_once_10m),
            ("accounts_invited_24h", self.accounts_invited_24h),
        ]
    }
}

/// The names a policy may use, with what each means (for `--help`-like listings and errors).
pub const SIGNAL_NAMES: [&str; 21] = [
    "account_age_s",
    "device_age_s",
    "calls_placed_10m",
    "calls_placed_24h",
    "calls_answered_10m",
    "calls_answered_24h",
    "calls_declined_10m",
    "calls_abandoned_10m",
    "distinct_callees_24h",
    "misfits_10m",
    "blocked_by_24h",
    "lookups_10m",
    "key_packages_claimed_10m",
    "prefix_registrations_1h",
    "network_registrations_1h",
    "network_is_hosting",
    "accounts_sharing_networks",
    "client_is_unknown",
    "setups_out_of_order_10m",
    "calls_hung_up_at_once_10m",
    "accounts_invited_24h",
];

/// A list of address ranges (hosting providers, datacenters) given by the operator.
#[derive(Debug, Clone, Default)]
pub struct Ranges(Vec<(IpAddr, u8)>);

impl Ranges {
    /// Parse `a.b.c.d/n` and `x::/n` ranges; the first bad one is the error.
    pub fn parse<'a>(ranges: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Vec::new();
        for range in ranges {
            let (addr, bits) = range.split_once('/').ok_or_else(|| format!("{range}: not ADDRESS/BITS"))?;
            let addr: IpAddr = addr.parse().map_err(|_| format!("{range}: not an address"))?;
            let bits: u8 = bits.parse().map_err(|_| format!("{range}: not a prefix length"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if bits > max {
                return Err(format!("{range}: a prefix longer than {max} bits"));
            }
            out.push((addr, bits));
        }
        Ok(Self(out))
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        self.0.iter().any(|(range, bits)| match (range, addr) {
            (IpAddr::V4(r), IpAddr::V4(a)) => prefix_eq(&r.octets(), &a.octets(), *bits),
            (IpAddr::V6(r), IpAddr::V6(a)) => prefix_eq(&r.octets(), &a.octets(), *bits),
            _ => false,
        })
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a.get(..whole) != b.get(..whole) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(whole), b.get(whole)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

/// Every account's and network's signals.
#[derive(Debug, Default)]
pub struct Signals {
    accounts: HashMap<Account, AccountState>,
    networks: HashMap<Network, NetworkState>,
    hosting: Ranges,
    /// Networks in the hosting list, as seen (a registration's address is not kept).
    hosting_networks: HashSet<Network>,
    /// Registrations per number prefix over the last hour.
    prefixes: HashMap<String, Window<12>>,
}

/// Number prefixes tracked at once, at most (there are a few thousand in the world's plans).
const MAX_PREFIXES: usize = 100_000;

impl Signals {
    pub fn new(hosting: Ranges) -> Self {
        Self { hosting, ..Self::default() }
    }

    /// Take one observation. Returns the accounts whose signals changed (whom a policy
    /// should look at again).
    pub fn observe(&mut self, observation: &Observation, now_ms: u64) -> Vec<Account> {
        match observation {
            Observation::Registered { account, addr, number_prefix } => {
                let network = Network::of(*addr);
                if self.hosting.contains(*addr) {
                    self.hosting_networks.insert(network);
                }
                let net = self.networks.entry(network).or_insert_with(|| NetworkState {
                    registrations: Window::new(5 * MINUTE_MS),
                    accounts: VecDeque::new(),
                });
                net.registrations.add(now_ms, 1);
                remember(&mut net.accounts, *account);
                // Every account that registered there is looked at again: a burst is seen
                // on its fifth registration, and the first four were part of it.
                let mut touched: Vec<Account> =
                    net.accounts.iter().copied().filter(|a| a != account).collect();
                let prefix: String = number_prefix.chars().take(8).collect();
                if self.prefixes.len() < MAX_PREFIXES || self.prefixes.contains_key(&prefix) {
                    self.prefixes
                        .entry(prefix.clone())
                        .or_insert_with(|| Window::new(5 * MINUTE_MS))
                        .add(now_ms, 1);
                }
                let state = self.account(*account, now_ms);
                state.registered_at = Some(now_ms);
                state.registered_from = Some(network);
                state.number_prefix = Some(prefix);
                if state.networks.len() < MAX_NETWORKS {
                    state.networks.insert(network);
                }
                touched.push(*account);
                touched
            }
            Observation::Connected {
                account,
                addr,
                registered_at_ms,
                device_registered_at_ms,
                unknown_client,
            } => {
                let network = Network::of(*addr);
                let state = self.account(*account, now_ms);
                state.unknown_client = unknown_client.is_some();
                if device_registered_at_ms.is_some() {
                    state.device_registered_at = *device_registered_at_ms;
                }
                if let Some(at) = registered_at_ms {
                    state.registered_at.get_or_insert(*at);
                }
                let new = state.networks.len() < MAX_NETWORKS && state.networks.insert(network);
                if new {
                    let net = self.networks.entry(network).or_insert_with(|| NetworkState {
                        registrations: Window::new(5 * MINUTE_MS),
                        accounts: VecDeque::new(),
                    });
                    remember(&mut net.accounts, *account);
                }
                vec![*account]
            }
            Observation::CallPlaced { caller, callee } => {
                let state = self.account(*caller, now_ms);
                state.placed.add(now_ms, 1);
                state.placed_day.add(now_ms, 1);
                state.callees.add(*callee, now_ms, DAY_MS);
                vec![*caller]
            }
            Observation::CallAnswered { caller, .. } => {
                let state = self.account(*caller, now_ms);
                state.answered.add(now_ms, 1);
                state.answered_day.add(now_ms, 1);
                vec![*caller]
            }
            Observation::CallDeclined { caller, .. } => {
                self.account(*caller, now_ms).declined.add(now_ms, 1);
                vec![*caller]
            }
            Observation::CallAbandoned { caller } => {
                self.account(*caller, now_ms).abandoned.add(now_ms, 1);
                vec![*caller]
            }
            Observation::Misfit { account } => {
                self.account(*account, now_ms).misfits.add(now_ms, 1);
                vec![*account]
            }
            Observation::Blocked { blocked, blocker } => {
                // Only a block by someone the account called or wrote to first counts, once per
                // blocker: blocking an account again and again, or one that never reached out
                // to you, frames nobody.
                let Some(state) = self.accounts.get_mut(blocked) else { return Vec::new() };
                if state.callees.count_value(*blocker, now_ms, DAY_MS) == 0
                    && state.invited.count_value(*blocker, now_ms, DAY_MS) == 0
                {
                    return Vec::new();
                }
                state.blocked_by.add(*blocker, now_ms, DAY_MS);
                state.last_seen = now_ms;
                vec![*blocked]
            }
            Observation::Lookup { account } => {
                self.account(*account, now_ms).lookups.add(now_ms, 1);
                vec![*account]
            }
            Observation::KeyPackagesClaimed { account, count } => {
                self.account(*account, now_ms).key_packages.add(now_ms, *count);
                vec![*account]
            }
            Observation::Invited { inviter, invitee } => {
                self.account(*inviter, now_ms).invited.add(*invitee, now_ms, DAY_MS);
                vec![*inviter]
            }
            Observation::Quirk { account, quirk } => {
                let state = self.account(*account, now_ms);
                match quirk {
                    Quirk::SetUpWithoutRelay => state.setups_out_of_order.add(now_ms, 1),
                    Quirk::HungUpAtOnce => state.hung_up_at_once.add(now_ms, 1),
                }
                vec![*account]
            }
        }
    }

    fn account(&mut self, account: Account, now_ms: u64) -> &mut AccountState {
        if self.accounts.len() >= MAX_ACCOUNTS && !self.accounts.contains_key(&account) {
            // Forget the longest-quiet account (rare: a million accounts active at once).
            if let Some(quiet) = self.accounts.iter().min_by_key(|(_, s)| s.last_seen).map(|(a, _)| *a) {
                self.accounts.remove(&quiet);
            }
        }
        let state = self.accounts.entry(account).or_insert_with(|| AccountState::new(now_ms));
        state.last_seen = now_ms;
        state
    }

    /// The signals of `account` now.
    pub fn snapshot(&self, account: Account, now_ms: u64) -> Snapshot {
        let Some(s) = self.accounts.get(&account) else { return Snapshot::default() };
        let network = s.registered_from.and_then(|n| self.networks.get(&n).map(|state| (n, state)));
        let sharing: HashSet<Account> = s
            .networks
            .iter()
            .filter_map(|n| self.networks.get(n))
            .flat_map(|n| n.accounts.iter().copied())
            .filter(|a| *a != account)
            .collect();
        Snapshot {
            account_age_s: s.registered_at.map(|at| now_ms.saturating_sub(at) / 1000),
            device_age_s: s.device_registered_at.map(|at| now_ms.saturating_sub(at) / 1000),
            key_packages_claimed_10m: s.key_packages.total(now_ms),
            prefix_registrations_1h: s
                .number_prefix
                .as_ref()
                .and_then(|p| self.prefixes.get(p))
                .map_or(0, |w| w.total(now_ms)),
            calls_placed_10m: s.placed.total(now_ms),
            calls_placed_24h: s.placed_day.total(now_ms),
            calls_answered_10m: s.answered.total(now_ms),
            calls_answered_24h: s.answered_day.total(now_ms),
            calls_declined_10m: s.declined.total(now_ms),
            calls_abandoned_10m: s.abandoned.total(now_ms),
            distinct_callees_24h: s.callees.count(now_ms, DAY_MS),
            misfits_10m: s.misfits.total(now_ms),
            blocked_by_24h: s.blocked_by.count(now_ms, DAY_MS),
            lookups_10m: s.lookups.total(now_ms),
            network_registrations_1h: network.map_or(0, |(_, n)| n.registrations.total(now_ms)),
            network_is_hosting: network.is_some_and(|(n, _)| self.hosting_networks.contains(&n)),
            accounts_sharing_networks: sharing.len() as u64,
            client_is_unknown: s.unknown_client,
            setups_out_of_order_10m: s.setups_out_of_order.total(now_ms),
            calls_hung_up_at_once_10m: s.hung_up_at_once.total(now_ms),
            accounts_invited_24h: s.invited.count(now_ms, DAY_MS),
        }
    }

    /// The network an account registered from, if it was seen.
    pub fn registered_from(&self, account: Account) -> Option<Network> {
        self.accounts.get(&account).and_then(|s| s.registered_from)
    }

    /// Forget what is older than every window: accounts and networks not seen for a day.
    /// (Ages of accounts forgotten this way are unknown afterwards, as an old account's.)
    pub fn sweep(&mut self, now_ms: u64) {
        self.accounts.retain(|_, s| now_ms.saturating_sub(s.last_seen) < DAY_MS);
        self.networks.retain(|_, n| n.registrations.total(now_ms) > 0 || !n.accounts.is_empty());
        let live: HashSet<Network> =
            self.accounts.values().flat_map(|s| s.networks.iter().copied()).collect();
        self.networks.retain(|n, _| live.contains(n));
        self.hosting_networks.retain(|n| live.contains(n));
        self.prefixes.retain(|_, w| w.total(now_ms) > 0);
    }

    /// Accounts tracked now.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }
}

fn remember(list: &mut VecDeque<Account>, account: Account) {
    if list.contains(&account) {
        return;
    }
    if list.len() >= MAX_NETWORK_ACCOUNTS {
        list.pop_front();
    }
    list.push_back(account);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn windows_slide() {
        let mut w: Window<10> = Window::new(MINUTE_MS);
        w.add(0, 3);
        w.add(5 * MINUTE_MS, 2);
        assert_eq!(w.total(5 * MINUTE_MS), 5);
        // Ten minutes after the first add, it has left the window.
        assert_eq!(w.total(10 * MINUTE_MS), 2);
        assert_eq!(w.total(15 * MINUTE_MS), 0);
        w.add(40 * MINUTE_MS, 1);
        assert_eq!(w.total(40 * MINUTE_MS), 1);
    }

    #[test]
    fn a_caller_who_is_not_answered_shows_it() {
        let mut s = Signals::new(Ranges::parse(["203.0.113.0/24"]).unwrap());
        s.observe(
            &Observation::Registered { account: 1, addr: addr("203.0.113.9"), number_prefix: "+4420".into() },
            0,
        );
        for callee in 0..12 {
            s.observe(&Observation::CallPlaced { caller: 1, callee: 100 + callee }, 1_000 + callee);
        }
        s.observe(&Observation::CallAnswered { caller: 1, callee: 100 }, 5_000);
        let snap = s.snapshot(1, 60_000);
        assert_eq!(snap.account_age_s, Some(60));
        assert_eq!(snap.calls_placed_10m, 12);
        assert_eq!(snap.calls_answered_10m, 1);
        assert_eq!(snap.distinct_callees_24h, 12);
        assert!(snap.network_is_hosting);
        assert_eq!(snap.network_registrations_1h, 1);
        // The callees' own signals did not move: being called is not behaviour.
        assert_eq!(s.snapshot(100, 60_000), Snapshot::default());
    }

    #[test]
    fn accounts_on_one_network_are_linked() {
        let mut s = Signals::new(Ranges::default());
        for a in 1..=3 {
            s.observe(
                &Observation::Registered {
                    account: a,
                    addr: addr("198.51.100.7"),
                    number_prefix: "+1555".into(),
                },
                0,
            );
        }
        s.observe(
            &Observation::Connected {
                account: 9,
                addr: addr("2001:db8::1"),
                registered_at_ms: None,
                device_registered_at_ms: None,
                unknown_client: None,
            },
            0,
        );
        assert_eq!(s.snapshot(1, 1).accounts_sharing_networks, 2);
        assert_eq!(s.snapshot(1, 1).network_registrations_1h, 3);
        assert!(!s.snapshot(1, 1).network_is_hosting);
        assert_eq!(s.snapshot(9, 1).accounts_sharing_networks, 0);
    }

    #[test]
    fn only_people_it_called_can_count_blocks_against_an_account() {
        let mut s = Signals::new(Ranges::default());
        s.observe(&Observation::CallPlaced { caller: 1, callee: 2 }, 0);
        // Someone it never called, blocking it again and again: nothing.
        for _ in 0..10 {
            assert!(s.observe(&Observation::Blocked { blocked: 1, blocker: 3 }, 1).is_empty());
        }
        // Blocks of accounts the server never saw create nothing.
        assert!(s.observe(&Observation::Blocked { blocked: 99, blocker: 2 }, 1).is_empty());
        assert_eq!(s.accounts(), 1);
        // The person it called, twice: one block.
        s.observe(&Observation::Blocked { blocked: 1, blocker: 2 }, 2);
        s.observe(&Observation::Blocked { blocked: 1, blocker: 2 }, 3);
        assert_eq!(s.snapshot(1, 4).blocked_by_24h, 1);
        // Someone it wrote to first (a request on their side) counts too; being invited by
        // someone does not make the invitee look odd.
        s.observe(&Observation::Invited { inviter: 1, invitee: 5 }, 4);
        s.observe(&Observation::Blocked { blocked: 1, blocker: 5 }, 5);
        assert_eq!(s.snapshot(1, 6).blocked_by_24h, 2);
        assert_eq!(s.snapshot(1, 6).accounts_invited_24h, 1);
        assert_eq!(s.snapshot(5, 6), Snapshot::default());
        // A day later everything is forgotten.
        s.sweep(DAY_MS + 10);
        assert_eq!(s.accounts(), 0);
    }

    #[test]
    fn an_accounts_age_comes_with_its_sign_in() {
        // Registered on another node (or before a restart): the sign-in says when.
        let mut s = Signals::new(Ranges::default());
        let connected = Observation::Connected {
            account: 5,
            addr: addr("192.0.2.1"),
            registered_at_ms: Some(1_000),
            device_registered_at_ms: Some(31_000),
            unknown_client: None,
        };
        s.observe(&connected, 61_000);
        assert_eq!(s.snapshot(5, 61_000).account_age_s, Some(60));
        // An old account on a device linked half a minute ago.
        assert_eq!(s.snapshot(5, 61_000).device_age_s, Some(30));
        assert!(!s.snapshot(5, 61_000).client_is_unknown);
        // A sign-in with software that is not Rampart's own shows, until one that is.
        let lookalike = Observation::Connected {
            account: 5,
            addr: addr("192.0.2.1"),
            registered_at_ms: None,
            device_registered_at_ms: None,
            unknown_client: Some("wa-lite/2.19".into()),
        };
        s.observe(&lookalike, 62_000);
        assert!(s.snapshot(5, 62_000).client_is_unknown);
        s.observe(&connected, 63_000);
        assert!(!s.snapshot(5, 63_000).client_is_unknown);
    }

    #[test]
    fn registrations_are_counted_per_number_prefix_and_claims_per_account() {
        let mut s = Signals::new(Ranges::default());
        for (account, prefix) in [(1, "+4477"), (2, "+4477"), (3, "+4420")] {
            let addr = addr(&format!("192.0.2.{account}"));
            s.observe(&Observation::Registered { account, addr, number_prefix: prefix.into() }, account);
        }
        assert_eq!(s.snapshot(1, 10).prefix_registrations_1h, 2);
        assert_eq!(s.snapshot(3, 10).prefix_registrations_1h, 1);
        assert_eq!(s.snapshot(1, 61 * MINUTE_MS).prefix_registrations_1h, 0);
        s.observe(&Observation::KeyPackagesClaimed { account: 3, count: 40 }, 20);
        assert_eq!(s.snapshot(3, 30).key_packages_claimed_10m, 40);
    }

    #[test]
    fn quirks_count_against_the_account_that_shows_them() {
        let mut s = Signals::new(Ranges::default());
        for at in 0..3 {
            s.observe(&Observation::Quirk { account: 4, quirk: Quirk::SetUpWithoutRelay }, at);
        }
        s.observe(&Observation::Quirk { account: 4, quirk: Quirk::HungUpAtOnce }, 5);
        let snap = s.snapshot(4, 10);
        assert_eq!(snap.setups_out_of_order_10m, 3);
        assert_eq!(snap.calls_hung_up_at_once_10m, 1);
        assert!(snap.named().contains(&("setups_out_of_order_10m", 3)));
        // Ten minutes on, they are gone.
        assert_eq!(s.snapshot(4, 10 * MINUTE_MS + 10).setups_out_of_order_10m, 0);
    }

    #[test]
    fn networks_and_ranges() {
        assert_eq!(Network::of(addr("192.0.2.77")).to_string(), "192.0.2.0/24");
        assert_eq!(Network::of(addr("::ffff:192.0.2.77")), Network::of(addr("192.0.2.1")));
        assert_eq!(Network::of(addr("2001:db8:1:2::5")).to_string(), "2001:db8:1::/48");
        let r = Ranges::parse(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        assert!(r.contains(addr("10.200.1.1")));
        assert!(!r.contains(addr("11.0.0.1")));
        assert!(r.contains(addr("2001:db8:ffff::1")));
        assert!(Ranges::parse(["10.0.0.0/33"]).is_err());
        assert!(Ranges::parse(["nonsense"]).is_err());
    }
}
