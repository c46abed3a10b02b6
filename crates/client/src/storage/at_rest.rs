//! Encryption of the profile at rest, under a passphrase.
//!
//! Both databases of a profile (`profile.db`: credentials, history, attachment keys;
//! `mls.db`: the MLS group secrets and signature key) are SQLCipher databases: every page is
//! encrypted with AES-256 and authenticated with HMAC-SHA512 (encrypt-then-MAC), so nothing of
//! the profile is readable or silently modifiable on disk. The 256-bit database key is derived
//! from the passphrase with Argon2id; its salt and costs live in `at-rest.json` beside the
//! databases, and that file's presence is what marks a profile as encrypted.
//!
//! Changing the passphrase (or turning encryption on or off) re-exports both databases to new
//! files and swaps them in only after the new parameters are written, so an interruption
//! leaves either the old profile or the new one, never a mix.

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::Connection;
use zeroize::{Zeroize, Zeroizing};

use super::ProfileError;

const PARAMS_FILE: &str = "at-rest.json";
/// Written, in one rename, when a passphrase change commits.
const COMMIT_FILE: &str = "at-rest.commit";
/// What the commit file holds when the change removes the passphrase.
const NO_PASSPHRASE: &[u8] = b"none";
/// The databases a profile holds.
pub(crate) const DATABASES: [&str; 2] = ["profile.db", "mls.db"];

/// Argon2id costs: 64 MiB and 3 passes, about a third of a second on a laptop core — what
/// the Argon2 RFC (9106, second recommendation) suggests for memory-constrained use.
const MEMORY_KIB: u32 = 64 * 1024;
const ITERATIONS: u32 = 3;
const PARALLELISM: u32 = 1;

/// The key that opens an encrypted profile. Wiped from memory when dropped.
pub struct ProfileKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileKey(<redacted>)")
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KdfParams {
    kdf: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

/// True if the profile in `dir` is encrypted.
pub fn is_encrypted(dir: &Path) -> bool {
    dir.join(PARAMS_FILE).exists()
}

fn read_params(dir: &Path) -> Result<KdfParams, ProfileError> {
    let text = std::fs::read_to_string(dir.join(PARAMS_FILE))
        .map_err(|_| ProfileError::Corrupt("cannot read at-rest.json"))?;
    let params: KdfParams = serde_json::from_str(&text).map_err(|_| ProfileError::Corrupt("at-rest.json"))?;
    if params.kdf != "argon2id" {
        return Err(ProfileError::Corrupt("at-rest.json names an unknown key derivation"));
    }
    Ok(params)
}

fn derive(passphrase: &str, params: &KdfParams) -> Result<ProfileKey, ProfileError> {
    let salt = hex::decode(&params.salt).map_err(|_| ProfileError::Corrupt("at-rest.json salt"))?;
    // Costs far above the defaults would let a planted file stall the client for hours.
    if params.memory_kib > 1024 * 1024 || params.iterations > 64 || params.parallelism > 16 {
        return Err(ProfileError::Corrupt("at-rest.json asks for unreasonable costs"));
    }
    let costs = Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
        .map_err(|_| ProfileError::Corrupt("at-rest.json costs"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, costs)
        .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
        .map_err(|_| ProfileError::Corrupt("at-rest.json parameters"))?;
    Ok(ProfileKey(key))
}

/// Derive the key of the encrypted profile in `dir` from its passphrase. A wrong passphrase
/// is found out when the first database is opened.
pub fn unlock(dir: &Path, passphrase: &str) -> Result<ProfileKey, ProfileError> {
    derive(passphrase, &read_params(dir)?)
}

/// Key a freshly opened connection and check the key opens it.
pub(crate) fn apply_key(db: &Connection, key: Option<&ProfileKey>) -> Result<(), ProfileError> {
    let Some(key) = key else { return Ok(()) };
    // A wrong passphrase is reported as our error; SQLCipher's own log would print it again.
    let _ = db.execute_batch("PRAGMA cipher_log_level = NONE;");
    let key_hex = Zeroizing::new(hex::encode(key.0.as_ref()));
    let mut statement = Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", key_hex.as_str()));
    let keyed = db.execute_batch(&statement);
    statement.zeroize();
    keyed?;
    match db.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::NotADatabase => {
            Err(ProfileError::WrongPassphrase)
        }
        Err(e) => Err(e.into()),
    }
}

fn part(dir: &Path, db: &str) -> PathBuf {
    dir.join(format!("{db}.rekeyed"))
}

/// Complete a passphrase change that was interrupted. The change committed if `at-rest.commit`
/// exists: then its re-exported databases are swapped in and its parameters take effect.
/// Otherwise its half-made exports are dropped and the profile stays as it was.
pub(crate) fn finish_interrupted_change(dir: &Path) -> Result<(), ProfileError> {
    let io = |_| ProfileError::Corrupt("cannot finish an interrupted passphrase change");
    let commit = dir.join(COMMIT_FILE);
    let committed = commit.exists();
    for db in DATABASES {
        let p = part(dir, db);
        if p.exists() {
            if committed {
                replace_database(dir, db, &p).map_err(io)?;
            } else {
                std::fs::remove_file(&p).map_err(io)?;
            }
        }
    }
    if committed {
        let text = std::fs::read(&commit).map_err(io)?;
        if text == NO_PASSPHRASE {
            match std::fs::remove_file(dir.join(PARAMS_FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
            std::fs::remove_file(&commit).map_err(io)?;
        } else {
            std::fs::rename(&commit, dir.join(PARAMS_FILE)).map_err(io)?;
        }
    }
    Ok(())
}

fn replace_database(dir: &Path, db: &str, from: &Path) -> std::io::Result<()> {
    std::fs::rename(from, dir.join(db))?;
    // The old write-ahead log belongs to the old file (and may hold its plaintext).
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{db}{suffix}")));
    }
    Ok(())
}

/// Encrypt the profile in `dir` under `new` (or, with `None`, store it in the clear).
/// `current` opens it as it is now. The profile must not be in use by another process.
pub fn change_passphrase(
    dir: &Path,
    current: Option<&ProfileKey>,
    new: Option<&str>,
) -> Result<(), ProfileError> {
    finish_interrupted_change(dir)?;
    let params = new.map(|_| KdfParams {
        kdf: "argon2id".into(),
        memory_kib: MEMORY_KIB,
        iterations: ITERATIONS,
        parallelism: PARALLELISM,
        salt: hex::encode(rand::random::<[u8; 16]>()),
    });
    let new_key = match (new, &params) {
        (Some(passphrase), Some(p)) => Some(derive(passphrase, p)?),
        _ => None,
    };
    // 1. Export each database under the new key, beside the old one.
    for db in DATABASES {
        let path = dir.join(db);
        if !path.exists() {
            continue;
        }
        let target = part(dir, db);
        let conn = Connection::open(&path)?;
        apply_key(&conn, current)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let key_sql = Zeroizing::new(new_key.as_ref().map(|k| hex::encode(k.0.as_ref())).unwrap_or_default());
        let mut attach = Zeroizing::new(format!(
            "ATTACH DATABASE '{}' AS rekeyed KEY \"{}\";",
            target.to_string_lossy().replace('\'', "''"),
            if key_sql.is_empty() { String::new() } else { format!("x'{}'", key_sql.as_str()) }
        ));
        let attached = conn.execute_batch(&attach);
        attach.zeroize();
        attached?;
        conn.query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(()))?;
        conn.execute_batch("DETACH DATABASE rekeyed;")?;
        drop(conn);
        restrict(&target);
    }
    // Every database that exists must have its export before the change may commit.
    for db in DATABASES {
        if dir.join(db).exists() && !part(dir, db).exists() {
            return Err(ProfileError::Corrupt("a re-exported database went missing; nothing changed"));
        }
    }
    // 2. Commit, in one rename: the new parameters (or "no passphrase").
    let contents = match &params {
        Some(p) => serde_json::to_vec_pretty(p).map_err(|_| ProfileError::Corrupt("at-rest.json"))?,
        None => NO_PASSPHRASE.to_vec(),
    };
    let write_err = |_| ProfileError::Corrupt("cannot write in the profile directory");
    let tmp = dir.join(format!("{COMMIT_FILE}.tmp"));
    std::fs::write(&tmp, contents).map_err(write_err)?;
    restrict(&tmp);
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(write_err)?;
    std::fs::rename(&tmp, dir.join(COMMIT_FILE)).map_err(write_err)?;
    // 3. Swap the databases in.
    finish_interrupted_change(dir)
}

fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// An advisory lock on a profile directory (`profile.lock`): every open client holds it
/// shared; a passphrase change and the recovery of an interrupted one need it exclusive, so
/// they never replace databases under a process that has them open.
#[derive(Debug)]
pub(crate) struct ProfileLock {
    _file: std::fs::File,
}

impl ProfileLock {
    fn file(dir: &Path) -> Result<std::fs::File, ProfileError> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("profile.lock"))
            .map_err(|_| ProfileError::Corrupt("cannot open profile.lock"))
    }

    /// Wait for any passphrase change to finish, then hold the profile shared.
    pub(crate) fn shared(dir: &Path) -> Result<Self, ProfileError> {
        let file = Self::file(dir)?;
        file.lock_shared().map_err(|_| ProfileError::Corrupt("cannot lock profile.lock"))?;
        Ok(Self { _file: file })
    }

    /// The profile to ourselves, if no other process has it open.
    pub(crate) fn try_exclusive(dir: &Path) -> Result<Option<Self>, ProfileError> {
        let file = Self::file(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(_)) => Err(ProfileError::Corrupt("cannot lock profile.lock")),
        }
    }
}
