//! Case exports for investigators: one cluster as a signed case file (everything the server
//! knows about it, with the evidence entries behind its actions) and as a STIX 2.1 bundle of
//! indicators for sharing with other defenders.
//!
//! The STIX bundle names the campaign's accounts and infrastructure, never its targets: it is
//! made to be shared, and the people attacked are not indicators. The signed case file names
//! them, because whoever notifies them needs it.

use rampart_sentinel::Excerpt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::investigation::ClusterReport;

/// The subjects of a cluster's evidence entries: its accounts (`a42`) and networks
/// (`net:203.0.113.0/24`). An entry's subject may add words after them.
pub fn evidence_subjects(cluster: &ClusterReport) -> Vec<String> {
    let mut subjects: Vec<String> = cluster.accounts.iter().map(|a| format!("a{}", a.account)).collect();
    subjects.extend(
        cluster.infrastructure.iter().filter(|i| i.kind == "network").map(|i| format!("net:{}", i.value)),
    );
    subjects
}

/// Does an evidence record's subject name one of these? Subjects are `a42` or
/// `net:203.0.113.0/24`, maybe followed by words; refused call set-ups name `account 42`.
pub fn names_one_of(subject: &str, subjects: &[String]) -> bool {
    let mut words = subject.split_whitespace();
    let first = match (words.next(), words.next()) {
        (Some("account"), Some(id)) => format!("a{id}"),
        (Some(first), _) => first.to_owned(),
        (None, _) => return false,
    };
    subjects.contains(&first)
}

/// How exports name a server: by its evidence key (hex), which investigators check them with.
pub fn server_name(evidence_key_hex: &str) -> String {
    format!("rampart-{}", evidence_key_hex.get(..16).unwrap_or(evidence_key_hex))
}

/// The case, before it is signed.
pub fn case(cluster: &ClusterReport, excerpt: Excerpt, server: &str, now_ms: u64) -> Value {
    json!({
        "server": server,
        "generated_at": rfc3339(now_ms),
        "generated_at_ms": now_ms,
        "cluster": cluster,
        "evidence": excerpt,
        "note": "Accounts, infrastructure, targets, timeline and actions come from the server's \
                 metadata (it cannot read messages or calls). The evidence entries are the server's \
                 signed, hash-chained log; `rampart admin sentinel verify-case` checks them.",
    })
}

/// A STIX identifier: the type and a UUID (version 4 layout) derived from what it names, so
/// exporting the same cluster twice gives the same objects.
fn stix_id(kind: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("rampart-stix\n{kind}\n{name}").as_bytes());
    let mut b = [0u8; 16];
    for (to, from) in b.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{kind}--{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// RFC 3339 in UTC with milliseconds, as STIX wants its timestamps.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", ms % 1000)
}

/// The STIX 2.1 bundle of a cluster: the server as the identity that made it, the campaign,
/// an indicator (and an infrastructure object) for each network and address it used, and an
/// indicator and a user-account object for each of its accounts.
pub fn stix_bundle(cluster: &ClusterReport, server: &str, now_ms: u64) -> Value {
    let now = rfc3339(now_ms);
    let first = rfc3339(cluster.first_seen_ms.min(now_ms));
    let last = rfc3339(cluster.last_seen_ms.clamp(cluster.first_seen_ms, now_ms.max(cluster.first_seen_ms)));
    let identity = stix_id("identity", server);
    let campaign = stix_id("campaign", &format!("{server}/{}", cluster.id));
    let common = |kind: &str, id: &str| {
        json!({
            "type": kind, "spec_version": "2.1", "id": id,
            "created": now, "modified": now, "created_by_ref": identity,
        })
    };
    let mut objects = vec![
        json!({
            "type": "identity", "spec_version": "2.1", "id": identity,
            "created": now, "modified": now,
            "name": format!("Rampart server {server}"), "identity_class": "organization",
        }),
        merge(
            common("campaign", &campaign),
            json!({
                "name": format!("Rampart cluster {}", cluster.id),
                "description": format!(
                    "{} linked accounts that called {} people; {} actions taken by the server.",
                    cluster.accounts.len(), cluster.targets.len(), cluster.actions.len()
                ),
                "first_seen": first, "last_seen": last,
            }),
        ),
    ];
    let relate = |objects: &mut Vec<Value>, kind: &str, source: &str, target: &str| {
        let id = stix_id("relationship", &format!("{source} {kind} {target}"));
        objects.push(merge(
            common("relationship", &id),
            json!({ "relationship_type": kind, "source_ref": source, "target_ref": target }),
        ));
    };
    for infra in &cluster.infrastructure {
        let family = if infra.value.contains(':') { "ipv6-addr" } else { "ipv4-addr" };
        let value = stix_quoted(&infra.value);
        let pattern = match infra.kind {
            "network" => format!("[{family}:value ISSUBSET {value}]"),
            "client" => format!("[software:name = {value}]"),
            // How a client behaved on this server is no pattern anyone else can match.
            "fingerprint" => continue,
            _ => format!("[{family}:value = {value}]"),
        };
        let indicator = stix_id("indicator", &format!("{server}/{}/{}", infra.kind, infra.value));
        objects.push(merge(
            common("indicator", &indicator),
            json!({
                "name": format!("{} used by Rampart cluster {}", infra.kind, cluster.id),
                "indicator_types": ["malicious-activity"],
                "pattern": pattern, "pattern_type": "stix", "pattern_version": "2.1",
                "valid_from": rfc3339(infra.first_seen_ms.min(now_ms)),
            }),
        ));
        relate(&mut objects, "indicates", &indicator, &campaign);
        if infra.kind == "network" {
            let infrastructure = stix_id("infrastructure", &format!("{server}/{}", infra.value));
            objects.push(merge(
                common("infrastructure", &infrastructure),
                json!({
                    "name": infra.value,
                    "infrastructure_types": ["unknown"],
                    "description": if infra.hosting { "a hosting provider's network" } else { "a network" },
                    "first_seen": rfc3339(infra.first_seen_ms.min(now_ms)),
                }),
            ));
            relate(&mut objects, "uses", &campaign, &infrastructure);
        }
    }
    for account in &cluster.accounts {
        let user = format!("a{}@{server}", account.account);
        let observable = stix_id("user-account", &user);
        objects.push(json!({
            "type": "user-account", "spec_version": "2.1", "id": observable,
            "user_id": user, "account_type": "rampart",
        }));
        let indicator = stix_id("indicator", &format!("{server}/account/{}", account.account));
        objects.push(merge(
            common("indicator", &indicator),
            json!({
                "name": format!("Rampart account {user}"),
                "indicator_types": ["malicious-activity"],
                "pattern": format!("[user-account:user_id = '{user}']"),
                "pattern_type": "stix", "pattern_version": "2.1",
                "valid_from": rfc3339(account.registered_at_ms.unwrap_or(cluster.first_seen_ms).min(now_ms)),
            }),
        ));
        relate(&mut objects, "indicates", &indicator, &campaign);
    }
    json!({
        "type": "bundle",
        "id": stix_id("bundle", &format!("{server}/{}/{now_ms}", cluster.id)),
        "objects": objects,
    })
}

/// A string literal of a STIX pattern (backslashes and quotes escaped).
fn stix_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn merge(mut base: Value, more: Value) -> Value {
    if let (Some(base), Value::Object(more)) = (base.as_object_mut(), more) {
        base.extend(more);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_subjects_are_matched_in_both_spellings() {
        let subjects = vec!["a42".to_owned(), "net:203.0.113.0/24".to_owned()];
        assert!(names_one_of("a42", &subjects));
        assert!(names_one_of("account 42", &subjects));
        assert!(names_one_of("net:203.0.113.0/24 (registered there: a42)", &subjects));
        assert!(!names_one_of("a421", &subjects));
        assert!(!names_one_of("account 4", &subjects));
        assert!(!names_one_of("", &subjects));
    }

    #[test]
    fn pattern_strings_are_escaped() {
        assert_eq!(stix_quoted("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_996_800_000), "2026-11-30T00:00:00.000Z");
    }

    #[test]
    fn ids_are_stable_uuid4_layout() {
        let a = stix_id("indicator", "x");
        assert_eq!(a, stix_id("indicator", "x"));
        assert_ne!(a, stix_id("indicator", "y"));
        let uuid = a.strip_prefix("indicator--").unwrap_or_default();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
    }
}
