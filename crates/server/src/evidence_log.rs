//! The evidence log on disk, in `DATA_DIR/evidence/`:
//! - `log`: one entry per line ([`rampart_sentinel::evidence`]), only ever appended, each
//!   append synced before the head moves;
//! - `head`: the signed head, replaced in one rename after each append;
//! - `key`: the Ed25519 key that signs both (owner-readable only), and `key.pub` its public
//!   half, which an operator should keep elsewhere: `rampart admin evidence verify --key`
//!   checks against the key given rather than the one on the disk.
//!
//! On start the log must end where its head says. One entry more is what a crash between
//! the two writes leaves, and is taken when it follows the head; anything else stops the
//! server with the reason, rather than carrying on a chain that no longer verifies.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rampart_sentinel::evidence::{self, Chain, Head, Record};
use zeroize::Zeroizing;

const LOG: &str = "log";
const HEAD: &str = "head";
const KEY: &str = "key";
const PUBLIC_KEY: &str = "key.pub";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceLogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error(
        "the evidence log in {dir} does not match its head ({why}); check it with `rampart admin evidence verify`, and move the directory aside to start a new log"
    )]
    Mismatch { dir: PathBuf, why: String },
    #[error(transparent)]
    Evidence(#[from] evidence::EvidenceError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceLogError + '_ {
    move |source| EvidenceLogError::Io { path: path.to_owned(), source }
}

/// The evidence directory of a data directory.
pub fn evidence_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("evidence")
}

/// The log's and the head's paths in an evidence directory, for a verifier.
pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(LOG), dir.join(HEAD))
}

/// The public key beside a log (what `verify` uses when the operator gives none).
pub fn read_public_key(dir: &Path) -> Result<VerifyingKey, EvidenceLogError> {
    let path = dir.join(PUBLIC_KEY);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    parse_public_key(text.trim()).map_err(|why| EvidenceLogError::Key { path, why })
}

/// A public key as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| "not 64 hex digits".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_owned())
}

/// The server's side of the log: appends decisions.
pub struct EvidenceLog {
    dir: PathBuf,
    key: SigningKey,
    chain: Chain,
    log: std::fs::File,
    /// When the oldest entry was recorded: retention reads the log only when it is due.
    oldest_at_ms: Option<u64>,
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog").field("dir", &self.dir).field("head", &self.chain.head()).finish()
    }
}

impl EvidenceLog {
    /// Open (or start) the log in `dir`, making the key on first use.
    pub fn open(dir: &Path) -> Result<Self, EvidenceLogError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (log_path, head_path) = files(dir);
        let mismatch = |why: String| EvidenceLogError::Mismatch { dir: dir.to_owned(), why };
        // A key without a head is a log that was deleted: starting a new chain under the same
        // key would make the deletion invisible.
        if dir.join(KEY).exists() && !head_path.exists() {
            return Err(mismatch("the head is missing but the key is there (was the log deleted?)".into()));
        }
        let key = load_or_create_key(dir)?;
        let public = key.verifying_key();
        let mut oldest_at_ms = None;
        let chain = match std::fs::read_to_string(&head_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 0) {
                    return Err(mismatch("the head is missing".into()));
                }
                Chain::new()
            }
            Err(e) => return Err(io(&head_path)(e)),
            Ok(line) => {
                let head = Head::from_line(&line, &public).map_err(|e| mismatch(e.to_string()))?;
                let mut log = match std::fs::read_to_string(&log_path) {
                    Ok(log) => log,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => return Err(io(&log_path)(e)),
                };
                // An entry cut off by a crash mid-write (no newline yet) was never covered by
                // the head, which is written only after the entry is synced: drop it.
                if !log.is_empty() && !log.ends_with('\n') {
                    let whole = log.rfind('\n').map_or(0, |at| at + 1);
                    log.truncate(whole);
                    let file =
                        std::fs::OpenOptions::new().write(true).open(&log_path).map_err(io(&log_path))?;
                    file.set_len(whole as u64).and_then(|_| file.sync_all()).map_err(io(&log_path))?;
                }
                let chain = resume(head, &log, &public).map_err(mismatch)?;
                // The whole log, not only its end: an entry changed anywhere stops the server.
                let verified = evidence::verify_against(&log, chain.head(), &public)
                    .map_err(|e| mismatch(e.to_string()))?;
                oldest_at_ms = verified.entries.first().map(|e| e.at_ms);
                chain
            }
        };
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?;
        let opened = Self { dir: dir.to_owned(), key, chain, log, oldest_at_ms };
        // A head rewritten now covers an entry a crash left after the old one.
        opened.write_head()?;
        Ok(opened)
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cut an excerpt of this log (nothing is appended meanwhile: appending needs the log
    /// mutably).
    pub fn excerpt(&self, wanted: impl Fn(&Record) -> bool) -> Result<evidence::Excerpt, EvidenceLogError> {
        read_excerpt(&self.dir, wanted)
    }

    /// Sign a case file with the log's key.
    pub fn sign_case(
        &self,
        case: serde_json::Value,
    ) -> Result<serde_json::Value, rampart_sentinel::case::CaseError> {
        rampart_sentinel::case::sign_case(case, &self.key)
    }

    /// Check the whole log against its head now: what `rampart admin evidence verify` does.
    pub fn verify_now(&self) -> Result<evidence::Verified, EvidenceLogError> {
        let (log_path, head_path) = files(&self.dir);
        let head = std::fs::read_to_string(&head_path).map_err(io(&head_path))?;
        let log = match std::fs::read_to_string(&log_path) {
            Ok(log) => log,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&log_path)(e)),
        };
        Ok(evidence::verify(&log, &head, &self.key.verifying_key())?)
    }

    /// Record a decision: the entry is on disk (synced) when this returns.
    pub fn append(&mut self, at_ms: u64, record: Record) -> Result<(), EvidenceLogError> {
        let mut next = self.chain;
        let line = next.append(&self.key, at_ms, record)?;
        let path = self.dir.join(LOG);
        let length = self.log.metadata().map_err(io(&path))?.len();
        if let Err(e) = self.log.write_all(line.as_bytes()).and_then(|_| self.log.sync_data()) {
            // A part of the entry may be on disk (a full disk): cut it off, or the next entry
            // would be glued to it and never verify.
            let _ = self.log.set_len(length).and_then(|_| self.log.sync_data());
            return Err(io(&path)(e));
        }
        self.chain = next;
        self.oldest_at_ms.get_or_insert(at_ms);
        self.write_head()
    }

    /// Drop the entries recorded before `before_ms` (retention), keeping at least the last
    /// one. The log is verified first: a log that does not verify is left as it is. The new
    /// head is written before the shorter log replaces the old one, and a log that still holds
    /// the dropped entries verifies against it, so a crash in between loses nothing. Returns
    /// how many entries were dropped.
    pub fn prune(&mut self, before_ms: u64) -> Result<usize, EvidenceLogError> {
        if self.oldest_at_ms.is_none_or(|oldest| oldest >= before_ms) {
            return Ok(0);
        }
        let path = self.dir.join(LOG);
        let log = std::fs::read_to_string(&path).map_err(io(&path))?;
        let Some(evidence::Pruned { log: kept, head, dropped, oldest_at_ms }) =
            evidence::plan_prune(&log, self.chain.head(), &self.key.verifying_key(), before_ms)?
        else {
            return Ok(0);
        };
        let temporary = self.dir.join("log.new");
        std::fs::write(&temporary, kept.as_bytes())
            .and_then(|_| std::fs::File::open(&temporary)?.sync_all())
            .map_err(io(&temporary))?;
        self.chain = Chain::resume(head);
        self.write_head()?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        self.log = std::fs::OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        self.oldest_at_ms = Some(oldest_at_ms);
        Ok(dropped)
    }

    fn write_head(&self) -> Result<(), EvidenceLogError> {
        let path = self.dir.join(HEAD);
        let temporary = self.dir.join("head.new");
        let line = self.chain.head().to_line(&self.key);
        std::fs::write(&temporary, line.as_bytes())
            .and_then(|_| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|_| std::fs::rename(&temporary, &path))
            .map_err(io(&path))
    }
}

/// Where a log whose head is `head` carries on from: its end must be the head's, or one entry
/// past it that follows it (a crash between writing the entry and the head).
fn resume(head: Head, log: &str, key: &VerifyingKey) -> Result<Chain, String> {
    let last = evidence::last_entry(log, key).map_err(|e| e.to_string())?;
    match last {
        None if head.next_seq == head.first_seq => Ok(Chain::resume(head)),
        None => Err("the log is empty but its head is not".into()),
        Some(entry) if entry.seq + 1 == head.next_seq && entry.hash == head.last_hash => {
            Ok(Chain::resume(head))
        }
        Some(entry) if entry.seq == head.next_seq => {
            // Taken only if it really follows: checked by verifying the whole log against
            // the head it implies.
            let implied = Head { next_seq: entry.seq + 1, last_hash: entry.hash, ..head };
            let signing_free_check =
                evidence::verify_against(log, implied, key).map_err(|e| e.to_string())?;
            Ok(Chain::resume(signing_free_check.head))
        }
        Some(_) => Err("the log does not end where its head says".into()),
    }
}

/// The server's evidence key (to sign case files with it); it must exist.
pub fn read_signing_key(dir: &Path) -> Result<SigningKey, EvidenceLogError> {
    let path = dir.join(KEY);
    let bytes = Zeroizing::new(std::fs::read(&path).map_err(io(&path))?);
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| EvidenceLogError::Key { path: path.clone(), why: "not a 32-byte key".into() })?,
    );
    Ok(SigningKey::from_bytes(&seed))
}

/// Read the head and the log in `dir` and hand them to `check`. A server appending meanwhile
/// writes the entry before the head, so the two can disagree about the log's end for an
/// instant: then read both again, a few times, before reporting the disagreement.
pub fn read_live<T>(
    dir: &Path,
    check: impl Fn(&str, &str) -> Result<T, evidence::EvidenceError>,
) -> Result<T, EvidenceLogError> {
    let (log_path, head_path) = files(dir);
    let mut attempt = 0;
    loop {
        let head = std::fs::read_to_string(&head_path).map_err(io(&head_path))?;
        let log = match std::fs::read_to_string(&log_path) {
            Ok(log) => log,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&log_path)(e)),
        };
        match check(&log, &head) {
            Err(evidence::EvidenceError::Length { .. } | evidence::EvidenceError::Tail) if attempt < 5 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            done => return done.map_err(EvidenceLogError::from),
        }
    }
}

/// Cut an excerpt of the log in `dir` (see [`evidence::excerpt`]), verified against its key.
pub fn read_excerpt(
    dir: &Path,
    wanted: impl Fn(&evidence::Record) -> bool,
) -> Result<evidence::Excerpt, EvidenceLogError> {
    let public = read_public_key(dir)?;
    read_live(dir, |log, head| evidence::excerpt(log, head, &public, &wanted))
}

fn load_or_create_key(dir: &Path) -> Result<SigningKey, EvidenceLogError> {
    let path = dir.join(KEY);
    match std::fs::read(&path) {
        Ok(_) => read_signing_key(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = Zeroizing::new(rand::random::<[u8; 32]>());
            crate::tls::write_private(&path, seed.as_slice())
                .map_err(|e| EvidenceLogError::Key { path: path.clone(), why: e.to_string() })?;
            let key = SigningKey::from_bytes(&seed);
            let public = dir.join(PUBLIC_KEY);
            std::fs::write(&public, format!("{}\n", hex::encode(key.verifying_key().as_bytes())))
                .map_err(io(&public))?;
            Ok(key)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn record(n: u64) -> Record {
        Record {
            decision: "refuse_call_setup".into(),
            subject: format!("{n:032x}"),
            by: "call schema".into(),
            reason: "offer_too_large".into(),
            signals: [("refused".to_owned(), n)].into(),
            until_ms: None,
        }
    }

    fn verify_dir(dir: &Path) -> Result<evidence::Verified, evidence::EvidenceError> {
        let (log, head) = files(dir);
        let key = read_public_key(dir).unwrap();
        evidence::verify(
            &std::fs::read_to_string(log).unwrap(),
            &std::fs::read_to_string(head).unwrap(),
            &key,
        )
    }

    #[test]
    fn a_log_survives_restarts_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("evidence");
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(1, record(1)).unwrap();
        log.append(2, record(2)).unwrap();
        drop(log);
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(3, record(3)).unwrap();
        let verified = verify_dir(&dir).unwrap();
        assert_eq!(verified.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        }
    }

    #[test]
    fn an_entry_written_without_its_head_is_taken_on_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("evidence");
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(1, record(1)).unwrap();
        let old_head = std::fs::read(dir.join(HEAD)).unwrap();
        log.append(2, record(2)).unwrap();
        drop(log);
        // As if the server stopped between the entry and the head.
        std::fs::write(dir.join(HEAD), old_head).unwrap();
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(3, record(3)).unwrap();
        assert_eq!(verify_dir(&dir).unwrap().entries.len(), 3);
    }

    #[test]
    fn retention_drops_old_entries_and_the_log_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("evidence");
        let mut log = EvidenceLog::open(&dir).unwrap();
        for n in 0..5 {
            log.append(1_000 + n, record(n)).unwrap();
        }
        assert_eq!(log.prune(1_003).unwrap(), 3);
        assert_eq!(log.prune(1_003).unwrap(), 0);
        log.append(2_000, record(9)).unwrap();
        drop(log);
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(2_001, record(10)).unwrap();
        let verified = verify_dir(&dir).unwrap();
        assert_eq!(verified.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
    }

    #[test]
    fn a_log_edited_or_cut_on_disk_stops_the_server() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("evidence");
        let mut log = EvidenceLog::open(&dir).unwrap();
        for n in 0..3 {
            log.append(n, record(n)).unwrap();
        }
        drop(log);
        let (log_path, _) = files(&dir);
        let text = std::fs::read_to_string(&log_path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Cut short.
        std::fs::write(&log_path, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        let e = EvidenceLog::open(&dir).unwrap_err();
        assert!(matches!(e, EvidenceLogError::Mismatch { .. }), "{e}");
        // The last entry edited.
        let edited = lines[2].replacen("offer_too_large", "offer_too_small", 1);
        std::fs::write(&log_path, format!("{}\n{}\n{edited}\n", lines[0], lines[1])).unwrap();
        assert!(matches!(EvidenceLog::open(&dir), Err(EvidenceLogError::Mismatch { .. })));
        assert!(verify_dir(&dir).is_err());
        // The first entry edited: the whole log is checked, not only its end.
        let edited = lines[0].replacen("offer_too_large", "offer_too_small", 1);
        std::fs::write(&log_path, format!("{edited}\n{}\n{}\n", lines[1], lines[2])).unwrap();
        let e = EvidenceLog::open(&dir).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        // Deleted, log and head: the key is still there, so that is not a new log.
        std::fs::remove_file(&log_path).unwrap();
        std::fs::remove_file(dir.join(HEAD)).unwrap();
        let e = EvidenceLog::open(&dir).unwrap_err();
        assert!(e.to_string().contains("head is missing"), "{e}");
    }

    #[test]
    fn an_entry_cut_off_mid_write_is_dropped_on_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("evidence");
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(1, record(1)).unwrap();
        drop(log);
        let mut file = std::fs::OpenOptions::new().append(true).open(dir.join(LOG)).unwrap();
        file.write_all(b"0123abcd half an entry").unwrap();
        drop(file);
        let mut log = EvidenceLog::open(&dir).unwrap();
        log.append(2, record(2)).unwrap();
        assert_eq!(verify_dir(&dir).unwrap().entries.len(), 2);
    }
}
