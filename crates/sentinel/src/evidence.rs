//! The evidence log: every decision the server takes against an account or a network, with the
//! signals behind it, as an append-only chain of entries that an investigator can check.
//!
//! Each entry is one line: `HASH SIGNATURE BODY`, where BODY is the entry as JSON (its sequence
//! number, time, the previous entry's hash and the record), HASH is SHA-256 over a domain tag
//! and BODY's exact bytes, and SIGNATURE is the server's Ed25519 signature over HASH. Changing a
//! byte breaks the hash, removing or reordering entries breaks the sequence numbers and the
//! links, and a new chain cannot be made without the server's key.
//!
//! A chain alone cannot show that its tail was cut off, so the server also keeps a signed
//! [`Head`]: where the log starts (retention drops old entries, so it need not start at 0) and
//! the hash of its last entry. [`verify`] checks the lines against the head.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain tag hashed in front of every entry body.
const ENTRY_TAG: &[u8] = b"rampart-evidence-v1 entry\n";
/// Domain tag signed in front of a head.
const HEAD_TAG: &str = "rampart-evidence-v1 head";
/// The longest line accepted, body, hash and signature included.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The longest text field of a record (decision, subject, by, reason).
pub const MAX_FIELD_BYTES: usize = 1024;
/// Signals per record, at most.
pub const MAX_SIGNALS: usize = 64;
/// The hash that stands before the first entry of a log.
pub const GENESIS: [u8; 32] = [0; 32];

/// One decision, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// What was decided: `refuse_call_setup`, `suspend_calling`, `lift`...
    pub decision: String,
    /// Whom it concerns: an account id in hex, a network in CIDR notation...
    pub subject: String,
    /// The rule that decided, or the operator.
    pub by: String,
    /// Why, in words.
    pub reason: String,
    /// The signals that triggered it, by name.
    #[serde(default)]
    pub signals: BTreeMap<String, u64>,
    /// When the decision stops having effect (Unix milliseconds), if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl Record {
    fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("decision", &self.decision),
            ("subject", &self.subject),
            ("by", &self.by),
            ("reason", &self.reason),
        ] {
            if value.len() > MAX_FIELD_BYTES {
                return Err(format!("{name} is longer than {MAX_FIELD_BYTES} bytes"));
            }
        }
        if self.signals.len() > MAX_SIGNALS {
            return Err(format!("more than {MAX_SIGNALS} signals"));
        }
        if let Some(name) = self.signals.keys().find(|k| k.len() > MAX_FIELD_BYTES) {
            return Err(format!("a signal name of {} bytes", name.len()));
        }
        Ok(())
    }
}

/// What an entry's body holds: the record and its place in the chain.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    seq: u64,
    at_ms: u64,
    prev: String,
    record: Record,
}

/// An entry read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub at_ms: u64,
    pub record: Record,
    pub hash: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    #[error("line {line}: {why}")]
    Malformed { line: usize, why: String },
    #[error("line {line}: the hash does not match the entry (the entry was changed)")]
    Hash { line: usize },
    #[error("line {line}: the signature is not the server's")]
    Signature { line: usize },
    #[error(
        "line {line}: entry {found} where entry {expected} belongs (entries were removed, added or reordered)"
    )]
    Sequence { line: usize, expected: u64, found: u64 },
    #[error("line {line}: the entry does not follow the one before it (entries were removed or reordered)")]
    Link { line: usize },
    #[error("the head: {0}")]
    Head(String),
    #[error(
        "the log ends at entry {found} but the head says {expected} entries (the log was cut short or added to)"
    )]
    Length { expected: u64, found: u64 },
    #[error("the last entry is not the one the head names (the log's end was replaced)")]
    Tail,
    #[error("a record that cannot be written: {0}")]
    Record(String),
}

/// The signed summary of a log: where it starts and where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The first entry's sequence number (0 until retention dropped entries).
    pub first_seq: u64,
    /// The hash that the first entry follows ([`GENESIS`] for entry 0).
    pub first_prev: [u8; 32],
    /// The sequence number the next entry gets: the log holds `first_seq..next_seq`.
    pub next_seq: u64,
    /// The last entry's hash (`first_prev` when the log is empty).
    pub last_hash: [u8; 32],
}

impl Head {
    fn signed_text(&self) -> String {
        format!(
            "{HEAD_TAG} {} {} {} {}",
            self.first_seq,
            hex::encode(self.first_prev),
            self.next_seq,
            hex::encode(self.last_hash)
        )
    }

    /// The head as the line the server writes beside the log.
    pub fn to_line(&self, key: &SigningKey) -> String {
        let text = self.signed_text();
        let signature = key.sign(text.as_bytes());
        format!("{text} {}\n", hex::encode(signature.to_bytes()))
    }

    /// Read a head line and check its signature.
    pub fn from_line(line: &str, key: &VerifyingKey) -> Result<Self, EvidenceError> {
        let bad = |why: &str| EvidenceError::Head(why.to_owned());
        let line = line.trim_end_matches('\n');
        if line.len() > MAX_LINE_BYTES {
            return Err(bad("longer than a head can be"));
        }
        let (text, signature) = line.rsplit_once(' ').ok_or_else(|| bad("no signature"))?;
        let signature = parse_signature(signature).ok_or_else(|| bad("the signature is not hex"))?;
        key.verify(text.as_bytes(), &signature).map_err(|_| bad("the signature is not the server's"))?;
        let rest =
            text.strip_prefix(HEAD_TAG).and_then(|r| r.strip_prefix(' ')).ok_or_else(|| bad("not a head"))?;
        let fields: Vec<&str> = rest.split(' ').collect();
        let [first_seq, first_prev, next_seq, last_hash] = fields.as_slice() else {
            return Err(bad("not four fields"));
        };
        let head = Head {
            first_seq: first_seq.parse().map_err(|_| bad("the first entry's number"))?,
            first_prev: parse_hash(first_prev).ok_or_else(|| bad("the first entry's link"))?,
            next_seq: next_seq.parse().map_err(|_| bad("the next entry's number"))?,
            last_hash: parse_hash(last_hash).ok_or_else(|| bad("the last entry's hash"))?,
        };
        if head.next_seq < head.first_seq {
            return Err(bad("it ends before it starts"));
        }
        Ok(head)
    }
}

/// The writer's side of a log: appends entries to the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    head: Head,
}

impl Chain {
    /// A new, empty log.
    pub fn new() -> Self {
        Self { head: Head { first_seq: 0, first_prev: GENESIS, next_seq: 0, last_hash: GENESIS } }
    }

    /// Carry on a log whose (verified) head this is.
    pub fn resume(head: Head) -> Self {
        Self { head }
    }

    pub fn head(&self) -> Head {
        self.head
    }

    /// The line for a new entry; the chain moves on only when it could be made. The caller
    /// writes the line, then the new [`Head`] (`head().to_line`).
    pub fn append(&mut self, key: &SigningKey, at_ms: u64, record: Record) -> Result<String, EvidenceError> {
        record.check().map_err(EvidenceError::Record)?;
        let body = Body { seq: self.head.next_seq, at_ms, prev: hex::encode(self.head.last_hash), record };
        let body = serde_json::to_string(&body).map_err(|e| EvidenceError::Record(e.to_string()))?;
        let hash = entry_hash(body.as_bytes());
        let signature = key.sign(&hash);
        let line = format!("{} {} {body}\n", hex::encode(hash), hex::encode(signature.to_bytes()));
        if line.len() > MAX_LINE_BYTES {
            return Err(EvidenceError::Record(format!("an entry longer than {MAX_LINE_BYTES} bytes")));
        }
        self.head.next_seq += 1;
        self.head.last_hash = hash;
        Ok(line)
    }
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub head: Head,
    pub entries: Vec<Entry>,
}

/// Check a log against its head and the server's public key: every entry's hash and
/// signature, the numbering, the links, and that the log ends where the head says.
pub fn verify(log: &str, head_line: &str, key: &VerifyingKey) -> Result<Verified, EvidenceError> {
    verify_against(log, Head::from_line(head_line, key)?, key)
}

/// [`verify`] against a head already read (and trusted) by the caller.
///
/// Entries before the head's first one are what retention is dropping (the server replaces the
/// head before the log): they are skipped when they are the server's and lead, link by link,
/// to the head's first entry.
pub fn verify_against(log: &str, head: Head, key: &VerifyingKey) -> Result<Verified, EvidenceError> {
    if head.next_seq < head.first_seq {
        return Err(EvidenceError::Head("it ends before it starts".into()));
    }
    let mut entries = Vec::new();
    let mut expected_seq = head.first_seq;
    let mut prev = head.first_prev;
    let mut lines = log.lines().enumerate().peekable();
    let mut dropping: Option<(u64, [u8; 32])> = None;
    while let Some((index, line)) = lines.peek().copied() {
        let Parsed { entry, prev: follows } = parse_entry(line, index + 1, key)?;
        if entry.seq >= head.first_seq {
            break;
        }
        if let Some((seq, hash)) = dropping
            && (entry.seq != seq + 1 || follows != hash)
        {
            return Err(EvidenceError::Link { line: index + 1 });
        }
        dropping = Some((entry.seq, entry.hash));
        lines.next();
    }
    if let Some((seq, hash)) = dropping
        && (seq + 1 != head.first_seq || hash != head.first_prev)
    {
        return Err(EvidenceError::Head("the entries before its first one do not lead to it".into()));
    }
    for (index, line) in lines {
        let line_no = index + 1;
        let Parsed { entry, prev: follows } = parse_entry(line, line_no, key)?;
        if entry.seq != expected_seq {
            return Err(EvidenceError::Sequence { line: line_no, expected: expected_seq, found: entry.seq });
        }
        if follows != prev {
            return Err(EvidenceError::Link { line: line_no });
        }
        expected_seq += 1;
        prev = entry.hash;
        entries.push(entry);
    }
    if expected_seq != head.next_seq {
        return Err(EvidenceError::Length {
            expected: head.next_seq - head.first_seq,
            found: expected_seq - head.first_seq,
        });
    }
    if prev != head.last_hash {
        return Err(EvidenceError::Tail);
    }
    Ok(Verified { head, entries })
}

/// A run of consecutive entries cut out of a verified log, with the signed head it was cut
/// from: enough for someone without the log to check that these entries are the server's, in
/// this order, with nothing left out between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Excerpt {
    /// The head line of the log at the time of the cut.
    pub head: String,
    /// The lines, exactly as written.
    pub lines: Vec<String>,
}

/// Most entries in one excerpt.
pub const MAX_EXCERPT_ENTRIES: usize = 10_000;

/// Cut the entries from the first to the last that `wanted` picks (and those between them, so
/// their links can be checked), at most [`MAX_EXCERPT_ENTRIES`] (the newest are kept). The log
/// is verified first.
pub fn excerpt(
    log: &str,
    head_line: &str,
    key: &VerifyingKey,
    wanted: impl Fn(&Record) -> bool,
) -> Result<Excerpt, EvidenceError> {
    let verified = verify(log, head_line, key)?;
    let kept: Vec<&str> = log.lines().collect();
    // Lines before the head's first entry (retention in progress) are not in `entries`.
    let skipped = kept.len() - verified.entries.len();
    let picked: Vec<usize> =
        verified.entries.iter().enumerate().filter(|(_, e)| wanted(&e.record)).map(|(i, _)| i).collect();
    let lines = match (picked.first(), picked.last()) {
        (Some(&first), Some(&last)) => {
            let first = first.max((last + 1).saturating_sub(MAX_EXCERPT_ENTRIES));
            let wanted_lines = kept.get(skipped + first..=skipped + last).unwrap_or_default();
            wanted_lines.iter().map(|l| (*l).to_owned()).collect()
        }
        _ => Vec::new(),
    };
    Ok(Excerpt { head: head_line.trim_end().to_owned(), lines })
}

/// Check an excerpt: the head is the server's, every line is the server's, the lines follow one
/// another link by link, and they lie within the head's log. Returns the entries.
pub fn verify_excerpt(excerpt: &Excerpt, key: &VerifyingKey) -> Result<Vec<Entry>, EvidenceError> {
    let head = Head::from_line(&excerpt.head, key)?;
    if excerpt.lines.len() > MAX_EXCERPT_ENTRIES {
        return Err(EvidenceError::Head(format!("an excerpt holds at most {MAX_EXCERPT_ENTRIES} entries")));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(excerpt.lines.len());
    let mut last: Option<(u64, [u8; 32])> = None;
    for (index, line) in excerpt.lines.iter().enumerate() {
        let line_no = index + 1;
        let Parsed { entry, prev } = parse_entry(line, line_no, key)?;
        if let Some((seq, hash)) = last {
            if entry.seq != seq + 1 {
                return Err(EvidenceError::Sequence { line: line_no, expected: seq + 1, found: entry.seq });
            }
            if prev != hash {
                return Err(EvidenceError::Link { line: line_no });
            }
        }
        if entry.seq >= head.next_seq {
            return Err(EvidenceError::Head(format!("entry {} lies beyond the head's log", entry.seq)));
        }
        // The head's last entry, when the excerpt reaches it, must be the very one.
        if entry.seq + 1 == head.next_seq && entry.hash != head.last_hash {
            return Err(EvidenceError::Tail);
        }
        last = Some((entry.seq, entry.hash));
        entries.push(entry);
    }
    Ok(entries)
}

/// What retention leaves of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The kept lines, exactly as written.
    pub log: String,
    /// The head that starts at the first kept entry.
    pub head: Head,
    /// Entries dropped.
    pub dropped: usize,
    /// When the first kept entry was recorded.
    pub oldest_at_ms: u64,
}

/// What retention leaves of a verified log: the entries from `before_ms` on, and the head that
/// starts there. `None` when nothing is old enough to drop. The last entry is always kept, so
/// the chain goes on from it.
pub fn plan_prune(
    log: &str,
    head: Head,
    key: &VerifyingKey,
    before_ms: u64,
) -> Result<Option<Pruned>, EvidenceError> {
    let verified = verify_against(log, head, key)?;
    let keep_from = verified
        .entries
        .iter()
        .position(|e| e.at_ms >= before_ms)
        .unwrap_or(verified.entries.len().saturating_sub(1));
    if keep_from == 0 {
        return Ok(None);
    }
    let (Some(last_dropped), Some(first_kept)) =
        (verified.entries.get(keep_from - 1), verified.entries.get(keep_from))
    else {
        return Ok(None);
    };
    let first_kept_seq = last_dropped.seq + 1;
    // The kept lines, exactly as written (their bytes are what the hashes cover).
    let kept: String = log
        .lines()
        .filter(|line| parse_seq(line).is_some_and(|seq| seq >= first_kept_seq))
        .map(|line| format!("{line}\n"))
        .collect();
    let new_head = Head { first_seq: first_kept_seq, first_prev: last_dropped.hash, ..verified.head };
    Ok(Some(Pruned { log: kept, head: new_head, dropped: keep_from, oldest_at_ms: first_kept.at_ms }))
}

/// An entry line's sequence number, read without checking it (the log was verified).
fn parse_seq(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once(' ')?;
    let (_, body) = rest.split_once(' ')?;
    serde_json::from_str::<Body>(body).ok().map(|b| b.seq)
}

/// The last entry of a log as the server left it: what it resumes from after a restart, once
/// it matches the head.
pub fn last_entry(log: &str, key: &VerifyingKey) -> Result<Option<Entry>, EvidenceError> {
    let count = log.lines().count();
    match log.lines().last() {
        Some(line) => Ok(Some(parse_entry(line, count, key)?.entry)),
        None => Ok(None),
    }
}

struct Parsed {
    entry: Entry,
    prev: [u8; 32],
}

fn parse_entry(line: &str, line_no: usize, key: &VerifyingKey) -> Result<Parsed, EvidenceError> {
    let malformed = |why: &str| EvidenceError::Malformed { line: line_no, why: why.to_owned() };
    if line.len() > MAX_LINE_BYTES {
        return Err(malformed("longer than an entry can be"));
    }
    let (hash, rest) = line.split_once(' ').ok_or_else(|| malformed("no hash"))?;
    let (signature, body) = rest.split_once(' ').ok_or_else(|| malformed("no signature"))?;
    let hash = parse_hash(hash).ok_or_else(|| malformed("the hash is not 64 hex digits"))?;
    let signature =
        parse_signature(signature).ok_or_else(|| malformed("the signature is not 128 hex digits"))?;
    if entry_hash(body.as_bytes()) != hash {
        return Err(EvidenceError::Hash { line: line_no });
    }
    key.verify(&hash, &signature).map_err(|_| EvidenceError::Signature { line: line_no })?;
    let body: Body = serde_json::from_str(body).map_err(|e| malformed(&format!("the entry: {e}")))?;
    body.record.check().map_err(|why| malformed(&why))?;
    let prev = parse_hash(&body.prev).ok_or_else(|| malformed("the link is not 64 hex digits"))?;
    Ok(Parsed { entry: Entry { seq: body.seq, at_ms: body.at_ms, record: body.record, hash }, prev })
}

fn entry_hash(body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(ENTRY_TAG);
    hasher.update(body);
    hasher.finalize().into()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn parse_signature(text: &str) -> Option<Signature> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(Signature::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn record(n: u64) -> Record {
        Record {
            decision: "suspend_calling".into(),
            subject: format!("account {n}"),
            by: "rule many_unanswered_calls".into(),
            reason: "calls mostly unanswered".into(),
            signals: BTreeMap::from([("calls_placed".to_owned(), 40 + n), ("answered".to_owned(), 1)]),
            until_ms: Some(1_000 + n),
        }
    }

    /// A log of `n` entries and its head line.
    fn log(n: u64) -> (String, String) {
        let key = key();
        let mut chain = Chain::new();
        let mut log = String::new();
        for i in 0..n {
            log.push_str(&chain.append(&key, 100 + i, record(i)).unwrap());
        }
        (log, chain.head().to_line(&key))
    }

    #[test]
    fn a_log_as_written_verifies() {
        let (log, head) = log(5);
        let verified = verify(&log, &head, &key().verifying_key()).unwrap();
        assert_eq!(verified.entries.len(), 5);
        assert_eq!(verified.entries[3].record, record(3));
        assert_eq!(verified.entries[3].seq, 3);
        // An empty log verifies against an empty head.
        let (log, head) = super::tests::log(0);
        assert!(verify(&log, &head, &key().verifying_key()).unwrap().entries.is_empty());
    }

    #[test]
    fn an_excerpt_holds_the_wanted_entries_and_those_between_and_checks_alone() {
        let (log, head) = log(8);
        let public = key().verifying_key();
        let wanted = |r: &Record| r.subject == "account 2" || r.subject == "account 5";
        let cut = excerpt(&log, &head, &public, wanted).unwrap();
        assert_eq!(cut.lines.len(), 4);
        let entries = verify_excerpt(&cut, &public).unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        // Nothing wanted, nothing cut.
        assert!(excerpt(&log, &head, &public, |_| false).unwrap().lines.is_empty());
        // A line left out between two others, an edited line, or another key: each fails.
        let mut gap = cut.clone();
        gap.lines.remove(1);
        assert!(matches!(verify_excerpt(&gap, &public), Err(EvidenceError::Sequence { line: 2, .. })));
        let mut edited = cut.clone();
        edited.lines[0] = edited.lines[0].replacen("account 2", "account 7", 1);
        assert_eq!(verify_excerpt(&edited, &public), Err(EvidenceError::Hash { line: 1 }));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(verify_excerpt(&cut, &other).is_err());
        // The head's last entry must be the one the excerpt ends with.
        let tail = excerpt(&log, &head, &public, |r| r.subject == "account 7").unwrap();
        assert_eq!(verify_excerpt(&tail, &public).unwrap().len(), 1);
        let (_, shorter_head) = super::tests::log(7);
        let mut swapped = tail;
        swapped.head = shorter_head;
        assert!(verify_excerpt(&swapped, &public).is_err());
    }

    #[test]
    fn an_edited_entry_fails() {
        let (log, head) = log(5);
        let edited = log.replacen("\"account 2\"", "\"account 9\"", 1);
        assert_ne!(edited, log);
        assert_eq!(verify(&edited, &head, &key().verifying_key()), Err(EvidenceError::Hash { line: 3 }));
    }

    #[test]
    fn an_entry_rewritten_with_a_new_hash_but_no_key_fails() {
        let (log, head) = log(3);
        let lines: Vec<&str> = log.lines().collect();
        let (_, rest) = lines[1].split_once(' ').unwrap();
        let (signature, body) = rest.split_once(' ').unwrap();
        let body = body.replace("suspend_calling", "lift");
        let forged = format!("{} {signature} {body}", hex::encode(entry_hash(body.as_bytes())));
        let log = format!("{}\n{forged}\n{}\n", lines[0], lines[2]);
        assert_eq!(verify(&log, &head, &key().verifying_key()), Err(EvidenceError::Signature { line: 2 }));
    }

    #[test]
    fn removed_reordered_or_cut_entries_fail() {
        let (log, head) = log(5);
        let key = key().verifying_key();
        let lines: Vec<&str> = log.lines().collect();
        let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        // One removed from the middle.
        let removed = join(&[lines[0], lines[1], lines[3], lines[4]]);
        assert_eq!(
            verify(&removed, &head, &key),
            Err(EvidenceError::Sequence { line: 3, expected: 2, found: 3 })
        );
        // Two swapped.
        let swapped = join(&[lines[0], lines[2], lines[1], lines[3], lines[4]]);
        assert!(matches!(verify(&swapped, &head, &key), Err(EvidenceError::Sequence { line: 2, .. })));
        // The tail cut off.
        let cut = join(&lines[..3]);
        assert_eq!(verify(&cut, &head, &key), Err(EvidenceError::Length { expected: 5, found: 3 }));
        // The head of another key, or an edited head.
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let (_, other_head) = {
            let mut chain = Chain::new();
            (chain.append(&other, 1, record(0)).unwrap(), chain.head().to_line(&other))
        };
        assert!(matches!(verify(&log, &other_head, &key), Err(EvidenceError::Head(_))));
        let edited_head = head.replacen(" 5 ", " 3 ", 1);
        assert!(matches!(verify(&cut, &edited_head, &key), Err(EvidenceError::Head(_))));
    }

    #[test]
    fn a_chain_resumed_from_its_head_carries_on() {
        let key = key();
        let (mut log, head) = log(2);
        let mut chain = Chain::resume(Head::from_line(&head, &key.verifying_key()).unwrap());
        assert_eq!(last_entry(&log, &key.verifying_key()).unwrap().unwrap().hash, chain.head().last_hash);
        log.push_str(&chain.append(&key, 500, record(2)).unwrap());
        let verified = verify(&log, &chain.head().to_line(&key), &key.verifying_key()).unwrap();
        assert_eq!(verified.entries.len(), 3);
    }

    #[test]
    fn a_log_that_starts_later_verifies_against_its_head() {
        // Retention dropped the first two entries: the head says where the rest starts.
        let key = key();
        let (log, _) = log(4);
        let lines: Vec<&str> = log.lines().collect();
        let kept = format!("{}\n{}\n", lines[2], lines[3]);
        let verified_all = verify(&log, &log_head(&key, &log), &key.verifying_key()).unwrap();
        let third = &verified_all.entries[1];
        let head = Head {
            first_seq: 2,
            first_prev: third.hash,
            next_seq: 4,
            last_hash: verified_all.head.last_hash,
        };
        assert_eq!(verify(&kept, &head.to_line(&key), &key.verifying_key()).unwrap().entries.len(), 2);
    }

    fn log_head(key: &SigningKey, log: &str) -> String {
        let last = last_entry(log, &key.verifying_key()).unwrap().unwrap();
        Head { first_seq: 0, first_prev: GENESIS, next_seq: last.seq + 1, last_hash: last.hash }.to_line(key)
    }

    #[test]
    fn retention_drops_old_entries_and_what_is_left_verifies() {
        let key = key();
        let (log, head_line) = log(5);
        let head = Head::from_line(&head_line, &key.verifying_key()).unwrap();
        // Entries are at 100..=104 ms: drop those before 103.
        let Pruned { log: kept, head: new_head, dropped, oldest_at_ms } =
            plan_prune(&log, head, &key.verifying_key(), 103).unwrap().unwrap();
        assert_eq!(oldest_at_ms, 103);
        assert_eq!(dropped, 3);
        assert_eq!(kept.lines().count(), 2);
        let verified = verify(&kept, &new_head.to_line(&key), &key.verifying_key()).unwrap();
        assert_eq!(verified.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        // The server replaces the head first: the old, longer log still verifies against it.
        assert_eq!(verify(&log, &new_head.to_line(&key), &key.verifying_key()).unwrap().entries.len(), 2);
        // But not with an entry of that prefix removed.
        let lines: Vec<&str> = log.lines().collect();
        let holed = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[3], lines[4]);
        assert!(verify(&holed, &new_head.to_line(&key), &key.verifying_key()).is_err());
        // Nothing old enough: nothing to do. Everything old: the last entry stays.
        assert!(plan_prune(&log, head, &key.verifying_key(), 50).unwrap().is_none());
        let pruned = plan_prune(&log, head, &key.verifying_key(), 10_000).unwrap().unwrap();
        assert_eq!((pruned.log.lines().count(), pruned.dropped), (1, 4));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (_, head) = log(1);
        let key = key().verifying_key();
        for bad in ["", " ", "zz zz {}", &"a".repeat(MAX_LINE_BYTES + 1), "00 00 {\"seq\":0}"] {
            let _ = verify(bad, &head, &key);
            let _ = Head::from_line(bad, &key);
        }
        let oversized = Record { reason: "x".repeat(MAX_FIELD_BYTES + 1), ..record(0) };
        assert!(matches!(Chain::new().append(&self::key(), 0, oversized), Err(EvidenceError::Record(_))));
    }
}
