//! The profile directory: one SQLite file with this device's credentials, the pinned server
//! certificate and the messages received. Created readable by its owner only.

use std::path::{Path, PathBuf};

use rampart_core::{AccountId, DeviceId, DeviceSecret, GroupId};
use rusqlite::{Connection, OptionalExtension, params};

use super::ProfileError;
use crate::net::ServerAddress;

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

#[derive(Debug)]
pub struct Profile {
    dir: PathBuf,
    pub(crate) db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts(account INTEGER PRIMARY KEY, label TEXT NOT NULL, added_at INTEGER NOT NULL);
-- Keyed by its own row id, not the caller-chosen call id: a caller reusing an id gets a new
-- line instead of overwriting (or hiding behind) an old one. A ring notice delivered twice
-- has the same server time and stays one line.
CREATE TABLE IF NOT EXISTS call_log(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id BLOB NOT NULL,
    peer_account INTEGER NOT NULL,
    peer_label TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    answered_at INTEGER,
    ended_at INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    UNIQUE(call_id, peer_account, started_at)
);
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
CREATE TABLE IF NOT EXISTS conversations(
    group_id BLOB PRIMARY KEY,
    peer_account INTEGER,
    name TEXT NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS left_accounts(
    group_id BLOB NOT NULL,
    account INTEGER NOT NULL,
    PRIMARY KEY (group_id, account)
);
CREATE TABLE IF NOT EXISTS trusted_keys(
    account INTEGER NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (account, key)
);
-- Message requests (requests.rs): a conversation a stranger started, and what arrived in it,
-- kept exactly as delivered and never opened until the user accepts.
CREATE TABLE IF NOT EXISTS requests(
    group_id BLOB PRIMARY KEY,
    sender_account INTEGER NOT NULL,
    sender_label TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    declined INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS held_deliveries(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    message_id BLOB NOT NULL,
    sender_account INTEGER NOT NULL,
    sender_device INTEGER NOT NULL,
    sender_label TEXT NOT NULL,
    server_ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
-- Identities the user compared in person (`rampart verify --mark-verified`): the root key
-- then. A different root later holds sending to that account until the user decides.
CREATE TABLE IF NOT EXISTS verified(account INTEGER PRIMARY KEY, root BLOB NOT NULL, label TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blocked(account INTEGER PRIMARY KEY, label TEXT NOT NULL, blocked_at INTEGER NOT NULL);
-- Per conversation and device, the last message count seen from that device (or, for this
-- device, the last one it sent): a jump means the server did not deliver what was between.
CREATE TABLE IF NOT EXISTS sequences(conversation BLOB NOT NULL, device INTEGER NOT NULL, last INTEGER NOT NULL, PRIMARY KEY(conversation, device)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reactions(
    message_seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    account INTEGER NOT NULL,
    emoji TEXT NOT NULL,
    PRIMARY KEY (message_seq, account)
);
CREATE TABLE IF NOT EXISTS attachments(
    message_seq INTEGER PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,
    blob_id BLOB NOT NULL,
    key BLOB NOT NULL,
    digest BLOB NOT NULL,
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    saved_path TEXT
);
";

/// Columns added after the first release of the profile, with their definitions: an older
/// profile gains them when it is opened.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("messages", "conversation", "BLOB"),
    ("messages", "outgoing", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "kind", "TEXT NOT NULL DEFAULT 'text'"),
    ("messages", "status", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "reply_to", "BLOB"),
    ("messages", "edited", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "deleted", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "sent_at", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "expires_at", "INTEGER"),
    ("conversations", "read_seq", "INTEGER NOT NULL DEFAULT 0"),
    ("conversations", "timer_secs", "INTEGER NOT NULL DEFAULT 0"),
    ("conversations", "merged_into", "BLOB"),
    ("call_log", "signals_dropped_before_accept", "INTEGER NOT NULL DEFAULT 0"),
    ("call_log", "signals_released", "INTEGER NOT NULL DEFAULT 0"),
];

/// A conversation as listed to the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConversationInfo {
    pub id: String,
    pub name: String,
    pub direct: bool,
    pub closed: bool,
    pub messages: u64,
    /// Messages from others not yet shown to the user.
    pub unread: u64,
    /// Disappearing-messages timer, 0 when off.
    pub timer_secs: u32,
    /// When the last message arrived or was sent (0 for none).
    pub last_activity_ms: u64,
}

pub(crate) fn db_id(v: u64) -> Result<i64, ProfileError> {
    i64::try_from(v).map_err(|_| ProfileError::Corrupt("identifier out of range"))
}

impl Profile {
    /// Open (creating) the profile in `dir`; `key` opens an encrypted one.
    pub fn open(dir: &Path, key: Option<&super::at_rest::ProfileKey>) -> Result<Self, ProfileError> {
        create_private_dir(dir)?;
        let path = dir.join("profile.db");
        let db = Connection::open(&path)?;
        super::at_rest::apply_key(&db, key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        for (table, column, definition) in ADDED_COLUMNS {
            let present = db
                .prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?
                .exists([column])?;
            if !present {
                db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
            }
        }
        db.execute_batch(
            "CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation, seq);
             -- purge_expired runs on every receive: only disappearing messages are looked at.
             CREATE INDEX IF NOT EXISTS messages_expiring ON messages(expires_at) WHERE expires_at IS NOT NULL;",
        )?;
        Ok(Self { dir: dir.to_path_buf(), db })
    }

    /// A throwaway profile held in memory (while the real one's files are being replaced).
    pub(crate) fn open_in_memory() -> Result<Self, ProfileError> {
        Ok(Self { dir: PathBuf::new(), db: Connection::open_in_memory()? })
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
}

impl Profile {
    pub fn trust_key(&self, account: AccountId, key: &[u8; 32]) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT OR IGNORE INTO trusted_keys(account, key) VALUES (?1, ?2)",
            params![db_id(account.0)?, &key[..]],
        )?;
        Ok(())
    }

    /// A new identity for `account`: its earlier keys are no longer trusted.
    pub fn forget_trusted_keys(&self, account: AccountId) -> Result<(), ProfileError> {
        self.db.execute("DELETE FROM trusted_keys WHERE account = ?1", params![db_id(account.0)?])?;
        Ok(())
    }

    pub fn trusted_keys(&self, account: AccountId) -> Result<Vec<[u8; 32]>, ProfileError> {
        let mut st = self.db.prepare_cached("SELECT key FROM trusted_keys WHERE account = ?1")?;
        let keys = st.query_map([db_id(account.0)?], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for k in keys {
            out.push(<[u8; 32]>::try_from(k?.as_slice()).map_err(|_| ProfileError::Corrupt("trusted key"))?);
        }
        Ok(out)
    }

    /// The identity key the user verified for `account`, with how it was shown.
    pub fn verified_root(&self, account: AccountId) -> Result<Option<([u8; 32], String)>, ProfileError> {
        let row: Option<(Vec<u8>, String)> = self
            .db
            .query_row("SELECT root, label FROM verified WHERE account = ?1", [db_id(account.0)?], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(root, label)| {
            <[u8; 32]>::try_from(root.as_slice())
                .map(|r| (r, label))
                .map_err(|_| ProfileError::Corrupt("verified key"))
        })
        .transpose()
    }

    pub fn save_verified(
        &self,
        account: AccountId,
        root: &[u8; 32],
        label: &str,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO verified(account, root, label, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(account) DO UPDATE SET root = excluded.root, label = excluded.label, at = excluded.at",
            params![db_id(account.0)?, &root[..], label, db_id(crate::clock::now_ms())?],
        )?;
        Ok(())
    }

    pub fn forget_verified(&self, account: AccountId) -> Result<(), ProfileError> {
        self.db.execute("DELETE FROM verified WHERE account = ?1", [db_id(account.0)?])?;
        Ok(())
    }

    pub fn save_conversation(
        &self,
        group: &GroupId,
        peer: Option<AccountId>,
        name: &str,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO conversations(group_id, peer_account, name) VALUES (?1, ?2, ?3)
             ON CONFLICT(group_id) DO UPDATE SET closed = 0",
            params![group.as_bytes(), peer.map(|p| db_id(p.0)).transpose()?, name],
        )?;
        Ok(())
    }

    pub fn rename_conversation(&self, group: &GroupId, name: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "UPDATE conversations SET name = ?2 WHERE group_id = ?1",
            params![group.as_bytes(), name],
        )?;
        Ok(())
    }

    /// Two people who wrote to each other at the same time each created a 1:1 conversation;
    /// once both are known here, both devices keep the one with the smaller id (the same choice
    /// on both sides) and merge the other into it: its history moves over, and what still
    /// arrives in it is shown in the kept one ([`Profile::shown_conversation`]).
    pub fn converge_direct(&self, peer: AccountId) -> Result<(), ProfileError> {
        let mut st = self.db.prepare(
            "SELECT group_id FROM conversations
             WHERE peer_account = ?1 AND closed = 0 AND merged_into IS NULL ORDER BY group_id",
        )?;
        let groups: Vec<Vec<u8>> = st.query_map([db_id(peer.0)?], |r| r.get(0))?.collect::<Result<_, _>>()?;
        let Some((kept, others)) = groups.split_first() else { return Ok(()) };
        for other in others {
            self.db.execute(
                "UPDATE messages SET conversation = ?1 WHERE conversation = ?2",
                params![kept, other],
            )?;
            self.db.execute(
                "UPDATE conversations SET merged_into = ?1 WHERE group_id = ?2",
                params![kept, other],
            )?;
        }
        Ok(())
    }

    /// The conversation whose history shows what arrives in `group`: itself, or the one it
    /// was merged into.
    pub fn shown_conversation(&self, group: &GroupId) -> Result<GroupId, ProfileError> {
        let merged: Option<Option<Vec<u8>>> = self
            .db
            .query_row("SELECT merged_into FROM conversations WHERE group_id = ?1", [group.as_bytes()], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(merged.flatten().and_then(|b| GroupId::from_slice(&b)).unwrap_or_else(|| group.clone()))
    }

    /// The conversation is a group, not a 1:1 (a two-person group looks like a 1:1 in its
    /// Welcome until its creator names it).
    pub fn mark_group(&self, group: &GroupId) -> Result<(), ProfileError> {
        self.db.execute(
            "UPDATE conversations SET peer_account = NULL WHERE group_id = ?1",
            [group.as_bytes()],
        )?;
        Ok(())
    }

    /// True for a 1:1 conversation.
    pub fn is_direct(&self, group: &GroupId) -> Result<bool, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT peer_account IS NOT NULL FROM conversations WHERE group_id = ?1",
                [group.as_bytes()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    pub fn mark_conversation_closed(&self, group: &GroupId) -> Result<(), ProfileError> {
        self.db.execute("UPDATE conversations SET closed = 1 WHERE group_id = ?1", [group.as_bytes()])?;
        Ok(())
    }

    /// The open 1:1 conversation with `peer`, newest first.
    pub fn direct_conversation(&self, peer: AccountId) -> Result<Option<GroupId>, ProfileError> {
        let id: Option<Vec<u8>> = self
            .db
            .query_row(
                "SELECT group_id FROM conversations
                 WHERE peer_account = ?1 AND closed = 0 AND merged_into IS NULL ORDER BY rowid DESC LIMIT 1",
                [db_id(peer.0)?],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.and_then(|b| GroupId::from_slice(&b)))
    }

    /// A conversation by id (hex, or a unique prefix of at least 6) or by name.
    pub fn find_conversation(&self, name: &str) -> Result<Option<GroupId>, ProfileError> {
        let all = self.conversations()?;
        let lower = name.to_lowercase();
        let by_id: Vec<&ConversationInfo> =
            all.iter().filter(|c| lower.len() >= 6 && c.id.starts_with(&lower)).collect();
        let found = match by_id.as_slice() {
            [one] => Some(*one),
            _ => all.iter().filter(|c| !c.closed).find(|c| c.name.to_lowercase() == lower),
        };
        Ok(found.and_then(|c| GroupId::from_hex(&c.id)))
    }

    pub fn conversations(&self) -> Result<Vec<ConversationInfo>, ProfileError> {
        let mut st = self.db.prepare(
            "SELECT c.group_id, c.name, c.peer_account IS NOT NULL, c.closed,
                    (SELECT COUNT(*) FROM messages m WHERE m.conversation = c.group_id AND m.kind != 'notice'),
                    (SELECT COUNT(*) FROM messages m WHERE m.conversation = c.group_id AND m.seq > c.read_seq
                        AND m.outgoing = 0 AND m.kind != 'notice' AND m.deleted = 0),
                    c.timer_secs,
                    (SELECT MAX(m.server_ts) FROM messages m WHERE m.conversation = c.group_id)
             FROM conversations c WHERE c.merged_into IS NULL ORDER BY c.rowid",
        )?;
        let rows = st.query_map([], |r| {
            let id: Vec<u8> = r.get(0)?;
            Ok(ConversationInfo {
                id: hex::encode(id),
                name: r.get(1)?,
                direct: r.get(2)?,
                closed: r.get(3)?,
                messages: r.get::<_, i64>(4)?.max(0) as u64,
                unread: r.get::<_, i64>(5)?.max(0) as u64,
                timer_secs: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                last_activity_ms: r.get::<_, Option<i64>>(7)?.unwrap_or(0).max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn mark_left(&self, group: &GroupId, account: AccountId) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT OR IGNORE INTO left_accounts(group_id, account) VALUES (?1, ?2)",
            params![group.as_bytes(), db_id(account.0)?],
        )?;
        Ok(())
    }

    pub fn unmark_left(&self, group: &GroupId, account: AccountId) -> Result<(), ProfileError> {
        self.db.execute(
            "DELETE FROM left_accounts WHERE group_id = ?1 AND account = ?2",
            params![group.as_bytes(), db_id(account.0)?],
        )?;
        Ok(())
    }

    pub fn left_accounts(&self, group: &GroupId) -> Result<Vec<AccountId>, ProfileError> {
        let mut st = self.db.prepare_cached("SELECT account FROM left_accounts WHERE group_id = ?1")?;
        let rows = st.query_map([group.as_bytes()], |r| r.get::<_, i64>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(AccountId(u64::try_from(r?).map_err(|_| ProfileError::Corrupt("account id"))?));
        }
        Ok(out)
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
