//! The profile directory: one SQLite file with this device's credentials, the pinned server
//! certificate and the messages received. Created readable by its owner only.

use std::path::{Path, PathBuf};

use rampart_core::{AccountId, DeviceId, DeviceSecret, MessageId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::connection::ServerAddress;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot create the profile directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("profile database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the profile is damaged: {0}")]
    Corrupt(&'static str),
}

/// What a device needs to authenticate.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub server: ServerAddress,
    pub fingerprint: String,
    pub account: AccountId,
    pub device: DeviceId,
    pub secret: DeviceSecret,
    pub label: String,
}

/// A message as kept in the profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredMessage {
    pub seq: i64,
    pub sender_account: u64,
    pub sender_label: String,
    pub message_id: String,
    pub server_timestamp_ms: u64,
    pub text: String,
}

#[derive(Debug)]
pub struct Profile {
    dir: PathBuf,
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_account INTEGER NOT NULL,
    sender_device INTEGER NOT NULL,
    sender_label TEXT NOT NULL,
    message_id BLOB NOT NULL,
    server_ts INTEGER NOT NULL,
    text TEXT NOT NULL,
    UNIQUE(sender_account, message_id)
);
";

impl Profile {
    pub fn open(dir: &Path) -> Result<Self, ProfileError> {
        create_private_dir(dir)?;
        let path = dir.join("profile.db");
        let db = Connection::open(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { dir: dir.to_path_buf(), db })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, key: &str) -> Result<Option<String>, ProfileError> {
        Ok(self.db.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set(&self, key: &str, value: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<(), ProfileError> {
        self.db.execute("DELETE FROM settings WHERE key = ?1", [key])?;
        Ok(())
    }

    /// The server this profile talks to and its pinned certificate fingerprint, if known.
    pub fn server(&self) -> Result<Option<(ServerAddress, Option<String>)>, ProfileError> {
        let Some(url) = self.get("server")? else {
            return Ok(None);
        };
        let addr = ServerAddress::parse(&url).map_err(|_| ProfileError::Corrupt("server address"))?;
        Ok(Some((addr, self.get("fingerprint")?)))
    }

    /// Point the profile at a server. A different server forgets the old pin.
    pub fn set_server(&self, addr: &ServerAddress) -> Result<(), ProfileError> {
        if self.get("server")?.as_deref() != Some(addr.to_url().as_str()) {
            self.remove("fingerprint")?;
        }
        self.set("server", &addr.to_url())
    }

    pub fn credentials(&self) -> Result<Option<Credentials>, ProfileError> {
        let (Some((server, Some(fingerprint))), Some(account), Some(device), Some(secret)) =
            (self.server()?, self.get("account_id")?, self.get("device_id")?, self.get("device_secret")?)
        else {
            return Ok(None);
        };
        let account = account.parse().map_err(|_| ProfileError::Corrupt("account id"))?;
        let device = device.parse().map_err(|_| ProfileError::Corrupt("device id"))?;
        let secret = hex::decode(secret).ok().and_then(|b| DeviceSecret::from_slice(&b));
        let secret = secret.ok_or(ProfileError::Corrupt("device secret"))?;
        Ok(Some(Credentials {
            server,
            fingerprint,
            account: AccountId(account),
            device: DeviceId(device),
            secret,
            label: self.get("label")?.unwrap_or_default(),
        }))
    }

    pub fn save_credentials(
        &self,
        account: AccountId,
        device: DeviceId,
        secret: &DeviceSecret,
    ) -> Result<(), ProfileError> {
        let tx = self.db.unchecked_transaction()?;
        self.set("account_id", &account.0.to_string())?;
        self.set("device_id", &device.0.to_string())?;
        self.set("device_secret", &hex::encode(secret.as_bytes()))?;
        tx.commit()?;
        Ok(())
    }

    /// Store a received message unless it is already there. True if it is new: the server
    /// delivers at least once, this makes it exactly once for the user.
    pub fn store_message(
        &self,
        sender_account: AccountId,
        sender_device: DeviceId,
        sender_label: &str,
        message_id: &MessageId,
        server_ts: u64,
        text: &str,
    ) -> Result<Option<i64>, ProfileError> {
        let inserted = self.db.execute(
            "INSERT OR IGNORE INTO messages(sender_account, sender_device, sender_label, message_id, server_ts, text)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                i64::try_from(sender_account.0).map_err(|_| ProfileError::Corrupt("account id"))?,
                i64::try_from(sender_device.0).map_err(|_| ProfileError::Corrupt("device id"))?,
                sender_label,
                &message_id.0[..],
                i64::try_from(server_ts).unwrap_or(i64::MAX),
                text
            ],
        )?;
        Ok((inserted == 1).then(|| self.db.last_insert_rowid()))
    }

    /// Received messages, oldest first.
    pub fn messages(&self, limit: u32) -> Result<Vec<StoredMessage>, ProfileError> {
        let mut stmt = self.db.prepare(
            "SELECT seq, sender_account, sender_label, message_id, server_ts, text FROM
               (SELECT * FROM messages ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map([limit], |r| {
            let id: Vec<u8> = r.get(3)?;
            Ok(StoredMessage {
                seq: r.get(0)?,
                sender_account: r.get::<_, i64>(1)? as u64,
                sender_label: r.get(2)?,
                message_id: hex::encode(id),
                server_timestamp_ms: r.get::<_, i64>(4)? as u64,
                text: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), ProfileError> {
    let err = |source| ProfileError::Create { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}
