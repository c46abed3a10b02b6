//! Who may use the console: operators (names and Argon2id password hashes in a file in the
//! data directory), their sessions, the brake on guessing passwords, and CSRF tokens.
//!
//! The operators file holds one `name:$argon2id$...` line per operator; `rampart admin
//! console add-operator` writes it. It is read at every login, so adding or removing an
//! operator needs no restart (removing one also ends their sessions at their next request).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The operators file in a data directory.
pub fn operators_path(data_dir: &Path) -> PathBuf {
    data_dir.join("console").join("operators")
}

/// Longest operator name, and the characters it may hold.
pub const MAX_OPERATOR_NAME: usize = 32;
/// Longest password accepted (longer ones are refused before hashing: hashing is the cost).
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Shortest password `add-operator` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_OPERATOR_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {why}")]
    Malformed { path: PathBuf, line: usize, why: String },
    #[error("an operator name is 1 to {MAX_OPERATOR_NAME} of a-z, 0-9, '_', '.', '-'")]
    Name,
    #[error("a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long")]
    Password,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("{path}: {why}")]
    Write { path: PathBuf, why: String },
}

/// Read the operators file: name and PHC hash string per operator. No file: no operators.
pub fn read_operators(path: &Path) -> Result<Vec<(String, String)>, OperatorError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(OperatorError::Io { path: path.to_owned(), source }),
    };
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |why: &str| OperatorError::Malformed {
            path: path.to_owned(),
            line: index + 1,
            why: why.to_owned(),
        };
        let (name, hash) = line.split_once(':').ok_or_else(|| malformed("not NAME:HASH"))?;
        if !valid_name(name) {
            return Err(malformed("not a valid operator name"));
        }
        PasswordHash::new(hash).map_err(|_| malformed("not a password hash"))?;
        out.push((name.to_owned(), hash.to_owned()));
    }
    Ok(out)
}

/// Hash a password with Argon2id (the crate's defaults: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, OperatorError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(OperatorError::Password);
    }
    let salt = SaltString::from_b64(&base64_salt()).map_err(|e| OperatorError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| OperatorError::Hash(e.to_string()))
}

fn base64_salt() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Add (or replace) an operator in the file, written whole and private (0600).
pub fn set_operator(path: &Path, name: &str, password: &str) -> Result<(), OperatorError> {
    if !valid_name(name) {
        return Err(OperatorError::Name);
    }
    let hash = hash_password(password)?;
    let mut operators: Vec<(String, String)> =
        read_operators(path)?.into_iter().filter(|(n, _)| n != name).collect();
    operators.push((name.to_owned(), hash));
    write_operators(path, &operators)
}

/// Remove an operator; returns whether there was one by that name.
pub fn remove_operator(path: &Path, name: &str) -> Result<bool, OperatorError> {
    let operators = read_operators(path)?;
    let kept: Vec<(String, String)> = operators.iter().filter(|(n, _)| n != name).cloned().collect();
    if kept.len() == operators.len() {
        return Ok(false);
    }
    write_operators(path, &kept)?;
    Ok(true)
}

fn write_operators(path: &Path, operators: &[(String, String)]) -> Result<(), OperatorError> {
    let io = |source| OperatorError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = String::from(
        "# Rampart console operators: NAME:ARGON2ID-HASH (rampart admin console add-operator)\n",
    );
    for (name, hash) in operators {
        text.push_str(&format!("{name}:{hash}\n"));
    }
    crate::tls::write_private(path, text.as_bytes())
        .map_err(|e| OperatorError::Write { path: path.to_owned(), why: e.to_string() })
}

/// Check a password against an operator's hash; for an unknown name, against a hash of
/// nothing, so the answer takes as long either way.
pub fn check_password(operators: &[(String, String)], name: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    // A hash of a random password, made once: verifying against it costs what a real one does.
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let decoy = DECOY.get_or_init(|| hash_password(&random_token()).unwrap_or_default());
    let (hash, known) = match operators.iter().find(|(n, _)| n == name) {
        Some((_, hash)) => (hash.as_str(), true),
        None => (decoy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    ok && known
}

/// Failed logins allowed per address and per operator name within [`FAILURE_WINDOW`].
pub const FAILURES_PER_ADDRESS: usize = 5;
pub const FAILURES_PER_NAME: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys remembered, at most (the oldest are forgotten first).
const MAX_TRACKED: usize = 10_000;

/// The brake on guessing: too many failures from an address, or against a name, and every
/// login attempt for it is refused (right password or not) until the oldest failure ages out.
#[derive(Debug, Default)]
pub struct LoginBrake {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginBrake {
    fn keys(addr: IpAddr, name: &str) -> [(String, usize); 2] {
        [
            (format!("ip {}", crate::state::address_key(addr)), FAILURES_PER_ADDRESS),
            (format!("name {name}"), FAILURES_PER_NAME),
        ]
    }

    /// Begin an attempt: `Err(wait)` when attempts are braked now; otherwise the attempt is
    /// counted as a failure at once, under the same lock, and [`LoginBrake::succeeded`] takes
    /// it back. So a thousand attempts sent together get the allowed few, not a thousand
    /// password checks.
    pub fn attempt(&self, addr: IpAddr, name: &str, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        Self::wait(&mut failures, addr, name, now)?;
        Self::record(&mut failures, addr, name, now);
        Ok(())
    }

    /// The attempt begun at `at` succeeded: it no longer counts.
    pub fn succeeded(&self, addr: IpAddr, name: &str, at: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _) in Self::keys(addr, name) {
            if let Some(list) = failures.get_mut(&key)
                && let Some(i) = list.iter().rposition(|t| *t == at)
            {
                list.remove(i);
            }
        }
    }

    fn wait(
        failures: &mut HashMap<String, VecDeque<Instant>>,
        addr: IpAddr,
        name: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for (key, allowed) in Self::keys(addr, name) {
            if let Some(list) = failures.get_mut(&key) {
                while list.front().is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW) {
                    list.pop_front();
                }
                if list.len() >= allowed
                    && let Some(oldest) = list.front()
                {
                    wait = wait.max(FAILURE_WINDOW.saturating_sub(now.duration_since(*oldest)));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    fn record(failures: &mut HashMap<String, VecDeque<Instant>>, addr: IpAddr, name: &str, now: Instant) {
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, list| list.back().is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW));
        }
        for (key, allowed) in Self::keys(addr, name) {
            let list = failures.entry(key).or_default();
            list.push_back(now);
            while list.len() > allowed {
                list.pop_front();
            }
        }
    }
}

/// A signed-in operator's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: String,
    /// Which password the operator signed in with ([`credential_tag`] of its hash): a new
    /// password ends the sessions made with the old one.
    pub credential: [u8; 32],
    /// Sent back in every form; a POST without it is refused.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
}

/// Sessions expire after this long unused, and after [`SESSION_MAX`] in any case.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 60 * 60);
const MAX_SESSIONS: usize = 1_000;

/// Sessions by the SHA-256 of their cookie (the cookie itself is kept nowhere on the server).
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a session keeps of the password hash it was made under.
pub fn credential_tag(password_hash: &str) -> [u8; 32] {
    Sha256::digest(password_hash.as_bytes()).into()
}

/// A fresh random token, hex.
pub fn random_token() -> String {
    let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
    hex::encode(bytes.as_slice())
}

impl Sessions {
    /// Start a session; returns the cookie value.
    pub fn start(&self, operator: &str, credential: [u8; 32], now: Instant) -> String {
        let token = random_token();
        let mut sessions = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            token_hash(&token),
            Session {
                operator: operator.to_owned(),
                credential,
                csrf: random_token(),
                created: now,
                last_used: now,
            },
        );
        token
    }

    /// The live session of a cookie, touched.
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        let key = token_hash(token);
        let session = sessions.get_mut(&key)?;
        if !alive(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    pub fn end(&self, token: &str) {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner()).remove(&token_hash(token));
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) < SESSION_IDLE && now.duration_since(s.created) < SESSION_MAX
}

/// Equal without telling how much of it was equal.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Hashed first, so the lengths compared are always equal too.
    bool::from(token_hash(a).ct_eq(&token_hash(b)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn operators_are_kept_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = operators_path(dir.path());
        assert!(read_operators(&path).unwrap_or_default().is_empty());
        assert!(matches!(set_operator(&path, "Alice", "correct horse battery"), Err(OperatorError::Name)));
        assert!(matches!(set_operator(&path, "alice", "short"), Err(OperatorError::Password)));
        set_operator(&path, "alice", "correct horse battery").unwrap();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.contains("correct horse"), "the password itself is never written");
        let ops = read_operators(&path).unwrap_or_default();
        assert!(check_password(&ops, "alice", "correct horse battery"));
        assert!(!check_password(&ops, "alice", "correct horse batterY"));
        assert!(!check_password(&ops, "mallory", "correct horse battery"));
        assert!(remove_operator(&path, "alice").unwrap_or(false));
        assert!(read_operators(&path).unwrap_or_default().is_empty());
        std::fs::write(&path, "alice:plaintext\n").unwrap();
        assert!(matches!(read_operators(&path), Err(OperatorError::Malformed { line: 1, .. })));
    }

    #[test]
    fn the_brake_holds_after_too_many_failures_and_lets_go_later() {
        let brake = LoginBrake::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        // Attempts made together (none finished yet) count at once.
        for _ in 0..FAILURES_PER_ADDRESS {
            assert!(brake.attempt(ip, "alice", t0).is_ok());
        }
        let wait = brake.attempt(ip, "alice", t0).err().unwrap_or_default();
        assert!(wait > Duration::from_secs(14 * 60));
        // One of them succeeding gives its try back.
        brake.succeeded(ip, "alice", t0);
        assert!(brake.attempt(ip, "alice", t0).is_ok());
        assert!(brake.attempt(ip, "alice", t0).is_err());
        // Another address, guessing the same name, still has its own tries (until the name's run out).
        let other: IpAddr = [192, 0, 2, 1].into();
        assert!(brake.attempt(other, "alice", t0).is_ok());
        assert!(brake.attempt(ip, "alice", t0 + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn sessions_expire_when_idle_and_end_on_logout() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let token = sessions.start("alice", [1; 32], t0);
        let s = sessions.get(&token, t0 + Duration::from_secs(60)).map(|s| s.operator);
        assert_eq!(s.as_deref(), Some("alice"));
        assert!(sessions.get("not-a-session", t0).is_none());
        assert!(sessions.get(&token, t0 + Duration::from_secs(60) + SESSION_IDLE).is_none());
        let token = sessions.start("alice", [1; 32], t0);
        sessions.end(&token);
        assert!(sessions.get(&token, t0).is_none());
        assert!(same_token("abc", "abc") && !same_token("abc", "abd"));
    }
}
