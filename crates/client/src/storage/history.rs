//! The conversation history kept in the profile: messages both ways, and what happened to
//! them afterwards (edits, deletions, reactions, receipts, disappearing timers).
//!
//! Edits and deletions apply only to the author's own messages: a member cannot rewrite what
//! someone else said. Receipts only ever raise a message's status.

use rampart_core::{AccountId, DeviceId, GroupId, MessageId};
use rampart_proto::{AttachmentPointer, ReceiptKind};
use rusqlite::{OptionalExtension, params};

use super::ProfileError;
use super::profile::{Profile, db_id};

/// What a history line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Attachment,
    /// Something that happened in the conversation (a rename, a timer change, a contact's
    /// devices changing), written by this device, not sent by anyone.
    Notice,
}

impl MessageKind {
    fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Attachment => "attachment",
            MessageKind::Notice => "notice",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "attachment" => MessageKind::Attachment,
            "notice" => MessageKind::Notice,
            _ => MessageKind::Text,
        }
    }
}

/// How far one of our own messages got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
}

impl DeliveryStatus {
    fn from_db(v: i64) -> Self {
        match v {
            2 => DeliveryStatus::Read,
            1 => DeliveryStatus::Delivered,
            _ => DeliveryStatus::Sent,
        }
    }
}

/// A message to add to the history.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub conversation: &'a GroupId,
    pub sender_account: AccountId,
    pub sender_device: DeviceId,
    pub sender_label: &'a str,
    pub message_id: MessageId,
    pub sent_at_ms: u64,
    pub received_at_ms: u64,
    pub outgoing: bool,
    pub kind: MessageKind,
    pub text: &'a str,
    pub reply_to: Option<MessageId>,
}

/// An attachment as listed in the history (the key stays in the profile).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentInfo {
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// Where the decrypted file was saved, once downloaded.
    pub saved_path: Option<String>,
}

/// One line of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryItem {
    pub seq: i64,
    pub conversation: Option<String>,
    pub from_me: bool,
    pub sender_account: u64,
    pub sender_label: String,
    pub message_id: String,
    pub sent_at_ms: u64,
    pub received_at_ms: u64,
    pub kind: MessageKind,
    pub text: String,
    /// For our own messages: sent, delivered or read.
    pub status: DeliveryStatus,
    pub edited: bool,
    pub deleted: bool,
    pub reply_to: Option<String>,
    pub reactions: Vec<Reaction>,
    pub attachment: Option<AttachmentInfo>,
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reaction {
    pub account: u64,
    pub emoji: String,
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const HISTORY_COLUMNS: &str =
    "m.seq, m.conversation, m.outgoing, m.sender_account, m.sender_label, m.message_id,
     m.sent_at, m.server_ts, m.kind, m.text, m.status, m.edited, m.deleted, m.reply_to, m.expires_at,
     a.name, a.mime, a.size, a.saved_path";

fn history_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryItem> {
    let conversation: Option<Vec<u8>> = r.get(1)?;
    let message_id: Vec<u8> = r.get(5)?;
    let reply_to: Option<Vec<u8>> = r.get(13)?;
    let kind: String = r.get(8)?;
    let attachment = match r.get::<_, Option<String>>(15)? {
        Some(name) => Some(AttachmentInfo {
            name,
            mime: r.get(16)?,
            size: r.get::<_, i64>(17)?.max(0) as u64,
            saved_path: r.get(18)?,
        }),
        None => None,
    };
    Ok(HistoryItem {
        seq: r.get(0)?,
        conversation: conversation.map(hex::encode),
        from_me: r.get(2)?,
        sender_account: r.get::<_, i64>(3)?.max(0) as u64,
        sender_label: r.get(4)?,
        message_id: hex::encode(message_id),
        sent_at_ms: r.get::<_, i64>(6)?.max(0) as u64,
        received_at_ms: r.get::<_, i64>(7)?.max(0) as u64,
        kind: MessageKind::parse(&kind),
        text: r.get(9)?,
        status: DeliveryStatus::from_db(r.get(10)?),
        edited: r.get(11)?,
        deleted: r.get(12)?,
        reply_to: reply_to.map(hex::encode),
        reactions: Vec::new(),
        attachment,
        expires_at_ms: r.get::<_, Option<i64>>(14)?.map(|v| v.max(0) as u64),
    })
}

impl Profile {
    /// Add a message unless it is already there (the server delivers at least once; this makes
    /// it exactly once for the user). Returns its sequence number if it is new. A message in a
    /// conversation with a disappearing timer gets its expiry now.
    pub fn insert_message(&self, m: &NewMessage<'_>) -> Result<Option<i64>, ProfileError> {
        let timer = self.timer(m.conversation)?;
        let expires_at = (timer > 0 && m.kind != MessageKind::Notice)
            .then(|| ms(m.received_at_ms.saturating_add(u64::from(timer) * 1000)));
        let inserted = self.db.execute(
            "INSERT OR IGNORE INTO messages(sender_account, sender_device, sender_label, message_id, server_ts, text,
                 conversation, outgoing, kind, reply_to, sent_at, expires_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0)",
            params![
                db_id(m.sender_account.0)?,
                db_id(m.sender_device.0)?,
                m.sender_label,
                &m.message_id.0[..],
                ms(m.received_at_ms),
                m.text,
                m.conversation.as_bytes(),
                m.outgoing,
                m.kind.as_str(),
                m.reply_to.map(|r| r.0.to_vec()),
                ms(m.sent_at_ms),
                expires_at,
            ],
        )?;
        Ok((inserted == 1).then(|| self.db.last_insert_rowid()))
    }

    /// A line written by this device into a conversation (not sent to anyone).
    pub fn insert_notice(&self, conversation: &GroupId, text: &str, now_ms: u64) -> Result<(), ProfileError> {
        self.insert_message(&NewMessage {
            conversation,
            sender_account: AccountId(0),
            sender_device: DeviceId(0),
            sender_label: "",
            message_id: MessageId::random(&mut rand::rng()),
            sent_at_ms: now_ms,
            received_at_ms: now_ms,
            outgoing: false,
            kind: MessageKind::Notice,
            text,
            reply_to: None,
        })?;
        Ok(())
    }

    /// The last message count of `device` in a conversation (see `Content::seq`).
    pub(crate) fn last_seq(
        &self,
        conversation: &GroupId,
        device: DeviceId,
    ) -> Result<Option<u64>, ProfileError> {
        let last: Option<i64> = self
            .db
            .prepare_cached("SELECT last FROM sequences WHERE conversation = ?1 AND device = ?2")?
            .query_row(params![conversation.as_bytes(), db_id(device.0)?], |r| r.get(0))
            .optional()?;
        Ok(last.map(|l| u64::try_from(l).unwrap_or(0)))
    }

    pub(crate) fn set_last_seq(
        &self,
        conversation: &GroupId,
        device: DeviceId,
        seq: u64,
    ) -> Result<(), ProfileError> {
        self.db
            .prepare_cached(
                "INSERT INTO sequences(conversation, device, last) VALUES (?1, ?2, ?3)
             ON CONFLICT(conversation, device) DO UPDATE SET last = excluded.last",
            )?
            .execute(params![conversation.as_bytes(), db_id(device.0)?, db_id(seq)?])?;
        Ok(())
    }

    /// Forget a conversation's counts: on joining it, what others sent before is not missing.
    pub(crate) fn forget_seqs(&self, conversation: &GroupId) -> Result<(), ProfileError> {
        self.db
            .prepare_cached("DELETE FROM sequences WHERE conversation = ?1")?
            .execute([conversation.as_bytes()])?;
        Ok(())
    }

    /// The row of `author`'s message `target` in a conversation.
    fn message_seq(
        &self,
        conversation: &GroupId,
        author: AccountId,
        target: &MessageId,
    ) -> Result<Option<i64>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT seq FROM messages WHERE conversation = ?1 AND sender_account = ?2 AND message_id = ?3",
                params![conversation.as_bytes(), db_id(author.0)?, &target.0[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Replace the text of the author's own message. False if there is no such message.
    pub fn edit_message(
        &self,
        conversation: &GroupId,
        author: AccountId,
        target: &MessageId,
        text: &str,
    ) -> Result<bool, ProfileError> {
        let n = self.db.execute(
            "UPDATE messages SET text = ?4, edited = 1
             WHERE conversation = ?1 AND sender_account = ?2 AND message_id = ?3 AND deleted = 0",
            params![conversation.as_bytes(), db_id(author.0)?, &target.0[..], text],
        )?;
        Ok(n > 0)
    }

    /// Delete the author's own message for everyone: its text and attachment go, a tombstone
    /// stays. Returns the saved attachment file to remove, if there was one.
    pub fn delete_message(
        &self,
        conversation: &GroupId,
        author: AccountId,
        target: &MessageId,
    ) -> Result<Option<String>, ProfileError> {
        let Some(seq) = self.message_seq(conversation, author, target)? else {
            return Ok(None);
        };
        let tx = self.db.unchecked_transaction()?;
        let saved: Option<String> = tx
            .query_row("SELECT saved_path FROM attachments WHERE message_seq = ?1", [seq], |r| r.get(0))
            .optional()?
            .flatten();
        tx.execute("DELETE FROM attachments WHERE message_seq = ?1", [seq])?;
        tx.execute("DELETE FROM reactions WHERE message_seq = ?1", [seq])?;
        tx.execute("UPDATE messages SET text = '', deleted = 1 WHERE seq = ?1", [seq])?;
        tx.commit()?;
        Ok(saved)
    }

    /// Set (or with an empty emoji, clear) `account`'s reaction to a message.
    pub fn react(
        &self,
        conversation: &GroupId,
        account: AccountId,
        target: &MessageId,
        emoji: &str,
    ) -> Result<bool, ProfileError> {
        let seq: Option<i64> = self
            .db
            .query_row(
                "SELECT seq FROM messages WHERE conversation = ?1 AND message_id = ?2 AND deleted = 0",
                params![conversation.as_bytes(), &target.0[..]],
                |r| r.get(0),
            )
            .optional()?;
        let Some(seq) = seq else { return Ok(false) };
        if emoji.is_empty() {
            self.db.execute(
                "DELETE FROM reactions WHERE message_seq = ?1 AND account = ?2",
                params![seq, db_id(account.0)?],
            )?;
        } else {
            self.db.execute(
                "INSERT INTO reactions(message_seq, account, emoji) VALUES (?1, ?2, ?3)
                 ON CONFLICT(message_seq, account) DO UPDATE SET emoji = excluded.emoji",
                params![seq, db_id(account.0)?, emoji],
            )?;
        }
        Ok(true)
    }

    /// A receipt from someone else for our messages: raise their status.
    pub fn apply_receipt(
        &self,
        conversation: &GroupId,
        kind: ReceiptKind,
        targets: &[MessageId],
    ) -> Result<usize, ProfileError> {
        let status = match kind {
            ReceiptKind::Delivered => 1,
            ReceiptKind::Read => 2,
        };
        let mut st = self.db.prepare_cached(
            "UPDATE messages SET status = ?3
             WHERE conversation = ?1 AND message_id = ?2 AND outgoing = 1 AND status < ?3",
        )?;
        let mut changed = 0;
        for t in targets {
            changed += st.execute(params![conversation.as_bytes(), &t.0[..], status])?;
        }
        Ok(changed)
    }

    pub fn set_timer(&self, conversation: &GroupId, seconds: u32) -> Result<(), ProfileError> {
        self.db.execute(
            "UPDATE conversations SET timer_secs = ?2 WHERE group_id = ?1",
            params![conversation.as_bytes(), i64::from(seconds)],
        )?;
        Ok(())
    }

    pub fn timer(&self, conversation: &GroupId) -> Result<u32, ProfileError> {
        let secs: Option<i64> = self
            .db
            .query_row(
                "SELECT timer_secs FROM conversations WHERE group_id = ?1",
                [conversation.as_bytes()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(secs.and_then(|s| u32::try_from(s).ok()).unwrap_or(0))
    }

    /// Remember an attachment's pointer (with its key) for a history line.
    pub fn save_attachment(&self, seq: i64, a: &AttachmentPointer) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT OR REPLACE INTO attachments(message_seq, blob_id, key, digest, size, name, mime)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![seq, &a.blob_id[..], &a.key[..], &a.digest[..], ms(a.size), a.name, a.mime],
        )?;
        Ok(())
    }

    /// The pointer of the attachment on history line `seq`.
    pub fn attachment(&self, seq: i64) -> Result<Option<AttachmentPointer>, ProfileError> {
        let row = self
            .db
            .query_row(
                "SELECT a.blob_id, a.key, a.digest, a.size, a.name, a.mime, m.text
                 FROM attachments a JOIN messages m ON m.seq = a.message_seq WHERE a.message_seq = ?1",
                [seq],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((blob_id, key, digest, size, name, mime, caption)) = row else { return Ok(None) };
        let bad = || ProfileError::Corrupt("attachment");
        Ok(Some(AttachmentPointer {
            name,
            mime,
            size: u64::try_from(size).map_err(|_| bad())?,
            blob_id: blob_id.as_slice().try_into().map_err(|_| bad())?,
            key: key.as_slice().try_into().map_err(|_| bad())?,
            digest: digest.as_slice().try_into().map_err(|_| bad())?,
            caption,
        }))
    }

    pub fn set_attachment_path(&self, seq: i64, path: &str) -> Result<(), ProfileError> {
        self.db
            .execute("UPDATE attachments SET saved_path = ?2 WHERE message_seq = ?1", params![seq, path])?;
        Ok(())
    }

    /// History, oldest first: of one conversation, or of all of them.
    pub fn history(
        &self,
        conversation: Option<&GroupId>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, ProfileError> {
        let sql = format!(
            "SELECT * FROM (SELECT {HISTORY_COLUMNS} FROM messages m LEFT JOIN attachments a ON a.message_seq = m.seq
               WHERE ?1 IS NULL OR m.conversation = ?1 ORDER BY m.seq DESC LIMIT ?2) ORDER BY seq"
        );
        let mut st = self.db.prepare_cached(&sql)?;
        let rows = st.query_map(params![conversation.map(|g| g.as_bytes().to_vec()), limit], history_row)?;
        let mut items = rows.collect::<Result<Vec<_>, _>>()?;
        let mut reactions = self
            .db
            .prepare_cached("SELECT account, emoji FROM reactions WHERE message_seq = ?1 ORDER BY account")?;
        for item in &mut items {
            let rs = reactions.query_map([item.seq], |r| {
                Ok(Reaction { account: r.get::<_, i64>(0)?.max(0) as u64, emoji: r.get(1)? })
            })?;
            item.reactions = rs.collect::<Result<_, _>>()?;
        }
        Ok(items)
    }

    /// All messages, oldest first (the latest `limit`).
    pub fn messages(&self, limit: u32) -> Result<Vec<HistoryItem>, ProfileError> {
        self.history(None, limit)
    }

    /// Mark everything in the conversation as read; returns the ids of others' messages that
    /// were unread, for read receipts.
    pub fn mark_read(&self, conversation: &GroupId) -> Result<Vec<MessageId>, ProfileError> {
        let tx = self.db.unchecked_transaction()?;
        let ids = {
            let mut st = tx.prepare_cached(
                "SELECT m.message_id FROM messages m JOIN conversations c ON c.group_id = m.conversation
                 WHERE m.conversation = ?1 AND m.seq > c.read_seq AND m.outgoing = 0 AND m.kind != 'notice'
                   AND m.deleted = 0",
            )?;
            let rows = st.query_map([conversation.as_bytes()], |r| r.get::<_, Vec<u8>>(0))?;
            let mut ids = Vec::new();
            for r in rows {
                let bytes = r?;
                ids.push(MessageId(
                    bytes.as_slice().try_into().map_err(|_| ProfileError::Corrupt("message id"))?,
                ));
            }
            ids
        };
        tx.execute(
            "UPDATE conversations SET read_seq = (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation = ?1)
             WHERE group_id = ?1",
            [conversation.as_bytes()],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Delete messages whose disappearing timer has run out. Returns saved attachment files
    /// to remove.
    pub fn purge_expired(&self, now_ms: u64) -> Result<Vec<String>, ProfileError> {
        let tx = self.db.unchecked_transaction()?;
        let files = {
            let mut st = tx.prepare_cached(
                "SELECT a.saved_path FROM attachments a JOIN messages m ON m.seq = a.message_seq
                 WHERE m.expires_at IS NOT NULL AND m.expires_at <= ?1 AND a.saved_path IS NOT NULL",
            )?;
            let rows = st.query_map([ms(now_ms)], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.execute("DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?1", [ms(now_ms)])?;
        tx.commit()?;
        Ok(files)
    }
}

/// "30 seconds", "5 minutes", "1 day": how a timer is shown.
pub fn human_duration(seconds: u32) -> String {
    let (n, unit) = match seconds {
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

impl Profile {
    /// A number that moves whenever this profile's database is changed through this handle
    /// (messages in or out, receipts, reactions, reads, expiries): a long-running view such as
    /// `rampart chat` re-reads the history only when it moved.
    pub fn change_counter(&self) -> u64 {
        self.db.total_changes()
    }
}
