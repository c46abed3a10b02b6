#![no_main]
//! A policy file as an operator (or a careless edit) could write it: arbitrary text to the TOML
//! and CEL parsers. No panic; a policy that loads evaluates without panicking on quiet and on
//! extreme signals.

use libfuzzer_sys::fuzz_target;
use rampart_sentinel::{Policy, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = Policy::parse(text) else { return };
    let quiet = Snapshot::default();
    let extreme = Snapshot {
        account_age_s: Some(u64::MAX),
        calls_placed_10m: u64::MAX,
        calls_placed_24h: u64::MAX,
        calls_answered_10m: u64::MAX,
        calls_answered_24h: u64::MAX,
        calls_declined_10m: u64::MAX,
        calls_abandoned_10m: u64::MAX,
        distinct_callees_24h: u64::MAX,
        misfits_10m: u64::MAX,
        blocked_by_24h: u64::MAX,
        lookups_10m: u64::MAX,
        network_registrations_1h: u64::MAX,
        network_is_hosting: true,
        accounts_sharing_networks: u64::MAX,
    };
    for signals in [quiet, extreme] {
        for verdict in policy.evaluate(&signals) {
            assert!(verdict.duration_ms > 0);
        }
    }
});
